//! Measured boot: the TCG2 event log that firmware and boot loader leave in
//! `/sys/kernel/security/tpm0/binary_bios_measurements`, replayed to the PCRs it
//! extended.
//!
//! Format: TCG PC Client Platform Firmware Profile Specification 1.05, section 10.2
//! (crypto-agile log): a first `TCG_PCR_EVENT` in the SHA-1 layout holding the
//! `TCG_EfiSpecIDEvent` ("Spec ID Event03", the digest sizes of every bank), then
//! `TCG_PCR_EVENT2` records, little-endian, each with one digest per bank. `EV_NO_ACTION`
//! events extend nothing; a `StartupLocality` event (section 10.4.5.3) sets PCR 0's
//! starting value to the locality the firmware started from (00..03 under Intel Boot
//! Guard). Only the SHA-256 bank is replayed.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::AttestError;

/// TPM_ALG_SHA256 in the log's digest lists.
const SHA256: u16 = 0x000b;
/// `EV_NO_ACTION`: recorded, never extended.
pub const EV_NO_ACTION: u32 = 0x3;
/// The largest log read (firmware logs are tens of kilobytes).
pub const MAX_LOG_LEN: usize = 4 * 1024 * 1024;
/// The largest single event's data.
const MAX_EVENT_LEN: usize = 1024 * 1024;

/// One event of the log, as measured into the SHA-256 bank.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BootEvent {
    /// The PCR it extended.
    pub pcr: u32,
    /// The event type (`EV_*`).
    pub event_type: u32,
    /// Its SHA-256 digest (hex).
    pub sha256: String,
    /// What it says, for people: the event data where it is text (boot loader
    /// commands, the kernel command line, actions), else empty.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub text: String,
}

impl BootEvent {
    /// The event type's name (PC Client Platform Firmware Profile, table 9).
    pub fn type_name(&self) -> String {
        let name = match self.event_type {
            0x0 => "EV_PREBOOT_CERT",
            0x1 => "EV_POST_CODE",
            0x3 => "EV_NO_ACTION",
            0x4 => "EV_SEPARATOR",
            0x5 => "EV_ACTION",
            0x6 => "EV_EVENT_TAG",
            0x7 => "EV_S_CRTM_CONTENTS",
            0x8 => "EV_S_CRTM_VERSION",
            0x9 => "EV_CPU_MICROCODE",
            0xa => "EV_PLATFORM_CONFIG_FLAGS",
            0xb => "EV_TABLE_OF_DEVICES",
            0xc => "EV_COMPACT_HASH",
            0xd => "EV_IPL",
            0xe => "EV_IPL_PARTITION_DATA",
            0xf => "EV_NONHOST_CODE",
            0x10 => "EV_NONHOST_CONFIG",
            0x11 => "EV_NONHOST_INFO",
            0x12 => "EV_OMIT_BOOT_DEVICE_EVENTS",
            0x8000_0001 => "EV_EFI_VARIABLE_DRIVER_CONFIG",
            0x8000_0002 => "EV_EFI_VARIABLE_BOOT",
            0x8000_0003 => "EV_EFI_BOOT_SERVICES_APPLICATION",
            0x8000_0004 => "EV_EFI_BOOT_SERVICES_DRIVER",
            0x8000_0005 => "EV_EFI_RUNTIME_SERVICES_DRIVER",
            0x8000_0006 => "EV_EFI_GPT_EVENT",
            0x8000_0007 => "EV_EFI_ACTION",
            0x8000_0008 => "EV_EFI_PLATFORM_FIRMWARE_BLOB",
            0x8000_0009 => "EV_EFI_HANDOFF_TABLES",
            0x8000_000a => "EV_EFI_PLATFORM_FIRMWARE_BLOB2",
            0x8000_000b => "EV_EFI_HANDOFF_TABLES2",
            0x8000_000c => "EV_EFI_VARIABLE_BOOT2",
            0x8000_0010 => "EV_EFI_HCRTM_EVENT",
            0x8000_00e0 => "EV_EFI_VARIABLE_AUTHORITY",
            0x8000_00e1 => "EV_EFI_SPDM_FIRMWARE_BLOB",
            0x8000_00e2 => "EV_EFI_SPDM_FIRMWARE_CONFIG",
            _ => return format!("event type 0x{:08x}", self.event_type),
        };
        name.to_owned()
    }
}

