//! Jobs: proposal, approval, revocation, and what each party may see.
//!
//! A job is its manifest's digest: an edited manifest is another job, and approvals of
//! the first say nothing about it.

use perun_core::manifest::APPROVAL_CONTEXT;
use perun_core::{verify_digest, Digest, JobManifest, JobMode, Name, Role};

use super::Trust;
use crate::audit::{Actor, AuditKind, Event};
use crate::records::{ApprovalRecord, AssetRecord, JobRecord, JobState, MetricRecord, PolicyRecord, StakeholderRecord};
use crate::store::{Store, Tx, TxExt as _};
use crate::wire::{JobInfo, JobMetrics};
use crate::TrustError;
use perun_proto::OutputInfo;

/// Jobs one proposer may propose in all (ended ones stay in every party's list).
pub const MAX_JOBS_PER_PROPOSER: u64 = 10_000;

impl<S: Store> Trust<S> {
    /// Proposes a job. Every asset must be registered with the owner, kind and content
    /// digest the manifest names; the policy and receivers must exist.
    pub fn propose(&self, proposer: &Name, manifest: JobManifest) -> Result<JobInfo, TrustError> {
        manifest.validate().map_err(|e| TrustError::BadRequest(e.to_string()))?;
        let now = self.now();
        if manifest.expires_at <= now {
            return Err(TrustError::BadRequest("the manifest has already expired".into()));
        }
        let max = perun_core::manifest::MAX_JOB_LIFETIME_S;
        if manifest.created_at > now.saturating_add(300) || manifest.expires_at > now.saturating_add(max) {
            return Err(TrustError::BadRequest(format!(
                "created_at must not be in the future and a job may stay valid for at most {} days from now",
                max / 86_400
            )));
        }
        let id = manifest.digest();
        let job = self.store.write(|tx| {
            if tx.get::<JobRecord>(&id.to_string())?.is_some() {
                return Err(TrustError::Conflict(format!("job {id} was already proposed")));
            }
            // One party cannot fill every other party's lists: the jobs it proposes (which
            // stay listed once ended) are bounded, counted as it proposes them.
            let mut quota = super::quota_in(tx, crate::store::Table::Jobs, proposer)?;
            if quota.count >= MAX_JOBS_PER_PROPOSER {
                return Err(TrustError::TooManyRequests(format!(
                    "`{proposer}` has proposed {} jobs here, the most one proposer may: ask the operator",
                    quota.count
                )));
            }
            quota.count = quota.count.saturating_add(1);
            tx.put(&quota)?;
            for a in manifest.assets() {
                // One answer whether the asset is missing or registered otherwise: who
                // owns what, and what it holds, is its owner's to tell.
                let registered = tx.get::<AssetRecord>(a.asset.as_str())?;
                if !registered
                    .is_some_and(|r| r.owner == a.owner && r.kind == a.kind && r.content_digest == a.content_digest)
                {
                    return Err(TrustError::BadRequest(format!(
                        "asset `{}` is not registered with the owner, kind and content digest the manifest names: \
                         its owner's `perun asset list` shows its registration",
                        a.asset
                    )));
                }
            }
            let policy = policy_in(tx, &manifest.platform_policy)?.ok_or_else(|| {
                TrustError::BadRequest(format!(
                    "policy {} is not published here: `perun policy add` it first",
                    manifest.platform_policy
                ))
            })?;
            let provider = tx
                .get::<StakeholderRecord>(manifest.provider.as_str())?
                .ok_or_else(|| TrustError::BadRequest(format!("provider `{}` is not registered", manifest.provider)))?;
            if !provider.roles.contains(&Role::Provider) {
                return Err(TrustError::BadRequest(format!(
                    "`{}` is not registered as an infrastructure provider",
                    manifest.provider
                )));
            }
            if policy.owner != manifest.provider {
                return Err(TrustError::BadRequest(format!(
                    "policy {} was published by {}, not by the job's provider {}",
                    manifest.platform_policy, policy.owner, manifest.provider
                )));
            }
            if policy.policy.mode() != manifest.mode {
                return Err(TrustError::BadRequest(format!(
                    "policy {} is for `{}` jobs, but the manifest asks for `{}` mode",
                    manifest.platform_policy,
                    mode_name(policy.policy.mode()),
                    mode_name(manifest.mode)
                )));
            }
            super::terms::check_terms(tx, &manifest, now)?;
            for r in &manifest.approvers {
                if tx.get::<StakeholderRecord>(r.as_str())?.is_none() {
                    return Err(TrustError::BadRequest(format!("approver `{r}` is not registered")));
                }
            }
            for r in &manifest.receivers {
                match tx.get::<StakeholderRecord>(r.as_str())? {
                    None => return Err(TrustError::BadRequest(format!("receiver `{r}` is not registered"))),
                    Some(s) if !s.roles.contains(&Role::Receiver) => {
                        return Err(TrustError::BadRequest(format!("`{r}` is not registered as a receiver")))
                    }
                    Some(_) => {}
                }
            }
            let job = JobRecord {
                id,
                manifest: manifest.clone(),
                proposer: proposer.clone(),
                state: JobState::Proposed,
                worker: None,
                replay: None,
                claimed_at: None,
                last_attested_at: None,
                released: false,
                reason: None,
                outputs: Vec::new(),
                proposed_at: now,
                release_attestation: None,
                receipt: None,
                review: None,
                output_keys: Default::default(),
            };
            tx.put(&job)?;
            let e = Event::new(
                AuditKind::JobProposed,
                Actor::stakeholder(&proposer),
                format!("job `{}` proposed", manifest.name),
            );
            self.audit(tx, e.for_job(id, &manifest))?;
            Ok(job)
        })?;
        tracing::info!(job = %id, proposer = %proposer, "job proposed");
        self.job_info_unchecked(&job)
    }

