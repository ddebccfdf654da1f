//! Counters of the service, served in the Prometheus text format at `/metrics`. A dozen
//! atomics do not need a metrics library.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds (seconds) of the attestation latency histogram.
const BUCKETS: [f64; 8] = [0.0005, 0.001, 0.002, 0.005, 0.01, 0.05, 0.1, 1.0];

/// The service's counters.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Evidence accepted.
    pub attestations_accepted: AtomicU64,
    /// Evidence refused.
    pub attestations_refused: AtomicU64,
    /// Asset keys released.
    pub keys_released: AtomicU64,
    /// Jobs revoked.
    pub jobs_revoked: AtomicU64,
    /// Requests refused (any reason, audited).
    pub requests_refused: AtomicU64,
    /// HTTP requests served.
    pub http_requests: AtomicU64,
    /// Refusals of anonymous requests not audited because of the rate limit.
    pub anonymous_refusals_dropped: AtomicU64,
    buckets: [AtomicU64; BUCKETS.len()],
    latency_count: AtomicU64,
    latency_micros: AtomicU64,
}

impl Metrics {
    /// Records the time one attestation took to decide.
    pub fn observe_attestation(&self, d: Duration) {
        let s = d.as_secs_f64();
        for (b, bound) in self.buckets.iter().zip(BUCKETS) {
            if s <= bound {
                b.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.latency_count.fetch_add(1, Ordering::Relaxed);
        self.latency_micros.fetch_add(d.as_micros() as u64, Ordering::Relaxed);
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let counters = [
            ("perun_attestations_accepted_total", "Evidence accepted.", &self.attestations_accepted),
            ("perun_attestations_refused_total", "Evidence refused.", &self.attestations_refused),
            ("perun_keys_released_total", "Asset keys released.", &self.keys_released),
            ("perun_jobs_revoked_total", "Jobs revoked.", &self.jobs_revoked),
            ("perun_requests_refused_total", "Requests refused and audited.", &self.requests_refused),
            ("perun_http_requests_total", "HTTP requests served.", &self.http_requests),
            (
                "perun_anonymous_refusals_dropped_total",
                "Anonymous requests refused past the audit rate limit (not audited).",
                &self.anonymous_refusals_dropped,
            ),
        ];
        for (name, help, v) in counters {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}", v.load(Ordering::Relaxed));
        }
        let name = "perun_attestation_seconds";
        let _ = writeln!(out, "# HELP {name} Time to decide one attestation.\n# TYPE {name} histogram");
        for (b, bound) in self.buckets.iter().zip(BUCKETS) {
            let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {}", b.load(Ordering::Relaxed));
        }
        let count = self.latency_count.load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {count}");
        let _ = writeln!(out, "{name}_sum {}", self.latency_micros.load(Ordering::Relaxed) as f64 / 1e6);
        let _ = writeln!(out, "{name}_count {count}");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_is_cumulative() {
        let m = Metrics::default();
        m.observe_attestation(Duration::from_micros(300));
        m.observe_attestation(Duration::from_millis(3));
        let text = m.render();
        assert!(text.contains("perun_attestation_seconds_bucket{le=\"0.0005\"} 1"));
        assert!(text.contains("perun_attestation_seconds_bucket{le=\"0.005\"} 2"));
        assert!(text.contains("perun_attestation_seconds_count 2"));
    }
}
