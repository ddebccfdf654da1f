//! The error type of `perun-core`.

/// Everything that can go wrong while parsing or checking Perun's core types.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CoreError {
    /// A digest string was not `sha256:` followed by 64 hex digits.
    #[error("invalid digest {0:?}: expected `sha256:` followed by 64 hex digits")]
    InvalidDigest(String),
    /// A stakeholder or asset name broke the naming rule.
    #[error("invalid name {name:?}: {why}")]
    InvalidName {
        /// The name as given.
        name: String,
        /// What rule it broke.
        why: &'static str,
    },
    /// A role string was not one Perun knows.
    #[error("unknown role {0:?}: expected one of data-owner, model-owner, provider, receiver")]
    UnknownRole(String),
    /// An asset kind string was not one Perun knows.
    #[error("unknown asset kind {0:?}: expected one of dataset, model, output")]
    UnknownAssetKind(String),
    /// A public key could not be decoded.
    #[error("invalid public key: {0}")]
    InvalidPublicKey(String),
    /// A signature could not be decoded.
    #[error("invalid signature encoding: {0}")]
    InvalidSignatureEncoding(String),
    /// A signature did not verify under the given key.
    #[error("signature does not verify for this digest and key")]
    BadSignature,
    /// A manifest broke one of its structural rules.
    #[error("invalid manifest: {0}")]
    InvalidManifest(String),
    /// JSON could not be parsed into the expected type.
    #[error("invalid JSON: {0}")]
    Json(String),
}
