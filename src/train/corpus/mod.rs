//! Training corpora in memory, and where they come from.
//!
//! Both sources, the synthetic generator ([`synth`], whose `scenes` variant is
//! `synth_scenes`) and real MSP-Podcast-style files
//! ([`msp`]), end up as one [`Corpus`]: a feature matrix, a split and speaker per
//! utterance, and the raw per-annotator votes. Labels are derived from the votes here, once,
//! so soft labels and consensus labels can never disagree about what the votes were.

pub mod msp;
pub mod synth;
mod synth_scenes;

use serde::{Deserialize, Serialize};

use crate::attribute::{Attribute, PerAttribute, LIKERT_BINS};

use super::labels;

/// Feature dimensionality of the ComParE/IS13 openSMILE set the serving contract fixes.
pub const FEATURE_DIMS: usize = 6373;

/// Partition of an utterance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Split {
    Train,
    Dev,
    Test,
    /// Not annotated; used for the VAE's unsupervised pre-training.
    Unlabeled,
}

impl Split {
    pub const ALL: [Split; 4] = [Split::Train, Split::Dev, Split::Test, Split::Unlabeled];

    pub fn as_str(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Dev => "dev",
            Split::Test => "test",
            Split::Unlabeled => "unlabeled",
        }
    }

    /// Parses our names and MSP-Podcast's (`Train`, `Development`, `Test1`, `Test2`).
    pub fn parse(s: &str) -> Option<Split> {
        match s.trim().to_ascii_lowercase().as_str() {
            "train" | "training" => Some(Split::Train),
            "dev" | "development" | "validation" | "valid" => Some(Split::Dev),
            "test" | "test1" | "test2" | "test3" => Some(Split::Test),
            "unlabeled" | "unlabelled" | "pool" => Some(Split::Unlabeled),
            _ => None,
        }
    }
}

/// Descriptive metadata (`corpus.json`); optional for real data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CorpusMeta {
    /// Identifier recorded in the model manifest, e.g. `synthetic-msp-v1-seed7`.
    pub id: String,
    /// openSMILE configuration the features come from.
    #[serde(default = "default_feature_set")]
    pub feature_set: String,
    /// Number of Likert points of the votes (7 for MSP-Podcast, 5 for IEMOCAP).
    #[serde(default = "default_scale")]
    pub likert_points: u8,
    /// How the corpus was made (generator parameters for synthetic corpora).
    #[serde(default)]
    pub provenance: serde_json::Value,
}

fn default_feature_set() -> String {
    "ComParE_2016".into()
}

fn default_scale() -> u8 {
    7
}

/// One utterance's identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Utterance {
    pub id: String,
    pub speaker: String,
    pub split: Split,
}

/// One annotator's ratings of one utterance, in the order valence, arousal, dominance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Vote {
    pub annotator: u32,
    pub ratings: [u8; 3],
}

/// A corpus in memory.
#[derive(Debug, Clone, PartialEq)]
pub struct Corpus {
    pub meta: CorpusMeta,
    pub dims: usize,
    pub utterances: Vec<Utterance>,
    /// Row-major `[utterances.len(), dims]`.
    pub features: Vec<f32>,
    /// Votes per utterance (empty for unlabeled utterances).
    pub votes: Vec<Vec<Vote>>,
}

/// Per-utterance labels of one attribute, derived from the votes.
#[derive(Debug, Clone, PartialEq)]
pub struct Labels {
    pub consensus: Vec<f32>,
    /// Row-major `[n, LIKERT_BINS]`.
    pub soft: Vec<f32>,
}

impl Corpus {
    /// Row `i` of the feature matrix.
    pub fn row(&self, i: usize) -> &[f32] {
        &self.features[i * self.dims..(i + 1) * self.dims]
    }

    /// Indices of the utterances in `split`, in file order.
    pub fn indices(&self, split: Split) -> Vec<usize> {
        (0..self.utterances.len()).filter(|&i| self.utterances[i].split == split).collect()
    }

    /// Features of the given rows, row-major.
    pub fn gather(&self, rows: &[usize]) -> Vec<f32> {
        let mut out = Vec::with_capacity(rows.len() * self.dims);
        rows.iter().for_each(|&i| out.extend_from_slice(self.row(i)));
        out
    }

    /// Ratings of `attribute` for utterance `i`.
    pub fn ratings(&self, i: usize, attribute: Attribute) -> Vec<u8> {
        self.votes[i].iter().map(|v| v.ratings[attribute.index()]).collect()
    }

    /// Consensus and soft labels of `attribute` for the given rows.
    pub fn labels(&self, rows: &[usize], attribute: Attribute) -> Labels {
        let mut consensus = Vec::with_capacity(rows.len());
        let mut soft = Vec::with_capacity(rows.len() * LIKERT_BINS);
        for &i in rows {
            let r = self.ratings(i, attribute);
            consensus.push(labels::vote_mean(&r));
            soft.extend_from_slice(&labels::vote_histogram(&r));
        }
        Labels { consensus, soft }
    }

    /// Labels of all three attributes for the given rows.
    pub fn all_labels(&self, rows: &[usize]) -> PerAttribute<Labels> {
        PerAttribute::from_fn(|a| self.labels(rows, a))
    }

    /// Checks the invariants the trainer relies on; returns a reason when one is broken.
    pub fn validate(&self) -> Result<(), String> {
        if self.features.len() != self.utterances.len() * self.dims {
            return Err("feature matrix does not match the number of utterances".into());
        }
        if self.votes.len() != self.utterances.len() {
            return Err("votes do not match the number of utterances".into());
        }
        if let Some(i) = self.features.iter().position(|v| !v.is_finite()) {
            return Err(format!(
                "feature value {} of utterance {} is not finite",
                i % self.dims,
                i / self.dims
            ));
        }
        let max = self.meta.likert_points;
        for (u, votes) in self.utterances.iter().zip(&self.votes) {
            if u.split != Split::Unlabeled && votes.is_empty() {
                return Err(format!(
                    "utterance {} is in the {} split but has no votes",
                    u.id,
                    u.split.as_str()
                ));
            }
            if votes.iter().flat_map(|v| v.ratings).any(|r| r < 1 || r > max) {
                return Err(format!("utterance {} has a vote outside 1..={max}", u.id));
            }
        }
        Ok(())
    }
}
