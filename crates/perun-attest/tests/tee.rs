//! TEE verifiers on real evidence that no one here made (see `tests/data/tee/PROVENANCE.md`):
//! each sample verifies; each edited copy (one byte of the body, of the signature) is
//! refused; and the policy refuses report data bound to another key, a measurement it
//! does not list, a TCB below its floor, and sim evidence it does not name.

use perun_attest::tee::{appraise_tee, verifier, AllowedTee, TcbLevel, TeeEvidence, TeeKind, TeePolicy};

fn data(name: &str) -> Vec<u8> {
    std::fs::read(format!("{}/tests/data/tee/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

fn dcap(kind: TeeKind, quote: &str, collateral: &str) -> (TeeEvidence, u64) {
    let collateral: serde_json::Value = serde_json::from_slice(&data(collateral)).unwrap();
    let now = perun_attest::tee::dcap::collateral_issued_at(&collateral).unwrap() + 3600;
    (TeeEvidence { kind, report: data(quote), collateral }, now)
}

fn snp() -> TeeEvidence {
    let report = hex::decode(String::from_utf8(data("report_milan.hex")).unwrap().trim()).unwrap();
    TeeEvidence {
        kind: TeeKind::SevSnp,
        report,
        collateral: serde_json::json!({ "vcek": hex::encode(data("vcek_milan.der")) }),
    }
}

fn flipped(ev: &TeeEvidence, at: usize) -> TeeEvidence {
    let mut e = ev.clone();
    e.report[at] ^= 0x01;
    e
}

/// A policy that accepts exactly what `ev` claims, at any TCB.
fn policy_for(ev: &TeeEvidence, now: u64) -> (TeePolicy, Vec<u8>) {
    let claims = verifier(ev.kind).unwrap().verify(ev, now).unwrap();
    let policy = TeePolicy {
        name: "exact".into(),
        allowed: vec![AllowedTee { kind: Some(ev.kind), measurements: claims.measurements.clone() }],
        min_tcb: TcbLevel::OutOfDate,
        sim_keys: Default::default(),
        min_svn: claims.svns.clone(),
        allow_debug: claims.debug,
    };
    (policy, hex::decode(&claims.report_data).unwrap())
}

#[test]
fn real_sgx_tdx_and_snp_evidence_verifies_and_edited_copies_are_refused() {
    let cases = [
        (dcap(TeeKind::Sgx, "sgx_quote", "sgx_quote_collateral.json"), 48 + 320, 48 + 384 + 4 + 8),
        (dcap(TeeKind::Tdx, "tdx_quote", "tdx_quote_collateral.json"), 48 + 520, 48 + 584 + 4 + 8),
        ((snp(), 0), 0x50, 0x2a0 + 8),
    ];
    for ((ev, now), body, signature) in cases {
        let v = verifier(ev.kind).unwrap();
        let claims = v.verify(&ev, now).unwrap_or_else(|e| panic!("{:?}: {e}", ev.kind));
        assert_eq!(claims.report_data.len(), 128);
        assert!(!claims.measurements.is_empty());
        let (policy, report_data) = policy_for(&ev, now);
        assert!(appraise_tee(&ev, &report_data, &policy, now).is_ok(), "{:?}", ev.kind);
        for at in [body, signature] {
            let edited = flipped(&ev, at);
            assert!(v.verify(&edited, now).is_err(), "{:?}: byte {at} edited and still accepted", ev.kind);
            assert!(appraise_tee(&edited, &report_data, &policy, now).is_err());
        }
    }
}

#[test]
fn the_policy_refuses_other_report_data_other_measurements_and_a_low_tcb() {
    let (ev, now) = dcap(TeeKind::Tdx, "tdx_quote", "tdx_quote_collateral.json");
    let (policy, report_data) = policy_for(&ev, now);
    let why = |r: Result<_, Vec<perun_attest::policy::Failure>>| -> String {
        r.err().unwrap().iter().map(|f| f.why.clone()).collect::<Vec<_>>().join("; ")
    };
    // Bound to another key, nonce or job.
    let mut other = report_data.clone();
    other[0] ^= 1;
    assert!(why(appraise_tee(&ev, &other, &policy, now)).contains("report data"));
    // A measurement the policy does not list.
    let mut strict = policy.clone();
    strict.allowed[0].measurements.insert("mr_td".into(), "00".repeat(48));
    assert!(why(appraise_tee(&ev, &report_data, &strict, now)).contains("measurements not in the policy"));
    // A TCB below the floor: the SGX sample's platform needs configuration and software
    // hardening (with advisories); a policy that wants it up to date refuses it.
    let (sgx, sgx_now) = dcap(TeeKind::Sgx, "sgx_quote", "sgx_quote_collateral.json");
    let (mut floor, sgx_rd) = policy_for(&sgx, sgx_now);
    let claims = verifier(TeeKind::Sgx).unwrap().verify(&sgx, sgx_now).unwrap();
    assert_eq!(claims.tcb, TcbLevel::ConfigurationNeeded, "{}", claims.tcb_status);
    floor.min_tcb = TcbLevel::ConfigurationNeeded;
    assert!(appraise_tee(&sgx, &sgx_rd, &floor, sgx_now).is_ok());
    floor.min_tcb = TcbLevel::UpToDate;
    let w = why(appraise_tee(&sgx, &sgx_rd, &floor, sgx_now));
    assert!(w.contains("below the policy's floor") && w.contains("INTEL-SA-00615"), "{w}");
    // Collateral out of its validity window.
    assert!(appraise_tee(&ev, &report_data, &policy, now + 400 * 86_400).is_err());
}

#[test]
fn sim_evidence_is_refused_unless_the_policy_names_its_key() {
    let key = ed25519_dalek::SigningKey::from_bytes(&[7; 32]);
    let rd = [9u8; 32];
    let ev = perun_attest::tee::sim::make_evidence(&key, b"enclave image digest", &rd).unwrap();
    let mut policy = TeePolicy {
        name: "default".into(),
        allowed: vec![AllowedTee { kind: None, measurements: Default::default() }],
        min_tcb: TcbLevel::UpToDate,
        sim_keys: Default::default(),
        min_svn: Default::default(),
        allow_debug: false,
    };
    let refused = appraise_tee(&ev, &rd, &policy, 0).unwrap_err();
    assert!(refused.iter().any(|f| f.why.contains("sim TEE")));
    policy.sim_keys.insert(hex::encode(key.verifying_key().as_bytes()));
    let claims = appraise_tee(&ev, &rd, &policy, 0).unwrap();
    assert_eq!(claims.kind, TeeKind::Sim);
    // A forged report (edited after signing) is refused by the verifier.
    let mut forged = ev.clone();
    let text = String::from_utf8(forged.report.clone()).unwrap().replace("\"sim\"", "\"sgx\"");
    forged.report = text.into_bytes();
    assert!(appraise_tee(&forged, &rd, &policy, 0).is_err());
}

#[test]
fn collateral_time_is_read_from_its_tcb_info_and_malformed_collateral_is_refused() {
    let collateral: serde_json::Value = serde_json::from_slice(&data("sgx_quote_collateral.json")).unwrap();
    let t = perun_attest::tee::dcap::collateral_issued_at(&collateral).unwrap();
    // The sample's collateral was issued in 2025.
    assert!((1_735_689_600..1_767_225_600).contains(&t), "{t}");
    for bad in [
        serde_json::json!({}),
        serde_json::json!({ "tcb_info": "not json" }),
        serde_json::json!({ "tcb_info": "{\"issueDate\": \"yesterday\"}" }),
    ] {
        assert!(perun_attest::tee::dcap::collateral_issued_at(&bad).is_err());
    }
}

#[test]
fn snp_policies_set_a_tcb_floor_and_refuse_debug_guests() {
    let ev = snp();
    let claims = verifier(TeeKind::SevSnp).unwrap().verify(&ev, 0).unwrap();
    let why = |r: Result<_, Vec<perun_attest::policy::Failure>>| -> String {
        r.err().map(|f| f.iter().map(|f| f.why.clone()).collect::<Vec<_>>().join("; ")).unwrap_or_default()
    };
    // The guest policy reads as a policy writes it (16 hex digits), so it can be pinned.
    let guest = &claims.measurements["policy"];
    assert!(guest.len() == 16 && guest.bytes().all(|b| b.is_ascii_hexdigit()), "{guest}");
    let (policy, rd) = policy_for(&ev, 0);
    let json = serde_json::to_vec(&policy).unwrap();
    assert_eq!(TeePolicy::from_json(&json).unwrap(), policy);
    assert!(appraise_tee(&ev, &rd, &policy, 0).is_ok());
    // Without a floor SNP evidence is refused: the report states no vendor TCB level.
    let mut no_floor = policy.clone();
    no_floor.min_svn.clear();
    assert!(why(appraise_tee(&ev, &rd, &no_floor, 0)).contains("must set a floor"));
    // A floor one above the sample's reported TCB, per component: refused; at it: accepted.
    assert_eq!(claims.svns.len(), 4, "{:?}", claims.svns);
    for component in perun_attest::tee::SNP_TCB_COMPONENTS {
        let mut above = policy.clone();
        *above.min_svn.get_mut(component).unwrap() += 1;
        let w = why(appraise_tee(&ev, &rd, &above, 0));
        assert!(w.contains(&format!("TCB component {component}")) && w.contains("below the policy's floor"), "{w}");
        let mut below = policy.clone();
        let v = below.min_svn.get_mut(component).unwrap();
        *v = v.saturating_sub(1);
        assert!(appraise_tee(&ev, &rd, &below, 0).is_ok());
    }
    // The debug bit of the guest policy decides with the policy's allow_debug.
    let mut strict = policy.clone();
    strict.allow_debug = false;
    let refused = why(appraise_tee(&ev, &rd, &strict, 0));
    assert_eq!(claims.debug, refused.contains("allows debugging"), "debug {}: {refused}", claims.debug);
    if claims.debug {
        strict.allow_debug = true;
        assert!(appraise_tee(&ev, &rd, &strict, 0).is_ok());
    }
}

#[test]
fn snp_reports_of_a_version_not_laid_out_here_are_refused_by_version() {
    let ev = snp();
    let found = u32::from_le_bytes(ev.report[..4].try_into().unwrap());
    assert!((2..=5).contains(&found), "the sample is version {found}");
    let v = verifier(TeeKind::SevSnp).unwrap();
    for version in [0u32, 1, 6, 0xffff_ffff] {
        let mut e = ev.clone();
        e.report[..4].copy_from_slice(&version.to_le_bytes());
        let why = v.verify(&e, 0).unwrap_err().to_string();
        assert!(why.contains(&format!("version {version} is not supported")) && why.contains("2 to 5"), "{why}");
    }
    let mut short = ev.clone();
    short.report.truncate(3);
    assert!(v.verify(&short, 0).unwrap_err().to_string().contains("too few"));
}
