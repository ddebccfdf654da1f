//! IMA log entries in the binary (securityfs `binary_runtime_measurements`) and ASCII
//! (`ascii_runtime_measurements`) forms, read as Linux writes them
//! (`security/integrity/ima/ima_fs.c`, `ima_template_lib.c`).
//!
//! Both forms are read into the same list of raw template fields, from which one
//! function builds the entry and checks its template hash: a log gives the same
//! entries in either form.

use sha1::Sha1;
use sha2::{Digest as _, Sha256};

/// The PCR that IMA extends.
pub const IMA_PCR: u32 = 10;

/// A malformed IMA log.
#[derive(Clone, Debug, thiserror::Error, PartialEq, Eq)]
pub enum ImaLogError {
    /// An entry of the binary form is malformed.
    #[error("IMA log entry {index} (byte {offset}): {why}")]
    Entry {
        /// Entry number, from 0.
        index: usize,
        /// Byte offset of the entry in the log.
        offset: usize,
        /// What is wrong.
        why: String,
    },
    /// A line of the ASCII form is malformed.
    #[error("IMA log line {line}: {why}")]
    Line {
        /// Line number, from 1.
        line: usize,
        /// What is wrong.
        why: String,
    },
}

/// The digest of a measured file, with its algorithm name (`sha256`, `sha1`, ...).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileDigest {
    /// Algorithm name as IMA writes it (for `ima-ngv2`: `ima:sha256` or
    /// `verity:sha256`).
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
    /// Template name ([`TEMPLATES`]).
    pub template: String,
    /// The template data exactly as hashed into the PCR banks.
    pub template_data: Vec<u8>,
    /// SHA-1 template hash recorded in the log (zeros for a violation).
    pub template_hash: [u8; 20],
    /// The measured file's digest (for `ima-buf`: the buffer's).
    pub file_digest: FileDigest,
    /// The measured path (for `ima-buf`: the event name, such as `kexec-cmdline`), as
    /// [`path_text`] writes the bytes the kernel recorded.
    pub path: String,
    /// The file signature (`ima-sig`, `ima-modsig`, `ima-sigv2`), if any.
    pub signature: Option<Vec<u8>>,
    /// The measured buffer (`ima-buf`).
    pub buffer: Option<Vec<u8>>,
    /// Whether this is a violation record.
    pub violation: bool,
}

/// Largest template data accepted per entry, to bound memory on hostile input.
const MAX_TEMPLATE_DATA: usize = 1 << 20;
/// The legacy `ima` template hashes the path padded to this length
/// (`IMA_EVENT_NAME_LEN_MAX + 1`).
const IMA_LEGACY_NAME_LEN: usize = 256;
/// Lines of the ASCII form one entry may span (a path with newlines in it).
const MAX_LINES_PER_ENTRY: usize = 8;

/// A template field, by how the kernel writes it (`ima_template.c`, `supported_fields`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Field {
    /// `d`: a SHA-1 or MD5 digest, no algorithm (legacy `ima` template).
    D,
    /// `n`: the name (legacy `ima` template).
    N,
    /// `d-ng`: `algo:` NUL digest; `d-ngv2`: `type:algo:` NUL digest; `d-modsig` the same.
    DigestWithAlgo,
    /// `n-ng`: the name, NUL-terminated.
    NameNg,
    /// `sig`: the file signature (hex in the ASCII form).
    Sig,
    /// `buf`: the measured buffer (hex in the ASCII form).
    Buf,
    /// `modsig`: an appended module signature (hex in the ASCII form).
    Modsig,
}

use Field::{Buf, DigestWithAlgo, Modsig, NameNg, Sig, D, N};

/// The templates Linux defines (`ima_template.c`, `builtin_templates`) that this
/// parser reads, each with its fields in order. `evm-sig` and custom formats are refused
/// by name.
pub const TEMPLATES: &[&str] = &["ima", "ima-ng", "ima-sig", "ima-buf", "ima-modsig", "ima-ngv2", "ima-sigv2"];

