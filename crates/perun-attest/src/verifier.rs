//! One Verifier interface for every kind of Evidence, and the Attestation Result it
//! returns (IETF RATS architecture, RFC 9334 sections 3 and 8).
//!
//! The trust service is the Relying Party: it hands a [`Verifier`] the Evidence a worker
//! or enclave sent and the value that Evidence must bind (SHA-256 over the service's
//! nonce, the job digest and the ephemeral key, docs/architecture.md, section 2, rule 4), and acts
//! on the [`AttestationResult`] alone: it records the result in the audit log, refuses or
//! releases. A TPM quote with its IMA and event logs ([`TpmVerifier`]) and a TEE report
//! ([`TeeReportVerifier`]) are two implementations of the same trait.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::evidence::{appraise, Endorsement, TpmEvidence};
use crate::ima::ReplayState;
use crate::policy::{Failure, PlatformPolicy};
use crate::tee::{appraise_tee, TeeClaims, TeeEvidence, TeePolicy};
use crate::tpm::AkPublic;

/// What a Verifier concluded about one piece of Evidence.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttestationResult {
    /// The Attester's kind: `tpm`, or the TEE (`sgx`, `tdx`, `sev-snp`, `sim`).
    pub attester: String,
    /// Every reason to refuse; empty when the Evidence is accepted.
    pub failures: Vec<Failure>,
    /// What the Verifier vouches for, by name (EK anchor, new IMA entries,
    /// measurements, TCB status...).
    pub claims: BTreeMap<String, String>,
}

impl AttestationResult {
    /// Whether the Evidence was accepted.
    pub fn accepted(&self) -> bool {
        self.failures.is_empty()
    }

    /// One line for the audit log: the verdict, the Attester, and the claims or reasons.
    pub fn describe(&self) -> String {
        if self.accepted() {
            let c: Vec<String> = self.claims.iter().map(|(k, v)| format!("{k}={v}")).collect();
            format!("accepted {} evidence: {}", self.attester, c.join("; "))
        } else {
            let f: Vec<String> = self.failures.iter().map(ToString::to_string).collect();
            format!("refused {} evidence: {}", self.attester, f.join("; "))
        }
    }
}

/// A Verifier of one kind of Evidence, holding the reference values (the job's policy)
/// and the endorsements it needs.
pub trait Verifier {
    /// The Evidence it appraises.
    type Evidence;
    /// What an accepted appraisal hands the Relying Party beside the result (the IMA
    /// replay state to continue from; a TEE's claims).
    type Accepted;

    /// Appraises `evidence`, which must bind `binding`.
    fn appraise(&self, evidence: &Self::Evidence, binding: &[u8]) -> (AttestationResult, Option<Self::Accepted>);
}

/// Verifies TPM Evidence (quote, IMA log, event log) against a platform policy.
pub struct TpmVerifier<'a> {
    /// The job's reference values.
    pub policy: &'a PlatformPolicy,
    /// The worker's EK and its certificate, from enrolment.
    pub endorsement: Endorsement<'a>,
    /// The worker's activated AK.
    pub ak: &'a AkPublic,
    /// The replay state of the job's last accepted round.
    pub state: &'a ReplayState,
}

impl Verifier for TpmVerifier<'_> {
    type Evidence = TpmEvidence;
    type Accepted = ReplayState;

    fn appraise(&self, evidence: &TpmEvidence, binding: &[u8]) -> (AttestationResult, Option<ReplayState>) {
        let a = appraise(evidence, self.endorsement, self.ak, binding, self.policy, self.state);
        let mut claims = BTreeMap::new();
        if a.accepted() {
            claims.insert("new_ima_entries".into(), a.new_entries.to_string());
            if let Some(ek) = &a.ek {
                let issuer = ek.path.first().cloned().unwrap_or_default();
                claims.insert("ek_certified_by".into(), format!("{issuer} ({}, root {})", ek.group, ek.anchor));
            }
        }
        let result = AttestationResult { attester: "tpm".into(), failures: a.failures, claims };
        (result, a.state)
    }
}

/// Verifies a TEE's report against a TEE policy, at a given time (for collateral).
pub struct TeeReportVerifier<'a> {
    /// The job's reference values.
    pub policy: &'a TeePolicy,
    /// Now, Unix seconds.
    pub now: u64,
}

impl Verifier for TeeReportVerifier<'_> {
    type Evidence = TeeEvidence;
    type Accepted = TeeClaims;

    fn appraise(&self, evidence: &TeeEvidence, binding: &[u8]) -> (AttestationResult, Option<TeeClaims>) {
        let attester = serde_json::to_value(evidence.kind)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_else(|| format!("{:?}", evidence.kind));
        match appraise_tee(evidence, binding, self.policy, self.now) {
            Ok(c) => {
                let mut claims: BTreeMap<String, String> = c.measurements.clone();
                claims.insert("tcb".into(), c.tcb_status.clone());
                let advisories = if c.advisories.is_empty() { "none".to_owned() } else { c.advisories.join(",") };
                claims.insert("advisories".into(), advisories);
                (AttestationResult { attester, failures: Vec::new(), claims }, Some(c))
            }
            Err(failures) => (AttestationResult { attester, failures, claims: BTreeMap::new() }, None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_describe_their_verdict() {
        let ok = AttestationResult {
            attester: "tpm".into(),
            failures: Vec::new(),
            claims: [("new_ima_entries".to_owned(), "3".to_owned())].into(),
        };
        assert!(ok.accepted());
        assert_eq!(ok.describe(), "accepted tpm evidence: new_ima_entries=3");
        let refused = AttestationResult {
            attester: "sim".into(),
            failures: vec![Failure { path: None, digest: None, why: "no".into() }],
            claims: BTreeMap::new(),
        };
        assert_eq!(refused.describe(), "refused sim evidence: no");
    }
}
