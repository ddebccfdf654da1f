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
use perun_attest::evidence::{ImaSource, TpmEvidence};
use perun_attest::ima::Entry;
use perun_attest::policy::{PlatformPolicy, USER_SPACE_MARKER};
use perun_attest::tpm::soft::SoftTpm;
use perun_core::manifest::{APPROVAL_CONTEXT, MANIFEST_SCHEMA};
use perun_core::{sign_digest, AssetKind, AssetRef, Digest, JobManifest, JobMode, Name, Role};
use perun_seal::release::EphemeralKey;
use perun_seal::{AssetKey, StakeholderKeys};
use perun_trust::server::Running;
use perun_trust::wire::*;
use perun_trust::{Caller, Client, Clock, ServiceKeys, SqliteStore, Trust, TrustConfig};

struct SimWorker {
    tpm: SoftTpm,
    log: Vec<u8>,
    client: Client,
    job: Digest,
    /// The nonce the last answer handed out, and until when to use it.
    next_nonce: Option<(String, Instant)>,
}

impl SimWorker {
    fn record(&mut self, e: Entry) {
        self.log.extend_from_slice(&e.to_binary());
        self.tpm.extend_pcr10(&e.sha256_extend());
    }

    /// One attestation: with the nonce the last answer handed out, as a worker does
    /// (the benchmark's rounds are well inside its validity), else a fresh one.
    fn attest(&mut self) -> Result<Attested> {
        let nonce = match self.next_nonce.take() {
            Some((n, until)) if Instant::now() < until => n,
            _ => {
                let n: NonceIssued =
                    self.client.call::<(), _>("POST", &format!("/v1/jobs/{}/nonce", self.job), None)?;
                n.nonce
            }
        };
        let eph = EphemeralKey::generate();
        let binding = Digest::evidence_binding(&hex::decode(&nonce)?, &self.job, &eph.public_bytes());
        let (quote, signature, pcrs) = self.tpm.quote(binding.as_bytes())?;
        let evidence = TpmEvidence {
            quote,
            signature,
            pcrs,
            ima_log: self.log.clone(),
            ima_source: ImaSource::UserSpace,
            event_log: Vec::new(),
        };
        let req = Attest { nonce, ephemeral_key: eph.public_bytes(), evidence };
        let a: Attested = self.client.call("POST", &format!("/v1/jobs/{}/attest", self.job), Some(&req))?;
        let valid = Duration::from_secs(a.next_nonce.valid_s.saturating_sub(5));
        self.next_nonce = Some((a.next_nonce.nonce.clone(), Instant::now() + valid));
        Ok(a)
    }
}

/// A software EK CA for the simulated workers' software TPMs (this benchmark only): the
/// policy names it as its own root, as a development policy names `swtpm-localca`.
pub struct SoftEkCa {
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
    root: Vec<u8>,
}

/// A software TPM's P-256 EK as rcgen signs it.
struct EkPoint(Vec<u8>);

impl rcgen::PublicKeyData for EkPoint {
    fn der_bytes(&self) -> &[u8] {
        &self.0
    }
    fn algorithm(&self) -> &'static rcgen::SignatureAlgorithm {
        &rcgen::PKCS_ECDSA_P256_SHA256
    }
}

impl SoftEkCa {
    /// A fresh CA.
    pub fn new() -> Result<Self> {
        let key = rcgen::KeyPair::generate()?;
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new())?;
        params.distinguished_name.push(rcgen::DnType::CommonName, "perun bench software EK CA (development)");
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let root = params.self_signed(&key)?.der().to_vec();
        Ok(Self { issuer: rcgen::Issuer::new(params, key), root })
    }

    /// Its root certificate (DER).
    pub fn root(&self) -> &[u8] {
        &self.root
    }

    /// An EK certificate for `tpm`'s EK (DER).
    pub fn certify(&self, tpm: &SoftTpm) -> Result<Vec<u8>> {
        let params = rcgen::CertificateParams::new(Vec::<String>::new())?;
        Ok(params.signed_by(&EkPoint(tpm.ek_point()), &self.issuer)?.der().to_vec())
    }
}

