//! Many files through openSMILE in parallel: `jobs` worker threads decode and extract, and
//! every outcome is handed to the caller on the caller's thread, in completion order, so the
//! caller (the journal writer, the producer) needs no locking. A caller error stops the
//! workers after the files they are on.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc;

use super::audio::prepare_file;
use super::discover::AudioFile;
use super::error::FileError;
use super::smile::Extractor;

/// What became of one file.
#[derive(Debug, Clone, PartialEq)]
pub enum FileOutcome {
    /// Its 6,373 functionals, and the duration of its audio in seconds.
    Done {
        file: AudioFile,
        features: Vec<f32>,
        seconds: f64,
    },
    Failed {
        file: AudioFile,
        error: FileError,
    },
}

/// Featurizes `files` on `jobs` threads (at least one), calling `on_outcome` for each.
pub fn featurize_files<E>(
    extractor: &Extractor,
    files: &[AudioFile],
    jobs: usize,
    mut on_outcome: impl FnMut(FileOutcome) -> Result<(), E>,
) -> Result<(), E> {
    let next = AtomicUsize::new(0);
    let stop = AtomicBool::new(false);
    let jobs = jobs.clamp(1, files.len().max(1));
    std::thread::scope(|scope| {
        let (tx, rx) = mpsc::sync_channel::<FileOutcome>(jobs * 2);
        for _ in 0..jobs {
            let tx = tx.clone();
            let (next, stop) = (&next, &stop);
            scope.spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let Some(file) = files.get(next.fetch_add(1, Ordering::Relaxed)) else { break };
                    if tx.send(featurize_one(extractor, file)).is_err() {
                        break;
                    }
                }
            });
        }
        drop(tx);
        let mut result = Ok(());
        for outcome in rx {
            if result.is_ok() {
                result = on_outcome(outcome);
                if result.is_err() {
                    stop.store(true, Ordering::Relaxed);
                }
            }
        }
        result
    })
}

/// One file: decode, resample, extract.
pub fn featurize_one(extractor: &Extractor, file: &AudioFile) -> FileOutcome {
    let failed = |problem| FileOutcome::Failed {
        file: file.clone(),
        error: FileError { path: file.path.clone(), problem },
    };
    let audio = match prepare_file(&file.path) {
        Ok(a) => a,
        Err(problem) => return failed(problem),
    };
    match extractor.extract(&audio.pcm) {
        Ok(features) => FileOutcome::Done { file: file.clone(), features, seconds: audio.seconds },
        Err(problem) => failed(problem),
    }
}
