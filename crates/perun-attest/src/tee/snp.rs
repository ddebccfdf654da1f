//! AMD SEV-SNP attestation reports, verified with the `sev` crate (`crypto_nossl`)
//! against the VCEK supplied with the evidence and AMD's ARK and ASK built into `sev`
//! (Milan, Genoa, Turin).

use std::collections::BTreeMap;

use sev::certs::snp::{builtin, ca, Certificate, Chain, Verifiable};
use sev::firmware::guest::AttestationReport;
use sev::parser::ByteParser;

use super::{TcbLevel, TeeClaims, TeeEvidence, TeeKind, TeeVerifier};
use crate::AttestError;

/// The `ATTESTATION_REPORT` versions the `sev` crate lays out (2; 3 and 4 add CPUID
/// fields; 5 adds the launch mitigation vector). Later versions may move fields, so
/// they are refused rather than read as version 5.
const SUPPORTED_VERSIONS: std::ops::RangeInclusive<u32> = 2..=5;

/// Verifies SNP reports.
pub struct SnpVerifier;

impl TeeVerifier for SnpVerifier {
    fn kind(&self) -> TeeKind {
        TeeKind::SevSnp
    }

    fn verify(&self, evidence: &TeeEvidence, _now: u64) -> Result<TeeClaims, AttestError> {
        let bad = |e: String| AttestError::Check(format!("SNP: {e}"));
        let vcek_der = vcek_der_of(evidence)?;
        let vcek = Certificate::from_der(&vcek_der).map_err(|e| bad(format!("VCEK: {e}")))?;
        let version = evidence.report.get(..4).map(|v| u32::from_le_bytes([v[0], v[1], v[2], v[3]]));
        match version {
            Some(v) if SUPPORTED_VERSIONS.contains(&v) => {}
            Some(v) => {
                return Err(bad(format!(
                    "attestation report version {v} is not supported (supported: versions {} to {}, AMD SEV-SNP \
                     ABI specification, ATTESTATION_REPORT)",
                    SUPPORTED_VERSIONS.start(),
                    SUPPORTED_VERSIONS.end()
                )))
            }
            None => return Err(bad(format!("the report has {} bytes, too few for a version", evidence.report.len()))),
        }
        let report = AttestationReport::from_bytes(&evidence.report).map_err(|e| bad(format!("report: {e}")))?;
        // SIGNING_KEY (AMD SEV-SNP ABI specification, ATTESTATION_REPORT, bits 4:2 of
        // KEY_INFO): 0 VCEK, 1 VLEK, 7 none.
        match report.key_info.signing_key() {
            0 => {}
            1 => {
                return Err(bad("the report is signed by a VLEK (the cloud provider's versioned key, chained to \
                                AMD's ASVK), not a VCEK: VLEK-signed reports are not supported yet; use a host \
                                that signs reports with its VCEK"
                    .into()))
            }
            7 => return Err(bad("the report is not signed (SIGNING_KEY says none)".into())),
            k => return Err(bad(format!("the report names signing key {k}, which the ABI does not define"))),
        }
        let mut verified = false;
        for (ark, ask) in [
            (builtin::milan::ark(), builtin::milan::ask()),
            (builtin::genoa::ark(), builtin::genoa::ask()),
            (builtin::turin::ark(), builtin::turin::ask()),
        ] {
            let (Ok(ark), Ok(ask)) = (ark, ask) else { continue };
            let chain = Chain { ca: ca::Chain { ark, ask }, vek: vcek.clone() };
            if chain.verify().is_ok() && (&chain, &report).verify().is_ok() {
                verified = true;
                break;
            }
        }
        if !verified {
            return Err(bad("the report does not verify under the VCEK and AMD's ARK/ASK".into()));
        }
        // A VCEK is one chip's key at one TCB: the report it signed must name that chip
        // and that TCB, or an old VCEK (of firmware since fixed) vouches for a report
        // claiming a newer TCB.
        vcek_binding(&vcek_der, &report.chip_id, &report.reported_tcb).map_err(bad)?;
        let t = &report.reported_tcb;
        let status =
            format!("reported TCB bootloader {} tee {} snp {} microcode {}", t.bootloader, t.tee, t.snp, t.microcode);
        Ok(TeeClaims {
            kind: TeeKind::SevSnp,
            measurements: BTreeMap::from([
                ("measurement".to_owned(), hex::encode(report.measurement)),
                ("host_data".to_owned(), hex::encode(report.host_data)),
                // Hex digits as a policy writes them (16, no `0x`).
                ("policy".to_owned(), format!("{:016x}", u64::from(report.policy))),
            ]),
            report_data: hex::encode(report.report_data),
            // The report states versions, not a vendor verdict: the policy's `min_svn`
            // floor decides (appraise_tee requires one for SNP evidence).
            tcb: TcbLevel::UpToDate,
            tcb_status: status,
            advisories: Vec::new(),
            svns: BTreeMap::from([
                ("bootloader".to_owned(), u64::from(t.bootloader)),
                ("tee".to_owned(), u64::from(t.tee)),
                ("snp".to_owned(), u64::from(t.snp)),
                ("microcode".to_owned(), u64::from(t.microcode)),
            ]),
            debug: report.policy.debug_allowed(),
        })
    }
}

