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
use zeroize::Zeroizing;

use crate::SealError;

type Kem = X25519HkdfSha256;

pub use perun_proto::sealed::{EphemeralPublicKey, SealedSecret, PUBLIC_KEY_LEN};

/// An ephemeral HPKE key pair, made by a worker or enclave for one attestation. The
/// private half never leaves the process and is wiped on drop.
pub struct EphemeralKey {
    private: <Kem as hpke::Kem>::PrivateKey,
    public: <Kem as hpke::Kem>::PublicKey,
}

impl std::fmt::Debug for EphemeralKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "EphemeralKey({})", self.public_key())
    }
}

impl EphemeralKey {
    /// A fresh key pair from the operating system's generator.
    pub fn generate() -> Self {
        let (private, public) = Kem::gen_keypair(&mut rand::rngs::OsRng);
        Self { private, public }
    }

    /// The public key, as bound into evidence.
    pub fn public_key(&self) -> EphemeralPublicKey {
        EphemeralPublicKey::from(<[u8; PUBLIC_KEY_LEN]>::from(self.public.to_bytes()))
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

/// The HPKE public key of `public`.
fn hpke_public(public: &EphemeralPublicKey) -> Result<<Kem as hpke::Kem>::PublicKey, SealError> {
    <Kem as hpke::Kem>::PublicKey::from_bytes(public.as_bytes())
        .map_err(|_| SealError::InvalidKey("not an X25519 public key".into()))
}

/// Checks that `public` can be sealed to: an X25519 point whose shared secret with a
/// fresh key is not all zeros (RFC 9180, section 7.1.4: a low-order point, such as 32
/// zero bytes, makes encapsulation fail). The trust service checks the key accepted
/// evidence binds with it before it decides on the evidence and releases keys to it.
///
/// Errors: [`SealError::InvalidKey`] for a low-order point.
pub fn check_public_key(public: &EphemeralPublicKey) -> Result<(), SealError> {
    let pk = hpke_public(public)?;
    hpke::setup_sender::<ChaCha20Poly1305, HkdfSha256, Kem, _>(&OpModeS::Base, &pk, b"", &mut rand::rngs::OsRng)
        .map(|_| ())
        .map_err(|_| SealError::InvalidKey("a low-order X25519 point, which no key can be sealed to".into()))
}

/// Seals `secret` to the ephemeral public key `public` with `info`.
pub fn seal_to(public: &EphemeralPublicKey, info: &[u8], secret: &[u8]) -> Result<SealedSecret, SealError> {
    let pk = hpke_public(public)?;
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

/// The HPKE `info` of the access token an enclave receives for `job` with its keys.
pub fn token_info(job: &perun_core::Digest) -> Vec<u8> {
    format!("perun/enclave-token/v1\n{job}").into_bytes()
}

/// The HPKE `info` of a private request to the enclave that serves `job`.
pub fn request_info(job: &perun_core::Digest) -> Vec<u8> {
    format!("perun/private-request/v1\n{job}").into_bytes()
}

/// HPKE exporter context of the key that protects the answer to a private request.
const RESPONSE_EXPORT: &[u8] = b"perun/private-response/v1";

/// Length of the random nonce in front of a sealed answer.
const RESPONSE_NONCE_LEN: usize = 12;

/// The key of the answer to one private request, exported from the request's HPKE
/// context (as Oblivious HTTP, RFC 9458, does): only the holder of the attested private
/// key can derive it, so an answer that opens came from the attested process, and no
/// one between (the host's operator) can read or forge it. Wiped on drop.
pub struct ResponseKey(Zeroizing<[u8; 32]>);

impl std::fmt::Debug for ResponseKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ResponseKey(..)")
    }
}

impl ResponseKey {
    fn cipher(&self) -> chacha20poly1305::ChaCha20Poly1305 {
        use chacha20poly1305::KeyInit as _;
        chacha20poly1305::ChaCha20Poly1305::new(chacha20poly1305::Key::from_slice(&self.0[..]))
    }

    /// Seals an answer: a random nonce, then the ChaCha20-Poly1305 ciphertext.
    pub fn seal(&self, plaintext: &[u8]) -> Result<Vec<u8>, SealError> {
        use chacha20poly1305::aead::Aead as _;
        let nonce: [u8; RESPONSE_NONCE_LEN] = rand::random();
        let ct = self
            .cipher()
            .encrypt(chacha20poly1305::Nonce::from_slice(&nonce), plaintext)
            .map_err(|_| SealError::Encrypt("sealing the answer failed".into()))?;
        Ok([&nonce[..], &ct].concat())
    }

