//! Corpus files laid out like MSP-Podcast: features keyed by utterance, one labels row per
//! annotator vote, a partition file. The synthetic generator writes this layout too, so
//! real and synthetic data go through the same loader.
//!
//! ```text
//! DIR/partitions.csv   utterance_id,split,speaker_id        (MSP: FileName,Split_Set,SpkrID)
//!                      split ∈ train|dev|test|unlabeled     (MSP: Train|Development|Test1|Test2)
//! DIR/labels.csv       utterance_id,annotator_id,valence,arousal,dominance
//!                      (MSP labels_detailed: FileName,WorkerID,EmoVal,EmoAct,EmoDom)
//! DIR/features.csv     openSMILE CSV: utterance id column (`name`, `utterance_id` or
//!                      `FileName`), then the 6,373 features; `,` or `;` separated; quotes
//!                      and `frameTime`/`class` columns are ignored
//!   or DIR/features.npy + DIR/features_index.csv (float32 [N, 6373]; one utterance_id per row)
//! DIR/corpus.json      optional: {"id", "feature_set", "likert_points", "provenance"}
//! ```

use std::collections::HashMap;
use std::io::{BufRead, BufWriter, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::synth::Truth;
use super::{Corpus, CorpusMeta, Split, Utterance, Vote};
use crate::train::{npy, TrainError};

pub const PARTITIONS: &str = "partitions.csv";
pub const LABELS: &str = "labels.csv";
pub const FEATURES_CSV: &str = "features.csv";
pub const FEATURES_NPY: &str = "features.npy";
pub const FEATURES_INDEX: &str = "features_index.csv";
pub const META: &str = "corpus.json";
pub const TRUTH: &str = "synth_truth.csv";

/// How to write the feature matrix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FeatureFormat {
    Npy,
    Csv,
}

/// Writes `corpus` (and, for synthetic corpora, the latent truth) to `dir`.
pub fn write(
    dir: &Path,
    corpus: &Corpus,
    truth: Option<&[Truth]>,
    format: FeatureFormat,
) -> Result<(), TrainError> {
    std::fs::create_dir_all(dir).map_err(TrainError::io(dir))?;
    let create = |name: &str| -> Result<(PathBuf, BufWriter<std::fs::File>), TrainError> {
        let path = dir.join(name);
        let f = std::fs::File::create(&path).map_err(TrainError::io(&path))?;
        Ok((path, BufWriter::with_capacity(1 << 20, f)))
    };
    let meta = serde_json::to_string_pretty(&corpus.meta).expect("corpus metadata serialises");
    std::fs::write(dir.join(META), meta + "\n").map_err(TrainError::io(dir.join(META)))?;

    let (path, mut w) = create(PARTITIONS)?;
    let mut text = String::from("utterance_id,split,speaker_id\n");
    for u in &corpus.utterances {
        text.push_str(&format!("{},{},{}\n", u.id, u.split.as_str(), u.speaker));
    }
    w.write_all(text.as_bytes()).and_then(|_| w.flush()).map_err(TrainError::io(&path))?;

    let (path, mut w) = create(LABELS)?;
    let mut text = String::from("utterance_id,annotator_id,valence,arousal,dominance\n");
    for (u, votes) in corpus.utterances.iter().zip(&corpus.votes) {
        for v in votes {
            let [a, b, c] = v.ratings;
            text.push_str(&format!("{},{},{a},{b},{c}\n", u.id, v.annotator));
        }
    }
    w.write_all(text.as_bytes()).and_then(|_| w.flush()).map_err(TrainError::io(&path))?;

    match format {
        FeatureFormat::Npy => {
            npy::write_f32(&dir.join(FEATURES_NPY), &corpus.features, corpus.utterances.len(), corpus.dims)?;
            let (path, mut w) = create(FEATURES_INDEX)?;
            let mut text = String::from("utterance_id\n");
            corpus.utterances.iter().for_each(|u| {
                text.push_str(&u.id);
                text.push('\n')
            });
            w.write_all(text.as_bytes()).and_then(|_| w.flush()).map_err(TrainError::io(&path))?;
        }
        FeatureFormat::Csv => {
            let (path, mut w) = create(FEATURES_CSV)?;
            let mut line = String::from("name");
            (0..corpus.dims).for_each(|j| line.push_str(&format!(",f{j}")));
            line.push('\n');
            w.write_all(line.as_bytes()).map_err(TrainError::io(&path))?;
            for (i, u) in corpus.utterances.iter().enumerate() {
                line.clear();
                line.push_str(&u.id);
                corpus.row(i).iter().for_each(|v| line.push_str(&format!(",{v}")));
                line.push('\n');
                w.write_all(line.as_bytes()).map_err(TrainError::io(&path))?;
            }
            w.flush().map_err(TrainError::io(&path))?;
        }
    }

    if let Some(truth) = truth {
        let (path, mut w) = create(TRUTH)?;
        let mut text = String::from("utterance_id,ambiguity,valence,arousal,dominance\n");
        for (u, t) in corpus.utterances.iter().zip(truth) {
            text.push_str(&format!("{},{},{},{},{}\n", u.id, t.ambiguity, t.y[0], t.y[1], t.y[2]));
        }
        w.write_all(text.as_bytes()).and_then(|_| w.flush()).map_err(TrainError::io(&path))?;
    }
    Ok(())
}

