//! The release decision: [`Trust::attest`] is where docs/architecture.md, section 2 is
//! decided: approvals (rule 1), fresh evidence from an activated AK that satisfies the
//! job's policy (rule 2), keys sealed to the ephemeral key the evidence binds (rule 3), a
//! live job (rule 4). The nonce is spent and the Attestation Result audited in the same
//! transaction as the release.

use std::sync::atomic::Ordering;

use perun_attest::evidence::Endorsement;
use perun_attest::tpm::AkPublic;
use perun_attest::verifier::{AttestationResult, TpmVerifier, Verifier as _};
use perun_attest::JobPolicy;
use perun_core::{Digest, Name};
use perun_proto::{EphemeralPublicKey, Nonce};
use perun_seal::release::{check_public_key, release_info, seal_to};
use perun_seal::wrap::WrapContext;

use super::enrolment::chain_of;
use super::jobs::{job_in, policy_in};
use super::workers::live_error;
use super::Trust;
use crate::audit::{Actor, AuditKind, Event};
use crate::records::{AssetRecord, JobRecord, JobState, PolicyRecord, ReleaseRecord, SessionRecord, WorkerRecord};
use crate::store::{Store, Tx, TxExt as _};
use crate::wire::{Attest, Attested, NonceIssued, ReleasedKey};
use crate::TrustError;

/// An appraised TPM attestation: the job's IMA state it was appraised from, the
/// Attestation Result and the state it moves to; `None` when a cheap check failed.
pub(super) type TpmAppraisal =
    Option<(Option<perun_attest::ima::ReplayState>, (AttestationResult, Option<perun_attest::ima::ReplayState>))>;

impl<S: Store> Trust<S> {
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

    /// [`Self::check_releasable`], and, for evidence the appraisal accepted, rule 3's
    /// precondition: the ephemeral key it binds (`key`) can be sealed to (not a low-order
    /// X25519 point, RFC 9180 section 7.1.4). Checked only where keys are about to leave,
    /// before anything is decided, so an unusable key is refused (400) with nothing spent
    /// or released. Evidence the appraisal refused (`key` is `None`) goes on to be refused
    /// as such, revoking the job, whatever key it binds.
    pub(super) fn check_release_to(
        &self,
        tx: &mut dyn Tx,
        job: &JobRecord,
        key: Option<&EphemeralPublicKey>,
    ) -> Result<(), TrustError> {
        self.check_releasable(tx, job)?;
        match key {
            Some(key) => check_public_key(key).map_err(|e| TrustError::BadRequest(format!("the ephemeral key: {e}"))),
            None => Ok(()),
        }
    }

    /// Appraises a worker's evidence for a job. Accepted: the replay state is saved, and
    /// on the job's first acceptance every asset key is sealed to the ephemeral key the
    /// evidence binds. Refused: the job is revoked, and nothing is released.
    pub fn attest(&self, worker: &WorkerRecord, job_id: &Digest, req: Attest) -> Result<Attested, TrustError> {
        let actor = Actor::worker(&worker.name);
        let started = std::time::Instant::now();
        let eph = req.ephemeral_key;
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
                let accepted = appraisal.as_ref().is_some_and(|(_, (result, _))| result.accepted());
                if let Err(e) = self.check_release_to(tx, &job, accepted.then_some(&eph)) {
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
}
