//! Atomic file replacement (with `std`): write a temporary file beside the target,
//! fsync it, rename it over the target, fsync the directory. A crash leaves either
//! the old file or the complete new one, never a torn file.
//!
//! The bytes go to the kernel in whole, aligned 2 MiB pieces ([`FolioWriter`]), so
//! the page cache holds the new file in 2 MiB folios and a model loaded right after
//! it is written maps its weights with huge pages. A buffered writer that passes
//! large writes through at whatever offset the stream has reached leaves small
//! folios behind, and generation, which streams every weight once per token, then
//! reads measurably slower (docs/PERF.md, "Huge pages, BF16 generation and the f16
//! cache read as it is").

use crate::error::FormatError;
use std::format;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::vec::Vec;

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
        let mut w = FolioWriter::new(f);
        fill(&mut w).map_err(|e| match e {
            FormatError::Io(m) => FormatError::Io(format!("{}: {m}", tmp.display())),
            other => other,
        })?;
        let f = w.finish().map_err(|e| io_err(&tmp, "write failed", e))?;
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

/// Bytes of one write to the kernel: the size of a huge page on x86-64 and of a
/// PMD on aarch64 with 4 KiB pages.
const PIECE: usize = 2 << 20;

/// A buffered writer whose every write to the file but the last starts at a multiple
/// of [`PIECE`] and is a multiple of it long, so the page cache can hold the file in
/// folios of that size. Unlike `BufWriter`, a large `write` is split at those
/// boundaries instead of passing through at the stream's current offset.
struct FolioWriter<W: Write> {
    file: W,
    buf: Vec<u8>,
}

impl<W: Write> FolioWriter<W> {
    fn new(file: W) -> FolioWriter<W> {
        FolioWriter {
            file,
            buf: Vec::with_capacity(PIECE),
        }
    }

    /// Writes what is buffered and gives the file back.
    fn finish(mut self) -> std::io::Result<W> {
        self.file.write_all(&self.buf)?;
        Ok(self.file)
    }
}

impl<W: Write> Write for FolioWriter<W> {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        if self.buf.is_empty() && data.len() >= PIECE {
            // At a piece boundary: whole pieces go straight from the caller's bytes.
            let n = data.len() / PIECE * PIECE;
            self.file.write_all(&data[..n])?;
            return Ok(n);
        }
        let n = data.len().min(PIECE - self.buf.len());
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() == PIECE {
            self.file.write_all(&self.buf)?;
            self.buf.clear();
        }
        Ok(n)
    }

    /// Writes nothing early: a partial piece would break the alignment that follows.
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
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
    use proptest::prelude::*;

    /// Records every write it is given: (offset in the stream, length).
    #[derive(Default)]
    struct Calls {
        bytes: Vec<u8>,
        calls: Vec<(usize, usize)>,
    }

    impl Write for Calls {
        fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
            self.calls.push((self.bytes.len(), data.len()));
            self.bytes.extend_from_slice(data);
            Ok(data.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        /// Whatever sizes the caller writes in (small headers, tensors larger than a
        /// piece), the file gets the same bytes, and every write to it but the last
        /// is whole pieces starting at a piece boundary.
        #[test]
        fn folio_writer_keeps_bytes_and_writes_aligned_pieces(
            sizes in proptest::collection::vec(
                prop_oneof![0usize..100, 0usize..70_000, PIECE - 3..PIECE + 3, 0usize..5 * PIECE],
                1..12,
            ),
            seed in any::<u8>(),
        ) {
            let mut w = FolioWriter::new(Calls::default());
            let mut want = Vec::new();
            for (i, &n) in sizes.iter().enumerate() {
                let chunk: Vec<u8> = (0..n).map(|j| (j * 31 + i * 7) as u8 ^ seed).collect();
                w.write_all(&chunk).unwrap();
                want.extend_from_slice(&chunk);
            }
            let out = w.finish().unwrap();
            prop_assert!(out.bytes == want, "the bytes differ");
            // Nothing to write (every size 0) makes no write at all.
            let Some((last, whole)) = out.calls.split_last() else {
                prop_assert!(want.is_empty(), "{} bytes and no write", want.len());
                return Ok(());
            };
            for &(at, len) in whole {
                prop_assert!(at % PIECE == 0 && len % PIECE == 0 && len > 0, "write of {len} at {at}");
            }
            prop_assert_eq!(last.0 % PIECE, 0, "the last write starts at {}", last.0);
        }
    }

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
