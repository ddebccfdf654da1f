//! Perun's training engine.
//!
//! A model owner's model is data: a JSON [`ModelSpec`] (layers, loss, optimizer,
//! hyper-parameters) plus optional initial weights in `safetensors`. This crate checks a
//! spec against its input before any training, builds the network with Burn, trains it
//! on a [`perun_seal::Dataset`], and hands the trained weights back as bytes: nothing is
//! read from or written to a file in between, so inside an attested worker the
//! plaintext model and data stay in memory.
//!
//! - [`spec`]: the model spec, its validation and shape inference;
//! - [`network`]: the Burn modules built from a spec;
//! - [`backend`]: the one place where the compute device is chosen;
//! - [`train`](mod@train): the training loop and its metrics;
//! - [`weights`]: trained weights to and from `safetensors` bytes;
//! - [`eval`]: evaluation and prediction.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod backend;
pub mod curve;
mod data;
pub mod dpsgd;
pub mod error;
pub mod eval;
pub mod network;
pub mod privacy;
mod score;
pub mod spec;
pub mod train;
pub mod weights;

pub use error::MlError;
pub use eval::{evaluate, predict, Evaluation, Predictor};
pub use spec::ModelSpec;
pub use train::{train, EpochMetrics, TrainEvent, TrainOutcome};
