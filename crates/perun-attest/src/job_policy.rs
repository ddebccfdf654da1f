//! The policy a job names: a [`PlatformPolicy`] for `attested` jobs (TPM quote and IMA
//! log) or a [`TeePolicy`] for `tee` jobs (a TEE's report).

use perun_core::{Digest, JobMode};
use serde::{Deserialize, Serialize};

use crate::policy::PlatformPolicy;
use crate::tee::TeePolicy;
use crate::AttestError;

/// A published policy of either kind. Its JSON is the inner policy's, unchanged, so a
/// platform policy has the same digest as before TEE policies existed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum JobPolicy {
    /// Reference values for `attested` mode.
    Platform(PlatformPolicy),
    /// Reference values for `tee` mode.
    Tee(TeePolicy),
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tee::{AllowedTee, TcbLevel, TeeKind};

    #[test]
    fn either_kind_parses_and_keeps_its_digest() {
        let platform = PlatformPolicy { schema: 1, name: "p".into(), ..Default::default() };
        let bytes = serde_json::to_vec(&platform).unwrap();
        let parsed = JobPolicy::from_json(&bytes).unwrap();
        assert_eq!(parsed.mode(), JobMode::Attested);
        assert_eq!(parsed.digest(), platform.digest());

        let tee = TeePolicy {
            name: "t".into(),
            allowed: vec![AllowedTee {
                kind: Some(TeeKind::Sgx),
                measurements: [("mr_enclave".to_owned(), "ab".repeat(32))].into(),
            }],
            min_tcb: TcbLevel::UpToDate,
            sim_keys: Default::default(),
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
}
