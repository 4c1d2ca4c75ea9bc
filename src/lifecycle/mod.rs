//! The process lifecycle every stage shares: the shutdown signal ([`Shutdown`],
//! [`ShutdownTrigger`], [`shutdown::channel`]), what a stage receives from the process
//! ([`StageContext`]) and how a process runs several stages side by side ([`run_together`]).
//!
//! | file | job | I/O? |
//! |---|---|---|
//! | `shutdown` | the drain signal: one trigger per process, any number of listeners | signals |
//! | `stage` | [`StageContext`], [`StageFuture`], [`boxed`], [`run_together`] | tasks |
//!
//! It knows no stage: the infer stage ([`crate::pipeline`]) takes a [`StageContext`]; the
//! stages' typed errors and reports, and the archive stage built from the configuration, are in
//! [`crate::service`].

pub mod shutdown;
pub mod stage;

pub use shutdown::{Shutdown, ShutdownTrigger};
pub use stage::{boxed, run_together, StageContext, StageFuture, StageTaskFailed};
