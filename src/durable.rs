//! Durable whole-file replacement, shared by the archive's local sink and `evaluate`'s trial
//! store: a reader sees the previous file or the complete new one, never a torn one, and once
//! the call returns the new file survives a crash or power cut.
//!
//! The sequence is the POSIX one: write a hidden temporary file next to the target, fsync it,
//! rename it over the target (atomic within one filesystem), fsync the directory so the
//! rename itself is durable.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// A filesystem step of a durable write that failed.
#[derive(Debug, thiserror::Error)]
#[error("{op} {}: {source}", path.display())]
pub struct DurableError {
    /// What was being done (`create`, `write`, `fsync`, `rename to final name`, …).
    pub op: &'static str,
    /// The path it was done to.
    pub path: PathBuf,
    /// The OS error.
    #[source]
    pub source: io::Error,
}

/// Replaces `target` with `data` through the temporary file `temp` (same directory, a name
/// readers skip: `.name….tmp`). On error the temporary file is removed (best effort) and
/// `target` is unchanged.
pub fn replace_file(target: &Path, temp: &Path, data: &[u8]) -> Result<(), DurableError> {
    let written = write_new_synced(temp, data)
        .and_then(|()| fs::rename(temp, target).map_err(failed("rename to final name", target)));
    if let Err(e) = written {
        // Best effort: the temporary file is invisible to readers either way.
        let _ = fs::remove_file(temp);
        return Err(e);
    }
    sync_dir(target.parent().unwrap_or(Path::new(".")))
}

/// Writes `data` to a new file at `path` (it must not exist) and fsyncs it.
fn write_new_synced(path: &Path, data: &[u8]) -> Result<(), DurableError> {
    let mut file =
        OpenOptions::new().write(true).create_new(true).open(path).map_err(failed("create", path))?;
    file.write_all(data).map_err(failed("write", path))?;
    file.sync_all().map_err(failed("fsync", path))
}

/// Fsyncs a directory so entries created or renamed in it are durable.
pub fn sync_dir(dir: &Path) -> Result<(), DurableError> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(failed("fsync directory", dir))
}

/// Maps an I/O error of `op` on `path`.
pub fn failed<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> DurableError + 'a {
    move |source| DurableError { op, path: path.to_path_buf(), source }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replace_file_replaces_and_leaves_no_temporary_file() {
        let tmp = tempfile::tempdir().unwrap();
        let (target, temp) = (tmp.path().join("a.json"), tmp.path().join(".a.json.1.tmp"));
        replace_file(&target, &temp, b"first").unwrap();
        replace_file(&target, &temp, b"second").unwrap();
        assert_eq!(fs::read(&target).unwrap(), b"second");
        assert!(!temp.exists());
    }

    #[test]
    fn a_failed_replace_keeps_the_old_file_and_names_the_step() {
        let tmp = tempfile::tempdir().unwrap();
        let target = tmp.path().join("a.json");
        fs::write(&target, b"old").unwrap();
        // The temporary file's directory does not exist: `create` fails, nothing changes.
        let e = replace_file(&target, &tmp.path().join("missing/.a.tmp"), b"new").unwrap_err();
        assert_eq!(e.op, "create");
        assert!(e.to_string().contains("missing"), "{e}");
        assert_eq!(fs::read(&target).unwrap(), b"old");
    }
}
