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

/// Writes `bytes` to `path` atomically (every writer of the project that does not
/// stream goes through this: shards, tokenizer.json, config.toml, …).
pub fn write_bytes(path: &Path, bytes: &[u8]) -> Result<(), FormatError> {
    write_atomic(path, &mut |w| {
        w.write_all(bytes)
            .map_err(|e| FormatError::Io(format!("write failed: {e}")))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An injected writer error half-way (a full disk) leaves the old file whole and
    /// no temporary file behind.
    #[test]
    fn a_failed_write_keeps_the_old_file() {
        let d = std::env::temp_dir().join(format!("llm-atomic-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).unwrap();
        let p = d.join("train.bin");
        write_bytes(&p, b"old complete contents").unwrap();
        let e = write_atomic(&p, &mut |w| {
            w.write_all(b"new, half").unwrap();
            Err(FormatError::Io(
                "No space left on device (os error 28)".into(),
            ))
        })
        .unwrap_err();
        assert!(std::format!("{e}").contains("No space left"), "{e}");
        assert_eq!(fs::read(&p).unwrap(), b"old complete contents");
        let names: std::vec::Vec<_> = fs::read_dir(&d)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 1, "{names:?}");
        write_bytes(&p, b"new").unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"new");
    }
}