/// Rows of a small CSV file: header names (lower-cased, unquoted) and the data rows.
struct Table {
    path: PathBuf,
    header: Vec<String>,
    rows: Vec<(usize, Vec<String>)>,
}

fn split_line(line: &str) -> Vec<String> {
    let sep = if line.contains(';') && !line.contains(',') { ';' } else { ',' };
    line.split(sep).map(|f| f.trim().trim_matches(|c| c == '\'' || c == '"').to_string()).collect()
}

fn read_table(path: &Path) -> Result<Table, TrainError> {
    let f = std::fs::File::open(path).map_err(TrainError::io(path))?;
    let mut lines = std::io::BufReader::new(f).lines();
    let header = match lines.next() {
        Some(l) => split_line(&l.map_err(TrainError::io(path))?)
            .into_iter()
            .map(|h| h.to_ascii_lowercase())
            .collect(),
        None => return Err(TrainError::Parse { path: path.into(), line: 1, reason: "empty file".into() }),
    };
    let mut rows = Vec::new();
    for (k, l) in lines.enumerate() {
        let l = l.map_err(TrainError::io(path))?;
        if !l.trim().is_empty() {
            rows.push((k + 2, split_line(&l)));
        }
    }
    Ok(Table { path: path.into(), header, rows })
}

impl Table {
    fn column(&self, names: &[&str]) -> Result<usize, TrainError> {
        self.header.iter().position(|h| names.contains(&h.as_str())).ok_or_else(|| TrainError::Parse {
            path: self.path.clone(),
            line: 1,
            reason: format!("no column named any of {names:?} (header: {:?})", self.header),
        })
    }

    fn field<'a>(&self, line: usize, row: &'a [String], col: usize) -> Result<&'a str, TrainError> {
        row.get(col).map(String::as_str).ok_or_else(|| TrainError::Parse {
            path: self.path.clone(),
            line,
            reason: format!("missing column {}", col + 1),
        })
    }
}

const ID_COLUMNS: &[&str] = &["utterance_id", "filename", "name", "file", "utterance"];