    /// Records an owner's approval; the job turns ready when every owner has approved.
    pub fn approve(
        &self,
        approver: &Name,
        job_id: &Digest,
        signature: perun_core::Signature,
    ) -> Result<JobInfo, TrustError> {
        // A job the caller is no party of answers as a missing one: its parties and assets
        // are not told, nor written to a record the caller may read.
        let mut job = self.job_for(approver, job_id)?;
        if !job.manifest.required_approvers().contains(approver) {
            let err =
                TrustError::Forbidden(format!("{approver} owns no asset of job {job_id}: its approval is not asked"));
            return Err(self.refused(&Actor::stakeholder(approver), Some(&job), err));
        }
        let key = self
            .store
            .read(|tx| tx.get::<StakeholderRecord>(approver.as_str()))?
            .ok_or_else(|| TrustError::Unauthenticated(format!("{approver} is not registered")))?
            .identity
            .verifying_key()
            .map_err(|e| TrustError::Store(e.to_string()))?;
        if verify_digest(&key, APPROVAL_CONTEXT, &job.id, &signature).is_err() {
            let err = TrustError::Forbidden(format!(
                "the approval signature of {approver} does not cover job {job_id} (was the manifest edited?)"
            ));
            return Err(self.refused(&Actor::stakeholder(approver), Some(&job), err));
        }
        let result = self.store.write(|tx| {
            // Re-read inside the transaction: another approval may have landed.
            job = job_in(tx, job_id)?;
            self.apply_deadlines(tx, &mut job)?;
            if job.state != JobState::Proposed && job.state != JobState::Ready {
                return Ok(Err(TrustError::Conflict(format!("job {job_id} is {}", job.state.as_str()))));
            }
            let rec = ApprovalRecord { job: job.id, approver: approver.clone(), signature, at: self.now() };
            if tx.insert(&rec, None)? {
                let e =
                    Event::new(AuditKind::JobApproved, Actor::stakeholder(&approver), format!("{approver} approved"));
                self.audit(tx, e.for_job(job.id, &job.manifest))?;
            }
            if job.state == JobState::Proposed && self.missing_approvals(tx, &job)?.is_empty() {
                job.state = JobState::Ready;
                tx.put(&job)?;
                tracing::info!(job = %job.id, "job ready: every owner approved");
            }
            Ok(Ok(()))
        })?;
        result?;
        self.job_info_unchecked(&job)
    }

