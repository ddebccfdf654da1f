//! IMA log entries in the binary (securityfs `binary_runtime_measurements`) and ASCII
//! (`ascii_runtime_measurements`) forms.

use sha1::Sha1;
use sha2::{Digest as _, Sha256};

use crate::AttestError;

/// The digest of a measured file, with its algorithm name (`sha256`, `sha1`, ...).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileDigest {
    /// Algorithm name as IMA writes it.
    pub algorithm: String,
    /// The digest.
    pub digest: Vec<u8>,
}

impl FileDigest {
    /// `algorithm:hex`.
    pub fn to_text(&self) -> String {
        // Called once per entry on every appraisal: no formatting machinery.
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut s = String::with_capacity(self.algorithm.len() + 1 + 2 * self.digest.len());
        s.push_str(&self.algorithm);
        s.push(':');
        for b in &self.digest {
            s.push(char::from(HEX[usize::from(b >> 4)]));
            s.push(char::from(HEX[usize::from(b & 15)]));
        }
        s
    }
}

/// One IMA log entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// PCR the entry was extended into.
    pub pcr: u32,
    /// Template name (`ima-ng`, `ima-sig`, `ima`).
    pub template: String,
    /// The template data exactly as hashed into the PCR banks.
    pub template_data: Vec<u8>,
    /// SHA-1 template hash recorded in the log (zeros for a violation).
    pub template_hash: [u8; 20],
    /// The measured file's digest.
    pub file_digest: FileDigest,
    /// The measured path.
    pub path: String,
    /// The file signature (`ima-sig`), if any.
    pub signature: Option<Vec<u8>>,
    /// Whether this is a violation record.
    pub violation: bool,
}

/// Largest template data accepted per entry, to bound memory on hostile input.
const MAX_TEMPLATE_DATA: usize = 1 << 20;
/// The legacy `ima` template hashes the path padded to this length.
const IMA_LEGACY_NAME_LEN: usize = 256;

impl Entry {
    /// The SHA-256 bank's extend value for this entry.
    pub fn sha256_extend(&self) -> [u8; 32] {
        if self.violation {
            [0xff; 32]
        } else if self.template == "ima" {
            Sha256::digest(legacy_hash_input(&self.file_digest.digest, &self.path)).into()
        } else {
            Sha256::digest(&self.template_data).into()
        }
    }

    /// The SHA-1 bank's extend value for this entry.
    pub fn sha1_extend(&self) -> [u8; 20] {
        if self.violation {
            [0xff; 20]
        } else {
            self.template_hash
        }
    }

    /// Recomputes the SHA-1 template hash and compares it with the recorded one.
    fn check_template_hash(&self, index: usize, offset: usize) -> Result<(), AttestError> {
        if self.violation {
            return Ok(());
        }
        let computed: [u8; 20] = if self.template == "ima" {
            Sha1::digest(legacy_hash_input(&self.file_digest.digest, &self.path)).into()
        } else {
            Sha1::digest(&self.template_data).into()
        };
        if computed != self.template_hash {
            return Err(AttestError::ImaEntry {
                index,
                offset,
                why: format!("template hash does not match its data ({})", self.path),
            });
        }
        Ok(())
    }

    /// Builds an `ima-ng` entry for a measured file, as the kernel would.
    pub fn ima_ng(path: &str, algorithm: &str, digest: &[u8]) -> Self {
        let mut d = algorithm.as_bytes().to_vec();
        d.extend_from_slice(b":\0");
        d.extend_from_slice(digest);
        let mut n = path.as_bytes().to_vec();
        n.push(0);
        let mut template_data = Vec::new();
        for field in [&d, &n] {
            template_data.extend_from_slice(&(field.len() as u32).to_le_bytes());
            template_data.extend_from_slice(field);
        }
        let template_hash = Sha1::digest(&template_data).into();
        Self {
            pcr: super::IMA_PCR,
            template: "ima-ng".into(),
            template_data,
            template_hash,
            file_digest: FileDigest { algorithm: algorithm.into(), digest: digest.to_vec() },
            path: path.into(),
            signature: None,
            violation: false,
        }
    }

    /// The entry in the binary log format.
    pub fn to_binary(&self) -> Vec<u8> {
        let mut out = self.pcr.to_le_bytes().to_vec();
        out.extend_from_slice(&self.template_hash);
        out.extend_from_slice(&(self.template.len() as u32).to_le_bytes());
        out.extend_from_slice(self.template.as_bytes());
        out.extend_from_slice(&(self.template_data.len() as u32).to_le_bytes());
        out.extend_from_slice(&self.template_data);
        out
    }
}

