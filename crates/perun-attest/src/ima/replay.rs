//! PCR 10 replay, incremental: a saved state (entries and bytes consumed, running PCR
//! values) lets a re-attestation verify only the entries appended since.

use serde::{Deserialize, Serialize};
use sha1::Sha1;
use sha2::{Digest as _, Sha256};

use super::log::{parse_binary, Entry};
use crate::AttestError;

/// Where a replay stands: how much of the log is verified and the PCR 10 values then.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplayState {
    /// Entries verified so far.
    pub entries: usize,
    /// Bytes of the binary log verified so far.
    pub offset: usize,
    /// PCR 10 in the SHA-1 bank after those entries (hex).
    pub sha1: String,
    /// PCR 10 in the SHA-256 bank after those entries (hex).
    pub sha256: String,
}

impl Default for ReplayState {
    fn default() -> Self {
        Self { entries: 0, offset: 0, sha1: hex::encode([0u8; 20]), sha256: hex::encode([0u8; 32]) }
    }
}

/// Replays the log from `state` until the SHA-256 PCR 10 equals `quoted` (the value the
/// TPM quoted). `log` is the whole binary log; only the bytes past `state.offset` are
/// read. Entries after the match are left for the next round (the kernel appends to the
/// log before it extends the PCR). Returns the new state and the newly verified entries.
pub fn replay_to_quote(
    state: &ReplayState,
    log: &[u8],
    quoted: &[u8],
) -> Result<(ReplayState, Vec<Entry>), AttestError> {
    let tail = log.get(state.offset..).ok_or_else(|| {
        AttestError::Check(format!(
            "the IMA log has {} bytes, fewer than the {} already verified: it was truncated",
            log.len(),
            state.offset
        ))
    })?;
    let mut pcr256 = decode::<32>(&state.sha256)?;
    let mut pcr1 = decode::<20>(&state.sha1)?;
    if pcr256 == quoted {
        return Ok((state.clone(), Vec::new()));
    }
    let mut verified = Vec::new();
    for (entry, end) in parse_binary(tail, state.entries)? {
        if entry.pcr != super::IMA_PCR {
            return Err(AttestError::Check(format!(
                "IMA entry {} extends PCR {}, not 10",
                state.entries + verified.len(),
                entry.pcr
            )));
        }
        pcr256 = Sha256::new().chain_update(pcr256).chain_update(entry.sha256_extend()).finalize().into();
        pcr1 = Sha1::new().chain_update(pcr1).chain_update(entry.sha1_extend()).finalize().into();
        verified.push(entry);
        if pcr256 == quoted {
            let next = ReplayState {
                entries: state.entries + verified.len(),
                offset: state.offset + end,
                sha1: hex::encode(pcr1),
                sha256: hex::encode(pcr256),
            };
            return Ok((next, verified));
        }
    }
    Err(AttestError::Check(
        "the IMA log does not replay to the quoted PCR 10: an entry was edited, removed, reordered or inserted, or the log was cut short".into(),
    ))
}

fn decode<const N: usize>(h: &str) -> Result<[u8; N], AttestError> {
    let mut out = [0u8; N];
    hex::decode_to_slice(h, &mut out).map_err(|_| AttestError::Check("corrupt saved replay state".into()))?;
    Ok(out)
}

/// PCR 10 (SHA-256) after extending `entries` onto `start`.
pub fn extend_all(start: [u8; 32], entries: &[Entry]) -> [u8; 32] {
    entries
        .iter()
        .fold(start, |pcr, e| Sha256::new().chain_update(pcr).chain_update(e.sha256_extend()).finalize().into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log(n: usize) -> (Vec<Entry>, Vec<u8>) {
        let entries: Vec<Entry> =
            (0..n).map(|i| Entry::ima_ng(&format!("/bin/f{i}"), "sha256", &[i as u8; 32])).collect();
        let bytes = entries.iter().flat_map(Entry::to_binary).collect();
        (entries, bytes)
    }

    #[test]
    fn replays_fully_and_incrementally() {
        let (entries, bytes) = log(10);
        let quoted = extend_all([0; 32], &entries[..6]);
        let (s, v) = replay_to_quote(&ReplayState::default(), &bytes, &quoted).unwrap();
        assert_eq!((s.entries, v.len()), (6, 6));
        let quoted = extend_all([0; 32], &entries);
        let (s2, v2) = replay_to_quote(&s, &bytes, &quoted).unwrap();
        assert_eq!((s2.entries, v2.len(), s2.offset), (10, 4, bytes.len()));
    }

    #[test]
    fn every_edit_of_the_log_is_refused() {
        let (entries, _) = log(8);
        let quoted = extend_all([0; 32], &entries);
        let bin = |es: &[Entry]| es.iter().flat_map(Entry::to_binary).collect::<Vec<u8>>();
        let mut removed = entries.clone();
        removed.remove(3);
        let mut reordered = entries.clone();
        reordered.swap(2, 5);
        let mut inserted = entries.clone();
        inserted.insert(4, Entry::ima_ng("/tmp/evil", "sha256", &[9; 32]));
        let mut edited = entries.clone();
        edited[1] = Entry::ima_ng("/bin/f1", "sha256", &[0xee; 32]);
        for (what, es) in [
            ("removed", &removed),
            ("reordered", &reordered),
            ("inserted", &inserted),
            ("edited", &edited),
            ("truncated", &entries[..7].to_vec()),
        ] {
            let e = replay_to_quote(&ReplayState::default(), &bin(es), &quoted).unwrap_err().to_string();
            assert!(e.contains("does not replay"), "{what}: {e}");
        }
    }
}
