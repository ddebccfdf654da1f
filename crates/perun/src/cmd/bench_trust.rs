//! `perun bench trust`: the trust service under load on loopback. Each simulated worker
//! has its own software TPM (P-256 EK and AK; see `perun_attest::tpm::soft`) and its
//! own IMA log, is enrolled and activated through the real protocol, claims its own job
//! and attests; then every worker re-attests `rounds` times with one new IMA entry per
//! round. Printed: verified attestations per second, p50/p99 latency of one attestation
//! (nonce request + evidence), next to appraisal alone in process.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};
use perun_attest::tpm::soft::SoftTpm;
use perun_core::{Digest, Name};
use perun_trust::server::Running;
use perun_trust::{Caller, Client, Clock, ServiceKeys, SqliteStore, Trust, TrustConfig};
use perun_worker::sim::{self, Parties, SimWorker};

/// Runs the benchmark.
pub fn run(workers: usize, rounds: usize, clients: usize, threads: usize) -> Result<()> {
    let dir = tempfile::tempdir()?;
    let store = SqliteStore::open(&dir.path().join("perun.db"))?;
    let keys = ServiceKeys::generate(&[])?;
    let fp = keys.tls_fingerprint();
    let trust = Arc::new(Trust::new(store, keys, Clock::System, TrustConfig::default()));
    let server = Running::start(trust.clone(), SocketAddr::from(([127, 0, 0, 1], 0)), threads)?;
    let anon = Client::new(&server.url(), fp, Caller::Anonymous)?;
    println!("trust service on {} (SQLite, synchronous commits), {workers} simulated workers", server.url());

    let setup = Instant::now();
    let parties = Parties::register(&anon)?;
    let (oc, ic) = (Parties::client_of(&anon, &parties.owner), Parties::client_of(&anon, &parties.infra));
    let approvers = parties.approvers().map(|k| (k, Parties::client_of(&anon, k)));
    let mut sims = Vec::with_capacity(workers);
    for i in 0..workers {
        let mut sim = SimWorker::enrol(&ic, &anon, Name::new(&format!("sim-{i:05}"))?, &parties.ca)?;
        let job = Parties::propose(&oc, parties.manifest(&format!("bench job {i}"), sim.name()))?;
        for (k, c) in &approvers {
            Parties::approve(c, k, &job.id)?;
        }
        let claimed = sim.claim(&job.id)?;
        let (_, first) = sim.attest(&job.id, &claimed.nonce).context("first attestation")?;
        anyhow::ensure!(first.keys.len() == 2, "expected two released keys");
        sims.push((sim, job.id));
    }
    println!(
        "setup (enrol, activate, propose, approve, claim, first attestation and release): {:.1} s",
        setup.elapsed().as_secs_f64()
    );

    // Each client thread re-attests its share of workers, round after round, on its own
    // connection.
    let mut shares: Vec<Vec<(SimWorker, Digest)>> = (0..clients).map(|_| Vec::new()).collect();
    for (i, s) in sims.into_iter().enumerate() {
        shares[i % clients].push(s);
    }
    let latencies = Arc::new(Mutex::new(Vec::with_capacity(workers * rounds)));
    let client_cpu = Arc::new(Mutex::new(0.0f64));
    let cpu_before = cpu_seconds("/proc/self/stat");
    let http_client_before = cpu_of_threads("reqwest");
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
    let process_cpu = cpu_seconds("/proc/self/stat") - cpu_before;
    // The simulated workers' CPU: their own threads, and the HTTP client's runtime thread.
    let clients_cpu =
        *client_cpu.lock().map_err(|_| anyhow::anyhow!("lock"))? + (cpu_of_threads("reqwest") - http_client_before);
    let service_cpu = (process_cpu - clients_cpu).max(f64::EPSILON);
    let mut lat = latencies.lock().map_err(|_| anyhow::anyhow!("lock"))?.clone();
    lat.sort();
    let n = lat.len();
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

    println!();
    println!("| measure | trust service over TLS | appraisal alone, in process |");
    println!("|---|---|---|");
    println!("| verified attestations per second | {rate:.0} | {alone:.0} (quote made and verified) |");
    println!("| ratio | {:.2}x of in-process appraisal | 1.00x |", rate / alone);
    println!(
        "| latency p50 / p99 (evidence with the nonce of the last answer, {clients} clients) | {:.2} / {:.2} ms | - |",
        ms(pct(0.50)),
        ms(pct(0.99))
    );
    let cores = std::thread::available_parallelism().map_or(1, usize::from) as f64;
    let per_att_ms = service_cpu / n as f64 * 1e3;
    println!(
        "| service CPU per attestation | {per_att_ms:.3} ms: {:.0}/s per core, {:.0}/s on {cores} cores with the workers elsewhere | - |",
        1e3 / per_att_ms,
        cores * 1e3 / per_att_ms
    );
    println!(
        "({n} attestations by {workers} workers in {:.2} s; CPU {process_cpu:.2} s in all, {clients_cpu:.2} s of it the simulated workers; goal: 1,000 per second on 2 cores)",
        elapsed.as_secs_f64()
    );
    drop(server);
    Ok(())
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
