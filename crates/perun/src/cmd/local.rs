//! A whole Perun deployment on one machine, for `perun demo` and `perun bench overhead`:
//! a trust service (SQLite, TLS on loopback), an swtpm, registered stakeholders, and a
//! worker enrolled through the real protocol with a policy made from its own IMA log.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context as _, Result};
use perun_attest::tee::{AllowedTee, TcbLevel, TeeKind, TeePolicy};
use perun_client::{AssetRegistration, Client, ManifestBuilder, Stakeholder};
use perun_core::{AssetKind, AssetRef, Digest, JobManifest, JobMode, JobPurpose, Name, Role};
use perun_enclave::source::SimTee;
use perun_proto::wire::*;
use perun_seal::{sealed, AssetKey, SealedInfo, StakeholderKeys};
use perun_testkit::InProcess;
use perun_tpm::device::Tpm;
use perun_tpm::swtpm::{LocalCa, Swtpm};
use perun_tpm::tools::KeyAlg;
use perun_trust::server::Running;
use perun_trust::{Clock, SqliteStore, Trust, TrustConfig};
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

    /// It as a stakeholder of [`perun_client::workflow`].
    pub fn stakeholder(&self) -> Stakeholder<'_> {
        Stakeholder::new(&self.client, &self.keys)
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
    /// The trust service, in-process (the test kit's), on SQLite in `root/trust`.
    svc: InProcess<SqliteStore>,
    /// The trust service.
    pub service: Arc<Trust<SqliteStore>>,
    /// An anonymous client.
    pub anon: Client,
    /// The stakeholders, in the order given.
    pub parties: Vec<Party>,
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
        let store = SqliteStore::open(&trust_dir.join("perun.db"))?;
        let svc = InProcess::start(store, &trust_dir.join("keys"), Clock::System, TrustConfig::default())?;
        let (service, anon, fingerprint) = (svc.trust.clone(), svc.anon.clone(), svc.fingerprint);
        let audit_key = service.keys().audit_key();
        let server = &svc.server;
        std::fs::create_dir_all(home.root())?;
        std::fs::write(
            home.root().join("remote.json"),
            serde_json::to_vec_pretty(&crate::cmd::context::Remote {
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
            let me = Stakeholder::new(&anon, &keys);
            // The local world's service runs here, so this process is its operator: each
            // registration waits for admission, and the operator admits it.
            if me.register(&roles_for(n))?.status == perun_proto::wire::RegistrationStatus::Pending {
                service.admit(&name, &keys.public().fingerprint())?;
            }
            let client = me.into_client();
            parties.push(Party { keys, client });
        }
        Ok(Self { root: root.to_owned(), home, tpm, ca, svc, service, anon, parties })
    }

    /// The trust service's server on loopback.
    pub fn server(&self) -> &Running {
        &self.svc.server
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
        owner.stakeholder().register_asset(AssetRegistration {
            name,
            kind,
            content_digest: info.header.content_digest,
            location: out.to_string_lossy().into_owned(),
            key: &key,
            terms,
        })?;
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
        let added = infra.client.publish_policy(serde_json::to_vec(&policy)?)?;
        infra.client.enrol_worker(&platform.enrolment(Name::new(name)?)?)?;
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
        Ok(ManifestBuilder::new(name, JobMode::Attested, model.clone(), policy, Name::new(PROVIDER)?)
            .data(data.to_vec())
            .hyperparameters(hyperparameters)
            .receivers(receivers)
            .attestation_interval_s(interval_s)
            .build(perun_proto::unix_now()))
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
        let job = proposer.stakeholder().propose(manifest)?;
        for p in approvers {
            // The demo's policies are development ones, and it says so when it shows them.
            let (_, after) = p.stakeholder().approve(&job.id, perun_client::Development::Allow)?;
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
        let added = self.provider()?.client.publish_policy(serde_json::to_vec(&policy)?)?;
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
        let owners: Vec<Name> = data.iter().map(|d| d.owner.clone()).collect();
        let manifest = ManifestBuilder::new(name, JobMode::Tee, model, policy, Name::new(PROVIDER)?)
            .purpose(purpose)
            .data(data)
            .receivers([owner.name().clone()])
            .approvers(others.iter().map(|p| p.name().clone()).filter(|n| !owners.contains(n)))
            .attestation_interval_s(5)
            .build(perun_proto::unix_now());
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
