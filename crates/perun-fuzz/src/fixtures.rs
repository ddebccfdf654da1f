//! Fixed keys, certificates and services the targets check their input against, each
//! built once per process. Everything here is deterministic (fixed secret bytes, files
//! shipped in `fixtures/`), so that a seed made with these keys ([`sign_tpm`],
//! [`signed_request`]) reaches the same code on every run.
//!
//! None of these keys protects anything: they exist only so that fuzz input can pass a
//! signature check and reach the parsing behind it.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, OnceLock};

use perun_attest::bootlog;
use perun_attest::ek::{certified_key, EkPolicy};
use perun_attest::ima::{parse_binary, Entry};
use perun_attest::policy::{PlatformPolicy, POLICY_SCHEMA};
use perun_attest::tpm::{alg, AkPublic, PcrBank, PublicKey};
use perun_core::{Digest, Name, PublicIdentity, Role};
use perun_proto::auth::SignedHeaders;
use perun_proto::wire::RegisterStakeholder;
use perun_seal::AssetKey;
use perun_trust::service::stakeholders::RequestParts;
use perun_trust::{Clock, ServiceKeys, SqliteStore, Trust, TrustConfig};
use sha2::{Digest as _, Sha256};

/// The time the fixture trust service's clock shows (Unix seconds), and the time seeds
/// of signed requests carry.
pub const FIXED_NOW: u64 = 1_764_130_000;

/// The stakeholder registered with the fixture trust service.
pub const STAKEHOLDER: &str = "fuzz-owner";

/// The `age` identity of case 09 (`tests/data/cases/09-age-armored/key.txt`): its
/// sealed files are seeds, and the fixture service unwraps with it.
pub const AGE_KEY: &str = include_str!("../fixtures/age-key.txt");

/// A real Infineon ECC P-256 EK certificate (see `corpus/PROVENANCE.md`).
pub const EK_CERT_ECC: &[u8] = include_bytes!("../fixtures/ek-infineon-ecc.der");
/// A real Infineon RSA-2048 EK certificate: the RSA key of [`rsa_key`].
pub const EK_CERT_RSA: &[u8] = include_bytes!("../fixtures/ek-infineon-rsa.der");
/// dcap-qvl's sample SGX collateral.
pub const SGX_COLLATERAL: &str = include_str!("../fixtures/sgx_quote_collateral.json");
/// dcap-qvl's sample TDX collateral.
pub const TDX_COLLATERAL: &str = include_str!("../fixtures/tdx_quote_collateral.json");
/// The `sev` crate's sample Milan VCEK (DER).
pub const SNP_VCEK: &[u8] = include_bytes!("../fixtures/vcek_milan.der");
/// The binary IMA log of case 04 (an `ima-buf` entry).
pub const IMA_LOG: &[u8] = include_bytes!("../fixtures/ima-buf.bin");
/// A real TCG2 event log (Intel Boot Guard laptop), the reference boot of the policy.
pub const BOOT_LOG: &[u8] = include_bytes!("../fixtures/bootlog-glinux-laptop.bin");

/// The secret scalar of the fixture attestation key (ECC P-256).
const AK_SCALAR: [u8; 32] = [0x11; 32];
/// The secret of the fixture stakeholder's Ed25519 key.
const STAKEHOLDER_SECRET: [u8; 32] = [0x42; 32];
/// The secret of the fixture service's audit key.
const SERVICE_SECRET: [u8; 32] = [0x24; 32];
/// The secret of the fixture sim TEE's key.
const SIM_SECRET: [u8; 32] = [0x33; 32];
/// Stands in for the service's TLS certificate: its digest is the requests' audience.
const SERVICE_CERT: &[u8] = b"perun-fuzz fixture TLS certificate";

/// The fixture `age` identity ([`AGE_KEY`]).
pub fn asset_key() -> Option<&'static AssetKey> {
    static KEY: OnceLock<Option<AssetKey>> = OnceLock::new();
    KEY.get_or_init(|| AssetKey::parse(AGE_KEY).ok()).as_ref()
}

/// The fixture attestation key's signing half.
pub fn ak_signing_key() -> Option<p256::ecdsa::SigningKey> {
    p256::ecdsa::SigningKey::from_slice(&AK_SCALAR).ok()
}

