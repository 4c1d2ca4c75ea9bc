//! Which audio files an `--audio DIR|FILE…` list names, and the utterance id of each.
//!
//! A folder is walked recursively (hidden entries skipped) for files whose extension is one
//! of [`AUDIO_EXTENSIONS`]; other files there are listed as ignored, not silently passed over.
//! A file named on its own is taken whatever its extension (it fails later, with a reason,
//! if it is not audio). The utterance id is the path relative to the folder it was found in
//! (`/`-separated; the file name for a flat folder, as MSP-Podcast's `FileName`), or the file
//! name of a file named on its own. Two files with one id are an error: their vectors would
//! be indistinguishable in the corpus and on the topic.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::error::FeaturizeError;

/// Extensions (lower case) taken from folders.
pub const AUDIO_EXTENSIONS: &[&str] = &["wav", "flac", "mp3"];

/// One audio file and its utterance id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AudioFile {
    pub path: PathBuf,
    pub utterance_id: String,
}

/// The files found, sorted by utterance id, and what folders held that is not audio.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Discovered {
    pub files: Vec<AudioFile>,
    pub ignored: Vec<PathBuf>,
}

/// Lists the audio files under `inputs` (see the module doc).
pub fn discover(inputs: &[PathBuf]) -> Result<Discovered, FeaturizeError> {
    let mut by_id: BTreeMap<String, PathBuf> = BTreeMap::new();
    let mut ignored = Vec::new();
    let mut add = |id: String, path: PathBuf| -> Result<(), FeaturizeError> {
        if id.contains(['\n', '\r', '\t']) {
            return Err(FeaturizeError::Invalid {
                path,
                reason: "a file name with a tab or line break cannot be an utterance id".into(),
            });
        }
        match by_id.insert(id.clone(), path.clone()) {
            Some(other) if other != path => Err(FeaturizeError::Invalid {
                path,
                reason: format!("has the same utterance id `{id}` as {}", other.display()),
            }),
            _ => Ok(()),
        }
    };
    for input in inputs {
        let meta = std::fs::metadata(input).map_err(FeaturizeError::io("read", input))?;
        if meta.is_dir() {
            let mut found = Vec::new();
            walk(input, &mut found, &mut ignored)?;
            for path in found {
                let rel = path.strip_prefix(input).unwrap_or(&path);
                let id =
                    rel.components().map(|c| c.as_os_str().to_string_lossy()).collect::<Vec<_>>().join("/");
                add(id, path)?;
            }
        } else {
            let id = input.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            add(id, input.clone())?;
        }
    }
    ignored.sort();
    Ok(Discovered {
        files: by_id.into_iter().map(|(utterance_id, path)| AudioFile { path, utterance_id }).collect(),
        ignored,
    })
}

fn walk(dir: &Path, found: &mut Vec<PathBuf>, ignored: &mut Vec<PathBuf>) -> Result<(), FeaturizeError> {
    for entry in std::fs::read_dir(dir).map_err(FeaturizeError::io("list", dir))? {
        let entry = entry.map_err(FeaturizeError::io("list", dir))?;
        let path = entry.path();
        if entry.file_name().to_string_lossy().starts_with('.') {
            continue;
        }
        let kind = entry.file_type().map_err(FeaturizeError::io("read", &path))?;
        if kind.is_dir() {
            walk(&path, found, ignored)?;
        } else if is_audio_name(&path) {
            found.push(path);
        } else {
            ignored.push(path);
        }
    }
    Ok(())
}

fn is_audio_name(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| AUDIO_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folders_give_relative_ids_and_list_what_they_ignore() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("spk1")).unwrap();
        for name in ["b.wav", "spk1/a.FLAC", "notes.txt", ".hidden.wav"] {
            std::fs::write(root.join(name), b"").unwrap();
        }
        let single = tempfile::tempdir().unwrap();
        std::fs::write(single.path().join("take.raw"), b"").unwrap();
        let found = discover(&[root.to_path_buf(), single.path().join("take.raw")]).unwrap();
        let ids: Vec<&str> = found.files.iter().map(|f| f.utterance_id.as_str()).collect();
        assert_eq!(ids, ["b.wav", "spk1/a.FLAC", "take.raw"]);
        assert_eq!(found.ignored, [root.join("notes.txt")]);
    }

    #[test]
    fn one_id_for_two_files_is_an_error_and_a_missing_input_too() {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        std::fs::write(a.path().join("x.wav"), b"").unwrap();
        std::fs::write(b.path().join("x.wav"), b"").unwrap();
        let msg = discover(&[a.path().to_path_buf(), b.path().to_path_buf()]).unwrap_err().to_string();
        assert!(msg.contains("same utterance id `x.wav`"), "{msg}");
        // The same file named twice is one file.
        let twice = discover(&[a.path().join("x.wav"), a.path().join("x.wav")]).unwrap();
        assert_eq!(twice.files.len(), 1);
        assert!(discover(&[a.path().join("missing")]).is_err());
    }
}
