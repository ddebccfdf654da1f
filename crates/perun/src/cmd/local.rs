//! A whole Perun deployment on one machine, for `perun demo` and `perun bench overhead`:
//! a trust service (SQLite, TLS on loopback), an swtpm, registered stakeholders, and a
//! worker enrolled through the real protocol with a policy made from its own IMA log.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context as _, Result};
use perun_attest::tee::{AllowedTee, TcbLevel, TeeKind, TeePolicy};
use perun_client::{Caller, Client};
use perun_core::manifest::{APPROVAL_CONTEXT, MANIFEST_SCHEMA};
use perun_core::{sign_digest, AssetKind, AssetRef, Digest, JobManifest, JobMode, JobPurpose, Name, Role};
use perun_enclave::source::SimTee;
use perun_proto::wire::*;
use perun_seal::{sealed, AssetKey, SealedInfo, StakeholderKeys};
use perun_tpm::device::Tpm;
use perun_tpm::swtpm::{LocalCa, Swtpm};
use perun_tpm::tools::KeyAlg;
use perun_trust::server::Running;
use perun_trust::{Clock, ServiceKeys, SqliteStore, Trust, TrustConfig};
use perun_worker::{Agent, Platform};

use crate::home::Home;

/// The name of the local world's infrastructure provider.
pub const PROVIDER: &str = "infra";

/// The roles a party of the local world registers with, by its name: `infra` runs the
/// machines, `hospital*` own data, `model-owner` owns and receives the model, anyone
/// else (a clinic) receives.
pub fn roles_for(name: &str) -> Vec<Role> {
    match name {
        PROVIDER => vec![Role::Provider],
        "model-owner" => vec![Role::ModelOwner, Role::Receiver],
        n if n.starts_with("hospital") => vec![Role::DataOwner],
        _ => vec![Role::Receiver],
    }
}

/// A registered stakeholder with its client.
pub struct Party {
    /// Its keys.
    pub keys: StakeholderKeys,
    /// A client signing as it.
    pub client: Client,
}

impl Party {
    /// Its name.
    pub fn name(&self) -> &Name {
        self.keys.name()
    }
}

/// The running deployment.
pub struct LocalWorld {
    /// The folder everything lives in.
    pub root: PathBuf,
    /// The stakeholders' Perun home.
    pub home: Home,
    /// The worker's TPM (a software TPM with an EK certificate from `ca`).
    pub tpm: Swtpm,
    /// The local EK CA that certified the software TPM (development only).
    pub ca: LocalCa,
    /// The trust service.
    pub service: Arc<Trust<SqliteStore>>,
    /// Its server (stopped on drop).
    pub server: Running,
    /// An anonymous client.
    pub anon: Client,
    /// The stakeholders, in the order given.
    pub parties: Vec<Party>,
    service_recipient: age::x25519::Recipient,
}

