//! The streaming infer stage (DESIGN §1): consume feature records, decode, micro-batch, run
//! the model off the async runtime, apply the reject policy, produce predictions and dead
//! letters, commit what was produced.
//!
//! ```text
//!            ┌──────────── source task ─────────────┐   bounded   ┌──────── sink task ─────────┐
//! Kafka ───► │ poll → decode → Batcher → dispatch   │ ──────────► │ await answer → Router →    │ ──► Kafka
//! (input)    │ (pause when no in-flight permit left)│  (permits)  │ produce → commit / txn     │  (outputs)
//!            └───────────────┬──────────────────────┘             └─────────────┬──────────────┘
//!                            └──► ModelPool worker threads (ONNX Runtime) ──────┘
//! ```
//!
//! | file | job | I/O? |
//! |---|---|---|
//! | `batcher` | micro-batches closing on `max_records` / `max_wait`; decode into the tensor; DLQ entries | pure |
//! | `offsets` | the offset book: in-flight batches, commit positions, epochs and rewind points | pure |
//! | `router` | predictions → accepted/rejected, bad input → DLQ, keys and headers | pure |
//! | `infer` | hand-off to the [`crate::model::ModelPool`] threads | threads |
//! | `source` | consumer loop, backpressure (pause/resume), rewinds | Kafka |
//! | `producer` | delivery: at-least-once (idempotent) or exactly-once (transactions) | Kafka |
//! | `kafka` | client settings, consumer context (rebalance, lag statistics) | Kafka |
//!
//! The shutdown signal and the [`StageContext`] a stage gets from the process are in
//! [`crate::lifecycle`]; the demo, the load generator and the mock-cluster helpers in `testkit`.

pub mod batcher;
mod error;
mod infer;
pub mod kafka;
pub mod offsets;
mod producer;
pub mod router;
mod source;

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::producer::{FutureProducer, Producer};
use tokio::sync::{mpsc, Semaphore};

use crate::attribute::PerAttribute;
use crate::codec::{Decision, EmotionPrediction, FeatureDecoder, Framing};
use crate::config::{Config, DeliveryMode};
use crate::lifecycle::StageContext;
use crate::model::{LoadedModel, ModelOptions, ModelPool};
use crate::policy::RejectPolicy;

pub use error::PipelineError;

use kafka::{InferContext, SharedBook};
use producer::Sink;
use router::Router;
use source::Source;

/// What an infer stage did, returned when it stops.
#[derive(Debug, Clone, Default)]
pub struct InferReport {
    /// Predictions produced (accepted + rejected).
    pub predictions: u64,
    pub accepted: u64,
    pub rejected: u64,
    /// Dead letters by reason.
    pub dead_lettered: BTreeMap<String, u64>,
    /// Sum of each attribute's entropy over the predictions (for means).
    pub entropy_sum: PerAttribute<f64>,
    pub batches: u64,
    /// When the last batch was delivered.
    pub last_output_at: Option<Instant>,
}

impl InferReport {
    fn add_prediction(&mut self, p: &EmotionPrediction) {
        self.predictions += 1;
        match p.decision {
            Decision::Accepted => self.accepted += 1,
            Decision::Rejected => self.rejected += 1,
        }
        for (a, x) in p.attributes.iter() {
            self.entropy_sum[a] += f64::from(x.entropy);
        }
    }

    /// Dead letters of every reason.
    pub fn dead_lettered_total(&self) -> u64 {
        self.dead_lettered.values().sum()
    }

    /// Mean entropy per attribute (NaN when nothing was predicted).
    pub fn mean_entropy(&self) -> PerAttribute<f64> {
        self.entropy_sum.map(|_, s| s / self.predictions as f64)
    }
}

/// The infer stage, with its model loaded and its policy resolved (everything that can fail
/// before touching Kafka has failed by the time this exists).
pub struct InferStage {
    ctx: StageContext,
    pool: Arc<ModelPool>,
    policy: RejectPolicy,
}

impl InferStage {
    /// Loads and verifies the model, starts the worker pool and resolves the reject policy.
    pub fn new(ctx: StageContext) -> Result<InferStage, PipelineError> {
        let config = &ctx.config;
        let loaded = LoadedModel::load(&config.model.dir)?;
        let policy = RejectPolicy::new(&config.policy, &loaded.manifest)?;
        // Warmed with a full batch, so the first records consumed do not pay ORT's first run.
        let options = ModelOptions { warm_up_rows: config.batch.max_records, ..config.model.options() };
        let pool = ModelPool::new(&loaded, &options, config.model.workers, config.batch.max_in_flight)?;
        ctx.metrics
            .set_execution_provider(pool.provider().kind.as_str(), pool.provider().fallback_reason.is_some());
        ctx.metrics.coverage_target.set(policy.coverage());
        ctx.health.model_loaded.store(true, Ordering::Relaxed);
        tracing::info!(
            model = %loaded.manifest.model_ref(),
            provider = %pool.provider().kind,
            workers = pool.workers(),
            coverage = policy.coverage(),
            thresholds = ?policy.thresholds(),
            "model loaded"
        );
        Ok(InferStage { ctx, pool: Arc::new(pool), policy })
    }

    /// The resolved reject policy.
    pub fn policy(&self) -> &RejectPolicy {
        &self.policy
    }

    /// The execution provider the model runs on.
    pub fn provider(&self) -> crate::model::ProviderKind {
        self.pool.provider().kind
    }

