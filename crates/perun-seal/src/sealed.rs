//! Sealing and opening assets, streamed in fixed memory.
//!
//! A sealed asset is an `age` file. Its plaintext is [`AssetHeader::encode`] followed by
//! the payload, so kind, digest and length are authenticated with the payload. Opening
//! checks the payload against the declared digest and length before reporting success;
//! callers that stream plaintext somewhere must discard it when opening fails (the
//! helpers here do: [`open_to_vec`] drops and wipes, [`unseal_file`] removes its
//! temporary output).

use std::fs::File;
use std::io::{self, BufReader, Read, Write};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use perun_core::{AssetKind, Digest, DigestWriter};
use zeroize::Zeroizing;

use crate::fsutil::AtomicOutput;
use crate::header::{AssetHeader, MAGIC, MAX_HEADER_LEN};
use crate::SealError;

/// Plaintext bytes per `age` STREAM chunk.
const AGE_CHUNK: u64 = 64 * 1024;
/// Authentication tag bytes per chunk.
const AGE_TAG: u64 = 16;
/// The first line of every (binary) `age` file.
const AGE_INTRO: &[u8] = b"age-encryption.org/v1\n";
/// The first line of an ASCII-armored `age` file (`age -a`).
const ARMOR_BEGIN: &[u8] = b"-----BEGIN AGE ENCRYPTED FILE-----";
/// Buffer size of the copy loops.
const COPY_BUF: usize = 256 * 1024;

/// What opening a sealed asset found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Opened {
    /// The authenticated Perun header, or `None` for a plain `age` file (sealed by the
    /// `age` tool), whose content has no declared digest.
    pub header: Option<AssetHeader>,
    /// SHA-256 of the payload as read.
    pub content_digest: Digest,
    /// Payload length as read.
    pub content_len: u64,
}

/// Seals `content` (which must hash to `header`'s digest and length) to `recipients`,
/// writing the `age` file to `out`. Returns `out` when the file is complete.
pub fn seal<R: Read, W: Write>(
    mut content: R,
    header: &AssetHeader,
    recipients: &[age::x25519::Recipient],
    out: W,
) -> Result<W, SealError> {
    if recipients.is_empty() {
        return Err(SealError::Encrypt("no recipients given".into()));
    }
    let encryptor = age::Encryptor::with_recipients(recipients.iter().map(|r| r as &dyn age::Recipient))
        .map_err(|e| SealError::Encrypt(e.to_string()))?;
    let mut w = encryptor.wrap_output(out).map_err(SealError::Stream)?;
    w.write_all(&header.encode()).map_err(SealError::Stream)?;
    let mut hasher = DigestWriter::new();
    let mut buf = Zeroizing::new(vec![0u8; COPY_BUF]);
    loop {
        let n = match content.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(SealError::Stream(e)),
        };
        hasher.update(&buf[..n]);
        w.write_all(&buf[..n]).map_err(SealError::Stream)?;
    }
    if hasher.len() != header.content_len || hasher.finish() != header.content_digest {
        return Err(SealError::InputChanged);
    }
    w.finish().map_err(SealError::Stream)
}

/// Digest and length of everything `r` yields.
pub fn digest_reader<R: Read>(mut r: R) -> Result<(Digest, u64), SealError> {
    let mut h = DigestWriter::new();
    io::copy(&mut r, &mut h).map_err(SealError::Stream)?;
    let len = h.len();
    Ok((h.finish(), len))
}

/// What sealing a file produced.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SealedInfo {
    /// The authenticated header written inside.
    pub header: AssetHeader,
    /// SHA-256 of the sealed file itself (what a fetcher can check before opening).
    pub sealed_digest: Digest,
    /// Size of the sealed file.
    pub sealed_len: u64,
}

/// Seals the file `input` into a new file `output` (written whole or not at all).
/// `progress` is told the number of bytes read, over two passes (digest, then seal).
pub fn seal_file(
    input: &Path,
    kind: AssetKind,
    recipients: &[age::x25519::Recipient],
    output: &Path,
    progress: &mut dyn FnMut(u64),
) -> Result<SealedInfo, SealError> {
    let open = || File::open(input).map_err(|e| SealError::io(input, e));
    let (digest, len) =
        digest_reader(BufReader::with_capacity(COPY_BUF, Progress { inner: open()?, tick: &mut *progress }))?;
    let header = AssetHeader::new(kind, digest, len);
    seal_to_file(Progress { inner: open()?, tick: progress }, header, recipients, output)
}

/// Seals content from memory into a new file `output` (written whole or not at all).
pub fn seal_bytes_to_file(
    content: &[u8],
    kind: AssetKind,
    recipients: &[age::x25519::Recipient],
    output: &Path,
) -> Result<SealedInfo, SealError> {
    let header = AssetHeader::new(kind, Digest::of(content), content.len() as u64);
    seal_to_file(content, header, recipients, output)
}

