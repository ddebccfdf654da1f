//! The HTTP API under `/v1` (see `openapi.json` beside this crate, served at
//! `/v1/openapi.json`). Handlers are thin: they authenticate, parse, and call
//! [`Trust`] on the blocking pool (the store does synchronous I/O).

use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use perun_core::Digest;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::auth::{SignedHeaders, H_WORKER};
use crate::records::{StakeholderRecord, WorkerRecord};
use crate::service::jobs::parse_job_id;
use crate::service::stakeholders::RequestParts;
use crate::service::Trust;
use crate::store::Store;
use crate::wire::*;
use crate::TrustError;

/// The OpenAPI description of this API.
pub const OPENAPI: &str = include_str!("../openapi.json");

/// Largest TPM evidence body (IMA logs grow): 64 MiB, read only once the worker has
/// authenticated.
const MAX_EVIDENCE_BODY: usize = 64 << 20;
/// Largest TEE evidence body (a report with its certificate chain and collateral): 4 MiB.
const MAX_TEE_EVIDENCE_BODY: usize = 4 << 20;
/// Largest policy body (a platform policy lists the digests of a tree): 16 MiB.
const MAX_POLICY_BODY: usize = 16 << 20;
/// Largest body of any other request: 1 MiB.
const MAX_BODY: usize = 1 << 20;
/// Evidence bodies read and appraised at once, per kind; more TPM evidence (and more TEE
/// evidence from enclaves holding a token) waits its turn, more anonymous TEE evidence is
/// answered 429.
const EVIDENCE_AT_ONCE: usize = 4;
/// Time a request body may take to arrive: 60 s (64 MiB at about 1 MiB/s).
const BODY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);
/// An evidence body, which holds an evidence slot while it arrives, must come at
/// [`EVIDENCE_MIN_RATE`] (bytes per second) on average after its first
/// [`EVIDENCE_GRACE`]; a body that trickles is cut off and frees its slot.
const EVIDENCE_MIN_RATE: u64 = 1 << 20;
/// See [`EVIDENCE_MIN_RATE`].
const EVIDENCE_GRACE: std::time::Duration = std::time::Duration::from_secs(5);
/// Time a whole request may take, body and decision.
const REQUEST_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(90);

type Shared<S> = Arc<Trust<S>>;

