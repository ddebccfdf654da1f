//! What the service stores: one record type per entity.

use perun_attest::ima::ReplayState;
use perun_core::{AssetKind, Digest, HexBytes, JobManifest, Name, PublicIdentity, Signature};
use serde::{Deserialize, Serialize};

use crate::store::{Record, Table};

// The values the API shows as they are stored: one definition, in the wire crate.
pub use perun_proto::state::{
    JobState, MetricInfo as MetricRecord, OutputInfo as OutputRecord, Review, ReviewOutcome, WorkerState,
};

/// A registered stakeholder.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct StakeholderRecord {
    /// Its public keys and name.
    pub identity: PublicIdentity,
    /// When it registered (Unix seconds).
    pub registered_at: u64,
    /// The roles its registration declared.
    #[serde(default)]
    pub roles: std::collections::BTreeSet<perun_core::Role>,
}

impl Record for StakeholderRecord {
    const TABLE: Table = Table::Stakeholders;
    fn key(&self) -> String {
        self.identity.name.to_string()
    }
}

/// A registration that awaits admission (docs/architecture.md, section 2: who is a stakeholder is
/// decided). It is no stakeholder: it authenticates nothing, owns nothing, approves
/// nothing. The operator admits it (`perun serve --admit NAME`), or enough members vote
/// (`TrustConfig::admission_quorum`); unadmitted, it expires.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ApplicationRecord {
    /// The public keys and name it registers.
    pub identity: PublicIdentity,
    /// The roles it asks for.
    pub roles: std::collections::BTreeSet<perun_core::Role>,
    /// When it applied (Unix seconds).
    pub applied_at: u64,
    /// Members that voted to admit it.
    #[serde(default)]
    pub votes: std::collections::BTreeSet<Name>,
    /// The network prefix it applied from (`/24`, `/48`): each prefix may hold only a
    /// few applications at once.
    #[serde(default)]
    pub from: String,
}

impl ApplicationRecord {
    /// Whether it still awaits admission at `now` (Unix seconds), not expired.
    pub fn pending_at(&self, now: u64) -> bool {
        self.expires().is_some_and(|at| at > now)
    }
}

/// Seconds a registration awaits admission before it expires (7 days).
pub const APPLICATION_VALID_S: u64 = 7 * 86_400;

impl Record for ApplicationRecord {
    const TABLE: Table = Table::Applications;
    fn key(&self) -> String {
        self.identity.name.to_string()
    }
    fn expires(&self) -> Option<u64> {
        Some(self.applied_at.saturating_add(APPLICATION_VALID_S))
    }
}

/// A registered asset. The key is wrapped to the service's `age` key: the store never
/// holds it in plaintext.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AssetRecord {
    /// The asset's name.
    pub name: Name,
    /// Its owner.
    pub owner: Name,
    /// What it holds.
    pub kind: AssetKind,
    /// Digest of its plaintext content.
    pub content_digest: Digest,
    /// Where the sealed file is kept (a path or an http(s) URL).
    pub location: String,
    /// The asset key, `age`-encrypted to the service.
    #[serde(with = "hex::serde")]
    pub wrapped_key: Vec<u8>,
    /// When it was registered.
    pub registered_at: u64,
    /// The owner's signed terms, checked at proposal and at every release.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub terms: Option<perun_core::SignedTerms>,
    /// The ledger: jobs released and epsilon charged so far.
    #[serde(default)]
    pub usage: perun_core::Usage,
}

impl Record for AssetRecord {
    const TABLE: Table = Table::Assets;
    fn key(&self) -> String {
        self.name.to_string()
    }
}

/// A policy (platform or TEE) as its author published it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PolicyRecord {
    /// Its digest (what manifests name).
    pub digest: Digest,
    /// Who published it.
    pub owner: Name,
    /// The policy.
    pub policy: perun_attest::JobPolicy,
    /// When it was added.
    pub added_at: u64,
}

impl Record for PolicyRecord {
    const TABLE: Table = Table::Policies;
    fn key(&self) -> String {
        self.digest.to_string()
    }
}

/// An enrolled worker, or an enclave that attested for a `tee` job.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct WorkerRecord {
    /// The worker's name.
    pub name: Name,
    /// The infrastructure provider that enrolled it.
    pub enrolled_by: Name,
    /// Its EK public area (`TPMT_PUBLIC`).
    #[serde(with = "hex::serde")]
    pub ek_public: Vec<u8>,
    /// The EK certificate its enrolment presented (DER), checked against each job's
    /// policy before any key is released.
    #[serde(default, with = "hex::serde")]
    pub ek_certificate: Vec<u8>,
    /// Intermediate CA certificates presented with it (DER).
    #[serde(default)]
    pub ek_chain: Vec<HexBytes>,
    /// Its activated AK (`TPMT_PUBLIC`), once proven.
    #[serde(default, with = "opt_hex")]
    pub ak_public: Option<Vec<u8>>,
    /// SHA-256 of the worker's access token (the activated credential).
    #[serde(default)]
    pub token_hash: Option<Digest>,
    /// Its state.
    pub state: WorkerState,
    /// When it was enrolled.
    pub enrolled_at: u64,
    /// For an enclave (a `tee`-mode worker): the TEE kind its accepted evidence came
    /// from. Enclaves have no EK or AK: their first accepted report enrols them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tee: Option<perun_attest::tee::TeeKind>,
}

impl Record for WorkerRecord {
    const TABLE: Table = Table::Workers;
    fn key(&self) -> String {
        self.name.to_string()
    }
}

