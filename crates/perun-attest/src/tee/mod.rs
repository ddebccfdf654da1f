//! TEE evidence: one [`TeeEvidence`] format, a verifier per kind behind
//! [`TeeVerifier`] (each behind a feature: `dcap` for SGX and TDX quotes, `snp` for
//! SEV-SNP reports; `sim` always), and [`appraise_tee`], which checks the report data
//! binding, the measurements a [`TeePolicy`] allows and its lowest acceptable TCB.
//!
//! The `sim` TEE is software for development: its reports say `sim`, and a policy
//! accepts them only if it names the sim key that signed them; no default policy does.

#[cfg(feature = "dcap")]
pub mod dcap;
pub mod sim;
#[cfg(feature = "snp")]
pub mod snp;

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::policy::Failure;
use crate::AttestError;

pub use perun_proto::evidence::{TcbLevel, TeeClaims, TeeEvidence, TeeKind};

/// Verifies one kind of TEE evidence (signatures, certificate chains, collateral).
pub trait TeeVerifier {
    /// The kind it verifies.
    fn kind(&self) -> TeeKind;
    /// Verifies `evidence` at time `now` (Unix seconds) and returns what it claims.
    fn verify(&self, evidence: &TeeEvidence, now: u64) -> Result<TeeClaims, AttestError>;
}

/// One accepted measurement set: every named value must match.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AllowedTee {
    /// The TEE kind.
    pub kind: Option<TeeKind>,
    /// Measurement name to required hex value.
    pub measurements: BTreeMap<String, String>,
}

/// Reference values for `tee` mode.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TeePolicy {
    /// A human-readable name.
    pub name: String,
    /// Accepted measurement sets (any one suffices).
    pub allowed: Vec<AllowedTee>,
    /// The lowest acceptable TCB level.
    pub min_tcb: TcbLevel,
    /// Sim TEE keys (hex) this policy accepts; empty: sim evidence is refused.
    #[serde(default)]
    pub sim_keys: BTreeSet<String>,
    /// The lowest security version number of each named TCB component
    /// ([`TeeClaims::svns`]). SEV-SNP evidence carries no vendor TCB level (AMD's
    /// current TCB is not in the report), so a policy accepting it must name all of
    /// `bootloader`, `tee`, `snp` and `microcode` (AMD SEV-SNP ABI specification,
    /// `TCB_VERSION`); evidence below any floor is refused.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub min_svn: BTreeMap<String, u64>,
    /// Accept TEEs that let a debugger in. Off (the default), debug enclaves, TDs and
    /// guests are refused.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub allow_debug: bool,
}

/// The SEV-SNP TCB components a policy's [`TeePolicy::min_svn`] must name.
pub const SNP_TCB_COMPONENTS: [&str; 4] = ["bootloader", "tee", "snp", "microcode"];

impl TeePolicy {
    /// Parses and checks a TEE policy: at least one measurement set, each value hex digits
    /// (numbers such as `isv_prod_id` are written as the verifier reports them), and
    /// every sim key a 32-byte hex key.
    pub fn from_json(bytes: &[u8]) -> Result<Self, AttestError> {
        let p: Self = serde_json::from_slice(bytes).map_err(|e| AttestError::Policy(e.to_string()))?;
        if p.allowed.is_empty() {
            return Err(AttestError::Policy("a TEE policy must allow at least one measurement set".into()));
        }
        for a in &p.allowed {
            if a.measurements.is_empty() {
                return Err(AttestError::Policy("an allowed measurement set must name at least one value".into()));
            }
            let is_hex = |v: &str| !v.is_empty() && v.chars().all(|c| c.is_ascii_hexdigit());
            if let Some((k, v)) = a.measurements.iter().find(|(_, v)| !is_hex(v)) {
                return Err(AttestError::Policy(format!("measurement `{k}` = `{v}` is not a hex value")));
            }
        }
        if let Some(k) = p.sim_keys.iter().find(|k| hex::decode(k).map(|b| b.len()) != Ok(32)) {
            return Err(AttestError::Policy(format!("sim key `{k}` is not 32 bytes of hex")));
        }
        Ok(p)
    }
}

