//! The audit log: append-only records, each naming the hash of the one before and signed
//! by the service, so that a removed, reordered or edited record shows.
//!
//! A record's hash is SHA-256 over its canonical JSON (which includes `prev`); the
//! service signs the hash with its Ed25519 key under [`AUDIT_CONTEXT`]. A stakeholder
//! fetches the whole chain: the records that concern it with their bodies, the others as
//! hash and signature only, so it can check the chain is unbroken without seeing what is
//! not its own.

use ed25519_dalek::VerifyingKey;
use perun_core::{verify_digest, Digest, Name, Signature};
use serde::{Deserialize, Serialize};

/// Why a chain of audit records does not verify. Each names the record concerned.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuditError {
    /// Sequence numbers must run from 1 without gaps.
    #[error("audit record {record}: expected sequence number {expected}")]
    Sequence {
        /// The record's sequence number.
        record: u64,
        /// The number it should have had.
        expected: u64,
    },
    /// The record does not name its predecessor's hash.
    #[error("audit record {record}: does not follow the record before it (the chain was cut or reordered)")]
    Unlinked {
        /// The record.
        record: u64,
    },
    /// The record's body does not hash to its hash.
    #[error("audit record {record}: its content does not match its hash (it was edited)")]
    Edited {
        /// The record.
        record: u64,
    },
    /// The service's signature over the hash does not verify.
    #[error("audit record {record}: the service's signature does not verify")]
    Signature {
        /// The record.
        record: u64,
    },
    /// The record verified before is not the one at its place now.
    #[error("audit record {record} is not the one verified before (hash {head}): the service's history was rewritten")]
    Rewritten {
        /// The checkpoint's record.
        record: u64,
        /// The hash verified before.
        head: Digest,
    },
    /// The chain ends before the record verified before.
    #[error("the audit log was cut: it ends at record {ends}, but record {record} (hash {head}) was verified before")]
    Cut {
        /// The last record now.
        ends: u64,
        /// The checkpoint's record.
        record: u64,
        /// The hash verified before.
        head: Digest,
    },
    /// A record once shown in full is hidden now.
    #[error("audit record {record} concerned you when you last verified, and is now hidden from you: the service's store was edited")]
    Hidden {
        /// The record.
        record: u64,
    },
}

/// The signature context of audit records.
pub const AUDIT_CONTEXT: &str = "audit-record/v1";

/// What happened.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AuditKind {
    /// A stakeholder registered (and was admitted: by open registration, the operator,
    /// or the last vote of a quorum).
    StakeholderRegistered,
    /// A member voted to admit a pending registration.
    AdmissionVoted,
    /// An asset and its wrapped key were registered.
    AssetRegistered,
    /// A platform policy was published.
    PolicyAdded,
    /// An infrastructure provider enrolled a worker's EK.
    WorkerEnrolled,
    /// A worker proved its AK by credential activation.
    WorkerActivated,
    /// A job was proposed.
    JobProposed,
    /// An owner approved a job.
    JobApproved,
    /// A request was refused by the release rule or an ownership check.
    Refused,
    /// A worker claimed a job.
    JobClaimed,
    /// Evidence was accepted.
    AttestationAccepted,
    /// Evidence was refused.
    AttestationRefused,
    /// An asset key was released.
    KeyReleased,
    /// A job was revoked.
    JobRevoked,
    /// A job expired.
    JobExpired,
    /// A worker delivered a job's outputs.
    JobFinished,
    /// An asset's ledger was charged for a job (jobs used, epsilon spent).
    LedgerCharged,
    /// A reviewing owner released or refused a job's outputs.
    OutputReviewed,
}

/// Who did what a record tells: a kind, never a bare string, so that no stakeholder can
/// be mistaken for the service, an anonymous caller or a worker.
///
/// On the wire it is the string it always was (so records written before it hash the
/// same): `service`, `anonymous`, `worker:<name>`, or a stakeholder's name. A name holds
/// no `:`, and the stakeholder names `service` and `anonymous` are reserved
/// ([`Actor::RESERVED`], refused at registration), so each string reads one way. A string
/// that is none of these (a record from a future version) reads as [`Actor::Other`],
/// which concerns no stakeholder.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Actor {
    /// The trust service itself (key releases, ledger charges, revocations).
    Service,
    /// The service's operator, acting on its store (`perun serve --admit`).
    Operator,
    /// A caller not authenticated (yet): an enclave's first report, an unknown worker.
    Anonymous,
    /// An enrolled worker or an enclave, by its worker name.
    Worker(Name),
    /// A registered stakeholder.
    Stakeholder(Name),
    /// A string no kind above reads (never written by this version).
    Other(String),
}

