//! EK certificates as TPM vendors really issue them, and measured-boot event logs of
//! real machines (`tests/data/real-tpm/`, see PROVENANCE.md there), against the shipped
//! bundle of vendors' CAs.

use perun_attest::bootlog;
use perun_attest::ek::{certified_key, verify_ek, EkPolicy};
use perun_attest::AttestError;

const DATA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/real-tpm");

fn read(rel: &str) -> Vec<u8> {
    std::fs::read(format!("{DATA}/{rel}")).unwrap()
}

/// Verifies a real EK certificate against `policy`, with the key it certifies as the
/// EK (the TPM itself is not here; the key match is tested apart).
fn verify(cert: &[u8], policy: &EkPolicy) -> Result<perun_attest::ek::EkVerdict, AttestError> {
    verify_ek(cert, &[], &certified_key(cert).unwrap(), policy)
}

#[test]
fn real_vendor_ek_certificates_chain_to_the_shipped_hardware_roots() {
    // The whole hardware group (every vendor CA an anchor, as Keylime's store).
    let hardware = EkPolicy::from_bundle(&["hardware"]).unwrap();
    for (file, root_name, root_subject, path_len) in [
        ("ek/infineon-slb9670-rsa-ek-mfrca035.der", "INF_RSA_010RT", "Infineon OPTIGA(TM) RSA Root CA", 2),
        ("ek/infineon-slb9670-ecc-ek-mfrca035.der", "INF_ECC_010RT", "Infineon OPTIGA(TM) ECC Root CA", 2),
        // Read from the NV index as it is: the certificate, then 0xFF padding; it climbs
        // three CAs: intermediate 05, the STM root, GlobalSign's TPM root.
        ("ek/stm-st33htph-rsa-ek-ca05-nvpadded.der", "GS_TPM_RT", "GlobalSign", 3),
    ] {
        let v = verify(&read(file), &hardware).unwrap_or_else(|e| panic!("{file}: {e}"));
        assert_eq!(v.group, "hardware", "{file}");
        // Only the vendor's root as anchor: the path goes up to it.
        let root = EkPolicy::from_bundle(&[root_name]).unwrap();
        let v = verify(&read(file), &root).unwrap_or_else(|e| panic!("{file} to {root_name}: {e}"));
        assert_eq!(v.path.len(), path_len, "{file}: {:?}", v.path);
        assert!(v.path.last().unwrap().contains(root_subject), "{file}: {:?}", v.path);
    }
    let v = verify(&read("ek/stm-st33htph-rsa-ek-ca05-nvpadded.der"), &hardware).unwrap();
    assert!(v.path[0].contains("STM TPM EK Intermediate CA 05"), "{:?}", v.path);
}

#[test]
fn a_cloud_vtpm_is_a_separate_trust_decision() {
    let gce = std::fs::read_to_string(format!("{DATA}/ek/google-gce-vtpm-rsa-ek.pem")).unwrap();
    let hardware = EkPolicy::from_bundle(&["hardware"]).unwrap();
    let e = verify(gce.as_bytes(), &hardware).unwrap_err().to_string();
    assert!(e.contains("does not chain to a root this policy lists"), "{e}");
    let cloud = EkPolicy::from_bundle(&["cloud"]).unwrap();
    let v = verify(gce.as_bytes(), &cloud).unwrap();
    assert_eq!(v.group, "cloud");
    // Naming a single vendor root trusts that vendor only.
    let one = EkPolicy::from_bundle(&["INF_RSA_010RT"]).unwrap();
    assert_eq!(one.roots.len(), 1);
    verify(&read("ek/infineon-slb9670-rsa-ek-mfrca035.der"), &one).unwrap();
    assert!(verify(&read("ek/stm-st33htph-rsa-ek-ca05-nvpadded.der"), &one).is_err());
    assert!(verify(&read("ek/infineon-slb9670-ecc-ek-mfrca035.der"), &one).is_err());
}

