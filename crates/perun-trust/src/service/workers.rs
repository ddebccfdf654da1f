//! Workers: enrolment by the infrastructure provider, AK proof by credential activation,
//! claims, attestation and key release, continuous attestation, metrics and outputs.
//!
//! [`Trust::attest`] is where docs/architecture.md, section 2 is decided: approvals (rule 1), fresh
//! evidence from an activated AK that satisfies the job's policy (rule 2), keys sealed to
//! the ephemeral key the evidence binds (rule 3), a live job (rule 4).

use std::sync::atomic::Ordering;

use perun_attest::ek::{EkPolicy, EkVerdict};
use perun_attest::evidence::Endorsement;
use perun_attest::tpm::{make_credential, AkPublic};
use perun_attest::verifier::{AttestationResult, TpmVerifier, Verifier as _};
use perun_attest::AttestError;
use perun_attest::JobPolicy;
use perun_core::{Digest, HexBytes, JobManifest, JobMode, Name, Role};
use perun_proto::{EphemeralPublicKey, Nonce, PolicyDocument};
use perun_seal::release::{check_public_key, release_info, seal_to};
use perun_seal::wrap::WrapContext;
use zeroize::Zeroizing;

use super::jobs::{job_in, policy_in};
use super::Trust;
use crate::audit::{Actor, AuditKind, Event};
use crate::records::{
    AssetRecord, JobRecord, JobState, MetricRecord, PolicyRecord, ReleaseRecord, SessionRecord, StakeholderRecord,
    WorkerRecord, WorkerState,
};
use crate::store::{Store, Tx, TxExt as _};
use crate::wire::{
    ActivateAk, AssetLocation, Attest, Attested, Claimed, CredentialChallenge, EnrolWorker, NonceIssued, OfferedJob,
    ReleasedKey, WorkerInfo,
};
use crate::TrustError;

/// An appraised TPM attestation: the job's IMA state it was appraised from, the
/// Attestation Result and the state it moves to; `None` when a cheap check failed.
pub(super) type TpmAppraisal =
    Option<(Option<perun_attest::ima::ReplayState>, (AttestationResult, Option<perun_attest::ima::ReplayState>))>;

