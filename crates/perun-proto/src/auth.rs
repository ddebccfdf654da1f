//! Signed requests. A stakeholder signs each request with its Ed25519 key over the
//! audience (the service the request is for: the SHA-256 fingerprint of its pinned TLS
//! certificate, or a serving job's id), the method, the path (with query), the SHA-256 of
//! the body, the time and a random nonce, so that a request cannot be replayed to another
//! service within its time window:
//!
//! ```text
//! Perun-Identity: hospital-a
//! Perun-Time: 1764130000
//! Perun-Nonce: 9f2c...(32 hex)
//! Perun-Signature: base64(Ed25519 over the digest of the canonical request)
//! ```
//!
//! The service refuses a request whose time is more than [`MAX_SKEW_S`] away from its
//! clock, and one whose nonce it has seen (nonces are kept in the store until they could
//! no longer pass the time check, so a restart reopens no replay window).
//!
//! Workers present `Authorization: Bearer <token>` with `Perun-Worker: <name>`, where the
//! token is the credential their TPM recovered by ActivateCredential.

use ed25519_dalek::SigningKey;
use perun_core::{sign_digest, Digest, Name, Signature};

/// The signature context of requests.
pub const REQUEST_CONTEXT: &str = "request/v1";
/// How far a request's time may be from the service's clock, in seconds.
pub const MAX_SKEW_S: u64 = 300;

/// Header naming the signing stakeholder.
pub const H_IDENTITY: &str = "perun-identity";
/// Header with the request time (Unix seconds).
pub const H_TIME: &str = "perun-time";
/// Header with the request nonce (hex).
pub const H_NONCE: &str = "perun-nonce";
/// Header with the signature (base64).
pub const H_SIGNATURE: &str = "perun-signature";
/// Header naming the calling worker.
pub const H_WORKER: &str = "perun-worker";

/// The digest a request signature covers: over `audience` (the service the request is
/// for), method, path with query, the body's SHA-256, the time (Unix seconds) and the nonce.
pub fn request_digest(
    audience: &Digest,
    method: &str,
    path_and_query: &str,
    body: &[u8],
    time: u64,
    nonce: &str,
) -> Digest {
    let body = Digest::of(body);
    Digest::of_parts(&[
        audience.as_bytes(),
        method.as_bytes(),
        path_and_query.as_bytes(),
        body.to_string().as_bytes(),
        time.to_string().as_bytes(),
        nonce.as_bytes(),
    ])
}

/// The headers of a signed request.
#[derive(Clone, Debug)]
pub struct SignedHeaders {
    /// The signer.
    pub identity: Name,
    /// Unix seconds.
    pub time: u64,
    /// Random hex nonce.
    pub nonce: String,
    /// The signature.
    pub signature: Signature,
}

impl SignedHeaders {
    /// Signs a request for `audience` (see [`request_digest`]).
    pub fn sign(
        key: &SigningKey,
        identity: &Name,
        audience: &Digest,
        method: &str,
        path: &str,
        body: &[u8],
        time: u64,
    ) -> Self {
        let nonce = hex::encode(rand::random::<[u8; 16]>());
        let d = request_digest(audience, method, path, body, time, &nonce);
        Self { identity: identity.clone(), time, nonce, signature: sign_digest(key, REQUEST_CONTEXT, &d) }
    }

    /// Reads the headers of a signed request; `get` looks a header up by its lower-case
    /// name. Errors: which header is missing or malformed.
    pub fn from_headers<'a>(get: impl Fn(&str) -> Option<&'a str>) -> Result<Self, String> {
        let header = |name: &str| get(name).ok_or_else(|| format!("missing header `{name}`: requests must be signed"));
        let malformed = |name: &str| format!("malformed `{name}` header");
        Ok(Self {
            identity: header(H_IDENTITY)?.parse().map_err(|_| malformed(H_IDENTITY))?,
            time: header(H_TIME)?.parse().map_err(|_| malformed(H_TIME))?,
            nonce: header(H_NONCE)?.to_owned(),
            signature: header(H_SIGNATURE)?.parse().map_err(|_| malformed(H_SIGNATURE))?,
        })
    }

    /// The header name/value pairs.
    pub fn pairs(&self) -> [(&'static str, String); 4] {
        [
            (H_IDENTITY, self.identity.to_string()),
            (H_TIME, self.time.to_string()),
            (H_NONCE, self.nonce.clone()),
            (H_SIGNATURE, self.signature.to_string()),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_part_of_the_request_is_covered() {
        let (a, b) = (Digest::of(b"service a"), Digest::of(b"service b"));
        let base = request_digest(&a, "POST", "/v1/jobs", b"{}", 10, "aa");
        assert_ne!(base, request_digest(&b, "POST", "/v1/jobs", b"{}", 10, "aa"));
        assert_ne!(base, request_digest(&a, "PUT", "/v1/jobs", b"{}", 10, "aa"));
        assert_ne!(base, request_digest(&a, "POST", "/v1/jobz", b"{}", 10, "aa"));
        assert_ne!(base, request_digest(&a, "POST", "/v1/jobs", b"{ }", 10, "aa"));
        assert_ne!(base, request_digest(&a, "POST", "/v1/jobs", b"{}", 11, "aa"));
        assert_ne!(base, request_digest(&a, "POST", "/v1/jobs", b"{}", 10, "ab"));
    }
}
