//! The client's error type: the service's answers by their API codes, and what can go
//! wrong before an answer arrives.

use perun_attest::policy::Failure;
use perun_proto::{ApiCode, ApiError};

/// Everything that can go wrong in a call to the trust service.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The service found the request malformed (HTTP 400 `bad_request`).
    #[error("bad request: {0}")]
    BadRequest(String),
    /// The service could not authenticate the caller (401 `unauthenticated`).
    #[error("not authenticated: {0}")]
    Unauthenticated(String),
    /// The caller may not do this (403 `forbidden`).
    #[error("forbidden: {0}")]
    Forbidden(String),
    /// The named thing does not exist, or is not the caller's to see (404 `not_found`).
    #[error("not found: {0}")]
    NotFound(String),
    /// The request conflicts with the service's state (409 `conflict`).
    #[error("conflict: {0}")]
    Conflict(String),
    /// The release rule refused: nothing was released (403 `refused`). `failures` lists
    /// each failed check of the evidence.
    #[error("refused: {reason}")]
    Refused {
        /// Why, in one line.
        reason: String,
        /// Each failed check of the evidence.
        failures: Vec<Failure>,
    },
    /// An asset owner's terms refuse the job (403 `terms_refused`).
    #[error("refused by the terms: {0}")]
    TermsRefused(String),
    /// Too many requests of this kind (429): try again later.
    #[error("too many requests: {0}")]
    TooManyRequests(String),
    /// The job was revoked (409 `revoked`): a worker must stop, wipe and report.
    #[error("job revoked, abort: {0}")]
    Revoked(String),
    /// The service's store is unavailable (503): nothing was done; try again shortly.
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// The service failed inside (500 `internal`); its log has the details.
    #[error("the trust service failed: {0}")]
    Internal(String),
    /// An answer with a status or code this client does not know.
    #[error("the service answered {status}: {message}")]
    Unexpected {
        /// The HTTP status.
        status: u16,
        /// The answer's message, or a note that it had none.
        message: String,
    },
    /// An address is not usable (none given, or not `https://`).
    #[error("{0}")]
    Address(String),
    /// The TLS configuration could not be built.
    #[error("TLS: {0}")]
    Tls(#[source] rustls::Error),
    /// The HTTP client could not be built.
    #[error("HTTP client: {0}")]
    Http(#[source] reqwest::Error),
    /// The service could not be reached, or the connection broke; `detail` says where
    /// and what to check.
    #[error("transport: {detail}")]
    Transport {
        /// What failed, with the address tried.
        detail: String,
        /// The HTTP client's error, when there was one.
        #[source]
        source: Option<reqwest::Error>,
    },
    /// A request body could not be encoded.
    #[error("could not encode the request: {0}")]
    Encode(#[source] serde_json::Error),
    /// A 2xx answer was not the JSON this call expects.
    #[error("unexpected answer from the service: {0}")]
    Decode(#[source] serde_json::Error),
    /// The service returned a job whose manifest digests to another id: nothing signed.
    #[error("the service returned a manifest whose digest is {got}, not {expected}: not signing")]
    ManifestMismatch {
        /// The job id asked for.
        expected: perun_core::Digest,
        /// The digest of the manifest returned.
        got: perun_core::Digest,
    },
    /// The service returned a policy other than the one the manifest pins.
    #[error("the service returned a policy whose digest is {got}, not the manifest's {expected}")]
    PolicyMismatch {
        /// The manifest's policy digest.
        expected: perun_core::Digest,
        /// The digest of the policy returned.
        got: perun_core::Digest,
    },
    /// The job's policy accepts development evidence: an approval would let its keys
    /// reach a machine that proves nothing, so none was signed.
    #[error("not signing: job {job}'s policy `{policy}` accepts DEVELOPMENT evidence: {}", why.join("; "))]
    DevelopmentPolicy {
        /// The job.
        job: perun_core::Digest,
        /// The policy's name.
        policy: String,
        /// What in it is development-only.
        why: Vec<String>,
    },
    /// The service's audit key is not usable.
    #[error("the service's audit key is malformed: {why}")]
    AuditKey {
        /// What is wrong with it.
        why: &'static str,
    },
    /// The service signs its audit log with another key than the one pinned.
    #[error(
        "the service now signs its audit log with ed25519:{now}, not the key pinned by `perun remote add` \
         (ed25519:{pinned}): its records cannot be trusted"
    )]
    AuditKeyChanged {
        /// The pinned key (base64).
        pinned: String,
        /// The key the service names now (base64).
        now: String,
    },
    /// A training receipt does not verify under the pinned audit key.
    #[error("the receipt does not verify under the service's pinned audit key: {0}")]
    Receipt(#[source] perun_core::CoreError),
    /// The service returned the receipt of another job.
    #[error("the service returned the receipt of job {got}, not {expected}")]
    ReceiptMismatch {
        /// The job asked for.
        expected: perun_core::Digest,
        /// The job the receipt is of.
        got: perun_core::Digest,
    },
    /// A delivered output's bytes are not the ones the service recorded.
    #[error("the file given for output `{output}` of job {job} does not match the digest the service recorded for it")]
    OutputMismatch {
        /// The output.
        output: String,
        /// The job.
        job: perun_core::Digest,
    },
    /// The audit chain does not verify.
    #[error("{0}")]
    Audit(#[from] perun_proto::audit::AuditError),
    /// An asset key could not be wrapped, or a recipient not read.
    #[error("{0}")]
    Seal(#[from] perun_seal::SealError),
    /// The service's certificate is not the pinned one: nothing was sent.
    #[error("the trust service presented certificate {presented}, not the pinned {pinned}: refusing to talk to it")]
    CertificateMismatch {
        /// Fingerprint the service showed.
        presented: String,
        /// Fingerprint the client pinned.
        pinned: String,
    },
}

impl ClientError {
    /// Rebuilds the service's error from its JSON answer.
    pub fn from_body(status: u16, body: ApiError) -> Self {
        let m = body.message;
        let Some(code) = ApiCode::parse(&body.error) else { return Self::Unexpected { status, message: m } };
        match code {
            ApiCode::BadRequest => Self::BadRequest(m),
            ApiCode::Unauthenticated => Self::Unauthenticated(m),
            ApiCode::Forbidden => Self::Forbidden(m),
            ApiCode::NotFound => Self::NotFound(m),
            ApiCode::Conflict => Self::Conflict(m),
            ApiCode::TooManyRequests => Self::TooManyRequests(m),
            ApiCode::Unavailable => Self::Unavailable(m),
            ApiCode::Refused => Self::Refused { reason: m, failures: body.failures },
            ApiCode::Revoked => Self::Revoked(m),
            ApiCode::TermsRefused => Self::TermsRefused(m),
            ApiCode::Internal => Self::Internal(m),
        }
    }

    /// A transport failure without an HTTP client error behind it.
    pub fn transport(detail: impl Into<String>) -> Self {
        Self::Transport { detail: detail.into(), source: None }
    }

    /// The stable API code of an answer from the service (`refused`, `revoked`...), or
    /// `None` for an error raised before an answer arrived.
    pub fn code(&self) -> Option<ApiCode> {
        Some(match self {
            Self::BadRequest(_) => ApiCode::BadRequest,
            Self::Unauthenticated(_) => ApiCode::Unauthenticated,
            Self::Forbidden(_) => ApiCode::Forbidden,
            Self::NotFound(_) => ApiCode::NotFound,
            Self::Conflict(_) => ApiCode::Conflict,
            Self::Refused { .. } => ApiCode::Refused,
            Self::TermsRefused(_) => ApiCode::TermsRefused,
            Self::TooManyRequests(_) => ApiCode::TooManyRequests,
            Self::Revoked(_) => ApiCode::Revoked,
            Self::Unavailable(_) => ApiCode::Unavailable,
            Self::Internal(_) => ApiCode::Internal,
            _ => return None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_api_code_comes_back_as_its_variant() {
        for code in ApiCode::ALL {
            let body = ApiError { error: code.as_str().into(), message: "m".into(), failures: vec![] };
            assert_eq!(ClientError::from_body(code.status(), body).code(), Some(code));
        }
        let e = ClientError::from_body(418, ApiError { error: "teapot".into(), message: "m".into(), failures: vec![] });
        assert!(matches!(e, ClientError::Unexpected { status: 418, .. }));
    }
}
