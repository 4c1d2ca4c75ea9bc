//! Finding and loading the ONNX Runtime shared library.
//!
//! `ort` is built with `load-dynamic`: nothing is linked at build time, so the binary runs
//! wherever a compatible `libonnxruntime.so` can be found, CPU or GPU build alike. This
//! module decides *which* file, in an order an operator can predict, and turns every way
//! that can fail into one actionable message. `make deps` installs the library taken from
//! the Python registry's `onnxruntime` wheel into `.cache/onnxruntime/<version>/`.
//!
//! Search order (first existing file wins; an explicit setting that does not exist is an
//! error rather than a silent fallback):
//! 1. `ORT_DYLIB_PATH` (file, or directory holding the library);
//! 2. `model.ort_library` from the config;
//! 3. next to the executable, or in `lib/` beside it (container layout);
//! 4. `.cache/onnxruntime/<version>/` in any ancestor of the executable's directory
//!    (a `target/…/emogate` inside the repository);
//! 5. the same cache in the source tree the binary was built from;
//! 6. `/usr/local/lib` and `/usr/lib`.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use super::error::ModelError;

/// The ONNX Runtime release this build targets (the `onnxruntime` wheel version that
/// `make deps` installs). Override at build time with `EMOGATE_ORT_VERSION`.
pub const ORT_VERSION: &str = match option_env!("EMOGATE_ORT_VERSION") {
    Some(v) => v,
    None => "1.31.1",
};

/// Environment variable naming the library file or its directory.
pub const ORT_DYLIB_ENV: &str = "ORT_DYLIB_PATH";

/// The loaded runtime, kept for the life of the process.
#[derive(Debug)]
pub struct Runtime {
    /// Absolute path of the library that was loaded.
    pub library: PathBuf,
    /// Version parsed from the library's file name, when it carries one.
    pub version: Option<String>,
    environment: ort::environment::Environment,
}

impl Runtime {
    /// The process-wide ONNX Runtime environment sessions are created in.
    pub fn environment(&self) -> &ort::environment::Environment {
        &self.environment
    }
}

static RUNTIME: OnceLock<Runtime> = OnceLock::new();
static INIT_LOCK: Mutex<()> = Mutex::new(());

/// File name of the versioned library (`libonnxruntime.so.1.31.1`).
pub fn library_file_name(version: &str) -> String {
    format!("libonnxruntime.so.{version}")
}

/// Loads ONNX Runtime once per process and returns it; later calls return the same one
/// (a different `configured` path after the first successful load is ignored, because a
/// process can hold only one ONNX Runtime).
pub fn ensure_runtime(configured: Option<&Path>) -> Result<&'static Runtime, ModelError> {
    if let Some(rt) = RUNTIME.get() {
        return Ok(rt);
    }
    let _guard = INIT_LOCK.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(rt) = RUNTIME.get() {
        return Ok(rt);
    }
    let env_setting = std::env::var_os(ORT_DYLIB_ENV).map(PathBuf::from);
    let library = locate_library(env_setting.as_deref(), configured, &search_dirs())?;
    // ONNX Runtime's own telemetry must stay off in a service (and it writes under
    // ~/.cache otherwise). Set before the library initialises its environment.
    if std::env::var_os("ORT_DISABLE_TELEMETRY").is_none() {
        std::env::set_var("ORT_DISABLE_TELEMETRY", "1");
    }
    let load_error = |reason: String| ModelError::RuntimeLoad {
        path: library.clone(),
        reason,
        expected_version: ORT_VERSION.to_string(),
    };
    let environment = ort::init_from(&library)
        .map_err(|e| load_error(e.to_string()))?
        .with_name("emogate")
        .with_telemetry(false)
        .build()
        .map_err(|e| load_error(e.to_string()))?;
    let version = version_from_file_name(&library);
    tracing::info!(library = %library.display(), version = version.as_deref().unwrap_or("unknown"), "loaded ONNX Runtime");
    Ok(RUNTIME.get_or_init(|| Runtime { library, version, environment }))
}

/// The loaded runtime, if [`ensure_runtime`] succeeded earlier.
pub fn loaded_runtime() -> Option<&'static Runtime> {
    RUNTIME.get()
}

