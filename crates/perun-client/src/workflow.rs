//! The stakeholders' workflows over the typed API, written once for the CLI, the demo,
//! the benchmarks and the tests: registration, asset registration with the asset key
//! wrapped to the service, manifest building, the approver's review and signed approval,
//! and verification of the audit chain against the pinned audit key.
//!
//! The approval rule it implements (docs/architecture.md, section 2, "the release rule"): an approver signs the
//! digest of the manifest it recomputed from what the service returned, never a digest
//! it was given, and only after reading the platform policy the manifest pins (checked
//! against the manifest's digest of it).

use std::collections::{BTreeMap, BTreeSet};

use ed25519_dalek::VerifyingKey;
use perun_attest::JobPolicy;
use perun_core::manifest::{APPROVAL_CONTEXT, MANIFEST_SCHEMA};
use perun_core::receipt::{Envelope, Statement};
use perun_core::{
    sign_digest, AssetKind, AssetRef, Digest, DpTarget, JobManifest, JobMode, JobPurpose, Name, Role, SignedTerms,
};
use perun_proto::audit::Checkpoint;
use perun_proto::wire::{
    ApproveJob, AssetInfo, AuditLog, JobInfo, PolicyInfo, ProposeJob, RegisterAsset, RegisterStakeholder, Registration,
    ReviewOutput,
};
use perun_seal::wrap::WrapContext;
use perun_seal::{AssetKey, StakeholderKeys};

use crate::{Caller, Client, ClientError};

/// A stakeholder speaking to the service: its keys and a client that signs as it.
pub struct Stakeholder<'k> {
    keys: &'k StakeholderKeys,
    client: Client,
}

/// What [`Stakeholder::approve`] does with a policy that accepts development evidence
/// (a software TPM, a local EK CA, the `sim` TEE).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Development {
    /// Refuse to sign ([`ClientError::DevelopmentPolicy`]): the default a user gets.
    Refuse,
    /// Sign all the same (trying Perun on one machine).
    Allow,
}

/// An asset to register: its descriptor as the sealed file's authenticated header gives
/// it, where workers fetch it, and its key.
pub struct AssetRegistration<'a> {
    /// The asset's name.
    pub name: Name,
    /// What it holds.
    pub kind: AssetKind,
    /// SHA-256 of its plaintext (the sealed header's `content_digest`).
    pub content_digest: Digest,
    /// A path on the workers' hosts or an http(s) URL.
    pub location: String,
    /// The asset key, wrapped here to the service's recipient; never sent in the clear.
    pub key: &'a AssetKey,
    /// The owner's signed terms, if any.
    pub terms: Option<SignedTerms>,
}

impl<'k> Stakeholder<'k> {
    /// `keys`'s stakeholder on `base`'s connection.
    pub fn new(base: &Client, keys: &'k StakeholderKeys) -> Self {
        let client =
            base.with_caller(Caller::Stakeholder { name: keys.name().clone(), key: keys.signing_key().clone() });
        Self { keys, client }
    }

    /// Its name.
    pub fn name(&self) -> &Name {
        self.keys.name()
    }

