//! One module per subcommand.

/// Prints a line; a long-running command (a worker, an enclave) does not stop because its
/// stdout went away.
macro_rules! say {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($t)*);
    }};
}

pub mod attest;
pub mod bench;
pub mod bench_dp;
pub mod bench_overhead;
pub mod bench_tee;
pub mod bench_trust;
pub mod dataset;
pub mod demo;
pub mod enclave;
pub mod id;
pub mod local;
pub mod outputs;
pub mod remote;
pub mod seal;
pub mod serve;
pub mod train;
pub mod worker;