impl Actor {
    /// Stakeholder names that would read as another actor: refused at registration.
    pub const RESERVED: [&'static str; 3] = ["service", "anonymous", "operator"];

    /// A stakeholder actor.
    pub fn stakeholder(name: &Name) -> Self {
        Self::Stakeholder(name.clone())
    }

    /// A worker actor.
    pub fn worker(name: &Name) -> Self {
        Self::Worker(name.clone())
    }

    /// Whether this actor is stakeholder `who` (a worker or the service never is).
    pub fn is_stakeholder(&self, who: &Name) -> bool {
        matches!(self, Self::Stakeholder(n) if n == who)
    }
}

impl std::fmt::Display for Actor {
    /// The wire form, padded as the formatter asks (`{:<16}`).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Service => f.pad("service"),
            Self::Operator => f.pad("operator"),
            Self::Anonymous => f.pad("anonymous"),
            Self::Worker(n) => f.pad(&format!("worker:{n}")),
            Self::Stakeholder(n) => f.pad(n.as_str()),
            Self::Other(s) => f.pad(s),
        }
    }
}

impl std::str::FromStr for Actor {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "service" => Self::Service,
            "operator" => Self::Operator,
            "anonymous" => Self::Anonymous,
            _ => match s.strip_prefix("worker:") {
                Some(w) => Name::new(w).map_or_else(|_| Self::Other(s.to_owned()), Self::Worker),
                None => Name::new(s).map_or_else(|_| Self::Other(s.to_owned()), Self::Stakeholder),
            },
        })
    }
}

impl Serialize for Actor {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Actor {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        let Ok(a) = s.parse();
        Ok(a)
    }
}

/// The content of a record.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditBody {
    /// Position in the chain, from 1.
    pub seq: u64,
    /// Hash of the previous record (`sha256:00..` for the first).
    pub prev: Digest,
    /// Unix seconds.
    pub at: u64,
    /// What happened.
    pub kind: AuditKind,
    /// Who did it.
    pub actor: Actor,
    /// The job concerned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job: Option<Digest>,
    /// The assets concerned.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub assets: Vec<Name>,
    /// The stakeholders it concerns (owners, proposer, receivers).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub parties: Vec<Name>,
    /// A human-readable account.
    pub detail: String,
}

/// A stored record: body, its hash, and the service's signature over the hash.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditRecord {
    /// The content.
    pub body: AuditBody,
    /// SHA-256 of the body's canonical JSON.
    pub hash: Digest,
    /// The service's signature over `hash`.
    pub signature: Signature,
}

/// A record as a stakeholder sees it: the body only where it concerns the caller.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditView {
    /// Position in the chain.
    pub seq: u64,
    /// The body, if the record concerns the caller.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<AuditBody>,
    /// The record's hash.
    pub hash: Digest,
    /// The previous record's hash (from the body; shown for hidden records too).
    pub prev: Digest,
    /// The service's signature over `hash`.
    pub signature: Signature,
}

/// SHA-256 of a record body's canonical JSON: the hash the service signs.
pub fn body_hash(body: &AuditBody) -> Digest {
    // Serialising a plain struct cannot fail.
    Digest::of(&serde_json::to_vec(body).unwrap_or_default())
}

impl AuditRecord {
    /// The record as a view of the chain shows it: its body only if `shown`.
    pub fn view(&self, shown: bool) -> AuditView {
        AuditView {
            seq: self.body.seq,
            body: shown.then(|| self.body.clone()),
            hash: self.hash,
            prev: self.body.prev,
            signature: self.signature,
        }
    }
}