impl<S: Store> Trust<S> {
    /// Enrols a worker's TPM (by the infrastructure provider `by`): its EK public area
    /// and the manufacturer's EK certificate of it. The certificate must certify this EK
    /// (its chain to a root is checked against each job's policy, before any release).
    /// One EK is one worker: an EK enrolled under another name is refused until that
    /// worker is de-enrolled.
    pub fn enrol_worker(&self, by: &Name, body: EnrolWorker) -> Result<WorkerInfo, TrustError> {
        self.require_role(by, Role::Provider, "enrolling a worker")?;
        let name = body.name;
        let ek =
            AkPublic::parse(&body.ek_public).map_err(|e| TrustError::BadRequest(format!("EK public area: {e}")))?;
        use perun_attest::tpm::public::attributes::{DECRYPT, RESTRICTED};
        if ek.attributes & (DECRYPT | RESTRICTED) != (DECRYPT | RESTRICTED) {
            return Err(TrustError::BadRequest("the EK must be a restricted decryption (storage) key".into()));
        }
        if body.ek_certificate.is_empty() {
            return Err(TrustError::BadRequest(
                "an EK certificate is required: a TPM without its manufacturer's certificate cannot be enrolled".into(),
            ));
        }
        if body.ek_chain.len() > 4 {
            return Err(TrustError::BadRequest("at most 4 intermediate certificates".into()));
        }
        let certificate = perun_attest::ek::cert_der(&body.ek_certificate)
            .map_err(|e| TrustError::BadRequest(format!("EK certificate: {e}")))?;
        let mut chain = Vec::new();
        for c in &body.ek_chain {
            let der = perun_attest::ek::cert_der(c.as_ref())
                .map_err(|e| TrustError::BadRequest(format!("EK chain certificate: {e}")))?;
            chain.push(HexBytes(der));
        }
        let certified = perun_attest::ek::certified_key(&certificate)
            .map_err(|e| TrustError::BadRequest(format!("EK certificate: {e}")))?;
        if certified != ek.key {
            return Err(TrustError::BadRequest(
                "the EK certificate certifies another key than this EK: it is not this TPM's certificate".into(),
            ));
        }
        let ek_digest = Digest::of(&ek.tpmt);
        let record = WorkerRecord {
            name: name.clone(),
            enrolled_by: by.clone(),
            ek_public: ek.tpmt.clone(),
            ek_certificate: certificate,
            ek_chain: chain,
            ak_public: None,
            token_hash: None,
            state: WorkerState::Enrolled,
            enrolled_at: self.now(),
            tee: None,
        };
        self.store.write(|tx| {
            if let Some(w) = tx.get::<WorkerRecord>(name.as_str())? {
                if w.state != WorkerState::Deenrolled {
                    return Err(TrustError::Conflict(format!("a worker named `{name}` is already enrolled")));
                }
            }
            // The same key is the same TPM, whatever else its public area says (exponent
            // spelled 0 or 65537, attributes, auth policy).
            let all: Vec<WorkerRecord> = tx.list("")?;
            if let Some(w) = all.iter().find(|w| {
                w.state != WorkerState::Deenrolled
                    && w.tee.is_none()
                    && AkPublic::parse(&w.ek_public).is_ok_and(|other| other.key == ek.key)
            }) {
                return Err(TrustError::Conflict(format!(
                    "this EK ({ek_digest}) is already enrolled as worker `{}`: one TPM is one worker (de-enrol it first)",
                    w.name
                )));
            }
            tx.put(&record)?;
            let mut e = Event::new(
                AuditKind::WorkerEnrolled,
                Actor::stakeholder(by),
                format!("worker {name} EK {ek_digest} certified by {}", issuer_of(&record)),
            );
            e.parties = vec![by.clone()];
            self.audit(tx, e)
        })?;
        Ok(worker_info(&record))
    }

    /// De-enrols a worker (by the provider that enrolled it): it can no longer
    /// authenticate, and a job it runs is revoked.
    pub fn deenrol_worker(&self, by: &Name, name: &str) -> Result<WorkerInfo, TrustError> {
        self.store.write(|tx| {
            let mut w = tx
                .get::<WorkerRecord>(name)?
                .filter(|w| &w.enrolled_by == by && w.tee.is_none())
                .ok_or_else(|| TrustError::NotFound(format!("`{by}` enrolled no worker `{name}`")))?;
            w.state = WorkerState::Deenrolled;
            w.token_hash = None;
            tx.put(&w)?;
            for mut job in tx.list::<JobRecord>("")? {
                if job.state == JobState::Running && job.worker.as_ref() == Some(&w.name) {
                    self.end_job(tx, &mut job, JobState::Revoked, format!("worker {name} was de-enrolled by {by}"))?;
                }
            }
            let mut e =
                Event::new(AuditKind::WorkerEnrolled, Actor::stakeholder(&by), format!("worker {name} de-enrolled"));
            e.parties = vec![by.clone()];
            self.audit(tx, e)?;
            Ok(worker_info(&w))
        })
    }

    /// The workers `by` enrolled (de-enrolled ones left out).
    pub fn workers_of(&self, by: &Name) -> Result<Vec<WorkerInfo>, TrustError> {
        let all: Vec<WorkerRecord> = self.store.read(|tx| tx.list(""))?;
        Ok(all.iter().filter(|w| &w.enrolled_by == by && w.state != WorkerState::Deenrolled).map(worker_info).collect())
    }

