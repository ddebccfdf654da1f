//! Perun's sealed assets.
//!
//! - [`keys`]: per-asset keys and stakeholder key pairs, kept in `zeroize` types and
//!   written only to files of mode 0600 that their owner asked for.
//! - [`sealed`]: the sealed-asset format. A sealed file is a standard `age` file
//!   (X25519 recipients, ChaCha20-Poly1305 STREAM) whose plaintext starts with a small
//!   [`header::AssetHeader`] (kind, schema, content digest and length), so the header is
//!   authenticated by the same encryption as the payload. Files sealed by the `age` tool
//!   open too (without a header). Sealing and opening stream in fixed memory.
//! - [`wrap`]: small secrets (asset keys) wrapped to an `age` recipient, for the trust
//!   service; [`release`]: keys released with HPKE to an attested ephemeral key.
//! - [`dataset`]: the dataset container (`safetensors` with `features` and `labels`)
//!   and its importers (CSV, image folders, CIFAR-10 binary batches).

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod canonical;
pub mod dataset;
pub mod error;
pub mod fsutil;
pub mod header;
pub mod keys;
pub mod release;
pub mod sealed;
pub mod wrap;

pub use dataset::Dataset;
pub use error::SealError;
pub use header::AssetHeader;
pub use keys::{AssetKey, StakeholderKeys};
pub use sealed::{
    open, open_file, open_in_parallel, open_to_vec, seal, seal_bytes_to_file, seal_file, unseal_file, Opened,
    SealedInfo, SealedReader,
};
