//! `tee` mode as users run it, every party a `perun` process: the model owner trains
//! locally and seals the trained model, writes a TEE policy naming a sim TEE key and
//! publishes it, proposes a serving job that a hospital must co-approve; the enclave
//! (`perun enclave serve`, sim TEE) claims it; the job's receiver (`perun predict
//! --remote --job J --as model-owner`) gets predictions under that policy, and is refused
//! under a policy that does not name the sim key. Nobody else is answered: not the host's
//! operator, not an approver, and `perun predict` names no job for you. Nothing the
//! receiver sends or receives is readable on the wire.

use std::io::{BufRead as _, BufReader};
use std::process::{Command, Stdio};

use crate::common::{Scratch, Service};

fn line_with<'a>(out: &'a str, needle: &str) -> &'a str {
    out.lines().find(|l| l.contains(needle)).unwrap_or_else(|| panic!("no `{needle}` in:\n{out}"))
}

#[test]
fn a_clinic_gets_private_predictions_from_an_enclave_its_policy_accepts() {
    let s = Scratch::new();
    let svc = Service::start(&s, "127.0.0.1:0");
    s.ok(&["remote", "add", &svc.url, "--fingerprint", &svc.fingerprint.to_string()]);
    for (who, roles) in
        [("model-owner", "model-owner,receiver"), ("hospital-a", "data-owner"), ("tee-host", "provider")]
    {
        s.register_admitted(who, roles);
    }

    // The model owner trains on its side and seals the trained model (weights carrying
    // their spec) as a model asset.
    let csv =
        std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/datasets/breast_cancer_wisconsin.csv"))
            .unwrap();
    let full = perun_seal::dataset::import_csv(&csv, "diagnosis").unwrap();
    full.split(&[80.0, 20.0], 1).unwrap()[0].write_file(&s.path("train.safetensors")).unwrap();
    let spec = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/models/breast-cancer-mlp.json");
    s.ok(&["train", "--spec", spec, "--data", "train.safetensors", "--out", "trained.safetensors", "--epochs", "20"]);
    s.ok(&[
        "seal",
        "trained.safetensors",
        "--kind",
        "model",
        "--owner",
        "model-owner",
        "--out",
        "trained.sealed",
        "--key-out",
        "trained.key",
    ]);
    let out = s.ok(&[
        "asset",
        "register",
        "--name",
        "mlp-trained",
        "--sealed",
        "trained.sealed",
        "--key",
        "trained.key",
        "--as",
        "model-owner",
        "--json",
    ]);
    assert!(out.contains("mlp-trained"), "{out}");

    // The sim TEE's key, and a policy that names it (and one that does not).
    let keyinfo = s.ok(&["enclave", "sim-key", "--out", "sim.key"]);
    let public = line_with(&keyinfo, "public key").split_whitespace().last().unwrap().to_owned();
    let measurement = line_with(&keyinfo, "measurement").split_whitespace().nth(1).unwrap().to_owned();
    let m = format!("measurement={measurement}");
    s.ok(&[
        "policy",
        "tee",
        "--name",
        "dev",
        "--kind",
        "sim",
        "--measurement",
        &m,
        "--sim-key",
        &public,
        "--out",
        "dev.json",
    ]);
    s.ok(&["policy", "tee", "--name", "production", "--kind", "sim", "--measurement", &m, "--out", "production.json"]);
    let bad = s.fails(&[
        "policy",
        "tee",
        "--name",
        "x",
        "--kind",
        "sgx",
        "--measurement",
        "mr_enclave=zz",
        "--out",
        "x.json",
    ]);
    assert!(bad.contains("not a hex value"), "{bad}");
    // The second attack of issue 13: the model owner publishes a sim policy of its own.
    let err = s.fails(&["policy", "add", "dev.json", "--as", "model-owner"]);
    assert!(err.contains("publishing a policy is for a provider"), "{err}");
    let added = s.ok(&["policy", "add", "dev.json", "--as", "tee-host"]);
    let policy = added.split_whitespace().last().unwrap().to_owned();

    // A serving job needs no data; the hospital's approval is required by name. A tee
    // job under a platform policy, or an attested job under a TEE policy, is refused.
    let wrong = s.fails(&[
        "job",
        "propose",
        "--name",
        "x",
        "--model",
        "mlp-trained",
        "--serve",
        "--policy",
        &policy,
        "--receiver",
        "model-owner",
        "--provider",
        "tee-host",
        "--as",
        "model-owner",
    ]);
    assert!(wrong.contains("is for `tee` jobs"), "{wrong}");
    let job = propose_serving(&s, "serve bc", &policy, &["--approver", "hospital-a", "--interval", "2"]);
    // Approvers see the sim TEE in words they cannot miss, and do not sign it by accident.
    let shown = s.ok(&["job", "show", &job, "--as", "hospital-a"]);
    assert!(shown.contains("!!! DEVELOPMENT: it accepts the `sim` TEE"), "{shown}");
    assert!(shown.contains("sim TEE key") && shown.contains(&public), "{shown}");
    let err = s.fails(&["job", "approve", &job, "--as", "hospital-a"]);
    assert!(err.contains("not signing") && err.contains("sim"), "{err}");
    s.ok(&["job", "approve", &job, "--allow-development", "--as", "model-owner"]);
    let serve_args = [
        "enclave",
        "serve",
        "--job",
        &job,
        "--name",
        "tee-1",
        "--tee",
        "sim",
        "--sim-key",
        "sim.key",
        "--listen",
        "127.0.0.1:0",
    ];
    let early = s.fails(&serve_args);
    assert!(early.contains("not approved"), "{early}");
    s.ok(&["job", "approve", &job, "--allow-development", "--as", "hospital-a"]);

    // The enclave.
    let (mut enclave, url) = spawn_enclave(&s, &serve_args);

    // The receiver: rows with their labels, predicted privately.
    let rows: Vec<&str> = std::str::from_utf8(&csv).unwrap().lines().take(101).collect();
    std::fs::write(s.path("rows.csv"), rows.join("\n")).unwrap();
    let predict = |policy: &str, who: &str| {
        s.perun(&[
            "predict",
            "--remote",
            &url,
            "--policy",
            policy,
            "--job",
            &job,
            "--as",
            who,
            "--input",
            "rows.csv",
            "--label",
            "diagnosis",
            "--batch",
            "32",
        ])
    };
    let out = predict("production.json", "model-owner");
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("does not name that key"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Issue 14, finding 8: `perun predict` takes no job on the enclave's word...
    let err =
        s.fails(&["predict", "--remote", &url, "--policy", "dev.json", "--as", "model-owner", "--input", "rows.csv"]);
    assert!(err.contains("--job"), "{err}");
    let help = s.ok(&["predict", "--help"]);
    assert!(help.contains("perun job list") && help.contains("--as"), "{help}");
    // ... and the enclave answers only the job's receivers: not the host's operator, not
    // the approving hospital (both registered stakeholders), nor an identity never made.
    for who in ["tee-host", "hospital-a"] {
        let out = predict("dev.json", who);
        let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(!out.status.success(), "{stdout}");
        assert!(
            stderr.contains("the enclave refused the request")
                && stderr.contains(&format!("`{who}` is not a receiver of job")),
            "{stderr}"
        );
        assert!(!stdout.contains("row,class"), "{stdout}");
    }
    // The identity's key is read from the Perun home: $PERUN_HOME, or `--home`.
    let base = ["predict", "--remote", &url, "--policy", "dev.json", "--job", &job, "--input", "rows.csv", "--as"];
    let err = s.fails(&[&base[..], &["nobody"]].concat());
    assert!(err.contains("no identity `nobody`"), "{err}");
    let elsewhere = s.path("elsewhere");
    let err = s.fails(&[&["--home", elsewhere.to_str().unwrap()][..], &base[..], &["model-owner"]].concat());
    assert!(err.contains(&format!("no identity `model-owner` in {}", elsewhere.display())), "{err}");
    let out = predict("dev.json", "model-owner");
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("enclave verified: Sim"), "{stderr}");
    assert!(stderr.contains("warning: the sim TEE is software"), "{stderr}");
    assert_eq!(stdout.lines().count(), 101, "{stdout}");
    let score = line_with(&stderr, "predictions match");
    let hits: usize = score.split_whitespace().next().unwrap().parse().unwrap();
    assert!(hits >= 90, "{score}");

    // The job is running on tee-1; its audit shows the release to it.
    let audit = s.ok(&["audit", "show", "--as", "hospital-a"]);
    assert!(audit.contains("KeyReleased"), "{audit}");
    assert!(audit.contains("accepted sim evidence"), "{audit}");

    // The hospital revokes: the enclave's next report is refused and it stops serving.
    s.ok(&["job", "revoke", &job, "--reason", "terms ended", "--as", "hospital-a"]);
    let status = enclave.wait().unwrap();
    assert!(!status.success());
    let show = s.ok(&["job", "show", &job, "--as", "hospital-a"]);
    assert!(line_with(&show, "state:").contains("revoked"), "{show}");

    // Another serving job; its enclave is stopped by its operator (SIGTERM): it wipes
    // the model, reports the job finished and exits cleanly.
    let job2 = propose_serving(&s, "serve again", &policy, &[]);
    s.ok(&["job", "approve", &job2, "--allow-development", "--as", "model-owner"]);
    let mut args2 = serve_args;
    args2[3] = &job2;
    args2[5] = "tee-2";
    let (mut enclave, _) = spawn_enclave(&s, &args2);
    let pid = enclave.id().to_string();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    assert!(enclave.wait().unwrap().success());
    let show = s.ok(&["job", "show", &job2, "--as", "model-owner"]);
    assert!(line_with(&show, "state:").contains("finished"), "{show}");
    let _ = svc.kill();
}