/// The service's router.
pub fn router<S: Store>(trust: Shared<S>) -> Router {
    let tpm_evidence = Arc::new(EvidenceSlots::new(EVIDENCE_AT_ONCE));
    let finish_evidence = tpm_evidence.clone();
    let tee_evidence = Arc::new(TeeSlots {
        anonymous: tokio::sync::Semaphore::new(EVIDENCE_AT_ONCE),
        enclaves: tokio::sync::Semaphore::new(EVIDENCE_AT_ONCE),
    });
    let policy_slots = Arc::new(tokio::sync::Semaphore::new(EVIDENCE_AT_ONCE));
    Router::new()
        .route("/v1/health", get(|| async { Json(serde_json::json!({ "status": "ok" })) }))
        .route("/v1/openapi.json", get(|| async { ([("content-type", "application/json")], OPENAPI) }))
        .route("/metrics", get(metrics::<S>))
        // Probes of an orchestrator (Kubernetes): alive, and able to decide (store answers).
        .route("/healthz", get(|| async { Json(serde_json::json!({ "status": "ok" })) }))
        .route("/readyz", get(readyz::<S>))
        .route("/v1/service", get(service_info::<S>))
        .route("/v1/stakeholders", post(register_stakeholder::<S>))
        .route("/v1/applications", get(applications::<S>))
        .route("/v1/applications/{name}/admit", post(vote_admission::<S>))
        .route("/v1/assets", get(list_assets::<S>).post(register_asset::<S>))
        .route("/v1/assets/{name}", get(get_asset::<S>))
        .route(
            "/v1/policies",
            post(move |st: State<Shared<S>>, m: Method, u: Uri, h: HeaderMap, b: axum::body::Body| {
                add_policy::<S>(st, m, u, h, b, policy_slots.clone())
            })
            .layer(DefaultBodyLimit::disable()),
        )
        .route("/v1/policies/{digest}", get(get_policy::<S>))
        .route("/v1/jobs", get(list_jobs::<S>).post(propose::<S>))
        .route("/v1/jobs/{id}", get(get_job::<S>))
        .route("/v1/jobs/{id}/approve", post(approve::<S>))
        .route("/v1/jobs/{id}/revoke", post(revoke::<S>))
        .route("/v1/jobs/{id}/metrics", get(job_metrics::<S>).post(report_metrics::<S>))
        .route("/v1/jobs/{id}/claim", post(claim::<S>))
        .route("/v1/jobs/{id}/nonce", post(nonce::<S>))
        .route(
            "/v1/jobs/{id}/attest",
            post(move |st: State<Shared<S>>, p: JobId, h: HeaderMap, b: axum::body::Body| {
                attest::<S>(st, p, h, b, tpm_evidence.clone())
            })
            .layer(DefaultBodyLimit::disable()),
        )
        .route(
            "/v1/jobs/{id}/finish",
            post(move |st: State<Shared<S>>, p: JobId, h: HeaderMap, b: axum::body::Body| {
                finish::<S>(st, p, h, b, finish_evidence.clone())
            })
            .layer(DefaultBodyLimit::disable()),
        )
        .route("/v1/jobs/{id}/receipt", get(receipt::<S>))
        .route("/v1/jobs/{id}/review", post(review::<S>))
        .route("/v1/jobs/{id}/outputs/{name}/key", get(output_key::<S>))
        .route("/v1/jobs/{id}/fail", post(fail::<S>))
        .route("/v1/workers", get(list_workers::<S>).post(enrol_worker::<S>))
        .route("/v1/workers/{name}", axum::routing::delete(deenrol_worker::<S>))
        .route("/v1/workers/{name}/ak", post(present_ak::<S>))
        .route("/v1/workers/{name}/activate", post(activate::<S>))
        .route("/v1/worker/jobs", get(offered::<S>))
        .route("/v1/enclave/jobs/{id}/nonce", post(enclave_nonce::<S>))
        .route(
            "/v1/enclave/jobs/{id}/attest",
            post(move |st: State<Shared<S>>, p: JobId, h: HeaderMap, b: axum::body::Body| {
                attest_enclave::<S>(st, p, h, b, tee_evidence.clone())
            })
            .layer(DefaultBodyLimit::disable()),
        )
        .route("/v1/audit", get(audit::<S>))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .layer(axum::middleware::from_fn(within_time))
        .with_state(trust)
}

impl IntoResponse for TrustError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        if status.is_server_error() {
            tracing::error!(error = %self, "request failed");
        }
        (status, Json(self.to_body())).into_response()
    }
}

/// Runs `f` on the blocking pool and answers with its JSON or its error.
async fn blocking<S: Store, T: Serialize + Send + 'static>(
    t: Shared<S>,
    f: impl FnOnce(&Trust<S>) -> Result<T, TrustError> + Send + 'static,
) -> Response {
    t.metrics().http_requests.fetch_add(1, Ordering::Relaxed);
    match on_pool(&t, f).await {
        Ok(v) => Json(v).into_response(),
        Err(r) => r,
    }
}

/// Runs `f` on the blocking pool: its value, or the answer its error gives.
async fn on_pool<S: Store, T: Send + 'static>(
    t: &Shared<S>,
    f: impl FnOnce(&Trust<S>) -> Result<T, TrustError> + Send + 'static,
) -> Result<T, Response> {
    let t = t.clone();
    match tokio::task::spawn_blocking(move || f(&t)).await {
        Ok(r) => r.map_err(IntoResponse::into_response),
        Err(_) => Err(TrustError::Store("a request handler failed".into()).into_response()),
    }
}

/// Waits for one of `slots`.
async fn slot(slots: &tokio::sync::Semaphore) -> Result<tokio::sync::SemaphorePermit<'_>, Response> {
    slots.acquire().await.map_err(|_| TrustError::Store("the request queue closed".into()).into_response())
}

fn parse<T: DeserializeOwned>(body: &[u8]) -> Result<T, TrustError> {
    serde_json::from_slice(body).map_err(|e| TrustError::BadRequest(format!("request body: {e}")))
}

fn header<'a>(h: &'a HeaderMap, name: &str) -> Result<&'a str, TrustError> {
    h.get(name)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| TrustError::Unauthenticated(format!("missing header `{name}`: requests must be signed")))
}

fn signed_headers(h: &HeaderMap) -> Result<SignedHeaders, TrustError> {
    SignedHeaders::from_headers(|name| h.get(name).and_then(|v| v.to_str().ok())).map_err(TrustError::Unauthenticated)
}

