//! Endorsement-key certificates: which TPMs count as genuine.
//!
//! A TPM's manufacturer certifies its EK (TCG EK Credential Profile for TPM Family 2.0,
//! version 2.5, section 2.2: the certificate sits in NV index `0x01c00002` for the RSA
//! EK and `0x01c0000a` for the ECC P-256 EK). [`verify_ek`] checks that a certificate is
//! the EK's (its subject public key is the EK's public area) and that it chains to a
//! trust anchor a platform policy names ([`EkPolicy`]), through CA certificates from the
//! shipped bundle ([`bundle`], vendors' published CAs with their provenance in
//! `ek-roots/PROVENANCE.md`), from the policy, or sent with the EK.
//!
//! Validity rule: an EK certificate is for the life of its TPM, so its own `notAfter`
//! is not enforced (vendors issue them for 10 to 30 years, or to 9999). Each CA of the
//! chain must have been valid when it issued the certificate below it: that
//! certificate's `notBefore` lies inside the CA's validity. A CA whose certificate has
//! since expired still vouches for the EKs it issued while it was valid.
//!
//! Signatures: RSA PKCS#1 v1.5 with SHA-1, SHA-256, SHA-384 or SHA-512 (RFC 8017
//! section 8.2); ECDSA on P-256 or P-384 with SHA-256 or SHA-384 (RFC 5758 section 3.2).

use std::collections::BTreeSet;

use perun_core::Digest;
use rsa::pkcs1::DecodeRsaPublicKey as _;
use serde::{Deserialize, Serialize};
use sha2::Digest as _;
use x509_parser::prelude::{FromDer as _, X509Certificate};

use crate::tpm::public::PublicKey;
use crate::AttestError;

pub use perun_proto::evidence::{NV_ECC_EK_CERT, NV_RSA_EK_CERT};

/// The longest certificate chain walked, EK certificate and anchor included.
const MAX_CHAIN: usize = 6;
/// The most signatures one path search verifies: hostile pools (CAs that name each
/// other, many of one name) cannot make a verification slow.
const MAX_SIGNATURE_CHECKS: usize = 32;
/// The most CA certificates a policy may carry beside the shipped bundle.
pub const MAX_EXTRA_CAS: usize = 16;
/// The largest certificate accepted, in bytes.
pub const MAX_CERT_LEN: usize = 16 * 1024;

/// One CA certificate of the shipped bundle.
#[derive(Clone, Copy, Debug)]
pub struct BundleCa {
    /// `hardware` (TPM chip makers) or `cloud` (cloud operators' virtual TPMs).
    pub group: &'static str,
    /// The file name it ships as, without `.pem`.
    pub name: &'static str,
    /// The PEM text as published.
    pub pem: &'static str,
}

const BUNDLE: &[(&str, &str, &str)] = include!("ek_bundle.rs.in");

/// The shipped bundle of TPM manufacturers' and cloud vTPM EK CA certificates (see
/// `ek-roots/PROVENANCE.md`).
pub fn bundle() -> impl Iterator<Item = BundleCa> {
    BUNDLE.iter().map(|&(group, name, pem)| BundleCa { group, name, pem })
}

/// Which EK certificates a platform policy accepts.
///
/// Empty accepts none: a policy must say which TPMs it trusts.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EkPolicy {
    /// Trust anchors: SHA-256 fingerprints (`sha256:hex` of the DER) of CA certificates
    /// from the shipped bundle or from `extra_cas`.
    #[serde(default)]
    pub roots: BTreeSet<Digest>,
    /// CA certificates outside the shipped bundle (DER, hex): a local development CA
    /// (`swtpm-localca`) or an operator's own. Approvers are told that these are not a
    /// TPM manufacturer's.
    #[serde(default)]
    pub extra_cas: Vec<CaCert>,
}

/// A CA certificate carried in a policy.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CaCert {
    /// The DER certificate.
    #[serde(with = "hex::serde")]
    pub der: Vec<u8>,
}

/// One anchor of a policy as approvers see it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct AnchorInfo {
    /// Its fingerprint.
    pub fingerprint: Digest,
    /// Its subject, as text.
    pub subject: String,
    /// `hardware` or `cloud` (the shipped bundle), or `outside-bundle` (a policy's own
    /// CA: development or an operator's, never a chip maker's by Perun's word).
    pub group: String,
}

