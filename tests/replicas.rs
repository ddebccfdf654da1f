//! Replicas of the trust service on one PostgreSQL database (a throwaway cluster of this
//! test binary, started with `initdb` and `pg_ctl`'s server as an unprivileged user):
//! races between replicas keep the release rule's invariants, a replica with keys of its
//! own is refused, clients fail over, and the two stores behave alike.
//!
//! Outside CI these tests skip, with a message, where PostgreSQL is not installed; under
//! CI they fail instead.

use std::sync::{Arc, Barrier};

use perun_client::{Caller, Client, ClientError};
use perun_core::Name;
use perun_proto::wire::{Attested, JobInfo};
use perun_proto::ApiCode;
use perun_testkit::{Parties, SimWorker};
use perun_trust::audit::{verify_chain, AuditRecord, AuditView};
use perun_trust::records::{ApprovalRecord, JobRecord, JobState, ReleaseRecord};
use perun_trust::server::Running;
use perun_trust::store::local_cluster::LocalCluster;
use perun_trust::store::postgres::StoreTls;
use perun_trust::store::{Store, Table, TxExt as _};
use perun_trust::{AnyStore, Clock, ServiceKeys, SqliteStore, Trust, TrustConfig, TrustError};
use perun_worker::Agent;

/// Loopback: plaintext is allowed.
const PLAIN: &StoreTls = &StoreTls::Plaintext { allow_network: false };

/// Two replicas serving one database with one set of keys.
struct Pair {
    _dir: tempfile::TempDir,
    url: String,
    keys_dir: std::path::PathBuf,
    trust: [Arc<Trust<AnyStore>>; 2],
    servers: [Running; 2],
    anon: [Client; 2],
}

fn replica(url: &str, keys: &std::path::Path, config: TrustConfig) -> (Arc<Trust<AnyStore>>, Running, Client) {
    let keys = ServiceKeys::load(keys).unwrap();
    let fp = keys.tls_fingerprint();
    let trust = Arc::new(Trust::new(AnyStore::open(url, 4, PLAIN).unwrap(), keys, Clock::System, config));
    trust.bind_identity().unwrap();
    let server = Running::start(trust.clone(), std::net::SocketAddr::from(([127, 0, 0, 1], 0)), 2).unwrap();
    let anon = Client::new(&server.url(), fp, Caller::Anonymous).unwrap();
    (trust, server, anon)
}

impl Pair {
    fn start() -> Option<Self> {
        Self::start_with(TrustConfig::default())
    }

    fn start_with(config: TrustConfig) -> Option<Self> {
        let url = crate::common::postgres_database()?;
        let dir = tempfile::tempdir().unwrap();
        let keys_dir = dir.path().join("keys");
        ServiceKeys::create(&keys_dir, &[]).unwrap();
        let (ta, sa, ca) = replica(&url, &keys_dir, config.clone());
        let (tb, sb, cb) = replica(&url, &keys_dir, config);
        Some(Pair { _dir: dir, url, keys_dir, trust: [ta, tb], servers: [sa, sb], anon: [ca, cb] })
    }
}

/// The audit chain as the store holds it, verified: its length.
fn verified_chain(store: &impl Store, key: &ed25519_dalek::VerifyingKey) -> usize {
    let raw = store.read(|tx| tx.audit_since(1)).unwrap();
    let views: Vec<AuditView> =
        raw.iter().map(|b| serde_json::from_slice::<AuditRecord>(b).unwrap().view(true)).collect();
    let seqs: Vec<u64> = views.iter().map(|v| v.seq).collect();
    assert_eq!(seqs, (1..=views.len() as u64).collect::<Vec<_>>(), "the audit chain has a gap or a fork");
    verify_chain(&views, key).unwrap()
}

