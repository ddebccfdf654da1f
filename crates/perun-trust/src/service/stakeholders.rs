//! Stakeholders: registration, signed-request checks, assets and their wrapped keys,
//! platform policies, and each stakeholder's view of the audit log.

use perun_attest::JobPolicy;
use perun_core::{verify_digest, AssetKind, Name, Role};
use perun_proto::PolicyDocument;
use perun_seal::wrap::WrapContext;
use perun_seal::AssetKey;

use super::Trust;
use crate::audit::{self, Actor, AuditKind, AuditRecord, Event};
use crate::auth::{request_digest, SignedHeaders, MAX_SKEW_S, REQUEST_CONTEXT};
use crate::records::{ApplicationRecord, AssetRecord, PolicyRecord, RequestNonceRecord, StakeholderRecord};
use crate::store::{Record as _, Store, Table, Tx, TxExt as _};
use crate::wire::{
    Application, AssetInfo, AuditLog, PolicyInfo, RegisterAsset, RegisterStakeholder, Registration, RegistrationStatus,
    ServiceInfo,
};
use crate::TrustError;

/// A request as the HTTP layer hands it over for authentication.
#[derive(Clone, Copy, Debug)]
pub struct RequestParts<'a> {
    /// `GET`, `POST`...
    pub method: &'a str,
    /// Path and query.
    pub path: &'a str,
    /// The raw body.
    pub body: &'a [u8],
}

/// The most policies one provider may publish.
pub const MAX_POLICIES_PER_PROVIDER: usize = 64;

/// The most policy bytes (JSON) one provider may keep here, in all.
pub const MAX_POLICY_BYTES_PER_PROVIDER: u64 = 32 << 20;

pub use crate::records::APPLICATION_VALID_S;

/// Registrations that may await admission at once.
pub const MAX_APPLICATIONS: usize = 1000;

/// Registrations from one network (/24, /48) that may await admission at once.
pub const MAX_APPLICATIONS_PER_NETWORK: usize = 10;

impl<S: Store> Trust<S> {
    /// Who the service is.
    pub fn info(&self) -> ServiceInfo {
        ServiceInfo {
            version: env!("CARGO_PKG_VERSION").into(),
            audit_key: self.keys.audit_key(),
            wrap_recipient: self.keys.wrap_recipient(),
            tls_fingerprint: self.keys.tls_fingerprint(),
        }
    }

