//! Targets for `perun-core` manifests and the trust service's input: API bodies and
//! signed requests.

use perun_attest::ek::{cert_der, issuer};
use perun_attest::tpm::{AkPublic, Quote};
use perun_core::manifest::APPROVAL_CONTEXT;
use perun_core::{JobManifest, PublicIdentity, Signature};
use perun_proto::auth::SignedHeaders;
use perun_proto::wire;
use perun_seal::keys::parse_recipient;
use perun_seal::release::{release_info, EphemeralKey};
use perun_trust::service::stakeholders::RequestParts;

use crate::fixtures;

/// A job manifest (JSON, as proposed and as approvers review it):
/// [`JobManifest::from_json`] (parse and validate), then its canonical form and digest,
/// which must parse again.
pub fn manifest(data: &[u8]) {
    let Ok(m) = JobManifest::from_json(data) else { return };
    let _ = m.required_approvers();
    let _ = m.assets().count();
    let canonical = m.canonical_bytes();
    let _ = JobManifest::from_json(&canonical);
    let _ = m.digest();
}

/// Parses `data` as `T`; `Some` when it is one.
fn body<T: serde::de::DeserializeOwned>(data: &[u8]) -> Option<T> {
    serde_json::from_slice(data).ok()
}

/// The checks the service makes of a public identity from outside.
fn identity(id: &PublicIdentity) {
    let _ = id.check();
    let _ = id.fingerprint();
    let _ = parse_recipient(&id.age_recipient);
}

/// A manifest that deserialised: what the service does with a proposal.
fn proposed(m: &JobManifest) {
    let _ = m.validate();
    let d = m.digest();
    let key = fixtures::stakeholder_key().verifying_key();
    let _ = perun_core::verify_digest(&key, APPROVAL_CONTEXT, &d, &Signature([0; 64]));
}

/// The parsers a TPM evidence body reaches before its appraisal.
fn evidence(ev: &perun_attest::evidence::TpmEvidence) {
    let _ = Quote::parse(&ev.quote);
    let _ = perun_attest::ima::parse_binary(&ev.ima_log, 0);
    let _ = perun_attest::bootlog::parse(&ev.event_log);
}

/// An API body (JSON) as the service or a client receives it: every request body of
/// [`perun_proto::wire`] and every answer a client reads, each followed by the public
/// checks the service makes of it before anything is stored (identities, manifests, EK
/// and AK public areas, EK certificates, wrapped keys, evidence), and a client's checks
/// of answers (the audit chain's signatures, released keys).
pub fn wire_request(data: &[u8]) {
    if let Some(b) = body::<wire::RegisterStakeholder>(data) {
        identity(&b.identity);
    }
    if let Some(b) = body::<wire::RegisterAsset>(data) {
        let _ = parse_recipient(&b.recipient);
        if let Some(k) = fixtures::asset_key() {
            let context = perun_seal::wrap::WrapContext::asset_key(&b.name, &b.name, b.kind, &b.content_digest);
            let _ = perun_seal::wrap::unwrap(&b.wrapped_key, k.identity(), &context);
        }
    }
    if let Some(b) = body::<wire::ProposeJob>(data) {
        proposed(&b.manifest);
    }
    let _ = body::<wire::ApproveJob>(data);
    let _ = body::<wire::RevokeJob>(data);
    if let Some(b) = body::<wire::EnrolWorker>(data) {
        let _ = AkPublic::parse(&b.ek_public);
        let _ = cert_der(&b.ek_certificate);
        let _ = issuer(&b.ek_certificate);
        let _ = perun_attest::ek::certified_key(&b.ek_certificate);
        for c in b.ek_chain.iter().take(8) {
            let _ = cert_der(c.as_ref());
        }
    }
    if let Some(b) = body::<wire::PresentAk>(data) {
        let _ = AkPublic::parse(&b.ek_public);
        if let Ok(ak) = AkPublic::parse(&b.ak_public) {
            let _ = ak.check_attestation_key();
        }
    }
    if let Some(b) = body::<wire::ActivateAk>(data) {
        let _ = AkPublic::parse(&b.ak_public);
    }
    if let Some(b) = body::<wire::Attest>(data) {
        evidence(&b.evidence);
    }
    let _ = body::<wire::EnclaveNonce>(data);
    if let Some(b) = body::<wire::AttestEnclave>(data) {
        if let Ok(v) = perun_attest::tee::verifier(b.evidence.kind) {
            let _ = v.verify(&b.evidence, fixtures::FIXED_NOW);
        }
    }
    let _ = body::<wire::ReportMetrics>(data);
    let _ = body::<wire::FinishJob>(data);
    let _ = body::<wire::FailJob>(data);
    // Answers, as a client reads them.
    let _ = body::<wire::ServiceInfo>(data);
    let _ = body::<wire::AssetInfo>(data);
    let _ = body::<wire::PolicyInfo>(data);
    if let Some(b) = body::<wire::JobInfo>(data) {
        proposed(&b.manifest);
    }
    let _ = body::<wire::JobMetrics>(data);
    let _ = body::<wire::WorkerInfo>(data);
    let _ = body::<wire::CredentialChallenge>(data);
    if let Some(b) = body::<wire::Claimed>(data) {
        proposed(&b.job.manifest);
        for id in &b.receiver_identities {
            identity(id);
        }
        for (_, r) in &b.receivers {
            let _ = parse_recipient(r);
        }
    }
    let _ = body::<wire::NonceIssued>(data);
    if let Some(b) = body::<wire::Attested>(data) {
        released(&b);
    }
    if let Some(b) = body::<wire::AuditLog>(data) {
        let _ = perun_proto::audit::verify_chain(&b.records, &fixtures::service_key().verifying_key());
    }
    let _ = body::<wire::Refusal>(data);
    if let Some(b) = body::<wire::EnclaveAttested>(data) {
        released(&b.attested);
    }
}

