//! The KV cache of a [`Context`](crate::Context): the keys and values of every
//! evaluated position, per layer and KV head, stored as f32, f16 (the default) or
//! ggml's `q8_0` blocks, and grown in blocks of [`BLOCK`] positions as the
//! conversation grows, up to the context length.
//!
//! The forward pass writes a layer's new rows with [`KvCache::write`] (converted
//! once, when written) and reads them back for attention with [`KvCache::layer`],
//! which gives f32 rows: the f32 cache itself, or the f16 / q8_0 rows converted into
//! a scratch of one layer (all threads share the conversion), so the attention math
//! stays in f32.

use crate::error::Error;
use crate::kernels::{part_range, Cpu, SharedMut, VecOps};
use alloc::format;
use alloc::vec::Vec;
use half::f16;
use half::slice::HalfFloatSliceExt;
use llm_format::quant::{Block, BlockQ8_0};
use llm_format::ModelOptions;

/// Positions the cache grows by.
pub const BLOCK: usize = 256;

/// How the cache stores keys and values.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum CacheType {
    /// 32-bit floats (exact).
    F32,
    /// 16-bit floats: half the memory of f32, as llama.cpp's default.
    #[default]
    F16,
    /// ggml's `q8_0`: blocks of 32 int8 quants and one f16 scale (8.5 bits a value);
    /// the head size must be a multiple of 32.
    Q8_0,
}

impl CacheType {
    /// Every type.
    pub const ALL: [CacheType; 3] = [CacheType::F32, CacheType::F16, CacheType::Q8_0];

    /// Lower-case name, as `--cache-type` takes it.
    pub fn name(self) -> &'static str {
        match self {
            CacheType::F32 => "f32",
            CacheType::F16 => "f16",
            CacheType::Q8_0 => "q8_0",
        }
    }

    /// Parses a name as printed by [`CacheType::name`] (case-insensitive).
    pub fn from_name(s: &str) -> Option<CacheType> {
        CacheType::ALL
            .into_iter()
            .find(|t| t.name().eq_ignore_ascii_case(s.trim()))
    }

    /// The number this type has in a state file and the C ABI (0 f16, 1 f32, 2 q8_0).
    pub fn code(self) -> u32 {
        match self {
            CacheType::F16 => 0,
            CacheType::F32 => 1,
            CacheType::Q8_0 => 2,
        }
    }

    /// The type of [`CacheType::code`] `c`.
    pub fn from_code(c: u32) -> Option<CacheType> {
        CacheType::ALL.into_iter().find(|t| t.code() == c)
    }

    /// Bytes of one row of `hd` values (`hd` a multiple of 32 for q8_0).
    pub fn row_bytes(self, hd: usize) -> usize {
        match self {
            CacheType::F32 => 4 * hd,
            CacheType::F16 => 2 * hd,
            CacheType::Q8_0 => hd / 32 * core::mem::size_of::<BlockQ8_0>(),
        }
    }

    /// Checks that a model with head size `hd` can use this type.
    fn check(self, hd: usize) -> Result<(), Error> {
        if self == CacheType::Q8_0 && hd % 32 != 0 {
            return Err(Error::Invalid(format!(
                "cache type q8_0 needs a head size that is a multiple of 32, not {hd}"
            )));
        }
        Ok(())
    }
}

impl core::fmt::Display for CacheType {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.name())
    }
}

/// The rows of one layer's keys or values: `(kv_head, capacity, head_dim)`.
enum Rows {
    F32(Vec<f32>),
    F16(Vec<f16>),
    /// `head_dim / 32` blocks a row.
    Q8(Vec<BlockQ8_0>),
}

impl Rows {
    fn empty(ty: CacheType) -> Rows {
        match ty {
            CacheType::F32 => Rows::F32(Vec::new()),
            CacheType::F16 => Rows::F16(Vec::new()),
            CacheType::Q8_0 => Rows::Q8(Vec::new()),
        }
    }
}

