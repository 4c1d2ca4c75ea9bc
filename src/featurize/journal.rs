//! The resumable progress of `emogate featurize`, in `OUT/.featurize/`: a run killed at any
//! point loses at most the files in flight, and the next run skips every file already done.
//!
//! ```text
//! journal.json   what the rows are (feature set, dims, sample rate, feature names' sha256);
//!                a resume with other settings is refused rather than mixing vectors
//! rows.f32       one little-endian float32 row of `dims` values per finished file, appended
//! ids.tsv        `seconds<TAB>utterance_id` per finished file, appended *after* its row
//! ```
//!
//! A row is written before its id line, so a crash between the two leaves a row without an
//! id: on open the rows file is cut back to the rows that have ids. An id line without its
//! row cannot happen unless the files were edited, and is refused. Both files are fsynced
//! every [`SYNC_EVERY`] files and at the end.

use std::collections::HashSet;
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::error::FeaturizeError;

pub const JOURNAL_DIR: &str = ".featurize";
const META: &str = "journal.json";
const ROWS: &str = "rows.f32";
const IDS: &str = "ids.tsv";
/// Files between fsyncs: bounds what a power cut can take back without an fsync per file.
pub const SYNC_EVERY: usize = 32;

/// What the journal's rows are; must match for a resume.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JournalMeta {
    pub feature_set: String,
    pub dims: usize,
    pub sample_rate: u32,
    pub feature_names_sha256: String,
}

/// One finished file in the journal.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub utterance_id: String,
    pub seconds: f64,
    /// Row number in `rows.f32`.
    pub row: usize,
}

/// An open journal, appending.
#[derive(Debug)]
pub struct Journal {
    dir: PathBuf,
    dims: usize,
    rows: File,
    ids: File,
    entries: Vec<Entry>,
    done: HashSet<String>,
    unsynced: usize,
}

