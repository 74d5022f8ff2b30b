//! Shared helpers of the importer tests: a seeded RNG, scratch directories, and
//! writing an imported model through the real `.llm` writer and reader.
#![allow(dead_code)]

use llm_format::{DType, LlmFile};
use llm_train::import::ImportedModel;
use std::path::PathBuf;

/// xorshift64*: deterministic, seeded per test.
pub struct Rng(u64);

impl Rng {
    /// Stream `seed` of the test's seed (`seed ^ test_seed(0)`, see
    /// [`llm_train::rng::test_seed`]: without `LLMRT_TEST_SEED`, exactly `seed`).
    pub fn new(seed: u64) -> Self {
        Rng((seed ^ llm_train::rng::test_seed(0)).max(1))
    }
    /// Next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    /// Uniform in [-1, 1), never exactly 0.
    pub fn f32(&mut self) -> f32 {
        loop {
            let v = ((self.next_u64() >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0;
            if v != 0.0 {
                return v;
            }
        }
    }
    /// `n` values in [-1, 1).
    pub fn vec(&mut self, n: usize) -> Vec<f32> {
        (0..n).map(|_| self.f32()).collect()
    }
    /// Uniform below `n`.
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
}

/// A fresh scratch directory for one test.
pub fn scratch(name: &str) -> PathBuf {
    let d = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("import_{name}"));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Little-endian bytes of f32 values.
pub fn le(x: &[f32]) -> Vec<u8> {
    x.iter().flat_map(|v| v.to_le_bytes()).collect()
}

/// Writes `m` with the real writer (matrices as `dtype`), parses it back with the
/// real reader and checks the layout; returns the file's bytes.
pub fn write_and_check(m: &ImportedModel, dtype: Option<DType>) -> Vec<u8> {
    let bytes = m
        .to_writer(dtype.map(Into::into))
        .unwrap()
        .to_bytes()
        .unwrap();
    let f = LlmFile::parse(&bytes).unwrap();
    let opts = f.options().unwrap();
    assert_eq!(opts, m.opts);
    f.check_layout(&opts).unwrap();
    f.verify_all().unwrap();
    let tok = f.tokenizer().unwrap();
    assert_eq!(tok.tokens.len(), opts.vocab_size);
    bytes
}

/// The f32 values of tensor `name` of a parsed file (must be stored F32).
pub fn f32_tensor(f: &LlmFile<'_>, name: &str) -> Vec<f32> {
    let t = f.tensor(name).unwrap_or_else(|| panic!("missing {name}"));
    assert_eq!(t.dtype, DType::F32, "{name}");
    t.data
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

/// Asserts two f32 slices are bit-identical, naming the first difference.
pub fn assert_bits(got: &[f32], want: &[f32], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (i, (a, b)) in got.iter().zip(want).enumerate() {
        assert_eq!(a.to_bits(), b.to_bits(), "{what}[{i}]: {a} vs {b}");
    }
}
