//! The job manifest: what every asset owner signs before any key is released.
//!
//! Its canonical form is the compact JSON serialisation of [`JobManifest`] (fields in
//! declaration order, maps sorted by key); its SHA-256 is the job digest that owners sign
//! with [`APPROVAL_CONTEXT`]. Parsing refuses unknown fields, so nothing a signer did not
//! see can ride along.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::{AssetKind, CoreError, Digest, Name};

/// The signature context of an owner's approval of a manifest digest.
pub const APPROVAL_CONTEXT: &str = "job-approval/v1";

/// The manifest schema this build writes and accepts. Schema 2 names the
/// infrastructure provider (and optionally the workers) that may run the job.
pub const MANIFEST_SCHEMA: u32 = 2;

/// The longest attestation interval a manifest may set (seconds): continuous
/// attestation must happen while a job runs.
pub const MAX_ATTESTATION_INTERVAL_S: u64 = 3600;

/// The longest a job may stay valid (seconds from creation to expiry): 400 days.
pub const MAX_JOB_LIFETIME_S: u64 = 400 * 24 * 3600;

/// The most workers a manifest may name.
pub const MAX_WORKERS: usize = 256;

/// Where a job runs and what proves it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JobMode {
    /// A TPM quote plus the IMA log (GPU training; larger trusted base).
    Attested,
    /// A hardware TEE report (inference and small jobs; smaller trusted base).
    Tee,
}

impl JobMode {
    /// The mode as manifests spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Attested => "attested",
            Self::Tee => "tee",
        }
    }
}

/// The differential privacy a training job declares: the engine trains with DP-SGD
/// (per-sample gradients clipped to `max_grad_norm`, Gaussian noise, Poisson-sampled
/// batches) and derives the noise multiplier so that the whole job is
/// (`epsilon`, `delta`)-DP for each record (Abadi et al., CCS 2016; accounted in Rényi DP).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DpTarget {
    /// The privacy loss bound for the whole job.
    pub epsilon: f64,
    /// The probability that the bound fails.
    pub delta: f64,
    /// The L2 norm each sample's gradient is clipped to.
    pub max_grad_norm: f64,
}

impl DpTarget {
    /// Checks the ranges: epsilon in (0, 100], delta in (0, 0.01], `max_grad_norm` in
    /// (0, 1000], all finite; the error says so.
    pub fn check(&self) -> Result<(), String> {
        let ok = |x: f64, hi: f64| x.is_finite() && x > 0.0 && x <= hi;
        if ok(self.epsilon, 100.0) && ok(self.delta, 0.01) && ok(self.max_grad_norm, 1000.0) {
            return Ok(());
        }
        Err("privacy: epsilon must be in (0, 100], delta in (0, 0.01], max_grad_norm in (0, 1000]".into())
    }
}

/// What a job does with its assets.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JobPurpose {
    /// Train the model on the data sets; the trained model goes to the receivers.
    #[default]
    Train,
    /// Serve predictions with the (trained) model; data assets are optional.
    Serve,
}

impl JobPurpose {
    fn is_train(&self) -> bool {
        *self == Self::Train
    }
}

/// One asset a job uses, pinned by digest.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AssetRef {
    /// The asset's registered name.
    pub asset: Name,
    /// The stakeholder that owns it and must approve.
    pub owner: Name,
    /// What it holds.
    pub kind: AssetKind,
    /// Digest of the plaintext content (checked after opening).
    pub content_digest: Digest,
}

