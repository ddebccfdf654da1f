//! Targets for `perun-attest`: IMA logs, measured-boot logs, TPM structures, quotes and
//! evidence, EK certificates, TEE evidence and policies.

use perun_attest::bootlog;
use perun_attest::ek::{cert_der, certified_key, issuer, pem_to_der, verify_ek, EkPolicy};
use perun_attest::evidence::{appraise, rebooted, Endorsement, TpmEvidence};
use perun_attest::ima::{extend_all, parse_ascii, parse_binary, replay_to_quote, ReplayState, TpmBoot};
use perun_attest::policy::{PlatformPolicy, BOOT_PCRS};
use perun_attest::tee::{appraise_tee, verifier, AllowedTee, TcbLevel, TeeEvidence, TeeKind, TeePolicy};
use perun_attest::tpm::{make_credential, verify_quote, verify_signature, AkPublic, Quote};
use perun_attest::JobPolicy;

use crate::fixtures;

/// The largest template data the binary form takes per entry (`MAX_TEMPLATE_DATA` in
/// `perun-proto/src/ima.rs`): an ASCII entry with more has no binary form to compare with.
const MAX_TEMPLATE_DATA: usize = 1 << 20;

/// A binary IMA log (`binary_runtime_measurements`): [`perun_attest::ima::parse_binary`],
/// then PCR 10 replay ([`replay_to_quote`], [`extend_all`]) and the policy checks of its
/// entries.
///
/// Checks one invariant: the entries of a log that parses, written back
/// ([`perun_attest::ima::Entry::to_binary`]), are the log's bytes.
pub fn ima_binary(data: &[u8]) {
    let Ok(parsed) = parse_binary(data, 0) else { return };
    let rebuilt: Vec<u8> = parsed.iter().flat_map(|(e, _)| e.to_binary()).collect();
    assert!(rebuilt == data, "IMA binary log: the parsed entries, written back, are not the log's bytes");
    let entries: Vec<_> = parsed.into_iter().map(|(e, _)| e).collect();
    let pcr = extend_all([0; 32], &entries);
    let start = ReplayState::default();
    if let Ok((state, _)) = replay_to_quote(&start, data, &pcr) {
        // The next round, with nothing new, then with the same log doubled.
        let _ = replay_to_quote(&state, data, &pcr);
        let doubled = [data, data].concat();
        let _ = replay_to_quote(&state, &doubled, &extend_all(pcr, &entries));
        let _ = rebooted(&state, TpmBoot { reset_count: 1, restart_count: 0 });
    }
    let _ = replay_to_quote(&start, data, &[0xab; 32]);
    for e in &entries {
        let _ = (e.sha1_extend(), e.file_digest.to_text());
    }
    let policy = PlatformPolicy::from_log("fuzz", &entries);
    let _ = policy.check_entries(&entries, true);
    if let Some(p) = fixtures::platform() {
        let _ = p.policy.check_entries(&entries, true);
        let _ = p.policy.check_entries(&entries, false);
    }
    let _ = PlatformPolicy::check_boot_aggregate(&entries, &fixtures::zero_pcrs());
}

/// An ASCII IMA log (`ascii_runtime_measurements`): [`perun_attest::ima::parse_ascii`].
///
/// Checks one invariant the parser promises: each entry it reads has a binary form that
/// [`parse_binary`] reads back as the same entry.
pub fn ima_ascii(data: &[u8]) {
    let Ok(entries) = parse_ascii(data) else { return };
    for e in &entries {
        if e.template_data.len() > MAX_TEMPLATE_DATA {
            continue;
        }
        let back = parse_binary(&e.to_binary(), 0);
        let same = matches!(back.as_deref(), Ok([(b, _)]) if b == e);
        assert!(same, "IMA ASCII entry `{}` reads back from its binary form as {back:?}", e.path);
    }
    let policy = PlatformPolicy::from_log("fuzz", &entries);
    let _ = policy.check_entries(&entries, true);
    let _ = PlatformPolicy::check_boot_aggregate(&entries, &fixtures::zero_pcrs());
}

/// A TCG2 measured-boot event log (`binary_bios_measurements`): [`bootlog::parse`], then
/// what a verifier derives from it (its reference, the differences from the fixture
/// policy's reference boot, the command lines it measures).
pub fn boot_event_log(data: &[u8]) {
    let Ok(log) = bootlog::parse(data) else { return };
    for i in BOOT_PCRS {
        let _ = log.pcr(i);
    }
    for e in &log.events {
        let _ = (e.type_name(), e.to_string());
    }
    let reference = bootlog::reference(&log, BOOT_PCRS);
    let _ = bootlog::differences(&log, &reference);
    if let Some(p) = fixtures::platform() {
        let _ = bootlog::differences(&log, &p.policy.boot_events);
    }
    for e in log.events.iter().filter(|e| e.pcr == 8 || e.pcr == 9).take(16) {
        let _ = bootlog::kernel_params(&e.text);
        let _ = bootlog::cmdline_measures_what_runs(&e.text);
        let _ = bootlog::cmdline_measurements(&e.text);
    }
}