fn fields_of(template: &str) -> Option<&'static [Field]> {
    Some(match template {
        "ima" => &[D, N],
        "ima-ng" | "ima-ngv2" => &[DigestWithAlgo, NameNg],
        "ima-sig" | "ima-sigv2" => &[DigestWithAlgo, NameNg, Sig],
        "ima-buf" => &[DigestWithAlgo, NameNg, Buf],
        "ima-modsig" => &[DigestWithAlgo, NameNg, Sig, DigestWithAlgo, Modsig],
        _ => return None,
    })
}

fn unsupported(template: &str) -> String {
    format!("template `{}` is not supported (supported: {})", path_text(template.as_bytes()), TEMPLATES.join(", "))
}

/// The text Perun shows and matches for a name IMA recorded (a path, or an `ima-buf`
/// event name): its UTF-8 characters, with `\` written `\\` and each byte that is not
/// UTF-8 written `\xNN`, so that distinct names stay distinct. Policies built from a
/// directory tree name files the same way.
pub fn path_text(raw: &[u8]) -> String {
    let mut s = String::with_capacity(raw.len());
    for chunk in raw.utf8_chunks() {
        for c in chunk.valid().chars() {
            if c == '\\' {
                s.push_str("\\\\");
            } else {
                s.push(c);
            }
        }
        for b in chunk.invalid() {
            s.push_str(&format!("\\x{b:02x}"));
        }
    }
    s
}

