//! The values the API shows as the service keeps them: where a job and a worker stand,
//! a job's outputs and reported metrics, and the owners' review of its outputs.

use perun_core::{Digest, HexBytes, Name, Signature};
use serde::{Deserialize, Serialize};

/// Where a worker stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum WorkerState {
    /// Its EK is enrolled; no AK is proven yet.
    Enrolled,
    /// Its AK is proven to live in the enrolled TPM.
    Active,
    /// Its provider de-enrolled it: it may not authenticate, claim or attest, and its
    /// EK may be enrolled again.
    Deenrolled,
}

/// A job's life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JobState {
    /// Proposed; some owners have not approved.
    Proposed,
    /// Every owner approved; a worker may claim it.
    Ready,
    /// A worker claimed it and attests for it.
    Running,
    /// The worker delivered its outputs.
    Finished,
    /// Revoked: nothing more is released and outputs are refused.
    Revoked,
    /// Its expiry passed before it finished.
    Expired,
}

impl JobState {
    /// The state's name.
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Proposed => "proposed",
            JobState::Ready => "ready",
            JobState::Running => "running",
            JobState::Finished => "finished",
            JobState::Revoked => "revoked",
            JobState::Expired => "expired",
        }
    }
}

/// Where an output review stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReviewOutcome {
    /// Some reviewer has not decided.
    Pending,
    /// Every reviewer released: the output keys are wrapped to the receivers.
    Released,
    /// A reviewer refused: the outputs never reach the receivers.
    Refused,
}

impl ReviewOutcome {
    /// The outcome's name, as the API spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            ReviewOutcome::Pending => "pending",
            ReviewOutcome::Released => "released",
            ReviewOutcome::Refused => "refused",
        }
    }
}

/// The owners' review of a job's outputs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Review {
    /// The owners whose terms ask for review.
    pub reviewers: std::collections::BTreeSet<Name>,
    /// Signed releases so far.
    #[serde(default)]
    pub released_by: std::collections::BTreeMap<Name, Signature>,
    /// Who refused, if anyone.
    #[serde(default)]
    pub refused_by: Option<Name>,
    /// The outcome.
    pub outcome: ReviewOutcome,
}

/// An output a worker delivered: sealed to the job's receivers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutputInfo {
    /// What it is (`model`...).
    pub name: String,
    /// Digest of the sealed file.
    pub sealed_digest: Digest,
    /// Where it was written.
    pub location: String,
    /// For an output under review: its key, wrapped to the service (hex of an `age`
    /// file), rewrapped to the receivers only once every reviewer released it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wrapped_key: Option<HexBytes>,
}

/// One epoch's metrics, as the worker reported them.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MetricInfo {
    /// The job.
    pub job: Digest,
    /// The epoch (1-based).
    pub epoch: u32,
    /// The figures (loss, accuracy...).
    pub values: serde_json::Map<String, serde_json::Value>,
    /// When it arrived.
    pub at: u64,
}
