//! Atomic file replacement (with `std`): write a temporary file beside the target,
//! fsync it, rename it over the target, fsync the directory. A crash leaves either
//! the old file or the complete new one, never a torn file.

use crate::error::FormatError;
use std::format;
use std::fs::{self, File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

fn io_err(path: &Path, what: &str, e: std::io::Error) -> FormatError {
    FormatError::Io(format!("{}: {what}: {e}", path.display()))
}

/// Writes `path` atomically with the bytes that `fill` writes.
///
/// # Errors
/// [`FormatError::Io`] naming the file, or whatever `fill` returns; the target is
/// then untouched and the temporary file removed.
pub fn write_atomic(
    path: &Path,
    fill: &mut dyn FnMut(&mut dyn Write) -> Result<(), FormatError>,
) -> Result<(), FormatError> {
    let file_name = path
        .file_name()
        .ok_or_else(|| FormatError::Io(format!("{}: not a file path", path.display())))?;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(file_name);
    // Unique per process and per call, so concurrent writers never share a temp file.
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    tmp_name.push(format!(".tmp{}-{n}", std::process::id()));
    let tmp = dir.join(tmp_name);

    let result = (|| {
        let f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)
            .map_err(|e| io_err(&tmp, "cannot create temporary file", e))?;
        let mut w = BufWriter::with_capacity(1 << 20, f);
        fill(&mut w).map_err(|e| match e {
            FormatError::Io(m) => FormatError::Io(format!("{}: {m}", tmp.display())),
            other => other,
        })?;
        let f = w
            .into_inner()
            .map_err(|e| io_err(&tmp, "write failed", e.into_error()))?;
        f.sync_all().map_err(|e| io_err(&tmp, "fsync failed", e))?;
        drop(f);
        fs::rename(&tmp, path).map_err(|e| io_err(path, "rename failed", e))?;
        Ok(())
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
        return result;
    }
    // Make the rename itself durable. Directories cannot be opened this way on every
    // platform; where they cannot, the rename is still atomic, only not yet durable.
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}
