//! End to end: importing real and generated data sets, inspecting them, and
//! interoperating with Python's `safetensors`.

use std::process::Command;

use crate::common::{examples, Scratch};

fn inspect(s: &Scratch, file: &str) -> serde_json::Value {
    serde_json::from_str(&s.ok(&["dataset", "inspect", file, "--json"])).unwrap()
}

#[test]
fn real_csv_data_sets_import_with_their_classes() {
    let s = Scratch::new();
    let bc = examples().join("datasets/breast_cancer_wisconsin.csv");
    s.ok(&["dataset", "import", bc.to_str().unwrap(), "--label", "diagnosis", "--out", "bc.safetensors"]);
    let j = inspect(&s, "bc.safetensors");
    assert_eq!(j["rows"], 569);
    assert_eq!(j["sample_shape"], serde_json::json!([30]));
    assert_eq!(j["classes"][0]["name"], "benign");
    assert_eq!(j["classes"][0]["count"], 357);
    assert_eq!(j["classes"][1]["name"], "malignant");
    assert_eq!(j["classes"][1]["count"], 212);
    assert_eq!(j["feature_names"][0], "mean_radius");

    let digits = examples().join("datasets/digits_8x8.csv");
    s.ok(&["dataset", "import", digits.to_str().unwrap(), "--label", "digit", "--out", "digits.safetensors"]);
    let j = inspect(&s, "digits.safetensors");
    assert_eq!(j["rows"], 1797);
    assert_eq!(j["classes"].as_array().unwrap().len(), 10);

    s.ok(&[
        "dataset",
        "split",
        "bc.safetensors",
        "--ratios",
        "40,40,20",
        "--out",
        "a.st",
        "--out",
        "b.st",
        "--out",
        "t.st",
    ]);
    let rows: Vec<u64> = ["a.st", "b.st", "t.st"].iter().map(|f| inspect(&s, f)["rows"].as_u64().unwrap()).collect();
    assert_eq!(rows.iter().sum::<u64>(), 569);
}

#[test]
fn bad_csv_input_is_named_and_nothing_is_written() {
    let s = Scratch::new();
    std::fs::write(s.path("short.csv"), "a,b,label\n1,2,x\n3,4\n").unwrap();
    let e = s.fails(&["dataset", "import", "short.csv", "--out", "o.st"]);
    assert!(e.contains("line 3") && e.contains("expected 3 fields separated by `,`, found 2"), "{e}");
    std::fs::write(s.path("text.csv"), "a,b,label\n1,2,x\n3,four,y\n").unwrap();
    let e = s.fails(&["dataset", "import", "text.csv", "--out", "o.st"]);
    assert!(e.contains("line 3, column 2 (`b`)"), "{e}");
    let e = s.fails(&["dataset", "import", "text.csv", "--label", "class", "--out", "o.st"]);
    assert!(e.contains("no column named `class`") && e.contains("a, b, label"), "{e}");
    assert!(!s.path("o.st").exists());
    let e = s.fails(&["dataset", "inspect", "text.csv"]);
    assert!(e.contains("invalid dataset container"), "{e}");
}

#[test]
fn image_folders_import_with_resizing() {
    let s = Scratch::new();
    for (class, shade) in [("benign", 30u8), ("malignant", 220)] {
        let dir = s.path(&format!("imgs/{class}"));
        std::fs::create_dir_all(&dir).unwrap();
        for i in 0..3u32 {
            let img = image::RgbImage::from_fn(10 + i, 8, |x, _| image::Rgb([shade, (x * 10) as u8, 0]));
            img.save(dir.join(format!("{i}.png"))).unwrap();
            img.save(dir.join(format!("{i}.jpg"))).unwrap();
        }
    }
    let e = s.fails(&["dataset", "import", "imgs", "--out", "imgs.st"]);
    assert!(e.contains("--resize"), "{e}");
    s.ok(&["dataset", "import", "imgs", "--resize", "8x8", "--out", "imgs.st"]);
    let j = inspect(&s, "imgs.st");
    assert_eq!(j["rows"], 12);
    assert_eq!(j["sample_shape"], serde_json::json!([3, 8, 8]));
    assert_eq!(j["classes"][1]["name"], "malignant");
}

#[test]
fn cifar10_binary_batches_import() {
    let s = Scratch::new();
    let dir = s.path("cifar-10-batches-bin");
    std::fs::create_dir(&dir).unwrap();
    let record = |label: u8| {
        let mut r = vec![label];
        r.extend((0..3072).map(|i| (i % 256) as u8));
        r
    };
    for b in 1..=2u8 {
        let batch: Vec<u8> = (0..5u8).flat_map(|i| record((i + b) % 10)).collect();
        std::fs::write(dir.join(format!("data_batch_{b}.bin")), batch).unwrap();
    }
    std::fs::write(dir.join("test_batch.bin"), record(9)).unwrap();
    s.ok(&["dataset", "import", "cifar-10-batches-bin", "--out", "train.st"]);
    let j = inspect(&s, "train.st");
    assert_eq!(j["rows"], 10);
    assert_eq!(j["sample_shape"], serde_json::json!([3, 32, 32]));
    assert_eq!(j["classes"][0]["name"], "airplane");
    s.ok(&["dataset", "import", "cifar-10-batches-bin", "--split", "test", "--out", "test.st"]);
    assert_eq!(inspect(&s, "test.st")["classes"][9]["count"], 1);
}

/// The Python that has `safetensors` (scripts/test sets PERUN_PYTHON to its venv).
fn python() -> String {
    std::env::var("PERUN_PYTHON").unwrap_or_else(|_| "python3".into())
}

fn python_has_safetensors() -> bool {
    let ok = Command::new(python())
        .args(["-c", "import safetensors.numpy, numpy"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        assert!(std::env::var_os("CI").is_none(), "python3 with safetensors and numpy is missing in CI");
        eprintln!("SKIPPED: python3 -m pip install safetensors numpy (scripts/test does)");
    }
    ok
}

#[test]
fn python_safetensors_files_load_and_ours_load_in_python() {
    if !python_has_safetensors() {
        return;
    }
    let s = Scratch::new();
    let script = r#"
import numpy as np, sys
from safetensors.numpy import save_file, load_file
x = np.arange(12, dtype=np.float32).reshape(4, 3)
y = np.array([0, 1, 1, 2], dtype=np.int64)
save_file({"features": x, "labels": y}, sys.argv[1], metadata={"class_names": '["a","b","c"]'})
t = load_file(sys.argv[2])
assert t["features"].dtype == np.float32 and t["features"].shape == (569, 30), t["features"].shape
assert t["labels"].dtype == np.int64 and t["labels"].shape == (569,)
assert abs(float(t["features"][0, 0]) - 17.99) < 1e-4
print("python ok")
"#;
    let bc = examples().join("datasets/breast_cancer_wisconsin.csv");
    s.ok(&["dataset", "import", bc.to_str().unwrap(), "--label", "diagnosis", "--out", "bc.st"]);
    let out = Command::new(python()).arg("-c").arg(script).arg(s.path("py.st")).arg(s.path("bc.st")).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let j = inspect(&s, "py.st");
    assert_eq!(j["rows"], 4);
    assert_eq!(j["classes"][2]["name"], "c");
    assert_eq!(j["classes"][1]["count"], 2);
}