fn seal_to_file<R: Read>(
    content: R,
    header: AssetHeader,
    recipients: &[age::x25519::Recipient],
    output: &Path,
) -> Result<SealedInfo, SealError> {
    let mut out = AtomicOutput::create(output)?;
    let (sealed_len, sealed_digest) = {
        let tee = Tee { inner: io::BufWriter::with_capacity(COPY_BUF, out.file()), hash: DigestWriter::new() };
        let mut tee = seal(content, &header, recipients, tee)?;
        tee.inner.flush().map_err(|e| SealError::io(output, e))?;
        (tee.hash.len(), tee.hash.finish())
    };
    out.commit()?;
    Ok(SealedInfo { header, sealed_digest, sealed_len })
}

/// A writer that hashes what it passes on.
struct Tee<W> {
    inner: W,
    hash: DigestWriter,
}

impl<W: Write> Write for Tee<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hash.update(&buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// A reader that reports how many bytes went through.
struct Progress<'a, R> {
    inner: R,
    tick: &'a mut dyn FnMut(u64),
}

impl<R: Read> Read for Progress<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        (self.tick)(n as u64);
        Ok(n)
    }
}

/// A reader that counts the bytes taken from the sealed source, to tell truncation
/// from tampering.
struct Counting<R> {
    inner: R,
    count: Arc<AtomicU64>,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

/// An opened sealed asset, read chunk by chunk. The payload is verified against the
/// header as it streams; [`SealedReader::finish`] reports the verdict, and nothing read
/// before a successful `finish` may be trusted or kept.
pub struct SealedReader<R: Read> {
    stream:
        age::stream::StreamReader<Counting<age::armor::ArmoredReader<BufReader<io::Chain<io::Cursor<Vec<u8>>, R>>>>>,
    count: Arc<AtomicU64>,
    age_header_len: u64,
    sealed_len: Option<u64>,
    header: Option<AssetHeader>,
    prefix_len: u64,
    pending: Zeroizing<Vec<u8>>,
    hasher: DigestWriter,
    verified: u64,
}

impl<R: Read> SealedReader<R> {
    /// Opens the `age` layer with `identity` and reads the Perun header.
    ///
    /// `sealed_len`, the size of the sealed input when known, lets errors tell a
    /// truncated file from a modified one.
    pub fn new(mut sealed: R, sealed_len: Option<u64>, identity: &age::x25519::Identity) -> Result<Self, SealError> {
        // Look at the intro line first, so that any other file is named as such.
        let mut intro = [0u8; AGE_INTRO.len()];
        let n = read_full(&mut sealed, &mut intro).map_err(SealError::Stream)?;
        let armored = n > 0 && ARMOR_BEGIN.starts_with(&intro[..n]);
        if (intro[..n] != AGE_INTRO[..n] && !armored) || n == 0 {
            return Err(SealError::NotSealed("it does not start with an age header".into()));
        }
        // The armor (`age -a`, PEM-like Base64) is part of the age format: the reader
        // takes both forms. Sizes are then of the decoded bytes, so the armored file's
        // length cannot tell truncation from modification.
        let sealed_len = if armored { None } else { sealed_len };
        let count = Arc::new(AtomicU64::new(0));
        let inner = age::armor::ArmoredReader::new(io::Cursor::new(intro[..n].to_vec()).chain(sealed));
        let counting = Counting { inner, count: count.clone() };
        let decryptor = age::Decryptor::new(counting).map_err(|e| age_error(e, &count))?;
        if decryptor.is_scrypt() {
            return Err(SealError::Passphrase);
        }
        let age_header_len = count.load(Ordering::Relaxed);
        let stream =
            decryptor.decrypt(std::iter::once(identity as &dyn age::Identity)).map_err(|e| age_error(e, &count))?;
        let mut this = Self {
            stream,
            count,
            age_header_len,
            sealed_len,
            header: None,
            prefix_len: 0,
            pending: Zeroizing::new(Vec::new()),
            hasher: DigestWriter::new(),
            verified: 0,
        };
        this.read_header()?;
        Ok(this)
    }

    fn read_header(&mut self) -> Result<(), SealError> {
        let mut magic = [0u8; MAGIC.len()];
        let n = self.fill(&mut magic)?;
        if n < MAGIC.len() || &magic != MAGIC {
            // A plain `age` file: what we read is payload.
            self.pending.extend_from_slice(&magic[..n]);
            return Ok(());
        }
        let mut len = [0u8; 4];
        if self.fill(&mut len)? < 4 {
            return Err(SealError::BadHeader("header length missing".into()));
        }
        let len = u32::from_be_bytes(len);
        if len > MAX_HEADER_LEN {
            return Err(SealError::BadHeader(format!("header of {len} bytes exceeds {MAX_HEADER_LEN}")));
        }
        let mut json = vec![0u8; len as usize];
        if self.fill(&mut json)? < json.len() {
            return Err(SealError::BadHeader("header cut short".into()));
        }
        self.header = Some(AssetHeader::decode_json(&json)?);
        self.prefix_len = (MAGIC.len() + 4) as u64 + u64::from(len);
        Ok(())
    }

