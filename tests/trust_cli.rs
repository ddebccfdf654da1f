//! The trust service as users run it: `perun serve` in its own process, stakeholders on
//! the command line, a worker on an swtpm. The service is killed with SIGKILL between
//! approval and release and again during continuous attestation, restarted on the same
//! store, and found with every approval, job state and incremental IMA state intact.

use crate::common::{Scratch, Service};
use perun_client::{Caller, Client};
use perun_core::{Digest, Name};
use perun_proto::ApiCode;
use perun_tpm::device::Tpm;
use perun_tpm::swtpm::{LocalCa, Swtpm};
use perun_tpm::tools::KeyAlg;
use perun_worker::{Agent, Platform};

/// `perun job propose` of the MLP on both hospitals' halves, by the model owner; the job id.
fn propose(s: &Scratch, digest_a: &str, digest_b: &str, policy: &str, extra: &[&str]) -> String {
    let (a, b) = (format!("hospital-a/bc-a@{digest_a}"), format!("hospital-b/bc-b@{digest_b}"));
    let mut args = vec!["job", "propose", "--name", "bc-mlp", "--model", "mlp", "--data", &a, "--data", &b];
    args.extend([
        "--policy",
        policy,
        "--receiver",
        "model-owner",
        "--provider",
        "infra",
        "--as",
        "model-owner",
        "--json",
    ]);
    args.extend(extra);
    let out = s.ok(&args);
    serde_json::from_str::<serde_json::Value>(&out).unwrap()["id"].as_str().unwrap().to_owned()
}

/// Creates and registers the four parties with their roles.
fn register_all(s: &Scratch) {
    for (who, roles) in [
        ("hospital-a", "data-owner"),
        ("hospital-b", "data-owner"),
        ("model-owner", "model-owner,receiver"),
        ("infra", "provider"),
    ] {
        s.register_admitted(who, roles);
    }
}

fn line_with<'a>(out: &'a str, needle: &str) -> &'a str {
    out.lines().find(|l| l.contains(needle)).unwrap_or_else(|| panic!("no `{needle}` in:\n{out}"))
}