/// The fixture AK's `TPMT_PUBLIC`: a restricted ECDSA P-256 signing key made in its TPM,
/// laid out as `tpm2_createak -G ecc` writes it.
pub fn ak_tpmt() -> Vec<u8> {
    let Some(key) = ak_signing_key() else { return Vec::new() };
    let point = key.verifying_key().to_encoded_point(false);
    let mut out = Vec::new();
    for v in [alg::ECC, alg::SHA256] {
        out.extend_from_slice(&v.to_be_bytes());
    }
    out.extend_from_slice(&0x0005_0022u32.to_be_bytes()); // fixedTPM, sensitiveDataOrigin, restricted, sign
    put_tpm2b(&mut out, &[]); // authPolicy
    for v in [alg::NULL, alg::ECDSA, alg::SHA256, alg::NIST_P256, alg::NULL] {
        out.extend_from_slice(&v.to_be_bytes());
    }
    put_tpm2b(&mut out, point.x().map(|x| x.as_slice()).unwrap_or_default());
    put_tpm2b(&mut out, point.y().map(|y| y.as_slice()).unwrap_or_default());
    out
}

/// The fixture AK, parsed.
pub fn ak() -> Option<&'static AkPublic> {
    static AK: OnceLock<Option<AkPublic>> = OnceLock::new();
    AK.get_or_init(|| AkPublic::parse_tpmt(&ak_tpmt()).ok()).as_ref()
}

/// An RSA key (the one [`EK_CERT_RSA`] certifies) as an AK, for the RSASSA branch of
/// signature verification.
pub fn rsa_key() -> Option<&'static AkPublic> {
    static RSA: OnceLock<Option<AkPublic>> = OnceLock::new();
    RSA.get_or_init(|| {
        let key = certified_key(EK_CERT_RSA).ok()?;
        Some(AkPublic {
            key,
            name_alg: alg::SHA256,
            attributes: 0,
            symmetric: None,
            name: Vec::new(),
            tpmt: Vec::new(),
        })
    })
    .as_ref()
}

/// A `TPMT_SIGNATURE` (ECDSA, SHA-256) by the fixture AK over `message`: what lets a
/// fuzzed `TPMS_ATTEST` past the signature check to the checks behind it.
pub fn sign_tpm(message: &[u8]) -> Vec<u8> {
    use p256::ecdsa::signature::hazmat::PrehashSigner as _;
    let Some(key) = ak_signing_key() else { return Vec::new() };
    let sig: Result<p256::ecdsa::Signature, _> = key.sign_prehash(&Sha256::digest(message));
    let Ok(sig) = sig else { return Vec::new() };
    let (r, s) = sig.split_bytes();
    let mut out = Vec::new();
    out.extend_from_slice(&alg::ECDSA.to_be_bytes());
    out.extend_from_slice(&alg::SHA256.to_be_bytes());
    put_tpm2b(&mut out, &r);
    put_tpm2b(&mut out, &s);
    out
}

/// A `TPMS_ATTEST` quote (as a TPM lays it out) over the SHA-256 PCRs `pcrs`, with
/// `extra_data` as its qualifying data and the digest of `values` concatenated.
pub fn make_quote(extra_data: &[u8], pcrs: &[u32], values: &[[u8; 32]], reset_count: u32) -> Vec<u8> {
    let mut q = Vec::new();
    q.extend_from_slice(&0xff54_4347u32.to_be_bytes());
    q.extend_from_slice(&0x8018u16.to_be_bytes());
    let name = ak().map(|a| a.name.clone()).unwrap_or_default();
    put_tpm2b(&mut q, &name);
    put_tpm2b(&mut q, extra_data);
    q.extend_from_slice(&5_000_000u64.to_be_bytes()); // clock
    q.extend_from_slice(&reset_count.to_be_bytes());
    q.extend_from_slice(&0u32.to_be_bytes()); // restartCount
    q.push(1); // safe
    q.extend_from_slice(&0x2019_1023_0016_3636u64.to_be_bytes()); // firmware version
    q.extend_from_slice(&1u32.to_be_bytes());
    q.extend_from_slice(&alg::SHA256.to_be_bytes());
    q.push(3);
    let mut bits = [0u8; 3];
    for &p in pcrs.iter().filter(|&&p| p < 24) {
        bits[p as usize / 8] |= 1 << (p % 8);
    }
    q.extend_from_slice(&bits);
    let mut h = Sha256::new();
    for v in values {
        h.update(v);
    }
    put_tpm2b(&mut q, &h.finalize());
    q
}