impl LocalWorld {
    /// Starts the service and the swtpm (certified by a local EK CA in `root`) and
    /// registers `names` and the infrastructure provider `infra`, each with the roles
    /// of [`roles_for`].
    pub fn start(root: &Path, names: &[&str]) -> Result<Self> {
        let home = Home::at(&root.join("home"));
        let ca = LocalCa::at(&root.join("swtpm-localca"))?;
        let tpm = Swtpm::start_with(&ca).context("the worker needs a software TPM")?;
        let trust_dir = root.join("trust");
        std::fs::create_dir_all(&trust_dir)?;
        let keys = ServiceKeys::load_or_create(&trust_dir.join("keys"), &[])?;
        let fingerprint = keys.tls_fingerprint();
        let audit_key = keys.audit_key();
        let store = SqliteStore::open(&trust_dir.join("perun.db"))?;
        let service = Arc::new(Trust::new(store, keys, Clock::System, TrustConfig::default()));
        let server = Running::start(service.clone(), SocketAddr::from(([127, 0, 0, 1], 0)), 2)?;
        let anon = Client::new(&server.url(), fingerprint, Caller::Anonymous)?;
        std::fs::create_dir_all(home.root())?;
        std::fs::write(
            home.root().join("remote.json"),
            serde_json::to_vec_pretty(&crate::cmd::remote::Remote {
                url: server.url(),
                fingerprint,
                audit_key,
                replicas: Vec::new(),
            })?,
        )?;
        let mut parties = Vec::new();
        let provider = [PROVIDER];
        for n in names.iter().chain(provider.iter().filter(|p| !names.contains(p))) {
            let name = Name::new(n)?;
            let keys = StakeholderKeys::generate(name.clone());
            keys.save(&home.identity_dir(&name))?;
            let client = anon.with_caller(Caller::Stakeholder { name, key: keys.signing_key().clone() });
            let body = RegisterStakeholder { identity: keys.public(), roles: roles_for(n).into_iter().collect() };
            let _: () = client.call("POST", "/v1/stakeholders", Some(&body))?;
            parties.push(Party { keys, client });
        }
        let info: ServiceInfo = anon.call::<(), _>("GET", "/v1/service", None)?;
        let service_recipient = perun_seal::keys::parse_recipient(&info.wrap_recipient)?;
        Ok(Self { root: root.to_owned(), home, tpm, ca, service, server, anon, parties, service_recipient })
    }

    /// The infrastructure provider.
    pub fn provider(&self) -> Result<&Party> {
        self.parties.iter().find(|p| p.name().as_str() == PROVIDER).context("the local world has no provider")
    }

    /// Seals `plain` under a fresh key into `root/<owner>/<asset>.sealed`, keeps the key in
    /// the owner's key folder, and registers asset and wrapped key with the service.
    pub fn seal_and_register(
        &self,
        owner: &Party,
        asset: &str,
        kind: AssetKind,
        plain: &[u8],
    ) -> Result<(AssetRef, PathBuf, SealedInfo)> {
        self.seal_and_register_with(owner, asset, kind, plain, None)
    }

    /// [`Self::seal_and_register`] with the owner's `terms`, signed by it.
    pub fn seal_and_register_with(
        &self,
        owner: &Party,
        asset: &str,
        kind: AssetKind,
        plain: &[u8],
        terms: Option<super::outputs::TermsFile>,
    ) -> Result<(AssetRef, PathBuf, SealedInfo)> {
        let key = AssetKey::generate();
        let dir = self.root.join(owner.name().as_str());
        std::fs::create_dir_all(&dir)?;
        std::fs::create_dir_all(self.home.asset_key_dir(owner.name()))?;
        key.save(&self.home.asset_key_dir(owner.name()).join(format!("{asset}.key")))?;
        let out = dir.join(format!("{asset}.sealed"));
        let info = sealed::seal_bytes_to_file(plain, kind, &[key.recipient()], &out)?;
        let name = Name::new(asset)?;
        let terms = terms.map(|t| t.sign(&name, info.header.content_digest, &owner.keys)).transpose()?;
        let body = RegisterAsset {
            terms,
            name: Name::new(asset)?,
            kind,
            content_digest: info.header.content_digest,
            location: out.to_string_lossy().into_owned(),
            wrapped_key: perun_seal::wrap::wrap(key.to_secret_string().as_bytes(), &self.service_recipient)?,
            recipient: key.recipient().to_string(),
        };
        let _: AssetInfo = owner.client.call("POST", "/v1/assets", Some(&body))?;
        let r = AssetRef {
            asset: Name::new(asset)?,
            owner: owner.name().clone(),
            kind,
            content_digest: info.header.content_digest,
        };
        Ok((r, out, info))
    }

