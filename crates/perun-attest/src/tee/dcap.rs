//! Intel SGX and TDX quotes, verified with `dcap-qvl` (pure Rust, RustCrypto) against
//! collateral supplied with the evidence; no network call at verification.

use std::collections::BTreeMap;

use dcap_qvl::quote::Report;
use dcap_qvl::verify::QuoteVerifier;
use dcap_qvl::QuoteCollateralV3;

use super::{TcbLevel, TeeClaims, TeeEvidence, TeeKind, TeeVerifier};
use crate::AttestError;

/// When DCAP collateral was issued (its TCB info's `issueDate`), in Unix seconds. Recorded
/// evidence verifies only while its collateral is valid: a verifier of a recorded quote
/// verifies at this time, and a policy may refuse collateral older than it accepts.
pub fn collateral_issued_at(collateral: &serde_json::Value) -> Result<u64, AttestError> {
    let bad = |why: &str| AttestError::Check(format!("DCAP collateral: {why}"));
    let tcb_info = collateral.get("tcb_info").and_then(|v| v.as_str()).ok_or_else(|| bad("no `tcb_info`"))?;
    let tcb: serde_json::Value = serde_json::from_str(tcb_info).map_err(|e| bad(&format!("`tcb_info`: {e}")))?;
    let issued = tcb.get("issueDate").and_then(|v| v.as_str()).ok_or_else(|| bad("no `issueDate`"))?;
    let t = chrono::DateTime::parse_from_rfc3339(issued).map_err(|e| bad(&format!("`issueDate`: {e}")))?;
    u64::try_from(t.timestamp()).map_err(|_| bad("`issueDate` is before 1970"))
}

/// Verifies DCAP quotes of one kind.
pub struct DcapVerifier {
    /// SGX or TDX.
    pub kind: TeeKind,
}

impl TeeVerifier for DcapVerifier {
    fn kind(&self) -> TeeKind {
        self.kind
    }

    fn verify(&self, evidence: &TeeEvidence, now: u64) -> Result<TeeClaims, AttestError> {
        let collateral: QuoteCollateralV3 = serde_json::from_value(evidence.collateral.clone())
            .map_err(|e| AttestError::Check(format!("DCAP collateral: {e}")))?;
        let v = QuoteVerifier::new_prod()
            .with_config::<dcap_qvl::configs::RustCryptoConfig>()
            .verify(&evidence.report, &collateral, now)
            .map_err(|e| AttestError::Check(format!("DCAP quote: {}", in_words(&format!("{e:#}")))))?;
        let mut m = BTreeMap::new();
        let mut svns = BTreeMap::new();
        let debug: bool;
        let report_data = match (&v.report, self.kind) {
            (Report::SgxEnclave(r), TeeKind::Sgx) => {
                m.insert("mr_enclave".to_owned(), hex::encode(r.mr_enclave));
                m.insert("mr_signer".to_owned(), hex::encode(r.mr_signer));
                m.insert("isv_prod_id".to_owned(), r.isv_prod_id.to_string());
                m.insert("isv_svn".to_owned(), r.isv_svn.to_string());
                svns.insert("isv_svn".to_owned(), u64::from(r.isv_svn));
                // ATTRIBUTES.FLAGS bit 1: DEBUG (Intel SDM vol. 3D, SECS).
                debug = r.attributes[0] & 0x02 != 0;
                r.report_data
            }
            (Report::TD10(r), TeeKind::Tdx) => {
                m.insert("mr_td".to_owned(), hex::encode(r.mr_td));
                for (i, rt) in [r.rt_mr0, r.rt_mr1, r.rt_mr2, r.rt_mr3].iter().enumerate() {
                    m.insert(format!("rtmr{i}"), hex::encode(rt));
                }
                // TD_ATTRIBUTES bit 0: DEBUG (Intel TDX module ABI, TDREPORT).
                debug = r.td_attributes[0] & 0x01 != 0;
                r.report_data
            }
            (Report::TD15(r), TeeKind::Tdx) => {
                let b = &r.base;
                m.insert("mr_td".to_owned(), hex::encode(b.mr_td));
                for (i, rt) in [b.rt_mr0, b.rt_mr1, b.rt_mr2, b.rt_mr3].iter().enumerate() {
                    m.insert(format!("rtmr{i}"), hex::encode(rt));
                }
                debug = b.td_attributes[0] & 0x01 != 0;
                b.report_data
            }
            _ => return Err(AttestError::Check(format!("the quote is not a {:?} quote", self.kind))),
        };
        Ok(TeeClaims {
            kind: self.kind,
            measurements: m,
            report_data: hex::encode(report_data),
            tcb: TcbLevel::from_intel(&v.status),
            tcb_status: v.status.clone(),
            advisories: v.advisory_ids.clone(),
            svns,
            debug,
        })
    }
}

