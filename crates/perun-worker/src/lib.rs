//! Perun's worker: the TPM-free job runner that the attested worker and the enclave share,
//! and (feature `tpm`, on in the `perun` binary) the TPM agent beside it.
//!
//! - [`job`]: running a claimed job: fetch, open in memory, train under continuous
//!   attestation, seal the model to its receivers, or abort and wipe; generic over the
//!   [`job::Attester`] (TPM agent or enclave);
//! - [`keys`]: the released asset keys, opened with the attested ephemeral key;
//! - [`platform`] (feature `tpm`): the worker's TPM and IMA log source, and its evidence;
//! - [`agent`] (feature `tpm`): enrolment with the trust service (EK, AK, credential activation),
//!   claiming jobs, attesting for them, and opening the keys released to it;
//! - [`sim`] (feature `sim`): simulated workers on software TPMs, to load a trust
//!   service in benchmarks and tests.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

#[cfg(feature = "tpm")]
pub mod agent;
pub mod job;
pub mod keys;
#[cfg(feature = "tpm")]
pub mod platform;
#[cfg(feature = "sim")]
pub mod sim;

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
    /// A released key or sealed asset did not open.
    #[error("{0}")]
    Seal(#[from] perun_seal::SealError),
    /// A file or a network body could not be read; `what` names it.
    #[error("{what}: {source}")]
    Io {
        /// What was being read, e.g. `reading https://host/asset.sealed`.
        what: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// Anything else, said plainly.
    #[error("{0}")]
    Failed(String),
}
