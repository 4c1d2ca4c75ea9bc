//! The streaming infer stage (DESIGN §1) as a chain of steps driven by one thread:
//!
//! ```text
//! Kafka ──poll──► processor ──submit──► batch ──► infer ──► route ──► deliver ──► Kafka
//! (input)         (owns the consumer;    (Batcher)  (ModelPool  (Router,   (acked | transactional;
//!                  pause, rewind, join)              threads)    pure)      offset book, commits)
//! ```
//! A step that is full hands the item back (backpressure as a value); a retry throws the
//! chain away and builds a fresh one; a revocation joins it. See `step` for the contract.
//!
//! | file | job | I/O? |
//! |---|---|---|
//! | `step` | the `Step` trait: poll / submit (→ `Rejected`) / join / terminate | — |
//! | `batcher` | micro-batches closing on `max_records` / `max_wait`; decode into the tensor; DLQ entries | pure |
//! | `batch_step` | `BatchStep`: the batcher as a step | — |
//! | `infer_step` | `InferStep`: hand-off to the [`crate::model::ModelPool`] threads, answers in order | threads |
//! | `router` | predictions → accepted/rejected, bad input → DLQ, keys and headers | pure |
//! | `route_step` | `RouteStep`: the router as a step | — |
//! | `offsets` | the offset book: batches being delivered, completed positions, rewind points | pure |
//! | `transaction_policy` | when an exactly-once transaction commits | pure |
//! | `deliver_step` | `DeliverStep`: at-least-once (idempotent) or exactly-once (transactions) | Kafka |
//! | `processor` | the thread owning the consumer: poll → submit, pause, rebalance, retry | Kafka |
//! | `infer_metrics` | `InferMetrics`, the stage's events, and the service's Prometheus implementation | — |
//! | `kafka` | client settings of the stage's consumer and producer | — |
//!
//! The shutdown signal and the [`StageContext`] a stage gets from the process are in
//! [`crate::lifecycle`]; the demo, the load generator and the mock-cluster helpers in `testkit`.

mod batch_step;
pub mod batcher;
mod deliver_step;
mod error;
pub mod infer_metrics;
mod infer_step;
pub mod kafka;
pub mod offsets;
mod processor;
mod producer_slot;
mod route_step;
pub mod router;
mod step;
pub mod transaction_policy;

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::consumer::Consumer;
use rdkafka::producer::{FutureProducer, Producer};

use producer_slot::ProducerSlot;

use crate::attribute::PerAttribute;
use crate::codec::{Decision, EmotionPrediction, FeatureDecoder, Framing};
use crate::config::{Config, DeliveryMode};
use crate::lifecycle::StageContext;
use crate::model::{LoadedModel, ModelOptions, ModelPool};
use crate::policy::RejectPolicy;

pub use error::PipelineError;
pub use infer_metrics::{InferMetrics, ServiceMetrics};

