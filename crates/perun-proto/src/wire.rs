//! The JSON bodies of the `/v1` API, shared by the service and its client. Binary values
//! are hex; signatures base64; digests `sha256:<hex>`.

use perun_core::{AssetKind, Digest, JobManifest, Name, PublicIdentity, Signature};
use serde::{Deserialize, Serialize};

use crate::audit::AuditView;
use crate::evidence::{TeeClaims, TeeEvidence, TpmEvidence};
use crate::nonce::Nonce;
use crate::policy::PolicyDocument;
use crate::sealed::{EphemeralPublicKey, SealedSecret};
use crate::state::{JobState, MetricInfo, OutputInfo, Review, WorkerState};
use crate::verdict::Failure;

/// `GET /v1/service`: who the service is.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ServiceInfo {
    /// The service's software version.
    pub version: String,
    /// The Ed25519 key that signs audit records (base64 of the 32 bytes).
    pub audit_key: String,
    /// The `age` recipient asset keys are wrapped to.
    pub wrap_recipient: String,
    /// The TLS certificate fingerprint.
    pub tls_fingerprint: Digest,
}

/// `POST /v1/stakeholders`, signed by the key being registered.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegisterStakeholder {
    /// The public identity.
    pub identity: PublicIdentity,
    /// What it does (at least one role); the service checks each action against them.
    pub roles: std::collections::BTreeSet<perun_core::Role>,
}

/// The answer to `POST /v1/stakeholders`: whether the registration took effect.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Registration {
    /// The name registered.
    pub name: Name,
    /// `admitted`: a member now; `pending`: it awaits admission.
    pub status: RegistrationStatus,
    /// What happens next, in words.
    pub message: String,
}

/// Where a registration stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RegistrationStatus {
    /// A member: its roles are in force.
    Admitted,
    /// Awaiting admission by the operator or a quorum of members; until then it can do
    /// nothing but wait.
    Pending,
}

/// `POST /v1/applications/{name}/admit`, signed by a member: its vote, bound to the key
/// it checked with the applicant (the fingerprint `perun id show` prints), so that a vote
/// never admits a key its voter did not see.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdmitVote {
    /// The applicant's key fingerprint, as the voter checked it.
    pub fingerprint: String,
}

/// A registration awaiting admission, as members and the operator see it
/// (`GET /v1/applications`).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Application {
    /// The public identity it registers (name, signing key, recipient).
    pub identity: PublicIdentity,
    /// The roles it asks for.
    pub roles: std::collections::BTreeSet<perun_core::Role>,
    /// When it applied (Unix seconds).
    pub applied_at: u64,
    /// Members that voted to admit it so far.
    pub votes: std::collections::BTreeSet<Name>,
    /// Votes needed (0: only the operator admits).
    pub quorum: u32,
}

/// `POST /v1/assets`, signed by the owner.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegisterAsset {
    /// The asset's name (unique in the service).
    pub name: Name,
    /// What it holds.
    pub kind: AssetKind,
    /// Digest of its plaintext content (from the sealed file's header).
    pub content_digest: Digest,
    /// Where the sealed file is: a path on the workers' hosts or an http(s) URL.
    pub location: String,
    /// The asset key, wrapped to the service's `wrap_recipient` (hex).
    #[serde(with = "hex::serde")]
    pub wrapped_key: Vec<u8>,
    /// The public recipient of the asset key (checked against the unwrapped key).
    pub recipient: String,
    /// The owner's signed terms for the asset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub terms: Option<perun_core::SignedTerms>,
}

/// An asset as its owner sees it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AssetInfo {
    /// The name.
    pub name: Name,
    /// The owner.
    pub owner: Name,
    /// What it holds.
    pub kind: AssetKind,
    /// Digest of its content.
    pub content_digest: Digest,
    /// Where the sealed file is.
    pub location: String,
    /// When it was registered.
    pub registered_at: u64,
    /// Its terms, if the owner set any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub terms: Option<perun_core::AssetTerms>,
    /// What jobs used of it so far.
    #[serde(default)]
    pub usage: perun_core::Usage,
}

