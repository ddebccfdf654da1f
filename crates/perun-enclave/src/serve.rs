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

use std::net::SocketAddr;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, FailedToBufferBody};
use axum::extract::{DefaultBodyLimit, FromRequest as _, Request, State};
use axum::http::header::CONTENT_LENGTH;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
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

impl IntoResponse for ServeError {
    fn into_response(self) -> Response {
        (self.status, Json(ErrorBody { error: self.message })).into_response()
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
            return Err(EnclaveError::Failed(format!(
                "job {} is a training job: run it with `perun enclave run`",
                claimed.job.id
            )));
        }
        let receivers =
            Receivers::for_job(claimed.job.id, &manifest.receivers, &claimed.receiver_identities, &manifest.provider)
                .map_err(EnclaveError::Failed)?;
        let model = claimed
            .assets
            .iter()
            .find(|a| a.kind == AssetKind::Model)
            .ok_or_else(|| EnclaveError::Failed("the job has no model".into()))?;
        let plain = perun_worker::job::open_asset(model, &keys.keys)?;
        drop(keys);
        let predictor = Predictor::from_model(&plain, compute).map_err(|e| {
            EnclaveError::Failed(format!(
                "asset {} is not a trained model (weights carrying their spec): {e}",
                model.asset
            ))
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
            use perun_client::ClientError::{Forbidden, Refused, Revoked};
            if matches!(e, EnclaveError::Trust(Refused { .. } | Revoked(_) | Forbidden(_))) {
                self.stop(format!("the trust service ended the job: {e}"));
            }
        }
        r.map(|_| ())
    }

    /// Fresh evidence for a client's `nonce`: the report binds it, the job and the
    /// serving key.
    pub fn evidence(&self, req: &EvidenceRequest) -> Result<EvidenceAnswer, ServeError> {
        self.live()?;
        let nonce = hex::decode(&req.nonce)
            .ok()
            .filter(|n| (16..=64).contains(&n.len()))
            .ok_or_else(|| ServeError::new(StatusCode::BAD_REQUEST, "the nonce must be 16 to 64 bytes of hex"))?;
        let public_key = self.key.public_bytes();
        let binding = Digest::serving_binding(&nonce, &self.job, &public_key);
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

    /// The HTTP API.
    pub fn router(self: &Arc<Self>) -> Router {
        Router::new()
            .route("/v1/health", get(health))
            .route("/v1/attestation", post(attestation))
            .route("/v1/predict", post(predict).layer(DefaultBodyLimit::max(self.limits.body_limit())))
            .layer(DefaultBodyLimit::max(MAX_SMALL_BODY))
            .with_state(self.clone())
    }
}

type Shared = State<Arc<Serving>>;

fn parse<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ServeError> {
    serde_json::from_slice(body).map_err(|e| ServeError::new(StatusCode::BAD_REQUEST, format!("request body: {e}")))
}

async fn run<T: serde::Serialize + Send + 'static>(
    s: Arc<Serving>,
    f: impl FnOnce(&Serving) -> Result<T, ServeError> + Send + 'static,
) -> Response {
    match tokio::task::spawn_blocking(move || f(&s)).await {
        Ok(Ok(v)) => Json(v).into_response(),
        Ok(Err(e)) => e.into_response(),
        Err(_) => ServeError::new(StatusCode::INTERNAL_SERVER_ERROR, "a request handler failed").into_response(),
    }
}

async fn health(State(s): Shared) -> Response {
    match s.stopped() {
        None => Json(serde_json::json!({ "status": "serving", "job": s.job })).into_response(),
        Some(why) => (StatusCode::SERVICE_UNAVAILABLE, Json(serde_json::json!({ "status": "stopped", "reason": why })))
            .into_response(),
    }
}

async fn attestation(State(s): Shared, body: Bytes) -> Response {
    run(s, move |s| s.evidence(&parse(&body)?)).await
}

/// `POST /v1/predict`: the body no larger than its rows may take (a larger declared
/// length is refused before a byte of it is read), the request signed by a receiver,
/// then the rows, counted as they are read.
async fn predict(State(s): Shared, req: Request) -> Response {
    let limit = s.limits.body_limit();
    let too_large = || {
        let Limits { max_rows, input_len } = s.limits;
        ServeError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "the request body is over {limit} bytes: at most {max_rows} rows of {input_len} values per request; send the rest in further requests"
            ),
        )
        .into_response()
    };
    let declared = req.headers().get(CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return too_large();
    }
    let (uri, headers) = (req.uri().clone(), req.headers().clone());
    let body = match Bytes::from_request(req, &()).await {
        Ok(b) => b,
        Err(BytesRejection::FailedToBufferBody(FailedToBufferBody::LengthLimitError(_))) => return too_large(),
        Err(e) => return ServeError::new(StatusCode::BAD_REQUEST, format!("request body: {e}")).into_response(),
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
            .map_err(|e| EnclaveError::Http(format!("starting the runtime: {e}")))?;
        let listener = rt
            .block_on(tokio::net::TcpListener::bind(addr))
            .map_err(|e| EnclaveError::Http(format!("cannot listen on {addr}: {e}")))?;
        let addr = listener.local_addr().map_err(|e| EnclaveError::Http(e.to_string()))?;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let app = serving.router();
        let server = std::thread::Builder::new()
            .name("perun-enclave".into())
            .spawn(move || {
                let r = rt.block_on(async move {
                    axum::serve(listener, app)
                        .with_graceful_shutdown(async {
                            let _ = stopped.await;
                        })
                        .await
                });
                if let Err(e) = r {
                    tracing::error!(error = %e, "enclave server stopped");
                }
                rt.shutdown_timeout(Duration::from_secs(1));
            })
            .map_err(|e| EnclaveError::Http(e.to_string()))?;
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
            .map_err(|e| EnclaveError::Http(e.to_string()))?;
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