#[test]
fn stakeholders_on_the_command_line_and_a_service_that_survives_sigkill() {
    let Some(tpm) = Swtpm::start_or_skip() else { return };
    let s = Scratch::new();
    let svc = Service::start(&s, "127.0.0.1:0");

    // Pinning: without the fingerprint nothing is saved; a wrong one is refused.
    let err = s.fails(&["remote", "add", &svc.url]);
    assert!(err.contains(&svc.fingerprint.to_string()), "{err}");
    let err = s.fails(&["remote", "add", &svc.url, "--fingerprint", &Digest::of(b"x").to_string()]);
    assert!(err.contains("refusing"), "{err}");
    s.ok(&["remote", "add", &svc.url, "--fingerprint", &svc.fingerprint.to_string()]);

    register_all(&s);
    let mut digests = Vec::new();
    for (who, asset, kind) in
        [("model-owner", "mlp", "model"), ("hospital-a", "bc-a", "dataset"), ("hospital-b", "bc-b", "dataset")]
    {
        std::fs::write(s.path(asset), format!("plaintext of {asset}")).unwrap();
        let sealed = format!("{asset}.sealed");
        let key = format!("{asset}.key");
        s.ok(&["seal", asset, "--kind", kind, "--owner", who, "--out", &sealed, "--key-out", &key]);
        let out =
            s.ok(&["asset", "register", "--name", asset, "--sealed", &sealed, "--key", &key, "--as", who, "--json"]);
        let info: serde_json::Value = serde_json::from_str(&out).unwrap();
        digests.push(info["content_digest"].as_str().unwrap().to_owned());
        std::fs::remove_file(s.path(asset)).unwrap();
    }
    // Another's asset is not shown.
    let err = s.fails(&["asset", "list", "--as", "nobody"]);
    assert!(err.contains("perun id new nobody"), "{err}");

    // The worker's platform, its policy, and its enrolment from an EK file.
    let t = Tpm::connect(&tpm.tcti(), KeyAlg::Rsa).unwrap();
    let mut platform = Platform::user_space(t).unwrap();
    let mut policy = platform.development_policy("dev worker", &LocalCa::for_process().unwrap()).unwrap();
    policy.allowed_digests.insert(format!("sha256:{}", hex::encode(Digest::of(b"round").as_bytes())));
    std::fs::write(s.path("policy.json"), serde_json::to_vec(&policy).unwrap()).unwrap();
    let err = s.fails(&["policy", "add", "policy.json", "--as", "hospital-a"]);
    assert!(err.contains("publishing a policy is for a provider"), "{err}");
    let out = s.ok(&["policy", "add", "policy.json", "--as", "infra", "--json"]);
    let policy_digest = serde_json::from_str::<serde_json::Value>(&out).unwrap()["digest"].as_str().unwrap().to_owned();
    std::fs::write(s.path("ek.pub"), platform.tpm().ek_public()).unwrap();
    let err = s.fails(&["worker", "enrol", "--name", "gpu-1", "--ek", "ek.pub", "--as", "infra"]);
    assert!(err.contains("--ek-cert"), "{err}");
    std::fs::write(s.path("ek.der"), platform.tpm().ek_certificate().unwrap()).unwrap();
    let out = s.ok(&["worker", "enrol", "--name", "gpu-1", "--ek", "ek.pub", "--ek-cert", "ek.der", "--as", "infra"]);
    assert!(out.contains("certified by CN=swtpm-localca"), "{out}");
    assert!(out.contains("note: no CA of the shipped"), "{out}");

    // Proposal; approvers see the whole policy, flagged as development, and sign it
    // only when they say they accept that.
    let job: Digest = propose(&s, &digests[1], &digests[2], &policy_digest, &[]).parse().unwrap();
    let job_s = job.to_string();
    let shown = s.ok(&["job", "show", &job_s, "--as", "hospital-a"]);
    for needle in [
        "provider:  infra",
        "EK roots",
        "boot PCRs",
        "IMA allowlist",
        "worker binary",
        "!!! DEVELOPMENT",
        "attests every 5 s",
    ] {
        assert!(shown.contains(needle), "`{needle}` not in:\n{shown}");
    }
    let err = s.fails(&["job", "approve", &job_s, "--as", "hospital-a"]);
    assert!(err.contains("DEVELOPMENT") && err.contains("--allow-development"), "{err}");
    s.ok(&["job", "approve", &job_s, "--allow-development", "--as", "hospital-a"]);
    s.ok(&["job", "approve", &job_s, "--allow-development", "--as", "hospital-b"]);

    // SIGKILL between approval and release; restart on the same store.
    let addr = svc.kill();
    let svc = Service::start(&s, &addr);
    let shown = s.ok(&["job", "show", &job_s, "--as", "hospital-b"]);
    assert!(line_with(&shown, "state:").contains("proposed"), "{shown}");
    assert!(line_with(&shown, "approved:").contains("hospital-a, hospital-b"), "{shown}");
    assert!(line_with(&shown, "missing:").contains("model-owner"), "{shown}");
    let out = s.ok(&["job", "approve", &job_s, "--allow-development", "--as", "model-owner"]);
    assert!(out.contains("now ready"), "{out}");

    // The worker enrols, claims, attests (keys released), attests again.
    let anon = Client::new(&svc.url, svc.fingerprint, Caller::Anonymous).unwrap();
    let mut agent = Agent::enrol(&anon, Name::new("gpu-1").unwrap(), platform, KeyAlg::Rsa).unwrap();
    let claimed = agent.claim(&job).unwrap();
    let (_, first) = agent.attest(&job, &claimed.nonce).unwrap();
    assert_eq!(first.keys.len(), 3);
    agent.platform().measure("/opt/round-1", b"round").unwrap();
    let nonce = agent.nonce(&job).unwrap();
    let (_, second) = agent.attest(&job, &nonce).unwrap();
    assert_eq!(second.new_entries, 1);

    // SIGKILL during continuous attestation; the restarted service goes on from the
    // saved IMA state (one new entry, not the whole log) and releases nothing again.
    let addr = svc.kill();
    let svc = Service::start(&s, &addr);
    agent.reconnect(&Client::new(&svc.url, svc.fingerprint, Caller::Anonymous).unwrap());
    agent.platform().measure("/opt/round-2", b"round").unwrap();
    let nonce = agent.nonce(&job).unwrap();
    let (_, third) = agent.attest(&job, &nonce).unwrap();
    assert_eq!(third.new_entries, 1, "the incremental IMA state was lost");
    assert!(third.keys.is_empty(), "keys were released twice");

    let status = s.ok(&["job", "show", &job_s, "--as", "hospital-a"]);
    assert!(line_with(&status, "state:").contains("running"), "{status}");
    let audit = s.ok(&["audit", "verify", "--as", "hospital-a"]);
    assert!(audit.contains("audit chain verified"), "{audit}");
    assert_eq!(audit.matches("KeyReleased").count(), 3, "{audit}");
    assert_eq!(audit.matches("AttestationAccepted").count(), 3, "{audit}");

    // Whoever holds the host deletes the last records from the store: the chain that is
    // left verifies on its own, but not against the checkpoint hospital-a kept.
    let addr = svc.kill();
    let db = rusqlite::Connection::open(s.path("trust/perun.db")).unwrap();
    // First the host drops hospital-a from the parties of a record it was shown (the
    // release of its key, by the service): the record keeps its hash and signature, but
    // is hidden from hospital-a now.
    let seq: i64 = db
        .query_row(
            "SELECT MIN(seq) FROM audit WHERE CAST(body AS TEXT) LIKE '%\"actor\":\"service\"%\"parties\":[\"hospital-a\",%'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    let edit = |from: &str, to: &str| {
        let sql = "UPDATE audit SET body = CAST(replace(CAST(body AS TEXT), ?1, ?2) AS BLOB) WHERE seq = ?3";
        assert_eq!(db.execute(sql, rusqlite::params![from, to, seq]).unwrap(), 1);
    };
    edit("\"parties\":[\"hospital-a\",", "\"parties\":[");
    let svc = Service::start(&s, &addr);
    let err = s.fails(&["audit", "verify", "--as", "hospital-a"]);
    assert!(err.contains(&format!("audit record {seq}")) && err.contains("hidden from you"), "{err}");
    let addr = svc.kill();
    edit("\"parties\":[", "\"parties\":[\"hospital-a\",");
    // Then the host deletes the last records.
    let cut = db.execute("DELETE FROM audit WHERE seq > (SELECT MAX(seq) - 2 FROM audit)", []).unwrap();
    assert_eq!(cut, 2);
    drop(db);
    let svc = Service::start(&s, &addr);
    let err = s.fails(&["audit", "verify", "--as", "hospital-a"]);
    assert!(err.contains("the audit log was cut"), "{err}");
    let _ = svc.kill();

    // No plaintext of any sealed asset in any file the service or the users wrote.
    for f in s.files() {
        let bytes = std::fs::read(&f).unwrap();
        for asset in ["mlp", "bc-a", "bc-b"] {
            let needle = format!("plaintext of {asset}");
            assert!(!bytes.windows(needle.len()).any(|w| w == needle.as_bytes()), "{} holds {asset}", f.display());
        }
    }
}