/// `POST /v1/policies` answer.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PolicyAdded {
    /// The policy's digest, for manifests.
    pub digest: Digest,
}

/// `GET /v1/policies/{digest}`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PolicyInfo {
    /// Its digest.
    pub digest: Digest,
    /// Who published it.
    pub owner: Name,
    /// The policy.
    pub policy: PolicyDocument,
}

/// `POST /v1/jobs`, signed by the proposer.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProposeJob {
    /// The manifest.
    pub manifest: JobManifest,
}

/// `POST /v1/jobs/{id}/approve`, signed by an owner.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApproveJob {
    /// The owner's signature over the job digest (`job-approval/v1`).
    pub signature: Signature,
}

/// A job as its parties see it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct JobInfo {
    /// The manifest digest.
    pub id: Digest,
    /// The manifest.
    pub manifest: JobManifest,
    /// Who proposed it.
    pub proposer: Name,
    /// Its state.
    pub state: JobState,
    /// Owners that approved.
    pub approved_by: Vec<Name>,
    /// Owners whose approval is missing.
    pub missing: Vec<Name>,
    /// The worker running it.
    pub worker: Option<Name>,
    /// When the worker last attested.
    pub last_attested_at: Option<u64>,
    /// Whether keys were released.
    pub released: bool,
    /// Why it was revoked or expired.
    pub reason: Option<String>,
    /// The outputs delivered, as shown to parties: never with their wrapped keys (a
    /// receiver asks for its own with `GET /v1/jobs/{id}/outputs/{name}/key`).
    pub outputs: Vec<OutputInfo>,
    /// Whether the outputs are sealed under keys the service holds for the owners'
    /// review (the receivers ask for their keys), rather than to the receivers directly.
    #[serde(default)]
    pub under_review: bool,
    /// The output review, where an asset's terms ask for one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub review: Option<Review>,
    /// Whether a signed receipt is ready (`GET /v1/jobs/{id}/receipt`).
    #[serde(default)]
    pub has_receipt: bool,
}

/// `GET /v1/jobs/{id}/metrics`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct JobMetrics {
    /// The job's state.
    pub state: JobState,
    /// Per-epoch figures.
    pub epochs: Vec<MetricInfo>,
}

/// `POST /v1/jobs/{id}/revoke`, signed by a party of the job.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RevokeJob {
    /// Why.
    pub reason: String,
}

/// `POST /v1/workers`, signed by the infrastructure provider.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnrolWorker {
    /// The worker's name.
    pub name: Name,
    /// Its EK public area (`TPM2B_PUBLIC` or `TPMT_PUBLIC`, hex).
    #[serde(with = "hex::serde")]
    pub ek_public: Vec<u8>,
    /// The EK certificate (DER as read from the TPM's NV index, or PEM), required:
    /// a TPM without one cannot be enrolled.
    #[serde(with = "hex::serde")]
    pub ek_certificate: Vec<u8>,
    /// Intermediate CA certificates between it and its manufacturer's root, where the
    /// shipped bundle lacks them (never trusted as roots).
    #[serde(default)]
    pub ek_chain: Vec<perun_core::HexBytes>,
}

/// A worker as the service knows it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct WorkerInfo {
    /// Its name.
    pub name: Name,
    /// Who enrolled it.
    pub enrolled_by: Name,
    /// Its state.
    pub state: WorkerState,
    /// SHA-256 of its EK public area.
    pub ek_digest: Digest,
    /// The issuer of its EK certificate, as text (empty for an enclave).
    #[serde(default)]
    pub ek_issuer: String,
    /// Which group of the shipped EK CA bundle vouches for its TPM (`hardware`,
    /// `cloud`), or empty: then only a policy naming its CA (`--ek-ca`) accepts it.
    #[serde(default)]
    pub ek_bundle_group: String,
}

/// `POST /v1/workers/{name}/ak`: a worker presents its AK.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PresentAk {
    /// The EK public area the worker's TPM holds (must be the enrolled one).
    #[serde(with = "hex::serde")]
    pub ek_public: Vec<u8>,
    /// The AK public area (hex).
    #[serde(with = "hex::serde")]
    pub ak_public: Vec<u8>,
}

