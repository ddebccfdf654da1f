//! Load and faults: 1,000 simulated workers (each its own software TPM,
//! `perun_testkit`) attest to `perun serve` while stakeholders propose and approve
//! their jobs, and the service is killed with SIGKILL and restarted on the same store
//! twice. Clients retry through the outages; a request whose answer was lost may have
//! been done, and its retry must not do it twice. Afterwards, through the API and then
//! from the store: every approval answered OK exists once, every key release a worker
//! received is recorded once and no (job, asset) is released twice or to two workers,
//! and the audit chain verifies end to end with one record per approval and release.
//!
//! The same load runs against two replicas of `perun serve` on one PostgreSQL database,
//! clients failing over between them: each replica is killed with SIGKILL in turn while
//! the other goes on, and the same invariants are checked in the shared store.
//!
//! `PERUN_LOAD_ROUNDS` sets the re-attestations per worker after its first (default 2).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::mpsc;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::common::{Scratch, Service};
use perun_client::{Caller, Client, ClientError};
use perun_core::{Digest, Name};
use perun_proto::wire::{AuditLog, ServiceInfo};
use perun_proto::ApiCode;
use perun_seal::StakeholderKeys;
use perun_testkit::soft_worker as sim;
use perun_testkit::{Parties, SimWorker};
use perun_trust::audit::{verify_chain, AuditKind, AuditRecord, AuditView};
use perun_trust::records::{ApprovalRecord, JobRecord, JobState, ReleaseRecord};
use perun_trust::store::{Store as _, TxExt as _};
use perun_trust::AnyStore;
use perun_worker::{Agent, WorkerError};

const WORKERS: usize = 1000;
/// Workers of the replicas' run (its invariants are the same; CI time is not).
const REPLICA_WORKERS: usize = 300;
/// Threads driving the simulated workers (each a share of them, round robin).
const WORKER_THREADS: usize = 8;
/// Threads of stakeholders proposing and approving jobs.
const STAKEHOLDER_THREADS: usize = 3;
/// How long one request is retried through an outage before the test gives up.
const OUTAGE_LIMIT: Duration = Duration::from_secs(60);

fn worker_name(i: usize) -> Name {
    Name::new(&format!("sim-{i:05}")).unwrap()
}

/// What happened, counted across threads.
#[derive(Default)]
struct Stats {
    /// Requests sent again after the outage left them unanswered.
    retries: AtomicUsize,
    /// Requests in flight now (to see that the kills hit live traffic).
    in_flight: AtomicUsize,
    /// Approvals answered OK.
    approvals: AtomicUsize,
    /// Attestations answered as accepted.
    attestations: AtomicUsize,
    /// Attestations sent again after no answer (each may have been accepted unseen).
    attestations_unanswered: AtomicUsize,
    /// Proposals and claims whose first answer was lost and whose retry found them done.
    lost_proposals: AtomicUsize,
    lost_claims: AtomicUsize,
}

/// Whether an error is the outage's: no answer, so the request may or may not be done.
fn outage(e: &WorkerError) -> bool {
    matches!(
        e,
        WorkerError::Trust(ClientError::Transport { .. } | ClientError::Api { code: ApiCode::TooManyRequests, .. })
    )
}

/// Calls `f` until the service answers (anything but an outage error); the answer, and
/// whether an attempt before it went unanswered.
fn answered<T>(
    st: &Stats,
    what: &str,
    mut f: impl FnMut() -> Result<T, WorkerError>,
) -> (Result<T, WorkerError>, bool) {
    let deadline = Instant::now() + OUTAGE_LIMIT;
    let mut unanswered = false;
    loop {
        st.in_flight.fetch_add(1, SeqCst);
        let r = f();
        st.in_flight.fetch_sub(1, SeqCst);
        match r {
            Err(e) if outage(&e) => {
                assert!(Instant::now() < deadline, "{what}: no answer for {OUTAGE_LIMIT:?}: {e}");
                unanswered = true;
                st.retries.fetch_add(1, SeqCst);
                std::thread::sleep(Duration::from_millis(50));
            }
            r => return (r, unanswered),
        }
    }
}