/// Checks a chain as a stakeholder received it: every signature by the service's key,
/// every visible body hashing to its record's hash, every `prev` naming the record
/// before, sequence numbers from 1 without gaps. Returns the number of records checked.
pub fn verify_chain(views: &[AuditView], service_key: &VerifyingKey) -> Result<usize, AuditError> {
    let mut prev = Digest::from_bytes([0; 32]);
    for (i, v) in views.iter().enumerate() {
        let record = v.seq;
        let expected = (i as u64).saturating_add(1);
        if v.seq != expected {
            return Err(AuditError::Sequence { record, expected });
        }
        if v.prev != prev {
            return Err(AuditError::Unlinked { record });
        }
        if let Some(body) = &v.body {
            if body.seq != v.seq || body.prev != v.prev || body_hash(body) != v.hash {
                return Err(AuditError::Edited { record });
            }
        }
        if verify_digest(service_key, AUDIT_CONTEXT, &v.hash, &v.signature).is_err() {
            return Err(AuditError::Signature { record });
        }
        prev = v.hash;
    }
    Ok(views.len())
}

/// The point of the chain a stakeholder last verified: the head record's sequence number
/// and hash (the service signed that hash), and which records it was shown in full. A
/// later chain must extend it: records at or before it cannot vanish, change or be
/// hidden from it unnoticed, whatever happens to the service's store.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Checkpoint {
    /// The head's sequence number (0: the empty chain).
    pub seq: u64,
    /// The head's hash (zeros for the empty chain).
    pub head: Digest,
    /// The sequence numbers of the records whose bodies the stakeholder was shown.
    #[serde(default)]
    pub seen: Vec<u64>,
}

