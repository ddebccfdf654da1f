//! The trust service's logic, independent of HTTP: every rule of docs/architecture.md, section 2 is
//! checked here, and every grant, refusal and revocation is written to the store together
//! with its audit record.
//!
//! - [`stakeholders`]: registration, assets and their wrapped keys, policies, the audit view;
//! - [`jobs`]: proposals, approvals, revocation, what each party may see;
//! - [`enrolment`]: workers' TPMs: enrolment, credential activation, bearer tokens;
//! - [`workers`]: the jobs offered to a worker, claims, nonces, metrics, failures;
//! - [`release`]: the release decision: attestation, appraisal, the verdict, key release;
//! - [`outputs`]: the last attestation with the outputs, review, receipts;
//! - [`enclaves`]: the `tee`-mode path: an enclave's TEE report is its claim and its
//!   attestation.

pub mod enclaves;
pub mod enrolment;
pub mod jobs;
pub mod outputs;
pub mod release;
pub mod stakeholders;
pub mod terms;
pub mod workers;

pub use outputs::{review_digest, REVIEW_CONTEXT};

use std::sync::atomic::{AtomicU64, Ordering};
#[cfg(any(test, feature = "test-support"))]
use std::sync::Arc;

use perun_core::{Digest, Name};

use crate::audit::{self, Actor, AuditKind, Event};
use crate::keys::ServiceKeys;
use crate::metrics::Metrics;
use crate::records::{JobRecord, JobState, Quota};
use crate::store::{Store, Tx, TxExt as _};
use crate::TrustError;

/// Where the service reads the time: the system clock, or a clock a test moves.
#[derive(Clone, Debug)]
pub enum Clock {
    /// Unix time from the system.
    System,
    /// A fixed time that tests advance (feature `test-support`: never in `perun serve`).
    #[cfg(any(test, feature = "test-support"))]
    Manual(Arc<AtomicU64>),
}

impl Clock {
    /// Now, in Unix seconds.
    pub fn now(&self) -> u64 {
        match self {
            Clock::System => unix_now(),
            #[cfg(any(test, feature = "test-support"))]
            Clock::Manual(t) => t.load(Ordering::SeqCst),
        }
    }
}

pub use perun_proto::unix_now;

/// Tunables of the service.
#[derive(Clone, Debug)]
pub struct TrustConfig {
    /// Seconds an attestation nonce stays valid.
    pub nonce_valid_s: u64,
    /// Seconds a credential challenge stays valid.
    pub challenge_valid_s: u64,
    /// Extra seconds past twice a job's attestation interval before a missed
    /// attestation revokes it.
    pub attestation_grace_s: u64,
    /// Refusals of anonymous requests written to the audit log per minute, at most; past
    /// it, such requests answer 429 and are only counted (`perun_anonymous_refusals_dropped`).
    pub anonymous_audits_per_minute: u32,
    /// SHA-256 of the bearer token `/metrics` requires; `None` turns `/metrics` off.
    pub metrics_token: Option<perun_core::Digest>,
    /// Development only: a registration takes effect at once, without admission. Off by
    /// default: the operator (or a quorum of members) admits each registration.
    pub open_registration: bool,
    /// Members' votes that admit a pending registration; 0 (the default): only the
    /// operator admits.
    pub admission_quorum: u32,
}

impl Default for TrustConfig {
    fn default() -> Self {
        Self {
            nonce_valid_s: 60,
            challenge_valid_s: 300,
            attestation_grace_s: 5,
            anonymous_audits_per_minute: 60,
            metrics_token: None,
            open_registration: false,
            admission_quorum: 0,
        }
    }
}

/// The trust service.
pub struct Trust<S: Store> {
    store: S,
    keys: ServiceKeys,
    clock: Clock,
    config: TrustConfig,
    metrics: Metrics,
    nonces: crate::nonce::NonceIssuer,
    anonymous: governor::DefaultKeyedRateLimiter<String>,
    registrations: governor::DefaultKeyedRateLimiter<String>,
    /// When [`Trust::sweep`] last pruned expired nonces (Unix seconds).
    last_prune: AtomicU64,
}