/// Directories searched after the explicit settings, in order (see the module doc).
pub fn search_dirs() -> Vec<PathBuf> {
    let cache = |root: &Path| root.join(".cache/onnxruntime").join(ORT_VERSION);
    let mut dirs = Vec::new();
    if let Some(exe_dir) = std::env::current_exe().ok().and_then(|p| p.parent().map(Path::to_path_buf)) {
        dirs.push(exe_dir.clone());
        dirs.push(exe_dir.join("lib"));
        dirs.extend(exe_dir.ancestors().map(cache));
    }
    dirs.push(cache(Path::new(env!("CARGO_MANIFEST_DIR"))));
    dirs.push(PathBuf::from("/usr/local/lib"));
    dirs.push(PathBuf::from("/usr/lib"));
    dirs
}

/// Picks the library file: explicit settings first (which must exist), then the first
/// directory in `dirs` that holds `libonnxruntime.so.<ORT_VERSION>`.
pub fn locate_library(
    env_setting: Option<&Path>,
    configured: Option<&Path>,
    dirs: &[PathBuf],
) -> Result<PathBuf, ModelError> {
    let file_name = library_file_name(ORT_VERSION);
    for (origin, setting) in [(ORT_DYLIB_ENV, env_setting), ("model.ort_library", configured)] {
        let Some(setting) = setting else { continue };
        let candidate = if setting.is_dir() { setting.join(&file_name) } else { setting.to_path_buf() };
        if candidate.is_file() {
            return Ok(candidate);
        }
        return Err(ModelError::RuntimeNotFound {
            searched: format!("{} (from {origin})", candidate.display()),
            expected_version: ORT_VERSION.to_string(),
        });
    }
    let candidates: Vec<PathBuf> = dirs.iter().map(|d| d.join(&file_name)).collect();
    candidates.iter().find(|c| c.is_file()).cloned().ok_or_else(|| ModelError::RuntimeNotFound {
        searched: candidates.iter().map(|c| c.display().to_string()).collect::<Vec<_>>().join(", "),
        expected_version: ORT_VERSION.to_string(),
    })
}

fn version_from_file_name(path: &Path) -> Option<String> {
    let name = path.file_name()?.to_str()?;
    let version = name.strip_prefix("libonnxruntime.so.")?;
    (!version.is_empty()).then(|| version.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn explicit_setting_wins_and_must_exist() {
        let dir = tempfile::tempdir().unwrap();
        let lib = dir.path().join(library_file_name(ORT_VERSION));
        std::fs::write(&lib, b"not really a library").unwrap();
        assert_eq!(locate_library(Some(&lib), None, &[]).unwrap(), lib);
        // A directory setting resolves to the versioned file inside it.
        assert_eq!(locate_library(Some(dir.path()), None, &[]).unwrap(), lib);
        assert_eq!(locate_library(None, Some(dir.path()), &[]).unwrap(), lib);
        // A missing explicit file is an error even when the search path has one.
        let missing = dir.path().join("nope.so");
        let err = locate_library(Some(&missing), None, &[dir.path().to_path_buf()]).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("nope.so") && msg.contains("ORT_DYLIB_PATH") && msg.contains("make deps"),
            "{msg}"
        );
    }

    #[test]
    fn search_path_order_and_message() {
        let first = tempfile::tempdir().unwrap();
        let second = tempfile::tempdir().unwrap();
        let lib2 = second.path().join(library_file_name(ORT_VERSION));
        std::fs::write(&lib2, b"x").unwrap();
        let dirs = vec![first.path().to_path_buf(), second.path().to_path_buf()];
        assert_eq!(locate_library(None, None, &dirs).unwrap(), lib2);
        let err = locate_library(None, None, &dirs[..1]).unwrap_err().to_string();
        assert!(err.contains(&first.path().display().to_string()), "{err}");
        assert!(err.contains(&library_file_name(ORT_VERSION)), "{err}");
    }

    #[test]
    fn parses_version_from_versioned_name() {
        assert_eq!(
            version_from_file_name(Path::new("/x/libonnxruntime.so.1.31.1")).as_deref(),
            Some("1.31.1")
        );
        assert_eq!(version_from_file_name(Path::new("/x/libonnxruntime.so")), None);
    }
}