/// A job.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct JobRecord {
    /// The manifest digest.
    pub id: Digest,
    /// The manifest.
    pub manifest: JobManifest,
    /// Who proposed it.
    pub proposer: Name,
    /// Its state.
    pub state: JobState,
    /// The worker that claimed it.
    #[serde(default)]
    pub worker: Option<Name>,
    /// The incremental IMA replay state of its worker (verified for this job's policy).
    #[serde(default)]
    pub replay: Option<ReplayState>,
    /// When the worker claimed it.
    #[serde(default)]
    pub claimed_at: Option<u64>,
    /// When its worker last attested successfully.
    #[serde(default)]
    pub last_attested_at: Option<u64>,
    /// Whether its keys were released.
    #[serde(default)]
    pub released: bool,
    /// Why it was revoked or expired.
    #[serde(default)]
    pub reason: Option<String>,
    /// The outputs its worker delivered.
    #[serde(default)]
    pub outputs: Vec<OutputRecord>,
    /// When it was proposed.
    pub proposed_at: u64,
    /// The appraisal that released its keys (for the receipt).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub release_attestation: Option<perun_core::receipt::ReceiptAttestation>,
    /// The signed training receipt, once the job finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub receipt: Option<perun_core::receipt::Envelope>,
    /// The owners' review of the outputs, where an asset's terms ask for one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub review: Option<Review>,
    /// Each output key wrapped (`age`) to each receiver, once released: `receiver/output`.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub output_keys: std::collections::BTreeMap<String, HexBytes>,
}

impl Record for JobRecord {
    const TABLE: Table = Table::Jobs;
    fn key(&self) -> String {
        self.id.to_string()
    }
}

/// An owner's approval of a job.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ApprovalRecord {
    /// The job.
    pub job: Digest,
    /// The owner.
    pub approver: Name,
    /// Its signature over the job digest.
    pub signature: Signature,
    /// When it was given.
    pub at: u64,
}

impl Record for ApprovalRecord {
    const TABLE: Table = Table::Approvals;
    fn key(&self) -> String {
        format!("{}/{}", self.job, self.approver)
    }
}

/// An attestation nonce issued to a worker for a job.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SessionRecord {
    /// The nonce (hex).
    pub nonce: String,
    /// The job.
    pub job: Digest,
    /// The worker.
    pub worker: Name,
    /// When it was issued.
    pub issued_at: u64,
    /// Whether evidence was already presented with it.
    pub used: bool,
}

impl Record for SessionRecord {
    const TABLE: Table = Table::Sessions;
    fn key(&self) -> String {
        self.nonce.clone()
    }
}

/// A seen nonce of a signed request.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RequestNonceRecord {
    /// `identity/nonce`.
    pub key: String,
}

impl Record for RequestNonceRecord {
    const TABLE: Table = Table::RequestNonces;
    fn key(&self) -> String {
        self.key.clone()
    }
}

/// One asset key released for a job.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ReleaseRecord {
    /// The job.
    pub job: Digest,
    /// The asset.
    pub asset: Name,
    /// The worker it went to.
    pub worker: Name,
    /// The ephemeral key it was sealed to (hex).
    pub ephemeral_key: String,
    /// When.
    pub at: u64,
}

impl Record for ReleaseRecord {
    const TABLE: Table = Table::Releases;
    fn key(&self) -> String {
        format!("{}/{}", self.job, self.asset)
    }
}

impl Record for MetricRecord {
    const TABLE: Table = Table::Metrics;
    fn key(&self) -> String {
        format!("{}/{:08}", self.job, self.epoch)
    }
}

/// Which service a store belongs to: the public halves of the keys of whichever process
/// first served it. Every later process (a restart, another replica) must hold the same
/// keys, or it refuses to start (it could not unwrap the stored asset keys, and its audit
/// records would not verify under the pinned audit key).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceIdentity {
    /// SHA-256 of the TLS certificate clients pin.
    pub tls_fingerprint: Digest,
    /// The audit signing key (base64 Ed25519).
    pub audit_key: String,
    /// The `age` recipient asset keys are wrapped to.
    pub wrap_recipient: String,
}

impl Record for ServiceIdentity {
    const TABLE: Table = Table::Service;
    fn key(&self) -> String {
        "identity".into()
    }
}

mod opt_hex {
    use serde::{Deserialize as _, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &Option<Vec<u8>>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(b) => s.serialize_some(&hex::encode(b)),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<u8>>, D::Error> {
        Option::<String>::deserialize(d)?.map(|s| hex::decode(s).map_err(serde::de::Error::custom)).transpose()
    }
}

/// What one party has added of one kind (policies it published, jobs it proposed),
/// counted in the write that adds to it: a bound is checked by reading this one small
/// record, not every stored one.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Quota {
    /// What is counted: [`Table::name`] of the records it counts.
    pub kind: String,
    /// The party.
    pub owner: Name,
    /// Records added.
    pub count: u64,
    /// Their JSON bytes, in all.
    pub bytes: u64,
}

impl Quota {
    /// The store key of `owner`'s quota of the records in `table`.
    pub fn key_of(table: Table, owner: &Name) -> String {
        format!("quota/{}/{owner}", table.name())
    }
}

impl Record for Quota {
    const TABLE: Table = Table::Service;
    fn key(&self) -> String {
        format!("quota/{}/{}", self.kind, self.owner)
    }
}
