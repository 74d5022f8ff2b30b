//! Read-only memory-mapped files (with `std`). Loading a model is `open` + `parse`:
//! the kernel pages weights in as they are touched, nothing is copied.

use crate::error::FormatError;
use crate::reader::LlmFile;
use std::format;
use std::fs::File;
use std::path::{Path, PathBuf};

/// A file mapped read-only. [`LlmFile::parse`] on [`MappedFile::bytes`] borrows from
/// this map, so the map must outlive the parsed file (the borrow checker enforces it).
///
/// The file must not be truncated or written while mapped (by this or any other
/// process): the mapping would see the change, or fault past a new end.
#[derive(Debug)]
pub struct MappedFile {
    map: Option<memmap2::Mmap>,
    path: PathBuf,
}

impl MappedFile {
    /// Maps `path` read-only. The error text names the path.
    pub fn open(path: impl AsRef<Path>) -> Result<MappedFile, FormatError> {
        let path = path.as_ref();
        let err = |what: &str, e: std::io::Error| {
            FormatError::Io(format!("{}: {what}: {e}", path.display()))
        };
        let file = File::open(path).map_err(|e| err("cannot open", e))?;
        let len = file.metadata().map_err(|e| err("cannot stat", e))?.len();
        // An empty file cannot be mapped on every platform; it has no bytes to map.
        let map = if len == 0 {
            None
        } else {
            // SAFETY: the map is read-only, and the type's documentation requires that
            // the file is not modified or truncated while it is mapped.
            let map = unsafe { memmap2::Mmap::map(&file) }.map_err(|e| err("cannot map", e))?;
            // Weights are streamed whole, once per token: pages read in from disk come
            // in 2 MiB folios mapped by one TLB entry each. Advice only; where the
            // kernel lacks it the map works as before.
            #[cfg(target_os = "linux")]
            let _ = map.advise(memmap2::Advice::HugePage);
            Some(map)
        };
        Ok(MappedFile {
            map,
            path: path.to_path_buf(),
        })
    }

    /// The file's bytes (page-aligned, so 64-byte aligned too).
    pub fn bytes(&self) -> &[u8] {
        self.map.as_deref().unwrap_or(&[])
    }

    /// The path the file was opened from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Parses the mapped bytes; errors are prefixed with the path.
    pub fn parse(&self) -> Result<LlmFile<'_>, FormatError> {
        LlmFile::parse(self.bytes())
            .map_err(|e| FormatError::Invalid(format!("{}: {e}", self.path.display())))
    }
}
