//! Where finished files go: [`ArchiveSink`], the local-filesystem [`LocalFsSink`], and which
//! failures may heal ([`SinkError::is_permanent`]). The object-store sink is in `object_sink.rs`.
//!
//! The sink gets a complete file as bytes and a `/`-separated key (`dt=…/hour=…/name.parquet`).
//! Whole-object puts are what object stores offer natively (a single PUT, or a multipart
//! upload completed at the end, is atomic and durable when acknowledged), so an S3/GCS/Azure
//! sink implements the same trait with the same guarantees and no temp-file dance; the
//! archive's file size is bounded by the roll policy, so holding one file in memory is fine.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::durable::{self, failed, DurableError};

/// A put that failed.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// A filesystem operation failed.
    #[error("{op} {}: {source}", path.display())]
    Io {
        /// What was being done (`create directory`, `write`, `fsync`, `rename`, …).
        op: &'static str,
        /// The path it was done to.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// A key that is not a relative path of plain components.
    #[error(
        "invalid archive key {0:?}: expected a relative `/`-separated path without `.`, `..` or empty parts"
    )]
    InvalidKey(String),
    /// An object-store request failed (after the client's own short retries).
    #[error("{op} {location}: {source}")]
    ObjectStore {
        /// What was being done (`put`, `multipart upload`, …).
        op: &'static str,
        /// The object's URL.
        location: String,
        /// The store's error.
        #[source]
        source: object_store::Error,
    },
}

impl SinkError {
    /// Whether waiting cannot help: the stage stops on such an error (naming the location and
    /// the cause) instead of retrying in place. A bucket that does not exist, denied or
    /// unauthenticated requests and unsupported operations need an operator; a refused
    /// connection, a timeout, a 5xx, a full disk or a read-only remount may heal by themselves
    /// or by a fix that does not restart the service, so they are retried. A local permission
    /// error is retried too: a volume's ownership or mount can be fixed under a running pod,
    /// while an object store's denial is a credential or policy decision.
    pub fn is_permanent(&self) -> bool {
        match self {
            SinkError::Io { .. } => false,
            SinkError::InvalidKey(_) => true,
            SinkError::ObjectStore { source, .. } => matches!(
                source,
                object_store::Error::NotFound { .. }
                    | object_store::Error::PermissionDenied { .. }
                    | object_store::Error::Unauthenticated { .. }
                    | object_store::Error::NotSupported { .. }
                    | object_store::Error::NotImplemented { .. }
                    | object_store::Error::InvalidPath { .. }
                    | object_store::Error::UnknownConfigurationKey { .. }
            ),
        }
    }

    /// Stable snake_case reason code (the `reason` label of
    /// `emogate_archive_write_errors_total`).
    pub fn reason(&self) -> &'static str {
        match self {
            SinkError::Io { source, .. } => match source.kind() {
                io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded => "disk_full",
                io::ErrorKind::ReadOnlyFilesystem => "read_only",
                io::ErrorKind::PermissionDenied => "permission_denied",
                _ => "io",
            },
            SinkError::InvalidKey(_) => "invalid_key",
            SinkError::ObjectStore { source, .. } => match source {
                object_store::Error::NotFound { .. } => "not_found",
                object_store::Error::PermissionDenied { .. } => "permission_denied",
                object_store::Error::Unauthenticated { .. } => "unauthenticated",
                object_store::Error::NotSupported { .. }
                | object_store::Error::NotImplemented { .. }
                | object_store::Error::InvalidPath { .. }
                | object_store::Error::UnknownConfigurationKey { .. } => "unsupported",
                _ => "unavailable",
            },
        }
    }
}

impl From<DurableError> for SinkError {
    fn from(e: DurableError) -> Self {
        SinkError::Io { op: e.op, path: e.path, source: e.source }
    }
}

/// Durable, atomic storage for finished archive files.
///
/// Contract of [`ArchiveSink::put`]:
/// - when it returns `Ok`, the object is durable: it survives a crash or power loss;
/// - readers see either nothing (or the previous object) at `key`, or the complete new one —
///   never a partial file;
/// - putting an existing key replaces it (a replay rewrites the same file);
/// - on `Err`, nothing partial is visible under `key`.
pub trait ArchiveSink: Send + Sync {
    /// Stores `data` as `key`.
    fn put(&self, key: &str, data: &[u8]) -> Result<(), SinkError>;

    /// Where `key` is (a path or URL), for logs and summaries.
    fn location(&self, key: &str) -> String;
}

/// Files under a local directory (or a mounted volume).
///
/// `put` writes a hidden temporary file next to the target (`.{name}.{pid}-{n}.tmp`), fsyncs
/// it, renames it over the target (atomic on POSIX filesystems), then fsyncs the directory so
/// the rename itself is durable. Directories it creates are fsynced into their parents.
/// Temporary names start with `.` and end with `.tmp`, so DuckDB's `*.parquet` globs,
/// pyarrow and Spark (which skip hidden files) never read them; one left by a crash is
/// garbage, not data, and may be deleted.
#[derive(Debug)]
pub struct LocalFsSink {
    root: PathBuf,
    seq: AtomicU64,
}

