//! An asset owner's terms: what any job that uses the asset must keep to, beyond the
//! owner's approval of that job.
//!
//! The owner signs the terms' digest with [`TERMS_CONTEXT`] when it registers the asset;
//! the trust service checks every term when a job is proposed and again, with the
//! signature, whenever the asset's key is about to be released. The terms name the asset
//! and its content digest, so they cannot be moved to another asset.
//!
//! The privacy term asks for differential privacy by DP-SGD (Abadi et al., "Deep
//! Learning with Differential Privacy", CCS 2016): each job must declare an
//! (epsilon, delta) of at most the term's per job, and all jobs together may spend at
//! most `total_epsilon` (basic composition: the ledger adds each job's epsilon).

use std::collections::BTreeSet;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::manifest::{DpTarget, JobManifest, JobMode, JobPurpose};
use crate::{Digest, Name, Signature};

/// The signature context of an owner's terms.
pub const TERMS_CONTEXT: &str = "asset-terms/v1";

/// Slack when adding epsilons up (they are decimal fractions in floating point).
const EPSILON_SLACK: f64 = 1e-9;

/// A differential-privacy budget on a data set.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrivacyBudget {
    /// The most epsilon one job may spend on the asset.
    pub epsilon_per_job: f64,
    /// The largest delta a job may declare (the probability that the epsilon bound fails).
    pub delta: f64,
    /// The most epsilon all jobs together may spend on the asset.
    pub total_epsilon: f64,
}

/// The terms an owner attaches to its asset.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AssetTerms {
    /// The asset they cover.
    pub asset: Name,
    /// Its content digest (the terms cover this content only).
    pub content_digest: Digest,
    /// No key is released after this time (Unix seconds), and no job that would outlive
    /// it is accepted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<u64>,
    /// The most jobs whose keys may be released for the asset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_jobs: Option<u32>,
    /// The modes a job may run in; empty: any.
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub modes: BTreeSet<JobMode>,
    /// The receivers a job's outputs may go to; empty: any the owner approves.
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub receivers: BTreeSet<Name>,
    /// Whether the owner reviews each job's outputs before they reach the receivers.
    #[serde(default)]
    pub review: bool,
    /// Differential privacy that every job must train with (data sets only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub privacy: Option<PrivacyBudget>,
}

/// Terms with their owner's signature over [`AssetTerms::digest`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignedTerms {
    /// The terms.
    pub terms: AssetTerms,
    /// The owner's signature ([`TERMS_CONTEXT`]).
    pub signature: Signature,
}

/// What an asset was used for so far: the trust service's ledger.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Usage {
    /// Jobs whose keys were released.
    pub jobs: u32,
    /// Epsilon charged, summed over those jobs.
    pub epsilon_spent: f64,
}

/// A term a job would break.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TermViolation {
    /// The asset whose terms it breaks.
    pub asset: Name,
    /// The term, as the terms file spells it (`privacy.total_epsilon`...).
    pub term: &'static str,
    /// What the job asks against what the term allows.
    pub detail: String,
}

impl fmt::Display for TermViolation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "the terms of asset `{}` refuse this job: `{}`: {}", self.asset, self.term, self.detail)
    }
}

impl std::error::Error for TermViolation {}

fn in_range(x: f64, lo_exclusive: f64, hi: f64) -> bool {
    x.is_finite() && x > lo_exclusive && x <= hi
}

impl AssetTerms {
    /// The digest the owner signs: SHA-256 of the compact JSON form.
    pub fn digest(&self) -> Digest {
        // Plain structs and sorted sets always serialise.
        Digest::of(&serde_json::to_vec(self).unwrap_or_default())
    }

