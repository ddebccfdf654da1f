//! Platform policies (reference values for `attested` mode) and verdicts.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::ima::Entry;
use crate::tpm::PcrBank;
use crate::AttestError;

/// The path of the entry the user-space measurer writes right after `boot_aggregate`,
/// so that its evidence says what it is.
pub const USER_SPACE_MARKER: &str = "perun:user-space-measurer";

/// The policy schema this build reads.
pub const POLICY_SCHEMA: u32 = 1;

/// Reference values a worker's evidence must meet.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlatformPolicy {
    /// Schema version ([`POLICY_SCHEMA`]).
    pub schema: u32,
    /// A human-readable name.
    pub name: String,
    /// Required SHA-256 values of boot PCRs (index to hex).
    #[serde(default)]
    pub required_pcrs: BTreeMap<u32, String>,
    /// File digests allowed at any path (`sha256:hex`).
    #[serde(default)]
    pub allowed_digests: BTreeSet<String>,
    /// Allowed digests per path.
    #[serde(default)]
    pub allowed_files: BTreeMap<String, BTreeSet<String>>,
    /// Path prefixes whose measurements are not checked.
    #[serde(default)]
    pub excludes: Vec<String>,
    /// The `perun` worker binary's digest (`sha256:hex`), which must be measured.
    #[serde(default)]
    pub worker_binary: Option<String>,
    /// Whether evidence from the user-space IMA measurer (no kernel IMA) is acceptable.
    /// Off by default: that evidence is for development only.
    #[serde(default)]
    pub accept_user_space_ima: bool,
}

/// One reason a verdict refuses.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failure {
    /// The measured path, where the failure concerns one.
    pub path: Option<String>,
    /// The measured digest, where the failure concerns one.
    pub digest: Option<String>,
    /// Why it fails.
    pub why: String,
}

impl Failure {
    fn new(why: impl Into<String>) -> Self {
        Self { path: None, digest: None, why: why.into() }
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (&self.path, &self.digest) {
            (Some(p), Some(d)) => write!(f, "{p} ({d}): {}", self.why),
            (Some(p), None) => write!(f, "{p}: {}", self.why),
            _ => f.write_str(&self.why),
        }
    }
}

impl PlatformPolicy {
    /// Parses and checks a policy.
    pub fn from_json(bytes: &[u8]) -> Result<Self, AttestError> {
        let p: Self = serde_json::from_slice(bytes).map_err(|e| AttestError::Policy(e.to_string()))?;
        if p.schema != POLICY_SCHEMA {
            return Err(AttestError::Policy(format!(
                "schema {} is not supported (expected {POLICY_SCHEMA})",
                p.schema
            )));
        }
        for (i, v) in &p.required_pcrs {
            if *i > 23 || v.len() != 64 || hex::decode(v).is_err() {
                return Err(AttestError::Policy(format!(
                    "required PCR {i}: expected an index 0..23 and 64 hex digits"
                )));
            }
        }
        Ok(p)
    }

    /// The policy's digest (SHA-256 of its canonical JSON), which manifests name.
    pub fn digest(&self) -> perun_core::Digest {
        perun_core::Digest::of(&serde_json::to_vec(self).unwrap_or_default())
    }

    /// Checks boot PCR values (already proven by a quote).
    pub fn check_pcrs(&self, pcrs: &PcrBank) -> Vec<Failure> {
        let mut out = Vec::new();
        for (i, want) in &self.required_pcrs {
            match pcrs.values.get(i) {
                None => out.push(Failure::new(format!("PCR {i} is required but was not quoted"))),
                Some(v) if hex::encode(v) != *want => {
                    out.push(Failure::new(format!("PCR {i} is {} but the policy requires {want}", hex::encode(v))))
                }
                Some(_) => {}
            }
        }
        out
    }

    /// Checks measured entries (already proven by replay). `first_round` is true when
    /// the entries start at the beginning of the log, where the worker binary must be.
    pub fn check_entries(&self, entries: &[Entry], first_round: bool) -> Vec<Failure> {
        let mut out = Vec::new();
        let mut saw_worker = false;
        for e in entries {
            let digest = e.file_digest.to_text();
            let digest = digest.as_str();
            if e.violation {
                out.push(Failure {
                    path: Some(e.path.clone()),
                    digest: None,
                    why: "IMA violation: measured while open for writing".into(),
                });
                continue;
            }
            if e.path == USER_SPACE_MARKER {
                if !self.accept_user_space_ima {
                    out.push(Failure::new(
                        "evidence comes from the user-space IMA measurer (no kernel IMA); this policy does not accept it",
                    ));
                }
                continue;
            }
            if self.worker_binary.as_deref() == Some(digest) {
                saw_worker = true;
            }
            if e.path == "boot_aggregate" || self.excludes.iter().any(|x| e.path.starts_with(x.as_str())) {
                continue;
            }
            let allowed = self.allowed_digests.contains(digest)
                || self.allowed_files.get(&e.path).is_some_and(|set| set.contains(digest));
            if !allowed {
                let why = if self.allowed_files.contains_key(&e.path) {
                    "digest not allowed for this path"
                } else {
                    "file not in the policy"
                };
                out.push(Failure { path: Some(e.path.clone()), digest: Some(digest.to_owned()), why: why.into() });
            }
        }
        if first_round && !saw_worker {
            if let Some(w) = &self.worker_binary {
                out.push(Failure {
                    path: None,
                    digest: Some(w.clone()),
                    why: "the approved worker binary was not measured".into(),
                });
            }
        }
        out
    }