fn legacy_hash_input(digest: &[u8], path: &str) -> Vec<u8> {
    let mut v = digest.to_vec();
    let mut name = path.as_bytes().to_vec();
    name.resize(IMA_LEGACY_NAME_LEN, 0);
    v.extend_from_slice(&name);
    v
}

struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
    index: usize,
    start: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], AttestError> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.buf.len()).ok_or_else(|| AttestError::ImaEntry {
            index: self.index,
            offset: self.start,
            why: format!("truncated: needs {n} bytes at byte {}", self.pos),
        })?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn u32(&mut self) -> Result<u32, AttestError> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn err(&self, why: impl Into<String>) -> AttestError {
        AttestError::ImaEntry { index: self.index, offset: self.start, why: why.into() }
    }
}

/// Parses binary log bytes. `first_index` numbers the entries (for messages) when
/// `log` is the tail of a longer log. Returns each entry with its end offset in `log`.
pub fn parse_binary(log: &[u8], first_index: usize) -> Result<Vec<(Entry, usize)>, AttestError> {
    let mut c = Cursor { buf: log, pos: 0, index: first_index, start: 0 };
    let mut out = Vec::new();
    while c.pos < log.len() {
        c.start = c.pos;
        let pcr = c.u32()?;
        let mut template_hash = [0u8; 20];
        template_hash.copy_from_slice(c.take(20)?);
        let name_len = c.u32()? as usize;
        if name_len == 0 || name_len > 255 {
            return Err(c.err(format!("template name length {name_len}")));
        }
        let template =
            std::str::from_utf8(c.take(name_len)?).map_err(|_| c.err("template name is not UTF-8"))?.to_owned();
        let data_len = c.u32()? as usize;
        if data_len > MAX_TEMPLATE_DATA {
            return Err(c.err(format!("template data of {data_len} bytes")));
        }
        let template_data = c.take(data_len)?.to_vec();
        let violation = template_hash == [0u8; 20];
        let entry = decode_fields(pcr, template, template_data, template_hash, violation).map_err(|why| c.err(why))?;
        entry.check_template_hash(c.index, c.start)?;
        out.push((entry, c.pos));
        c.index += 1;
    }
    Ok(out)
}

fn decode_fields(
    pcr: u32,
    template: String,
    data: Vec<u8>,
    template_hash: [u8; 20],
    violation: bool,
) -> Result<Entry, String> {
    let (file_digest, path, signature) = if template == "ima" {
        // Legacy: a 20-byte SHA-1 digest, then a length-prefixed path.
        if data.len() < 24 {
            return Err("legacy ima template data too short".into());
        }
        let n = u32::from_le_bytes([data[20], data[21], data[22], data[23]]) as usize;
        let path = data.get(24..24 + n).ok_or("legacy ima path cut short")?;
        let path = String::from_utf8_lossy(path).trim_end_matches('\0').to_owned();
        (FileDigest { algorithm: "sha1".into(), digest: data[..20].to_vec() }, path, None)
    } else {
        // Up to three length-prefixed fields (d-ng, n-ng, sig); no allocation per field.
        let mut fields: [&[u8]; 3] = [&[]; 3];
        let (mut count, mut p) = (0usize, 0usize);
        while p < data.len() {
            let n = data
                .get(p..p + 4)
                .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
                .ok_or("field length cut short")?;
            let f = data.get(p + 4..p + 4 + n).ok_or("field cut short")?;
            if let Some(slot) = fields.get_mut(count) {
                *slot = f;
            }
            count += 1;
            p += 4 + n;
        }
        if count < 2 || (template == "ima-sig" && count < 3) {
            return Err(format!("template {template} has {count} fields"));
        }
        let d = fields[0];
        let sep = d.iter().position(|&b| b == 0).ok_or("d-ng field has no algorithm prefix")?;
        let algorithm =
            std::str::from_utf8(&d[..sep]).map_err(|_| "bad algorithm name")?.trim_end_matches(':').to_owned();
        let digest = d[sep + 1..].to_vec();
        let name = fields[1].strip_suffix(&[0]).unwrap_or(fields[1]);
        let path = match std::str::from_utf8(name) {
            Ok(p) => p.to_owned(),
            Err(_) => String::from_utf8_lossy(name).into_owned(),
        };
        let signature = (count > 2 && !fields[2].is_empty()).then(|| fields[2].to_vec());
        (FileDigest { algorithm, digest }, path, signature)
    };
    Ok(Entry { pcr, template, template_data: data, template_hash, file_digest, path, signature, violation })
}