/// Copies `old` (`heads × old_cap` rows of `per` elements) into a new buffer of
/// `heads × cap` rows, each head's rows at the start of its new stretch.
fn regrow<T: Copy>(
    old: &[T],
    heads: usize,
    old_cap: usize,
    cap: usize,
    per: usize,
    zero: T,
) -> Result<Vec<T>, ()> {
    let mut v = Vec::new();
    v.try_reserve_exact(heads * cap * per).map_err(|_| ())?;
    for h in 0..heads {
        v.extend_from_slice(&old[h * old_cap * per..(h + 1) * old_cap * per]);
        v.resize((h + 1) * cap * per, zero);
    }
    Ok(v)
}

/// One layer's keys and values for attention: KV head `h`'s rows are `k[h·stride..]`
/// and `v[h·stride..]`, `head_dim` values each, position-major; f32 rows, or (`k16`,
/// `v16`, with `k` and `v` empty) the f16 cache itself where the attention reads it
/// as it is ([`KvCache::view`]).
pub(crate) struct LayerKv<'a> {
    pub(crate) k: &'a [f32],
    pub(crate) v: &'a [f32],
    pub(crate) k16: &'a [f16],
    pub(crate) v16: &'a [f16],
    pub(crate) stride: usize,
}

/// The keys and values of every evaluated position. See the module documentation.
pub struct KvCache {
    ty: CacheType,
    n_kv: usize,
    hd: usize,
    n_ctx: usize,
    /// Positions allocated per layer and KV head.
    cap: usize,
    k: Vec<Rows>,
    v: Vec<Rows>,
    /// One layer's rows converted to f32 (`(kv_head, cap, head_dim)`; empty for f32).
    scratch_k: Vec<f32>,
    scratch_v: Vec<f32>,
}

impl KvCache {
    /// An empty cache of type `ty` for a model with options `o` and up to `n_ctx`
    /// positions; nothing is allocated until [`KvCache::reserve`].
    pub(crate) fn new(ty: CacheType, o: &ModelOptions, n_ctx: usize) -> Result<KvCache, Error> {
        ty.check(o.head_dim())?;
        Ok(KvCache {
            ty,
            n_kv: o.n_kv_heads,
            hd: o.head_dim(),
            n_ctx,
            cap: 0,
            k: (0..o.n_layers).map(|_| Rows::empty(ty)).collect(),
            v: (0..o.n_layers).map(|_| Rows::empty(ty)).collect(),
            scratch_k: Vec::new(),
            scratch_v: Vec::new(),
        })
    }

    /// Bytes a full cache of `n_ctx` positions takes (both K and V of every layer,
    /// plus the f32 conversion scratch of one layer for f16 and q8_0); `None` on
    /// overflow or a type the model cannot use.
    pub fn bytes_for(ty: CacheType, o: &ModelOptions, n_ctx: usize) -> Option<u64> {
        ty.check(o.head_dim()).ok()?;
        let rows = (o.n_kv_heads as u64).checked_mul(n_ctx as u64)?;
        let cache = rows
            .checked_mul(ty.row_bytes(o.head_dim()) as u64)?
            .checked_mul(2 * o.n_layers as u64)?;
        let scratch = match ty {
            CacheType::F32 => 0,
            _ => rows.checked_mul(8 * o.head_dim() as u64)?,
        };
        cache.checked_add(scratch)
    }

    /// The storage type.
    pub fn cache_type(&self) -> CacheType {
        self.ty
    }

    /// Positions allocated (a multiple of [`BLOCK`], or the context length).
    pub fn capacity(&self) -> usize {
        self.cap
    }

    /// Bytes allocated now, scratch included.
    pub fn bytes(&self) -> u64 {
        self.bytes_at(self.cap)
    }