    /// Its keys.
    pub fn keys(&self) -> &'k StakeholderKeys {
        self.keys
    }

    /// The client signing as it.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The client signing as it, taken.
    pub fn into_client(self) -> Client {
        self.client
    }

    /// Registers it with `roles`: a member at once where the service registers openly
    /// (development), else pending until the operator or a quorum of members admits it
    /// (the answer says which).
    pub fn register(&self, roles: &[Role]) -> Result<Registration, ClientError> {
        let body = RegisterStakeholder { identity: self.keys.public(), roles: roles.iter().copied().collect() };
        self.client.register_stakeholder(&body)
    }

    /// Registers a sealed asset: its key is wrapped (age, X25519) to the recipient the
    /// pinned service names in `GET /v1/service`, so only that service can unwrap it, and
    /// bound to this owner, the asset's name, kind and content digest
    /// ([`WrapContext::asset_key`]), so that it opens for no other registration.
    ///
    /// Errors: [`ClientError::Seal`] for a service recipient that does not parse or a
    /// failed wrap; the service's refusals.
    pub fn register_asset(&self, a: AssetRegistration<'_>) -> Result<AssetInfo, ClientError> {
        let info = self.client.service()?;
        let service = perun_seal::keys::parse_recipient(&info.wrap_recipient)?;
        // Bound to this owner, asset, kind and content: the service unwraps it for
        // nothing else (docs/architecture.md, section 2).
        let context = WrapContext::asset_key(self.keys.name(), &a.name, a.kind, &a.content_digest);
        let body = RegisterAsset {
            terms: a.terms,
            name: a.name,
            kind: a.kind,
            content_digest: a.content_digest,
            location: a.location,
            wrapped_key: perun_seal::wrap::wrap(a.key.to_secret_string().as_bytes(), &service, &context)?,
            recipient: a.key.recipient().to_string(),
        };
        self.client.register_asset(&body)
    }

    /// Publishes a platform or TEE policy (its JSON).
    pub fn publish_policy(&self, policy_json: Vec<u8>) -> Result<PolicyInfo, ClientError> {
        self.client.publish_policy(policy_json)
    }

    /// Proposes `manifest`.
    pub fn propose(&self, manifest: JobManifest) -> Result<JobInfo, ClientError> {
        self.client.propose(&ProposeJob { manifest })
    }

    /// What an approver reads before signing: the job with its manifest, checked to
    /// digest to `job`, and the platform policy it pins, checked against the manifest.
    ///
    /// Errors: [`ClientError::ManifestMismatch`], [`ClientError::PolicyMismatch`].
    pub fn review_job(&self, job: &Digest) -> Result<(JobInfo, JobPolicy), ClientError> {
        let info = self.client.job(job)?;
        let got = info.manifest.digest();
        if got != *job {
            return Err(ClientError::ManifestMismatch { expected: *job, got });
        }
        let policy = self.pinned_policy(&info.manifest)?;
        Ok((info, policy))
    }

    /// The policy `manifest` pins, fetched and checked against its digest.
    ///
    /// Errors: [`ClientError::Policy`] for a document that is no policy,
    /// [`ClientError::PolicyMismatch`].
    pub fn pinned_policy(&self, manifest: &JobManifest) -> Result<JobPolicy, ClientError> {
        let p = self.client.policy(&manifest.platform_policy)?;
        let policy = JobPolicy::try_from(&p.policy).map_err(ClientError::Policy)?;
        let got = policy.digest();
        if got != manifest.platform_policy {
            return Err(ClientError::PolicyMismatch { expected: manifest.platform_policy, got });
        }
        Ok(policy)
    }

    /// Reviews `job` ([`Self::review_job`]) and signs its recomputed digest under
    /// `approval/v1` (`APPROVAL_CONTEXT`). Returns the job as reviewed and as it stands
    /// after the approval.
    ///
    /// Errors: those of [`Self::review_job`]; [`ClientError::DevelopmentPolicy`] for a
    /// policy that accepts development evidence, unless `development` allows it.
    pub fn approve(&self, job: &Digest, development: Development) -> Result<(JobInfo, JobInfo), ClientError> {
        let (info, policy) = self.review_job(job)?;
        let dev = policy.development();
        if !dev.is_empty() && development == Development::Refuse {
            return Err(ClientError::DevelopmentPolicy { job: *job, policy: policy.name().to_owned(), why: dev });
        }
        let after = self.approve_unreviewed(job)?;
        Ok((info, after))
    }

    /// Signs `job` without reading it first: for parties whose manifest it built itself
    /// (the demo's, the benchmarks'). A user's approval goes through [`Self::approve`].
    pub fn approve_unreviewed(&self, job: &Digest) -> Result<JobInfo, ClientError> {
        let signature = sign_digest(self.keys.signing_key(), APPROVAL_CONTEXT, job);
        self.client.approve(job, &ApproveJob { signature })
    }

    /// Fetches the audit records it may see and verifies their chain: every record
    /// signed by `pinned` (the audit key pinned with the service, never one fetched now),
    /// none missing or edited, extending `since` (the checkpoint verified last time).
    /// Returns the records and the new checkpoint to keep.
    ///
    /// Errors: [`ClientError::AuditKeyChanged`] when the service now names another
    /// audit key; [`ClientError::Audit`] for a broken chain.
    pub fn verify_audit(
        &self,
        pinned: &VerifyingKey,
        since: Option<&Checkpoint>,
    ) -> Result<(AuditLog, Checkpoint), ClientError> {
        let log = self.client.audit()?;
        let now = self.client.service()?.audit_key;
        if parse_audit_key(&now).ok() != Some(*pinned) {
            use base64::Engine as _;
            let pinned = base64::engine::general_purpose::STANDARD.encode(pinned.as_bytes());
            return Err(ClientError::AuditKeyChanged { pinned, now });
        }
        let head = perun_proto::audit::verify_extends(&log.records, pinned, since)?;
        Ok((log, head))
    }
}