/// The MakeCredential challenge for an AK.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CredentialChallenge {
    /// `TPM2B_ID_OBJECT` contents (hex).
    #[serde(with = "hex::serde")]
    pub credential_blob: Vec<u8>,
    /// `TPM2B_ENCRYPTED_SECRET` contents (hex).
    #[serde(with = "hex::serde")]
    pub secret: Vec<u8>,
    /// When the challenge was issued (Unix seconds): the answer sends it back.
    pub issued_at: u64,
}

/// `POST /v1/workers/{name}/activate`: the credential the TPM recovered.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActivateAk {
    /// The recovered credential (hex). It is also the worker's access token.
    #[serde(with = "hex::serde")]
    pub credential: Vec<u8>,
    /// The AK public area the challenge was made for (hex).
    #[serde(with = "hex::serde")]
    pub ak_public: Vec<u8>,
    /// The challenge's `issued_at`.
    pub issued_at: u64,
}

/// A ready job offered to workers.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct OfferedJob {
    /// The job digest.
    pub id: Digest,
    /// The manifest.
    pub manifest: JobManifest,
}

/// Where an asset of a claimed job is.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AssetLocation {
    /// The asset.
    pub asset: Name,
    /// Its kind.
    pub kind: AssetKind,
    /// The digest its content must have.
    pub content_digest: Digest,
    /// Where the sealed file is.
    pub location: String,
}

/// `POST /v1/jobs/{id}/claim` answer.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Claimed {
    /// The job.
    pub job: OfferedJob,
    /// Where each asset is.
    pub assets: Vec<AssetLocation>,
    /// The policy the worker will be held to.
    pub policy: PolicyDocument,
    /// The receivers' `age` recipients, by name.
    pub receivers: Vec<(Name, String)>,
    /// The receivers' public identities as registered here (their Ed25519 keys let a
    /// serving enclave authenticate their prediction requests), in the manifest's order.
    #[serde(default)]
    pub receiver_identities: Vec<perun_core::PublicIdentity>,
    /// The first attestation nonce.
    pub nonce: Nonce,
    /// Where an asset's terms ask its owner to review the outputs: the service's `age`
    /// recipient, to which the worker wraps each output's key instead of sealing the
    /// output to the receivers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub review_recipient: Option<String>,
}

/// `POST /v1/jobs/{id}/nonce` answer.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct NonceIssued {
    /// A fresh nonce (hex; the service issues 56 bytes), valid for one attestation.
    pub nonce: Nonce,
    /// Seconds it stays valid.
    pub valid_s: u64,
}

/// `POST /v1/jobs/{id}/attest`: evidence bound to a nonce, the job and an ephemeral key.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Attest {
    /// The nonce the service issued.
    pub nonce: Nonce,
    /// The ephemeral HPKE public key (hex, 32 bytes) keys are released to.
    pub ephemeral_key: EphemeralPublicKey,
    /// The TPM evidence; its quote's qualifying data is
    /// `Digest::evidence_binding(service, nonce, job, ephemeral_key)`, where `service` is
    /// the fingerprint of the TLS certificate the worker pinned (the service binds its
    /// own, so evidence sent through a relay is refused).
    pub evidence: TpmEvidence,
}

/// An asset key released to the attested ephemeral key.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ReleasedKey {
    /// The asset.
    pub asset: Name,
    /// The key, sealed with HPKE under `perun_seal::release::release_info(job, asset)`.
    pub sealed: SealedSecret,
}

/// `POST /v1/jobs/{id}/attest` answer when accepted.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Attested {
    /// The IMA entries newly verified.
    pub new_entries: usize,
    /// The keys, on the job's first accepted attestation (empty after).
    pub keys: Vec<ReleasedKey>,
    /// Seconds until the next attestation is due.
    pub next_in_s: u64,
    /// A nonce for the next attestation (saves a round trip), and how long it is valid.
    pub next_nonce: NonceIssued,
}

/// `POST /v1/jobs/{id}/metrics`, by the job's worker.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReportMetrics {
    /// The epoch (1-based).
    pub epoch: u32,
    /// Its figures.
    pub values: serde_json::Map<String, serde_json::Value>,
}