/// A job: which model trains on which data sets, where, for whom, under which policy.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobManifest {
    /// Manifest schema version ([`MANIFEST_SCHEMA`]).
    pub schema: u32,
    /// A human-readable job name.
    pub name: String,
    /// Execution mode.
    pub mode: JobMode,
    /// Training (the default, left out of the canonical form) or serving.
    #[serde(default, skip_serializing_if = "JobPurpose::is_train")]
    pub purpose: JobPurpose,
    /// The model asset (spec and optional initial weights).
    pub model: AssetRef,
    /// The data assets.
    pub data: Vec<AssetRef>,
    /// The infrastructure provider whose enrolled workers (or, in `tee` mode, whose
    /// enclaves) may run the job, and whose published policy it names.
    pub provider: Name,
    /// The workers that may run it, by name or EK digest (`sha256:hex` of the EK
    /// public area); empty: any worker the provider enrolled.
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub workers: BTreeSet<String>,
    /// Digest of the platform policy the worker must satisfy.
    pub platform_policy: Digest,
    /// Training hyper-parameters that override the model spec's.
    #[serde(default)]
    pub hyperparameters: BTreeMap<String, serde_json::Value>,
    /// Stakeholders that receive the outputs, sealed to their `age` recipients.
    pub receivers: Vec<Name>,
    /// Stakeholders who own no asset of this job but whose approval it needs as well
    /// (a data owner whose terms cover serving the model trained on its data).
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub approvers: BTreeSet<Name>,
    /// Differential privacy the job trains with; none: plain training.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub privacy: Option<DpTarget>,
    /// Seconds between continuous attestations while the job runs.
    pub attestation_interval_s: u64,
    /// Creation time, Unix seconds (makes two otherwise equal proposals distinct jobs).
    pub created_at: u64,
    /// Expiry time, Unix seconds; no key is released after it.
    pub expires_at: u64,
}

/// Deepest nesting of arrays and objects a hyper-parameter value may have.
pub const MAX_HYPERPARAMETER_DEPTH: usize = 4;

/// Largest manifest, as JSON.
pub const MAX_MANIFEST_BYTES: usize = 64 * 1024;

/// How deep arrays and objects nest in `v` (a scalar: 0), counted without recursion.
fn json_depth(v: &serde_json::Value) -> usize {
    let mut deepest = 0;
    let mut stack = vec![(v, 0usize)];
    while let Some((v, d)) = stack.pop() {
        deepest = deepest.max(d);
        match v {
            serde_json::Value::Array(a) => stack.extend(a.iter().map(|x| (x, d.saturating_add(1)))),
            serde_json::Value::Object(o) => stack.extend(o.values().map(|x| (x, d.saturating_add(1)))),
            _ => {}
        }
    }
    deepest
}

impl JobManifest {
    /// Parses a manifest from JSON and checks its rules.
    pub fn from_json(bytes: &[u8]) -> Result<Self, CoreError> {
        let m: Self = serde_json::from_slice(bytes).map_err(|e| CoreError::Json(e.to_string()))?;
        m.validate()?;
        Ok(m)
    }

