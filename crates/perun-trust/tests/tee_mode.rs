//! `tee` mode end to end: a real trust service (TLS, SQLite) and enclaves whose reports
//! come from the sim TEE or are real recorded SGX quotes. Every refusal of the issue is
//! mounted and shown to release nothing: sim evidence under a policy that does not name
//! its key, a real quote whose measurement is not in the policy, report data bound to
//! another key, a TCB below the policy's floor, and a private request sealed to a key no
//! evidence vouched for. Only the serving job's receivers are answered: unsigned,
//! replayed, mis-addressed requests and those of other stakeholders (the host's operator
//! among them) get nothing, and a request of too many rows is refused before they are all
//! read. Then serving ends when its job is revoked, and a `tee` training job runs the
//! same engine as an attested worker.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crate::common::People;

use ed25519_dalek::SigningKey;
use perun_attest::tee::{AllowedTee, TcbLevel, TeeEvidence, TeeKind, TeePolicy};
use perun_client::{Caller, Client, ClientError};
use perun_core::manifest::{APPROVAL_CONTEXT, MANIFEST_SCHEMA};
use perun_core::{sign_digest, AssetKind, AssetRef, Digest, JobManifest, JobMode, JobPurpose, Name, Role};
use perun_enclave::enclave::Enclave;
use perun_enclave::serve::{RunningEnclave, Serving};
use perun_enclave::source::{EvidenceSource, SimTee};
use perun_enclave::{EnclaveError, Querier, RemoteModel};
use perun_ml::backend::Compute;
use perun_proto::audit::AuditKind;
use perun_proto::auth::SignedHeaders;
use perun_proto::wire::*;
use perun_proto::ApiCode;
use perun_proto::JobState;
use perun_seal::release::{request_info, seal_request, EphemeralKey};
use perun_seal::{AssetKey, StakeholderKeys};
use perun_trust::server::Running;
use perun_trust::{AnyStore, Trust};

const BC: &[u8] = include_bytes!("../../../examples/datasets/breast_cancer_wisconsin.csv");
const BC_MLP: &[u8] = include_bytes!("../../../examples/models/breast-cancer-mlp.json");

fn name(s: &str) -> Name {
    Name::new(s).unwrap()
}

struct World {
    dir: tempfile::TempDir,
    clock: Arc<AtomicU64>,
    _trust: Arc<Trust<AnyStore>>,
    _server: Running,
    anon: Client,
    people: People<Party>,
    recipient: age::x25519::Recipient,
}

/// The suite's parties, by name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Party {
    Owner,
    Hospital,
    Provider,
}

impl World {
    fn new(now: u64) -> Self {
        let crate::common::InProcess { dir, clock, trust, server, anon } = crate::common::InProcess::start(now);
        let info: ServiceInfo = anon.call::<(), _>("GET", "/v1/service", None).unwrap();
        let people = People(
            [(Party::Owner, "model-owner"), (Party::Hospital, "hospital-a"), (Party::Provider, "tee-host")]
                .into_iter()
                .map(|(p, n)| (p, StakeholderKeys::generate(name(n))))
                .collect(),
        );
        let w = World {
            dir,
            clock,
            _trust: trust,
            _server: server,
            anon,
            people,
            recipient: perun_seal::keys::parse_recipient(&info.wrap_recipient).unwrap(),
        };
        for (p, roles) in
            w.people.iter().zip([vec![Role::ModelOwner, Role::Receiver], vec![Role::DataOwner], vec![Role::Provider]])
        {
            let c = w.client_of(p);
            let body = RegisterStakeholder { identity: p.public(), roles: roles.into_iter().collect() };
            c.call::<_, Registration>("POST", "/v1/stakeholders", Some(&body)).unwrap();
            w._trust.admit(p.name(), &p.public().fingerprint()).unwrap();
        }
        w
    }

    fn client_of(&self, p: &StakeholderKeys) -> Client {
        self.anon.with_caller(Caller::Stakeholder { name: p.name().clone(), key: p.signing_key().clone() })
    }

    fn client(&self, who: Party) -> Client {
        self.client_of(&self.people[who])
    }

    fn now(&self) -> u64 {
        self.clock.load(Ordering::SeqCst)
    }

    /// `who` querying a serving enclave.
    fn querier(&self, who: Party) -> Querier {
        Querier { name: self.people[who].name().clone(), key: self.people[who].signing_key().clone() }
    }

