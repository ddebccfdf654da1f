//! `perun enclave serve`: the trained model of a `tee` serving job, opened in memory
//! inside the TEE, behind the prediction API (see [`crate::api`]).
//!
//! The host's operator runs this process but sees no plaintext: the model arrives
//! sealed, its key is released only to the key this enclave's report binds, and private
//! requests and their answers are sealed to keys only the enclave and the client hold.
//! The enclave re-attests at the job's interval; a refused report (or a revoked job)
//! stops serving, wipes the model, and every later request is answered 503.
//!
//! Only the serving job's receivers may query the model: each `POST /v1/predict`, sealed
//! or plain, must be signed by one of them for this job (see [`crate::access`]); an
//! unsigned or replayed request is answered 401, one signed by anyone else 403, and
//! nothing is predicted. `POST /v1/attestation` stays open: it is how a client checks
//! the enclave before it sends anything. A body is read only up to the size its rows
//! may take, and its rows are counted as they are parsed (see [`crate::body`]).
//!
//! The HTTP server is hyper's HTTP/1 connection driver with three routes matched here,
//! no web framework: the image a TEE policy measures stays small.

use std::net::SocketAddr;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full, LengthLimitError, Limited};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONTENT_LENGTH, CONTENT_TYPE};
use hyper::{HeaderMap, Method, Request, Response, StatusCode};
use perun_core::{AssetKind, Digest, JobPurpose};
use perun_ml::backend::Compute;
use perun_ml::Predictor;
use perun_seal::release::{request_info, EphemeralKey};

use crate::access::{signed_headers, AccessError, NonceBook, Receivers};
use crate::api::*;
use crate::body::{parse_body, parse_rows, Body, BodyError, Limits, Rows};
use crate::enclave::{Claim, Enclave};
use crate::EnclaveError;

/// Largest body of the other requests (an evidence request is a nonce).
const MAX_SMALL_BODY: usize = 64 << 10;

/// How long a client may take to send a request's headers.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// Requests of one route in flight at once (their bodies read and held until answered);
/// past it a request is answered 503 before its body is read. The anonymous evidence
/// route and the receivers' prediction route have slots of their own, so a flood of one
/// cannot take the other's.
const BODIES_AT_ONCE: usize = 8;

/// Open connections at most; past it a new connection is closed at once.
const MAX_CONNECTIONS: usize = 512;

/// How long a client may take to send a request's body: a slow sender is answered 408
/// and its connection closed, so it cannot hold the server's memory or a task.
const BODY_TIMEOUT: Duration = Duration::from_secs(30);

/// A model being served, and everything that guards it.
pub struct Serving {
    job: Digest,
    model: String,
    input_len: usize,
    classes: usize,
    limits: Limits,
    interval: Duration,
    allow_plain: bool,
    receivers: Receivers,
    nonces: Mutex<NonceBook>,
    predictor: Mutex<Option<Predictor>>,
    key: EphemeralKey,
    enclave: Mutex<Enclave>,
    stopped: Mutex<Option<String>>,
}

impl std::fmt::Debug for Serving {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Serving({} for job {})", self.model, self.job)
    }
}

/// Why a request failed, with its HTTP status.
#[derive(Debug)]
pub struct ServeError {
    status: StatusCode,
    message: String,
}

impl ServeError {
    fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self { status, message: message.into() }
    }

    /// Its HTTP status.
    pub fn status(&self) -> u16 {
        self.status.as_u16()
    }

    /// What went wrong and what to do.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl std::fmt::Display for ServeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.status, self.message)
    }
}

fn status(code: u16) -> StatusCode {
    StatusCode::from_u16(code).unwrap_or(StatusCode::BAD_REQUEST)
}

impl From<AccessError> for ServeError {
    fn from(e: AccessError) -> Self {
        Self::new(status(e.status()), e.to_string())
    }
}

impl From<BodyError> for ServeError {
    fn from(e: BodyError) -> Self {
        Self::new(status(e.status()), e.to_string())
    }
}