/// The IMA log a simulated worker starts with: `boot_aggregate` over its zeroed PCRs
/// 0-9, the user-space marker, the worker binary.
fn template() -> [Entry; 3] {
    let boot_aggregate = Digest::of(&[0u8; 32 * 10]);
    [
        Entry::ima_ng("boot_aggregate", "sha256", boot_aggregate.as_bytes()),
        Entry::ima_ng(USER_SPACE_MARKER, "sha256", &[0u8; 32]),
        worker_binary_entry(),
    ]
}

/// The policy the simulated workers meet: the bench CA as EK root, zeroed boot PCRs,
/// the worker binary.
fn bench_policy(name: &str, ca: &SoftEkCa) -> Result<PlatformPolicy> {
    let mut policy = PlatformPolicy::from_log(name, &template());
    policy.accept_user_space_ima = true;
    policy.worker_binary = Some(Digest::of(b"perun worker binary").to_string());
    policy.allowed_digests.insert(Digest::of(b"perun worker binary").to_string());
    policy.ek.add_own_root(ca.root())?;
    let zeros = perun_attest::tpm::PcrBank {
        hash_alg: perun_attest::tpm::alg::SHA256,
        values: perun_attest::policy::BOOT_PCRS.map(|i| (i, vec![0u8; 32])).collect(),
    };
    policy.pin_boot_pcrs(&zeros)?;
    Ok(policy)
}

fn worker_binary_entry() -> Entry {
    Entry::ima_ng("/usr/bin/perun", "sha256", Digest::of(b"perun worker binary").as_bytes())
}

