//! Simulated workers, to load a trust service (`perun bench trust`, the load-and-fault
//! test). Each has its own software TPM (P-256 EK and AK in memory; see
//! `perun_attest::tpm::soft`) and its own IMA log, and speaks the real protocol through
//! the same [`Session`] as an [`crate::Agent`]: enrolment by its provider, credential
//! activation, claim, attestation, continuous attestation. [`Parties`] are the
//! stakeholders they work for: a model owner, a hospital and the infrastructure
//! provider, with a model, a data set and a policy the simulated workers meet.
//!
//! It proves nothing about any platform: only a provider that enrols a software TPM's
//! EK, under a policy that trusts [`SoftEkCa`], makes a service trust it, and nothing in
//! Perun does that outside benchmarks and tests.

use perun_attest::evidence::{ImaSource, TpmEvidence};
use perun_attest::ima::Entry;
use perun_attest::policy::{PlatformPolicy, USER_SPACE_MARKER};
use perun_attest::tpm::soft::SoftTpm;
use perun_client::{Caller, Client};
use perun_core::manifest::{APPROVAL_CONTEXT, MANIFEST_SCHEMA};
use perun_core::{sign_digest, AssetKind, AssetRef, Digest, JobManifest, JobMode, Name, Role};
use perun_proto::wire::{
    ApproveJob, AssetInfo, Attested, Claimed, EnrolWorker, JobInfo, PolicyInfo, ProposeJob, RegisterAsset,
    RegisterStakeholder, ServiceInfo, WorkerInfo,
};
use perun_seal::release::EphemeralKey;
use perun_seal::{AssetKey, StakeholderKeys};

use crate::agent::Session;
use crate::WorkerError;

/// What the simulated worker binary hashes to (its IMA entry, and the policy's worker
/// binary).
const WORKER_BINARY: &[u8] = b"perun worker binary";

fn failed(what: &str) -> impl FnOnce(rcgen::Error) -> WorkerError + '_ {
    move |e| WorkerError::Failed(format!("{what}: {e}"))
}