/// The parts of a request a stakeholder signature covers.
struct Req {
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
}

impl Req {
    fn parts(&self) -> RequestParts<'_> {
        RequestParts {
            method: self.method.as_str(),
            path: self.uri.path_and_query().map(|p| p.as_str()).unwrap_or("/"),
            body: &self.body,
        }
    }

    /// Authenticates the signing stakeholder.
    fn stakeholder<S: Store>(&self, t: &Trust<S>) -> Result<StakeholderRecord, TrustError> {
        t.authenticate(&signed_headers(&self.headers)?, self.parts())
    }

    /// Authenticates the calling worker by its bearer token.
    fn worker<S: Store>(&self, t: &Trust<S>) -> Result<WorkerRecord, TrustError> {
        worker_of(t, &self.headers)
    }
}

/// Authenticates the calling worker by its bearer token, from the headers alone.
fn worker_of<S: Store>(t: &Trust<S>, headers: &HeaderMap) -> Result<WorkerRecord, TrustError> {
    let name = header(headers, H_WORKER)?;
    let auth = header(headers, "authorization")?;
    let token = auth
        .strip_prefix("Bearer ")
        .and_then(|t| hex::decode(t.trim()).ok())
        .ok_or_else(|| TrustError::Unauthenticated("expected `Authorization: Bearer <hex token>`".into()))?;
    t.authenticate_worker(name, &token)
}

/// A job's id from the path (`/jobs/{id}/...`), read once where the request arrives: a
/// malformed one is answered 404 naming the form ([`parse_job_id`]), before any handler
/// runs.
struct JobId(Digest);

impl<St: Send + Sync> axum::extract::FromRequestParts<St> for JobId {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut axum::http::request::Parts, state: &St) -> Result<Self, Response> {
        let Path(text) = Path::<String>::from_request_parts(parts, state).await.map_err(IntoResponse::into_response)?;
        parse_job_id(&text).map(JobId).map_err(IntoResponse::into_response)
    }
}

macro_rules! handler {
    // The handler itself, with the path's extractors `$extract` before the request's parts.
    (@fn $name:ident, $t:ident, $req:ident, [$($extract:tt)*], $body:expr) => {
        async fn $name<S: Store>(
            State(t): State<Shared<S>>,
            $($extract)*
            method: Method,
            uri: Uri,
            headers: HeaderMap,
            body: Bytes,
        ) -> Response {
            let $req = Req { method, uri, headers, body };
            blocking(t, move |$t| $body).await
        }
    };
    // A route under `/jobs/{id}`: the id read once, by [`JobId`].
    ($name:ident, |$t:ident, $req:ident, job $p:ident| $body:expr) => {
        handler!(@fn $name, $t, $req, [JobId($p): JobId,], $body);
    };
    ($name:ident, |$t:ident, $req:ident $(, $p:ident : $pt:ty)?| $body:expr) => {
        handler!(@fn $name, $t, $req, [$(Path($p): Path<$pt>,)?], $body);
    };
}

/// `/metrics`, for a scraper holding the token `perun serve` was given; off without one.
async fn metrics<S: Store>(State(t): State<Shared<S>>, headers: HeaderMap) -> Response {
    let token = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(|v| v.trim().as_bytes());
    if let Err(e) = t.check_metrics_token(token) {
        return e.into_response();
    }
    ([("content-type", "text/plain; version=0.0.4")], t.metrics().render()).into_response()
}

/// Ready when the store answers a read: 200, else 503 with the store's error.
async fn readyz<S: Store>(State(t): State<Shared<S>>) -> Response {
    match on_pool(&t, |t| t.ready()).await {
        Ok(()) => Json(serde_json::json!({ "status": "ready" })).into_response(),
        Err(_) => (StatusCode::SERVICE_UNAVAILABLE, Json(serde_json::json!({ "status": "store unavailable" })))
            .into_response(),
    }
}

handler!(service_info, |t, _r| Ok(t.info()));

/// The remote address of a request's connection, as the server inserts it.
#[derive(Clone, Copy, Debug)]
pub struct PeerAddr(pub std::net::SocketAddr);

