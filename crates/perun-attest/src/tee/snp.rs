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
        let vcek_hex = evidence.collateral.get("vcek").and_then(|v| v.as_str()).unwrap_or_default();
        let vcek = hex::decode(vcek_hex).map_err(|_| bad("the collateral lacks a hex `vcek` (DER)".into()))?;
        let vcek = Certificate::from_der(&vcek).map_err(|e| bad(format!("VCEK: {e}")))?;
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
