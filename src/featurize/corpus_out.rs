//! The finished corpus, in the MSP-Podcast-style layout `emogate train` reads
//! (`train::corpus::msp`, docs/model-card.md), written from the journal:
//!
//! ```text
//! OUT/features.npy        float32 [N, 6373], rows sorted by utterance id
//! OUT/features_index.csv  utterance_id per row
//! OUT/feature_names.txt   the 6,373 openSMILE feature names, in column order
//! OUT/corpus.json         id, feature_set, likert_points, provenance (openSMILE version, config, rate)
//! OUT/partitions.csv      the given one, less utterances without features; without one,
//!                         every utterance as `unlabeled` (usable for pre-training and replay)
//! OUT/labels.csv          the given one, copied
//! ```
//!
//! Every file is replaced whole (`durable::replace_file`), so a reader never sees a corpus
//! half old and half new.

use std::collections::HashSet;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;

use serde_json::json;

use super::error::FeaturizeError;
use super::journal::{Entry, Journal};

/// Labels and partitions given with `--labels` / `--partitions`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Annotations<'a> {
    pub labels: Option<&'a Path>,
    pub partitions: Option<&'a Path>,
    /// Likert points of the votes (7 for MSP-Podcast).
    pub likert_points: u8,
}

/// What was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CorpusWritten {
    pub utterances: usize,
    /// Utterances of the given partitions file that have no features (failed or missing audio).
    pub partitions_without_features: Vec<String>,
}

/// Writes the corpus files of `out` from `journal`.
pub fn write_corpus(
    out: &Path,
    journal: &Journal,
    names: &[String],
    annotations: Annotations<'_>,
    provenance: serde_json::Value,
) -> Result<CorpusWritten, FeaturizeError> {
    let mut entries: Vec<_> = journal.entries().iter().collect();
    entries.sort_by(|a, b| a.utterance_id.cmp(&b.utterance_id));
    write_features(out, journal, &entries, names.len())?;
    let mut index = String::from("utterance_id\n");
    entries.iter().for_each(|e| index.push_str(&format!("{}\n", csv_field(&e.utterance_id))));
    replace(out, "features_index.csv", index.as_bytes())?;
    replace(out, "feature_names.txt", (names.join("\n") + "\n").as_bytes())?;
    let id = out.file_name().map_or_else(|| "featurized".into(), |n| n.to_string_lossy().into_owned());
    let meta = json!({
        "id": id,
        "feature_set": super::feature_set_label(),
        "likert_points": annotations.likert_points,
        "provenance": provenance,
    });
    replace(out, "corpus.json", (serde_json::to_string_pretty(&meta).expect("json") + "\n").as_bytes())?;

    let have: HashSet<&str> = entries.iter().map(|e| e.utterance_id.as_str()).collect();
    let mut missing = Vec::new();
    let partitions = match annotations.partitions {
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(FeaturizeError::io("read", path))?;
            let (kept, left_out) = keep_rows_with_features(&text, &have)
                .map_err(|reason| FeaturizeError::Invalid { path: path.to_path_buf(), reason })?;
            missing = left_out;
            kept
        }
        None => {
            let mut text = String::from("utterance_id,split,speaker_id\n");
            entries
                .iter()
                .for_each(|e| text.push_str(&format!("{},unlabeled,unknown\n", csv_field(&e.utterance_id))));
            text
        }
    };
    replace(out, "partitions.csv", partitions.as_bytes())?;
    if let Some(path) = annotations.labels {
        let bytes = std::fs::read(path).map_err(FeaturizeError::io("read", path))?;
        replace(out, "labels.csv", &bytes)?;
    }
    Ok(CorpusWritten { utterances: entries.len(), partitions_without_features: missing })
}

/// The id columns the corpus loader recognises, first match wins (lower case).
const ID_COLUMNS: &[&str] = &["utterance_id", "filename", "name", "file", "utterance"];

