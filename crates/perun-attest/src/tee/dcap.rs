//! Intel SGX and TDX quotes, verified with `dcap-qvl` (pure Rust, RustCrypto) against
//! collateral supplied with the evidence; no network call at verification.

use std::collections::BTreeMap;

use dcap_qvl::quote::Report;
use dcap_qvl::verify::QuoteVerifier;
use dcap_qvl::QuoteCollateralV3;

use super::{TcbLevel, TeeClaims, TeeEvidence, TeeKind, TeeVerifier};
use crate::AttestError;

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
            .map_err(|e| AttestError::Check(format!("DCAP quote: {e}")))?;
        let mut m = BTreeMap::new();
        let report_data = match (&v.report, self.kind) {
            (Report::SgxEnclave(r), TeeKind::Sgx) => {
                m.insert("mr_enclave".to_owned(), hex::encode(r.mr_enclave));
                m.insert("mr_signer".to_owned(), hex::encode(r.mr_signer));
                m.insert("isv_prod_id".to_owned(), r.isv_prod_id.to_string());
                m.insert("isv_svn".to_owned(), r.isv_svn.to_string());
                r.report_data
            }
            (Report::TD10(r), TeeKind::Tdx) => {
                m.insert("mr_td".to_owned(), hex::encode(r.mr_td));
                for (i, rt) in [r.rt_mr0, r.rt_mr1, r.rt_mr2, r.rt_mr3].iter().enumerate() {
                    m.insert(format!("rtmr{i}"), hex::encode(rt));
                }
                r.report_data
            }
            (Report::TD15(r), TeeKind::Tdx) => {
                let b = &r.base;
                m.insert("mr_td".to_owned(), hex::encode(b.mr_td));
                for (i, rt) in [b.rt_mr0, b.rt_mr1, b.rt_mr2, b.rt_mr3].iter().enumerate() {
                    m.insert(format!("rtmr{i}"), hex::encode(rt));
                }
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
        })
    }
}