/// A TPM public area (`TPM2B_PUBLIC` or `TPMT_PUBLIC`, an EK or an AK as a worker sends
/// it): [`AkPublic::parse`], the attestation-key check, and a MakeCredential to it when
/// it parses (what the trust service does with a worker's EK).
pub fn tpm_public(data: &[u8]) {
    let _ = AkPublic::parse_tpmt(data);
    let Ok(key) = AkPublic::parse(data) else { return };
    let _ = key.check_attestation_key();
    let name = fixtures::ak().map(|a| a.name.clone()).unwrap_or_default();
    let _ = make_credential(&key, &name, &[7u8; 32]);
    let _ = make_credential(&key, &key.name, &[7u8; 16]);
}

/// A quote (`TPMS_ATTEST`): [`Quote::parse`], then [`verify_quote`] with the quote signed
/// by the fixture AK, so that the checks after the signature (qualifying data, PCR
/// selection, PCR digest) see it, over zeros for the PCRs it selects.
pub fn tpm_quote(data: &[u8]) {
    let parsed = Quote::parse(data);
    let Some(ak) = fixtures::ak() else { return };
    let signature = fixtures::sign_tpm(data);
    let (extra, pcrs) = match &parsed {
        Ok(q) => (q.extra_data.clone(), fixtures::zero_bank(&q.selection)),
        Err(_) => (Vec::new(), fixtures::zero_pcrs()),
    };
    let _ = verify_quote(ak, data, &signature, &extra, &pcrs);
    let _ = verify_quote(ak, data, &signature, b"another nonce", &fixtures::zero_pcrs());
}

/// A signature (`TPMT_SIGNATURE`) over a fixed message: [`verify_signature`] with the
/// fixture ECDSA AK and with an RSA key.
pub fn tpm_signature(data: &[u8]) {
    let message = b"perun-fuzz quote";
    for ak in [fixtures::ak(), fixtures::rsa_key()].into_iter().flatten() {
        let _ = verify_signature(ak, message, data);
    }
}

/// TPM evidence as a worker sends it (JSON, the `evidence` of `POST /v1/jobs/{id}/attest`):
/// [`appraise`] against the fixture platform, the quote re-signed by the fixture AK and
/// its own qualifying data expected, so that the IMA replay, the PCR, boot-aggregate,
/// event-log, EK and file checks see the rest; then a second round from the state an
/// accepted first round saves.
pub fn tpm_evidence(data: &[u8]) {
    let Ok(mut ev) = serde_json::from_slice::<TpmEvidence>(data) else { return };
    let Some(p) = fixtures::platform() else { return };
    ev.signature = fixtures::sign_tpm(&ev.quote);
    let extra = Quote::parse(&ev.quote).map(|q| q.extra_data).unwrap_or_default();
    let endorsement = Endorsement { ek: &p.ek, certificate: &p.ek_cert, chain: &[] };
    let first = appraise(&ev, endorsement, &p.ak, &extra, &p.policy, &ReplayState::default());
    if let Some(state) = &first.state {
        let _ = appraise(&ev, endorsement, &p.ak, &extra, &p.policy, state);
    }
    let mut open = p.policy.clone();
    open.accept_user_space_ima = true;
    open.boot_events.clear();
    let _ = appraise(&ev, endorsement, &p.ak, &extra, &open, &ReplayState::default());
}

/// An EK certificate (DER, PEM, or as read from an NV index, padded): [`cert_der`],
/// [`issuer`], [`certified_key`] and [`verify_ek`] against the shipped bundle; as an
/// intermediate a worker sends; and as a policy's own root ([`EkPolicy::add_own_root`]).
pub fn ek_cert(data: &[u8]) {
    let _ = cert_der(data);
    let _ = issuer(data);
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = pem_to_der(text);
    }
    let key = certified_key(data);
    let Some(bundle) = fixtures::bundle_policy() else { return };
    if let Ok(key) = &key {
        let _ = verify_ek(data, &[], key, bundle);
    }
    if let Some(ek) = fixtures::ek_key() {
        let _ = verify_ek(fixtures::EK_CERT_ECC, &[data.to_vec()], ek, bundle);
    }
    let mut own = EkPolicy::default();
    if own.add_own_root(data).is_ok() {
        let _ = own.check();
        let _ = own.trusts_outside_bundle();
        if let Ok(key) = &key {
            let _ = verify_ek(data, &[], key, &own);
        }
        if let Some(ek) = fixtures::ek_key() {
            let _ = verify_ek(fixtures::EK_CERT_ECC, &[], ek, &own);
        }
    }
    let _ = own.add_intermediate(data);
}

