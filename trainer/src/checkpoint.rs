//! Training checkpoints: everything `--resume` needs to continue bit for bit.
//!
//! Layout of `ckpt_<step>.bin` (little-endian):
//! `b"LLMTCKP1"`, u64 header length, the JSON [`CheckpointMeta`], then the parameters,
//! Adam's m and v (f32 each, `n_params` long, in the model's table order), and last an
//! xxh3-64 of everything before it. Writes are atomic: a temporary file in the same
//! folder is written and fsynced, renamed over the final name, and the folder fsynced,
//! so a crash at any point leaves the previous checkpoint intact. The last K are kept.

use crate::data::LoaderState;
use crate::rng::Rng;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use xxhash_rust::xxh3::xxh3_64;

const MAGIC: &[u8; 8] = b"LLMTCKP1";

/// A checkpoint problem; the message names the file.
#[derive(Debug)]
pub struct CheckpointError(pub String);

impl fmt::Display for CheckpointError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "checkpoint: {}", self.0)
    }
}

impl std::error::Error for CheckpointError {}

/// The small part of a checkpoint, stored as JSON.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CheckpointMeta {
    /// Optimizer steps completed.
    pub step: u64,
    /// The resolved config (TOML).
    pub config: String,
    /// Training loader position.
    pub loader: LoaderState,
    /// The run's generator (samples).
    pub rng: Rng,
    /// AdamW's step count.
    pub adam_step: u64,
    /// Parameter count (checked against the model on load).
    pub n_params: u64,
    /// Lowest train loss so far (explosion detection).
    pub best_loss: f64,
}

/// A whole checkpoint in memory.
#[derive(Clone, Debug, PartialEq)]
pub struct Checkpoint {
    /// Step, config, positions.
    pub meta: CheckpointMeta,
    /// Parameters in table order.
    pub params: Vec<f32>,
    /// Adam first moments.
    pub m: Vec<f32>,
    /// Adam second moments.
    pub v: Vec<f32>,
}

/// Test hook: stop after writing this many bytes of the next save (simulates a crash).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Return an error after `n` bytes, leaving the temporary file behind.
    FailAfter(usize),
    /// Abort the process after `n` bytes (what `kill -9` would leave).
    AbortAfter(usize),
}

fn f32s(out: &mut Vec<u8>, x: &[f32]) {
    out.reserve(4 * x.len());
    for v in x {
        out.extend_from_slice(&v.to_le_bytes());
    }
}

impl Checkpoint {
    /// Serialises the checkpoint.
    pub fn to_bytes(&self) -> Vec<u8> {
        let header = serde_json::to_vec(&self.meta).unwrap_or_default();
        let mut out = Vec::with_capacity(24 + header.len() + 12 * self.params.len());
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&(header.len() as u64).to_le_bytes());
        out.extend_from_slice(&header);
        f32s(&mut out, &self.params);
        f32s(&mut out, &self.m);
        f32s(&mut out, &self.v);
        let sum = xxh3_64(&out);
        out.extend_from_slice(&sum.to_le_bytes());
        out
    }

    /// Parses and verifies a checkpoint; `name` is used in errors.
    pub fn from_bytes(b: &[u8], name: &str) -> Result<Checkpoint, CheckpointError> {
        let bad = |what: String| CheckpointError(format!("{name}: {what}"));
        if b.len() < 24 || &b[..8] != MAGIC {
            return Err(bad("not a llm-train checkpoint (magic)".into()));
        }
        let (body, tail) = b.split_at(b.len() - 8);
        let mut sum = [0u8; 8];
        sum.copy_from_slice(tail);
        if xxh3_64(body) != u64::from_le_bytes(sum) {
            return Err(bad("checksum mismatch (truncated or corrupted)".into()));
        }
        let mut hl = [0u8; 8];
        hl.copy_from_slice(&body[8..16]);
        let hl =
            usize::try_from(u64::from_le_bytes(hl)).map_err(|_| bad("header length".into()))?;
        let header = body
            .get(16..16usize.saturating_add(hl))
            .ok_or_else(|| bad("header length beyond the file".into()))?;
        let meta: CheckpointMeta =
            serde_json::from_slice(header).map_err(|e| bad(format!("header: {e}")))?;
        let n = usize::try_from(meta.n_params).map_err(|_| bad("n_params".into()))?;
        let data = &body[16 + hl..];
        if data.len() != n.saturating_mul(12) {
            return Err(bad(format!(
                "{} data bytes for {n} parameters (expected {})",
                data.len(),
                n.saturating_mul(12)
            )));
        }
        let read = |k: usize| -> Vec<f32> {
            data[4 * n * k..4 * n * (k + 1)]
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect()
        };
        Ok(Checkpoint {
            params: read(0),
            m: read(1),
            v: read(2),
            meta,
        })
    }

    /// Reads and verifies `path`.
    pub fn load(path: &Path) -> Result<Checkpoint, CheckpointError> {
        let b = std::fs::read(path)
            .map_err(|e| CheckpointError(format!("cannot read {}: {e}", path.display())))?;
        Checkpoint::from_bytes(&b, &path.display().to_string())
    }
}

/// `dir/ckpt_<step, 8 digits>.bin`.
pub fn checkpoint_path(dir: &Path, step: u64) -> PathBuf {
    dir.join(format!("ckpt_{step:08}.bin"))
}

