//! Measurement helpers behind `emogate bench`: raw ONNX Runtime throughput on pre-decoded
//! batches and the process's peak memory.
//!
//! Raw throughput is the ceiling the streaming pipeline is compared against (DESIGN §3:
//! `e2e_to_raw_ratio`), so it is measured the way the pipeline runs inference: through the
//! same [`ModelPool`], with batches already in the pool's row-major layout.

use std::time::Instant;

use rand::{Rng, SeedableRng};
use serde::Serialize;

use crate::model::{LoadedModel, ModelError, ModelOptions, ModelPool};

/// How to run the raw measurement.
#[derive(Debug, Clone)]
pub struct RawBenchConfig {
    pub batch: usize,
    /// Records to time (rounded up to whole batches); each session runs one warm-up batch first.
    pub records: usize,
    pub workers: usize,
    pub options: ModelOptions,
    pub seed: u64,
}

/// Result of the raw measurement.
#[derive(Debug, Clone, Serialize)]
pub struct RawBenchResult {
    pub records: usize,
    pub batches: usize,
    pub seconds: f64,
    pub records_per_sec: f64,
    /// Per-batch wall time percentiles, milliseconds.
    pub batch_p50_ms: f64,
    pub batch_p99_ms: f64,
    pub execution_provider: String,
}

impl RawBenchResult {
    /// Mean wall time per batch, milliseconds (one worker: the model's own batch time).
    pub fn batch_mean_ms(&self) -> f64 {
        1e3 * self.seconds / self.batches.max(1) as f64
    }
}

/// Runs `records` rows of deterministic random features through a pool, `workers` batches in
/// flight at a time, and reports the sustained rate.
pub fn raw_inference(model: &LoadedModel, config: &RawBenchConfig) -> Result<RawBenchResult, ModelError> {
    let batch = config.batch.max(1);
    let dims = model.manifest.feature_dims;
    let workers = config.workers.max(1);
    // Every session warms up with one batch before the clock starts, as in the service.
    let options = ModelOptions { warm_up_rows: batch, ..config.options.clone() };
    let pool = ModelPool::new(model, &options, workers, workers)?;
    let mut rng = rand::rngs::StdRng::seed_from_u64(config.seed);
    let template: Vec<f32> = (0..batch * dims).map(|_| rng.random_range(-2.0f32..2.0)).collect();

    let batches = config.records.div_ceil(batch).max(1);
    let (tx, rx) = std::sync::mpsc::channel();
    let started = Instant::now();
    let mut in_flight = 0;
    let mut latencies = Vec::with_capacity(batches);
    let mut failure = None;
    for _ in 0..batches {
        if in_flight == workers {
            let (t, result): (f64, Result<(), ModelError>) = rx.recv().map_err(|_| ModelError::PoolClosed)?;
            latencies.push(t);
            failure = failure.or(result.err());
            in_flight -= 1;
        }
        let tx = tx.clone();
        let submitted = Instant::now();
        pool.submit(template.clone(), move |r| {
            let _ = tx.send((submitted.elapsed().as_secs_f64() * 1e3, r.predictions.map(|_| ())));
        })?;
        in_flight += 1;
    }
    for _ in 0..in_flight {
        let (t, result) = rx.recv().map_err(|_| ModelError::PoolClosed)?;
        latencies.push(t);
        failure = failure.or(result.err());
    }
    let seconds = started.elapsed().as_secs_f64();
    if let Some(e) = failure {
        return Err(e);
    }
    latencies.sort_by(f64::total_cmp);
    let records = batches * batch;
    Ok(RawBenchResult {
        records,
        batches,
        seconds,
        records_per_sec: records as f64 / seconds,
        batch_p50_ms: percentile(&latencies, 0.50),
        batch_p99_ms: percentile(&latencies, 0.99),
        execution_provider: pool.provider().kind.to_string(),
    })
}

/// Nearest-rank percentile of sorted values (0 for an empty slice).
pub fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Median of `values` (mean of the middle two for an even count; 0 for none).
pub fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    match sorted.len() {
        0 => 0.0,
        n if n % 2 == 1 => sorted[n / 2],
        n => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
    }
}

/// Each end-to-end rate over the mean of the raw rates measured just before and just after it
/// (`raw` has one more entry than `e2e`; extra raw runs are ignored, a missing closing one
/// leaves the last ratio unbracketed).
///
/// Why bracketed: on a shared VM the cores' speed drifts within seconds (two adjacent raw runs
/// differed with a standard deviation of 13 %, docs/benchmarks.md), so a raw run taken only
/// before the end-to-end run mixes that drift into the ratio; averaging both neighbours cancels
/// a linear drift and halves the variance of the raw side's independent noise.
pub fn bracketed_ratios(raw: &[f64], e2e: &[f64]) -> Vec<f64> {
    e2e.iter()
        .enumerate()
        .map(|(i, e)| {
            let neighbours: Vec<f64> = raw.iter().skip(i).take(2).copied().collect();
            e / (neighbours.iter().sum::<f64>() / neighbours.len().max(1) as f64)
        })
        .collect()
}

/// Peak resident set size of this process in MiB (`VmHWM`), when the OS reports it.
pub fn peak_rss_mb() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 0.5), 50.0);
        assert_eq!(percentile(&v, 0.99), 99.0);
        assert_eq!(percentile(&v, 1.0), 100.0);
        assert_eq!(percentile(&[3.0], 0.99), 3.0);
        assert_eq!(percentile(&[], 0.5), 0.0);
    }

    #[test]
    fn medians_of_odd_even_and_empty_sets() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), 2.5);
        assert_eq!(median(&[f64::INFINITY, 1.0, 0.5]), 1.0);
        assert_eq!(median(&[]), 0.0);
    }

    #[test]
    fn ratios_are_bracketed_by_the_raw_runs_on_either_side() {
        // Raw speed drifts up linearly; each e2e run sits halfway and runs at 90 % of it.
        let raw = [1000.0, 1200.0, 1400.0];
        let e2e = [990.0, 1170.0];
        let ratios = bracketed_ratios(&raw, &e2e);
        assert_eq!(ratios.len(), 2);
        assert!((ratios[0] - 0.9).abs() < 1e-12 && (ratios[1] - 0.9).abs() < 1e-12, "{ratios:?}");
        // Without the closing raw run the last ratio uses the raw run before it alone.
        assert_eq!(bracketed_ratios(&[1000.0], &[900.0]), vec![0.9]);
        assert!(bracketed_ratios(&raw, &[]).is_empty());
    }

    #[test]
    fn peak_rss_is_reported_on_linux() {
        let rss = peak_rss_mb().expect("VmHWM in /proc/self/status");
        assert!(rss > 1.0 && rss < 64.0 * 1024.0, "{rss}");
    }
}
