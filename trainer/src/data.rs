//! Token shards in llm.c's format and the memory-mapped batch loader.
//!
//! A shard is a header of 256 little-endian i32 (`[0] = 20240520` magic, `[1] = 1`
//! version, `[2]` = token count, the rest 0) followed by that many u16 tokens, so
//! llm.c users can bring their `.bin` files. The loader cuts every shard into windows
//! of T + 1 tokens starting at multiples of T (inputs are the first T, targets the
//! last T), reads them in order or in a seeded permutation per epoch, or (the default,
//! nanoGPT's `get_batch`) draws windows at random starts, and packs B windows per
//! batch. Its position is two integers, saved in checkpoints.

use crate::rng::Rng;
use memmap2::Mmap;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::fs::File;
use std::path::{Path, PathBuf};

/// llm.c's shard magic.
pub const SHARD_MAGIC: i32 = 20240520;
/// llm.c's shard version for u16 tokens.
pub const SHARD_VERSION: i32 = 1;
/// Header bytes (256 × i32).
pub const HEADER_BYTES: usize = 256 * 4;

/// A data problem; the message names the file and what is wrong.
#[derive(Debug)]
pub struct DataError(pub String);

impl fmt::Display for DataError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "data: {}", self.0)
    }
}

impl std::error::Error for DataError {}

/// Writes `tokens` as an llm.c shard.
pub fn write_shard(path: &Path, tokens: &[u16]) -> Result<(), DataError> {
    let count = i32::try_from(tokens.len())
        .map_err(|_| DataError(format!("{} tokens do not fit one shard", tokens.len())))?;
    let mut buf = Vec::with_capacity(HEADER_BYTES + 2 * tokens.len());
    let mut header = [0i32; 256];
    header[0] = SHARD_MAGIC;
    header[1] = SHARD_VERSION;
    header[2] = count;
    header
        .iter()
        .for_each(|h| buf.extend_from_slice(&h.to_le_bytes()));
    tokens
        .iter()
        .for_each(|t| buf.extend_from_slice(&t.to_le_bytes()));
    // Temp file, fsync, rename: a full disk never leaves a torn shard under its name.
    llm_format::atomic::write_bytes(path, &buf).map_err(|e| DataError(e.to_string()))
}

/// One memory-mapped shard, validated on open.
pub struct Shard {
    path: PathBuf,
    map: Mmap,
    n: usize,
}

impl Shard {
    /// Maps `path` and checks magic, version and that the count matches the file size.
    pub fn open(path: &Path) -> Result<Shard, DataError> {
        let name = path.display();
        let file = File::open(path).map_err(|e| DataError(format!("cannot open {name}: {e}")))?;
        // SAFETY: the shard is opened read-only and treated as immutable; the trainer
        // never writes shards while a loader holds them. A concurrent external writer
        // could change bytes under us, which would yield wrong tokens (checked against
        // the vocabulary on use), not undefined behaviour in safe reads of u8.
        let map = unsafe { Mmap::map(&file) }
            .map_err(|e| DataError(format!("cannot map {name}: {e}")))?;
        if map.len() < HEADER_BYTES {
            return Err(DataError(format!(
                "{name}: {} bytes is shorter than the 1024-byte shard header",
                map.len()
            )));
        }
        let word = |i: usize| {
            i32::from_le_bytes([map[4 * i], map[4 * i + 1], map[4 * i + 2], map[4 * i + 3]])
        };
        if word(0) != SHARD_MAGIC {
            return Err(DataError(format!(
                "{name}: magic {} is not llm.c's {SHARD_MAGIC}",
                word(0)
            )));
        }
        if word(1) != SHARD_VERSION {
            return Err(DataError(format!(
                "{name}: version {} (only version 1, u16 tokens, is supported)",
                word(1)
            )));
        }
        let n = usize::try_from(word(2))
            .map_err(|_| DataError(format!("{name}: negative token count {}", word(2))))?;
        if map.len() != HEADER_BYTES + 2 * n {
            return Err(DataError(format!(
                "{name}: header says {n} tokens but the file holds {} bytes of tokens",
                map.len() - HEADER_BYTES
            )));
        }
        Ok(Shard {
            path: path.to_path_buf(),
            map,
            n,
        })
    }

    /// Token count.
    pub fn len(&self) -> usize {
        self.n
    }

    /// No tokens.
    pub fn is_empty(&self) -> bool {
        self.n == 0
    }