/// The measurements that name the code a TEE runs, by kind: an allowed set must pin one
/// of them, or anything the host loads into that TEE passes. SGX: the enclave's or its
/// signer's identity; TDX: the TD's initial contents (RTMRs extend it); SEV-SNP: the
/// launch measurement (`host_data` is chosen by the host and pins nothing).
pub fn code_identity(kind: Option<TeeKind>) -> &'static [&'static str] {
    match kind {
        Some(TeeKind::Sgx) => &["mr_enclave", "mr_signer"],
        Some(TeeKind::Tdx) => &["mr_td"],
        Some(TeeKind::SevSnp) => &["measurement"],
        Some(TeeKind::Sim) => &["measurement", "sim_key"],
        None => &["mr_enclave", "mr_signer", "mr_td", "measurement"],
    }
}

impl TeePolicy {
    /// Why this policy does not pin the code it admits, in words for approvers: each
    /// allowed set that names no code identity ([`code_identity`]), and SEV-SNP floors
    /// of 0 (any firmware). Empty for a policy that pins what runs.
    pub fn unpinned_code(&self) -> Vec<String> {
        let mut out = Vec::new();
        for (i, a) in self.allowed.iter().enumerate() {
            let names = code_identity(a.kind);
            if !names.iter().any(|n| a.measurements.contains_key(*n)) {
                let kind = a.kind.map_or_else(|| "any TEE".to_owned(), |k| format!("{k:?}"));
                out.push(format!(
                    "its measurement set {} ({kind}) pins no code identity (one of {}): any code the host loads \
                     into that TEE passes",
                    i + 1,
                    names.join(", ")
                ));
            }
        }
        let snp = self.allowed.iter().any(|a| a.kind.is_none_or(|k| k == TeeKind::SevSnp));
        let zero: Vec<&str> =
            SNP_TCB_COMPONENTS.iter().copied().filter(|c| self.min_svn.get(*c).is_none_or(|v| *v == 0)).collect();
        if snp && !zero.is_empty() {
            out.push(format!(
                "its SEV-SNP TCB floors for {} are 0: firmware with every published vulnerability passes",
                zero.join(", ")
            ));
        }
        out
    }
}

/// The verifier for `kind`, where this build has it.
pub fn verifier(kind: TeeKind) -> Result<Box<dyn TeeVerifier>, AttestError> {
    match kind {
        TeeKind::Sim => Ok(Box::new(sim::SimVerifier)),
        #[cfg(feature = "dcap")]
        TeeKind::Sgx | TeeKind::Tdx => Ok(Box::new(dcap::DcapVerifier { kind })),
        #[cfg(feature = "snp")]
        TeeKind::SevSnp => Ok(Box::new(snp::SnpVerifier)),
        #[allow(unreachable_patterns)]
        other => Err(AttestError::Check(format!("this build has no verifier for {other:?} evidence"))),
    }
}

/// `s`, at most `max` characters of it.
fn cut(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_owned()
    } else {
        format!("{}...", s.chars().take(max).collect::<String>())
    }
}

fn failure(why: String) -> Failure {
    Failure { path: None, digest: None, why }
}