impl Entry {
    /// The SHA-256 bank's extend value for this entry.
    pub fn sha256_extend(&self) -> [u8; 32] {
        if self.violation {
            [0xff; 32]
        } else {
            Sha256::digest(self.hash_input()).into()
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

    /// What the kernel hashes for the template hash: the template data, or for the legacy
    /// `ima` template the digest and the name padded to 256 bytes.
    fn hash_input(&self) -> std::borrow::Cow<'_, [u8]> {
        if self.template != "ima" {
            return std::borrow::Cow::Borrowed(&self.template_data);
        }
        // Legacy template data: digest (20), name length (4), name.
        let digest = self.template_data.get(..20).unwrap_or_default();
        let name = self.template_data.get(24..).unwrap_or_default();
        let mut v = digest.to_vec();
        v.extend_from_slice(name);
        v.resize(20 + IMA_LEGACY_NAME_LEN.max(name.len()), 0);
        std::borrow::Cow::Owned(v)
    }

    /// Recomputes the SHA-1 template hash and compares it with the recorded one.
    fn check_template_hash(&self) -> Result<(), String> {
        if self.violation {
            return Ok(());
        }
        let computed: [u8; 20] = Sha1::digest(self.hash_input()).into();
        if computed != self.template_hash {
            return Err(format!("template hash does not match its data ({})", self.path));
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
        let template_data = length_prefixed(&[&d, &n]);
        let template_hash = Sha1::digest(&template_data).into();
        Self {
            pcr: IMA_PCR,
            template: "ima-ng".into(),
            template_data,
            template_hash,
            file_digest: FileDigest { algorithm: algorithm.into(), digest: digest.to_vec() },
            path: path_text(path.as_bytes()),
            signature: None,
            buffer: None,
            violation: false,
        }
    }

    /// The entry in the binary log format.
    pub fn to_binary(&self) -> Vec<u8> {
        let mut out = self.pcr.to_le_bytes().to_vec();
        out.extend_from_slice(&self.template_hash);
        out.extend_from_slice(&len32(self.template.len()));
        out.extend_from_slice(self.template.as_bytes());
        if self.template != "ima" {
            // The legacy template alone has no total length (`ima_measurements_show`).
            out.extend_from_slice(&len32(self.template_data.len()));
        }
        out.extend_from_slice(&self.template_data);
        out
    }

    /// Builds an entry from its raw template fields (as the binary form holds them) and
    /// checks its template hash. `data` is the template data the fields were split from,
    /// where the caller has it (the binary form), else it is built from them.
    fn from_fields(
        pcr: u32,
        template: &str,
        template_hash: [u8; 20],
        raw: &[&[u8]],
        data: Option<&[u8]>,
    ) -> Result<Self, String> {
        let kinds = fields_of(template).ok_or_else(|| unsupported(template))?;
        if raw.len() != kinds.len() {
            return Err(format!("template {template} has {} fields, expected {}", raw.len(), kinds.len()));
        }
        let violation = template_hash == [0u8; 20];
        let (mut file_digest, mut path, mut signature, mut buffer) = (None, None, None, None);
        for (kind, &value) in kinds.iter().zip(raw) {
            match kind {
                D => {
                    if value.len() != 20 {
                        return Err(format!("the legacy digest has {} bytes, expected 20", value.len()));
                    }
                    file_digest = Some(FileDigest { algorithm: "sha1".into(), digest: value.to_vec() });
                }
                N | NameNg => {
                    let name = if *kind == NameNg { value.strip_suffix(&[0]).unwrap_or(value) } else { value };
                    if name.contains(&0) {
                        return Err("the name holds a NUL byte, which no kernel writes".into());
                    }
                    if *kind == N && name.len() > IMA_LEGACY_NAME_LEN - 1 {
                        return Err(format!("the legacy name has {} bytes (at most 255)", name.len()));
                    }
                    path = Some(path_text(name));
                }
                DigestWithAlgo if file_digest.is_none() => {
                    let sep = value.iter().position(|&b| b == 0).ok_or("digest field has no `algorithm:` prefix")?;
                    let algorithm = std::str::from_utf8(&value[..sep])
                        .ok()
                        .and_then(|a| a.strip_suffix(':'))
                        .filter(|a| !a.is_empty() && a.bytes().all(|b| b.is_ascii_graphic() && b != b' '))
                        .ok_or("bad digest algorithm name")?;
                    let digest = &value[sep + 1..];
                    let bare = algorithm.rsplit(':').next().unwrap_or(algorithm);
                    if let Some(n) = digest_len(bare).filter(|&n| n != digest.len()) {
                        return Err(format!("a {bare} digest of {} bytes (expected {n})", digest.len()));
                    }
                    file_digest = Some(FileDigest { algorithm: algorithm.to_owned(), digest: digest.to_vec() });
                }
                DigestWithAlgo => {} // d-modsig: the digest without the appended signature
                Sig if !value.is_empty() => signature = Some(value.to_vec()),
                Buf => buffer = Some(value.to_vec()),
                Sig | Modsig => {}
            }
        }
        let (Some(file_digest), Some(path)) = (file_digest, path) else {
            return Err(format!("template {template} lacks a digest or a name"));
        };
        let template_data = match data {
            Some(d) => d.to_vec(),
            None if template == "ima" => [raw[0], &len32(raw[1].len()), raw[1]].concat(),
            None => length_prefixed(raw),
        };
        let e = Self {
            pcr,
            template: template.to_owned(),
            template_data,
            template_hash,
            file_digest,
            path,
            signature,
            buffer,
            violation,
        };
        e.check_template_hash()?;
        Ok(e)
    }
}

/// The digest length of the hash algorithms IMA names (`hash_algo_name`), in bytes.
fn digest_len(algorithm: &str) -> Option<usize> {
    Some(match algorithm {
        "md5" => 16,
        "sha1" | "rmd160" => 20,
        "sha224" => 28,
        "sha256" | "sm3" | "streebog256" => 32,
        "sha384" => 48,
        "sha512" | "streebog512" => 64,
        _ => return None,
    })
}

fn len32(n: usize) -> [u8; 4] {
    u32::try_from(n).unwrap_or(u32::MAX).to_le_bytes()
}

fn length_prefixed(fields: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::with_capacity(fields.iter().map(|f| f.len() + 4).sum());
    for f in fields {
        out.extend_from_slice(&len32(f.len()));
        out.extend_from_slice(f);
    }
    out
}

struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
    index: usize,
    start: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], ImaLogError> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.buf.len()).ok_or_else(|| ImaLogError::Entry {
            index: self.index,
            offset: self.start,
            why: format!("truncated: needs {n} bytes at byte {}", self.pos),
        })?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn u32(&mut self) -> Result<u32, ImaLogError> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn len(&mut self, max: usize, what: &str) -> Result<usize, ImaLogError> {
        let n = usize::try_from(self.u32()?).unwrap_or(usize::MAX);
        if n > max {
            return Err(self.err(format!("{what} of {n} bytes (at most {max})")));
        }
        Ok(n)
    }

    fn err(&self, why: impl Into<String>) -> ImaLogError {
        ImaLogError::Entry { index: self.index, offset: self.start, why: why.into() }
    }
}