    /// Token `i` (`i < len`).
    pub fn token(&self, i: usize) -> u16 {
        let o = HEADER_BYTES + 2 * i;
        u16::from_le_bytes([self.map[o], self.map[o + 1]])
    }

    /// All tokens (copied).
    pub fn tokens(&self) -> Vec<u16> {
        (0..self.n).map(|i| self.token(i)).collect()
    }

    /// The shard's path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// How the training loader picks its windows (config key `shuffle`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shuffle {
    /// nanoGPT's `get_batch`: every window starts at a uniformly random token, drawn
    /// from a generator seeded by (seed, epoch, window index), so a run and its
    /// `--resume` see the same windows.
    Random,
    /// Non-overlapping windows at multiples of T, in a seeded permutation per epoch.
    Epoch,
    /// Non-overlapping windows at multiples of T, in storage order.
    Off,
}

impl Shuffle {
    /// The name in configs: `random`, `epoch` or `off`.
    pub fn name(self) -> &'static str {
        match self {
            Shuffle::Random => "random",
            Shuffle::Epoch => "epoch",
            Shuffle::Off => "off",
        }
    }

    /// Parses [`Self::name`]; the old boolean values `true` (= `epoch`) and `false`
    /// (= `off`) are accepted as strings too.
    pub fn from_name(s: &str) -> Option<Self> {
        match s {
            "random" => Some(Shuffle::Random),
            "epoch" | "true" => Some(Shuffle::Epoch),
            "off" | "false" => Some(Shuffle::Off),
            _ => None,
        }
    }

    /// The old boolean setting: `true` shuffled per epoch, `false` read in order.
    pub fn from_bool(b: bool) -> Self {
        if b {
            Shuffle::Epoch
        } else {
            Shuffle::Off
        }
    }
}

/// Where a loader is: the epoch and the next window in that epoch's order.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoaderState {
    /// Completed passes over the windows.
    pub epoch: u64,
    /// Next window index within the epoch's order.
    pub cursor: u64,
}

/// One batch: `inputs` and `targets` of shape `[B, T]`, row-major.
#[derive(Clone, Debug, PartialEq)]
pub struct Batch {
    /// Input tokens.
    pub inputs: Vec<u32>,
    /// Next-token targets.
    pub targets: Vec<u32>,
}

/// Batches of B windows of T + 1 tokens over one or more shards.
pub struct Loader {
    shards: Vec<Shard>,
    windows: Vec<(u32, u64)>, // (shard, first token), in storage order
    order: Vec<u32>,          // this epoch's permutation of window indices
    /// Valid random starts per shard, cumulative (`Shuffle::Random`).
    starts: Vec<u64>,
    b: usize,
    t: usize,
    vocab: usize,
    shuffle: Shuffle,
    seed: u64,
    state: LoaderState,
}

impl Loader {
    /// A loader over `shards` for batches `[b, t]`; tokens must be `< vocab`.
    pub fn new(
        shards: Vec<Shard>,
        b: usize,
        t: usize,
        vocab: usize,
        shuffle: Shuffle,
        seed: u64,
    ) -> Result<Loader, DataError> {
        let mut windows = Vec::new();
        let mut starts = Vec::with_capacity(shards.len());
        let mut total_starts = 0u64;
        for s in &shards {
            // A window of T + 1 tokens may start at 0..len - T.
            total_starts += s.len().saturating_sub(t) as u64;
            starts.push(total_starts);
        }
        for (si, s) in shards.iter().enumerate() {
            let mut off = 0;
            while off + t < s.len() {
                windows.push((si as u32, off as u64));
                off += t;
            }
        }
        if windows.len() < b {
            let total: usize = shards.iter().map(Shard::len).sum();
            return Err(DataError(format!(
                "{total} tokens make {} windows of {} tokens, fewer than one batch of {b}; \
                 use more data or lower batch_size / max_len",
                windows.len(),
                t + 1
            )));
        }
        let mut l = Loader {
            shards,
            order: Vec::new(),
            windows,
            starts,
            b,
            t,
            vocab,
            shuffle,
            seed,
            state: LoaderState::default(),
        };
        l.make_order();
        Ok(l)
    }

    /// Opens every shard in `paths` and builds a loader.
    pub fn open(
        paths: &[PathBuf],
        b: usize,
        t: usize,
        vocab: usize,
        shuffle: Shuffle,
        seed: u64,
    ) -> Result<Loader, DataError> {
        let shards = paths
            .iter()
            .map(|p| Shard::open(p))
            .collect::<Result<_, _>>()?;
        Loader::new(shards, b, t, vocab, shuffle, seed)
    }

