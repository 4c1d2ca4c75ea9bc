//! The routing step: an answered batch becomes the messages to produce, by the pure
//! [`Router`] (predictions to accepted/rejected under the reject policy, bad input and failed
//! inference to the dead-letter topic). Routing is instant, so the step holds at most one
//! routed batch, when delivery refuses it.

use std::collections::BTreeMap;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use super::batcher::OffsetRange;
use super::infer_step::Answered;
use super::processor::InferConsumer;
use super::router::{Output, Router};
use super::step::{forward_held, Rejected, Step, StepError};

/// A batch's messages, ready to deliver.
pub(crate) struct Routed {
    pub id: u64,
    /// Input offsets the batch covers, per partition (committed once it is delivered).
    pub ranges: BTreeMap<i32, OffsetRange>,
    pub outputs: Vec<Output>,
    pub more_coming: bool,
}

pub(crate) struct RouteStep<N> {
    router: Router,
    held: Option<Routed>,
    pub(crate) next: N,
}

/// Wall-clock milliseconds (prediction timestamps, end-to-end latency).
pub(crate) fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

impl<N: Step<Routed>> RouteStep<N> {
    pub fn new(router: Router, next: N) -> RouteStep<N> {
        RouteStep { router, held: None, next }
    }

    /// Hands the held item on; false if the next step still refuses it.
    fn forward_held(&mut self) -> bool {
        forward_held(&mut self.held, &mut self.next)
    }

    fn route(&self, answered: Answered) -> Routed {
        let Answered { batch, result, more_coming } = answered;
        let outputs = match &result {
            Some(done) => {
                let predictions = done.predictions.as_deref();
                if let Err(e) = predictions {
                    tracing::error!(batch = batch.id, error = %e, rows = batch.rows.len(), "inference failed; dead-lettering the batch");
                }
                self.router.route(&batch, &done.features, predictions, now_ms())
            }
            None => self.router.route(&batch, &[], Ok(&[]), now_ms()),
        };
        Routed { id: batch.id, ranges: batch.ranges, outputs, more_coming }
    }
}

impl<N: Step<Routed>> Step<Answered> for RouteStep<N> {
    fn poll(&mut self, consumer: &InferConsumer) -> Result<(), StepError> {
        self.next.poll(consumer)?;
        self.forward_held();
        Ok(())
    }

    fn submit(&mut self, answered: Answered) -> Result<(), Rejected<Answered>> {
        if !self.forward_held() {
            return Err(Rejected(answered));
        }
        self.held = Some(self.route(answered));
        self.forward_held();
        Ok(())
    }

    fn join(&mut self, deadline: Instant, consumer: &InferConsumer) -> Result<(), StepError> {
        super::step::poll_until(self, deadline, consumer, Self::poll, |step| step.held.is_none())?;
        self.next.join(deadline, consumer)
    }

    fn terminate(&mut self) {
        self.held = None;
        self.next.terminate();
    }

    fn is_busy(&self) -> bool {
        self.held.is_some() || self.next.is_busy()
    }
}
