//! The error type of `perun-attest`.

/// Malformed input or a failed cryptographic check.
#[derive(Clone, Debug, thiserror::Error, PartialEq, Eq)]
pub enum AttestError {
    /// A TPM structure is malformed.
    #[error("malformed {what}: {why}")]
    Malformed {
        /// Which structure.
        what: &'static str,
        /// What is wrong.
        why: String,
    },
    /// An algorithm Perun does not accept.
    #[error("unsupported {what}: 0x{id:04x}")]
    Unsupported {
        /// Which kind of algorithm.
        what: &'static str,
        /// Its TPM identifier.
        id: u16,
    },
    /// A check failed; the message names it.
    #[error("{0}")]
    Check(String),
    /// An IMA log is malformed.
    #[error(transparent)]
    ImaLog(#[from] perun_proto::ima::ImaLogError),
    /// A policy is malformed.
    #[error("invalid policy: {0}")]
    Policy(String),
}

impl AttestError {
    pub(crate) fn malformed(what: &'static str, why: impl Into<String>) -> Self {
        Self::Malformed { what, why: why.into() }
    }
}