    /// Seals `plain` as asset `asset` of `who` and registers it.
    fn asset(&self, who: Party, asset: &str, kind: AssetKind, plain: &[u8]) -> AssetRef {
        let key = AssetKey::generate();
        let path = self.dir.path().join(format!("{asset}.sealed"));
        let info = perun_seal::seal_bytes_to_file(plain, kind, &[key.recipient()], &path).unwrap();
        let body = RegisterAsset {
            terms: None,
            name: name(asset),
            kind,
            content_digest: info.header.content_digest,
            location: path.to_string_lossy().into_owned(),
            wrapped_key: perun_seal::wrap::wrap(
                key.to_secret_string().as_bytes(),
                &self.recipient,
                &perun_seal::wrap::WrapContext::asset_key(
                    self.people[who].name(),
                    &name(asset),
                    kind,
                    &info.header.content_digest,
                ),
            )
            .unwrap(),
            recipient: key.recipient().to_string(),
        };
        let _: AssetInfo = self.client(who).call("POST", "/v1/assets", Some(&body)).unwrap();
        AssetRef {
            asset: name(asset),
            owner: self.people[who].name().clone(),
            kind,
            content_digest: info.header.content_digest,
        }
    }

    fn policy(&self, p: &TeePolicy) -> Digest {
        let added: PolicyInfo =
            self.client(Party::Provider).call_raw("POST", "/v1/policies", serde_json::to_vec(p).unwrap()).unwrap();
        added.digest
    }

    /// Proposes a `tee` job and has every required approver sign it.
    fn job(&self, purpose: JobPurpose, model: &AssetRef, data: &[AssetRef], policy: Digest, tag: &str) -> Digest {
        let manifest = JobManifest {
            schema: MANIFEST_SCHEMA,
            name: format!("tee job {tag}"),
            mode: JobMode::Tee,
            purpose,
            model: model.clone(),
            data: data.to_vec(),
            platform_policy: policy,
            provider: self.people[Party::Provider].name().clone(),
            workers: Default::default(),
            hyperparameters: Default::default(),
            receivers: vec![self.people[Party::Owner].name().clone()],
            approvers: [self.people[Party::Hospital].name().clone()].into(),
            privacy: None,
            attestation_interval_s: 5,
            created_at: self.now(),
            expires_at: self.now() + 3600,
        };
        self.propose_and_approve(manifest)
    }

    /// Proposes `manifest` as the model owner; both parties approve it.
    fn propose_and_approve(&self, manifest: JobManifest) -> Digest {
        let job: JobInfo = self.client(Party::Owner).call("POST", "/v1/jobs", Some(&ProposeJob { manifest })).unwrap();
        for who in [Party::Owner, Party::Hospital] {
            let signature = sign_digest(self.people[who].signing_key(), APPROVAL_CONTEXT, &job.manifest.digest());
            let _: JobInfo = self
                .client(who)
                .call("POST", &format!("/v1/jobs/{}/approve", job.id), Some(&ApproveJob { signature }))
                .unwrap();
        }
        job.id
    }

    fn state(&self, job: &Digest) -> JobState {
        let info: JobInfo = self.client(Party::Owner).call::<(), _>("GET", &format!("/v1/jobs/{job}"), None).unwrap();
        info.state
    }

    /// Key releases the audit log records for `job`.
    fn releases(&self, job: &Digest) -> usize {
        let log: AuditLog = self.client(Party::Owner).call::<(), _>("GET", "/v1/audit", None).unwrap();
        log.records
            .iter()
            .filter_map(|v| v.body.as_ref())
            .filter(|b| b.kind == AuditKind::KeyReleased && b.job.as_ref() == Some(job))
            .count()
    }

    /// Sends `evidence` for `job` as enclave `enclave`, bound (or not) as the caller made it.
    fn send(
        &self,
        job: &Digest,
        enclave: &str,
        eph: &EphemeralKey,
        nonce: &perun_proto::Nonce,
        evidence: TeeEvidence,
    ) -> Result<EnclaveAttested, ClientError> {
        let req =
            AttestEnclave { enclave: name(enclave), nonce: nonce.clone(), ephemeral_key: eph.public_key(), evidence };
        self.anon.call("POST", &format!("/v1/enclave/jobs/{job}/attest"), Some(&req))
    }

    fn nonce(&self, job: &Digest, enclave: &str) -> Result<perun_proto::Nonce, ClientError> {
        let n: NonceIssued = self.anon.call(
            "POST",
            &format!("/v1/enclave/jobs/{job}/nonce"),
            Some(&EnclaveNonce { enclave: name(enclave) }),
        )?;
        Ok(n.nonce)
    }
}

