//! The three emotional attributes and a small container indexed by them.
//!
//! Everything downstream of the model (outputs, thresholds, policy, Avro and Parquet
//! fields) is "one of these per attribute", so the type lives here rather than in any one
//! of those modules.

use std::fmt;
use std::ops::{Index, IndexMut};
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Number of Likert bins of the soft-label distribution (MSP-Podcast's 1–7 scale).
pub const LIKERT_BINS: usize = 7;

/// An emotional attribute predicted by emogate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Attribute {
    Valence,
    Arousal,
    Dominance,
}

impl Attribute {
    /// All attributes in contract order (the order of the Avro fields and ONNX outputs).
    pub const ALL: [Attribute; 3] = [Attribute::Valence, Attribute::Arousal, Attribute::Dominance];

    /// Lower-case name used in ONNX output names, Avro enum symbols and Parquet columns.
    pub fn as_str(self) -> &'static str {
        match self {
            Attribute::Valence => "valence",
            Attribute::Arousal => "arousal",
            Attribute::Dominance => "dominance",
        }
    }

    /// Position in [`Attribute::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for Attribute {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Error for an attribute name that is not valence, arousal or dominance.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown attribute `{0}` (expected valence, arousal or dominance)")]
pub struct UnknownAttribute(pub String);

impl FromStr for Attribute {
    type Err = UnknownAttribute;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "valence" | "val" => Ok(Attribute::Valence),
            "arousal" | "aro" => Ok(Attribute::Arousal),
            "dominance" | "dom" => Ok(Attribute::Dominance),
            _ => Err(UnknownAttribute(s.to_string())),
        }
    }
}

/// One value per attribute, indexable by [`Attribute`].
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct PerAttribute<T> {
    pub valence: T,
    pub arousal: T,
    pub dominance: T,
}

impl<T> PerAttribute<T> {
    /// Builds the container by calling `f` once per attribute, in contract order.
    pub fn from_fn(mut f: impl FnMut(Attribute) -> T) -> Self {
        PerAttribute {
            valence: f(Attribute::Valence),
            arousal: f(Attribute::Arousal),
            dominance: f(Attribute::Dominance),
        }
    }

    /// Same as [`PerAttribute::from_fn`] for fallible constructors.
    pub fn try_from_fn<E>(mut f: impl FnMut(Attribute) -> Result<T, E>) -> Result<Self, E> {
        Ok(PerAttribute {
            valence: f(Attribute::Valence)?,
            arousal: f(Attribute::Arousal)?,
            dominance: f(Attribute::Dominance)?,
        })
    }

    /// Applies `f` to every value.
    pub fn map<U>(&self, mut f: impl FnMut(Attribute, &T) -> U) -> PerAttribute<U> {
        PerAttribute::from_fn(|a| f(a, &self[a]))
    }

    /// (attribute, value) pairs in contract order.
    pub fn iter(&self) -> impl Iterator<Item = (Attribute, &T)> {
        Attribute::ALL.into_iter().map(move |a| (a, &self[a]))
    }
}

impl<T> Index<Attribute> for PerAttribute<T> {
    type Output = T;
    fn index(&self, a: Attribute) -> &T {
        match a {
            Attribute::Valence => &self.valence,
            Attribute::Arousal => &self.arousal,
            Attribute::Dominance => &self.dominance,
        }
    }
}

impl<T> IndexMut<Attribute> for PerAttribute<T> {
    fn index_mut(&mut self, a: Attribute) -> &mut T {
        match a {
            Attribute::Valence => &mut self.valence,
            Attribute::Arousal => &mut self.arousal,
            Attribute::Dominance => &mut self.dominance,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for a in Attribute::ALL {
            assert_eq!(a.as_str().parse::<Attribute>().unwrap(), a);
            assert_eq!(Attribute::ALL[a.index()], a);
        }
        assert!("happiness".parse::<Attribute>().is_err());
    }

    #[test]
    fn per_attribute_indexing_matches_fields() {
        let p = PerAttribute::from_fn(|a| a.index() * 10);
        assert_eq!((p.valence, p.arousal, p.dominance), (0, 10, 20));
        let doubled = p.map(|_, v| v * 2);
        assert_eq!(doubled[Attribute::Dominance], 40);
        assert_eq!(p.iter().map(|(a, _)| a).collect::<Vec<_>>(), Attribute::ALL.to_vec());
    }
}