impl<S: Store> Trust<S> {
    /// A service over `store` with `keys`.
    pub fn new(store: S, keys: ServiceKeys, clock: Clock, config: TrustConfig) -> Self {
        let nonces = crate::nonce::NonceIssuer::new(keys.signing.as_bytes());
        let per_minute =
            std::num::NonZeroU32::new(config.anonymous_audits_per_minute).unwrap_or(std::num::NonZeroU32::MIN);
        let anonymous = governor::RateLimiter::keyed(governor::Quota::per_minute(per_minute));
        // Registrations per caller network: a burst of 10, then one a minute.
        let registrations = governor::RateLimiter::keyed(
            governor::Quota::per_minute(std::num::NonZeroU32::MIN)
                .allow_burst(std::num::NonZeroU32::new(10).unwrap_or(std::num::NonZeroU32::MIN)),
        );
        Self {
            store,
            keys,
            clock,
            config,
            metrics: Metrics::default(),
            nonces,
            anonymous,
            registrations,
            last_prune: AtomicU64::new(0),
        }
    }

    /// The service's keys (public halves are served; private halves never leave).
    pub fn keys(&self) -> &ServiceKeys {
        &self.keys
    }

    /// The service's counters.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Checks the bearer token of a `/metrics` request.
    pub fn check_metrics_token(&self, token: Option<&[u8]>) -> Result<(), TrustError> {
        let Some(expected) = self.config.metrics_token else {
            return Err(TrustError::NotFound(
                "metrics are off: start `perun serve` with PERUN_METRICS_TOKEN set to serve them".into(),
            ));
        };
        match token {
            Some(t) if crate::nonce::constant_time_eq(Digest::of(t).as_bytes(), expected.as_bytes()) => Ok(()),
            _ => Err(TrustError::Unauthenticated("`/metrics` needs `Authorization: Bearer <metrics token>`".into())),
        }
    }

    /// Records this service's identity in the store on first start, and afterwards
    /// checks that these keys are the ones recorded.
    ///
    /// Errors: [`TrustError::Conflict`] when the store belongs to a service with other
    /// keys (a replica given keys of its own, or a store of another deployment).
    pub fn bind_identity(&self) -> Result<(), TrustError> {
        let mine = crate::records::ServiceIdentity {
            tls_fingerprint: self.keys.tls_fingerprint(),
            audit_key: self.keys.audit_key(),
            wrap_recipient: self.keys.wrap_recipient(),
        };
        self.store.write(|tx| match tx.get::<crate::records::ServiceIdentity>("identity")? {
            None => {
                tx.put(&mine)?;
                Ok(())
            }
            Some(theirs) if theirs == mine => Ok(()),
            Some(theirs) => Err(TrustError::Conflict(format!(
                "this store belongs to the service with TLS fingerprint {} and audit key {}, but these keys \
                     are {} and {}: every replica of one service needs the same keys (copy the keys folder, \
                     or mount the same Secret)",
                theirs.tls_fingerprint, theirs.audit_key, mine.tls_fingerprint, mine.audit_key
            ))),
        })
    }

    /// Whether the store answers: a read of the audit chain's tail (for `/readyz`).
    ///
    /// Errors: [`TrustError::Store`] with the store's error.
    pub fn ready(&self) -> Result<(), TrustError> {
        self.store.read(|tx| tx.audit_tail()).map(|_| ())
    }

    /// The store.
    pub fn store(&self) -> &S {
        &self.store
    }

    /// Now, by the service's clock.
    pub fn now(&self) -> u64 {
        self.clock.now()
    }

    /// Appends an audit record inside `tx`.
    fn audit(&self, tx: &mut dyn Tx, event: Event) -> Result<(), TrustError> {
        audit::append(tx, &self.keys.signing, self.now(), event).map(|_| ())
    }

    /// Records a refusal in its own transaction and hands the error back. The failed
    /// request's own transaction rolled back, so nothing it would have granted exists.
    fn refused(&self, actor: &Actor, job: Option<&JobRecord>, err: TrustError) -> TrustError {
        self.refused_to(actor, job, Vec::new(), err)
    }

    /// [`Self::refused`], naming more parties the record concerns (a worker's provider).
    fn refused_to(&self, actor: &Actor, job: Option<&JobRecord>, parties: Vec<Name>, err: TrustError) -> TrustError {
        self.metrics.requests_refused.fetch_add(1, Ordering::Relaxed);
        let mut event = Event::new(AuditKind::Refused, actor.clone(), err.to_string());
        if let Some(j) = job {
            event = event.for_job(j.id, &j.manifest);
        }
        event.parties.extend(parties);
        tracing::warn!(actor = %actor, reason = %err, "request refused");
        if let Err(e) = self.store.write(|tx| self.audit(tx, event)) {
            tracing::error!(error = %e, "could not write the audit record of a refusal");
        }
        err
    }

