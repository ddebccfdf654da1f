//! The audit log: append-only records, each naming the hash of the one before and signed
//! by the service, so that a removed, reordered or edited record shows.
//!
//! A record's hash is SHA-256 over its canonical JSON (which includes `prev`); the
//! service signs the hash with its Ed25519 key under [`AUDIT_CONTEXT`]. A stakeholder
//! fetches the whole chain: the records that concern it with their bodies, the others as
//! hash and signature only, so it can check the chain is unbroken without seeing what is
//! not its own.

use ed25519_dalek::SigningKey;
use perun_core::{sign_digest, Digest, Name};
pub use perun_proto::audit::{
    body_hash, verify_chain, verify_extends, Actor, AuditBody, AuditError, AuditKind, AuditRecord, AuditView,
    Checkpoint, AUDIT_CONTEXT,
};

use crate::store::Tx;
use crate::TrustError;

/// What to record (the chain fields are filled in by [`append`]).
#[derive(Clone, Debug)]
pub struct Event {
    /// What happened.
    pub kind: AuditKind,
    /// Who did it.
    pub actor: Actor,
    /// The job concerned.
    pub job: Option<Digest>,
    /// The assets concerned.
    pub assets: Vec<Name>,
    /// The stakeholders it concerns.
    pub parties: Vec<Name>,
    /// A human-readable account.
    pub detail: String,
}

impl Event {
    /// An event with no job or assets. The detail is cut at [`MAX_DETAIL`] bytes: a record
    /// holds an account, not whatever text a caller's request carried.
    pub fn new(kind: AuditKind, actor: Actor, detail: impl Into<String>) -> Self {
        let detail = clip(detail.into(), MAX_DETAIL);
        Self { kind, actor, job: None, assets: Vec::new(), parties: Vec::new(), detail }
    }

    /// Names the job and every party and asset of its manifest.
    pub fn for_job(mut self, id: Digest, manifest: &perun_core::JobManifest) -> Self {
        self.job = Some(id);
        self.assets = manifest.assets().map(|a| a.asset.clone()).collect();
        let mut parties: Vec<Name> = manifest.required_approvers().into_iter().cloned().collect();
        parties.extend(manifest.receivers.iter().cloned());
        // The provider runs the job: it sees the verdicts on its workers.
        parties.push(manifest.provider.clone());
        parties.sort();
        parties.dedup();
        self.parties = parties;
        self
    }
}

/// The longest detail an audit record keeps, in bytes.
pub const MAX_DETAIL: usize = 2048;

/// `text` cut to at most `max` bytes at a character boundary, marked where it was cut.
pub(crate) fn clip(mut text: String, max: usize) -> String {
    if text.len() <= max {
        return text;
    }
    const MARK: &str = " [cut]";
    let mut end = max.saturating_sub(MARK.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.truncate(end);
    text.push_str(MARK);
    text
}

/// Appends `event` to the chain inside `tx`, signed with `key`.
pub fn append(tx: &mut dyn Tx, key: &SigningKey, at: u64, event: Event) -> Result<AuditRecord, TrustError> {
    let (seq, prev) = match tx.audit_tail()? {
        Some((seq, hash)) => {
            let hash = hash.parse().map_err(|e| TrustError::Store(format!("audit record {seq}: {e}")))?;
            (seq + 1, hash)
        }
        None => (1, Digest::from_bytes([0; 32])),
    };
    let body = AuditBody {
        seq,
        prev,
        at,
        kind: event.kind,
        actor: event.actor,
        job: event.job,
        assets: event.assets,
        parties: event.parties,
        detail: event.detail,
    };
    let hash = body_hash(&body);
    let signature = sign_digest(key, AUDIT_CONTEXT, &hash);
    let record = AuditRecord { body, hash, signature };
    let bytes = serde_json::to_vec(&record).map_err(|e| TrustError::Store(e.to_string()))?;
    tx.audit_append(seq, &hash.to_string(), &bytes)?;
    Ok(record)
}

/// Whether a record concerns `who`.
pub fn concerns(body: &AuditBody, who: &Name) -> bool {
    body.actor.is_stakeholder(who) || body.parties.contains(who)
}

/// The chain as `who` may see it.
pub fn view_for(records: &[AuditRecord], who: &Name) -> Vec<AuditView> {
    records.iter().map(|r| r.view(concerns(&r.body, who))).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::sqlite::SqliteStore;
    use crate::store::Store as _;

    #[test]
    fn records_appended_through_the_store_form_a_chain_a_stakeholder_verifies() {
        let key = SigningKey::generate(&mut rand::rngs::OsRng);
        let store = SqliteStore::in_memory().unwrap();
        let a = Name::new("hospital-a").unwrap();
        let mut recs = Vec::new();
        for i in 0..5u64 {
            let mut e = Event::new(
                AuditKind::JobApproved,
                Actor::Stakeholder(Name::new(if i % 2 == 0 { "hospital-a" } else { "hospital-b" }).unwrap()),
                "x",
            );
            if i % 2 == 0 {
                e.parties = vec![a.clone()];
            }
            recs.push(store.write(|tx| append(tx, &key, 100 + i, e)).unwrap());
        }
        let views = view_for(&recs, &a);
        assert_eq!(views.iter().filter(|v| v.body.is_some()).count(), 3);
        assert_eq!(verify_chain(&views, &key.verifying_key()).unwrap(), 5);
        let mut edited = views.clone();
        edited[0].body.as_mut().unwrap().detail = "nothing happened".into();
        assert_eq!(verify_chain(&edited, &key.verifying_key()), Err(AuditError::Edited { record: 1 }));
    }

    #[test]
    fn details_are_cut_at_a_character_boundary() {
        assert_eq!(clip("short".into(), 10), "short");
        let long = "é".repeat(2000);
        let cut = clip(long, MAX_DETAIL);
        assert!(cut.len() <= MAX_DETAIL && cut.ends_with(" [cut]"), "{}", cut.len());
        let e = Event::new(AuditKind::Refused, Actor::Anonymous, "m".repeat(2_000_000));
        assert!(e.detail.len() <= MAX_DETAIL);
    }
}
