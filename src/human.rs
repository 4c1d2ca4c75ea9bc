//! Formatting for the summaries people read (`emogate demo`, `produce`, `serve`'s stage
//! reports): thousands separators, byte units and aligned labels. Machines get `--json`.

use std::fmt::{self, Display, Write};

/// Width of the label column of [`row`].
pub const LABEL_WIDTH: usize = 18;

/// `1234567` → `1,234,567`.
pub fn count(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, d) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(d);
    }
    out
}

/// A rate or other non-negative quantity rounded to a whole number, with separators.
pub fn whole(x: f64) -> String {
    if x.is_finite() && x >= 0.0 {
        count(x.round() as u64)
    } else {
        format!("{x:.0}")
    }
}

/// Bytes in the largest binary unit that keeps the number at least 1 (`3.4 MiB`).
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// Seconds as the largest two units a person reads at a glance: `42 s`, `7 min 05 s`,
/// `2 h 03 min`.
pub fn duration(seconds: f64) -> String {
    let s = if seconds.is_finite() { seconds.max(0.0).round() as u64 } else { 0 };
    match s {
        0..=59 => format!("{s} s"),
        60..=3599 => format!("{} min {:02} s", s / 60, s % 60),
        _ => format!("{} h {:02} min", s / 3600, s % 3600 / 60),
    }
}

/// One line of a summary: two spaces, the label padded to [`LABEL_WIDTH`], the value.
pub fn row(f: &mut impl Write, label: &str, value: impl Display) -> fmt::Result {
    writeln!(f, "  {label:<LABEL_WIDTH$} {value}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_keep_two_units() {
        assert_eq!(duration(41.6), "42 s");
        assert_eq!(duration(425.0), "7 min 05 s");
        assert_eq!(duration(7380.0), "2 h 03 min");
        assert_eq!(duration(f64::NAN), "0 s");
    }

    #[test]
    fn separators_units_and_rows() {
        assert_eq!(count(0), "0");
        assert_eq!(count(999), "999");
        assert_eq!(count(1000), "1,000");
        assert_eq!(count(1_234_567), "1,234,567");
        assert_eq!(whole(2499.6), "2,500");
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(3 << 20), "3.0 MiB");
        let mut s = String::new();
        row(&mut s, "records in", 5).unwrap();
        assert_eq!(s, format!("  {:<18} 5\n", "records in"));
    }
}
