//! The error type of `perun-seal`.

use std::path::PathBuf;

use perun_core::{AssetKind, CoreError, Digest};

/// Everything that can go wrong with keys, sealed files and data sets.
///
/// Messages never contain key material or plaintext.
#[derive(Debug, thiserror::Error)]
pub enum SealError {
    /// An I/O error, with the path it concerns.
    #[error("{path}: {source}")]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// An I/O error on a stream that has no path.
    #[error("I/O error: {0}")]
    Stream(#[source] std::io::Error),
    /// A file that must not be replaced already exists.
    #[error("{0} already exists: refusing to overwrite it (move it away or choose another --out)")]
    Exists(PathBuf),
    /// A secret file is readable by other users.
    #[error("{path} is readable by other users (mode {mode:o}): run `chmod 600 {path}`")]
    InsecurePermissions {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// A key file or key string could not be parsed.
    #[error("invalid key: {0}")]
    InvalidKey(String),
    /// The input is not an `age` file at all.
    #[error("not a sealed file: {0}")]
    NotSealed(String),
    /// The `age` file is sealed with a passphrase (`age -p`, scrypt), not to a key.
    #[error("this age file is sealed with a passphrase (age -p, scrypt), not to a key: Perun opens files sealed to an age key (`age -r RECIPIENT`, `perun seal`); decrypt it with `age -d` and seal the plaintext with `perun seal`")]
    Passphrase,
    /// None of the given keys opens the file.
    #[error("wrong key: this file was not sealed to the given key")]
    WrongKey,
    /// A wrapped secret was made for another context (job, asset, output, receiver), or
    /// without one: it is not used (docs/architecture.md, section 2).
    #[error("this wrapped key was not made for {expected}: a key wrapped for one job, asset or receiver opens in no other (wrap it again for this one)")]
    WrongContext {
        /// The context the caller expected, in words.
        expected: String,
    },
    /// The `age` header was modified.
    #[error("tampered: the sealed file's header fails authentication (it was modified)")]
    HeaderTampered,
    /// A payload chunk failed authentication.
    #[error("tampered: the sealed payload fails authentication at plaintext offset {offset} (it was modified)")]
    PayloadTampered {
        /// Plaintext bytes that verified before the failure.
        offset: u64,
    },
    /// The first payload chunk failed authentication; without the header inside it the
    /// file's expected length is unknown, so modification and truncation look alike.
    #[error("tampered or truncated: the sealed payload fails authentication in its first chunk (the file was modified or cut short)")]
    TamperedOrTruncated,
    /// The sealed file ends early.
    #[error("truncated: the sealed file ends early ({actual} bytes{expected})")]
    Truncated {
        /// Sealed bytes present.
        actual: u64,
        /// What was expected, as text (may be empty when unknown).
        expected: String,
    },
    /// The authenticated Perun header inside the file is malformed.
    #[error("malformed asset header: {0}")]
    BadHeader(String),
    /// The asset is of another kind than the caller expected.
    #[error("asset is a {found}, expected a {expected}")]
    WrongKind {
        /// What the header says.
        found: AssetKind,
        /// What was asked for.
        expected: AssetKind,
    },
    /// The opened content does not match the digest or length its header declares.
    #[error(
        "content mismatch: header declares {declared} ({declared_len} bytes), content is {actual} ({actual_len} bytes)"
    )]
    ContentMismatch {
        /// Declared digest.
        declared: Digest,
        /// Declared length.
        declared_len: u64,
        /// Digest of what was read.
        actual: Digest,
        /// Length of what was read.
        actual_len: u64,
    },
    /// The input changed while it was being sealed.
    #[error("the input changed while it was being sealed: nothing was written")]
    InputChanged,
    /// An `age` encryption failure.
    #[error("encryption failed: {0}")]
    Encrypt(String),
    /// A CSV file could not be imported.
    #[error("{0}")]
    Csv(String),
    /// An image could not be imported.
    #[error("{path}: {why}")]
    Image {
        /// The image file.
        path: PathBuf,
        /// What is wrong with it.
        why: String,
    },
    /// A CIFAR-10 batch could not be imported.
    #[error("{path}: {why}")]
    Cifar {
        /// The batch file.
        path: PathBuf,
        /// What is wrong with it.
        why: String,
    },
    /// A dataset container is malformed.
    #[error("invalid dataset container: {0}")]
    Container(String),
    /// An error from the core types.
    #[error(transparent)]
    Core(#[from] CoreError),
}

impl SealError {
    /// Wraps an I/O error with the path it concerns.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io { path: path.into(), source }
    }
}
