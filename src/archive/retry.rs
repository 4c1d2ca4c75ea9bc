//! Retry in place for archive writes (pure): how long a partition waits before its file is
//! put again, and when the sink counts as unhealthy.
//!
//! A failed put that may heal ([`super::SinkError::is_permanent`] is false) does not stop the
//! stage: the archiver keeps the encoded file, the stage pauses the partition (the consumer
//! stops fetching it, so memory stays bounded by one file per partition), and the put is tried
//! again after a capped exponential backoff with jitter, so that many replicas hitting the same
//! outage do not retry in lockstep. Meanwhile the consumer keeps polling, so the group
//! membership, rebalances and shutdown requests are served.

use std::time::Duration;

/// Backoff and health settings (`archive.retry_initial_ms`, `archive.retry_max_ms`,
/// `archive.unhealthy_after_failures`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Wait after the first failure (before jitter).
    pub initial: Duration,
    /// Longest wait between two attempts of one file.
    pub max: Duration,
    /// Consecutive failed puts (over all partitions) after which `/readyz` reports the sink.
    pub unhealthy_after: u32,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy { initial: Duration::from_millis(500), max: Duration::from_secs(30), unhealthy_after: 3 }
    }
}

impl RetryPolicy {
    /// The wait after the `failures`-th consecutive failure of one file (`failures` ≥ 1):
    /// `initial · 2^(failures-1)`, capped at `max`, of which the upper half is scaled by
    /// `unit` ∈ [0, 1) ("equal jitter": never less than half the step, so a flapping store is
    /// not hammered, and spread so that replicas drift apart).
    pub fn delay(&self, failures: u32, unit: f64) -> Duration {
        let exponent = failures.saturating_sub(1).min(30);
        let step = self.initial.saturating_mul(1u32 << exponent).min(self.max);
        let half = step / 2;
        half + half.mul_f64(unit.clamp(0.0, 1.0))
    }

    /// Whether `consecutive` failures make the sink unhealthy.
    pub fn is_unhealthy(&self, consecutive: u32) -> bool {
        consecutive >= self.unhealthy_after.max(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_up_to_the_cap_and_jitter_stays_in_the_upper_half() {
        let policy = RetryPolicy {
            initial: Duration::from_millis(500),
            max: Duration::from_secs(4),
            unhealthy_after: 3,
        };
        let steps: Vec<u128> = (1..=6).map(|n| policy.delay(n, 1.0).as_millis()).collect();
        assert_eq!(steps, [500, 1_000, 2_000, 4_000, 4_000, 4_000]);
        assert_eq!(policy.delay(1, 0.0), Duration::from_millis(250));
        assert_eq!(policy.delay(3, 0.5), Duration::from_millis(1_500));
        for n in 1..40 {
            for unit in [0.0, 0.3, 0.999] {
                let d = policy.delay(n, unit);
                assert!(d <= policy.max && d >= policy.initial / 2, "{n} {unit}: {d:?}");
            }
        }
        // Out-of-range jitter and huge failure counts cannot overflow or exceed the cap.
        assert_eq!(policy.delay(u32::MAX, 7.0), Duration::from_secs(4));
        assert_eq!(policy.delay(0, -1.0), Duration::from_millis(250));
    }

    #[test]
    fn unhealthy_after_the_configured_streak() {
        let policy = RetryPolicy::default();
        assert!(!policy.is_unhealthy(2));
        assert!(policy.is_unhealthy(3));
        let zero = RetryPolicy { unhealthy_after: 0, ..policy };
        assert!(!zero.is_unhealthy(0) && zero.is_unhealthy(1));
    }
}