/// Runs the benchmark.
pub fn run(workers: usize, rounds: usize, clients: usize, threads: usize) -> Result<()> {
    let dir = tempfile::tempdir()?;
    let store = SqliteStore::open(&dir.path().join("perun.db"))?;
    let keys = ServiceKeys::generate(&[])?;
    let fp = keys.tls_fingerprint();
    let trust = Arc::new(Trust::new(store, keys, Clock::System, TrustConfig::default()));
    let server = Running::start(trust.clone(), SocketAddr::from(([127, 0, 0, 1], 0)), threads)?;
    let anon = Client::new(&server.url(), fp, Caller::Anonymous)?;
    let info: ServiceInfo = anon.call::<(), _>("GET", "/v1/service", None)?;
    let wrap_to = perun_seal::keys::parse_recipient(&info.wrap_recipient)?;
    println!("trust service on {} (SQLite, synchronous commits), {workers} simulated workers", server.url());

    let setup = Instant::now();
    let owner = StakeholderKeys::generate(Name::new("model-owner")?);
    let hospital = StakeholderKeys::generate(Name::new("hospital")?);
    let as_ = |k: &StakeholderKeys| {
        anon.with_caller(Caller::Stakeholder { name: k.name().clone(), key: k.signing_key().clone() })
    };
    let infra = StakeholderKeys::generate(Name::new("infra")?);
    let (oc, hc, ic) = (as_(&owner), as_(&hospital), as_(&infra));
    for (k, c, roles) in [
        (&owner, &oc, vec![Role::ModelOwner, Role::Receiver]),
        (&hospital, &hc, vec![Role::DataOwner]),
        (&infra, &ic, vec![Role::Provider]),
    ] {
        let body = RegisterStakeholder { identity: k.public(), roles: roles.into_iter().collect() };
        let _: () = c.call("POST", "/v1/stakeholders", Some(&body))?;
    }
    for (c, asset, kind) in [(&oc, "model", AssetKind::Model), (&hc, "data", AssetKind::Dataset)] {
        let key = AssetKey::generate();
        let body = RegisterAsset {
            name: Name::new(asset)?,
            kind,
            content_digest: Digest::of(asset.as_bytes()),
            location: format!("/data/{asset}.sealed"),
            wrapped_key: perun_seal::wrap::wrap(key.to_secret_string().as_bytes(), &wrap_to)?,
            recipient: key.recipient().to_string(),
        };
        let _: AssetInfo = c.call("POST", "/v1/assets", Some(&body))?;
    }
    let template = template();
    let ca = SoftEkCa::new()?;
    let policy = bench_policy("bench workers", &ca)?;
    let policy: PolicyInfo = ic.call_raw("POST", "/v1/policies", serde_json::to_vec(&policy)?)?;

    let mut sims = Vec::with_capacity(workers);
    for i in 0..workers {
        let wname = Name::new(&format!("sim-{i:05}"))?;
        let tpm = SoftTpm::new();
        let body = EnrolWorker {
            name: wname.clone(),
            ek_public: tpm.ek_public().to_vec(),
            ek_certificate: ca.certify(&tpm)?,
            ek_chain: Vec::new(),
        };
        let _: WorkerInfo = ic.call("POST", "/v1/workers", Some(&body))?;
        let ch: CredentialChallenge = anon.call(
            "POST",
            &format!("/v1/workers/{wname}/ak"),
            Some(&PresentAk { ek_public: tpm.ek_public().to_vec(), ak_public: tpm.ak_public().to_vec() }),
        )?;
        let cred = tpm.activate_credential(&ch.credential_blob, &ch.secret)?;
        let _: () = anon.call(
            "POST",
            &format!("/v1/workers/{wname}/activate"),
            Some(&ActivateAk { credential: cred.clone() }),
        )?;
        let now = perun_trust::unix_now();
        let asset = |a: &str, o: &StakeholderKeys, kind| AssetRef {
            // allow-panic: the two asset names are constants of this benchmark.
            asset: Name::new(a).unwrap_or_else(|_| unreachable!()),
            owner: o.name().clone(),
            kind,
            content_digest: Digest::of(a.as_bytes()),
        };
        let manifest = JobManifest {
            schema: MANIFEST_SCHEMA,
            name: format!("bench job {i}"),
            mode: JobMode::Attested,
            model: asset("model", &owner, AssetKind::Model),
            data: vec![asset("data", &hospital, AssetKind::Dataset)],
            platform_policy: policy.digest,
            provider: infra.name().clone(),
            workers: [wname.to_string()].into(),
            hyperparameters: Default::default(),
            receivers: vec![owner.name().clone()],
            purpose: Default::default(),
            approvers: Default::default(),
            attestation_interval_s: 3600,
            created_at: now,
            expires_at: now + 7200,
        };
        let job: JobInfo = oc.call("POST", "/v1/jobs", Some(&ProposeJob { manifest }))?;
        for (k, c) in [(&owner, &oc), (&hospital, &hc)] {
            let signature = sign_digest(k.signing_key(), APPROVAL_CONTEXT, &job.id);
            let _: JobInfo =
                c.call("POST", &format!("/v1/jobs/{}/approve", job.id), Some(&ApproveJob { signature }))?;
        }
        let client = anon.with_caller(Caller::Worker { name: wname, token: zeroize::Zeroizing::new(cred) });
        let _: Claimed = client.call::<(), _>("POST", &format!("/v1/jobs/{}/claim", job.id), None)?;
        let mut sim = SimWorker { tpm, log: Vec::new(), client, job: job.id, next_nonce: None };
        for e in &template {
            sim.record(e.clone());
        }
        let first = sim.attest().context("first attestation")?;
        anyhow::ensure!(first.keys.len() == 2, "expected two released keys");
        sims.push(sim);
    }
    println!(
        "setup (enrol, activate, propose, approve, claim, first attestation and release): {:.1} s",
        setup.elapsed().as_secs_f64()
    );

    // Each client thread re-attests its share of workers, round after round, on its own
    // connection.
    let mut shares: Vec<Vec<SimWorker>> = (0..clients).map(|_| Vec::new()).collect();
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
                    for s in &mut share {
                        s.record(Entry::ima_ng(
                            &format!("/var/lib/perun/round-{round}"),
                            "sha256",
                            Digest::of(b"perun worker binary").as_bytes(),
                        ));
                        let t0 = Instant::now();
                        let a = s.attest()?;
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
    for e in &template {
        log.extend_from_slice(&e.to_binary());
        tpm.extend_pcr10(&e.sha256_extend());
    }
    let pol = bench_policy("bench", &ca)?;
    let ek_cert = ca.certify(&tpm)?;
    let ek = perun_attest::tpm::AkPublic::parse_tpmt(tpm.ek_public())?;
    let reps = 2000;
    let t0 = Instant::now();
    for i in 0..reps {
        let qd = Digest::of(&(i as u64).to_be_bytes());
        let (quote, signature, pcrs) = tpm.quote(qd.as_bytes())?;
        let ev = TpmEvidence {
            quote,
            signature,
            pcrs,
            ima_log: log.clone(),
            ima_source: ImaSource::UserSpace,
            event_log: Vec::new(),
        };
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