/// dcap-qvl's errors in words: the certificate library's time errors print as Rust
/// structs with seconds since 1970 (`CrlExpired { time: UnixTime(1764547200), next_update:
/// UnixTime(...) }`); they become sentences with dates and what to do.
fn in_words(text: &str) -> String {
    let date = |secs: &str| {
        secs.parse::<i64>()
            .ok()
            .and_then(|s| chrono::DateTime::from_timestamp(s, 0))
            .map_or_else(|| format!("{secs} s after 1970"), |d| d.format("%Y-%m-%d %H:%M UTC").to_string())
    };
    // (the struct's name, its second field, the sentence given the checked time and that field's date)
    let kinds: [(&str, &str, fn(&str, &str) -> String); 3] = [
        ("CrlExpired", "next_update", |at, until| {
            format!(
                "a certificate revocation list in the collateral expired on {until} (checked at {at}): fetch fresh \
                 collateral from Intel's PCS"
            )
        }),
        ("CertExpired", "not_after", |at, until| {
            format!(
                "a certificate in the chain expired on {until} (checked at {at}): fetch fresh collateral from Intel's PCS"
            )
        }),
        ("CertNotValidYet", "not_before", |at, from| {
            format!(
                "a certificate in the chain is valid only from {from} (checked at {at}): check this machine's clock"
            )
        }),
    ];
    let mut out = text.to_owned();
    for (name, field, sentence) in kinds {
        let Some(start) = out.find(&format!("{name} {{")) else { continue };
        let Some(len) = out[start..].find('}') else { continue };
        let body = &out[start..start + len];
        let number = |key: &str| {
            let from = body.find(&format!("{key}: UnixTime("))? + key.len() + ": UnixTime(".len();
            let to = body[from..].find(')')? + from;
            Some(date(&body[from..to]))
        };
        if let (Some(at), Some(other)) = (number("time"), number(field)) {
            out.replace_range(start..=start + len, &sentence(&at, &other));
        }
    }
    out
}

#[cfg(test)]
mod words {
    use super::in_words;

    #[test]
    fn time_errors_read_as_sentences_with_dates() {
        let e = in_words(
            "Failed to verify certificate chain: CrlExpired { time: UnixTime(1765065600), next_update: UnixTime(1764547200) }",
        );
        assert_eq!(
            e,
            "Failed to verify certificate chain: a certificate revocation list in the collateral expired on 2025-12-01 \
             00:00 UTC (checked at 2025-12-07 00:00 UTC): fetch fresh collateral from Intel's PCS"
        );
        let e = in_words("CertExpired { time: UnixTime(1765065600), not_after: UnixTime(1700000000) }");
        assert!(e.starts_with("a certificate in the chain expired on 2023-11-14 22:13 UTC"), "{e}");
        let e = in_words("x: CertNotValidYet { time: UnixTime(0), not_before: UnixTime(1700000000) }");
        assert!(e.contains("valid only from 2023-11-14") && e.contains("clock") && !e.contains("UnixTime"), "{e}");
        // Anything else is left as it is.
        assert_eq!(in_words("TCB status is OutOfDate"), "TCB status is OutOfDate");
    }
}