    /// Checks a signed request's time, signature (by `key`) and nonce, remembering the
    /// nonce so the request cannot be replayed.
    fn check_signed(
        &self,
        sh: &SignedHeaders,
        req: RequestParts<'_>,
        key: &ed25519_dalek::VerifyingKey,
    ) -> Result<(), TrustError> {
        let now = self.now();
        if sh.time.abs_diff(now) > MAX_SKEW_S {
            return Err(TrustError::Unauthenticated(format!(
                "request time {} is more than {MAX_SKEW_S} s from the service's clock ({now}): check the clock",
                sh.time
            )));
        }
        if sh.nonce.len() < 16 || sh.nonce.len() > 64 || !sh.nonce.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(TrustError::Unauthenticated("the request nonce must be 16 to 64 hex digits".into()));
        }
        let d = request_digest(&self.keys.tls_fingerprint(), req.method, req.path, req.body, sh.time, &sh.nonce);
        verify_digest(key, REQUEST_CONTEXT, &d, &sh.signature).map_err(|_| {
            TrustError::Unauthenticated(format!("the request signature of {} does not verify", sh.identity))
        })?;
        // Kept as the bytes the nonce spells (lower-case hex): one nonce in another case
        // is the same nonce.
        let record = RequestNonceRecord { key: format!("{}/{}", sh.identity, sh.nonce.to_ascii_lowercase()) };
        let fresh = self.store.write(|tx| tx.insert(&record, Some(now.saturating_add(2 * MAX_SKEW_S))))?;
        if !fresh {
            return Err(TrustError::Unauthenticated("replayed request: this nonce was already used".into()));
        }
        Ok(())
    }

    /// Authenticates a signed stakeholder request; returns the stakeholder.
    pub fn authenticate(&self, sh: &SignedHeaders, req: RequestParts<'_>) -> Result<StakeholderRecord, TrustError> {
        let who: Option<StakeholderRecord> = self.store.read(|tx| tx.get(sh.identity.as_str()))?;
        let Some(who) = who else { return Err(self.not_a_member(&sh.identity)?) };
        let key = who.identity.verifying_key().map_err(|e| TrustError::Store(e.to_string()))?;
        self.check_signed(sh, req, &key)?;
        Ok(who)
    }

    /// Registers a stakeholder; the request must be signed by the key it registers, from
    /// `peer` (the caller's address: registrations are rate-limited per caller).
    ///
    /// With [`TrustConfig::open_registration`] (development) it is a member at once.
    /// Otherwise it becomes an application ([`RegistrationStatus::Pending`]) that the
    /// operator admits ([`Self::admit`]) or a quorum of members votes in
    /// ([`Self::vote_admission`]); until then it authenticates nothing. Applications
    /// expire after [`APPLICATION_VALID_S`], and at most [`MAX_APPLICATIONS`] wait at once.
    pub fn register_stakeholder(
        &self,
        peer: Option<std::net::IpAddr>,
        sh: &SignedHeaders,
        req: RequestParts<'_>,
        body: RegisterStakeholder,
    ) -> Result<Registration, TrustError> {
        // Anyone may apply (the signature is by the key registered): applications are
        // rate-limited per caller so that none can fill the store, and no caller can
        // spend another's share.
        let caller = peer.map_or_else(|| "unknown peer".to_owned(), caller_prefix);
        if self.registrations.check_key(&caller).is_err() {
            return Err(TrustError::TooManyRequests(
                "too many registrations from your network: try again in a few minutes".into(),
            ));
        }
        let id = body.identity;
        id.check().map_err(|e| TrustError::BadRequest(e.to_string()))?;
        // The recipient outputs are wrapped to must be a key, not only look like one: a
        // receiver whose recipient does not parse would fail every release to its job.
        perun_seal::keys::parse_recipient(&id.age_recipient)
            .map_err(|e| TrustError::BadRequest(format!("the identity's age recipient: {e}")))?;
        if Actor::RESERVED.contains(&id.name.as_str()) {
            return Err(TrustError::BadRequest(format!(
                "the name `{}` is reserved (it names the service's own actors in the audit log): choose another",
                id.name
            )));
        }
        if body.roles.is_empty() {
            return Err(TrustError::BadRequest(
                "a registration declares at least one role: data-owner, model-owner, provider, receiver".into(),
            ));
        }
        let roles = body.roles;
        if id.name != sh.identity {
            return Err(TrustError::BadRequest("the request must be signed by the identity it registers".into()));
        }
        let key = id.verifying_key().map_err(|e| TrustError::BadRequest(e.to_string()))?;
        self.check_signed(sh, req, &key)?;
        let now = self.now();
        let admitted = |name: &Name| Registration {
            name: name.clone(),
            status: RegistrationStatus::Admitted,
            message: format!("`{name}` is registered"),
        };
        self.store.write(|tx| {
            if let Some(existing) = tx.get::<StakeholderRecord>(id.name.as_str())? {
                if existing.identity == id && existing.roles == roles {
                    return Ok(admitted(&id.name));
                }
                if existing.identity == id {
                    return Err(TrustError::Conflict(format!(
                        "`{}` is registered with the roles {}: roles cannot change after registration",
                        id.name,
                        role_list(&existing.roles)
                    )));
                }
                return Err(TrustError::Conflict(format!("the name `{}` is taken by another key", id.name)));
            }
            if self.config.open_registration {
                let detail = format!("{} as {} (open registration: development)", id.fingerprint(), role_list(&roles));
                tx.put(&StakeholderRecord { identity: id.clone(), registered_at: now, roles })?;
                let mut e = Event::new(AuditKind::StakeholderRegistered, Actor::stakeholder(&id.name), detail);
                e.parties = vec![id.name.clone()];
                self.audit(tx, e)?;
                return Ok(admitted(&id.name));
            }
            if let Some(pending) = tx.get::<ApplicationRecord>(id.name.as_str())? {
                if pending.identity != id || pending.roles != roles {
                    return Err(TrustError::Conflict(format!(
                        "the name `{}` has a pending registration with another key or other roles",
                        id.name
                    )));
                }
            } else {
                let waiting: Vec<ApplicationRecord> = tx.list_readable("")?;
                if waiting.len() >= MAX_APPLICATIONS {
                    return Err(TrustError::TooManyRequests(format!(
                        "{MAX_APPLICATIONS} registrations already await admission: ask the operator to admit or \
                         reject them"
                    )));
                }
                if waiting.iter().filter(|a| a.from == caller).count() >= MAX_APPLICATIONS_PER_NETWORK {
                    return Err(TrustError::TooManyRequests(format!(
                        "{MAX_APPLICATIONS_PER_NETWORK} registrations from your network already await admission: \
                         ask the operator to admit or reject them"
                    )));
                }
                let rec = ApplicationRecord {
                    identity: id.clone(),
                    roles,
                    applied_at: now,
                    votes: Default::default(),
                    from: caller.clone(),
                };
                tx.insert(&rec, rec.expires())?;
            }
            Ok(Registration {
                name: id.name.clone(),
                status: RegistrationStatus::Pending,
                message: self.pending_message(&id.name),
            })
        })
    }

    /// Why `who`, who is no member, is refused: its registration awaits admission, or it
    /// never registered. (The outer error: the store failed.)
    fn not_a_member(&self, who: &Name) -> Result<TrustError, TrustError> {
        let pending: Option<ApplicationRecord> = self.store.read(|tx| tx.get(who.as_str()))?;
        Ok(TrustError::Unauthenticated(match pending {
            Some(a) if a.pending_at(self.now()) => self.pending_message(who),
            _ => format!(
                "`{who}` is not registered here: run `perun id register {who} --role ROLE` first (data-owner, \
                 model-owner, provider, receiver)"
            ),
        }))
    }

    /// What a pending registration is told: who admits it, and how.
    fn pending_message(&self, name: &Name) -> String {
        let members = match self.config.admission_quorum {
            0 => String::new(),
            1 => " or one member (`perun id admit NAME --fingerprint KEY --as MEMBER`)".to_owned(),
            n => format!(" or {n} members (`perun id admit NAME --fingerprint KEY --as MEMBER`)"),
        };
        format!(
            "`{name}` awaits admission: the service's operator admits it (`perun serve --admit {name} --fingerprint KEY`){members}; \
             it expires unadmitted after {} days",
            APPLICATION_VALID_S / 86_400
        )
    }

    /// The registrations awaiting admission, oldest first.
    pub fn applications(&self) -> Result<Vec<Application>, TrustError> {
        let mut all: Vec<ApplicationRecord> = self.store.read(|tx| tx.list_readable(""))?;
        let now = self.now();
        all.retain(|a| a.pending_at(now));
        all.sort_by_key(|a| a.applied_at);
        Ok(all
            .into_iter()
            .map(|a| Application {
                identity: a.identity,
                roles: a.roles,
                applied_at: a.applied_at,
                votes: a.votes,
                quorum: self.config.admission_quorum,
            })
            .collect())
    }

    /// The operator admits pending registration `name` whose key has `fingerprint` (as the
    /// applicant's `perun id show` prints it: a squatter who applied first under the name
    /// has another key). It acts on the store: whoever runs the service is trusted with
    /// who joins it. Audited with [`Actor::Operator`].
    ///
    /// Errors: [`TrustError::NotFound`] when no registration of that name awaits;
    /// [`TrustError::Conflict`] when its key is not `fingerprint`.
    pub fn admit(&self, name: &Name, fingerprint: &str) -> Result<Registration, TrustError> {
        self.store.write(|tx| {
            let app = self.pending_in(tx, name)?;
            check_fingerprint(name, &app, fingerprint)?;
            self.admit_in(tx, app, Actor::Operator, "admitted by the operator".into())
        })
    }

    /// The operator rejects pending registration `name`: it is removed (its name is free
    /// again). Not audited: an application was never a member.
    ///
    /// Errors: [`TrustError::NotFound`] when no registration of that name awaits.
    pub fn reject(&self, name: &Name) -> Result<(), TrustError> {
        self.store.write(|tx| {
            if tx.delete(Table::Applications, name.as_str())? {
                Ok(())
            } else {
                Err(TrustError::NotFound(format!("no registration of `{name}` awaits admission")))
            }
        })
    }

    /// Member `voter` votes to admit pending registration `name`, whose key it checked
    /// has `fingerprint`; with [`TrustConfig::admission_quorum`] votes it is admitted.
    ///
    /// Errors: [`TrustError::Forbidden`] where members do not admit (quorum 0);
    /// [`TrustError::NotFound`] when no registration of that name awaits;
    /// [`TrustError::Conflict`] when its key is not the one the voter checked, or the
    /// voter voted already.
    pub fn vote_admission(&self, voter: &Name, name: &str, fingerprint: &str) -> Result<Registration, TrustError> {
        let quorum = self.config.admission_quorum;
        if quorum == 0 {
            return Err(TrustError::Forbidden(
                "members do not admit here: the service's operator does (`perun serve --admit NAME`)".into(),
            ));
        }
        let name = Name::new(name).map_err(|e| TrustError::BadRequest(e.to_string()))?;
        self.store.write(|tx| {
            let mut app = self.pending_in(tx, &name)?;
            check_fingerprint(&name, &app, fingerprint)?;
            if !app.votes.insert(voter.clone()) {
                return Err(TrustError::Conflict(format!(
                    "you voted to admit `{name}` already ({} of {quorum} votes)",
                    app.votes.len()
                )));
            }
            let votes = app.votes.len();
            if votes >= quorum as usize {
                let who: Vec<&str> = app.votes.iter().map(Name::as_str).collect();
                let how = format!("admitted by {}", who.join(", "));
                return self.admit_in(tx, app, Actor::stakeholder(voter), how);
            }
            tx.put(&app)?;
            let mut e = Event::new(
                AuditKind::AdmissionVoted,
                Actor::stakeholder(voter),
                format!("{voter} voted to admit {name} as {} ({votes} of {quorum})", role_list(&app.roles)),
            );
            e.parties = app.votes.iter().cloned().collect();
            self.audit(tx, e)?;
            Ok(Registration {
                name: name.clone(),
                status: RegistrationStatus::Pending,
                message: format!("{votes} of {quorum} votes to admit `{name}`"),
            })
        })
    }

    /// The registration `name` that awaits admission inside `tx` (not expired).
    fn pending_in(&self, tx: &mut dyn Tx, name: &Name) -> Result<ApplicationRecord, TrustError> {
        tx.get::<ApplicationRecord>(name.as_str())?
            .filter(|a| a.pending_at(self.now()))
            .ok_or_else(|| TrustError::NotFound(format!("no registration of `{name}` awaits admission")))
    }

    /// Moves application `app` into the members inside `tx`, audited.
    fn admit_in(
        &self,
        tx: &mut dyn Tx,
        app: ApplicationRecord,
        actor: Actor,
        how: String,
    ) -> Result<Registration, TrustError> {
        let name = app.identity.name.clone();
        if tx.get::<StakeholderRecord>(name.as_str())?.is_some() {
            return Err(TrustError::Conflict(format!("`{name}` is a member already")));
        }
        let app_key = app.identity.fingerprint();
        let detail = format!("{name} (key {app_key}) as {}: {how}", role_list(&app.roles));
        let mut parties = app.votes;
        parties.insert(name.clone());
        tx.put(&StakeholderRecord { identity: app.identity, registered_at: self.now(), roles: app.roles })?;
        tx.delete(Table::Applications, name.as_str())?;
        let mut e = Event::new(AuditKind::StakeholderRegistered, actor, detail);
        e.parties = parties.into_iter().collect();
        self.audit(tx, e)?;
        Ok(Registration {
            name: name.clone(),
            status: RegistrationStatus::Admitted,
            message: format!("`{name}` (key {}) is admitted", app_key),
        })
    }

    /// Refuses `who` an action that needs `role`, unless its registration declared it.
    pub(crate) fn require_role(&self, who: &Name, role: Role, action: &str) -> Result<(), TrustError> {
        let rec: Option<StakeholderRecord> = self.store.read(|tx| tx.get(who.as_str()))?;
        match rec {
            Some(r) if r.roles.contains(&role) => Ok(()),
            Some(r) => Err(TrustError::Forbidden(format!(
                "{action} is for a {role}; `{who}` registered as {}",
                role_list(&r.roles)
            ))),
            None => Err(self.not_a_member(who)?),
        }
    }

    /// Registers an asset with its key wrapped to the service.
    pub fn register_asset(&self, owner: &Name, body: RegisterAsset) -> Result<AssetInfo, TrustError> {
        let role = match body.kind {
            AssetKind::Dataset => Role::DataOwner,
            AssetKind::Model | AssetKind::Output => Role::ModelOwner,
        };
        self.require_role(owner, role, &format!("registering a {}", body.kind))?;
        if body.location.trim().is_empty() || body.location.len() > 2048 || body.location.contains(['\n', '\r']) {
            return Err(TrustError::BadRequest("location must be a path or URL of at most 2048 characters".into()));
        }
        // The key must have been wrapped by this owner for this asset: a wrapped key
        // lifted from another registration names another owner, asset or content.
        let context = WrapContext::asset_key(owner, &body.name, body.kind, &body.content_digest);
        let key = perun_seal::wrap::unwrap(&body.wrapped_key, self.keys.wrap.identity(), &context).map_err(|e| {
            TrustError::BadRequest(format!(
                "the wrapped key does not open with the service key for this registration ({e}): wrap it to the \
                 service's wrap_recipient, bound to this owner and asset (perun_seal::wrap::WrapContext::asset_key)"
            ))
        })?;
        let text =
            std::str::from_utf8(&key).map_err(|_| TrustError::BadRequest("the wrapped key is not text".into()))?;
        let asset_key = AssetKey::parse(text).map_err(|e| TrustError::BadRequest(format!("wrapped key: {e}")))?;
        if let Some(t) = &body.terms {
            self.check_new_terms(owner, &body.name, body.kind, &body.content_digest, t)?;
        }
        if asset_key.recipient().to_string() != body.recipient {
            return Err(TrustError::BadRequest("the wrapped key does not belong to the given recipient".into()));
        }
        let record = AssetRecord {
            name: body.name,
            owner: owner.clone(),
            kind: body.kind,
            content_digest: body.content_digest,
            location: body.location,
            wrapped_key: body.wrapped_key,
            registered_at: self.now(),
            terms: body.terms,
            usage: perun_core::Usage::default(),
        };
        self.store.write(|tx| {
            if tx.get::<AssetRecord>(record.name.as_str())?.is_some() {
                return Err(TrustError::Conflict(format!("an asset named `{}` is already registered", record.name)));
            }
            tx.put(&record)?;
            let mut e = Event::new(
                AuditKind::AssetRegistered,
                Actor::stakeholder(owner),
                format!("{} {} ({})", record.kind.as_str(), record.name, record.content_digest),
            );
            e.assets = vec![record.name.clone()];
            e.parties = vec![owner.clone()];
            self.audit(tx, e)
        })?;
        tracing::info!(asset = %record.name, owner = %owner, "asset registered");
        Ok(asset_info(&record))
    }

    /// An asset's descriptor, for its owner only.
    pub fn asset(&self, caller: &Name, name: &str) -> Result<AssetInfo, TrustError> {
        let rec: Option<AssetRecord> = self.store.read(|tx| tx.get(name))?;
        // Another owner's asset answers as a missing one: who owns what is not told.
        match rec {
            Some(r) if &r.owner == caller => Ok(asset_info(&r)),
            _ => Err(TrustError::NotFound(format!("you own no asset `{name}` (`perun asset list` shows yours)"))),
        }
    }

    /// The caller's assets.
    pub fn assets_of(&self, caller: &Name) -> Result<Vec<AssetInfo>, TrustError> {
        let all: Vec<AssetRecord> = self.store.read(|tx| tx.list_readable(""))?;
        Ok(all.iter().filter(|a| &a.owner == caller).map(asset_info).collect())
    }

    /// Publishes a policy (JSON: a platform policy, or a TEE policy); returns its digest.
    pub fn add_policy(&self, owner: &Name, json: &[u8]) -> Result<PolicyInfo, TrustError> {
        self.require_role(owner, Role::Provider, "publishing a policy")?;
        let policy = JobPolicy::from_json(json).map_err(|e| TrustError::BadRequest(e.to_string()))?;
        if let JobPolicy::Platform(p) = &policy {
            let missing = p.missing_anchors();
            if !missing.is_empty() {
                return Err(TrustError::BadRequest(format!(
                    "policy `{}` is incomplete and would refuse every worker: it does not name {}",
                    p.name,
                    missing.join("; ")
                )));
            }
        }
        let digest = policy.digest();
        let record = PolicyRecord { digest, owner: owner.clone(), policy, added_at: self.now() };
        self.store.write(|tx| {
            if tx.get::<PolicyRecord>(&digest.to_string())?.is_some() {
                return Ok(());
            }
            let mut quota = super::quota_in(tx, Table::Policies, owner)?;
            let size = serde_json::to_vec(&record).map(|v| v.len() as u64).unwrap_or(u64::MAX);
            if quota.count >= MAX_POLICIES_PER_PROVIDER as u64
                || quota.bytes.saturating_add(size) > MAX_POLICY_BYTES_PER_PROVIDER
            {
                return Err(TrustError::Conflict(format!(
                    "`{owner}` has published {} policies ({} KiB), the most one provider may keep here is \
                     {MAX_POLICIES_PER_PROVIDER} in {} MiB",
                    quota.count,
                    quota.bytes / 1024,
                    MAX_POLICY_BYTES_PER_PROVIDER >> 20
                )));
            }
            quota.count = quota.count.saturating_add(1);
            quota.bytes = quota.bytes.saturating_add(size);
            tx.put(&quota)?;
            tx.put(&record)?;
            let mut e = Event::new(
                AuditKind::PolicyAdded,
                Actor::stakeholder(&owner),
                format!("{} ({digest})", record.policy.name()),
            );
            e.parties = vec![owner.clone()];
            self.audit(tx, e)
        })?;
        Ok(PolicyInfo { digest, owner: record.owner, policy: PolicyDocument::from(&record.policy) })
    }

    /// A policy by digest (every registered stakeholder may read policies: owners must
    /// see what they approve).
    pub fn policy(&self, digest: &str) -> Result<PolicyInfo, TrustError> {
        let parsed: perun_core::Digest = digest
            .parse()
            .map_err(|_| TrustError::NotFound(format!("no policy {digest}: a policy is named by its digest")))?;
        let rec = self.store.read(|tx| super::jobs::policy_in(tx, &parsed))?;
        let r = rec.ok_or_else(|| TrustError::NotFound(format!("no policy {digest}")))?;
        Ok(PolicyInfo { digest: r.digest, owner: r.owner, policy: PolicyDocument::from(&r.policy) })
    }

    /// The audit chain as `caller` may see it.
    pub fn audit_log(&self, caller: &Name) -> Result<AuditLog, TrustError> {
        let raw = self.store.read(|tx| tx.audit_since(1))?;
        let records = raw
            .iter()
            .map(|b| serde_json::from_slice::<AuditRecord>(b).map_err(|e| TrustError::Store(e.to_string())))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(AuditLog { records: audit::view_for(&records, caller) })
    }
}

