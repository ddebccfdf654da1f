//! A cursor over big-endian TPM wire data that never panics on short input.

use crate::AttestError;

pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    what: &'static str,
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8], what: &'static str) -> Self {
        Self { buf, pos: 0, what }
    }

    pub fn bytes(&mut self, n: usize) -> Result<&'a [u8], AttestError> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.buf.len()).ok_or_else(|| {
            AttestError::malformed(
                self.what,
                format!("needs {n} bytes at offset {}, has {}", self.pos, self.buf.len() - self.pos),
            )
        })?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    pub fn u8(&mut self) -> Result<u8, AttestError> {
        Ok(self.bytes(1)?[0])
    }

    pub fn u16(&mut self) -> Result<u16, AttestError> {
        let b = self.bytes(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    pub fn u32(&mut self) -> Result<u32, AttestError> {
        let b = self.bytes(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    pub fn u64(&mut self) -> Result<u64, AttestError> {
        let b = self.bytes(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_be_bytes(a))
    }

    /// A `TPM2B_*`: a u16 size, then that many bytes.
    pub fn tpm2b(&mut self) -> Result<&'a [u8], AttestError> {
        let n = self.u16()? as usize;
        self.bytes(n)
    }

    pub fn finish(&self) -> Result<(), AttestError> {
        if self.pos != self.buf.len() {
            return Err(AttestError::malformed(self.what, format!("{} trailing bytes", self.buf.len() - self.pos)));
        }
        Ok(())
    }
}

/// Appends a `TPM2B_*`.
pub(crate) fn put_tpm2b(out: &mut Vec<u8>, data: &[u8]) {
    out.extend_from_slice(&(data.len() as u16).to_be_bytes());
    out.extend_from_slice(data);
}