impl std::fmt::Display for BootEvent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} in PCR {}", self.type_name(), self.pcr)?;
        if !self.text.is_empty() {
            write!(f, " `{}`", self.text)?;
        }
        Ok(())
    }
}

/// A parsed log: its events (`EV_NO_ACTION` left out) and the PCR values it replays to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BootLog {
    /// Every extending event, in log order.
    pub events: Vec<BootEvent>,
    /// SHA-256 PCR values the events replay to, for every PCR the log touched (PCR 0
    /// from its startup locality).
    pub pcrs: BTreeMap<u32, [u8; 32]>,
}

impl BootLog {
    /// The events that extended `pcr`, in order.
    pub fn events_of(&self, pcr: u32) -> impl Iterator<Item = &BootEvent> {
        self.events.iter().filter(move |e| e.pcr == pcr)
    }

    /// The replayed value of `pcr` (zeros where the log never extended it).
    pub fn pcr(&self, pcr: u32) -> [u8; 32] {
        self.pcrs.get(&pcr).copied().unwrap_or([0; 32])
    }
}

struct Le<'a> {
    b: &'a [u8],
    at: usize,
}

impl<'a> Le<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], AttestError> {
        let end = self.at.checked_add(n).filter(|&e| e <= self.b.len()).ok_or_else(|| {
            AttestError::malformed("TCG2 event log", format!("truncated at byte {} (wanted {n} more)", self.at))
        })?;
        let s = &self.b[self.at..end];
        self.at = end;
        Ok(s)
    }
    fn u16(&mut self) -> Result<u16, AttestError> {
        let s = self.take(2)?;
        Ok(u16::from_le_bytes([s[0], s[1]]))
    }
    fn u32(&mut self) -> Result<u32, AttestError> {
        let s = self.take(4)?;
        Ok(u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
    }
    fn done(&self) -> bool {
        self.at >= self.b.len()
    }
}

/// Parses a crypto-agile TCG2 event log and replays its SHA-256 bank.
///
/// Errors: [`AttestError::Malformed`] for a truncated log, a log without the Spec ID
/// event (a TPM 1.2 SHA-1 log), a log without a SHA-256 bank, or one over
/// [`MAX_LOG_LEN`].
pub fn parse(log: &[u8]) -> Result<BootLog, AttestError> {
    if log.len() > MAX_LOG_LEN {
        return Err(AttestError::malformed("TCG2 event log", format!("{} bytes is too long", log.len())));
    }
    let mut r = Le { b: log, at: 0 };
    // The first event, in the TPM 1.2 layout: PCR, type, SHA-1 digest, data.
    let _pcr = r.u32()?;
    let first_type = r.u32()?;
    r.take(20)?;
    let size = r.u32()? as usize;
    let spec = r.take(size)?;
    if first_type != EV_NO_ACTION || !spec.starts_with(b"Spec ID Event03\0") {
        return Err(AttestError::malformed(
            "TCG2 event log",
            "it does not start with the Spec ID Event03 of a crypto-agile (TPM 2.0) log",
        ));
    }
    let mut s = Le { b: spec, at: 16 };
    s.take(4 + 4)?; // platformClass, spec version, errata, uintnSize
    let n = s.u32()?;
    let mut sizes = BTreeMap::new();
    for _ in 0..n.min(16) {
        let alg = s.u16()?;
        let len = s.u16()?;
        sizes.insert(alg, len as usize);
    }
    if !sizes.contains_key(&SHA256) {
        return Err(AttestError::malformed("TCG2 event log", "the log has no SHA-256 bank"));
    }
    let mut pcrs: BTreeMap<u32, [u8; 32]> = BTreeMap::new();
    let mut events = Vec::new();
    while !r.done() {
        let pcr = r.u32()?;
        let event_type = r.u32()?;
        let count = r.u32()?;
        let mut sha256 = None;
        for _ in 0..count.min(16) {
            let alg = r.u16()?;
            let len = *sizes.get(&alg).ok_or_else(|| {
                AttestError::malformed(
                    "TCG2 event log",
                    format!("digest of algorithm 0x{alg:04x} not in the Spec ID event"),
                )
            })?;
            let d = r.take(len)?;
            if alg == SHA256 {
                sha256 = <[u8; 32]>::try_from(d).ok();
            }
        }
        let size = r.u32()? as usize;
        if size > MAX_EVENT_LEN {
            return Err(AttestError::malformed("TCG2 event log", format!("an event of {size} bytes")));
        }
        let data = r.take(size)?;
        if event_type == EV_NO_ACTION {
            if pcr == 0 && data.len() >= 17 && data.starts_with(b"StartupLocality\0") {
                let mut v = [0u8; 32];
                v[31] = data[16];
                pcrs.insert(0, v);
            }
            continue;
        }
        if pcr > 23 {
            return Err(AttestError::malformed("TCG2 event log", format!("an event for PCR {pcr}")));
        }
        let digest =
            sha256.ok_or_else(|| AttestError::malformed("TCG2 event log", "an event lacks its SHA-256 digest"))?;
        let v = pcrs.entry(pcr).or_insert([0; 32]);
        let mut h = Sha256::new();
        h.update(*v);
        h.update(digest);
        *v = h.finalize().into();
        events.push(BootEvent { pcr, event_type, sha256: hex::encode(digest), text: text_of(event_type, data) });
    }
    Ok(BootLog { events, pcrs })
}

