//! End to end: inputs as people's tools write them (`tests/data/cases/`, see its
//! PROVENANCE.md), each run through the `perun` binary as a new user would, with the
//! correct values asserted: IMA logs in both forms, a PCR bank extended the pre-5.10 way,
//! a TPM reset between rounds, armored age files, spreadsheet CSVs and safetensors files
//! from other tools.

use std::path::PathBuf;

use crate::common::Scratch;
use perun_attest::ima::{ReplayState, TpmBoot};

fn case(dir: &str, file: &str) -> String {
    let p: PathBuf = [env!("CARGO_MANIFEST_DIR"), "../../tests/data/cases", dir, file].iter().collect();
    p.to_str().unwrap().to_owned()
}

fn stdout_and_stderr(o: &std::process::Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

/// Generates a policy from a log; returns the policy file's bytes and what was printed.
fn policy_from(s: &Scratch, log: &str, ascii: bool, out: &str) -> (Vec<u8>, String) {
    let mut args = vec!["policy", "generate", "--ima-log", log, "--name", "observed", "--out", out];
    if ascii {
        args.push("--ascii");
    }
    let o = s.perun(&args);
    assert!(o.status.success(), "{}", stdout_and_stderr(&o));
    (std::fs::read(s.path(out)).unwrap(), stdout_and_stderr(&o))
}

fn allowed_files(policy: &[u8]) -> serde_json::Value {
    serde_json::from_slice::<serde_json::Value>(policy).unwrap()["allowed_files"].clone()
}

#[test]
fn ascii_logs_with_spaced_paths_and_buffers_give_the_binary_forms_policy() {
    let s = Scratch::new();
    let d = "02-ima-ascii-path-spaces";
    let (bin, said) = policy_from(&s, &case(d, "binary_runtime_measurements"), false, "bin.json");
    let (asc, _) = policy_from(&s, &case(d, "ascii_runtime_measurements"), true, "asc.json");
    assert_eq!(asc, bin, "the two forms of one log must give the same policy");
    assert_eq!(
        allowed_files(&asc),
        serde_json::json!({
            "/opt/my app/bin/run tool": ["sha256:7c9bbe5ec9b3fb774e8fa0f54247e93c34ddf8e5d16fe3073420de0ae81a262d"],
            "/usr/lib/My Files/plugin.so": ["sha256:5e689e2b01672bf33996e75d5e372ff60c536ce1599a1458e867cd8f4bef5160"],
        })
    );
    // A policy from a log alone pins no anchors: it is written, and says it refuses.
    assert!(said.contains("INCOMPLETE") && said.contains("--ek-roots") && said.contains("--worker-binary"), "{said}");

    let d = "04-ima-buf";
    let (bin, _) = policy_from(&s, &case(d, "binary_runtime_measurements"), false, "bin4.json");
    let (asc, _) = policy_from(&s, &case(d, "ascii_runtime_measurements"), true, "asc4.json");
    assert_eq!(asc, bin);
    assert_eq!(
        allowed_files(&asc),
        serde_json::json!({
            "kexec-cmdline": ["sha256:09a46244078202f85071caacdede1310e8851610dee022f05c5c3852ccc0dc48"],
            "/usr/bin/perun": ["sha256:87eba76e7f3164534045ba922e7770fb58bbd14ad732bbf5ba6f11cc56989e6e"],
        })
    );
    // The log replays to its quote; what is refused is the missing anchors only, and
    // the pre-5.8 SHA-1 boot_aggregate is not mistaken for an edited log.
    let o = s.perun(&[
        "attest",
        "verify",
        "--bundle",
        &case(d, "bundle.json"),
        "--policy",
        "bin4.json",
        "--qualifying-data",
        "6e6f6e63652d73746565722d31",
    ]);
    let text = stdout_and_stderr(&o);
    assert!(!o.status.success());
    assert!(text.contains("EK certificate: the policy lists no EK root"), "{text}");
    assert!(!text.contains("does not replay") && !text.contains("template"), "{text}");
}

#[test]
fn a_pcr_bank_extended_the_pre_5_10_way_is_named_as_such() {
    let s = Scratch::new();
    let d = "06-ima-sha1-padded-bank";
    policy_from(&s, &case(d, "ima.log"), false, "p.json");
    let verify = |bundle: &str| {
        let o = s.perun(&[
            "attest",
            "verify",
            "--bundle",
            &case(d, bundle),
            "--policy",
            "p.json",
            "--qualifying-data",
            "6e6f6e63652d73746565722d31",
        ]);
        assert!(!o.status.success());
        stdout_and_stderr(&o)
    };
    let padded = verify("bundle-padded.json");
    assert!(padded.contains("SHA-1 template hashes padded with zeros") && padded.contains("5.10"), "{padded}");
    assert!(!padded.contains("edited"), "{padded}");
    // The control (real SHA-256 extends) replays; it is refused for its anchors only.
    let control = verify("control-bundle.json");
    assert!(!control.contains("padded") && !control.contains("does not replay"), "{control}");
    assert!(control.contains("EK certificate"), "{control}");
}

#[test]
fn quotes_from_two_boots_are_told_apart_by_their_clock_info() {
    let quote_of = |f: &str| {
        let b: serde_json::Value =
            serde_json::from_slice(&std::fs::read(case("08-tpm-reboot-state", f)).unwrap()).unwrap();
        let q = hex::decode(b["evidence"]["quote"].as_str().unwrap()).unwrap();
        perun_attest::tpm::Quote::parse(&q).unwrap()
    };
    let (q1, q2) = (quote_of("round1.json"), quote_of("round2-long.json"));
    assert_eq!((q1.reset_count, q2.reset_count), (7, 8));
    let boot = |q: &perun_attest::tpm::Quote| TpmBoot { reset_count: q.reset_count, restart_count: q.restart_count };
    let state = ReplayState { entries: 4, boot: Some(boot(&q1)), ..ReplayState::default() };
    assert_eq!(perun_attest::evidence::rebooted(&state, boot(&q1)), None);
    let why = perun_attest::evidence::rebooted(&state, boot(&q2)).unwrap();
    assert!(why.contains("rebooted") && why.contains("resetCount 7") && why.contains("resetCount 8"), "{why}");
    // The case's policy is schema 1 (before EK roots and boot references): refused as such.
    let s = Scratch::new();
    let e = s.fails(&[
        "attest",
        "verify",
        "--bundle",
        &case("08-tpm-reboot-state", "round1.json"),
        "--policy",
        &case("08-tpm-reboot-state", "policy.json"),
        "--qualifying-data",
        "6e6f6e63652d73746565722d31",
    ]);
    assert!(e.contains("schema 1"), "{e}");
}

#[test]
fn armored_age_files_open_like_binary_ones() {
    let s = Scratch::new();
    let d = "09-age-armored";
    std::fs::copy(case(d, "key.txt"), s.path("key.txt")).unwrap();
    std::fs::set_permissions(s.path("key.txt"), std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let plain = std::fs::read(case(d, "plain.txt")).unwrap();
    for f in ["binary.age", "armored.age"] {
        let out = format!("{f}.out");
        s.ok(&["unseal", &case(d, f), "--key", "key.txt", "--out", &out]);
        assert_eq!(std::fs::read(s.path(&out)).unwrap(), plain, "{f}");
    }
    // An armored file with one Base64 character changed is refused, and nothing written.
    let mut armored = std::fs::read(case(d, "armored.age")).unwrap();
    let at = armored.len() / 2;
    armored[at] = if armored[at] == b'A' { b'B' } else { b'A' };
    std::fs::write(s.path("edited.age"), armored).unwrap();
    s.fails(&["unseal", "edited.age", "--key", "key.txt", "--out", "edited.out"]);
    assert!(!s.path("edited.out").exists());
}

fn inspect(s: &Scratch, file: &str) -> serde_json::Value {
    serde_json::from_str(&s.ok(&["dataset", "inspect", file, "--json"])).unwrap()
}

#[test]
fn spreadsheet_csvs_import_with_the_right_columns() {
    let s = Scratch::new();
    let bom = case("12-csv-bom", "bom_label_first.csv");
    s.ok(&["dataset", "import", &bom, "--out", "default.st"]);
    s.ok(&["dataset", "import", &bom, "--label", "label", "--out", "explicit.st"]);
    for f in ["default.st", "explicit.st"] {
        let j = inspect(&s, f);
        assert_eq!(j["rows"], 4, "{f}");
        assert_eq!(j["sample_shape"], serde_json::json!([2]));
        assert_eq!(j["feature_names"], serde_json::json!(["height", "weight"]), "{f}");
        assert_eq!(
            j["classes"],
            serde_json::json!([{"index": 0, "name": "0", "count": 2}, {"index": 1, "name": "1", "count": 2}]),
            "{f}"
        );
    }

    let semi = case("14-csv-semicolon-one-column", "semicolon.csv");
    s.ok(&["dataset", "import", &semi, "--out", "s.st"]);
    let j = inspect(&s, "s.st");
    assert_eq!(j["feature_names"], serde_json::json!(["height", "weight"]));
    let one = case("14-csv-semicolon-one-column", "one_column.csv");
    for extra in [&[][..], &["--label", "label"][..]] {
        let e = s.fails(&[&["dataset", "import", &one, "--out", "o.st"][..], extra].concat());
        assert!(e.contains("single column `label`") && e.contains("no feature columns"), "{e}");
        assert!(!s.path("o.st").exists());
    }
}

#[test]
fn semicolon_decimals_are_read_as_numbers() {
    let s = Scratch::new();
    s.ok(&["dataset", "import", &case("14-csv-semicolon-one-column", "semicolon.csv"), "--out", "s.st"]);
    let st = std::fs::read(s.path("s.st")).unwrap();
    let ds = perun_seal::Dataset::from_safetensors(&st).unwrap();
    let text = std::fs::read_to_string(case("14-csv-semicolon-one-column", "semicolon.csv")).unwrap();
    let first: Vec<f32> =
        text.lines().nth(1).unwrap().split(';').take(2).map(|v| v.trim().replace(',', ".").parse().unwrap()).collect();
    assert_eq!(&ds.features[..2], &first[..]);
}

#[test]
fn safetensors_files_from_other_tools_are_refused_by_name_without_a_crash() {
    let s = Scratch::new();
    let d = "17-safetensors-foreign";
    let j = inspect(&s, &case(d, "control_plain.safetensors"));
    assert_eq!(j["rows"], 2);
    assert_eq!(j["classes"][1]["name"], "1");
    for (f, why) in [
        ("a_metadata_number", "metadata `version` is a number"),
        ("b_features_f64", "`features` is F64"),
        ("c_labels_u8", "`labels` is U8"),
        ("d_label_minus100", "label -100 of sample 0 is not a class index"),
        ("e_label_i64max", "label 9223372036854775807 of sample 1"),
        ("f_label_4e9", "label 4000000000 of sample 1"),
    ] {
        // Under a 4 GB address-space limit: a label must not size an allocation.
        let file = case(d, &format!("{f}.safetensors"));
        let o = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!("ulimit -v 4000000; exec \"$0\" dataset inspect '{file}'"))
            .arg(env!("CARGO_BIN_EXE_perun"))
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(1), "{f}: {}", stdout_and_stderr(&o));
        let text = String::from_utf8_lossy(&o.stderr);
        assert!(text.contains(why), "{f}: {text}");
    }
}
