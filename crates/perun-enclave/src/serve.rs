//! `perun enclave serve`: the trained model of a `tee` serving job, opened in memory
//! inside the TEE, behind the prediction API (see [`crate::api`]).
//!
//! The host's operator runs this process but sees no plaintext: the model arrives
//! sealed, its key is released only to the key this enclave's report binds, and private
//! requests and their answers are sealed to keys only the enclave and the client hold.
//! The enclave re-attests at the job's interval; a refused report (or a revoked job)
//! stops serving, wipes the model, and every later request is answered 503.

use std::net::SocketAddr;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use perun_core::{AssetKind, Digest, JobPurpose};
use perun_ml::backend::Compute;
use perun_ml::Predictor;
use perun_seal::release::{request_info, EphemeralKey};

use crate::api::*;
use crate::enclave::{Claim, Enclave};
use crate::EnclaveError;

/// Largest request body: 16 MiB.
const MAX_BODY: usize = 16 << 20;

/// A model being served, and everything that guards it.
pub struct Serving {
    job: Digest,
    model: String,
    input_len: usize,
    classes: usize,
    interval: Duration,
    allow_plain: bool,
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
    /// served.
    pub fn open(claim: Claim, compute: Compute, allow_plain: bool) -> Result<Arc<Self>, EnclaveError> {
        let Claim { enclave, claimed, keys, .. } = claim;
        let manifest = &claimed.job.manifest;
        if manifest.purpose != JobPurpose::Serve {
            return Err(EnclaveError::Failed(format!(
                "job {} is a training job: run it with `perun enclave run`",
                claimed.job.id
            )));
        }
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
        Ok(Arc::new(Self {
            job: claimed.job.id,
            model: predictor.spec().name.clone(),
            input_len: predictor.input_len(),
            classes,
            interval: Duration::from_secs(manifest.attestation_interval_s),
            allow_plain,
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
            use perun_trust::TrustError::{Forbidden, Refused, Revoked};
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
        let binding = Digest::evidence_binding(&nonce, &self.job, &public_key);
        let evidence = lock(&self.enclave)
            .source()
            .evidence(binding.as_bytes())
            .map_err(|e| ServeError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
        Ok(EvidenceAnswer {
            job: self.job,
            model: self.model.clone(),
            input_len: self.input_len,
            classes: self.classes,
            public_key,
            evidence,
        })
    }

    /// Predicts the classes of `rows`.
    pub fn predict(&self, rows: &[Vec<f32>]) -> Result<PredictAnswer, ServeError> {
        self.live()?;
        if rows.len() > MAX_ROWS {
            return Err(ServeError::new(StatusCode::BAD_REQUEST, format!("at most {MAX_ROWS} rows per request")));
        }
        if let Some((i, r)) = rows.iter().enumerate().find(|(_, r)| r.len() != self.input_len) {
            return Err(ServeError::new(
                StatusCode::BAD_REQUEST,
                format!("row {i} has {} values; the model takes {}", r.len(), self.input_len),
            ));
        }
        let flat: zeroize::Zeroizing<Vec<f32>> = zeroize::Zeroizing::new(rows.concat());
        let guard = lock(&self.predictor);
        let p = guard
            .as_ref()
            .ok_or_else(|| ServeError::new(StatusCode::SERVICE_UNAVAILABLE, "not serving: the model was wiped"))?;
        let probs = p.predict(&flat).map_err(|e| ServeError::new(StatusCode::BAD_REQUEST, e.to_string()))?;
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
        let body: PredictRequest = serde_json::from_slice(&plain)
            .map_err(|e| ServeError::new(StatusCode::BAD_REQUEST, format!("sealed request: {e}")))?;
        drop(plain);
        let answer = self.predict(&body.rows)?;
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
            .route("/v1/predict", post(predict))
            .layer(DefaultBodyLimit::max(MAX_BODY))
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

async fn predict(State(s): Shared, body: Bytes) -> Response {
    run(s, move |s| {
        let body: PredictBody = serde_json::from_slice(&body).map_err(|_| {
            ServeError::new(
                StatusCode::BAD_REQUEST,
                "request body: expected {\"sealed\": ...} (rows sealed to the attested key) or {\"rows\": [[...]]}",
            )
        })?;
        match body {
            PredictBody::Private(req) => s.predict_private(&req).map(PredictReply::Private),
            PredictBody::Plain(_) if !s.allow_plain => Err(ServeError::new(
                StatusCode::FORBIDDEN,
                "rows in the clear are refused here: seal them to the attested key (`perun predict --remote`), or start the enclave with --allow-plain",
            )),
            PredictBody::Plain(req) => s.predict(&req.rows).map(PredictReply::Plain),
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