impl Stakeholder<'_> {
    /// A finished job's training receipt, verified under `pinned` (the audit key pinned
    /// with the service) and checked to be `job`'s.
    ///
    /// Errors: [`ClientError::Receipt`] for an envelope that does not verify;
    /// [`ClientError::ReceiptMismatch`] for the receipt of another job.
    pub fn verified_receipt(&self, job: &Digest, pinned: &VerifyingKey) -> Result<(Envelope, Statement), ClientError> {
        let env = self.client.receipt(job)?;
        let statement = env.verify(pinned).map_err(ClientError::Receipt)?;
        if statement.predicate.job != *job {
            return Err(ClientError::ReceiptMismatch { expected: *job, got: statement.predicate.job });
        }
        Ok((env, statement))
    }

    /// A reviewing owner's decision on `job`'s outputs: the receipt is verified first
    /// ([`Self::verified_receipt`]); a release is signed under `output-release/v1` over
    /// the job and that receipt's payload (`perun_proto::review::review_digest`), a
    /// refusal is sent unsigned.
    pub fn review_output(&self, job: &Digest, pinned: &VerifyingKey, release: bool) -> Result<JobInfo, ClientError> {
        let (env, _) = self.verified_receipt(job, pinned)?;
        let signature = release.then(|| {
            sign_digest(
                self.keys.signing_key(),
                perun_proto::review::REVIEW_CONTEXT,
                &perun_proto::review::review_digest(job, &env),
            )
        });
        self.client.review(job, &ReviewOutput { release, signature })
    }

    /// Opens output `output` of `job` (a receiver's copy of the sealed file, `sealed`)
    /// into memory, after checking its bytes against the digest the service recorded.
    /// Under review, the output key comes from the service, wrapped to this receiver for
    /// this job and output ([`WrapContext::output_for_receiver`]), and is refused if it
    /// was made for anything else; otherwise the output is sealed to this receiver's own
    /// key.
    ///
    /// Errors: [`ClientError::OutputMismatch`] for bytes that are not the recorded output;
    /// [`ClientError::Seal`] for a key made for another context or a file that does not
    /// open; the service's refusals (a pending or refused review, not a receiver).
    pub fn open_output(
        &self,
        job: &JobInfo,
        output: &perun_proto::OutputInfo,
        sealed: &[u8],
    ) -> Result<zeroize::Zeroizing<Vec<u8>>, ClientError> {
        if perun_core::Digest::of(sealed) != output.sealed_digest {
            return Err(ClientError::OutputMismatch { output: output.name.clone(), job: job.id });
        }
        let len = Some(sealed.len() as u64);
        let kind = Some(perun_core::AssetKind::Output);
        if job.under_review {
            let k = self.client.output_key(&job.id, &output.name)?;
            let context = WrapContext::output_for_receiver(&job.id, &output.name, self.keys.name());
            let text = perun_seal::wrap::unwrap(&k.wrapped_key, self.keys.age_identity(), &context)?;
            let text = std::str::from_utf8(&text).map_err(|_| {
                ClientError::Seal(perun_seal::SealError::InvalidKey("the output key is not text".into()))
            })?;
            let key = AssetKey::parse(text)?;
            Ok(perun_seal::sealed::open_to_vec(sealed, len, key.identity(), kind)?.1)
        } else {
            Ok(perun_seal::sealed::open_to_vec(sealed, len, self.keys.age_identity(), kind)?.1)
        }
    }
}