impl EkPolicy {
    /// An EK policy trusting every certificate of the bundle's `group` (`hardware` or
    /// `cloud`), or of the bundle certificates named (file name without `.pem`).
    pub fn from_bundle(names: &[&str]) -> Result<Self, AttestError> {
        let mut roots = BTreeSet::new();
        let decoded = bundle_cas()?;
        for want in names {
            let mut found = false;
            for ca in decoded.iter().filter(|c| c.group == *want || c.name == *want) {
                roots.insert(ca.fingerprint);
                found = true;
            }
            if !found {
                return Err(AttestError::Policy(format!(
                    "`{want}` is neither a group (hardware, cloud) nor a certificate of the shipped EK CA bundle"
                )));
            }
        }
        Ok(Self { roots, extra_cas: Vec::new() })
    }

    /// Adds a CA certificate of the policy's own (PEM or DER) as a trust anchor.
    pub fn add_own_root(&mut self, bytes: &[u8]) -> Result<Digest, AttestError> {
        let der = cert_der(bytes)?;
        parse(&der)?;
        let fp = Digest::of(&der);
        self.roots.insert(fp);
        if !self.extra_cas.iter().any(|c| c.der == der) {
            self.extra_cas.push(CaCert { der });
        }
        Ok(fp)
    }

    /// Trusts a local development CA (`swtpm-localca`): its `root` (PEM or DER) as an
    /// anchor, its `intermediate` on the way. Approvers are told that it is not a chip
    /// maker's ([`crate::JobPolicy::development`]).
    ///
    /// Errors: [`AttestError::Policy`] for a certificate that cannot be read.
    pub fn trust_development_ca(&mut self, root: &[u8], intermediate: &[u8]) -> Result<(), AttestError> {
        self.add_own_root(root)?;
        self.add_intermediate(intermediate)
    }

    /// Adds a CA certificate of the policy's own that may stand between an EK
    /// certificate and an anchor, without trusting it as an anchor.
    pub fn add_intermediate(&mut self, bytes: &[u8]) -> Result<(), AttestError> {
        let der = cert_der(bytes)?;
        parse(&der)?;
        if !self.extra_cas.iter().any(|c| c.der == der) {
            self.extra_cas.push(CaCert { der });
        }
        Ok(())
    }

    /// Checks that every anchor is known (in the bundle or in `extra_cas`) and every
    /// extra CA parses.
    pub fn check(&self) -> Result<(), AttestError> {
        if self.extra_cas.len() > MAX_EXTRA_CAS {
            return Err(AttestError::Policy(format!("at most {MAX_EXTRA_CAS} extra EK CA certificates")));
        }
        self.anchors().map(|_| ())
    }

    /// The anchors, described.
    pub fn anchors(&self) -> Result<Vec<AnchorInfo>, AttestError> {
        let pool = self.pool()?;
        self.roots
            .iter()
            .map(|fp| {
                pool.iter()
                    .find(|c| c.fingerprint == *fp)
                    .map(|c| AnchorInfo { fingerprint: *fp, subject: c.subject.clone(), group: c.group.clone() })
                    .ok_or_else(|| {
                        AttestError::Policy(format!(
                            "EK root {fp} is neither in the shipped bundle nor among the policy's extra_cas"
                        ))
                    })
            })
            .collect()
    }

    /// Whether an anchor lies outside the shipped bundle (a development or own CA).
    pub fn trusts_outside_bundle(&self) -> bool {
        self.anchors().is_ok_and(|a| a.iter().any(|x| x.group == "outside-bundle"))
    }

    fn pool(&self) -> Result<Vec<Ca>, AttestError> {
        let mut pool = bundle_cas()?;
        for c in &self.extra_cas {
            pool.push(Ca::new(c.der.clone(), "outside-bundle")?);
        }
        Ok(pool)
    }
}

/// The shipped bundle, decoded once per process.
fn bundle_cas() -> Result<Vec<Ca>, AttestError> {
    static DECODED: std::sync::OnceLock<Result<Vec<Ca>, AttestError>> = std::sync::OnceLock::new();
    DECODED
        .get_or_init(|| {
            bundle().map(|ca| Ok(Ca { name: ca.name.into(), ..Ca::new(pem_to_der(ca.pem)?, ca.group)? })).collect()
        })
        .clone()
}

/// A CA certificate with what path building needs, owning its DER.
#[derive(Clone)]
struct Ca {
    der: Vec<u8>,
    fingerprint: Digest,
    subject: String,
    subject_raw: Vec<u8>,
    /// The subject as RFC 5280 section 7.1 compares names ([`prepared_name`]).
    subject_prepared: String,
    group: String,
    /// Its file name in the shipped bundle (empty for a policy's own CA).
    name: String,
}

