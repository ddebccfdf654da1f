//! `perun demo` end to end: every step of the mission happens, the attack is refused,
//! the audit chain verifies, and no plaintext of a sealed asset or key is left anywhere
//! it should not be.

use crate::common::Scratch;
use perun_seal::dataset;

fn line_with<'a>(out: &'a str, needle: &str) -> &'a str {
    out.lines().find(|l| l.contains(needle)).unwrap_or_else(|| panic!("no `{needle}` in:\n{out}"))
}

#[test]
fn the_demo_plays_every_act_and_leaves_no_plaintext_behind() {
    if perun_tpm::swtpm::Swtpm::start_or_skip().is_none() {
        return;
    }
    let s = Scratch::new();
    // Every component logs at debug level: nothing secret may show even then.
    let out = s.perun_env(&["demo", "--keep", "demo"], &[("PERUN_LOG", "debug")]);
    let stdout = String::from_utf8(out.stdout).unwrap();
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(out.status.success(), "demo failed:\n{stdout}\n{stderr}");

    // Acts 1 to 4: registration, sealing, enrolment, approvals.
    assert_eq!(stdout.matches("registered, fingerprint").count(), 4, "{stdout}");
    assert_eq!(stdout.matches("key registered wrapped to the service").count(), 3, "{stdout}");
    assert!(stdout.contains("proved its AK lives in that TPM"));
    assert!(line_with(&stdout, "hospital-b   approved").contains("job is ready"));
    // Act 5: release and training.
    assert!(stdout.contains("keys released for mlp, bc-a, bc-b"), "{stdout}");
    assert_eq!(stdout.matches("digest matches the manifest").count(), 3, "{stdout}");
    assert!(stdout.contains("state finished"), "{stdout}");
    // Act 6: the model owner's accuracy; nobody else opens the model.
    let acc = line_with(&stdout, "held-out samples:");
    let pct: f64 = acc.rsplit(' ').next().unwrap().trim_end_matches('%').parse().unwrap();
    // Trained with DP-SGD at epsilon 3 (its noise is fresh each run): well above the
    // majority class's 63%; `perun bench dp` measures the accuracy DP costs.
    assert!(pct >= 70.0, "{acc}");
    assert!(stdout.contains("noise multiplier") && stdout.contains("epsilon 3.000 spent"), "{stdout}");
    // hospital-a's review: nothing reaches the model owner before it; the receipt binds
    // the model, and the model changed by a byte is refused.
    assert!(line_with(&stdout, "before the review").contains("refused"), "{stdout}");
    assert!(line_with(&stdout, "hospital-a releases it").contains("review released"), "{stdout}");
    assert!(line_with(&stdout, "receipt verified offline").contains("is its subject"), "{stdout}");
    assert!(line_with(&stdout, "one byte changed").contains("refused"), "{stdout}");
    // The budget: two jobs charged, a third refused naming the term.
    assert!(line_with(&stdout, "ledger:").contains("2 jobs released, epsilon 6.0 spent"), "{stdout}");
    assert!(line_with(&stdout, "third job").contains("`privacy.total_epsilon`"), "{stdout}");
    assert_eq!(stdout.matches("tries to open the model: refused").count(), 2, "{stdout}");
    // Act 3: the development anchors are said on screen.
    assert!(line_with(&stdout, "DEVELOPMENT: it trusts EK certificates").contains("outside the shipped"), "{stdout}");
    assert!(stdout.contains("swtpm-localca"), "{stdout}");
    // Act 7a: a forged worker: not enrolled by a non-provider, its claim refused by the
    // EK anchor, the job untouched.
    assert!(line_with(&stdout, "tries to enrol its own software TPM").contains("is for a provider"), "{stdout}");
    assert!(
        line_with(&stdout, "rogue-1 claims job").contains("does not chain to a root this policy lists"),
        "{stdout}"
    );
    assert!(stdout.contains("the job is still ready, no key released"), "{stdout}");
    // Act 7: the unapproved program revokes the second job; nothing is delivered.
    assert!(line_with(&stdout, "is revoked:").contains("/tmp/exfiltrate"), "{stdout}");
    assert!(line_with(&stdout, "asks to go on").contains("refused"), "{stdout}");
    let outputs: Vec<_> = std::fs::read_dir(s.path("demo/worker/outputs")).unwrap().collect();
    assert_eq!(outputs.len(), 1, "only the first job may deliver a model");
    // Act 8: the trained model served in the sim TEE; the clinic's production policy
    // refuses sim evidence, the demo policy names it; private predictions agree.
    assert!(line_with(&stdout, "hospital-b   approved  -> serving job").contains("ready"), "{stdout}");
    assert!(line_with(&stdout, "enclave tee-1:").contains("Sim report accepted"), "{stdout}");
    assert!(line_with(&stdout, "production policy").contains("refused"), "{stdout}");
    assert!(line_with(&stdout, "production policy").contains("does not name that key"), "{stdout}");
    let served = line_with(&stdout, "private predictions in");
    let pct: f64 = served.rsplit('(').next().unwrap().trim_end_matches(")").trim_end_matches('%').parse().unwrap();
    assert!(pct >= 70.0, "{served}");
    assert!(line_with(&stdout, "own copy gives").contains("the same"), "{stdout}");
    assert!(stdout.contains("serving job finished"), "{stdout}");
    // Act 9: the audit chain verifies for every party; the provider, a party of the jobs
    // its workers run, sees their verdicts as the hospitals do.
    assert_eq!(stdout.matches("records verified").count(), 4, "{stdout}");
    let infra = line_with(&stdout, "  infra        chain");
    assert_eq!(infra.split('(').nth(1), line_with(&stdout, "  hospital-a   chain").split('(').nth(1), "{stdout}");
    assert!(line_with(&stdout, "why job 2 was revoked").contains("/tmp/exfiltrate"));

    // No plaintext: the hospitals' data (rebuilt here the same way) appears in no file,
    // and no log line carries a key.
    let csv =
        std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/datasets/breast_cancer_wisconsin.csv"))
            .unwrap();
    let full = dataset::import_csv(&csv, "diagnosis").unwrap();
    let parts = full.split(&[40.0, 40.0, 20.0], 7).unwrap();
    let mut needles = Vec::new();
    for p in &parts[..2] {
        let plain = p.to_safetensors().unwrap();
        needles.push(plain[plain.len() / 2..plain.len() / 2 + 64].to_vec());
        needles.push(plain[plain.len() - 64..].to_vec());
    }
    // Positive control: the needles are in hospital-a's asset once opened with its key.
    let key = perun_seal::AssetKey::load(&s.path("demo/home/identities/hospital-a/assets/bc-a.key")).unwrap();
    let (_, plain) = perun_seal::open_file(&s.path("demo/hospital-a/bc-a.sealed"), key.identity(), None).unwrap();
    assert!(plain.windows(64).any(|w| w == &needles[0][..]), "the control needle must be in the opened asset");
    for f in s.files() {
        let bytes = std::fs::read(&f).unwrap();
        for n in &needles {
            assert!(!bytes.windows(n.len()).any(|w| w == &n[..]), "{} holds plaintext data", f.display());
        }
        if bytes.windows(16).any(|w| w == b"AGE-SECRET-KEY-1") {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&f).unwrap().permissions().mode();
            assert_eq!(mode & 0o077, 0, "{} holds a key and is readable by others", f.display());
            let p = f.to_string_lossy();
            assert!(p.contains("/identities/") || p.contains("/trust/keys/"), "a key outside the key folders: {p}");
        }
    }
    assert!(stderr.contains("attestation accepted"), "the service's logs must be in the output");
    for log in [&stdout, &stderr] {
        assert!(!log.contains("AGE-SECRET-KEY"), "a key in the output");
        for n in &needles {
            assert!(!log.contains(&hex::encode(n)), "plaintext data in the output");
        }
    }
}