/// The service's audit key from its standard-base64 form (`GET /v1/service`).
///
/// Errors: [`ClientError::AuditKey`] for text that is not base64 of an Ed25519 key.
pub fn parse_audit_key(b64: &str) -> Result<VerifyingKey, ClientError> {
    use base64::Engine as _;
    let raw = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .map_err(|_| ClientError::AuditKey { why: "it is not base64" })?;
    VerifyingKey::try_from(raw.as_slice()).map_err(|_| ClientError::AuditKey { why: "it is not an Ed25519 key" })
}

/// A job manifest, built from what differs between jobs; the rest takes the defaults a
/// careful proposer wants (train, attest every hour, valid for a day).
///
/// ```
/// # use perun_client::workflow::ManifestBuilder;
/// # use perun_core::{AssetKind, AssetRef, Digest, JobMode, Name};
/// let model = AssetRef {
///     asset: "model".parse().unwrap(),
///     owner: "model-owner".parse().unwrap(),
///     kind: AssetKind::Model,
///     content_digest: Digest::of(b"model"),
/// };
/// let m = ManifestBuilder::new("cnn", JobMode::Attested, model, Digest::of(b"policy"), "infra".parse().unwrap())
///     .receivers(["model-owner".parse().unwrap()])
///     .build(1_000);
/// assert_eq!(m.expires_at, 1_000 + 86_400);
/// ```
#[derive(Clone, Debug)]
pub struct ManifestBuilder {
    m: JobManifest,
    valid_for_s: u64,
}

impl ManifestBuilder {
    /// A job named `name` in `mode` over `model`, on the provider's workers that meet
    /// the policy with digest `policy`.
    pub fn new(name: impl Into<String>, mode: JobMode, model: AssetRef, policy: Digest, provider: Name) -> Self {
        Self {
            m: JobManifest {
                schema: MANIFEST_SCHEMA,
                name: name.into(),
                mode,
                model,
                data: Vec::new(),
                platform_policy: policy,
                provider,
                workers: BTreeSet::new(),
                hyperparameters: BTreeMap::new(),
                receivers: Vec::new(),
                purpose: JobPurpose::Train,
                approvers: BTreeSet::new(),
                privacy: None,
                attestation_interval_s: 3600,
                created_at: 0,
                expires_at: 0,
            },
            valid_for_s: 86_400,
        }
    }

    /// The data sets it trains on.
    pub fn data(mut self, data: impl IntoIterator<Item = AssetRef>) -> Self {
        self.m.data = data.into_iter().collect();
        self
    }

    /// The workers (by name) it may run on; none means any of the provider's.
    pub fn workers(mut self, workers: impl IntoIterator<Item = String>) -> Self {
        self.m.workers = workers.into_iter().collect();
        self
    }

    /// Who receives the outputs, sealed to their keys.
    pub fn receivers(mut self, receivers: impl IntoIterator<Item = Name>) -> Self {
        self.m.receivers = receivers.into_iter().collect();
        self
    }

    /// Approvers beyond the asset owners.
    pub fn approvers(mut self, approvers: impl IntoIterator<Item = Name>) -> Self {
        self.m.approvers = approvers.into_iter().collect();
        self
    }

    /// The training recipe's hyperparameters (epochs, batch, learning rate...).
    pub fn hyperparameters(mut self, h: BTreeMap<String, serde_json::Value>) -> Self {
        self.m.hyperparameters = h;
        self
    }

    /// Train (the default) or serve.
    pub fn purpose(mut self, purpose: JobPurpose) -> Self {
        self.m.purpose = purpose;
        self
    }

