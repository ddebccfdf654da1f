//! Asset owners' terms and the ledger of what jobs spent.
//!
//! Terms are signed by the asset's owner ([`perun_core::terms::TERMS_CONTEXT`]); the
//! service checks the signature against the owner's registered key whenever it decides on
//! them, so terms edited in the store decide nothing. They are checked when a job is
//! proposed (refused with the term named) and again, with the ledger, in the transaction
//! that releases the keys, which charges the ledger (audited).

use perun_core::terms::TERMS_CONTEXT;
use perun_core::{verify_digest, AssetKind, AssetTerms, JobManifest, Name, SignedTerms};

use super::Trust;
use crate::audit::{Actor, AuditKind, Event};
use crate::records::{AssetRecord, JobRecord, StakeholderRecord};
use crate::store::{Store, Tx, TxExt as _};
use crate::TrustError;

impl<S: Store> Trust<S> {
    /// Checks terms an owner attaches at registration: they name this asset and
    /// content, follow their own rules, and carry the owner's signature.
    pub(super) fn check_new_terms(
        &self,
        owner: &Name,
        name: &Name,
        kind: AssetKind,
        content: &perun_core::Digest,
        signed: &SignedTerms,
    ) -> Result<(), TrustError> {
        let t = &signed.terms;
        if &t.asset != name || &t.content_digest != content {
            return Err(TrustError::BadRequest(format!(
                "the terms name asset `{}` with content {}, not `{name}` with {content}",
                t.asset, t.content_digest
            )));
        }
        t.validate().map_err(|e| TrustError::BadRequest(e.to_string()))?;
        if t.privacy.is_some() && kind != AssetKind::Dataset {
            return Err(TrustError::BadRequest("a privacy term applies to data sets only".into()));
        }
        let key = self.store.read(|tx| stakeholder_key(tx, owner))?;
        verify_digest(&key, TERMS_CONTEXT, &t.digest(), &signed.signature).map_err(|_| {
            TrustError::BadRequest(format!("the terms of `{name}` are not signed by {owner}'s registered key"))
        })
    }
}

fn stakeholder_key(tx: &mut dyn Tx, who: &Name) -> Result<ed25519_dalek::VerifyingKey, TrustError> {
    let s: StakeholderRecord =
        tx.get(who.as_str())?.ok_or_else(|| TrustError::Store(format!("stakeholder {who} vanished")))?;
    s.identity.verifying_key().map_err(|e| TrustError::Store(e.to_string()))
}

/// The terms of `rec`, their signature checked again against its owner's key; an
/// asset without terms has none to keep.
pub(crate) fn verified_terms(tx: &mut dyn Tx, rec: &AssetRecord) -> Result<Option<AssetTerms>, TrustError> {
    let Some(signed) = &rec.terms else { return Ok(None) };
    let key = stakeholder_key(tx, &rec.owner)?;
    let t = &signed.terms;
    if t.asset != rec.name
        || t.content_digest != rec.content_digest
        || verify_digest(&key, TERMS_CONTEXT, &t.digest(), &signed.signature).is_err()
    {
        return Err(TrustError::Store(format!(
            "the stored terms of asset `{}` do not verify under {}'s key: the store was edited",
            rec.name, rec.owner
        )));
    }
    Ok(Some(t.clone()))
}

/// Every term of every asset of `manifest`, against each asset's ledger, at `now`. The
/// first term broken is named.
pub(crate) fn check_terms(tx: &mut dyn Tx, manifest: &JobManifest, now: u64) -> Result<(), TrustError> {
    for a in manifest.assets() {
        let Some(rec) = tx.get::<AssetRecord>(a.asset.as_str())? else { continue };
        if let Some(t) = verified_terms(tx, &rec)? {
            t.check(manifest, &rec.usage, now).map_err(|v| TrustError::TermsRefused(v.to_string()))?;
        }
    }
    Ok(())
}

/// The owners whose terms ask to review `job`'s outputs.
pub(crate) fn reviewers(tx: &mut dyn Tx, manifest: &JobManifest) -> Result<Vec<Name>, TrustError> {
    let mut out = Vec::new();
    for a in manifest.assets() {
        let Some(rec) = tx.get::<AssetRecord>(a.asset.as_str())? else { continue };
        if verified_terms(tx, &rec)?.is_some_and(|t| t.review) && !out.contains(&rec.owner) {
            out.push(rec.owner.clone());
        }
    }
    Ok(out)
}

impl<S: Store> Trust<S> {
    /// Charges every asset of `job` in the ledger: one job, and the job's declared
    /// epsilon where the asset's terms ask for privacy; each charge audited. Runs in the
    /// transaction that releases the keys, after [`check_terms`] passed in it.
    pub(super) fn charge_ledger(&self, tx: &mut dyn Tx, job: &JobRecord) -> Result<(), TrustError> {
        for a in job.manifest.assets() {
            let Some(mut rec) = tx.get::<AssetRecord>(a.asset.as_str())? else { continue };
            let Some(terms) = verified_terms(tx, &rec)? else { continue };
            let epsilon = terms.charge(&job.manifest);
            rec.usage.jobs = rec.usage.jobs.saturating_add(1);
            rec.usage.epsilon_spent += epsilon;
            tx.put(&rec)?;
            let budget = terms
                .privacy
                .map(|p| {
                    format!("; epsilon {epsilon} charged, {:.4} of {} spent", rec.usage.epsilon_spent, p.total_epsilon)
                })
                .unwrap_or_default();
            let max = terms.max_jobs.map(|m| format!(" of at most {m}")).unwrap_or_default();
            let detail = format!("asset {}: job {} used it ({}{max} jobs){budget}", rec.name, job.id, rec.usage.jobs);
            let mut ev = Event::new(AuditKind::LedgerCharged, Actor::Service, detail).for_job(job.id, &job.manifest);
            ev.assets = vec![rec.name.clone()];
            self.audit(tx, ev)?;
        }
        Ok(())
    }
}
