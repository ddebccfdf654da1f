//! A published policy as it travels: the JSON document its owner published, carried
//! whole. Its meaning (the Reference Values, RATS RFC 9334, of `attested` or `tee` mode)
//! and its checks are the verifier's: `perun_attest::JobPolicy` reads it, once, where it
//! arrives. (Trustee's `kbs-types` carries its policies the same way.)

use serde::{Deserialize, Serialize};

/// A policy document (JSON), as published and as the service shows it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct PolicyDocument(pub serde_json::Value);