    /// Grows the cache (and its scratch) to hold at least `len` positions, by whole
    /// blocks of [`BLOCK`] up to the context length. Fails cleanly with
    /// [`Error::NoMemory`], leaving the cache as it was, when memory runs out.
    pub(crate) fn reserve(&mut self, len: usize) -> Result<(), Error> {
        if len <= self.cap {
            return Ok(());
        }
        let cap = len.div_ceil(BLOCK).saturating_mul(BLOCK).min(self.n_ctx);
        debug_assert!(cap >= len, "{len} positions past the context");
        let (heads, hd, old) = (self.n_kv, self.hd, self.cap);
        let oom = |cap: usize| Error::NoMemory {
            what: format!("the KV cache of {cap} positions"),
            needed: self.bytes_at(cap),
            available: None,
        };
        // Build every new buffer first, so that a failure leaves the cache intact.
        let mut scratch = [Vec::new(), Vec::new()];
        if self.ty != CacheType::F32 {
            for s in &mut scratch {
                s.try_reserve_exact(heads * cap * hd)
                    .map_err(|_| oom(cap))?;
                s.resize(heads * cap * hd, 0.0);
            }
        }
        let mut grown = Vec::new();
        grown
            .try_reserve_exact(2 * self.k.len())
            .map_err(|_| oom(cap))?;
        for rows in self.k.iter().chain(&self.v) {
            let r = match rows {
                Rows::F32(o) => regrow(o, heads, old, cap, hd, 0.0).map(Rows::F32),
                Rows::F16(o) => regrow(o, heads, old, cap, hd, f16::ZERO).map(Rows::F16),
                Rows::Q8(o) => {
                    let zero = BlockQ8_0 {
                        d: f16::ZERO,
                        qs: [0; 32],
                    };
                    regrow(o, heads, old, cap, hd / 32, zero).map(Rows::Q8)
                }
            };
            grown.push(r.map_err(|_| oom(cap))?);
        }
        let layers = self.k.len();
        self.v = grown.split_off(layers);
        self.k = grown;
        let [sk, sv] = scratch;
        self.scratch_k = sk;
        self.scratch_v = sv;
        self.cap = cap;
        Ok(())
    }

    /// What [`KvCache::bytes`] would be at a capacity of `cap` positions.
    fn bytes_at(&self, cap: usize) -> u64 {
        let rows = (self.n_kv * cap) as u64;
        let scratch = if self.ty == CacheType::F32 {
            0
        } else {
            8 * self.hd as u64
        };
        rows * (2 * self.k.len() as u64 * self.ty.row_bytes(self.hd) as u64 + scratch)
    }

    /// Stores layer `l`'s keys and values of positions `pos0..pos0 + n`, given as
    /// rows of `kv_dim` (`[n, n_kv · head_dim]`), converting them to the cache type.
    ///
    /// # Panics
    /// If the positions are past [`KvCache::capacity`] or the lengths disagree.
    pub(crate) fn write(&mut self, l: usize, pos0: usize, k: &[f32], v: &[f32]) {
        let (hd, kv) = (self.hd, self.n_kv * self.hd);
        let n = k.len() / kv;
        assert!(k.len() == n * kv && v.len() == n * kv && pos0 + n <= self.cap);
        for (rows, src) in [(&mut self.k[l], k), (&mut self.v[l], v)] {
            for i in 0..n {
                for h in 0..self.n_kv {
                    let row = h * self.cap + pos0 + i;
                    let x = &src[i * kv + h * hd..i * kv + (h + 1) * hd];
                    match rows {
                        Rows::F32(r) => r[row * hd..(row + 1) * hd].copy_from_slice(x),
                        Rows::F16(r) => r[row * hd..(row + 1) * hd].convert_from_f32_slice(x),
                        Rows::Q8(r) => {
                            let nb = hd / 32;
                            for (b, xs) in r[row * nb..(row + 1) * nb]
                                .iter_mut()
                                .zip(x.chunks_exact(32))
                            {
                                *b = BlockQ8_0::quantize(xs);
                            }
                        }
                    }
                }
            }
        }
    }

