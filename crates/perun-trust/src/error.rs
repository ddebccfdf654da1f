//! The trust service's error type, and how each error answers over HTTP.

use serde::{Deserialize, Serialize};

use perun_attest::policy::Failure;

/// Everything that can go wrong in the trust service or its client.
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
    /// The client could not reach the service, or the answer was not understood.
    #[error("transport: {0}")]
    Transport(String),
    /// The service's certificate is not the pinned one.
    #[error("the trust service presented certificate {presented}, not the pinned {pinned}: refusing to talk to it")]
    CertificateMismatch {
        /// Fingerprint the service showed.
        presented: String,
        /// Fingerprint the client pinned.
        pinned: String,
    },
}

impl TrustError {
    /// The HTTP status this error answers with.
    pub fn status(&self) -> u16 {
        match self {
            Self::BadRequest(_) => 400,
            Self::Unauthenticated(_) => 401,
            Self::Forbidden(_) | Self::Refused { .. } | Self::TermsRefused(_) => 403,
            Self::NotFound(_) => 404,
            Self::Conflict(_) | Self::Revoked(_) => 409,
            Self::TooManyRequests(_) => 429,
            Self::Unavailable(_) => 503,
            Self::Store(_) | Self::Crypto(_) | Self::Io(_) | Self::Transport(_) | Self::CertificateMismatch { .. } => {
                500
            }
        }
    }

    /// The stable machine-readable code of the error.
    pub fn code(&self) -> &'static str {
        match self {
            Self::BadRequest(_) => "bad_request",
            Self::Unauthenticated(_) => "unauthenticated",
            Self::Forbidden(_) => "forbidden",
            Self::NotFound(_) => "not_found",
            Self::Conflict(_) => "conflict",
            Self::TooManyRequests(_) => "too_many_requests",
            Self::Unavailable(_) => "unavailable",
            Self::Refused { .. } => "refused",
            Self::TermsRefused(_) => "terms_refused",
            Self::Revoked(_) => "revoked",
            Self::Store(_) | Self::Crypto(_) | Self::Io(_) => "internal",
            Self::Transport(_) => "transport",
            Self::CertificateMismatch { .. } => "certificate_mismatch",
        }
    }

    /// Rebuilds an error from the service's JSON answer (client side).
    pub fn from_body(status: u16, body: ApiError) -> Self {
        let m = body.message;
        match body.error.as_str() {
            "bad_request" => Self::BadRequest(m),
            "unauthenticated" => Self::Unauthenticated(m),
            "forbidden" => Self::Forbidden(m),
            "not_found" => Self::NotFound(m),
            "conflict" => Self::Conflict(m),
            "too_many_requests" => Self::TooManyRequests(m),
            "unavailable" => Self::Unavailable(m),
            "refused" => Self::Refused { reason: m, failures: body.failures },
            "revoked" => Self::Revoked(m),
            "terms_refused" => Self::TermsRefused(m),
            _ => Self::Transport(format!("the service answered {status}: {m}")),
        }
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
        ApiError { error: self.code().into(), message, failures }
    }
}

/// The JSON body of every error answer.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ApiError {
    /// A stable code (`refused`, `revoked`, `forbidden`...).
    pub error: String,
    /// What happened and what to do.
    pub message: String,
    /// The failed evidence checks, for `refused`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failures: Vec<Failure>,
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