/// Loads a corpus from `dir` (see the module documentation for the layout).
pub fn load(dir: &Path) -> Result<Corpus, TrainError> {
    let corpus_err = |reason: String| TrainError::Corpus { path: dir.to_path_buf(), reason };
    let meta = match std::fs::read_to_string(dir.join(META)) {
        Ok(text) => serde_json::from_str::<CorpusMeta>(&text).map_err(|e| TrainError::Parse {
            path: dir.join(META),
            line: e.line(),
            reason: e.to_string(),
        })?,
        Err(_) => CorpusMeta {
            id: dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "corpus".into()),
            feature_set: "ComParE_2016".into(),
            likert_points: 7,
            provenance: serde_json::Value::Null,
        },
    };

    let parts = read_table(&dir.join(PARTITIONS))?;
    let (c_id, c_split) =
        (parts.column(ID_COLUMNS)?, parts.column(&["split", "split_set", "partition", "set"])?);
    let c_spk = parts.column(&["speaker_id", "spkrid", "speaker"]).ok();
    let mut utterances = Vec::with_capacity(parts.rows.len());
    let mut index: HashMap<String, usize> = HashMap::with_capacity(parts.rows.len());
    for (line, row) in &parts.rows {
        let id = parts.field(*line, row, c_id)?.to_string();
        let split_name = parts.field(*line, row, c_split)?;
        let split = Split::parse(split_name).ok_or_else(|| TrainError::Parse {
            path: parts.path.clone(),
            line: *line,
            reason: format!("unknown split `{split_name}`"),
        })?;
        let speaker = match c_spk {
            Some(c) => parts.field(*line, row, c)?.to_string(),
            None => "unknown".into(),
        };
        if index.insert(id.clone(), utterances.len()).is_some() {
            return Err(TrainError::Parse {
                path: parts.path.clone(),
                line: *line,
                reason: format!("duplicate utterance `{id}`"),
            });
        }
        utterances.push(Utterance { id, speaker, split });
    }

    let labels = read_table(&dir.join(LABELS))?;
    let l_id = labels.column(ID_COLUMNS)?;
    let l_ann = labels.column(&["annotator_id", "workerid", "worker", "annotator"]).ok();
    let l_attr = [
        labels.column(&["valence", "emoval", "val"])?,
        labels.column(&["arousal", "emoact", "aro", "act"])?,
        labels.column(&["dominance", "emodom", "dom"])?,
    ];
    let mut annotators: HashMap<String, u32> = HashMap::new();
    let mut votes: Vec<Vec<Vote>> = vec![Vec::new(); utterances.len()];
    for (line, row) in &labels.rows {
        let id = labels.field(*line, row, l_id)?;
        let Some(&u) = index.get(id) else { continue };
        let annotator = match l_ann {
            Some(c) => {
                // Numeric ids (ours) are kept; names (MSP WorkerIDs) are numbered from 2^31.
                let name = labels.field(*line, row, c)?;
                match name.parse::<u32>() {
                    Ok(id) if id < 1 << 31 => id,
                    _ => {
                        let next = (1u32 << 31) + annotators.len() as u32;
                        *annotators.entry(name.to_string()).or_insert(next)
                    }
                }
            }
            None => votes[u].len() as u32,
        };
        let mut ratings = [0u8; 3];
        for (d, &c) in l_attr.iter().enumerate() {
            let text = labels.field(*line, row, c)?;
            let v: f32 = text.parse().map_err(|_| TrainError::Parse {
                path: labels.path.clone(),
                line: *line,
                reason: format!("rating `{text}` is not a number"),
            })?;
            if !(1.0..=meta.likert_points as f32).contains(&v) {
                return Err(TrainError::Parse {
                    path: labels.path.clone(),
                    line: *line,
                    reason: format!("rating {v} is outside 1..={}", meta.likert_points),
                });
            }
            ratings[d] = v.round() as u8;
        }
        votes[u].push(Vote { annotator, ratings });
    }

    let n = utterances.len();
    let mut features: Vec<f32> = Vec::new();
    let mut dims = 0usize;
    let mut have = vec![false; n];
    let mut place =
        |id: &str, row: &[f32], features: &mut Vec<f32>, dims: &mut usize| -> Result<(), TrainError> {
            if *dims == 0 {
                *dims = row.len();
                features.resize(n * row.len(), 0.0);
            } else if row.len() != *dims {
                return Err(corpus_err(format!(
                    "utterance {id} has {} features, others have {}",
                    row.len(),
                    *dims
                )));
            }
            if let Some(&u) = index.get(id) {
                features[u * *dims..(u + 1) * *dims].copy_from_slice(row);
                have[u] = true;
            }
            Ok(())
        };
    if dir.join(FEATURES_NPY).exists() {
        let (data, rows, cols) = npy::read_f32(&dir.join(FEATURES_NPY))?;
        let ids = read_table(&dir.join(FEATURES_INDEX))?;
        let c = ids.column(ID_COLUMNS)?;
        if ids.rows.len() != rows {
            return Err(corpus_err(format!(
                "{FEATURES_INDEX} has {} ids but {FEATURES_NPY} has {rows} rows",
                ids.rows.len()
            )));
        }
        for (k, (line, row)) in ids.rows.iter().enumerate() {
            place(ids.field(*line, row, c)?, &data[k * cols..(k + 1) * cols], &mut features, &mut dims)?;
        }
    } else {
        let path = dir.join(FEATURES_CSV);
        let f = std::fs::File::open(&path).map_err(TrainError::io(&path))?;
        let mut lines = std::io::BufReader::with_capacity(1 << 20, f).lines();
        let header = split_line(
            &lines
                .next()
                .ok_or_else(|| corpus_err(format!("{FEATURES_CSV} is empty")))?
                .map_err(TrainError::io(&path))?,
        );
        let header: Vec<String> = header.into_iter().map(|h| h.to_ascii_lowercase()).collect();
        let id_col = header.iter().position(|h| ID_COLUMNS.contains(&h.as_str())).unwrap_or(0);
        let skip: Vec<bool> =
            header.iter().enumerate().map(|(k, h)| k == id_col || h == "frametime" || h == "class").collect();
        let mut row = Vec::new();
        for (k, l) in lines.enumerate() {
            let l = l.map_err(TrainError::io(&path))?;
            if l.trim().is_empty() {
                continue;
            }
            let fields = split_line(&l);
            row.clear();
            for (c, f) in fields.iter().enumerate() {
                if skip.get(c).copied().unwrap_or(false) {
                    continue;
                }
                row.push(f.parse::<f32>().map_err(|_| TrainError::Parse {
                    path: path.clone(),
                    line: k + 2,
                    reason: format!("feature `{f}` in column {} is not a number", c + 1),
                })?);
            }
            let id = fields.get(id_col).map(String::as_str).unwrap_or("");
            place(id, &row, &mut features, &mut dims)?;
        }
    }
    if let Some(u) = have.iter().position(|h| !h) {
        return Err(corpus_err(format!("utterance {} has no feature row", utterances[u].id)));
    }

    // Labelled utterances without any vote cannot be trained or evaluated on: drop them.
    let keep: Vec<usize> =
        (0..n).filter(|&u| utterances[u].split == Split::Unlabeled || !votes[u].is_empty()).collect();
    let corpus = if keep.len() == n {
        Corpus { meta, dims, utterances, features, votes }
    } else {
        tracing::warn!(dropped = n - keep.len(), "labelled utterances without votes were dropped");
        let features =
            keep.iter().flat_map(|&u| features[u * dims..(u + 1) * dims].iter().copied()).collect();
        Corpus {
            meta,
            dims,
            utterances: keep.iter().map(|&u| utterances[u].clone()).collect(),
            votes: keep.iter().map(|&u| votes[u].clone()).collect(),
            features,
        }
    };
    corpus.validate().map_err(corpus_err)?;
    Ok(corpus)
}