/// `POST /v1/stakeholders`: rate-limited per caller address.
async fn register_stakeholder<S: Store>(
    State(t): State<Shared<S>>,
    peer: Option<axum::Extension<PeerAddr>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let peer = peer.map(|axum::Extension(p)| p.0.ip());
    let r = Req { method, uri, headers, body };
    blocking(t, move |t| {
        let sh = signed_headers(&r.headers)?;
        t.register_stakeholder(peer, &sh, r.parts(), parse(&r.body)?)
    })
    .await
}

handler!(applications, |t, r| {
    r.stakeholder(t)?;
    t.applications()
});

handler!(vote_admission, |t, r, name: String| {
    let who = r.stakeholder(t)?;
    let vote: crate::wire::AdmitVote = parse(&r.body)?;
    t.vote_admission(&who.identity.name, &name, &vote.fingerprint)
});

handler!(register_asset, |t, r| {
    let who = r.stakeholder(t)?;
    t.register_asset(&who.identity.name, parse(&r.body)?)
});

handler!(list_assets, |t, r| {
    let who = r.stakeholder(t)?;
    t.assets_of(&who.identity.name)
});

handler!(get_asset, |t, r, name: String| {
    let who = r.stakeholder(t)?;
    t.asset(&who.identity.name, &name)
});

/// `POST /v1/policies`: its body (up to 16 MiB) is read only once the headers name a
/// registered provider, at most [`EVIDENCE_AT_ONCE`] at a time; the signature over it is
/// checked after.
async fn add_policy<S: Store>(
    State(t): State<Shared<S>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: axum::body::Body,
    slots: Arc<tokio::sync::Semaphore>,
) -> Response {
    let h = headers.clone();
    let named = on_pool(&t, move |t| {
        let sh = signed_headers(&h)?;
        t.require_role(&sh.identity, perun_core::Role::Provider, "publishing a policy")
    });
    if let Err(r) = named.await {
        return r;
    }
    let _slot = match slot(&slots).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let body = match read_body(body, MAX_POLICY_BODY).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let r = Req { method, uri, headers, body };
    blocking(t, move |t| {
        let who = r.stakeholder(t)?;
        t.add_policy(&who.identity.name, &r.body)
    })
    .await
}

handler!(get_policy, |t, r, digest: String| {
    r.stakeholder(t)?;
    t.policy(&digest)
});

handler!(propose, |t, r| {
    let who = r.stakeholder(t)?;
    let body: ProposeJob = parse(&r.body)?;
    t.propose(&who.identity.name, body.manifest)
});

handler!(list_jobs, |t, r| {
    let who = r.stakeholder(t)?;
    t.jobs_of(&who.identity.name)
});

handler!(get_job, |t, r, job id| {
    let who = r.stakeholder(t)?;
    t.job(&who.identity.name, &id)
});

handler!(approve, |t, r, job id| {
    let who = r.stakeholder(t)?;
    let body: ApproveJob = parse(&r.body)?;
    t.approve(&who.identity.name, &id, body.signature)
});

handler!(revoke, |t, r, job id| {
    let who = r.stakeholder(t)?;
    let body: RevokeJob = parse(&r.body)?;
    t.revoke(&who.identity.name, &id, &body.reason)
});

handler!(receipt, |t, r, job id| {
    let who = r.stakeholder(t)?;
    t.receipt(&who.identity.name, &id)
});

handler!(review, |t, r, job id| {
    let who = r.stakeholder(t)?;
    let body: ReviewOutput = parse(&r.body)?;
    t.review(&who.identity.name, &id, body)
});

handler!(output_key, |t, r, ids: (String, String)| {
    let who = r.stakeholder(t)?;
    t.output_key(&who.identity.name, &parse_job_id(&ids.0)?, &ids.1)
});

handler!(job_metrics, |t, r, job id| {
    let who = r.stakeholder(t)?;
    t.job_metrics(&who.identity.name, &id)
});

handler!(enrol_worker, |t, r| {
    let who = r.stakeholder(t)?;
    let body: EnrolWorker = parse(&r.body)?;
    t.enrol_worker(&who.identity.name, body)
});

handler!(list_workers, |t, r| {
    let who = r.stakeholder(t)?;
    t.workers_of(&who.identity.name)
});

handler!(deenrol_worker, |t, r, name: String| {
    let who = r.stakeholder(t)?;
    t.deenrol_worker(&who.identity.name, &name)
});

handler!(present_ak, |t, r, name: String| {
    let name = path_name(&name)?;
    let body: PresentAk = parse(&r.body)?;
    t.present_ak(&name, &body.ek_public, &body.ak_public)
});