/// Splits template data into its length-prefixed fields.
fn split_fields(data: &[u8], count: usize) -> Result<Vec<&[u8]>, String> {
    let mut out = Vec::with_capacity(count);
    let mut p = 0usize;
    while p < data.len() {
        let n = data
            .get(p..p + 4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
            .ok_or("field length cut short")?;
        let f = data.get(p + 4..).and_then(|rest| rest.get(..n)).ok_or("field cut short")?;
        if out.len() == count {
            return Err(format!("more than the {count} fields of its template"));
        }
        out.push(f);
        p += 4 + n;
    }
    Ok(out)
}

/// Parses binary log bytes. `first_index` numbers the entries (for messages) when
/// `log` is the tail of a longer log. Returns each entry with its end offset in `log`.
///
/// Errors: [`ImaLogError::Entry`] naming the entry and its byte offset (truncated,
/// a template not in [`TEMPLATES`], a template hash that does not match its data).
pub fn parse_binary(log: &[u8], first_index: usize) -> Result<Vec<(Entry, usize)>, ImaLogError> {
    let mut c = Cursor { buf: log, pos: 0, index: first_index, start: 0 };
    let mut out = Vec::new();
    while c.pos < log.len() {
        c.start = c.pos;
        let pcr = c.u32()?;
        let mut template_hash = [0u8; 20];
        template_hash.copy_from_slice(c.take(20)?);
        let name_len = c.len(255, "template name")?;
        if name_len == 0 {
            return Err(c.err("empty template name"));
        }
        let template = String::from_utf8_lossy(c.take(name_len)?).into_owned();
        let kinds = fields_of(&template).ok_or_else(|| c.err(unsupported(&template)))?;
        let entry = if template == "ima" {
            // Legacy: the digest with no length, then the name with its length and no NUL.
            let digest = c.take(20)?;
            let n = c.len(IMA_LEGACY_NAME_LEN, "legacy name")?;
            let name = c.take(n)?;
            Entry::from_fields(pcr, &template, template_hash, &[digest, name], None)
        } else {
            let n = c.len(MAX_TEMPLATE_DATA, "template data")?;
            let data = c.take(n)?;
            let raw = split_fields(data, kinds.len()).map_err(|why| c.err(why))?;
            Entry::from_fields(pcr, &template, template_hash, &raw, Some(data))
        }
        .map_err(|why| c.err(why))?;
        out.push((entry, c.pos));
        c.index += 1;
    }
    Ok(out)
}

/// Parses the ASCII form, byte for byte as the kernel prints it
/// (`ima_ascii_measurements_show`): `PCR template-hash template-name`, then each field
/// after one space: digests as `algo:hex`, names as the raw bytes the kernel recorded
/// (spaces and non-UTF-8 bytes included), signatures and buffers as hex, an empty field
/// as nothing (so `ima-sig` without a signature ends in a space). A name may hold a
/// newline: an entry whose line does not check is tried with the lines that follow it,
/// and the template hash decides. A violation entry (zero template hash) proves nothing
/// of where it ends, so a log holding one is refused in this form.
///
/// Errors: [`ImaLogError::Line`] naming the line (from 1) and what is wrong.
pub fn parse_ascii(text: &[u8]) -> Result<Vec<Entry>, ImaLogError> {
    let lines: Vec<&[u8]> = text.split(|&b| b == b'\n').collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        if lines[i].iter().all(u8::is_ascii_whitespace) {
            i += 1;
            continue;
        }
        let mut joined = lines[i].to_vec();
        let mut first_err = None;
        let mut parsed = None;
        for extra in 0..MAX_LINES_PER_ENTRY {
            if extra > 0 {
                let Some(next) = lines.get(i + extra) else { break };
                joined.push(b'\n');
                joined.extend_from_slice(next);
            }
            match parse_ascii_entry(&joined) {
                Ok(e) => {
                    parsed = Some((e, extra));
                    break;
                }
                Err(why) => {
                    first_err.get_or_insert(why);
                }
            }
        }
        let Some((entry, extra)) = parsed else {
            let mut why = first_err.unwrap_or_default();
            if lines[i].ends_with(b"\r") {
                why.push_str(" (the line ends in a carriage return: the file was converted to CRLF line ends)");
            }
            return Err(ImaLogError::Line { line: i + 1, why });
        };
        if entry.violation {
            // A violation's template hash is zeros: nothing proves where its name ends, so
            // lines after it could be its name (a file name with newlines) or entries.
            return Err(ImaLogError::Line {
                line: i + 1,
                why: format!(
                    "a violation entry ({}): in the ASCII form nothing proves where its name ends, so the lines \
                     after it cannot be told from entries; use binary_runtime_measurements",
                    entry.path
                ),
            });
        }
        out.push(entry);
        i += extra + 1;
    }
    Ok(out)
}

