//! Writes the seed corpus (`corpus/<target>/`): real inputs copied from the repository's
//! test data, and small inputs made here with the fixture keys. Run it after changing a
//! format or a fixture, then review the diff (`corpus/PROVENANCE.md` says where each
//! seed comes from):
//!
//! ```text
//! cargo test -p perun-fuzz --test tests seeds:: -- --ignored
//! ```
//!
//! Seeds that hold fresh randomness (`age` files, HPKE) differ on every run; the others
//! come out the same.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use perun_attest::ima::{extend_all, parse_binary, Entry};
use perun_attest::tee::{sim, TeeEvidence, TeeKind, TeePolicy};
use perun_attest::tpm::{alg, PcrBank};
use perun_attest::JobPolicy;
use perun_core::{AssetKind, AssetRef, Digest, JobManifest, JobMode, JobPurpose, Name, PublicIdentity, Role};
use perun_fuzz::fixtures;
use perun_proto::wire;
use perun_seal::header::AssetHeader;
use perun_seal::Dataset;
use sha1::Digest as _;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn read(rel: &str) -> Vec<u8> {
    std::fs::read(repo().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

struct Corpus {
    written: usize,
}

impl Corpus {
    fn put(&mut self, target: &str, name: &str, bytes: &[u8]) {
        assert!(perun_fuzz::target(target).is_some(), "no target {target}");
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus").join(target);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(name), bytes).unwrap();
        self.written += bytes.len();
    }

    fn copy(&mut self, target: &str, name: &str, rel: &str) {
        self.put(target, name, &read(rel));
    }

    fn json(&mut self, target: &str, name: &str, v: &impl serde::Serialize) {
        self.put(target, name, &serde_json::to_vec_pretty(v).unwrap());
    }
}

/// A case bundle (`tests/data/cases/*/*.json`): EK and AK public areas and evidence.
fn bundle(rel: &str) -> serde_json::Value {
    serde_json::from_slice(&read(rel)).unwrap()
}

fn hex_field(v: &serde_json::Value, path: &[&str]) -> Vec<u8> {
    let mut v = v;
    for p in path {
        v = &v[*p];
    }
    hex::decode(v.as_str().unwrap()).unwrap()
}

fn length_prefixed(fields: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::new();
    for f in fields {
        out.extend_from_slice(&(f.len() as u32).to_le_bytes());
        out.extend_from_slice(f);
    }
    out
}

/// A binary IMA entry of `template` with template data `data`, its hash computed.
fn ima_entry(template: &str, data: &[u8], violation: bool) -> Vec<u8> {
    let hash: [u8; 20] = if violation { [0; 20] } else { sha1::Sha1::digest(data).into() };
    let mut out = 10u32.to_le_bytes().to_vec();
    out.extend_from_slice(&hash);
    out.extend_from_slice(&(template.len() as u32).to_le_bytes());
    out.extend_from_slice(template.as_bytes());
    out.extend_from_slice(&(data.len() as u32).to_le_bytes());
    out.extend_from_slice(data);
    out
}

fn digest_field(algo: &str, d: &[u8]) -> Vec<u8> {
    [format!("{algo}:").as_bytes(), &[0], d].concat()
}

fn name(s: &str) -> Name {
    Name::new(s).unwrap()
}

fn manifest(purpose: JobPurpose) -> JobManifest {
    let asset = |a: &str, o: &str, kind| AssetRef {
        asset: name(a),
        owner: name(o),
        kind,
        content_digest: Digest::of(a.as_bytes()),
    };
    JobManifest {
        schema: perun_core::manifest::MANIFEST_SCHEMA,
        name: "fuzz-mlp".into(),
        mode: if purpose == JobPurpose::Serve { JobMode::Tee } else { JobMode::Attested },
        purpose,
        model: asset("mlp", "model-owner", AssetKind::Model),
        data: if purpose == JobPurpose::Serve {
            Vec::new()
        } else {
            vec![
                asset("bc-a", fixtures::STAKEHOLDER, AssetKind::Dataset),
                asset("bc-b", "hospital-b", AssetKind::Dataset),
            ]
        },
        provider: name("infra"),
        workers: BTreeSet::from(["gpu-1".to_owned()]),
        platform_policy: Digest::of(b"policy"),
        hyperparameters: BTreeMap::from([
            ("epochs".into(), serde_json::json!(30)),
            ("lr".into(), serde_json::json!(0.01)),
        ]),
        receivers: vec![name("model-owner")],
        approvers: BTreeSet::from([name("ethics-board")]),
        privacy: None,
        attestation_interval_s: 60,
        created_at: fixtures::FIXED_NOW,
        expires_at: fixtures::FIXED_NOW + 86_400,
    }
}

fn png(w: u32, h: u32) -> Vec<u8> {
    let img = image::RgbImage::from_fn(w, h, |x, y| image::Rgb([(x * 40) as u8, (y * 40) as u8, 128]));
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png).unwrap();
    out.into_inner()
}

#[test]
#[ignore = "writes the seed corpus: run by hand"]
fn write_the_seed_corpus() {
    let mut c = Corpus { written: 0 };
    let cases = "tests/data/cases";
    let attest_data = "crates/perun-attest/tests/data";

    // IMA logs, binary.
    c.copy(
        "ima_binary",
        "case02-path-spaces.bin",
        &format!("{cases}/02-ima-ascii-path-spaces/binary_runtime_measurements"),
    );
    c.copy("ima_binary", "case04-ima-buf.bin", &format!("{cases}/04-ima-buf/binary_runtime_measurements"));
    c.copy("ima_binary", "case06-sha1-padded.bin", &format!("{cases}/06-ima-sha1-padded-bank/ima.log"));
    c.copy("ima_binary", "case08-boot1.bin", &format!("{cases}/08-tpm-reboot-state/boot1-ima.log"));
    let mut other = Vec::new();
    let legacy_name = b"/init";
    let mut legacy_hashed = vec![2u8; 20];
    legacy_hashed.extend_from_slice(legacy_name);
    legacy_hashed.resize(20 + 256, 0);
    let legacy_hash: [u8; 20] = sha1::Sha1::digest(&legacy_hashed).into();
    other.extend_from_slice(&10u32.to_le_bytes());
    other.extend_from_slice(&legacy_hash);
    other.extend_from_slice(&3u32.to_le_bytes());
    other.extend_from_slice(b"ima");
    other.extend_from_slice(&[2u8; 20]);
    other.extend_from_slice(&(legacy_name.len() as u32).to_le_bytes());
    other.extend_from_slice(legacy_name);
    let sig = [0x03, 0x02, 0x04, 0x01, 0x02, 0x03];
    other.extend(ima_entry(
        "ima-sig",
        &length_prefixed(&[&digest_field("sha256", &[5; 32]), b"/usr/bin/signed\0", &sig]),
        false,
    ));
    other.extend(ima_entry(
        "ima-ngv2",
        &length_prefixed(&[&digest_field("ima:sha256", &[6; 32]), b"/usr/lib/v2.so\0"]),
        false,
    ));
    other.extend(ima_entry(
        "ima-modsig",
        &length_prefixed(&[
            &digest_field("sha256", &[7; 32]),
            b"/lib/modules/x.ko\0",
            &[],
            &digest_field("sha256", &[8; 32]),
            &[0x30, 0x03, 1, 2, 3],
        ]),
        false,
    ));
    other.extend(ima_entry(
        "ima-ng",
        &length_prefixed(&[&digest_field("sha1", &[0; 20]), b"/tmp/open-for-write\0"]),
        true,
    ));
    c.put("ima_binary", "gen-legacy-sig-ngv2-modsig-violation.bin", &other);

    // IMA logs, ASCII.
    c.copy(
        "ima_ascii",
        "case02-path-spaces.txt",
        &format!("{cases}/02-ima-ascii-path-spaces/ascii_runtime_measurements"),
    );
    c.copy("ima_ascii", "case04-ima-buf.txt", &format!("{cases}/04-ima-buf/ascii_runtime_measurements"));
    let entries: Vec<Entry> = parse_binary(&other, 0).unwrap().into_iter().map(|(e, _)| e).collect();
    let mut ascii = String::new();
    for e in entries.iter().filter(|e| !e.violation) {
        let fields = match e.template.as_str() {
            "ima" => format!("{} /init", hex::encode(&e.file_digest.digest)),
            "ima-sig" => format!("{} /usr/bin/signed {}", e.file_digest.to_text(), hex::encode(sig)),
            "ima-modsig" => {
                format!("{} /lib/modules/x.ko  sha256:{} 3003010203", e.file_digest.to_text(), hex::encode([8u8; 32]))
            }
            _ => format!("{} {}", e.file_digest.to_text(), e.path),
        };
        ascii.push_str(&format!("10 {} {} {fields}\n", hex::encode(e.template_hash), e.template));
    }
    let newline = Entry::ima_ng("/tmp/a\nb", "sha256", &[9; 32]);
    ascii.push_str(&format!(
        " 9 {} ima-ng sha256:{} /tmp/a\nb\n",
        hex::encode(newline.template_hash),
        hex::encode([9u8; 32])
    ));
    c.put("ima_ascii", "gen-legacy-sig-ngv2-modsig-newline.txt", ascii.as_bytes());

    // Measured-boot logs.
    c.copy(
        "boot_event_log",
        "arch-linux-workstation.bin",
        &format!("{attest_data}/real-tpm/eventlogs/arch-linux-workstation.bin"),
    );
    c.copy("boot_event_log", "glinux-laptop.bin", &format!("{attest_data}/real-tpm/eventlogs/glinux-laptop.bin"));

    // TPM structures, quotes and evidence from the case bundles.
    let bundles = [
        ("case04", format!("{cases}/04-ima-buf/bundle.json")),
        ("case06", format!("{cases}/06-ima-sha1-padded-bank/bundle-padded.json")),
        ("case08", format!("{cases}/08-tpm-reboot-state/round2-short.json")),
    ];
    for (tag, path) in &bundles {
        let b = bundle(path);
        c.put("tpm_public", &format!("{tag}-ek-tpmt.bin"), &hex_field(&b, &["ek_public"]));
        c.put("tpm_public", &format!("{tag}-ak-tpm2b.bin"), &hex_field(&b, &["ak_public"]));
        c.put("tpm_quote", &format!("{tag}-quote.bin"), &hex_field(&b, &["evidence", "quote"]));
        c.put("tpm_signature", &format!("{tag}-signature.bin"), &hex_field(&b, &["evidence", "signature"]));
        c.json("tpm_evidence", &format!("{tag}-evidence.json"), &b["evidence"]);
    }
    c.put("tpm_public", "gen-fixture-ak-tpmt.bin", &fixtures::ak_tpmt());
    // An RSA EK as `tpm2_createek -G rsa` makes it: AES-128-CFB storage key.
    let rsa_ek = {
        use rsa_parts::modulus_of;
        let n = modulus_of(fixtures::EK_CERT_RSA);
        let mut t = Vec::new();
        for v in [alg::RSA, alg::SHA256] {
            t.extend_from_slice(&v.to_be_bytes());
        }
        t.extend_from_slice(&0x0003_00b2u32.to_be_bytes());
        t.extend_from_slice(&32u16.to_be_bytes());
        t.extend_from_slice(&[0x83; 32]);
        for v in [alg::AES, 128, alg::CFB, alg::NULL, 2048] {
            t.extend_from_slice(&v.to_be_bytes());
        }
        t.extend_from_slice(&0u32.to_be_bytes());
        t.extend_from_slice(&(n.len() as u16).to_be_bytes());
        t.extend_from_slice(&n);
        t
    };
    c.put("tpm_public", "gen-rsa-ek-tpmt.bin", &rsa_ek);
    let zeros = [[0u8; 32]; 11];
    let pcrs: Vec<u32> = (0..=10).collect();
    c.put("tpm_quote", "gen-quote-pcrs0-10.bin", &fixtures::make_quote(b"nonce", &pcrs, &zeros, 7));
    c.put("tpm_quote", "gen-quote-pcr10.bin", &fixtures::make_quote(&[0xaa; 32], &[10], &zeros[..1], 0));
    c.put("tpm_signature", "gen-fixture-ecdsa.bin", &fixtures::sign_tpm(b"perun-fuzz quote"));
    let mut rsassa = vec![0x00, 0x14, 0x00, 0x0b, 0x01, 0x00];
    rsassa.extend_from_slice(&[0x5a; 256]);
    c.put("tpm_signature", "gen-rsassa-shape.bin", &rsassa);

    // Evidence that passes the quote checks of the fixture platform: PCRs 0-9 zeros (as
    // the policy pins them), PCR 10 the fixture IMA log's replay.
    let log_entries: Vec<Entry> = parse_binary(fixtures::IMA_LOG, 0).unwrap().into_iter().map(|(e, _)| e).collect();
    let mut values: BTreeMap<u32, Vec<u8>> = (0..=9).map(|i| (i, vec![0u8; 32])).collect();
    let pcr10 = extend_all([0; 32], &log_entries);
    values.insert(10, pcr10.to_vec());
    let mut vals = [[0u8; 32]; 11];
    vals[10] = pcr10;
    let quote = fixtures::make_quote(b"fuzz-binding", &pcrs, &vals, 3);
    let ev = perun_attest::evidence::TpmEvidence {
        signature: fixtures::sign_tpm(&quote),
        quote,
        pcrs: PcrBank { hash_alg: alg::SHA256, values },
        ima_log: fixtures::IMA_LOG.to_vec(),
        ima_source: perun_attest::evidence::ImaSource::Kernel,
        event_log: Vec::new(),
    };
    c.json("tpm_evidence", "gen-fixture-platform.json", &ev);

    // EK certificates.
    for f in [
        "infineon-slb9670-ecc-ek-mfrca035.der",
        "infineon-slb9670-rsa-ek-mfrca035.der",
        "stm-st33htph-rsa-ek-ca05-nvpadded.der",
        "google-gce-vtpm-rsa-ek.pem",
    ] {
        c.copy("ek_cert", f, &format!("{attest_data}/real-tpm/ek/{f}"));
    }
    let ca = perun_attest::ek::bundle()
        .find(|b| b.name.contains("INF_ECC"))
        .or_else(|| perun_attest::ek::bundle().next())
        .unwrap();
    c.put("ek_cert", &format!("bundle-{}.pem", ca.name), ca.pem.as_bytes());

    // TEE evidence.
    let tee = format!("{attest_data}/tee");
    c.copy("tee_dcap_quote", "sgx_quote", &format!("{tee}/sgx_quote"));
    c.copy("tee_dcap_quote", "tdx_quote", &format!("{tee}/tdx_quote"));
    let snp_report = hex::decode(String::from_utf8(read(&format!("{tee}/report_milan.hex"))).unwrap().trim()).unwrap();
    c.put("tee_snp_report", "report_milan.bin", &snp_report);
    let sim_ev = sim::make_evidence(&fixtures::sim_key(), &[0x5e; 32], b"binding").unwrap();
    c.put("tee_sim_report", "gen-sim-report.json", &sim_ev.report);
    c.json("tee_evidence", "gen-sim.json", &sim_ev);
    c.json(
        "tee_evidence",
        "snp-milan.json",
        &TeeEvidence {
            kind: TeeKind::SevSnp,
            report: snp_report,
            collateral: serde_json::json!({ "vcek": hex::encode(read(&format!("{tee}/vcek_milan.der"))) }),
        },
    );
    c.json(
        "tee_evidence",
        "sgx.json",
        &TeeEvidence {
            kind: TeeKind::Sgx,
            report: read(&format!("{tee}/sgx_quote")),
            collateral: serde_json::from_slice(&read(&format!("{tee}/sgx_quote_collateral.json"))).unwrap(),
        },
    );

    // Policies.
    let platform = fixtures::platform().unwrap();
    c.json("job_policy", "gen-platform.json", &JobPolicy::Platform(platform.policy.clone()));
    let tee_policy = TeePolicy {
        name: "fuzz-tee".into(),
        allowed: vec![perun_attest::tee::AllowedTee {
            kind: Some(TeeKind::Tdx),
            measurements: BTreeMap::from([("mr_td".into(), "ab".repeat(48))]),
        }],
        min_tcb: perun_attest::tee::TcbLevel::SwHardeningNeeded,
        sim_keys: BTreeSet::from([hex::encode(fixtures::sim_key().verifying_key().as_bytes())]),
        min_svn: Default::default(),
        allow_debug: false,
    };
    c.json("job_policy", "gen-tee.json", &tee_policy);
    c.copy("job_policy", "case08-schema1.json", &format!("{cases}/08-tpm-reboot-state/policy.json"));

    // Sealed headers and files.
    let key = fixtures::asset_key().unwrap();
    let payload = b"label,x\n1,0.5\n";
    let header = AssetHeader::new(AssetKind::Dataset, Digest::of(payload), payload.len() as u64);
    c.put("sealed_header", "gen-header-payload.bin", &[header.encode(), payload.to_vec()].concat());
    let wrong = AssetHeader::new(AssetKind::Model, Digest::of(b"other"), 3);
    c.put("sealed_header", "gen-header-mismatch.bin", &[wrong.encode(), payload.to_vec()].concat());
    c.put("sealed_header", "gen-header-json.json", &serde_json::to_vec(&header).unwrap());
    c.copy("sealed_file", "case09-armored.age", &format!("{cases}/09-age-armored/armored.age"));
    c.copy("sealed_file", "case09-binary.age", &format!("{cases}/09-age-armored/binary.age"));
    let sealed = perun_seal::seal(&payload[..], &header, &[key.recipient()], Vec::new()).unwrap();
    c.put("sealed_file", "gen-perun-sealed.age", &sealed);
    c.put(
        "sealed_file",
        "gen-wrapped-key.age",
        &perun_seal::wrap::wrap(
            b"AGE-SECRET-KEY-1FUZZ",
            &key.recipient(),
            &perun_seal::wrap::WrapContext::other("fuzz", &[b"seed"]),
        )
        .unwrap(),
    );

    // Manifests.
    c.json("manifest", "gen-train.json", &manifest(JobPurpose::Train));
    c.json("manifest", "gen-serve.json", &manifest(JobPurpose::Serve));

    // API bodies and signed requests.
    let b4 = bundle(&bundles[0].1);
    let identity = PublicIdentity::new(
        name(fixtures::STAKEHOLDER),
        &fixtures::stakeholder_key().verifying_key(),
        key.recipient().to_string(),
    );
    c.json(
        "wire_request",
        "register-stakeholder.json",
        &wire::RegisterStakeholder { identity, roles: BTreeSet::from([Role::DataOwner, Role::Receiver]) },
    );
    c.json("wire_request", "propose-job.json", &wire::ProposeJob { manifest: manifest(JobPurpose::Train) });
    c.json(
        "wire_request",
        "enrol-worker.json",
        &serde_json::json!({
            "name": "gpu-1",
            "ek_public": b4["ek_public"],
            "ek_certificate": hex::encode(fixtures::EK_CERT_ECC),
            "ek_chain": [hex::encode(read(&format!("{attest_data}/real-tpm/ek/infineon-slb9670-rsa-ek-mfrca035.der")))],
        }),
    );
    c.json(
        "wire_request",
        "present-ak.json",
        &serde_json::json!({ "ek_public": b4["ek_public"], "ak_public": b4["ak_public"] }),
    );
    c.json(
        "wire_request",
        "attest.json",
        &serde_json::json!({ "nonce": "00", "ephemeral_key": "11".repeat(32), "evidence": b4["evidence"] }),
    );
    c.json(
        "wire_request",
        "attest-enclave.json",
        &serde_json::json!({ "enclave": "enclave-1", "nonce": "00", "ephemeral_key": "11".repeat(32), "evidence": sim_ev }),
    );
    c.json("wire_request", "finish.json", &serde_json::json!({ "outputs": [{ "name": "model", "sealed_digest": Digest::of(b"m"), "location": "/out/model.age" }] }));
    c.json(
        "wire_request",
        "metrics.json",
        &serde_json::json!({ "epoch": 3, "values": { "loss": 0.25, "accuracy": 0.9 } }),
    );
    let trust = fixtures::trust().unwrap();
    c.json("wire_request", "audit-log.json", &trust.audit_log(&name(fixtures::STAKEHOLDER)).unwrap());
    let job = manifest(JobPurpose::Train);
    let approval =
        perun_core::sign_digest(&fixtures::stakeholder_key(), perun_core::manifest::APPROVAL_CONTEXT, &job.digest());
    c.json("wire_request", "approve.json", &wire::ApproveJob { signature: approval });

    let propose = serde_json::to_vec(&wire::ProposeJob { manifest: manifest(JobPurpose::Train) }).unwrap();
    c.put(
        "signed_request",
        "gen-propose.txt",
        &fixtures::signed_request("POST", "/v1/jobs", &propose, &"ab".repeat(16)),
    );
    c.put(
        "signed_request",
        "gen-list-assets.txt",
        &fixtures::signed_request("GET", "/v1/assets?owner=x", b"", &"cd".repeat(16)),
    );
    let mut stale = fixtures::signed_request("GET", "/v1/audit", b"", &"ef".repeat(8));
    let at = stale.windows(10).position(|w| w == fixtures::FIXED_NOW.to_string().as_bytes()).unwrap();
    stale[at] = b'2';
    c.put("signed_request", "gen-stale-time.txt", &stale);

    // Datasets.
    c.copy("dataset_csv", "case12-bom-label-first.csv", &format!("{cases}/12-csv-bom/bom_label_first.csv"));
    c.copy("dataset_csv", "case14-semicolon.csv", &format!("{cases}/14-csv-semicolon-one-column/semicolon.csv"));
    c.copy("dataset_csv", "case14-one-column.csv", &format!("{cases}/14-csv-semicolon-one-column/one_column.csv"));
    c.put(
        "dataset_csv",
        "gen-quoted-string-labels.csv",
        b"\"a, b\",x,label\n1.5,2,cat\n\"3\",4e2,dog\n\n-1,0.25,\"cat\"\n",
    );
    c.put("dataset_csv", "gen-tab-integer-labels.tsv", b"f1\tf2\tclass\r\n0\t1\t10\r\n1\t0\t2\r\n");

    c.put("dataset_images", "gen-rgb-4x4.png", &png(4, 4));
    let mut gray16 = std::io::Cursor::new(Vec::new());
    image::ImageBuffer::<image::Luma<u16>, Vec<u16>>::from_pixel(2, 3, image::Luma([25701]))
        .write_to(&mut gray16, image::ImageFormat::Png)
        .unwrap();
    c.put("dataset_images", "gen-gray16-2x3.png", &gray16.into_inner());
    let mut jpeg = std::io::Cursor::new(Vec::new());
    image::RgbImage::from_fn(8, 8, |x, y| image::Rgb([(x * 30) as u8, (y * 30) as u8, 60]))
        .write_to(&mut jpeg, image::ImageFormat::Jpeg)
        .unwrap();
    c.put("dataset_images", "gen-rgb-8x8.jpg", &jpeg.into_inner());

    let record = |label: u8| -> Vec<u8> {
        let mut r = vec![label];
        r.extend((0..3072u32).map(|i| (i % 251) as u8));
        r
    };
    c.put("dataset_cifar", "gen-two-records.bin", &[record(3), record(9)].concat());
    c.put("dataset_cifar", "gen-meta-then-record.bin", &[b"cat\ndog\n\0".to_vec(), record(1)].concat());

    for f in [
        "a_metadata_number",
        "b_features_f64",
        "c_labels_u8",
        "control_plain",
        "d_label_minus100",
        "e_label_i64max",
        "f_label_4e9",
    ] {
        c.copy(
            "dataset_safetensors",
            &format!("case17-{f}.safetensors"),
            &format!("{cases}/17-safetensors-foreign/{f}.safetensors"),
        );
    }
    let ds = Dataset::new(
        vec![0.0, 0.5, 1.0, 0.25, 0.75, 0.125],
        vec![3],
        vec![0, 1],
        vec!["benign".into(), "malignant".into()],
        vec!["a".into(), "b".into(), "c".into()],
        Some(Digest::of(b"source")),
    )
    .unwrap();
    c.put("dataset_safetensors", "gen-perun-container.safetensors", &ds.to_safetensors().unwrap());

    eprintln!("wrote {} bytes of seeds", c.written);
    assert!(c.written < 2 << 20, "the corpus should stay under 2 MB");
}

/// The RSA modulus of a certificate, read with the verifier's own parser.
mod rsa_parts {
    pub fn modulus_of(cert: &[u8]) -> Vec<u8> {
        match perun_attest::ek::certified_key(cert).unwrap() {
            perun_attest::tpm::PublicKey::Rsa(k) => {
                use rsa::traits::PublicKeyParts as _;
                k.n().to_bytes_be()
            }
            _ => panic!("not an RSA certificate"),
        }
    }
}
