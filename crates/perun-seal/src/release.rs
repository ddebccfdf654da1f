//! Key release: secrets sealed with HPKE (RFC 9180; DHKEM(X25519, HKDF-SHA256),
//! HKDF-SHA256, ChaCha20-Poly1305, base mode) to an ephemeral public key that an
//! attested process made and bound into its evidence.
//!
//! The `info` string ties a sealed key to what it was released for (job digest and asset
//! name): a key sealed for one job or asset does not open as another.

use hpke::aead::ChaCha20Poly1305;
use hpke::kdf::HkdfSha256;
use hpke::kem::X25519HkdfSha256;
use hpke::{Deserializable as _, Kem as _, OpModeR, OpModeS, Serializable as _};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::SealError;

type Kem = X25519HkdfSha256;

/// Length of an ephemeral public key in bytes.
pub const PUBLIC_KEY_LEN: usize = 32;

/// An ephemeral HPKE key pair, made by a worker or enclave for one attestation. The
/// private half never leaves the process and is wiped on drop.
pub struct EphemeralKey {
    private: <Kem as hpke::Kem>::PrivateKey,
    public: <Kem as hpke::Kem>::PublicKey,
}

impl std::fmt::Debug for EphemeralKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "EphemeralKey({})", hex::encode(self.public_bytes()))
    }
}

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

impl EphemeralKey {
    /// A fresh key pair from the operating system's generator.
    pub fn generate() -> Self {
        let (private, public) = Kem::gen_keypair(&mut rand::rngs::OsRng);
        Self { private, public }
    }

    /// The public key bytes, as bound into evidence.
    pub fn public_bytes(&self) -> Vec<u8> {
        self.public.to_bytes().to_vec()
    }

    /// Opens a secret sealed to this key with the same `info`.
    pub fn open(&self, sealed: &SealedSecret, info: &[u8]) -> Result<Zeroizing<Vec<u8>>, SealError> {
        let enc = <Kem as hpke::Kem>::EncappedKey::from_bytes(&sealed.enc)
            .map_err(|_| SealError::InvalidKey("malformed HPKE encapsulated key".into()))?;
        hpke::single_shot_open::<ChaCha20Poly1305, HkdfSha256, Kem>(
            &OpModeR::Base,
            &self.private,
            &enc,
            info,
            &sealed.ciphertext,
            b"",
        )
        .map(Zeroizing::new)
        .map_err(|_| SealError::WrongKey)
    }
}

/// Seals `secret` to the ephemeral public key `public` (32 bytes) with `info`.
pub fn seal_to(public: &[u8], info: &[u8], secret: &[u8]) -> Result<SealedSecret, SealError> {
    let pk = <Kem as hpke::Kem>::PublicKey::from_bytes(public)
        .map_err(|_| SealError::InvalidKey(format!("an ephemeral public key is {PUBLIC_KEY_LEN} bytes of X25519")))?;
    let (enc, ciphertext) = hpke::single_shot_seal::<ChaCha20Poly1305, HkdfSha256, Kem, _>(
        &OpModeS::Base,
        &pk,
        info,
        secret,
        b"",
        &mut rand::rngs::OsRng,
    )
    .map_err(|e| SealError::Encrypt(format!("HPKE: {e}")))?;
    Ok(SealedSecret { enc: enc.to_bytes().to_vec(), ciphertext })
}

/// The HPKE `info` of an asset key released for a job.
pub fn release_info(job: &perun_core::Digest, asset: &str) -> Vec<u8> {
    format!("perun/key-release/v1\n{job}\n{asset}").into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_only_with_the_key_and_info_it_was_sealed_for() {
        let k = EphemeralKey::generate();
        let s = seal_to(&k.public_bytes(), b"info-a", b"secret").unwrap();
        assert_eq!(&k.open(&s, b"info-a").unwrap()[..], b"secret");
        assert!(k.open(&s, b"info-b").is_err());
        assert!(EphemeralKey::generate().open(&s, b"info-a").is_err());
        let mut t = s.clone();
        t.ciphertext[0] ^= 1;
        assert!(k.open(&t, b"info-a").is_err());
        assert!(seal_to(&[1, 2, 3], b"i", b"s").is_err());
    }
}
