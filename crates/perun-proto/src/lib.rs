//! The wire crate of Perun's trust service: the `/v1` request and response bodies, the
//! formats both ends sign (requests, audit records, output reviews) and the error body.
//! The service (`perun-trust`), its client (`perun-client`), the worker and the enclave
//! share it; none imports another's crate for its types, and it imports none of theirs:
//! the verifier, the sealing crate and the service depend on it, never the reverse. It
//! performs no I/O (peer: `kbs-types` of Confidential Containers' Trustee).
//!
//! - [`wire`]: the bodies of each route (binary values hex, signatures base64, digests
//!   `sha256:<hex>`);
//! - [`evidence`]: the Evidence formats (TPM quote with its logs, TEE report) and a TEE's
//!   claims; [`ima`]: the IMA log inside TPM Evidence;
//! - [`verdict`]: the reasons of a refused appraisal;
//! - [`sealed`]: the HPKE envelope of a released secret and the ephemeral key it is
//!   sealed to; [`nonce`]: the attestation nonce;
//! - [`policy`]: a published policy, carried as its document;
//! - [`state`]: the values the API shows as the service keeps them (job and worker
//!   states, outputs, metrics, reviews);
//! - [`auth`]: signed stakeholder requests and the worker's headers;
//! - [`audit`]: the hash-chained, signed audit records and their verification;
//! - [`review`]: what a reviewing owner signs;
//! - [`error`]: the body of every error answer.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod audit;
pub mod auth;
pub mod error;
pub mod evidence;
pub mod ima;
pub mod nonce;
pub mod policy;
pub mod review;
pub mod sealed;
pub mod state;
pub mod verdict;
pub mod wire;

pub use error::{ApiCode, ApiError};
pub use nonce::Nonce;
pub use policy::PolicyDocument;
pub use sealed::{EphemeralPublicKey, SealedSecret};
pub use state::{JobState, MetricInfo, OutputInfo, Review, ReviewOutcome, WorkerState};

/// Unix time now, in seconds, by the system clock (0 if the clock is before 1970): the
/// time a signed request states.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}
