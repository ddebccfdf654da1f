//! The blocking client of Perun's trust service, shared by the CLI, the worker and the
//! enclave: TLS to exactly the pinned certificate, signed stakeholder requests, worker
//! tokens, failover between replicas, and the service's errors as [`ClientError`]
//! variants. Its bodies are the `perun-proto` crate's (peer: Trustee's `kbs-client`).
//!
//! - [`api`]: one typed method per `/v1` route;
//! - [`workflow`]: the stakeholders' workflows over it (asset registration with key
//!   wrapping, manifest building, review and approval, audit verification), so the CLI,
//!   the demo, the benchmarks and the tests run them one way.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod api;
pub mod claim;
pub mod client;
pub mod error;
pub mod workflow;

pub use claim::ClaimError;
pub use client::{pinned_tls_config, Caller, Client};
pub use error::ClientError;
pub use workflow::{AssetRegistration, Development, ManifestBuilder, Stakeholder};
