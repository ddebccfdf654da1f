//! Workers and their jobs: the jobs offered to a worker, its claim and the assignment,
//! attestation nonces, metrics, and a worker's report of a failure.

use perun_attest::JobPolicy;
use perun_core::{Digest, JobManifest, JobMode, Name};
use perun_proto::{Nonce, PolicyDocument};

use super::enrolment::genuine_tpm;
use super::jobs::{job_in, policy_in};
use super::Trust;
use crate::audit::{Actor, AuditKind, Event};
use crate::records::{AssetRecord, JobRecord, JobState, MetricRecord, PolicyRecord, StakeholderRecord, WorkerRecord};
use crate::store::{Store, Tx, TxExt as _};
use crate::wire::{AssetLocation, Claimed, NonceIssued, OfferedJob};
use crate::TrustError;

impl<S: Store> Trust<S> {
    /// Ready `attested` jobs that `worker` may claim: its provider's, naming it (or no
    /// worker in particular).
    pub fn offered_jobs(&self, worker: &WorkerRecord) -> Result<Vec<OfferedJob>, TrustError> {
        if worker.tee.is_some() {
            return Ok(Vec::new());
        }
        let now = self.now();
        let all: Vec<(JobRecord, Option<PolicyRecord>)> = self.store.read(|tx| {
            let jobs: Vec<JobRecord> = tx.list_readable("")?;
            let mut out = Vec::new();
            for j in jobs {
                if j.state == JobState::Ready
                    && j.manifest.mode == JobMode::Attested
                    && now < j.manifest.expires_at
                    && may_run(worker, &j.manifest).is_ok()
                {
                    let p = policy_in(tx, &j.manifest.platform_policy)?;
                    out.push((j, p));
                }
            }
            Ok(out)
        })?;
        // Only jobs whose policy trusts this worker's TPM, checked once per policy.
        let mut trusted = std::collections::BTreeMap::new();
        Ok(all
            .into_iter()
            .filter(|(_, p)| match p {
                Some(PolicyRecord { policy: JobPolicy::Platform(p), digest, .. }) => {
                    *trusted.entry(*digest).or_insert_with(|| genuine_tpm(worker, p).is_ok())
                }
                _ => false,
            })
            .map(|(j, _)| j)
            .map(|j| OfferedJob { id: j.id, manifest: j.manifest })
            .collect())
    }

    /// A worker claims a ready job: it is now the job's only worker, and gets the first
    /// attestation nonce and where the sealed assets are.
    pub fn claim(&self, worker: &WorkerRecord, job_id: &Digest) -> Result<Claimed, TrustError> {
        let actor = Actor::worker(&worker.name);
        let now = self.now();
        let outcome = self.store.write(|tx| {
            let mut job = job_in(tx, job_id)?;
            if self.apply_deadlines(tx, &mut job)? {
                return Ok(Err((job.clone(), live_error(&job))));
            }
            // The worker as it is now, not as it was when its token was checked: a new
            // AK activated in between (which revokes the jobs running on the old one)
            // must not leave this claim running on the old token.
            let current = tx.get::<WorkerRecord>(worker.name.as_str())?;
            let same = current.as_ref().is_some_and(|c| {
                c.token_hash == worker.token_hash && c.ak_public == worker.ak_public && c.state == worker.state
            });
            if !same {
                let e = TrustError::Unauthenticated(format!(
                    "worker {}'s AK or token changed while it claimed job {job_id}: claim again with the new token",
                    worker.name
                ));
                return Ok(Err((job, e)));
            }
            if let Err(e) = self.check_releasable(tx, &job) {
                return Ok(Err((job, e)));
            }
            if job.state != JobState::Ready {
                let e = TrustError::Conflict(format!("job {job_id} is {}, not ready", job.state.as_str()));
                return Ok(Err((job, e)));
            }
            if job.manifest.mode != JobMode::Attested || worker.tee.is_some() {
                let e = TrustError::Conflict(format!("job {job_id} runs in `tee` mode: an enclave must claim it"));
                return Ok(Err((job, e)));
            }
            if let Err(e) = may_run(worker, &job.manifest) {
                return Ok(Err((job, e)));
            }
            // A TPM whose EK certificate the job's policy does not accept claims nothing
            // (checked again, with everything else, on the first attestation).
            if let Some(PolicyRecord { policy: JobPolicy::Platform(p), .. }) =
                policy_in(tx, &job.manifest.platform_policy)?
            {
                if let Err(e) = genuine_tpm(worker, &p) {
                    return Ok(Err((job, e)));
                }
            }
            let nonce = self.nonces.issue(&job.id, &worker.name, now);
            Ok(Ok(self.assign(tx, &mut job, &worker.name, nonce)?))
        })?;
        outcome.map_err(|(job, e)| self.refused(&actor, Some(&job), e))
    }