/// Opens the keys an attestation answer releases (with a key they were not sealed to).
fn released(a: &wire::Attested) {
    let key = EphemeralKey::generate();
    let job = perun_core::Digest::of(b"job");
    for k in a.keys.iter().take(8) {
        let _ = key.open(&k.sealed, &release_info(&job, k.asset.as_str()));
    }
}

/// A header value as `HeaderValue::to_str` gives it: visible ASCII (and tabs) only.
fn header_text(v: &[u8]) -> Option<&str> {
    v.iter().all(|&b| b == b'\t' || (0x20..0x7f).contains(&b)).then(|| std::str::from_utf8(v).ok()).flatten()
}

/// A signed stakeholder request, as the service's HTTP layer reads it, in this form:
/// `METHOD PATH` on the first line, then `name: value` header lines, an empty line and
/// the body. The `perun-*` headers are read as the API reads them (name, time, nonce,
/// signature, each as `HeaderValue::to_str` would give it) into
/// [`SignedHeaders`], which [`perun_trust::Trust::authenticate`] checks on the fixture
/// service (time, nonce, the signature over audience, method, path and body, the replay
/// record).
pub fn signed_request(data: &[u8]) {
    let (head, body) = match data.windows(2).position(|w| w == b"\n\n") {
        Some(at) => (&data[..at], &data[at + 2..]),
        None => (data, &[][..]),
    };
    let mut lines = head.split(|&b| b == b'\n');
    let Some(first) = lines.next().and_then(|l| std::str::from_utf8(l).ok()) else { return };
    let (method, path) = first.split_once(' ').unwrap_or((first, "/"));
    let mut headers: Vec<(String, &[u8])> = Vec::new();
    for line in lines {
        let Some(colon) = line.iter().position(|&b| b == b':') else { continue };
        let Ok(name) = std::str::from_utf8(&line[..colon]) else { continue };
        headers.push((name.trim().to_ascii_lowercase(), line[colon + 1..].trim_ascii()));
    }
    let get = |name: &str| headers.iter().find(|(n, _)| n == name).and_then(|(_, v)| header_text(v));
    // The service's own header parser.
    let Ok(sh) = SignedHeaders::from_headers(get) else { return };
    let _ = sh.pairs();
    let Some(trust) = fixtures::trust() else { return };
    let _ = trust.authenticate(&sh, RequestParts { method, path, body });
}
