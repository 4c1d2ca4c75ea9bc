//! `emogate produce`: the load generator (synthetic records) and a corpus replayer.
//!
//! Corpus layout (the one `emogate synth` writes and MSP-Podcast exports can be converted to):
//! `DIR/features.csv` — openSMILE CSV, an id column (`name`, `utterance_id` or `FileName`) and
//! the features, `,` or `;` separated, quotes and `frameTime`/`class` columns ignored — or
//! `DIR/features.npy` (float32 `[N, D]`, C order) with `DIR/features_index.csv` (header, then
//! one utterance id per row, first column).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures_util::future::join_all;
use rdkafka::producer::FutureRecord;
use rdkafka::util::Timeout;

use super::synthetic::SyntheticFeatures;
use crate::codec::{encode_feature_record, FeatureRecord, Framing};
use crate::featurize;
use crate::pipeline::PipelineError;

/// Where the records come from.
#[derive(Debug, Clone)]
pub enum RecordSource {
    Synthetic {
        count: usize,
        dims: usize,
        seed: u64,
    },
    Corpus(PathBuf),
    /// Audio files or folders, featurized with openSMILE on the way (`produce --audio`): the
    /// upstream producer of DESIGN §1. `opensmile` overrides where the library is looked for.
    Audio {
        inputs: Vec<PathBuf>,
        opensmile: Option<PathBuf>,
        jobs: usize,
    },
}

/// Load generator settings.
#[derive(Debug, Clone)]
pub struct ProduceOptions {
    pub brokers: String,
    pub topic: String,
    pub source: RecordSource,
    /// Records per second; `None` sends as fast as the producer takes them.
    pub rate: Option<f64>,
    pub framing: Framing,
    /// Extra librdkafka properties (SASL/TLS).
    pub properties: Vec<(String, String)>,
}

/// What was sent.
#[derive(Debug, Clone, PartialEq)]
pub struct ProduceReport {
    pub records: usize,
    pub seconds: f64,
    /// Audio files that gave no record, each with its reason (`RecordSource::Audio` only).
    pub skipped: Vec<String>,
}

/// Errors reading a corpus (reported through [`PipelineError::Fatal`] with the path).
fn corpus_error(path: &Path, reason: impl std::fmt::Display) -> PipelineError {
    PipelineError::Fatal(format!("corpus {}: {reason}", path.display()))
}

/// Reads a corpus into records (ids, features; other fields empty).
pub fn read_corpus(dir: &Path) -> Result<Vec<FeatureRecord>, PipelineError> {
    let npy = dir.join("features.npy");
    let rows: Vec<(String, Vec<f32>)> = if npy.exists() {
        let index = dir.join("features_index.csv");
        let ids: Vec<String> = std::fs::read_to_string(&index)
            .map_err(|e| corpus_error(&index, e))?
            .lines()
            .skip(1)
            .filter(|l| !l.trim().is_empty())
            .map(|l| l.split(',').next().unwrap_or("").trim_matches('"').to_string())
            .collect();
        let (data, rows, cols) = read_npy_f32(&npy)?;
        if rows != ids.len() {
            return Err(corpus_error(
                &npy,
                format!("{rows} rows but {} ids in features_index.csv", ids.len()),
            ));
        }
        ids.into_iter().zip(data.chunks(cols.max(1)).map(<[f32]>::to_vec)).collect()
    } else {
        let csv = dir.join("features.csv");
        let text = std::fs::read_to_string(&csv).map_err(|e| corpus_error(&csv, e))?;
        parse_features_csv(&text).map_err(|e| corpus_error(&csv, e))?
    };
    Ok(rows
        .into_iter()
        .map(|(utterance_id, features)| FeatureRecord {
            utterance_id,
            speaker_id: None,
            source: Some(dir.display().to_string()),
            timestamp_ms: 0,
            feature_set: "ComParE_2016".into(),
            features,
        })
        .collect())
}

