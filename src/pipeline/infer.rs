//! Hand-off between the async source/sink and the inference worker pool.
//!
//! The model runs on the pool's own threads, never on the async runtime. A closed batch's
//! features are moved into the pool (no copy); the worker answers through a oneshot channel
//! that the sink awaits in dispatch order. [`ModelPool::submit`] blocks only when the pool's
//! queue is full, and the queue holds `batch.max_in_flight` batches while at most that many are
//! in flight (each holds a permit until the sink is done with it), so submitting never blocks
//! the runtime thread.

use std::sync::Arc;
use tokio::sync::{oneshot, OwnedSemaphorePermit};

use super::batcher::Batch;
use crate::model::{BatchResult, ModelError, ModelPool};

/// A batch between the source and the sink.
pub(crate) struct InFlight {
    /// Epoch of the offset book the batch was dispatched in.
    pub epoch: u64,
    /// The batch; its `features` were moved into the pool when it has rows.
    pub batch: Batch,
    /// The pending answer; `None` when the batch holds only dead letters.
    pub result: Option<oneshot::Receiver<BatchResult>>,
    /// Released when the sink is done with the batch (backpressure on the source).
    pub permit: OwnedSemaphorePermit,
}

/// Moves the batch's features into the pool and returns where the answer will arrive.
pub(crate) fn submit(
    pool: &Arc<ModelPool>,
    batch: &mut Batch,
) -> Result<Option<oneshot::Receiver<BatchResult>>, ModelError> {
    if batch.rows.is_empty() {
        return Ok(None);
    }
    let features = std::mem::take(&mut batch.features);
    let (tx, rx) = oneshot::channel();
    pool.submit(features, move |result| {
        // The sink may have dropped the receiver after a rewind; the answer is then unwanted.
        let _ = tx.send(result);
    })?;
    Ok(Some(rx))
}