fn name(s: &str) -> Result<Name, WorkerError> {
    Name::new(s).map_err(|e| WorkerError::Failed(e.to_string()))
}

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
    pub fn new() -> Result<Self, WorkerError> {
        let key = rcgen::KeyPair::generate().map_err(failed("CA key"))?;
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).map_err(failed("CA certificate"))?;
        params.distinguished_name.push(rcgen::DnType::CommonName, "perun simulated-worker EK CA (development)");
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let root = params.self_signed(&key).map_err(failed("CA certificate"))?.der().to_vec();
        Ok(Self { issuer: rcgen::Issuer::new(params, key), root })
    }

    /// Its root certificate (DER).
    pub fn root(&self) -> &[u8] {
        &self.root
    }

    /// An EK certificate for `tpm`'s EK (DER).
    pub fn certify(&self, tpm: &SoftTpm) -> Result<Vec<u8>, WorkerError> {
        let params = rcgen::CertificateParams::new(Vec::<String>::new()).map_err(failed("EK certificate"))?;
        let cert = params.signed_by(&EkPoint(tpm.ek_point()), &self.issuer).map_err(failed("EK certificate"))?;
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
pub fn policy(name: &str, ca: &SoftEkCa) -> Result<PlatformPolicy, WorkerError> {
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
    pub fn enrol(provider: &Client, anon: &Client, name: Name, ca: &SoftEkCa) -> Result<Self, WorkerError> {
        let tpm = SoftTpm::new();
        let body = EnrolWorker {
            name: name.clone(),
            ek_public: tpm.ek_public().to_vec(),
            ek_certificate: ca.certify(&tpm)?,
            ek_chain: Vec::new(),
        };
        let _: WorkerInfo = provider.call("POST", "/v1/workers", Some(&body))?;
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
    pub fn attest(&mut self, job: &Digest, nonce: &str) -> Result<(EphemeralKey, Attested), WorkerError> {
        let (tpm, log) = (&mut self.tpm, &self.log);
        self.session.attest(job, nonce, |qualifying_data| evidence(tpm, log, qualifying_data))
    }

    /// The attestation request for `job` under `nonce`, unsent (a test sends it to two
    /// replicas at once).
    pub fn attestation(
        &mut self,
        job: &Digest,
        nonce: &str,
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

/// The stakeholders simulated workers work for, registered with a service: a model owner
/// (also the receiver) with its model, a hospital with its data set, and the
/// infrastructure provider that enrols the workers and published [`policy`].
pub struct Parties {
    /// The model owner and receiver.
    pub owner: StakeholderKeys,
    /// The data owner.
    pub hospital: StakeholderKeys,
    /// The infrastructure provider.
    pub infra: StakeholderKeys,
    /// The CA of the workers' EK certificates.
    pub ca: SoftEkCa,
    /// The digest of the published policy.
    pub policy: Digest,
}

impl Parties {
    /// Registers the three stakeholders, the model and the data set (their keys wrapped
    /// to the service), and the provider's policy, through `anon`'s connection.
    pub fn register(anon: &Client) -> Result<Self, WorkerError> {
        let info: ServiceInfo = anon.call::<(), _>("GET", "/v1/service", None)?;
        let wrap_to = perun_seal::keys::parse_recipient(&info.wrap_recipient)?;
        let owner = StakeholderKeys::generate(name("model-owner")?);
        let hospital = StakeholderKeys::generate(name("hospital")?);
        let infra = StakeholderKeys::generate(name("infra")?);
        for (k, roles) in [
            (&owner, vec![Role::ModelOwner, Role::Receiver]),
            (&hospital, vec![Role::DataOwner]),
            (&infra, vec![Role::Provider]),
        ] {
            let body = RegisterStakeholder { identity: k.public(), roles: roles.into_iter().collect() };
            let _: () = Self::client_of(anon, k).call("POST", "/v1/stakeholders", Some(&body))?;
        }
        for (k, asset, kind) in [(&owner, "model", AssetKind::Model), (&hospital, "data", AssetKind::Dataset)] {
            let key = AssetKey::generate();
            let body = RegisterAsset {
                terms: None,
                name: name(asset)?,
                kind,
                content_digest: Digest::of(asset.as_bytes()),
                location: format!("/data/{asset}.sealed"),
                wrapped_key: perun_seal::wrap::wrap(key.to_secret_string().as_bytes(), &wrap_to)?,
                recipient: key.recipient().to_string(),
            };
            let _: AssetInfo = Self::client_of(anon, k).call("POST", "/v1/assets", Some(&body))?;
        }
        let ca = SoftEkCa::new()?;
        let body = serde_json::to_vec(&policy("simulated workers", &ca)?)
            .map_err(|e| WorkerError::Failed(format!("policy: {e}")))?;
        let policy: PolicyInfo = Self::client_of(anon, &infra).call_raw("POST", "/v1/policies", body)?;
        Ok(Self { owner, hospital, infra, ca, policy: policy.digest })
    }

    /// `base`'s connection, speaking as stakeholder `k`.
    pub fn client_of(base: &Client, k: &StakeholderKeys) -> Client {
        base.with_caller(Caller::Stakeholder { name: k.name().clone(), key: k.signing_key().clone() })
    }

    /// The owners whose approval a job of [`Self::manifest`] needs.
    pub fn approvers(&self) -> [&StakeholderKeys; 2] {
        [&self.owner, &self.hospital]
    }

    /// A job named `job_name`: the owner's model trained on the hospital's data by
    /// `worker` alone, under the provider's policy, attesting at least hourly, valid two
    /// hours.
    pub fn manifest(&self, job_name: &str, worker: &Name) -> JobManifest {
        let now = perun_proto::unix_now();
        let asset = |a: &str, o: &StakeholderKeys, kind| AssetRef {
            // allow-panic: the two asset names are constants of this module.
            asset: Name::new(a).unwrap_or_else(|_| unreachable!()),
            owner: o.name().clone(),
            kind,
            content_digest: Digest::of(a.as_bytes()),
        };
        JobManifest {
            schema: MANIFEST_SCHEMA,
            name: job_name.to_owned(),
            mode: JobMode::Attested,
            model: asset("model", &self.owner, AssetKind::Model),
            data: vec![asset("data", &self.hospital, AssetKind::Dataset)],
            platform_policy: self.policy,
            provider: self.infra.name().clone(),
            workers: [worker.to_string()].into(),
            hyperparameters: Default::default(),
            receivers: vec![self.owner.name().clone()],
            purpose: Default::default(),
            approvers: Default::default(),
            privacy: None,
            attestation_interval_s: 3600,
            created_at: now,
            expires_at: now + 7200,
        }
    }

    /// Proposes `manifest`, as the model owner, through `owner` (its client).
    pub fn propose(owner: &Client, manifest: JobManifest) -> Result<JobInfo, WorkerError> {
        Ok(owner.call("POST", "/v1/jobs", Some(&ProposeJob { manifest }))?)
    }

    /// `k`'s approval of `job`, sent through `client` (speaking as `k`).
    pub fn approve(client: &Client, k: &StakeholderKeys, job: &Digest) -> Result<JobInfo, WorkerError> {
        let signature = sign_digest(k.signing_key(), APPROVAL_CONTEXT, job);
        Ok(client.call("POST", &format!("/v1/jobs/{job}/approve"), Some(&ApproveJob { signature }))?)
    }
}