/// [`verify_chain`], and that the chain extends `since` (the checkpoint of an earlier
/// verification): it holds at least `since.seq` records, record `since.seq` has hash
/// `since.head`, and every record shown in full then is shown in full now (a store edit
/// that drops the stakeholder from a record's parties keeps the record's hash and
/// signature, but not its visibility). Returns the chain's new checkpoint.
///
/// Errors: the [`AuditError`] naming the first record that fails, the cut, or the record
/// hidden since.
pub fn verify_extends(
    views: &[AuditView],
    service_key: &VerifyingKey,
    since: Option<&Checkpoint>,
) -> Result<Checkpoint, AuditError> {
    verify_chain(views, service_key)?;
    let seen: Vec<u64> = views.iter().filter(|v| v.body.is_some()).map(|v| v.seq).collect();
    let (seq, head) = views.last().map_or((0, Digest::from_bytes([0; 32])), |v| (v.seq, v.hash));
    let Some(c) = since else { return Ok(Checkpoint { seq, head, seen }) };
    // Sequence numbers run from 1 without gaps (verify_chain): record n is views[n - 1].
    let record = |n: u64| usize::try_from(n).ok().and_then(|i| i.checked_sub(1)).and_then(|i| views.get(i));
    match record(c.seq) {
        _ if c.seq == 0 => {}
        Some(v) if v.hash == c.head => {}
        Some(_) => return Err(AuditError::Rewritten { record: c.seq, head: c.head }),
        None => return Err(AuditError::Cut { ends: seq, record: c.seq, head: c.head }),
    }
    if let Some(n) = c.seen.iter().find(|n| record(**n).is_none_or(|v| v.body.is_none())) {
        return Err(AuditError::Hidden { record: *n });
    }
    Ok(Checkpoint { seq, head, seen })
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::SigningKey;
    use perun_core::sign_digest;

    /// A chain of `n` records signed with a fresh key, alternating between records that
    /// concern hospital-a and records that do not.
    fn chain(n: usize) -> (SigningKey, Vec<AuditRecord>) {
        let key = SigningKey::generate(&mut rand::rngs::OsRng);
        let a = Name::new("hospital-a").unwrap();
        let mut prev = Digest::from_bytes([0; 32]);
        let mut out = Vec::new();
        for i in 0..n {
            let body = AuditBody {
                seq: i as u64 + 1,
                prev,
                at: 100 + i as u64,
                kind: AuditKind::JobApproved,
                actor: Actor::Stakeholder(Name::new(if i % 2 == 0 { "hospital-a" } else { "hospital-b" }).unwrap()),
                job: None,
                assets: Vec::new(),
                parties: if i % 2 == 0 { vec![a.clone()] } else { Vec::new() },
                detail: "x".into(),
            };
            let hash = body_hash(&body);
            prev = hash;
            out.push(AuditRecord { body, hash, signature: sign_digest(&key, AUDIT_CONTEXT, &hash) });
        }
        (key, out)
    }

    fn view_for(records: &[AuditRecord], who: &Name) -> Vec<AuditView> {
        records.iter().map(|r| r.view(r.body.actor.is_stakeholder(who) || r.body.parties.contains(who))).collect()
    }

    #[test]
    fn an_intact_chain_verifies_with_hidden_records() {
        let (key, recs) = chain(5);
        let views = view_for(&recs, &Name::new("hospital-a").unwrap());
        assert_eq!(views.iter().filter(|v| v.body.is_some()).count(), 3);
        assert_eq!(verify_chain(&views, &key.verifying_key()).unwrap(), 5);
    }

    #[test]
    fn edits_cuts_reorders_and_foreign_signatures_are_caught() {
        let (key, recs) = chain(4);
        let vk = key.verifying_key();
        let views = view_for(&recs, &Name::new("hospital-a").unwrap());

        let mut edited = views.clone();
        edited[0].body.as_mut().unwrap().detail = "nothing happened".into();
        assert!(verify_chain(&edited, &vk).unwrap_err().to_string().contains("edited"));

        let mut cut = views.clone();
        cut.remove(1);
        assert!(verify_chain(&cut, &vk).is_err());

        let mut swapped = views.clone();
        swapped.swap(1, 2);
        assert!(verify_chain(&swapped, &vk).is_err());

        let other = SigningKey::generate(&mut rand::rngs::OsRng).verifying_key();
        assert!(verify_chain(&views, &other).unwrap_err().to_string().contains("signature"));
    }

    #[test]
    fn a_chain_must_extend_the_last_verified_checkpoint() {
        let (key, recs) = chain(5);
        let vk = key.verifying_key();
        let a = Name::new("hospital-a").unwrap();
        let views = view_for(&recs, &a);
        let at3 = verify_extends(&views[..3], &vk, None).unwrap();
        assert_eq!(at3.seq, 3);
        // Growing on from it is fine.
        let at5 = verify_extends(&views, &vk, Some(&at3)).unwrap();
        assert_eq!((at5.seq, at5.head), (5, recs[4].hash));
        // The tail cut: the chain verifies on its own, but not against the checkpoint.
        assert!(verify_chain(&views[..4], &vk).is_ok());
        let e = verify_extends(&views[..4], &vk, Some(&at5)).unwrap_err().to_string();
        assert!(e.contains("cut") && e.contains("record 5"), "{e}");
        // A different history of the same length (another service, the same key).
        let (_, other) = chain(5);
        let e = verify_extends(&view_for(&other, &a), &vk, Some(&at5)).unwrap_err().to_string();
        assert!(e.contains("signature") || e.contains("rewritten"), "{e}");
        // A record once shown that is hidden later (its parties edited in the store).
        let mut hidden = views.clone();
        hidden[0].body = None;
        let e = verify_extends(&hidden, &vk, Some(&at5)).unwrap_err().to_string();
        assert!(e.contains("audit record 1") && e.contains("hidden"), "{e}");
        // The empty chain is a checkpoint too.
        assert_eq!(verify_extends(&[], &vk, None).unwrap().seq, 0);
    }

    #[test]
    fn actors_read_one_way_and_keep_their_wire_form() {
        let name = |s: &str| Name::new(s).unwrap();
        for (text, actor) in [
            ("service", Actor::Service),
            ("operator", Actor::Operator),
            ("anonymous", Actor::Anonymous),
            ("worker:gpu-1", Actor::Worker(name("gpu-1"))),
            ("hospital-a", Actor::Stakeholder(name("hospital-a"))),
            ("worker:Not A Name", Actor::Other("worker:Not A Name".into())),
        ] {
            let parsed: Actor = serde_json::from_value(serde_json::json!(text)).unwrap();
            assert_eq!(parsed, actor);
            assert_eq!(serde_json::to_value(&actor).unwrap(), serde_json::json!(text));
        }
        // The service, a worker and an anonymous caller concern no stakeholder, whatever
        // names are registered.
        for a in [Actor::Service, Actor::Anonymous, Actor::Worker(name("service")), Actor::Other("service".into())] {
            assert!(!a.is_stakeholder(&name("service")) && !a.is_stakeholder(&name("anonymous")));
        }
        assert!(Actor::RESERVED.iter().all(|r| !matches!(r.parse::<Actor>(), Ok(Actor::Stakeholder(_)))));
    }
}
