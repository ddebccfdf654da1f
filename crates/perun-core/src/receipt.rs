//! The training receipt: what the trust service vouches for when a job finishes.
//!
//! A receipt is an in-toto Statement v1 (<https://github.com/in-toto/attestation>,
//! `spec/v1/statement.md`) whose subjects are the trained model (its plaintext and its
//! sealed file) and whose predicate ([`TrainingPredicate`]) binds the manifest digest,
//! every input's digest, the approvals, the Evidence and Attestation Results that released
//! the keys, the worker's measured claims and the privacy spent. The service signs it in a
//! DSSE envelope (`https://github.com/secure-systems-lab/dsse`, protocol v1: Ed25519 over
//! the pre-authentication encoding), the envelope in-toto tools read. The signing key is
//! the service's audit key, which every client pins.

use std::collections::BTreeMap;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use ed25519_dalek::{Signer as _, SigningKey, Verifier as _, VerifyingKey};
use serde::{Deserialize, Serialize};

use crate::manifest::DpTarget;
use crate::{AssetRef, CoreError, Digest, Name, Signature};

/// The in-toto Statement type.
pub const STATEMENT_TYPE: &str = "https://in-toto.io/Statement/v1";
/// The predicate type of a Perun training receipt.
pub const PREDICATE_TYPE: &str = "https://perun.dev/training-receipt/v1";
/// The DSSE payload type of an in-toto Statement.
pub const PAYLOAD_TYPE: &str = "application/vnd.in-toto+json";
/// The most bytes of a receipt envelope a verifier reads.
pub const MAX_RECEIPT_BYTES: usize = 4 << 20;

/// One subject: a named artifact and its digests (`{"sha256": hex}`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subject {
    /// The artifact's name.
    pub name: String,
    /// Algorithm to lower-case hex digest.
    pub digest: BTreeMap<String, String>,
}

impl Subject {
    /// A subject with its SHA-256.
    pub fn sha256(name: &str, d: &Digest) -> Self {
        Self { name: name.into(), digest: BTreeMap::from([("sha256".into(), d.to_hex())]) }
    }

    /// Its SHA-256, if it names one.
    pub fn sha256_digest(&self) -> Option<Digest> {
        self.digest.get("sha256").and_then(|h| format!("{}{h}", Digest::PREFIX).parse().ok())
    }
}

/// One approval the job needed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReceiptApproval {
    /// Who approved.
    pub approver: Name,
    /// Its signature over the manifest digest.
    pub signature: Signature,
}

/// The appraisal that released the job's keys.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReceiptAttestation {
    /// SHA-256 of the Evidence as the Attester sent it.
    pub evidence: Digest,
    /// SHA-256 of the Attestation Result (its compact JSON).
    pub result: Digest,
    /// The Attester kind (`tpm`, `sev-snp`, ...).
    pub attester: String,
    /// What the Verifier vouched for: the measured worker binary, EK anchor, TCB...
    pub claims: BTreeMap<String, String>,
}

/// The privacy a job trained with, as the attested worker reported it.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct PrivacySpent {
    /// The manifest's target.
    pub target: DpTarget,
    /// The noise multiplier the engine derived.
    pub noise_multiplier: f64,
    /// Poisson sampling rate of each step.
    pub sample_rate: f64,
    /// Optimizer steps taken.
    pub steps: u64,
    /// The epsilon spent at the target's delta (Rényi DP accountant).
    pub epsilon: f64,
}

/// The predicate of a training receipt.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrainingPredicate {
    /// The job (its manifest digest).
    pub job: Digest,
    /// The job's name.
    pub name: String,
    /// The model and data sets it used, each pinned by content digest.
    pub inputs: Vec<AssetRef>,
    /// Every required approval.
    pub approvals: Vec<ReceiptApproval>,
    /// The platform or TEE policy the worker satisfied.
    pub policy: Digest,
    /// The worker that ran it.
    pub worker: Name,
    /// The appraisal that released the keys.
    pub attestation: Option<ReceiptAttestation>,
    /// DP-SGD parameters and epsilon spent; none for plain training.
    pub privacy: Option<PrivacySpent>,
    /// The receivers the outputs are sealed to.
    pub receivers: Vec<Name>,
    /// When the job finished (Unix seconds).
    pub finished_at: u64,
}

/// An in-toto Statement v1 with a training predicate.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Statement {
    /// [`STATEMENT_TYPE`].
    #[serde(rename = "_type")]
    pub statement_type: String,
    /// The artifacts it is about.
    pub subject: Vec<Subject>,
    /// [`PREDICATE_TYPE`].
    #[serde(rename = "predicateType")]
    pub predicate_type: String,
    /// The predicate.
    pub predicate: TrainingPredicate,
}

/// One DSSE signature.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnvelopeSignature {
    /// Which key: SHA-256 of the Ed25519 public key, hex.
    pub keyid: String,
    /// Base64 of the Ed25519 signature over the PAE.
    pub sig: String,
}

/// A DSSE envelope.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    /// [`PAYLOAD_TYPE`].
    #[serde(rename = "payloadType")]
    pub payload_type: String,
    /// Base64 of the Statement's JSON.
    pub payload: String,
    /// The signatures.
    pub signatures: Vec<EnvelopeSignature>,
}