/// A key release as its worker received it: job, asset, worker, ephemeral key (hex).
type Release = (Digest, Name, Name, String);

/// A simulated worker and where it stands.
struct Sim {
    w: SimWorker,
    job: Option<Digest>,
    claimed: bool,
    /// The nonce the claim handed out, for the first attestation.
    first_nonce: Option<perun_proto::Nonce>,
    /// Attestations answered as accepted.
    accepted: usize,
    /// Whether this round's IMA entry is in the log already.
    measured: bool,
    /// Whether the keys were received.
    keys: bool,
    /// Whether the first acceptance's answer was lost (its keys never arrived).
    lost_release: bool,
}

impl Sim {
    /// One step: claim (with the first attestation), or the next re-attestation.
    fn step(&mut self, job: Digest, st: &Stats, received: &mut Vec<Release>) {
        let me = self.w.name().clone();
        if !self.claimed {
            let (r, unanswered) = answered(st, "claim", || self.w.claim(&job));
            let nonce = match r {
                Ok(c) => c.nonce,
                // The lost answer's claim was done: the job is this worker's.
                Err(WorkerError::Trust(ClientError::Api { code: ApiCode::Conflict, .. })) if unanswered => {
                    st.lost_claims.fetch_add(1, SeqCst);
                    let (n, _) = answered(st, "nonce", || self.w.session().nonce(&job));
                    n.unwrap_or_else(|e| panic!("{me}: no nonce after a claim whose answer was lost: {e}"))
                }
                Err(e) => panic!("{me}: claim of {job}: {e}"),
            };
            self.claimed = true;
            self.first_nonce = Some(nonce);
        }
        if self.accepted > 0 && !self.measured {
            self.w.measure(&sim::round_entry(self.accepted));
            self.measured = true;
        }
        // The claim's nonce for the first try; after no answer a fresh one (the lost
        // request may have spent it).
        let mut first = self.first_nonce.take();
        let (r, unanswered) = answered(st, "attestation", || match first.take() {
            Some(n) => self.w.attest(&job, &n),
            None => self.w.reattest(&job),
        });
        if unanswered {
            st.attestations_unanswered.fetch_add(1, SeqCst);
        }
        let (eph, a) = r.unwrap_or_else(|e| panic!("{me}: attestation {} for {job}: {e}", self.accepted + 1));
        if !a.keys.is_empty() {
            assert!(!self.keys, "{me}: keys of {job} released a second time");
            assert!(self.accepted == 0, "{me}: keys of {job} released on a re-attestation");
            let opened = Agent::open_keys(&job, &eph, &a).unwrap_or_else(|e| panic!("{me}: released keys: {e}"));
            let assets: BTreeSet<&str> = opened.keys.iter().map(|(n, _)| n.as_str()).collect();
            assert_eq!(assets, BTreeSet::from(["data", "model"]), "{me}");
            for (asset, _) in opened.keys {
                received.push((job, asset, me.clone(), eph.public_key().to_string()));
            }
            self.keys = true;
        } else if self.accepted == 0 {
            // Only a first acceptance whose answer was lost releases unseen.
            assert!(unanswered, "{me}: the first accepted attestation of {job} released nothing");
            self.lost_release = true;
        }
        self.accepted += 1;
        self.measured = false;
        st.attestations.fetch_add(1, SeqCst);
    }

    fn done(&self, rounds: usize) -> bool {
        self.accepted > rounds
    }
}

