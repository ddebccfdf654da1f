//! Linux IMA measurement logs: parsing, and PCR 10 replay.
//!
//! A log is a list of entries, each recording the PCR it extended (10), the SHA-1
//! template hash, the template name and the template data (for `ima-ng` and `ima-sig`:
//! the file digest with its algorithm, the path, and a signature). The kernel extends
//! each PCR bank with the hash of the template data in that bank's algorithm; a
//! violation (a file measured while open for writing) is recorded as zeros and
//! extended as `0xFF..`.

mod replay;

pub use perun_proto::ima::{parse_ascii, parse_binary, path_text, Entry, FileDigest, ImaLogError, IMA_PCR, TEMPLATES};
pub use replay::{extend_all, replay_to_quote, ReplayState, TpmBoot};