    /// Opens an answer sealed with [`ResponseKey::seal`].
    pub fn open(&self, sealed: &[u8]) -> Result<Zeroizing<Vec<u8>>, SealError> {
        use chacha20poly1305::aead::Aead as _;
        if sealed.len() < RESPONSE_NONCE_LEN {
            return Err(SealError::WrongKey);
        }
        let (nonce, ct) = sealed.split_at(RESPONSE_NONCE_LEN);
        self.cipher()
            .decrypt(chacha20poly1305::Nonce::from_slice(nonce), ct)
            .map(Zeroizing::new)
            .map_err(|_| SealError::WrongKey)
    }
}

/// Seals a request to the attested public key `public` with `info`; returns it and the
/// key its answer will be sealed with.
pub fn seal_request(
    public: &EphemeralPublicKey,
    info: &[u8],
    request: &[u8],
) -> Result<(SealedSecret, ResponseKey), SealError> {
    let pk = hpke_public(public)?;
    let (enc, mut ctx) =
        hpke::setup_sender::<ChaCha20Poly1305, HkdfSha256, Kem, _>(&OpModeS::Base, &pk, info, &mut rand::rngs::OsRng)
            .map_err(|e| SealError::Encrypt(format!("HPKE: {e}")))?;
    let ciphertext = ctx.seal(request, b"").map_err(|e| SealError::Encrypt(format!("HPKE: {e}")))?;
    let mut key = Zeroizing::new([0u8; 32]);
    ctx.export(RESPONSE_EXPORT, &mut key[..]).map_err(|e| SealError::Encrypt(format!("HPKE export: {e}")))?;
    Ok((SealedSecret { enc: enc.to_bytes().to_vec(), ciphertext }, ResponseKey(key)))
}

impl EphemeralKey {
    /// Opens a request sealed with [`seal_request`] to this key; returns it and the key
    /// to seal the answer with.
    pub fn open_request(
        &self,
        sealed: &SealedSecret,
        info: &[u8],
    ) -> Result<(Zeroizing<Vec<u8>>, ResponseKey), SealError> {
        let enc = <Kem as hpke::Kem>::EncappedKey::from_bytes(&sealed.enc)
            .map_err(|_| SealError::InvalidKey("malformed HPKE encapsulated key".into()))?;
        let mut ctx =
            hpke::setup_receiver::<ChaCha20Poly1305, HkdfSha256, Kem>(&OpModeR::Base, &self.private, &enc, info)
                .map_err(|_| SealError::WrongKey)?;
        let plain = ctx.open(&sealed.ciphertext, b"").map(Zeroizing::new).map_err(|_| SealError::WrongKey)?;
        let mut key = Zeroizing::new([0u8; 32]);
        ctx.export(RESPONSE_EXPORT, &mut key[..]).map_err(|_| SealError::WrongKey)?;
        Ok((plain, ResponseKey(key)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_only_with_the_key_and_info_it_was_sealed_for() {
        let k = EphemeralKey::generate();
        let s = seal_to(&k.public_key(), b"info-a", b"secret").unwrap();
        assert_eq!(&k.open(&s, b"info-a").unwrap()[..], b"secret");
        assert!(k.open(&s, b"info-b").is_err());
        assert!(EphemeralKey::generate().open(&s, b"info-a").is_err());
        let mut t = s.clone();
        t.ciphertext[0] ^= 1;
        assert!(k.open(&t, b"info-a").is_err());
    }

    #[test]
    fn low_order_points_are_refused_before_anything_is_sealed() {
        assert!(check_public_key(&EphemeralKey::generate().public_key()).is_ok());
        let mut order8 = [0u8; 32];
        order8
            .copy_from_slice(&hex::decode("e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800").unwrap());
        let mut one = [0u8; 32];
        one[0] = 1;
        for bad in [[0u8; 32], one, order8] {
            let key = EphemeralPublicKey::from(bad);
            assert!(check_public_key(&key).is_err(), "{key}");
            assert!(seal_to(&key, b"i", b"s").is_err());
        }
    }

    #[test]
    fn private_requests_open_only_at_the_attested_key_and_answers_only_for_the_sender() {
        let enclave = EphemeralKey::generate();
        let info = request_info(&perun_core::Digest::of(b"job"));
        let (req, client_key) = seal_request(&enclave.public_key(), &info, b"rows").unwrap();
        let (plain, server_key) = enclave.open_request(&req, &info).unwrap();
        assert_eq!(&plain[..], b"rows");
        let answer = server_key.seal(b"classes").unwrap();
        assert_eq!(&client_key.open(&answer).unwrap()[..], b"classes");

        // Another key (one no evidence vouched for) cannot open the request.
        assert!(EphemeralKey::generate().open_request(&req, &info).is_err());
        // Bound to the job: another job's info does not open it.
        assert!(enclave.open_request(&req, &request_info(&perun_core::Digest::of(b"other"))).is_err());
        // An answer forged by anyone who lacks the request's context does not open.
        let (_, other_key) = seal_request(&enclave.public_key(), &info, b"rows").unwrap();
        assert!(client_key.open(&other_key.seal(b"forged").unwrap()).is_err());
        let mut flipped = answer.clone();
        flipped[20] ^= 1;
        assert!(client_key.open(&flipped).is_err());
        assert!(client_key.open(&[]).is_err());
    }
}
