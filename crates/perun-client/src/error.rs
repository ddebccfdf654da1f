//! The client's error type: the service's answers by their API codes, and what can go
//! wrong before an answer arrives.

use perun_proto::verdict::Failure;
use perun_proto::{ApiCode, ApiError};

/// Everything that can go wrong in a call to the trust service.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The service answered with an error: its stable code (`refused`, `revoked`,
    /// `conflict`...; [`ApiCode`] says what each means and its HTTP status), its message,
    /// and for `refused` each failed check of the evidence. A worker that reads `revoked`
    /// must stop, wipe and report; `unavailable` and `too_many_requests` may be tried
    /// again later.
    #[error("{}: {message}", code.meaning())]
    Api {
        /// The code.
        code: ApiCode,
        /// What happened and what to do.
        message: String,
        /// Each failed check of the evidence (`refused` only).
        failures: Vec<Failure>,
    },
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
    /// The service returned a policy document that is no policy.
    #[error("the service returned a policy that cannot be read: {0}")]
    Policy(#[source] perun_attest::AttestError),
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
    /// A model is not a subject of the receipt given for it.
    #[error("the model's digest {digest} is not a subject of this receipt: it is not the model the receipt describes")]
    NotASubject {
        /// The model's SHA-256.
        digest: perun_core::Digest,
    },
    /// An asset named for a manifest cannot be used as written.
    #[error("{0}")]
    AssetSpec(String),
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
    pub fn from_body(body: ApiError) -> Self {
        Self::Api { code: body.error, message: body.message, failures: body.failures }
    }

    /// A transport failure without an HTTP client error behind it.
    pub fn transport(detail: impl Into<String>) -> Self {
        Self::Transport { detail: detail.into(), source: None }
    }

    /// The stable API code of an answer from the service (`refused`, `revoked`...), or
    /// `None` for an error raised before an answer arrived.
    pub fn code(&self) -> Option<ApiCode> {
        match self {
            Self::Api { code, .. } => Some(*code),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_api_code_comes_back_with_its_words() {
        for code in ApiCode::ALL {
            let body = ApiError { error: code, message: "m".into(), failures: vec![] };
            let e = ClientError::from_body(body);
            assert_eq!(e.code(), Some(code));
            assert_eq!(e.to_string(), format!("{}: m", code.meaning()));
        }
    }
}
