//! The bodies of the enclave's prediction API (`perun enclave serve`).
//!
//! - `POST /v1/attestation` ([`EvidenceRequest`] -> [`EvidenceAnswer`]): fresh evidence
//!   whose report data is `Digest::serving_binding(client nonce, job, serving key)`;
//! - `POST /v1/predict` ([`PredictBody`] -> [`PredictReply`]), batches of rows in one of
//!   two envelopes: [`PrivateRequest`] -> [`PrivateAnswer`], a [`PredictRequest`] sealed
//!   with HPKE to the attested serving key (`info`: `perun_seal::release::request_info(job)`),
//!   its answer sealed with the key both ends export from that HPKE context, so the host
//!   sees neither and cannot forge one; or [`PredictRequest`] -> [`PredictAnswer`], rows
//!   in the clear, answered only by an enclave started with `--allow-plain` (for callers
//!   that trust the host). Either envelope is answered only to a receiver of the serving
//!   job: the request carries the headers of a signed request
//!   ([`perun_proto::auth::SignedHeaders`], the audience the job's id; see
//!   [`crate::access`]). At most [`EvidenceAnswer::max_rows`] rows per request.

use perun_core::Digest;
use perun_proto::evidence::TeeEvidence;
use perun_proto::{EphemeralPublicKey, Nonce, SealedSecret};
use serde::{Deserialize, Serialize};

/// Most rows in one request (fewer for a model whose rows are very wide: see
/// [`EvidenceAnswer::max_rows`]).
pub const MAX_ROWS: usize = 1024;

fn default_max_rows() -> usize {
    MAX_ROWS
}

/// `POST /v1/attestation`: the client's challenge.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EvidenceRequest {
    /// A fresh random nonce (hex, 16 to 64 bytes) chosen by the client.
    pub nonce: Nonce,
}

/// `POST /v1/attestation` answer.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct EvidenceAnswer {
    /// The serving job (the trust service released the model's key for it).
    pub job: Digest,
    /// The model's name.
    pub model: String,
    /// Values per row.
    pub input_len: usize,
    /// Number of classes.
    pub classes: usize,
    /// Most rows the enclave takes in one request.
    #[serde(default = "default_max_rows")]
    pub max_rows: usize,
    /// The serving HPKE public key (hex) private requests are sealed to.
    pub public_key: EphemeralPublicKey,
    /// The TEE's report, binding the client's nonce, the job and `public_key`.
    pub evidence: TeeEvidence,
}

/// `POST /v1/predict`: rows of `input_len` values.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PredictRequest {
    /// The rows.
    pub rows: Vec<Vec<f32>>,
}

/// One row's prediction.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Prediction {
    /// The most probable class.
    pub class: usize,
    /// Each class's probability.
    pub probabilities: Vec<f32>,
}

/// `POST /v1/predict` answer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PredictAnswer {
    /// One prediction per row, in order.
    pub predictions: Vec<Prediction>,
}

/// `POST /v1/predict`, private: a [`PredictRequest`] sealed to the serving key.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrivateRequest {
    /// The HPKE-sealed JSON of a [`PredictRequest`].
    pub sealed: SealedSecret,
}

/// `POST /v1/predict` answer to a [`PrivateRequest`].
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PrivateAnswer {
    /// The sealed JSON of a [`PredictAnswer`] (nonce, then ChaCha20-Poly1305 ciphertext).
    #[serde(with = "hex::serde")]
    pub sealed: Vec<u8>,
}

/// `POST /v1/predict`: either envelope.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(untagged)]
pub enum PredictBody {
    /// Rows sealed to the attested key.
    Private(PrivateRequest),
    /// Rows in the clear.
    Plain(PredictRequest),
}

/// `POST /v1/predict` answer, in the request's envelope.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(untagged)]
pub enum PredictReply {
    /// The sealed answer to a private request.
    Private(PrivateAnswer),
    /// The answer to rows in the clear.
    Plain(PredictAnswer),
}

/// An error answer.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ErrorBody {
    /// What went wrong and what to do.
    pub error: String,
}

impl PredictAnswer {
    /// Predictions from class probabilities.
    pub fn from_probabilities(probs: Vec<Vec<f32>>) -> Self {
        let predictions = probs
            .into_iter()
            .map(|p| {
                let class = p.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).map(|(i, _)| i).unwrap_or(0);
                Prediction { class, probabilities: p }
            })
            .collect();
        Self { predictions }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_class_is_the_most_probable_and_bodies_refuse_unknown_fields() {
        let a = PredictAnswer::from_probabilities(vec![vec![0.2, 0.8], vec![0.9, 0.1], vec![0.1, 0.3, 0.6]]);
        let classes: Vec<usize> = a.predictions.iter().map(|p| p.class).collect();
        assert_eq!(classes, [1, 0, 2]);
        assert!(serde_json::from_str::<PredictRequest>(r#"{"rows": [[1.0]], "debug": true}"#).is_err());
        assert!(serde_json::from_str::<EvidenceRequest>(r#"{"nonce": "00", "x": 1}"#).is_err());
    }
}