    /// Checks the terms' own rules; the error says which term is malformed.
    pub fn validate(&self) -> Result<(), TermViolation> {
        let bad = |term, detail: &str| Err(TermViolation { asset: self.asset.clone(), term, detail: detail.into() });
        if self.max_jobs == Some(0) {
            return bad("max_jobs", "must be at least 1 (an asset no job may use needs no registration)");
        }
        if self.receivers.len() > 64 {
            return bad("receivers", "at most 64");
        }
        if let Some(p) = &self.privacy {
            if !in_range(p.epsilon_per_job, 0.0, 100.0) {
                return bad("privacy.epsilon_per_job", "must be above 0 and at most 100");
            }
            if !in_range(p.delta, 0.0, 0.01) {
                return bad("privacy.delta", "must be above 0 and at most 0.01");
            }
            if !in_range(p.total_epsilon, 0.0, 1000.0) || p.total_epsilon < p.epsilon_per_job {
                return bad("privacy.total_epsilon", "must be at least epsilon_per_job and at most 1000");
            }
        }
        Ok(())
    }

    /// Checks `manifest` against every term, given the asset's `usage` so far and the
    /// time `now` (Unix seconds). The first term broken is named.
    pub fn check(&self, manifest: &JobManifest, usage: &Usage, now: u64) -> Result<(), TermViolation> {
        let bad = |term, detail: String| Err(TermViolation { asset: self.asset.clone(), term, detail });
        if let Some(t) = self.expires_at {
            if now >= t {
                return bad("expires_at", format!("the terms expired at {t}"));
            }
            if manifest.expires_at > t {
                return bad("expires_at", format!("the job stays valid until {}, past {t}", manifest.expires_at));
            }
        }
        if let Some(max) = self.max_jobs {
            if usage.jobs >= max {
                return bad("max_jobs", format!("{} of at most {max} jobs already used the asset", usage.jobs));
            }
        }
        if !self.modes.is_empty() && !self.modes.contains(&manifest.mode) {
            return bad("modes", format!("`{}` mode is not among those allowed", manifest.mode.as_str()));
        }
        if let Some(r) = manifest.receivers.iter().find(|r| !self.receivers.is_empty() && !self.receivers.contains(r)) {
            return bad("receivers", format!("`{r}` is not an allowed receiver"));
        }
        if let Some(p) = &self.privacy {
            let Some(DpTarget { epsilon, delta, .. }) = manifest.privacy else {
                return bad("privacy", "the job does not train with DP-SGD (the manifest sets no `privacy`)".into());
            };
            if manifest.purpose != JobPurpose::Train {
                return bad("privacy", "only training jobs may use the asset".into());
            }
            if epsilon > p.epsilon_per_job + EPSILON_SLACK {
                return bad(
                    "privacy.epsilon_per_job",
                    format!("the job asks epsilon {epsilon}, at most {}", p.epsilon_per_job),
                );
            }
            if delta > p.delta {
                return bad("privacy.delta", format!("the job asks delta {delta}, at most {}", p.delta));
            }
            let left = p.total_epsilon - usage.epsilon_spent;
            if epsilon > left + EPSILON_SLACK {
                return bad(
                    "privacy.total_epsilon",
                    format!(
                        "the job asks epsilon {epsilon}, but only {:.4} of {} is left ({:.4} spent)",
                        left.max(0.0),
                        p.total_epsilon,
                        usage.epsilon_spent
                    ),
                );
            }
        }
        Ok(())
    }