    /// The canonical bytes that the digest covers.
    pub fn canonical_bytes(&self) -> Vec<u8> {
        // Serialising plain structs, sorted maps and strings cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// The job digest that owners sign.
    pub fn digest(&self) -> Digest {
        Digest::of(&self.canonical_bytes())
    }

    /// Every asset of the job: the model first, then the data sets.
    pub fn assets(&self) -> impl Iterator<Item = &AssetRef> {
        std::iter::once(&self.model).chain(self.data.iter())
    }

    /// The stakeholders whose approval the job needs (each once): every asset's owner
    /// and the manifest's further `approvers`.
    pub fn required_approvers(&self) -> BTreeSet<&Name> {
        self.assets().map(|a| &a.owner).chain(self.approvers.iter()).collect()
    }

    /// Checks the structural rules of a manifest.
    pub fn validate(&self) -> Result<(), CoreError> {
        let bad = |m: &str| Err(CoreError::InvalidManifest(m.to_owned()));
        if self.schema != MANIFEST_SCHEMA {
            return bad(&format!("schema {} is not supported (expected {MANIFEST_SCHEMA})", self.schema));
        }
        if self.name.trim().is_empty() || self.name.len() > 200 {
            return bad("name must be 1 to 200 characters");
        }
        if self.model.kind != AssetKind::Model {
            return bad("the model asset must be of kind `model`");
        }
        if self.data.is_empty() && self.purpose == JobPurpose::Train {
            return bad("a training job needs at least one data asset");
        }
        if let Some(a) = self.data.iter().find(|a| a.kind != AssetKind::Dataset) {
            return bad(&format!("data asset {} must be of kind `dataset`", a.asset));
        }
        let mut seen = BTreeSet::new();
        if let Some(dup) = self.assets().find(|a| !seen.insert(&a.asset)) {
            return bad(&format!("asset {} is named twice", dup.asset));
        }
        if self.receivers.is_empty() {
            return bad("a job needs at least one output receiver");
        }
        if self.attestation_interval_s == 0 || self.attestation_interval_s > MAX_ATTESTATION_INTERVAL_S {
            return bad(&format!("attestation_interval_s must be 1 to {MAX_ATTESTATION_INTERVAL_S} seconds"));
        }
        if self.expires_at <= self.created_at {
            return bad("expires_at must be after created_at");
        }
        if self.expires_at - self.created_at > MAX_JOB_LIFETIME_S {
            return bad(&format!("a job may stay valid for at most {} days", MAX_JOB_LIFETIME_S / 86_400));
        }
        if self.workers.len() > MAX_WORKERS || self.workers.iter().any(|w| w.is_empty() || w.len() > 128) {
            return bad(&format!("workers: at most {MAX_WORKERS} names or EK digests of 1 to 128 characters"));
        }
        // Workers are matched as text: an EK digest must be written as the service
        // writes it (lower-case hex), a name as a name.
        let canonical = |w: &str| match w.parse::<Digest>() {
            Ok(d) => d.to_string() == w,
            Err(_) => Name::new(w).is_ok(),
        };
        if let Some(w) = self.workers.iter().find(|w| !canonical(w)) {
            return bad(&format!(
                "workers: `{w}` is neither a worker name nor an EK digest in lower-case hex (sha256:...)"
            ));
        }
        if let Some(p) = &self.privacy {
            if self.purpose != JobPurpose::Train {
                return bad("privacy applies to training jobs only");
            }
            p.check().map_err(CoreError::InvalidManifest)?;
        }
        if self.hyperparameters.len() > 64
            || self.receivers.len() > 64
            || self.approvers.len() > 64
            || self.data.len() > 64
        {
            return bad("at most 64 hyper-parameters, receivers, approvers and data assets each");
        }
        // Bounded where it is accepted: a value nested past what any recipe needs would
        // break every later read of the stored job (a JSON parser's recursion limit).
        for (k, v) in &self.hyperparameters {
            if k.is_empty() || k.len() > 64 {
                return bad("hyper-parameter names must be 1 to 64 characters");
            }
            if json_depth(v) > MAX_HYPERPARAMETER_DEPTH {
                return bad(&format!(
                    "hyper-parameter `{k}` is nested deeper than {MAX_HYPERPARAMETER_DEPTH} levels of arrays or objects"
                ));
            }
        }
        let size = serde_json::to_vec(self).map(|v| v.len()).unwrap_or(usize::MAX);
        if size > MAX_MANIFEST_BYTES {
            return bad(&format!("a manifest is at most {} KiB as JSON ({size} bytes)", MAX_MANIFEST_BYTES / 1024));
        }
        Ok(())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    fn asset(name: &str, owner: &str, kind: AssetKind) -> AssetRef {
        AssetRef {
            asset: Name::new(name).unwrap(),
            owner: Name::new(owner).unwrap(),
            kind,
            content_digest: Digest::of(name.as_bytes()),
        }
    }

    pub(crate) fn manifest() -> JobManifest {
        JobManifest {
            schema: MANIFEST_SCHEMA,
            name: "bc-mlp".into(),
            mode: JobMode::Attested,
            model: asset("mlp", "model-owner", AssetKind::Model),
            data: vec![
                asset("bc-a", "hospital-a", AssetKind::Dataset),
                asset("bc-b", "hospital-b", AssetKind::Dataset),
            ],
            platform_policy: Digest::of(b"policy"),
            provider: Name::new("infra").unwrap(),
            workers: BTreeSet::new(),
            hyperparameters: BTreeMap::from([("epochs".into(), serde_json::json!(30))]),
            receivers: vec![Name::new("model-owner").unwrap()],
            approvers: BTreeSet::new(),
            purpose: JobPurpose::Train,
            privacy: None,
            attestation_interval_s: 5,
            created_at: 1_700_000_000,
            expires_at: 1_700_086_400,
        }
    }

    #[test]
    fn digest_is_stable_across_a_json_round_trip() {
        let m = manifest();
        let pretty = serde_json::to_vec_pretty(&m).unwrap();
        let back = JobManifest::from_json(&pretty).unwrap();
        assert_eq!(back.digest(), m.digest());
    }

    #[test]
    fn any_edit_changes_the_digest() {
        let m = manifest();
        let mut e = m.clone();
        e.hyperparameters.insert("epochs".into(), serde_json::json!(31));
        assert_ne!(e.digest(), m.digest());
        let mut e = m.clone();
        e.receivers.push(Name::new("hospital-a").unwrap());
        assert_ne!(e.digest(), m.digest());
    }

    #[test]
    fn approvers_are_every_owner_once() {
        let m = manifest();
        let names: Vec<_> = m.required_approvers().into_iter().map(|n| n.as_str()).collect();
        assert_eq!(names, ["hospital-a", "hospital-b", "model-owner"]);
    }

    #[test]
    fn serving_jobs_need_no_data_and_may_name_further_approvers() {
        let train = manifest();
        // The default purpose stays out of the canonical form.
        assert!(!String::from_utf8(train.canonical_bytes()).unwrap().contains("purpose"));
        let mut m = manifest();
        m.purpose = JobPurpose::Serve;
        m.data.clear();
        m.approvers.insert(Name::new("hospital-a").unwrap());
        m.validate().unwrap();
        assert_ne!(m.digest(), train.digest());
        let names: Vec<_> = m.required_approvers().into_iter().map(|n| n.as_str()).collect();
        assert_eq!(names, ["hospital-a", "model-owner"]);
        let back = JobManifest::from_json(&m.canonical_bytes()).unwrap();
        assert_eq!(back.digest(), m.digest());
    }

    #[test]
    fn unknown_fields_and_broken_rules_are_refused() {
        let mut v = serde_json::to_value(manifest()).unwrap();
        v["smuggled"] = serde_json::json!("x");
        assert!(JobManifest::from_json(v.to_string().as_bytes()).is_err());

        let mut m = manifest();
        m.data.clear();
        assert!(m.validate().is_err());
        let mut m = manifest();
        m.data.push(m.data[0].clone());
        assert!(m.validate().is_err());
        let mut m = manifest();
        m.expires_at = m.created_at;
        assert!(m.validate().is_err());
        let mut m = manifest();
        m.model.kind = AssetKind::Dataset;
        assert!(m.validate().is_err());
        // Continuous attestation must happen: no interval past the bound, none that
        // overflows a deadline.
        let mut m = manifest();
        m.attestation_interval_s = u64::MAX;
        assert!(m.validate().unwrap_err().to_string().contains("1 to 3600"));
        let mut m = manifest();
        m.expires_at = u64::MAX;
        assert!(m.validate().is_err());
        let mut m = manifest();
        m.workers.insert(String::new());
        assert!(m.validate().is_err());
        m.workers.clear();
        m.workers.insert(Digest::of(b"ek").to_string().to_uppercase().replace("SHA256:", "sha256:"));
        assert!(m.validate().unwrap_err().to_string().contains("lower-case"));
        m.workers.clear();
        m.workers.insert(Digest::of(b"ek").to_string());
        m.workers.insert("gpu-1".into());
        assert!(m.validate().is_ok());
        m.workers.insert(String::new());
        assert!(m.validate().is_err());
    }

    #[test]
    fn deep_or_large_hyper_parameters_are_refused_where_they_are_accepted() {
        let mut m = manifest();
        let mut deep = serde_json::json!(1);
        for _ in 0..124 {
            deep = serde_json::json!([deep]);
        }
        m.hyperparameters.insert("lr".into(), deep);
        assert!(matches!(m.validate(), Err(CoreError::InvalidManifest(e)) if e.contains("nested deeper")));
        m.hyperparameters.insert("lr".into(), serde_json::json!({"a": [[1, 2], [3]]}));
        assert!(m.validate().is_ok());
        m.hyperparameters.insert("big".into(), serde_json::json!("x".repeat(MAX_MANIFEST_BYTES)));
        assert!(matches!(m.validate(), Err(CoreError::InvalidManifest(e)) if e.contains("KiB")));
        assert_eq!(json_depth(&serde_json::json!(3)), 0);
        assert_eq!(json_depth(&serde_json::json!({"a": [1]})), 2);
    }
}
