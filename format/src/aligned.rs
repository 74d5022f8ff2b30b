//! A heap byte buffer whose start is 64-byte aligned, for callers that hold a file in
//! an arbitrary buffer: copy it once into an [`AlignedBuf`] and every tensor of the
//! file (each at a multiple of 64 from the start) is aligned for in-place views.

use alloc::vec::Vec;

/// One 64-byte, 64-aligned chunk of storage.
#[derive(Clone, Copy)]
#[repr(C, align(64))]
struct Chunk([u8; 64]);

/// An owned byte buffer starting at a 64-byte aligned address.
#[derive(Clone)]
pub struct AlignedBuf {
    chunks: Vec<Chunk>,
    len: usize,
}

impl AlignedBuf {
    /// A 64-byte aligned copy of `bytes`.
    pub fn from_slice(bytes: &[u8]) -> AlignedBuf {
        let mut chunks = Vec::with_capacity(bytes.len().div_ceil(64));
        for c in bytes.chunks(64) {
            let mut chunk = Chunk([0; 64]);
            chunk.0[..c.len()].copy_from_slice(c);
            chunks.push(chunk);
        }
        AlignedBuf {
            chunks,
            len: bytes.len(),
        }
    }

    /// The bytes.
    pub fn as_bytes(&self) -> &[u8] {
        // SAFETY: `chunks` is one allocation of chunks.len() * 64 initialised bytes
        // (Chunk is repr(C) over [u8; 64], no padding), and len <= that.
        unsafe { core::slice::from_raw_parts(self.chunks.as_ptr() as *const u8, self.len) }
    }

    /// Number of bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl core::ops::Deref for AlignedBuf {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        self.as_bytes()
    }
}

impl AsRef<[u8]> for AlignedBuf {
    fn as_ref(&self) -> &[u8] {
        self.as_bytes()
    }
}

impl core::fmt::Debug for AlignedBuf {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "AlignedBuf({} bytes)", self.len)
    }
}