    /// Makes layer `l`'s keys and values of positions `0..len` readable through
    /// [`KvCache::view`]: nothing for the f32 cache, nor for the f16 cache when
    /// `f16_ok` (the attention reads it as it is); otherwise converted into the f32
    /// scratch, split across `cpu`'s threads by positions.
    pub(crate) fn prepare(&mut self, cpu: &Cpu, l: usize, len: usize, f16_ok: bool) {
        assert!(len <= self.cap);
        let (hd, cap, heads) = (self.hd, self.cap, self.n_kv);
        if f16_ok && matches!(self.k[l], Rows::F16(_)) {
            return;
        }
        if let (Rows::F32(_), Rows::F32(_)) = (&self.k[l], &self.v[l]) {
            return;
        }
        let (sk, sv) = (
            SharedMut::new(&mut self.scratch_k),
            SharedMut::new(&mut self.scratch_v),
        );
        let (rk, rv) = (&self.k[l], &self.v[l]);
        let vec = cpu.vecops();
        let parts = cpu.threads().min(len).max(1);
        cpu.parallel(parts, &|p| {
            let (p0, p1) = part_range(p, parts, len, 1);
            if p0 >= p1 {
                return;
            }
            for h in 0..heads {
                let (r0, r1) = (h * cap + p0, h * cap + p1);
                for (rows, out) in [(rk, sk), (rv, sv)] {
                    // SAFETY: rows r0..r1 of the scratch, which this part alone takes
                    // (its positions of head h); the scratch outlives `parallel`.
                    let dst = unsafe { out.slice(r0 * hd, (r1 - r0) * hd) };
                    to_f32(vec, rows, r0, r1, hd, dst);
                }
            }
        });
    }

