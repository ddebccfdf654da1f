//! One module per subcommand.

pub mod attest;
pub mod bench;
pub mod dataset;
pub mod demo;
pub mod id;
pub mod seal;
pub mod train;