    /// A worker presents its EK and AK; the answer is a credential only the enrolled TPM
    /// can recover, and only for that AK. Anonymous, so it writes nothing: the secret is
    /// derived from the worker, its EK, the AK and the time
    /// ([`crate::nonce::NonceIssuer::credential_secret`]) and recomputed on activation.
    pub fn present_ak(
        &self,
        name: &Name,
        ek_public: &[u8],
        ak_public: &[u8],
    ) -> Result<CredentialChallenge, TrustError> {
        let worker = self.enrolled_tpm(name)?;
        let ek = AkPublic::parse(ek_public).map_err(|e| TrustError::BadRequest(format!("EK public area: {e}")))?;
        if ek.tpmt != worker.ek_public {
            let err = TrustError::Forbidden(format!("worker `{name}` presented an EK other than the enrolled one"));
            return Err(self.refused_worker(&worker, err));
        }
        let ak = AkPublic::parse(ak_public).map_err(|e| TrustError::BadRequest(format!("AK public area: {e}")))?;
        ak.check_attestation_key().map_err(|e| TrustError::BadRequest(e.to_string()))?;
        let issued_at = self.now();
        let secret = Zeroizing::new(self.nonces.credential_secret(name, &worker.ek_public, &ak.tpmt, issued_at));
        let cred = make_credential(&ek, &ak.name, &secret[..]).map_err(|e| TrustError::BadRequest(e.to_string()))?;
        Ok(CredentialChallenge { credential_blob: cred.credential_blob, secret: cred.secret, issued_at })
    }

    /// A worker proves its TPM recovered the credential: its AK is accepted, and the
    /// credential becomes its access token. Nothing changes unless the credential is
    /// the one [`Self::present_ak`] made for this worker's enrolled EK and this AK, less
    /// than the challenge validity ago: a wrong answer leaves the worker as it was.
    pub fn activate(&self, name: &Name, body: &ActivateAk) -> Result<(), TrustError> {
        let actor = Actor::worker(name);
        let now = self.now();
        let worker = self.enrolled_tpm(name)?;
        let expected =
            Zeroizing::new(self.nonces.credential_secret(name, &worker.ek_public, &body.ak_public, body.issued_at));
        let valid = self.config.challenge_valid_s;
        if body.issued_at > now.saturating_add(5) || now > body.issued_at.saturating_add(valid) {
            let err = TrustError::Forbidden("the credential challenge expired: present the AK again".into());
            return Err(self.refused_worker(&worker, err));
        }
        if !crate::nonce::constant_time_eq(&expected[..], &body.credential) {
            let err = TrustError::Forbidden(format!(
                "worker `{name}` did not recover the credential: its AK is not in the enrolled TPM"
            ));
            return Err(self.refused_worker(&worker, err));
        }
        let enrolled_ek = worker.ek_public;
        self.store.write(|tx| {
            // On the record as it is now: a de-enrolment that landed meanwhile is kept.
            let current = tx.get::<WorkerRecord>(name.as_str())?;
            let Some(mut current) =
                current.filter(|w| w.state != WorkerState::Deenrolled && w.tee.is_none() && w.ek_public == enrolled_ek)
            else {
                return Err(TrustError::Forbidden(format!("worker `{name}` is not enrolled")));
            };
            current.ak_public = Some(body.ak_public.clone());
            current.token_hash = Some(Digest::of(&body.credential));
            current.state = WorkerState::Active;
            tx.put(&current)?;
            // A new AK and token while a job runs would let whoever holds the TPM (the
            // host's root) speak for the attested process that holds the job's keys: the
            // jobs it runs end here. A restarted worker lost those keys anyway.
            let running: Vec<JobRecord> = tx
                .list::<JobRecord>("")?
                .into_iter()
                .filter(|j| j.state == JobState::Running && j.worker.as_ref() == Some(name))
                .collect();
            for mut job in running {
                let reason =
                    format!("worker {name} proved a new AK while it ran the job: the job's keys stay with the old one");
                self.end_job(tx, &mut job, JobState::Revoked, reason)?;
            }
            let mut e = Event::new(AuditKind::WorkerActivated, actor.clone(), "AK proven by credential activation");
            e.parties = vec![current.enrolled_by.clone()];
            self.audit(tx, e)
        })
    }