/// Appraises TEE evidence: it verifies, its report data is `expected_report_data`
/// (zero-padded to 64 bytes), a measurement set of `policy` matches, and its TCB is at
/// least the policy's. Returns the claims, or every reason to refuse.
pub fn appraise_tee(
    evidence: &TeeEvidence,
    expected_report_data: &[u8],
    policy: &TeePolicy,
    now: u64,
) -> Result<TeeClaims, Vec<Failure>> {
    // Sim evidence is software anyone can make: where the policy names no sim key it is
    // refused before anything in it is read (or repeated in a failure).
    if evidence.kind == TeeKind::Sim && policy.sim_keys.is_empty() {
        return Err(vec![failure(
            "evidence from the sim TEE (software): this policy does not name that key (it names no sim key)".into(),
        )]);
    }
    let claims = verifier(evidence.kind)
        .and_then(|v| v.verify(evidence, now))
        .map_err(|e| vec![failure(format!("{:?} evidence does not verify: {e}", evidence.kind))])?;
    let mut failures = Vec::new();
    if claims.kind == TeeKind::Sim {
        let key = claims.measurements.get("sim_key").cloned().unwrap_or_default();
        if !policy.sim_keys.contains(&key) {
            failures.push(failure(format!(
                "evidence from the sim TEE (software, key {key}): this policy does not name that key"
            )));
        }
    }
    let mut expected = expected_report_data.to_vec();
    expected.resize(64, 0);
    if claims.report_data != hex::encode(&expected) {
        failures.push(failure("report data does not bind this nonce, job and key".into()));
    }
    let matches = |a: &AllowedTee| {
        a.kind.is_none_or(|k| k == claims.kind)
            && a.measurements.iter().all(|(k, v)| claims.measurements.get(k).is_some_and(|m| m.eq_ignore_ascii_case(v)))
    };
    if !policy.allowed.iter().any(matches) {
        // Values as the evidence states them, each cut to what a measurement can be (SHA-512
        // is 128 hex digits): a failure names what differs, not whatever a report carried.
        let shown: Vec<String> =
            claims.measurements.iter().take(16).map(|(k, v)| format!("{}={}", cut(k, 32), cut(v, 128))).collect();
        failures.push(failure(format!("measurements not in the policy: {}", shown.join(", "))));
    }
    if claims.debug && !policy.allow_debug {
        failures.push(failure(format!(
            "the {:?} TEE allows debugging (its memory is readable by the host): this policy does not allow debug TEEs",
            claims.kind
        )));
    }
    if claims.kind == TeeKind::SevSnp {
        let missing: Vec<&str> =
            SNP_TCB_COMPONENTS.iter().copied().filter(|c| !policy.min_svn.contains_key(*c)).collect();
        if !missing.is_empty() {
            failures.push(failure(format!(
                "SEV-SNP evidence states no vendor TCB level: the policy must set a floor (`min_svn`) for {}",
                missing.join(", ")
            )));
        }
    }
    for (component, floor) in &policy.min_svn {
        match claims.svns.get(component) {
            Some(v) if v >= floor => {}
            Some(v) => {
                failures.push(failure(format!("TCB component {component} is at {v}, below the policy's floor {floor}")))
            }
            None => failures.push(failure(format!(
                "the evidence states no TCB component {component}, which the policy's floor names"
            ))),
        }
    }
    if claims.tcb == TcbLevel::Revoked || claims.tcb > policy.min_tcb {
        failures.push(failure(format!(
            "TCB {} ({:?}; advisories {}) is below the policy's floor {:?}",
            claims.tcb_status,
            claims.tcb,
            if claims.advisories.is_empty() { "none".into() } else { claims.advisories.join(", ") },
            policy.min_tcb
        )));
    }
    if failures.is_empty() {
        Ok(claims)
    } else {
        Err(failures)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sim_policy(keys: BTreeSet<String>) -> TeePolicy {
        TeePolicy {
            name: "p".into(),
            allowed: vec![AllowedTee {
                kind: Some(TeeKind::Sim),
                measurements: [("measurement".to_owned(), "ab".repeat(32))].into(),
            }],
            min_tcb: TcbLevel::UpToDate,
            sim_keys: keys,
            min_svn: Default::default(),
            allow_debug: false,
        }
    }

    /// Issue 31, 5: a report is no vehicle for text. Sim evidence to a policy that names
    /// no sim key is refused before it is read; values a failure repeats are cut to what a
    /// measurement can be.
    #[test]
    fn failures_repeat_no_more_of_a_report_than_a_measurement() {
        let key = ed25519_dalek::SigningKey::from_bytes(&[7; 32]);
        let huge = vec![0x4d; 1_000_000];
        let ev = sim::make_evidence(&key, &huge, b"data").unwrap();
        let refused = appraise_tee(&ev, b"data", &sim_policy(BTreeSet::new()), 0).unwrap_err();
        assert_eq!(refused.len(), 1);
        assert!(refused[0].why.contains("names no sim key") && refused[0].why.len() < 200, "{}", refused[0].why);
        let named = sim_policy([hex::encode(key.verifying_key().as_bytes())].into());
        let refused = appraise_tee(&ev, b"data", &named, 0).unwrap_err();
        let text: usize = refused.iter().map(|f| f.why.len()).sum();
        assert!(text < 2048, "{text} bytes of failures for a 1 MB measurement");
    }
}
