//! Ed25519 signatures over digests, separated by context.
//!
//! A signature always covers `"perun:" || context || 0x00 || digest`, so that an
//! approval of a manifest can never be replayed as, say, a signed request.

use std::fmt;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use ed25519_dalek::{Signer as _, SigningKey, VerifyingKey};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::{CoreError, Digest};

/// An Ed25519 signature; its text form is standard base64.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Signature(pub [u8; 64]);

impl fmt::Debug for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Signature({})", B64.encode(self.0))
    }
}

impl Serialize for Signature {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&B64.encode(self.0))
    }
}

impl fmt::Display for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&B64.encode(self.0))
    }
}

impl std::str::FromStr for Signature {
    type Err = CoreError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let raw = B64.decode(s).map_err(|e| CoreError::InvalidSignatureEncoding(e.to_string()))?;
        let raw: [u8; 64] =
            raw.try_into().map_err(|_| CoreError::InvalidSignatureEncoding("must be 64 bytes".into()))?;
        Ok(Self(raw))
    }
}

impl<'de> Deserialize<'de> for Signature {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?.parse().map_err(serde::de::Error::custom)
    }
}

fn message(context: &str, digest: &Digest) -> Vec<u8> {
    let mut m = Vec::with_capacity(6 + context.len() + 1 + 32);
    m.extend_from_slice(b"perun:");
    m.extend_from_slice(context.as_bytes());
    m.push(0);
    m.extend_from_slice(digest.as_bytes());
    m
}

/// Signs a digest in a context (for example [`crate::manifest::APPROVAL_CONTEXT`]).
pub fn sign_digest(key: &SigningKey, context: &str, digest: &Digest) -> Signature {
    Signature(key.sign(&message(context, digest)).to_bytes())
}

/// Verifies a signature made by [`sign_digest`]; strict (no malleable signatures).
pub fn verify_digest(key: &VerifyingKey, context: &str, digest: &Digest, sig: &Signature) -> Result<(), CoreError> {
    let sig = ed25519_dalek::Signature::from_bytes(&sig.0);
    key.verify_strict(&message(context, digest), &sig).map_err(|_| CoreError::BadSignature)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_changed_digest_or_key_fails() {
        let sk = SigningKey::generate(&mut rand::rngs::OsRng);
        let other = SigningKey::generate(&mut rand::rngs::OsRng);
        let d = Digest::of(b"x");
        let sig = sign_digest(&sk, "ctx", &d);
        assert!(verify_digest(&sk.verifying_key(), "ctx", &d, &sig).is_ok());
        assert!(verify_digest(&sk.verifying_key(), "ctx", &Digest::of(b"y"), &sig).is_err());
        assert!(verify_digest(&other.verifying_key(), "ctx", &d, &sig).is_err());
        let mut bad = sig;
        bad.0[0] ^= 1;
        assert!(verify_digest(&sk.verifying_key(), "ctx", &d, &bad).is_err());
    }

    #[test]
    fn base64_round_trip() {
        let sk = SigningKey::generate(&mut rand::rngs::OsRng);
        let sig = sign_digest(&sk, "ctx", &Digest::of(b"x"));
        let json = serde_json::to_string(&sig).unwrap();
        assert_eq!(serde_json::from_str::<Signature>(&json).unwrap(), sig);
        assert!(serde_json::from_str::<Signature>("\"AAAA\"").is_err());
    }
}