/// Parses the ASCII form: `PCR template-hash template-name digest path [signature]`.
pub fn parse_ascii(text: &str) -> Result<Vec<Entry>, AttestError> {
    let mut out = Vec::new();
    for (index, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let err = |why: String| AttestError::ImaEntry { index, offset: 0, why };
        let parts: Vec<&str> = line.splitn(6, ' ').collect();
        if parts.len() < 5 {
            return Err(err(format!("expected at least 5 fields, found {}", parts.len())));
        }
        let pcr = parts[0].parse().map_err(|_| err(format!("bad PCR {:?}", parts[0])))?;
        let mut template_hash = [0u8; 20];
        hex::decode_to_slice(parts[1], &mut template_hash).map_err(|_| err("bad template hash".into()))?;
        let template = parts[2].to_owned();
        let path = parts[4].to_owned();
        let violation = template_hash == [0u8; 20];
        let entry = if template == "ima" {
            let digest = hex::decode(parts[3]).map_err(|_| err("bad digest".into()))?;
            let mut data = digest.clone();
            data.extend_from_slice(&(path.len() as u32).to_le_bytes());
            data.extend_from_slice(path.as_bytes());
            decode_fields(pcr, template, data, template_hash, violation).map_err(err)?
        } else {
            let (algorithm, digest) =
                parts[3].split_once(':').ok_or_else(|| err("digest lacks `algorithm:`".into()))?;
            let digest = hex::decode(digest).map_err(|_| err("bad digest".into()))?;
            let mut e = Entry::ima_ng(&path, algorithm, &digest);
            if template == "ima-sig" {
                let sig = match parts.get(5) {
                    Some(s) => hex::decode(s.trim()).map_err(|_| err("bad signature".into()))?,
                    None => Vec::new(),
                };
                e.template_data.extend_from_slice(&(sig.len() as u32).to_le_bytes());
                e.template_data.extend_from_slice(&sig);
                e.signature = (!sig.is_empty()).then_some(sig);
            } else if template != "ima-ng" {
                return Err(err(format!("template {template} is not supported (ima-ng, ima-sig, ima)")));
            }
            e.template = template;
            e.template_hash = template_hash;
            e.violation = violation;
            e.pcr = pcr;
            e
        };
        entry.check_template_hash(index, 0)?;
        out.push(entry);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binary_round_trip_and_ascii_agree() {
        let e = Entry::ima_ng("/usr/bin/perun", "sha256", &[7u8; 32]);
        let bin = e.to_binary();
        let parsed = parse_binary(&bin, 0).unwrap();
        assert_eq!(parsed[0].0, e);
        let ascii =
            format!("10 {} ima-ng sha256:{} /usr/bin/perun\n", hex::encode(e.template_hash), hex::encode([7u8; 32]));
        assert_eq!(parse_ascii(&ascii).unwrap()[0], e);
    }

    #[test]
    fn an_edited_entry_fails_its_template_hash() {
        let e = Entry::ima_ng("/usr/bin/perun", "sha256", &[7u8; 32]);
        let mut bin = e.to_binary();
        let last = bin.len() - 3;
        bin[last] ^= 1;
        let err = parse_binary(&bin, 0).unwrap_err().to_string();
        assert!(err.contains("template hash does not match"), "{err}");
        assert!(parse_binary(&bin[..bin.len() - 1], 0).unwrap_err().to_string().contains("truncated"));
    }

    #[test]
    fn legacy_and_sig_templates_parse() {
        // ima-sig with an empty signature hashes like ima-ng plus an empty field.
        let e = Entry::ima_ng("/bin/sh", "sha256", &[1u8; 32]);
        let mut data = e.template_data.clone();
        data.extend_from_slice(&0u32.to_le_bytes());
        let h = hex::encode(Sha1::digest(&data));
        let line = format!("10 {h} ima-sig sha256:{} /bin/sh\n", hex::encode([1u8; 32]));
        assert_eq!(parse_ascii(&line).unwrap()[0].template, "ima-sig");
        let legacy = Sha1::digest(legacy_hash_input(&[2u8; 20], "/init"));
        let line = format!("10 {} ima {} /init\n", hex::encode(legacy), hex::encode([2u8; 20]));
        let p = parse_ascii(&line).unwrap();
        assert_eq!(p[0].path, "/init");
    }
}
