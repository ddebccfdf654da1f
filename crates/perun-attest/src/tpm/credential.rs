//! Software MakeCredential (TPM 2.0 Part 1, 24: Credential Protection), so the trust
//! service can bind an AK to a registered EK without a TPM of its own: only the TPM that
//! holds the EK, and holds an object with the AK's name, can recover the secret
//! (TPM2_ActivateCredential).

use aes::cipher::{AsyncStreamCipher as _, KeyIvInit as _};
use hmac::{Hmac, Mac as _};
use rand::RngCore as _;
use sha2::{Digest as _, Sha256};

use super::alg;
use super::public::{AkPublic, PublicKey};
use super::wire::put_tpm2b;
use crate::AttestError;

/// Magic and version of the file `tpm2_makecredential -o` writes (and
/// `tpm2_activatecredential -i` reads).
const TOOLS_MAGIC: u32 = 0xBADC_C0DE;
const TOOLS_VERSION: u32 = 1;

/// The two halves of a credential challenge.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Credential {
    /// `TPM2B_ID_OBJECT` contents (integrity HMAC, encrypted credential), without size.
    pub credential_blob: Vec<u8>,
    /// `TPM2B_ENCRYPTED_SECRET` contents (the seed, encrypted to the EK), without size.
    pub secret: Vec<u8>,
}

impl Credential {
    /// The bytes of a `tpm2_makecredential` output file.
    pub fn to_tools_file(&self) -> Vec<u8> {
        let mut out = TOOLS_MAGIC.to_be_bytes().to_vec();
        out.extend_from_slice(&TOOLS_VERSION.to_be_bytes());
        put_tpm2b(&mut out, &self.credential_blob);
        put_tpm2b(&mut out, &self.secret);
        out
    }
}

/// KDFa (SP 800-108 counter mode with HMAC-SHA256), as the TPM defines it.
pub fn kdf_a(key: &[u8], label: &str, context_u: &[u8], context_v: &[u8], bits: u32) -> Vec<u8> {
    let bytes = bits.div_ceil(8) as usize;
    let mut out = Vec::with_capacity(bytes + 32);
    let mut counter = 1u32;
    while out.len() < bytes {
        let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(key) else { break };
        mac.update(&counter.to_be_bytes());
        mac.update(label.as_bytes());
        mac.update(&[0]);
        mac.update(context_u);
        mac.update(context_v);
        mac.update(&bits.to_be_bytes());
        out.extend_from_slice(&mac.finalize().into_bytes());
        counter += 1;
    }
    out.truncate(bytes);
    out
}

/// KDFe (SP 800-56A concatenation KDF with SHA-256), as the TPM defines it.
pub fn kdf_e(z: &[u8], label: &str, party_u: &[u8], party_v: &[u8], bits: u32) -> Vec<u8> {
    let bytes = bits.div_ceil(8) as usize;
    let mut out = Vec::with_capacity(bytes + 32);
    let mut counter = 1u32;
    while out.len() < bytes {
        let mut h = Sha256::new();
        h.update(counter.to_be_bytes());
        h.update(z);
        h.update(label.as_bytes());
        h.update([0]);
        h.update(party_u);
        h.update(party_v);
        out.extend_from_slice(&h.finalize());
        counter += 1;
    }
    out.truncate(bytes);
    out
}

/// Makes a credential challenge: `credential` (at most 32 bytes) that only the TPM
/// holding `ek` can recover, and only for an object named `ak_name`.
pub fn make_credential(ek: &AkPublic, ak_name: &[u8], credential: &[u8]) -> Result<Credential, AttestError> {
    if credential.is_empty() || credential.len() > 32 {
        return Err(AttestError::Check("a credential must be 1 to 32 bytes".into()));
    }
    if ek.symmetric != Some((alg::AES, 128, alg::CFB)) {
        return Err(AttestError::Check(format!("EK symmetric algorithm {:?} is not AES-128-CFB", ek.symmetric)));
    }
    let mut rng = rand::rngs::OsRng;
    let (seed, secret) = match &ek.key {
        PublicKey::Rsa(key) => {
            let mut seed = vec![0u8; 32];
            rng.fill_bytes(&mut seed);
            let padding = rsa::Oaep::new_with_label::<Sha256, _>("IDENTITY\0");
            let secret = key
                .encrypt(&mut rng, padding, &seed)
                .map_err(|e| AttestError::Check(format!("RSA-OAEP to the EK failed: {e}")))?;
            (seed, secret)
        }
        PublicKey::EccP256(ek_point) => {
            use p256::elliptic_curve::sec1::ToEncodedPoint as _;
            let eph = p256::ecdh::EphemeralSecret::random(&mut rng);
            let eph_pub = eph.public_key().to_encoded_point(false);
            let shared = eph.diffie_hellman(ek_point);
            let ek_enc = ek_point.to_encoded_point(false);
            let (ex, ey, kx) = match (eph_pub.x(), eph_pub.y(), ek_enc.x()) {
                (Some(ex), Some(ey), Some(kx)) => (ex, ey, kx),
                _ => return Err(AttestError::Check("ECC point at infinity".into())),
            };
            let seed = kdf_e(shared.raw_secret_bytes(), "IDENTITY", ex, kx, 256);
            let mut secret = Vec::new();
            put_tpm2b(&mut secret, ex);
            put_tpm2b(&mut secret, ey);
            (seed, secret)
        }
    };
    let sym_key = kdf_a(&seed, "STORAGE", ak_name, &[], 128);
    let hmac_key = kdf_a(&seed, "INTEGRITY", &[], &[], 256);
    let mut enc_identity = Vec::new();
    put_tpm2b(&mut enc_identity, credential);
    let cipher = cfb_mode::Encryptor::<aes::Aes128>::new_from_slices(&sym_key, &[0u8; 16])
        .map_err(|_| AttestError::Check("bad AES key length".into()))?;
    cipher.encrypt(&mut enc_identity);
    let mut mac = Hmac::<Sha256>::new_from_slice(&hmac_key).map_err(|_| AttestError::Check("bad HMAC key".into()))?;
    mac.update(&enc_identity);
    mac.update(ak_name);
    let mut credential_blob = Vec::new();
    put_tpm2b(&mut credential_blob, &mac.finalize().into_bytes());
    credential_blob.extend_from_slice(&enc_identity);
    Ok(Credential { credential_blob, secret })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kdf_a_is_counter_mode_hmac() {
        // Two blocks, truncated: recompute by hand.
        let k = kdf_a(b"key", "LABEL", b"u", b"v", 300);
        assert_eq!(k.len(), 38);
        let mut mac = Hmac::<Sha256>::new_from_slice(b"key").unwrap();
        mac.update(&1u32.to_be_bytes());
        mac.update(b"LABEL\0uv");
        mac.update(&300u32.to_be_bytes());
        assert_eq!(&k[..32], mac.finalize().into_bytes().as_slice());
    }
}
