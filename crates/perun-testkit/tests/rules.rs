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
        let parties = Parties::register(&svc.anon).unwrap();
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
        (job, w.worker.attest(&job, &"ab".repeat(32)).map(|(_, a)| Some(a)))
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
    assert!(matches!(e, ClientError::Unauthenticated(_) | ClientError::NotFound(_)), "{e}");
}
