//! A finished job's outputs: the worker's delivery, the signed training receipt, and the
//! owners' review before the outputs reach the receivers.
//!
//! Without review, the worker seals each output to the receivers itself. Where an asset's
//! terms ask for review, the worker seals each output under a fresh key and wraps that key
//! to the service, bound to this job and output ([`WrapContext::output_key`]); the service
//! rewraps it to the receivers, each bound to the job, output and receiver
//! ([`WrapContext::output_for_receiver`]), only after every reviewing owner signed a
//! release of this job and receipt. A refusal leaves the key wrapped to the service alone:
//! the receivers never get it. The wrapped keys are never shown to a party: job listings
//! carry the outputs without them.

use perun_core::receipt::{Envelope, PrivacySpent, ReceiptApproval, Statement, Subject, TrainingPredicate};
use perun_core::{verify_digest, Digest, DpTarget, JobMode, Name};
use perun_seal::wrap::WrapContext;

use super::jobs::{is_party, job_in};
use super::terms::reviewers;
use super::Trust;
use crate::audit::{Actor, AuditKind, Event};
use crate::records::{ApprovalRecord, JobRecord, JobState, Review, ReviewOutcome, StakeholderRecord, WorkerRecord};
use crate::store::{Store, Tx, TxExt as _};
use crate::wire::{FinishJob, JobInfo, OutputKey, ReviewOutput};
use crate::TrustError;
pub use perun_proto::review::{review_digest, REVIEW_CONTEXT};

/// Slack on the epsilon a worker reports against the manifest's (floating point).
const EPSILON_SLACK: f64 = 1e-9;

impl<S: Store> Trust<S> {
    /// The worker delivers the job's outputs, the model's digest and the privacy it
    /// spent. Refused for a revoked job, for a job whose keys never left, for privacy
    /// that is not the manifest's, and, under review, for an output whose key is not
    /// wrapped to this service. On success the service signs the training receipt.
    pub fn finish(&self, worker: &WorkerRecord, job_id: &Digest, body: FinishJob) -> Result<(), TrustError> {
        let actor = Actor::worker(&worker.name);
        // An attested worker's token is a credential in ordinary memory, which the host's
        // root can read, and its TPM can activate new ones: the token alone cannot vouch
        // for outputs. A finish carries a last quote over the digest of its claims, appraised
        // like every continuous attestation (the IMA log up to now included). A `tee` job's
        // token never left the enclave it was sealed to.
        let service = self.keys.tls_fingerprint();
        let appraisal = match (&body.attestation, worker.tee.is_none()) {
            (Some(att), true) => {
                Some(self.appraise_tpm(worker, job_id, att, |nonce, job| body.binding(&service, nonce, job))?)
            }
            _ => None,
        };
        let outcome = self.store.write(|tx| {
            let (mut job, live) = self.running_job(tx, job_id, &worker.name)?;
            if let Err(e) = live {
                return Ok(Err((job, e)));
            }
            if !job.released {
                let e = TrustError::Conflict("the job never attested: it has no outputs to deliver".into());
                return Ok(Err((job, e)));
            }
            if job.manifest.mode == JobMode::Attested {
                let (Some(att), Some(appraisal)) = (&body.attestation, appraisal) else {
                    let e = TrustError::BadRequest(
                        "an attested job's outputs come with a last attestation: a quote over the finish \
                         claims (FinishJob::binding), with a fresh nonce"
                            .into(),
                    );
                    return Ok(Err((job, e)));
                };
                // A refused quote revokes the job in this transaction: nothing is delivered.
                if let Err(e) = self.decide_tpm(tx, &mut job, worker, att, appraisal)? {
                    return Ok(Err((job, e)));
                }
                // The accepted quote moved the job's IMA state on: kept even if a check
                // below refuses these outputs.
                tx.put(&job)?;
            }
            if let Err(e) = check_privacy(job.manifest.privacy.as_ref(), body.privacy.as_ref()) {
                return Ok(Err((job, e)));
            }
            let reviewers = reviewers(tx, &job.manifest)?;
            if let Err(e) = self.check_output_keys(&job, &body, !reviewers.is_empty()) {
                return Ok(Err((job, e)));
            }
            if !reviewers.is_empty() {
                job.review = Some(Review {
                    reviewers: reviewers.into_iter().collect(),
                    released_by: Default::default(),
                    refused_by: None,
                    outcome: ReviewOutcome::Pending,
                });
            }
            job.state = JobState::Finished;
            job.outputs = body.outputs.clone();
            job.receipt = Some(self.sign_receipt(tx, &job, &worker.name, &body)?);
            tx.put(&job)?;
            let names: Vec<String> = job.outputs.iter().map(|o| format!("{} {}", o.name, o.sealed_digest)).collect();
            let spent = body.privacy.map(|p| format!("; DP-SGD epsilon {:.4} spent", p.epsilon)).unwrap_or_default();
            let review = if job.review.is_some() { "; held for the owners' review" } else { "" };
            let detail = format!("outputs: {}{spent}{review}; receipt signed", names.join(", "));
            let ev = Event::new(AuditKind::JobFinished, actor.clone(), detail);
            self.audit(tx, ev.for_job(job.id, &job.manifest))?;
            Ok(Ok(()))
        })?;
        outcome.map_err(|(job, e)| self.attestation_refused(&actor, &job, worker, e))
    }