    /// The owners whose approval of `job` is missing, checking every stored signature
    /// again against the owner's registered key and the job digest.
    pub(crate) fn missing_approvals(&self, tx: &mut dyn Tx, job: &JobRecord) -> Result<Vec<Name>, TrustError> {
        let mut missing = Vec::new();
        for owner in job.manifest.required_approvers() {
            let approval: Option<ApprovalRecord> = tx.get(&format!("{}/{}", job.id, owner))?;
            let stakeholder: Option<StakeholderRecord> = tx.get(owner.as_str())?;
            let valid = match (approval, stakeholder) {
                (Some(a), Some(s)) => s
                    .identity
                    .verifying_key()
                    .ok()
                    .is_some_and(|k| verify_digest(&k, APPROVAL_CONTEXT, &job.id, &a.signature).is_ok()),
                _ => false,
            };
            if !valid {
                missing.push(owner.clone());
            }
        }
        Ok(missing)
    }

    /// Revokes a job at a party's request: its proposer, an asset owner, or the provider
    /// it names (a provider declines a job it will not run this way).
    pub fn revoke(&self, caller: &Name, job_id: &Digest, reason: &str) -> Result<JobInfo, TrustError> {
        if reason.len() > super::MAX_REVOKE_REASON {
            return Err(TrustError::BadRequest(format!(
                "a revocation's reason is at most {} bytes: say why in a sentence",
                super::MAX_REVOKE_REASON
            )));
        }
        let job = self.job_for(caller, job_id)?;
        let may = job.manifest.required_approvers().contains(caller)
            || &job.proposer == caller
            || &job.manifest.provider == caller;
        if !may {
            let err = TrustError::Forbidden(
                "only the proposer, an asset owner or the job's provider may revoke a job".into(),
            );
            return Err(self.refused(&Actor::stakeholder(caller), Some(&job), err));
        }
        let job = self.store.write(|tx| {
            let mut job = job_in(tx, job_id)?;
            if matches!(job.state, JobState::Proposed | JobState::Ready | JobState::Running) {
                self.end_job(tx, &mut job, JobState::Revoked, format!("revoked by {caller}: {reason}"))?;
            }
            Ok(job)
        })?;
        self.job_info_unchecked(&job)
    }

    /// A job, for one of its parties (proposer, owners, receivers).
    pub fn job(&self, caller: &Name, job_id: &Digest) -> Result<JobInfo, TrustError> {
        let job = self.job_for(caller, job_id)?;
        self.job_info_unchecked(&job)
    }

    /// Every job `caller` is a party of.
    pub fn jobs_of(&self, caller: &Name) -> Result<Vec<JobInfo>, TrustError> {
        let all: Vec<JobRecord> = self.store.read(|tx| tx.list_readable(""))?;
        all.iter().filter(|j| is_party(j, caller)).map(|j| self.job_info_unchecked(j)).collect()
    }

    /// A job's metrics, for its parties.
    pub fn job_metrics(&self, caller: &Name, job_id: &Digest) -> Result<JobMetrics, TrustError> {
        let job = self.job_for(caller, job_id)?;
        let epochs: Vec<MetricRecord> = self.store.read(|tx| tx.list(&format!("{}/", job.id)))?;
        Ok(JobMetrics { state: job.state, epochs })
    }

    pub(crate) fn job_record(&self, job_id: &Digest) -> Result<JobRecord, TrustError> {
        self.store.read(|tx| job_in(tx, job_id))
    }