use deliver_step::DeliverSettings;
use processor::{ChainFactory, InferConsumer, InferContext, StopFlags};
use router::Router;
use transaction_policy::TransactionPolicy;

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

    /// Adds what another part of the run delivered (a chain's report outlives the chain).
    pub fn merge(&mut self, other: InferReport) {
        self.predictions += other.predictions;
        self.accepted += other.accepted;
        self.rejected += other.rejected;
        for (reason, n) in other.dead_lettered {
            *self.dead_lettered.entry(reason).or_default() += n;
        }
        for (a, sum) in other.entropy_sum.iter() {
            self.entropy_sum[a] += *sum;
        }
        self.batches += other.batches;
        self.last_output_at = self.last_output_at.max(other.last_output_at);
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

/// Publishes the manifest's recorded dev gains and warns for every attribute whose reject
/// option was measured to hurt (a model calibrated with `--allow-harmful-reject`); a manifest
/// from before calibration recorded gains gets one informational line instead.
fn warn_if_reject_hurts(
    manifest: &crate::model::Manifest,
    score: crate::uncertainty::ScoreKind,
    metrics: &crate::telemetry::Metrics,
) {
    let Some((calibration, gains)) = manifest.calibration.as_ref().and_then(|c| Some((c, c.gains(score)?)))
    else {
        tracing::info!(%score, "the manifest records no dev reject gains for this score (calibrated before they were recorded)");
        return;
    };
    for (a, gain) in gains.iter() {
        metrics.calibration_dev_gain.with_label_values(&[a.as_str()]).set(*gain);
    }
    for a in calibration.harmful(score) {
        tracing::warn!(
            attribute = %a,
            %score,
            dev_gain_at_60 = gains[a],
            "on dev, rejecting by this score LOWERS {a}'s CCC: accepted {a} predictions are not more reliable; \
             retrain (see docs/model-card.md) or decide on another attribute (policy.decision)"
        );
    }
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
        warn_if_reject_hurts(&loaded.manifest, policy.score(), &ctx.metrics);
        ctx.health.model_loaded.store(true, Ordering::Relaxed);
        tracing::info!(
            model = %loaded.manifest.model_ref(),
            provider = %pool.provider().kind,
            workers = pool.workers(),
            coverage = policy.coverage(),
            score = %policy.score(),
            thresholds = ?policy.thresholds(),
            "model loaded"
        );
        if policy.coverage_of() == crate::policy::CoverageOf::Attributes {
            tracing::warn!(
                coverage = policy.coverage(),
                decision = %config.policy.decision,
                "policy.coverage is each attribute's accept rate here, not the record rate: the manifest has \
                 no record thresholds for this rule (calibrated before they existed: rerun `emogate calibrate`) \
                 or uncertainty transfer is on"
            );
        }
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
    ///
    /// The consumer, the chain and the Kafka calls live on one dedicated thread (see
    /// `processor`); this future starts it, tells it to drain on shutdown, and returns its
    /// report. Dropping the future stops the thread too and waits for it (at most
    /// 15 s): nothing the stage started outlives it.
    pub async fn run(self) -> Result<InferReport, PipelineError> {
        let InferStage { ctx, pool, policy } = self;
        let config: &Config = &ctx.config;
        let topic = config.kafka.topics.input.clone();
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
        let metrics: Arc<dyn InferMetrics> =
            Arc::new(ServiceMetrics::new(Arc::clone(&ctx.metrics), Arc::clone(&ctx.health), &topic));
        let producer_slot = ProducerSlot::new(
            kafka::producer_config(config),
            producer,
            config.delivery.mode == DeliveryMode::ExactlyOnce,
            config.delivery.commit_timeout(),
            Arc::clone(&metrics),
        );
        let output_framing = match config.kafka.output_schema_id {
            Some(schema_id) => Framing::Confluent { schema_id },
            None => Framing::SingleObject,
        };
        let factory = ChainFactory {
            decoder: FeatureDecoder::new(pool.manifest().feature_dims)
                .with_schema_ids(config.kafka.input_schema_ids.iter().copied())
                .with_feature_set(&pool.manifest().feature_set),
            max_records: config.batch.max_records,
            max_wait: config.batch.max_wait(),
            pool: Arc::clone(&pool),
            max_in_flight: config.batch.max_in_flight,
            router: Router { policy, input_topic: topic.clone(), output_framing },
            deliver: DeliverSettings {
                producer: Arc::clone(&producer_slot),
                mode: config.delivery.mode,
                topics: config.kafka.topics.clone(),
                input_topic: topic.clone(),
                timeout: config.delivery.commit_timeout(),
                transactions: TransactionPolicy {
                    max_batches: config.delivery.transaction_max_batches,
                    max_age: config.delivery.transaction_max_age(),
                },
                // Exactly-once: a transaction may hold up to transaction_max_batches produced
                // batches (the policy commits when it does), so the step must take that many;
                // refusing earlier would stall the chain until the transaction's age ran out.
                max_batches: match config.delivery.mode {
                    DeliveryMode::ExactlyOnce => config.delivery.transaction_max_batches.max(1),
                    DeliveryMode::AtLeastOnce => config.batch.max_in_flight,
                },
                metrics: Arc::clone(&metrics),
            },
        };
        let context =
            InferContext::new(topic.clone(), Arc::clone(&metrics), factory, config.shutdown.drain_deadline());
        let consumer: InferConsumer = kafka::consumer_config(config, &config.kafka.group_id)
            .create_with_context(context)
            .map_err(PipelineError::kafka("create consumer"))?;
        consumer.subscribe(&[topic.as_str()]).map_err(PipelineError::kafka("subscribe"))?;
        tracing::info!(
            topic = %topic,
            group = %config.kafka.group_id,
            mode = ?config.delivery.mode,
            max_records = config.batch.max_records,
            max_wait_ms = config.batch.max_wait_ms,
            "infer stage consuming"
        );

        let stop = Arc::new(StopFlags::default());
        let mut abandon_on_drop = AbandonOnDrop { stop: Arc::clone(&stop), thread: None };
        let (done_tx, mut done_rx) = tokio::sync::oneshot::channel();
        let thread_stop = Arc::clone(&stop);
        let drain_deadline = config.shutdown.drain_deadline();
        let exactly_once = config.delivery.mode == DeliveryMode::ExactlyOnce;
        let thread = std::thread::Builder::new()
            .name("emogate-infer".to_string())
            .spawn(move || {
                let consumer = Arc::new(consumer);
                let outcome = processor::run(Arc::clone(&consumer), &thread_stop, drain_deadline);
                match &outcome {
                    Ok(report) => tracing::info!(
                        predictions = report.predictions,
                        batches = report.batches,
                        "infer stage stopped"
                    ),
                    Err(e) => tracing::error!(error = %e, "infer stage failed"),
                }
                finish(consumer, producer_slot.current().as_ref(), exactly_once, outcome.is_err(), &*metrics);
                // The receiver is gone only if the caller dropped the future; nothing to report then.
                let _ = done_tx.send(outcome);
            })
            .map_err(|e| PipelineError::Fatal(format!("cannot start the infer thread: {e}")))?;
        abandon_on_drop.thread = Some(thread);
        let thread_died = |_| Err(PipelineError::Fatal("the infer thread panicked".into()));
        let mut shutdown = ctx.shutdown.clone();
        tokio::select! {
            result = &mut done_rx => return result.unwrap_or_else(thread_died),
            () = shutdown.wait() => {}
        }
        stop.drain.store(true, Ordering::SeqCst);
        done_rx.await.unwrap_or_else(thread_died)
    }
}

/// Leaves no transaction open (the next owner's `read_committed` would wait on it), flushes
/// what was produced, and leaves the group.
fn finish(
    consumer: Arc<processor::InferConsumer>,
    producer: Option<&FutureProducer>,
    exactly_once: bool,
    failed: bool,
    metrics: &dyn InferMetrics,
) {
    if let Some(producer) = producer {
        if exactly_once && failed {
            let _ = producer.abort_transaction(Duration::from_secs(5));
        }
        let _ = producer.flush(Duration::from_secs(5));
    }
    consumer.unsubscribe();
    drop(consumer);
    metrics.stopped();
}

/// How long dropping the `run` future waits for the infer thread to stop (it leaves no
/// transaction open, flushes for at most 5 s and closes the consumer).
const ABANDON_JOIN_LIMIT: Duration = Duration::from_secs(15);

/// Tells the thread to stop at once when the `run` future is dropped (a task aborted, a
/// caller that gave up), and waits for it: when the drop returns, the consumer has left the
/// group and the producer is closed, so a successor started next (a restart in the same
/// process, a test's "crash") joins a group the old instance is no longer in. Without the
/// wait the successor's join raced the old member's leave, and Tansu 0.6 then never assigned
/// it partitions (the ignored `broker_crash_and_restart_loses_nothing`, issue 17).
struct AbandonOnDrop {
    stop: Arc<StopFlags>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for AbandonOnDrop {
    fn drop(&mut self) {
        self.stop.abandon.store(true, Ordering::SeqCst);
        let Some(thread) = self.thread.take() else { return };
        let deadline = std::time::Instant::now() + ABANDON_JOIN_LIMIT;
        while !thread.is_finished() && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        if thread.is_finished() {
            let _ = thread.join();
        } else {
            tracing::warn!(
                limit_s = ABANDON_JOIN_LIMIT.as_secs(),
                "the infer thread did not stop in time after the stage was dropped; it finishes in the background"
            );
        }
    }
}
