//! The wire crate of Perun's trust service: the `/v1` request and response bodies, the
//! formats both ends sign (requests, audit records, output reviews) and the error body.
//! The service (`perun-trust`), its client (`perun-client`), the worker and the enclave
//! share it; none imports another's crate for its types. It performs no I/O (peer:
//! `kbs-types` of Confidential Containers' Trustee).
//!
//! - [`wire`]: the bodies of each route (binary values hex, signatures base64, digests
//!   `sha256:<hex>`);
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
pub mod review;
pub mod state;
pub mod wire;

pub use error::{ApiCode, ApiError};
pub use state::{JobState, MetricInfo, OutputInfo, Review, ReviewOutcome, WorkerState};

/// Unix time now, in seconds, by the system clock (0 if the clock is before 1970): the
/// time a signed request states.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}
