//! The release rule, attack by attack, on the in-process service over an in-memory
//! store and workers on software TPMs: no swtpm, no PostgreSQL, so these tests never
//! skip. Each row mounts one attack and asserts the answer the service must give and
//! that no asset key was released for the job (no `KeyReleased` record in the owners'
//! audit log, and no key in any answer). The first row is the honest worker: the same
//! world releases both keys to it, so a refusal below is the attack's doing.
//!
//! The real path (swtpm, tpm2-tools, the kernel's IMA log) is `tests/trust_service.rs`
//! and `tests/attestation.rs`; these rows are the rules.

use perun_attest::ima::Entry;
use perun_client::{Client, ClientError, Stakeholder};
use perun_core::manifest::APPROVAL_CONTEXT;
use perun_core::{sign_digest, Digest, JobManifest, Name};
use perun_proto::audit::AuditKind;
use perun_proto::wire::{ApproveJob, Attested, RevokeJob};
use perun_proto::ApiCode;
use perun_testkit::{InProcess, Parties, SimWorker, SoftEkCa};
use perun_trust::SqliteStore;
use perun_worker::WorkerError;

/// One world per row: a fresh service, its three parties, one enrolled worker.
struct World {
    svc: InProcess<SqliteStore>,
    parties: Parties,
    owner: Client,
    hospital: Client,
    infra: Client,
    worker: SimWorker,
}

impl World {
    fn new() -> Self {
        let svc = InProcess::in_memory(perun_proto::unix_now()).unwrap();
        let parties = Parties::register_admitted_by(&svc.anon, |n, fp| Ok(svc.trust.admit(n, fp).map(drop)?)).unwrap();
        let owner = Parties::client_of(&svc.anon, &parties.owner);
        let hospital = Parties::client_of(&svc.anon, &parties.hospital);
        let infra = Parties::client_of(&svc.anon, &parties.infra);
        let worker = SimWorker::enrol(&infra, &svc.anon, Name::new("gpu-1").unwrap(), &parties.ca).unwrap();
        Self { svc, parties, owner, hospital, infra, worker }
    }

    /// A job for the world's worker, edited by `edit`, proposed by the model owner.
    fn propose(&self, edit: impl FnOnce(&mut JobManifest)) -> Digest {
        let mut m = self.parties.manifest("rule job", self.worker.name());
        edit(&mut m);
        Parties::propose(&self.owner, m).unwrap().id
    }

    /// A job approved by both owners.
    fn approved_job(&self) -> Digest {
        let job = self.propose(|_| {});
        for (k, c) in [(&self.parties.owner, &self.owner), (&self.parties.hospital, &self.hospital)] {
            Parties::approve(c, k, &job).unwrap();
        }
        job
    }

    /// Whether any owner's audit log shows a key released for `job`.
    fn released(&self, job: &Digest) -> bool {
        [&self.owner, &self.hospital].iter().any(|c| {
            c.audit()
                .unwrap()
                .records
                .iter()
                .filter_map(|v| v.body.as_ref())
                .any(|b| b.kind == AuditKind::KeyReleased && b.job.as_ref() == Some(job))
        })
    }
}

/// The service's refusal inside a worker error.
fn code(e: &WorkerError) -> Option<ApiCode> {
    match e {
        WorkerError::Trust(c) => c.code(),
        _ => None,
    }
}

/// What an attack got: the last step's answer (`Ok(None)`: a step that must have been
/// refused went through, without an attestation).
type Outcome = Result<Option<Attested>, WorkerError>;

type Attack = fn(&mut World) -> (Digest, Outcome);

/// The honest run: claim, attest with the claim's nonce.
fn honest(w: &mut World) -> (Digest, Outcome) {
    let job = w.approved_job();
    let claimed = w.worker.claim(&job).unwrap();
    (job, w.worker.attest(&job, &claimed.nonce).map(|(_, a)| Some(a)))
}

