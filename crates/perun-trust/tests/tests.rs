//! The trust service's suites, one test binary over the test kit and the typed client:
//! the service in process on loopback (TLS, as a deployment serves it), workers on software
//! TPMs, enclaves on the sim TEE, each attack on the release rule mounted and refused.
//! `PERUN_TEST_STORE=postgres` runs them on PostgreSQL (`scripts/test` does both).
//!
//! Run one suite with its module's name: `cargo test -p perun-trust --test tests tee_mode::`.

mod common;

mod tee_mode;
mod trust_service;
