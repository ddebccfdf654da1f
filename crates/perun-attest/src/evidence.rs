//! A worker's TPM evidence and its appraisal against a platform policy.

use serde::{Deserialize, Serialize};

use crate::ek::{verify_ek, EkVerdict};
use crate::ima::{replay_to_quote, ReplayState, TpmBoot, IMA_PCR};
use crate::policy::{Failure, PlatformPolicy, BOOT_PCRS, USER_SPACE_MARKER};
use crate::tpm::{verify_quote, AkPublic};

pub use perun_proto::evidence::{ImaSource, TpmEvidence};

/// What the verifier knows of a worker's TPM from its enrolment (the Endorsement, in
/// RATS terms): its EK and the manufacturer's certificate of it.
#[derive(Clone, Copy, Debug)]
pub struct Endorsement<'a> {
    /// The EK's public area.
    pub ek: &'a AkPublic,
    /// The EK certificate (DER, as read from the TPM's NV index).
    pub certificate: &'a [u8],
    /// Intermediate CA certificates sent with it (DER), never trust anchors.
    pub chain: &'a [Vec<u8>],
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
    /// What the EK certificate chained to (first round of a job only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ek: Option<EkVerdict>,
}

impl Appraisal {
    /// Whether the evidence was accepted.
    pub fn accepted(&self) -> bool {
        self.failures.is_empty()
    }

    fn refuse(why: String) -> Self {
        Self { failures: vec![Failure { path: None, digest: None, why }], state: None, new_entries: 0, ek: None }
    }
}

/// Appraises `evidence` from the worker whose activated AK is `ak` and whose TPM is
/// `endorsement`: the quote must be signed by the AK over `qualifying_data`, PCRs 0-10;
/// the IMA log must replay from `state` to the quoted PCR 10; the boot PCRs must be the
/// policy's and the new entries allowed by it. On a job's first round (`state` empty)
/// also: the EK certificate chains to a root the policy lists, IMA's `boot_aggregate`
/// is over the quoted PCRs 0-9, the worker binary was measured, and an event log sent
/// replays to the quoted PCRs 0-9 (any departure from the policy's reference boot
/// events is named).
pub fn appraise(
    evidence: &TpmEvidence,
    endorsement: Endorsement<'_>,
    ak: &AkPublic,
    qualifying_data: &[u8],
    policy: &PlatformPolicy,
    state: &ReplayState,
) -> Appraisal {
    if let Err(e) = ak.check_attestation_key() {
        return Appraisal::refuse(e.to_string());
    }
    let quote = match verify_quote(ak, &evidence.quote, &evidence.signature, qualifying_data, &evidence.pcrs) {
        Ok(q) => q.quote,
        Err(e) => return Appraisal::refuse(e.to_string()),
    };
    let boot = TpmBoot { reset_count: quote.reset_count, restart_count: quote.restart_count };
    if let Some(why) = rebooted(state, boot) {
        return Appraisal::refuse(why);
    }
    let ak_name = hex::encode(&ak.name);
    if let Some(before) = state.ak.as_deref().filter(|_| state.entries > 0) {
        if before != ak_name {
            return Appraisal::refuse(format!(
                "the quote is signed by attestation key {ak_name}, not by {before}, whose quotes proved the saved \
                 state: evidence from another TPM or key cannot continue it"
            ));
        }
    }
    let Some(pcr10) = evidence.pcrs.values.get(&IMA_PCR) else {
        return Appraisal::refuse("the quote does not cover PCR 10".into());
    };
    let (mut next, entries) = match replay_to_quote(state, &evidence.ima_log, pcr10) {
        Ok(r) => r,
        Err(e) => return Appraisal::refuse(e.to_string()),
    };
    next.boot = Some(boot);
    next.ak = Some(ak_name);
    let first_round = state.entries == 0;
    let mut failures = policy.check_pcrs(&evidence.pcrs);
    let mut ek = None;
    if first_round {
        match verify_ek(endorsement.certificate, endorsement.chain, &endorsement.ek.key, &policy.ek) {
            Ok(v) => ek = Some(v),
            Err(e) => failures.push(Failure { path: None, digest: None, why: format!("EK certificate: {e}") }),
        }
        failures.extend(PlatformPolicy::check_boot_aggregate(&entries, &evidence.pcrs));
        failures.extend(check_event_log(evidence, policy));
    }
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
    failures.extend(policy.check_entries(&entries, first_round));
    let accepted = failures.is_empty();
    Appraisal { failures, state: accepted.then_some(next), new_entries: entries.len(), ek }
}

/// Why evidence quoted in `boot` cannot continue `state`: the TPM was reset since the
/// state's round (its `resetCount` changed), so the machine rebooted, its log started over
/// and its memory was lost. A changed `restartCount` alone (a resume from suspend or
/// hibernation) is not a reboot: the replay decides whether the log carries on. `None`
/// when it is the same boot, or the state has no round (or predates the record).
pub fn rebooted(state: &ReplayState, boot: TpmBoot) -> Option<String> {
    let before = state.boot.filter(|_| state.entries > 0)?;
    (before.reset_count != boot.reset_count).then(|| {
        format!(
            "the worker rebooted since its last accepted round (TPM {before} then, {boot} now): its IMA log \
             started over and what it held in memory is gone"
        )
    })
}

/// The measured-boot event log against the quote and the policy's reference events.
fn check_event_log(evidence: &TpmEvidence, policy: &PlatformPolicy) -> Vec<Failure> {
    let fail = |why: String| vec![Failure { path: None, digest: None, why }];
    if evidence.event_log.is_empty() {
        if policy.boot_events.is_empty() {
            return Vec::new();
        }
        return fail("the policy pins measured-boot events but the worker sent no event log".into());
    }
    let log = match crate::bootlog::parse(&evidence.event_log) {
        Ok(l) => l,
        Err(e) => return fail(format!("event log: {e}")),
    };
    for i in BOOT_PCRS {
        let quoted = evidence.pcrs.values.get(&i).map(|v| v.as_slice());
        if quoted != Some(log.pcr(i).as_slice()) {
            return fail(format!(
                "the event log does not replay to the quoted PCR {i}: either it is another boot's log, or this \
                 firmware extended PCR {i} without logging the extend (some firmware does); either way the log \
                 cannot stand for what the quote says, so its events are not checked"
            ));
        }
    }
    crate::bootlog::differences(&log, &policy.boot_events)
        .into_iter()
        .map(|why| Failure { path: None, digest: None, why: format!("measured boot: {why}") })
        .collect()
}
