//! Shared test helpers: the crate's one [`test_seed`] (a fresh seed per run, printed;
//! `LLMRT_TEST_SEED` replays it), a seeded RNG, a random file builder, and a hand
//! encoder independent of the writer for hostile files.
#![allow(dead_code, unused_imports)] // each test binary uses a part

pub use llm_format::testing::{fresh_seed, test_seed};

use llm_format::{DType, LlmWriter, Value};
use std::borrow::Cow;

/// splitmix64.
pub struct Rng(pub u64);

impl Rng {
    /// The generator of a test (named by `_test`; the harness prints the name beside
    /// the captured seed line): a fresh seed per run ([`fresh_seed`]), or
    /// `LLMRT_TEST_SEED`, printed so a failure can be replayed.
    pub fn fresh(_test: &str) -> Rng {
        Rng(test_seed(fresh_seed()))
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E3779B97F4A7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58476D1CE4E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D049BB133111EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, n).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    /// Uniform in [-1, 1), never exactly zero.
    pub fn f32(&mut self) -> f32 {
        loop {
            let v = (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0;
            if v != 0.0 {
                return v;
            }
        }
    }

    pub fn f32s(&mut self, n: usize, scale: f32) -> Vec<f32> {
        (0..n).map(|_| self.f32() * scale).collect()
    }

    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next_u64() as u8).collect()
    }
}

/// One value of every type, scalars and arrays, with random contents.
pub fn every_value(r: &mut Rng) -> Vec<(String, Value<'static>)> {
    let s = |x: &str| Value::Str(Cow::Owned(x.to_string()));
    let mut v: Vec<(String, Value<'static>)> = vec![
        ("t.u8".into(), Value::U8(r.next_u64() as u8)),
        ("t.i8".into(), Value::I8(r.next_u64() as i8)),
        ("t.u16".into(), Value::U16(r.next_u64() as u16)),
        ("t.i16".into(), Value::I16(r.next_u64() as i16)),
        ("t.u32".into(), Value::U32(r.next_u64() as u32)),
        ("t.i32".into(), Value::I32(r.next_u64() as i32)),
        ("t.f32".into(), Value::F32(r.f32() * 1e3)),
        ("t.bool".into(), Value::Bool(r.next_u64() & 1 == 1)),
        ("t.str".into(), s("héllo ▁wörld 🦀 \u{0} tab\t")),
        ("t.empty_str".into(), s("")),
        ("t.u64".into(), Value::U64(r.next_u64())),
        ("t.i64".into(), Value::I64(r.next_u64() as i64)),
        ("t.f64".into(), Value::F64(r.f32() as f64 * 1e-3 + 1e300)),
        ("t.empty_array".into(), Value::Array(vec![])),
    ];
    let n = 1 + r.below(5) as usize;
    let arrays: Vec<(&str, Vec<Value<'static>>)> = vec![
        (
            "u8",
            (0..n).map(|_| Value::U8(r.next_u64() as u8)).collect(),
        ),
        (
            "i8",
            (0..n).map(|_| Value::I8(r.next_u64() as i8)).collect(),
        ),
        (
            "u16",
            (0..n).map(|_| Value::U16(r.next_u64() as u16)).collect(),
        ),
        (
            "i16",
            (0..n).map(|_| Value::I16(r.next_u64() as i16)).collect(),
        ),
        (
            "u32",
            (0..n).map(|_| Value::U32(r.next_u64() as u32)).collect(),
        ),
        (
            "i32",
            (0..n).map(|_| Value::I32(r.next_u64() as i32)).collect(),
        ),
        ("f32", (0..n).map(|_| Value::F32(r.f32())).collect()),
        ("bool", (0..n).map(|i| Value::Bool(i % 2 == 0)).collect()),
        ("str", (0..n).map(|i| s(&"ab▁".repeat(i))).collect()),
        ("u64", (0..n).map(|_| Value::U64(r.next_u64())).collect()),
        (
            "i64",
            (0..n).map(|_| Value::I64(r.next_u64() as i64)).collect(),
        ),
        ("f64", (0..n).map(|_| Value::F64(r.f32() as f64)).collect()),
    ];
    for (name, items) in arrays {
        v.push((format!("t.array_{name}"), Value::Array(items)));
    }
    v
}

