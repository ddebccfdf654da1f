//! The body of every error answer of the API.

use crate::verdict::Failure;
use serde::{Deserialize, Serialize};

/// The JSON body of every error answer.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ApiError {
    /// A stable code (`refused`, `revoked`, `forbidden`...).
    pub error: ApiCode,
    /// What happened and what to do.
    pub message: String,
    /// The failed evidence checks, for `refused`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failures: Vec<Failure>,
}

/// The stable code of an error answer, with its HTTP status: one table for the service
/// that answers and the client that reads the answer. In JSON, its
/// [`as_str`](Self::as_str) spelling (`bad_request`, `terms_refused`...).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ApiCode {
    /// 400: the request is malformed.
    BadRequest,
    /// 401: the caller could not be authenticated.
    Unauthenticated,
    /// 403: the caller may not do this.
    Forbidden,
    /// 404: no such thing (or not the caller's to see).
    NotFound,
    /// 409: the request conflicts with the current state.
    Conflict,
    /// 403: the release rule refused; nothing was released.
    Refused,
    /// 403: an asset owner's terms refuse the job.
    TermsRefused,
    /// 429: too many requests of this kind.
    TooManyRequests,
    /// 409: the job was revoked.
    Revoked,
    /// 503: the store is unavailable; nothing was done.
    Unavailable,
    /// 500: the service failed inside.
    Internal,
}

impl ApiCode {
    /// Every code.
    pub const ALL: [ApiCode; 11] = [
        Self::BadRequest,
        Self::Unauthenticated,
        Self::Forbidden,
        Self::NotFound,
        Self::Conflict,
        Self::Refused,
        Self::TermsRefused,
        Self::TooManyRequests,
        Self::Revoked,
        Self::Unavailable,
        Self::Internal,
    ];

    /// The code as the error body spells it (`refused`, `revoked`...).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::BadRequest => "bad_request",
            Self::Unauthenticated => "unauthenticated",
            Self::Forbidden => "forbidden",
            Self::NotFound => "not_found",
            Self::Conflict => "conflict",
            Self::Refused => "refused",
            Self::TermsRefused => "terms_refused",
            Self::TooManyRequests => "too_many_requests",
            Self::Revoked => "revoked",
            Self::Unavailable => "unavailable",
            Self::Internal => "internal",
        }
    }

    /// What it means, in words that lead an error message (`conflict: ...`).
    pub fn meaning(self) -> &'static str {
        match self {
            Self::BadRequest => "bad request",
            Self::Unauthenticated => "not authenticated",
            Self::Forbidden => "forbidden",
            Self::NotFound => "not found",
            Self::Conflict => "conflict",
            Self::Refused => "refused",
            Self::TermsRefused => "refused by the terms",
            Self::TooManyRequests => "too many requests",
            Self::Revoked => "job revoked, abort",
            Self::Unavailable => "unavailable",
            Self::Internal => "the trust service failed",
        }
    }

    /// The HTTP status it answers with.
    pub fn status(self) -> u16 {
        match self {
            Self::BadRequest => 400,
            Self::Unauthenticated => 401,
            Self::Forbidden | Self::Refused | Self::TermsRefused => 403,
            Self::NotFound => 404,
            Self::Conflict | Self::Revoked => 409,
            Self::TooManyRequests => 429,
            Self::Unavailable => 503,
            Self::Internal => 500,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_travels_as_its_spelling() {
        for code in ApiCode::ALL {
            let json = serde_json::to_string(&code).unwrap();
            assert_eq!(json, format!("\"{}\"", code.as_str()));
            assert_eq!(serde_json::from_str::<ApiCode>(&json).unwrap(), code);
        }
        assert!(serde_json::from_str::<ApiCode>("\"teapot\"").is_err());
    }
}
