//! The sizes of the VAE-ER and STL networks (Sec. IV-C, Sec. V): one place for the candle
//! networks ([`super::nets`]), the host forward pass and checkpoints ([`super::serving`]) and
//! the ONNX exporter ([`super::onnx`]), so none of them has to import another for a shape.

/// VAE hidden width (encoder and decoder).
pub const VAE_HIDDEN: usize = 512;
/// Latent width; the noise bank is `[S, LATENT]`.
pub const LATENT: usize = 256;
/// Emotional-regressor (and STL) hidden width.
pub const ER_HIDDEN: usize = 128;
/// Encoder and decoder depth.
pub const VAE_LAYERS: usize = 3;
/// ER and STL depth.
pub const ER_LAYERS: usize = 4;