#[test]
fn a_worker_on_the_command_line_runs_an_approved_job_and_only_the_receiver_opens_the_model() {
    let Some(tpm) = Swtpm::start_or_skip() else { return };
    let s = Scratch::new();
    let svc = Service::start(&s, "127.0.0.1:0");
    s.ok(&["remote", "add", &svc.url, "--fingerprint", &svc.fingerprint.to_string()]);
    register_all(&s);

    // Two hospitals' halves and a held-out set, the model spec; sealed and registered.
    let csv = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/datasets/breast_cancer_wisconsin.csv");
    let full = perun_seal::dataset::import_csv(&std::fs::read(csv).unwrap(), "diagnosis").unwrap();
    let parts = full.split(&[40.0, 40.0, 20.0], 7).unwrap();
    parts[0].write_file(&s.path("a.safetensors")).unwrap();
    parts[1].write_file(&s.path("b.safetensors")).unwrap();
    parts[2].write_file(&s.path("test.safetensors")).unwrap();
    let spec = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/models/breast-cancer-mlp.json");
    std::fs::copy(spec, s.path("mlp.json")).unwrap();
    let mut digest = std::collections::BTreeMap::new();
    for (who, asset, file, kind) in [
        ("hospital-a", "bc-a", "a.safetensors", "dataset"),
        ("hospital-b", "bc-b", "b.safetensors", "dataset"),
        ("model-owner", "mlp", "mlp.json", "model"),
    ] {
        let (sealed, key) = (format!("{asset}.sealed"), format!("{asset}.key"));
        s.ok(&["seal", file, "--kind", kind, "--owner", who, "--out", &sealed, "--key-out", &key]);
        let out =
            s.ok(&["asset", "register", "--name", asset, "--sealed", &sealed, "--key", &key, "--as", who, "--json"]);
        let info: serde_json::Value = serde_json::from_str(&out).unwrap();
        digest.insert(asset, info["content_digest"].as_str().unwrap().to_owned());
    }

    // The policy: what `perun worker run` on this swtpm measures (boot aggregate, the
    // user-space marker, the perun binary itself).
    let exe = std::fs::canonicalize(env!("CARGO_BIN_EXE_perun")).unwrap();
    let exe_digest = Digest::of(&std::fs::read(&exe).unwrap());
    let boot = {
        let mut t = Tpm::connect(&tpm.tcti(), KeyAlg::Rsa).unwrap();
        let bank = t.pcr_read(&[0, 1, 2, 3, 4, 5, 6, 7, 8, 9]).unwrap();
        let mut all = Vec::new();
        for v in bank.values.values() {
            all.extend_from_slice(v);
        }
        Digest::of(&all)
    };
    let entries = [
        perun_attest::ima::Entry::ima_ng("boot_aggregate", "sha256", boot.as_bytes()),
        perun_attest::ima::Entry::ima_ng(perun_attest::policy::USER_SPACE_MARKER, "sha256", &[0; 32]),
        perun_attest::ima::Entry::ima_ng(&exe.to_string_lossy(), "sha256", exe_digest.as_bytes()),
    ];
    let mut policy = perun_attest::policy::PlatformPolicy::from_log("cli worker", &entries);
    policy.worker_binary = Some(exe_digest.to_string());
    policy.accept_user_space_ima = true;
    let ca = LocalCa::for_process().unwrap();
    policy.ek.trust_development_ca(&ca.root_pem().unwrap(), &ca.issuer_pem().unwrap()).unwrap();
    {
        let mut t = Tpm::connect(&tpm.tcti(), KeyAlg::Rsa).unwrap();
        policy.pin_boot_pcrs(&t.pcr_read(&[0, 1, 2, 3, 4, 5, 6, 7, 8, 9]).unwrap()).unwrap();
    }
    std::fs::write(s.path("policy.json"), serde_json::to_vec(&policy).unwrap()).unwrap();
    let out = s.ok(&["policy", "add", "policy.json", "--as", "infra", "--json"]);
    let policy_digest = serde_json::from_str::<serde_json::Value>(&out).unwrap()["digest"].as_str().unwrap().to_owned();
    s.ok(&["worker", "enrol", "--name", "gpu-1", "--tcti", &tpm.tcti(), "--as", "infra"]);

    let job = propose(&s, &digest["bc-a"], &digest["bc-b"], &policy_digest, &["--interval", "2"]);
    for who in ["model-owner", "hospital-a", "hospital-b"] {
        s.ok(&["job", "approve", &job, "--allow-development", "--as", who]);
    }

    let out = s.ok(&[
        "worker",
        "run",
        "--name",
        "gpu-1",
        "--tcti",
        &tpm.tcti(),
        "--ima",
        "user-space",
        "--out",
        "outputs",
        "--once",
    ]);
    assert!(out.contains(&format!("job {job} finished")), "{out}");
    let status = s.ok(&["job", "status", &job, "--as", "hospital-a"]);
    assert!(status.contains("epoch  40") && status.contains("state: finished"), "{status}");
    let shown = s.ok(&["job", "show", &job, "--as", "model-owner"]);
    let output = line_with(&shown, "output:").rsplit(' ').next().unwrap().to_owned();

    // Only the receiver opens the model; it evaluates it on the held-out set.
    let err = s.fails(&["unseal", &output, "--key", "home/identities/hospital-a/age.key"]);
    assert!(err.contains("wrong key"), "{err}");
    s.ok(&["unseal", &output, "--key", "home/identities/model-owner/age.key", "--out", "model.safetensors"]);
    let eval =
        s.ok(&["eval", "--spec", "mlp.json", "--weights", "model.safetensors", "--data", "test.safetensors", "--json"]);
    let acc = serde_json::from_str::<serde_json::Value>(&eval).unwrap()["accuracy"].as_f64().unwrap();
    assert!(acc >= 0.95, "accuracy {acc}");
    let _ = svc.kill();
}