impl LocalFsSink {
    /// A sink writing under `root` (created on the first put if missing).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        LocalFsSink { root: root.into(), seq: AtomicU64::new(0) }
    }

    /// The archive root.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Creates `dir` (under the root) one level at a time, fsyncing each new entry's parent.
    fn ensure_dirs(&self, dirs: &[&str]) -> Result<PathBuf, SinkError> {
        if !self.root.is_dir() {
            fs::create_dir_all(&self.root).map_err(failed("create directory", &self.root))?;
        }
        let mut path = self.root.clone();
        for part in dirs {
            let parent = path.clone();
            path.push(part);
            match fs::create_dir(&path) {
                Ok(()) => durable::sync_dir(&parent)?,
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists && path.is_dir() => {}
                Err(e) => return Err(failed("create directory", &path)(e).into()),
            }
        }
        Ok(path)
    }
}

impl ArchiveSink for LocalFsSink {
    fn put(&self, key: &str, data: &[u8]) -> Result<(), SinkError> {
        let parts = key_components(key)?;
        let (name, dirs) = parts.split_last().ok_or_else(|| SinkError::InvalidKey(key.to_string()))?;
        let dir = self.ensure_dirs(dirs)?;
        let target = dir.join(name);
        let seq = self.seq.fetch_add(1, Ordering::Relaxed);
        let temp = dir.join(format!(".{name}.{}-{seq}.tmp", std::process::id()));
        Ok(durable::replace_file(&target, &temp, data)?)
    }

    fn location(&self, key: &str) -> String {
        self.root.join(key).display().to_string()
    }
}

/// Splits and checks a key: a relative `/`-separated path of plain components, so that it can
/// neither leave a local root nor name something odd in an object store.
pub(crate) fn key_components(key: &str) -> Result<Vec<&str>, SinkError> {
    let parts: Vec<&str> = key.split('/').collect();
    let plain = |p: &&str| !p.is_empty() && *p != "." && *p != ".." && !p.contains('\\') && !p.contains('\0');
    if parts.iter().all(plain) {
        Ok(parts)
    } else {
        Err(SinkError::InvalidKey(key.to_string()))
    }
}

/// Every file below `root`, relative and sorted (tests check what a sink left behind).
#[cfg(test)]
pub(crate) fn files_under(root: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                out.push(path.strip_prefix(root).unwrap().display().to_string());
            }
        }
    }
    out.sort();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn put_creates_directories_and_leaves_only_the_final_file() {
        let tmp = tempfile::tempdir().unwrap();
        let sink = LocalFsSink::new(tmp.path().join("archive"));
        sink.put("dt=2024-01-02/hour=03/t+0+5.parquet", b"first").unwrap();
        sink.put("dt=2024-01-02/hour=03/t+1+0.parquet", b"other").unwrap();
        assert_eq!(
            files_under(sink.root()),
            ["dt=2024-01-02/hour=03/t+0+5.parquet", "dt=2024-01-02/hour=03/t+1+0.parquet"]
        );
        let target = sink.root().join("dt=2024-01-02/hour=03/t+0+5.parquet");
        assert_eq!(fs::read(&target).unwrap(), b"first");
        assert_eq!(sink.location("dt=2024-01-02/hour=03/t+0+5.parquet"), target.display().to_string());
    }

    #[test]
    fn put_replaces_an_existing_file() {
        let tmp = tempfile::tempdir().unwrap();
        let sink = LocalFsSink::new(tmp.path());
        sink.put("a/f.parquet", b"old contents, longer").unwrap();
        sink.put("a/f.parquet", b"new").unwrap();
        assert_eq!(fs::read(tmp.path().join("a/f.parquet")).unwrap(), b"new");
        assert_eq!(files_under(tmp.path()), ["a/f.parquet"]);
    }

    #[test]
    fn failed_put_reports_the_path_and_removes_its_temp_file() {
        let tmp = tempfile::tempdir().unwrap();
        let sink = LocalFsSink::new(tmp.path());
        // A directory where the file should go: the rename fails.
        fs::create_dir_all(tmp.path().join("a/f.parquet/inner")).unwrap();
        let err = sink.put("a/f.parquet", b"data").unwrap_err();
        assert!(matches!(&err, SinkError::Io { op: "rename to final name", .. }), "{err}");
        assert!(err.to_string().contains("f.parquet"), "{err}");
        assert_eq!(files_under(tmp.path()), Vec::<String>::new(), "temp file left behind");

        // A file where a directory should go.
        fs::write(tmp.path().join("blocker"), b"").unwrap();
        let err = sink.put("blocker/x.parquet", b"data").unwrap_err();
        assert!(matches!(err, SinkError::Io { op: "create directory", .. }), "{err}");
    }

    #[test]
    fn keys_cannot_escape_the_root() {
        let tmp = tempfile::tempdir().unwrap();
        let sink = LocalFsSink::new(tmp.path().join("root"));
        for bad in ["", "/abs.parquet", "../up.parquet", "a/../b.parquet", "a//b.parquet", "a/./b", "a\\b"] {
            assert!(matches!(sink.put(bad, b"x"), Err(SinkError::InvalidKey(_))), "{bad:?}");
        }
        assert!(!tmp.path().join("up.parquet").exists());
    }
}