fn sim_policy(sim: &SimTee, name: &str, named: bool) -> TeePolicy {
    TeePolicy {
        name: name.into(),
        allowed: vec![AllowedTee {
            kind: Some(TeeKind::Sim),
            measurements: [("measurement".to_owned(), sim.measurement().to_hex())].into(),
        }],
        min_tcb: TcbLevel::UpToDate,
        sim_keys: if named { [sim.public_key()].into() } else { Default::default() },
        min_svn: Default::default(),
        allow_debug: false,
    }
}

fn sim(seed: u8) -> SimTee {
    SimTee::new(SigningKey::from_bytes(&[seed; 32]), Digest::of(b"perun enclave build"))
}

fn trained_model() -> (Vec<u8>, perun_seal::Dataset) {
    let full = perun_seal::dataset::import_csv(BC, "diagnosis").unwrap();
    let parts = full.split(&[80.0, 20.0], 3).unwrap();
    let mut spec = perun_ml::ModelSpec::from_json(BC_MLP).unwrap();
    spec.training.epochs = 10;
    let out =
        perun_ml::train(&spec, None, &parts[0], Compute::Cpu, &mut |_| std::ops::ControlFlow::Continue(())).unwrap();
    (out.weights.to_vec(), parts[1].clone())
}

fn post_raw(url: &str, body: &serde_json::Value) -> (u16, String) {
    post_bytes(url, &serde_json::to_vec(body).unwrap(), None)
}

/// Posts `body`, with the headers of `signed` if any.
fn post_bytes(url: &str, body: &[u8], signed: Option<&SignedHeaders>) -> (u16, String) {
    let http = perun_client::claim::http_client().unwrap();
    let mut req = http.post(url).header("content-type", "application/json").body(body.to_vec());
    for (k, v) in signed.map(|s| s.pairs()).into_iter().flatten() {
        req = req.header(k, v);
    }
    let r = req.send().unwrap();
    (r.status().as_u16(), r.text().unwrap())
}

/// Sends the head of a `POST /v1/predict` that declares a body of `length` bytes, and
/// none of the body; returns the answer.
fn declare_length(url: &str, length: usize) -> String {
    use std::io::{Read as _, Write as _};
    let addr = url.trim_start_matches("http://");
    let mut tcp = std::net::TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(std::time::Duration::from_secs(10))).unwrap();
    let head = format!(
        "POST /v1/predict HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/json\r\ncontent-length: {length}\r\nconnection: close\r\n\r\n"
    );
    tcp.write_all(head.as_bytes()).unwrap();
    let mut answer = Vec::new();
    let _ = tcp.read_to_end(&mut answer);
    String::from_utf8_lossy(&answer).into_owned()
}

/// Sends `POST path` with a chunked body of `total` bytes (no declared length) and
/// returns the raw answer: the server must stop reading at its limit.
fn chunked_body(url: &str, path: &str, total: usize) -> String {
    use std::io::{Read as _, Write as _};
    let addr = url.trim_start_matches("http://");
    let mut tcp = std::net::TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(std::time::Duration::from_secs(10))).unwrap();
    let head = format!(
        "POST {path} HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n"
    );
    tcp.write_all(head.as_bytes()).unwrap();
    let chunk = vec![b' '; 64 << 10];
    let mut sent = 0;
    while sent < total {
        let frame = format!("{:x}\r\n", chunk.len());
        // The server may close once it has refused: later writes fail, which is the point.
        if tcp
            .write_all(frame.as_bytes())
            .and_then(|_| tcp.write_all(&chunk))
            .and_then(|_| tcp.write_all(b"\r\n"))
            .is_err()
        {
            break;
        }
        sent += chunk.len();
    }
    let _ = tcp.write_all(b"0\r\n\r\n");
    let mut answer = Vec::new();
    let _ = tcp.read_to_end(&mut answer);
    String::from_utf8_lossy(&answer).into_owned()
}

/// The headers `who` signs a `POST /v1/predict` of `body` with, for `audience`.
fn signed_by(who: &StakeholderKeys, audience: &Digest, body: &[u8]) -> SignedHeaders {
    SignedHeaders::sign(who.signing_key(), who.name(), audience, "POST", "/v1/predict", body, perun_trust::unix_now())
}

