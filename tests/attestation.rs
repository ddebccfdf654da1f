//! End to end: a worker's TPM (an swtpm driven by tpm2-tools) and the user-space IMA
//! measurer produce evidence; `perun-attest` appraises it against platform policies.
//! Each attack is refused with a verdict that names the cause.

use perun_attest::evidence::{appraise, ImaSource, TpmEvidence};
use perun_attest::ima::ReplayState;
use perun_attest::policy::PlatformPolicy;
use perun_attest::tpm::AkPublic;
use perun_core::Digest;
use perun_tpm::ima::{ImaLog as _, UserSpaceMeasurer};
use perun_tpm::swtpm::Swtpm;
use perun_tpm::tools::{KeyAlg, Tpm2Tools};

const PCRS: &str = "0,1,2,3,4,5,6,7,10";

struct Worker {
    _tpm: Swtpm,
    _dir: tempfile::TempDir,
    measurer: UserSpaceMeasurer<Tpm2Tools>,
    ak: AkPublic,
}

fn worker() -> Option<Worker> {
    let tpm = Swtpm::start_or_skip()?;
    let dir = tempfile::tempdir().unwrap();
    let tools = Tpm2Tools::new(&tpm.tcti(), dir.path());
    tools.create_ek(KeyAlg::Rsa).unwrap();
    let ak = AkPublic::parse(&tools.create_ak(KeyAlg::Rsa, "ak").unwrap()).unwrap();
    let boot: Vec<[u8; 32]> =
        tools.pcr_read("0,1,2,3,4,5,6,7,8,9").unwrap().values.values().map(|v| v.clone().try_into().unwrap()).collect();
    let mut measurer = UserSpaceMeasurer::start(tools, &boot).unwrap();
    measurer.measure("/usr/bin/perun", b"the perun worker binary").unwrap();
    measurer.measure("/usr/lib/libtss2-esys.so.0", b"a library").unwrap();
    Some(Worker { _tpm: tpm, _dir: dir, measurer, ak })
}

fn evidence(w: &mut Worker, binding: &Digest) -> TpmEvidence {
    let (quote, signature) = w.measurer.tpm().quote("ak", PCRS, binding.as_bytes()).unwrap();
    let pcrs = w.measurer.tpm().pcr_read(PCRS).unwrap();
    TpmEvidence { quote, signature, pcrs, ima_log: w.measurer.read().unwrap(), ima_source: ImaSource::UserSpace }
}

fn binding(nonce: &[u8]) -> Digest {
    Digest::evidence_binding(nonce, &Digest::of(b"job manifest"), b"ephemeral hpke public key")
}

fn policy_for(w: &mut Worker) -> PlatformPolicy {
    let log = w.measurer.read().unwrap();
    let entries: Vec<_> = perun_attest::ima::parse_binary(&log, 0).unwrap().into_iter().map(|(e, _)| e).collect();
    let mut p = PlatformPolicy::from_log("worker", &entries);
    p.worker_binary = Some(format!("sha256:{}", hex::encode(sha2_digest(b"the perun worker binary"))));
    let boot = w.measurer.tpm().pcr_read("0").unwrap();
    p.required_pcrs.insert(0, hex::encode(&boot.values[&0]));
    p
}

fn sha2_digest(b: &[u8]) -> [u8; 32] {
    *Digest::of(b).as_bytes()
}

