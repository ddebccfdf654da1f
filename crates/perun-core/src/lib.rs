//! Perun's shared vocabulary.
//!
//! Every other Perun crate speaks in these types: content [`Digest`]s, stakeholder
//! [`Name`]s, [`PublicIdentity`] records, Ed25519 [`Signature`]s over digests, and the
//! [`JobManifest`] that asset owners approve. This crate performs no I/O.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod bytes;
pub mod digest;
pub mod error;
pub mod identity;
pub mod ids;
pub mod manifest;
pub mod receipt;
pub mod signature;
pub mod terms;

pub use bytes::HexBytes;
pub use digest::{Digest, DigestWriter};
pub use error::CoreError;
pub use identity::PublicIdentity;
pub use ids::{AssetKind, Name, Role};
pub use manifest::{AssetRef, DpTarget, JobManifest, JobMode, JobPurpose};
pub use signature::{sign_digest, verify_digest, Signature};
pub use terms::{AssetTerms, PrivacyBudget, SignedTerms, TermViolation, Usage};