/// A private request of `rows_json` (the plaintext), sealed to the enclave's attested key.
fn sealed_body(url: &str, job: &Digest, rows_json: &[u8]) -> Vec<u8> {
    let (status, text) = post_raw(&format!("{url}/v1/attestation"), &serde_json::json!({ "nonce": "ab".repeat(32) }));
    assert_eq!(status, 200, "{text}");
    let answer: perun_enclave::api::EvidenceAnswer = serde_json::from_str(&text).unwrap();
    let (sealed, _) = seal_request(&answer.public_key, &request_info(job), rows_json).unwrap();
    serde_json::to_vec(&serde_json::json!({ "sealed": sealed })).unwrap()
}

#[test]
fn serving_releases_only_to_a_named_tee_and_answers_only_sealed_requests() {
    let w = World::new(perun_trust::unix_now());
    let (weights, held_out) = trained_model();
    let model = w.asset(Party::Owner, "mlp-trained", AssetKind::Model, &weights);
    let enclave_tee = sim(1);
    let policy = w.policy(&sim_policy(&enclave_tee, "names the sim key", true));
    let job = w.job(JobPurpose::Serve, &model, &[], policy, "serve");
    assert_eq!(w.state(&job), JobState::Ready);

    // Sim evidence from a sim key the policy does not name: refused, nothing released,
    // and the job stays ready (a stranger's bad report must not end it).
    let r = Enclave::claim(&w.anon, name("stranger"), Box::new(sim(2)), job);
    assert!(
        matches!(&r, Err(EnclaveError::Trust(ClientError::Api { code: ApiCode::Refused, message: reason, .. })) if reason.contains("does not name that key")),
        "{r:?}"
    );
    // Report data bound to another key: the report names key B, the request key A.
    let (a, b) = (EphemeralKey::generate(), EphemeralKey::generate());
    let nonce = w.nonce(&job, "swapper").unwrap();
    let service = w.anon.audience();
    let binding = Digest::evidence_binding(&service, nonce.as_bytes(), &job, b.public_key().as_bytes());
    let ev = sim(1).evidence(binding.as_bytes()).unwrap();
    let r = w.send(&job, "swapper", &a, &nonce, ev);
    assert!(
        matches!(&r, Err(ClientError::Api { code: ApiCode::Refused, message: reason, .. }) if reason.contains("report data")),
        "{r:?}"
    );
    assert_eq!((w.state(&job), w.releases(&job)), (JobState::Ready, 0));
    // A report the enclave made through a relay (its TLS terminated under the relay's
    // certificate, so the relay could rewrite the receivers' keys it is told): it binds
    // the relay's certificate, and the service binds its own. Refused, nothing released.
    let nonce = w.nonce(&job, "relayed").unwrap();
    let relay = Digest::of(b"the relay's certificate");
    let binding = Digest::evidence_binding(&relay, nonce.as_bytes(), &job, a.public_key().as_bytes());
    let r = w.send(&job, "relayed", &a, &nonce, sim(1).evidence(binding.as_bytes()).unwrap());
    assert!(
        matches!(&r, Err(ClientError::Api { code: ApiCode::Refused, message: reason, .. }) if reason.contains("report data")),
        "{r:?}"
    );
    assert_eq!((w.state(&job), w.releases(&job)), (JobState::Ready, 0));

    // A low-order point as the ephemeral key (no key can be sealed to it), bound by a
    // genuine report: a bad request, nothing decided or released.
    let nonce = w.nonce(&job, "low-order").unwrap();
    let zero = perun_proto::EphemeralPublicKey::from([0u8; 32]);
    let binding = Digest::evidence_binding(&service, nonce.as_bytes(), &job, zero.as_bytes());
    let evidence = sim(1).evidence(binding.as_bytes()).unwrap();
    let req = AttestEnclave { enclave: name("low-order"), nonce, ephemeral_key: zero, evidence };
    let r: Result<EnclaveAttested, ClientError> =
        w.anon.call("POST", &format!("/v1/enclave/jobs/{job}/attest"), Some(&req));
    assert!(
        matches!(&r, Err(ClientError::Api { code: ApiCode::BadRequest, message, .. }) if message.contains("low-order")),
        "{r:?}"
    );
    assert_eq!((w.state(&job), w.releases(&job)), (JobState::Ready, 0));

    // The named sim TEE claims the job and receives the model key.
    let claim = Enclave::claim(&w.anon, name("tee-1"), Box::new(enclave_tee), job).unwrap();
    assert_eq!(claim.claims.kind, TeeKind::Sim);
    assert_eq!((w.state(&job), w.releases(&job)), (JobState::Running, 1));
    // Nobody else can claim it now, or report in its name without its token.
    assert!(matches!(w.nonce(&job, "tee-2"), Err(ClientError::Api { code: ApiCode::Conflict, .. })));
    let nonce = w.nonce(&job, "tee-1").unwrap();
    let eph = EphemeralKey::generate();
    let binding = Digest::evidence_binding(&service, nonce.as_bytes(), &job, eph.public_key().as_bytes());
    let r = w.send(&job, "tee-1", &eph, &nonce, sim(1).evidence(binding.as_bytes()).unwrap());
    assert!(matches!(r, Err(ClientError::Api { code: ApiCode::Unauthenticated, .. })), "{r:?}");

    // Its name is taken while it runs: another job cannot be claimed under it (which
    // would replace its token).
    let other = w.job(JobPurpose::Serve, &model, &[], policy, "second");
    let r = Enclave::claim(&w.anon, name("tee-1"), Box::new(sim(1)), other);
    assert!(
        matches!(&r, Err(EnclaveError::Trust(ClientError::Api { code: ApiCode::Conflict, message: m, .. })) if m.contains("in use")),
        "{r:?}"
    );
    assert_eq!((w.state(&other), w.releases(&other)), (JobState::Ready, 0));

    let serving = Serving::open(claim, Compute::Cpu, false).unwrap();
    let running = RunningEnclave::start(serving.clone(), ([127, 0, 0, 1], 0).into(), 2).unwrap();
    let url = running.url();

    // A client whose policy does not name the sim key refuses the enclave.
    let r =
        RemoteModel::connect(&url, &sim_policy(&sim(1), "production", false), job, w.querier(Party::Owner), w.now());
    assert!(matches!(&r, Err(EnclaveError::Refused(why)) if why.contains("sim TEE")), "{r:?}");
    // ... and one that expects another job refuses it too.
    let dev = sim_policy(&sim(1), "dev", true);
    assert!(RemoteModel::connect(&url, &dev, Digest::of(b"other"), w.querier(Party::Owner), w.now()).is_err());
    let remote = RemoteModel::connect(&url, &dev, job, w.querier(Party::Owner), w.now()).unwrap();
    assert_eq!(remote.max_rows(), perun_enclave::api::MAX_ROWS);
    let rows = held_out.rows();
    let got = remote.predict(&rows).unwrap();
    let local = perun_ml::Predictor::from_model(&weights, Compute::Cpu).unwrap().predict(&held_out.features).unwrap();
    assert_eq!(got.len(), local.len());
    for (g, l) in got.iter().zip(&local) {
        assert!(g.probabilities.iter().zip(l).all(|(a, b)| (a - b).abs() < 1e-5));
    }
    let hits = got.iter().zip(&held_out.labels).filter(|(p, &l)| p.class as i64 == l).count();
    assert!(hits * 10 >= rows.len() * 9, "{hits} of {}", rows.len());

    // A request sealed to a key no evidence vouched for does not open; rows in the
    // clear are refused by default; malformed rows are refused, not a crash (each
    // request signed by the receiver, so that these are the checks that refuse it).
    let predict = format!("{url}/v1/predict");
    let owner = &w.people[Party::Owner];
    let post_as_owner = |body: &[u8]| post_bytes(&predict, body, Some(&signed_by(owner, &job, body)));
    let one_row = serde_json::to_vec(&serde_json::json!({ "rows": [rows[0].clone()] })).unwrap();
    let (sealed, _) = seal_request(&EphemeralKey::generate().public_key(), &request_info(&job), &one_row).unwrap();
    let (status, text) = post_as_owner(&serde_json::to_vec(&serde_json::json!({ "sealed": sealed })).unwrap());
    assert_eq!(status, 400, "{text}");
    assert!(text.contains("does not open with this enclave's attested key"), "{text}");
    let (status, text) = post_as_owner(&one_row);
    assert_eq!(status, 403, "{text}");
    assert!(text.contains("rows in the clear are refused"), "{text}");
    let (status, text) = post_as_owner(br#"{"sealed": "x", "more": 1}"#);
    assert_eq!(status, 400, "{text}");
    assert!(text.contains("expected"), "{text}");
    assert!(remote.predict(&[vec![1.0; 3]]).is_err());

    // Only the job's receivers are answered (issue 14, finding 8). A receiver's own
    // signed private request is answered...
    let good = sealed_body(&url, &job, &one_row);
    let signed = signed_by(owner, &job, &good);
    let (status, text) = post_bytes(&predict, &good, Some(&signed));
    assert_eq!(status, 200, "{text}");
    assert!(text.contains("sealed"), "{text}");
    // ... but not twice: the same request replayed is refused.
    let (status, text) = post_bytes(&predict, &good, Some(&signed));
    assert_eq!(status, 401, "{text}");
    assert!(text.contains("replayed request"), "{text}");
    // Unsigned, sealed or plain: refused, saying what to do.
    for body in [&sealed_body(&url, &job, &one_row), &one_row] {
        let (status, text) = post_bytes(&predict, body, None);
        assert_eq!(status, 401, "{text}");
        assert!(text.contains("must be signed by a receiver") && text.contains("perun predict --job"), "{text}");
        assert!(!text.contains("predictions"), "{text}");
    }
    // Signed by registered stakeholders who are not receivers: the host's operator (the
    // job's provider) and the approving hospital.
    for who in [Party::Provider, Party::Hospital] {
        let body = sealed_body(&url, &job, &one_row);
        let (status, text) = post_bytes(&predict, &body, Some(&signed_by(&w.people[who], &job, &body)));
        assert_eq!(status, 403, "{text}");
        assert!(text.contains("is not a receiver of job"), "{text}");
    }
    // The host's operator through the client: evidence is open to all, answers are not.
    let host = RemoteModel::connect(&url, &dev, job, w.querier(Party::Provider), w.now()).unwrap();
    let r = host.predict(&rows[..1]);
    assert!(matches!(&r, Err(EnclaveError::Denied(m)) if m.contains("403") && m.contains("not a receiver")), "{r:?}");
    // The receiver's name with another key; the receiver's signature over another body,
    // or for another audience (the trust service, another job).
    let body = sealed_body(&url, &job, &one_row);
    let forged = SignedHeaders::sign(
        w.people[Party::Hospital].signing_key(),
        owner.name(),
        &job,
        "POST",
        "/v1/predict",
        &body,
        perun_trust::unix_now(),
    );
    let (status, text) = post_bytes(&predict, &body, Some(&forged));
    assert_eq!(status, 401, "{text}");
    assert!(text.contains("does not verify"), "{text}");
    let (status, text) = post_bytes(&predict, &body, Some(&signed_by(owner, &job, &one_row)));
    assert_eq!((status, text.contains("does not verify")), (401, true), "{text}");
    for audience in [Digest::of(b"the trust service's certificate"), other] {
        let (status, text) = post_bytes(&predict, &body, Some(&signed_by(owner, &audience, &body)));
        assert_eq!((status, text.contains("does not verify")), (401, true), "{text}");
    }
    // A stale request (signed 10 minutes ago) is refused.
    let stale = SignedHeaders::sign(
        owner.signing_key(),
        owner.name(),
        &job,
        "POST",
        "/v1/predict",
        &body,
        perun_trust::unix_now() - 600,
    );
    let (status, text) = post_bytes(&predict, &body, Some(&stale));
    assert_eq!((status, text.contains("from the enclave's clock")), (401, true), "{text}");

    // Too many rows: refused at the row past the limit, before the rest is read (here
    // the rest is not even JSON), and a body larger than the limit is not read at all.
    let max = remote.max_rows();
    let row = serde_json::to_string(&rows[0]).unwrap();
    let many = format!("{{\"rows\": [{}, not json at all", vec![row.as_str(); max + 1].join(", "));
    let body = sealed_body(&url, &job, many.as_bytes());
    let (status, text) = post_as_owner(&body);
    assert_eq!(status, 413, "{text}");
    assert!(text.contains(&format!("at most {max} rows per request")), "{text}");
    let text = declare_length(&url, 8 << 20);
    assert!(text.starts_with("HTTP/1.1 413"), "{text}");
    assert!(text.contains("request body is over") && text.contains(&format!("at most {max} rows")), "{text}");
    // An unsigned body is not read at all: who signs is checked on the headers first.
    let text = chunked_body(&url, "/v1/predict", 16 << 20);
    assert!(text.starts_with("HTTP/1.1 401"), "{text}");
    // Without a declared length (chunked), a body is read only up to the limit.
    let text = chunked_body(&url, "/v1/attestation", 1 << 20);
    assert!(text.starts_with("HTTP/1.1 413"), "{text}");
    let r = remote.predict(&vec![rows[0].clone(); max + 1]);
    assert_eq!(r.unwrap().len(), max + 1, "the client splits what one request cannot hold");
    let (status, _) = post_raw(&format!("{url}/v1/attestation"), &serde_json::json!({ "nonce": "00" }));
    assert_eq!(status, 400);

    // The hospital revokes the serving job: the next report is refused, serving stops,
    // the model is wiped, and every request is answered 503.
    let _: JobInfo = w
        .client(Party::Hospital)
        .call("POST", &format!("/v1/jobs/{job}/revoke"), Some(&RevokeJob { reason: "terms ended".into() }))
        .unwrap();
    assert!(serving.reattest().is_err());
    assert!(serving.stopped().unwrap().contains("revoked"), "{:?}", serving.stopped());
    let r = remote.predict(&rows[..1]);
    assert!(matches!(&r, Err(EnclaveError::Answered { status: 503, .. })), "{r:?}");
    drop(running);
    assert_eq!(w.releases(&job), 1);
}

fn data(name: &str) -> Vec<u8> {
    std::fs::read(format!("{}/../perun-attest/tests/data/tee/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

#[test]
fn real_sgx_quotes_are_refused_for_measurement_binding_and_tcb() {
    // The recorded quote verifies at its collateral's time; the service's clock is set there.
    let collateral: serde_json::Value = serde_json::from_slice(&data("sgx_quote_collateral.json")).unwrap();
    // An hour after the collateral was issued, when its chain is valid.
    let quote_time = perun_attest::tee::dcap::collateral_issued_at(&collateral).unwrap() + 3600;
    let evidence = TeeEvidence { kind: TeeKind::Sgx, report: data("sgx_quote"), collateral };
    let claims = perun_attest::tee::verifier(TeeKind::Sgx).unwrap().verify(&evidence, quote_time).unwrap();
    let w = World::new(perun_trust::unix_now());
    let model = w.asset(Party::Owner, "model", AssetKind::Model, b"a model");

    let strict = |measurements: std::collections::BTreeMap<String, String>, min_tcb| TeePolicy {
        name: "sgx".into(),
        allowed: vec![AllowedTee { kind: Some(TeeKind::Sgx), measurements }],
        min_tcb,
        sim_keys: Default::default(),
        min_svn: Default::default(),
        allow_debug: false,
    };
    let other_enclave = [("mr_enclave".to_owned(), "00".repeat(32))].into();
    for (policy, why) in [
        (strict(other_enclave, TcbLevel::OutOfDate), "measurements not in the policy"),
        (strict(claims.measurements.clone(), TcbLevel::UpToDate), "below the policy's floor"),
    ] {
        let digest = w.policy(&policy);
        let job = w.job(JobPurpose::Serve, &model, &[], digest, why);
        // Stakeholders sign with today's time; the quote is appraised at its own.
        let today = w.now();
        w.clock.store(quote_time, Ordering::SeqCst);
        let nonce = w.nonce(&job, "sgx-1").unwrap();
        let r = w.send(&job, "sgx-1", &EphemeralKey::generate(), &nonce, evidence.clone());
        w.clock.store(today, Ordering::SeqCst);
        let Err(ClientError::Api { code: ApiCode::Refused, message: reason, failures }) = r else { panic!("{r:?}") };
        assert!(reason.contains(why), "{reason}");
        // The recorded quote binds its own report data, never this nonce and key.
        assert!(failures.iter().any(|f| f.why.contains("report data")), "{failures:?}");
        assert_eq!((w.state(&job), w.releases(&job)), (JobState::Ready, 0));
    }
}

#[test]
fn a_tee_training_job_runs_the_same_engine_and_delivers_the_model() {
    let w = World::new(perun_trust::unix_now());
    let full = perun_seal::dataset::import_csv(BC, "diagnosis").unwrap();
    let parts = full.split(&[80.0, 20.0], 5).unwrap();
    let mut spec: serde_json::Value = serde_json::from_slice(BC_MLP).unwrap();
    spec["training"]["epochs"] = serde_json::json!(10);
    let model = w.asset(Party::Owner, "mlp", AssetKind::Model, &serde_json::to_vec(&spec).unwrap());
    let data = w.asset(Party::Hospital, "bc", AssetKind::Dataset, &parts[0].to_safetensors().unwrap());
    let tee = sim(3);
    let policy = w.policy(&sim_policy(&tee, "dev", true));
    let job = w.job(JobPurpose::Train, &model, &[data], policy, "train");

    let claim = Enclave::claim(&w.anon, name("tee-train"), Box::new(tee), job).unwrap();
    assert_eq!(claim.keys.keys.len(), 2);

    // An enclave's token does not open the attested path: it cannot claim a TPM job.
    let platform = perun_attest::policy::PlatformPolicy {
        schema: perun_attest::policy::POLICY_SCHEMA,
        name: "tpm".into(),
        ek: perun_attest::ek::EkPolicy::from_bundle(&["hardware"]).unwrap(),
        required_pcrs: (0..=9).map(|i| (i, hex::encode([0u8; 32]))).collect(),
        worker_binary: Some(perun_core::Digest::of(b"perun").to_string()),
        ..Default::default()
    };
    let added: PolicyInfo =
        w.client(Party::Provider).call_raw("POST", "/v1/policies", serde_json::to_vec(&platform).unwrap()).unwrap();
    let mut manifest =
        w.client(Party::Owner).call::<(), JobInfo>("GET", &format!("/v1/jobs/{job}"), None).unwrap().manifest;
    manifest.mode = JobMode::Attested;
    manifest.platform_policy = added.digest;
    manifest.name = "attested twin".into();
    let twin = w.propose_and_approve(manifest);
    let r: Result<Claimed, _> = claim.enclave.client().call::<(), _>("POST", &format!("/v1/jobs/{}/claim", twin), None);
    assert!(matches!(r, Err(ClientError::Api { code: ApiCode::Conflict, .. })), "{r:?}");
    // ... nor is a tee job claimed on the attested path.
    let r: Result<Claimed, _> = claim.enclave.client().call::<(), _>("POST", &format!("/v1/jobs/{job}/claim"), None);
    assert!(r.is_err());
    assert_eq!((w.state(&twin), w.releases(&twin)), (JobState::Ready, 0));
    let opts = perun_worker::job::RunOptions { out_dir: w.dir.path().join("out"), compute: Compute::Cpu };
    let mut enclave = claim.enclave;
    let report =
        perun_worker::job::run_released(&mut enclave, &claim.claimed, claim.keys, claim.seconds, &opts, &mut |_, _| {})
            .unwrap();
    assert_eq!(report.metrics.len(), 10);
    assert_eq!(w.state(&job), JobState::Finished);
    let out = &report.outputs[0];
    let sealed = std::fs::read(&out.location).unwrap();
    let (_, weights) =
        perun_seal::open_to_vec(&sealed[..], None, w.people[Party::Owner].age_identity(), Some(AssetKind::Output))
            .unwrap();
    let e = perun_ml::evaluate(
        &perun_ml::ModelSpec::from_json(&serde_json::to_vec(&spec).unwrap()).unwrap(),
        &weights,
        &parts[1],
        Compute::Cpu,
    )
    .unwrap();
    assert!(e.accuracy > 0.9, "{}", e.accuracy);
}

/// Issue 31, 5: anonymous reports to a ready `tee` job wrote one signed audit record each,
/// under an enclave name the sender chose. Now a refused first report is an anonymous
/// refusal: at most `anonymous_audits_per_minute` (60) records a minute for the job,
/// none under the chosen name, and the rest answered 429 with nothing written.
#[test]
fn anonymous_reports_to_a_ready_job_write_a_bounded_audit_under_no_chosen_name() {
    let w = World::new(perun_trust::unix_now());
    let (weights, _) = trained_model();
    let model = w.asset(Party::Owner, "mlp-flooded", AssetKind::Model, &weights);
    let policy = w.policy(&sim_policy(&sim(1), "names the sim key", true));
    let job = w.job(JobPurpose::Serve, &model, &[], policy, "flooded");
    let chain = || w.client(Party::Owner).call::<(), AuditLog>("GET", "/v1/audit", None).unwrap().records;
    let before = chain().len();
    let service = w.anon.audience();
    let mut limited = 0;
    for i in 0..100 {
        let who = format!("flood-{i}");
        let eph = EphemeralKey::generate();
        let nonce = w.nonce(&job, &who).unwrap();
        let binding = Digest::evidence_binding(&service, nonce.as_bytes(), &job, eph.public_key().as_bytes());
        // A sim key the policy does not name: refused.
        match w.send(&job, &who, &eph, &nonce, sim(2).evidence(binding.as_bytes()).unwrap()) {
            Err(ClientError::Api { code: ApiCode::Refused, .. }) => {}
            Err(ClientError::Api { code: ApiCode::TooManyRequests, .. }) => limited += 1,
            other => panic!("{other:?}"),
        }
    }
    let records = chain();
    let written = records.len() - before;
    assert!(written <= 62, "{written} audit records for 100 anonymous reports");
    assert!(limited >= 38, "{limited} of 100 reports were answered 429");
    for b in records.iter().filter_map(|v| v.body.as_ref()) {
        assert!(!b.actor.to_string().starts_with("worker:flood-"), "a chosen name became an actor: {b:?}");
    }
    assert_eq!((w.state(&job), w.releases(&job)), (JobState::Ready, 0));
}