/// A stakeholder thread's work: propose and approve the jobs of workers `k`, `k + S`...
/// and hand each ready job to its worker's thread. Returns the approvals answered OK.
fn stakeholders(
    k: usize,
    n_workers: usize,
    parties: &Parties,
    anon: &Client,
    to_workers: &[mpsc::Sender<(usize, Digest)>],
    st: &Stats,
) -> Vec<(Digest, Name)> {
    let oc = Parties::client_of(anon, &parties.owner);
    let approvers: Vec<(&StakeholderKeys, Client)> =
        parties.approvers().into_iter().map(|a| (a, Parties::client_of(anon, a))).collect();
    let mut ok = Vec::new();
    for i in (k..n_workers).step_by(STAKEHOLDER_THREADS) {
        let manifest = parties.manifest(&format!("load job {i}"), &worker_name(i));
        let id = manifest.digest();
        let (r, unanswered) = answered(st, "proposal", || Parties::propose(&oc, manifest.clone()));
        match r {
            Ok(info) => assert_eq!(info.id, id),
            Err(WorkerError::Trust(ClientError::Api { code: ApiCode::Conflict, .. })) if unanswered => {
                st.lost_proposals.fetch_add(1, SeqCst);
            }
            Err(e) => panic!("proposal of job {i}: {e}"),
        }
        for (who, c) in &approvers {
            let (r, _) = answered(st, "approval", || Parties::approve(c, who, &id));
            let info = r.unwrap_or_else(|e| panic!("approval of job {i} by {}: {e}", who.name()));
            assert!(info.approved_by.contains(who.name()), "{}'s approval not shown: {info:?}", who.name());
            ok.push((id, who.name().clone()));
            st.approvals.fetch_add(1, SeqCst);
        }
        to_workers[i % WORKER_THREADS].send((i / WORKER_THREADS, id)).unwrap();
    }
    ok
}