handler!(activate, |t, r, name: String| {
    let name = path_name(&name)?;
    let body: ActivateAk = parse(&r.body)?;
    t.activate(&name, &body)
});

handler!(offered, |t, r| {
    let w = r.worker(t)?;
    t.offered_jobs(&w)
});

handler!(claim, |t, r, job id| {
    let w = r.worker(t)?;
    t.claim(&w, &id)
});

handler!(nonce, |t, r, job id| {
    let w = r.worker(t)?;
    t.nonce(&w, &id)
});

/// `POST /v1/jobs/{id}/attest`: the worker is authenticated from its headers before its
/// body (up to 64 MiB) is read, and at most [`EVIDENCE_AT_ONCE`] bodies are read at once
/// ([`with_tpm_evidence`]).
async fn attest<S: Store>(
    State(t): State<Shared<S>>,
    JobId(id): JobId,
    headers: HeaderMap,
    body: axum::body::Body,
    slots: Arc<EvidenceSlots>,
) -> Response {
    with_tpm_evidence(t, id, headers, body, slots, move |t, worker, bytes| {
        let body: Attest = parse(&bytes)?;
        t.attest(&worker, &id, body)
    })
    .await
}

/// `POST /v1/jobs/{id}/finish`: outputs with the last quote, whose evidence holds the
/// whole IMA log: read like an attestation ([`attest`]).
async fn finish<S: Store>(
    State(t): State<Shared<S>>,
    JobId(id): JobId,
    headers: HeaderMap,
    body: axum::body::Body,
    slots: Arc<EvidenceSlots>,
) -> Response {
    with_tpm_evidence(t, id, headers, body, slots, move |t, worker, bytes| {
        let body: FinishJob = parse(&bytes)?;
        t.finish(&worker, &id, body)
    })
    .await
}

/// A body carrying TPM evidence for job `id`. Before the body is read: the worker is
/// authenticated from its headers, the job must be running on it
/// ([`Trust::admit_evidence`]), it may have no other evidence body in flight, and it
/// waits for one of the [`EVIDENCE_AT_ONCE`] slots. Then its body (up to 64 MiB) is read
/// at [`EVIDENCE_MIN_RATE`] at least. So each slot is held by a worker with a job
/// running, one slot a worker, briefly: a provider's tokens cannot keep the workers of
/// other jobs from attesting (and their jobs from being revoked for a missed round).
async fn with_tpm_evidence<S: Store, T: Serialize + Send + 'static>(
    t: Shared<S>,
    id: Digest,
    headers: HeaderMap,
    body: axum::body::Body,
    slots: Arc<EvidenceSlots>,
    then: impl FnOnce(&Trust<S>, WorkerRecord, Bytes) -> Result<T, TrustError> + Send + 'static,
) -> Response {
    let h = headers.clone();
    let worker = match on_pool(&t, move |t| {
        let w = worker_of(t, &h)?;
        t.admit_evidence(&w, &id)?;
        Ok(w)
    })
    .await
    {
        Ok(w) => w,
        Err(r) => return r,
    };
    let Some(_one) = slots.one_per_worker(&worker.name) else {
        let why = format!("worker {} is sending evidence already: one body at a time", worker.name);
        return (StatusCode::TOO_MANY_REQUESTS, Json(TrustError::BadRequest(why).to_body())).into_response();
    };
    let _slot = match slot(&slots.slots).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let bytes = match read_body_at_rate(body, MAX_EVIDENCE_BODY).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    blocking(t, move |t| then(t, worker, bytes)).await
}

/// The TPM evidence slots, and the workers with an evidence body in flight.
struct EvidenceSlots {
    slots: tokio::sync::Semaphore,
    in_flight: std::sync::Mutex<std::collections::HashSet<perun_core::Name>>,
}

impl EvidenceSlots {
    fn new(n: usize) -> Self {
        Self { slots: tokio::sync::Semaphore::new(n), in_flight: Default::default() }
    }

    /// Marks `worker` as sending a body until the guard drops; `None` if it is already.
    fn one_per_worker(&self, worker: &perun_core::Name) -> Option<InFlight<'_>> {
        let mut set = self.in_flight.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        set.insert(worker.clone()).then(|| InFlight { slots: self, worker: worker.clone() })
    }
}

