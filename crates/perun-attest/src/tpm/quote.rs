//! `TPMS_ATTEST` quotes and `TPMT_SIGNATURE`s, and the checks a verifier makes.

use sha2::{Digest as _, Sha256};

use super::alg;
use super::public::{AkPublic, PublicKey};
use super::wire::Reader;
use crate::AttestError;

/// `TPM_GENERATED_VALUE`: every structure the TPM signs starts with it.
pub const TPM_GENERATED: u32 = 0xff54_4347;
/// `TPM_ST_ATTEST_QUOTE`.
pub const ST_ATTEST_QUOTE: u16 = 0x8018;

/// A parsed quote (`TPMS_ATTEST` of type quote).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Quote {
    /// Name of the signing key as the TPM saw it.
    pub qualified_signer: Vec<u8>,
    /// The qualifying data (`extraData`): what binds the quote to a nonce.
    pub extra_data: Vec<u8>,
    /// TPM clock (ms).
    pub clock: u64,
    /// TPM resets since manufacture.
    pub reset_count: u32,
    /// TPM restarts since the last reset.
    pub restart_count: u32,
    /// Whether the clock is known not to have gone backwards.
    pub safe: bool,
    /// Firmware version.
    pub firmware_version: u64,
    /// Selected PCRs per bank: `(hash algorithm, PCR indices)`.
    pub selection: Vec<(u16, Vec<u32>)>,
    /// Digest over the selected PCR values.
    pub pcr_digest: Vec<u8>,
}

impl Quote {
    /// Parses `TPMS_ATTEST` bytes, refusing anything but a TPM-generated quote.
    pub fn parse(attest: &[u8]) -> Result<Self, AttestError> {
        let mut r = Reader::new(attest, "TPMS_ATTEST");
        let magic = r.u32()?;
        if magic != TPM_GENERATED {
            return Err(AttestError::Check(format!("quote magic 0x{magic:08x} is not TPM_GENERATED_VALUE")));
        }
        let ty = r.u16()?;
        if ty != ST_ATTEST_QUOTE {
            return Err(AttestError::Check(format!("attestation type 0x{ty:04x} is not a quote")));
        }
        let qualified_signer = r.tpm2b()?.to_vec();
        let extra_data = r.tpm2b()?.to_vec();
        let clock = r.u64()?;
        let reset_count = r.u32()?;
        let restart_count = r.u32()?;
        let safe = r.u8()? != 0;
        let firmware_version = r.u64()?;
        let count = r.u32()?;
        if count > 16 {
            return Err(AttestError::malformed("TPMS_ATTEST", format!("{count} PCR banks")));
        }
        let mut selection = Vec::new();
        for _ in 0..count {
            let hash = r.u16()?;
            let size = r.u8()? as usize;
            let bits = r.bytes(size)?;
            let pcrs = (0..size * 8).filter(|i| bits[i / 8] & (1 << (i % 8)) != 0).map(|i| i as u32).collect();
            selection.push((hash, pcrs));
        }
        let pcr_digest = r.tpm2b()?.to_vec();
        r.finish()?;
        Ok(Self {
            qualified_signer,
            extra_data,
            clock,
            reset_count,
            restart_count,
            safe,
            firmware_version,
            selection,
            pcr_digest,
        })
    }
}

pub use perun_proto::evidence::PcrBank;

/// What a verified quote proves.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QuoteCheck {
    /// The parsed quote.
    pub quote: Quote,
}

/// Verifies a quote: the signature by `ak`, the qualifying data, and that the PCR
/// values sent are exactly the ones the TPM quoted. Each failure says which check.
pub fn verify_quote(
    ak: &AkPublic,
    attest: &[u8],
    signature: &[u8],
    expected_extra_data: &[u8],
    pcrs: &PcrBank,
) -> Result<QuoteCheck, AttestError> {
    verify_signature(ak, attest, signature)?;
    let quote = Quote::parse(attest)?;
    if quote.extra_data != expected_extra_data {
        return Err(AttestError::Check(
            "qualifying data does not match the nonce binding: stale or replayed quote, or another key or job".into(),
        ));
    }
    let [(hash, selected)] = &quote.selection[..] else {
        return Err(AttestError::Check(format!("quote selects {} PCR banks, expected one", quote.selection.len())));
    };
    if *hash != alg::SHA256 || pcrs.hash_alg != alg::SHA256 {
        return Err(AttestError::Check(format!(
            "the quote is over the {} PCR bank and the PCR values sent are of the {} bank: Perun verifies the \
             SHA-256 bank (quote PCRs with `sha256:`, as `tpm2_quote -l sha256:0,...,10` does)",
            alg::bank_name(*hash),
            alg::bank_name(pcrs.hash_alg)
        )));
    }
    let sent: Vec<u32> = pcrs.values.keys().copied().collect();
    if *selected != sent {
        return Err(AttestError::Check(format!("quote selects PCRs {selected:?}, PCR values were sent for {sent:?}")));
    }
    let mut h = Sha256::new();
    for v in pcrs.values.values() {
        h.update(v);
    }
    if h.finalize().as_slice() != quote.pcr_digest {
        return Err(AttestError::Check("PCR values do not match the quoted PCR digest: they were edited".into()));
    }
    Ok(QuoteCheck { quote })
}

/// Verifies a `TPMT_SIGNATURE` by `ak` over `message` (SHA-256 only).
pub fn verify_signature(ak: &AkPublic, message: &[u8], signature: &[u8]) -> Result<(), AttestError> {
    let mut r = Reader::new(signature, "TPMT_SIGNATURE");
    let sig_alg = r.u16()?;
    let hash = r.u16()?;
    if hash != alg::SHA256 {
        return Err(AttestError::Unsupported { what: "signature hash", id: hash });
    }
    let digest = Sha256::digest(message);
    let bad = || AttestError::Check("quote signature does not verify under the attestation key".into());
    match (sig_alg, &ak.key) {
        (alg::RSASSA, PublicKey::Rsa(key)) => {
            let sig = r.tpm2b()?;
            r.finish()?;
            key.verify(rsa::Pkcs1v15Sign::new::<Sha256>(), &digest, sig).map_err(|_| bad())
        }
        (alg::ECDSA, PublicKey::EccP256(key)) => {
            use p256::ecdsa::signature::hazmat::PrehashVerifier as _;
            let (sr, ss) = (r.tpm2b()?, r.tpm2b()?);
            r.finish()?;
            let pad = |v: &[u8]| -> Result<[u8; 32], AttestError> {
                if v.len() > 32 {
                    return Err(bad());
                }
                let mut a = [0u8; 32];
                a[32 - v.len()..].copy_from_slice(v);
                Ok(a)
            };
            let sig = p256::ecdsa::Signature::from_scalars(pad(sr)?, pad(ss)?).map_err(|_| bad())?;
            p256::ecdsa::VerifyingKey::from(key).verify_prehash(&digest, &sig).map_err(|_| bad())
        }
        (a, _) => Err(AttestError::Check(format!("signature algorithm 0x{a:04x} does not fit the attestation key"))),
    }
}
