//! When a (topic, partition) buffer becomes a file: the roll policy (DESIGN §1).
//!
//! A buffer is rolled
//! - before a row of another `dt`/`hour` enters it ([`RollReason::HourChange`]), so a file
//!   never straddles two hive partitions (see [`super::partition`]);
//! - when it holds `max_rows` rows ([`RollReason::Rows`]);
//! - when its first row has waited `max_age` ([`RollReason::Age`]), so quiet partitions still
//!   reach analysts and their offsets get committed;
//! - when the partition is revoked ([`RollReason::Revoked`]) or the stage stops
//!   ([`RollReason::Shutdown`]): the rows are written and committed by the consumer that read
//!   them, before another consumer can read them again.
//!
//! Rows and hour changes depend only on the records, so those boundaries are the same on a
//! replay; age, revocation and shutdown depend on timing. That is safe because a partition has
//! at most one file whose offsets are not committed (the stage commits each file before it
//! writes the next one for that partition, and stops if a commit fails): a replay starts at
//! that file's first offset, so it rewrites the same name, and every later file is new.
//!
//! Everything here is pure: the caller passes the clock.

use std::time::{Duration, Instant};

use super::partition::HourPartition;

/// Why a buffer was rolled into a file (a label on logs and metrics).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RollReason {
    /// The buffer reached `max_rows`.
    Rows,
    /// The buffer's first row is older than `max_age`.
    Age,
    /// The next row belongs to another `dt`/`hour`.
    HourChange,
    /// The partition is being revoked from this consumer.
    Revoked,
    /// The stage is stopping.
    Shutdown,
}

impl RollReason {
    /// Stable snake_case label.
    pub fn as_str(self) -> &'static str {
        match self {
            RollReason::Rows => "rows",
            RollReason::Age => "age",
            RollReason::HourChange => "hour_change",
            RollReason::Revoked => "revoked",
            RollReason::Shutdown => "shutdown",
        }
    }
}

/// What the policy needs to know about an open buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpenBuffer {
    /// Rows buffered (at least one: an empty buffer is not open).
    pub rows: usize,
    /// The `dt`/`hour` of every buffered row.
    pub hour: HourPartition,
    /// When the first row was buffered.
    pub opened_at: Instant,
}

/// Roll thresholds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RollPolicy {
    /// Roll when a buffer holds this many rows (at least 1).
    pub max_rows: usize,
    /// Roll when a buffer's first row has waited this long.
    pub max_age: Duration,
}

impl RollPolicy {
    /// Must `open` be rolled before a row of `next_hour` is appended?
    pub fn before_append(&self, open: Option<&OpenBuffer>, next_hour: HourPartition) -> Option<RollReason> {
        match open {
            Some(buffer) if buffer.hour != next_hour => Some(RollReason::HourChange),
            _ => None,
        }
    }

    /// Must `open` be rolled now that a row was appended?
    pub fn after_append(&self, open: &OpenBuffer) -> Option<RollReason> {
        (open.rows >= self.max_rows.max(1)).then_some(RollReason::Rows)
    }

    /// Must `open` be rolled at `now` because of its age?
    pub fn on_tick(&self, open: &OpenBuffer, now: Instant) -> Option<RollReason> {
        (now.saturating_duration_since(open.opened_at) >= self.max_age).then_some(RollReason::Age)
    }

    /// When `open` will be rolled by age.
    pub fn deadline(&self, open: &OpenBuffer) -> Instant {
        open.opened_at.checked_add(self.max_age).unwrap_or(open.opened_at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> RollPolicy {
        RollPolicy { max_rows: 3, max_age: Duration::from_secs(10) }
    }

    fn open(rows: usize, hour_ms: i64, opened_at: Instant) -> OpenBuffer {
        OpenBuffer { rows, hour: HourPartition::from_epoch_ms(hour_ms), opened_at }
    }

    #[test]
    fn rolls_before_a_row_of_another_hour_only() {
        let t0 = Instant::now();
        let buffer = open(1, 0, t0);
        let same_hour = HourPartition::from_epoch_ms(3_599_999);
        let next_hour = HourPartition::from_epoch_ms(3_600_000);
        assert_eq!(policy().before_append(None, next_hour), None);
        assert_eq!(policy().before_append(Some(&buffer), same_hour), None);
        assert_eq!(policy().before_append(Some(&buffer), next_hour), Some(RollReason::HourChange));
        // Going back in time is a change of hour too.
        let later = open(1, 7_200_000, t0);
        assert_eq!(policy().before_append(Some(&later), same_hour), Some(RollReason::HourChange));
    }

    #[test]
    fn rolls_at_max_rows() {
        let t0 = Instant::now();
        assert_eq!(policy().after_append(&open(2, 0, t0)), None);
        assert_eq!(policy().after_append(&open(3, 0, t0)), Some(RollReason::Rows));
        let degenerate = RollPolicy { max_rows: 0, ..policy() };
        assert_eq!(degenerate.after_append(&open(1, 0, t0)), Some(RollReason::Rows));
    }

    #[test]
    fn rolls_by_age_from_the_first_row() {
        let t0 = Instant::now();
        let buffer = open(1, 0, t0);
        assert_eq!(policy().on_tick(&buffer, t0 + Duration::from_millis(9_999)), None);
        assert_eq!(policy().on_tick(&buffer, t0 + Duration::from_secs(10)), Some(RollReason::Age));
        assert_eq!(policy().deadline(&buffer), t0 + Duration::from_secs(10));
        // A clock reading before the buffer opened is not an expiry.
        let future = open(1, 0, t0 + Duration::from_secs(60));
        assert_eq!(policy().on_tick(&future, t0), None);
    }

    #[test]
    fn reason_labels_are_distinct() {
        let all = [
            RollReason::Rows,
            RollReason::Age,
            RollReason::HourChange,
            RollReason::Revoked,
            RollReason::Shutdown,
        ];
        let mut labels: Vec<_> = all.iter().map(|r| r.as_str()).collect();
        labels.sort_unstable();
        labels.dedup();
        assert_eq!(labels.len(), all.len());
    }
}