impl Ca {
    fn new(der: Vec<u8>, group: &str) -> Result<Self, AttestError> {
        let (subject, subject_raw, subject_prepared) = {
            let c = parse(&der)?;
            (c.subject().to_string(), c.subject().as_raw().to_vec(), prepared_name(c.subject()))
        };
        Ok(Self {
            fingerprint: Digest::of(&der),
            der,
            subject,
            subject_raw,
            subject_prepared,
            group: group.into(),
            name: String::new(),
        })
    }
}

/// The state of one path search: the work left, the CAs on the path, why candidates
/// were passed over.
struct Search<'a> {
    pool: &'a [Ca],
    roots: &'a BTreeSet<Digest>,
    budget: usize,
    on_path: Vec<Digest>,
    path: Vec<String>,
    tried: Vec<String>,
}

impl Search<'_> {
    fn passed_over(&mut self, why: String) {
        if self.tried.len() < 8 && !self.tried.contains(&why) {
            self.tried.push(why);
        }
    }
}

/// What an accepted EK certificate chains to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EkVerdict {
    /// The trust anchor's fingerprint.
    pub anchor: Digest,
    /// The subjects from the EK certificate's issuer up to the anchor.
    pub path: Vec<String>,
    /// The anchor's group: `hardware`, `cloud` or `outside-bundle`.
    pub group: String,
}

/// Strips what surrounds a DER certificate: PEM armour, or the padding (0xFF or 0x00
/// bytes) that follows it in an NV index sized larger than the certificate.
pub fn cert_der(bytes: &[u8]) -> Result<Vec<u8>, AttestError> {
    if bytes.len() > MAX_CERT_LEN {
        return Err(AttestError::malformed("EK certificate", format!("{} bytes is too long", bytes.len())));
    }
    if let Ok(text) = std::str::from_utf8(bytes) {
        if text.contains("-----BEGIN CERTIFICATE-----") {
            return pem_to_der(text);
        }
    }
    let len = der_len(bytes).ok_or_else(|| AttestError::malformed("certificate", "not a DER SEQUENCE"))?;
    let (cert, rest) = bytes.split_at(len);
    if !rest.iter().all(|&b| b == 0xff || b == 0) {
        return Err(AttestError::malformed("certificate", "bytes other than padding follow the certificate"));
    }
    Ok(cert.to_vec())
}

/// The length of the DER SEQUENCE at the start of `b`, header included.
fn der_len(b: &[u8]) -> Option<usize> {
    if *b.first()? != 0x30 {
        return None;
    }
    let first = *b.get(1)? as usize;
    let (header, content) = if first < 0x80 {
        (2, first)
    } else {
        let n = first & 0x7f;
        if n == 0 || n > 3 {
            return None;
        }
        let mut v = 0usize;
        for i in 0..n {
            v = (v << 8) | *b.get(2 + i)? as usize;
        }
        (2 + n, v)
    };
    let total = header.checked_add(content)?;
    (total <= b.len()).then_some(total)
}

/// The DER of the first certificate in PEM text.
pub fn pem_to_der(text: impl AsRef<str>) -> Result<Vec<u8>, AttestError> {
    use base64::Engine as _;
    let text = text.as_ref();
    let bad = || AttestError::malformed("PEM certificate", "no BEGIN/END CERTIFICATE block");
    let start = text.find("-----BEGIN CERTIFICATE-----").ok_or_else(bad)? + "-----BEGIN CERTIFICATE-----".len();
    let end = text[start..].find("-----END CERTIFICATE-----").ok_or_else(bad)? + start;
    let b64: String = text[start..end].chars().filter(|c| !c.is_whitespace()).collect();
    base64::engine::general_purpose::STANDARD
        .decode(b64)
        .map_err(|e| AttestError::malformed("PEM certificate", e.to_string()))
}

fn parse(der: &[u8]) -> Result<X509Certificate<'_>, AttestError> {
    let (_, cert) =
        X509Certificate::from_der(der).map_err(|e| AttestError::malformed("X.509 certificate", e.to_string()))?;
    Ok(cert)
}

