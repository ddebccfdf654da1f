//! End to end: identities, sealing and opening through the `perun` binary, interop
//! with the `age` tool, refusals of bad sealed files, and no plaintext on disk.

use std::os::unix::fs::PermissionsExt as _;
use std::process::Command;

use crate::common::{contains, require_tool, Scratch};

fn mode(p: &std::path::Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

#[test]
fn identity_files_are_private_and_shown() {
    let s = Scratch::new();
    s.ok(&["id", "new", "hospital-a"]);
    let dir = s.path("home/identities/hospital-a");
    assert_eq!(mode(&dir.join("signing.pem")), 0o600);
    assert_eq!(mode(&dir.join("age.key")), 0o600);
    assert_eq!(mode(&dir), 0o700);
    let json: serde_json::Value = serde_json::from_str(&s.ok(&["id", "show", "hospital-a", "--json"])).unwrap();
    assert_eq!(json["name"], "hospital-a");
    assert!(json["age_recipient"].as_str().unwrap().starts_with("age1"));
    let text = s.ok(&["id", "show", "hospital-a"]);
    assert!(text.contains("fingerprint"), "{text}");
    assert!(!text.contains("PRIVATE") && !text.contains("AGE-SECRET-KEY"), "a secret was printed");

    let e = s.fails(&["id", "new", "hospital-a"]);
    assert!(e.contains("already exists"), "{e}");
    let e = s.fails(&["id", "show", "nobody"]);
    assert!(e.contains("perun id new nobody"), "{e}");
    let e = s.fails(&["id", "new", "Bad/Name"]);
    assert!(e.contains("invalid name"), "{e}");

    std::fs::set_permissions(dir.join("signing.pem"), std::fs::Permissions::from_mode(0o644)).unwrap();
    let e = s.fails(&["id", "show", "hospital-a"]);
    assert!(e.contains("chmod 600"), "{e}");
}

/// Seals `payload` as hospital-a; returns (sealed path, key path).
fn seal(s: &Scratch, payload: &[u8]) -> (std::path::PathBuf, std::path::PathBuf) {
    s.ok(&["id", "new", "hospital-a"]);
    std::fs::write(s.path("data.bin"), payload).unwrap();
    let out =
        s.ok(&["seal", "data.bin", "--kind", "dataset", "--owner", "hospital-a", "--out", "data.sealed", "--json"]);
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    let key = std::path::PathBuf::from(report["key_file"].as_str().unwrap());
    assert_eq!(mode(&key), 0o600);
    assert_eq!(report["content_len"], payload.len() as u64);
    (s.path("data.sealed"), key)
}

fn marker_payload() -> Vec<u8> {
    let mut p = Vec::new();
    for i in 0..20_000u32 {
        p.extend_from_slice(format!("PLAINTEXT-MARKER-{i:05};").as_bytes());
    }
    p
}

#[test]
fn seal_then_unseal_round_trip() {
    let s = Scratch::new();
    let payload = marker_payload();
    let (sealed, key) = seal(&s, &payload);
    let out = s.ok(&["unseal", sealed.to_str().unwrap(), "--key", key.to_str().unwrap(), "--out", "copy.bin"]);
    assert!(out.contains("verified"), "{out}");
    assert_eq!(std::fs::read(s.path("copy.bin")).unwrap(), payload);
    assert_eq!(mode(&s.path("copy.bin")), 0o600);
    let e = s.fails(&["unseal", "data.sealed", "--key", key.to_str().unwrap(), "--out", "copy.bin"]);
    assert!(e.contains("already exists"), "{e}");
    let e = s.fails(&["seal", "data.bin", "--kind", "dataset", "--owner", "hospital-a", "--out", "data.sealed"]);
    assert!(e.contains("already exists"), "{e}");
}

#[test]
fn plaintext_never_reaches_the_file_system() {
    let s = Scratch::new();
    let payload = marker_payload();
    let (sealed, key) = seal(&s, &payload);
    // Opening in memory only (no --out) and verifying.
    let out = s.ok(&["unseal", sealed.to_str().unwrap(), "--key", key.to_str().unwrap()]);
    assert!(out.contains("verified"), "{out}");
    // The only file holding plaintext is the input the owner gave us.
    let files = s.files();
    for f in &files {
        let bytes = std::fs::read(f).unwrap();
        let holds = contains(&bytes, b"PLAINTEXT-MARKER-");
        assert_eq!(holds, f.ends_with("data.bin"), "{} holds plaintext: {holds}", f.display());
    }
    // And nothing was left behind: input, sealed file, key, the identity's three files.
    assert_eq!(files.len(), 6, "{files:#?}");
    assert_eq!(std::fs::read_dir(s.path("tmp")).unwrap().count(), 0);
}

#[test]
fn bad_sealed_files_are_refused_by_name_and_leave_nothing() {
    let s = Scratch::new();
    let payload = marker_payload();
    let (sealed, key) = seal(&s, &payload);
    let bytes = std::fs::read(&sealed).unwrap();
    let key = key.to_str().unwrap();

    let mut tampered = bytes.clone();
    let at = bytes.len() - 1000;
    tampered[at] ^= 1;
    std::fs::write(s.path("tampered.sealed"), &tampered).unwrap();
    let e = s.fails(&["unseal", "tampered.sealed", "--key", key, "--out", "t.bin"]);
    assert!(e.contains("tampered"), "{e}");

    std::fs::write(s.path("cut.sealed"), &bytes[..bytes.len() * 2 / 3]).unwrap();
    let e = s.fails(&["unseal", "cut.sealed", "--key", key, "--out", "t.bin"]);
    assert!(e.contains("truncated"), "{e}");

    s.ok(&["id", "new", "hospital-b"]);
    std::fs::write(s.path("other.bin"), b"x").unwrap();
    let other =
        s.ok(&["seal", "other.bin", "--kind", "dataset", "--owner", "hospital-b", "--out", "other.sealed", "--json"]);
    let other_key: serde_json::Value = serde_json::from_str(&other).unwrap();
    let e = s.fails(&["unseal", "data.sealed", "--key", other_key["key_file"].as_str().unwrap(), "--out", "t.bin"]);
    assert!(e.contains("wrong key"), "{e}");

    let e = s.fails(&["unseal", "other.bin", "--key", key, "--out", "t.bin"]);
    assert!(e.contains("not a sealed file"), "{e}");

    assert!(!s.path("t.bin").exists());
    for f in s.files() {
        let name = f.file_name().unwrap().to_string_lossy().into_owned();
        assert!(!name.starts_with(".perun-partial"), "left behind: {name}");
        if !f.ends_with("data.bin") {
            assert!(!contains(&std::fs::read(&f).unwrap(), b"PLAINTEXT-MARKER-"), "{} holds plaintext", f.display());
        }
    }
}

#[test]
fn age_tool_opens_perun_files_and_perun_opens_age_files() {
    if !require_tool("age", "apt-get install age") {
        return;
    }
    let s = Scratch::new();
    let payload = marker_payload();
    let (sealed, key) = seal(&s, &payload);

    // age opens a Perun file: the plaintext is the Perun header, then the payload.
    let out = Command::new("age").arg("-d").arg("-i").arg(&key).arg(&sealed).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.stdout.starts_with(b"PERUN-ASSET\n"));
    assert!(out.stdout.ends_with(&payload));

    // Perun opens a file sealed by age to the same key (no Perun header).
    let recipient = std::fs::read_to_string(&key).unwrap();
    let recipient = recipient.lines().find_map(|l| l.strip_prefix("# public key: ")).unwrap().to_owned();
    let st = Command::new("age")
        .args(["-e", "-r", &recipient, "-o"])
        .arg(s.path("by-age.age"))
        .arg(s.path("data.bin"))
        .status()
        .unwrap();
    assert!(st.success());
    let out = s.ok(&["unseal", "by-age.age", "--key", key.to_str().unwrap(), "--out", "from-age.bin"]);
    assert!(out.contains("plain age file"), "{out}");
    assert_eq!(std::fs::read(s.path("from-age.bin")).unwrap(), payload);

    // And a key made by age-keygen works as a Perun key.
    let st = Command::new("age-keygen").arg("-o").arg(s.path("kg.key")).output().unwrap();
    assert!(st.status.success());
    let kg = std::fs::read_to_string(s.path("kg.key")).unwrap();
    let kg_recipient = kg.lines().find_map(|l| l.strip_prefix("# public key: ")).unwrap().to_owned();
    let st = Command::new("age")
        .args(["-e", "-r", &kg_recipient, "-o"])
        .arg(s.path("kg.age"))
        .arg(s.path("data.bin"))
        .status()
        .unwrap();
    assert!(st.success());
    s.ok(&["unseal", "kg.age", "--key", "kg.key"]);
}
