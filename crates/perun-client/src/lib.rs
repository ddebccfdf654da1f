//! The blocking client of Perun's trust service, shared by the CLI, the worker and the
//! enclave: TLS to exactly the pinned certificate, signed stakeholder requests, worker
//! tokens, failover between replicas, and the service's errors as [`ClientError`]
//! variants. Its bodies are the `perun-proto` crate's (peer: Trustee's `kbs-client`).

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod client;
pub mod error;

pub use client::{pinned_tls_config, Caller, Client};
pub use error::ClientError;