/// DSSE's pre-authentication encoding: `DSSEv1 SP len(type) SP type SP len(body) SP body`.
fn pae(payload_type: &str, body: &[u8]) -> Vec<u8> {
    let mut out = format!("DSSEv1 {} {payload_type} {} ", payload_type.len(), body.len()).into_bytes();
    out.extend_from_slice(body);
    out
}

/// The DSSE key id of `key`.
pub fn key_id(key: &VerifyingKey) -> String {
    Digest::of(key.as_bytes()).to_hex()
}

impl Statement {
    /// A statement about `subject` with `predicate`.
    pub fn new(subject: Vec<Subject>, predicate: TrainingPredicate) -> Self {
        Self { statement_type: STATEMENT_TYPE.into(), subject, predicate_type: PREDICATE_TYPE.into(), predicate }
    }

    /// Signs the statement into a DSSE envelope.
    pub fn sign(&self, key: &SigningKey) -> Envelope {
        // Plain structs always serialise.
        let body = serde_json::to_vec(self).unwrap_or_default();
        let sig = key.sign(&pae(PAYLOAD_TYPE, &body));
        Envelope {
            payload_type: PAYLOAD_TYPE.into(),
            payload: B64.encode(&body),
            signatures: vec![EnvelopeSignature {
                keyid: key_id(&key.verifying_key()),
                sig: B64.encode(sig.to_bytes()),
            }],
        }
    }
}

impl Envelope {
    /// Parses an envelope (at most [`MAX_RECEIPT_BYTES`]).
    pub fn from_json(bytes: &[u8]) -> Result<Self, CoreError> {
        if bytes.len() > MAX_RECEIPT_BYTES {
            return Err(CoreError::Json(format!("a receipt is at most {MAX_RECEIPT_BYTES} bytes")));
        }
        serde_json::from_slice(bytes).map_err(|e| CoreError::Json(e.to_string()))
    }

    /// Verifies the envelope's signature by `key` and returns its Statement, checked to be
    /// an in-toto Statement v1 with a Perun training predicate.
    ///
    /// Errors: [`CoreError::BadSignature`] when no signature by `key` verifies (a receipt
    /// changed by one byte, or signed by another service); [`CoreError::Json`] for a
    /// payload that is not such a Statement.
    pub fn verify(&self, key: &VerifyingKey) -> Result<Statement, CoreError> {
        if self.payload_type != PAYLOAD_TYPE {
            return Err(CoreError::Json(format!("payload type `{}`, expected {PAYLOAD_TYPE}", self.payload_type)));
        }
        let body = B64.decode(&self.payload).map_err(|e| CoreError::Json(format!("payload: {e}")))?;
        let signed = pae(&self.payload_type, &body);
        let id = key_id(key);
        let ok = self.signatures.iter().filter(|s| s.keyid == id).any(|s| {
            B64.decode(&s.sig)
                .ok()
                .and_then(|b| ed25519_dalek::Signature::from_slice(&b).ok())
                .is_some_and(|sig| key.verify(&signed, &sig).is_ok())
        });
        if !ok {
            return Err(CoreError::BadSignature);
        }
        let st: Statement = serde_json::from_slice(&body).map_err(|e| CoreError::Json(e.to_string()))?;
        if st.statement_type != STATEMENT_TYPE || st.predicate_type != PREDICATE_TYPE {
            return Err(CoreError::Json(format!(
                "statement `{}` with predicate `{}` is not a Perun training receipt",
                st.statement_type, st.predicate_type
            )));
        }
        Ok(st)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn statement() -> Statement {
        let predicate = TrainingPredicate {
            job: Digest::of(b"job"),
            name: "bc".into(),
            inputs: Vec::new(),
            approvals: Vec::new(),
            policy: Digest::of(b"policy"),
            worker: Name::new("gpu-1").unwrap(),
            attestation: None,
            privacy: None,
            receivers: vec![Name::new("model-owner").unwrap()],
            finished_at: 1_700_000_000,
        };
        Statement::new(vec![Subject::sha256("model.safetensors", &Digest::of(b"weights"))], predicate)
    }

    #[test]
    fn a_signed_receipt_verifies_and_any_changed_byte_is_refused() {
        let key = SigningKey::from_bytes(&[7; 32]);
        let env = statement().sign(&key);
        let json = serde_json::to_vec(&env).unwrap();
        let back = Envelope::from_json(&json).unwrap().verify(&key.verifying_key()).unwrap();
        assert_eq!(back, statement());
        assert_eq!(back.subject[0].sha256_digest(), Some(Digest::of(b"weights")));
        // Another key: refused.
        let other = SigningKey::from_bytes(&[8; 32]).verifying_key();
        assert_eq!(env.verify(&other).unwrap_err(), CoreError::BadSignature);
        // Every single-byte change of the payload or signature is refused.
        for field in 0..2 {
            for i in 0..40 {
                let mut e = env.clone();
                let s = if field == 0 { &mut e.payload } else { &mut e.signatures[0].sig };
                let mut b = B64.decode(&*s).unwrap();
                let at = i * b.len() / 40;
                b[at] ^= 1;
                *s = B64.encode(&b);
                assert!(e.verify(&key.verifying_key()).is_err(), "field {field} byte {at}");
            }
        }
    }

    #[test]
    fn pae_is_dsse_v1() {
        // The example of the DSSE protocol document.
        assert_eq!(
            pae("http://example.com/HelloWorld", b"hello world"),
            b"DSSEv1 29 http://example.com/HelloWorld 11 hello world".to_vec()
        );
    }
}