/// Writes `bytes` to `path` atomically (temp file, fsync, rename, fsync folder).
pub fn write_atomic(
    path: &Path,
    bytes: &[u8],
    fault: Option<Fault>,
) -> Result<(), CheckpointError> {
    let err =
        |what: &str, e: std::io::Error| CheckpointError(format!("{what} {}: {e}", path.display()));
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = path.with_extension("bin.tmp");
    let mut f = File::create(&tmp).map_err(|e| err("cannot create temporary file for", e))?;
    match fault {
        Some(Fault::FailAfter(n)) | Some(Fault::AbortAfter(n)) => {
            let n = n.min(bytes.len());
            f.write_all(&bytes[..n])
                .map_err(|e| err("cannot write", e))?;
            f.sync_all().map_err(|e| err("cannot sync", e))?;
            if matches!(fault, Some(Fault::AbortAfter(_))) {
                eprintln!("llm-train: injected crash while writing {}", path.display());
                std::process::abort();
            }
            return Err(CheckpointError(format!(
                "injected failure after {n} bytes of {}",
                path.display()
            )));
        }
        None => {}
    }
    f.write_all(bytes).map_err(|e| err("cannot write", e))?;
    f.sync_all().map_err(|e| err("cannot sync", e))?;
    drop(f);
    std::fs::rename(&tmp, path).map_err(|e| err("cannot rename temporary file to", e))?;
    // Persist the rename itself.
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// Saves `ck` as `dir/ckpt_<step>.bin` and deletes all but the newest `keep`.
pub fn save(
    dir: &Path,
    ck: &Checkpoint,
    keep: usize,
    fault: Option<Fault>,
) -> Result<PathBuf, CheckpointError> {
    std::fs::create_dir_all(dir)
        .map_err(|e| CheckpointError(format!("cannot create {}: {e}", dir.display())))?;
    let path = checkpoint_path(dir, ck.meta.step);
    write_atomic(&path, &ck.to_bytes(), fault)?;
    let all = list(dir);
    for (_, old) in all.iter().take(all.len().saturating_sub(keep.max(1))) {
        let _ = std::fs::remove_file(old);
    }
    Ok(path)
}

/// Finished checkpoints in `dir`, oldest first (temporary files are ignored).
pub fn list(dir: &Path) -> Vec<(u64, PathBuf)> {
    let mut v: Vec<(u64, PathBuf)> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let step = name
                .strip_prefix("ckpt_")?
                .strip_suffix(".bin")?
                .parse()
                .ok()?;
            Some((step, e.path()))
        })
        .collect();
    v.sort();
    v
}

/// Deletes the temporary files (`*.tmp`) an interrupted save left in `dir`; returns
/// how many. Only for a writer that holds the run folder's lock.
pub fn remove_stale_tmp(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
        .filter(|e| std::fs::remove_file(e.path()).is_ok())
        .count()
}

/// The newest checkpoint in `dir` that loads and verifies; damaged newer ones are
/// reported on stderr and skipped.
pub fn load_latest(dir: &Path) -> Result<(Checkpoint, PathBuf), CheckpointError> {
    for (_, p) in list(dir).into_iter().rev() {
        match Checkpoint::load(&p) {
            Ok(c) => return Ok((c, p)),
            Err(e) => eprintln!("warning: skipping {e}"),
        }
    }
    Err(CheckpointError(format!(
        "no loadable checkpoint in {}",
        dir.display()
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(step: u64, n: usize) -> Checkpoint {
        let mut r = Rng::for_test(step);
        let mut v = |_| r.normal() as f32;
        Checkpoint {
            meta: CheckpointMeta {
                step,
                config: "d_model = 8\n".into(),
                loader: LoaderState {
                    epoch: 1,
                    cursor: 24,
                },
                rng: Rng::new(9),
                adam_step: step,
                n_params: n as u64,
                best_loss: 2.5,
            },
            params: (0..n).map(&mut v).collect(),
            m: (0..n).map(&mut v).collect(),
            v: (0..n).map(&mut v).collect(),
        }
    }

    #[test]
    fn round_trip_keep_and_failed_write() {
        let d = std::env::temp_dir().join(format!("llm-train-ckpt-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        for s in 1..=4 {
            save(&d, &sample(s, 100), 2, None).unwrap();
        }
        assert_eq!(list(&d).iter().map(|x| x.0).collect::<Vec<_>>(), vec![3, 4]);
        let (c, _) = load_latest(&d).unwrap();
        assert_eq!(c, sample(4, 100));
        // A save that dies half way leaves a temp file; the previous checkpoint still loads.
        let e = save(&d, &sample(5, 100), 2, Some(Fault::FailAfter(700))).unwrap_err();
        assert!(e.0.contains("injected"));
        assert!(d.join("ckpt_00000005.bin.tmp").exists());
        let (c, p) = load_latest(&d).unwrap();
        assert_eq!((c.meta.step, p), (4, checkpoint_path(&d, 4)));
        // A corrupted newest file is skipped in favour of the older one.
        let mut b = std::fs::read(checkpoint_path(&d, 4)).unwrap();
        b[100] ^= 0xFF;
        std::fs::write(checkpoint_path(&d, 4), &b).unwrap();
        assert!(Checkpoint::load(&checkpoint_path(&d, 4))
            .unwrap_err()
            .0
            .contains("checksum"));
        assert_eq!(load_latest(&d).unwrap().0.meta.step, 3);
        assert!(Checkpoint::from_bytes(&b[..10], "x").is_err());
    }
}