    /// A DP-SGD target: (epsilon, delta) and the clipping norm.
    pub fn privacy(mut self, privacy: Option<DpTarget>) -> Self {
        self.m.privacy = privacy;
        self
    }

    /// The longest time between two attestations of a running worker, in seconds.
    pub fn attestation_interval_s(mut self, s: u64) -> Self {
        self.m.attestation_interval_s = s;
        self
    }

    /// How long the job may be started after it is built, in seconds.
    pub fn valid_for_s(mut self, s: u64) -> Self {
        self.valid_for_s = s;
        self
    }

    /// The manifest, created at `now` (Unix seconds).
    pub fn build(mut self, now: u64) -> JobManifest {
        // DP-SGD refuses fitted standardisation (its means and deviations would leave in
        // the weights unprotected), and a worker finds out only after the keys are
        // released and the budget charged: a DP job states it in its manifest.
        if self.m.privacy.is_some() && !self.m.hyperparameters.contains_key("standardize") {
            self.m.hyperparameters.insert("standardize".into(), serde_json::Value::Bool(false));
        }
        self.m.created_at = now;
        self.m.expires_at = now.saturating_add(self.valid_for_s);
        self.m
    }
}
/// An asset of a manifest: one of the caller's assets (`mine`) by name, or another
/// owner's as `OWNER/NAME@sha256:...` (the service checks it against the registration).
///
/// Errors: [`ClientError::AssetSpec`] naming what to write instead.
pub fn asset_ref(mine: &[AssetInfo], spec: &str, kind: AssetKind) -> Result<AssetRef, ClientError> {
    let bad = |why: String| ClientError::AssetSpec(why);
    if let Some((owner, rest)) = spec.split_once('/') {
        let (asset, digest) =
            rest.split_once('@').ok_or_else(|| bad(format!("`{spec}`: expected OWNER/NAME@sha256:...")))?;
        let parse = |e: perun_core::CoreError| bad(format!("`{spec}`: {e}"));
        return Ok(AssetRef {
            asset: asset.parse().map_err(parse)?,
            owner: owner.parse().map_err(parse)?,
            kind,
            content_digest: digest.parse().map_err(parse)?,
        });
    }
    let n: Name = spec.parse().map_err(|e: perun_core::CoreError| bad(format!("`{spec}`: {e}")))?;
    let a = mine.iter().find(|a| a.name == n).ok_or_else(|| {
        bad(format!("asset `{n}` is not yours: name it as OWNER/{n}@sha256:... with the digest its owner gives you"))
    })?;
    if a.kind != kind {
        return Err(bad(format!("asset `{n}` is a {}, not a {}", a.kind.as_str(), kind.as_str())));
    }
    Ok(AssetRef { asset: a.name.clone(), owner: a.owner.clone(), kind: a.kind, content_digest: a.content_digest })
}

/// Checks a training receipt offline: `receipt` (a DSSE envelope, JSON) verifies under
/// the service's audit `key`, and `model`'s SHA-256 is one of its subjects.
///
/// Errors: [`ClientError::Receipt`] for an envelope that does not parse or verify;
/// [`ClientError::NotASubject`] for a model the receipt does not describe.
pub fn verify_receipt(receipt: &[u8], model: &[u8], key: &VerifyingKey) -> Result<Statement, ClientError> {
    let statement = Envelope::from_json(receipt).and_then(|env| env.verify(key)).map_err(ClientError::Receipt)?;
    let digest = Digest::of(model);
    if !statement.subject.iter().any(|s| s.sha256_digest() == Some(digest)) {
        return Err(ClientError::NotASubject { digest });
    }
    Ok(statement)
}

#[cfg(test)]
mod tests {
    use ed25519_dalek::SigningKey;
    use perun_core::receipt::{Subject, TrainingPredicate};
    use perun_core::{DpTarget, Usage};

    use super::*;

    fn name(n: &str) -> Name {
        Name::new(n).unwrap()
    }