    /// The enrolled TPM worker `name`, for an anonymous enrolment step. An unknown name
    /// is refused without an audit record: nothing an anonymous caller chooses is
    /// written.
    fn enrolled_tpm(&self, name: &Name) -> Result<WorkerRecord, TrustError> {
        let worker = self.store.read(|tx| tx.get::<WorkerRecord>(name.as_str()))?;
        worker.filter(|w| w.state != WorkerState::Deenrolled && w.tee.is_none()).ok_or_else(|| {
            self.metrics.requests_refused.fetch_add(1, Ordering::Relaxed);
            TrustError::Forbidden(format!(
                "worker `{name}` is not enrolled: the infrastructure provider must run `perun worker enrol` first"
            ))
        })
    }

    /// Authenticates a worker by its access token.
    pub fn authenticate_worker(&self, name: &str, token: &[u8]) -> Result<WorkerRecord, TrustError> {
        let worker: Option<WorkerRecord> = self.store.read(|tx| tx.get(name))?;
        let Some(worker) = worker else {
            return Err(TrustError::Unauthenticated(format!("worker `{name}` is not enrolled")));
        };
        match (&worker.token_hash, worker.state) {
            (Some(h), WorkerState::Active) if *h == Digest::of(token) => Ok(worker),
            (_, WorkerState::Deenrolled) => {
                Err(TrustError::Unauthenticated(format!("worker `{name}` was de-enrolled by its provider")))
            }
            (_, WorkerState::Enrolled) => {
                let err = TrustError::Unauthenticated(format!(
                    "worker `{name}` has no activated AK: present the AK and activate the credential first"
                ));
                Err(self.refused_worker(&worker, err))
            }
            _ => {
                let err = TrustError::Unauthenticated(format!("worker `{name}` presented a wrong access token"));
                Err(self.refused_worker(&worker, err))
            }
        }
    }

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

