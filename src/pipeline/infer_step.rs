//! The model step: closed batches go to the [`ModelPool`]'s worker threads, answers come back
//! in dispatch order.
//!
//! The model never runs on the thread that polls Kafka. A batch's features move into the pool
//! (no copy) with [`ModelPool::try_submit`], which never blocks: a full pool queue, or
//! `batch.max_in_flight` batches already here, hands the batch back ([`Rejected`]). Workers
//! answer over a channel; answers may arrive out of order (several workers) and are handed on
//! in the order the batches came, so offsets complete in order. A batch holding only dead
//! letters needs no model and waits here only for the batches before it.

use std::collections::VecDeque;
use std::sync::mpsc;
use std::sync::Arc;
use std::time::Instant;

use super::batcher::Batch;
use super::error::PipelineError;
use super::infer_metrics::InferMetrics;
use super::processor::InferConsumer;
use super::step::{poll_until, Rejected, Step, StepError};
use crate::model::{BatchResult, ModelError, ModelPool, TrySubmitError};

/// A batch with its model answer (`None` when it had no rows to run).
pub(crate) struct Answered {
    pub batch: Batch,
    pub result: Option<BatchResult>,
    /// Whether more batches are behind this one (exactly-once keeps a transaction open for them).
    pub more_coming: bool,
}

struct Waiting {
    batch: Batch,
    /// Whether the model has it (false for a batch of dead letters only).
    submitted: bool,
    result: Option<BatchResult>,
}

impl Waiting {
    /// A ready batch the next step refused, back as it was: answered, or (dead letters only)
    /// never submitted — either way still ready.
    fn refused(answered: Answered) -> Waiting {
        let submitted = answered.result.is_some();
        Waiting { batch: answered.batch, submitted, result: answered.result }
    }

    fn is_ready(&self) -> bool {
        !self.submitted || self.result.is_some()
    }
}

pub(crate) struct InferStep<N> {
    pool: Arc<ModelPool>,
    max_in_flight: usize,
    answers_tx: mpsc::Sender<(u64, BatchResult)>,
    answers: mpsc::Receiver<(u64, BatchResult)>,
    /// Batches here, oldest first.
    queue: VecDeque<Waiting>,
    /// The pool closed under a submit (reported by the next poll).
    closed: bool,
    metrics: Arc<dyn InferMetrics>,
    pub(crate) next: N,
}

impl<N: Step<Answered>> InferStep<N> {
    pub fn new(pool: Arc<ModelPool>, max_in_flight: usize, metrics: Arc<dyn InferMetrics>, next: N) -> Self {
        let (answers_tx, answers) = mpsc::channel();
        InferStep {
            pool,
            max_in_flight: max_in_flight.max(1),
            answers_tx,
            answers,
            queue: VecDeque::new(),
            closed: false,
            metrics,
            next,
        }
    }

    /// Files every answer that has arrived under its batch.
    fn collect_answers(&mut self) {
        while let Ok((id, result)) = self.answers.try_recv() {
            self.metrics.batch_inferred(result.run_seconds);
            if let Some(waiting) = self.queue.iter_mut().find(|w| w.batch.id == id) {
                waiting.result = Some(result);
            }
        }
    }

    /// Hands on answered batches from the front, until one is not answered or is refused.
    fn forward_ready(&mut self) {
        while self.queue.front().is_some_and(Waiting::is_ready) {
            let waiting = self.queue.pop_front().expect("checked above");
            let answered = Answered {
                batch: waiting.batch,
                result: waiting.result,
                more_coming: !self.queue.is_empty(),
            };
            if let Err(Rejected(answered)) = self.next.submit(answered) {
                self.queue.push_front(Waiting::refused(answered));
                return;
            }
        }
    }

    fn progress(&mut self, consumer: &InferConsumer) -> Result<(), StepError> {
        if self.closed {
            return Err(PipelineError::Model(ModelError::PoolClosed).into());
        }
        self.next.poll(consumer)?;
        self.collect_answers();
        self.forward_ready();
        Ok(())
    }
}

impl<N: Step<Answered>> Step<Batch> for InferStep<N> {
    fn poll(&mut self, consumer: &InferConsumer) -> Result<(), StepError> {
        self.progress(consumer)
    }

    fn submit(&mut self, mut batch: Batch) -> Result<(), Rejected<Batch>> {
        if self.queue.len() >= self.max_in_flight {
            return Err(Rejected(batch));
        }
        if batch.rows.is_empty() {
            self.queue.push_back(Waiting { batch, submitted: false, result: None });
            return Ok(());
        }
        let features = std::mem::take(&mut batch.features);
        let answers = self.answers_tx.clone();
        let id = batch.id;
        // A terminated step has dropped the receiver; its late answers are unwanted.
        let reply = move |result| drop(answers.send((id, result)));
        match self.pool.try_submit(features, reply) {
            Ok(()) => {
                self.metrics.batch_dispatched(batch.rows.len());
                tracing::debug!(
                    batch = id,
                    rows = batch.rows.len(),
                    dead = batch.dead.len(),
                    "batch dispatched"
                );
                self.queue.push_back(Waiting { batch, submitted: true, result: None });
                Ok(())
            }
            Err(TrySubmitError::Full(features)) => {
                batch.features = features;
                Err(Rejected(batch))
            }
            Err(TrySubmitError::Closed) => {
                self.closed = true;
                Err(Rejected(batch))
            }
        }
    }

    fn join(&mut self, deadline: Instant, consumer: &InferConsumer) -> Result<(), StepError> {
        poll_until(self, deadline, consumer, Self::progress, |step| step.queue.is_empty())?;
        self.next.join(deadline, consumer)
    }

    fn terminate(&mut self) {
        self.queue.clear();
        // Answers of batches still in the pool go to the old channel and are dropped with it.
        let (answers_tx, answers) = mpsc::channel();
        self.answers_tx = answers_tx;
        self.answers = answers;
        self.next.terminate();
    }

    fn is_busy(&self) -> bool {
        !self.queue.is_empty() || self.next.is_busy()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refused_batch_of_dead_letters_only_stays_ready() {
        // Regression: it came back as "submitted, no answer yet" and stalled the stage.
        let refused =
            Waiting::refused(Answered { batch: Batch::default(), result: None, more_coming: false });
        assert!(refused.is_ready());
    }

    #[test]
    fn a_refused_answered_batch_stays_ready_with_its_answer() {
        let result = BatchResult { features: vec![], predictions: Ok(vec![]), run_seconds: 0.0 };
        let refused =
            Waiting::refused(Answered { batch: Batch::default(), result: Some(result), more_coming: true });
        assert!(refused.is_ready() && refused.submitted && refused.result.is_some());
    }
}
