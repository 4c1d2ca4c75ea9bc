//! The step contract of the infer stage, after rust-arroyo's processing strategies.
//!
//! The stage is a chain `batch → infer → route → deliver`, each step owning the next. The
//! processor thread drives it with four calls and nothing else:
//!
//! * [`Step::submit`] offers one item. A step that cannot take it now hands it back in
//!   [`Rejected`] — backpressure is a value the caller holds, never a blocked thread or an
//!   unbounded queue.
//! * [`Step::poll`] moves held work along without blocking (a model answer arrived, a delivery
//!   was acknowledged, a batch's deadline passed) and reports a failure of anything held.
//! * [`Step::join`] finishes everything submitted by a deadline (shutdown, a revocation).
//! * [`Step::terminate`] drops everything held, unfinished (a retry: the processor seeks back
//!   and builds a fresh chain, so a chain never outlives the attempt it was built for).

use std::time::{Duration, Instant};

use super::error::PipelineError;
use super::processor::InferConsumer;

/// An item a step could not take now, handed back to the caller to offer again later.
#[derive(Debug)]
pub struct Rejected<T>(pub T);

/// Why a step stopped making progress.
#[derive(Debug, thiserror::Error)]
pub enum StepError {
    /// Something held could not be delivered but may be on a new attempt (transaction aborted,
    /// delivery timed out): the processor rewinds to the first record not completed.
    #[error("{0}")]
    Retry(String),
    /// `join` did not finish by its deadline.
    #[error("the join deadline passed with work still held")]
    Timeout,
    /// The stage cannot go on.
    #[error(transparent)]
    Fatal(#[from] PipelineError),
}

/// One step of the chain; `T` is what it takes from the step before it.
pub trait Step<T> {
    /// Moves held work along without blocking.
    fn poll(&mut self, consumer: &InferConsumer) -> Result<(), StepError>;

    /// Offers one item; a step that is full hands it back.
    fn submit(&mut self, item: T) -> Result<(), Rejected<T>>;

    /// Finishes everything submitted to this step and the ones after it, by `deadline`.
    fn join(&mut self, deadline: Instant, consumer: &InferConsumer) -> Result<(), StepError>;

    /// Drops everything held without finishing it.
    fn terminate(&mut self);

    /// Whether this step or a later one holds work (the processor polls sooner while it does).
    fn is_busy(&self) -> bool;
}

/// Offers the item `held` for the next step to it; true when nothing is held any more (the
/// next step took it, or there was none), false when it was refused and is held again.
pub(crate) fn forward_held<T>(held: &mut Option<T>, next: &mut impl Step<T>) -> bool {
    let Some(item) = held.take() else { return true };
    match next.submit(item) {
        Ok(()) => true,
        Err(Rejected(item)) => {
            *held = Some(item);
            false
        }
    }
}

/// How long a join sleeps between polls while work is still held.
pub(crate) const JOIN_TICK: Duration = Duration::from_millis(1);

/// Polls `step` until `done` says it holds nothing more of its own, or `deadline` passes —
/// the first half of every join (the second is the next step's join).
pub(crate) fn poll_until<S>(
    step: &mut S,
    deadline: Instant,
    consumer: &InferConsumer,
    mut poll: impl FnMut(&mut S, &InferConsumer) -> Result<(), StepError>,
    done: impl Fn(&S) -> bool,
) -> Result<(), StepError> {
    loop {
        poll(step, consumer)?;
        if done(step) {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(StepError::Timeout);
        }
        std::thread::sleep(JOIN_TICK);
    }
}