    /// Each delivered output's key, where the job's owners review its outputs, must be
    /// wrapped to this service for this job and that output
    /// ([`WrapContext::output_key`]): a wrapped key lifted from another job (from its
    /// worker's disk, or an old job listing) opens as that job's, and is refused before
    /// anything is stored. Without review, no output carries a key for the service.
    fn check_output_keys(&self, job: &JobRecord, body: &FinishJob, reviewed: bool) -> Result<(), TrustError> {
        let mut names = std::collections::BTreeSet::new();
        for o in &body.outputs {
            if o.name.is_empty() || o.name.len() > 64 || !names.insert(o.name.as_str()) {
                return Err(TrustError::BadRequest(format!(
                    "output names must be unique and 1 to 64 bytes long (`{}`)",
                    o.name.chars().take(64).collect::<String>()
                )));
            }
            match (&o.wrapped_key, reviewed) {
                (Some(k), true) => {
                    let context = WrapContext::output_key(&job.id, &o.name);
                    perun_seal::wrap::unwrap(&k.0, self.keys.wrap.identity(), &context).map_err(|e| {
                        TrustError::BadRequest(format!(
                            "output `{}`: its key must be wrapped to this service for job {} and this output: {e}",
                            o.name, job.id
                        ))
                    })?;
                }
                (None, true) => {
                    return Err(TrustError::BadRequest(format!(
                        "output `{}` must be sealed under a key wrapped to this service: its owners review it",
                        o.name
                    )))
                }
                (Some(_), false) => {
                    return Err(TrustError::BadRequest(format!(
                        "output `{}` carries a key for the service, but no owner of job {} reviews its outputs: \
                         seal it to the receivers",
                        o.name, job.id
                    )))
                }
                (None, false) => {}
            }
        }
        Ok(())
    }

    fn sign_receipt(
        &self,
        tx: &mut dyn Tx,
        job: &JobRecord,
        worker: &Name,
        body: &FinishJob,
    ) -> Result<Envelope, TrustError> {
        let mut approvals = Vec::new();
        for who in job.manifest.required_approvers() {
            let a: Option<ApprovalRecord> = tx.get(&format!("{}/{}", job.id, who))?;
            if let Some(a) = a {
                approvals.push(ReceiptApproval { approver: a.approver, signature: a.signature });
            }
        }
        let mut subject = Vec::new();
        if let Some(d) = &body.model_digest {
            subject.push(Subject::sha256("model.safetensors", d));
        }
        for o in &body.outputs {
            subject.push(Subject::sha256(&format!("{}.sealed", o.name), &o.sealed_digest));
        }
        let predicate = TrainingPredicate {
            job: job.id,
            name: job.manifest.name.clone(),
            inputs: job.manifest.assets().cloned().collect(),
            approvals,
            policy: job.manifest.platform_policy,
            worker: worker.clone(),
            attestation: job.release_attestation.clone(),
            privacy: body.privacy,
            receivers: job.manifest.receivers.clone(),
            finished_at: self.now(),
        };
        Ok(Statement::new(subject, predicate).sign(&self.keys.signing))
    }

    /// A finished job's signed receipt, for its parties.
    pub fn receipt(&self, caller: &Name, job_id: &Digest) -> Result<Envelope, TrustError> {
        let job = self.job_record(job_id)?;
        if !is_party(&job, caller) {
            return Err(TrustError::NotFound(format!("no job {job_id}")));
        }
        job.receipt.ok_or_else(|| TrustError::NotFound(format!("job {job_id} has no receipt yet: it has not finished")))
    }

