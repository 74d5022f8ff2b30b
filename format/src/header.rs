//! The fixed 56-byte header at the start of every `.llm` file, and the constants of
//! the container (SPEC.md §3). The header says where the checksum sits, so a reader
//! can check header + metadata + directory before it trusts any count in them.

use crate::error::FormatError;

/// The four magic bytes: `LLMF`.
pub const MAGIC: [u8; 4] = *b"LLMF";
/// The container version this crate reads and writes.
pub const VERSION: u32 = 1;
/// Alignment of the data section and of every tensor in it, in bytes.
pub const ALIGN: u64 = 64;
/// Length of the fixed header in bytes.
pub const HEADER_LEN: u64 = 56;
/// Longest metadata key or tensor name, in bytes.
pub const MAX_NAME_LEN: u64 = 4096;
/// Most dimensions a tensor may have.
pub const MAX_DIMS: u32 = 4;
/// Header flag: every directory entry carries a `u32` layout id after its dtype
/// (SPEC.md §5.2). Set only when some tensor is not row-major, so that a reader
/// that predates layouts refuses the file instead of misreading its rows.
pub const FLAG_LAYOUTS: u32 = 1;
/// Every flag this crate knows.
pub const KNOWN_FLAGS: u32 = FLAG_LAYOUTS;

/// The fixed header (SPEC.md §3). All fields little-endian.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    /// Format version (`VERSION`).
    pub version: u32,
    /// Flags ([`FLAG_LAYOUTS`] or 0).
    pub flags: u32,
    /// Number of metadata entries.
    pub n_meta: u64,
    /// Number of tensor directory entries.
    pub n_tensors: u64,
    /// Absolute offset of the 8-byte checksum, which is also the end of the directory.
    pub checksum_offset: u64,
    /// Absolute offset of the data section: `align_up(checksum_offset + 8)`.
    pub data_offset: u64,
    /// Length of the data section: the end of the last tensor (0 without tensors).
    pub data_size: u64,
}

impl Header {
    /// The 56 header bytes.
    pub fn to_bytes(&self) -> [u8; HEADER_LEN as usize] {
        let mut b = [0u8; HEADER_LEN as usize];
        b[0..4].copy_from_slice(&MAGIC);
        b[4..8].copy_from_slice(&self.version.to_le_bytes());
        b[8..12].copy_from_slice(&self.flags.to_le_bytes());
        b[12..16].copy_from_slice(&(ALIGN as u32).to_le_bytes());
        b[16..24].copy_from_slice(&self.n_meta.to_le_bytes());
        b[24..32].copy_from_slice(&self.n_tensors.to_le_bytes());
        b[32..40].copy_from_slice(&self.checksum_offset.to_le_bytes());
        b[40..48].copy_from_slice(&self.data_offset.to_le_bytes());
        b[48..56].copy_from_slice(&self.data_size.to_le_bytes());
        b
    }

    /// Reads and checks the fixed fields (magic, version, flags, alignment). The
    /// offsets are checked against the buffer by the reader.
    pub fn parse(bytes: &[u8]) -> Result<Header, FormatError> {
        let word = |at: usize, what: &'static str| -> Result<u32, FormatError> {
            bytes
                .get(at..at + 4)
                .and_then(|s| s.try_into().ok())
                .map(u32::from_le_bytes)
                .ok_or(FormatError::Truncated {
                    what,
                    offset: at as u64,
                })
        };
        let dword = |at: usize, what: &'static str| -> Result<u64, FormatError> {
            bytes
                .get(at..at + 8)
                .and_then(|s| s.try_into().ok())
                .map(u64::from_le_bytes)
                .ok_or(FormatError::Truncated {
                    what,
                    offset: at as u64,
                })
        };
        match bytes.get(0..4) {
            None => {
                // A short prefix of the magic is a truncated file; anything else is not ours.
                if MAGIC.starts_with(bytes) {
                    return Err(FormatError::Truncated {
                        what: "magic",
                        offset: 0,
                    });
                }
                return Err(FormatError::BadMagic);
            }
            Some(m) if m != MAGIC => return Err(FormatError::BadMagic),
            Some(_) => {}
        }
        let version = word(4, "version")?;
        if version != VERSION {
            return Err(FormatError::UnsupportedVersion(version));
        }
        let flags = word(8, "header flags")?;
        if flags & !KNOWN_FLAGS != 0 {
            return Err(FormatError::Invalid(alloc::format!(
                "header flags are {flags:#x}; this reader knows only {KNOWN_FLAGS:#x} in version {VERSION}"
            )));
        }
        let align = word(12, "header alignment")?;
        if align as u64 != ALIGN {
            return Err(FormatError::Invalid(alloc::format!(
                "header alignment is {align}, must be {ALIGN}"
            )));
        }
        Ok(Header {
            version,
            flags,
            n_meta: dword(16, "header metadata count")?,
            n_tensors: dword(24, "header tensor count")?,
            checksum_offset: dword(32, "header checksum offset")?,
            data_offset: dword(40, "header data offset")?,
            data_size: dword(48, "header data size")?,
        })
    }
}

/// `x` rounded up to a multiple of [`ALIGN`], or `None` on overflow.
pub fn align_up(x: u64) -> Option<u64> {
    Some(x.checked_add(ALIGN - 1)? / ALIGN * ALIGN)
}

/// The checksum used for the header block and for every tensor: xxh3-64, seed 0.
pub fn checksum(bytes: &[u8]) -> u64 {
    xxhash_rust::xxh3::xxh3_64(bytes)
}
