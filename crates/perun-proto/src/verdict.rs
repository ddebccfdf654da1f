//! The verdict's reasons, as an Attestation Result (RATS, RFC 9334) carries them: every
//! failed check of a refused appraisal, in words for the stakeholders.

use serde::{Deserialize, Serialize};

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
    /// A failure that concerns no one measured file.
    pub fn new(why: impl Into<String>) -> Self {
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