/// What an event is, for people: the event data where it is text (EV_IPL from GRUB and
/// systemd-boot: commands and the kernel command line, possibly UTF-16; actions), trimmed
/// to 200 characters; what a tagged event or EFI application stands for; else empty.
fn text_of(event_type: u32, data: &[u8]) -> String {
    match event_type {
        // EV_EVENT_TAG: TCG_PCClientTaggedEvent (ID, size, data); Linux's EFI stub tags
        // the kernel command line and the initrd it measures into PCR 9
        // (drivers/firmware/efi/libstub/efi-stub-helper.c).
        0x6 => {
            let tag = data.get(8..).map(|d| String::from_utf8_lossy(d).trim_end_matches('\0').to_owned());
            return match tag.as_deref() {
                Some("LOADED_IMAGE::LoadOptions") => "the kernel command line (LOADED_IMAGE::LoadOptions)".into(),
                Some("Linux initrd") => "the initrd (Linux initrd)".into(),
                _ => String::new(),
            };
        }
        0x8000_0003 => return "an EFI application: a boot loader or kernel image".into(),
        _ => {}
    }
    let texty = matches!(event_type, 0x5 | 0xd | 0x8000_0007);
    if !texty || data.is_empty() {
        return String::new();
    }
    let s = if data.len() >= 4 && data.len() % 2 == 0 && data[1] == 0 && data[3] == 0 {
        let units: Vec<u16> = data.chunks_exact(2).map(|c| u16::from_le_bytes([c[0], c[1]])).collect();
        String::from_utf16_lossy(&units)
    } else {
        String::from_utf8_lossy(data).into_owned()
    };
    let s: String = s.trim_end_matches('\0').chars().filter(|c| !c.is_control()).take(200).collect();
    s
}

/// The reference events of a boot: per PCR, the events a reference machine's log
/// extended it with, in order ([`BootLog::events`] of the reference).
pub type BootReference = BTreeMap<u32, Vec<BootEvent>>;

/// The reference of PCRs `pcrs` from a log: each event's type and digest. The events'
/// texts are left out: they are not covered by the digests, so a reference carries
/// nothing an approver could be misled by.
pub fn reference(log: &BootLog, pcrs: impl IntoIterator<Item = u32>) -> BootReference {
    pcrs.into_iter()
        .map(|p| (p, log.events_of(p).map(|e| BootEvent { text: String::new(), ..e.clone() }).collect()))
        .collect()
}

