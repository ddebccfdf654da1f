//! Workers' TPMs: enrolment by the infrastructure provider (EK and its certificate), the
//! AK proven by credential activation (TPM 2.0 Part 1, section 24), and the worker's
//! bearer token.

use std::sync::atomic::Ordering;

use perun_attest::ek::{EkPolicy, EkVerdict};
use perun_attest::tpm::{make_credential, AkPublic};
use perun_attest::AttestError;
use perun_core::{Digest, HexBytes, Name, Role};
use zeroize::Zeroizing;

use super::Trust;
use crate::audit::{Actor, AuditKind, Event};
use crate::records::{JobRecord, JobState, WorkerRecord, WorkerState};
use crate::store::{Store, TxExt as _};
use crate::wire::{ActivateAk, CredentialChallenge, EnrolWorker, WorkerInfo};
use crate::TrustError;

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
}

/// What a worker's enrolled EK certificate chains to under `ek` roots.
fn ek_verdict(w: &WorkerRecord, ek: &EkPolicy) -> Result<EkVerdict, AttestError> {
    let key = AkPublic::parse(&w.ek_public)?.key;
    perun_attest::ek::verify_ek(&w.ek_certificate, &chain_of(w), &key, ek)
}

/// Whether `worker`'s EK certificate chains to a root `policy` lists.
pub(super) fn genuine_tpm(
    worker: &WorkerRecord,
    policy: &perun_attest::policy::PlatformPolicy,
) -> Result<(), TrustError> {
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

/// The intermediates a worker's enrolment presented, as DER.
pub(super) fn chain_of(w: &WorkerRecord) -> Vec<Vec<u8>> {
    w.ek_chain.iter().map(|c| c.0.clone()).collect()
}