    fn make_order(&mut self) {
        if self.shuffle == Shuffle::Random {
            self.order.clear();
            return;
        }
        self.order = (0..self.windows.len() as u32).collect();
        if self.shuffle == Shuffle::Epoch {
            let mut r = Rng::new(self.seed ^ self.state.epoch.wrapping_mul(0xA24B_AED4_963E_E407));
            r.shuffle(&mut self.order);
        }
    }

    /// Batches per epoch (a partial last batch is dropped).
    pub fn batches_per_epoch(&self) -> usize {
        self.windows.len() / self.b
    }

    /// The current position.
    pub fn state(&self) -> LoaderState {
        self.state
    }

    /// Jumps to a saved position.
    pub fn set_state(&mut self, s: LoaderState) {
        let epoch_changed = s.epoch != self.state.epoch;
        self.state = s;
        if epoch_changed {
            self.make_order();
        }
    }

    /// Back to the first batch of epoch 0.
    pub fn reset(&mut self) {
        self.set_state(LoaderState::default());
    }

    /// Window `k` of the current batch as (shard, first token): from this epoch's
    /// order, or (`Shuffle::Random`) a uniformly random start over all shards drawn
    /// from a generator seeded by (seed, epoch, window index) alone, so that the
    /// loader's two integers are its whole state.
    fn window(&self, k: usize) -> (u32, u64) {
        let i = self.state.cursor + k as u64;
        if self.shuffle != Shuffle::Random {
            return self.windows[self.order[i as usize] as usize];
        }
        let key = self.seed
            ^ self.state.epoch.wrapping_mul(0xA24B_AED4_963E_E407)
            ^ i.wrapping_mul(0x9FB2_1C65_1E98_DF25);
        let total = self.starts.last().copied().unwrap_or(0);
        let g = Rng::new(key).below(total);
        let si = self.starts.partition_point(|&c| c <= g);
        let before = if si == 0 { 0 } else { self.starts[si - 1] };
        (si as u32, g - before)
    }

    /// The next batch; wraps to a new epoch when fewer than B windows remain (an
    /// epoch of random windows draws as many windows as the sequential epoch holds).
    pub fn next_batch(&mut self) -> Result<Batch, DataError> {
        if self.state.cursor as usize + self.b > self.windows.len() {
            self.state.epoch += 1;
            self.state.cursor = 0;
            self.make_order();
        }
        let (b, t) = (self.b, self.t);
        let mut inputs = Vec::with_capacity(b * t);
        let mut targets = Vec::with_capacity(b * t);
        for k in 0..b {
            let (si, off) = self.window(k);
            let s = &self.shards[si as usize];
            for i in 0..=t {
                let tok = s.token(off as usize + i) as u32;
                if tok as usize >= self.vocab {
                    return Err(DataError(format!(
                        "{}: token {tok} at position {} is not below vocab_size {}",
                        s.path().display(),
                        off as usize + i,
                        self.vocab
                    )));
                }
                if i < t {
                    inputs.push(tok);
                }
                if i > 0 {
                    targets.push(tok);
                }
            }
        }
        self.state.cursor += b as u64;
        Ok(Batch { inputs, targets })
    }

