//! Perun's worker: the TPM-free job runner that the attested worker and the enclave share,
//! and (feature `tpm`, on in the `perun` binary) the TPM agent beside it.
//!
//! - [`job`]: running a claimed job: fetch, open in memory, train under continuous
//!   attestation, seal the model to its receivers, or abort and wipe; generic over the
//!   [`job::Attester`] (TPM agent or enclave);
//! - [`keys`]: the released asset keys, opened with the attested ephemeral key;
//! - [`platform`] (feature `tpm`): the worker's TPM and IMA log source, and its evidence;
//! - [`agent`] (feature `tpm`): enrolment with the trust service (EK, AK, credential activation),
//!   claiming jobs, attesting for them, and opening the keys released to it.
//!
//! Simulated workers on software TPMs, for benchmarks and tests, are `perun-testkit`'s.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

#[cfg(feature = "tpm")]
pub mod agent;
pub mod job;
pub mod keys;
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
    /// The service sent a nonce that is not hex.
    #[error("the service sent a non-hex nonce")]
    BadNonce,
    /// The claim does not match the signed manifest (job id, assets, receivers), or
    /// the job cannot run as claimed: nothing was opened or trained.
    #[error("{what}: refusing to run it")]
    ClaimMismatch {
        /// What differs.
        what: String,
    },
    /// No key was released for an asset of the claim.
    #[error("no key was released for {asset}")]
    NoKey {
        /// The asset.
        asset: perun_core::Name,
    },
    /// An opened asset's content is not what the manifest pins.
    #[error("asset {asset} has content {got}, but the manifest pins {pinned}: refusing it")]
    ContentMismatch {
        /// The asset.
        asset: perun_core::Name,
        /// SHA-256 of what opened.
        got: perun_core::Digest,
        /// What the manifest pins.
        pinned: perun_core::Digest,
    },
    /// A released secret is not an `age` identity.
    #[error("the key of {asset} is not an age identity")]
    NotAnIdentity {
        /// The asset.
        asset: perun_core::Name,
    },
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
    /// A sealed asset could not be fetched over http(s).
    #[error("fetching {location}: {source}")]
    Fetch {
        /// Its URL.
        location: String,
        /// The HTTP client's error.
        #[source]
        source: reqwest::Error,
    },
    /// The TLS configuration of the fetching client could not be built.
    #[error("TLS: {0}")]
    Tls(#[source] rustls::Error),
    /// The fetching HTTP client could not be built.
    #[error("HTTP client: {0}")]
    HttpClient(#[source] reqwest::Error),
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