/// Checks that `ek_cert` (DER, PEM, or as read from the NV index) certifies the EK
/// key `ek` (from the EK's `TPMT_PUBLIC`, [`crate::tpm::AkPublic::key`]) and chains to an anchor of `policy`, through CAs of the bundle, of the policy,
/// or of `chain` (intermediates the worker sent; never anchors).
///
/// Errors: [`AttestError::Check`] naming what does not hold (no root listed, the key is
/// not the EK's, no path to a listed root, a CA used outside its validity or not a CA,
/// a signature that does not verify); [`AttestError::Malformed`] for undecodable input.
pub fn verify_ek(
    ek_cert: &[u8],
    chain: &[Vec<u8>],
    ek: &PublicKey,
    policy: &EkPolicy,
) -> Result<EkVerdict, AttestError> {
    if policy.roots.is_empty() {
        return Err(AttestError::Check(
            "the policy lists no EK root: it accepts no TPM (name roots with `perun policy generate --ek-roots`)"
                .into(),
        ));
    }
    let der = cert_der(ek_cert)?;
    let cert = parse(&der)?;
    check_key_is_ek(&cert, ek)?;
    let mut pool = policy.pool()?;
    for c in chain.iter().take(MAX_CHAIN) {
        pool.push(Ca::new(cert_der(c)?, "sent-by-worker")?);
    }
    let mut search = Search {
        pool: &pool,
        roots: &policy.roots,
        budget: MAX_SIGNATURE_CHECKS,
        on_path: Vec::new(),
        path: Vec::new(),
        tried: Vec::new(),
    };
    let found = walk(&cert, &mut search, 1)?;
    let (path, tried) = (search.path, search.tried);
    match found {
        Some(anchor) => {
            let group = pool.iter().find(|c| c.fingerprint == anchor).map(|c| c.group.clone()).unwrap_or_default();
            Ok(EkVerdict { anchor, path, group })
        }
        None => {
            let mut why =
                format!("the EK certificate (issuer `{}`) does not chain to a root this policy lists", cert.issuer());
            if !tried.is_empty() {
                why.push_str(&format!(" ({})", tried.join("; ")));
            }
            why.push_str(
                "; if it chains through an intermediate CA the shipped bundle lacks, give that CA to the policy \
                 (`perun policy generate --ek-intermediate`) or to enrolment (`perun worker enrol --ek-chain`)",
            );
            Err(AttestError::Check(why))
        }
    }
}

/// Depth-first path building from `cert` to an anchor, within the search's budget of
/// signature checks, never through a CA already on the path.
fn walk(cert: &X509Certificate<'_>, s: &mut Search<'_>, depth: usize) -> Result<Option<Digest>, AttestError> {
    if depth >= MAX_CHAIN {
        return Ok(None);
    }
    let issuer_raw = cert.issuer().as_raw();
    // Candidates by name as RFC 5280 section 7.1 matches them (a TPM maker's EK may spell
    // its issuer with other spaces or case than its CA's subject); each is then proven by
    // its signature, so a looser name admits no other signer.
    let issuer_prepared = prepared_name(cert.issuer());
    let issued_at = cert.validity().not_before.timestamp();
    let pool = s.pool;
    for ca in pool.iter().filter(|ca| ca.subject_raw == issuer_raw || ca.subject_prepared == issuer_prepared) {
        if s.on_path.contains(&ca.fingerprint) {
            continue;
        }
        if s.budget == 0 {
            return Err(AttestError::Check(format!(
                "gave up building the EK certificate's chain after {MAX_SIGNATURE_CHECKS} signature checks: \
                 too many candidate CAs of one name"
            )));
        }
        s.budget -= 1;
        let parsed = parse(&ca.der)?;
        if verify_signature(cert, &parsed).is_err() {
            s.passed_over(format!("a CA named `{}` is in the pool but its key did not sign it", ca.subject));
            continue;
        }
        let v = parsed.validity();
        if issued_at < v.not_before.timestamp() || issued_at > v.not_after.timestamp() {
            s.passed_over(format!("`{}` was not valid when it issued the certificate below it", ca.subject));
            continue;
        }
        if let Ok(Some(bc)) = parsed.basic_constraints() {
            if !bc.value.ca {
                s.passed_over(format!("`{}` is not a CA", ca.subject));
                continue;
            }
        }
        s.path.push(ca.subject.clone());
        if s.roots.contains(&ca.fingerprint) {
            return Ok(Some(ca.fingerprint));
        }
        // A self-signed certificate that is not an anchor ends this branch.
        if parsed.subject().as_raw() != parsed.issuer().as_raw() {
            s.on_path.push(ca.fingerprint);
            let found = walk(&parsed, s, depth + 1)?;
            s.on_path.pop();
            if found.is_some() {
                return Ok(found);
            }
        } else {
            s.passed_over(format!("root `{}` is not one this policy lists", ca.subject));
        }
        s.path.pop();
    }
    Ok(None)
}