    /// Makes `worker` the job's only worker (audited) and says what it needs: where the
    /// assets are, the policy, the receivers' recipients, and `nonce` for its first
    /// attestation.
    pub(super) fn assign(
        &self,
        tx: &mut dyn Tx,
        job: &mut JobRecord,
        worker: &Name,
        nonce: Nonce,
    ) -> Result<Claimed, TrustError> {
        let policy: PolicyRecord = policy_in(tx, &job.manifest.platform_policy)?
            .ok_or_else(|| TrustError::Store(format!("policy {} vanished", job.manifest.platform_policy)))?;
        let mut assets = Vec::new();
        for a in job.manifest.assets() {
            let rec: AssetRecord =
                tx.get(a.asset.as_str())?.ok_or_else(|| TrustError::Store(format!("asset {} vanished", a.asset)))?;
            assets.push(AssetLocation {
                asset: a.asset.clone(),
                kind: a.kind,
                content_digest: a.content_digest,
                location: rec.location,
            });
        }
        let mut receivers = Vec::new();
        let mut receiver_identities = Vec::new();
        for r in &job.manifest.receivers {
            let s: StakeholderRecord =
                tx.get(r.as_str())?.ok_or_else(|| TrustError::Store(format!("receiver {r} vanished")))?;
            receivers.push((r.clone(), s.identity.age_recipient.clone()));
            receiver_identities.push(s.identity);
        }
        job.state = JobState::Running;
        job.worker = Some(worker.clone());
        job.claimed_at = Some(self.now());
        tx.put(job)?;
        let e = Event::new(AuditKind::JobClaimed, Actor::worker(worker), format!("claimed by {worker}"));
        self.audit(tx, e.for_job(job.id, &job.manifest))?;
        Ok(Claimed {
            job: OfferedJob { id: job.id, manifest: job.manifest.clone() },
            assets,
            policy: PolicyDocument::from(&policy.policy),
            receivers,
            receiver_identities,
            nonce,
            review_recipient: (!super::terms::reviewers(tx, &job.manifest)?.is_empty())
                .then(|| self.keys.wrap_recipient()),
        })
    }

    /// A fresh nonce for the job's next attestation. Issuing writes nothing (see
    /// [`crate::nonce`]) unless the clock ended the job.
    pub fn nonce(&self, worker: &WorkerRecord, job_id: &Digest) -> Result<NonceIssued, TrustError> {
        let actor = Actor::worker(&worker.name);
        let mut job = self.job_record(job_id)?;
        if self.deadline_passed(&job).is_some() {
            job = self.store.write(|tx| {
                let mut job = job_in(tx, job_id)?;
                self.apply_deadlines(tx, &mut job)?;
                Ok(job)
            })?;
        }
        match self.check_running_by(&job, &worker.name) {
            Ok(()) => Ok(NonceIssued {
                nonce: self.nonces.issue(&job.id, &worker.name, self.now()),
                valid_s: self.config.nonce_valid_s,
            }),
            Err(e @ TrustError::Revoked(_)) => Err(e),
            Err(e) => Err(self.refused(&actor, Some(&job), e)),
        }
    }

    /// Loads a job inside `tx`, applies the clock to it, and says whether `worker` may
    /// act for it now (the job, and `Err` with the reason when not).
    pub(super) fn running_job(
        &self,
        tx: &mut dyn Tx,
        job_id: &Digest,
        worker: &Name,
    ) -> Result<(JobRecord, Result<(), TrustError>), TrustError> {
        let mut job = job_in(tx, job_id)?;
        self.apply_deadlines(tx, &mut job)?;
        let live = self.check_running_by(&job, worker);
        Ok((job, live))
    }

    pub(super) fn check_running_by(&self, job: &JobRecord, worker: &Name) -> Result<(), TrustError> {
        if job.worker.as_ref() != Some(worker) {
            return Err(TrustError::Forbidden(format!("job {} is not claimed by {worker}", job.id)));
        }
        if job.state != JobState::Running {
            return Err(live_error(job));
        }
        Ok(())
    }

    /// Records an epoch's metrics from the job's worker. A revoked job answers
    /// [`TrustError::Revoked`]: the worker must abort.
    pub fn report_metrics(
        &self,
        worker: &WorkerRecord,
        job_id: &Digest,
        epoch: u32,
        values: serde_json::Map<String, serde_json::Value>,
    ) -> Result<(), TrustError> {
        let now = self.now();
        check_metrics(epoch, &values)?;
        // The outer result fails the transaction; the inner one refuses the call after
        // committing what the clock did to the job (a revocation must stick).
        self.store.write(|tx| {
            let (job, live) = self.running_job(tx, job_id, &worker.name)?;
            if let Err(e) = live {
                return Ok(Err(e));
            }
            tx.put(&MetricRecord { job: job.id, epoch, values, at: now })?;
            Ok(Ok(()))
        })?
    }

