//! Perun's worker: the TPM-free job runner that the attested worker and the enclave share,
//! and (feature `tpm`, on in the `perun` binary) the TPM agent beside it.
//!
//! - [`job`]: running a claimed job: fetch, open in memory, train under continuous
//!   attestation, seal the model to its receivers, or abort and wipe; generic over the
//!   [`job::Attester`] (TPM agent or enclave);
//! - `enclave` (feature `enclave`): the enclave of `perun-enclave` as an attester;
//! - [`platform`] (feature `tpm`): the worker's TPM and IMA log source, and its evidence;
//! - [`agent`] (feature `tpm`): enrolment with the trust service (EK, AK, credential activation),
//!   claiming jobs, attesting for them, and opening the keys released to it.
//!
//! Simulated workers on software TPMs, for benchmarks and tests, are `perun-testkit`'s.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

#[cfg(feature = "tpm")]
pub mod agent;
#[cfg(feature = "enclave")]
pub mod enclave;
pub mod job;
#[cfg(feature = "tpm")]
pub mod platform;

#[cfg(feature = "tpm")]
pub use agent::{Agent, Session};
#[cfg(feature = "tpm")]
pub use platform::Platform;

/// Everything that can go wrong in the worker.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    /// The TPM or the IMA source failed.
    #[cfg(feature = "tpm")]
    #[error("TPM: {0}")]
    Tpm(#[from] perun_tpm::TpmError),
    /// The trust service refused or could not be reached.
    #[error("trust service: {0}")]
    Trust(#[from] perun_client::ClientError),
    /// Evidence, a policy or a certificate could not be read.
    #[error("{0}")]
    Attest(#[from] perun_attest::AttestError),
    /// An output could not be sealed, or its key wrapped to the service.
    #[error("{0}")]
    Seal(#[from] perun_seal::SealError),
    /// A local file or folder could not be used; `what` names it.
    #[error("{what}: {source}")]
    Io {
        /// What was being done, e.g. `creating perun-outputs`.
        what: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The claim, a released key or an asset was refused: nothing was opened or trained.
    #[error(transparent)]
    Claim(#[from] perun_client::ClaimError),
    /// The model spec, with the manifest's hyper-parameters applied, is not usable.
    #[error("model spec: {0}")]
    Spec(String),
    /// The data sets of the job do not fit together (columns, classes).
    #[error("the data sets do not fit together: {0}")]
    DataMismatch(#[source] perun_seal::SealError),
    /// Training failed.
    #[error("training failed: {0}")]
    Training(#[source] perun_ml::MlError),
    /// A receiver's or the service's `age` recipient does not parse.
    #[error("the recipient of {who}: {source}")]
    Recipient {
        /// Whose (a receiver's name, or `the service`).
        who: String,
        /// The parse error.
        #[source]
        source: perun_seal::SealError,
    },
    /// The attester asked to attest for a job it does not run.
    #[error("this attester runs job {running}, not {asked}")]
    WrongJob {
        /// The job it runs.
        running: perun_core::Digest,
        /// The job asked for.
        asked: perun_core::Digest,
    },
    /// The attester (an enclave's evidence source) failed.
    #[error("{0}")]
    Attester(#[source] Box<dyn std::error::Error + Send + Sync>),
}
