//! End to end: `perun train` and `perun eval` on real data (the unprotected baseline),
//! and the trained weights loading in Python's `safetensors` under documented names.

use std::process::Command;

use crate::common::{examples, Scratch};

fn python() -> String {
    std::env::var("PERUN_PYTHON").unwrap_or_else(|_| "python3".into())
}

fn prepare(s: &Scratch) {
    let bc = examples().join("datasets/breast_cancer_wisconsin.csv");
    s.ok(&["dataset", "import", bc.to_str().unwrap(), "--label", "diagnosis", "--out", "bc.st"]);
    s.ok(&["dataset", "split", "bc.st", "--ratios", "80,20", "--out", "train.st", "--out", "test.st", "--seed", "5"]);
}

#[test]
fn train_then_eval_on_held_out_data() {
    let s = Scratch::new();
    prepare(&s);
    let spec = examples().join("models/breast-cancer-mlp.json");
    let spec = spec.to_str().unwrap();
    let out = s.ok(&[
        "train",
        "--spec",
        spec,
        "--data",
        "train.st",
        "--out",
        "w.st",
        "--metrics",
        "m.jsonl",
        "--plot",
        "curve.svg",
    ]);
    assert!(out.contains("trained breast-cancer-mlp"), "{out}");
    let lines: Vec<serde_json::Value> =
        std::fs::read_to_string(s.path("m.jsonl")).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 40);
    assert!(lines[39]["val_accuracy"].as_f64().unwrap() > 0.9);
    let svg = std::fs::read_to_string(s.path("curve.svg")).unwrap();
    assert!(svg.starts_with("<svg") && svg.contains("polyline"));

    let e: serde_json::Value =
        serde_json::from_str(&s.ok(&["eval", "--spec", spec, "--weights", "w.st", "--data", "test.st", "--json"]))
            .unwrap();
    let acc = e["accuracy"].as_f64().unwrap();
    assert!(acc >= 0.95, "held-out accuracy {acc}");
    let text = s.ok(&["eval", "--spec", spec, "--weights", "w.st", "--data", "test.st"]);
    assert!(text.contains("malignant"), "{text}");

    // Trained weights are never overwritten, and a spec that does not fit is refused.
    let err = s.fails(&["train", "--spec", spec, "--data", "train.st", "--out", "w.st"]);
    assert!(err.contains("already exists"), "{err}");
    std::fs::write(
        s.path("bad.json"),
        std::fs::read_to_string(spec).unwrap().replace("\"input_shape\": [30]", "\"input_shape\": [3, 4, 4]"),
    )
    .unwrap();
    let err = s.fails(&["train", "--spec", "bad.json", "--data", "train.st", "--out", "w2.st"]);
    assert!(err.contains("layer 0 (linear)") && err.contains("flatten"), "{err}");
}

#[test]
fn trained_weights_load_in_python_with_documented_names() {
    let has =
        Command::new(python()).args(["-c", "import safetensors.numpy"]).output().is_ok_and(|o| o.status.success());
    if !has {
        assert!(std::env::var_os("CI").is_none(), "python3 with safetensors is missing in CI");
        eprintln!("SKIPPED: python3 -m pip install safetensors numpy");
        return;
    }
    let s = Scratch::new();
    prepare(&s);
    let spec = examples().join("models/breast-cancer-mlp.json");
    s.ok(&["train", "--spec", spec.to_str().unwrap(), "--data", "train.st", "--out", "w.st", "--epochs", "2"]);
    let script = r#"
import json, sys
from safetensors import safe_open
with safe_open(sys.argv[1], "np") as f:
    shapes = {k: list(f.get_tensor(k).shape) for k in f.keys()}
    meta = f.metadata()
print(json.dumps({"shapes": shapes, "meta": meta}))
"#;
    let out = Command::new(python()).arg("-c").arg(script).arg(s.path("w.st")).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let j: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let expect = serde_json::json!({
        "layers.0.weight": [30, 32], "layers.0.bias": [32],
        "layers.3.weight": [32, 16], "layers.3.bias": [16],
        "layers.5.weight": [16, 2], "layers.5.bias": [2],
    });
    assert_eq!(j["shapes"], expect);
    assert!(j["meta"]["perun.spec_digest"].as_str().unwrap().starts_with("sha256:"));
    let std: serde_json::Value = serde_json::from_str(j["meta"]["perun.standardize"].as_str().unwrap()).unwrap();
    assert_eq!(std["mean"].as_array().unwrap().len(), 30);
}