#[test]
fn edited_certificates_foreign_keys_and_empty_policies_are_refused() {
    let hardware = EkPolicy::from_bundle(&["hardware"]).unwrap();
    let good = read("ek/infineon-slb9670-rsa-ek-mfrca035.der");
    // Any edit inside the signed part breaks the signature (or the encoding).
    for at in [200, 400, good.len() - 300] {
        let mut bad = good.clone();
        bad[at] ^= 0x01;
        let key = certified_key(&good).unwrap();
        assert!(verify_ek(&bad, &[], &key, &hardware).is_err(), "byte {at}");
    }
    // The certificate of one TPM does not vouch for another's EK.
    let other = certified_key(&read("ek/stm-st33htph-rsa-ek-ca05-nvpadded.der")).unwrap();
    let e = verify_ek(&good, &[], &other, &hardware).unwrap_err().to_string();
    assert!(e.contains("certifies another key"), "{e}");
    // A policy with no root accepts no TPM.
    let e = verify(&good, &EkPolicy::default()).unwrap_err().to_string();
    assert!(e.contains("lists no EK root"), "{e}");
    // Junk is refused without a panic.
    for junk in [&b""[..], b"\x30", b"\x30\x82\xff\xff", b"-----BEGIN CERTIFICATE-----\n!!\n-----END CERTIFICATE-----"]
    {
        let key = certified_key(&good).unwrap();
        assert!(verify_ek(junk, &[], &key, &hardware).is_err());
    }
    // An intermediate sent by the worker is never a root.
    let ifx_ca =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/ek-roots/intermediates/ifx-rsa-mfr-ca-035.pem"))
            .unwrap();
    let mut only_stm = EkPolicy::from_bundle(&["STM_RSA_RT"]).unwrap();
    only_stm.add_intermediate(ifx_ca.as_bytes()).unwrap();
    let key = certified_key(&good).unwrap();
    let chain = vec![perun_attest::ek::pem_to_der(&ifx_ca).unwrap()];
    assert!(verify_ek(&good, &chain, &key, &only_stm).is_err());
}

#[test]
fn real_event_logs_replay_to_the_pcrs_their_sources_assert() {
    for name in ["arch-linux-workstation", "glinux-laptop"] {
        let log = bootlog::parse(&read(&format!("eventlogs/{name}.bin"))).unwrap();
        let want: serde_json::Value = serde_json::from_slice(&read(&format!("eventlogs/{name}.pcrs.json"))).unwrap();
        let sha256 = want["banks"]["sha256"].as_object().unwrap();
        assert!(!sha256.is_empty());
        for (pcr, value) in sha256 {
            let i: u32 = pcr.parse().unwrap();
            assert_eq!(hex::encode(log.pcr(i)), value.as_str().unwrap(), "{name} PCR {i}");
        }
        // The same log compared with itself as reference: no difference.
        let reference = bootlog::reference(&log, 0..=9);
        assert!(bootlog::differences(&log, &reference).is_empty());
    }
    // The laptop's firmware started from locality 3 (Intel Boot Guard).
    let laptop = bootlog::parse(&read("eventlogs/glinux-laptop.bin")).unwrap();
    let workstation = bootlog::parse(&read("eventlogs/arch-linux-workstation.bin")).unwrap();
    // One machine's log against the other's reference names where it departs.
    let d = bootlog::differences(&laptop, &bootlog::reference(&workstation, 0..=9));
    assert!(d.iter().any(|l| l.starts_with("PCR 0 event 0:")), "{d:?}");
    // A truncated log is refused, not misread.
    let raw = read("eventlogs/glinux-laptop.bin");
    assert!(bootlog::parse(&raw[..raw.len() - 7]).is_err());
}

/// A certificate of `subject` (a CA) for `key`, signed by `issuer_key` as `issuer`.
fn ca_cert(subject: &str, key: &rcgen::KeyPair, issuer: &str, issuer_key: &rcgen::KeyPair, serial: u64) -> Vec<u8> {
    let params = |cn: &str| {
        let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        p.distinguished_name = rcgen::DistinguishedName::new();
        p.distinguished_name.push(rcgen::DnType::CommonName, cn);
        p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        p
    };
    let mut p = params(subject);
    p.serial_number = Some(serial.into());
    let issuer_key = rcgen::KeyPair::from_pem(&issuer_key.serialize_pem()).unwrap();
    let issuer = rcgen::Issuer::new(params(issuer), issuer_key);
    p.signed_by(key, &issuer).unwrap().der().to_vec()
}

