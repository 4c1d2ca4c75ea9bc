//! Finished trials on disk, for `emogate evaluate --resume DIR`: one file per (trial, method),
//! written atomically the moment it completes, so an evaluation can be stopped anywhere (kill,
//! `--max-minutes`, a session that ends) and a rerun skips what is done and rebuilds the report
//! from every stored trial.
//!
//! A trial file holds what the report needs of that trial — the CCC of each of its table cells
//! at the table coverages and the method's inference cost — not the raw per-record scores,
//! so ten accumulated trials stay small enough to commit (docs/results/trials/).
//!
//! Layout of DIR:
//! - `evaluation.json`: the [`Fingerprint`] every stored trial was made under;
//! - `cross_folds-seed{S}.json`: the cross corpus' per-fold STL predictions (optional cache);
//! - `trials/seed-{S}/{method}.json`: one [`TrialRecord`].

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::report::MethodCost;
use super::EvalError;
use crate::attribute::Attribute;
use crate::durable;

/// Version of the files in a trial directory; a directory of another version is refused.
pub const STORE_FORMAT: u32 = 1;

/// What makes trials of two runs comparable; a resumed run must match it exactly.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Fingerprint {
    pub format: u32,
    /// The evaluated model (its STL predictions are what every method's ranking is applied to).
    pub model_sha256: String,
    pub corpus_sha256: String,
    pub cross_corpus_sha256: Option<String>,
    /// Latent samples / dropout passes at inference.
    pub mc_samples: usize,
    /// The trial schedule: the trainer configuration with the seed cleared.
    pub schedule: serde_json::Value,
}

impl Fingerprint {
    /// Names of the fields in which `self` and `other` differ, each with both values.
    pub fn differences(&self, other: &Fingerprint) -> Vec<String> {
        let (a, b) = (to_map(self), to_map(other));
        a.keys()
            .chain(b.keys())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .filter(|k| a.get(*k) != b.get(*k))
            .map(|k| {
                let show = |m: &serde_json::Map<String, serde_json::Value>| {
                    m.get(k).map_or("(missing)".to_string(), |v| v.to_string())
                };
                format!("{k}: stored {} vs this run {}", show(&b), show(&a))
            })
            .collect()
    }
}

fn to_map(f: &Fingerprint) -> serde_json::Map<String, serde_json::Value> {
    match serde_json::to_value(f).expect("fingerprint serialises") {
        serde_json::Value::Object(m) => m,
        _ => unreachable!("a struct serialises to an object"),
    }
}

/// One table row of one trial: CCC at each of the table coverages.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrialCells {
    /// `within_corpus`, `cross_corpus` or `cross_corpus_utl`.
    pub table: String,
    pub attribute: Attribute,
    pub uncertainty_source: Attribute,
    /// NaN (a constant prediction) is stored as `null`.
    #[serde(with = "nan_as_null")]
    pub ccc: Vec<f64>,
}

/// JSON has no NaN: store it as `null` and read `null` back as NaN.
mod nan_as_null {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &[f64], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(v.iter().map(|x| x.is_finite().then_some(*x)))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<f64>, D::Error> {
        Ok(Vec::<Option<f64>>::deserialize(d)?.into_iter().map(|x| x.unwrap_or(f64::NAN)).collect())
    }
}

/// One method's result in one trial.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrialRecord {
    pub seed: u64,
    pub method: String,
    pub cells: Vec<TrialCells>,
    pub cost: MethodCost,
    /// Wall seconds the method took in this trial (training and scoring).
    pub seconds: f64,
}

/// A trial directory opened for one evaluation.
#[derive(Debug, Clone)]
pub struct TrialStore {
    dir: PathBuf,
}