impl Journal {
    /// Opens (or starts) the journal in `out/.featurize/`.
    pub fn open(out: &Path, meta: &JournalMeta) -> Result<Journal, FeaturizeError> {
        let dir = out.join(JOURNAL_DIR);
        std::fs::create_dir_all(&dir).map_err(FeaturizeError::io("create", &dir))?;
        let meta_path = dir.join(META);
        match std::fs::read_to_string(&meta_path) {
            Ok(text) => {
                let found: JournalMeta = serde_json::from_str(&text).map_err(|e| {
                    FeaturizeError::Invalid { path: meta_path.clone(), reason: e.to_string() }
                })?;
                if &found != meta {
                    return Err(FeaturizeError::Invalid {
                        path: meta_path,
                        reason: format!(
                            "the finished rows were made with other settings ({found:?}, now {meta:?}); \
                             write to another --out, or delete {} to start again",
                            dir.display()
                        ),
                    });
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let text = serde_json::to_string_pretty(meta).expect("journal metadata serialises");
                let temp = dir.join(".journal.json.tmp");
                crate::durable::replace_file(&meta_path, &temp, text.as_bytes()).map_err(|e| {
                    FeaturizeError::Invalid { path: meta_path.clone(), reason: e.to_string() }
                })?;
            }
            Err(e) => return Err(FeaturizeError::io("read", &meta_path)(e)),
        }
        let append = |name: &str| {
            let path = dir.join(name);
            OpenOptions::new()
                .create(true)
                .read(true)
                .append(true)
                .open(&path)
                .map_err(FeaturizeError::io("open", path))
        };
        let (rows, mut ids) = (append(ROWS)?, append(IDS)?);
        let entries = read_ids(&dir.join(IDS), &mut ids)?;
        let row_bytes = (meta.dims * 4) as u64;
        let need = entries.len() as u64 * row_bytes;
        let have = rows.metadata().map_err(FeaturizeError::io("stat", dir.join(ROWS)))?.len();
        if have < need {
            return Err(FeaturizeError::Invalid {
                path: dir.join(ROWS),
                reason: format!(
                    "holds {have} bytes but {} finished files need {need}; delete {} to start again",
                    entries.len(),
                    dir.display()
                ),
            });
        }
        // Rows after the last id line belong to files whose id was never written: redo them.
        rows.set_len(need).map_err(FeaturizeError::io("truncate", dir.join(ROWS)))?;
        let done = entries.iter().map(|e| e.utterance_id.clone()).collect();
        Ok(Journal { dir, dims: meta.dims, rows, ids, entries, done, unsynced: 0 })
    }

    /// Whether `utterance_id` is finished.
    pub fn is_done(&self, utterance_id: &str) -> bool {
        self.done.contains(utterance_id)
    }

    /// The finished files, in the order they finished.
    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// Records one finished file: its row, then its id line.
    pub fn append(
        &mut self,
        utterance_id: &str,
        features: &[f32],
        seconds: f64,
    ) -> Result<(), FeaturizeError> {
        if features.len() != self.dims {
            return Err(FeaturizeError::Invalid {
                path: self.dir.join(ROWS),
                reason: format!(
                    "{utterance_id}: {} values, the journal holds rows of {}",
                    features.len(),
                    self.dims
                ),
            });
        }
        let bytes: Vec<u8> = features.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.rows.write_all(&bytes).map_err(FeaturizeError::io("append to", self.dir.join(ROWS)))?;
        self.ids
            .write_all(format!("{seconds}\t{utterance_id}\n").as_bytes())
            .map_err(FeaturizeError::io("append to", self.dir.join(IDS)))?;
        self.entries.push(Entry { utterance_id: utterance_id.to_string(), seconds, row: self.entries.len() });
        self.done.insert(utterance_id.to_string());
        self.unsynced += 1;
        if self.unsynced >= SYNC_EVERY {
            self.sync()?;
        }
        Ok(())
    }

    /// Makes everything appended so far durable.
    pub fn sync(&mut self) -> Result<(), FeaturizeError> {
        self.rows.sync_data().map_err(FeaturizeError::io("fsync", self.dir.join(ROWS)))?;
        self.ids.sync_data().map_err(FeaturizeError::io("fsync", self.dir.join(IDS)))?;
        self.unsynced = 0;
        Ok(())
    }

    /// Reads row `row` into `out` (`dims` values).
    pub fn read_row(&self, row: usize, out: &mut [f32]) -> Result<(), FeaturizeError> {
        let mut bytes = vec![0u8; self.dims * 4];
        self.rows
            .read_exact_at(&mut bytes, (row * self.dims * 4) as u64)
            .map_err(FeaturizeError::io("read", self.dir.join(ROWS)))?;
        for (v, c) in out.iter_mut().zip(bytes.chunks_exact(4)) {
            *v = f32::from_le_bytes([c[0], c[1], c[2], c[3]]);
        }
        Ok(())
    }
}

/// The complete lines of `ids.tsv`; a torn last line (a crash mid-write) is cut off.
fn read_ids(path: &Path, file: &mut File) -> Result<Vec<Entry>, FeaturizeError> {
    let mut text = String::new();
    file.read_to_string(&mut text).map_err(FeaturizeError::io("read", path))?;
    let complete = text.rfind('\n').map_or(0, |i| i + 1);
    if complete < text.len() {
        file.set_len(complete as u64).map_err(FeaturizeError::io("truncate", path))?;
    }
    text[..complete]
        .lines()
        .enumerate()
        .map(|(row, line)| {
            let bad = || FeaturizeError::Invalid {
                path: path.to_path_buf(),
                reason: format!("line {} is `{line}`", row + 1),
            };
            let (seconds, id) = line.split_once('\t').ok_or_else(bad)?;
            Ok(Entry { utterance_id: id.to_string(), seconds: seconds.parse().map_err(|_| bad())?, row })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(dims: usize) -> JournalMeta {
        JournalMeta {
            feature_set: "ComParE_2016".into(),
            dims,
            sample_rate: 16_000,
            feature_names_sha256: "ab".into(),
        }
    }

    #[test]
    fn a_resume_keeps_finished_rows_and_drops_a_row_without_its_id() {
        let out = tempfile::tempdir().unwrap();
        let mut j = Journal::open(out.path(), &meta(2)).unwrap();
        j.append("a.wav", &[1.0, 2.0], 1.5).unwrap();
        j.append("b.wav", &[3.0, 4.0], 2.0).unwrap();
        drop(j);
        // A crash after a row and half an id line.
        let dir = out.path().join(JOURNAL_DIR);
        OpenOptions::new().append(true).open(dir.join(ROWS)).unwrap().write_all(&[0u8; 8]).unwrap();
        OpenOptions::new().append(true).open(dir.join(IDS)).unwrap().write_all(b"0.5\tc.w").unwrap();
        let mut j = Journal::open(out.path(), &meta(2)).unwrap();
        assert!(j.is_done("a.wav") && j.is_done("b.wav") && !j.is_done("c.wav"));
        j.append("c.wav", &[5.0, 6.0], 0.5).unwrap();
        let mut row = [0.0f32; 2];
        j.read_row(2, &mut row).unwrap();
        assert_eq!(row, [5.0, 6.0]);
        j.read_row(1, &mut row).unwrap();
        assert_eq!(row, [3.0, 4.0]);
        assert_eq!(j.entries().iter().map(|e| e.seconds).collect::<Vec<_>>(), [1.5, 2.0, 0.5]);
    }

    #[test]
    fn other_settings_or_missing_rows_are_refused() {
        let out = tempfile::tempdir().unwrap();
        Journal::open(out.path(), &meta(2)).unwrap().append("a.wav", &[1.0, 2.0], 1.0).unwrap();
        let msg = Journal::open(out.path(), &meta(3)).unwrap_err().to_string();
        assert!(msg.contains("other settings"), "{msg}");
        std::fs::write(out.path().join(JOURNAL_DIR).join(ROWS), [0u8; 4]).unwrap();
        let msg = Journal::open(out.path(), &meta(2)).unwrap_err().to_string();
        assert!(msg.contains("start again"), "{msg}");
    }
}
