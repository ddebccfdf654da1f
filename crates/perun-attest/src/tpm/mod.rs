//! TPM 2.0 structures, parsed and checked without a TPM.

pub mod credential;
pub mod public;
pub mod quote;
#[cfg(any(test, feature = "soft-tpm"))]
pub mod soft;
mod wire;

pub use credential::{make_credential, Credential};
pub use public::{AkPublic, PublicKey};
pub use quote::{verify_quote, verify_signature, PcrBank, Quote, QuoteCheck};

/// TPM algorithm identifiers used here (TCG Algorithm Registry; the wire format's).
pub use perun_proto::evidence::alg;