    /// A policy that allows every regular file under `root`, by path as the measured
    /// system would see it (`root` becomes `/`).
    pub fn from_tree(name: &str, root: &Path) -> Result<Self, AttestError> {
        let mut files = BTreeMap::new();
        let mut stack = vec![root.to_path_buf()];
        while let Some(dir) = stack.pop() {
            let rd = std::fs::read_dir(&dir).map_err(|e| AttestError::Policy(format!("{}: {e}", dir.display())))?;
            for entry in rd {
                let entry = entry.map_err(|e| AttestError::Policy(e.to_string()))?;
                let ty = entry.file_type().map_err(|e| AttestError::Policy(e.to_string()))?;
                let p = entry.path();
                if ty.is_dir() {
                    stack.push(p);
                } else if ty.is_file() {
                    let bytes = std::fs::read(&p).map_err(|e| AttestError::Policy(format!("{}: {e}", p.display())))?;
                    let rel = p.strip_prefix(root).map_err(|e| AttestError::Policy(e.to_string()))?;
                    let digest = format!("sha256:{}", hex::encode(Sha256::digest(&bytes)));
                    files.insert(format!("/{}", rel.display()), BTreeSet::from([digest]));
                }
            }
        }
        Ok(Self { schema: POLICY_SCHEMA, name: name.into(), allowed_files: files, ..Self::default() })
    }

    /// A policy that allows exactly what an observed log measured.
    pub fn from_log(name: &str, entries: &[Entry]) -> Self {
        let mut files: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        let mut user_space = false;
        for e in entries.iter().filter(|e| !e.violation && e.path != "boot_aggregate") {
            if e.path == USER_SPACE_MARKER {
                user_space = true;
                continue;
            }
            files.entry(e.path.clone()).or_default().insert(e.file_digest.to_text());
        }
        Self {
            schema: POLICY_SCHEMA,
            name: name.into(),
            allowed_files: files,
            accept_user_space_ima: user_space,
            ..Self::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdicts_name_every_failing_entry() {
        let ok = Entry::ima_ng("/usr/bin/perun", "sha256", &[1; 32]);
        let policy = PlatformPolicy::from_log("p", std::slice::from_ref(&ok));
        assert!(policy.check_entries(std::slice::from_ref(&ok), true).is_empty());
        let stranger = Entry::ima_ng("/tmp/exfiltrate", "sha256", &[2; 32]);
        let swapped = Entry::ima_ng("/usr/bin/perun", "sha256", &[3; 32]);
        let f = policy.check_entries(&[ok, stranger, swapped], true);
        assert_eq!(f.len(), 2);
        assert_eq!(f[0].path.as_deref(), Some("/tmp/exfiltrate"));
        assert_eq!(f[0].why, "file not in the policy");
        assert_eq!(f[1].why, "digest not allowed for this path");
    }

    #[test]
    fn a_policy_from_a_tree_lists_every_file_by_its_path() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("usr/bin")).unwrap();
        std::fs::write(dir.path().join("usr/bin/perun"), b"worker").unwrap();
        std::fs::write(dir.path().join("init"), b"init").unwrap();
        let p = PlatformPolicy::from_tree("vm", dir.path()).unwrap();
        assert_eq!(p.allowed_files.keys().collect::<Vec<_>>(), ["/init", "/usr/bin/perun"]);
        let worker = Entry::ima_ng("/usr/bin/perun", "sha256", &Sha256::digest(b"worker"));
        let other = Entry::ima_ng("/usr/bin/perun", "sha256", &Sha256::digest(b"patched"));
        assert!(p.check_entries(&[worker], false).is_empty());
        assert_eq!(p.check_entries(&[other], false).len(), 1);
        let back = PlatformPolicy::from_json(&serde_json::to_vec(&p).unwrap()).unwrap();
        assert_eq!(back.digest(), p.digest());
    }

    #[test]
    fn user_space_evidence_needs_opt_in() {
        let marker = Entry::ima_ng(USER_SPACE_MARKER, "sha256", &[0; 32]);
        let mut p = PlatformPolicy { schema: 1, ..Default::default() };
        assert_eq!(p.check_entries(std::slice::from_ref(&marker), false).len(), 1);
        p.accept_user_space_ima = true;
        assert!(p.check_entries(&[marker], false).is_empty());
    }

    #[test]
    fn worker_binary_and_pcrs_are_required() {
        let p = PlatformPolicy {
            schema: 1,
            worker_binary: Some(format!("sha256:{}", hex::encode([5u8; 32]))),
            required_pcrs: BTreeMap::from([(0, hex::encode([0u8; 32]))]),
            allowed_digests: BTreeSet::from([format!("sha256:{}", hex::encode([5u8; 32]))]),
            ..Default::default()
        };
        assert_eq!(p.check_entries(&[], true).len(), 1);
        assert!(p.check_entries(&[Entry::ima_ng("/w", "sha256", &[5; 32])], true).is_empty());
        let bank = PcrBank { hash_alg: crate::tpm::alg::SHA256, values: BTreeMap::from([(0, vec![1u8; 32])]) };
        assert_eq!(p.check_pcrs(&bank).len(), 1);
        assert!(PlatformPolicy::from_json(br#"{"schema":1,"name":"x","smuggled":1}"#).is_err());
    }
}