/// sha256 over the corpus files the trainer reads (name and content, in a fixed order), so
/// a manifest names exactly the data a model was trained on.
pub fn content_hash(dir: &Path) -> Result<String, TrainError> {
    let mut h = Sha256::new();
    for name in [META, PARTITIONS, LABELS, FEATURES_NPY, FEATURES_INDEX, FEATURES_CSV] {
        let path = dir.join(name);
        if !path.exists() {
            continue;
        }
        h.update(name.as_bytes());
        let mut f = std::fs::File::open(&path).map_err(TrainError::io(&path))?;
        std::io::copy(&mut f, &mut h).map_err(TrainError::io(&path))?;
    }
    Ok(hex::encode(h.finalize()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::train::corpus::synth::{generate, Sizes, SynthConfig, Variant};

    fn small() -> Corpus {
        let sizes = Sizes { train: 6, dev: 3, test: 3, unlabeled: 2, speakers: [2, 1, 1, 1] };
        generate(&SynthConfig { seed: 5, variant: Variant::Msp, sizes }).unwrap().0
    }

    #[test]
    fn npy_and_csv_layouts_load_back_the_same_corpus() {
        let c = small();
        for format in [FeatureFormat::Npy, FeatureFormat::Csv] {
            let dir = tempfile::tempdir().unwrap();
            write(dir.path(), &c, None, format).unwrap();
            let back = load(dir.path()).unwrap();
            assert_eq!(back.utterances, c.utterances);
            assert_eq!(back.votes, c.votes);
            assert_eq!(back.meta, c.meta);
            // CSV goes through decimal text: Rust's shortest round-trip formatting is exact.
            assert_eq!(back.features, c.features, "{format:?}");
        }
    }

    #[test]
    fn reads_msp_podcast_column_names_and_opensmile_csv() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path();
        std::fs::write(
            p.join(PARTITIONS),
            "FileName,Split_Set,SpkrID\na.wav,Train,1\nb.wav,Development,2\nc.wav,Test1,3\n",
        )
        .unwrap();
        std::fs::write(
            p.join(LABELS),
            "FileName,WorkerID,EmoAct,EmoVal,EmoDom\na.wav,w1,5,2,4\na.wav,w2,6,3,4\nb.wav,w1,1,7,2\nc.wav,w3,4,4,4\nzzz.wav,w3,4,4,4\n",
        )
        .unwrap();
        std::fs::write(
            p.join(FEATURES_CSV),
            "'name';'frameTime';'f0';'f1'\n'c.wav';0;5;6\n'a.wav';0;1;2\n'b.wav';0;3;4\n",
        )
        .unwrap();
        let c = load(p).unwrap();
        assert_eq!(c.dims, 2);
        assert_eq!(c.row(0), &[1.0, 2.0]);
        assert_eq!(c.row(2), &[5.0, 6.0]);
        assert_eq!(c.utterances[1].split, Split::Dev);
        // Column order in the file is arousal, valence, dominance; ratings are stored v, a, d.
        assert_eq!(c.votes[0][0].ratings, [2, 5, 4]);
        assert_eq!(c.votes[0][1].annotator, (1 << 31) + 1);
        assert_eq!(c.votes[1][0].annotator, 1 << 31);
    }

    #[test]
    fn reports_missing_features_and_bad_votes() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path();
        std::fs::write(p.join(PARTITIONS), "utterance_id,split,speaker_id\na,train,s\nb,train,s\n").unwrap();
        std::fs::write(
            p.join(LABELS),
            "utterance_id,annotator_id,valence,arousal,dominance\na,x,1,2,3\nb,x,1,2,3\n",
        )
        .unwrap();
        std::fs::write(p.join(FEATURES_CSV), "name,f0\na,1\n").unwrap();
        assert!(load(p).unwrap_err().to_string().contains("utterance b has no feature row"));
        std::fs::write(p.join(LABELS), "utterance_id,annotator_id,valence,arousal,dominance\na,x,9,2,3\n")
            .unwrap();
        assert!(load(p).unwrap_err().to_string().contains("outside"));
    }
}