/// An answer: a status and a JSON body.
type Reply = Response<Full<Bytes>>;

fn json_reply<T: serde::Serialize>(status: StatusCode, v: &T) -> Reply {
    match serde_json::to_vec(v) {
        Ok(body) => {
            let mut r = Response::new(Full::new(Bytes::from(body)));
            *r.status_mut() = status;
            r.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
            r
        }
        Err(_) => {
            let mut r = Response::new(Full::new(Bytes::new()));
            *r.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
            r
        }
    }
}

impl ServeError {
    fn reply(&self) -> Reply {
        json_reply(self.status, &ErrorBody { error: self.message.clone() })
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Serving {
    /// Opens the model asset of a claimed serving job with its released key (a trained
    /// model: weights that carry their spec) and makes the serving key. `allow_plain`
    /// opens `POST /v1/predict` to rows in the clear; off, only private requests are
    /// served. Either way only the job's receivers (their keys came with the claim) are
    /// answered; a job that names none, or names its provider (the host's operator), is
    /// not served.
    pub fn open(claim: Claim, compute: Compute, allow_plain: bool) -> Result<Arc<Self>, EnclaveError> {
        let Claim { enclave, claimed, keys, .. } = claim;
        let manifest = &claimed.job.manifest;
        if manifest.purpose != JobPurpose::Serve {
            return Err(EnclaveError::NotServable {
                job: claimed.job.id,
                why: "it is a training job: run it with `perun enclave run`".into(),
            });
        }
        let receivers =
            Receivers::for_job(claimed.job.id, &manifest.receivers, &claimed.receiver_identities, &manifest.provider)
                .map_err(|why| EnclaveError::NotServable { job: claimed.job.id, why })?;
        let model = claimed
            .assets
            .iter()
            .find(|a| a.kind == AssetKind::Model)
            .ok_or_else(|| EnclaveError::NotServable { job: claimed.job.id, why: "it has no model".into() })?;
        let plain = perun_client::claim::open_asset(model, &keys.keys)?;
        drop(keys);
        let predictor = Predictor::from_model(&plain, compute).map_err(|e| EnclaveError::NotServable {
            job: claimed.job.id,
            why: format!("asset {} is not a trained model (weights carrying their spec): {e}", model.asset),
        })?;
        drop(plain);
        let classes = predictor.spec().classes()?;
        let input_len = predictor.input_len();
        Ok(Arc::new(Self {
            job: claimed.job.id,
            model: predictor.spec().name.clone(),
            input_len,
            classes,
            limits: Limits::for_model(input_len),
            interval: Duration::from_secs(manifest.attestation_interval_s),
            allow_plain,
            receivers,
            nonces: Mutex::new(NonceBook::default()),
            predictor: Mutex::new(Some(predictor)),
            key: EphemeralKey::generate(),
            enclave: Mutex::new(enclave),
            stopped: Mutex::new(None),
        }))
    }

    /// The serving job.
    pub fn job(&self) -> Digest {
        self.job
    }

    /// Why serving stopped, once it did.
    pub fn stopped(&self) -> Option<String> {
        lock(&self.stopped).clone()
    }

    /// Stops serving: the model is dropped (its tensors freed) and every later request
    /// is refused with `reason`.
    pub fn stop(&self, reason: String) {
        tracing::warn!(job = %self.job, %reason, "serving stopped; model wiped");
        lock(&self.predictor).take();
        lock(&self.stopped).get_or_insert(reason);
    }

    fn live(&self) -> Result<(), ServeError> {
        match self.stopped() {
            Some(why) => Err(ServeError::new(StatusCode::SERVICE_UNAVAILABLE, format!("not serving: {why}"))),
            None => Ok(()),
        }
    }

    /// A continuous attestation; a refusal stops serving.
    pub fn reattest(&self) -> Result<(), EnclaveError> {
        let r = lock(&self.enclave).reattest();
        if let Err(e) = &r {
            use perun_proto::ApiCode::{Forbidden, Refused, Revoked};
            if matches!(
                e,
                EnclaveError::Trust(perun_client::ClientError::Api { code: Refused | Revoked | Forbidden, .. })
            ) {
                self.stop(format!("the trust service ended the job: {e}"));
            }
        }
        r.map(|_| ())
    }

    /// Fresh evidence for a client's `nonce`: the report binds it, the job and the
    /// serving key.
    pub fn evidence(&self, req: &EvidenceRequest) -> Result<EvidenceAnswer, ServeError> {
        self.live()?;
        if req.nonce.as_bytes().len() < 16 {
            return Err(ServeError::new(StatusCode::BAD_REQUEST, "the nonce must be 16 to 64 bytes of hex"));
        }
        let public_key = self.key.public_key();
        let binding = Digest::serving_binding(req.nonce.as_bytes(), &self.job, public_key.as_bytes());
        let evidence = lock(&self.enclave)
            .source()
            .evidence(binding.as_bytes())
            .map_err(|e| ServeError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
        Ok(EvidenceAnswer {
            job: self.job,
            model: self.model.clone(),
            input_len: self.input_len,
            classes: self.classes,
            max_rows: self.limits.max_rows,
            public_key,
            evidence,
        })
    }

    /// What one request may hold.
    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// Lets a `POST /v1/predict` in, or says why not: its `headers` must sign `method`,
    /// `path` and `body` for this job as one of its receivers, at a time near `now`,
    /// with a nonce not seen before (which is then remembered). Returns the receiver.
    pub fn admit(
        &self,
        headers: &HeaderMap,
        method: &str,
        path: &str,
        body: &[u8],
        now: u64,
    ) -> Result<perun_core::Name, ServeError> {
        let sh = signed_headers(self.job, |name| headers.get(name).and_then(|v| v.to_str().ok()))?;
        let who = self.receivers.check(&sh, method, path, body, now)?;
        lock(&self.nonces).record(&sh, now)?;
        Ok(who)
    }

    /// Predicts the classes of `rows`.
    pub fn predict(&self, rows: &[Vec<f32>]) -> Result<PredictAnswer, ServeError> {
        if rows.len() > self.limits.max_rows {
            return Err(BodyError::TooManyRows { max: self.limits.max_rows }.into());
        }
        if let Some((row, r)) = rows.iter().enumerate().find(|(_, r)| r.len() != self.input_len) {
            return Err(BodyError::RowLength { row, got: r.len(), want: self.input_len }.into());
        }
        let flat = zeroize::Zeroizing::new(rows.concat());
        self.predict_rows(&Rows { flat, count: rows.len() })
    }

    /// Predicts the classes of rows read by [`crate::body`] (counted, of the model's
    /// width).
    fn predict_rows(&self, rows: &Rows) -> Result<PredictAnswer, ServeError> {
        self.live()?;
        if rows.count == 0 {
            return Ok(PredictAnswer { predictions: Vec::new() });
        }
        let guard = lock(&self.predictor);
        let p = guard
            .as_ref()
            .ok_or_else(|| ServeError::new(StatusCode::SERVICE_UNAVAILABLE, "not serving: the model was wiped"))?;
        let probs = p.predict(&rows.flat).map_err(|e| ServeError::new(StatusCode::BAD_REQUEST, e.to_string()))?;
        Ok(PredictAnswer::from_probabilities(probs))
    }

    /// A private request: opened with the serving key, answered sealed to the key both
    /// ends export from its HPKE context.
    pub fn predict_private(&self, req: &PrivateRequest) -> Result<PrivateAnswer, ServeError> {
        self.live()?;
        let (plain, answer_key) = self.key.open_request(&req.sealed, &request_info(&self.job)).map_err(|_| {
            ServeError::new(
                StatusCode::BAD_REQUEST,
                "the request does not open with this enclave's attested key: fetch its evidence again and seal to the key it vouches for",
            )
        })?;
        let rows = parse_rows(&plain, self.limits).map_err(|e| match e {
            BodyError::Malformed(m) => ServeError::new(StatusCode::BAD_REQUEST, format!("sealed request: {m}")),
            e => e.into(),
        })?;
        drop(plain);
        let answer = self.predict_rows(&rows)?;
        drop(rows);
        let json = zeroize::Zeroizing::new(serde_json::to_vec(&answer).unwrap_or_default());
        let sealed =
            answer_key.seal(&json).map_err(|e| ServeError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
        Ok(PrivateAnswer { sealed })
    }

    /// Answers one HTTP request: `GET /v1/health`, `POST /v1/attestation`,
    /// `POST /v1/predict`; any other path 404, another method 405.
    pub async fn handle(self: Arc<Self>, req: Request<Incoming>, slots: &Slots) -> Reply {
        match (req.method(), req.uri().path()) {
            (&Method::GET, "/v1/health") => health(&self),
            (&Method::POST, "/v1/attestation") => attestation(self, req, &slots.evidence).await,
            (&Method::POST, "/v1/predict") => predict(self, req, &slots.predict).await,
            (_, "/v1/health" | "/v1/attestation" | "/v1/predict") => {
                ServeError::new(StatusCode::METHOD_NOT_ALLOWED, "method not allowed on this path").reply()
            }
            _ => ServeError::new(StatusCode::NOT_FOUND, "no such path: the API is /v1/attestation and /v1/predict")
                .reply(),
        }
    }
}

fn parse<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ServeError> {
    serde_json::from_slice(body).map_err(|e| ServeError::new(StatusCode::BAD_REQUEST, format!("request body: {e}")))
}

/// Why a body was not read.
enum BodyRefused {
    /// Larger than the route allows.
    TooLarge,
    /// The connection failed while it was read.
    Broken(String),
    /// It did not arrive within [`BODY_TIMEOUT`].
    TooSlow,
    /// [`BODIES_AT_ONCE`] other bodies are being read.
    Busy,
}

/// The body, read only up to `limit` bytes: a larger declared length is refused before
/// a byte of it is read, a longer body once the limit is passed.
/// The body slots of the two routes that read one.
pub struct Slots {
    evidence: tokio::sync::Semaphore,
    predict: tokio::sync::Semaphore,
}

impl Default for Slots {
    fn default() -> Self {
        Self {
            evidence: tokio::sync::Semaphore::new(BODIES_AT_ONCE),
            predict: tokio::sync::Semaphore::new(BODIES_AT_ONCE),
        }
    }
}

/// A permit of the route's slots while the request is read and answered.
type Slot<'a> = tokio::sync::SemaphorePermit<'a>;

/// Reads the body under one of `bodies`' permits, which the caller holds until it has
/// answered: a route never holds more than [`BODIES_AT_ONCE`] bodies.
async fn read_body(
    req: Request<Incoming>,
    limit: usize,
    bodies: &tokio::sync::Semaphore,
) -> Result<(Slot<'_>, HeaderMap, hyper::Uri, Bytes), BodyRefused> {
    if declared_over(&req, limit) {
        return Err(BodyRefused::TooLarge);
    }
    let permit = bodies.try_acquire().map_err(|_| BodyRefused::Busy)?;
    let (parts, body) = req.into_parts();
    match tokio::time::timeout(BODY_TIMEOUT, Limited::new(body, limit).collect()).await {
        Err(_) => Err(BodyRefused::TooSlow),
        Ok(Ok(c)) => Ok((permit, parts.headers, parts.uri, c.to_bytes())),
        Ok(Err(e)) if e.downcast_ref::<LengthLimitError>().is_some() => Err(BodyRefused::TooLarge),
        Ok(Err(e)) => Err(BodyRefused::Broken(e.to_string())),
    }
}

/// Whether the request declares a body longer than `limit`.
fn declared_over(req: &Request<Incoming>, limit: usize) -> bool {
    let declared = req.headers().get(CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    declared.is_some_and(|n| n > limit as u64)
}

/// The answer to a prediction body over the limit.
fn too_large(l: Limits) -> Reply {
    let Limits { max_rows, input_len } = l;
    ServeError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!(
            "the request body is over {} bytes: at most {max_rows} rows of {input_len} values per request; send the rest in further requests",
            l.body_limit()
        ),
    )
    .reply()
}

/// The answer to a body that was not read (other than too large, which each route words).
fn unread(e: BodyRefused) -> Reply {
    match e {
        BodyRefused::TooSlow => ServeError::new(
            StatusCode::REQUEST_TIMEOUT,
            format!("the request body did not arrive within {} s", BODY_TIMEOUT.as_secs()),
        )
        .reply(),
        BodyRefused::Broken(e) => ServeError::new(StatusCode::BAD_REQUEST, format!("request body: {e}")).reply(),
        BodyRefused::TooLarge => {
            ServeError::new(StatusCode::PAYLOAD_TOO_LARGE, "the request body is too large").reply()
        }
        BodyRefused::Busy => {
            ServeError::new(StatusCode::SERVICE_UNAVAILABLE, "the enclave is reading other requests: try again shortly")
                .reply()
        }
    }
}

async fn run<T: serde::Serialize + Send + 'static>(
    s: Arc<Serving>,
    f: impl FnOnce(&Serving) -> Result<T, ServeError> + Send + 'static,
) -> Reply {
    match tokio::task::spawn_blocking(move || f(&s)).await {
        Ok(Ok(v)) => json_reply(StatusCode::OK, &v),
        Ok(Err(e)) => e.reply(),
        Err(_) => ServeError::new(StatusCode::INTERNAL_SERVER_ERROR, "a request handler failed").reply(),
    }
}

fn health(s: &Serving) -> Reply {
    match s.stopped() {
        None => json_reply(StatusCode::OK, &serde_json::json!({ "status": "serving", "job": s.job })),
        Some(why) => {
            json_reply(StatusCode::SERVICE_UNAVAILABLE, &serde_json::json!({ "status": "stopped", "reason": why }))
        }
    }
}

async fn attestation(s: Arc<Serving>, req: Request<Incoming>, bodies: &tokio::sync::Semaphore) -> Reply {
    match read_body(req, MAX_SMALL_BODY, bodies).await {
        Ok((_slot, _, _, body)) => run(s, move |s| s.evidence(&parse(&body)?)).await,
        Err(BodyRefused::TooLarge) => {
            ServeError::new(StatusCode::PAYLOAD_TOO_LARGE, format!("the request body is over {MAX_SMALL_BODY} bytes"))
                .reply()
        }
        Err(e) => unread(e),
    }
}

/// `POST /v1/predict`: the body no larger than its rows may take (a larger declared
/// length is refused before a byte of it is read), the request signed by a receiver,
/// then the rows, counted as they are read.
async fn predict(s: Arc<Serving>, req: Request<Incoming>, bodies: &tokio::sync::Semaphore) -> Reply {
    if declared_over(&req, s.limits.body_limit()) {
        return too_large(s.limits);
    }
    // Who signs is checked before a byte of the body is read: only the job's receivers,
    // at a time near now, get a body read.
    let signer = signed_headers(s.job, |name| req.headers().get(name).and_then(|v| v.to_str().ok()))
        .and_then(|sh| s.receivers.precheck(&sh, perun_proto::unix_now()).map(|_| ()));
    if let Err(e) = signer {
        return ServeError::from(e).reply();
    }
    let (_slot, headers, uri, body) = match read_body(req, s.limits.body_limit(), bodies).await {
        Ok(r) => r,
        Err(BodyRefused::TooLarge) => return too_large(s.limits),
        Err(e) => return unread(e),
    };
    run(s, move |s| {
        s.live()?;
        let path = uri.path_and_query().map_or("/v1/predict", |p| p.as_str());
        let who = s.admit(&headers, "POST", path, &body, perun_proto::unix_now())?;
        tracing::debug!(job = %s.job, receiver = %who, "prediction request admitted");
        match parse_body(&body, s.limits, s.allow_plain)? {
            Body::Sealed(sealed) => s.predict_private(&PrivateRequest { sealed }).map(PredictReply::Private),
            Body::Rows(rows) => s.predict_rows(&rows).map(PredictReply::Plain),
        }
    })
    .await
}

/// Accepts connections on `listener` until `stopped` fires, each served by hyper's
/// HTTP/1 driver on a task of its own.
async fn serve(
    serving: Arc<Serving>,
    listener: tokio::net::TcpListener,
    mut stopped: tokio::sync::oneshot::Receiver<()>,
) {
    let slots = Arc::new(Slots::default());
    let connections = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    loop {
        let (stream, _) = tokio::select! {
            _ = &mut stopped => return,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of descriptors and the like: wait, as a server does, rather than spin.
                    tracing::warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let Ok(permit) = connections.clone().try_acquire_owned() else {
            tracing::warn!("{MAX_CONNECTIONS} connections open: closing a new one");
            drop(stream);
            continue;
        };
        let (s, slots) = (serving.clone(), slots.clone());
        tokio::spawn(async move {
            let _permit = permit;
            let service = hyper::service::service_fn(move |req| {
                let (s, slots) = (s.clone(), slots.clone());
                async move { Ok::<_, std::convert::Infallible>(s.handle(req, &slots).await) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service);
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "connection ended");
            }
        });
    }
}

/// A serving enclave on its own threads: the HTTP server and the continuous
/// attestation loop. Stopped (and the model wiped) when dropped.
pub struct RunningEnclave {
    serving: Arc<Serving>,
    addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    stop_attest: Option<mpsc::Sender<()>>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl RunningEnclave {
    /// Serves `serving` on `addr` (port 0 picks one) with `threads` runtime threads.
    pub fn start(serving: Arc<Serving>, addr: SocketAddr, threads: usize) -> Result<Self, EnclaveError> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads.max(1))
            .enable_all()
            .build()
            .map_err(|source| EnclaveError::Server { what: "starting the runtime".into(), source })?;
        let listener = rt
            .block_on(tokio::net::TcpListener::bind(addr))
            .map_err(|source| EnclaveError::Server { what: format!("cannot listen on {addr}"), source })?;
        let addr = listener
            .local_addr()
            .map_err(|source| EnclaveError::Server { what: "reading the listening address".into(), source })?;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let app = serving.clone();
        let server = std::thread::Builder::new()
            .name("perun-enclave".into())
            .spawn(move || {
                rt.block_on(serve(app, listener, stopped));
                rt.shutdown_timeout(Duration::from_secs(1));
            })
            .map_err(|source| EnclaveError::Server { what: "starting a thread".into(), source })?;
        let (stop_attest, quit) = mpsc::channel::<()>();
        let s = serving.clone();
        let attester = std::thread::Builder::new()
            .name("perun-enclave-attest".into())
            .spawn(move || {
                while let Err(mpsc::RecvTimeoutError::Timeout) = quit.recv_timeout(s.interval) {
                    if s.stopped().is_some() {
                        break;
                    }
                    if let Err(e) = s.reattest() {
                        tracing::warn!(error = %e, "continuous attestation failed");
                    }
                }
            })
            .map_err(|source| EnclaveError::Server { what: "starting a thread".into(), source })?;
        Ok(Self { serving, addr, stop: Some(stop), stop_attest: Some(stop_attest), threads: vec![server, attester] })
    }

    /// Its base URL.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// What it serves.
    pub fn serving(&self) -> &Arc<Serving> {
        &self.serving
    }

    /// Stops serving, wipes the model, and tells the trust service the serving job is
    /// finished.
    pub fn finish(self) -> Result<(), EnclaveError> {
        let serving = self.serving.clone();
        drop(self);
        let enclave = lock(&serving.enclave);
        enclave.finish()
    }

    /// Blocks until serving stops (the job ended) and returns why.
    pub fn wait(&self) -> String {
        loop {
            if let Some(why) = self.serving.stopped() {
                return why;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for RunningEnclave {
    fn drop(&mut self) {
        if let Some(s) = self.stop_attest.take() {
            let _ = s.send(());
        }
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
        self.serving.stop("the enclave was shut down".into());
    }
}
