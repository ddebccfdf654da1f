//! PCR 10 replay, incremental: a saved state (entries and bytes consumed, running PCR
//! values) lets a re-attestation verify only the entries appended since.

use serde::{Deserialize, Serialize};
use sha1::Sha1;
use sha2::{Digest as _, Sha256};

use super::{parse_binary, Entry};
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
    /// The TPM's boot the verified entries belong to: `resetCount` and `restartCount`
    /// of the quote that proved them (TPM 2.0 Part 2, `TPMS_CLOCK_INFO`). A quote with
    /// other counts comes from a later boot, whose log starts over. `None` in states
    /// saved before Perun recorded it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub boot: Option<TpmBoot>,
    /// The name (hex) of the attestation key whose quotes proved the verified entries: a
    /// later round must be quoted by the same AK. `None` in states saved before Perun
    /// recorded it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ak: Option<String>,
}

/// Which boot of a TPM a quote comes from (TPM 2.0 Part 2, section 10.11.1,
/// `TPMS_CLOCK_INFO`): `resetCount` grows at every TPM Reset (a reboot), `restartCount` at
/// every TPM Restart or Resume (resume from hibernation or from suspend to RAM, where the
/// machine's memory carries on) and returns to 0 at a Reset. A changed `resetCount` means
/// the machine rebooted: its PCRs, its IMA log and its memory started over.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TpmBoot {
    /// `resetCount`.
    pub reset_count: u32,
    /// `restartCount`.
    pub restart_count: u32,
}

impl std::fmt::Display for TpmBoot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "resetCount {}, restartCount {}", self.reset_count, self.restart_count)
    }
}

impl Default for ReplayState {
    fn default() -> Self {
        Self {
            entries: 0,
            offset: 0,
            sha1: hex::encode([0u8; 20]),
            sha256: hex::encode([0u8; 32]),
            boot: None,
            ak: None,
        }
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
                ..state.clone()
            };
            return Ok((next, verified));
        }
    }
    // No prefix of the log reached the quote: `verified` holds the whole tail.
    let start = decode::<32>(&state.sha256)?;
    if replays_padded(start, verified.iter(), quoted) {
        return Err(AttestError::Check(
            "the quoted SHA-256 PCR 10 was extended with the SHA-1 template hashes padded with zeros, as Linux \
             kernels before 5.10 do: the log is genuine, but SHA-1 alone (which has practical collisions) binds it \
             to the TPM; Perun requires a kernel that extends the SHA-256 bank with SHA-256 template hashes (Linux \
             5.10 or later)"
                .into(),
        ));
    }
    Err(AttestError::Check(
        "the IMA log does not replay to the quoted PCR 10: either an entry was edited, removed, reordered or \
         inserted, or the log was cut short, or something extended PCR 10 outside IMA (root can, through the TPM \
         device); the log cannot stand for what the quote says"
            .into(),
    ))
}

/// Whether extending `start` with each entry's SHA-1 template hash padded to 32 bytes
/// (what kernels before 5.10 extended into every bank, `ima_pcr_extend`) reaches
/// `quoted`.
fn replays_padded<'a>(start: [u8; 32], entries: impl Iterator<Item = &'a Entry>, quoted: &[u8]) -> bool {
    let mut pcr = start;
    for e in entries {
        let mut padded = [0u8; 32];
        padded[..20].copy_from_slice(&e.sha1_extend());
        pcr = Sha256::new().chain_update(pcr).chain_update(padded).finalize().into();
        if pcr == quoted {
            return true;
        }
    }
    false
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
    fn a_bank_extended_with_padded_sha1_digests_is_named() {
        let (entries, bytes) = log(3);
        let quoted = entries.iter().fold([0u8; 32], |pcr, e| {
            let mut padded = [0u8; 32];
            padded[..20].copy_from_slice(&e.template_hash);
            Sha256::new().chain_update(pcr).chain_update(padded).finalize().into()
        });
        let e = replay_to_quote(&ReplayState::default(), &bytes, &quoted).unwrap_err().to_string();
        assert!(e.contains("padded with zeros") && e.contains("5.10") && !e.contains("edited"), "{e}");
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