    /// Records the refusal of an anonymous (not yet authenticated) request, at most
    /// [`TrustConfig::anonymous_audits_per_minute`] a minute for what it concerns (a worker,
    /// a job: one cannot spend another's budget): past that, nothing is written and the
    /// caller is told to wait. `actor` and `parties` must be names the service already
    /// knew (an enrolled worker, or `anonymous`), never text the caller chose.
    fn refused_anonymous(
        &self,
        actor: &Actor,
        job: Option<&JobRecord>,
        parties: Vec<Name>,
        err: TrustError,
    ) -> TrustError {
        let key = job.map_or_else(|| actor.to_string(), |j| j.id.to_string());
        if self.anonymous.check_key(&key).is_err() {
            self.metrics.anonymous_refusals_dropped.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(actor = %actor, reason = %err, "anonymous request refused (not audited: rate limit)");
            return TrustError::TooManyRequests(format!(
                "{err} (and too many refused anonymous requests: try again in a minute)"
            ));
        }
        self.refused_to(actor, job, parties, err)
    }

    /// [`Self::refused_anonymous`] for a request naming enrolled worker `w` (its provider
    /// sees the record).
    fn refused_worker(&self, w: &crate::records::WorkerRecord, err: TrustError) -> TrustError {
        self.refused_anonymous(&Actor::worker(&w.name), None, vec![w.enrolled_by.clone()], err)
    }

    /// Moves a job to `state` (revoked or expired) with `reason`, audited, inside `tx`.
    fn end_job(&self, tx: &mut dyn Tx, job: &mut JobRecord, state: JobState, reason: String) -> Result<(), TrustError> {
        // Kept in the job every party lists, and in the audit log: an account, bounded.
        let reason = audit::clip(reason, MAX_REASON);
        job.state = state;
        job.reason = Some(reason.clone());
        tx.put(job)?;
        let kind = if state == JobState::Expired { AuditKind::JobExpired } else { AuditKind::JobRevoked };
        if state == JobState::Revoked {
            self.metrics.jobs_revoked.fetch_add(1, Ordering::Relaxed);
        }
        tracing::warn!(job = %job.id, state = state.as_str(), %reason, "job ended");
        self.audit(tx, Event::new(kind, Actor::Service, reason).for_job(job.id, &job.manifest))
    }

    /// Applies the clock to one job inside `tx`: expiry, and revocation for a missed
    /// attestation. Returns whether it changed the job.
    fn apply_deadlines(&self, tx: &mut dyn Tx, job: &mut JobRecord) -> Result<bool, TrustError> {
        match self.deadline_passed(job) {
            Some((state, reason)) => self.end_job(tx, job, state, reason).map(|_| true),
            None => Ok(false),
        }
    }

    /// Whether the clock ends `job`: expiry, or a missed attestation (with the state
    /// and reason to record).
    fn deadline_passed(&self, job: &JobRecord) -> Option<(JobState, String)> {
        let now = self.now();
        let live = matches!(job.state, JobState::Proposed | JobState::Ready | JobState::Running);
        if live && now >= job.manifest.expires_at {
            return Some((JobState::Expired, format!("the job expired at {}", job.manifest.expires_at)));
        }
        if job.state == JobState::Running {
            let since = job.last_attested_at.or(job.claimed_at).unwrap_or(job.proposed_at);
            // Saturating: a stored manifest was validated (interval at most an hour), but
            // no input may overflow a deadline.
            let deadline = since
                .saturating_add(job.manifest.attestation_interval_s.saturating_mul(2))
                .saturating_add(self.config.attestation_grace_s);
            if now > deadline {
                let reason = format!(
                    "missed attestation: worker {} last attested at {since}, due every {} s",
                    job.worker.as_ref().map(|w| w.as_str()).unwrap_or("?"),
                    job.manifest.attestation_interval_s
                );
                return Some((JobState::Revoked, reason));
            }
        }
        None
    }

    /// Applies deadlines to every live job; the server runs it every second. Returns the
    /// number of jobs it ended.
    ///
    /// The jobs are scanned on a read snapshot; only those whose deadline passed are read
    /// again and ended in a write transaction, so a sweep that ends nothing takes no write
    /// lock (replicas each sweep every second). Expired nonces are pruned at most every
    /// [`PRUNE_EVERY_S`] seconds.
    pub fn sweep(&self) -> Result<usize, TrustError> {
        let now = self.now();
        let due: Vec<JobRecord> = self
            .store
            .read(|tx| tx.list_readable::<JobRecord>(""))?
            .into_iter()
            .filter(|j| self.deadline_passed(j).is_some())
            .collect();
        let last = self.last_prune.load(Ordering::Relaxed);
        let prune = now.saturating_sub(last) >= PRUNE_EVERY_S;
        self.anonymous.retain_recent();
        self.registrations.retain_recent();
        if due.is_empty() && !prune {
            return Ok(0);
        }
        let ended = self.store.write(|tx| {
            let mut ended = 0;
            for j in &due {
                // Read again under the lock: another replica may have ended it, or the
                // worker attested since the snapshot.
                let Some(mut job) = tx.get::<JobRecord>(&j.id.to_string())? else { continue };
                if self.apply_deadlines(tx, &mut job)? {
                    ended += 1;
                }
            }
            if prune {
                tx.prune(crate::store::Table::Sessions, now)?;
                tx.prune(crate::store::Table::RequestNonces, now)?;
                tx.prune(crate::store::Table::Applications, now)?;
            }
            Ok(ended)
        })?;
        if prune {
            self.last_prune.store(now, Ordering::Relaxed);
        }
        Ok(ended)
    }
}

