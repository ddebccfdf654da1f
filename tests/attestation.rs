//! End to end: a worker's TPM (an swtpm driven by tpm2-tools) and the user-space IMA
//! measurer produce evidence; `perun-attest` appraises it against platform policies.
//! Each attack is refused with a verdict that names the cause.

use perun_attest::evidence::{appraise, Endorsement, ImaSource, TpmEvidence};
use perun_attest::ima::{ReplayState, TpmBoot};
use perun_attest::policy::PlatformPolicy;
use perun_attest::tpm::AkPublic;
use perun_core::Digest;
use perun_tpm::ima::{ImaLog as _, UserSpaceMeasurer};
use perun_tpm::swtpm::{LocalCa, Swtpm};
use perun_tpm::tools::{KeyAlg, Tpm2Tools};

const PCRS: &str = "0,1,2,3,4,5,6,7,8,9,10";

struct Worker {
    _tpm: Swtpm,
    _dir: tempfile::TempDir,
    measurer: UserSpaceMeasurer<Tpm2Tools>,
    ak: AkPublic,
    ek: AkPublic,
    ek_cert: Vec<u8>,
}

impl Worker {
    /// What enrolment recorded of its TPM.
    fn endorsement(&self) -> Endorsement<'_> {
        Endorsement { ek: &self.ek, certificate: &self.ek_cert, chain: &[] }
    }
}

/// The EK public area and its certificate, read from the TPM (one connection, closed
/// before tpm2-tools connects).
fn ek_of(tpm: &Swtpm) -> (AkPublic, Vec<u8>) {
    let mut t = perun_tpm::device::Tpm::connect(&tpm.tcti(), KeyAlg::Rsa).unwrap();
    (AkPublic::parse(t.ek_public()).unwrap(), t.ek_certificate().unwrap())
}

/// The policy's trust anchors for this process's software TPMs: the local CA that
/// certified them, and their PCRs 0-9 (all zero: no firmware ran).
fn anchor(p: &mut PlatformPolicy) {
    let ca = LocalCa::for_process().unwrap();
    p.ek.trust_development_ca(&ca.root_pem().unwrap(), &ca.issuer_pem().unwrap()).unwrap();
    p.pin_boot_pcrs(&zero_boot_pcrs()).unwrap();
}

fn zero_boot_pcrs() -> perun_attest::tpm::PcrBank {
    perun_attest::tpm::PcrBank {
        hash_alg: perun_attest::tpm::alg::SHA256,
        values: (0..=9).map(|i| (i, vec![0u8; 32])).collect(),
    }
}

fn worker() -> Option<Worker> {
    let tpm = Swtpm::start_or_skip()?;
    let (ek, ek_cert) = ek_of(&tpm);
    let dir = tempfile::tempdir().unwrap();
    let tools = Tpm2Tools::new(&tpm.tcti(), dir.path());
    tools.create_ek(KeyAlg::Rsa).unwrap();
    let ak = AkPublic::parse(&tools.create_ak(KeyAlg::Rsa, "ak").unwrap()).unwrap();
    let boot: Vec<[u8; 32]> =
        tools.pcr_read("0,1,2,3,4,5,6,7,8,9").unwrap().values.values().map(|v| v.clone().try_into().unwrap()).collect();
    let mut measurer = UserSpaceMeasurer::start(tools, &boot).unwrap();
    measurer.measure("/usr/bin/perun", b"the perun worker binary").unwrap();
    measurer.measure("/usr/lib/libtss2-esys.so.0", b"a library").unwrap();
    Some(Worker { _tpm: tpm, _dir: dir, measurer, ak, ek, ek_cert })
}

fn evidence(w: &mut Worker, binding: &Digest) -> TpmEvidence {
    let (quote, signature) = w.measurer.tpm().quote("ak", PCRS, binding.as_bytes()).unwrap();
    let pcrs = w.measurer.tpm().pcr_read(PCRS).unwrap();
    TpmEvidence {
        quote,
        signature,
        pcrs,
        ima_log: w.measurer.read().unwrap(),
        ima_source: ImaSource::UserSpace,
        event_log: Vec::new(),
    }
}

fn binding(nonce: &[u8]) -> Digest {
    Digest::evidence_binding(&Digest::of(b"service"), nonce, &Digest::of(b"job manifest"), b"ephemeral hpke public key")
}