/// The PCR values a verifier would be sent for the first bank `selection` names: zeros
/// for each PCR it selects (at most 64), the values [`make_quote`] seeds are made over.
pub fn zero_bank(selection: &[(u16, Vec<u32>)]) -> PcrBank {
    let Some((hash_alg, pcrs)) = selection.first() else { return PcrBank::default() };
    PcrBank { hash_alg: *hash_alg, values: pcrs.iter().take(64).map(|&p| (p, vec![0u8; 32])).collect() }
}

fn put_tpm2b(out: &mut Vec<u8>, data: &[u8]) {
    out.extend_from_slice(&u16::try_from(data.len()).unwrap_or(u16::MAX).to_be_bytes());
    out.extend_from_slice(data);
}

/// What an appraisal of TPM evidence is made against.
pub struct Platform {
    /// The worker's EK (the key [`EK_CERT_ECC`] certifies, as an ECC storage key).
    pub ek: AkPublic,
    /// Its EK certificate.
    pub ek_cert: Vec<u8>,
    /// The worker's AK ([`ak`]).
    pub ak: AkPublic,
    /// A platform policy: the shipped hardware roots, the files of [`IMA_LOG`], the boot
    /// events of [`BOOT_LOG`] and every boot PCR pinned to zeros.
    pub policy: PlatformPolicy,
}

/// The fixture platform ([`Platform`]).
pub fn platform() -> Option<&'static Platform> {
    static PLATFORM: OnceLock<Option<Platform>> = OnceLock::new();
    PLATFORM
        .get_or_init(|| {
            let key = certified_key(EK_CERT_ECC).ok()?;
            let ek = AkPublic {
                key,
                name_alg: alg::SHA256,
                attributes: 0x0003_00b2,
                symmetric: Some((alg::AES, 128, alg::CFB)),
                name: Vec::new(),
                tpmt: Vec::new(),
            };
            let entries = sample_entries();
            let mut policy = PlatformPolicy::from_log("fuzz", entries);
            policy.schema = POLICY_SCHEMA;
            policy.ek = EkPolicy::from_bundle(&["hardware"]).ok()?;
            policy.required_pcrs = (0..=9).map(|i| (i, hex::encode([0u8; 32]))).collect();
            policy.excludes = vec!["/tmp".into(), "/var/log".into()];
            policy.worker_binary = entries.iter().find(|e| e.path != "boot_aggregate").map(|e| e.file_digest.to_text());
            if let Ok(log) = bootlog::parse(BOOT_LOG) {
                policy.boot_events = bootlog::reference(&log, 0..=9);
            }
            Some(Platform { ek, ek_cert: EK_CERT_ECC.to_vec(), ak: ak()?.clone(), policy })
        })
        .as_ref()
}

/// The entries of [`IMA_LOG`].
pub fn sample_entries() -> &'static [Entry] {
    static ENTRIES: OnceLock<Vec<Entry>> = OnceLock::new();
    ENTRIES
        .get_or_init(|| parse_binary(IMA_LOG, 0).map(|v| v.into_iter().map(|(e, _)| e).collect()).unwrap_or_default())
}

/// SHA-256 PCRs 0 to 10, all zeros.
pub fn zero_pcrs() -> PcrBank {
    PcrBank { hash_alg: alg::SHA256, values: (0..=10).map(|i| (i, vec![0u8; 32])).collect() }
}

/// The shipped hardware and cloud EK roots, as one policy.
pub fn bundle_policy() -> Option<&'static EkPolicy> {
    static POLICY: OnceLock<Option<EkPolicy>> = OnceLock::new();
    POLICY.get_or_init(|| EkPolicy::from_bundle(&["hardware", "cloud"]).ok()).as_ref()
}

/// The EK key [`EK_CERT_ECC`] certifies.
pub fn ek_key() -> Option<&'static PublicKey> {
    static KEY: OnceLock<Option<PublicKey>> = OnceLock::new();
    KEY.get_or_init(|| certified_key(EK_CERT_ECC).ok()).as_ref()
}

/// A DCAP collateral of the samples, parsed.
pub fn collateral(tdx: bool) -> &'static serde_json::Value {
    static SGX: OnceLock<serde_json::Value> = OnceLock::new();
    static TDX: OnceLock<serde_json::Value> = OnceLock::new();
    if tdx {
        TDX.get_or_init(|| serde_json::from_str(TDX_COLLATERAL).unwrap_or_default())
    } else {
        SGX.get_or_init(|| serde_json::from_str(SGX_COLLATERAL).unwrap_or_default())
    }
}

