//! The worker's conversation with the trust service.

use perun_client::claim::ReleasedKeys;
use perun_client::{Caller, Client};
use perun_core::{Digest, Name};
use perun_proto::evidence::TpmEvidence;
use perun_proto::wire::{
    ActivateAk, Attest, Attested, Claimed, CredentialChallenge, FinishJob, NonceIssued, OfferedJob, PresentAk,
};
use perun_proto::{EphemeralPublicKey, Nonce};
use perun_seal::release::EphemeralKey;
use perun_tpm::tools::KeyAlg;
use zeroize::Zeroizing;

use crate::job::Attester;
use crate::{Platform, WorkerError};

/// A worker enrolled with a trust service: its platform and its authenticated session.
pub struct Agent {
    platform: Platform,
    session: Session,
}

/// A worker's authenticated session with the trust service, whatever makes its evidence:
/// the protocol an [`Agent`] on a TPM and a simulated worker (`perun-testkit`) share.
pub struct Session {
    name: Name,
    client: Client,
    token: Zeroizing<Vec<u8>>,
    /// The nonce the last accepted attestation handed out for the next one, and until
    /// when (by this machine's clock) it may be used.
    next_nonce: Option<(Digest, Nonce, std::time::Instant)>,
}

impl Session {
    /// Proves a TPM's AK to the service: presents the EK and AK public areas, has
    /// `recover` answer the credential challenge (ActivateCredential in that TPM, on the
    /// credential blob and encrypted secret), and sends the credential back. `client`
    /// may be anonymous; the session speaks with the activated credential as its token.
    pub fn activate(
        client: &Client,
        name: Name,
        ek_public: Vec<u8>,
        ak_public: Vec<u8>,
        recover: impl FnOnce(&[u8], &[u8]) -> Result<Vec<u8>, WorkerError>,
    ) -> Result<Self, WorkerError> {
        let challenge: CredentialChallenge =
            client.present_ak(&name, &PresentAk { ek_public, ak_public: ak_public.clone() })?;
        let issued_at = challenge.issued_at;
        let credential = Zeroizing::new(recover(&challenge.credential_blob, &challenge.secret)?);
        let answer = ActivateAk { credential: credential.to_vec(), ak_public, issued_at };
        client.activate_ak(&name, &answer)?;
        let client = client.with_caller(Caller::Worker { name: name.clone(), token: credential.clone() });
        tracing::info!(worker = %name, "enrolled: AK activated");
        Ok(Self { name, client, token: credential, next_nonce: None })
    }

    /// Speaks through a new connection (after the service restarted), with the same
    /// token.
    pub fn reconnect(&mut self, base: &Client) {
        self.client = self.client_at(base);
    }

    /// The worker's name.
    pub fn name(&self) -> &Name {
        &self.name
    }

    /// The authenticated client.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Ready jobs this worker could claim.
    pub fn offered(&self) -> Result<Vec<OfferedJob>, WorkerError> {
        Ok(self.client.offered()?)
    }

    /// Claims a job.
    pub fn claim(&self, job: &Digest) -> Result<Claimed, WorkerError> {
        Ok(self.client.claim(job)?)
    }

    /// A fresh nonce for the next attestation.
    pub fn nonce(&self, job: &Digest) -> Result<Nonce, WorkerError> {
        let n: NonceIssued = self.client.nonce(job)?;
        Ok(n.nonce)
    }

    /// Has `evidence` make evidence over the binding of `nonce`, `job` and a fresh
    /// ephemeral key (its qualifying data), and sends it. Returns the ephemeral key (to
    /// open released keys) and the service's answer.
    pub fn attest(
        &mut self,
        job: &Digest,
        nonce: &Nonce,
        evidence: impl FnOnce(&[u8]) -> Result<TpmEvidence, WorkerError>,
    ) -> Result<(EphemeralKey, Attested), WorkerError> {
        let (eph, req) = Self::attestation(&self.client.audience(), job, nonce, evidence)?;
        let answer: Attested = self.client.attest(job, &req)?;
        // Keep the next nonce, with a margin, so the next round needs one request.
        let valid = std::time::Duration::from_secs(answer.next_nonce.valid_s.saturating_sub(5));
        self.next_nonce = Some((*job, answer.next_nonce.nonce.clone(), std::time::Instant::now() + valid));
        Ok((eph, answer))
    }

    /// The attestation request for `job` under `nonce`, unsent, for the service whose
    /// certificate has fingerprint `service` ([`Client::audience`]): `evidence` makes
    /// evidence over the binding of `service`, `nonce`, `job` and a fresh ephemeral key
    /// (its qualifying data, `Digest::evidence_binding`).
    ///
    /// Errors: `evidence`'s own.
    pub fn attestation(
        service: &Digest,
        job: &Digest,
        nonce: &Nonce,
        evidence: impl FnOnce(&[u8]) -> Result<TpmEvidence, WorkerError>,
    ) -> Result<(EphemeralKey, Attest), WorkerError> {
        let eph = EphemeralKey::generate();
        let ephemeral_key = eph.public_key();
        let binding = Digest::evidence_binding(service, nonce.as_bytes(), job, ephemeral_key.as_bytes());
        let evidence = evidence(binding.as_bytes())?;
        let req = Attest { nonce: nonce.clone(), ephemeral_key, evidence };
        Ok((eph, req))
    }

    /// A client of `base`'s service (another replica, say) speaking as this worker.
    pub fn client_at(&self, base: &Client) -> Client {
        base.with_caller(Caller::Worker { name: self.name.clone(), token: self.token.clone() })
    }

