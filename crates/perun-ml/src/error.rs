//! The error type of `perun-ml`.

/// Everything that can go wrong while checking a spec, training or evaluating.
#[derive(Debug, thiserror::Error)]
pub enum MlError {
    /// The spec is not valid JSON for this schema.
    #[error("invalid model spec: {0}")]
    SpecJson(String),
    /// A spec-level rule is broken (not tied to one layer).
    #[error("invalid model spec: {0}")]
    Spec(String),
    /// A layer does not fit its input, or has a bad parameter.
    #[error("invalid model spec: layer {index} ({kind}): {why}")]
    Layer {
        /// Layer position, `2` or `3.1` inside a residual block.
        index: String,
        /// The layer's type.
        kind: &'static str,
        /// What is wrong.
        why: String,
    },
    /// The data set does not fit the spec.
    #[error("data does not fit the model: {0}")]
    Data(String),
    /// Weights could not be read or do not fit the spec.
    #[error("weights: {0}")]
    Weights(String),
    /// The backend failed.
    #[error("compute backend: {0}")]
    Backend(String),
    /// A differential-privacy target cannot be met or its parameters are invalid.
    #[error("differential privacy: {0}")]
    Privacy(String),
    /// Training was stopped by the caller (for example on revocation).
    #[error("training was aborted: {0}")]
    Aborted(String),
}