/// Parses an openSMILE-style CSV into (id, features) rows.
pub fn parse_features_csv(text: &str) -> Result<Vec<(String, Vec<f32>)>, String> {
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    let header = lines.next().ok_or("empty file")?;
    let sep = if header.matches(';').count() > header.matches(',').count() { ';' } else { ',' };
    let clean = |s: &str| s.trim().trim_matches('"').trim_matches('\'').to_string();
    let names: Vec<String> = header.split(sep).map(clean).collect();
    let id_col = names
        .iter()
        .position(|n| ["name", "utterance_id", "filename"].contains(&n.to_ascii_lowercase().as_str()))
        .ok_or("no id column (name, utterance_id or FileName)")?;
    let skip: Vec<usize> = names
        .iter()
        .enumerate()
        .filter(|(i, n)| *i == id_col || ["frametime", "class"].contains(&n.to_ascii_lowercase().as_str()))
        .map(|(i, _)| i)
        .collect();
    lines
        .enumerate()
        .map(|(row, line)| {
            let cells: Vec<String> = line.split(sep).map(clean).collect();
            if cells.len() != names.len() {
                return Err(format!("line {}: {} cells, header has {}", row + 2, cells.len(), names.len()));
            }
            let features = cells
                .iter()
                .enumerate()
                .filter(|(i, _)| !skip.contains(i))
                .map(|(i, c)| {
                    c.parse::<f32>().map_err(|_| {
                        format!("line {}: `{c}` in column {} is not a number", row + 2, names[i])
                    })
                })
                .collect::<Result<Vec<f32>, String>>()?;
            Ok((cells[id_col].clone(), features))
        })
        .collect()
}

/// Minimal reader for a 2-D little-endian float32 C-order `.npy` file.
fn read_npy_f32(path: &Path) -> Result<(Vec<f32>, usize, usize), PipelineError> {
    let bytes = std::fs::read(path).map_err(|e| corpus_error(path, e))?;
    if bytes.len() < 10 || &bytes[..6] != b"\x93NUMPY" {
        return Err(corpus_error(path, "not a .npy file"));
    }
    let (header_len, start) = match bytes[6] {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        _ if bytes.len() >= 12 => {
            (u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize, 12)
        }
        _ => return Err(corpus_error(path, "truncated header")),
    };
    let header = std::str::from_utf8(
        bytes.get(start..start + header_len).ok_or_else(|| corpus_error(path, "truncated header"))?,
    )
    .map_err(|_| corpus_error(path, "header is not UTF-8"))?;
    if !header.contains("'<f4'") || header.contains("'fortran_order': True") {
        return Err(corpus_error(
            path,
            format!("expected little-endian float32 in C order, header {header}"),
        ));
    }
    let shape = header
        .split("'shape':")
        .nth(1)
        .and_then(|s| s.split(')').next())
        .ok_or_else(|| corpus_error(path, "no shape"))?;
    let dims: Vec<usize> = shape
        .trim_start_matches([' ', '('])
        .split(',')
        .filter(|s| !s.trim().is_empty())
        .map(|s| s.trim().parse::<usize>())
        .collect::<Result<_, _>>()
        .map_err(|_| corpus_error(path, format!("bad shape {shape}")))?;
    let [rows, cols] = dims[..] else {
        return Err(corpus_error(path, format!("expected 2-D, shape {shape}")));
    };
    let data = &bytes[start + header_len..];
    if data.len() != rows * cols * 4 {
        return Err(corpus_error(path, format!("{} data bytes for shape {rows}x{cols}", data.len())));
    }
    Ok((data.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect(), rows, cols))
}

/// Sends the records, paced to `rate` when given.
pub async fn produce(options: &ProduceOptions) -> Result<ProduceReport, PipelineError> {
    let producer = super::cluster::producer(&options.brokers, &options.properties)?;
    let skipped = Arc::new(Mutex::new(Vec::new()));
    let now_ms = || SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64);
    let mut records: Box<dyn Iterator<Item = FeatureRecord>> = match &options.source {
        RecordSource::Synthetic { count, dims, seed } => {
            let mut synth = SyntheticFeatures::new(*dims, *seed);
            Box::new((0..*count).map(move |_| synth.record(now_ms())))
        }
        RecordSource::Corpus(dir) => Box::new(read_corpus(dir)?.into_iter().map(move |mut r| {
            r.timestamp_ms = now_ms();
            r
        })),
        RecordSource::Audio { inputs, opensmile, jobs } => {
            Box::new(AudioRecords::open(inputs, opensmile.as_deref(), *jobs, skipped.clone())?)
        }
    };
    let started = Instant::now();
    let chunk = options.rate.map_or(500, |r| (r / 20.0).clamp(1.0, 500.0) as usize);
    let mut sent = 0usize;
    loop {
        let batch: Vec<(String, Vec<u8>)> = records
            .by_ref()
            .take(chunk)
            .map(|r| {
                let mut out = Vec::with_capacity(r.features.len() * 4 + 96);
                encode_feature_record(&r, &options.framing, &mut out);
                (r.utterance_id, out)
            })
            .collect();
        if batch.is_empty() {
            break;
        }
        let sends = batch.iter().map(|(id, payload)| {
            producer.send(
                FutureRecord::to(&options.topic).key(id).payload(payload),
                Timeout::After(Duration::from_secs(30)),
            )
        });
        for result in join_all(sends).await {
            result.map_err(|(e, _)| PipelineError::Kafka { action: "produce", source: e })?;
        }
        sent += batch.len();
        if let Some(rate) = options.rate {
            let due = super::latency::due(sent, rate);
            if let Some(wait) = due.checked_sub(started.elapsed()) {
                tokio::time::sleep(wait).await;
            }
        }
    }
    let skipped = std::mem::take(&mut *skipped.lock().unwrap_or_else(|p| p.into_inner()));
    Ok(ProduceReport { records: sent, seconds: started.elapsed().as_secs_f64(), skipped })
}