    /// Layer `l`'s keys and values: the f32 cache itself, the f16 cache itself when
    /// `f16_ok` (as given to the [`KvCache::prepare`] of this layer, which then left
    /// it as it is), or the scratch that prepare filled.
    pub(crate) fn view(&self, l: usize, f16_ok: bool) -> LayerKv<'_> {
        let stride = self.cap * self.hd;
        let none: (&[f16], &[f16]) = (&[], &[]);
        match (&self.k[l], &self.v[l]) {
            (Rows::F32(k), Rows::F32(v)) => LayerKv {
                k,
                v,
                k16: none.0,
                v16: none.1,
                stride,
            },
            (Rows::F16(k16), Rows::F16(v16)) if f16_ok => LayerKv {
                k: &[],
                v: &[],
                k16,
                v16,
                stride,
            },
            _ => LayerKv {
                k: &self.scratch_k,
                v: &self.scratch_v,
                k16: none.0,
                v16: none.1,
                stride,
            },
        }
    }

    /// Replaces positions `0..len` of every layer with `src`'s (a cache of the same
    /// type and shape: another sequence of the same context), growing as needed.
    /// Fails cleanly with [`Error::NoMemory`], leaving the cache as it was.
    pub(crate) fn copy_prefix(&mut self, src: &KvCache, len: usize) -> Result<(), Error> {
        assert!(len <= src.cap && self.ty == src.ty && self.k.len() == src.k.len());
        self.reserve(len)?;
        let (heads, hd) = (self.n_kv, self.hd);
        let pairs = self
            .k
            .iter_mut()
            .zip(&src.k)
            .chain(self.v.iter_mut().zip(&src.v));
        for (dst, from) in pairs {
            match (dst, from) {
                (Rows::F32(d), Rows::F32(s)) => copy_heads(d, s, heads, len * hd),
                (Rows::F16(d), Rows::F16(s)) => copy_heads(d, s, heads, len * hd),
                (Rows::Q8(d), Rows::Q8(s)) => copy_heads(d, s, heads, len * hd / 32),
                _ => unreachable!("caches of one context share their type"),
            }
        }
        Ok(())
    }

    /// Appends the stored bytes of layer `l`'s keys (`values` false) or values of
    /// positions `0..len`, head by head, little-endian (f32, f16 bits, or q8_0 blocks
    /// as `d` bits then 32 quants).
    #[cfg(feature = "std")]
    pub(crate) fn put_rows(&self, l: usize, values: bool, len: usize, out: &mut Vec<u8>) {
        let rows = if values { &self.v[l] } else { &self.k[l] };
        let hd = self.hd;
        for h in 0..self.n_kv {
            let (r0, r1) = (h * self.cap, h * self.cap + len);
            match rows {
                Rows::F32(r) => {
                    for x in &r[r0 * hd..r1 * hd] {
                        out.extend_from_slice(&x.to_le_bytes());
                    }
                }
                Rows::F16(r) => {
                    for x in &r[r0 * hd..r1 * hd] {
                        out.extend_from_slice(&x.to_bits().to_le_bytes());
                    }
                }
                Rows::Q8(r) => {
                    for b in &r[r0 * hd / 32..r1 * hd / 32] {
                        out.extend_from_slice(&b.d.to_bits().to_le_bytes());
                        out.extend(b.qs.iter().map(|&q| q as u8));
                    }
                }
            }
        }
    }

    /// Reads back what [`KvCache::put_rows`] wrote for positions `0..len` (already
    /// reserved); `bytes` is exactly `n_kv · len · row_bytes` long.
    #[cfg(feature = "std")]
    pub(crate) fn get_rows(&mut self, l: usize, values: bool, len: usize, bytes: &[u8]) {
        let hd = self.hd;
        let (heads, cap) = (self.n_kv, self.cap);
        assert!(len <= cap && bytes.len() == heads * len * self.ty.row_bytes(hd));
        let rows = if values {
            &mut self.v[l]
        } else {
            &mut self.k[l]
        };
        let per_head = bytes.len() / heads.max(1);
        for h in 0..heads {
            let src = &bytes[h * per_head..(h + 1) * per_head];
            let r0 = h * cap;
            match rows {
                Rows::F32(r) => {
                    for (x, b) in r[r0 * hd..].iter_mut().zip(src.chunks_exact(4)) {
                        *x = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
                    }
                }
                Rows::F16(r) => {
                    for (x, b) in r[r0 * hd..].iter_mut().zip(src.chunks_exact(2)) {
                        *x = f16::from_bits(u16::from_le_bytes([b[0], b[1]]));
                    }
                }
                Rows::Q8(r) => {
                    for (x, b) in r[r0 * hd / 32..].iter_mut().zip(src.chunks_exact(34)) {
                        x.d = f16::from_bits(u16::from_le_bytes([b[0], b[1]]));
                        for (q, &u) in x.qs.iter_mut().zip(&b[2..]) {
                            *q = u as i8;
                        }
                    }
                }
            }
        }
    }
}

/// Copies the first `n` elements of each of the `heads` equal stretches of `src`
/// into the start of the matching stretch of `dst` (the caches' heads, of different
/// capacities).
fn copy_heads<T: Copy>(dst: &mut [T], src: &[T], heads: usize, n: usize) {
    let (per, sper) = (dst.len() / heads.max(1), src.len() / heads.max(1));
    for h in 0..heads {
        dst[h * per..h * per + n].copy_from_slice(&src[h * sper..h * sper + n]);
    }
}

/// Rows `r0..r1` of `rows` (`hd` values each) as f32, into `dst`.
fn to_f32(vec: VecOps, rows: &Rows, r0: usize, r1: usize, hd: usize, dst: &mut [f32]) {
    match rows {
        Rows::F32(r) => dst.copy_from_slice(&r[r0 * hd..r1 * hd]),
        Rows::F16(r) => vec.widen_f16(&r[r0 * hd..r1 * hd], dst),
        Rows::Q8(r) => {
            for (b, out) in r[r0 * hd / 32..r1 * hd / 32]
                .iter()
                .zip(dst.chunks_exact_mut(32))
            {
                let d = b.d.to_f32();
                for (o, &q) in out.iter_mut().zip(&b.qs) {
                    *o = q as f32 * d;
                }
            }
        }
    }
}