/// The measurements of a kernel command line, as `(PCR, event type, digest)`: Linux's
/// EFI stub hashes the UEFI LoadOptions (UTF-16LE, with or without the terminating NUL)
/// into PCR 9 as a tagged event (EV_EVENT_TAG); GRUB hashes `kernel_cmdline: ...` into
/// PCR 8 as EV_IPL. No other event is taken for a command line.
pub fn cmdline_measurements(cmdline: &str) -> Vec<(u32, u32, String)> {
    let utf16: Vec<u8> = cmdline.encode_utf16().flat_map(|u| u.to_le_bytes()).collect();
    let mut utf16z = utf16.clone();
    utf16z.extend_from_slice(&[0, 0]);
    let grub = format!("kernel_cmdline: {cmdline}");
    let h = |b: &[u8]| hex::encode(Sha256::digest(b));
    vec![
        (9, 0x6, h(&utf16)),
        (9, 0x6, h(&utf16z)),
        (8, 0xd, h(grub.as_bytes())),
        (8, 0xd, h(format!("{grub}\0").as_bytes())),
    ]
}

/// The kernel's parameters as it parses them (`lib/cmdline.c`, `next_arg`): split on
/// ASCII whitespace, a double-quoted value is one parameter, everything after `--` goes
/// to init. Each as `(name, value)`.
pub fn kernel_params(cmdline: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut chars = cmdline.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_ascii_whitespace()) {
            chars.next();
        }
        if chars.peek().is_none() {
            break;
        }
        let mut word = String::new();
        let mut quoted = false;
        while let Some(&c) = chars.peek() {
            if c.is_ascii_whitespace() && !quoted {
                break;
            }
            if c == '"' {
                quoted = !quoted;
            } else {
                word.push(c);
            }
            chars.next();
        }
        if word == "--" {
            break;
        }
        let (name, value) = word.split_once('=').unwrap_or((word.as_str(), ""));
        out.push((name.to_owned(), value.to_owned()));
    }
    out
}

/// Whether a kernel command line turns on IMA's measurement of what runs: an
/// `ima_policy=` parameter naming the built-in `tcb` policy (alone or with others,
/// `tcb|appraise_tcb`). Appraisal-only policies measure nothing.
pub fn cmdline_measures_what_runs(cmdline: &str) -> bool {
    kernel_params(cmdline).iter().any(|(n, v)| n == "ima_policy" && v.split('|').any(|p| p == "tcb"))
}