/// A worker thread's work: its share of the fleet, stepped round robin as their jobs
/// arrive, until each attested `1 + rounds` times. Returns the releases received and the
/// workers whose release answer was lost.
fn workers(
    mut share: Vec<Sim>,
    jobs: mpsc::Receiver<(usize, Digest)>,
    rounds: usize,
    st: &Stats,
) -> (Vec<Release>, Vec<Name>) {
    let mut received = Vec::new();
    let mut open = true;
    while share.iter().any(|s| !s.done(rounds)) {
        loop {
            match jobs.try_recv() {
                Ok((i, job)) => share[i].job = Some(job),
                Err(mpsc::TryRecvError::Empty) => break,
                Err(mpsc::TryRecvError::Disconnected) => {
                    open = false;
                    break;
                }
            }
        }
        let mut stepped = false;
        for s in share.iter_mut().filter(|s| !s.done(rounds)) {
            if let Some(job) = s.job {
                s.step(job, st, &mut received);
                stepped = true;
            }
        }
        if !stepped {
            assert!(open, "the stakeholders stopped before every worker had a job");
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    let lost = share.iter().filter(|s| s.lost_release).map(|s| s.w.name().clone()).collect();
    (received, lost)
}

#[test]
fn a_thousand_workers_attest_while_jobs_are_approved_and_the_service_is_killed_twice() {
    run(Deployment::Restarted, WORKERS);
}

#[test]
fn workers_keep_attesting_while_each_of_two_postgres_replicas_is_killed_in_turn() {
    run(Deployment::Replicas, REPLICA_WORKERS);
}

/// How the service runs under the load.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Deployment {
    /// One `perun serve` on SQLite, killed and restarted on its store twice.
    Restarted,
    /// Two `perun serve` replicas on one PostgreSQL database with shared keys; each is
    /// killed in turn (and restarted) while the other serves.
    Replicas,
}

/// The `perun serve` arguments of a deployment's replicas, and the store they share.
struct Replicas {
    args: Vec<String>,
    store: String,
}

impl Replicas {
    fn start(&self, s: &Scratch, addr: &str, env: &[(&str, &str)]) -> Service {
        let args: Vec<&str> = self.args.iter().map(String::as_str).collect();
        Service::start_with(s, addr, &args, env)
    }
}

fn run(deployment: Deployment, n_workers: usize) {
    let rounds: usize = std::env::var("PERUN_LOAD_ROUNDS").ok().and_then(|r| r.parse().ok()).unwrap_or(2);
    let t0 = Instant::now();
    let s = Scratch::new();
    // A load test of a development service: registration is open (admission has tests
    // of its own in trust_service.rs).
    let quiet = [("PERUN_LOG", "warn"), ("PERUN_OPEN_REGISTRATION", "true")];
    let plan = match deployment {
        Deployment::Restarted => {
            Replicas { args: Vec::new(), store: s.path("trust").join("perun.db").to_string_lossy().into_owned() }
        }
        Deployment::Replicas => {
            let Some(url) = crate::common::postgres_database() else { return };
            let keys = s.path("keys");
            let made = s.perun(&["serve", "--keys", keys.to_str().unwrap(), "--make-keys"]);
            assert!(made.status.success(), "{}", String::from_utf8_lossy(&made.stderr));
            Replicas {
                args: vec!["--store".into(), url.clone(), "--keys".into(), keys.to_string_lossy().into_owned()],
                store: url,
            }
        }
    };
    let mut replicas = vec![plan.start(&s, "127.0.0.1:0", &quiet)];
    if deployment == Deployment::Replicas {
        replicas.push(plan.start(&s, "127.0.0.1:0", &quiet));
        assert_eq!(replicas[0].fingerprint, replicas[1].fingerprint, "replicas present one certificate");
    }
    let urls: Vec<String> = replicas.iter().map(|r| r.url.clone()).collect();
    let anon = Client::replicated(&urls, replicas[0].fingerprint, Caller::Anonymous).unwrap();
    let info: ServiceInfo = anon.call::<(), _>("GET", "/v1/service", None).unwrap();
    let parties = Parties::register(&anon).unwrap();

    // Enrolment and credential activation of the fleet, in parallel.
    let ic = Parties::client_of(&anon, &parties.infra);
    let shares: Vec<Vec<Sim>> = std::thread::scope(|sc| {
        let hs: Vec<_> = (0..WORKER_THREADS)
            .map(|t| {
                let (ic, anon, ca) = (&ic, &anon, &parties.ca);
                sc.spawn(move || {
                    (t..n_workers)
                        .step_by(WORKER_THREADS)
                        .map(|i| Sim {
                            w: SimWorker::enrol(ic, anon, worker_name(i), ca).unwrap(),
                            job: None,
                            claimed: false,
                            first_nonce: None,
                            accepted: 0,
                            measured: false,
                            keys: false,
                            lost_release: false,
                        })
                        .collect()
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let enrolled = t0.elapsed();
    println!("{n_workers} workers enrolled and activated in {:.1} s ({deployment:?})", enrolled.as_secs_f64());

    // Load: stakeholders propose and approve one job per worker; each worker claims its
    // job as it is ready and attests 1 + rounds times (its first acceptance releases the
    // job's two keys). Meanwhile the service is killed twice, at a third and two thirds
    // of the approvals, and restarted on the same store at the same address.
    let st = Stats::default();
    let load = Instant::now();
    let (senders, receivers): (Vec<_>, Vec<_>) = (0..WORKER_THREADS).map(|_| mpsc::channel()).unzip();
    let kills = Mutex::new(Vec::new());
    let (replicas, approvals, received, lost) = std::thread::scope(|sc| {
        let fleet: Vec<_> = receivers
            .into_iter()
            .zip(shares)
            .map(|(rx, share)| {
                let st = &st;
                sc.spawn(move || workers(share, rx, rounds, st))
            })
            .collect();
        let owners: Vec<_> = (0..STAKEHOLDER_THREADS)
            .map(|k| {
                let (parties, anon, senders, st) = (&parties, &anon, senders.clone(), &st);
                sc.spawn(move || stakeholders(k, n_workers, parties, anon, &senders, st))
            })
            .collect();
        drop(senders);
        let killer = sc.spawn(|| {
            let mut replicas = replicas;
            for n in 1..=2 {
                while st.approvals.load(SeqCst) < n * 2 * n_workers / 3 {
                    std::thread::sleep(Duration::from_millis(2));
                }
                let (at, in_flight) = (st.attestations.load(SeqCst), st.in_flight.load(SeqCst));
                let t = Instant::now();
                // One replica, in turn: the first, then the second.
                let victim = (n - 1) % replicas.len();
                let addr = replicas.remove(victim).kill();
                let mut alone_n = None;
                if replicas.len() == 1 {
                    // The other replica serves alone for a while: the workers go on.
                    let then = st.attestations.load(SeqCst);
                    let until = Instant::now() + Duration::from_secs(20);
                    while st.attestations.load(SeqCst) < then + 50 && Instant::now() < until {
                        std::thread::sleep(Duration::from_millis(5));
                    }
                    let alone = st.attestations.load(SeqCst) - then;
                    assert!(alone >= 50, "with one replica killed, the other accepted {alone} attestations in 20 s");
                    alone_n = Some(alone);
                }
                replicas.insert(victim, plan.start(&s, &addr, &quiet));
                let down = t.elapsed();
                kills.lock().unwrap().push((st.approvals.load(SeqCst), at, in_flight, down, alone_n));
            }
            replicas
        });
        let approvals: Vec<_> = owners.into_iter().flat_map(|h| h.join().unwrap()).collect();
        let (mut received, mut lost) = (Vec::new(), Vec::new());
        for h in fleet {
            let (r, l) = h.join().unwrap();
            received.extend(r);
            lost.extend(l);
        }
        (killer.join().unwrap(), approvals, received, lost)
    });
    let load = load.elapsed();
    let kills = kills.into_inner().unwrap();
    assert_eq!(kills.len(), 2);

    // Through the API, the service up: the audit chain as the model owner verifies it
    // (`perun audit verify`), every record signed, none missing or out of order.
    let oc = Parties::client_of(&anon, &parties.owner);
    let log: AuditLog = oc.call::<(), _>("GET", "/v1/audit", None).unwrap();
    use base64::Engine as _;
    let raw = base64::engine::general_purpose::STANDARD.decode(&info.audit_key).unwrap();
    let audit_key = ed25519_dalek::VerifyingKey::try_from(raw.as_slice()).unwrap();
    let n_api = verify_chain(&log.records, &audit_key).unwrap();
    let api_released = log.records.iter().filter_map(|v| v.body.as_ref()).filter(|b| b.kind == AuditKind::KeyReleased);
    assert_eq!(api_released.count(), 2 * n_workers, "KeyReleased records the model owner sees");
    for r in replicas {
        r.stop();
    }

    // From the store, after a clean stop.
    let store =
        AnyStore::open(&plan.store, 2, &perun_trust::store::postgres::StoreTls::Plaintext { allow_network: false })
            .unwrap();
    let (jobs, stored_approvals, releases, audit) = store
        .read(|tx| {
            let jobs: Vec<JobRecord> = tx.list("")?;
            let approvals: Vec<ApprovalRecord> = tx.list("")?;
            let releases: Vec<ReleaseRecord> = tx.list("")?;
            Ok((jobs, approvals, releases, tx.audit_since(1)?))
        })
        .unwrap();
    let audit: Vec<AuditRecord> = audit.iter().map(|b| serde_json::from_slice(b).unwrap()).collect();

    // Every job proposed once, claimed by its worker, running, its keys released.
    assert_eq!(jobs.len(), n_workers);
    let worker_of: BTreeMap<Digest, Name> = jobs
        .iter()
        .map(|j| {
            assert_eq!(j.state, JobState::Running, "job {} ({}): {:?}", j.id, j.manifest.name, j.reason);
            assert!(j.released, "job {} never released", j.id);
            let w = j.worker.clone().unwrap();
            assert!(j.manifest.workers.contains(w.as_str()), "job {} claimed by {w}, not its worker", j.id);
            (j.id, w)
        })
        .collect();

    // Approvals: exactly those answered OK, each once.
    let ok: BTreeSet<(Digest, Name)> = approvals.iter().cloned().collect();
    assert_eq!(ok.len(), approvals.len(), "an approval was answered OK twice");
    assert_eq!(ok.len(), 2 * n_workers);
    let stored: BTreeSet<(Digest, Name)> = stored_approvals.iter().map(|a| (a.job, a.approver.clone())).collect();
    assert_eq!(stored.len(), stored_approvals.len(), "an approval is stored twice");
    assert_eq!(stored, ok, "the stored approvals are not those answered OK");

    // Releases: one per (job, asset), all of a job's to its one worker, with one
    // ephemeral key (one attestation); every release a worker received is one of them.
    let by_key: BTreeMap<(Digest, Name), &ReleaseRecord> =
        releases.iter().map(|r| ((r.job, r.asset.clone()), r)).collect();
    assert_eq!(by_key.len(), releases.len(), "a (job, asset) is released twice");
    assert_eq!(releases.len(), 2 * n_workers);
    let mut per_job: BTreeMap<Digest, BTreeSet<(Name, String)>> = BTreeMap::new();
    for r in &releases {
        assert_eq!(Some(&r.worker), worker_of.get(&r.job), "job {}'s key of {} went to another worker", r.job, r.asset);
        per_job.entry(r.job).or_default().insert((r.worker.clone(), r.ephemeral_key.clone()));
    }
    assert!(per_job.values().all(|w| w.len() == 1), "a job's keys were released to two workers or keys");
    let got: BTreeSet<&Release> = received.iter().collect();
    assert_eq!(got.len(), received.len(), "a worker received a release twice");
    for (job, asset, worker, eph) in &received {
        let r =
            by_key.get(&(*job, asset.clone())).unwrap_or_else(|| panic!("{worker}'s key of {asset} is not recorded"));
        assert_eq!((&r.worker, &r.ephemeral_key), (worker, eph), "{worker} received another release than recorded");
    }
    // Releases nobody received: only those of first acceptances whose answer was lost.
    let unseen: BTreeSet<&Name> = releases
        .iter()
        .filter(|r| !got.contains(&(r.job, r.asset.clone(), r.worker.clone(), r.ephemeral_key.clone())))
        .map(|r| &r.worker)
        .collect();
    let lost: BTreeSet<&Name> = lost.iter().collect();
    assert_eq!(unseen, lost, "releases received neither by their worker nor lost with an answer");

    // The audit chain: 1..n without gap or repeat, every hash and signature, and one
    // record per proposal, claim, approval and release.
    let views: Vec<AuditView> = audit.iter().map(|r| r.view(true)).collect();
    assert_eq!(verify_chain(&views, &audit_key).unwrap(), audit.len());
    assert!(audit.len() >= n_api, "the store holds fewer audit records than the API showed");
    let mut kinds: BTreeMap<String, usize> = BTreeMap::new();
    let mut approved: BTreeMap<(Digest, Name), usize> = BTreeMap::new();
    let mut released: BTreeMap<(Digest, Name), usize> = BTreeMap::new();
    let mut proposed: BTreeMap<Digest, usize> = BTreeMap::new();
    let mut claimed: BTreeMap<Digest, usize> = BTreeMap::new();
    for r in &audit {
        let b = &r.body;
        *kinds.entry(format!("{:?}", b.kind)).or_default() += 1;
        match b.kind {
            AuditKind::JobApproved => {
                *approved.entry((b.job.unwrap(), Name::new(&b.actor.to_string()).unwrap())).or_default() += 1
            }
            AuditKind::KeyReleased => {
                assert_eq!(b.assets.len(), 1, "{b:?}");
                let key = (b.job.unwrap(), b.assets[0].clone());
                let rec = by_key.get(&key).unwrap_or_else(|| panic!("KeyReleased without a release record: {b:?}"));
                assert!(b.detail.contains(rec.worker.as_str()) && b.detail.contains(&rec.ephemeral_key), "{b:?}");
                *released.entry(key).or_default() += 1;
            }
            AuditKind::JobProposed => *proposed.entry(b.job.unwrap()).or_default() += 1,
            AuditKind::JobClaimed => {
                let job = b.job.unwrap();
                assert_eq!(b.actor.to_string(), format!("worker:{}", worker_of[&job]), "{b:?}");
                *claimed.entry(job).or_default() += 1;
            }
            AuditKind::AttestationRefused | AuditKind::JobRevoked | AuditKind::JobExpired => {
                panic!("unexpected audit record: {b:?}")
            }
            _ => {}
        }
    }
    assert!(approved.values().all(|&n| n == 1), "an approval is audited twice");
    assert_eq!(approved.keys().cloned().collect::<BTreeSet<_>>(), ok, "audited approvals");
    assert!(released.values().all(|&n| n == 1), "a release is audited twice");
    assert_eq!(released.keys().collect::<Vec<_>>(), by_key.keys().collect::<Vec<_>>(), "audited releases");
    assert!(proposed.len() == n_workers && proposed.values().all(|&n| n == 1), "proposals audited: {}", proposed.len());
    assert!(claimed.len() == n_workers && claimed.values().all(|&n| n == 1), "claims audited: {}", claimed.len());
    let accepted_ok = st.attestations.load(SeqCst);
    let accepted = kinds.get("AttestationAccepted").copied().unwrap_or(0);
    let unanswered = st.attestations_unanswered.load(SeqCst);
    assert_eq!(accepted_ok, n_workers * (1 + rounds));
    assert!(
        (accepted_ok..=accepted_ok + unanswered).contains(&accepted),
        "{accepted} attestations audited as accepted; {accepted_ok} answered so, {unanswered} retried after no answer"
    );
    match deployment {
        Deployment::Restarted => assert!(st.retries.load(SeqCst) >= 2, "the kills interrupted no request"),
        // Replicas: a request that could not connect went to the other replica unseen;
        // the kills still hit requests in flight.
        Deployment::Replicas => {
            assert!(kills.iter().map(|k| k.2).sum::<usize>() > 0, "the kills interrupted no request")
        }
    }

    println!("load and faults, {:.1} s in all ({:.1} s under load):", t0.elapsed().as_secs_f64(), load.as_secs_f64());
    println!(
        "  workers: {n_workers}, attestations accepted: {accepted_ok} (1 + {rounds} rounds each; {accepted} audited)"
    );
    for (n, (approvals_then, attested_then, in_flight, down, alone)) in kills.iter().enumerate() {
        let meanwhile = match alone {
            Some(a) => format!(", the other replica accepting {a} attestations meanwhile"),
            None => String::new(),
        };
        println!(
            "  SIGKILL {}: after {approvals_then} approvals and {attested_then} attestations, {in_flight} requests in flight; back in {:.2} s{meanwhile}",
            n + 1,
            down.as_secs_f64()
        );
    }
    println!(
        "  approvals: {} (stored once each); key releases: {} ({} received, {} lost with their answer); jobs: {n_workers}",
        ok.len(),
        releases.len(),
        received.len(),
        releases.len() - received.len()
    );
    println!(
        "  retries after no answer: {} (attestations {unanswered}, proposals found done {}, claims found done {})",
        st.retries.load(SeqCst),
        st.lost_proposals.load(SeqCst),
        st.lost_claims.load(SeqCst)
    );
    println!("  audit records: {} verified ({kinds:?})", audit.len());
}
