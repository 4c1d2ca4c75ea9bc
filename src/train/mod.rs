//! The Rust trainer (feature `train`): synthetic and MSP-Podcast-style corpora, the
//! paper's VAE-ER with soft labels and the STL regressors, the fused ONNX serving graph, and
//! entropy-threshold calibration.
//!
//! | module | job |
//! |---|---|
//! | [`corpus`] | in-memory corpus, synthetic generator, MSP-style file loader/writer |
//! | [`labels`] | the trainer's labels from integer votes: histogram (soft label), mean (consensus), spread |
//! | [`metrics`] | CCC, Pearson and the coverage grid for training-time monitoring (plain slices) |
//! | [`npy`] | `.npy` feature-matrix files (the format is [`crate::codec::npy`]) |
//! | [`arch`] | the networks' sizes (latent width, hidden widths, depths), shared by nets, serving and onnx |
//! | [`nets`] | candle layers: VAE-ER and STL networks, seeded dropout |
//! | [`losses`] | the loss terms of Eq. (2)–(3) as tensors |
//! | [`optim`] | Adam applied in place on the parameter storage |
//! | [`trainer`] | phase 1 (VAE), phase 2 (joint MTL), STL; best epoch on dev |
//! | [`serving`] | the exported computation in candle (parity reference, evaluation) |
//! | [`onnx`] | writes and reads the fused serving graph as ONNX protobuf |
//! | [`calibrate`] | entropy thresholds per coverage on the dev split → manifest |
//! | [`commands`] | `emogate synth`, `train`, `calibrate`: their options and the glue between files, trainer, exporter and manifest |

pub mod arch;
pub mod calibrate;
pub mod commands;
pub mod corpus;
pub mod error;
pub mod labels;
pub mod losses;
pub mod metrics;
pub mod nets;
pub mod npy;
pub mod onnx;
pub mod optim;
pub mod serving;
pub mod trainer;

pub use error::TrainError;
