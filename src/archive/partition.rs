//! Where a file goes: the hive partition (`dt=YYYY-MM-DD/hour=HH`) and the deterministic
//! file name `{topic}+{partition}+{first_offset}.parquet` (DESIGN §1).
//!
//! # Which time drives `dt`/`hour`
//! The row's `processed_at` (when emogate produced the prediction), in UTC. It has to come
//! from the record and never from the archive's wall clock, or a replay after a crash would
//! put the same rows under another directory and the rewrite would become a duplicate. Among
//! the record's two times `processed_at` is the one that is (nearly) monotonic within an output
//! partition, because the infer stage stamps it as it produces. The input `timestamp` is the
//! producer's capture time: late or back-filled input would scatter a partition's consecutive
//! offsets over many hours, and since a file never straddles two hours (below) that would mean
//! many tiny files. Analysts filter on capture time with the `timestamp` column, which the
//! files' statistics make cheap.
//!
//! # One file, one hour
//! Every row of a file has the file's `dt`/`hour`: the roll policy closes a buffer before a
//! row of another hour enters it ([`super::roll::RollPolicy::before_append`]). So the
//! partition columns a reader derives from the path are true for each row, and a file's path
//! is a function of its first row alone — the same after a replay.
//!
//! # Names
//! Kafka topic names are `[a-zA-Z0-9._-]{1,249}` and never `.` or `..`; the archive checks
//! this rather than trusting configuration, so a name can neither escape the archive root nor
//! contain the `+` separator, and `{topic}+{partition}+{first_offset}` parses back unambiguously.

use std::fmt;

/// Milliseconds in an hour.
const HOUR_MS: i64 = 3_600_000;

/// One hive partition: a UTC date and hour.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct HourPartition {
    /// Proleptic Gregorian year.
    pub year: i64,
    /// 1–12.
    pub month: u32,
    /// 1–31.
    pub day: u32,
    /// 0–23.
    pub hour: u32,
}

impl HourPartition {
    /// The UTC hour containing `epoch_ms` (milliseconds since 1970-01-01T00:00:00Z; negative
    /// values are before the epoch). Total: every `i64` maps to a partition.
    pub fn from_epoch_ms(epoch_ms: i64) -> Self {
        let hours = epoch_ms.div_euclid(HOUR_MS);
        let days = hours.div_euclid(24);
        let hour = hours.rem_euclid(24) as u32;
        let (year, month, day) = civil_from_days(days);
        HourPartition { year, month, day, hour }
    }

    /// `YYYY-MM-DD`, the `dt` value (the year has at least four digits).
    pub fn date(&self) -> String {
        format!("{:04}-{:02}-{:02}", self.year, self.month, self.day)
    }

    /// `dt=YYYY-MM-DD/hour=HH`, the directory under the archive root.
    pub fn dir(&self) -> String {
        format!("dt={}/hour={:02}", self.date(), self.hour)
    }
}

impl fmt::Display for HourPartition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.dir())
    }
}

/// Days since 1970-01-01 to (year, month, day) in the proleptic Gregorian calendar
/// (H. Hinnant's `civil_from_days`, exact for the whole `i64` day range used here).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097); // [0, 146096]
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365; // [0, 399]
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // [0, 365]
    let mp = (5 * doy + 2) / 153; // [0, 11], March-based
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// A topic name that is not a valid Kafka topic name (and so not safe in a file name).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("topic name {0:?} is not a Kafka topic name ([a-zA-Z0-9._-], 1 to 249 characters, not . or ..)")]
pub struct InvalidTopicName(pub String);

/// Checks `topic` against Kafka's topic-name rules.
pub fn validate_topic(topic: &str) -> Result<(), InvalidTopicName> {
    let legal = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-');
    if topic.is_empty() || topic.len() > 249 || topic == "." || topic == ".." || !topic.bytes().all(legal) {
        return Err(InvalidTopicName(topic.to_string()));
    }
    Ok(())
}

/// Identity of one archive file: everything its path is made of.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FileKey {
    /// Kafka topic of every row.
    pub topic: String,
    /// Kafka partition of every row.
    pub partition: i32,
    /// Offset of the file's first row.
    pub first_offset: i64,
    /// The `dt`/`hour` of every row.
    pub hour: HourPartition,
}

impl FileKey {
    /// Builds a key, checking the topic name.
    pub fn new(
        topic: &str,
        partition: i32,
        first_offset: i64,
        hour: HourPartition,
    ) -> Result<Self, InvalidTopicName> {
        validate_topic(topic)?;
        Ok(FileKey { topic: topic.to_string(), partition, first_offset, hour })
    }

    /// `{topic}+{partition}+{first_offset}.parquet`.
    pub fn file_name(&self) -> String {
        format!("{}+{}+{}.parquet", self.topic, self.partition, self.first_offset)
    }

