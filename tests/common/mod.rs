//! Helpers shared by the integration tests: the Python reference environment and the
//! `emogate` binary (here), polling ([`wait`]), the archive read-back ([`archive`]), codec
//! helpers ([`codec`]) and sample predictions ([`predictions`]).
//!
//! Independent reference implementations (fastavro, onnxruntime, audmetric, pyarrow) run in
//! the Python environment that `make deps` creates in `.cache/venv`. A missing environment
//! is a setup error, never a skipped test.
#![allow(dead_code)]

pub mod archive;
pub mod codec;
pub mod predictions;
pub mod wait;

use std::path::{Path, PathBuf};
use std::process::Command;

/// Repository root (where Cargo.toml lives).
pub fn repo_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The Python interpreter with the reference packages: `EMOGATE_PYTHON` or `.cache/venv/bin/python`.
pub fn python() -> PathBuf {
    let path = std::env::var_os("EMOGATE_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join(".cache/venv/bin/python"));
    assert!(
        path.exists(),
        "Python reference environment not found at {} — run `make deps` (or set EMOGATE_PYTHON)",
        path.display()
    );
    path
}

/// Runs `python script args...` from the repository root and returns its stdout; panics with
/// the script's stderr when it fails.
pub fn run_python(script: &str, args: &[&str]) -> String {
    let out = Command::new(python())
        .arg(repo_root().join(script))
        .args(args)
        .current_dir(repo_root())
        .output()
        .expect("failed to start python");
    assert!(
        out.status.success(),
        "{script} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("python printed non-UTF-8")
}

/// Runs the built `emogate` binary and returns its stdout; a non-zero exit fails the test
/// with its stderr. (`CARGO_BIN_EXE_emogate` is set for every integration-test crate.)
pub fn emogate(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_emogate")).args(args).output().expect("run emogate");
    assert!(out.status.success(), "emogate {args:?} failed:\n{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).expect("utf-8 stdout")
}

/// A path as `&str` for command lines (test paths are UTF-8).
pub fn s(p: &Path) -> &str {
    p.to_str().expect("UTF-8 path")
}