/// Roles as text: `data-owner, receiver`.
pub(crate) fn role_list(roles: &std::collections::BTreeSet<Role>) -> String {
    if roles.is_empty() {
        return "no role".into();
    }
    roles.iter().map(|r| r.as_str()).collect::<Vec<_>>().join(", ")
}

fn asset_info(r: &AssetRecord) -> AssetInfo {
    AssetInfo {
        name: r.name.clone(),
        owner: r.owner.clone(),
        kind: r.kind,
        content_digest: r.content_digest,
        location: r.location.clone(),
        registered_at: r.registered_at,
        terms: r.terms.as_ref().map(|t| t.terms.clone()),
        usage: r.usage,
    }
}

/// Refuses an admission of `app` unless its key has the `fingerprint` its admitter
/// checked with the applicant.
fn check_fingerprint(name: &Name, app: &ApplicationRecord, fingerprint: &str) -> Result<(), TrustError> {
    let theirs = app.identity.fingerprint();
    if theirs.eq_ignore_ascii_case(fingerprint.trim()) {
        return Ok(());
    }
    Err(TrustError::Conflict(format!(
        "the registration of `{name}` is for key {theirs}, not the key {} you checked: ask the applicant for \
         `perun id show {name}` again",
        fingerprint.chars().take(64).collect::<String>()
    )))
}

/// The network a registration comes from, as its rate limit and its share of the
/// applications count it: an IPv4 address's /24, an IPv6 address's /48 (one site holds
/// many addresses of either). An IPv4 address a dual-stack listener sees as IPv6
/// (`::ffff:a.b.c.d`) counts as the IPv4 address it is.
fn caller_prefix(ip: std::net::IpAddr) -> String {
    match ip.to_canonical() {
        std::net::IpAddr::V4(v4) => {
            let [a, b, c, _] = v4.octets();
            format!("{a}.{b}.{c}.0/24")
        }
        std::net::IpAddr::V6(v6) => {
            let s = v6.segments();
            format!("{:x}:{:x}:{:x}::/48", s[0], s[1], s[2])
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn callers_count_by_network_and_mapped_ipv4_is_ipv4() {
        let p = |s: &str| caller_prefix(s.parse().unwrap());
        assert_eq!(p("203.0.113.7"), "203.0.113.0/24");
        assert_eq!(p("::ffff:203.0.113.9"), "203.0.113.0/24");
        assert_eq!(p("2001:db8:1:2::1"), p("2001:db8:1:ffff::2"));
        assert_ne!(p("2001:db8:1::1"), p("2001:db8:2::1"));
    }
}
