//! `TPMT_PUBLIC`: the public area of a TPM key (EK or AK), and its name.

use sha2::{Digest as _, Sha256};

use super::alg;
use super::wire::Reader;
use crate::AttestError;

/// A public key from a TPM.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PublicKey {
    /// RSA (AK: RSASSA signing; EK: OAEP decryption).
    Rsa(rsa::RsaPublicKey),
    /// ECC on NIST P-256.
    EccP256(p256::PublicKey),
}

/// A parsed public area with what verifiers need from it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AkPublic {
    /// The key.
    pub key: PublicKey,
    /// The name algorithm (SHA-256 only here).
    pub name_alg: u16,
    /// `TPMA_OBJECT` attribute bits.
    pub attributes: u32,
    /// The symmetric algorithm of a storage key (EK): `(algorithm, key bits, mode)`.
    pub symmetric: Option<(u16, u16, u16)>,
    /// The TPM name: name algorithm (u16) then the digest of the `TPMT_PUBLIC`.
    pub name: Vec<u8>,
    /// The `TPMT_PUBLIC` bytes.
    pub tpmt: Vec<u8>,
}

/// `TPMA_OBJECT` bits.
pub mod attributes {
    /// The key never leaves the TPM it was made in.
    pub const FIXED_TPM: u32 = 1 << 1;
    /// The key was made by the TPM.
    pub const SENSITIVE_DATA_ORIGIN: u32 = 1 << 5;
    /// The key signs only TPM-generated structures (restricted).
    pub const RESTRICTED: u32 = 1 << 16;
    /// A decryption (storage) key.
    pub const DECRYPT: u32 = 1 << 17;
    /// A signing key.
    pub const SIGN: u32 = 1 << 18;
}

impl AkPublic {
    /// Parses a `TPM2B_PUBLIC` (u16 size, then `TPMT_PUBLIC`), as `tpm2_createak -u`
    /// writes it, or a bare `TPMT_PUBLIC`.
    pub fn parse(bytes: &[u8]) -> Result<Self, AttestError> {
        if bytes.len() >= 2 && u16::from_be_bytes([bytes[0], bytes[1]]) as usize == bytes.len() - 2 {
            Self::parse_tpmt(&bytes[2..])
        } else {
            Self::parse_tpmt(bytes)
        }
    }

    /// Parses a bare `TPMT_PUBLIC`.
    pub fn parse_tpmt(tpmt: &[u8]) -> Result<Self, AttestError> {
        let mut r = Reader::new(tpmt, "TPMT_PUBLIC");
        let ty = r.u16()?;
        let name_alg = r.u16()?;
        if name_alg != alg::SHA256 {
            return Err(AttestError::Unsupported { what: "name algorithm", id: name_alg });
        }
        let attributes = r.u32()?;
        r.tpm2b()?; // authPolicy
        let sym_alg = r.u16()?;
        let symmetric = if sym_alg == alg::NULL { None } else { Some((sym_alg, r.u16()?, r.u16()?)) };
        let scheme = r.u16()?;
        if scheme != alg::NULL {
            r.u16()?; // scheme hash
        }
        let key = match ty {
            alg::RSA => {
                let bits = r.u16()?;
                let exponent = match r.u32()? {
                    0 => 65537,
                    e => e,
                };
                let n = r.tpm2b()?;
                if n.len() * 8 != bits as usize {
                    return Err(AttestError::malformed(
                        "TPMT_PUBLIC",
                        format!("RSA modulus of {} bytes for {bits} bits", n.len()),
                    ));
                }
                let key = rsa::RsaPublicKey::new(rsa::BigUint::from_bytes_be(n), rsa::BigUint::from(exponent))
                    .map_err(|e| AttestError::malformed("TPMT_PUBLIC", format!("RSA key: {e}")))?;
                PublicKey::Rsa(key)
            }
            alg::ECC => {
                let curve = r.u16()?;
                if curve != alg::NIST_P256 {
                    return Err(AttestError::Unsupported { what: "ECC curve", id: curve });
                }
                let kdf = r.u16()?;
                if kdf != alg::NULL {
                    r.u16()?;
                }
                let x = r.tpm2b()?;
                let y = r.tpm2b()?;
                PublicKey::EccP256(p256_from_xy(x, y)?)
            }
            other => return Err(AttestError::Unsupported { what: "key type", id: other }),
        };
        r.finish()?;
        let mut name = alg::SHA256.to_be_bytes().to_vec();
        name.extend_from_slice(&Sha256::digest(tpmt));
        Ok(Self { key, name_alg, attributes, symmetric, name, tpmt: tpmt.to_vec() })
    }

    /// Checks the attributes an attestation key must have: made in and fixed to its
    /// TPM, restricted, signing.
    pub fn check_attestation_key(&self) -> Result<(), AttestError> {
        use attributes::*;
        let need = FIXED_TPM | SENSITIVE_DATA_ORIGIN | RESTRICTED | SIGN;
        if self.attributes & need != need || self.attributes & DECRYPT != 0 {
            return Err(AttestError::Check(format!(
                "not an attestation key: attributes 0x{:08x} lack fixedTPM, sensitiveDataOrigin, restricted or sign",
                self.attributes
            )));
        }
        Ok(())
    }
}

/// A P-256 point from its coordinates (left-padded to 32 bytes).
pub(crate) fn p256_from_xy(x: &[u8], y: &[u8]) -> Result<p256::PublicKey, AttestError> {
    if x.len() > 32 || y.len() > 32 {
        return Err(AttestError::malformed("ECC point", "coordinate longer than 32 bytes"));
    }
    let mut sec1 = vec![0x04u8];
    sec1.extend(std::iter::repeat_n(0, 32 - x.len()));
    sec1.extend_from_slice(x);
    sec1.extend(std::iter::repeat_n(0, 32 - y.len()));
    sec1.extend_from_slice(y);
    p256::PublicKey::from_sec1_bytes(&sec1).map_err(|_| AttestError::malformed("ECC point", "not on P-256"))
}
