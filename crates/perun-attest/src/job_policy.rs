//! The policy a job names: a [`PlatformPolicy`] for `attested` jobs (TPM quote and IMA
//! log) or a [`TeePolicy`] for `tee` jobs (a TEE's report).

use perun_core::{Digest, JobMode};
use perun_proto::PolicyDocument;
use serde::{Deserialize, Serialize};

use crate::policy::PlatformPolicy;
use crate::tee::TeePolicy;
use crate::AttestError;

/// A published policy of either kind. Its JSON is the inner policy's, unchanged, so a
/// platform policy has the same digest as before TEE policies existed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum JobPolicy {
    /// Reference values for `attested` mode.
    Platform(PlatformPolicy),
    /// Reference values for `tee` mode.
    Tee(TeePolicy),
}

/// Read as [`JobPolicy::from_json`] tells the kinds apart (a TEE policy has `min_tcb`),
/// through `serde_json::Value` rather than serde's untagged buffering, which cannot read
/// the integer map keys (`required_pcrs`, `boot_events`) that JSON writes as strings.
impl<'de> Deserialize<'de> for JobPolicy {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error as _;
        let v = serde_json::Value::deserialize(d)?;
        if v.get("min_tcb").is_some() {
            serde_json::from_value(v).map(Self::Tee).map_err(D::Error::custom)
        } else {
            serde_json::from_value(v).map(Self::Platform).map_err(D::Error::custom)
        }
    }
}

/// The document the service shows: this policy's JSON, unchanged.
impl From<&JobPolicy> for PolicyDocument {
    fn from(policy: &JobPolicy) -> Self {
        // A policy is structs, strings and maps with string or integer keys, which
        // serialize without fail (as in `digest`).
        PolicyDocument(serde_json::to_value(policy).unwrap_or_default())
    }
}

/// Reads a document the service showed (it checked the policy when it was published).
///
/// Errors: [`AttestError::Policy`] for a document that is no policy of either kind.
impl TryFrom<&PolicyDocument> for JobPolicy {
    type Error = AttestError;

    fn try_from(doc: &PolicyDocument) -> Result<Self, AttestError> {
        serde_json::from_value(doc.0.clone()).map_err(|e| AttestError::Policy(e.to_string()))
    }
}

impl JobPolicy {
    /// Parses and checks a policy file of either kind (a TEE policy has `min_tcb`).
    pub fn from_json(bytes: &[u8]) -> Result<Self, AttestError> {
        let v: serde_json::Value =
            serde_json::from_slice(bytes).map_err(|e| AttestError::Policy(format!("not JSON: {e}")))?;
        if v.get("min_tcb").is_some() {
            TeePolicy::from_json(bytes).map(Self::Tee)
        } else {
            PlatformPolicy::from_json(bytes).map(Self::Platform)
        }
    }

    /// Its name.
    pub fn name(&self) -> &str {
        match self {
            Self::Platform(p) => &p.name,
            Self::Tee(p) => &p.name,
        }
    }

    /// The mode of the jobs it can govern.
    pub fn mode(&self) -> JobMode {
        match self {
            Self::Platform(_) => JobMode::Attested,
            Self::Tee(_) => JobMode::Tee,
        }
    }

    /// The digest a manifest names it by (SHA-256 of its compact JSON).
    pub fn digest(&self) -> Digest {
        Digest::of(&serde_json::to_vec(self).unwrap_or_default())
    }

    /// What in this policy accepts development evidence, in words no approver can miss:
    /// the `sim` TEE, the user-space IMA measurer, an EK CA outside the shipped bundle
    /// (a local development CA). Empty for a production policy.
    pub fn development(&self) -> Vec<String> {
        match self {
            Self::Platform(p) => p.development(),
            Self::Tee(p) => {
                let sim = !p.sim_keys.is_empty() || p.allowed.iter().any(|a| a.kind == Some(crate::tee::TeeKind::Sim));
                let mut out = Vec::new();
                if sim {
                    out.push(
                        "it accepts the `sim` TEE: software that anyone holding its key can run, with no hardware \
                         protecting the assets"
                            .to_owned(),
                    );
                }
                if p.allow_debug {
                    out.push(
                        "it accepts debug TEEs: their memory, and the assets in it, are the host's to read".to_owned(),
                    );
                }
                out.extend(p.unpinned_code());
                out
            }
        }
    }