    /// The worker: its platform on the swtpm with the user-space measurer, a policy made
    /// from its log (and this binary's digest) published by `infra`, its EK enrolled by
    /// `infra`, and its AK proven. Returns the agent and the policy.
    ///
    /// The policy is a development one, and says so: it trusts the local EK CA that
    /// certified the swtpm (no TPM maker vouches for it) and the user-space measurer;
    /// it pins PCRs 0-9 to the swtpm's (no firmware ran, so no event log exists).
    pub fn worker(&self, infra: &Party, name: &str) -> Result<(Agent, PolicyInfo, usize)> {
        let t = Tpm::connect(&self.tpm.tcti(), KeyAlg::Rsa)?;
        let mut platform = Platform::user_space(t)?;
        let policy = platform.development_policy("demo worker (swtpm, user-space IMA)", &self.ca)?;
        let entries = policy.allowed_files.len();
        let added: PolicyInfo = infra.client.call_raw("POST", "/v1/policies", serde_json::to_vec(&policy)?)?;
        let _: WorkerInfo = infra.client.call("POST", "/v1/workers", Some(&platform.enrolment(Name::new(name)?)?))?;
        let agent = Agent::enrol(&self.anon, Name::new(name)?, platform, KeyAlg::Rsa)?;
        Ok((agent, added, entries))
    }

    /// Proposes a job (by `proposer`) and has each of `approvers` read it, recompute its
    /// digest and sign it. `on_approval` sees each approval's resulting state.
    #[allow(clippy::too_many_arguments)]
    pub fn propose_and_approve(
        &self,
        proposer: &Party,
        name: String,
        model: &AssetRef,
        data: &[AssetRef],
        policy: Digest,
        receivers: Vec<Name>,
        interval_s: u64,
        hyperparameters: std::collections::BTreeMap<String, serde_json::Value>,
        approvers: &[&Party],
        on_approval: &mut dyn FnMut(&Name, &JobInfo),
    ) -> Result<Digest> {
        let manifest = self.manifest(name, model, data, policy, receivers, interval_s, hyperparameters)?;
        self.submit_and_approve(proposer, manifest, approvers, on_approval)
    }

    /// The manifest of an attested training job of `model` on `data` under `policy`,
    /// valid for a day.
    #[allow(clippy::too_many_arguments)]
    pub fn manifest(
        &self,
        name: String,
        model: &AssetRef,
        data: &[AssetRef],
        policy: Digest,
        receivers: Vec<Name>,
        interval_s: u64,
        hyperparameters: std::collections::BTreeMap<String, serde_json::Value>,
    ) -> Result<JobManifest> {
        let now = perun_trust::unix_now();
        Ok(JobManifest {
            schema: MANIFEST_SCHEMA,
            name,
            mode: JobMode::Attested,
            model: model.clone(),
            data: data.to_vec(),
            platform_policy: policy,
            provider: Name::new(PROVIDER)?,
            workers: Default::default(),
            hyperparameters,
            receivers,
            purpose: Default::default(),
            approvers: Default::default(),
            privacy: None,
            attestation_interval_s: interval_s,
            created_at: now,
            expires_at: now + 24 * 3600,
        })
    }

    /// Proposes `manifest` (by `proposer`) and has each of `approvers` read it, recompute
    /// its digest and sign it.
    pub fn submit_and_approve(
        &self,
        proposer: &Party,
        manifest: JobManifest,
        approvers: &[&Party],
        on_approval: &mut dyn FnMut(&Name, &JobInfo),
    ) -> Result<Digest> {
        let job: JobInfo = proposer.client.call("POST", "/v1/jobs", Some(&ProposeJob { manifest }))?;
        for p in approvers {
            let seen: JobInfo = p.client.call::<(), _>("GET", &format!("/v1/jobs/{}", job.id), None)?;
            let signature = sign_digest(p.keys.signing_key(), APPROVAL_CONTEXT, &seen.manifest.digest());
            let after: JobInfo =
                p.client.call("POST", &format!("/v1/jobs/{}/approve", job.id), Some(&ApproveJob { signature }))?;
            on_approval(p.name(), &after);
        }
        Ok(job.id)
    }