const ROWS: &[(&str, Option<ApiCode>, Attack)] = &[
    ("the honest worker gets both keys", None, honest),
    ("a binary the policy does not allow ran on the worker", Some(ApiCode::Refused), |w| {
        let job = w.approved_job();
        let claimed = w.worker.claim(&job).unwrap();
        w.worker.measure(&Entry::ima_ng("/tmp/exfiltrate", "sha256", Digest::of(b"not perun").as_bytes()));
        (job, w.worker.attest(&job, &claimed.nonce).map(|(_, a)| Some(a)))
    }),
    ("root extended PCR 10 from user space behind the log's back", Some(ApiCode::Refused), |w| {
        let job = w.approved_job();
        let claimed = w.worker.claim(&job).unwrap();
        w.worker.tpm_mut().extend_pcr10(&[7; 32]);
        (job, w.worker.attest(&job, &claimed.nonce).map(|(_, a)| Some(a)))
    }),
    ("a nonce the service never issued", Some(ApiCode::Refused), |w| {
        let job = w.approved_job();
        w.worker.claim(&job).unwrap();
        (job, w.worker.attest(&job, &perun_proto::Nonce::from([0xab; 32])).map(|(_, a)| Some(a)))
    }),
    ("a nonce replayed after it was spent", Some(ApiCode::Refused), |w| {
        let job = w.approved_job();
        let claimed = w.worker.claim(&job).unwrap();
        let (_, first) = w.worker.attest(&job, &claimed.nonce).unwrap();
        assert_eq!(first.keys.len(), 2, "the first attestation releases the keys");
        // The keys were released once, to the first attestation: the replay must get
        // nothing, and must not count as the job's attestation.
        let again = w.worker.attest(&job, &claimed.nonce).map(|(_, a)| Some(a));
        (Digest::of(b"released once, to the first attestation"), again)
    }),
    ("a nonce used after it expired", Some(ApiCode::Refused), |w| {
        let job = w.approved_job();
        let claimed = w.worker.claim(&job).unwrap();
        // Past the nonce's 60 s, within the 300 s the stakeholders' signed requests may be off.
        w.svc.advance(120);
        (job, w.worker.attest(&job, &claimed.nonce).map(|(_, a)| Some(a)))
    }),
    ("evidence made for another job", Some(ApiCode::Refused), |w| {
        let (a, b) = (w.approved_job(), {
            let j = w.propose(|m| m.name = "the other job".into());
            for (k, c) in [(&w.parties.owner, &w.owner), (&w.parties.hospital, &w.hospital)] {
                Parties::approve(c, k, &j).unwrap();
            }
            j
        });
        let claimed = w.worker.claim(&b).unwrap();
        // Quoted over job A's binding with B's nonce, sent to B.
        let (_, mut req) = w.worker.attestation(&a, &claimed.nonce).unwrap();
        req.nonce = claimed.nonce.clone();
        let answer = w.worker.session().client().attest(&b, &req).map(Some).map_err(WorkerError::from);
        (b, answer)
    }),
    ("a job one owner never approved", Some(ApiCode::Refused), |w| {
        let job = w.propose(|_| {});
        Parties::approve(&w.owner, &w.parties.owner, &job).unwrap();
        (job, w.worker.claim(&job).map(|_| None))
    }),
    ("a worker the manifest does not name", Some(ApiCode::Forbidden), |w| {
        let job = w.propose(|m| m.workers = ["gpu-2".to_owned()].into());
        for (k, c) in [(&w.parties.owner, &w.owner), (&w.parties.hospital, &w.hospital)] {
            Parties::approve(c, k, &job).unwrap();
        }
        (job, w.worker.claim(&job).map(|_| None))
    }),
    ("a job its data owner revoked before the worker attested", Some(ApiCode::Revoked), |w| {
        let job = w.approved_job();
        let claimed = w.worker.claim(&job).unwrap();
        w.hospital.revoke(&job, &RevokeJob { reason: "consent withdrawn".into() }).unwrap();
        (job, w.worker.attest(&job, &claimed.nonce).map(|(_, a)| Some(a)))
    }),
    ("a TPM certified by a CA no policy names", Some(ApiCode::Refused), |w| {
        let rogue = SoftEkCa::new().unwrap();
        w.worker = SimWorker::enrol(&w.infra, &w.svc.anon, Name::new("gpu-1b").unwrap(), &rogue).unwrap();
        let job = w.propose(|m| m.workers = ["gpu-1b".to_owned()].into());
        for (k, c) in [(&w.parties.owner, &w.owner), (&w.parties.hospital, &w.hospital)] {
            Parties::approve(c, k, &job).unwrap();
        }
        let claimed = w.worker.claim(&job);
        let answer = claimed.and_then(|c| w.worker.attest(&job, &c.nonce).map(|(_, a)| Some(a)));
        (job, answer)
    }),
    ("an approval signed over another job's digest", Some(ApiCode::Forbidden), |w| {
        let job = w.propose(|_| {});
        Parties::approve(&w.owner, &w.parties.owner, &job).unwrap();
        let signature = sign_digest(w.parties.hospital.signing_key(), APPROVAL_CONTEXT, &Digest::of(b"other"));
        let answer = w.hospital.approve(&job, &ApproveJob { signature }).map(|_| None);
        (job, answer.map_err(WorkerError::from))
    }),
    ("a stakeholder approving for an owner it is not", Some(ApiCode::Forbidden), |w| {
        let job = w.propose(|_| {});
        Parties::approve(&w.owner, &w.parties.owner, &job).unwrap();
        // The provider signs with its own key; it owns no asset of the job.
        let answer = Stakeholder::new(&w.infra, &w.parties.infra).approve_unreviewed(&job);
        (job, answer.map(|_| None).map_err(WorkerError::from))
    }),
    ("an anonymous caller claiming a job", Some(ApiCode::Unauthenticated), |w| {
        let job = w.approved_job();
        (job, w.svc.anon.claim(&job).map(|_| None).map_err(WorkerError::from))
    }),
];