impl TrialStore {
    /// Opens (creating if needed) `dir` for trials made under `fingerprint`; a directory that
    /// holds another evaluation's trials is refused, naming every field that differs.
    pub fn open(dir: &Path, fingerprint: &Fingerprint) -> Result<TrialStore, EvalError> {
        std::fs::create_dir_all(dir.join("trials")).map_err(EvalError::io(dir))?;
        let store = TrialStore { dir: dir.to_path_buf() };
        match store.read::<Fingerprint>("evaluation.json")? {
            Some(stored) if &stored == fingerprint => {}
            Some(stored) => {
                return Err(EvalError::Config(format!(
                    "{} holds trials of a different evaluation ({}); resume with the same model, \
                     corpora, --mc-samples and schedule, or choose another --resume directory",
                    dir.display(),
                    fingerprint.differences(&stored).join("; ")
                )))
            }
            None => store.write("evaluation.json", fingerprint)?,
        }
        Ok(store)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The stored result of `method` in the trial of `seed`, if that run finished.
    pub fn load(&self, seed: u64, method: &str) -> Result<Option<TrialRecord>, EvalError> {
        let record = self.read::<TrialRecord>(&trial_file(seed, method))?;
        match record {
            Some(r) if r.seed != seed || r.method != method => Err(EvalError::Config(format!(
                "{} holds seed {} / {} (expected seed {seed} / {method})",
                self.dir.join(trial_file(seed, method)).display(),
                r.seed,
                r.method
            ))),
            r => Ok(r),
        }
    }

    /// Stores a finished run (atomically: a kill leaves the old state or the new file).
    pub fn save(&self, record: &TrialRecord) -> Result<(), EvalError> {
        let rel = trial_file(record.seed, &record.method);
        let parent = self.dir.join(&rel);
        let parent = parent.parent().expect("trial files are in a seed directory");
        std::fs::create_dir_all(parent).map_err(EvalError::io(parent))?;
        self.write(&rel, record)
    }

    /// Number of stored trial files.
    pub fn count(&self) -> Result<usize, EvalError> {
        let root = self.dir.join("trials");
        let mut n = 0;
        for seed_dir in std::fs::read_dir(&root).map_err(EvalError::io(&root))? {
            let path = seed_dir.map_err(EvalError::io(&root))?.path();
            if path.is_dir() {
                n += std::fs::read_dir(&path)
                    .map_err(EvalError::io(&path))?
                    .filter_map(Result::ok)
                    .filter(|e| e.file_name().to_string_lossy().ends_with(".json"))
                    .count();
            }
        }
        Ok(n)
    }

    /// Reads `rel` as JSON; `None` if it does not exist.
    pub fn read<T: DeserializeOwned>(&self, rel: &str) -> Result<Option<T>, EvalError> {
        let path = self.dir.join(rel);
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|e| {
                EvalError::Config(format!("{} is not a valid trial-store file: {e}", path.display()))
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(EvalError::io(&path)(e)),
        }
    }

    /// Writes `value` as pretty JSON to `rel`, durably and atomically.
    pub fn write<T: Serialize>(&self, rel: &str, value: &T) -> Result<(), EvalError> {
        let target = self.dir.join(rel);
        let name = target.file_name().expect("a file name").to_string_lossy().into_owned();
        let temp = target.with_file_name(format!(".{name}.{}.tmp", std::process::id()));
        let mut text = serde_json::to_vec_pretty(value).expect("trial-store values serialise");
        text.push(b'\n');
        durable::replace_file(&target, &temp, &text)
            .map_err(|e| EvalError::Io { path: e.path, source: e.source })
    }
}

/// Seconds the `remaining` runs (method names) should take, from the stored runs' mean time
/// per method; a method not seen yet counts at the mean of the stored runs of its family
/// (`same_family`), else of all stored runs. `None` before any run.
pub fn eta_seconds(
    done: &[TrialRecord],
    remaining: &[&str],
    same_family: impl Fn(&str, &str) -> bool,
) -> Option<f64> {
    if done.is_empty() {
        return None;
    }
    let mean = |rs: Vec<f64>| (!rs.is_empty()).then(|| rs.iter().sum::<f64>() / rs.len() as f64);
    let overall = mean(done.iter().map(|r| r.seconds).collect()).expect("done is not empty");
    let of = |m: &str| {
        mean(done.iter().filter(|r| r.method == m).map(|r| r.seconds).collect())
            .or_else(|| mean(done.iter().filter(|r| same_family(&r.method, m)).map(|r| r.seconds).collect()))
            .unwrap_or(overall)
    };
    Some(remaining.iter().map(|m| of(m)).sum())
}

/// `trials/seed-{S}/{method}.json` (seeds zero-padded so a listing sorts numerically).
fn trial_file(seed: u64, method: &str) -> String {
    format!("trials/seed-{seed:04}/{method}.json")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fingerprint(mc: usize) -> Fingerprint {
        Fingerprint {
            format: STORE_FORMAT,
            model_sha256: "m".into(),
            corpus_sha256: "c".into(),
            cross_corpus_sha256: None,
            mc_samples: mc,
            schedule: serde_json::json!({"joint_epochs": 12}),
        }
    }

    fn record(seed: u64) -> TrialRecord {
        TrialRecord {
            seed,
            method: "mcd".into(),
            cells: vec![TrialCells {
                table: "within_corpus".into(),
                attribute: Attribute::Valence,
                uncertainty_source: Attribute::Valence,
                // Values that need all 17 digits: a round trip must keep them bit for bit.
                ccc: vec![0.1 + 0.2, 1.0 / 3.0, 0.7],
            }],
            cost: MethodCost {
                method: "mcd".into(),
                label: "MCD".into(),
                uncertainty: "consensus_std".into(),
                parameters: 10,
                parameters_at_inference: 10,
                test_seconds: 0.5,
                records_per_sec: 4000.0,
                test_seconds_full_passes: Some(1.0),
                training_samples_per_sec: 9000.0,
            },
            seconds: 12.0,
        }
    }

    #[test]
    fn a_saved_trial_loads_back_exactly_and_missing_ones_are_none() {
        let tmp = tempfile::tempdir().unwrap();
        let store = TrialStore::open(tmp.path(), &fingerprint(100)).unwrap();
        assert_eq!(store.load(3, "mcd").unwrap(), None);
        store.save(&record(3)).unwrap();
        assert_eq!(store.load(3, "mcd").unwrap(), Some(record(3)));
        assert_eq!(store.count().unwrap(), 1);
        let mut nan = record(5);
        nan.cells[0].ccc[2] = f64::NAN;
        store.save(&nan).unwrap();
        assert!(store.load(5, "mcd").unwrap().unwrap().cells[0].ccc[2].is_nan(), "NaN survives as null");
        // Reopened under the same fingerprint (a resumed run), the trial is still there.
        let again = TrialStore::open(tmp.path(), &fingerprint(100)).unwrap();
        assert_eq!(again.load(3, "mcd").unwrap(), Some(record(3)));
        let leftovers: Vec<_> = std::fs::read_dir(tmp.path().join("trials/seed-0003"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(leftovers, ["mcd.json"], "no temporary file is left");
    }

    #[test]
    fn eta_counts_each_remaining_run_at_its_methods_or_its_familys_mean_time() {
        let run = |method: &str, seconds: f64| TrialRecord { method: method.into(), seconds, ..record(1) };
        let family = |a: &str, b: &str| a.starts_with("mcd") == b.starts_with("mcd");
        assert_eq!(eta_seconds(&[], &["mcd"], family), None);
        let done = [run("vae_er", 400.0), run("vae_er", 200.0), run("mcd", 60.0)];
        // vae_er at its 300, mcd at its 60, unseen no_vae at its family's 300 and unseen
        // mcd_soft at its family's 60.
        assert_eq!(eta_seconds(&done, &["vae_er", "mcd", "no_vae", "mcd_soft"], family), Some(720.0));
        // With no run of the family, the mean of all runs (220).
        assert_eq!(eta_seconds(&done[..2], &["mcd_soft"], family), Some(300.0));
        assert_eq!(eta_seconds(&done, &["x"], |_, _| false), Some(220.0));
        assert_eq!(eta_seconds(&done, &[], family), Some(0.0));
    }

    #[test]
    fn another_evaluations_directory_is_refused_naming_what_differs() {
        let tmp = tempfile::tempdir().unwrap();
        TrialStore::open(tmp.path(), &fingerprint(100)).unwrap();
        let e = TrialStore::open(tmp.path(), &fingerprint(8)).unwrap_err().to_string();
        assert!(e.contains("mc_samples: stored 100 vs this run 8"), "{e}");
        assert!(!e.contains("corpus_sha256"), "only differing fields are named: {e}");
    }

    #[test]
    fn a_file_under_the_wrong_name_or_corrupt_is_an_error_not_a_trial() {
        let tmp = tempfile::tempdir().unwrap();
        let store = TrialStore::open(tmp.path(), &fingerprint(100)).unwrap();
        store.save(&record(3)).unwrap();
        std::fs::create_dir_all(tmp.path().join("trials/seed-0004")).unwrap();
        std::fs::copy(
            tmp.path().join("trials/seed-0003/mcd.json"),
            tmp.path().join("trials/seed-0004/mcd.json"),
        )
        .unwrap();
        assert!(store.load(4, "mcd").unwrap_err().to_string().contains("holds seed 3"));
        std::fs::write(tmp.path().join("trials/seed-0004/mcd.json"), b"{\"seed\": 4").unwrap();
        assert!(store.load(4, "mcd").unwrap_err().to_string().contains("not a valid trial-store file"));
    }
}