    /// The policy rendered for approvers (docs/architecture.md, section 2, rule 1: owners sign after
    /// seeing the manifest and its policy in full): `(what, value)` lines.
    pub fn summary(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        let mut line = |k: &str, v: String| out.push((k.to_owned(), v));
        match self {
            Self::Platform(p) => {
                line("kind", "platform policy (attested mode: TPM 2.0 quote, measured boot, IMA)".into());
                match p.ek.anchors() {
                    Ok(anchors) if anchors.is_empty() => line("EK roots", "none: no TPM is accepted".into()),
                    Ok(anchors) => {
                        let mut groups = std::collections::BTreeMap::<String, usize>::new();
                        for a in &anchors {
                            *groups.entry(a.group.clone()).or_default() += 1;
                        }
                        let g: Vec<String> = groups.iter().map(|(k, n)| format!("{n} {k}")).collect();
                        line("EK roots", g.join(", "));
                        for a in anchors.iter().filter(|a| a.group != "hardware") {
                            line("  EK root", format!("{} [{}] {}", a.subject, a.group, a.fingerprint));
                        }
                    }
                    Err(e) => line("EK roots", format!("invalid: {e}")),
                }
                let pinned: Vec<String> = crate::policy::BOOT_PCRS
                    .map(|i| match p.required_pcrs.get(&i) {
                        Some(v) => format!("{i}={}", v.get(..12).unwrap_or(v)),
                        None => format!("{i}=UNPINNED"),
                    })
                    .collect();
                line("boot PCRs", pinned.join(" "));
                if p.boot_events.is_empty() {
                    line("boot events", "none: PCR values only (no event log says what booted)".into());
                } else {
                    let n: usize = p.boot_events.values().map(Vec::len).sum();
                    let pcrs: Vec<_> = p.boot_events.keys().collect();
                    line("boot events", format!("{n} reference events over PCRs {pcrs:?}"));
                }
                let cmdline = match &p.kernel_cmdline {
                    Some(c) => format!("{c} (proven by its measurement)"),
                    None => "not pinned".into(),
                };
                line("kernel cmdline", cmdline);
                line(
                    "IMA policy",
                    match &p.ima_policy {
                        Some(pin) => format!("{} {} (its load must be in every worker's log)", pin.path, pin.digest),
                        None => "not pinned: the kernel's built-in policy (does not measure tmpfs)".into(),
                    },
                );
                for x in &p.excludes {
                    line("  IMA exclude", if x.is_empty() { "(empty: every path)".into() } else { x.clone() });
                }
                line(
                    "IMA allowlist",
                    format!(
                        "{} paths, {} digests allowed anywhere, {} excluded prefixes",
                        p.allowed_files.len(),
                        p.allowed_digests.len(),
                        p.excludes.len()
                    ),
                );
                line(
                    "worker binary",
                    p.worker_binary.clone().unwrap_or_else(|| "NONE (every attestation is refused)".into()),
                );
                line(
                    "IMA source",
                    if p.accept_user_space_ima { "kernel or user-space measurer" } else { "kernel only" }.into(),
                );
            }
            Self::Tee(p) => {
                line("kind", "TEE policy (tee mode: a TEE's signed report)".into());
                for a in &p.allowed {
                    let kind = a.kind.map(|k| format!("{k:?}")).unwrap_or_else(|| "any TEE".into());
                    let m: Vec<String> = a.measurements.iter().map(|(k, v)| format!("{k}={v}")).collect();
                    line("allowed", format!("{kind}: {}", m.join(" ")));
                }
                line("minimum TCB", format!("{:?}", p.min_tcb));
                for (component, floor) in &p.min_svn {
                    line("minimum SVN", format!("{component} {floor}"));
                }
                line("debug TEEs", if p.allow_debug { "accepted".into() } else { "refused".into() });
                for k in &p.sim_keys {
                    line("sim TEE key", k.clone());
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tee::{AllowedTee, TcbLevel, TeeKind};

    #[test]
    fn either_kind_parses_and_keeps_its_digest() {
        let platform = PlatformPolicy { schema: crate::policy::POLICY_SCHEMA, name: "p".into(), ..Default::default() };
        let bytes = serde_json::to_vec(&platform).unwrap();
        let parsed = JobPolicy::from_json(&bytes).unwrap();
        assert_eq!(parsed.mode(), JobMode::Attested);
        assert_eq!(parsed.digest(), platform.digest());

        // A platform policy with pinned PCRs and boot events reads back (integer map keys).
        let mut pinned = platform.clone();
        pinned.required_pcrs.insert(3, "ab".repeat(32));
        let back: JobPolicy =
            serde_json::from_slice(&serde_json::to_vec(&JobPolicy::Platform(pinned.clone())).unwrap()).unwrap();
        assert_eq!(back, JobPolicy::Platform(pinned));

        let tee = TeePolicy {
            name: "t".into(),
            allowed: vec![AllowedTee {
                kind: Some(TeeKind::Sgx),
                measurements: [("mr_enclave".to_owned(), "ab".repeat(32))].into(),
            }],
            min_tcb: TcbLevel::UpToDate,
            sim_keys: Default::default(),
            min_svn: Default::default(),
            allow_debug: false,
        };
        let parsed = JobPolicy::from_json(&serde_json::to_vec(&tee).unwrap()).unwrap();
        assert_eq!(parsed, JobPolicy::Tee(tee.clone()));
        assert_eq!(parsed.mode(), JobMode::Tee);
        // Stored records round-trip through the untagged form.
        let back: JobPolicy = serde_json::from_slice(&serde_json::to_vec(&parsed).unwrap()).unwrap();
        assert_eq!(back, parsed);

        assert!(JobPolicy::from_json(b"[1]").is_err());
        let mut bad = serde_json::to_value(&tee).unwrap();
        bad["allowed"] = serde_json::json!([]);
        assert!(JobPolicy::from_json(bad.to_string().as_bytes()).is_err());
    }

    /// Issue 31, 7: an SNP policy whose only measurement is `host_data` (the host's choice)
    /// with floors of 0 pins no code: approvers are told, and refuse it by default.
    #[test]
    fn a_tee_policy_that_pins_no_code_is_flagged_for_approvers() {
        let snp = |m: &str, floor: u64| {
            JobPolicy::Tee(TeePolicy {
                name: "snp".into(),
                allowed: vec![AllowedTee {
                    kind: Some(TeeKind::SevSnp),
                    measurements: [(m.to_owned(), "ab".repeat(32))].into(),
                }],
                min_tcb: TcbLevel::UpToDate,
                sim_keys: Default::default(),
                min_svn: crate::tee::SNP_TCB_COMPONENTS.iter().map(|c| ((*c).to_owned(), floor)).collect(),
                allow_debug: false,
            })
        };
        let weak = snp("host_data", 0).development();
        assert_eq!(weak.len(), 2, "{weak:?}");
        assert!(weak[0].contains("pins no code identity") && weak[1].contains("floors"), "{weak:?}");
        assert!(snp("measurement", 3).development().is_empty());
        assert_eq!(snp("measurement", 0).development().len(), 1);
        let sgx = JobPolicy::Tee(TeePolicy {
            name: "sgx".into(),
            allowed: vec![AllowedTee {
                kind: Some(TeeKind::Sgx),
                measurements: [("isv_prod_id".to_owned(), "01".into())].into(),
            }],
            min_tcb: TcbLevel::UpToDate,
            sim_keys: Default::default(),
            min_svn: Default::default(),
            allow_debug: false,
        });
        assert!(sgx.development().iter().any(|w| w.contains("mr_enclave, mr_signer")));
    }
}