#[test]
fn every_attack_on_the_release_rule_is_refused_and_releases_nothing() {
    let mut failures = Vec::new();
    for (what, expect, attack) in ROWS {
        let mut w = World::new();
        let (job, answer) = attack(&mut w);
        let got = match &answer {
            Ok(a) => {
                let keys = a.as_ref().map_or(0, |a| a.keys.len());
                if expect.is_none() && keys != 2 {
                    failures.push(format!("{what}: {keys} keys released, not 2"));
                }
                None
            }
            Err(e) => {
                if code(e).is_none() {
                    failures.push(format!("{what}: failed before the service answered: {e}"));
                }
                code(e)
            }
        };
        if got != *expect {
            failures.push(format!("{what}: expected {expect:?}, got {got:?} ({answer:?})", answer = answer.err()));
        }
        let released = w.released(&job);
        if expect.is_some() && released {
            failures.push(format!("{what}: a key was released for the job"));
        }
        if expect.is_none() && !released {
            failures.push(format!("{what}: the audit log shows no key released"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn a_second_claim_of_a_running_job_is_refused() {
    let mut w = World::new();
    let job = w.approved_job();
    let claimed = w.worker.claim(&job).unwrap();
    w.worker.attest(&job, &claimed.nonce).unwrap();
    let again = w.worker.claim(&job).unwrap_err();
    assert_eq!(code(&again), Some(ApiCode::Conflict), "{again}");
}

#[test]
fn refusals_are_typed_client_errors() {
    let w = World::new();
    let e = w.svc.anon.job(&Digest::of(b"no such job")).unwrap_err();
    assert!(
        matches!(
            e,
            ClientError::Api { code: ApiCode::Unauthenticated, .. } | ClientError::Api { code: ApiCode::NotFound, .. }
        ),
        "{e}"
    );
}

/// A service on an in-memory store with `config`, its clock at now.
fn service_with(config: perun_trust::TrustConfig) -> (InProcess<SqliteStore>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let clock =
        perun_trust::Clock::Manual(std::sync::Arc::new(std::sync::atomic::AtomicU64::new(perun_proto::unix_now())));
    let svc = InProcess::start(SqliteStore::in_memory().unwrap(), &dir.path().join("keys"), clock, config).unwrap();
    (svc, dir)
}

fn keys(name: &str) -> perun_seal::StakeholderKeys {
    perun_seal::StakeholderKeys::generate(Name::new(name).unwrap())
}

/// Issue 31, 6: who may join. Self-registration as provider, model owner and receiver
/// was the first step of every cross-job attack; by default a registration is an
/// application that can do nothing until the operator admits it.
#[test]
fn a_registration_does_nothing_until_the_operator_admits_it() {
    use perun_core::Role;
    use perun_proto::wire::RegistrationStatus;
    let w = World::new();
    let mallory = keys("mallory");
    let me = Stakeholder::new(&w.svc.anon, &mallory);
    let r = me.register(&[Role::Provider, Role::ModelOwner, Role::Receiver]).unwrap();
    assert_eq!(r.status, RegistrationStatus::Pending);
    assert!(r.message.contains("perun serve --admit mallory"), "{}", r.message);
    // Registering again is the same application; another key cannot take the name.
    assert_eq!(
        me.register(&[Role::Provider, Role::ModelOwner, Role::Receiver]).unwrap().status,
        RegistrationStatus::Pending
    );
    let squatter = keys("mallory");
    let e = Stakeholder::new(&w.svc.anon, &squatter).register(&[Role::Provider]).unwrap_err();
    assert!(matches!(e, ClientError::Api { code: ApiCode::Conflict, .. }), "{e}");
    // Pending, it can publish nothing, propose nothing, see nothing.
    let policy = serde_json::to_vec(&perun_testkit::soft_worker::policy("mallory's", &w.parties.ca).unwrap()).unwrap();
    for e in [
        me.publish_policy(policy.clone()).map(drop).unwrap_err(),
        me.client().jobs().map(drop).unwrap_err(),
        me.client().audit().map(drop).unwrap_err(),
        me.client().applications().map(drop).unwrap_err(),
    ] {
        assert!(
            matches!(&e, ClientError::Api { code: ApiCode::Unauthenticated, message: m, .. } if m.contains("awaits admission")),
            "{e}"
        );
    }
    // Members do not admit where the quorum is 0 (the default): the operator does.
    let e = w.owner.vote_admission(mallory.name(), &mallory.public().fingerprint()).unwrap_err();
    assert!(matches!(e, ClientError::Api { code: ApiCode::Forbidden, .. }), "{e}");
    let pending = w.svc.trust.applications().unwrap();
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].identity.fingerprint(), mallory.public().fingerprint());
    w.svc.trust.admit(mallory.name(), &mallory.public().fingerprint()).unwrap();
    me.publish_policy(policy).unwrap();
    assert!(w.svc.trust.applications().unwrap().is_empty());
    let e = w.svc.trust.admit(mallory.name(), &mallory.public().fingerprint()).unwrap_err();
    assert!(matches!(e, perun_trust::TrustError::NotFound(_)), "{e}");
}

#[test]
fn a_quorum_of_members_admits_where_the_service_says_so_and_open_registration_is_a_flag() {
    use perun_core::Role;
    use perun_proto::wire::RegistrationStatus;
    let (svc, _dir) = service_with(perun_trust::TrustConfig { admission_quorum: 2, ..Default::default() });
    let members: Vec<_> = ["a", "b"].iter().map(|n| keys(n)).collect();
    for k in &members {
        Stakeholder::new(&svc.anon, k).register(&[Role::DataOwner]).unwrap();
        svc.trust.admit(k.name(), &k.public().fingerprint()).unwrap();
    }
    let newcomer = keys("newcomer");
    let other = keys("other");
    for k in [&newcomer, &other] {
        Stakeholder::new(&svc.anon, k).register(&[Role::DataOwner]).unwrap();
    }
    let client = |k: &perun_seal::StakeholderKeys| Parties::client_of(&svc.anon, k);
    let fp = newcomer.public().fingerprint();
    // A pending registration cannot vote for another (or itself).
    let e = client(&other).vote_admission(newcomer.name(), &fp).unwrap_err();
    assert!(matches!(e, ClientError::Api { code: ApiCode::Unauthenticated, .. }), "{e}");
    // A vote counts only for the key its voter checked.
    let e = client(&members[0]).vote_admission(newcomer.name(), &other.public().fingerprint()).unwrap_err();
    assert!(
        matches!(&e, ClientError::Api { code: ApiCode::Conflict, message: m, .. } if m.contains("not the key")),
        "{e}"
    );
    let first = client(&members[0]).vote_admission(newcomer.name(), &fp).unwrap();
    assert_eq!(first.status, RegistrationStatus::Pending);
    // The same member voting twice is one vote, and is told so.
    let e = client(&members[0]).vote_admission(newcomer.name(), &fp).unwrap_err();
    assert!(matches!(&e, ClientError::Api { code: ApiCode::Conflict, message: m, .. } if m.contains("already")), "{e}");
    assert!(client(&newcomer).jobs().is_err());
    let second = client(&members[1]).vote_admission(newcomer.name(), &fp).unwrap();
    assert_eq!(second.status, RegistrationStatus::Admitted);
    client(&newcomer).jobs().unwrap();
    // The admission is in the audit log the voters and the newcomer see.
    let seen = client(&newcomer).audit().unwrap();
    assert!(seen
        .records
        .iter()
        .filter_map(|v| v.body.as_ref())
        .any(|b| b.kind == AuditKind::StakeholderRegistered && b.detail.contains("admitted by a, b")));

    let (open, _dir) = service_with(perun_trust::TrustConfig { open_registration: true, ..Default::default() });
    let r = Stakeholder::new(&open.anon, &keys("dev")).register(&[Role::Provider]).unwrap();
    assert_eq!(r.status, RegistrationStatus::Admitted);
}

/// Issue 31, 4: names that are also actors. `service`, `anonymous` and `operator` are
/// refused as names, and the service's own records (key releases, ledger charges,
/// revocations) concern no stakeholder by the actor's name alone.
#[test]
fn reserved_names_are_refused_and_the_service_records_concern_no_stranger() {
    use perun_core::Role;
    let mut w = World::new();
    for n in perun_proto::audit::Actor::RESERVED {
        let e = Stakeholder::new(&w.svc.anon, &keys(n)).register(&[Role::Receiver]).unwrap_err();
        assert!(
            matches!(&e, ClientError::Api { code: ApiCode::BadRequest, message: m, .. } if m.contains("reserved")),
            "{n}: {e}"
        );
    }
    let (job, answer) = honest(&mut w);
    assert_eq!(answer.unwrap().unwrap().keys.len(), 2);
    assert!(w.released(&job));
    let stranger = keys("stranger");
    Stakeholder::new(&w.svc.anon, &stranger).register(&[Role::Receiver]).unwrap();
    w.svc.trust.admit(stranger.name(), &stranger.public().fingerprint()).unwrap();
    let seen = Parties::client_of(&w.svc.anon, &stranger).audit().unwrap();
    let bodies: Vec<_> = seen.records.iter().filter_map(|v| v.body.as_ref()).collect();
    assert!(bodies.iter().all(|b| b.job.is_none()), "a stranger sees a job's records: {bodies:?}");
    assert!(bodies.iter().all(|b| b.kind != AuditKind::KeyReleased));
}

/// Issue 31, 3: one job breaks no list. A manifest nested past any recipe is refused
/// where it is proposed; a record that no longer reads is left out of every list (and
/// named in the log) instead of failing it; the provider a job names may decline it.
#[test]
fn one_bad_job_breaks_no_list_and_a_provider_declines_a_job() {
    let w = World::new();
    let mut deep = serde_json::json!(1);
    for _ in 0..124 {
        deep = serde_json::json!([deep]);
    }
    let mut m = w.parties.manifest("deep", w.worker.name());
    m.hyperparameters.insert("lr".into(), deep);
    let e = Parties::propose(&w.owner, m).unwrap_err();
    assert_eq!(code(&e), Some(ApiCode::BadRequest), "{e}");

    use perun_trust::store::Store as _;
    let job = w.approved_job();
    // A record the store can no longer read (edited, or written by a newer version).
    w.svc
        .trust
        .store()
        .write(|tx| tx.put_raw(perun_trust::store::Table::Jobs, "sha256:0000", b"{\"not\": \"a job\"}", None))
        .unwrap();
    for c in [&w.owner, &w.hospital, &w.infra] {
        let jobs = c.jobs().unwrap();
        assert_eq!(jobs.len(), 1, "the readable job is listed");
    }
    assert!(w.worker.session().client().offered().is_ok());
    // The provider declines the job: revoked, nothing released.
    let info = w.infra.revoke(&job, &RevokeJob { reason: "we will not run this".into() }).unwrap();
    assert_eq!(info.state, perun_proto::JobState::Revoked);
    assert!(!w.released(&job));
}

/// From the attack on this change: one network cannot fill the admission queue; the
/// operator admits only the key the applicant showed it (a squatter who applied first
/// under the name is not admitted) and may reject an application; an identity whose
/// recipient is no key is refused (it would fail every release to its jobs); a
/// revocation's reason is an account, not a payload.
#[test]
fn the_admission_queue_holds_few_per_network_and_admits_only_the_checked_key() {
    use perun_core::{PublicIdentity, Role};
    use perun_proto::wire::RegisterStakeholder;
    let w = World::new();
    let (real, squatter) = (keys("carol"), keys("carol"));
    Stakeholder::new(&w.svc.anon, &squatter).register(&[Role::Receiver]).unwrap();
    let e = w.svc.trust.admit(real.name(), &real.public().fingerprint()).unwrap_err();
    assert!(matches!(&e, perun_trust::TrustError::Conflict(m) if m.contains("not the key")), "{e}");
    w.svc.trust.reject(squatter.name()).unwrap();
    Stakeholder::new(&w.svc.anon, &real).register(&[Role::Receiver]).unwrap();
    w.svc.trust.admit(real.name(), &real.public().fingerprint()).unwrap();

    let dave = keys("dave");
    let bad = PublicIdentity::new(
        dave.name().clone(),
        &dave.signing_key().verifying_key(),
        format!("age1{}", "b".repeat(58)),
    );
    let e = Parties::client_of(&w.svc.anon, &dave)
        .register_stakeholder(&RegisterStakeholder { identity: bad, roles: [Role::Receiver].into() })
        .unwrap_err();
    assert!(
        matches!(&e, ClientError::Api { code: ApiCode::BadRequest, message: m, .. } if m.contains("recipient")),
        "{e}"
    );

    let mut limited = 0;
    for i in 0..20 {
        match Stakeholder::new(&w.svc.anon, &keys(&format!("spam-{i}"))).register(&[Role::Provider]) {
            Ok(_) => {}
            Err(ClientError::Api { code: ApiCode::TooManyRequests, .. }) => limited += 1,
            Err(e) => panic!("{e}"),
        }
    }
    assert!(limited >= 10, "{limited} of 20 registrations from one network were limited");
    assert!(w.svc.trust.applications().unwrap().len() <= 10);

    let job = w.approved_job();
    let e = w.hospital.revoke(&job, &RevokeJob { reason: "x".repeat(10_000) }).unwrap_err();
    assert!(
        matches!(&e, ClientError::Api { code: ApiCode::BadRequest, message: m, .. } if m.contains("at most 512 bytes")),
        "{e}"
    );
}