    /// A continuous attestation: with the nonce the last answer handed out while it is
    /// still valid, else with a fresh one. A nonce is used once: after a failed attempt
    /// the next one asks for a fresh nonce.
    pub fn reattest(
        &mut self,
        job: &Digest,
        evidence: impl FnOnce(&[u8]) -> Result<TpmEvidence, WorkerError>,
    ) -> Result<(EphemeralKey, Attested), WorkerError> {
        let nonce = self.next_nonce_for(job)?;
        self.attest(job, &nonce, evidence)
    }

    /// The nonce the last answer handed out, while it is still valid; else a fresh one.
    fn next_nonce_for(&mut self, job: &Digest) -> Result<Nonce, WorkerError> {
        match self.next_nonce.take() {
            Some((j, n, until)) if j == *job && std::time::Instant::now() < until => Ok(n),
            _ => self.nonce(job),
        }
    }

    /// Delivers a job's outputs with the last attestation: `evidence` makes evidence over
    /// [`FinishJob::binding`] of a nonce and `job`, so the service takes
    /// the outputs, the model digest and the privacy report from the attested worker only.
    ///
    /// Errors: the service's refusal (a refused quote revokes the job); `evidence`'s own.
    pub fn finish(
        &mut self,
        job: &Digest,
        mut body: FinishJob,
        evidence: impl FnOnce(&[u8]) -> Result<TpmEvidence, WorkerError>,
    ) -> Result<(), WorkerError> {
        let nonce = self.next_nonce_for(job)?;
        let claims = body.claims_digest();
        let evidence = evidence(body.binding(&self.client.audience(), &nonce, job).as_bytes())?;
        // The finish attestation binds no key: its `ephemeral_key` carries the claims
        // digest (see `FinishJob::attestation`).
        body.attestation =
            Some(Attest { nonce, ephemeral_key: EphemeralPublicKey::from(*claims.as_bytes()), evidence });
        Ok(self.client.finish(job, &body)?)
    }
}

impl Agent {
    /// Proves the worker's TPM to the service: creates an AK under the EK, presents both,
    /// answers the credential challenge with ActivateCredential. `client` may be
    /// anonymous; the returned agent speaks with the activated credential as its token.
    pub fn enrol(client: &Client, name: Name, mut platform: Platform, ak_alg: KeyAlg) -> Result<Self, WorkerError> {
        let ak = platform.tpm().create_ak(ak_alg)?;
        let ek_public = platform.tpm().ek_public().to_vec();
        let session = Session::activate(client, name, ek_public, ak.public, |blob, secret| {
            Ok(platform.tpm().activate_credential(blob, secret)?)
        })?;
        Ok(Self { platform, session })
    }

    /// Speaks through a new connection (after the service restarted), with the same
    /// token.
    pub fn reconnect(&mut self, base: &Client) {
        self.session.reconnect(base);
    }

    /// The worker's name.
    pub fn name(&self) -> &Name {
        self.session.name()
    }

    /// The platform (to measure files, or for tests to tamper with).
    pub fn platform(&mut self) -> &mut Platform {
        &mut self.platform
    }

    /// The authenticated client.
    pub fn client(&self) -> &Client {
        self.session.client()
    }

    /// Ready jobs this worker could claim.
    pub fn offered(&self) -> Result<Vec<OfferedJob>, WorkerError> {
        self.session.offered()
    }

    /// Claims a job.
    pub fn claim(&self, job: &Digest) -> Result<Claimed, WorkerError> {
        self.session.claim(job)
    }

    /// A fresh nonce for the next attestation.
    pub fn nonce(&self, job: &Digest) -> Result<Nonce, WorkerError> {
        self.session.nonce(job)
    }

    /// Makes evidence bound to `nonce`, `job` and a fresh ephemeral key, and sends it.
    /// Returns the ephemeral key (to open released keys) and the service's answer.
    pub fn attest(&mut self, job: &Digest, nonce: &Nonce) -> Result<(EphemeralKey, Attested), WorkerError> {
        let platform = &mut self.platform;
        self.session.attest(job, nonce, |qualifying_data| platform.evidence(qualifying_data))
    }

    /// A continuous attestation: with the nonce the last answer handed out while it is
    /// still valid, else with a fresh one.
    pub fn reattest(&mut self, job: &Digest) -> Result<(EphemeralKey, Attested), WorkerError> {
        let platform = &mut self.platform;
        self.session.reattest(job, |qualifying_data| platform.evidence(qualifying_data))
    }

    /// Delivers a job's outputs with a last quote over their claims ([`Session::finish`]).
    pub fn finish(&mut self, job: &Digest, body: FinishJob) -> Result<(), WorkerError> {
        let platform = &mut self.platform;
        self.session.finish(job, body, |qualifying_data| platform.evidence(qualifying_data))
    }

    /// Opens the keys of an accepted attestation with its ephemeral key.
    pub fn open_keys(job: &Digest, eph: &EphemeralKey, answer: &Attested) -> Result<ReleasedKeys, WorkerError> {
        Ok(perun_client::claim::open_released(job, eph, answer)?)
    }
}

impl Attester for Agent {
    fn reattest(&mut self, job: &Digest) -> Result<usize, WorkerError> {
        Agent::reattest(self, job).map(|(_, a)| a.new_entries)
    }
    fn client(&self) -> &Client {
        Agent::client(self)
    }
    fn finish(&mut self, job: &Digest, body: FinishJob) -> Result<(), WorkerError> {
        Agent::finish(self, job, body)
    }
}