/// A worker's evidence body in flight (see [`EvidenceSlots::one_per_worker`]).
struct InFlight<'a> {
    slots: &'a EvidenceSlots,
    worker: perun_core::Name,
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        let mut set = self.slots.in_flight.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        set.remove(&self.worker);
    }
}

/// Slots for TEE evidence: anonymous first reports, and reports of running enclaves
/// (which hold a token), apart, so that anonymous callers cannot keep a running job from
/// attesting.
struct TeeSlots {
    anonymous: tokio::sync::Semaphore,
    enclaves: tokio::sync::Semaphore,
}

/// `POST /v1/enclave/jobs/{id}/attest`: anonymous for a ready job (the report is the
/// credential); a running job's enclave sends its token. The job must exist and take
/// TEE evidence, and a token sent must check, before the body (up to 4 MiB) is read; at
/// most [`EVIDENCE_AT_ONCE`] anonymous reports are read at once (more are answered 429),
/// and as many reports of enclaves with a token (more wait).
async fn attest_enclave<S: Store>(
    State(t): State<Shared<S>>,
    JobId(id): JobId,
    headers: HeaderMap,
    body: axum::body::Body,
    slots: Arc<TeeSlots>,
) -> Response {
    let h = headers.clone();
    let caller = on_pool(&t, move |t| {
        t.takes_enclave_evidence(&id)?;
        if h.contains_key(H_WORKER) {
            worker_of(t, &h).map(Some)
        } else {
            Ok(None)
        }
    });
    let caller = match caller.await {
        Ok(c) => c,
        Err(r) => return r,
    };
    // Only an enclave whose token checked waits for the enclaves' slots.
    let _slot = match &caller {
        Some(_) => match slot(&slots.enclaves).await {
            Ok(s) => s,
            Err(r) => return r,
        },
        None => match slots.anonymous.try_acquire() {
            Ok(s) => s,
            Err(_) => {
                return TrustError::TooManyRequests("too much TEE evidence at once: send it again in a second".into())
                    .into_response()
            }
        },
    };
    // At the evidence rate, so that a caller who sends nothing frees its slot in 5 s.
    let bytes = match read_body_at_rate(body, MAX_TEE_EVIDENCE_BODY).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    blocking(t, move |t| {
        let body: AttestEnclave = parse(&bytes)?;
        t.attest_enclave(caller.as_ref(), &id, body)
    })
    .await
}

/// Reads a body of at most `limit` bytes within [`BODY_TIMEOUT`], or answers 413 (408
/// for a body that trickles in).
async fn read_body(body: axum::body::Body, limit: usize) -> Result<Bytes, Response> {
    match tokio::time::timeout(BODY_TIMEOUT, axum::body::to_bytes(body, limit)).await {
        Ok(Ok(b)) => Ok(b),
        Ok(Err(_)) => Err(too_large(limit)),
        Err(_) => Err(timed_out("the request body did not arrive within 60 s")),
    }
}

/// Ends a request that takes longer than [`REQUEST_TIMEOUT`] (a body that trickles in).
async fn within_time(req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    match tokio::time::timeout(REQUEST_TIMEOUT, next.run(req)).await {
        Ok(r) => r,
        Err(_) => timed_out("the request took longer than 90 s"),
    }
}

/// Reads an evidence body of at most `limit` bytes that must arrive at
/// [`EVIDENCE_MIN_RATE`] on average after [`EVIDENCE_GRACE`], and within
/// [`BODY_TIMEOUT`] in all.
async fn read_body_at_rate(mut body: axum::body::Body, limit: usize) -> Result<Bytes, Response> {
    use http_body_util::BodyExt as _;
    let start = tokio::time::Instant::now();
    let mut got: Vec<u8> = Vec::new();
    loop {
        let earned = std::time::Duration::from_millis((got.len() as u64).saturating_mul(1000) / EVIDENCE_MIN_RATE);
        let deadline = start + EVIDENCE_GRACE.saturating_add(earned).min(BODY_TIMEOUT);
        let frame = match tokio::time::timeout_at(deadline, body.frame()).await {
            Err(_) => {
                let why = format!(
                    "the evidence body arrived slower than {} MiB/s (after {} s), or took over {} s",
                    EVIDENCE_MIN_RATE >> 20,
                    EVIDENCE_GRACE.as_secs(),
                    BODY_TIMEOUT.as_secs()
                );
                return Err(timed_out(&why));
            }
            Ok(None) => return Ok(Bytes::from(got)),
            Ok(Some(Err(_))) => return Err(too_large(limit)),
            Ok(Some(Ok(frame))) => frame,
        };
        if let Ok(data) = frame.into_data() {
            if got.len().saturating_add(data.len()) > limit {
                return Err(too_large(limit));
            }
            got.extend_from_slice(&data);
        }
    }
}