/// Checks that the certificate's subject public key is the EK's.
fn check_key_is_ek(cert: &X509Certificate<'_>, ek: &PublicKey) -> Result<(), AttestError> {
    let spki = cert.public_key();
    let same = match (ek, spki.algorithm.algorithm.to_id_string().as_str()) {
        (PublicKey::Rsa(k), "1.2.840.113549.1.1.1") => {
            rsa::RsaPublicKey::from_pkcs1_der(&spki.subject_public_key.data).is_ok_and(|c| c == *k)
        }
        (PublicKey::EccP256(k), "1.2.840.10045.2.1") => {
            p256::PublicKey::from_sec1_bytes(&spki.subject_public_key.data).is_ok_and(|c| c == *k)
        }
        _ => false,
    };
    if !same {
        return Err(AttestError::Check("the EK certificate certifies another key than this TPM's EK".into()));
    }
    Ok(())
}

/// A distinguished name in the form RFC 5280 section 7.1 compares it, with RFC 4518's
/// string preparation as far as certificates need it: per RDN (in order) its attributes
/// (as a set), each PrintableString or UTF8String value with insignificant space removed
/// (leading and trailing, internal runs as one space) and case folded; any other value
/// byte for byte, as the RFC asks for the other types.
fn prepared_name(name: &x509_parser::x509::X509Name<'_>) -> String {
    use x509_parser::der_parser::asn1_rs::Tag;
    let mut out = String::new();
    for rdn in name.iter() {
        let mut attributes: Vec<String> = rdn
            .iter()
            .map(|a| {
                let value = match (a.attr_value().tag(), a.as_str()) {
                    (Tag::PrintableString | Tag::Utf8String, Ok(s)) => {
                        format!("s:{}", s.split_whitespace().collect::<Vec<_>>().join(" ").to_lowercase())
                    }
                    _ => format!("x:{}", hex::encode(a.as_slice())),
                };
                format!("{}={value}", a.attr_type().to_id_string())
            })
            .collect();
        attributes.sort();
        out.push_str(&attributes.join("+"));
        out.push('/');
    }
    out
}

/// Verifies `cert`'s signature with `issuer`'s public key.
fn verify_signature(cert: &X509Certificate<'_>, issuer: &X509Certificate<'_>) -> Result<(), AttestError> {
    use p256::ecdsa::signature::hazmat::PrehashVerifier as _;
    let bad = || AttestError::Check("certificate signature does not verify".into());
    let tbs = cert.tbs_certificate.as_ref();
    let sig = &cert.signature_value.data;
    let spki = issuer.public_key();
    let key_bits = &spki.subject_public_key.data;
    let alg = cert.signature_algorithm.algorithm.to_id_string();
    let (rsa_hash, ec_hash): (Option<(Vec<u8>, &[u8])>, Option<Vec<u8>>) = match alg.as_str() {
        "1.2.840.113549.1.1.5" => (Some((sha1::Sha1::digest(tbs).to_vec(), &SHA1_PREFIX)), None),
        "1.2.840.113549.1.1.11" => (Some((sha2::Sha256::digest(tbs).to_vec(), &SHA256_PREFIX)), None),
        "1.2.840.113549.1.1.12" => (Some((sha2::Sha384::digest(tbs).to_vec(), &SHA384_PREFIX)), None),
        "1.2.840.113549.1.1.13" => (Some((sha2::Sha512::digest(tbs).to_vec(), &SHA512_PREFIX)), None),
        "1.2.840.10045.4.3.2" => (None, Some(sha2::Sha256::digest(tbs).to_vec())),
        "1.2.840.10045.4.3.3" => (None, Some(sha2::Sha384::digest(tbs).to_vec())),
        other => return Err(AttestError::Check(format!("certificate signature algorithm {other} is not supported"))),
    };
    if let Some((digest, prefix)) = rsa_hash {
        let key = rsa::RsaPublicKey::from_pkcs1_der(key_bits).map_err(|_| bad())?;
        let scheme = rsa::Pkcs1v15Sign { hash_len: Some(digest.len()), prefix: prefix.into() };
        return key.verify(scheme, &digest, sig).map_err(|_| bad());
    }
    let digest = ec_hash.ok_or_else(bad)?;
    let curve = spki.algorithm.parameters.as_ref().and_then(|p| p.as_oid().ok()).map(|o| o.to_id_string());
    match curve.as_deref() {
        Some("1.2.840.10045.3.1.7") => {
            let key = p256::ecdsa::VerifyingKey::from_sec1_bytes(key_bits).map_err(|_| bad())?;
            let s = p256::ecdsa::Signature::from_der(sig).map_err(|_| bad())?;
            key.verify_prehash(&digest, &s).map_err(|_| bad())
        }
        Some("1.3.132.0.34") => {
            let key = p384::ecdsa::VerifyingKey::from_sec1_bytes(key_bits).map_err(|_| bad())?;
            let s = p384::ecdsa::Signature::from_der(sig).map_err(|_| bad())?;
            key.verify_prehash(&digest, &s).map_err(|_| bad())
        }
        other => Err(AttestError::Check(format!("issuer key curve {other:?} is not supported"))),
    }
}