#[test]
fn evidence_is_accepted_then_each_attack_is_refused() {
    let Some(mut w) = worker() else { return };
    let policy = policy_for(&mut w);
    let nonce = b"nonce-1";
    let ev = evidence(&mut w, &binding(nonce));
    let ok = appraise(&ev, &w.ak, binding(nonce).as_bytes(), &policy, &ReplayState::default());
    assert!(ok.accepted(), "{:?}", ok.failures);
    let state = ok.state.clone().unwrap();
    assert_eq!(state.entries, 4);

    #[track_caller]
    fn why(a: perun_attest::evidence::Appraisal) -> String {
        assert!(!a.accepted() && a.state.is_none(), "accepted: {a:?}");
        a.failures.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ")
    }
    // Wrong nonce, and evidence replayed for another job or key.
    let e = why(appraise(&ev, &w.ak, binding(b"nonce-2").as_bytes(), &policy, &ReplayState::default()));
    assert!(e.contains("qualifying data"), "{e}");
    // The same evidence replayed in a later round (the service issued a new nonce).
    let e = why(appraise(&ev, &w.ak, binding(b"nonce-3").as_bytes(), &policy, &state));
    assert!(e.contains("qualifying data"), "{e}");
    let other_job = Digest::evidence_binding(nonce, &Digest::of(b"another job"), b"ephemeral hpke public key");
    let e = why(appraise(&ev, &w.ak, other_job.as_bytes(), &policy, &ReplayState::default()));
    assert!(e.contains("qualifying data"), "{e}");
    // A policy that does not opt in to user-space evidence.
    let mut strict = policy.clone();
    strict.accept_user_space_ima = false;
    let e = why(appraise(&ev, &w.ak, binding(nonce).as_bytes(), &strict, &ReplayState::default()));
    assert!(e.contains("user-space IMA measurer"), "{e}");
    // PCR values edited.
    let mut edited = ev.clone();
    edited.pcrs.values.insert(0, vec![0x5a; 32]);
    let e = why(appraise(&edited, &w.ak, binding(nonce).as_bytes(), &policy, &ReplayState::default()));
    assert!(e.contains("edited"), "{e}");
    // An IMA entry edited or the log cut below the quoted PCR.
    let mut tampered = ev.clone();
    let at = tampered.ima_log.len() - 40;
    tampered.ima_log[at] ^= 1;
    let e = why(appraise(&tampered, &w.ak, binding(nonce).as_bytes(), &policy, &ReplayState::default()));
    assert!(e.contains("IMA log entry") || e.contains("does not replay"), "{e}");
    let mut cut = ev.clone();
    let keep = perun_attest::ima::parse_binary(&cut.ima_log, 0).unwrap()[2].1;
    cut.ima_log.truncate(keep);
    let e = why(appraise(&cut, &w.ak, binding(nonce).as_bytes(), &policy, &ReplayState::default()));
    assert!(e.contains("does not replay"), "{e}");
    // Boot PCR not what the policy requires.
    let mut other_boot = policy.clone();
    other_boot.required_pcrs.insert(0, hex::encode([7u8; 32]));
    let e = why(appraise(&ev, &w.ak, binding(nonce).as_bytes(), &other_boot, &ReplayState::default()));
    assert!(e.contains("PCR 0"), "{e}");

    // Continuous attestation: a program the policy does not list runs; the next round,
    // which replays only the new entries, names it.
    w.measurer.measure("/tmp/exfiltrate", b"copies the data set out").unwrap();
    let ev2 = evidence(&mut w, &binding(b"nonce-3"));
    let round2 = appraise(&ev2, &w.ak, binding(b"nonce-3").as_bytes(), &policy, &state);
    assert_eq!(round2.new_entries, 1);
    let e = why(round2);
    assert!(e.contains("/tmp/exfiltrate") && e.contains("file not in the policy"), "{e}");
}

#[test]
fn a_quote_from_another_tpm_is_refused() {
    let (Some(mut a), Some(b)) = (worker(), worker()) else { return };
    let policy = policy_for(&mut a);
    let ev = evidence(&mut a, &binding(b"n"));
    let e = appraise(&ev, &b.ak, binding(b"n").as_bytes(), &policy, &ReplayState::default());
    assert!(!e.accepted());
    assert!(e.failures[0].why.contains("does not verify"), "{:?}", e.failures);
}

#[test]
fn policy_generate_and_attest_verify_from_the_command_line() {
    let Some(mut w) = worker() else { return };
    let dir = tempfile::tempdir().unwrap();
    let p = |f: &str| dir.path().join(f);
    std::fs::write(p("ima.log"), w.measurer.read().unwrap()).unwrap();
    let perun = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_perun")).args(args).current_dir(dir.path()).output().unwrap()
    };
    let out = perun(&["policy", "generate", "--ima-log", "ima.log", "--name", "worker", "--out", "policy.json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let policy: PlatformPolicy = serde_json::from_slice(&std::fs::read(p("policy.json")).unwrap()).unwrap();
    assert!(policy.accept_user_space_ima, "a policy from a user-space log must say so");
    assert!(policy.allowed_files.contains_key("/usr/bin/perun"));

    let bind = binding(b"cli");
    std::fs::write(p("evidence.json"), serde_json::to_vec(&evidence(&mut w, &bind)).unwrap()).unwrap();
    std::fs::copy(w.measurer.tpm().path("ak.pub"), p("ak.pub")).unwrap();
    let verify = |qd: &str| {
        perun(&[
            "attest",
            "verify",
            "--evidence",
            "evidence.json",
            "--ak",
            "ak.pub",
            "--policy",
            "policy.json",
            "--qualifying-data",
            qd,
            "--state",
            "state.json",
        ])
    };
    let out = verify(&bind.to_hex());
    assert!(out.status.success(), "{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("accepted: 4 new IMA entries"));

    // A program the policy does not list; the saved state makes this round incremental.
    w.measurer.measure("/usr/bin/nc", b"netcat").unwrap();
    let bind = binding(b"cli-2");
    std::fs::write(p("evidence.json"), serde_json::to_vec(&evidence(&mut w, &bind)).unwrap()).unwrap();
    let out = verify(&bind.to_hex());
    assert!(!out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("/usr/bin/nc") && text.contains("file not in the policy"), "{text}");
}