#[test]
fn a_hostile_pool_of_cross_signed_cas_cannot_make_path_building_slow() {
    // Two CAs that certify each other, 16 copies each (the most a policy may carry),
    // and an EK certificate issued by one of them: without a bound on the work, the
    // search would try every path through them.
    let (ka, kb, kek) =
        (rcgen::KeyPair::generate().unwrap(), rcgen::KeyPair::generate().unwrap(), rcgen::KeyPair::generate().unwrap());
    let mut policy = EkPolicy::from_bundle(&["INF_RSA_010RT"]).unwrap();
    for i in 0..8 {
        policy.add_intermediate(&ca_cert("A", &ka, "B", &kb, 2 * i)).unwrap();
        policy.add_intermediate(&ca_cert("B", &kb, "A", &ka, 2 * i + 1)).unwrap();
    }
    let ek_cert = {
        let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        p.distinguished_name = rcgen::DistinguishedName::new();
        let mut ip = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ip.distinguished_name = rcgen::DistinguishedName::new();
        ip.distinguished_name.push(rcgen::DnType::CommonName, "A");
        let issuer = rcgen::Issuer::new(ip, rcgen::KeyPair::from_pem(&ka.serialize_pem()).unwrap());
        p.signed_by(&kek, &issuer).unwrap().der().to_vec()
    };
    let e = verify(&ek_cert, &policy).unwrap_err().to_string();
    assert!(e.contains("does not chain") || e.contains("gave up"), "{e}");
    // The policy may not carry more CAs than the bound.
    for i in 16..18 {
        policy.extra_cas.push(perun_attest::ek::CaCert { der: ca_cert("A", &ka, "B", &kb, i) });
    }
    assert!(policy.check().unwrap_err().to_string().contains("at most 16"));
}

/// Issue 38, 1: names compared as RFC 5280 section 7.1 says. A genuine Intel PTT EK names
/// its issuer with one space where the shipped intermediate's subject has two; the EK's
/// signature verifies under that intermediate's key (as OpenSSL finds), so the chain
/// builds, by the bundle and by the intermediate given explicitly.
#[test]
fn an_issuer_spelled_with_other_insignificant_spaces_still_finds_its_ca() {
    let cert = read("ek/intel-ptt-glk-ecc-ek.der");
    let hardware = EkPolicy::from_bundle(&["hardware"]).unwrap();
    let v = verify(&cert, &hardware).unwrap_or_else(|e| panic!("{e}"));
    assert!(v.path.iter().any(|p| p.contains("GLK_EPID_PROD")), "{:?}", v.path);
    let mut explicit = EkPolicy::from_bundle(&["hardware"]).unwrap();
    let pem = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/ek-roots/intermediates/intel-glk-epid-prod-ek-intermediate.pem"
    ))
    .unwrap();
    explicit.add_intermediate(&pem).unwrap();
    verify(&cert, &explicit).unwrap_or_else(|e| panic!("with the intermediate given: {e}"));
}

/// Issue 38, 1: each remedy the refusal suggests works. A policy trusting a root (as its
/// own, outside the bundle) that reaches an EK only through an intermediate it does not
/// hold refuses the EK, naming two remedies: the intermediate given to the policy (`perun
/// policy generate --ek-intermediate`), or sent by the worker at enrolment (`perun worker
/// enrol --ek-chain`). Each makes the same EK verify.
#[test]
fn every_remedy_the_missing_intermediate_refusal_names_works() {
    let (root_key, mid_key, ek_key) =
        (rcgen::KeyPair::generate().unwrap(), rcgen::KeyPair::generate().unwrap(), rcgen::KeyPair::generate().unwrap());
    let root = ca_cert("Remedy Root CA", &root_key, "Remedy Root CA", &root_key, 1);
    let mid = ca_cert("Remedy EK Intermediate", &mid_key, "Remedy Root CA", &root_key, 2);
    let ek = {
        let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        p.distinguished_name = rcgen::DistinguishedName::new();
        p.serial_number = Some(3u64.into());
        let mut issuer = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        issuer.distinguished_name = rcgen::DistinguishedName::new();
        issuer.distinguished_name.push(rcgen::DnType::CommonName, "Remedy EK Intermediate");
        let issuer = rcgen::Issuer::new(issuer, rcgen::KeyPair::from_pem(&mid_key.serialize_pem()).unwrap());
        p.signed_by(&ek_key, &issuer).unwrap().der().to_vec()
    };
    let mut policy = EkPolicy::default();
    policy.add_own_root(&root).unwrap();
    let e = verify(&ek, &policy).unwrap_err().to_string();
    assert!(e.contains("--ek-intermediate") && e.contains("--ek-chain"), "{e}");
    // The policy's remedy.
    let mut with = policy.clone();
    with.add_intermediate(&mid).unwrap();
    verify(&ek, &with).unwrap_or_else(|e| panic!("--ek-intermediate: {e}"));
    // The enrolment's remedy: the chain the worker sends beside its EK certificate.
    verify_ek(&ek, std::slice::from_ref(&mid), &certified_key(&ek).unwrap(), &policy)
        .unwrap_or_else(|e| panic!("--ek-chain: {e}"));
}
