//! Bit-exactness against ggml: every fixture in `tests/data/ggml/` holds an f32 input,
//! the bytes ggml's own `ggml_quantize_chunk` (no importance matrix) made of it, and
//! the floats ggml's `to_float` made of those bytes. Our scalar reference path must
//! reproduce both exactly, and every dtype the table knows must have a fixture.
//!
//! The fixtures are written by `scripts/ggml-fixtures.sh` (C, linked against
//! llama.cpp's ggml-base); CI needs neither. Layout, all little-endian:
//!
//! ```text
//! offset   size  field
//! 0        8     magic "GGMLFIX1"
//! 8        4     u32 ggml type id
//! 12       4     u32 n, number of values
//! 16       8     u64 PRNG seed of the inputs
//! 24       4n    n x f32 inputs
//! 24+4n    4     u32 byte count m
//! 28+4n    m     quantised bytes (ggml block layout)
//! 28+4n+m  4n    n x f32 dequantised values
//! ```
//!
//! The dequantised values are compared bit for bit with no tolerance: ggml-base is
//! built without FMA (ggml-quants.c has no fused multiply-add instructions on x86-64,
//! which the fixture script checks), so every `d * q - m` there is a rounded multiply
//! followed by a rounded subtract, which is what Rust computes too.

use llm_format::quant::{dequantize_vec, quantize};
use llm_format::DType;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

struct Fixture {
    path: PathBuf,
    type_id: u32,
    seed: u64,
    input: Vec<f32>,
    bytes: Vec<u8>,
    dequantized: Vec<f32>,
}

/// A little-endian cursor that names the file and field when the data runs out.
struct Cursor<'a> {
    path: &'a Path,
    data: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize, what: &str) -> &'a [u8] {
        let end = self.at.checked_add(n).filter(|&e| e <= self.data.len());
        let end = end.unwrap_or_else(|| {
            panic!(
                "{}: truncated at byte {} reading {what}",
                self.path.display(),
                self.at
            )
        });
        let s = &self.data[self.at..end];
        self.at = end;
        s
    }
    fn u32(&mut self, what: &str) -> u32 {
        u32::from_le_bytes(self.take(4, what).try_into().unwrap())
    }
    fn u64(&mut self, what: &str) -> u64 {
        u64::from_le_bytes(self.take(8, what).try_into().unwrap())
    }
    fn f32s(&mut self, n: usize, what: &str) -> Vec<f32> {
        self.take(4 * n, what)
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
            .collect()
    }
}

fn parse(path: &Path) -> Fixture {
    let data = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut c = Cursor {
        path,
        data: &data,
        at: 0,
    };
    assert_eq!(
        c.take(8, "magic"),
        b"GGMLFIX1",
        "{}: bad magic",
        path.display()
    );
    let type_id = c.u32("type id");
    let n = c.u32("value count") as usize;
    let seed = c.u64("seed");
    let input = c.f32s(n, "inputs");
    let m = c.u32("byte count") as usize;
    let bytes = c.take(m, "quantised bytes").to_vec();
    let dequantized = c.f32s(n, "dequantised values");
    assert_eq!(c.at, data.len(), "{}: trailing bytes", path.display());
    Fixture {
        path: path.to_path_buf(),
        type_id,
        seed,
        input,
        bytes,
        dequantized,
    }
}

fn fixtures() -> Vec<Fixture> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/ggml");
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "bin"))
        .collect();
    paths.sort();
    assert!(!paths.is_empty(), "no fixtures in {}", dir.display());
    paths.iter().map(|p| parse(p)).collect()
}

fn dtype_of(f: &Fixture) -> DType {
    DType::from_u32(f.type_id)
        .unwrap_or_else(|e| panic!("{}: ggml type {}: {e:?}", f.path.display(), f.type_id))
}

#[test]
fn quantize_matches_ggml_bytes() {
    for f in fixtures() {
        let dt = dtype_of(&f);
        let n = f.input.len() as u64;
        assert_eq!(
            Some(f.bytes.len() as u64),
            dt.bytes_for(n),
            "{}: {dt}: byte count for {n} values",
            f.path.display()
        );
        let ours = quantize(dt, &f.input)
            .unwrap_or_else(|| panic!("{}: {dt}: quantize refused {n} values", f.path.display()));
        if ours != f.bytes {
            let size = dt.block_bytes();
            let first = ours
                .chunks(size)
                .zip(f.bytes.chunks(size))
                .position(|(a, b)| a != b)
                .unwrap_or(0);
            let blocks = ours
                .chunks(size)
                .zip(f.bytes.chunks(size))
                .filter(|(a, b)| a != b)
                .count();
            let (a, b) = (&ours[first * size..], &f.bytes[first * size..]);
            let len = dt.block_len();
            panic!(
                "{}: {dt} (seed {:#x}): {blocks} of {} blocks differ, first block {first} \
                 (values {}..{})\n  ours: {:02x?}\n  ggml: {:02x?}",
                f.path.display(),
                f.seed,
                f.bytes.len() / size,
                first * len,
                (first + 1) * len,
                &a[..size.min(a.len())],
                &b[..size.min(b.len())],
            );
        }
    }
}

#[test]
fn dequantize_matches_ggml_floats() {
    for f in fixtures() {
        let dt = dtype_of(&f);
        let n = f.dequantized.len();
        let ours = dequantize_vec(dt, &f.bytes, n)
            .unwrap_or_else(|| panic!("{}: {dt}: dequantize refused", f.path.display()));
        let len = dt.block_len();
        for (i, (a, b)) in ours.iter().zip(&f.dequantized).enumerate() {
            assert!(
                a.to_bits() == b.to_bits(),
                "{}: {dt}: value {i} (block {}): ours {a:e} ({:#010x}), ggml {b:e} ({:#010x})",
                f.path.display(),
                i / len,
                a.to_bits(),
                b.to_bits()
            );
        }
    }
}

/// A dtype added to the table without a fixture (or a fixture for a type the table
/// dropped, or two fixtures for one type) fails here.
#[test]
fn every_dtype_has_one_fixture() {
    let mut by_id: BTreeMap<u32, Vec<PathBuf>> = BTreeMap::new();
    for f in fixtures() {
        dtype_of(&f);
        by_id.entry(f.type_id).or_default().push(f.path);
    }
    for (id, paths) in &by_id {
        assert_eq!(
            paths.len(),
            1,
            "several fixtures for ggml type {id}: {paths:?}"
        );
    }
    let missing: Vec<String> = DType::ALL
        .iter()
        .filter(|d| !by_id.contains_key(&d.to_u32()))
        .map(|d| format!("{d} (ggml type {})", d.to_u32()))
        .collect();
    assert!(
        missing.is_empty(),
        "no fixture in tests/data/ggml for {missing:?}; run scripts/ggml-fixtures.sh"
    );
}