/// Where `log` departs from `reference`, per PCR: the first event that differs, with
/// what the reference has there. Empty when every referenced PCR's events are equal.
pub fn differences(log: &BootLog, reference: &BootReference) -> Vec<String> {
    let mut out = Vec::new();
    for (pcr, want) in reference {
        let got: Vec<&BootEvent> = log.events_of(*pcr).collect();
        let at = (0..want.len().max(got.len()))
            .find(|&i| want.get(i).map(|w| (&w.sha256, w.event_type)) != got.get(i).map(|g| (&g.sha256, g.event_type)));
        let Some(i) = at else { continue };
        out.push(match (got.get(i), want.get(i)) {
            (Some(g), Some(w)) if g.event_type == w.event_type && g.text == w.text => format!(
                "PCR {pcr} event {i}: {g} measured {} where the reference measured {}",
                g.sha256.get(..16).unwrap_or(&g.sha256),
                w.sha256.get(..16).unwrap_or(&w.sha256)
            ),
            (Some(g), Some(w)) => format!("PCR {pcr} event {i}: {g} differs from the reference {w}"),
            (Some(g), None) => format!("PCR {pcr} event {i}: {g} is not in the reference"),
            (None, Some(w)) => format!("PCR {pcr} event {i}: the reference's {w} is missing"),
            (None, None) => continue,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(pcr: u32, ty: u32, digest: [u8; 32], data: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        v.extend_from_slice(&pcr.to_le_bytes());
        v.extend_from_slice(&ty.to_le_bytes());
        v.extend_from_slice(&1u32.to_le_bytes());
        v.extend_from_slice(&SHA256.to_le_bytes());
        v.extend_from_slice(&digest);
        v.extend_from_slice(&(data.len() as u32).to_le_bytes());
        v.extend_from_slice(data);
        v
    }

    /// A minimal crypto-agile log: the Spec ID event with a SHA-256 bank, then `events`.
    pub(crate) fn log_of(events: &[Vec<u8>]) -> Vec<u8> {
        let mut spec = b"Spec ID Event03\0".to_vec();
        spec.extend_from_slice(&[0, 0, 0, 0, 0, 2, 0, 2]);
        spec.extend_from_slice(&1u32.to_le_bytes());
        spec.extend_from_slice(&SHA256.to_le_bytes());
        spec.extend_from_slice(&32u16.to_le_bytes());
        spec.push(0);
        let mut v = Vec::new();
        v.extend_from_slice(&0u32.to_le_bytes());
        v.extend_from_slice(&EV_NO_ACTION.to_le_bytes());
        v.extend_from_slice(&[0; 20]);
        v.extend_from_slice(&(spec.len() as u32).to_le_bytes());
        v.extend_from_slice(&spec);
        for e in events {
            v.extend_from_slice(e);
        }
        v
    }

    #[test]
    fn replay_names_the_event_that_differs() {
        let cmdline = b"linux /vmlinuz ima_policy=tcb";
        let reference_log =
            log_of(&[event(0, 0x8, [1; 32], b"fw"), event(8, 0xd, Sha256::digest(cmdline).into(), cmdline)]);
        let r = parse(&reference_log).unwrap();
        assert_eq!(r.events.len(), 2);
        let want: [u8; 32] = Sha256::digest([[0u8; 32], [1u8; 32]].concat()).into();
        assert_eq!(r.pcr(0), want);
        let refs = reference(&r, 0..=9);
        assert!(differences(&r, &refs).is_empty());

        let other = b"linux /vmlinuz";
        let log = parse(&log_of(&[event(0, 0x8, [1; 32], b"fw"), event(8, 0xd, Sha256::digest(other).into(), other)]))
            .unwrap();
        let d = differences(&log, &refs);
        assert_eq!(d.len(), 1);
        assert!(d[0].contains("PCR 8 event 0: EV_IPL in PCR 8 `linux /vmlinuz`"), "{d:?}");
        // A reference holds types and digests only: its texts are nobody's word.
        assert!(d[0].ends_with("differs from the reference EV_IPL in PCR 8"), "{d:?}");
        assert!(refs.values().flatten().all(|e| e.text.is_empty()));
        // A command line is found by its measurement as boot loaders make it only.
        let ours = cmdline_measurements("ima_policy=tcb");
        assert!(ours.iter().all(|(p, _, _)| *p == 8 || *p == 9));
        assert!(!ours.iter().any(|(_, _, d)| *d == hex::encode(Sha256::digest(b"ima_policy=tcb"))));
    }

    #[test]
    fn command_lines_are_read_as_the_kernel_reads_them() {
        assert!(cmdline_measures_what_runs("root=/dev/sda1 ima_policy=tcb quiet"));
        assert!(cmdline_measures_what_runs("ima_policy=tcb|appraise_tcb"));
        for not in [
            "ro -- ima_policy=tcb",
            "dyndbg=\" ima_policy=tcb\"",
            "ima_policy=",
            "ima_policy=appraise_tcb",
            "x=a\u{a0}ima_policy=tcb",
            "ima_policy=tcbx",
        ] {
            assert!(!cmdline_measures_what_runs(not), "{not}");
        }
    }

    #[test]
    fn truncated_or_foreign_logs_are_refused() {
        let log = log_of(&[event(0, 0x8, [1; 32], b"fw")]);
        for cut in [0, 10, 40, log.len() - 1] {
            assert!(parse(&log[..cut]).is_err(), "cut at {cut}");
        }
        let mut tpm12 = log.clone();
        tpm12[32] = b'X';
        assert!(parse(&tpm12).is_err());
        let mut huge = log_of(&[]);
        huge.extend_from_slice(&[0, 0, 0, 0, 8, 0, 0, 0, 0xff, 0xff, 0xff, 0xff]);
        assert!(parse(&huge).is_err());
    }
}
