//! The client of a serving enclave (`perun predict --remote`): it challenges the enclave
//! with its own nonce, verifies the report against the policy *it* trusts (not the
//! host's word), checks that it serves the job the client is a receiver of, and seals
//! its rows to the key that report vouches for, each request signed as that receiver.

use ed25519_dalek::SigningKey;
use perun_attest::tee::{appraise_tee, TeeClaims, TeePolicy};
use perun_core::{Digest, Name};
use perun_proto::auth::SignedHeaders;
use perun_proto::Nonce;
use perun_seal::release::{request_info, seal_request};

use crate::api::*;
use crate::EnclaveError;

/// Who queries a serving enclave: a receiver of its job, with its stakeholder signing key
/// (the one the trust service registered for that name).
pub struct Querier {
    /// The receiver's name.
    pub name: Name,
    /// Its Ed25519 stakeholder key.
    pub key: SigningKey,
}

impl std::fmt::Debug for Querier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Querier({})", self.name)
    }
}

/// A verified connection to a serving enclave.
#[derive(Debug)]
pub struct RemoteModel {
    url: String,
    http: reqwest::blocking::Client,
    answer: EvidenceAnswer,
    claims: TeeClaims,
    querier: Querier,
}

impl RemoteModel {
    /// Fetches fresh evidence from the enclave at `url` and appraises it under `policy`
    /// at time `now`: it verifies, binds this client's nonce, the job and the serving
    /// key, and meets the policy's measurements and TCB floor. The enclave must serve
    /// `job`, the serving job `querier` is a receiver of; its requests are signed as
    /// `querier` for that job. Refused evidence is an error: nothing is sent.
    pub fn connect(
        url: &str,
        policy: &TeePolicy,
        job: Digest,
        querier: Querier,
        now: u64,
    ) -> Result<Self, EnclaveError> {
        let http = perun_client::claim::http_client()?;
        let url = url.trim_end_matches('/').to_owned();
        let nonce = Nonce::from(rand::random::<[u8; 32]>());
        let answer: EvidenceAnswer = post_json(
            &http,
            &format!("{url}/v1/attestation"),
            serde_json::to_vec(&EvidenceRequest { nonce: nonce.clone() }).map_err(EnclaveError::Encode)?,
            None,
        )?;
        if answer.job != job {
            return Err(EnclaveError::Refused(format!("it serves job {}, not {job}", answer.job)));
        }
        let binding = Digest::serving_binding(nonce.as_bytes(), &answer.job, answer.public_key.as_bytes());
        let claims = appraise_tee(&answer.evidence, binding.as_bytes(), policy, now).map_err(|failures| {
            EnclaveError::Refused(failures.iter().map(|f| f.to_string()).collect::<Vec<_>>().join("; "))
        })?;
        Ok(Self { url, http, answer, claims, querier })
    }

    /// What the verified report says.
    pub fn claims(&self) -> &TeeClaims {
        &self.claims
    }

    /// The job the enclave serves.
    pub fn job(&self) -> Digest {
        self.answer.job
    }

    /// The served model's name.
    pub fn model(&self) -> &str {
        &self.answer.model
    }

    /// Values per row.
    pub fn input_len(&self) -> usize {
        self.answer.input_len
    }

    /// Most rows the enclave takes in one request ([`RemoteModel::predict`] splits
    /// larger batches).
    pub fn max_rows(&self) -> usize {
        self.answer.max_rows.max(1)
    }

    /// Predicts `rows` privately: sealed to the attested key, in requests of at most
    /// [`RemoteModel::max_rows`] rows, each signed as the querier; each answer opens
    /// only with the key exported from its request's HPKE context.
    pub fn predict(&self, rows: &[Vec<f32>]) -> Result<Vec<Prediction>, EnclaveError> {
        let mut out = Vec::with_capacity(rows.len());
        for chunk in rows.chunks(self.max_rows()) {
            out.extend(self.predict_batch(chunk)?);
        }
        Ok(out)
    }

    /// One private request.
    fn predict_batch(&self, rows: &[Vec<f32>]) -> Result<Vec<Prediction>, EnclaveError> {
        let json = zeroize::Zeroizing::new(
            serde_json::to_vec(&PredictRequest { rows: rows.to_vec() }).map_err(EnclaveError::Encode)?,
        );
        let (sealed, key) = seal_request(&self.answer.public_key, &request_info(&self.answer.job), &json)?;
        let body = serde_json::to_vec(&PrivateRequest { sealed }).map_err(EnclaveError::Encode)?;
        let url = format!("{}/v1/predict", self.url);
        let path = reqwest::Url::parse(&url)
            .map_err(|e| EnclaveError::Refused(format!("`{url}` is not a URL of an enclave: {e}")))?;
        let path = match path.query() {
            Some(q) => format!("{}?{q}", path.path()),
            None => path.path().to_owned(),
        };
        let q = &self.querier;
        let signed =
            SignedHeaders::sign(&q.key, &q.name, &self.answer.job, "POST", &path, &body, perun_proto::unix_now());
        let answer: PrivateAnswer = post_json(&self.http, &url, body, Some(&signed))?;
        let plain = key.open(&answer.sealed).map_err(|_| {
            EnclaveError::Refused(
                "the answer does not open with this request's key: it did not come from the attested enclave".into(),
            )
        })?;
        let answer: PredictAnswer = serde_json::from_slice(&plain)
            .map_err(|source| EnclaveError::Decode { what: "the enclave's sealed answer".into(), source })?;
        if answer.predictions.len() != rows.len() {
            return Err(EnclaveError::RowCount { sent: rows.len(), got: answer.predictions.len() });
        }
        Ok(answer.predictions)
    }
}

/// Posts the JSON `body` (signed with `signed`, if any) and reads the JSON answer.
fn post_json<T: serde::de::DeserializeOwned>(
    http: &reqwest::blocking::Client,
    url: &str,
    body: Vec<u8>,
    signed: Option<&SignedHeaders>,
) -> Result<T, EnclaveError> {
    let mut req = http.post(url).header(reqwest::header::CONTENT_TYPE, "application/json").body(body);
    for (name, value) in signed.map(|s| s.pairs()).into_iter().flatten() {
        req = req.header(name, value);
    }
    let transport = |source| EnclaveError::Transport { url: url.to_owned(), source };
    let resp = req.send().map_err(transport)?;
    let status = resp.status();
    let bytes = resp.bytes().map_err(transport)?;
    if !status.is_success() {
        let why = serde_json::from_slice::<ErrorBody>(&bytes)
            .map(|b| b.error)
            .unwrap_or_else(|_| String::from_utf8_lossy(&bytes).into_owned());
        if matches!(status.as_u16(), 401 | 403 | 429) {
            return Err(EnclaveError::Denied(format!("{status}: {why}")));
        }
        return Err(EnclaveError::Answered { url: url.to_owned(), status: status.as_u16(), message: why });
    }
    serde_json::from_slice(&bytes).map_err(|source| EnclaveError::Decode { what: url.to_owned(), source })
}
