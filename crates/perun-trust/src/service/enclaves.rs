//! Enclaves: the `tee`-mode path of the release rule.
//!
//! An enclave has no TPM to enrol: its first accepted report for a ready `tee` job is
//! its claim. It asks for a nonce naming itself ([`Trust::enclave_nonce`], anonymous,
//! writes nothing), and sends a TEE report whose report data is
//! `Digest::evidence_binding(service, nonce, job, ephemeral key)`, with `service` this
//! service's TLS certificate fingerprint ([`Trust::attest_enclave`]).
//! The report is appraised against the job's TEE policy (signature chain, report
//! data, measurements, TCB floor; the `sim` TEE only where the policy names its key).
//! Accepted: the job is the enclave's, every asset key and an access token for its later
//! calls are sealed to the bound ephemeral key, so only the attested enclave can open
//! them. Later reports (continuous attestation) must come with that token; a refused one
//! revokes the job. A refused first report releases nothing and leaves the job ready
//! (anyone may send one, so it must not let anyone end a job).

use std::sync::atomic::Ordering;

use perun_attest::verifier::{TeeReportVerifier, Verifier as _};
use perun_attest::JobPolicy;
use perun_core::{Digest, JobMode, Name};
use perun_seal::release::{seal_to, token_info};

use super::jobs::job_in;
use super::workers::live_error;
use super::Trust;
use crate::audit::Actor;
use crate::records::{JobRecord, JobState, PolicyRecord, WorkerRecord, WorkerState};
use crate::store::{Store, TxExt as _};
use crate::wire::{AttestEnclave, EnclaveAttested, NonceIssued};
use crate::TrustError;

impl<S: Store> Trust<S> {
    /// A nonce for `enclave`'s next report for a `tee` job that is ready, or running on
    /// that enclave. Anonymous: issuing writes nothing.
    pub fn enclave_nonce(&self, job_id: &Digest, enclave: &Name) -> Result<NonceIssued, TrustError> {
        let job = self.job_record(job_id)?;
        tee_job(&job)?;
        let open =
            job.state == JobState::Ready || (job.state == JobState::Running && job.worker.as_ref() == Some(enclave));
        if !open || self.deadline_passed(&job).is_some() {
            return Err(match job.state {
                JobState::Running => TrustError::Conflict(format!("job {} runs on another enclave", job.id)),
                _ => live_error(&job),
            });
        }
        Ok(NonceIssued { nonce: self.nonces.issue(&job.id, enclave, self.now()), valid_s: self.config.nonce_valid_s })
    }

    /// Whether job `job_id` exists and takes TEE evidence now (a ready or running `tee`
    /// job): checked before an anonymous report's body is read.
    pub fn takes_enclave_evidence(&self, job_id: &Digest) -> Result<(), TrustError> {
        let job = self.job_record(job_id)?;
        tee_job(&job)?;
        match job.state {
            JobState::Ready | JobState::Running => Ok(()),
            _ => Err(live_error(&job)),
        }
    }