/// Feature records made from audio files, featurized a chunk of files at a time (so a large
/// folder is never held in memory); files that fail are logged and listed in `skipped`.
struct AudioRecords {
    extractor: featurize::Extractor,
    files: std::vec::IntoIter<featurize::AudioFile>,
    ready: std::collections::VecDeque<FeatureRecord>,
    jobs: usize,
    skipped: Arc<Mutex<Vec<String>>>,
}

impl AudioRecords {
    fn open(
        inputs: &[PathBuf],
        opensmile: Option<&Path>,
        jobs: usize,
        skipped: Arc<Mutex<Vec<String>>>,
    ) -> Result<AudioRecords, PipelineError> {
        let fatal = |e: featurize::FeaturizeError| PipelineError::Fatal(e.to_string());
        let extractor =
            featurize::Extractor::open(&featurize::locate(opensmile).map_err(fatal)?).map_err(fatal)?;
        let found = featurize::discover(inputs).map_err(fatal)?;
        for path in &found.ignored {
            tracing::warn!(path = %path.display(), "not an audio file name; ignored");
        }
        let jobs = jobs.max(1);
        Ok(AudioRecords {
            extractor,
            files: found.files.into_iter(),
            ready: Default::default(),
            jobs,
            skipped,
        })
    }

    fn refill(&mut self) {
        let chunk: Vec<_> = self.files.by_ref().take(16 * self.jobs).collect();
        let (ready, skipped) = (&mut self.ready, &self.skipped);
        let _ = featurize::featurize_files(&self.extractor, &chunk, self.jobs, |outcome| -> Result<(), ()> {
            match outcome {
                featurize::FileOutcome::Done { file, features, .. } => ready.push_back(FeatureRecord {
                    utterance_id: file.utterance_id,
                    speaker_id: None,
                    source: Some(file.path.display().to_string()),
                    timestamp_ms: SystemTime::now()
                        .duration_since(UNIX_EPOCH)
                        .map_or(0, |d| d.as_millis() as i64),
                    feature_set: featurize::feature_set_label(),
                    features,
                }),
                featurize::FileOutcome::Failed { error, .. } => {
                    tracing::warn!(%error, reason = error.problem.reason(), "audio file skipped");
                    skipped.lock().unwrap_or_else(|p| p.into_inner()).push(error.to_string());
                }
            }
            Ok(())
        });
    }
}

impl Iterator for AudioRecords {
    type Item = FeatureRecord;

    fn next(&mut self) -> Option<FeatureRecord> {
        while self.ready.is_empty() && self.files.len() > 0 {
            self.refill();
        }
        self.ready.pop_front()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opensmile_csv_with_semicolons_quotes_and_extra_columns() {
        let text = "name;frameTime;f1;f2;class\n'u1';0.0;1.5;-2;?\n\"u2\";0.0;3;4e-3;?\n";
        let rows = parse_features_csv(text).unwrap();
        assert_eq!(rows, vec![("u1".to_string(), vec![1.5, -2.0]), ("u2".to_string(), vec![3.0, 0.004])]);
        assert!(parse_features_csv("a,b\n1,2\n").unwrap_err().contains("id column"));
        assert!(parse_features_csv("name,f\nu,x\n").unwrap_err().contains("not a number"));
    }

    #[test]
    fn npy_corpus_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let header = "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }";
        let mut padded = header.to_string();
        while (10 + padded.len() + 1) % 64 != 0 {
            padded.push(' ');
        }
        padded.push('\n');
        let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
        bytes.extend_from_slice(&(padded.len() as u16).to_le_bytes());
        bytes.extend_from_slice(padded.as_bytes());
        for v in [1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0] {
            bytes.extend_from_slice(&v.to_le_bytes());
        }
        std::fs::write(dir.path().join("features.npy"), bytes).unwrap();
        std::fs::write(dir.path().join("features_index.csv"), "utterance_id\na\nb\n").unwrap();
        let records = read_corpus(dir.path()).unwrap();
        assert_eq!(records.len(), 2);
        assert_eq!(records[1].utterance_id, "b");
        assert_eq!(records[1].features, [4.0, 5.0, 6.0]);
    }
}
