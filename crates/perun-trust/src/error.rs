//! The trust service's error type, and how each error answers over HTTP.

pub use perun_proto::error::{ApiCode, ApiError};

use perun_attest::policy::Failure;

/// Everything that can go wrong in the trust service (its client has `perun_client::ClientError`).
#[derive(Debug, thiserror::Error)]
pub enum TrustError {
    /// The request is malformed; the message says what to fix.
    #[error("bad request: {0}")]
    BadRequest(String),
    /// The caller could not be authenticated (unsigned, stale, replayed, unknown key).
    #[error("not authenticated: {0}")]
    Unauthenticated(String),
    /// The caller is known but may not do this.
    #[error("forbidden: {0}")]
    Forbidden(String),
    /// The named thing does not exist (or is not the caller's to see).
    #[error("not found: {0}")]
    NotFound(String),
    /// The request conflicts with the current state (name taken, job not ready...).
    #[error("conflict: {0}")]
    Conflict(String),
    /// The release rule refused: nothing was released. `failures` lists every reason
    /// the evidence was refused, when evidence was appraised.
    #[error("refused: {reason}")]
    Refused {
        /// Why, in one line.
        reason: String,
        /// Each failed check of the evidence.
        failures: Vec<Failure>,
    },
    /// An asset owner's terms refuse the job (the message names the asset and the
    /// term): nothing was proposed or released.
    #[error("refused by the terms: {0}")]
    TermsRefused(String),
    /// Too many requests of this kind (anonymous refusals, concurrent evidence): try
    /// again later.
    #[error("too many requests: {0}")]
    TooManyRequests(String),
    /// The job was revoked: the worker must stop, wipe and report.
    #[error("job revoked, abort: {0}")]
    Revoked(String),
    /// The store failed.
    #[error("store: {0}")]
    Store(String),
    /// The store cannot be reached now (its database is down or restarting): nothing was
    /// done; try again shortly.
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// A cryptographic operation failed.
    #[error("crypto: {0}")]
    Crypto(String),
    /// A file of the service's state could not be read or written.
    #[error("{0}")]
    Io(String),
    /// An audit chain did not verify.
    #[error(transparent)]
    Audit(#[from] perun_proto::audit::AuditError),
}

impl TrustError {
    /// The API code this error answers with.
    pub fn api_code(&self) -> ApiCode {
        match self {
            Self::BadRequest(_) => ApiCode::BadRequest,
            Self::Unauthenticated(_) => ApiCode::Unauthenticated,
            Self::Forbidden(_) => ApiCode::Forbidden,
            Self::NotFound(_) => ApiCode::NotFound,
            Self::Conflict(_) => ApiCode::Conflict,
            Self::TooManyRequests(_) => ApiCode::TooManyRequests,
            Self::Unavailable(_) => ApiCode::Unavailable,
            Self::Refused { .. } => ApiCode::Refused,
            Self::TermsRefused(_) => ApiCode::TermsRefused,
            Self::Revoked(_) => ApiCode::Revoked,
            Self::Store(_) | Self::Crypto(_) | Self::Io(_) | Self::Audit(_) => ApiCode::Internal,
        }
    }

    /// The HTTP status this error answers with.
    pub fn status(&self) -> u16 {
        self.api_code().status()
    }

    /// The JSON body of the error. Internal errors are not detailed to callers (the
    /// service log has them).
    pub fn to_body(&self) -> ApiError {
        let message = match self {
            Self::BadRequest(m)
            | Self::Unauthenticated(m)
            | Self::Forbidden(m)
            | Self::NotFound(m)
            | Self::Conflict(m)
            | Self::TooManyRequests(m)
            | Self::TermsRefused(m)
            | Self::Revoked(m) => m.clone(),
            Self::Refused { reason, .. } => reason.clone(),
            Self::Unavailable(_) => {
                "the trust service's store is unavailable: nothing was done; try again shortly".into()
            }
            _ => "internal error; the service log has the details".into(),
        };
        let failures = match self {
            Self::Refused { failures, .. } => failures.clone(),
            _ => Vec::new(),
        };
        ApiError { error: self.api_code(), message, failures }
    }
}

impl From<rusqlite::Error> for TrustError {
    fn from(e: rusqlite::Error) -> Self {
        Self::Store(e.to_string())
    }
}

impl From<perun_seal::SealError> for TrustError {
    fn from(e: perun_seal::SealError) -> Self {
        Self::Crypto(e.to_string())
    }
}