fn policy_for(w: &mut Worker) -> PlatformPolicy {
    let log = w.measurer.read().unwrap();
    let entries: Vec<_> = perun_attest::ima::parse_binary(&log, 0).unwrap().into_iter().map(|(e, _)| e).collect();
    let mut p = PlatformPolicy::from_log("worker", &entries);
    p.worker_binary = Some(format!("sha256:{}", hex::encode(sha2_digest(b"the perun worker binary"))));
    anchor(&mut p);
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
    let ok = appraise(&ev, w.endorsement(), &w.ak, binding(nonce).as_bytes(), &policy, &ReplayState::default());
    assert!(ok.accepted(), "{:?}", ok.failures);
    let state = ok.state.clone().unwrap();
    assert_eq!(state.entries, 4);

    #[track_caller]
    fn why(a: perun_attest::evidence::Appraisal) -> String {
        assert!(!a.accepted() && a.state.is_none(), "accepted: {a:?}");
        a.failures.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ")
    }
    // Wrong nonce, and evidence replayed for another job or key.
    let e =
        why(appraise(&ev, w.endorsement(), &w.ak, binding(b"nonce-2").as_bytes(), &policy, &ReplayState::default()));
    assert!(e.contains("qualifying data"), "{e}");
    // The same evidence replayed in a later round (the service issued a new nonce).
    let e = why(appraise(&ev, w.endorsement(), &w.ak, binding(b"nonce-3").as_bytes(), &policy, &state));
    assert!(e.contains("qualifying data"), "{e}");
    let other_job = Digest::evidence_binding(
        &Digest::of(b"service"),
        nonce,
        &Digest::of(b"another job"),
        b"ephemeral hpke public key",
    );
    let e = why(appraise(&ev, w.endorsement(), &w.ak, other_job.as_bytes(), &policy, &ReplayState::default()));
    assert!(e.contains("qualifying data"), "{e}");
    // Evidence the worker made for another service (a relay that terminated its TLS).
    let relayed = Digest::evidence_binding(
        &Digest::of(b"the relay's certificate"),
        nonce,
        &Digest::of(b"job manifest"),
        b"ephemeral hpke public key",
    );
    let e = why(appraise(&ev, w.endorsement(), &w.ak, relayed.as_bytes(), &policy, &ReplayState::default()));
    assert!(e.contains("qualifying data"), "{e}");
    // A policy that does not opt in to user-space evidence.
    let mut strict = policy.clone();
    strict.accept_user_space_ima = false;
    let e = why(appraise(&ev, w.endorsement(), &w.ak, binding(nonce).as_bytes(), &strict, &ReplayState::default()));
    assert!(e.contains("user-space IMA measurer"), "{e}");
    // PCR values edited.
    let mut edited = ev.clone();
    edited.pcrs.values.insert(0, vec![0x5a; 32]);
    let e = why(appraise(&edited, w.endorsement(), &w.ak, binding(nonce).as_bytes(), &policy, &ReplayState::default()));
    assert!(e.contains("edited"), "{e}");
    // An IMA entry edited or the log cut below the quoted PCR.
    let mut tampered = ev.clone();
    let at = tampered.ima_log.len() - 40;
    tampered.ima_log[at] ^= 1;
    let e =
        why(appraise(&tampered, w.endorsement(), &w.ak, binding(nonce).as_bytes(), &policy, &ReplayState::default()));
    assert!(e.contains("IMA log entry") || e.contains("does not replay"), "{e}");
    let mut cut = ev.clone();
    let keep = perun_attest::ima::parse_binary(&cut.ima_log, 0).unwrap()[2].1;
    cut.ima_log.truncate(keep);
    let e = why(appraise(&cut, w.endorsement(), &w.ak, binding(nonce).as_bytes(), &policy, &ReplayState::default()));
    assert!(e.contains("does not replay"), "{e}");
    // Boot PCR not what the policy requires.
    let mut other_boot = policy.clone();
    other_boot.required_pcrs.insert(0, hex::encode([7u8; 32]));
    let e = why(appraise(&ev, w.endorsement(), &w.ak, binding(nonce).as_bytes(), &other_boot, &ReplayState::default()));
    assert!(e.contains("PCR 0"), "{e}");

    // Continuous attestation: a program the policy does not list runs; the next round,
    // which replays only the new entries, names it.
    w.measurer.measure("/tmp/exfiltrate", b"copies the data set out").unwrap();
    let ev2 = evidence(&mut w, &binding(b"nonce-3"));
    let round2 = appraise(&ev2, w.endorsement(), &w.ak, binding(b"nonce-3").as_bytes(), &policy, &state);
    assert_eq!(round2.new_entries, 1);
    let e = why(round2);
    assert!(e.contains("/tmp/exfiltrate") && e.contains("file not in the policy"), "{e}");
}