fn too_large(limit: usize) -> Response {
    let msg = format!("request body: larger than {} MiB, or cut off", limit >> 20);
    (StatusCode::PAYLOAD_TOO_LARGE, Json(TrustError::BadRequest(msg).to_body())).into_response()
}

fn timed_out(why: &str) -> Response {
    (StatusCode::REQUEST_TIMEOUT, Json(TrustError::BadRequest(why.into()).to_body())).into_response()
}

/// A worker or enclave name from a URL: a valid [`perun_core::Name`] (at most 64
/// characters), else refused before anything else happens.
fn path_name(name: &str) -> Result<perun_core::Name, TrustError> {
    perun_core::Name::new(name).map_err(|e| TrustError::BadRequest(format!("worker name: {e}")))
}

handler!(enclave_nonce, |t, r, job id| {
    let body: EnclaveNonce = parse(&r.body)?;
    t.enclave_nonce(&id, &body.enclave)
});

handler!(report_metrics, |t, r, job id| {
    let w = r.worker(t)?;
    let body: ReportMetrics = parse(&r.body)?;
    t.report_metrics(&w, &id, body.epoch, body.values)
});

handler!(fail, |t, r, job id| {
    let w = r.worker(t)?;
    let body: FailJob = parse(&r.body)?;
    t.fail(&w, &id, &body.reason)
});

handler!(audit, |t, r| {
    let who = r.stakeholder(t)?;
    t.audit_log(&who.identity.name)
});

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::sqlite::SqliteStore;
    use crate::{Clock, ServiceKeys, TrustConfig};
    use perun_proto::ApiCode;

    /// Calls the router in process (no TLS, no socket); the answer's status and JSON.
    fn call(router: &Router, method: &str, uri: &str) -> (StatusCode, serde_json::Value) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let req = axum::http::Request::builder().method(method).uri(uri).body(axum::body::Body::empty()).unwrap();
            let resp = tower_service::Service::call(&mut router.clone(), req).await.unwrap();
            let status = resp.status();
            let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20).await.unwrap();
            (status, serde_json::from_slice(&bytes).unwrap_or_default())
        })
    }

    #[test]
    fn a_malformed_job_id_is_refused_where_it_arrives_before_anything_is_read() {
        let keys = ServiceKeys::generate(&[]).unwrap();
        let trust = Trust::new(SqliteStore::in_memory().unwrap(), keys, Clock::System, TrustConfig::default());
        let r = router(Arc::new(trust));
        let long = format!("/v1/jobs/{}", "a".repeat(500));
        for (method, path) in [
            ("GET", "/v1/jobs/x"),
            ("POST", "/v1/jobs/x/claim"),
            ("POST", "/v1/jobs/sha256:zz/attest"),
            ("POST", "/v1/jobs/x/finish"),
            ("POST", "/v1/enclave/jobs/x/attest"),
            ("POST", "/v1/enclave/jobs/x/nonce"),
            ("GET", long.as_str()),
        ] {
            let (status, body) = call(&r, method, path);
            assert_eq!(status, StatusCode::NOT_FOUND, "{method} {path}: {body}");
            assert_eq!(body["error"], "not_found", "{body}");
            let message = body["message"].as_str().unwrap();
            assert!(message.contains("a job id is sha256: and 64 hex digits") && message.len() < 200, "{message}");
        }
        // A well-formed id goes on to the handler: an anonymous caller is not authenticated.
        let (status, _) = call(&r, "GET", &format!("/v1/jobs/{}", perun_core::Digest::of(b"job")));
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }

    #[test]
    fn the_openapi_document_names_every_error_code() {
        let doc: serde_json::Value = serde_json::from_str(OPENAPI).unwrap();
        let listed = &doc["components"]["schemas"]["ApiError"]["properties"]["error"]["enum"];
        let codes: Vec<&str> = ApiCode::ALL.iter().map(|c| c.as_str()).collect();
        assert_eq!(listed, &serde_json::json!(codes), "{listed}");
    }
}
