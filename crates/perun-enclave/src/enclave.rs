//! The enclave's conversation with the trust service for one `tee` job.

use std::time::{Duration, Instant};

use perun_attest::tee::TeeClaims;
use perun_client::claim::{check_claim, open_released, ReleasedKeys};
use perun_client::{Caller, Client};
use perun_core::{Digest, Name};
use perun_proto::wire::{AttestEnclave, Claimed, EnclaveAttested, EnclaveNonce, FinishJob, NonceIssued};
use perun_proto::Nonce;
use perun_seal::release::{token_info, EphemeralKey};
use zeroize::Zeroizing;

use crate::{EnclaveError, EvidenceSource};

/// An enclave that claimed a `tee` job: its evidence source and its authenticated client.
pub struct Enclave {
    name: Name,
    job: Digest,
    source: Box<dyn EvidenceSource>,
    client: Client,
    next_nonce: Option<(Nonce, Instant)>,
}

/// What a successful claim hands the enclave.
pub struct Claim {
    /// The enclave, ready for continuous attestation.
    pub enclave: Enclave,
    /// The job, its assets and receivers.
    pub claimed: Claimed,
    /// The asset keys, opened in memory.
    pub keys: ReleasedKeys,
    /// What the service verified in the report.
    pub claims: TeeClaims,
    /// Seconds the claim took (nonce, report, appraisal, release).
    pub seconds: f64,
}

impl std::fmt::Debug for Claim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Claim({:?}, {:?} report, {} keys)", self.enclave, self.claims.kind, self.keys.keys.len())
    }
}

impl std::fmt::Debug for Enclave {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Enclave({} for job {})", self.name, self.job)
    }
}

impl Enclave {
    /// Claims the ready `tee` job `job` as `name`: a nonce, a report from `source`
    /// binding it, the job and a fresh ephemeral key; the service's answer opens with
    /// that key only. `base` is an anonymous client of the trust service.
    pub fn claim(
        base: &Client,
        name: Name,
        source: Box<dyn EvidenceSource>,
        job: Digest,
    ) -> Result<Claim, EnclaveError> {
        let started = Instant::now();
        let mut enclave = Self { name, job, source, client: base.with_caller(Caller::Anonymous), next_nonce: None };
        let nonce = enclave.fresh_nonce()?;
        let (eph, answer) = enclave.report(&nonce)?;
        let (Some(claimed), Some(token)) = (answer.claimed, answer.token) else {
            return Err(EnclaveError::NoClaim);
        };
        check_claim(&claimed)?;
        let token = Zeroizing::new(eph.open(&token, &token_info(&job))?.to_vec());
        let keys = open_released(&job, &eph, &answer.attested)?;
        enclave.client = base.with_caller(Caller::Worker { name: enclave.name.clone(), token });
        tracing::info!(job = %job, enclave = %enclave.name, kind = ?answer.claims.kind, "claimed: keys released");
        Ok(Claim { enclave, claimed, keys, claims: answer.claims, seconds: started.elapsed().as_secs_f64() })
    }

    /// The enclave's name.
    pub fn name(&self) -> &Name {
        &self.name
    }

    /// The job it runs.
    pub fn job(&self) -> Digest {
        self.job
    }

    /// The evidence source (also for client-facing evidence).
    pub fn source(&mut self) -> &mut dyn EvidenceSource {
        self.source.as_mut()
    }

    /// Sends a report bound to `nonce`, the job and a fresh ephemeral key.
    fn report(&mut self, nonce: &Nonce) -> Result<(EphemeralKey, EnclaveAttested), EnclaveError> {
        let eph = EphemeralKey::generate();
        let ephemeral_key = eph.public_key();
        let binding =
            Digest::evidence_binding(&self.client.audience(), nonce.as_bytes(), &self.job, ephemeral_key.as_bytes());
        let evidence = self.source.evidence(binding.as_bytes())?;
        let req = AttestEnclave { enclave: self.name.clone(), nonce: nonce.clone(), ephemeral_key, evidence };
        let answer: EnclaveAttested = self.client.attest_enclave(&self.job, &req)?;
        let valid = Duration::from_secs(answer.attested.next_nonce.valid_s.saturating_sub(5));
        self.next_nonce = Some((answer.attested.next_nonce.nonce.clone(), Instant::now() + valid));
        Ok((eph, answer))
    }

    /// A continuous attestation: a new report with the nonce the last answer handed out
    /// (or a fresh one). A refusal revokes the job; the caller must stop and wipe.
    pub fn reattest(&mut self) -> Result<TeeClaims, EnclaveError> {
        let nonce = match self.next_nonce.take() {
            Some((n, until)) if Instant::now() < until => n,
            _ => self.fresh_nonce()?,
        };
        self.report(&nonce).map(|(_, a)| a.claims)
    }

    /// A fresh nonce from the service, in this enclave's name.
    fn fresh_nonce(&self) -> Result<Nonce, EnclaveError> {
        let body = EnclaveNonce { enclave: self.name.clone() };
        let n: NonceIssued = self.client.enclave_nonce(&self.job, &body)?;
        Ok(n.nonce)
    }
}

impl Enclave {
    /// The client, authenticated as the job's worker by the token sealed to this
    /// enclave's attested key.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Ends a serving job: the service records it finished (with no outputs); nothing
    /// more is released for it.
    pub fn finish(&self) -> Result<(), EnclaveError> {
        let body = FinishJob { outputs: Vec::new(), model_digest: None, privacy: None, attestation: None };
        Ok(self.client.finish(&self.job, &body)?)
    }
}