    /// Appraises an enclave's TEE report for a `tee` job. `caller` is the enclave as
    /// authenticated by its token, required once the job runs on it.
    pub fn attest_enclave(
        &self,
        caller: Option<&WorkerRecord>,
        job_id: &Digest,
        req: AttestEnclave,
    ) -> Result<EnclaveAttested, TrustError> {
        let actor = Actor::worker(&req.enclave);
        let started = std::time::Instant::now();
        let now = self.now();
        // Appraisal (certificate chains, signatures) outside the store's write lock.
        let (seen, policy) = self.job_and_policy(job_id)?;
        tee_job(&seen)?;
        let Some(PolicyRecord { policy: JobPolicy::Tee(policy), .. }) = policy else {
            return Err(TrustError::Store(format!("the TEE policy {} vanished", seen.manifest.platform_policy)));
        };
        // A report is appraised (certificate chains, signatures: the expensive part) only
        // with a nonce this service issued for this job and enclave lately.
        if let Err(why) = self.nonces.check(&req.nonce, &seen.id, &req.enclave, now, self.config.nonce_valid_s) {
            let e = TrustError::Refused { reason: why, failures: Vec::new() };
            return Err(match caller {
                None => self.refused_anonymous(&Actor::Anonymous, Some(&seen), Vec::new(), e),
                Some(_) => self.refused(&actor, Some(&seen), e),
            });
        }
        let binding = Digest::evidence_binding(
            &self.keys.tls_fingerprint(),
            req.nonce.as_bytes(),
            &seen.id,
            req.ephemeral_key.as_bytes(),
        );
        let (result, accepted) = TeeReportVerifier { policy: &policy, now }.appraise(&req.evidence, binding.as_bytes());

        let outcome = self.store.write(|tx| {
            let mut job = job_in(tx, job_id)?;
            if self.apply_deadlines(tx, &mut job)? {
                return Ok(Err((job.clone(), live_error(&job))));
            }
            let first = job.state == JobState::Ready;
            if !first {
                let by_it = caller.is_some_and(|c| c.name == req.enclave);
                if let Err(e) = self.check_running_by(&job, &req.enclave) {
                    return Ok(Err((job, e)));
                }
                if !by_it {
                    let e = TrustError::Unauthenticated(format!(
                        "job {} runs on enclave {}: its later reports must carry the token it received",
                        job.id, req.enclave
                    ));
                    return Ok(Err((job, e)));
                }
            } else {
                if let Err(e) = self.check_release_to(tx, &job, accepted.is_some().then_some(&req.ephemeral_key)) {
                    return Ok(Err((job, e)));
                }
                if !job.manifest.workers.is_empty() && !job.manifest.workers.contains(req.enclave.as_str()) {
                    let e = TrustError::Forbidden(format!(
                        "the job does not name enclave {} among its workers",
                        req.enclave
                    ));
                    return Ok(Err((job, e)));
                }
                if let Some(w) = tx.get::<WorkerRecord>(req.enclave.as_str())? {
                    // A name is one worker: a TPM worker's, or one enclave's at a time
                    // (a new claim replaces the name's token).
                    let busy = w.tee.is_none()
                        || tx
                            .list::<JobRecord>("")?
                            .iter()
                            .any(|j| j.state == JobState::Running && j.worker.as_ref() == Some(&req.enclave));
                    if busy {
                        let e = TrustError::Conflict(format!(
                            "the worker name `{}` is in use: the enclave must go by another name",
                            req.enclave
                        ));
                        return Ok(Err((job, e)));
                    }
                }
            }
            if let Err(e) =
                self.spend_nonce(tx, &req.nonce, &job, &req.enclave, caller.is_some_and(|c| c.name == req.enclave))?
            {
                return Ok(Err((job, e)));
            }
            // A refused first report ends nothing: anyone may send one. Nor is it written
            // here under the enclave name its sender chose: it is audited below as an
            // anonymous refusal, at most so many a minute for the job.
            let audited_as = (!first || result.accepted()).then_some(&actor);
            if let Err(e) = self.record_result(tx, &mut job, audited_as, &result, !first)? {
                return Ok(Err((job, e)));
            }
            let Some(claims) = accepted.clone() else {
                return Err(TrustError::Store("an accepted TEE report without claims".into()));
            };
            let (claimed, token) = if first {
                let token: [u8; 32] = rand::random();
                let record = WorkerRecord {
                    name: req.enclave.clone(),
                    // An enclave runs on the job's provider's TEE host, under the
                    // provider's published TEE policy.
                    enrolled_by: job.manifest.provider.clone(),
                    ek_public: Vec::new(),
                    ek_certificate: Vec::new(),
                    ek_chain: Vec::new(),
                    ak_public: None,
                    token_hash: Some(Digest::of(&token)),
                    state: WorkerState::Active,
                    enrolled_at: now,
                    tee: Some(claims.kind),
                };
                tx.put(&record)?;
                let sealed = seal_to(&req.ephemeral_key, &token_info(&job.id), &token)?;
                let next = self.nonces.issue(&job.id, &req.enclave, now);
                (Some(self.assign(tx, &mut job, &req.enclave, next)?), Some(sealed))
            } else {
                (None, None)
            };
            let evidence = Digest::of(&serde_json::to_vec(&req.evidence).unwrap_or_default());
            let keys = self.release_keys(tx, &mut job, &req.enclave, &req.ephemeral_key, evidence, &result)?;
            tx.put(&job)?;
            let attested = self.attested(&job, &req.enclave, 0, keys);
            Ok(Ok(EnclaveAttested { attested, claimed, token, claims }))
        })?;
        self.metrics.observe_attestation(started.elapsed());
        match outcome {
            Ok(a) => {
                self.metrics.attestations_accepted.fetch_add(1, Ordering::Relaxed);
                tracing::info!(job = %job_id, enclave = %req.enclave, released = a.attested.keys.len(), "TEE evidence accepted");
                Ok(a)
            }
            Err((_, e @ TrustError::Revoked(_))) => Err(e),
            // Refusals of reports before the job ran on an enclave (a first report, or one
            // from a caller without the job's token): anonymous, rate-limited.
            Err((job, e)) if caller.is_none() || seen.state == JobState::Ready => {
                Err(self.refused_anonymous(&Actor::Anonymous, Some(&job), Vec::new(), e))
            }
            Err((_, e @ TrustError::Refused { .. })) => {
                self.metrics.requests_refused.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(job = %job_id, enclave = %req.enclave, reason = %e, "TEE evidence refused");
                Err(e)
            }
            Err((job, e)) => Err(self.refused(&actor, Some(&job), e)),
        }
    }
}

/// Refuses a job that does not run in `tee` mode.
fn tee_job(job: &JobRecord) -> Result<(), TrustError> {
    if job.manifest.mode != JobMode::Tee {
        return Err(TrustError::Conflict(format!(
            "job {} runs in `attested` mode: a TPM worker must claim it",
            job.id
        )));
    }
    Ok(())
}
