//! A bounds-checked little-endian cursor over a file's bytes.
//!
//! Every read checks the remaining length first and names the field and the file
//! in its error, so a truncated or hostile file gives a one-line message, never a
//! panic and never an allocation sized by an unchecked field.

use super::ImportError;

/// Reads little-endian fields from `buf`, starting at `pos`.
pub struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
    file: String,
}

impl<'a> Cursor<'a> {
    /// A cursor at the start of `buf`; `file` names the file in errors.
    pub fn new(buf: &'a [u8], file: &str) -> Self {
        Cursor {
            buf,
            pos: 0,
            file: file.to_string(),
        }
    }

    /// Byte offset of the next read.
    pub fn pos(&self) -> usize {
        self.pos
    }

    /// The whole buffer (positions are offsets into it).
    pub fn buf(&self) -> &'a [u8] {
        self.buf
    }

    /// Bytes left after the cursor.
    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// Moves to absolute offset `pos` (must lie within the buffer).
    pub fn seek(&mut self, pos: usize, what: &str) -> Result<(), ImportError> {
        if pos > self.buf.len() {
            return Err(self.truncated(what, pos as u64, 0));
        }
        self.pos = pos;
        Ok(())
    }

    fn truncated(&self, what: &str, at: u64, need: u64) -> ImportError {
        ImportError::malformed(
            &self.file,
            format!(
                "truncated: {what} needs {need} bytes at offset {at}, file has {}",
                self.buf.len()
            ),
        )
    }

    /// The next `n` bytes.
    pub fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], ImportError> {
        match self.pos.checked_add(n) {
            Some(end) if end <= self.buf.len() => {
                let s = &self.buf[self.pos..end];
                self.pos = end;
                Ok(s)
            }
            _ => Err(self.truncated(what, self.pos as u64, n as u64)),
        }
    }

    /// The next `count` items of `size` bytes each, with the size computed checked.
    pub fn take_n(&mut self, count: u64, size: u64, what: &str) -> Result<&'a [u8], ImportError> {
        let n = count
            .checked_mul(size)
            .and_then(|n| usize::try_from(n).ok())
            .ok_or_else(|| {
                ImportError::malformed(
                    &self.file,
                    format!("{what}: size {count} × {size} overflows"),
                )
            })?;
        self.take(n, what)
    }

    fn arr<const N: usize>(&mut self, what: &str) -> Result<[u8; N], ImportError> {
        let s = self.take(N, what)?;
        let mut a = [0u8; N];
        a.copy_from_slice(s);
        Ok(a)
    }

    /// One byte.
    pub fn u8(&mut self, what: &str) -> Result<u8, ImportError> {
        Ok(self.arr::<1>(what)?[0])
    }

    /// Little-endian u32.
    pub fn u32(&mut self, what: &str) -> Result<u32, ImportError> {
        self.arr(what).map(u32::from_le_bytes)
    }

    /// Little-endian i32.
    pub fn i32(&mut self, what: &str) -> Result<i32, ImportError> {
        self.arr(what).map(i32::from_le_bytes)
    }

    /// Little-endian u64.
    pub fn u64(&mut self, what: &str) -> Result<u64, ImportError> {
        self.arr(what).map(u64::from_le_bytes)
    }

    /// Little-endian f32.
    pub fn f32(&mut self, what: &str) -> Result<f32, ImportError> {
        self.arr(what).map(f32::from_le_bytes)
    }
}

/// Little-endian f32 values from bytes (length a multiple of 4, checked by the caller).
pub fn f32s_from_le(bytes: &[u8]) -> Vec<f32> {
    bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

/// f32 values to little-endian bytes.
pub fn f32s_to_le(x: &[f32]) -> Vec<u8> {
    let mut out = Vec::with_capacity(x.len() * 4);
    for v in x {
        out.extend_from_slice(&v.to_le_bytes());
    }
    out
}
