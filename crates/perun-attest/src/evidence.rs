//! A worker's TPM evidence and its appraisal against a platform policy.

use serde::{Deserialize, Serialize};

use crate::ima::{replay_to_quote, ReplayState, IMA_PCR};
use crate::policy::{Failure, PlatformPolicy, USER_SPACE_MARKER};
use crate::tpm::{verify_quote, AkPublic, PcrBank};

/// Where the IMA log came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ImaSource {
    /// The kernel (`/sys/kernel/security/ima/binary_runtime_measurements`).
    Kernel,
    /// Perun's user-space measurer, for machines without kernel IMA (development).
    UserSpace,
}

/// What a worker sends to prove its state. Binary fields are hex in JSON.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TpmEvidence {
    /// `TPMS_ATTEST` of the quote.
    #[serde(with = "hex::serde")]
    pub quote: Vec<u8>,
    /// `TPMT_SIGNATURE` over it.
    #[serde(with = "hex::serde")]
    pub signature: Vec<u8>,
    /// The quoted PCR values (SHA-256 bank).
    pub pcrs: PcrBank,
    /// The binary IMA log (the whole log; the verifier reads past its saved offset).
    #[serde(with = "hex::serde")]
    pub ima_log: Vec<u8>,
    /// Where the log came from.
    pub ima_source: ImaSource,
}

/// The outcome of an appraisal.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Appraisal {
    /// Every reason to refuse; empty when accepted.
    pub failures: Vec<Failure>,
    /// The replay state to save for the next round (only when accepted).
    pub state: Option<ReplayState>,
    /// Entries newly verified this round.
    pub new_entries: usize,
}

impl Appraisal {
    /// Whether the evidence was accepted.
    pub fn accepted(&self) -> bool {
        self.failures.is_empty()
    }

    fn refuse(why: String) -> Self {
        Self { failures: vec![Failure { path: None, digest: None, why }], state: None, new_entries: 0 }
    }
}

/// Appraises `evidence` from the worker whose activated AK is `ak`: the quote must be
/// signed by it over `qualifying_data` and PCR 10, the IMA log must replay from `state`
/// to the quoted PCR 10, and the PCRs and new entries must satisfy `policy`.
pub fn appraise(
    evidence: &TpmEvidence,
    ak: &AkPublic,
    qualifying_data: &[u8],
    policy: &PlatformPolicy,
    state: &ReplayState,
) -> Appraisal {
    if let Err(e) = ak.check_attestation_key() {
        return Appraisal::refuse(e.to_string());
    }
    if let Err(e) = verify_quote(ak, &evidence.quote, &evidence.signature, qualifying_data, &evidence.pcrs) {
        return Appraisal::refuse(e.to_string());
    }
    let Some(pcr10) = evidence.pcrs.values.get(&IMA_PCR) else {
        return Appraisal::refuse("the quote does not cover PCR 10".into());
    };
    let (next, entries) = match replay_to_quote(state, &evidence.ima_log, pcr10) {
        Ok(r) => r,
        Err(e) => return Appraisal::refuse(e.to_string()),
    };
    let mut failures = policy.check_pcrs(&evidence.pcrs);
    if evidence.ima_source == ImaSource::UserSpace && !policy.accept_user_space_ima && state.entries == 0 {
        let marked = entries.iter().any(|e| e.path == USER_SPACE_MARKER);
        if !marked {
            failures.push(Failure {
                path: None,
                digest: None,
                why: "evidence comes from the user-space IMA measurer; this policy does not accept it".into(),
            });
        }
    }
    failures.extend(policy.check_entries(&entries, state.entries == 0));
    let accepted = failures.is_empty();
    Appraisal { failures, state: accepted.then_some(next), new_entries: entries.len() }
}