    /// Runs until `ctx.shutdown` fires, then drains within `shutdown.drain_deadline_ms`.
    pub async fn run(self) -> Result<InferReport, PipelineError> {
        let InferStage { ctx, pool, policy } = self;
        let config: &Config = &ctx.config;
        let topic = config.kafka.topics.input.clone();
        let book = Arc::new(SharedBook::default());
        let context = InferContext {
            topic: topic.clone(),
            book: Arc::clone(&book),
            metrics: Arc::clone(&ctx.metrics),
            health: Arc::clone(&ctx.health),
            revoke_wait: config.shutdown.drain_deadline(),
            revoked: Mutex::new(Vec::new()),
            revoked_flag: AtomicBool::new(false),
            paused: AtomicBool::new(false),
        };
        let consumer: StreamConsumer<InferContext> = kafka::consumer_config(config, &config.kafka.group_id)
            .create_with_context(context)
            .map_err(PipelineError::kafka("create consumer"))?;
        let consumer = Arc::new(consumer);
        let producer: FutureProducer =
            kafka::producer_config(config).create().map_err(PipelineError::kafka("create producer"))?;
        if config.delivery.mode == DeliveryMode::ExactlyOnce {
            let timeout = config.delivery.commit_timeout();
            let p = producer.clone();
            tokio::task::spawn_blocking(move || p.init_transactions(timeout))
                .await
                .map_err(|e| PipelineError::Fatal(format!("init_transactions panicked: {e}")))?
                .map_err(PipelineError::kafka("init transactions (does the broker support them?)"))?;
        }
        consumer.subscribe(&[topic.as_str()]).map_err(PipelineError::kafka("subscribe"))?;
        tracing::info!(
            topic = %topic,
            group = %config.kafka.group_id,
            mode = ?config.delivery.mode,
            max_records = config.batch.max_records,
            max_wait_ms = config.batch.max_wait_ms,
            "infer stage consuming"
        );

        let decoder = FeatureDecoder::new(pool.manifest().feature_dims)
            .with_schema_ids(config.kafka.input_schema_ids.iter().copied());
        let (to_sink, from_source) = mpsc::channel(config.batch.max_in_flight);
        let source = Source {
            consumer: Arc::clone(&consumer),
            topic: topic.clone(),
            batcher: batcher::Batcher::new(decoder, config.batch.max_records, config.batch.max_wait()),
            book: Arc::clone(&book),
            pool: Arc::clone(&pool),
            permits: Arc::new(Semaphore::new(config.batch.max_in_flight)),
            to_sink,
            metrics: Arc::clone(&ctx.metrics),
            consumed: ctx.metrics.records_consumed.with_label_values(&[topic.as_str()]),
            epoch: 0,
            stash: VecDeque::new(),
        };
        let output_framing = match config.kafka.output_schema_id {
            Some(schema_id) => Framing::Confluent { schema_id },
            None => Framing::SingleObject,
        };
        let sink = Sink {
            consumer: Arc::clone(&consumer),
            producer: producer.clone(),
            mode: config.delivery.mode,
            book: Arc::clone(&book),
            router: Router { policy, input_topic: topic.clone(), output_framing },
            topics: config.kafka.topics.clone(),
            metrics: Arc::clone(&ctx.metrics),
            timeout: config.delivery.commit_timeout(),
            transaction_max_batches: config.delivery.transaction_max_batches,
            transaction_max_age: config.delivery.transaction_max_age(),
            report: InferReport::default(),
        };

        let mut source_task = tokio::spawn(source.run(ctx.shutdown.clone()));
        let mut sink_task = tokio::spawn(sink.run(from_source));
        // Whichever half ends first: on error the other is stopped; on shutdown the source
        // ends and the sink drains under the deadline.
        let shutdown = ctx.shutdown.clone();
        let outcome = tokio::select! {
            source_result = &mut source_task => {
                let source_result = flatten(source_result);
                if let Err(e) = &source_result {
                    tracing::error!(error = %e, "infer source stopped");
                    sink_task.abort();
                }
                let drained = tokio::time::timeout(config.shutdown.drain_deadline(), &mut sink_task).await;
                match (source_result, drained) {
                    (Err(e), _) => Err(e),
                    (Ok(()), Ok(sink_result)) => flatten(sink_result),
                    (Ok(()), Err(_)) => {
                        sink_task.abort();
                        tracing::warn!(
                            deadline_ms = config.shutdown.drain_deadline_ms,
                            "drain deadline passed; uncommitted batches will be re-read by the next owner"
                        );
                        Err(PipelineError::Fatal("drain deadline passed".into()))
                    }
                }
            }
            sink_result = &mut sink_task => {
                source_task.abort();
                match flatten(sink_result) {
                    Ok(report) if shutdown.is_triggered() => Ok(report),
                    Ok(_) => Err(PipelineError::Fatal("the producing half stopped unexpectedly".into())),
                    Err(e) => Err(e),
                }
            }
        };
        if config.delivery.mode == DeliveryMode::ExactlyOnce && outcome.is_err() {
            // Leave no transaction open: the next owner's read_committed would wait on it.
            let timeout = Duration::from_secs(5);
            let _ = tokio::task::block_in_place(|| producer.abort_transaction(timeout));
        }
        let _ = tokio::task::block_in_place(|| producer.flush(Duration::from_secs(5)));
        consumer.unsubscribe();
        ctx.health.assigned_partitions.store(0, Ordering::Relaxed);
        outcome
    }
}

fn flatten<T>(joined: Result<Result<T, PipelineError>, tokio::task::JoinError>) -> Result<T, PipelineError> {
    joined.map_err(|e| PipelineError::Fatal(format!("task failed: {e}")))?
}
