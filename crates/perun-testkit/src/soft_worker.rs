//! Simulated workers, to load a trust service (`perun bench trust`, the load-and-fault
//! test) and to mount attacks on its rules (`tests/rules.rs`). Each has its own software
//! TPM (P-256 EK and AK in memory; see `perun_attest::tpm::soft`) and its own IMA log,
//! and speaks the real protocol through the same [`Session`] as a
//! `perun_worker::Agent`: enrolment by its provider, credential activation, claim,
//! attestation, continuous attestation.
//!
//! It proves nothing about any platform: only a provider that enrols a software TPM's
//! EK, under a policy that trusts [`SoftEkCa`], makes a service trust it, and nothing in
//! Perun does that outside benchmarks and tests.

use perun_attest::evidence::{ImaSource, TpmEvidence};
use perun_attest::ima::Entry;
use perun_attest::policy::{PlatformPolicy, USER_SPACE_MARKER};
use perun_attest::tpm::soft::SoftTpm;
use perun_client::Client;
use perun_core::{Digest, Name};
use perun_proto::wire::{Attested, Claimed, EnrolWorker};
use perun_seal::release::EphemeralKey;
use perun_worker::{Session, WorkerError};

use crate::TestkitError;

/// What the simulated worker binary hashes to (its IMA entry, and the policy's worker
/// binary).
const WORKER_BINARY: &[u8] = b"perun worker binary";

/// A software EK CA for simulated workers' software TPMs: their policy names it as its
/// own root, as a development policy names `swtpm-localca`.
pub struct SoftEkCa {
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
    root: Vec<u8>,
}

/// A software TPM's P-256 EK as rcgen signs it.
struct EkPoint(Vec<u8>);

impl rcgen::PublicKeyData for EkPoint {
    fn der_bytes(&self) -> &[u8] {
        &self.0
    }
    fn algorithm(&self) -> &'static rcgen::SignatureAlgorithm {
        &rcgen::PKCS_ECDSA_P256_SHA256
    }
}

impl SoftEkCa {
    /// A fresh CA.
    pub fn new() -> Result<Self, TestkitError> {
        let key = rcgen::KeyPair::generate()?;
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new())?;
        params.distinguished_name.push(rcgen::DnType::CommonName, "perun simulated-worker EK CA (development)");
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let root = params.self_signed(&key)?.der().to_vec();
        Ok(Self { issuer: rcgen::Issuer::new(params, key), root })
    }

    /// Its root certificate (DER).
    pub fn root(&self) -> &[u8] {
        &self.root
    }

    /// An EK certificate for `tpm`'s EK (DER).
    pub fn certify(&self, tpm: &SoftTpm) -> Result<Vec<u8>, TestkitError> {
        let params = rcgen::CertificateParams::new(Vec::<String>::new())?;
        let cert = params.signed_by(&EkPoint(tpm.ek_point()), &self.issuer)?;
        Ok(cert.der().to_vec())
    }
}

/// The IMA log a simulated worker boots with: `boot_aggregate` over its zeroed PCRs
/// 0-9, the user-space marker, the worker binary.
pub fn boot_log() -> [Entry; 3] {
    let boot_aggregate = Digest::of(&[0u8; 32 * 10]);
    [
        Entry::ima_ng("boot_aggregate", "sha256", boot_aggregate.as_bytes()),
        Entry::ima_ng(USER_SPACE_MARKER, "sha256", &[0u8; 32]),
        Entry::ima_ng("/usr/bin/perun", "sha256", Digest::of(WORKER_BINARY).as_bytes()),
    ]
}

/// An IMA entry the simulated workers' policy allows, one per re-attestation round.
pub fn round_entry(round: usize) -> Entry {
    Entry::ima_ng(&format!("/var/lib/perun/round-{round}"), "sha256", Digest::of(WORKER_BINARY).as_bytes())
}

/// The policy simulated workers meet: `ca` as EK root, zeroed boot PCRs, the worker
/// binary.
pub fn policy(name: &str, ca: &SoftEkCa) -> Result<PlatformPolicy, TestkitError> {
    let mut policy = PlatformPolicy::from_log(name, &boot_log());
    policy.accept_user_space_ima = true;
    policy.worker_binary = Some(Digest::of(WORKER_BINARY).to_string());
    policy.allowed_digests.insert(Digest::of(WORKER_BINARY).to_string());
    policy.ek.add_own_root(ca.root())?;
    let zeros = perun_attest::tpm::PcrBank {
        hash_alg: perun_attest::tpm::alg::SHA256,
        values: perun_attest::policy::BOOT_PCRS.map(|i| (i, vec![0u8; 32])).collect(),
    };
    policy.pin_boot_pcrs(&zeros)?;
    Ok(policy)
}