    /// Largest token id in all shards plus one (to size a char vocabulary).
    pub fn max_token(&self) -> usize {
        self.shards
            .iter()
            .flat_map(|s| (0..s.len()).map(move |i| s.token(i) as usize + 1))
            .max()
            .unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("llm-train-data-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn shard_round_trip_and_bad_headers() {
        let d = tmp("shard");
        let toks: Vec<u16> = (0..1000u32).map(|i| (i * 37 % 500) as u16).collect();
        let p = d.join("a.bin");
        write_shard(&p, &toks).unwrap();
        let s = Shard::open(&p).unwrap();
        assert_eq!(s.tokens(), toks);
        let bytes = std::fs::read(&p).unwrap();
        let mut bad = bytes.clone();
        bad[0] ^= 1;
        std::fs::write(d.join("b.bin"), &bad).unwrap();
        assert!(Shard::open(&d.join("b.bin"))
            .err()
            .unwrap()
            .0
            .contains("magic"));
        std::fs::write(d.join("c.bin"), &bytes[..bytes.len() - 2]).unwrap();
        assert!(Shard::open(&d.join("c.bin"))
            .err()
            .unwrap()
            .0
            .contains("1000 tokens"));
        std::fs::write(d.join("e.bin"), &bytes[..10]).unwrap();
        assert!(Shard::open(&d.join("e.bin"))
            .err()
            .unwrap()
            .0
            .contains("shorter"));
    }

    #[test]
    fn loader_windows_targets_shuffle_and_state() {
        let d = tmp("loader");
        let toks: Vec<u16> = (0..101u16).collect();
        let p = d.join("a.bin");
        write_shard(&p, &toks).unwrap();
        let mut l = Loader::open(std::slice::from_ref(&p), 2, 10, 200, Shuffle::Off, 1).unwrap();
        assert_eq!(l.batches_per_epoch(), 5);
        let b = l.next_batch().unwrap();
        assert_eq!(b.inputs[..10], (0..10).collect::<Vec<u32>>()[..]);
        assert_eq!(b.targets[..10], (1..11).collect::<Vec<u32>>()[..]);
        assert_eq!(b.inputs[10], 10);
        let saved = l.state();
        let next = l.next_batch().unwrap();
        l.set_state(saved);
        assert_eq!(l.next_batch().unwrap(), next);
        // Shuffled epochs cover every window once, in a seed-dependent order.
        let mut s = Loader::open(std::slice::from_ref(&p), 1, 10, 200, Shuffle::Epoch, 5).unwrap();
        let mut firsts: Vec<u32> = (0..10).map(|_| s.next_batch().unwrap().inputs[0]).collect();
        assert_ne!(firsts, (0..10).map(|i| i * 10).collect::<Vec<u32>>());
        firsts.sort();
        assert_eq!(firsts, (0..10).map(|i| i * 10).collect::<Vec<u32>>());
        // Out-of-vocabulary tokens are reported, not indexed.
        let mut small = Loader::open(std::slice::from_ref(&p), 2, 10, 50, Shuffle::Off, 1).unwrap();
        small.next_batch().unwrap();
        small.next_batch().unwrap();
        assert!(small
            .next_batch()
            .err()
            .unwrap()
            .0
            .contains("vocab_size 50"));
    }

    #[test]
    fn random_windows_are_seeded_stateless_and_cover_every_start() {
        let d = tmp("random");
        // Two shards of distinct tokens: a window's first token names its start.
        let a: Vec<u16> = (0..60u16).collect();
        let b: Vec<u16> = (100..130u16).collect();
        let (pa, pb) = (d.join("a.bin"), d.join("b.bin"));
        write_shard(&pa, &a).unwrap();
        write_shard(&pb, &b).unwrap();
        let paths = [pa, pb];
        let open = |seed| Loader::open(&paths, 3, 10, 200, Shuffle::Random, seed).unwrap();
        let mut l = open(7);
        let mut seen = std::collections::BTreeSet::new();
        let mut batches = Vec::new();
        for _ in 0..400 {
            let batch = l.next_batch().unwrap();
            for w in 0..3 {
                let x = &batch.inputs[w * 10..w * 10 + 10];
                let y = &batch.targets[w * 10..w * 10 + 10];
                // Consecutive tokens of one shard, targets shifted by one.
                assert!(x.windows(2).all(|p| p[1] == p[0] + 1), "{x:?}");
                assert_eq!(y[..9], x[1..]);
                assert_eq!(y[9], x[9] + 1);
                seen.insert(x[0]);
            }
            batches.push(batch);
        }
        // Every start 0..=49 of shard a and 100..=119 of shard b, nothing past the end.
        let want: std::collections::BTreeSet<u32> = (0..50).chain(100..120).collect();
        assert_eq!(seen, want);
        // The same seed gives the same batches; a saved state replays them.
        let mut again = open(7);
        assert_eq!(again.next_batch().unwrap(), batches[0]);
        let mut jump = open(7);
        jump.set_state(LoaderState {
            epoch: 0,
            cursor: 3,
        });
        assert_eq!(jump.next_batch().unwrap(), batches[1]);
        // Epochs are as long as the sequential ones: 5 + 2 windows, 2 batches of 3.
        let mut e = open(7);
        e.next_batch().unwrap();
        e.next_batch().unwrap();
        e.next_batch().unwrap();
        assert_eq!(
            e.state(),
            LoaderState {
                epoch: 1,
                cursor: 3
            }
        );
        assert_ne!(open(8).next_batch().unwrap(), batches[0]);
    }
}