#[test]
fn two_replicas_given_the_same_attestation_at_once_release_its_keys_once() {
    let Some(p) = Pair::start() else { return };
    let parties = Parties::register_admitted_by(&p.anon[0], |n, fp| Ok(p.trust[1].admit(n, fp).map(drop)?)).unwrap();
    let infra = Parties::client_of(&p.anon[0], &parties.infra);
    let owner = Parties::client_of(&p.anon[0], &parties.owner);
    let approvers: Vec<_> = parties.approvers().into_iter().collect();
    const RACES: usize = 12;
    let (mut released_once, mut refused) = (0, Vec::new());
    for i in 0..RACES {
        // Enrolled through one replica, its AK activated through the other: the
        // credential challenge keeps no state a replica could lack.
        let mut sim =
            SimWorker::enrol(&infra, &p.anon[1], Name::new(&format!("race-{i:02}")).unwrap(), &parties.ca).unwrap();
        let job = Parties::propose(&owner, parties.manifest(&format!("race {i}"), sim.name())).unwrap().id;

        // The two approvals at once, one through each replica: neither is lost.
        let barrier = Barrier::new(2);
        let infos: Vec<JobInfo> = std::thread::scope(|sc| {
            let hs: Vec<_> = approvers
                .iter()
                .enumerate()
                .map(|(r, k)| {
                    let (c, barrier) = (Parties::client_of(&p.anon[r], k), &barrier);
                    sc.spawn(move || {
                        barrier.wait();
                        Parties::approve(&c, k, &job).unwrap()
                    })
                })
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert!(infos.iter().any(|i| i.approved_by.len() == 2), "an approval was lost: {infos:?}");
        let stored: Vec<ApprovalRecord> = p.trust[0].store().read(|tx| tx.list(&format!("{job}/"))).unwrap();
        assert_eq!(stored.len(), 2);

        // One attestation, the same bytes, sent to both replicas at the same moment.
        let claimed = sim.claim(&job).unwrap();
        let (eph, req) = sim.attestation(&job, &claimed.nonce).unwrap();
        let clients = [sim.session().client_at(&p.anon[0]), sim.session().client_at(&p.anon[1])];
        let barrier = Barrier::new(2);
        let path = format!("/v1/jobs/{job}/attest");
        let answers: Vec<Result<Attested, ClientError>> = std::thread::scope(|sc| {
            let hs: Vec<_> = clients
                .iter()
                .map(|c| {
                    let (req, path, barrier) = (&req, &path, &barrier);
                    sc.spawn(move || {
                        barrier.wait();
                        c.call("POST", path, Some(req))
                    })
                })
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let ok: Vec<&Attested> = answers.iter().filter_map(|a| a.as_ref().ok()).collect();
        assert_eq!(ok.len(), 1, "the same attestation was accepted {} times: {answers:?}", ok.len());
        assert_eq!(ok[0].keys.len(), 2, "the accepted attestation released {} keys", ok[0].keys.len());
        Agent::open_keys(&job, &eph, ok[0]).unwrap();
        for e in answers.iter().filter_map(|a| a.as_ref().err()) {
            assert!(
                !matches!(e, ClientError::Transport { .. } | ClientError::Api { code: ApiCode::Internal, .. }),
                "the loser failed instead of being refused: {e}"
            );
            refused.push(e.to_string());
        }
        let releases: Vec<ReleaseRecord> = p.trust[1].store().read(|tx| tx.list(&format!("{job}/"))).unwrap();
        assert_eq!(releases.len(), 2, "keys released {} times for two assets", releases.len());
        let job_rec: JobRecord = p.trust[1].store().read(|tx| tx.get(&job.to_string())).unwrap().unwrap();
        assert_eq!(job_rec.state, JobState::Running);
        assert!(job_rec.released);
        released_once += 1;
    }
    assert_eq!(released_once, RACES);

    // One audit chain, written by both replicas: no fork, no gap, every signature.
    let key = p.trust[0].keys().signing.verifying_key();
    let n = verified_chain(p.trust[0].store(), &key);
    println!(
        "{RACES} races: keys released once each; the losers were refused ({:?}); {n} audit records",
        refused.first()
    );
    drop(p.servers);
}

#[test]
fn a_replica_with_keys_of_its_own_is_refused_and_clients_fail_over() {
    let Some(p) = Pair::start() else { return };
    // Other keys on the same database: it could not unwrap the stored asset keys, and
    // its audit records would not verify under the pinned key.
    let other = ServiceKeys::generate(&[]).unwrap();
    let rogue = Trust::new(AnyStore::open(&p.url, 1, PLAIN).unwrap(), other, Clock::System, TrustConfig::default());
    match rogue.bind_identity() {
        Err(TrustError::Conflict(m)) => assert!(m.contains("same keys"), "{m}"),
        r => panic!("a replica with other keys was let in: {r:?}"),
    }
    assert!(ServiceKeys::create(&p.keys_dir, &[]).is_err(), "the keys of a running service were replaced");

    // A client given a dead address first reaches the live replica, and stays with it.
    let fp = p.trust[0].keys().tls_fingerprint();
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("https://{}", l.local_addr().unwrap())
    };
    let live = p.servers[1].url();
    let c = Client::replicated(&[dead.clone(), live.clone()], fp, Caller::Anonymous).unwrap();
    let info: perun_proto::wire::ServiceInfo = c.call::<(), _>("GET", "/v1/service", None).unwrap();
    assert_eq!(info.tls_fingerprint, fp);
    assert_eq!(c.base(), live);
    // Every address dead: the error names the service, nothing hangs.
    let c = Client::replicated(&[dead.clone(), dead], fp, Caller::Anonymous).unwrap();
    match c.call::<(), serde_json::Value>("GET", "/v1/service", None) {
        Err(ClientError::Transport { detail, .. }) => assert!(detail.contains("perun serve"), "{detail}"),
        r => panic!("{r:?}"),
    }
}

#[test]
fn the_two_stores_agree_on_every_operation() {
    let Some(url) = crate::common::postgres_database() else { return };
    let dir = tempfile::tempdir().unwrap();
    let stores = [
        AnyStore::open(&url, 2, PLAIN).unwrap(),
        AnyStore::Sqlite(SqliteStore::open(&dir.path().join("p.db")).unwrap()),
    ];
    let outcomes: Vec<_> = stores
        .iter()
        .map(|s| {
            s.write(|tx| tx.put_raw(Table::Jobs, "a", b"1", None)).unwrap();
            // A failed transaction leaves nothing.
            let failed: Result<(), _> = s.write(|tx| {
                tx.put_raw(Table::Jobs, "b", b"2", None)?;
                Err(TrustError::Conflict("no".into()))
            });
            assert!(failed.is_err());
            let insert_new = s.write(|tx| tx.insert_raw(Table::RequestNonces, "n", b"", Some(10))).unwrap();
            let insert_again = s.write(|tx| tx.insert_raw(Table::RequestNonces, "n", b"", Some(10))).unwrap();
            let pruned = s.write(|tx| tx.prune(Table::RequestNonces, 11)).unwrap();
            s.write(|tx| {
                // Key order is byte order in both.
                for (k, v) in [("j1/b", "y"), ("j1/a", "x"), ("j1/Z", "w"), ("j2/a", "z"), ("j1", "v")] {
                    tx.put_raw(Table::Approvals, k, v.as_bytes(), None)?;
                }
                tx.put_raw(Table::Approvals, "j1/a", b"x2", None)
            })
            .unwrap();
            let listed = s.read(|tx| tx.list_raw(Table::Approvals, "j1/")).unwrap();
            let got = s.read(|tx| Ok((tx.get_raw(Table::Jobs, "a")?, tx.get_raw(Table::Jobs, "b")?))).unwrap();
            let audit = s
                .write(|tx| {
                    tx.audit_append(1, "h1", b"r1")?;
                    tx.audit_append(2, "h2", b"r2")?;
                    Ok(tx.audit_tail()?)
                })
                .unwrap();
            // A second record 2 cannot be written: the chain does not fork.
            let fork = s.write(|tx| tx.audit_append(2, "h2'", b"fork"));
            assert!(matches!(fork, Err(TrustError::Store(_))), "{}: {fork:?}", s.engine());
            let since = s.read(|tx| tx.audit_since(2)).unwrap();
            (insert_new, insert_again, pruned, listed, got, audit, since)
        })
        .collect();
    assert_eq!(outcomes[0], outcomes[1], "PostgreSQL and SQLite disagree");
    let (new, again, pruned, listed, got, audit, since) = &outcomes[0];
    assert!(*new && !*again && *pruned == 1);
    assert_eq!(listed, &vec![b"w".to_vec(), b"x2".to_vec(), b"y".to_vec()]);
    assert_eq!(got, &(Some(b"1".to_vec()), None));
    assert_eq!(audit, &Some((2, "h2".to_owned())));
    assert_eq!(since, &vec![b"r2".to_vec()]);
}

#[test]
fn the_store_is_reached_over_verified_tls_and_a_server_with_another_ca_is_refused() {
    if crate::common::postgres_or_skip().is_none() {
        return;
    }
    let cluster = LocalCluster::start_tls(false).unwrap();
    let url = cluster.create_database("tls").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, cluster.ca_pem().unwrap()).unwrap();
    let store = AnyStore::open(&url, 2, &StoreTls::ca_file(&ca).unwrap()).unwrap();
    store.write(|tx| tx.put_raw(Table::Jobs, "a", b"1", None)).unwrap();
    // The server says the store's connections are encrypted.
    let mut admin = postgres::Client::connect(&cluster.url("postgres"), postgres::NoTls).unwrap();
    let row = admin
        .query_one(
            "SELECT count(*) FILTER (WHERE s.ssl), count(*) FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) \
             WHERE a.datname = 'tls'",
            &[],
        )
        .unwrap();
    let (encrypted, all): (i64, i64) = (row.get(0), row.get(1));
    assert!(all >= 1 && encrypted == all, "{encrypted} of {all} store connections use TLS");

    // A server whose certificate another CA signed (someone in between) is refused.
    let other = LocalCluster::start_tls(false).unwrap();
    let other_ca = dir.path().join("other.pem");
    std::fs::write(&other_ca, other.ca_pem().unwrap()).unwrap();
    match AnyStore::open(&url, 1, &StoreTls::ca_file(&other_ca).unwrap()) {
        Err(TrustError::Store(m)) => assert!(m.contains("cannot connect"), "{m}"),
        r => panic!("a server the CA did not certify was accepted: {r:?}"),
    }
    // No CA, a server over a network: refused before connecting.
    let remote = url.replace("127.0.0.1", "192.0.2.1");
    assert!(matches!(AnyStore::open(&remote, 1, PLAIN), Err(TrustError::Store(m)) if m.contains("--store-ca")));
}

#[test]
fn a_missed_attestation_is_revoked_once_when_both_replicas_sweep_at_once() {
    let Some(p) = Pair::start_with(TrustConfig { attestation_grace_s: 0, ..TrustConfig::default() }) else { return };
    let parties = Parties::register_admitted_by(&p.anon[0], |n, fp| Ok(p.trust[1].admit(n, fp).map(drop)?)).unwrap();
    let infra = Parties::client_of(&p.anon[0], &parties.infra);
    let mut sim = SimWorker::enrol(&infra, &p.anon[1], Name::new("sleepy").unwrap(), &parties.ca).unwrap();
    let mut m = parties.manifest("sleepy job", sim.name());
    m.attestation_interval_s = 1;
    let job = Parties::propose(&Parties::client_of(&p.anon[0], &parties.owner), m).unwrap().id;
    for k in parties.approvers() {
        Parties::approve(&Parties::client_of(&p.anon[1], k), k, &job).unwrap();
    }
    let claimed = sim.claim(&job).unwrap();
    sim.attest(&job, &claimed.nonce).unwrap();
    // The worker falls silent past twice its interval; both replicas' sweeps run at once
    // (and their own once-a-second sweeps race with them).
    std::thread::sleep(std::time::Duration::from_millis(3200));
    let barrier = Barrier::new(2);
    let ended: usize = std::thread::scope(|sc| {
        let hs: Vec<_> = p
            .trust
            .iter()
            .map(|t| {
                let barrier = &barrier;
                sc.spawn(move || {
                    barrier.wait();
                    t.sweep().unwrap()
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).sum()
    });
    assert!(ended <= 1, "the job was ended {ended} times");
    let rec: JobRecord = p.trust[0].store().read(|tx| tx.get(&job.to_string())).unwrap().unwrap();
    assert_eq!(rec.state, JobState::Revoked, "{:?}", rec.reason);
    let raw = p.trust[0].store().read(|tx| tx.audit_since(1)).unwrap();
    let revoked = raw
        .iter()
        .map(|b| serde_json::from_slice::<AuditRecord>(b).unwrap())
        .filter(|r| r.body.kind == perun_proto::audit::AuditKind::JobRevoked && r.body.job == Some(job))
        .count();
    assert_eq!(revoked, 1, "the revocation is audited {revoked} times");
    verified_chain(p.trust[1].store(), &p.trust[1].keys().signing.verifying_key());
    // The worker's next attestation is refused: it must abort and wipe.
    assert!(sim.reattest(&job).is_err());
}

#[test]
fn stakeholders_pin_every_replica_even_one_that_is_down_and_a_replica_needs_its_store() {
    let s = crate::common::Scratch::new();
    let svc = crate::common::Service::start(&s, "127.0.0.1:0");
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("https://{}", l.local_addr().unwrap())
    };
    let fp = svc.fingerprint.to_string();
    // One of two down: pinned both, with a warning; the live one serves.
    let out = s.ok(&["remote", "add", &dead, &svc.url, "--fingerprint", &fp]);
    assert!(out.contains("warning: not reachable now") && out.contains(&dead), "{out}");
    let shown = s.ok(&["remote", "show"]);
    assert!(shown.contains(&dead) && shown.contains(&svc.url), "{shown}");
    // None up: nothing pinned, each address named.
    let err = s.fails(&["remote", "add", &dead, &dead, "--fingerprint", &fp]);
    assert!(err.contains("none of") && err.contains(&dead), "{err}");
    // A replica with the shared keys but no store would answer from a file of its own.
    let keys = s.path("keys");
    s.ok(&["serve", "--keys", keys.to_str().unwrap(), "--make-keys"]);
    let err = s.fails(&["serve", "--keys", keys.to_str().unwrap(), "--listen", "127.0.0.1:0"]);
    assert!(err.contains("PERUN_STORE"), "{err}");
    svc.stop();
}
