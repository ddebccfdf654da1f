//! `perun bench trust`: the trust service under load on loopback. Each simulated worker
//! has its own software TPM (P-256 EK and AK; see `perun_attest::tpm::soft`) and its
//! own IMA log, is enrolled and activated through the real protocol, claims its own job
//! and attests; then every worker re-attests `rounds` times with one new IMA entry per
//! round. Printed: verified attestations per second, p50/p99 latency of one attestation
//! (nonce request + evidence), next to appraisal alone in process; for one SQLite
//! service and for one, two and three replicas on one PostgreSQL database, with the
//! CPU the service and PostgreSQL spend per attestation (where the time goes).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};
use perun_attest::tpm::soft::SoftTpm;
use perun_client::{Caller, Client};
use perun_core::{Digest, Name};
use perun_testkit::soft_worker as sim;
use perun_testkit::{Parties, SimWorker};
use perun_trust::server::Running;
use perun_trust::{AnyStore, Clock, ServiceKeys, Trust, TrustConfig};

/// One deployment measured: the store and how many service replicas share it.
#[derive(Clone, Debug)]
pub enum Deployment {
    /// One service on a SQLite file (synchronous commits).
    Sqlite,
    /// `replicas` services on one PostgreSQL database.
    Postgres {
        /// The database URL.
        url: String,
        /// Service processes sharing it.
        replicas: usize,
    },
}

impl std::fmt::Display for Deployment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Deployment::Sqlite => write!(f, "1 service, SQLite"),
            Deployment::Postgres { replicas, .. } => write!(f, "{replicas} replica(s), PostgreSQL"),
        }
    }
}

/// What one deployment measured.
struct Figures {
    rate: f64,
    p50: Duration,
    p99: Duration,
    /// Trust-service CPU per attestation (ms), all replicas together.
    service_ms: f64,
    /// PostgreSQL server CPU per attestation (ms).
    postgres_ms: f64,
    /// PostgreSQL transactions committed and rows written per attestation.
    commits_per: f64,
    rows_per: f64,
    n: usize,
    elapsed: Duration,
    setup: Duration,
    clients_cpu: f64,
}

/// Runs the benchmark: one SQLite service, then (where PostgreSQL is installed, or at
/// `postgres`) one, two and three replicas on one PostgreSQL database, side by side.
pub fn run(
    workers: usize,
    rounds: usize,
    clients: usize,
    threads: usize,
    postgres: Option<String>,
    sqlite_only: bool,
) -> Result<()> {
    let mut deployments = vec![Deployment::Sqlite];
    // A local cluster with PostgreSQL's durable defaults (fsync, synchronous commit), as
    // SQLite here commits synchronously.
    let mut cluster = None;
    if !sqlite_only {
        let base = match postgres {
            Some(url) => Some(url),
            None => match perun_trust::store::local_cluster::LocalCluster::start(true) {
                Ok(c) => {
                    let url = c.url("postgres");
                    println!("PostgreSQL: a local cluster on port {} (fsync and synchronous commits on)", c.port());
                    cluster = Some(c);
                    Some(url)
                }
                Err(e) => {
                    println!("PostgreSQL rows skipped: {e}");
                    None
                }
            },
        };
        if let Some(base) = base {
            for replicas in 1..=3 {
                let url = match &cluster {
                    Some(c) => c.create_database(&format!("bench{replicas}"))?,
                    None => base.clone(),
                };
                deployments.push(Deployment::Postgres { url, replicas });
            }
        }
    }
    let mut rows = Vec::new();
    let mut alone = 0.0;
    for d in &deployments {
        println!("{d}: {workers} simulated workers, {rounds} rounds, {clients} clients");
        let (f, a) = measure(d, workers, rounds, clients, threads)?;
        alone = a;
        println!(
            "  setup {:.1} s; {} attestations in {:.2} s; the simulated workers' CPU {:.2} s",
            f.setup.as_secs_f64(),
            f.n,
            f.elapsed.as_secs_f64(),
            f.clients_cpu
        );
        rows.push((d, f));
    }
    let base = rows.first().map(|(_, f)| f.rate).unwrap_or(1.0);
    println!();
    println!(
        "| deployment | verified attestations/s | ratio to SQLite | p50 / p99 latency | service CPU per attestation | PostgreSQL CPU per attestation | PostgreSQL commits / rows written per attestation |"
    );
    println!("|---|---|---|---|---|---|---|");
    for (d, f) in &rows {
        let pg = matches!(d, Deployment::Postgres { .. });
        println!(
            "| {d} | {:.0} | {:.2}x | {:.2} / {:.2} ms | {:.3} ms | {} | {} |",
            f.rate,
            f.rate / base,
            ms(f.p50),
            ms(f.p99),
            f.service_ms,
            if pg { format!("{:.3} ms", f.postgres_ms) } else { "-".into() },
            if pg { format!("{:.2} / {:.2}", f.commits_per, f.rows_per) } else { "-".into() }
        );
    }
    println!("| appraisal alone, in process | {alone:.0} | {:.2}x | - | {:.3} ms | - | - |", alone / base, 1e3 / alone);
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    println!(
        "(one machine of {cores} cores runs the simulated workers, every replica and PostgreSQL: replicas add \
         capacity only where they get cores of their own; the CPU columns say what each attestation costs)"
    );
    drop(cluster);
    Ok(())
}

