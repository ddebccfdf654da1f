//! Perun's test kit (not published): one way to stand up what the tests, the benchmarks
//! and the demo all need.
//!
//! - [`service`]: the trust service in-process on loopback, over an in-memory SQLite
//!   store (or any [`perun_trust::store::Store`]), with a clock the test moves;
//! - [`soft_worker`]: workers on software TPMs with user-space IMA logs, certified by a
//!   software EK CA, speaking the real protocol;
//! - [`parties`]: the stakeholders they work for, registered through
//!   [`perun_client::workflow`].
//!
//! Nothing here proves anything about a platform: the software TPM and its CA are
//! development pieces, named as such in the evidence (`ImaSource::UserSpace`, the CA's
//! common name), and no default policy trusts them. The `perun` binary links this crate
//! only in its `demo` and `bench` roles, never in the `worker`, `enclave` or `serve`
//! builds a policy measures.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod parties;
pub mod service;
pub mod soft_worker;

pub use parties::Parties;
pub use service::InProcess;
pub use soft_worker::{SimWorker, SoftEkCa};

/// What can go wrong while standing the kit up.
#[derive(Debug, thiserror::Error)]
pub enum TestkitError {
    /// The worker side (session, evidence) failed.
    #[error("worker: {0}")]
    Worker(#[from] perun_worker::WorkerError),
    /// The service refused or could not be reached.
    #[error("trust service: {0}")]
    Client(#[from] perun_client::ClientError),
    /// The service could not start (keys, store, listener).
    #[error("trust service: {0}")]
    Trust(#[from] perun_trust::TrustError),
    /// A policy could not be built.
    #[error("{0}")]
    Attest(#[from] perun_attest::AttestError),
    /// A key could not be made or wrapped.
    #[error("{0}")]
    Seal(#[from] perun_seal::SealError),
    /// A name or other vocabulary value is invalid.
    #[error("{0}")]
    Core(#[from] perun_core::CoreError),
    /// The software EK CA could not issue a certificate.
    #[error("software EK CA: {0}")]
    Certificate(#[from] rcgen::Error),
    /// A policy could not be encoded.
    #[error("encoding: {0}")]
    Json(#[from] serde_json::Error),
    /// A temporary folder could not be made.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// The world could not be set up as asked.
    #[error("{0}")]
    Setup(String),
}