#[test]
fn a_quote_from_another_tpm_is_refused() {
    let (Some(mut a), Some(b)) = (worker(), worker()) else { return };
    let policy = policy_for(&mut a);
    let ev = evidence(&mut a, &binding(b"n"));
    let e = appraise(&ev, b.endorsement(), &b.ak, binding(b"n").as_bytes(), &policy, &ReplayState::default());
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
    // A policy must say which TPMs, what booted, and which worker binary proves IMA ran:
    // one from the log alone is written (the allowlist is work to keep) but says that it
    // refuses every worker until it names them, and the offline verifier refuses with it.
    let out = perun(&["policy", "generate", "--ima-log", "ima.log", "--name", "worker", "--out", "bare.json"]);
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{said}");
    assert!(
        said.contains("INCOMPLETE")
            && said.contains("--ek-roots hardware")
            && said.contains("--bundle FILE")
            && said.contains("--worker-binary"),
        "{said}"
    );
    std::fs::write(p("perun.bin"), b"the perun worker binary").unwrap();
    let ca = LocalCa::for_process().unwrap();
    std::fs::write(p("ca.pem"), ca.root_pem().unwrap()).unwrap();
    std::fs::write(p("issuer.pem"), ca.issuer_pem().unwrap()).unwrap();
    let pcrs: std::collections::BTreeMap<u32, String> = (0..=9).map(|i| (i, hex::encode([0u8; 32]))).collect();
    std::fs::write(p("pcrs.json"), serde_json::to_vec(&pcrs).unwrap()).unwrap();
    let base = ["policy", "generate", "--ima-log", "ima.log", "--name", "worker", "--worker-binary", "perun.bin"];
    let out = perun(&[&base[..], &["--ek-ca", "ca.pem", "--out", "no-boot.json"]].concat());
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(said.contains("INCOMPLETE") && said.contains("--bundle FILE") && !said.contains("--ek-roots"), "{said}");
    let out = perun(
        &[
            &base[..],
            &[
                "--ek-ca",
                "ca.pem",
                "--ek-intermediate",
                "issuer.pem",
                "--boot-pcrs",
                "pcrs.json",
                "--out",
                "policy.json",
            ],
        ]
        .concat(),
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("DEVELOPMENT: it trusts EK certificates from a CA outside"));
    let policy: PlatformPolicy = serde_json::from_slice(&std::fs::read(p("policy.json")).unwrap()).unwrap();
    assert!(policy.accept_user_space_ima, "a policy from a user-space log must say so");
    assert!(policy.allowed_files.contains_key("/usr/bin/perun"));

    let bind = binding(b"cli");
    std::fs::write(p("evidence.json"), serde_json::to_vec(&evidence(&mut w, &bind)).unwrap()).unwrap();
    std::fs::copy(w.measurer.tpm().path("ak.pub"), p("ak.pub")).unwrap();
    std::fs::write(p("ek.pub"), &w.ek.tpmt).unwrap();
    std::fs::write(p("ek.der"), &w.ek_cert).unwrap();
    let verify = |qd: &str| {
        perun(&[
            "attest",
            "verify",
            "--evidence",
            "evidence.json",
            "--ak",
            "ak.pub",
            "--ek",
            "ek.pub",
            "--ek-cert",
            "ek.der",
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

#[test]
fn forged_kernel_evidence_from_a_software_tpm_is_refused_by_its_ek_certificate() {
    // Issue 13's attack: root on a host with a software TPM extends PCR 10 from user
    // space with a made-up log (a correct boot_aggregate, the approved binary's path and
    // digest) and sends it as kernel evidence. It meets every other check; only the
    // EK anchor can tell, and does.
    let Some(tpm) = Swtpm::start_or_skip() else { return };
    let (ek, ek_cert) = ek_of(&tpm);
    let dir = tempfile::tempdir().unwrap();
    let mut tools = Tpm2Tools::new(&tpm.tcti(), dir.path());
    tools.create_ek(KeyAlg::Rsa).unwrap();
    let ak = AkPublic::parse(&tools.create_ak(KeyAlg::Rsa, "ak").unwrap()).unwrap();
    let worker_digest = sha2_digest(b"the perun worker binary");
    let forged = [
        perun_attest::ima::Entry::ima_ng("boot_aggregate", "sha256", Digest::of(&[0u8; 320]).as_bytes()),
        perun_attest::ima::Entry::ima_ng("/usr/bin/perun", "sha256", &worker_digest),
    ];
    let mut log = Vec::new();
    for e in &forged {
        use perun_tpm::ima::PcrExtender as _;
        tools.extend_pcr10(&e.sha1_extend(), &e.sha256_extend()).unwrap();
        log.extend_from_slice(&e.to_binary());
    }
    let bind = binding(b"forged");
    let (quote, signature) = tools.quote("ak", PCRS, bind.as_bytes()).unwrap();
    let pcrs = tools.pcr_read(PCRS).unwrap();
    let ev = TpmEvidence { quote, signature, pcrs, ima_log: log, ima_source: ImaSource::Kernel, event_log: Vec::new() };

    let mut policy = PlatformPolicy::from_log("kernel IMA only", &forged);
    policy.worker_binary = Some(format!("sha256:{}", hex::encode(worker_digest)));
    policy.pin_boot_pcrs(&zero_boot_pcrs()).unwrap();
    let endorsement = Endorsement { ek: &ek, certificate: &ek_cert, chain: &[] };

    // A production policy trusts TPM makers' CAs only: refused, by the EK alone.
    policy.ek = perun_attest::ek::EkPolicy::from_bundle(&["hardware"]).unwrap();
    let a = appraise(&ev, endorsement, &ak, bind.as_bytes(), &policy, &ReplayState::default());
    assert!(!a.accepted() && a.state.is_none());
    assert_eq!(a.failures.len(), 1, "{:?}", a.failures);
    assert!(a.failures[0].why.contains("does not chain to a root this policy lists"), "{:?}", a.failures);
    // So is a policy of cloud vTPM roots, and one that lists no root at all.
    policy.ek = perun_attest::ek::EkPolicy::from_bundle(&["cloud"]).unwrap();
    assert!(!appraise(&ev, endorsement, &ak, bind.as_bytes(), &policy, &ReplayState::default()).accepted());
    policy.ek = Default::default();
    let a = appraise(&ev, endorsement, &ak, bind.as_bytes(), &policy, &ReplayState::default());
    assert!(a.failures[0].why.contains("lists no EK root"), "{:?}", a.failures);
    // The same evidence passes where a policy names the software TPM's CA: the EK anchor
    // is what stops it.
    anchor(&mut policy);
    let a = appraise(&ev, endorsement, &ak, bind.as_bytes(), &policy, &ReplayState::default());
    assert!(a.accepted(), "{:?}", a.failures);
    assert_eq!(a.ek.as_ref().unwrap().group, "outside-bundle");
    // Another TPM's certificate for this EK: refused.
    let (_, other_cert) = ek_of(&Swtpm::start().unwrap());
    let stolen = Endorsement { ek: &ek, certificate: &other_cert, chain: &[] };
    let a = appraise(&ev, stolen, &ak, bind.as_bytes(), &policy, &ReplayState::default());
    assert!(a.failures.iter().any(|f| f.why.contains("certifies another key")), "{:?}", a.failures);
}

/// A machine rebooted between two rounds: the TPM is power-cycled (resetCount grows),
/// its PCRs and IMA log start over. The next round of the same job is refused naming
/// the reboot (the worker lost the job's memory), with no replay state to continue; a
/// new job's first round on the new boot is accepted; `perun attest verify --state`
/// says so and verifies the new log from its start.
#[test]
fn a_reboot_between_rounds_is_named_and_ends_the_round() {
    use perun_tpm::device::Tpm;
    let Some(sw) = Swtpm::start_or_skip() else { return };
    let boot_pcrs: Vec<u32> = (0..=9).collect();
    let all_pcrs: Vec<u32> = (0..=10).collect();
    let boot = |tpm: &mut Tpm| -> Vec<[u8; 32]> {
        tpm.pcr_read(&boot_pcrs).unwrap().values.values().map(|v| v.clone().try_into().unwrap()).collect()
    };
    let mut tpm = Tpm::connect(&sw.tcti(), KeyAlg::Rsa).unwrap();
    let ek = AkPublic::parse(tpm.ek_public()).unwrap();
    let ek_cert = tpm.ek_certificate().unwrap();
    let blob = tpm.create_ak(KeyAlg::Rsa).unwrap();
    let ak = AkPublic::parse_tpmt(&blob.public).unwrap();
    let b = boot(&mut tpm);
    let mut m = UserSpaceMeasurer::start(tpm, &b).unwrap();
    m.measure("/usr/bin/perun", b"the perun worker binary").unwrap();
    let round = |m: &mut UserSpaceMeasurer<Tpm>, nonce: &[u8]| {
        let bind = binding(nonce);
        let (quote, signature) = m.tpm().quote(&all_pcrs, bind.as_bytes()).unwrap();
        let pcrs = m.tpm().pcr_read(&all_pcrs).unwrap();
        let ev = TpmEvidence {
            quote,
            signature,
            pcrs,
            ima_log: m.read().unwrap(),
            ima_source: ImaSource::UserSpace,
            event_log: Vec::new(),
        };
        (ev, bind)
    };
    let entries: Vec<_> =
        perun_attest::ima::parse_binary(&m.read().unwrap(), 0).unwrap().into_iter().map(|(e, _)| e).collect();
    let mut policy = PlatformPolicy::from_log("worker", &entries);
    policy.worker_binary = Some(format!("sha256:{}", hex::encode(sha2_digest(b"the perun worker binary"))));
    anchor(&mut policy);
    let endorsement = Endorsement { ek: &ek, certificate: &ek_cert, chain: &[] };

    let (ev1, bind1) = round(&mut m, b"boot-1");
    let first = appraise(&ev1, endorsement, &ak, bind1.as_bytes(), &policy, &ReplayState::default());
    assert!(first.accepted(), "{:?}", first.failures);
    let state = first.state.unwrap();
    let before = state.boot.unwrap();

    // The reboot: power cycle, a new connection and the AK loaded again, a new log.
    drop(m);
    sw.reset().unwrap();
    let mut tpm = Tpm::connect(&sw.tcti(), KeyAlg::Rsa).unwrap();
    tpm.load_ak(&blob).unwrap();
    let b = boot(&mut tpm);
    let mut m = UserSpaceMeasurer::start(tpm, &b).unwrap();
    m.measure("/usr/bin/perun", b"the perun worker binary").unwrap();
    let (ev2, bind2) = round(&mut m, b"boot-2");
    let again = appraise(&ev2, endorsement, &ak, bind2.as_bytes(), &policy, &state);
    assert!(!again.accepted() && again.state.is_none());
    let why: Vec<String> = again.failures.iter().map(ToString::to_string).collect();
    let after = TpmBoot { reset_count: before.reset_count + 1, restart_count: 0 };
    assert_eq!(why.len(), 1, "{why:?}");
    assert!(why[0].contains("rebooted") && why[0].contains(&after.to_string()), "{why:?}");
    let fresh = appraise(&ev2, endorsement, &ak, bind2.as_bytes(), &policy, &ReplayState::default());
    assert!(fresh.accepted(), "{:?}", fresh.failures);
    let fresh_state = fresh.state.unwrap();
    assert_eq!(fresh_state.boot, Some(after));
    // The saved state names the AK that proved it: a quote by another key (another TPM,
    // or a key the worker never activated) cannot continue it.
    let other = m.tpm().create_ak(KeyAlg::Rsa).unwrap();
    let other_ak = AkPublic::parse_tpmt(&other.public).unwrap();
    m.tpm().load_ak(&other).unwrap();
    let (ev3, bind3) = round(&mut m, b"other-key");
    let e = appraise(&ev3, endorsement, &other_ak, bind3.as_bytes(), &policy, &fresh_state);
    let why: Vec<String> = e.failures.iter().map(ToString::to_string).collect();
    assert!(!e.accepted() && why[0].contains("attestation key") && why[0].contains("saved state"), "{why:?}");
    m.tpm().load_ak(&blob).unwrap();

    // The offline verifier with the saved state of boot 1.
    let dir = tempfile::tempdir().unwrap();
    let p = |f: &str| dir.path().join(f);
    std::fs::write(p("policy.json"), serde_json::to_vec(&policy).unwrap()).unwrap();
    std::fs::write(p("state.json"), serde_json::to_vec(&state).unwrap()).unwrap();
    std::fs::write(p("evidence.json"), serde_json::to_vec(&ev2).unwrap()).unwrap();
    std::fs::write(p("ak.pub"), &blob.public).unwrap();
    std::fs::write(p("ek.pub"), &ek.tpmt).unwrap();
    std::fs::write(p("ek.der"), &ek_cert).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_perun"))
        .args(["attest", "verify", "--evidence", "evidence.json", "--ak", "ak.pub", "--ek", "ek.pub"])
        .args(["--ek-cert", "ek.der", "--policy", "policy.json", "--state", "state.json"])
        .args(["--qualifying-data", &bind2.to_hex()])
        .current_dir(dir.path())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        text.contains("the TPM was reset since the saved state") && text.contains("accepted: 3 new IMA entries"),
        "{text}"
    );
    let saved: ReplayState = serde_json::from_slice(&std::fs::read(p("state.json")).unwrap()).unwrap();
    assert_eq!(saved.boot, Some(after));
}