/// `perun job propose` of a `tee` serving job of the trained model, by the model owner;
/// the job id.
fn propose_serving(s: &Scratch, name: &str, policy: &str, extra: &[&str]) -> String {
    let mut args = vec!["job", "propose", "--name", name, "--model", "mlp-trained", "--serve", "--mode", "tee"];
    args.extend([
        "--policy",
        policy,
        "--receiver",
        "model-owner",
        "--provider",
        "tee-host",
        "--as",
        "model-owner",
        "--json",
    ]);
    args.extend(extra);
    let out = s.ok(&args);
    serde_json::from_str::<serde_json::Value>(&out).unwrap()["id"].as_str().unwrap().to_owned()
}

/// `perun enclave serve ARGS` in its own process; returns it and the URL it serves at.
fn spawn_enclave(s: &Scratch, args: &[&str]) -> (std::process::Child, String) {
    let mut enclave = Command::new(env!("CARGO_BIN_EXE_perun"))
        .args(args)
        .current_dir(s.path(""))
        .env("PERUN_HOME", s.path("home"))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(enclave.stdout.take().unwrap()).lines();
    let accepted = lines.next().unwrap().unwrap();
    assert!(accepted.contains("Sim report accepted"), "{accepted}");
    let serving = lines.next().unwrap().unwrap();
    let url = serving.split_whitespace().find(|w| w.starts_with("http://")).unwrap().to_owned();
    std::thread::spawn(move || lines.for_each(drop));
    (enclave, url)
}
