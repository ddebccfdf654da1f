//! What a reviewing owner signs to release a job's outputs (docs/architecture.md, section 2: the way out).

use perun_core::receipt::Envelope;
use perun_core::Digest;

/// The signature context of an owner's release of a job's outputs.
pub const REVIEW_CONTEXT: &str = "output-release/v1";

/// What a reviewing owner signs to release `job`'s outputs: the job and the exact receipt
/// it read (its DSSE payload), under [`REVIEW_CONTEXT`].
pub fn review_digest(job: &Digest, receipt: &Envelope) -> Digest {
    Digest::of_parts(&[REVIEW_CONTEXT.as_bytes(), job.as_bytes(), receipt.payload.as_bytes()])
}