/// Verifies TEE evidence with the verifier of its kind and, when it verifies, appraises
/// it against a policy that accepts exactly what it claims.
fn tee_verify_and_appraise(ev: &TeeEvidence) {
    let issued = perun_attest::tee::dcap::collateral_issued_at(&ev.collateral).ok();
    let now = issued.map_or(fixtures::FIXED_NOW, |t| t.saturating_add(3600));
    let Ok(v) = verifier(ev.kind) else { return };
    let Ok(claims) = v.verify(ev, now) else { return };
    let policy = TeePolicy {
        name: "fuzz".into(),
        allowed: vec![AllowedTee { kind: Some(claims.kind), measurements: claims.measurements.clone() }],
        min_tcb: TcbLevel::OutOfDate,
        sim_keys: claims.measurements.get("sim_key").cloned().into_iter().collect(),
        min_svn: Default::default(),
        allow_debug: false,
    };
    let report_data = hex::decode(&claims.report_data).unwrap_or_default();
    let _ = appraise_tee(ev, &report_data, &policy, now);
    let _ = appraise_tee(ev, b"another binding", &policy, now);
}

/// TEE evidence as an enclave sends it (JSON [`TeeEvidence`], the `evidence` of
/// `POST /v1/enclave/jobs/{id}/attest`): the verifier of its kind, then [`appraise_tee`].
pub fn tee_evidence(data: &[u8]) {
    let Ok(ev) = serde_json::from_slice::<TeeEvidence>(data) else { return };
    tee_verify_and_appraise(&ev);
}

/// A raw Intel DCAP quote (SGX or TDX): the DCAP verifier of each kind, with the shipped
/// sample collateral, at a time inside its validity.
pub fn tee_dcap_quote(data: &[u8]) {
    for (kind, tdx) in [(TeeKind::Sgx, false), (TeeKind::Tdx, true)] {
        let ev = TeeEvidence { kind, report: data.to_vec(), collateral: fixtures::collateral(tdx).clone() };
        tee_verify_and_appraise(&ev);
    }
}

/// A raw AMD SEV-SNP attestation report: the SNP verifier, with the sample Milan VCEK.
pub fn tee_snp_report(data: &[u8]) {
    let collateral = serde_json::json!({ "vcek": hex::encode(fixtures::SNP_VCEK) });
    tee_verify_and_appraise(&TeeEvidence { kind: TeeKind::SevSnp, report: data.to_vec(), collateral });
}

/// A sim TEE report (JSON), signed by the fixture sim key so that the report itself is
/// read: the sim verifier, then [`appraise_tee`].
pub fn tee_sim_report(data: &[u8]) {
    use ed25519_dalek::Signer as _;
    let key = fixtures::sim_key();
    let collateral = serde_json::json!({
        "public_key": hex::encode(key.verifying_key().as_bytes()),
        "signature": hex::encode(key.sign(data).to_bytes()),
    });
    tee_verify_and_appraise(&TeeEvidence { kind: TeeKind::Sim, report: data.to_vec(), collateral });
}

/// A published policy (JSON, `POST /v1/policies`): [`JobPolicy::from_json`] and the
/// serde path the wire types take, then what approvers are shown of it and the checks it
/// makes of fixed evidence.
pub fn job_policy(data: &[u8]) {
    let _ = serde_json::from_slice::<JobPolicy>(data);
    let _ = TeePolicy::from_json(data);
    let _ = PlatformPolicy::from_json(data);
    let Ok(policy) = JobPolicy::from_json(data) else { return };
    let _ = (policy.name(), policy.mode(), policy.digest(), policy.development(), policy.summary());
    if let JobPolicy::Platform(p) = &policy {
        let _ = p.missing_anchors();
        let _ = p.ek.anchors();
        let _ = p.ek.trusts_outside_bundle();
        let _ = p.check_pcrs(&fixtures::zero_pcrs());
        let _ = p.check_entries(fixtures::sample_entries(), true);
        if let Some(c) = &p.kernel_cmdline {
            let _ = bootlog::kernel_params(c);
            let _ = bootlog::cmdline_measures_what_runs(c);
        }
    }
}
