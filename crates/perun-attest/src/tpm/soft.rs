//! A software TPM for load tests: an ECC P-256 EK and AK held in process memory, quotes
//! built and signed the way a TPM builds them, and ActivateCredential computed in
//! software. It lets one machine play a thousand workers, each with its own keys and
//! evidence, to load the trust service. It proves nothing about any platform: only an
//! operator who enrols its EK makes a service trust it, and nothing in Perun does that
//! outside `perun bench trust`. Behind the `soft-tpm` feature.

use std::collections::BTreeMap;

use aes::cipher::{AsyncStreamCipher as _, KeyIvInit as _};
use hmac::{Hmac, Mac as _};
use p256::ecdsa::signature::hazmat::PrehashSigner as _;
use p256::elliptic_curve::sec1::ToEncodedPoint as _;
use sha2::{Digest as _, Sha256};

use super::credential::{kdf_a, kdf_e};
use super::public::attributes::{DECRYPT, FIXED_TPM, RESTRICTED, SENSITIVE_DATA_ORIGIN, SIGN};
use super::quote::{PcrBank, ST_ATTEST_QUOTE, TPM_GENERATED};
use super::wire::{put_tpm2b, Reader};
use super::{alg, AkPublic};
use crate::AttestError;

/// A software TPM (see the module documentation).
pub struct SoftTpm {
    ek: p256::SecretKey,
    ek_public: Vec<u8>,
    ak: p256::ecdsa::SigningKey,
    ak_public: Vec<u8>,
    ak_name: Vec<u8>,
    pcrs: BTreeMap<u32, [u8; 32]>,
    clock: u64,
}

fn ecc_tpmt(point: &p256::PublicKey, attributes: u32, storage: bool) -> Vec<u8> {
    let enc = point.to_encoded_point(false);
    let mut t = Vec::new();
    t.extend_from_slice(&alg::ECC.to_be_bytes());
    t.extend_from_slice(&alg::SHA256.to_be_bytes());
    t.extend_from_slice(&attributes.to_be_bytes());
    put_tpm2b(&mut t, &[]);
    if storage {
        t.extend_from_slice(&alg::AES.to_be_bytes());
        t.extend_from_slice(&128u16.to_be_bytes());
        t.extend_from_slice(&alg::CFB.to_be_bytes());
        t.extend_from_slice(&alg::NULL.to_be_bytes());
    } else {
        t.extend_from_slice(&alg::NULL.to_be_bytes());
        t.extend_from_slice(&alg::ECDSA.to_be_bytes());
        t.extend_from_slice(&alg::SHA256.to_be_bytes());
    }
    t.extend_from_slice(&alg::NIST_P256.to_be_bytes());
    t.extend_from_slice(&alg::NULL.to_be_bytes());
    put_tpm2b(&mut t, enc.x().map(|x| x.as_slice()).unwrap_or_default());
    put_tpm2b(&mut t, enc.y().map(|y| y.as_slice()).unwrap_or_default());
    t
}

impl SoftTpm {
    /// A fresh software TPM with random keys and zeroed PCRs.
    pub fn new() -> Self {
        let mut rng = rand::rngs::OsRng;
        let ek = p256::SecretKey::random(&mut rng);
        let ek_public = ecc_tpmt(&ek.public_key(), FIXED_TPM | SENSITIVE_DATA_ORIGIN | RESTRICTED | DECRYPT, true);
        let ak = p256::ecdsa::SigningKey::random(&mut rng);
        let ak_point = p256::PublicKey::from(ak.verifying_key());
        let ak_public = ecc_tpmt(&ak_point, FIXED_TPM | SENSITIVE_DATA_ORIGIN | RESTRICTED | SIGN, false);
        let mut ak_name = alg::SHA256.to_be_bytes().to_vec();
        ak_name.extend_from_slice(&Sha256::digest(&ak_public));
        let pcrs = (0..=10).map(|i| (i, [0u8; 32])).collect();
        Self { ek, ek_public, ak, ak_public, ak_name, pcrs, clock: 0 }
    }

    /// The EK's `TPMT_PUBLIC`.
    pub fn ek_public(&self) -> &[u8] {
        &self.ek_public
    }

    /// The EK's public point, SEC1 uncompressed (what an EK certificate certifies).
    pub fn ek_point(&self) -> Vec<u8> {
        self.ek.public_key().to_encoded_point(false).as_bytes().to_vec()
    }

    /// The AK's `TPMT_PUBLIC`.
    pub fn ak_public(&self) -> &[u8] {
        &self.ak_public
    }

    /// Extends PCR 10 (SHA-256 bank) as the kernel does for an IMA entry.
    pub fn extend_pcr10(&mut self, sha256: &[u8; 32]) {
        let pcr = self.pcrs.entry(10).or_insert([0; 32]);
        let mut h = Sha256::new();
        h.update(*pcr);
        h.update(sha256);
        *pcr = h.finalize().into();
    }