/// One entry of the ASCII form, its fields read back into their raw (binary) values.
fn parse_ascii_entry(line: &[u8]) -> Result<Entry, String> {
    let line = line.trim_ascii_start(); // the PCR is printed `%2d`
    let (pcr, rest) = split_space(line).ok_or("expected `PCR template-hash template-name fields...`")?;
    let pcr = std::str::from_utf8(pcr)
        .ok()
        .and_then(|p| p.parse::<u32>().ok())
        .ok_or_else(|| format!("bad PCR `{}`", path_text(pcr)))?;
    let (hash, rest) = split_space(rest).ok_or("no template name after the template hash")?;
    let mut template_hash = [0u8; 20];
    hex::decode_to_slice(hash, &mut template_hash).map_err(|_| "the template hash is not 40 hex digits")?;
    let (template, rest) = split_space(rest).unwrap_or((rest, &[]));
    let template = String::from_utf8_lossy(template).into_owned();
    let kinds = fields_of(&template).ok_or_else(|| unsupported(&template))?;
    // Each field follows one space. The name (second field) is the only one that may
    // hold spaces: the first field ends at the first space, the fields after the name
    // start after the last spaces.
    let (first, rest) =
        split_space(rest).ok_or_else(|| format!("template {template} has 1 field, expected {}", kinds.len()))?;
    let mut tail: Vec<&[u8]> = Vec::with_capacity(kinds.len());
    let mut name = rest;
    for _ in 2..kinds.len() {
        let at = name
            .iter()
            .rposition(|&b| b == b' ')
            .ok_or_else(|| format!("template {template} needs {} fields after the name", kinds.len() - 2))?;
        tail.push(&name[at + 1..]);
        name = &name[..at];
    }
    tail.reverse();
    let texts = [first, name].into_iter().chain(tail);
    let mut raw = Vec::with_capacity(kinds.len());
    for (kind, text) in kinds.iter().zip(texts) {
        raw.push(match kind {
            D | Sig | Buf | Modsig => hex::decode(text).map_err(|_| format!("a {kind:?} field is not hex"))?,
            N => text.to_vec(),
            NameNg => [text, &[0]].concat(),
            DigestWithAlgo if text.is_empty() => Vec::new(),
            DigestWithAlgo => {
                let at = text.iter().rposition(|&b| b == b':').ok_or("digest lacks `algorithm:`")?;
                let digest = hex::decode(&text[at + 1..]).map_err(|_| "the digest is not hex")?;
                [&text[..=at], &[0], &digest[..]].concat()
            }
        });
    }
    let raw: Vec<&[u8]> = raw.iter().map(Vec::as_slice).collect();
    Entry::from_fields(pcr, &template, template_hash, &raw, None)
}