/// Measures one deployment; also returns the rate of appraisal alone, in process.
fn measure(d: &Deployment, workers: usize, rounds: usize, clients: usize, threads: usize) -> Result<(Figures, f64)> {
    let dir = tempfile::tempdir()?;
    let keys_dir = dir.path().join("keys");
    ServiceKeys::create(&keys_dir, &[])?;
    let (spec, replicas) = match d {
        Deployment::Sqlite => (dir.path().join("perun.db").to_string_lossy().into_owned(), 1),
        Deployment::Postgres { url, replicas } => (url.clone(), (*replicas).max(1)),
    };
    let mut servers = Vec::new();
    let mut fp = None;
    let mut first = None;
    for _ in 0..replicas {
        let keys = ServiceKeys::load(&keys_dir)?;
        fp = Some(keys.tls_fingerprint());
        let store = AnyStore::open(
            &spec,
            perun_trust::store::postgres::DEFAULT_CONNECTIONS,
            &perun_trust::store::postgres::StoreTls::Plaintext { allow_network: false },
        )?;
        let trust = Arc::new(Trust::new(store, keys, Clock::System, TrustConfig::default()));
        trust.bind_identity()?;
        first.get_or_insert_with(|| trust.clone());
        servers.push(Running::start(trust, SocketAddr::from(([127, 0, 0, 1], 0)), threads)?);
    }
    let fp = fp.context("no replica")?;
    let anons: Vec<Client> =
        servers.iter().map(|s| Client::new(&s.url(), fp, Caller::Anonymous)).collect::<Result<_, _>>()?;
    let anon = &anons[0];

    let setup = Instant::now();
    // This process runs the service: it is its operator and admits the parties.
    let operator = first.clone().context("no replica")?;
    let parties = Parties::register_admitted_by(anon, |n, fp| Ok(operator.admit(n, fp).map(drop)?))?;
    let (oc, ic) = (Parties::client_of(anon, &parties.owner), Parties::client_of(anon, &parties.infra));
    let approvers = parties.approvers().map(|k| (k, Parties::client_of(anon, k)));
    let mut sims = Vec::with_capacity(workers);
    for i in 0..workers {
        let mut sim = SimWorker::enrol(&ic, anon, Name::new(&format!("sim-{i:05}"))?, &parties.ca)?;
        let job = Parties::propose(&oc, parties.manifest(&format!("bench job {i}"), sim.name()))?;
        for (k, c) in &approvers {
            Parties::approve(c, k, &job.id)?;
        }
        let claimed = sim.claim(&job.id)?;
        let (_, first) = sim.attest(&job.id, &claimed.nonce).context("first attestation")?;
        anyhow::ensure!(first.keys.len() == 2, "expected two released keys");
        sims.push((sim, job.id));
    }
    let setup = setup.elapsed();

    // Each client thread re-attests its share of workers, round after round, on its own
    // connection to one replica (client k to replica k mod replicas: a load balancer's
    // round robin).
    let mut shares: Vec<Vec<(SimWorker, Digest)>> = (0..clients).map(|_| Vec::new()).collect();
    for (i, mut s) in sims.into_iter().enumerate() {
        let k = i % clients;
        s.0.reconnect(&anons[k % anons.len()]);
        shares[k].push(s);
    }
    let latencies = Arc::new(Mutex::new(Vec::with_capacity(workers * rounds)));
    let client_cpu = Arc::new(Mutex::new(0.0f64));
    let cpu_before = cpu_seconds("/proc/self/stat");
    let http_client_before = cpu_of_threads("reqwest");
    let pg_before = cpu_of_processes("postgres");
    let activity = |t: &Option<Arc<Trust<AnyStore>>>| -> Result<perun_trust::store::postgres::Activity> {
        match t.as_ref().map(|t| t.store()) {
            Some(AnyStore::Postgres(p)) => {
                // Backends report their counts within a second of their work.
                std::thread::sleep(Duration::from_millis(1500));
                Ok(p.activity()?)
            }
            _ => Ok(Default::default()),
        }
    };
    let act_before = activity(&first)?;
    let start = Instant::now();
    let handles: Vec<_> = shares
        .into_iter()
        .map(|mut share| {
            let latencies = latencies.clone();
            let client_cpu = client_cpu.clone();
            std::thread::spawn(move || -> Result<()> {
                let mut mine = Vec::new();
                for round in 0..rounds {
                    for (s, job) in &mut share {
                        s.measure(&sim::round_entry(round));
                        let t0 = Instant::now();
                        let (_, a) = s.reattest(job)?;
                        mine.push(t0.elapsed());
                        anyhow::ensure!(a.new_entries == 1 && a.keys.is_empty(), "unexpected answer");
                    }
                }
                latencies.lock().map_err(|_| anyhow::anyhow!("lock"))?.extend(mine);
                *client_cpu.lock().map_err(|_| anyhow::anyhow!("lock"))? += cpu_seconds("/proc/thread-self/stat");
                Ok(())
            })
        })
        .collect();
    for h in handles {
        h.join().map_err(|_| anyhow::anyhow!("a client thread panicked"))??;
    }
    let elapsed = start.elapsed();
    let postgres_cpu = cpu_of_processes("postgres") - pg_before;
    let act_after = activity(&first)?;
    let process_cpu = cpu_seconds("/proc/self/stat") - cpu_before;
    // The simulated workers' CPU: their own threads, and the HTTP client's runtime thread.
    let clients_cpu =
        *client_cpu.lock().map_err(|_| anyhow::anyhow!("lock"))? + (cpu_of_threads("reqwest") - http_client_before);
    let service_cpu = (process_cpu - clients_cpu).max(f64::EPSILON);
    let mut lat = latencies.lock().map_err(|_| anyhow::anyhow!("lock"))?.clone();
    lat.sort();
    let n = lat.len();
    anyhow::ensure!(n > 0, "no attestations measured");
    let pct = |p: f64| lat[((n as f64 * p) as usize).min(n - 1)];
    let rate = n as f64 / elapsed.as_secs_f64();

    // Appraisal alone, in process, on the same kind of evidence.
    let mut tpm = SoftTpm::new();
    let ak = tpm.ak()?;
    let mut log = Vec::new();
    for e in &sim::boot_log() {
        log.extend_from_slice(&e.to_binary());
        tpm.extend_pcr10(&e.sha256_extend());
    }
    let pol = sim::policy("bench", &parties.ca)?;
    let ek_cert = parties.ca.certify(&tpm)?;
    let ek = perun_attest::tpm::AkPublic::parse_tpmt(tpm.ek_public())?;
    let reps = 2000;
    let t0 = Instant::now();
    for i in 0..reps {
        let qd = Digest::of(&(i as u64).to_be_bytes());
        let ev = sim::evidence(&mut tpm, &log, qd.as_bytes())?;
        let endorsement = perun_attest::evidence::Endorsement { ek: &ek, certificate: &ek_cert, chain: &[] };
        let a = perun_attest::evidence::appraise(&ev, endorsement, &ak, qd.as_bytes(), &pol, &Default::default());
        anyhow::ensure!(a.accepted(), "in-process appraisal refused: {:?}", a.failures);
    }
    let alone = reps as f64 / t0.elapsed().as_secs_f64();
    drop(servers);
    let figures = Figures {
        rate,
        p50: pct(0.50),
        p99: pct(0.99),
        service_ms: service_cpu / n as f64 * 1e3,
        postgres_ms: postgres_cpu / n as f64 * 1e3,
        commits_per: (act_after.commits - act_before.commits) as f64 / n as f64,
        rows_per: (act_after.rows_written - act_before.rows_written) as f64 / n as f64,
        n,
        elapsed,
        setup,
        clients_cpu,
    };
    Ok((figures, alone))
}

