//! The first step: records in, micro-batches out (the closing rule is the pure
//! [`Batcher`]'s). A closed batch the next step refuses is held here, and while one is held
//! every record is handed back, so at most one closed batch waits between this step and the
//! model.

use std::time::Instant;

use super::batcher::{Batch, Batcher, Incoming};
use super::processor::InferConsumer;
use super::step::{forward_held, poll_until, Rejected, Step, StepError};

pub(crate) struct BatchStep<N> {
    batcher: Batcher,
    /// A closed batch the next step refused.
    held: Option<Batch>,
    pub(crate) next: N,
}

impl<N: Step<Batch>> BatchStep<N> {
    pub fn new(batcher: Batcher, next: N) -> BatchStep<N> {
        BatchStep { batcher, held: None, next }
    }

    /// When the open batch must close, if one is open.
    pub fn deadline(&self) -> Option<Instant> {
        self.batcher.deadline()
    }

    /// Hands the held batch on; false if the next step still refuses it.
    fn forward_held(&mut self) -> bool {
        forward_held(&mut self.held, &mut self.next)
    }

    fn close(&mut self, batch: Batch) {
        debug_assert!(self.held.is_none(), "a batch closes only when none is held");
        self.held = Some(batch);
        self.forward_held();
    }
}

impl<'a, N: Step<Batch>> Step<Incoming<'a>> for BatchStep<N> {
    fn poll(&mut self, consumer: &InferConsumer) -> Result<(), StepError> {
        self.next.poll(consumer)?;
        if self.forward_held() {
            if let Some(batch) = self.batcher.poll_deadline(Instant::now()) {
                self.close(batch);
            }
        }
        Ok(())
    }

    fn submit(&mut self, record: Incoming<'a>) -> Result<(), Rejected<Incoming<'a>>> {
        if !self.forward_held() {
            return Err(Rejected(record));
        }
        if let Some(batch) = self.batcher.push(Instant::now(), record) {
            self.close(batch);
        }
        Ok(())
    }

    fn join(&mut self, deadline: Instant, consumer: &InferConsumer) -> Result<(), StepError> {
        poll_until(
            self,
            deadline,
            consumer,
            |step, consumer| {
                step.next.poll(consumer)?;
                if step.forward_held() {
                    if let Some(batch) = step.batcher.flush() {
                        step.close(batch);
                    }
                }
                Ok(())
            },
            |step| step.held.is_none() && step.batcher.deadline().is_none(),
        )?;
        self.next.join(deadline, consumer)
    }

    fn terminate(&mut self) {
        self.batcher.clear();
        self.held = None;
        self.next.terminate();
    }

    fn is_busy(&self) -> bool {
        self.held.is_some() || self.batcher.deadline().is_some() || self.next.is_busy()
    }
}