/// A random shape for `dtype` with 1..=4 dims, last dim a block multiple.
pub fn random_shape(r: &mut Rng, dtype: DType) -> Vec<usize> {
    let ndim = 1 + r.below(4) as usize;
    let mut shape: Vec<usize> = (0..ndim).map(|_| 1 + r.below(3) as usize).collect();
    let bl = dtype.block_len();
    let last = shape.len() - 1;
    shape[last] = if bl == 1 {
        1 + r.below(40) as usize
    } else {
        bl * (1 + r.below(3) as usize)
    };
    shape
}

/// A writer with every value type and one or two tensors of every dtype, each from
/// random f32 data (never all zeros).
pub fn random_writer(r: &mut Rng) -> LlmWriter {
    let mut w = LlmWriter::new();
    for (k, v) in every_value(r) {
        w.add_meta(k, v);
    }
    for (i, dt) in DType::ALL.into_iter().enumerate() {
        for j in 0..1 + r.below(2) {
            let shape = random_shape(r, dt);
            let n: usize = shape.iter().product();
            let x = r.f32s(n, 2.0);
            w.add_tensor_f32(format!("w{i}.{j}.{dt}"), dt, &shape, &x)
                .expect("valid tensor");
        }
    }
    w
}

/// A small valid file: a few metadata entries and tensors.
pub fn small_file(r: &mut Rng) -> Vec<u8> {
    let mut w = LlmWriter::new();
    w.add_meta("k.str", Value::from("ab▁c"));
    w.add_meta("k.u32", Value::U32(7));
    w.add_meta(
        "k.arr",
        Value::Array(vec![Value::from("x"), Value::from("yz")]),
    );
    w.add_meta(
        "k.f",
        Value::Array(vec![Value::F32(r.f32()), Value::F32(r.f32())]),
    );
    w.add_tensor_f32("a", DType::F32, &[3], &r.f32s(3, 1.0))
        .expect("valid");
    w.add_tensor_f32("b", DType::Q8_0, &[2, 32], &r.f32s(64, 1.0))
        .expect("valid");
    w.add_tensor_f32("c", DType::F16, &[5], &r.f32s(5, 1.0))
        .expect("valid");
    w.to_bytes().expect("writes")
}

// ---- a hand encoder (independent of the writer) ----

pub const HEADER_LEN: usize = 56;

pub fn u32le(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_le_bytes());
}
pub fn u64le(out: &mut Vec<u8>, v: u64) {
    out.extend_from_slice(&v.to_le_bytes());
}
pub fn strle(out: &mut Vec<u8>, s: &[u8]) {
    u64le(out, s.len() as u64);
    out.extend_from_slice(s);
}

/// A directory entry, field by field.
pub struct RawTensor {
    pub name: Vec<u8>,
    pub dtype: u32,
    pub dims: Vec<u64>,
    pub offset: u64,
    pub size: u64,
    pub checksum: u64,
}

impl RawTensor {
    pub fn encode(&self, out: &mut Vec<u8>) {
        strle(out, &self.name);
        u32le(out, self.dtype);
        u32le(out, self.dims.len() as u32);
        for &d in &self.dims {
            u64le(out, d);
        }
        u64le(out, self.offset);
        u64le(out, self.size);
        u64le(out, self.checksum);
    }
}

/// Assembles a file from raw sections: `meta` is the encoded metadata entries (their
/// count given separately so tests can lie), `dir` the directory entries, `data` the
/// data section. Computes the checksum and padding as the spec says.
pub fn assemble(n_meta: u64, meta: &[u8], n_tensors: u64, dir: &[u8], data: &[u8]) -> Vec<u8> {
    let mut out = vec![0u8; HEADER_LEN];
    out.extend_from_slice(meta);
    out.extend_from_slice(dir);
    let cs_off = out.len() as u64;
    let data_off = (cs_off + 8).div_ceil(64) * 64;
    let mut h = Vec::new();
    h.extend_from_slice(b"LLMF");
    u32le(&mut h, 1);
    u32le(&mut h, 0);
    u32le(&mut h, 64);
    u64le(&mut h, n_meta);
    u64le(&mut h, n_tensors);
    u64le(&mut h, cs_off);
    u64le(&mut h, data_off);
    u64le(&mut h, data.len() as u64);
    out[..HEADER_LEN].copy_from_slice(&h);
    let cs = xxhash_rust::xxh3::xxh3_64(&out);
    u64le(&mut out, cs);
    out.resize(data_off as usize, 0);
    out.extend_from_slice(data);
    out
}

pub use llm_format::testing::{reseal, touch_everything};
