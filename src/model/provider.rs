//! Execution provider choice: `cuda`, `cpu` or `auto`.
//!
//! `auto` asks for CUDA and falls back to CPU when it cannot be had, but never silently:
//! the fallback is logged at WARN with the reason and reported in [`ActiveProvider`], which
//! the service exports as a metric label, so a GPU node quietly running on CPU is visible.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::error::ModelError;

/// What the operator asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum ProviderChoice {
    /// CUDA when available, otherwise CPU with a warning.
    #[default]
    Auto,
    /// CUDA or refuse to start.
    Cuda,
    /// CPU only.
    Cpu,
}

impl FromStr for ProviderChoice {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "auto" => Ok(ProviderChoice::Auto),
            "cuda" | "gpu" => Ok(ProviderChoice::Cuda),
            "cpu" => Ok(ProviderChoice::Cpu),
            other => Err(format!("unknown execution provider `{other}` (expected auto, cuda or cpu)")),
        }
    }
}

/// The provider a session really runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProviderKind {
    Cpu,
    Cuda,
}

impl ProviderKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ProviderKind::Cpu => "cpu",
            ProviderKind::Cuda => "cuda",
        }
    }
}

impl fmt::Display for ProviderKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Outcome of provider selection for one session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActiveProvider {
    pub kind: ProviderKind,
    /// Why `auto` ended up on CPU, when it did.
    pub fallback_reason: Option<String>,
}

/// Registers the chosen provider on `builder` and reports what it will run on.
pub fn apply(
    builder: ort::session::builder::SessionBuilder,
    choice: ProviderChoice,
) -> Result<(ort::session::builder::SessionBuilder, ActiveProvider), ModelError> {
    match choice {
        ProviderChoice::Cpu => {
            Ok((builder, ActiveProvider { kind: ProviderKind::Cpu, fallback_reason: None }))
        }
        ProviderChoice::Cuda => {
            let builder = register_cuda(builder)
                .map_err(|reason| ModelError::ProviderUnavailable { requested: "cuda".into(), reason })?;
            Ok((builder, ActiveProvider { kind: ProviderKind::Cuda, fallback_reason: None }))
        }
        ProviderChoice::Auto => match register_cuda(builder.clone()) {
            Ok(builder) => Ok((builder, ActiveProvider { kind: ProviderKind::Cuda, fallback_reason: None })),
            Err(reason) => {
                tracing::warn!(
                    reason = %reason,
                    "execution provider `auto`: CUDA is not available, FALLING BACK TO CPU \
                     (set model.execution_provider = \"cpu\" to make this explicit)"
                );
                Ok((builder, ActiveProvider { kind: ProviderKind::Cpu, fallback_reason: Some(reason) }))
            }
        },
    }
}

#[cfg(feature = "cuda")]
fn register_cuda(
    mut builder: ort::session::builder::SessionBuilder,
) -> Result<ort::session::builder::SessionBuilder, String> {
    use ort::ep::ExecutionProvider;
    let cuda = ort::ep::CUDA::default();
    match ort::ep::CUDA::is_available() {
        Ok(true) => {}
        Ok(false) => {
            return Err(
                "the loaded ONNX Runtime library was built without CUDA (install onnxruntime-gpu)".into()
            )
        }
        Err(e) => return Err(format!("could not query ONNX Runtime for CUDA support: {e}")),
    }
    cuda.register(&mut builder)
        .map_err(|e| format!("registering the CUDA execution provider failed: {e}"))?;
    Ok(builder)
}

#[cfg(not(feature = "cuda"))]
fn register_cuda(
    _builder: ort::session::builder::SessionBuilder,
) -> Result<ort::session::builder::SessionBuilder, String> {
    Err("this emogate binary was built without the `cuda` cargo feature".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_choices() {
        assert_eq!("AUTO".parse::<ProviderChoice>().unwrap(), ProviderChoice::Auto);
        assert_eq!("gpu".parse::<ProviderChoice>().unwrap(), ProviderChoice::Cuda);
        assert_eq!("cpu".parse::<ProviderChoice>().unwrap(), ProviderChoice::Cpu);
        assert!("tpu".parse::<ProviderChoice>().unwrap_err().contains("tpu"));
    }
}