    /// Reads until `buf` is full or the stream ends; returns the bytes read.
    fn fill(&mut self, buf: &mut [u8]) -> Result<usize, SealError> {
        let mut got = 0;
        while got < buf.len() {
            match self.stream.read(&mut buf[got..]) {
                Ok(0) => break,
                Ok(n) => {
                    got += n;
                    self.verified += n as u64;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(self.classify(e)),
            }
        }
        Ok(got)
    }

    /// The authenticated header (`None` for a plain `age` file).
    pub fn header(&self) -> Option<&AssetHeader> {
        self.header.as_ref()
    }

    /// Reads the next payload bytes into `buf`; `Ok(0)` at the end.
    pub fn read_chunk(&mut self, buf: &mut [u8]) -> Result<usize, SealError> {
        let n = self.read_raw(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }

    /// Reads payload without hashing it (the caller hashes, see [`open`]); fills `buf`
    /// unless the payload ends first.
    fn read_raw(&mut self, buf: &mut [u8]) -> Result<usize, SealError> {
        let mut got = 0;
        if !self.pending.is_empty() {
            got = buf.len().min(self.pending.len());
            buf[..got].copy_from_slice(&self.pending[..got]);
            self.pending.drain(..got);
        }
        Ok(got + self.fill(&mut buf[got..])?)
    }

    /// Checks the payload read against the header; call after `read_chunk` returned 0.
    pub fn finish(mut self) -> Result<Opened, SealError> {
        let hasher = std::mem::take(&mut self.hasher);
        self.finish_with(hasher)
    }

    fn finish_with(self, hasher: DigestWriter) -> Result<Opened, SealError> {
        let content_len = hasher.len();
        let content_digest = hasher.finish();
        if let Some(h) = &self.header {
            if h.content_len != content_len || h.content_digest != content_digest {
                return Err(SealError::ContentMismatch {
                    declared: h.content_digest,
                    declared_len: h.content_len,
                    actual: content_digest,
                    actual_len: content_len,
                });
            }
        }
        Ok(Opened { header: self.header, content_digest, content_len })
    }

    fn classify(&self, e: io::Error) -> SealError {
        let offset = self.verified;
        match e.kind() {
            io::ErrorKind::UnexpectedEof => SealError::Truncated {
                actual: self.sealed_len.unwrap_or_else(|| self.count.load(Ordering::Relaxed)),
                expected: String::new(),
            },
            io::ErrorKind::InvalidData => {
                // A chunk failed authentication: it was modified, or the file was cut
                // inside a chunk. The declared length tells which.
                if let (Some(h), Some(actual)) = (&self.header, self.sealed_len) {
                    // The declared length is the sender's: a sum past u64 means no file
                    // can be that long, so this one was cut short of it.
                    let expected = self.prefix_len.checked_add(h.content_len).and_then(|plain| {
                        let chunks = plain.div_ceil(AGE_CHUNK).max(1);
                        self.age_header_len.checked_add(plain)?.checked_add(chunks.checked_mul(AGE_TAG)?)
                    });
                    return match expected {
                        Some(expected) if actual >= expected => SealError::PayloadTampered { offset },
                        Some(expected) => SealError::Truncated { actual, expected: format!(", {expected} expected") },
                        None => SealError::Truncated {
                            actual,
                            expected: format!(", {} bytes of content declared", h.content_len),
                        },
                    };
                }
                // Without the header (the first chunk failed) and so without the
                // declared length, the two cannot be told apart.
                SealError::TamperedOrTruncated
            }
            _ => SealError::Stream(e),
        }
    }
}

fn read_full<R: Read>(r: &mut R, buf: &mut [u8]) -> io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match r.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

fn age_error(e: age::DecryptError, count: &AtomicU64) -> SealError {
    use age::DecryptError as E;
    match e {
        E::NoMatchingKeys | E::KeyDecryptionFailed => SealError::WrongKey,
        E::InvalidMac => SealError::HeaderTampered,
        E::UnknownFormat => SealError::NotSealed("unknown age format version".into()),
        E::InvalidHeader => SealError::NotSealed("no valid age header (is this a sealed file?)".into()),
        E::Io(io) if io.kind() == io::ErrorKind::UnexpectedEof => SealError::Truncated {
            actual: count.load(Ordering::Relaxed),
            expected: ", the age header is incomplete".into(),
        },
        E::Io(io) => SealError::Stream(io),
        other => SealError::NotSealed(other.to_string()),
    }
}

fn check_kind(opened: Option<&AssetHeader>, expect: Option<AssetKind>) -> Result<(), SealError> {
    match (opened, expect) {
        (Some(h), Some(k)) if h.kind != k => Err(SealError::WrongKind { found: h.kind, expected: k }),
        _ => Ok(()),
    }
}

/// Opens a sealed stream into `out`, refusing another kind than `expect`. On error,
/// what was written to `out` must be discarded by the caller.
///
/// Decryption runs on the calling thread while a second thread hashes the plaintext
/// and writes it to `out`, so opening runs at the speed of the slower of the two.
pub fn open<R: Read, W: Write + Send>(
    sealed: R,
    sealed_len: Option<u64>,
    identity: &age::x25519::Identity,
    expect: Option<AssetKind>,
    out: &mut W,
) -> Result<Opened, SealError> {
    use std::sync::mpsc::sync_channel;
    let mut r = SealedReader::new(sealed, sealed_len, identity)?;
    check_kind(r.header(), expect)?;
    type Buf = (Zeroizing<Vec<u8>>, usize);
    let (full_tx, full_rx) = sync_channel::<Buf>(PIPELINE_DEPTH);
    let (empty_tx, empty_rx) = sync_channel::<Zeroizing<Vec<u8>>>(PIPELINE_DEPTH + 1);
    for _ in 0..=PIPELINE_DEPTH {
        let _ = empty_tx.send(Zeroizing::new(vec![0u8; COPY_BUF]));
    }
    std::thread::scope(|scope| {
        let consumer = scope.spawn(move || -> Result<DigestWriter, SealError> {
            let mut hasher = DigestWriter::new();
            for (buf, n) in full_rx {
                hasher.update(&buf[..n]);
                out.write_all(&buf[..n]).map_err(SealError::Stream)?;
                let _ = empty_tx.send(buf);
            }
            Ok(hasher)
        });
        let produced = (|| -> Result<(), SealError> {
            loop {
                // The consumer hands every buffer back unless it failed.
                let Ok(mut buf) = empty_rx.recv() else { return Ok(()) };
                let n = r.read_raw(&mut buf)?;
                if n == 0 {
                    return Ok(());
                }
                if full_tx.send((buf, n)).is_err() {
                    return Ok(());
                }
            }
        })();
        drop(full_tx);
        let hasher = consumer.join().map_err(|_| SealError::Encrypt("the hashing thread failed".into()))??;
        produced?;
        r.finish_with(hasher)
    })
}

/// Plaintext buffers in flight between the decrypting and the hashing thread.
const PIPELINE_DEPTH: usize = 4;

/// A growable buffer that wipes every allocation it lets go of.
struct WipingVec(Zeroizing<Vec<u8>>);

impl Write for WipingVec {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.0.len() + buf.len() > self.0.capacity() {
            let want = (self.0.len() + buf.len()).max(self.0.capacity() * 2);
            let mut bigger = Zeroizing::new(Vec::with_capacity(want));
            bigger.extend_from_slice(&self.0);
            self.0 = bigger;
        }
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Opens a sealed stream into memory, refusing another kind than `expect`. The buffer
/// is sized from the sealed length up front when it is known (no reallocation leaves
/// copies behind) and wiped when dropped.
pub fn open_to_vec<R: Read>(
    sealed: R,
    sealed_len: Option<u64>,
    identity: &age::x25519::Identity,
    expect: Option<AssetKind>,
) -> Result<(Opened, Zeroizing<Vec<u8>>), SealError> {
    // The length may come from a peer (an HTTP Content-Length): reserve at most 256 MiB
    // up front and let the vector grow past that as real bytes arrive.
    let cap = sealed_len.and_then(|l| usize::try_from(l).ok()).unwrap_or(0).min(256 << 20);
    let mut out = WipingVec(Zeroizing::new(Vec::with_capacity(cap)));
    let opened = open(sealed, sealed_len, identity, expect, &mut out)?;
    Ok((opened, out.0))
}

/// Plaintext bytes that one thread of [`open_in_parallel`] decrypts at a time: 64 age
/// STREAM chunks (4 MiB).
const PARALLEL_UNIT: usize = 64 * AGE_CHUNK as usize;
/// Payloads shorter than this open on one thread: splitting them would cost more than
/// it saves.
const PARALLEL_MIN: u64 = 2 * PARALLEL_UNIT as u64;

/// Opens a sealed asset held in memory on up to `threads` threads, refusing another kind
/// than `expect`; the result and every error are those of [`open_to_vec`].
///
/// The `age` payload is a STREAM of 64 KiB chunks, each sealed with ChaCha20-Poly1305
/// under a nonce that holds its index and a last-chunk flag (age v1 spec, "Payload";
/// Hoang, Reyhanitabar, Rogaway and Vizár, "Online authenticated-encryption", 2015).
/// Chunks therefore authenticate independently: each thread opens its own
/// [`age::stream::StreamReader`] over `sealed`, first authenticates the stream's length
/// (by opening the final chunk as the last one, which refuses truncation and extension),
/// then decrypts 4 MiB units at their offsets into one zeroizing buffer, while the calling
/// thread hashes the units in order. The payload is accepted only if its SHA-256 and
/// length are the header's, as on one thread.
///
/// Falls back to [`open_to_vec`] for plain `age` files (no header), armored files, and
/// payloads under 8 MiB, and reruns it after any failure in the parallel path so that
/// errors name what went wrong exactly as the sequential path does. Memory: the payload
/// (at most `sealed.len()` bytes, checked before allocating) plus one 64 KiB chunk per
/// thread.
pub fn open_in_parallel(
    sealed: &[u8],
    identity: &age::x25519::Identity,
    expect: Option<AssetKind>,
    threads: usize,
) -> Result<(Opened, Zeroizing<Vec<u8>>), SealError> {
    let sealed_len = u64::try_from(sealed.len()).ok();
    let sequential = || open_to_vec(sealed, sealed_len, identity, expect);
    if threads < 2 || !sealed.starts_with(AGE_INTRO) {
        return sequential();
    }
    let (header, prefix) = {
        let r = SealedReader::new(sealed, sealed_len, identity)?;
        check_kind(r.header(), expect)?;
        match r.header() {
            Some(h) => (h.clone(), r.prefix_len),
            None => return sequential(),
        }
    };
    // The declared length is the sender's: it must fit in what was sent before anything
    // is allocated for it.
    let content_len = match usize::try_from(header.content_len) {
        Ok(n) if header.content_len >= PARALLEL_MIN && n <= sealed.len() => n,
        _ => return sequential(),
    };
    match decrypt_units(sealed, identity, prefix, content_len, threads) {
        Ok((digest, plain)) if digest == header.content_digest => {
            let content_len = header.content_len;
            Ok((Opened { header: Some(header), content_digest: digest, content_len }, plain))
        }
        // The one-thread path names the failure (tampered at which offset, truncated,
        // content mismatch) and discards its plaintext the same way.
        _ => sequential(),
    }
}

/// The parallel part of [`open_in_parallel`]: decrypts `content_len` payload bytes that
/// start `prefix` bytes into the plaintext and returns their SHA-256. The caller
/// compares it with the header; nothing here may be trusted before that.
fn decrypt_units(
    sealed: &[u8],
    identity: &age::x25519::Identity,
    prefix: u64,
    content_len: usize,
    threads: usize,
) -> Result<(Digest, Zeroizing<Vec<u8>>), SealError> {
    use std::io::{Seek, SeekFrom};
    use std::sync::Mutex;
    let expected_total = u64::try_from(content_len)
        .ok()
        .and_then(|n| prefix.checked_add(n))
        .ok_or_else(|| SealError::BadHeader("declared length overflows".into()))?;
    let threads = threads.min(content_len.div_ceil(PARALLEL_UNIT)).max(1);
    let mut plain = Zeroizing::new(vec![0u8; content_len]);
    let digest = {
        let units = Mutex::new(plain.chunks_mut(PARALLEL_UNIT).enumerate());
        let units = &units;
        std::thread::scope(|scope| -> Result<Digest, SealError> {
            let (tx, rx) = std::sync::mpsc::channel::<Result<(usize, &[u8]), SealError>>();
            for _ in 0..threads {
                let tx = tx.clone();
                scope.spawn(move || {
                    let worker = || -> Result<(), SealError> {
                        let count = AtomicU64::new(0);
                        let mut stream = age::Decryptor::new_buffered(io::Cursor::new(sealed))
                            .and_then(|d| d.decrypt(std::iter::once(identity as &dyn age::Identity)))
                            .map_err(|e| age_error(e, &count))?;
                        // Authenticates the length: the final chunk must open as the last.
                        let total = stream.seek(SeekFrom::End(0)).map_err(SealError::Stream)?;
                        if total != expected_total {
                            return Err(SealError::BadHeader(format!(
                                "the payload holds {total} bytes, the header declares {expected_total}"
                            )));
                        }
                        loop {
                            let next = units
                                .lock()
                                .map_err(|_| SealError::Encrypt("a decrypting thread failed".into()))?
                                .next();
                            let Some((i, unit)) = next else { return Ok(()) };
                            let start = i
                                .checked_mul(PARALLEL_UNIT)
                                .and_then(|o| u64::try_from(o).ok())
                                .and_then(|o| prefix.checked_add(o))
                                .ok_or_else(|| SealError::BadHeader("unit offset overflows".into()))?;
                            stream.seek(SeekFrom::Start(start)).map_err(SealError::Stream)?;
                            stream.read_exact(unit).map_err(SealError::Stream)?;
                            if tx.send(Ok((i, &*unit))).is_err() {
                                return Ok(());
                            }
                        }
                    };
                    if let Err(e) = worker() {
                        let _ = tx.send(Err(e));
                    }
                });
            }
            drop(tx);
            // Hash in order; units that arrive early wait (as references, not copies).
            let mut hasher = DigestWriter::new();
            let mut early = std::collections::BTreeMap::new();
            let mut next = 0usize;
            for done in rx {
                let (i, unit) = done?;
                early.insert(i, unit);
                while let Some(unit) = early.remove(&next) {
                    hasher.update(unit);
                    next = next.saturating_add(1);
                }
            }
            if !early.is_empty() || hasher.len() != expected_total.saturating_sub(prefix) {
                return Err(SealError::Encrypt("a decrypting thread stopped early".into()));
            }
            Ok(hasher.finish())
        })?
    };
    Ok((digest, plain))
}

/// Opens a sealed file into memory (see [`open_to_vec`]).
pub fn open_file(
    path: &Path,
    identity: &age::x25519::Identity,
    expect: Option<AssetKind>,
) -> Result<(Opened, Zeroizing<Vec<u8>>), SealError> {
    let f = File::open(path).map_err(|e| SealError::io(path, e))?;
    let len = f.metadata().map_err(|e| SealError::io(path, e))?.len();
    open_to_vec(f, Some(len), identity, expect).map_err(|e| with_path(e, path))
}

/// Opens the sealed file `sealed` into a new file `output` (mode 0600), which appears
/// only if the whole payload verified. `progress` is told the sealed bytes read.
pub fn unseal_file(
    sealed: &Path,
    identity: &age::x25519::Identity,
    output: &Path,
    progress: &mut dyn FnMut(u64),
) -> Result<Opened, SealError> {
    let f = File::open(sealed).map_err(|e| SealError::io(sealed, e))?;
    let len = f.metadata().map_err(|e| SealError::io(sealed, e))?.len();
    let mut out = AtomicOutput::create(output)?;
    let opened = {
        let mut w = io::BufWriter::with_capacity(COPY_BUF, out.file());
        let opened = open(
            Progress { inner: BufReader::with_capacity(COPY_BUF, f), tick: progress },
            Some(len),
            identity,
            None,
            &mut w,
        )
        .map_err(|e| with_path(e, sealed))?;
        w.flush().map_err(|e| SealError::io(output, e))?;
        opened
    };
    out.commit()?;
    Ok(opened)
}

fn with_path(e: SealError, path: &Path) -> SealError {
    match e {
        SealError::Stream(io) => SealError::io(path, io),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::AssetKey;

    fn sealed_bytes(payload: &[u8], key: &AssetKey) -> Vec<u8> {
        let h = AssetHeader::new(AssetKind::Dataset, Digest::of(payload), payload.len() as u64);
        seal(payload, &h, &[key.recipient()], Vec::new()).unwrap()
    }

    fn payload(n: usize) -> Vec<u8> {
        (0..n).map(|i| (i * 31 % 251) as u8).collect()
    }

    #[test]
    fn round_trips_at_chunk_edges() {
        let key = AssetKey::generate();
        for n in [0, 1, 65_536 - 40, 65_536, 65_537, 3 * 65_536 + 7] {
            let p = payload(n);
            let s = sealed_bytes(&p, &key);
            let (opened, plain) =
                open_to_vec(&s[..], Some(s.len() as u64), key.identity(), Some(AssetKind::Dataset)).unwrap();
            assert_eq!(&plain[..], &p[..], "n = {n}");
            assert_eq!(opened.content_digest, Digest::of(&p));
        }
    }

    /// 9 MiB and a bit: three parallel units, the last one short, over 145 STREAM chunks.
    const BIG: usize = 9 * 1024 * 1024 + 12_345;

    fn prefix_of(s: &[u8], key: &AssetKey) -> u64 {
        SealedReader::new(s, Some(s.len() as u64), key.identity()).unwrap().prefix_len
    }

    #[test]
    fn parallel_units_decrypt_what_was_sealed() {
        let key = AssetKey::generate();
        let p = payload(BIG);
        let s = sealed_bytes(&p, &key);
        let prefix = prefix_of(&s, &key);
        for threads in [1, 2, 3, 8] {
            // The parallel part itself, so that a fallback cannot hide it.
            let (digest, plain) = decrypt_units(&s, key.identity(), prefix, BIG, threads).unwrap();
            assert_eq!(digest, Digest::of(&p), "threads {threads}");
            assert!(plain[..] == p[..], "threads {threads}");
            let (opened, plain) = open_in_parallel(&s, key.identity(), Some(AssetKind::Dataset), threads).unwrap();
            assert!(plain[..] == p[..]);
            assert_eq!((opened.content_digest, opened.content_len), (Digest::of(&p), BIG as u64));
        }
        // Small, plain-age and armored inputs take the one-thread path with one result.
        let small = sealed_bytes(b"small", &key);
        assert_eq!(&open_in_parallel(&small, key.identity(), None, 4).unwrap().1[..], b"small");
        let e = open_in_parallel(&s, key.identity(), Some(AssetKind::Model), 4).unwrap_err();
        assert!(matches!(e, SealError::WrongKind { .. }), "{e}");
        let e = open_in_parallel(&s, AssetKey::generate().identity(), None, 4).unwrap_err();
        assert!(matches!(e, SealError::WrongKey), "{e}");
    }

    #[test]
    fn parallel_open_refuses_tampering_reordering_truncation_and_extension() {
        let key = AssetKey::generate();
        let p = payload(BIG);
        let s = sealed_bytes(&p, &key);
        let prefix = prefix_of(&s, &key);
        let body = s.len() - (BIG + prefix as usize) - (BIG + prefix as usize).div_ceil(65_536) * 16;
        let chunk = 65_536 + 16;
        let at = |i: usize| body + i * chunk;
        let mut cases: Vec<(&str, Vec<u8>)> = Vec::new();
        for pos in [at(70) + 5, at(140) + 9, s.len() - 2] {
            let mut t = s.clone();
            t[pos] ^= 0x01;
            cases.push(("flipped", t));
        }
        // Two whole chunks swapped: each authenticates, but not at the other's index.
        let mut t = s.clone();
        let (a, b) = t.split_at_mut(at(100));
        a[at(64)..at(65)].swap_with_slice(&mut b[..chunk]);
        cases.push(("swapped", t));
        cases.push(("cut at a chunk edge", s[..at(128)].to_vec()));
        cases.push(("cut inside a chunk", s[..s.len() - 100].to_vec()));
        let mut t = s.clone();
        t.extend_from_slice(&s[at(3)..at(4)]);
        cases.push(("extended by a chunk", t));
        for (what, t) in &cases {
            assert!(
                decrypt_units(t, key.identity(), prefix, BIG, 3).map(|(d, _)| d != Digest::of(&p)).unwrap_or(true),
                "{what}"
            );
            let e = open_in_parallel(t, key.identity(), None, 3);
            assert!(e.is_err(), "{what} was accepted");
        }
        // A header that lies about the content (same length, other bytes).
        let h = AssetHeader::new(AssetKind::Dataset, Digest::of(b"approved"), BIG as u64);
        let enc = age::Encryptor::with_recipients(std::iter::once(&key.recipient() as &dyn age::Recipient)).unwrap();
        let mut w = enc.wrap_output(Vec::new()).unwrap();
        w.write_all(&h.encode()).unwrap();
        w.write_all(&p).unwrap();
        let t = w.finish().unwrap();
        let e = open_in_parallel(&t, key.identity(), None, 3).unwrap_err();
        assert!(matches!(e, SealError::ContentMismatch { .. }), "{e}");
    }

    #[test]
    fn wrong_key_is_named() {
        let s = sealed_bytes(b"secret", &AssetKey::generate());
        let e = open_to_vec(&s[..], None, AssetKey::generate().identity(), None).unwrap_err();
        assert!(matches!(e, SealError::WrongKey), "{e}");
    }

    #[test]
    fn tampering_is_named_at_every_position() {
        let key = AssetKey::generate();
        let s = sealed_bytes(&payload(200_000), &key);
        // Flip a byte in the first, a middle and the last chunk.
        for pos in [s.len() - 200_000, s.len() / 2, s.len() - 3] {
            let mut t = s.clone();
            t[pos] ^= 0x40;
            let e = open_to_vec(&t[..], Some(t.len() as u64), key.identity(), None).unwrap_err();
            if pos == s.len() - 200_000 {
                // The first chunk holds the header: without it, the length is unknown.
                assert!(matches!(e, SealError::TamperedOrTruncated), "pos {pos}: {e}");
            } else {
                assert!(matches!(e, SealError::PayloadTampered { .. }), "pos {pos}: {e}");
            }
        }
        // The header MAC line.
        let mac_at = s.windows(4).position(|w| w == b"\n---").unwrap() + 6;
        let mut t = s.clone();
        t[mac_at] = if t[mac_at] == b'A' { b'B' } else { b'A' };
        let e = open_to_vec(&t[..], None, key.identity(), None).unwrap_err();
        assert!(matches!(e, SealError::HeaderTampered), "{e}");
    }

    #[test]
    fn truncation_is_named() {
        let key = AssetKey::generate();
        let s = sealed_bytes(&payload(200_000), &key);
        for cut in [s.len() - 1, s.len() / 2, 2 * (65_536 + 16) + (s.len() - 200_000 - 3 * 16) / 2] {
            let t = &s[..cut];
            let e = open_to_vec(t, Some(t.len() as u64), key.identity(), None).unwrap_err();
            assert!(matches!(e, SealError::Truncated { .. }), "cut {cut}: {e}");
        }
        let e = open_to_vec(&s[..20], Some(20), key.identity(), None).unwrap_err();
        assert!(matches!(e, SealError::Truncated { .. } | SealError::NotSealed(_)), "{e}");
    }

    #[test]
    fn not_an_age_file() {
        let e = open_to_vec(&b"hello, world\n"[..], None, AssetKey::generate().identity(), None).unwrap_err();
        assert!(matches!(e, SealError::NotSealed(_)), "{e}");
    }

    #[test]
    fn a_lying_header_is_refused() {
        let key = AssetKey::generate();
        let h = AssetHeader::new(AssetKind::Model, Digest::of(b"approved"), 8);
        // Build by hand what `seal` refuses to build: a header that lies.
        let enc = age::Encryptor::with_recipients(std::iter::once(&key.recipient() as &dyn age::Recipient)).unwrap();
        let mut w = enc.wrap_output(Vec::new()).unwrap();
        w.write_all(&h.encode()).unwrap();
        w.write_all(b"swapped!").unwrap();
        let s = w.finish().unwrap();
        let e = open_to_vec(&s[..], None, key.identity(), None).unwrap_err();
        assert!(matches!(e, SealError::ContentMismatch { .. }), "{e}");
        // And `seal` itself refuses content that does not match its header.
        assert!(matches!(seal(&b"swapped!"[..], &h, &[key.recipient()], Vec::new()), Err(SealError::InputChanged)));
    }

    #[test]
    fn armored_files_open_and_passphrase_files_are_named() {
        use age::armor::{ArmoredWriter, Format};
        let key = AssetKey::generate();
        // A Perun asset and a plain age payload, both armored as `age -a` writes them.
        let binary = sealed_bytes(b"armored asset", &key);
        let mut a = ArmoredWriter::wrap_output(Vec::new(), Format::AsciiArmor).unwrap();
        a.write_all(&binary).unwrap();
        let armored = a.finish().unwrap();
        assert!(armored.starts_with(ARMOR_BEGIN));
        let (opened, content) = open_to_vec(&armored[..], Some(armored.len() as u64), key.identity(), None).unwrap();
        assert_eq!((&content[..], opened.header.is_some()), (&b"armored asset"[..], true));
        let e = open_to_vec(&armored[..], None, AssetKey::generate().identity(), None).unwrap_err();
        assert!(matches!(e, SealError::WrongKey), "{e}");

        let enc = age::Encryptor::with_user_passphrase(age::secrecy::SecretString::from("hunter2".to_owned()));
        let mut w = enc.wrap_output(Vec::new()).unwrap();
        w.write_all(b"secret").unwrap();
        let scrypt = w.finish().unwrap();
        let e = open_to_vec(&scrypt[..], None, key.identity(), None).unwrap_err();
        assert!(matches!(e, SealError::Passphrase), "{e}");
        assert!(e.to_string().contains("passphrase"), "{e}");
    }

    #[test]
    fn kind_is_enforced() {
        let key = AssetKey::generate();
        let s = sealed_bytes(b"x", &key);
        let e = open_to_vec(&s[..], None, key.identity(), Some(AssetKind::Model)).unwrap_err();
        assert!(matches!(e, SealError::WrongKind { .. }), "{e}");
    }

    #[test]
    fn files_seal_and_unseal_whole_or_not_at_all() {
        let dir = tempfile::tempdir().unwrap();
        let key = AssetKey::generate();
        let input = dir.path().join("in.bin");
        std::fs::write(&input, payload(100_000)).unwrap();
        let sealed = dir.path().join("in.sealed");
        let info = seal_file(&input, AssetKind::Dataset, &[key.recipient()], &sealed, &mut |_| {}).unwrap();
        assert_eq!(info.header.content_len, 100_000);
        assert_eq!(info.sealed_digest, Digest::of(&std::fs::read(&sealed).unwrap()));
        let out = dir.path().join("out.bin");
        unseal_file(&sealed, key.identity(), &out, &mut |_| {}).unwrap();
        assert_eq!(std::fs::read(&out).unwrap(), payload(100_000));

        // A wrong key leaves no output file behind.
        let out2 = dir.path().join("out2.bin");
        assert!(unseal_file(&sealed, AssetKey::generate().identity(), &out2, &mut |_| {}).is_err());
        let mut t = std::fs::read(&sealed).unwrap();
        t.truncate(t.len() - 100);
        let cut = dir.path().join("cut.sealed");
        std::fs::write(&cut, &t).unwrap();
        assert!(matches!(unseal_file(&cut, key.identity(), &out2, &mut |_| {}), Err(SealError::Truncated { .. })));
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names.len(), 4, "{names:?}");
        assert!(!out2.exists());
    }
}