/// CPU seconds of every process named `comm` (PostgreSQL's server and its backends).
fn cpu_of_processes(comm: &str) -> f64 {
    let Ok(procs) = std::fs::read_dir("/proc") else { return 0.0 };
    procs
        .flatten()
        .filter(|p| std::fs::read_to_string(p.path().join("comm")).is_ok_and(|c| c.trim() == comm))
        .map(|p| cpu_seconds(&p.path().join("stat").to_string_lossy()))
        .sum()
}

/// CPU seconds of this process's threads whose name starts with `prefix`.
fn cpu_of_threads(prefix: &str) -> f64 {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else { return 0.0 };
    tasks
        .flatten()
        .filter(|t| std::fs::read_to_string(t.path().join("comm")).is_ok_and(|c| c.starts_with(prefix)))
        .map(|t| cpu_seconds(&t.path().join("stat").to_string_lossy()))
        .sum()
}

/// User plus system CPU seconds from a `/proc/.../stat` file (0 where unreadable).
fn cpu_seconds(stat: &str) -> f64 {
    let Ok(text) = std::fs::read_to_string(stat) else { return 0.0 };
    // Fields after the parenthesised command name; utime and stime are the 14th and 15th.
    let Some(rest) = text.rsplit_once(')').map(|(_, r)| r) else { return 0.0 };
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // Linux reports in clock ticks of 1/100 s on every architecture Perun builds for.
    (ticks(11) + ticks(12)) / 100.0
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}
