//! The audio front end: openSMILE ComParE_2016 functionals computed from audio files, for
//! training corpora (`emogate featurize`) and for the stream (`emogate produce --audio`).
//!
//! The features come from the real openSMILE, not a re-implementation: its C API
//! (`SMILEapi`) is loaded at run time from the shared library that the Python registry's
//! `opensmile` 2.6.0 wheel ships, with the configuration files of that wheel, and driven
//! exactly as the Python package drives it (`Smile(FeatureSet.ComParE_2016,
//! FeatureLevel.Functionals)`): `compare/ComParE_2016.conf` with the external audio source
//! (`shared/standard_external_wave_input.conf.inc`, 16-bit PCM) and the single external sink
//! at level `func`. So a vector made here and one made by a researcher in Python agree, and a
//! model trained on either serves the other.
//!
//! | module | job | I/O? |
//! |---|---|---|
//! | [`library`] | where `libSMILEapi.so` and its configuration files are (env, flag, `.cache/opensmile/<version>/`) | files |
//! | [`smile`] | the C API: one openSMILE instance per file, PCM in, the 6,373 functionals out | FFI |
//! | [`audio`] | decoding (WAV, FLAC, MP3), mono mixdown, resampling to 16 kHz, 16-bit PCM | files |
//! | [`discover`] | which files an `--audio DIR|FILE…` list names, and their utterance ids | files |
//! | [`batch`] | many files in parallel, each outcome handed to the caller's thread | threads |
//! | [`journal`] | resumable progress of `emogate featurize` (append-only rows + ids) | files |
//! | [`corpus_out`] | the finished corpus in the MSP-Podcast-style layout the trainer reads | files |

pub mod audio;
pub mod batch;
pub mod corpus_out;
pub mod discover;
pub mod error;
pub mod journal;
pub mod library;
pub mod smile;

pub use audio::{prepare_file, PreparedAudio};
pub use batch::{featurize_files, FileOutcome};
pub use discover::{discover, AudioFile};
pub use error::{FeaturizeError, FileError, FileProblem};
pub use library::{locate, Installation, OPENSMILE_DIR_ENV};
pub use smile::Extractor;

/// The openSMILE configuration the features come from, as records and manifests name it
/// (the first word is what the decoder compares; see `codec::feature_set_name`).
pub const FEATURE_SET: &str = "ComParE_2016";

/// The `opensmile` wheel whose library and configuration files are used (`make deps`).
pub const OPENSMILE_VERSION: &str = "2.6.0";

/// Number of ComParE_2016 functionals.
pub const COMPARE_DIMS: usize = 6373;

/// The sample rate the ComParE configuration's external source is set up for (its
/// `sampleRate{16000}` default; MSP-Podcast is 16 kHz): other rates are resampled to it.
pub const SAMPLE_RATE: u32 = 16_000;

/// The `feature_set` string written into records and corpora made here.
pub fn feature_set_label() -> String {
    format!("{FEATURE_SET} (openSMILE {OPENSMILE_VERSION} SMILEapi, functionals, {SAMPLE_RATE} Hz)")
}
