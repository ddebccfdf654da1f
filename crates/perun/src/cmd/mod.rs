//! One module per subcommand.

/// Prints a line; a long-running command (a worker, an enclave) does not stop because its
/// stdout went away.
#[allow(unused_macros)] // the serve-only build runs no worker or enclave
macro_rules! say {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($t)*);
    }};
}

pub mod attest;
#[cfg(feature = "bench")]
pub mod bench;
pub mod context;
pub mod dataset;
#[cfg(feature = "demo")]
pub mod demo;
pub mod enclave;
pub mod id;
#[cfg(any(feature = "demo", feature = "bench"))]
pub mod local;
pub mod outputs;
pub mod remote;
pub mod seal;
#[cfg(feature = "serve")]
pub mod serve;
pub mod train;
#[cfg(feature = "worker")]
pub mod worker;
