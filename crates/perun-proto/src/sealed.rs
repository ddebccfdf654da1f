//! Sealed secrets as they travel: the HPKE (RFC 9180) envelope of a released key, a
//! token or a private request, and the ephemeral public key it is sealed to. Sealing and
//! opening are `perun-seal`'s.

use serde::{Deserialize, Serialize};

/// Length of an ephemeral public key in bytes (X25519).
pub const PUBLIC_KEY_LEN: usize = 32;

/// A secret sealed to an ephemeral key: the encapsulated key and the ciphertext (hex in
/// JSON).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SealedSecret {
    /// The HPKE encapsulated key.
    #[serde(with = "hex::serde")]
    pub enc: Vec<u8>,
    /// The AEAD ciphertext with its tag.
    #[serde(with = "hex::serde")]
    pub ciphertext: Vec<u8>,
}

/// The public half of an ephemeral X25519 key pair that an attested process made and
/// bound into its Evidence: exactly [`PUBLIC_KEY_LEN`] bytes, 64 hex digits in JSON. A
/// body with any other length is refused when it is read, so no code past the edge
/// checks a length.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct EphemeralPublicKey(#[serde(with = "hex::serde")] [u8; PUBLIC_KEY_LEN]);

impl EphemeralPublicKey {
    /// The key's bytes.
    pub fn as_bytes(&self) -> &[u8; PUBLIC_KEY_LEN] {
        &self.0
    }
}

impl From<[u8; PUBLIC_KEY_LEN]> for EphemeralPublicKey {
    fn from(bytes: [u8; PUBLIC_KEY_LEN]) -> Self {
        Self(bytes)
    }
}

impl std::fmt::Debug for EphemeralPublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "EphemeralPublicKey({})", hex::encode(self.0))
    }
}

impl std::fmt::Display for EphemeralPublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_of_another_length_or_not_hex_is_refused_when_read() {
        let k = EphemeralPublicKey::from([7u8; 32]);
        let json = serde_json::to_string(&k).unwrap();
        assert_eq!(json, format!("\"{}\"", "07".repeat(32)));
        assert_eq!(serde_json::from_str::<EphemeralPublicKey>(&json).unwrap(), k);
        for bad in [format!("\"{}\"", "07".repeat(31)), format!("\"{}\"", "07".repeat(33)), "\"zz\"".into(), "7".into()]
        {
            assert!(serde_json::from_str::<EphemeralPublicKey>(&bad).is_err(), "{bad}");
        }
    }
}
