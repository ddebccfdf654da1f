//! Perun's `tee` mode: work that runs inside a TEE, at a smaller trusted base.
//!
//! - [`source`]: where TEE evidence comes from: the [`EvidenceSource`] trait, with the
//!   `sim` TEE (software, for development; every default policy refuses it), Gramine SGX
//!   (`/dev/attestation`) and Linux configfs-tsm (`/sys/kernel/config/tsm/report`, TDX
//!   and SEV-SNP guests);
//! - [`enclave`]: the enclave's conversation with the trust service: its first accepted
//!   report claims a `tee` job and receives the keys and an access token sealed to the
//!   key the report binds; later reports keep the job alive;
//! - [`api`]: the prediction API's bodies, and the private-request envelope;
//! - [`access`]: who may query: requests signed by one of the serving job's receivers,
//!   fresh and never replayed;
//! - [`body`]: a request's body read within bounds, its rows counted as they are parsed;
//! - [`serve`]: `perun enclave serve`: the trained model opened in memory behind
//!   `POST /v1/predict`, plain or HPKE-private, answered only to the job's receivers,
//!   with fresh evidence for each client;
//! - [`client`]: what `perun predict --remote` does: verify the enclave's evidence
//!   against the client's own policy, then send rows only it can read, signed as a
//!   receiver of the job.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod access;
pub mod api;
pub mod body;
pub mod client;
pub mod enclave;
#[cfg(feature = "server")]
pub mod serve;
pub mod source;

pub use client::{Querier, RemoteModel};
pub use enclave::Enclave;
pub use source::EvidenceSource;

/// Everything that can go wrong in `tee` mode.
#[derive(Debug, thiserror::Error)]
pub enum EnclaveError {
    /// The TEE's evidence interface failed.
    #[error("TEE evidence source {source_name}: {why}")]
    Source {
        /// Which source.
        source_name: String,
        /// What happened.
        why: String,
    },
    /// Evidence did not verify or did not meet the policy.
    #[error("{0}")]
    Attest(#[from] perun_attest::AttestError),
    /// The enclave's evidence was refused by the client's policy.
    #[error("the enclave's evidence is refused: {0}")]
    Refused(String),
    /// The serving enclave refused to answer this client (not signed as a receiver of
    /// the job, replayed, or too many requests).
    #[error("the enclave refused the request: {0}")]
    Denied(String),
    /// The trust service refused or could not be reached.
    #[error("trust service: {0}")]
    Trust(#[from] perun_client::ClientError),
    /// The claim, a released key or the model asset was refused.
    #[error(transparent)]
    Claim(#[from] perun_client::ClaimError),
    /// A key or sealed message did not open.
    #[error("{0}")]
    Seal(#[from] perun_seal::SealError),
    /// The model could not be loaded or run.
    #[error("model: {0}")]
    Model(#[from] perun_ml::MlError),
    /// The enclave could not be reached, or the connection broke.
    #[error("{url}: {source}")]
    Transport {
        /// The address tried.
        url: String,
        /// The HTTP client's error.
        #[source]
        source: reqwest::Error,
    },
    /// The enclave answered with an error status.
    #[error("{url}: {status}: {message}")]
    Answered {
        /// The address.
        url: String,
        /// The HTTP status.
        status: u16,
        /// Its error body's message.
        message: String,
    },
    /// An answer was not the JSON expected.
    #[error("{what}: unexpected answer: {source}")]
    Decode {
        /// Whose answer (a URL, or `the enclave's sealed answer`).
        what: String,
        /// The parser's error.
        #[source]
        source: serde_json::Error,
    },
    /// A request could not be encoded.
    #[error("could not encode the request: {0}")]
    Encode(#[source] serde_json::Error),
    /// The enclave answered a different number of rows than it was sent.
    #[error("the enclave answered {got} predictions for {sent} rows")]
    RowCount {
        /// Rows sent.
        sent: usize,
        /// Predictions returned.
        got: usize,
    },
    /// The trust service accepted a report but sent no claim or token.
    #[error("the service accepted the report but sent no claim or token")]
    NoClaim,
    /// The job cannot be served: a training job, no model, or receivers that may not
    /// query it.
    #[error("job {job} cannot be served: {why}")]
    NotServable {
        /// The job.
        job: perun_core::Digest,
        /// Why.
        why: String,
    },
    /// The serving server could not start (runtime, listener, threads).
    #[error("{what}: {source}")]
    Server {
        /// What was being started.
        what: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
}
