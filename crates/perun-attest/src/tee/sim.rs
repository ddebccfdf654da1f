//! The sim TEE: a software "enclave" for development on machines without TEE hardware.
//! Its report is JSON (kind `sim`, measurement, report data) signed with Ed25519 by the
//! sim's own key; the evidence says `sim`, and only a policy that names the key accepts it.

use std::collections::BTreeMap;

use ed25519_dalek::{Signer as _, SigningKey, Verifier as _, VerifyingKey};
use serde::{Deserialize, Serialize};

use super::{TcbLevel, TeeClaims, TeeEvidence, TeeKind, TeeVerifier};
use crate::AttestError;

/// What a sim report states.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SimReport {
    /// Always `sim`.
    pub kind: String,
    /// The measurement of the code the sim runs (hex of its digest).
    pub measurement: String,
    /// The 64-byte report data (hex).
    pub report_data: String,
}

/// Makes sim evidence: `measurement` of the running code, `report_data` (at most 64
/// bytes, zero-padded), signed by `key`.
pub fn make_evidence(key: &SigningKey, measurement: &[u8], report_data: &[u8]) -> Result<TeeEvidence, AttestError> {
    if report_data.len() > 64 {
        return Err(AttestError::Check("report data is at most 64 bytes".into()));
    }
    let mut rd = report_data.to_vec();
    rd.resize(64, 0);
    let report = SimReport { kind: "sim".into(), measurement: hex::encode(measurement), report_data: hex::encode(rd) };
    let bytes = serde_json::to_vec(&report).map_err(|e| AttestError::Check(e.to_string()))?;
    let sig = key.sign(&bytes);
    Ok(TeeEvidence {
        kind: TeeKind::Sim,
        report: bytes,
        collateral: serde_json::json!({
            "public_key": hex::encode(key.verifying_key().as_bytes()),
            "signature": hex::encode(sig.to_bytes()),
        }),
    })
}

/// Verifies sim evidence (the signature by the key it carries; whether that key is
/// trusted is the policy's decision).
pub struct SimVerifier;

impl TeeVerifier for SimVerifier {
    fn kind(&self) -> TeeKind {
        TeeKind::Sim
    }

    fn verify(&self, evidence: &TeeEvidence, _now: u64) -> Result<TeeClaims, AttestError> {
        let field = |name: &str| -> Result<Vec<u8>, AttestError> {
            let v = evidence.collateral.get(name).and_then(|v| v.as_str()).unwrap_or_default();
            hex::decode(v).map_err(|_| AttestError::Check(format!("sim collateral lacks a hex `{name}`")))
        };
        let pk: [u8; 32] =
            field("public_key")?.try_into().map_err(|_| AttestError::Check("sim key must be 32 bytes".into()))?;
        let sig: [u8; 64] =
            field("signature")?.try_into().map_err(|_| AttestError::Check("sim signature must be 64 bytes".into()))?;
        let key = VerifyingKey::from_bytes(&pk).map_err(|e| AttestError::Check(format!("sim key: {e}")))?;
        key.verify(&evidence.report, &ed25519_dalek::Signature::from_bytes(&sig))
            .map_err(|_| AttestError::Check("the sim report's signature does not verify".into()))?;
        let report: SimReport =
            serde_json::from_slice(&evidence.report).map_err(|e| AttestError::Check(format!("sim report: {e}")))?;
        if report.kind != "sim" {
            return Err(AttestError::Check("a sim report must say `sim`".into()));
        }
        Ok(TeeClaims {
            kind: TeeKind::Sim,
            measurements: BTreeMap::from([
                ("measurement".to_owned(), report.measurement),
                ("sim_key".to_owned(), hex::encode(pk)),
            ]),
            report_data: report.report_data,
            tcb: TcbLevel::UpToDate,
            tcb_status: "sim (no hardware)".into(),
            advisories: Vec::new(),
            svns: BTreeMap::new(),
            debug: false,
        })
    }
}