/// `POST /v1/jobs/{id}/finish`, by the job's worker.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FinishJob {
    /// The outputs, sealed to the receivers (or, under review, to keys wrapped to the
    /// service).
    pub outputs: Vec<OutputInfo>,
    /// SHA-256 of the trained model's plaintext (the receipt's subject).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_digest: Option<Digest>,
    /// What DP-SGD spent, for a job that declared `privacy`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub privacy: Option<perun_core::receipt::PrivacySpent>,
    /// For an `attested` job, required: the worker's last attestation, over these claims.
    /// The quote's qualifying data is [`FinishJob::binding`] of its nonce and the job (not
    /// `evidence_binding`: a finish quote is no key-release quote, nor the reverse), so
    /// the outputs, the model digest and the privacy report are vouched for by the
    /// attested worker, not by its bearer token alone. Its `ephemeral_key` carries the
    /// claims digest (no key is released to it; the service binds its own digest).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attestation: Option<Attest>,
}

impl FinishJob {
    /// The SHA-256 of the claims (outputs, model digest, privacy report) in a canonical
    /// encoding: every field as length-prefixed bytes, floats by their IEEE 754 bits, so
    /// worker and service agree on it whatever JSON does to a float's decimal form.
    pub fn claims_digest(&self) -> Digest {
        let mut parts: Vec<Vec<u8>> =
            vec![b"finish-claims/v1".to_vec(), (self.outputs.len() as u64).to_be_bytes().to_vec()];
        for o in &self.outputs {
            parts.push(o.name.as_bytes().to_vec());
            parts.push(o.sealed_digest.as_bytes().to_vec());
            parts.push(o.location.as_bytes().to_vec());
            match &o.wrapped_key {
                Some(k) => parts.extend([vec![1], k.0.clone()]),
                None => parts.push(vec![0]),
            }
        }
        match &self.model_digest {
            Some(d) => parts.extend([vec![1], d.as_bytes().to_vec()]),
            None => parts.push(vec![0]),
        }
        match &self.privacy {
            Some(p) => {
                parts.push(vec![1]);
                let t = &p.target;
                for x in [t.epsilon, t.delta, t.max_grad_norm, p.noise_multiplier, p.sample_rate, p.epsilon] {
                    parts.push(x.to_bits().to_be_bytes().to_vec());
                }
                parts.push(p.steps.to_be_bytes().to_vec());
            }
            None => parts.push(vec![0]),
        }
        let refs: Vec<&[u8]> = parts.iter().map(Vec::as_slice).collect();
        Digest::of_parts(&refs)
    }

    /// The qualifying data of the last quote: the claims under `nonce` for `job`, made
    /// for the trust service `service` (the fingerprint of the TLS certificate the
    /// worker pinned, as in `Digest::evidence_binding`), in a context of their own
    /// (`finish-binding/v2`).
    pub fn binding(&self, service: &Digest, nonce: &Nonce, job: &Digest) -> Digest {
        Digest::of_parts(&[
            b"finish-binding/v2",
            service.as_bytes(),
            nonce.as_bytes(),
            job.as_bytes(),
            self.claims_digest().as_bytes(),
        ])
    }
}

/// `POST /v1/jobs/{id}/review`, by a reviewing owner: release the outputs to the
/// receivers, or refuse them.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReviewOutput {
    /// Release (true) or refuse (false).
    pub release: bool,
    /// For a release: the owner's signature ([`crate::review::REVIEW_CONTEXT`]) over
    /// [`crate::review::review_digest`] of the job and its receipt.
    #[serde(default)]
    pub signature: Option<Signature>,
}

/// `GET /v1/jobs/{id}/outputs/{name}/key`: an output's key wrapped to the caller.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct OutputKey {
    /// The output.
    pub output: String,
    /// The key, `age`-encrypted to the caller's registered recipient.
    #[serde(with = "hex::serde")]
    pub wrapped_key: Vec<u8>,
}

/// `POST /v1/jobs/{id}/fail`, by the job's worker: it stopped and wiped.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FailJob {
    /// Why.
    pub reason: String,
}