    /// A reviewing owner releases or refuses a finished job's outputs. When the last
    /// reviewer releases, each output key is wrapped to each receiver; a refusal is final.
    pub fn review(&self, caller: &Name, job_id: &Digest, body: ReviewOutput) -> Result<JobInfo, TrustError> {
        let job = self.job_record(job_id)?;
        if !is_party(&job, caller) {
            return Err(TrustError::NotFound(format!("no job {job_id}")));
        }
        let outcome = self.store.write(|tx| {
            let mut job = job_in(tx, job_id)?;
            let (Some(review), Some(receipt)) = (job.review.clone(), job.receipt.clone()) else {
                return Ok(Err(TrustError::Conflict(format!("job {job_id} has no output under review"))));
            };
            if !review.reviewers.contains(caller) {
                return Ok(Err(TrustError::Forbidden(format!("{caller}'s terms do not ask to review job {job_id}"))));
            }
            if review.outcome != ReviewOutcome::Pending {
                let done = if review.outcome == ReviewOutcome::Released { "released" } else { "refused" };
                return Ok(Err(TrustError::Conflict(format!("the outputs of job {job_id} were already {done}"))));
            }
            let mut review = review;
            if body.release {
                let Some(sig) = body.signature else {
                    return Ok(Err(TrustError::BadRequest("a release must be signed".into())));
                };
                let s: StakeholderRecord =
                    tx.get(caller.as_str())?.ok_or_else(|| TrustError::Unauthenticated(format!("{caller}")))?;
                let key = s.identity.verifying_key().map_err(|e| TrustError::Store(e.to_string()))?;
                if verify_digest(&key, REVIEW_CONTEXT, &review_digest(&job.id, &receipt), &sig).is_err() {
                    return Ok(Err(TrustError::Forbidden(format!(
                        "the release signature of {caller} does not cover job {job_id} and its receipt"
                    ))));
                }
                review.released_by.insert(caller.clone(), sig);
                if review.reviewers.iter().all(|r| review.released_by.contains_key(r)) {
                    review.outcome = ReviewOutcome::Released;
                    self.wrap_outputs_to_receivers(tx, &mut job)?;
                }
            } else {
                review.outcome = ReviewOutcome::Refused;
                review.refused_by = Some(caller.clone());
            }
            let detail = match review.outcome {
                ReviewOutcome::Released => format!("{caller} released the outputs: they are wrapped to the receivers"),
                ReviewOutcome::Refused => format!("{caller} refused the outputs: they never reach the receivers"),
                ReviewOutcome::Pending => format!("{caller} released the outputs; other reviewers pending"),
            };
            job.review = Some(review);
            tx.put(&job)?;
            let ev = Event::new(AuditKind::OutputReviewed, Actor::stakeholder(&caller), detail);
            self.audit(tx, ev.for_job(job.id, &job.manifest))?;
            Ok(Ok(job))
        })?;
        match outcome {
            Ok(job) => self.job(caller, &job.id),
            Err(e) => Err(self.refused(&Actor::stakeholder(caller), Some(&job), e)),
        }
    }

    fn wrap_outputs_to_receivers(&self, tx: &mut dyn Tx, job: &mut JobRecord) -> Result<(), TrustError> {
        for o in &job.outputs {
            let Some(wrapped) = &o.wrapped_key else { continue };
            // Checked at finish, and again here: a key edited into the stored job from
            // another job's record names that job.
            let key = perun_seal::wrap::unwrap(
                &wrapped.0,
                self.keys.wrap.identity(),
                &WrapContext::output_key(&job.id, &o.name),
            )?;
            for r in &job.manifest.receivers {
                let s: StakeholderRecord =
                    tx.get(r.as_str())?.ok_or_else(|| TrustError::Store(format!("receiver {r} vanished")))?;
                // Checked at registration; a record from before that check must not hold
                // back every other receiver's key.
                let recipient = match perun_seal::keys::parse_recipient(&s.identity.age_recipient) {
                    Ok(r) => r,
                    Err(e) => {
                        tracing::error!(receiver = %r, job = %job.id, error = %e, "receiver's recipient does not parse: no key wrapped to it");
                        continue;
                    }
                };
                let context = WrapContext::output_for_receiver(&job.id, &o.name, r);
                let to_receiver = perun_seal::wrap::wrap(&key, &recipient, &context)?;
                job.output_keys.insert(format!("{r}/{}", o.name), perun_core::HexBytes(to_receiver));
            }
        }
        Ok(())
    }