    /// The worker reports that it stopped (and wiped); the job is revoked.
    pub fn fail(&self, worker: &WorkerRecord, job_id: &Digest, reason: &str) -> Result<(), TrustError> {
        self.store.write(|tx| {
            let mut job = job_in(tx, job_id)?;
            if job.worker.as_ref() != Some(&worker.name) {
                return Err(TrustError::Forbidden(format!("job {job_id} is not claimed by {}", worker.name)));
            }
            if job.state == JobState::Running {
                self.end_job(tx, &mut job, JobState::Revoked, format!("worker {} stopped: {reason}", worker.name))?;
            }
            Ok(())
        })
    }
}

/// The highest epoch a worker may report metrics for (one record per epoch).
pub const MAX_METRIC_EPOCH: u32 = 100_000;
/// The most values one epoch's metrics may hold.
pub const MAX_METRIC_VALUES: usize = 16;

/// Bounds one epoch's metrics: an epoch up to [`MAX_METRIC_EPOCH`], at most
/// [`MAX_METRIC_VALUES`] values, each named by 1 to 64 of `a-z0-9_` and a finite number.
fn check_metrics(epoch: u32, values: &serde_json::Map<String, serde_json::Value>) -> Result<(), TrustError> {
    let bad = |why: String| Err(TrustError::BadRequest(format!("metrics: {why}")));
    if epoch > MAX_METRIC_EPOCH {
        return bad(format!("epoch {epoch} is past {MAX_METRIC_EPOCH}"));
    }
    if values.len() > MAX_METRIC_VALUES {
        return bad(format!("{} values, at most {MAX_METRIC_VALUES} per epoch", values.len()));
    }
    for (k, v) in values {
        let named = !k.is_empty()
            && k.len() <= 64
            && k.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
        if !named {
            return bad("a value's name must be 1 to 64 of a-z, 0-9 and _".into());
        }
        if !v.as_f64().is_some_and(f64::is_finite) {
            return bad(format!("`{k}` must be a finite number"));
        }
    }
    Ok(())
}

/// The error for a job that is no longer live.
pub(super) fn live_error(job: &JobRecord) -> TrustError {
    let why = job.reason.clone().unwrap_or_default();
    match job.state {
        JobState::Revoked => TrustError::Revoked(format!("job {} was revoked: {why}", job.id)),
        JobState::Expired => TrustError::Refused { reason: format!("job {} expired", job.id), failures: Vec::new() },
        JobState::Finished => {
            TrustError::Refused { reason: format!("job {} is finished", job.id), failures: Vec::new() }
        }
        JobState::Proposed => TrustError::Refused {
            reason: format!("job {} is not approved by every owner", job.id),
            failures: Vec::new(),
        },
        JobState::Ready | JobState::Running => {
            TrustError::Conflict(format!("job {} is {}", job.id, job.state.as_str()))
        }
    }
}

/// Whether `worker` may run a job of `manifest`: enrolled by the job's provider, and
/// named by the manifest (by name or EK digest) where it names workers.
pub(super) fn may_run(worker: &WorkerRecord, manifest: &JobManifest) -> Result<(), TrustError> {
    if worker.enrolled_by != manifest.provider {
        return Err(TrustError::Forbidden(format!(
            "worker {} was enrolled by {}, but the job runs on {}'s workers",
            worker.name, worker.enrolled_by, manifest.provider
        )));
    }
    if !manifest.workers.is_empty() {
        let by_ek = (!worker.ek_public.is_empty()).then(|| Digest::of(&worker.ek_public).to_string());
        let named =
            manifest.workers.contains(worker.name.as_str()) || by_ek.is_some_and(|d| manifest.workers.contains(&d));
        if !named {
            return Err(TrustError::Forbidden(format!(
                "the job does not name worker {} among its workers",
                worker.name
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(json: serde_json::Value) -> serde_json::Map<String, serde_json::Value> {
        json.as_object().cloned().unwrap_or_default()
    }

    #[test]
    fn metrics_are_bounded_named_and_finite() {
        assert!(check_metrics(1, &values(serde_json::json!({ "train_loss": 0.5, "val_accuracy": 0.9 }))).is_ok());
        assert!(check_metrics(MAX_METRIC_EPOCH, &values(serde_json::json!({}))).is_ok());
        let too_many: serde_json::Map<_, _> =
            (0..=MAX_METRIC_VALUES).map(|i| (format!("v{i}"), serde_json::json!(1.0))).collect();
        for (epoch, v, says) in [
            (MAX_METRIC_EPOCH + 1, values(serde_json::json!({})), "past"),
            (1, too_many, "at most"),
            (1, values(serde_json::json!({ "Loss": 1.0 })), "name must be"),
            (1, values(serde_json::json!({ "": 1.0 })), "name must be"),
            (1, values(serde_json::json!({ "x".repeat(65): 1.0 })), "name must be"),
            (1, values(serde_json::json!({ "loss": "1.0" })), "finite number"),
            (1, values(serde_json::json!({ "loss": null })), "finite number"),
        ] {
            let e = check_metrics(epoch, &v).unwrap_err();
            assert!(matches!(&e, TrustError::BadRequest(m) if m.contains(says)), "{e}");
        }
    }
}