/// `GET /v1/audit`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AuditLog {
    /// The whole chain, bodies shown where they concern the caller.
    pub records: Vec<AuditView>,
}

/// An attestation refusal's details, as the client returns them.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Refusal {
    /// Why.
    pub reason: String,
    /// Each failed check.
    pub failures: Vec<Failure>,
}

/// `POST /v1/enclave/jobs/{id}/nonce`: an enclave asks for a nonce in its own name.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnclaveNonce {
    /// The name the enclave goes by (it becomes the job's worker).
    pub enclave: Name,
}

/// `POST /v1/enclave/jobs/{id}/attest`: a TEE report bound to a nonce, the job and an
/// ephemeral key.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AttestEnclave {
    /// The enclave's name (as in its nonce request).
    pub enclave: Name,
    /// The nonce the service issued to it.
    pub nonce: Nonce,
    /// The ephemeral HPKE public key (hex, 32 bytes) keys are released to.
    pub ephemeral_key: EphemeralPublicKey,
    /// The report; its report data is `Digest::evidence_binding(service, nonce, job,
    /// ephemeral_key)` (`service`: the pinned TLS certificate's fingerprint),
    /// zero-padded to 64 bytes.
    pub evidence: TeeEvidence,
}

/// The answer to an accepted TEE report.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct EnclaveAttested {
    /// Released keys (first report only) and the next nonce.
    pub attested: Attested,
    /// On the first report: the job is the enclave's, and what it needs to run it.
    #[serde(default)]
    pub claimed: Option<Claimed>,
    /// On the first report: the enclave's access token for its later calls, sealed to
    /// the ephemeral key (HPKE `info`: `perun_seal::release::token_info`).
    #[serde(default)]
    pub token: Option<SealedSecret>,
    /// What the verified report says (kind, measurements, TCB status, advisories).
    pub claims: TeeClaims,
}

#[cfg(test)]
mod tests {
    use super::*;
    use perun_core::receipt::PrivacySpent;
    use perun_core::DpTarget;

    fn claims() -> FinishJob {
        FinishJob {
            outputs: vec![OutputInfo {
                name: "model".into(),
                sealed_digest: Digest::of(b"sealed"),
                location: "/out/m.sealed".into(),
                wrapped_key: None,
            }],
            model_digest: Some(Digest::of(b"weights")),
            privacy: Some(PrivacySpent {
                target: DpTarget { epsilon: 0.9385958677423489, delta: 1e-5, max_grad_norm: 1.0 },
                noise_multiplier: 3.0312718281828459,
                sample_rate: 64.0 / 700.0,
                steps: 480,
                epsilon: 0.9385958677423488,
            }),
            attestation: None,
        }
    }

    #[test]
    fn the_claims_digest_survives_the_wire_and_covers_every_claim() {
        let c = claims();
        let sent: FinishJob = serde_json::from_slice(&serde_json::to_vec(&c).unwrap()).unwrap();
        assert_eq!(sent.claims_digest(), c.claims_digest(), "a float changed on the wire");
        let changes: [fn(&mut FinishJob); 6] = [
            |f| f.outputs[0].location.push('x'),
            |f| f.outputs.clear(),
            |f| f.model_digest = None,
            |f| f.privacy = None,
            |f| f.privacy.as_mut().unwrap().sample_rate = f64::from_bits(f.privacy.unwrap().sample_rate.to_bits() + 1),
            |f| f.privacy.as_mut().unwrap().steps += 1,
        ];
        for (i, change) in changes.iter().enumerate() {
            let mut other = c.clone();
            change(&mut other);
            assert_ne!(other.claims_digest(), c.claims_digest(), "change {i} kept the digest");
        }
        let (service, job) = (Digest::of(b"service"), Digest::of(b"job"));
        let nonce = &Nonce::new(b"nonce".to_vec()).unwrap();
        let claims = c.claims_digest();
        assert_ne!(
            c.binding(&service, nonce, &job),
            Digest::evidence_binding(&service, nonce.as_bytes(), &job, claims.as_bytes())
        );
        assert_ne!(c.binding(&service, nonce, &job), c.binding(&Digest::of(b"relay"), nonce, &job));
    }
}