    /// An output's key wrapped to `caller`, a receiver, once every reviewer released it.
    pub fn output_key(&self, caller: &Name, job_id: &Digest, output: &str) -> Result<OutputKey, TrustError> {
        let job = self.job_record(job_id)?;
        if !is_party(&job, caller) {
            return Err(TrustError::NotFound(format!("no job {job_id}")));
        }
        if !job.manifest.receivers.contains(caller) {
            return Err(TrustError::Forbidden(format!("{caller} is not a receiver of job {job_id}")));
        }
        match job.review.as_ref().map(|r| r.outcome) {
            Some(ReviewOutcome::Released) => {}
            Some(ReviewOutcome::Refused) => {
                return Err(TrustError::Forbidden(format!("the owners refused the outputs of job {job_id}")))
            }
            Some(ReviewOutcome::Pending) => {
                return Err(TrustError::Conflict(format!("the outputs of job {job_id} await the owners' review")))
            }
            None => {
                return Err(TrustError::NotFound(format!(
                    "job {job_id}'s outputs are sealed to the receivers directly: open them with your own key"
                )))
            }
        }
        let k = job
            .output_keys
            .get(&format!("{caller}/{output}"))
            .ok_or_else(|| TrustError::NotFound(format!("job {job_id} has no output `{output}`")))?;
        Ok(OutputKey { output: output.to_owned(), wrapped_key: k.0.clone() })
    }
}

/// The worker's privacy report must be the manifest's target, spent within it.
fn check_privacy(target: Option<&DpTarget>, report: Option<&PrivacySpent>) -> Result<(), TrustError> {
    match (target, report) {
        (None, None) => Ok(()),
        // A report the accountant could have made: a spent epsilon at or under the
        // target, real noise, a sampling rate and at least one step.
        (Some(t), Some(p))
            if p.target == *t
                && p.epsilon.is_finite()
                && p.epsilon >= 0.0
                && p.epsilon <= t.epsilon + EPSILON_SLACK
                && p.noise_multiplier.is_finite()
                && p.noise_multiplier > 0.0
                && p.sample_rate > 0.0
                && p.sample_rate <= 1.0
                && p.steps >= 1 =>
        {
            Ok(())
        }
        (Some(t), Some(p)) => Err(TrustError::BadRequest(format!(
            "the worker reports epsilon {} (noise multiplier {}, sampling rate {}, {} steps) for target {:?}, \
             but the manifest asks epsilon {} with {:?}",
            p.epsilon, p.noise_multiplier, p.sample_rate, p.steps, p.target, t.epsilon, t
        ))),
        (Some(_), None) => {
            Err(TrustError::BadRequest("the job declares privacy: the worker must report what it spent".into()))
        }
        (None, Some(_)) => {
            Err(TrustError::BadRequest("the job declares no privacy, but the worker reports some".into()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target() -> DpTarget {
        DpTarget { epsilon: 3.0, delta: 1e-5, max_grad_norm: 1.0 }
    }

    fn spent() -> PrivacySpent {
        PrivacySpent { target: target(), noise_multiplier: 3.0, sample_rate: 0.09, steps: 480, epsilon: 2.99 }
    }

    #[test]
    fn a_privacy_report_the_accountant_could_not_have_made_is_refused() {
        assert!(check_privacy(Some(&target()), Some(&spent())).is_ok());
        assert!(check_privacy(None, None).is_ok());
        let forged: [fn(&mut PrivacySpent); 9] = [
            |p| p.epsilon = -50.0,
            |p| p.epsilon = 3.5,
            |p| p.epsilon = f64::NAN,
            |p| p.noise_multiplier = 0.0,
            |p| p.noise_multiplier = f64::INFINITY,
            |p| p.sample_rate = 0.0,
            |p| p.sample_rate = 1.5,
            |p| p.steps = 0,
            |p| p.target.epsilon = 8.0,
        ];
        for (i, f) in forged.iter().enumerate() {
            let mut p = spent();
            f(&mut p);
            assert!(matches!(check_privacy(Some(&target()), Some(&p)), Err(TrustError::BadRequest(_))), "case {i}");
        }
        assert!(check_privacy(Some(&target()), None).is_err());
        assert!(check_privacy(None, Some(&spent())).is_err());
    }
}