// DigestInfo prefixes of EMSA-PKCS1-v1_5 (RFC 8017 section 9.2, note 1).
const SHA1_PREFIX: [u8; 15] =
    [0x30, 0x21, 0x30, 0x09, 0x06, 0x05, 0x2b, 0x0e, 0x03, 0x02, 0x1a, 0x05, 0x00, 0x04, 0x14];
const SHA256_PREFIX: [u8; 19] =
    [0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01, 0x05, 0x00, 0x04, 0x20];
const SHA384_PREFIX: [u8; 19] =
    [0x30, 0x41, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x02, 0x05, 0x00, 0x04, 0x30];
const SHA512_PREFIX: [u8; 19] =
    [0x30, 0x51, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x03, 0x05, 0x00, 0x04, 0x40];

/// A certificate's issuer, as text (RFC 4514 form).
pub fn issuer(cert: &[u8]) -> Result<String, AttestError> {
    let der = cert_der(cert)?;
    Ok(parse(&der)?.issuer().to_string())
}

/// The public key an EK certificate certifies (RSA or ECC P-256).
pub fn certified_key(ek_cert: &[u8]) -> Result<PublicKey, AttestError> {
    let der = cert_der(ek_cert)?;
    let cert = parse(&der)?;
    let spki = cert.public_key();
    match spki.algorithm.algorithm.to_id_string().as_str() {
        "1.2.840.113549.1.1.1" => rsa::RsaPublicKey::from_pkcs1_der(&spki.subject_public_key.data)
            .map(PublicKey::Rsa)
            .map_err(|e| AttestError::malformed("EK certificate", e.to_string())),
        "1.2.840.10045.2.1" => p256::PublicKey::from_sec1_bytes(&spki.subject_public_key.data)
            .map(PublicKey::EccP256)
            .map_err(|_| AttestError::malformed("EK certificate", "not a P-256 key")),
        other => Err(AttestError::malformed("EK certificate", format!("key algorithm {other}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_bundled_certificate_parses_and_is_unique() {
        let mut seen = BTreeSet::new();
        let mut n = 0;
        for ca in bundle() {
            let der = pem_to_der(ca.pem).unwrap();
            parse(&der).unwrap_or_else(|e| panic!("{}: {e}", ca.name));
            // The upstream set ships some certificates twice under two names.
            seen.insert(Digest::of(&der));
            n += 1;
        }
        assert!(n >= 55 && seen.len() >= 50, "{n} files, {} distinct", seen.len());
        let hw = EkPolicy::from_bundle(&["hardware"]).unwrap();
        let cloud = EkPolicy::from_bundle(&["cloud"]).unwrap();
        assert!(hw.roots.is_disjoint(&cloud.roots));
        assert!(!hw.trusts_outside_bundle());
        assert!(EkPolicy::from_bundle(&["no-such-vendor"]).is_err());
    }

    #[test]
    fn der_length_and_padding() {
        assert_eq!(der_len(&[0x30, 0x02, 1, 2, 0xff]), Some(4));
        assert_eq!(der_len(&[0x30, 0x82, 0x00, 0x01, 9]), Some(5));
        assert_eq!(der_len(&[0x30, 0x82, 0xff, 0xff]), None);
        assert_eq!(der_len(&[0x31, 0]), None);
        assert_eq!(der_len(&[]), None);
        assert_eq!(cert_der(&[0x30, 0x01, 7, 0xff, 0xff, 0]).unwrap(), [0x30, 1, 7]);
        assert!(cert_der(&[0x30, 0x01, 7, 1]).is_err());
    }
}