fn split_space(s: &[u8]) -> Option<(&[u8], &[u8])> {
    let at = s.iter().position(|&b| b == b' ')?;
    Some((&s[..at], &s[at + 1..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slices(v: &[Vec<u8>]) -> Vec<&[u8]> {
        v.iter().map(Vec::as_slice).collect()
    }

    fn ascii_of(e: &Entry, fields: &str) -> Vec<u8> {
        format!("10 {} {} {fields}\n", hex::encode(e.template_hash), e.template).into_bytes()
    }

    #[test]
    fn binary_round_trip_and_ascii_agree() {
        let e = Entry::ima_ng("/usr/bin/perun", "sha256", &[7u8; 32]);
        let bin = e.to_binary();
        let parsed = parse_binary(&bin, 0).unwrap();
        assert_eq!(parsed[0].0, e);
        let ascii = ascii_of(&e, &format!("sha256:{} /usr/bin/perun", hex::encode([7u8; 32])));
        assert_eq!(parse_ascii(&ascii).unwrap()[0], e);
        // The kernel prints PCRs below 10 with a leading space (`%2d`).
        let mut nine = Entry::ima_ng("/x", "sha256", &[1u8; 32]);
        nine.pcr = 9;
        let line = format!(" 9 {} ima-ng sha256:{} /x\n", hex::encode(nine.template_hash), hex::encode([1u8; 32]));
        assert_eq!(parse_ascii(line.as_bytes()).unwrap()[0], nine);
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
    fn names_with_spaces_newlines_and_other_bytes_parse_as_in_binary() {
        for name in [&b"/opt/my app/bin/run tool"[..], b"/tmp/a\nb", b"/srv/caf\xe9 ", b"/x\\y"] {
            let mut d = b"sha256:\0".to_vec();
            d.extend_from_slice(&[3u8; 32]);
            let raw = vec![d, [name, &[0][..]].concat(), Vec::new()];
            let hash: [u8; 20] = Sha1::digest(length_prefixed(&slices(&raw))).into();
            let e = Entry::from_fields(10, "ima-sig", hash, &slices(&raw), None).unwrap();
            let bin = parse_binary(&e.to_binary(), 0).unwrap();
            let mut line = format!("10 {} ima-sig sha256:{} ", hex::encode(hash), hex::encode([3u8; 32])).into_bytes();
            line.extend_from_slice(name);
            line.extend_from_slice(b" \n"); // the empty signature: a separator, nothing after
            let asc = parse_ascii(&line).unwrap();
            assert_eq!((asc.len(), &asc[0]), (1, &bin[0].0), "{name:?}");
        }
        assert_eq!(path_text(b"/srv/caf\xe9"), "/srv/caf\\xe9");
        assert_ne!(path_text(b"/a\\xe9"), path_text(b"/a\xe9"), "escapes keep names distinct");
    }

    #[test]
    fn buffers_and_legacy_templates_parse_in_both_forms() {
        let buf = b"BOOT_IMAGE=/vmlinuz ro".to_vec();
        let mut d = b"sha256:\0".to_vec();
        d.extend_from_slice(&Sha256::digest(&buf));
        let raw = vec![d, b"kexec-cmdline\0".to_vec(), buf.clone()];
        let hash: [u8; 20] = Sha1::digest(length_prefixed(&slices(&raw))).into();
        let e = Entry::from_fields(10, "ima-buf", hash, &slices(&raw), None).unwrap();
        assert_eq!(e.buffer.as_deref(), Some(&buf[..]));
        let line =
            ascii_of(&e, &format!("sha256:{} kexec-cmdline {}", hex::encode(Sha256::digest(&buf)), hex::encode(&buf)));
        assert_eq!(parse_ascii(&line).unwrap()[0], e);
        assert_eq!(parse_binary(&e.to_binary(), 0).unwrap()[0].0, e);

        let raw = vec![vec![2u8; 20], b"/init".to_vec()];
        let mut padded = vec![2u8; 20];
        padded.extend_from_slice(b"/init");
        padded.resize(20 + IMA_LEGACY_NAME_LEN, 0);
        let hash: [u8; 20] = Sha1::digest(&padded).into();
        let e = Entry::from_fields(10, "ima", hash, &slices(&raw), None).unwrap();
        assert_eq!(e.path, "/init");
        let line = ascii_of(&e, &format!("{} /init", hex::encode([2u8; 20])));
        assert_eq!(parse_ascii(&line).unwrap()[0], e);
        assert_eq!(parse_binary(&e.to_binary(), 0).unwrap()[0].0, e);
    }

    #[test]
    fn unknown_templates_and_bad_lines_are_named() {
        let e = parse_ascii(b"10 0000000000000000000000000000000000000000 evm-sig sha256:00 /x\n").unwrap_err();
        assert!(e.to_string().contains("line 1") && e.to_string().contains("`evm-sig` is not supported"), "{e}");
        let e = Entry::ima_ng("/x", "sha256", &[1; 32]);
        let mut crlf = ascii_of(&e, &format!("sha256:{} /x", hex::encode([1u8; 32])));
        crlf.insert(crlf.len() - 1, b'\r');
        let err = parse_ascii(&crlf).unwrap_err().to_string();
        assert!(err.contains("carriage return"), "{err}");
        assert!(parse_ascii(b"10 zz ima-ng\n").is_err());
        // A violation line (zero hash) with an entry-shaped line after it: refused, since
        // that line could be the violation's file name, not an entry.
        let fake = Entry::ima_ng("/usr/bin/sudo", "sha256", &[0xee; 32]);
        let mut log = format!("10 {} ima-ng sha256:{} /tmp/x\n", "0".repeat(40), "0".repeat(64)).into_bytes();
        log.extend(ascii_of(&fake, &format!("sha256:{} /usr/bin/sudo", hex::encode([0xeeu8; 32]))));
        let e = parse_ascii(&log).unwrap_err().to_string();
        assert!(e.contains("violation") && e.contains("binary_runtime_measurements"), "{e}");
        // Digests of the wrong length for their algorithm, and NULs inside names.
        let mut d = b"sha256:\0".to_vec();
        d.extend_from_slice(&[6u8; 3]);
        let raw: Vec<&[u8]> = vec![&d, b"/x\0"];
        let h: [u8; 20] = Sha1::digest(length_prefixed(&raw)).into();
        assert!(Entry::from_fields(10, "ima-ng", h, &raw, None).unwrap_err().contains("3 bytes (expected 32)"));
        let mut d = b"sha256:\0".to_vec();
        d.extend_from_slice(&[6u8; 32]);
        let raw: Vec<&[u8]> = vec![&d, b"/init\0\0"];
        let h: [u8; 20] = Sha1::digest(length_prefixed(&raw)).into();
        assert!(Entry::from_fields(10, "ima-ng", h, &raw, None).unwrap_err().contains("NUL"));
        assert!(parse_ascii(b"\n\n").unwrap().is_empty());
    }
}