    /// Publishes (as the provider) a TEE policy that accepts `sim`: its measurement, and
    /// its key by name (development only: no default policy names a sim key). Returns
    /// the policy and its digest.
    pub fn sim_tee_policy(&self, sim: &SimTee) -> Result<(TeePolicy, Digest)> {
        let policy = TeePolicy {
            name: "sim TEE for development (names its key)".into(),
            allowed: vec![AllowedTee {
                kind: Some(TeeKind::Sim),
                measurements: [("measurement".to_owned(), sim.measurement().to_hex())].into(),
            }],
            min_tcb: TcbLevel::UpToDate,
            sim_keys: [sim.public_key()].into(),
            min_svn: Default::default(),
            allow_debug: false,
        };
        let added: PolicyInfo =
            self.provider()?.client.call_raw("POST", "/v1/policies", serde_json::to_vec(&policy)?)?;
        Ok((policy, added.digest))
    }

    /// A `tee` job proposed by `owner` and approved by it and `others` (named in the
    /// manifest as approvers when they own no asset of it).
    #[allow(clippy::too_many_arguments)]
    pub fn tee_job(
        &self,
        owner: &Party,
        others: &[&Party],
        name: &str,
        purpose: JobPurpose,
        model: AssetRef,
        data: Vec<AssetRef>,
        policy: Digest,
        on_approval: &mut dyn FnMut(&Name, &JobInfo),
    ) -> Result<Digest> {
        let now = perun_trust::unix_now();
        let owners: Vec<Name> = data.iter().map(|d| d.owner.clone()).collect();
        let manifest = JobManifest {
            schema: MANIFEST_SCHEMA,
            name: name.to_owned(),
            mode: JobMode::Tee,
            purpose,
            model,
            data,
            platform_policy: policy,
            provider: Name::new(PROVIDER)?,
            workers: Default::default(),
            hyperparameters: Default::default(),
            receivers: vec![owner.name().clone()],
            approvers: others.iter().map(|p| p.name().clone()).filter(|n| !owners.contains(n)).collect(),
            privacy: None,
            attestation_interval_s: 5,
            created_at: now,
            expires_at: now + 24 * 3600,
        };
        let approvers: Vec<&Party> = std::iter::once(owner).chain(others.iter().copied()).collect();
        self.submit_and_approve(owner, manifest, &approvers, on_approval)
    }

    /// Serves trained `weights` on the sim TEE: `owner` seals them as asset `asset`,
    /// publishes a TEE policy naming `sim`, proposes a serving job that `others` approve;
    /// the enclave claims it with its report and serves on loopback (private requests
    /// only).
    pub fn serve_on_sim(
        &self,
        owner: &Party,
        others: &[&Party],
        asset: &str,
        weights: &[u8],
        sim: SimTee,
        on_approval: &mut dyn FnMut(&Name, &JobInfo),
    ) -> Result<Served> {
        let (model, _, info) = self.seal_and_register(owner, asset, AssetKind::Model, weights)?;
        let (policy, digest) = self.sim_tee_policy(&sim)?;
        let job = self.tee_job(
            owner,
            others,
            "serve the trained model",
            JobPurpose::Serve,
            model,
            Vec::new(),
            digest,
            on_approval,
        )?;
        let claim = perun_enclave::Enclave::claim(&self.anon, Name::new("tee-1")?, Box::new(sim), job)?;
        let claims = claim.claims.clone();
        let serving = perun_enclave::serve::Serving::open(claim, perun_ml::backend::Compute::Cpu, false)?;
        let running = perun_enclave::serve::RunningEnclave::start(serving, SocketAddr::from(([127, 0, 0, 1], 0)), 2)?;
        Ok(Served { job, policy, policy_digest: digest, sealed_len: info.sealed_len, claims, running })
    }
}

/// A model served on the sim TEE (see [`LocalWorld::serve_on_sim`]).
pub struct Served {
    /// The serving job.
    pub job: Digest,
    /// The TEE policy a client uses to accept the enclave.
    pub policy: TeePolicy,
    /// Its digest, as the job names it.
    pub policy_digest: Digest,
    /// Size of the sealed model asset.
    pub sealed_len: u64,
    /// What the trust service verified in the enclave's report.
    pub claims: perun_attest::tee::TeeClaims,
    /// The serving enclave.
    pub running: perun_enclave::serve::RunningEnclave,
}
