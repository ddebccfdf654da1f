//! The evidence sources speak their kernel and Gramine file protocols: a folder stands in
//! for `/dev/attestation` and for a configfs-tsm report entry, holding the real recorded
//! quotes and report of `perun-attest`'s test data (see its PROVENANCE.md). The report
//! data each source writes is what it was given; what it reads back is evidence the
//! verifiers accept; and since those recorded reports bind other report data, the
//! policy refuses them as bound to another key. The sim source's reports are refused by
//! a policy that does not name its key.

use perun_attest::tee::{appraise_tee, verifier, AllowedTee, TcbLevel, TeeKind, TeePolicy};
use perun_enclave::source::{ConfigfsTsm, EvidenceSource, Gramine, SimTee};

fn data(name: &str) -> Vec<u8> {
    std::fs::read(format!("{}/../perun-attest/tests/data/tee/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

fn json(name: &str) -> serde_json::Value {
    serde_json::from_slice(&data(name)).unwrap()
}

/// A verification time inside the collateral's validity.
fn dcap_time(collateral: &serde_json::Value) -> u64 {
    perun_attest::tee::dcap::collateral_issued_at(collateral).unwrap() + 3600
}

fn any_tcb(kind: TeeKind, claims: &perun_attest::tee::TeeClaims) -> TeePolicy {
    TeePolicy {
        name: "exact".into(),
        allowed: vec![AllowedTee { kind: Some(kind), measurements: claims.measurements.clone() }],
        min_tcb: TcbLevel::OutOfDate,
        sim_keys: Default::default(),
        min_svn: Default::default(),
        allow_debug: false,
    }
}

#[test]
fn gramine_writes_the_report_data_and_reads_the_quote() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("attestation_type"), "dcap\n").unwrap();
    std::fs::write(dir.path().join("quote"), data("sgx_quote")).unwrap();
    let collateral = json("sgx_quote_collateral.json");
    let mut g = Gramine::new(dir.path(), collateral.clone());
    let ev = g.evidence(&[7u8; 32]).unwrap();
    let mut want = vec![7u8; 32];
    want.resize(64, 0);
    assert_eq!(std::fs::read(dir.path().join("user_report_data")).unwrap(), want);
    assert_eq!(ev.kind, TeeKind::Sgx);
    let now = dcap_time(&collateral);
    let claims = verifier(TeeKind::Sgx).unwrap().verify(&ev, now).unwrap();
    // The recorded quote binds its own report data, not ours: refused as bound elsewhere.
    let refused = appraise_tee(&ev, &[7u8; 32], &any_tcb(TeeKind::Sgx, &claims), now).unwrap_err();
    assert!(refused.iter().any(|f| f.why.contains("report data")), "{refused:?}");
    let theirs = hex::decode(&claims.report_data).unwrap();
    appraise_tee(&ev, &theirs, &any_tcb(TeeKind::Sgx, &claims), now).unwrap();

    // An enclave without DCAP attestation says so.
    std::fs::write(dir.path().join("attestation_type"), "none\n").unwrap();
    let e = g.evidence(&[7u8; 32]).unwrap_err().to_string();
    assert!(e.contains("remote_attestation"), "{e}");
    assert!(g.evidence(&[0u8; 65]).is_err());
}

#[test]
fn configfs_tsm_serves_tdx_quotes_and_snp_reports() {
    let dir = tempfile::tempdir().unwrap();
    let entry = dir.path().join("perun-test");
    std::fs::create_dir(&entry).unwrap();
    std::fs::write(entry.join("generation"), "1\n").unwrap();

    std::fs::write(entry.join("provider"), "tdx_guest\n").unwrap();
    std::fs::write(entry.join("outblob"), data("tdx_quote")).unwrap();
    let collateral = json("tdx_quote_collateral.json");
    let mut tsm = ConfigfsTsm::new(dir.path(), collateral.clone()).with_entry("perun-test");
    let ev = tsm.evidence(b"binding").unwrap();
    assert_eq!(&std::fs::read(entry.join("inblob")).unwrap()[..7], b"binding");
    assert_eq!(ev.kind, TeeKind::Tdx);
    let now = dcap_time(&collateral);
    let claims = verifier(TeeKind::Tdx).unwrap().verify(&ev, now).unwrap();
    assert!(claims.measurements.contains_key("mr_td"));
    assert!(appraise_tee(&ev, b"binding", &any_tcb(TeeKind::Tdx, &claims), now).is_err());

    std::fs::write(entry.join("provider"), "sev_guest\n").unwrap();
    let report = hex::decode(String::from_utf8(data("report_milan.hex")).unwrap().trim()).unwrap();
    std::fs::write(entry.join("outblob"), report).unwrap();
    let mut tsm = ConfigfsTsm::new(dir.path(), serde_json::json!({ "vcek": hex::encode(data("vcek_milan.der")) }))
        .with_entry("perun-test");
    assert_eq!(tsm.kind(), TeeKind::SevSnp);
    let ev = tsm.evidence(b"binding").unwrap();
    assert_eq!(ev.kind, TeeKind::SevSnp);
    let claims = verifier(TeeKind::SevSnp).unwrap().verify(&ev, 1_700_000_000).unwrap();
    assert!(claims.measurements.contains_key("measurement"));

    std::fs::write(entry.join("provider"), "arm_cca_guest\n").unwrap();
    let e = tsm.evidence(b"binding").unwrap_err().to_string();
    assert!(e.contains("not supported"), "{e}");
}

#[test]
fn sim_reports_say_sim_and_need_a_policy_that_names_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("sim.key");
    let key = SimTee::load_or_create_key(&key_file).unwrap();
    // The key file is private and reloads to the same key.
    use std::os::unix::fs::PermissionsExt as _;
    assert_eq!(std::fs::metadata(&key_file).unwrap().permissions().mode() & 0o777, 0o600);
    assert_eq!(SimTee::load_or_create_key(&key_file).unwrap().to_bytes(), key.to_bytes());

    let mut sim = SimTee::new(key, perun_core::Digest::of(b"perun binary"));
    let ev = sim.evidence(b"binding").unwrap();
    assert_eq!(ev.kind, TeeKind::Sim);
    let mut policy = TeePolicy {
        name: "production".into(),
        allowed: vec![AllowedTee {
            kind: None,
            measurements: [("measurement".to_owned(), sim.measurement().to_hex())].into(),
        }],
        min_tcb: TcbLevel::UpToDate,
        sim_keys: Default::default(),
        min_svn: Default::default(),
        allow_debug: false,
    };
    let refused = appraise_tee(&ev, b"binding", &policy, 0).unwrap_err();
    assert!(refused.iter().any(|f| f.why.contains("sim TEE")), "{refused:?}");
    policy.sim_keys.insert(sim.public_key());
    let claims = appraise_tee(&ev, b"binding", &policy, 0).unwrap();
    assert_eq!(claims.kind, TeeKind::Sim);
    assert!(claims.tcb_status.contains("sim"));
}