/// The VCEK's DER from the evidence's collateral.
fn vcek_der_of(evidence: &TeeEvidence) -> Result<Vec<u8>, AttestError> {
    let vcek_hex = evidence.collateral.get("vcek").and_then(|v| v.as_str()).unwrap_or_default();
    hex::decode(vcek_hex).map_err(|_| AttestError::Check("SNP: the collateral lacks a hex `vcek` (DER)".into()))
}

/// AMD's VCEK extensions (AMD, "Versioned Chip Endorsement Key (VCEK) Certificate and
/// KDS Interface Specification", 57230, table 8): the TCB the key was derived for, per
/// component, and the chip's hardware ID.
const VCEK_BOOTLOADER: &str = "1.3.6.1.4.1.3704.1.3.1";
const VCEK_TEE: &str = "1.3.6.1.4.1.3704.1.3.2";
const VCEK_SNP: &str = "1.3.6.1.4.1.3704.1.3.3";
const VCEK_MICROCODE: &str = "1.3.6.1.4.1.3704.1.3.8";
const VCEK_HWID: &str = "1.3.6.1.4.1.3704.1.4";

/// Checks that the VCEK (DER) was issued for the report's chip (`hwID` = the report's
/// `CHIP_ID`; Turin's 8-byte ID is the first 8 bytes) and its `REPORTED_TCB` (each SPL
/// extension equals the report's component). Returns why not.
pub(crate) fn vcek_binding(
    vcek_der: &[u8],
    chip_id: &[u8; 64],
    reported: &sev::firmware::host::TcbVersion,
) -> Result<(), String> {
    use x509_parser::prelude::{FromDer as _, X509Certificate};
    let (_, cert) = X509Certificate::from_der(vcek_der).map_err(|e| format!("VCEK: {e}"))?;
    let mut spl = std::collections::BTreeMap::new();
    let mut hwid = None;
    for ext in cert.extensions() {
        let oid = ext.oid.to_id_string();
        match oid.as_str() {
            VCEK_BOOTLOADER | VCEK_TEE | VCEK_SNP | VCEK_MICROCODE => {
                let (_, v) = x509_parser::der_parser::der::parse_der_integer(ext.value)
                    .map_err(|e| format!("VCEK extension {oid}: {e}"))?;
                let v = v.as_u64().map_err(|e| format!("VCEK extension {oid}: {e}"))?;
                spl.insert(oid, v);
            }
            VCEK_HWID => hwid = Some(ext.value.to_vec()),
            _ => {}
        }
    }
    let hwid = hwid.ok_or("the VCEK names no hardware ID (hwID extension): it binds no chip")?;
    let n = hwid.len();
    if !(n == 8 || n == 64) || chip_id.get(..n) != Some(hwid.as_slice()) {
        return Err(if chip_id.iter().all(|b| *b == 0) {
            "the report masks its CHIP_ID, so it cannot be bound to the VCEK's chip: launch the guest without \
             MASK_CHIP_ID"
                .into()
        } else {
            "the VCEK was issued for another chip than the one the report names (hwID differs from CHIP_ID)".into()
        });
    }
    for (oid, name, value) in [
        (VCEK_BOOTLOADER, "bootloader", reported.bootloader),
        (VCEK_TEE, "tee", reported.tee),
        (VCEK_SNP, "snp", reported.snp),
        (VCEK_MICROCODE, "microcode", reported.microcode),
    ] {
        match spl.get(oid) {
            Some(v) if *v == u64::from(value) => {}
            Some(v) => {
                return Err(format!(
                    "the VCEK was issued for TCB component {name} at {v}, but the report states {value} \
                     (REPORTED_TCB): a VCEK vouches only for the TCB it was derived for"
                ))
            }
            None => return Err(format!("the VCEK names no TCB component {name} ({oid})")),
        }
    }
    Ok(())
}

#[cfg(test)]
mod binding_tests {
    use super::*;

    /// A real Milan report and its VCEK (trustee's `deps/verifier/test_data/snp`,
    /// byte-exact; `crates/perun-attest/testdata/PROVENANCE.md`).
    const REPORT: &[u8] = include_bytes!("../../testdata/snp/milan-vcek-v2.report.bin");
    const VCEK: &[u8] = include_bytes!("../../testdata/snp/milan-vcek-v2.cert.der");

    #[test]
    fn a_real_report_is_bound_to_its_vcek_and_another_tcb_or_chip_is_not() {
        let report = AttestationReport::from_bytes(REPORT).unwrap();
        vcek_binding(VCEK, &report.chip_id, &report.reported_tcb).unwrap();
        let mut newer = report.reported_tcb.clone();
        newer.snp = newer.snp.wrapping_add(1);
        let e = vcek_binding(VCEK, &report.chip_id, &newer).unwrap_err();
        assert!(e.contains("TCB component snp"), "{e}");
        let mut other = report.chip_id;
        other[0] ^= 1;
        let e = vcek_binding(VCEK, &other, &report.reported_tcb).unwrap_err();
        assert!(e.contains("another chip"), "{e}");
        let e = vcek_binding(VCEK, &[0; 64], &report.reported_tcb).unwrap_err();
        assert!(e.contains("MASK_CHIP_ID"), "{e}");
    }
}