    /// Rule 1 and 4 for `job`, from the store: every owner's approval verifies against
    /// the current manifest digest, and the job is live.
    pub(super) fn check_releasable(&self, tx: &mut dyn Tx, job: &JobRecord) -> Result<(), TrustError> {
        let missing = self.missing_approvals(tx, job)?;
        if !missing.is_empty() {
            let names: Vec<&str> = missing.iter().map(|n| n.as_str()).collect();
            return Err(TrustError::Refused {
                reason: format!("job {} lacks the approval of {}", job.id, names.join(", ")),
                failures: Vec::new(),
            });
        }
        if !matches!(job.state, JobState::Ready | JobState::Running) {
            return Err(live_error(job));
        }
        super::terms::check_terms(tx, &job.manifest, self.now())
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

    /// Appraises a worker's evidence for a job. Accepted: the replay state is saved, and
    /// on the job's first acceptance every asset key is sealed to the ephemeral key the
    /// evidence binds. Refused: the job is revoked, and nothing is released.
    pub fn attest(&self, worker: &WorkerRecord, job_id: &Digest, req: Attest) -> Result<Attested, TrustError> {
        let actor = Actor::worker(&worker.name);
        let started = std::time::Instant::now();
        let eph = req.ephemeral_key;
        check_public_key(&eph).map_err(|e| TrustError::BadRequest(format!("the ephemeral key: {e}")))?;
        // The service binds its own certificate: evidence a worker made for a relay that
        // terminated its TLS (and could rewrite what the worker is told) fails here.
        let service = self.keys.tls_fingerprint();
        let appraisal = self.appraise_tpm(worker, job_id, &req, |nonce, job| {
            Digest::evidence_binding(&service, nonce.as_bytes(), job, eph.as_bytes())
        })?;
        let outcome = self.store.write(|tx| {
            let (mut job, live) = self.running_job(tx, job_id, &worker.name)?;
            if let Err(e) = live {
                return Ok(Err((job, e)));
            }
            // Rule 1 is checked again (every signature) whenever keys are about to leave;
            // a re-attestation of a job whose keys left already releases nothing.
            if !job.released {
                if let Err(e) = self.check_releasable(tx, &job) {
                    return Ok(Err((job, e)));
                }
            }
            let (result, new_entries) = match self.decide_tpm(tx, &mut job, worker, &req, appraisal)? {
                Ok(decided) => decided,
                Err(e) => return Ok(Err((job, e))),
            };
            let evidence = Digest::of(&serde_json::to_vec(&req.evidence).unwrap_or_default());
            let keys = self.release_keys(tx, &mut job, &worker.name, &req.ephemeral_key, evidence, &result)?;
            tx.put(&job)?;
            Ok(Ok(self.attested(&job, &worker.name, new_entries, keys)))
        })?;
        self.metrics.observe_attestation(started.elapsed());
        match outcome {
            Ok(a) => {
                self.metrics.attestations_accepted.fetch_add(1, Ordering::Relaxed);
                tracing::info!(job = %job_id, worker = %worker.name, released = a.keys.len(), "attestation accepted");
                Ok(a)
            }
            Err((job, e)) => Err(self.attestation_refused(&actor, &job, worker, e)),
        }
    }

    /// Whether `worker` may send evidence for `job_id` now: only for a job running on it.
    /// Checked before an evidence body is read or an evidence slot taken, so that a
    /// worker's token alone (which the host's root can read) cannot hold the slots the
    /// attesting workers of other jobs need. Refused as the attestation itself would be.
    pub fn admit_evidence(&self, worker: &WorkerRecord, job_id: &Digest) -> Result<(), TrustError> {
        let (job, _) = self.job_and_policy(job_id)?;
        self.check_running_by(&job, &worker.name)
            .map_err(|e| self.attestation_refused(&Actor::worker(&worker.name), &job, worker, e))
    }

    /// How a refused attestation answers: a revoked job's refusal is already audited.
    pub(super) fn attestation_refused(
        &self,
        actor: &Actor,
        job: &JobRecord,
        worker: &WorkerRecord,
        e: TrustError,
    ) -> TrustError {
        match e {
            e @ TrustError::Revoked(_) => e,
            e @ TrustError::Refused { .. } if job.state == JobState::Revoked => {
                self.metrics.requests_refused.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(job = %job.id, worker = %worker.name, reason = %e, "attestation refused; job revoked");
                e
            }
            e => self.refused(actor, Some(job), e),
        }
    }

    /// The expensive half of a TPM attestation: the quote's signature, the IMA replay
    /// and the policy, appraised on the job's replay state as read now, outside the
    /// store's write lock, so attestations of different jobs are appraised in parallel.
    /// `binding` makes the quote's qualifying data from the nonce and the job:
    /// `Digest::evidence_binding` with this service's certificate and the ephemeral key
    /// for a key release, `FinishJob::binding` for a finish. `None` when a cheap check fails (job not
    /// running on this worker, nonce not issued); [`Self::decide_tpm`] then says which.
    pub(super) fn appraise_tpm(
        &self,
        worker: &WorkerRecord,
        job_id: &Digest,
        req: &Attest,
        binding: impl FnOnce(&Nonce, &Digest) -> Digest,
    ) -> Result<TpmAppraisal, TrustError> {
        let (seen, policy) = self.job_and_policy(job_id)?;
        let ak = worker.ak_public.as_deref().map(AkPublic::parse);
        let ek = AkPublic::parse(&worker.ek_public);
        let chain = chain_of(worker);
        // Cheap checks first: evidence is appraised only for the job's own worker, with a
        // nonce this service issued to it lately (the write decides and spends it).
        let cheap = seen.state == JobState::Running
            && seen.worker.as_ref() == Some(&worker.name)
            && self.nonces.check(&req.nonce, &seen.id, &worker.name, self.now(), self.config.nonce_valid_s).is_ok();
        Ok(match (&policy, &ak, &ek) {
            (Some(PolicyRecord { policy: JobPolicy::Platform(policy), .. }), Some(Ok(ak)), Ok(ek)) if cheap => {
                let binding = binding(&req.nonce, &seen.id);
                let state = seen.replay.clone().unwrap_or_default();
                let endorsement = Endorsement { ek, certificate: &worker.ek_certificate, chain: &chain };
                let verifier = TpmVerifier { policy, endorsement, ak, state: &state };
                Some((seen.replay.clone(), verifier.appraise(&req.evidence, binding.as_bytes())))
            }
            _ => None,
        })
    }

    /// The decision on an appraised TPM attestation, inside the write `tx`: spends the
    /// nonce, checks the job's replay state is still the one appraised, audits the
    /// Attestation Result (a refusal revokes the job) and moves the job's IMA state on.
    /// Returns the result and the number of new IMA entries; the inner error refuses the
    /// evidence.
    pub(super) fn decide_tpm(
        &self,
        tx: &mut dyn Tx,
        job: &mut JobRecord,
        worker: &WorkerRecord,
        req: &Attest,
        appraisal: TpmAppraisal,
    ) -> Result<Result<(AttestationResult, usize), TrustError>, TrustError> {
        if let Err(e) = self.spend_nonce(tx, &req.nonce, job, &worker.name, true)? {
            return Ok(Err(e));
        }
        if !matches!(worker.ak_public.as_deref().map(AkPublic::parse), Some(Ok(_))) {
            return Ok(Err(TrustError::Forbidden(format!("worker {} has no activated AK", worker.name))));
        }
        let Some((appraised_from, (result, next))) = appraisal else {
            // Every cheap check passed in this transaction, so one failed at the read
            // before: the job changed meanwhile.
            return Ok(Err(TrustError::Conflict(
                "the job changed while the evidence arrived: send new evidence with a new nonce".into(),
            )));
        };
        if appraised_from != job.replay {
            return Ok(Err(TrustError::Conflict(
                "another attestation of this job was decided meanwhile: send new evidence with a new nonce".into(),
            )));
        }
        let actor = Actor::worker(&worker.name);
        if let Err(e) = self.record_result(tx, job, Some(&actor), &result, true)? {
            return Ok(Err(e));
        }
        let state = job.replay.clone().unwrap_or_default();
        let new_entries = next.as_ref().map_or(0, |n| n.entries.saturating_sub(state.entries));
        job.replay = Some(next.unwrap_or(state));
        Ok(Ok((result, new_entries)))
    }

    /// The one release decision's verdict (docs/architecture.md, section 2), for TPM and TEE
    /// evidence alike: the Attestation Result goes into the audit log under `actor`
    /// (`None`: an unauthenticated sender's refused report, which its caller audits as
    /// an anonymous, rate-limited refusal instead); a refusal ends the job if `revoke` (a
    /// running job's worker lost its integrity), and refuses the request; an acceptance
    /// marks the job attested now. Keys are released by the caller
    /// ([`Self::release_keys`]) only after an `Ok`.
    pub(super) fn record_result(
        &self,
        tx: &mut dyn Tx,
        job: &mut JobRecord,
        actor: Option<&Actor>,
        result: &AttestationResult,
        revoke: bool,
    ) -> Result<Result<(), TrustError>, TrustError> {
        if let Some(actor) = actor {
            let kind = if result.accepted() { AuditKind::AttestationAccepted } else { AuditKind::AttestationRefused };
            let ev = Event::new(kind, actor.clone(), result.describe());
            self.audit(tx, ev.for_job(job.id, &job.manifest))?;
        }
        if !result.accepted() {
            self.metrics.attestations_refused.fetch_add(1, Ordering::Relaxed);
            let reasons: Vec<String> = result.failures.iter().map(|f| f.to_string()).collect();
            let reason = format!("attestation refused: {}", reasons.join("; "));
            if revoke {
                self.end_job(tx, job, JobState::Revoked, reason.clone())?;
            }
            return Ok(Err(TrustError::Refused { reason, failures: result.failures.clone() }));
        }
        job.last_attested_at = Some(self.now());
        Ok(Ok(()))
    }

    /// A job and the policy it names, as they are now (read outside the write lock, for
    /// an appraisal whose result the write then checks against the job's state).
    pub(super) fn job_and_policy(&self, job_id: &Digest) -> Result<(JobRecord, Option<PolicyRecord>), TrustError> {
        self.store.read(|tx| {
            let job = job_in(tx, job_id)?;
            let policy = policy_in(tx, &job.manifest.platform_policy)?;
            Ok((job, policy))
        })
    }

    /// Spends an attestation nonce inside `tx`: it must have been issued by this service,
    /// to `worker`, for `job`, recently, and never used; it is spent whatever the verdict.
    /// The inner error refuses the evidence; it is audited here under the worker's name
    /// when `authenticated` (the caller proved it is that worker), and left to the caller's
    /// rate-limited anonymous refusal otherwise (a name an anonymous sender chose is
    /// never an audit actor).
    pub(super) fn spend_nonce(
        &self,
        tx: &mut dyn Tx,
        nonce: &Nonce,
        job: &JobRecord,
        worker: &Name,
        authenticated: bool,
    ) -> Result<Result<(), TrustError>, TrustError> {
        let valid = self.config.nonce_valid_s;
        let fresh = match self.nonces.check(nonce, &job.id, worker, self.now(), valid) {
            Ok(issued_at) => {
                // Recorded as its bytes (lower-case hex): the same nonce sent in another
                // case is the same nonce.
                let s = SessionRecord {
                    nonce: nonce.to_string(),
                    job: job.id,
                    worker: worker.clone(),
                    issued_at,
                    used: true,
                };
                if tx.insert(&s, Some(issued_at.saturating_add(valid).saturating_add(60)))? {
                    Ok(())
                } else {
                    Err("the nonce was already used".to_owned())
                }
            }
            Err(why) => Err(why),
        };
        Ok(match fresh {
            Ok(()) => Ok(()),
            Err(why) => {
                let e = TrustError::Refused { reason: why, failures: Vec::new() };
                if authenticated {
                    let ev = Event::new(AuditKind::AttestationRefused, Actor::worker(worker), e.to_string());
                    self.audit(tx, ev.for_job(job.id, &job.manifest))?;
                }
                Err(e)
            }
        })
    }

    /// On a job's first accepted evidence: every asset key, unwrapped from the store and
    /// sealed (HPKE) to the ephemeral key the evidence bound, each release audited. Later
    /// evidence releases nothing.
    pub(super) fn release_keys(
        &self,
        tx: &mut dyn Tx,
        job: &mut JobRecord,
        worker: &Name,
        ephemeral_key: &EphemeralPublicKey,
        evidence: Digest,
        result: &AttestationResult,
    ) -> Result<Vec<ReleasedKey>, TrustError> {
        let mut keys = Vec::new();
        if job.released {
            return Ok(keys);
        }
        // The terms were checked with the job's approvals in this transaction
        // (`check_releasable`); the ledger is charged before any key leaves.
        self.charge_ledger(tx, job)?;
        job.release_attestation = Some(perun_core::receipt::ReceiptAttestation {
            evidence,
            result: Digest::of(&serde_json::to_vec(result).unwrap_or_default()),
            attester: result.attester.clone(),
            claims: result.claims.clone(),
        });
        for a in job.manifest.assets() {
            let rec: AssetRecord =
                tx.get(a.asset.as_str())?.ok_or_else(|| TrustError::Store(format!("asset {} vanished", a.asset)))?;
            // The stored key must be the one this asset's owner registered: a key moved
            // between asset records in the store names another asset and is refused.
            let context = WrapContext::asset_key(&rec.owner, &rec.name, rec.kind, &rec.content_digest);
            let key = perun_seal::wrap::unwrap(&rec.wrapped_key, self.keys.wrap.identity(), &context)?;
            let sealed = seal_to(ephemeral_key, &release_info(&job.id, a.asset.as_str()), &key)?;
            tx.put(&ReleaseRecord {
                job: job.id,
                asset: a.asset.clone(),
                worker: worker.clone(),
                ephemeral_key: ephemeral_key.to_string(),
                at: self.now(),
            })?;
            let detail = format!("key of {} sealed to {worker}'s attested key {ephemeral_key}", a.asset);
            let mut ev = Event::new(AuditKind::KeyReleased, Actor::Service, detail).for_job(job.id, &job.manifest);
            ev.assets = vec![a.asset.clone()];
            self.audit(tx, ev)?;
            keys.push(ReleasedKey { asset: a.asset.clone(), sealed });
        }
        job.released = true;
        self.metrics.keys_released.fetch_add(keys.len() as u64, Ordering::Relaxed);
        Ok(keys)
    }

    /// The answer to accepted evidence, with the nonce for the next round.
    pub(super) fn attested(
        &self,
        job: &JobRecord,
        worker: &Name,
        new_entries: usize,
        keys: Vec<ReleasedKey>,
    ) -> Attested {
        Attested {
            new_entries,
            keys,
            next_in_s: job.manifest.attestation_interval_s,
            next_nonce: NonceIssued {
                nonce: self.nonces.issue(&job.id, worker, self.now()),
                valid_s: self.config.nonce_valid_s,
            },
        }
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

/// The intermediates a worker's enrolment presented, as DER.
fn chain_of(w: &WorkerRecord) -> Vec<Vec<u8>> {
    w.ek_chain.iter().map(|c| c.0.clone()).collect()
}

/// What a worker's enrolled EK certificate chains to under `ek` roots.
fn ek_verdict(w: &WorkerRecord, ek: &EkPolicy) -> Result<EkVerdict, AttestError> {
    let key = AkPublic::parse(&w.ek_public)?.key;
    perun_attest::ek::verify_ek(&w.ek_certificate, &chain_of(w), &key, ek)
}

/// Whether `worker`'s EK certificate chains to a root `policy` lists.
fn genuine_tpm(worker: &WorkerRecord, policy: &perun_attest::policy::PlatformPolicy) -> Result<(), TrustError> {
    ek_verdict(worker, &policy.ek).map(|_| ()).map_err(|e| TrustError::Refused {
        reason: format!("worker {}'s TPM is not one this job's policy trusts: {e}", worker.name),
        failures: Vec::new(),
    })
}

/// The issuer of a worker's EK certificate, as text.
fn issuer_of(w: &WorkerRecord) -> String {
    perun_attest::ek::issuer(&w.ek_certificate).unwrap_or_default()
}

fn worker_info(w: &WorkerRecord) -> WorkerInfo {
    WorkerInfo {
        name: w.name.clone(),
        enrolled_by: w.enrolled_by.clone(),
        state: w.state,
        ek_digest: Digest::of(&w.ek_public),
        ek_issuer: issuer_of(w),
        ek_bundle_group: bundle_group_of(w),
    }
}

/// The group of the shipped bundle that vouches for a worker's TPM, or empty.
fn bundle_group_of(w: &WorkerRecord) -> String {
    EkPolicy::from_bundle(&["hardware", "cloud"]).and_then(|b| ek_verdict(w, &b)).map(|v| v.group).unwrap_or_default()
}