    /// The epsilon a job charges to this asset's ledger: its declared epsilon where the
    /// terms ask for privacy, else none.
    pub fn charge(&self, manifest: &JobManifest) -> f64 {
        match (&self.privacy, &manifest.privacy) {
            (Some(_), Some(t)) => t.epsilon,
            _ => 0.0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::tests::manifest;

    fn terms() -> AssetTerms {
        AssetTerms {
            asset: Name::new("bc-a").unwrap(),
            content_digest: Digest::of(b"bc-a"),
            expires_at: Some(1_800_000_000),
            max_jobs: Some(2),
            modes: BTreeSet::from([JobMode::Attested]),
            receivers: BTreeSet::from([Name::new("model-owner").unwrap()]),
            review: true,
            privacy: Some(PrivacyBudget { epsilon_per_job: 3.0, delta: 1e-5, total_epsilon: 5.0 }),
        }
    }

    fn dp_manifest(epsilon: f64) -> JobManifest {
        let mut m = manifest();
        m.privacy = Some(DpTarget { epsilon, delta: 1e-5, max_grad_norm: 1.0 });
        m
    }

    #[test]
    fn a_job_within_the_terms_passes_and_charges_its_epsilon() {
        let t = terms();
        t.validate().unwrap();
        let m = dp_manifest(3.0);
        t.check(&m, &Usage::default(), 1_700_000_000).unwrap();
        assert_eq!(t.charge(&m), 3.0);
    }

    #[test]
    fn each_term_is_named_when_broken() {
        let t = terms();
        let now = 1_700_000_000;
        let term = |m: &JobManifest, u: Usage, now| t.check(m, &u, now).unwrap_err().term;
        let fresh = Usage::default();
        assert_eq!(term(&dp_manifest(3.0), fresh, 1_800_000_000), "expires_at");
        assert_eq!(term(&dp_manifest(3.0), Usage { jobs: 2, epsilon_spent: 0.0 }, now), "max_jobs");
        assert_eq!(term(&dp_manifest(3.5), fresh, now), "privacy.epsilon_per_job");
        assert_eq!(term(&dp_manifest(3.0), Usage { jobs: 1, epsilon_spent: 3.0 }, now), "privacy.total_epsilon");
        assert_eq!(term(&manifest(), fresh, now), "privacy");
        let mut m = dp_manifest(1.0);
        m.mode = JobMode::Tee;
        assert_eq!(term(&m, fresh, now), "modes");
        let mut m = dp_manifest(1.0);
        m.receivers.push(Name::new("hospital-b").unwrap());
        assert_eq!(term(&m, fresh, now), "receivers");
        let mut m = dp_manifest(1.0);
        m.privacy = Some(DpTarget { epsilon: 1.0, delta: 1e-3, max_grad_norm: 1.0 });
        assert_eq!(term(&m, fresh, now), "privacy.delta");
        // Two epsilons that add up to the budget exactly fit, despite floating point.
        let m = dp_manifest(0.1 + 0.2);
        let t2 = AssetTerms {
            privacy: Some(PrivacyBudget { epsilon_per_job: 3.0, delta: 1e-5, total_epsilon: 0.6 }),
            ..t.clone()
        };
        t2.check(&m, &Usage { jobs: 1, epsilon_spent: 0.3 }, now).unwrap();
    }

    #[test]
    fn malformed_terms_are_refused_and_edits_change_the_digest() {
        let mut t = terms();
        t.privacy = Some(PrivacyBudget { epsilon_per_job: 3.0, delta: 1e-5, total_epsilon: 1.0 });
        assert_eq!(t.validate().unwrap_err().term, "privacy.total_epsilon");
        let mut t = terms();
        t.privacy = Some(PrivacyBudget { epsilon_per_job: f64::NAN, delta: 1e-5, total_epsilon: 5.0 });
        assert_eq!(t.validate().unwrap_err().term, "privacy.epsilon_per_job");
        let mut t = terms();
        t.max_jobs = Some(0);
        assert!(t.validate().is_err());
        let mut e = terms();
        e.review = false;
        assert_ne!(e.digest(), terms().digest());
        let json = serde_json::to_vec(&terms()).unwrap();
        let back: AssetTerms = serde_json::from_slice(&json).unwrap();
        assert_eq!(back.digest(), terms().digest());
        let mut v = serde_json::to_value(terms()).unwrap();
        v["smuggled"] = serde_json::json!(1);
        assert!(serde_json::from_value::<AssetTerms>(v).is_err());
    }
}