    /// `dt=YYYY-MM-DD/hour=HH/{file_name}`: the path relative to the archive root, `/`-separated
    /// (also the object key under a bucket prefix).
    pub fn relative_path(&self) -> String {
        format!("{}/{}", self.hour.dir(), self.file_name())
    }

    /// Parses a [`FileKey::file_name`] back into (topic, partition, first offset).
    pub fn parse_file_name(name: &str) -> Option<(String, i32, i64)> {
        let stem = name.strip_suffix(".parquet")?;
        let mut parts = stem.split('+');
        let (topic, partition, offset) = (parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some() || validate_topic(topic).is_err() {
            return None;
        }
        Some((topic.to_string(), partition.parse().ok()?, offset.parse().ok()?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_instants_map_to_their_utc_hour() {
        let p = HourPartition::from_epoch_ms(0);
        assert_eq!((p.dir(), p.hour), ("dt=1970-01-01/hour=00".to_string(), 0));
        // 2024-02-29T23:59:59.999Z (leap day) and the next millisecond.
        let leap = HourPartition::from_epoch_ms(1_709_251_199_999);
        assert_eq!(leap.dir(), "dt=2024-02-29/hour=23");
        assert_eq!(HourPartition::from_epoch_ms(1_709_251_200_000).dir(), "dt=2024-03-01/hour=00");
        // 2000-12-31T13:30:00Z, end of a leap century year.
        assert_eq!(HourPartition::from_epoch_ms(978_269_400_000).dir(), "dt=2000-12-31/hour=13");
        // One millisecond before the epoch is the last hour of 1969.
        assert_eq!(HourPartition::from_epoch_ms(-1).dir(), "dt=1969-12-31/hour=23");
    }

    #[test]
    fn civil_dates_are_consecutive_over_four_centuries() {
        // Walk 146,097 days (one Gregorian cycle) from 1900-01-01 and check every step is the
        // next calendar day, with month lengths and leap years computed independently.
        let leap = |y: i64| (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
        let month_len = |y: i64, m: u32| match m {
            2 if leap(y) => 29,
            2 => 28,
            4 | 6 | 9 | 11 => 30,
            _ => 31,
        };
        let start = -25_567; // 1900-01-01
        let mut expected = (1900, 1, 1);
        for days in start..start + 146_097 {
            assert_eq!(civil_from_days(days), expected, "day {days}");
            let (y, m, d) = expected;
            expected = if d < month_len(y, m) {
                (y, m, d + 1)
            } else if m < 12 {
                (y, m + 1, 1)
            } else {
                (y + 1, 1, 1)
            };
        }
    }

    #[test]
    fn extreme_timestamps_do_not_panic() {
        for ms in [i64::MIN, i64::MIN + 1, i64::MAX, -62_135_596_800_000 /* 0001-01-01 */] {
            let p = HourPartition::from_epoch_ms(ms);
            assert!((1..=12).contains(&p.month) && (1..=31).contains(&p.day) && p.hour < 24, "{p:?}");
        }
        assert_eq!(HourPartition::from_epoch_ms(-62_135_596_800_000).date(), "0001-01-01");
    }

    #[test]
    fn file_names_are_deterministic_and_parse_back() {
        let hour = HourPartition::from_epoch_ms(1_700_000_000_000);
        let key = FileKey::new("emotion.accepted", 3, 1_234, hour).unwrap();
        assert_eq!(key.file_name(), "emotion.accepted+3+1234.parquet");
        assert_eq!(key.relative_path(), "dt=2023-11-14/hour=22/emotion.accepted+3+1234.parquet");
        assert_eq!(key, FileKey::new("emotion.accepted", 3, 1_234, hour).unwrap());
        assert_eq!(
            FileKey::parse_file_name(&key.file_name()),
            Some(("emotion.accepted".to_string(), 3, 1_234))
        );
        for bad in
            ["x.parquet", "a+1.parquet", "a+1+2+3.parquet", "a+b+2.parquet", "a/b+1+2.parquet", "a+1+2.tmp"]
        {
            assert_eq!(FileKey::parse_file_name(bad), None, "{bad}");
        }
    }

    #[test]
    fn topic_names_that_could_escape_the_root_are_refused() {
        for bad in ["", ".", "..", "a/b", "../x", "a+b", "a b", "ä", &"x".repeat(250)] {
            assert!(validate_topic(bad).is_err(), "{bad:?}");
            assert!(FileKey::new(bad, 0, 0, HourPartition::from_epoch_ms(0)).is_err());
        }
        for good in ["emotion.accepted", "a", "A-b_c.9", "...", &"x".repeat(249)] {
            assert!(validate_topic(good).is_ok(), "{good:?}");
        }
    }
}