/// `owner`'s quota of the records in `table` (policies it published, jobs it proposed)
/// inside `tx`. Where none is kept yet (a store from before quotas), it is counted once
/// from the records, by the top-level `owner` (or `proposer`) field each names.
pub(crate) fn quota_in(tx: &mut dyn Tx, table: crate::store::Table, owner: &Name) -> Result<Quota, TrustError> {
    if let Some(q) = tx.get::<Quota>(&Quota::key_of(table, owner))? {
        return Ok(q);
    }
    // Only the owner of each record is read, not the record.
    #[derive(serde::Deserialize)]
    struct Owner {
        #[serde(alias = "proposer")]
        owner: Name,
    }
    let mut q = Quota { kind: table.name().to_owned(), owner: owner.clone(), count: 0, bytes: 0 };
    for raw in tx.list_raw(table, "")? {
        if serde_json::from_slice::<Owner>(&raw).is_ok_and(|o| &o.owner == owner) {
            q.count = q.count.saturating_add(1);
            q.bytes = q.bytes.saturating_add(raw.len() as u64);
        }
    }
    Ok(q)
}

/// The longest reason a job keeps for its end, in bytes (who ended it, and a revoking
/// party's words, a worker's error or the verifier's failures).
pub const MAX_REASON: usize = 1024;

/// The longest reason a party may give for a revocation, in bytes (kept whole within
/// [`MAX_REASON`]).
pub const MAX_REVOKE_REASON: usize = 512;

/// Seconds between prunings of expired attestation and request nonces.
pub const PRUNE_EVERY_S: u64 = 10;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::sqlite::SqliteStore;

    fn service(config: TrustConfig) -> Trust<SqliteStore> {
        let keys = ServiceKeys::generate(&[]).unwrap();
        Trust::new(SqliteStore::in_memory().unwrap(), keys, Clock::Manual(Default::default()), config)
    }

    #[test]
    fn metrics_are_off_by_default_and_need_the_token_when_on() {
        assert!(matches!(
            service(TrustConfig::default()).check_metrics_token(Some(b"x")),
            Err(TrustError::NotFound(_))
        ));
        let config = TrustConfig { metrics_token: Some(Digest::of(b"scraper-token")), ..TrustConfig::default() };
        let t = service(config);
        assert!(t.check_metrics_token(Some(b"scraper-token")).is_ok());
        assert!(matches!(t.check_metrics_token(Some(b"scraper-tokeN")), Err(TrustError::Unauthenticated(_))));
        assert!(matches!(t.check_metrics_token(None), Err(TrustError::Unauthenticated(_))));
    }

    #[test]
    fn credential_secrets_bind_worker_ek_ak_and_time() {
        let t = service(TrustConfig::default());
        let w = Name::new("gpu-1").unwrap();
        let base = t.nonces.credential_secret(&w, b"ek", b"ak", 10);
        assert_eq!(base, t.nonces.credential_secret(&w, b"ek", b"ak", 10));
        assert_ne!(base, t.nonces.credential_secret(&Name::new("gpu-2").unwrap(), b"ek", b"ak", 10));
        assert_ne!(base, t.nonces.credential_secret(&w, b"ek2", b"ak", 10));
        assert_ne!(base, t.nonces.credential_secret(&w, b"ek", b"ak2", 10));
        assert_ne!(base, t.nonces.credential_secret(&w, b"ek", b"ak", 11));
        // Parts are length-prefixed: moving a byte from one to the next changes the secret.
        assert_ne!(base, t.nonces.credential_secret(&w, b"e", b"kak", 10));
        // Another service's secrets differ.
        assert_ne!(base, service(TrustConfig::default()).nonces.credential_secret(&w, b"ek", b"ak", 10));
    }
}