    fn job_for(&self, caller: &Name, job_id: &Digest) -> Result<JobRecord, TrustError> {
        let job = self.job_record(job_id)?;
        if !is_party(&job, caller) {
            // Not revealing whether the job exists.
            return Err(TrustError::NotFound(format!("no job {job_id}")));
        }
        Ok(job)
    }

    fn job_info_unchecked(&self, job: &JobRecord) -> Result<JobInfo, TrustError> {
        let (approvals, missing) = self.store.read(|tx| {
            let a: Vec<ApprovalRecord> = tx.list(&format!("{}/", job.id))?;
            Ok((a, self.missing_approvals(tx, job)?))
        })?;
        Ok(JobInfo {
            id: job.id,
            manifest: job.manifest.clone(),
            proposer: job.proposer.clone(),
            state: job.state,
            approved_by: approvals.into_iter().map(|a| a.approver).filter(|a| !missing.contains(a)).collect(),
            missing,
            worker: job.worker.clone(),
            last_attested_at: job.last_attested_at,
            released: job.released,
            reason: job.reason.clone(),
            // The output keys wrapped to the service stay with the service: a party needs
            // only its own key (`output_key`), never another's.
            outputs: job.outputs.iter().map(|o| OutputInfo { wrapped_key: None, ..o.clone() }).collect(),
            under_review: job.review.is_some(),
            review: job.review.clone(),
            has_receipt: job.receipt.is_some(),
        })
    }
}

/// A job id as a path names it: `sha256:` and 64 hex digits, read once where a request
/// arrives.
///
/// Errors: [`TrustError::NotFound`] naming the form, with at most 80 characters of what
/// was sent.
pub fn parse_job_id(text: &str) -> Result<Digest, TrustError> {
    text.parse().map_err(|_| {
        let shown: String = text.chars().take(80).collect();
        TrustError::NotFound(format!("no job {shown}: a job id is sha256: and 64 hex digits"))
    })
}

/// A job by id inside a transaction ([`parse_job_id`] read the id, so its hex in any
/// case names the same job).
pub(crate) fn job_in(tx: &mut dyn Tx, job_id: &Digest) -> Result<JobRecord, TrustError> {
    let id = *job_id;
    let job: JobRecord = tx.get(&id.to_string())?.ok_or_else(|| TrustError::NotFound(format!("no job {id}")))?;
    // Approvals sign the manifest's digest: a stored manifest that no longer hashes to
    // its id was edited in the store, and nothing may be decided on it.
    if job.manifest.digest() != job.id {
        return Err(TrustError::Store(format!(
            "the stored manifest of job {id} does not hash to its id: the store was edited"
        )));
    }
    Ok(job)
}

/// The published policy `digest` inside a transaction, checked to hash to its digest
/// (the one manifests and approvals name).
pub(crate) fn policy_in(tx: &mut dyn Tx, digest: &perun_core::Digest) -> Result<Option<PolicyRecord>, TrustError> {
    let policy: Option<PolicyRecord> = tx.get(&digest.to_string())?;
    if let Some(p) = &policy {
        if p.policy.digest() != *digest || p.digest != *digest {
            return Err(TrustError::Store(format!(
                "the stored policy {digest} does not hash to its digest: the store was edited"
            )));
        }
    }
    Ok(policy)
}

/// Whether `who` is a party of `job`: its proposer, an asset owner, an approver, a
/// receiver or its provider.
pub fn is_party(job: &JobRecord, who: &Name) -> bool {
    &job.proposer == who
        || &job.manifest.provider == who
        || job.manifest.required_approvers().contains(who)
        || job.manifest.receivers.contains(who)
}

/// A mode as manifests spell it.
pub(crate) fn mode_name(mode: JobMode) -> &'static str {
    match mode {
        JobMode::Attested => "attested",
        JobMode::Tee => "tee",
    }
}
