//! The stakeholders simulated workers work for, registered through the same workflows
//! as the CLI's ([`perun_client::workflow`]).

use perun_client::{AssetRegistration, Client, ManifestBuilder, Stakeholder};
use perun_core::{AssetKind, AssetRef, Digest, JobManifest, JobMode, Name, Role};
use perun_proto::wire::{JobInfo, RegistrationStatus};
use perun_seal::{AssetKey, StakeholderKeys};
use perun_worker::WorkerError;

use crate::soft_worker::{policy, SoftEkCa};
use crate::TestkitError;

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

/// The model's and the data set's asset name and stand-in content digest.
const MODEL: &str = "model";
const DATA: &str = "data";

impl Parties {
    /// Registers the three stakeholders, the model and the data set (their keys wrapped
    /// to the service), and the provider's policy, through `anon`'s connection, on a
    /// service that registers openly (`TrustConfig::open_registration`).
    pub fn register(anon: &Client) -> Result<Self, TestkitError> {
        Self::register_admitted_by(anon, |name, _| {
            Err(TestkitError::Setup(format!("`{name}` awaits admission: the service does not register openly")))
        })
    }

    /// [`Self::register`] on a service that admits each registration: `admit` is its
    /// operator, given the name and key fingerprint (for an in-process service,
    /// `|n, fp| Ok(trust.admit(n, fp).map(drop)?)`).
    pub fn register_admitted_by(
        anon: &Client,
        admit: impl Fn(&Name, &str) -> Result<(), TestkitError>,
    ) -> Result<Self, TestkitError> {
        let owner = StakeholderKeys::generate(Name::new("model-owner")?);
        let hospital = StakeholderKeys::generate(Name::new("hospital")?);
        let infra = StakeholderKeys::generate(Name::new("infra")?);
        for (k, roles) in [
            (&owner, &[Role::ModelOwner, Role::Receiver][..]),
            (&hospital, &[Role::DataOwner]),
            (&infra, &[Role::Provider]),
        ] {
            if Stakeholder::new(anon, k).register(roles)?.status == RegistrationStatus::Pending {
                admit(k.name(), &k.public().fingerprint())?;
            }
        }
        for (k, asset, kind) in [(&owner, MODEL, AssetKind::Model), (&hospital, DATA, AssetKind::Dataset)] {
            let key = AssetKey::generate();
            Stakeholder::new(anon, k).register_asset(AssetRegistration {
                name: Name::new(asset)?,
                kind,
                content_digest: Digest::of(asset.as_bytes()),
                location: format!("/data/{asset}.sealed"),
                key: &key,
                terms: None,
            })?;
        }
        let ca = SoftEkCa::new()?;
        let body = serde_json::to_vec(&policy("simulated workers", &ca)?)?;
        let policy = Stakeholder::new(anon, &infra).publish_policy(body)?;
        Ok(Self { owner, hospital, infra, ca, policy: policy.digest })
    }

    /// `base`'s connection, speaking as stakeholder `k`.
    pub fn client_of(base: &Client, k: &StakeholderKeys) -> Client {
        Stakeholder::new(base, k).into_client()
    }

    /// The owners whose approval a job of [`Self::manifest`] needs.
    pub fn approvers(&self) -> [&StakeholderKeys; 2] {
        [&self.owner, &self.hospital]
    }

    /// A job named `job_name`: the owner's model trained on the hospital's data by
    /// `worker` alone, under the provider's policy, attesting at least hourly, valid two
    /// hours.
    pub fn manifest(&self, job_name: &str, worker: &Name) -> JobManifest {
        let asset = |a: &str, o: &StakeholderKeys, kind| AssetRef {
            // allow-panic: the two asset names are constants of this module.
            asset: Name::new(a).unwrap_or_else(|_| unreachable!()),
            owner: o.name().clone(),
            kind,
            content_digest: Digest::of(a.as_bytes()),
        };
        ManifestBuilder::new(
            job_name,
            JobMode::Attested,
            asset(MODEL, &self.owner, AssetKind::Model),
            self.policy,
            self.infra.name().clone(),
        )
        .data([asset(DATA, &self.hospital, AssetKind::Dataset)])
        .workers([worker.to_string()])
        .receivers([self.owner.name().clone()])
        .attestation_interval_s(3600)
        .valid_for_s(7200)
        .build(perun_proto::unix_now())
    }

    /// Proposes `manifest`, as the model owner, through `owner` (its client).
    pub fn propose(owner: &Client, manifest: JobManifest) -> Result<JobInfo, WorkerError> {
        Ok(owner.propose(&perun_proto::wire::ProposeJob { manifest })?)
    }

    /// `k`'s approval of `job`, sent through `client`'s connection.
    pub fn approve(client: &Client, k: &StakeholderKeys, job: &Digest) -> Result<JobInfo, WorkerError> {
        Ok(Stakeholder::new(client, k).approve_unreviewed(job)?)
    }
}
