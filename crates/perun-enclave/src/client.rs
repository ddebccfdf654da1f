//! The client of a serving enclave (`perun predict --remote`): it challenges the enclave
//! with its own nonce, verifies the report against the policy *it* trusts (not the
//! host's word), and seals its rows to the key that report vouches for.

use perun_attest::tee::{appraise_tee, TeeClaims, TeePolicy};
use perun_core::Digest;
use perun_seal::release::{request_info, seal_request};

use crate::api::*;
use crate::EnclaveError;

/// A verified connection to a serving enclave.
#[derive(Debug)]
pub struct RemoteModel {
    url: String,
    http: reqwest::blocking::Client,
    answer: EvidenceAnswer,
    claims: TeeClaims,
}

fn http_error(e: reqwest::Error) -> EnclaveError {
    EnclaveError::Http(e.to_string())
}

impl RemoteModel {
    /// Fetches fresh evidence from the enclave at `url` and appraises it under `policy`
    /// at time `now`: it verifies, binds this client's nonce, the job and the serving
    /// key, and meets the policy's measurements and TCB floor. With `expected_job`, the
    /// enclave must serve that job. Refused evidence is an error: nothing is sent.
    pub fn connect(
        url: &str,
        policy: &TeePolicy,
        expected_job: Option<Digest>,
        now: u64,
    ) -> Result<Self, EnclaveError> {
        let http = perun_worker::job::http_client()?;
        let url = url.trim_end_matches('/').to_owned();
        let nonce: [u8; 32] = rand::random();
        let answer: EvidenceAnswer =
            post(&http, &format!("{url}/v1/attestation"), &EvidenceRequest { nonce: hex::encode(nonce) })?;
        if let Some(job) = expected_job {
            if answer.job != job {
                return Err(EnclaveError::Refused(format!("it serves job {}, not {job}", answer.job)));
            }
        }
        let binding = Digest::evidence_binding(&nonce, &answer.job, &answer.public_key);
        let claims = appraise_tee(&answer.evidence, binding.as_bytes(), policy, now).map_err(|failures| {
            EnclaveError::Refused(failures.iter().map(|f| f.to_string()).collect::<Vec<_>>().join("; "))
        })?;
        Ok(Self { url, http, answer, claims })
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

    /// Predicts `rows` privately: sealed to the attested key; the answer opens only
    /// with the key exported from this request's HPKE context.
    pub fn predict(&self, rows: &[Vec<f32>]) -> Result<Vec<Prediction>, EnclaveError> {
        let json = zeroize::Zeroizing::new(
            serde_json::to_vec(&PredictRequest { rows: rows.to_vec() })
                .map_err(|e| EnclaveError::Failed(e.to_string()))?,
        );
        let (sealed, key) = seal_request(&self.answer.public_key, &request_info(&self.answer.job), &json)?;
        let answer: PrivateAnswer = post(&self.http, &format!("{}/v1/predict", self.url), &PrivateRequest { sealed })?;
        let plain = key.open(&answer.sealed).map_err(|_| {
            EnclaveError::Refused(
                "the answer does not open with this request's key: it did not come from the attested enclave".into(),
            )
        })?;
        let answer: PredictAnswer =
            serde_json::from_slice(&plain).map_err(|e| EnclaveError::Failed(format!("the enclave's answer: {e}")))?;
        if answer.predictions.len() != rows.len() {
            return Err(EnclaveError::Failed("the enclave answered a different number of rows".into()));
        }
        Ok(answer.predictions)
    }
}

fn post<B: serde::Serialize, T: serde::de::DeserializeOwned>(
    http: &reqwest::blocking::Client,
    url: &str,
    body: &B,
) -> Result<T, EnclaveError> {
    let resp = http.post(url).json(body).send().map_err(http_error)?;
    let status = resp.status();
    let bytes = resp.bytes().map_err(http_error)?;
    if !status.is_success() {
        let why = serde_json::from_slice::<ErrorBody>(&bytes)
            .map(|b| b.error)
            .unwrap_or_else(|_| String::from_utf8_lossy(&bytes).into_owned());
        return Err(EnclaveError::Http(format!("{url}: {status}: {why}")));
    }
    serde_json::from_slice(&bytes).map_err(|e| EnclaveError::Http(format!("{url}: unexpected answer: {e}")))
}