    #[test]
    fn an_asset_is_named_as_ones_own_or_as_owner_name_and_digest() {
        let mine = vec![AssetInfo {
            name: name("bc-a"),
            owner: name("hospital-a"),
            kind: AssetKind::Dataset,
            content_digest: Digest::of(b"bc-a"),
            location: "/srv/bc-a.sealed".into(),
            registered_at: 0,
            terms: None,
            usage: Usage::default(),
        }];
        let own = asset_ref(&mine, "bc-a", AssetKind::Dataset).unwrap();
        assert_eq!((own.owner.as_str(), own.content_digest), ("hospital-a", Digest::of(b"bc-a")));
        let other = format!("hospital-b/bc-b@{}", Digest::of(b"bc-b"));
        let theirs = asset_ref(&mine, &other, AssetKind::Dataset).unwrap();
        assert_eq!((theirs.owner.as_str(), theirs.asset.as_str()), ("hospital-b", "bc-b"));
        for (spec, kind, says) in [
            ("bc-b", AssetKind::Dataset, "not yours"),
            ("bc-a", AssetKind::Model, "is a dataset, not a model"),
            ("hospital-b/bc-b", AssetKind::Dataset, "expected OWNER/NAME@sha256"),
            ("hospital-b/bc-b@sha256:zz", AssetKind::Dataset, "hospital-b/bc-b@sha256:zz"),
        ] {
            let e = asset_ref(&mine, spec, kind).unwrap_err();
            assert!(matches!(&e, ClientError::AssetSpec(m) if m.contains(says)), "{spec}: {e}");
        }
    }

    #[test]
    fn a_dp_job_states_that_it_trains_without_fitted_standardisation() {
        let model = AssetRef {
            asset: name("mlp"),
            owner: name("owner"),
            kind: AssetKind::Model,
            content_digest: Digest::of(b"mlp"),
        };
        let builder = || ManifestBuilder::new("j", JobMode::Attested, model.clone(), Digest::of(b"p"), name("infra"));
        let dp = Some(DpTarget { epsilon: 3.0, delta: 1e-5, max_grad_norm: 1.0 });
        let m = builder().privacy(dp).build(0);
        assert_eq!(m.hyperparameters.get("standardize"), Some(&serde_json::Value::Bool(false)));
        // What the proposer says stands; a plain job is left alone.
        let said = [("standardize".to_owned(), serde_json::Value::Bool(true))].into_iter().collect();
        assert_eq!(builder().privacy(dp).hyperparameters(said).build(0).hyperparameters["standardize"], true);
        assert!(builder().build(0).hyperparameters.is_empty());
    }

    #[test]
    fn a_receipt_verifies_offline_only_under_its_key_and_for_its_model() {
        let key = SigningKey::from_bytes(&[7; 32]);
        let predicate = TrainingPredicate {
            job: Digest::of(b"job"),
            name: "bc".into(),
            inputs: Vec::new(),
            approvals: Vec::new(),
            policy: Digest::of(b"policy"),
            worker: name("gpu-1"),
            attestation: None,
            privacy: None,
            receivers: vec![name("model-owner")],
            finished_at: 1_700_000_000,
        };
        let statement = Statement::new(vec![Subject::sha256("model", &Digest::of(b"weights"))], predicate);
        let receipt = serde_json::to_vec(&statement.sign(&key)).unwrap();
        assert_eq!(verify_receipt(&receipt, b"weights", &key.verifying_key()).unwrap(), statement);
        let e = verify_receipt(&receipt, b"weightz", &key.verifying_key()).unwrap_err();
        assert!(matches!(e, ClientError::NotASubject { digest } if digest == Digest::of(b"weightz")), "{e}");
        let other = SigningKey::from_bytes(&[8; 32]).verifying_key();
        assert!(matches!(verify_receipt(&receipt, b"weights", &other), Err(ClientError::Receipt(_))));
        assert!(matches!(verify_receipt(b"{}", b"weights", &key.verifying_key()), Err(ClientError::Receipt(_))));
    }
}
