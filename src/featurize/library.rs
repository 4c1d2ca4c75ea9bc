//! Where openSMILE is: a folder holding `libSMILEapi.so` and the wheel's `config/` tree.
//!
//! Found the way ONNX Runtime is found (`model::runtime`), in an order an operator can
//! predict; an explicit setting that is not an installation is an error, never a silent
//! fallback:
//! 1. `--opensmile DIR` (the command line);
//! 2. `EMOGATE_OPENSMILE_DIR`;
//! 3. `opensmile/` next to the executable (container layout);
//! 4. `.cache/opensmile/<version>/` in any ancestor of the executable's directory (a
//!    `target/…/emogate` inside the repository), then in the source tree it was built from.
//!
//! `make deps` fills `.cache/opensmile/2.6.0/` from the `opensmile` wheel
//! (`scripts/install_opensmile.py`).

use std::path::{Path, PathBuf};

use super::error::FeaturizeError;
use super::OPENSMILE_VERSION;

/// Environment variable naming the installation folder.
pub const OPENSMILE_DIR_ENV: &str = "EMOGATE_OPENSMILE_DIR";

/// The library file inside an installation folder.
pub const LIBRARY_FILE: &str = "libSMILEapi.so";

/// The ComParE_2016 configuration, relative to the installation's `config/` folder.
pub const COMPARE_CONFIG: &str = "compare/ComParE_2016.conf";

/// A usable openSMILE installation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Installation {
    /// `libSMILEapi.so`.
    pub library: PathBuf,
    /// The `config/` folder of the wheel (`compare/`, `shared/`, …).
    pub config_root: PathBuf,
}

impl Installation {
    /// The installation in `dir`, if it has both the library and the ComParE configuration.
    pub fn in_dir(dir: &Path) -> Option<Installation> {
        let library = dir.join(LIBRARY_FILE);
        let config_root = dir.join("config");
        (library.is_file() && config_root.join(COMPARE_CONFIG).is_file())
            .then_some(Installation { library, config_root })
    }
}

/// The installation to use: `explicit` (the flag) or the environment variable if given,
/// which must be installations, else the first of [`search_dirs`] that is one.
pub fn locate(explicit: Option<&Path>) -> Result<Installation, FeaturizeError> {
    let from_env = std::env::var_os(OPENSMILE_DIR_ENV).map(PathBuf::from);
    locate_in(explicit, from_env.as_deref(), &search_dirs())
}

/// [`locate`] with its inputs spelled out (unit-tested).
pub fn locate_in(
    explicit: Option<&Path>,
    from_env: Option<&Path>,
    dirs: &[PathBuf],
) -> Result<Installation, FeaturizeError> {
    let not_found = |searched: String| FeaturizeError::NotFound {
        searched,
        version: OPENSMILE_VERSION,
        env: OPENSMILE_DIR_ENV,
    };
    let setting = [("--opensmile", explicit), (OPENSMILE_DIR_ENV, from_env)]
        .into_iter()
        .find_map(|(origin, dir)| dir.map(|d| (origin, d)));
    if let Some((origin, dir)) = setting {
        return Installation::in_dir(dir)
            .ok_or_else(|| not_found(format!("{} (from {origin})", dir.display())));
    }
    dirs.iter()
        .find_map(|d| Installation::in_dir(d))
        .ok_or_else(|| not_found(dirs.iter().map(|d| d.display().to_string()).collect::<Vec<_>>().join(", ")))
}

/// Folders searched when nothing is set, in order (see the module doc).
pub fn search_dirs() -> Vec<PathBuf> {
    let cache = |root: &Path| root.join(".cache/opensmile").join(OPENSMILE_VERSION);
    let mut dirs = Vec::new();
    if let Some(exe_dir) = std::env::current_exe().ok().and_then(|p| p.parent().map(Path::to_path_buf)) {
        dirs.push(exe_dir.join("opensmile"));
        dirs.extend(exe_dir.ancestors().map(cache));
    }
    dirs.push(cache(Path::new(env!("CARGO_MANIFEST_DIR"))));
    dirs
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fake_installation(dir: &Path) {
        std::fs::create_dir_all(dir.join("config/compare")).unwrap();
        std::fs::write(dir.join(LIBRARY_FILE), b"not really a library").unwrap();
        std::fs::write(dir.join("config").join(COMPARE_CONFIG), b";").unwrap();
    }

    #[test]
    fn an_explicit_setting_wins_and_must_be_an_installation() {
        let good = tempfile::tempdir().unwrap();
        fake_installation(good.path());
        let empty = tempfile::tempdir().unwrap();
        let found = locate_in(Some(good.path()), Some(empty.path()), &[]).unwrap();
        assert_eq!(found.library, good.path().join(LIBRARY_FILE));
        assert_eq!(found.config_root, good.path().join("config"));
        // The env setting is used when there is no flag, and a bad one is not skipped over.
        let err = locate_in(None, Some(empty.path()), &[good.path().to_path_buf()]).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains(OPENSMILE_DIR_ENV) && msg.contains("make deps"), "{msg}");
        assert!(msg.contains(&empty.path().display().to_string()), "{msg}");
    }

    #[test]
    fn the_search_takes_the_first_complete_folder_and_names_all_it_tried() {
        let lib_only = tempfile::tempdir().unwrap();
        std::fs::write(lib_only.path().join(LIBRARY_FILE), b"x").unwrap();
        let good = tempfile::tempdir().unwrap();
        fake_installation(good.path());
        let dirs = vec![lib_only.path().to_path_buf(), good.path().to_path_buf()];
        assert_eq!(locate_in(None, None, &dirs).unwrap().library, good.path().join(LIBRARY_FILE));
        let msg = locate_in(None, None, &dirs[..1]).unwrap_err().to_string();
        assert!(msg.contains(&lib_only.path().display().to_string()) && msg.contains("--opensmile"), "{msg}");
    }
}