/// The rows of a partitions CSV whose utterance has features, and the ids of those left out.
pub fn keep_rows_with_features(text: &str, have: &HashSet<&str>) -> Result<(String, Vec<String>), String> {
    let mut lines = text.lines();
    let header = lines.next().ok_or("empty file")?;
    let names: Vec<String> = header.split(',').map(|h| unquote(h).to_ascii_lowercase()).collect();
    let col = ID_COLUMNS
        .iter()
        .find_map(|want| names.iter().position(|n| n == want))
        .ok_or("no utterance id column (utterance_id, FileName, name, file or utterance)")?;
    let (mut kept, mut missing) = (format!("{header}\n"), Vec::new());
    for line in lines.filter(|l| !l.trim().is_empty()) {
        let id = line.split(',').nth(col).map(unquote).unwrap_or_default();
        if have.contains(id.as_str()) {
            kept.push_str(line);
            kept.push('\n');
        } else {
            missing.push(id);
        }
    }
    Ok((kept, missing))
}

fn unquote(s: &str) -> String {
    s.trim().trim_matches('"').to_string()
}

/// An id as a CSV field: quoted when it holds a comma or a quote.
fn csv_field(id: &str) -> String {
    if id.contains([',', '"']) {
        format!("\"{}\"", id.replace('"', "\"\""))
    } else {
        id.to_string()
    }
}

/// `features.npy`, streamed row by row from the journal (a corpus of 150,000 utterances is
/// 3.8 GB: it is never held in memory), then fsynced and renamed into place.
fn write_features(
    out: &Path,
    journal: &Journal,
    entries: &[&Entry],
    dims: usize,
) -> Result<(), FeaturizeError> {
    let target = out.join("features.npy");
    let temp = out.join(".features.npy.tmp");
    let written = (|| -> Result<(), FeaturizeError> {
        let file = File::create(&temp).map_err(FeaturizeError::io("create", &temp))?;
        let mut w = BufWriter::with_capacity(1 << 20, file);
        let io = FeaturizeError::io;
        w.write_all(&crate::codec::npy::header_f32(entries.len(), dims)).map_err(io("write", &temp))?;
        let mut row = vec![0.0f32; dims];
        for e in entries {
            journal.read_row(e.row, &mut row)?;
            for v in &row {
                w.write_all(&v.to_le_bytes()).map_err(io("write", &temp))?;
            }
        }
        let file = w.into_inner().map_err(|e| io("write", &temp)(e.into_error()))?;
        file.sync_all().map_err(io("fsync", &temp))?;
        std::fs::rename(&temp, &target).map_err(io("rename", &target))
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    written?;
    crate::durable::sync_dir(out)
        .map_err(|e| FeaturizeError::Invalid { path: out.to_path_buf(), reason: e.to_string() })
}

fn replace(out: &Path, name: &str, data: &[u8]) -> Result<(), FeaturizeError> {
    let target = out.join(name);
    crate::durable::replace_file(&target, &out.join(format!(".{name}.tmp")), data)
        .map_err(|e| FeaturizeError::Invalid { path: target, reason: e.to_string() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partitions_keep_only_utterances_with_features() {
        let have: HashSet<&str> = ["a.wav", "c.wav"].into_iter().collect();
        let text = "FileName,Split_Set,SpkrID\n\"a.wav\",Train,1\nb.wav,Test1,2\nc.wav,Development,1\n";
        let (kept, missing) = keep_rows_with_features(text, &have).unwrap();
        assert_eq!(kept, "FileName,Split_Set,SpkrID\n\"a.wav\",Train,1\nc.wav,Development,1\n");
        assert_eq!(missing, ["b.wav"]);
        assert!(keep_rows_with_features("split,speaker\nx,y\n", &have).unwrap_err().contains("id column"));
    }

    #[test]
    fn ids_with_commas_are_quoted() {
        assert_eq!(csv_field("a,b\".wav"), "\"a,b\"\".wav\"");
        assert_eq!(csv_field("plain.wav"), "plain.wav");
    }
}
