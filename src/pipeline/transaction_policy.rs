//! When an exactly-once transaction commits, without Kafka.
//!
//! A transaction is committed as soon as no further batch is coming, so at low load it holds
//! one batch and adds no latency; under load it collects up to `delivery.transaction_max_batches`
//! batches or `delivery.transaction_max_ms`, so a backlog costs the broker fewer transactions
//! (markers on every partition touched, offset commits). It does not speed up inference: the
//! model was busy 98 % of the time with one batch per transaction too (docs/benchmarks.md,
//! "Where the end-to-end time goes").

use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TransactionPolicy {
    /// Most batches per transaction.
    pub max_batches: usize,
    /// Longest a transaction collects batches.
    pub max_age: Duration,
}

impl TransactionPolicy {
    /// Whether a transaction holding `batches` batches, open for `age`, commits now;
    /// `more_coming` is whether further batches are already on their way to it.
    pub fn commit_now(&self, batches: usize, age: Duration, more_coming: bool) -> bool {
        batches > 0 && (batches >= self.max_batches || age >= self.max_age || !more_coming)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: TransactionPolicy =
        TransactionPolicy { max_batches: 8, max_age: Duration::from_millis(100) };

    #[test]
    fn commits_at_once_when_nothing_more_is_coming() {
        assert!(POLICY.commit_now(1, Duration::ZERO, false));
    }

    #[test]
    fn collects_while_more_is_coming_up_to_the_batch_and_age_limits() {
        assert!(!POLICY.commit_now(1, Duration::ZERO, true));
        assert!(!POLICY.commit_now(7, Duration::from_millis(99), true));
        assert!(POLICY.commit_now(8, Duration::ZERO, true), "max batches");
        assert!(POLICY.commit_now(2, Duration::from_millis(100), true), "max age");
    }

    #[test]
    fn an_empty_transaction_never_commits() {
        assert!(!POLICY.commit_now(0, Duration::from_secs(9), false));
    }
}
