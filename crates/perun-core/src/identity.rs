//! The public half of a stakeholder's identity: what it registers with the trust service.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use ed25519_dalek::VerifyingKey;
use serde::{Deserialize, Serialize};

use crate::{CoreError, Digest, Name, Signature};

/// A stakeholder's public identity: its name, its Ed25519 verifying key (for approvals
/// and signed requests) and its `age` X25519 recipient (to receive sealed outputs).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PublicIdentity {
    /// The stakeholder's name.
    pub name: Name,
    /// Ed25519 verifying key, standard base64 of the 32 raw bytes.
    pub signing_key: String,
    /// `age` X25519 recipient (`age1...`).
    pub age_recipient: String,
}

impl PublicIdentity {
    /// Builds the record from the keys (use [`PublicIdentity::check`] on records that
    /// come from outside).
    pub fn new(name: Name, verifying_key: &VerifyingKey, age_recipient: String) -> Self {
        Self { name, signing_key: B64.encode(verifying_key.as_bytes()), age_recipient }
    }

    /// Checks that both public keys decode (after deserialising one from outside).
    pub fn check(&self) -> Result<(), CoreError> {
        self.verifying_key()?;
        let r = &self.age_recipient;
        let well_formed =
            r.starts_with("age1") && r.len() == 62 && r.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
        if !well_formed {
            return Err(CoreError::InvalidPublicKey(format!(
                "age recipient {:?} is not an X25519 `age1...` recipient",
                r.chars().take(80).collect::<String>()
            )));
        }
        Ok(())
    }

    /// The decoded Ed25519 verifying key.
    pub fn verifying_key(&self) -> Result<VerifyingKey, CoreError> {
        let raw = B64
            .decode(&self.signing_key)
            .map_err(|e| CoreError::InvalidPublicKey(format!("signing key is not base64: {e}")))?;
        let raw: [u8; 32] =
            raw.try_into().map_err(|_| CoreError::InvalidPublicKey("signing key must be 32 bytes".into()))?;
        VerifyingKey::from_bytes(&raw)
            .map_err(|e| CoreError::InvalidPublicKey(format!("signing key is not an Ed25519 point: {e}")))
    }

    /// A fingerprint of the signing key for people to compare: the first 32 hex digits
    /// (128 bits) of its SHA-256.
    pub fn fingerprint(&self) -> String {
        let d = Digest::of(self.signing_key.as_bytes());
        // 128 bits: what an operator or a member compares with the applicant's before
        // admitting it, so no key can be ground to match another's.
        d.to_hex()[..32].to_owned()
    }

    /// Verifies a signature made by this identity over a digest in a given context.
    pub fn verify(&self, context: &str, digest: &Digest, sig: &Signature) -> Result<(), CoreError> {
        crate::verify_digest(&self.verifying_key()?, context, digest, sig)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::SigningKey;

    fn sample() -> (SigningKey, PublicIdentity) {
        let sk = SigningKey::generate(&mut rand::rngs::OsRng);
        let rec = "age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p".to_owned();
        let id = PublicIdentity::new(Name::new("hospital-a").unwrap(), &sk.verifying_key(), rec);
        id.check().unwrap();
        (sk, id)
    }

    #[test]
    fn json_round_trip_and_signature() {
        let (sk, id) = sample();
        let json = serde_json::to_string(&id).unwrap();
        let back: PublicIdentity = serde_json::from_str(&json).unwrap();
        assert_eq!(back, id);
        let d = Digest::of(b"manifest");
        let sig = crate::sign_digest(&sk, "test", &d);
        assert!(back.verify("test", &d, &sig).is_ok());
        assert_eq!(back.verify("other", &d, &sig), Err(CoreError::BadSignature));
    }

    #[test]
    fn malformed_keys_are_refused() {
        let (_, mut id) = sample();
        id.age_recipient = "age1short".into();
        assert!(id.check().is_err());
        let (_, mut id) = sample();
        id.signing_key = "AAAA".into();
        assert!(id.check().is_err());
    }
}