/// A simulated worker: a software TPM, its IMA log, its session with the service.
pub struct SimWorker {
    tpm: SoftTpm,
    log: Vec<u8>,
    session: Session,
}

impl SimWorker {
    /// A fresh software TPM certified by `ca`, enrolled as worker `name` by `provider`
    /// (a client speaking as the infrastructure provider), its AK activated over `anon`,
    /// its IMA log at [`boot_log`].
    pub fn enrol(provider: &Client, anon: &Client, name: Name, ca: &SoftEkCa) -> Result<Self, TestkitError> {
        let tpm = SoftTpm::new();
        let body = EnrolWorker {
            name: name.clone(),
            ek_public: tpm.ek_public().to_vec(),
            ek_certificate: ca.certify(&tpm)?,
            ek_chain: Vec::new(),
        };
        provider.enrol_worker(&body)?;
        let (ek_public, ak_public) = (tpm.ek_public().to_vec(), tpm.ak_public().to_vec());
        let session = Session::activate(anon, name, ek_public, ak_public, |blob, secret| {
            Ok(tpm.activate_credential(blob, secret)?)
        })?;
        let mut sim = Self { tpm, log: Vec::new(), session };
        for e in &boot_log() {
            sim.measure(e);
        }
        Ok(sim)
    }

    /// The worker's name.
    pub fn name(&self) -> &Name {
        self.session.name()
    }

    /// Its session (claims, nonces, the authenticated client).
    pub fn session(&self) -> &Session {
        &self.session
    }

    /// Speaks through a new connection, with the same token.
    pub fn reconnect(&mut self, base: &Client) {
        self.session.reconnect(base);
    }

    /// Its software TPM (a test extends a PCR behind the log's back with it).
    pub fn tpm_mut(&mut self) -> &mut SoftTpm {
        &mut self.tpm
    }

    /// Appends an entry to its IMA log and extends PCR 10 with it.
    pub fn measure(&mut self, e: &Entry) {
        self.log.extend_from_slice(&e.to_binary());
        self.tpm.extend_pcr10(&e.sha256_extend());
    }

    /// Claims a job.
    pub fn claim(&self, job: &Digest) -> Result<Claimed, WorkerError> {
        self.session.claim(job)
    }

    /// Attests for `job` with `nonce` (the claim's, or a fresh one).
    pub fn attest(
        &mut self,
        job: &Digest,
        nonce: &perun_proto::Nonce,
    ) -> Result<(EphemeralKey, Attested), WorkerError> {
        let (tpm, log) = (&mut self.tpm, &self.log);
        self.session.attest(job, nonce, |qualifying_data| evidence(tpm, log, qualifying_data))
    }

    /// The attestation request for `job` under `nonce`, unsent (a test sends it to two
    /// replicas at once).
    pub fn attestation(
        &mut self,
        job: &Digest,
        nonce: &perun_proto::Nonce,
    ) -> Result<(EphemeralKey, perun_proto::wire::Attest), WorkerError> {
        let (tpm, log) = (&mut self.tpm, &self.log);
        let service = self.session.client().audience();
        Session::attestation(&service, job, nonce, |qualifying_data| evidence(tpm, log, qualifying_data))
    }

    /// A continuous attestation for `job`, with the nonce the last answer handed out
    /// while it is valid, else a fresh one.
    pub fn reattest(&mut self, job: &Digest) -> Result<(EphemeralKey, Attested), WorkerError> {
        let (tpm, log) = (&mut self.tpm, &self.log);
        self.session.reattest(job, |qualifying_data| evidence(tpm, log, qualifying_data))
    }
}

/// Evidence of a software TPM: a quote of its PCRs with `qualifying_data`, and its log.
pub fn evidence(tpm: &mut SoftTpm, log: &[u8], qualifying_data: &[u8]) -> Result<TpmEvidence, WorkerError> {
    let (quote, signature, pcrs) = tpm.quote(qualifying_data)?;
    Ok(TpmEvidence {
        quote,
        signature,
        pcrs,
        ima_log: log.to_vec(),
        ima_source: ImaSource::UserSpace,
        event_log: Vec::new(),
    })
}
