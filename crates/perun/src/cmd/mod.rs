//! One module per subcommand.

pub mod attest;
pub mod bench;
pub mod bench_overhead;
pub mod bench_tee;
pub mod bench_trust;
pub mod dataset;
pub mod demo;
pub mod enclave;
pub mod id;
pub mod local;
pub mod remote;
pub mod seal;
pub mod serve;
pub mod train;
pub mod worker;