/// Anonymous and unauthenticated bodies cost the service no memory beyond their route's
/// limit: eight concurrent 59 MiB bodies to the anonymous TEE evidence route (for no
/// job), to the TPM evidence route (no worker token) and to the policy route (unsigned)
/// are answered without being held, and the service's peak memory barely moves.
#[test]
fn large_anonymous_bodies_are_refused_before_they_are_read() {
    let s = Scratch::new();
    let svc = Service::start_env(&s, "127.0.0.1:0", &[("PERUN_METRICS_TOKEN", "a-scraper-token-0123456789")]);
    let anon = Client::new(&svc.url, svc.fingerprint, Caller::Anonymous).unwrap();
    let _: serde_json::Value = anon.call::<(), _>("GET", "/v1/health", None).unwrap();
    let before = svc.peak_rss_kib();
    let job = Digest::of(b"no such job");
    let routes =
        [format!("/v1/enclave/jobs/{job}/attest"), format!("/v1/jobs/{job}/attest"), "/v1/policies".to_owned()];
    for route in &routes {
        std::thread::scope(|scope| {
            for _ in 0..8 {
                let (anon, route) = (&anon, route.as_str());
                scope.spawn(move || {
                    let body = vec![b' '; 59 << 20];
                    let r: Result<serde_json::Value, _> = anon.call_raw("POST", route, body);
                    // Refused (or the connection closed on the unread body): never accepted.
                    assert!(r.is_err(), "{route}: {r:?}");
                });
            }
        });
    }
    let grown_mib = svc.peak_rss_kib().saturating_sub(before) / 1024;
    println!("peak memory grew by {grown_mib} MiB over 24 bodies of 59 MiB");
    assert!(grown_mib < 100, "the service held the bodies: its peak memory grew by {grown_mib} MiB");
    // A connection that sends nothing is closed after the handshake timeout (10 s), so
    // idle connections cannot pile up; the store is the service user's alone.
    let mut idle = std::net::TcpStream::connect(svc.url.trim_start_matches("https://")).unwrap();
    idle.set_read_timeout(Some(std::time::Duration::from_secs(20))).unwrap();
    let started = std::time::Instant::now();
    let mut buf = [0u8; 16];
    let n = std::io::Read::read(&mut idle, &mut buf).unwrap_or(0);
    assert_eq!(n, 0, "the service sent something to a silent client");
    assert!(started.elapsed() < std::time::Duration::from_secs(15), "idle connection kept {:?}", started.elapsed());
    use std::os::unix::fs::PermissionsExt as _;
    for f in ["trust/perun.db", "trust/keys"] {
        let mode = std::fs::metadata(s.path(f)).unwrap().permissions().mode() & 0o077;
        assert_eq!(mode, 0, "{f} is readable by others");
    }
    // The service is still there, and /metrics answers only to the scraper's token.
    let _: serde_json::Value = anon.call::<(), _>("GET", "/v1/health", None).unwrap();
    let r: Result<serde_json::Value, _> = anon.call::<(), _>("GET", "/metrics", None);
    assert!(matches!(r, Err(perun_client::ClientError::Api { code: ApiCode::Unauthenticated, .. })), "{r:?}");
    let _ = svc.kill();
}