    /// ActivateCredential: recovers the credential of a challenge made for this EK and AK.
    pub fn activate_credential(&self, credential_blob: &[u8], secret: &[u8]) -> Result<Vec<u8>, AttestError> {
        let mut r = Reader::new(secret, "encrypted secret");
        let (x, y) = (r.tpm2b()?, r.tpm2b()?);
        r.finish()?;
        let eph = super::public::p256_from_xy(x, y)?;
        let z = p256::ecdh::diffie_hellman(self.ek.to_nonzero_scalar(), eph.as_affine());
        let ek_enc = self.ek.public_key().to_encoded_point(false);
        let ek_x = ek_enc.x().map(|v| v.to_vec()).unwrap_or_default();
        let seed = kdf_e(z.raw_secret_bytes(), "IDENTITY", x, &ek_x, 256);
        let hmac_key = kdf_a(&seed, "INTEGRITY", &[], &[], 256);
        let sym_key = kdf_a(&seed, "STORAGE", &self.ak_name, &[], 128);
        let mut r = Reader::new(credential_blob, "credential blob");
        let integrity = r.tpm2b()?.to_vec();
        let enc_identity = credential_blob[2 + integrity.len()..].to_vec();
        let mut mac = Hmac::<Sha256>::new_from_slice(&hmac_key).map_err(|_| AttestError::Check("HMAC key".into()))?;
        mac.update(&enc_identity);
        mac.update(&self.ak_name);
        mac.verify_slice(&integrity).map_err(|_| AttestError::Check("credential integrity check failed".into()))?;
        let mut plain = enc_identity;
        cfb_mode::Decryptor::<aes::Aes128>::new_from_slices(&sym_key, &[0u8; 16])
            .map_err(|_| AttestError::Check("AES key".into()))?
            .decrypt(&mut plain);
        let mut r = Reader::new(&plain, "credential");
        let cred = r.tpm2b()?.to_vec();
        Ok(cred)
    }

    /// A quote over the boot PCRs and PCR 10 with `qualifying_data`, and the PCR values:
    /// `(TPMS_ATTEST, TPMT_SIGNATURE, PcrBank)`.
    pub fn quote(&mut self, qualifying_data: &[u8]) -> Result<(Vec<u8>, Vec<u8>, PcrBank), AttestError> {
        self.clock += 1;
        let mut a = TPM_GENERATED.to_be_bytes().to_vec();
        a.extend_from_slice(&ST_ATTEST_QUOTE.to_be_bytes());
        put_tpm2b(&mut a, &self.ak_name);
        put_tpm2b(&mut a, qualifying_data);
        a.extend_from_slice(&self.clock.to_be_bytes());
        a.extend_from_slice(&0u32.to_be_bytes());
        a.extend_from_slice(&0u32.to_be_bytes());
        a.push(1);
        a.extend_from_slice(&0u64.to_be_bytes());
        a.extend_from_slice(&1u32.to_be_bytes());
        a.extend_from_slice(&alg::SHA256.to_be_bytes());
        let mut bits = [0u8; 3];
        for i in self.pcrs.keys() {
            bits[*i as usize / 8] |= 1 << (i % 8);
        }
        a.push(3);
        a.extend_from_slice(&bits);
        let mut h = Sha256::new();
        for v in self.pcrs.values() {
            h.update(v);
        }
        put_tpm2b(&mut a, &h.finalize());
        let sig: p256::ecdsa::Signature =
            self.ak.sign_prehash(&Sha256::digest(&a)).map_err(|e| AttestError::Check(format!("ECDSA: {e}")))?;
        let mut s = alg::ECDSA.to_be_bytes().to_vec();
        s.extend_from_slice(&alg::SHA256.to_be_bytes());
        let (r, ss) = sig.split_bytes();
        put_tpm2b(&mut s, &r);
        put_tpm2b(&mut s, &ss);
        let bank = PcrBank { hash_alg: alg::SHA256, values: self.pcrs.iter().map(|(k, v)| (*k, v.to_vec())).collect() };
        Ok((a, s, bank))
    }

    /// The AK, parsed as a verifier sees it.
    pub fn ak(&self) -> Result<AkPublic, AttestError> {
        AkPublic::parse_tpmt(&self.ak_public)
    }
}

impl Default for SoftTpm {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tpm::{make_credential, verify_quote};

    #[test]
    fn its_quotes_verify_and_its_activation_answers_only_its_own_challenge() {
        let mut t = SoftTpm::new();
        let ak = t.ak().unwrap();
        ak.check_attestation_key().unwrap();
        let ek = AkPublic::parse_tpmt(t.ek_public()).unwrap();
        let c = make_credential(&ek, &ak.name, b"0123456789abcdef0123456789abcdef").unwrap();
        assert_eq!(t.activate_credential(&c.credential_blob, &c.secret).unwrap(), b"0123456789abcdef0123456789abcdef");
        let other = SoftTpm::new();
        assert!(other.activate_credential(&c.credential_blob, &c.secret).is_err());
        t.extend_pcr10(&[7; 32]);
        let (q, s, bank) = t.quote(b"nonce").unwrap();
        verify_quote(&ak, &q, &s, b"nonce", &bank).unwrap();
        assert!(verify_quote(&ak, &q, &s, b"other", &bank).is_err());
    }
}
