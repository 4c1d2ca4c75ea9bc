//! A pool of inference workers, each owning one ONNX Runtime session.
//!
//! ORT sessions run with `&mut self`, and a mutex around one session would serialise the
//! service on it. Instead every worker thread owns a session created from the same model
//! bytes; the sessions share ONNX Runtime's pre-packed weights container, so the packed
//! GEMM weights exist once however many workers there are. Work arrives over a bounded
//! queue: when every worker is busy and the queue is full, [`ModelPool::submit`] blocks,
//! which is the backpressure the pipeline relies on (it runs off the async runtime).

use std::sync::mpsc::{self, Receiver, SyncSender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use ort::session::builder::PrepackedWeights;

use super::error::ModelError;
use super::manifest::Manifest;
use super::prediction::Prediction;
use super::provider::ActiveProvider;
use super::session::{InferenceSession, LoadedModel, ModelOptions};

/// The answer to one submitted batch. The input buffer comes back so the caller can reuse
/// its allocation for the next batch.
#[derive(Debug)]
pub struct BatchResult {
    pub features: Vec<f32>,
    pub predictions: Result<Vec<Prediction>, ModelError>,
    /// Seconds the session spent running the batch (queueing excluded).
    pub run_seconds: f64,
}

/// Why [`ModelPool::try_submit`] did not queue a batch.
#[derive(Debug)]
pub enum TrySubmitError {
    /// Every worker is busy and the queue is full; the batch's features are handed back.
    Full(Vec<f32>),
    /// The pool has shut down.
    Closed,
}

type Reply = Box<dyn FnOnce(BatchResult) + Send + 'static>;

struct Job {
    features: Vec<f32>,
    reply: Reply,
}

/// Worker threads with one session each, fed by a bounded queue.
pub struct ModelPool {
    sender: Option<SyncSender<Job>>,
    workers: Vec<JoinHandle<()>>,
    manifest: Manifest,
    provider: ActiveProvider,
}

impl ModelPool {
    /// Creates `workers` sessions (errors surface here, before any thread starts) and a
    /// queue holding up to `queue_capacity` batches beyond those being run.
    pub fn new(
        model: &LoadedModel,
        options: &ModelOptions,
        workers: usize,
        queue_capacity: usize,
    ) -> Result<ModelPool, ModelError> {
        let workers = workers.max(1);
        // Every ort call needs the runtime loaded first (ort would otherwise try its own
        // default library path and panic).
        super::runtime::ensure_runtime(options.ort_library.as_deref())?;
        let prepacked = PrepackedWeights::new();
        let mut sessions = (0..workers)
            .map(|_| InferenceSession::new(model, options, Some(&prepacked)))
            .collect::<Result<Vec<_>, _>>()?;
        if options.warm_up_rows > 0 {
            let started = std::time::Instant::now();
            let zeros = vec![0.0f32; options.warm_up_rows * model.manifest.feature_dims];
            for session in &mut sessions {
                session.run(&zeros)?;
            }
            tracing::info!(
                sessions = sessions.len(),
                rows = options.warm_up_rows,
                ms = started.elapsed().as_millis() as u64,
                "model warmed up"
            );
        }
        let provider = sessions[0].provider().clone();
        let (sender, receiver) = mpsc::sync_channel::<Job>(queue_capacity);
        let receiver = Arc::new(Mutex::new(receiver));
        let workers = sessions
            .into_iter()
            .enumerate()
            .map(|(i, session)| {
                let receiver = Arc::clone(&receiver);
                std::thread::Builder::new()
                    .name(format!("emogate-infer-{i}"))
                    .spawn(move || worker_loop(session, &receiver))
                    .map_err(|source| ModelError::Io { path: "<thread spawn>".into(), source })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(ModelPool { sender: Some(sender), workers, manifest: model.manifest.clone(), provider })
    }

    /// The manifest of the model the pool serves.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// The execution provider the sessions run on.
    pub fn provider(&self) -> &ActiveProvider {
        &self.provider
    }

    /// Number of worker sessions.
    pub fn workers(&self) -> usize {
        self.workers.len()
    }

    /// Queues a batch; `reply` runs on the worker thread with the result. Blocks while the
    /// queue is full.
    pub fn submit(
        &self,
        features: Vec<f32>,
        reply: impl FnOnce(BatchResult) + Send + 'static,
    ) -> Result<(), ModelError> {
        let sender = self.sender.as_ref().ok_or(ModelError::PoolClosed)?;
        sender.send(Job { features, reply: Box::new(reply) }).map_err(|_| ModelError::PoolClosed)
    }

    /// Queues a batch without blocking: when the queue is full the features come back in
    /// [`TrySubmitError::Full`] (the infer step's backpressure: it hands its batch back upstream
    /// instead of blocking the thread that polls Kafka).
    pub fn try_submit(
        &self,
        features: Vec<f32>,
        reply: impl FnOnce(BatchResult) + Send + 'static,
    ) -> Result<(), TrySubmitError> {
        let sender = self.sender.as_ref().ok_or(TrySubmitError::Closed)?;
        sender.try_send(Job { features, reply: Box::new(reply) }).map_err(|e| match e {
            mpsc::TrySendError::Full(job) => TrySubmitError::Full(job.features),
            mpsc::TrySendError::Disconnected(_) => TrySubmitError::Closed,
        })
    }

    /// Runs one batch and waits for it.
    pub fn infer(&self, features: Vec<f32>) -> Result<BatchResult, ModelError> {
        let (tx, rx) = mpsc::sync_channel(1);
        self.submit(features, move |result| {
            // The receiver is waiting below; it can only be gone if this thread unwound.
            let _ = tx.send(result);
        })?;
        rx.recv().map_err(|_| ModelError::PoolClosed)
    }

    /// Stops accepting work, lets the workers finish what is queued, and joins them.
    pub fn shutdown(mut self) {
        self.close();
    }

    fn close(&mut self) {
        self.sender.take();
        for worker in self.workers.drain(..) {
            if worker.join().is_err() {
                tracing::error!("an inference worker panicked");
            }
        }
    }
}

impl Drop for ModelPool {
    fn drop(&mut self) {
        self.close();
    }
}

fn worker_loop(mut session: InferenceSession, receiver: &Mutex<Receiver<Job>>) {
    loop {
        // Hold the lock only to take one job, never while running it.
        let job = match receiver.lock() {
            Ok(rx) => rx.recv(),
            Err(poisoned) => poisoned.into_inner().recv(),
        };
        let Ok(Job { features, reply }) = job else { return };
        let started = std::time::Instant::now();
        let predictions = session.run(&features);
        reply(BatchResult { features, predictions, run_seconds: started.elapsed().as_secs_f64() });
    }
}
