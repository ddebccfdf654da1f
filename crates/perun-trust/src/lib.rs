//! Perun's trust service: it holds every asset key and releases one only by the rule of
//! docs/architecture.md, section 2, checked in one place ([`service::release`]).
//!
//! - [`service`]: the logic (stakeholders, jobs and approvals, workers, attestation and
//!   key release, continuous attestation, deadlines), independent of HTTP;
//! - [`store`]: durable state behind a trait; [`store::sqlite`] is the embedded default,
//!   [`store::postgres`] the store of replicas;
//! - [`audit`]: the hash-chained, signed audit log and its verification;
//! - [`api`], [`server`]: the HTTP/JSON API over TLS (its bodies and signed formats are
//!   the `perun-proto` crate's, its client the `perun-client` crate);
//! - [`records`]: what is stored; [`keys`]: the service's keys; [`metrics`]: Prometheus
//!   counters; [`nonce`]: stateless attestation nonces;
//! - [`settings`]: the service's settings, their layers, defaults and checks.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod api;
pub mod audit;
pub mod error;
pub mod keys;
pub mod metrics;
pub mod nonce;
pub mod records;
pub mod server;
pub mod service;
pub mod settings;
pub mod store;

// The wire crate's modules, by the names the service's code uses.
use perun_proto::{auth, wire};

pub use error::TrustError;
pub use keys::ServiceKeys;
pub use service::{unix_now, Clock, Trust, TrustConfig};
pub use store::postgres::PostgresStore;
pub use store::sqlite::SqliteStore;
pub use store::AnyStore;
