//! The `perun` binary's end-to-end tests, one test binary (as ripgrep's `tests/tests.rs`):
//! each module drives the binary the way a user would (the trust service's own suites are
//! `perun-trust`'s). `common` holds what they share (a scratch home, the
//! binary, a service it started, the PostgreSQL store of `PERUN_TEST_STORE=postgres`).
//!
//! Run one suite with its module's name: `cargo test -p perun --test tests trust_cli::`.

mod common;

mod attestation;
mod cases;
mod cli_dataset;
mod cli_seal;
mod cli_train;
mod demo;
mod deploy;
mod dp_accounting;
mod ima_vm;
mod load_fault;
mod replicas;
mod tee_cli;
mod trust_cli;
