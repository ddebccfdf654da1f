//! Targets for the serving enclave's prediction requests (`POST /v1/predict` bodies, and
//! the rows a sealed request opens to).

use perun_enclave::body::{parse_body, parse_rows, Limits};

/// `perun_enclave::body`: the outer body, in both modes, and the inner rows, for the
/// breast-cancer model's 30 inputs and for a row length taken from the first byte.
pub fn predict_body(data: &[u8]) {
    let limits = Limits::for_model(30);
    let _ = parse_body(data, limits, true);
    let _ = parse_body(data, limits, false);
    let _ = parse_rows(data, limits);
    let width = data.first().map_or(1, |b| usize::from(*b) + 1);
    let narrow = Limits { input_len: width, max_rows: 4 };
    let _ = parse_rows(data, narrow);
}
