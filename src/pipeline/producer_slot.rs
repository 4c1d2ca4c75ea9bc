//! The infer stage's producer, rebuilt in place after a fatal error.
//!
//! A producer that hit a fatal error (fenced: a restarted Tansu fences the idempotent producer
//! of a running process; librdkafka's fatal idempotence/transaction state) can never deliver
//! again. Before, the stage stopped and an orchestrator restarted the process. Now the deliver
//! step *retires* the producer and rewinds (the chain is thrown away and the input re-read
//! from the first record not completed, exactly as for any retry), and the next chain gets a
//! new producer from the same settings, the same `transactional.id` included:
//! `init_transactions` bumps the epoch, which fences the old producer and aborts whatever
//! transaction it left open, so exactly-once holds across the renewal.
//!
//! The new producer is built on a thread of its own: `init_transactions` blocks until the
//! transaction coordinator answers (up to `delivery.commit_timeout_ms`), and the processor
//! thread must keep polling meanwhile, or the consumer's callbacks — broker down, partitions
//! revoked, which `/readyz` reports — would wait too. Until the producer is ready the deliver
//! step refuses batches (backpressure pauses the consumer) and asks again; a build that fails
//! (the broker still away) is tried again after [`RETRY_EVERY`]. Renewals are rate limited: a producer fenced again and again (two
//! live instances sharing a `transactional.id`, a misconfiguration) would fence its twin in
//! turn forever, so after [`MAX_RENEWALS`] renewals within [`RENEWAL_WINDOW`] the stage stops
//! with the reason, as before.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::producer::{FutureProducer, Producer};

use super::infer_metrics::InferMetrics;

/// Most renewals within [`RENEWAL_WINDOW`].
pub const MAX_RENEWALS: usize = 5;
/// The window of [`MAX_RENEWALS`].
pub const RENEWAL_WINDOW: Duration = Duration::from_secs(600);
/// Shortest time between two attempts to build a producer.
pub const RETRY_EVERY: Duration = Duration::from_secs(1);

/// Whether one more renewal fits: fewer than `limit` in the `window` before `now` (pure; the
/// history is pruned of older entries).
pub fn renewal_allowed(
    history: &mut VecDeque<Instant>,
    now: Instant,
    limit: usize,
    window: Duration,
) -> bool {
    while history.front().is_some_and(|t| now.saturating_duration_since(*t) >= window) {
        history.pop_front();
    }
    history.len() < limit
}

/// The stage's producer and how to make another.
pub(crate) struct ProducerSlot {
    config: ClientConfig,
    transactional: bool,
    timeout: Duration,
    metrics: Arc<dyn InferMetrics>,
    state: Mutex<SlotState>,
}

struct SlotState {
    current: Option<FutureProducer>,
    /// A build in progress.
    building: Option<std::thread::JoinHandle<Result<FutureProducer, rdkafka::error::KafkaError>>>,
    last_attempt: Option<Instant>,
    renewals: VecDeque<Instant>,
}

impl ProducerSlot {
    /// A slot holding `producer` (already initialised), made from `config`.
    pub fn new(
        config: ClientConfig,
        producer: FutureProducer,
        transactional: bool,
        timeout: Duration,
        metrics: Arc<dyn InferMetrics>,
    ) -> Arc<ProducerSlot> {
        Arc::new(ProducerSlot {
            config,
            transactional,
            timeout,
            metrics,
            state: Mutex::new(SlotState {
                current: Some(producer),
                building: None,
                last_attempt: None,
                renewals: VecDeque::new(),
            }),
        })
    }

    fn state(&self) -> MutexGuard<'_, SlotState> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The usable producer. After a retirement: `None` until a new one is built (and for
    /// exactly-once initialised) on a builder thread, started at most once per
    /// [`RETRY_EVERY`]; never blocks.
    pub fn get(&self) -> Option<FutureProducer> {
        let mut state = self.state();
        if let Some(producer) = &state.current {
            return Some(producer.clone());
        }
        if state.building.as_ref().is_some_and(|b| b.is_finished()) {
            let built = state.building.take().expect("checked").join();
            match built {
                Ok(Ok(producer)) => {
                    tracing::info!(
                        transactional = self.transactional,
                        "producer rebuilt after a fatal error; delivery resumes"
                    );
                    self.metrics.producer_renewed();
                    state.current = Some(producer.clone());
                    return Some(producer);
                }
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "rebuilding the producer failed (broker still unavailable?); retrying")
                }
                Err(_) => tracing::error!("the producer builder thread panicked; retrying"),
            }
        }
        let due = state.last_attempt.is_none_or(|t| t.elapsed() >= RETRY_EVERY);
        if state.building.is_none() && due {
            state.last_attempt = Some(Instant::now());
            let (config, transactional, timeout) = (self.config.clone(), self.transactional, self.timeout);
            let spawned = std::thread::Builder::new()
                .name("emogate-producer-build".into())
                .spawn(move || build(&config, transactional, timeout));
            match spawned {
                Ok(handle) => state.building = Some(handle),
                Err(e) => tracing::warn!(error = %e, "cannot start the producer builder thread; retrying"),
            }
        }
        None
    }

    /// Gives up the current producer after its fatal error `reason`; the next [`Self::get`]
    /// builds another. `Err` with the reason to stop when renewals exceed their rate.
    pub fn retire(&self, reason: &str) -> Result<(), String> {
        let mut state = self.state();
        let now = Instant::now();
        if !renewal_allowed(&mut state.renewals, now, MAX_RENEWALS, RENEWAL_WINDOW) {
            return Err(format!(
                "{reason}; the producer was already rebuilt {MAX_RENEWALS} times within {} s \
                 (two instances sharing a transactional.id?)",
                RENEWAL_WINDOW.as_secs()
            ));
        }
        state.renewals.push_back(now);
        if let Some(old) = state.current.take() {
            // Its queue holds only messages of the transaction/batches being rewound.
            let _ = old.flush(Duration::from_millis(100));
        }
        state.last_attempt = None;
        tracing::warn!(%reason, "producer failed fatally: rebuilding it in place");
        Ok(())
    }

    /// The current producer, if any, for the stage's final close.
    pub fn current(&self) -> Option<FutureProducer> {
        self.state().current.clone()
    }
}

/// A producer from `config`, with its transactions initialised when `transactional`.
fn build(
    config: &ClientConfig,
    transactional: bool,
    timeout: Duration,
) -> Result<FutureProducer, rdkafka::error::KafkaError> {
    let producer: FutureProducer = config.create()?;
    if transactional {
        producer.init_transactions(timeout)?;
    }
    Ok(producer)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renewals_are_limited_per_window_and_old_ones_expire() {
        let t0 = Instant::now();
        let window = Duration::from_secs(600);
        let mut history = VecDeque::new();
        for i in 0..3 {
            assert!(renewal_allowed(&mut history, t0 + Duration::from_secs(i), 3, window));
            history.push_back(t0 + Duration::from_secs(i));
        }
        assert!(!renewal_allowed(&mut history, t0 + Duration::from_secs(10), 3, window));
        // The first one leaves the window at t0 + 600 s.
        assert!(renewal_allowed(&mut history, t0 + window, 3, window));
        assert_eq!(history.len(), 2);
    }
}