/// The fixture sim TEE's key.
pub fn sim_key() -> ed25519_dalek::SigningKey {
    ed25519_dalek::SigningKey::from_bytes(&SIM_SECRET)
}

/// The fixture stakeholder's signing key.
pub fn stakeholder_key() -> ed25519_dalek::SigningKey {
    ed25519_dalek::SigningKey::from_bytes(&STAKEHOLDER_SECRET)
}

/// The fixture service's audit key.
pub fn service_key() -> ed25519_dalek::SigningKey {
    ed25519_dalek::SigningKey::from_bytes(&SERVICE_SECRET)
}

/// The audience signed requests to the fixture service name: its "certificate"'s digest.
pub fn audience() -> Digest {
    Digest::of(SERVICE_CERT)
}

/// A trust service over an in-memory store, on a clock stopped at [`FIXED_NOW`], with
/// keys from fixed secrets and [`STAKEHOLDER`] registered (as a data owner, with the
/// key of [`stakeholder_key`]).
pub fn trust() -> Option<&'static Trust<SqliteStore>> {
    static TRUST: OnceLock<Option<Trust<SqliteStore>>> = OnceLock::new();
    TRUST
        .get_or_init(|| {
            let keys = ServiceKeys {
                signing: service_key(),
                wrap: AssetKey::parse(AGE_KEY).ok()?,
                tls_cert: SERVICE_CERT.to_vec(),
                tls_key: Default::default(),
            };
            let clock = Clock::Manual(Arc::new(AtomicU64::new(FIXED_NOW)));
            let trust = Trust::new(SqliteStore::in_memory().ok()?, keys, clock, TrustConfig::default());
            let name = Name::new(STAKEHOLDER).ok()?;
            let key = stakeholder_key();
            let recipient = asset_key()?.recipient().to_string();
            let body = RegisterStakeholder {
                identity: PublicIdentity::new(name.clone(), &key.verifying_key(), recipient),
                roles: BTreeSet::from([Role::DataOwner]),
            };
            let raw = serde_json::to_vec(&body).ok()?;
            let path = "/v1/stakeholders";
            let sh = SignedHeaders::sign(&key, &name, &audience(), "POST", path, &raw, FIXED_NOW);
            let fingerprint = body.identity.fingerprint();
            trust.register_stakeholder(None, &sh, RequestParts { method: "POST", path, body: &raw }, body).ok()?;
            trust.admit(&name, &fingerprint).ok()?;
            Some(trust)
        })
        .as_ref()
}

/// A request as the `signed_request` target reads it, signed by the fixture stakeholder
/// at [`FIXED_NOW`] with `nonce`: `METHOD PATH`, one `name: value` line per header, an
/// empty line, the body.
pub fn signed_request(method: &str, path: &str, body: &[u8], nonce: &str) -> Vec<u8> {
    use perun_proto::auth::{request_digest, REQUEST_CONTEXT};
    let d = request_digest(&audience(), method, path, body, FIXED_NOW, nonce);
    let sig = perun_core::sign_digest(&stakeholder_key(), REQUEST_CONTEXT, &d);
    let headers: BTreeMap<&str, String> = BTreeMap::from([
        (perun_proto::auth::H_IDENTITY, STAKEHOLDER.to_owned()),
        (perun_proto::auth::H_TIME, FIXED_NOW.to_string()),
        (perun_proto::auth::H_NONCE, nonce.to_owned()),
        (perun_proto::auth::H_SIGNATURE, sig.to_string()),
    ]);
    let mut out = format!("{method} {path}\n").into_bytes();
    for (k, v) in headers {
        out.extend_from_slice(format!("{k}: {v}\n").as_bytes());
    }
    out.push(b'\n');
    out.extend_from_slice(body);
    out
}

/// `plaintext` encrypted to the fixture identity ([`asset_key`]) as a binary `age` file,
/// whatever it holds: how anyone who knows a recipient can make a file that opens with
/// its key (`perun_seal::seal` writes only plaintexts whose header it made).
pub fn age_encrypt(plaintext: &[u8]) -> Option<Vec<u8>> {
    use std::io::Write as _;
    let recipient = asset_key()?.recipient();
    let encryptor = age::Encryptor::with_recipients(std::iter::once(&recipient as &dyn age::Recipient)).ok()?;
    let mut out = Vec::with_capacity(plaintext.len() + 256);
    let mut w = encryptor.wrap_output(&mut out).ok()?;
    w.write_all(plaintext).ok()?;
    w.finish().ok()?;
    Some(out)
}
