//! The CPU matrix kernels against references.
//!
//! * `matmul_ref` (the scalar reference) against an f64 product of the dequantised
//!   weights and the unquantised activations, per dtype, with an error bound that
//!   accounts for f32 rounding and (for block dtypes) the 8-bit activation blocks;
//! * every SIMD path this CPU has, on 1–3 threads, against `matmul_ref`.
//!
//! Inputs are fresh random numbers each run (the seed is printed; set
//! `LLMRT_TEST_SEED` to replay one, see `common`), weights sit at odd addresses, and
//! outputs are poisoned with NaN first.

mod common;

use common::Rng;

use llm_format::quant::{dequantize_vec, quantize};
use llm_format::{layout, ActQuant, DType, Layout};
use llmrt::kernels::{matmul_ref, Cpu, KernelError, KernelPath, Matrix};

/// A weight matrix of random values in `dtype`, stored at an odd address (the
/// kernels must not assume alignment), with its dequantised values.
struct Weights {
    buf: Vec<u8>,
    deq: Vec<f32>,
    rows: usize,
    cols: usize,
    dtype: DType,
}

impl Weights {
    fn random(rng: &mut Rng, dtype: DType, rows: usize, cols: usize) -> Weights {
        let w = rng.vec(rows * cols);
        let bytes = quantize(dtype, &w).expect("whole blocks");
        let deq = dequantize_vec(dtype, &bytes, rows * cols).expect("same size");
        let mut buf = vec![0u8; 1];
        buf.extend_from_slice(&bytes);
        Weights {
            buf,
            deq,
            rows,
            cols,
            dtype,
        }
    }
    fn matrix(&self) -> Matrix<'_> {
        Matrix::new(self.dtype, &self.buf[1..], self.rows, self.cols).expect("valid matrix")
    }
    /// The same weights stored in `to` (at an odd address too).
    fn in_layout(&self, to: Layout) -> Weights {
        let rb = self.cols / self.dtype.block_len() * self.dtype.block_bytes();
        let mut buf = vec![0u8; 1];
        buf.extend_from_slice(&layout::from_rows(to, &self.buf[1..], rb));
        Weights {
            buf,
            deq: self.deq.clone(),
            ..*self
        }
    }
}

/// `Σ|w||x|` per output `[n, rows]`.
fn abs_dots(w: &Weights, x: &[f32], n: usize) -> Vec<f64> {
    let mut out = vec![0.0; n * w.rows];
    for i in 0..n {
        for r in 0..w.rows {
            let wr = &w.deq[r * w.cols..(r + 1) * w.cols];
            let xi = &x[i * w.cols..(i + 1) * w.cols];
            out[i * w.rows + r] = wr
                .iter()
                .zip(xi)
                .map(|(a, b)| (*a as f64 * *b as f64).abs())
                .sum();
        }
    }
    out
}

/// `Σ(w·x)²` per output `[n, rows]`.
fn square_dots(w: &Weights, x: &[f32], n: usize) -> Vec<f64> {
    let mut out = vec![0.0; n * w.rows];
    for i in 0..n {
        for r in 0..w.rows {
            let wr = &w.deq[r * w.cols..(r + 1) * w.cols];
            let xi = &x[i * w.cols..(i + 1) * w.cols];
            out[i * w.rows + r] = wr
                .iter()
                .zip(xi)
                .map(|(a, b)| (*a as f64 * *b as f64).powi(2))
                .sum();
        }
    }
    out
}

/// bf16's unit roundoff: 8 significant bits, round to nearest even.
const U_BF16: f64 = 1.0 / 256.0;

/// How far an output of the bf16 dot products (`Cpu::bf16_prompts`) may be from the
/// f32 reference, for F16 or BF16 weights: the activations are rounded to bf16 and,
/// for F16, so are the weights, so each term `w·x` becomes `w·x·(1 + δ)` with
/// `|δ| <= a = 2u + u²` (F16) or `u` (BF16), `u = 2⁻⁸`; products of bf16 values are
/// exact in f32. Returns two bounds:
/// * worst case: `a·Σ|w||x|` (every rounding against us);
/// * sqrt(K)-style: the roundings of different columns are independent with mean
///   about 0, so by Hoeffding `P(|Σ w·x·δ| >= t) <= 2·exp(-t²/(2·a²·Σ(w·x)²))`;
///   `t = 7.5·a·sqrt(Σ(w·x)²)` makes that 1e-12 per output.
///
/// Each plus the f32 summation of both sides (`every_path_matches_reference`'s
/// bound) and `vdpbf16ps`'s flushing of denormal results (`K·2⁻¹²⁶`).
///
/// F32 weights on the AMX tiles (`Cpu::f32_tile_products`) take three products of
/// split factors, `wₕxₕ + wₕxₗ + wₗxₕ` with `v = vₕ + vₗ + e`, `|vₗ| <= u·|v|·(1+u)`,
/// `|e| <= u²·|v|`: what they leave out is at most `a = 3u² + 3u³` of `|w·x|`, and the
/// f32 summation runs over `3·K` terms.
///
/// K-quant weights on the AMX tiles (`Cpu::kquant_tile_products`) are dequantised
/// exactly as the reference does and then, like F16, rounded to bf16 with the
/// activations, against the reference of exact activations ([`tile_reference`]).
fn bf16_bounds(dtype: DType, cols: usize, absd: f64, sqd: f64) -> (f64, f64) {
    let (a, terms) = match dtype {
        DType::F16 => (2.0 * U_BF16 + U_BF16 * U_BF16, 1.0),
        d if d.act_quant() == ActQuant::Q8K => (2.0 * U_BF16 + U_BF16 * U_BF16, 1.0),
        DType::BF16 => (U_BF16, 1.0),
        DType::F32 => (3.0 * U_BF16 * U_BF16 + 3.0 * U_BF16.powi(3), 3.0),
        d => panic!("no bf16 dots for {d}"),
    };
    let f32_sums =
        4.0 * (terms * cols as f64 + 2.0) * EPS * absd * 1.1 + cols as f64 * 2f64.powi(-126);
    (a * absd + f32_sums, 7.5 * a * sqd.sqrt() + f32_sums)
}

/// What the AMX tiles' K-quant products approximate: the dequantised weights times
/// the activations as they are (no Q8_K rounding), in f64, then f32.
fn tile_reference(w: &Weights, x: &[f32], n: usize) -> Vec<f32> {
    f64_reference(w, x, n, None)
        .0
        .iter()
        .map(|&v| v as f32)
        .collect()
}

/// Whether `cpu`'s product of `n` activation rows with `w` rounds its factors to bf16
/// (bf16 dot products, or the AMX tiles' F32 or K-quant products), so that
/// [`bf16_bounds`] hold it instead of the f32 bound; for the K-quant tiles `want` (the
/// scalar reference's product) becomes [`tile_reference`].
fn rounds_to_bf16(cpu: &Cpu, w: &Weights, x: &[f32], n: usize, want: &mut Vec<f32>) -> bool {
    let m = w.matrix();
    if cpu.kquant_tile_products(&m, n) {
        *want = tile_reference(w, x, n);
        return true;
    }
    cpu.bf16_products(w.dtype, n) || cpu.f32_tile_products(&m, n)
}

fn poisoned(len: usize) -> Vec<f32> {
    vec![f32::NAN; len]
}

const EPS: f64 = f32::EPSILON as f64;

/// f64 reference `y = x·Wᵀ` over the dequantised weights and exact activations, and
/// the bound each f32 output must meet:
/// * floats: `(cols+2)·ε·Σ|w||x|` (f32 summation of `cols` products);
/// * blocks, in addition, the activation quantisation: each x is replaced by `q·d16`
///   with `|x - q·d16| <= d/2 + 127·d·2⁻¹¹ < 0.6·d`, `d = amax_block/127` over the
///   activation block (32 values for Q8_0/Q8_1, 256 for Q8_K, whose `d` stays f32), so
///   `Σ_b 0.6·d_b·Σ_{j∈b}|w_j|`; and for Q4_1/Q5_1 (Q8_1 activations) the f16
///   rounding of `s = d·Σq` and of `d`: `Σ_b |m_b|·2⁻¹⁰·(Σ_{j∈b}|x_j| + 32·d_b)`.
///   The K-quants' minimums meet exact integer sums of the quants (`bsums`), so they
///   add only the activation rounding already counted.
fn f64_reference(
    w: &Weights,
    x: &[f32],
    n: usize,
    q8_1_min: Option<&[f32]>,
) -> (Vec<f64>, Vec<f64>) {
    let mut y = vec![0.0; n * w.rows];
    let mut bound = vec![0.0; n * w.rows];
    let absd = abs_dots(w, x, n);
    for i in 0..n {
        let xi = &x[i * w.cols..(i + 1) * w.cols];
        for r in 0..w.rows {
            let wr = &w.deq[r * w.cols..(r + 1) * w.cols];
            let o = i * w.rows + r;
            y[o] = wr.iter().zip(xi).map(|(a, b)| *a as f64 * *b as f64).sum();
            bound[o] = (w.cols as f64 + 2.0) * EPS * absd[o] + 1e-30;
            if w.dtype.is_quantized() {
                let ab = match w.dtype.act_quant() {
                    ActQuant::Q8K => 256,
                    _ => 32,
                };
                for (b, (wb, xb)) in wr.chunks(ab).zip(xi.chunks(ab)).enumerate() {
                    let amax = xb.iter().fold(0.0f64, |m, v| m.max(v.abs() as f64));
                    let d = amax / 127.0;
                    let wabs: f64 = wb.iter().map(|v| v.abs() as f64).sum();
                    bound[o] += 0.6 * d * wabs;
                    if let Some(mins) = q8_1_min {
                        let m = mins[r * (w.cols / 32) + b].abs() as f64;
                        let xabs: f64 = xb.iter().map(|v| v.abs() as f64).sum();
                        bound[o] += m * (2.0f64).powi(-10) * (xabs + 32.0 * d);
                    }
                }
            }
        }
    }
    (y, bound)
}

/// The f16 minimum `m` of every block of a type with Q8_1 activations (Q4_1, Q5_1:
/// `d` then `m` open the block).
fn q8_1_mins(w: &Weights) -> Option<Vec<f32>> {
    (w.dtype.act_quant() == ActQuant::Q8_1).then(|| {
        w.buf[1..]
            .chunks_exact(w.dtype.block_bytes())
            .map(|b| half::f16::from_le_bytes([b[2], b[3]]).to_f32())
            .collect()
    })
}

/// Columns of the product that is big enough to be split across threads.
fn split_cols(dtype: DType) -> usize {
    match dtype.block_len() {
        1 => 289,
        32 => 320,
        _ => 512,
    }
}

fn shapes(dtype: DType) -> Vec<(usize, usize)> {
    if dtype.block_len() == 256 {
        // Super-blocks: one, several, and a row of 9 (odd, past any 4- or 8-wide
        // grouping of super-blocks).
        vec![(1, 256), (7, 512), (13, 768), (33, 2304), (5, 1280)]
    } else if dtype.is_quantized() {
        // 2176 columns = 17 quads of 4 blocks: more than one column chunk of the
        // AVX-512 prompt path (16 quads), the second a single quad.
        vec![
            (1, 32),
            (7, 64),
            (13, 96),
            (33, 288),
            (5, 320),
            (67, 768),
            (13, 2176),
        ]
    } else {
        vec![
            (1, 1),
            (3, 7),
            (9, 15),
            (5, 17),
            (13, 33),
            (33, 100),
            (7, 257),
            (67, 288),
        ]
    }
}

#[test]
fn reference_matches_f64_for_every_dtype() {
    let mut rng = Rng::fresh();
    for dtype in DType::ALL {
        for (rows, cols) in shapes(dtype) {
            let w = Weights::random(&mut rng, dtype, rows, cols);
            let mins = q8_1_mins(&w);
            for n in [1, 3, 17] {
                let x = rng.vec(n * cols);
                let mut y = poisoned(n * rows);
                matmul_ref(&w.matrix(), &x, n, &mut y);
                let (want, bound) = f64_reference(&w, &x, n, mins.as_deref());
                let absd = abs_dots(&w, &x, n);
                for o in 0..y.len() {
                    let err = (y[o] as f64 - want[o]).abs();
                    assert!(
                        err <= bound[o],
                        "{dtype} {rows}x{cols} n={n} out {o}: {} vs f64 {} (err {err:e} > bound {:e})",
                        y[o],
                        want[o],
                        bound[o]
                    );
                }
                // The bound is a real constraint, not a blanket: over the outputs of a
                // product it is at most a few percent of the magnitude of the terms.
                // (Summed, since one row of a 2-bit type may keep only a few non-zero
                // weights that happen to meet small inputs.) Q8_K's blocks of 256 span
                // 8 of the inputs' 32-value scale groups, whose largest sets the step
                // for all, so their bound may reach 10%.
                let cap = match dtype.act_quant() {
                    ActQuant::Q8K => 0.10,
                    _ => 0.05,
                };
                let (sb, sa): (f64, f64) = (bound.iter().sum(), absd.iter().sum());
                assert!(
                    sb <= cap * sa + 1e-20,
                    "{dtype} {rows}x{cols} n={n}: loose bound {:.3} of the terms",
                    sb / sa
                );
            }
        }
    }
}

/// Every path on this CPU, on 1, 2 and 3 threads, against `matmul_ref`. Bound: both
/// compute the same integer block dots from bit-identical activation blocks (or the
/// same f32 products), so they differ only by f32 summation order:
/// `4·(cols+2)·ε·Σ|w|(|x| + d_block)`; F16/BF16 prompts on bf16 dot products
/// (`Cpu::bf16_prompts`) within [`bf16_bounds`] instead.
#[test]
fn every_path_matches_reference() {
    let mut rng = Rng::fresh();
    let paths = KernelPath::available();
    eprintln!("paths on this CPU: {paths:?}");
    assert_eq!(paths.first(), Some(&KernelPath::Scalar));
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
        assert!(paths.contains(&KernelPath::Avx2));
    }
    for &path in &paths {
        for threads in [1, 2, 3] {
            let mut cpu = Cpu::with_path(threads, path).expect("available");
            assert_eq!(cpu.path(), path);
            for dtype in DType::ALL {
                let mut sh = shapes(dtype);
                // Big enough to be split across threads.
                sh.push((301, split_cols(dtype)));
                for (rows, cols) in sh {
                    let w = Weights::random(&mut rng, dtype, rows, cols);
                    for n in [1, 3, 17] {
                        let x = rng.vec(n * cols);
                        let mut want = poisoned(n * rows);
                        matmul_ref(&w.matrix(), &x, n, &mut want);
                        let mut y = poisoned(n * rows);
                        cpu.matmul(&w.matrix(), &x, n, &mut y);
                        let absd = abs_dots(&w, &x, n);
                        let bf16 = rounds_to_bf16(&cpu, &w, &x, n, &mut want);
                        let sqd = square_dots(&w, &x, n);
                        for o in 0..y.len() {
                            let err = (y[o] as f64 - want[o] as f64).abs();
                            let bound = if bf16 {
                                bf16_bounds(dtype, cols, absd[o], sqd[o]).1 + 1e-30
                            } else {
                                4.0 * (cols as f64 + 2.0) * EPS * absd[o] * 1.1 + 1e-30
                            };
                            assert!(
                                err <= bound,
                                "{path} x{threads} {dtype} {rows}x{cols} n={n} out {o}: {} vs ref {} (err {err:e} > {bound:e})",
                                y[o],
                                want[o]
                            );
                        }
                    }
                }
            }
        }
    }
}

/// Matrices in layout `r16` on every path, with and without bf16 dot products (on the
/// AMX tiles where the CPU has them): within the reference's bounds, and for prompts on
/// AVX-512 (whose kernels read the layout from the file) bit for bit the product of
/// the same rows in plain order.
#[test]
fn r16_layout_matches_plain_rows_on_every_path() {
    let mut rng = Rng::fresh();
    for path in KernelPath::available() {
        for (threads, exact) in [(1, true), (2, true), (1, false), (2, false)] {
            let mut cpu = Cpu::with_path(threads, path).expect("available");
            cpu.set_f16_exact(exact);
            if !exact && !cpu.bf16_prompts() {
                continue; // no bf16 dot products on this path
            }
            for (dtype, rows, cols) in [
                (DType::F32, 48, 80),
                (DType::F32, 16, 2176),
                (DType::F16, 32, 96),
                (DType::F16, 48, 2176),
                (DType::BF16, 48, 64),
                (DType::BF16, 304, 2176),
            ] {
                let plain = Weights::random(&mut rng, dtype, rows, cols);
                let r16 = plain.in_layout(Layout::R16);
                let m16 = r16.matrix().with_layout(Layout::R16).expect("fits r16");
                for n in [1, 2, 7, 8, 9, 17, 33] {
                    let x = rng.vec(n * cols);
                    let mut want = poisoned(n * rows);
                    matmul_ref(&plain.matrix(), &x, n, &mut want);
                    let (mut y, mut y_plain) = (poisoned(n * rows), poisoned(n * rows));
                    cpu.matmul(&m16, &x, n, &mut y);
                    cpu.matmul(&plain.matrix(), &x, n, &mut y_plain);
                    let absd = abs_dots(&plain, &x, n);
                    let sqd = square_dots(&plain, &x, n);
                    let bf16 = cpu.bf16_products(dtype, n) || cpu.f32_tile_products(&m16, n);
                    for o in 0..y.len() {
                        let what = format!(
                            "{path} x{threads} exact={exact} {dtype} {rows}x{cols} n={n} out {o}: r16 {} plain {} ref {}",
                            y[o], y_plain[o], want[o]
                        );
                        if path == KernelPath::Avx512 && n > 1 {
                            assert_eq!(y[o].to_bits(), y_plain[o].to_bits(), "{what}");
                        }
                        let bound = if bf16 {
                            bf16_bounds(dtype, cols, absd[o], sqd[o]).1
                        } else {
                            4.0 * (cols as f64 + 2.0) * EPS * absd[o] * 1.1
                        };
                        let err = (y[o] as f64 - want[o] as f64).abs();
                        assert!(err <= bound + 1e-30, "{what} (err {err:e} > {bound:e})");
                    }
                }
            }
        }
    }
}

#[test]
fn matrix_layout_is_checked() {
    let mut rng = Rng::fresh();
    let w = Weights::random(&mut rng, DType::F16, 24, 32);
    let e = w.matrix().with_layout(Layout::R16).unwrap_err();
    assert_eq!(
        e.to_string(),
        "layout r16 does not fit a f16 weight matrix of 24x32"
    );
    let q = Weights::random(&mut rng, DType::Q8_0, 16, 32);
    assert!(q.matrix().with_layout(Layout::R16).is_err());
    assert!(q.matrix().with_layout(Layout::Rows).is_ok());
}

/// Large shapes through the default context (the path and thread split a model gets).
#[test]
fn default_context_matches_reference_at_model_shapes() {
    let mut rng = Rng::fresh();
    let mut cpu = Cpu::new(2);
    for dtype in DType::ALL {
        let cols_of = |c: usize| c.next_multiple_of(dtype.block_len());
        for (rows, cols) in [(768, cols_of(288)), (288, 768)] {
            let w = Weights::random(&mut rng, dtype, rows, cols);
            for n in [1, 5] {
                let x = rng.vec(n * cols);
                let mut want = poisoned(n * rows);
                matmul_ref(&w.matrix(), &x, n, &mut want);
                let mut y = poisoned(n * rows);
                cpu.matmul(&w.matrix(), &x, n, &mut y);
                let absd = abs_dots(&w, &x, n);
                let sqd = square_dots(&w, &x, n);
                let bf16 = rounds_to_bf16(&cpu, &w, &x, n, &mut want);
                for o in 0..y.len() {
                    let err = (y[o] as f64 - want[o] as f64).abs();
                    let bound = if bf16 {
                        bf16_bounds(dtype, cols, absd[o], sqd[o]).1
                    } else {
                        4.4 * (cols as f64 + 2.0) * EPS * absd[o]
                    };
                    assert!(
                        err <= bound,
                        "{} {dtype} {rows}x{cols} n={n}: {} vs {}",
                        cpu.path(),
                        y[o],
                        want[o]
                    );
                }
            }
        }
    }
}

/// The bf16 dot products of F16/BF16 prompts and of BF16 generation (`n = 1`; where
/// this CPU has them) against the f32 reference, within both of [`bf16_bounds`], on
/// shapes that stress the tiling:
/// one row, rows not a multiple of the 4-row chunks, columns not a multiple of 32,
/// 2176 columns (two weight chunks of the AVX-512 BF16 kernel: 2048 + 128), and
/// activation counts around its 6-wide tile. Where the CPU also has AMX tiles, both
/// kernels (`Cpu::set_amx`), with shapes around the tiles' 32 rows × 32 activations:
/// BF16 rows read straight from the matrix (64 × 256) and through the panel (67 × 288:
/// two whole panels and a ragged one); and F32 prompts there, as three products of
/// split factors (`Cpu::f32_tile_products`), and K-quant prompts dequantised to bf16
/// (`Cpu::kquant_tile_products`, against [`tile_reference`]; their generation keeps
/// Q8_K and meets the f32 bound). Prints the largest error seen in units of
/// `u·sqrt(Σ(w·x)²)` (F32: `u²·sqrt(Σ(w·x)²)`). Then the same products with
/// `set_f16_exact(true)` meet the f32 bound of `every_path_matches_reference`.
#[test]
fn bf16_prompt_dots_within_rounding_bounds() {
    let mut rng = Rng::fresh();
    for path in KernelPath::available() {
        for (threads, amx) in [(1, true), (2, true), (1, false), (2, false)] {
            let mut cpu = Cpu::with_path(threads, path).expect("available");
            // Where the CPU has the instructions, whether or not they are its default.
            cpu.set_f16_exact(false);
            cpu.set_amx(amx);
            if !cpu.bf16_prompts() {
                continue;
            }
            if cpu.amx_prompts() != amx {
                eprintln!("{path} (amx) x{threads}: skipped (no AMX tiles here, or LLMRT_AMX=0)");
                continue;
            }
            let kernel = if amx { "amx" } else { "bf16 dots" };
            let dtypes: &[DType] = if amx {
                &[
                    DType::F16,
                    DType::BF16,
                    DType::F32,
                    DType::Q4_K,
                    DType::Q5_K,
                    DType::Q6_K,
                    DType::Q3_K,
                ]
            } else {
                &[DType::F16, DType::BF16]
            };
            for &dtype in dtypes {
                let mut worst = 0.0f64;
                let unit = if dtype == DType::F32 {
                    U_BF16 * U_BF16
                } else {
                    U_BF16
                };
                let shapes = [
                    (1, 2176),
                    (13, 2176),
                    (7, 33),
                    (301, 289),
                    (5, 1),
                    (9, 768),
                    (64, 256),
                    (67, 288),
                    (67, 512),
                ];
                let kquant = dtype.act_quant() == ActQuant::Q8K;
                for (rows, cols) in shapes {
                    if cols % dtype.block_len() != 0 {
                        continue;
                    }
                    let w = Weights::random(&mut rng, dtype, rows, cols);
                    for n in [1, 2, 5, 6, 7, 13, 16, 17, 33] {
                        let x = rng.vec(n * cols);
                        let mut want = poisoned(n * rows);
                        matmul_ref(&w.matrix(), &x, n, &mut want);
                        let want_tiles = if kquant {
                            tile_reference(&w, &x, n)
                        } else {
                            want.clone()
                        };
                        let absd = abs_dots(&w, &x, n);
                        let sqd = square_dots(&w, &x, n);
                        for exact in [false, true] {
                            cpu.set_f16_exact(exact);
                            assert_eq!(cpu.bf16_prompts(), !exact);
                            let mut y = poisoned(n * rows);
                            cpu.matmul(&w.matrix(), &x, n, &mut y);
                            let kq_tiles = cpu.kquant_tile_products(&w.matrix(), n);
                            assert_eq!(kq_tiles, kquant && n > 1 && !exact);
                            let want = if kq_tiles { &want_tiles } else { &want };
                            for o in 0..y.len() {
                                let err = (y[o] as f64 - want[o] as f64).abs();
                                let what = format!(
                                    "{path} ({kernel}) x{threads} {dtype} {rows}x{cols} n={n} exact={exact} out {o}: {} vs ref {}",
                                    y[o], want[o]
                                );
                                if exact || (kquant && !kq_tiles) {
                                    let bound = 4.0 * (cols as f64 + 2.0) * EPS * absd[o] * 1.1;
                                    assert!(
                                        err <= bound + 1e-30,
                                        "{what} (err {err:e} > {bound:e})"
                                    );
                                    continue;
                                }
                                let (worst_case, sqrt_k) =
                                    bf16_bounds(dtype, cols, absd[o], sqd[o]);
                                assert!(
                                    err <= worst_case,
                                    "{what} (err {err:e} > worst case {worst_case:e})"
                                );
                                assert!(
                                    err <= sqrt_k,
                                    "{what} (err {err:e} > sqrt(K) bound {sqrt_k:e})"
                                );
                                if dtype == DType::F32 && n > 1 {
                                    assert!(cpu.f32_tile_products(&w.matrix(), n), "{what}");
                                }
                                worst = worst.max(err / (unit * sqd[o].sqrt()));
                            }
                        }
                    }
                }
                let u = if dtype == DType::F32 { "u²" } else { "u" };
                eprintln!(
                    "{path} ({kernel}) x{threads} {dtype}: largest error {worst:.2}·{u}·sqrt(Σ(w·x)²)"
                );
            }
        }
    }
}

/// Empty products (no activations, no rows, no columns) leave nothing behind and do not
/// panic on any path.
#[test]
fn empty_shapes_on_every_path() {
    for path in KernelPath::available() {
        let mut cpu = Cpu::with_path(2, path).expect("available");
        for dtype in DType::ALL {
            let bl = dtype.block_len();
            for (rows, cols, n) in [(0, 2 * bl, 3), (5, 0, 2), (4, bl, 0)] {
                let bytes = vec![0u8; rows * cols / bl * dtype.block_bytes()];
                let w = Matrix::new(dtype, &bytes, rows, cols).expect("valid");
                let x = vec![1.0f32; n * cols];
                let mut y = poisoned(n * rows);
                cpu.matmul(&w, &x, n, &mut y);
                // No columns: every output is the empty sum, 0.
                assert!(
                    y.iter().all(|v| *v == 0.0),
                    "{path} {dtype} {rows}x{cols} n={n}"
                );
            }
        }
    }
}

#[test]
fn matrix_new_checks_sizes() {
    let buf = vec![0u8; 34 * 4];
    assert!(Matrix::new(DType::Q8_0, &buf, 2, 64).is_ok());
    assert_eq!(
        Matrix::new(DType::Q8_0, &buf, 3, 64).unwrap_err(),
        KernelError::Length {
            dtype: DType::Q8_0,
            expected: 34 * 6,
            got: 34 * 4
        }
    );
    let e = Matrix::new(DType::Q4_0, &buf, 1, 33).unwrap_err();
    assert_eq!(
        e,
        KernelError::PartialBlock {
            dtype: DType::Q4_0,
            cols: 33
        }
    );
    assert!(e.to_string().contains("33"));
    assert!(matches!(
        Matrix::new(DType::F32, &buf, usize::MAX, 2),
        Err(KernelError::Overflow { .. })
    ));
    assert!(Matrix::new(DType::F16, &buf, 4, 17).is_ok());
}

#[test]
#[should_panic(expected = "n·cols")]
fn matmul_rejects_short_x() {
    let buf = vec![0u8; 4 * 6];
    let w = Matrix::new(DType::F32, &buf, 2, 3).expect("valid");
    let mut y = vec![0.0; 2];
    Cpu::new(1).matmul(&w, &[1.0, 2.0], 1, &mut y);
}

#[test]
fn paths_parse_and_force() {
    for p in KernelPath::ALL {
        assert_eq!(KernelPath::from_name(p.name()), Some(p));
        assert_eq!(
            Cpu::with_path(1, p).is_some(),
            KernelPath::available().contains(&p)
        );
    }
    assert_eq!(KernelPath::from_name("AVX2"), Some(KernelPath::Avx2));
    assert_eq!(KernelPath::from_name("sse9"), None);
    assert_eq!(
        Cpu::new(1).path(),
        std::env::var("LLMRT_KERNEL")
            .ok()
            .and_then(|s| KernelPath::from_name(&s))
            .filter(|p| KernelPath::available().contains(p))
            .unwrap_or_else(KernelPath::best)
    );
}

#[test]
fn pool_runs_every_part_once_and_propagates_panics() {
    use llmrt::kernels::pool::Pool;
    use std::sync::atomic::{AtomicUsize, Ordering};
    let pool = Pool::new(2);
    assert_eq!(pool.threads(), 3);
    for parts in 0..=3 {
        for _ in 0..200 {
            let hits: Vec<AtomicUsize> = (0..3).map(|_| AtomicUsize::new(0)).collect();
            pool.run(parts, &|k| {
                hits[k].fetch_add(1, Ordering::Relaxed);
            });
            for (k, h) in hits.iter().enumerate() {
                assert_eq!(h.load(Ordering::Relaxed), usize::from(k < parts));
            }
        }
    }
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        pool.run(3, &|k| {
            if k == 2 {
                panic!("boom");
            }
        })
    }));
    assert!(r.is_err());
    // Still usable afterwards.
    let hits = AtomicUsize::new(0);
    pool.run(3, &|_| {
        hits.fetch_add(1, Ordering::Relaxed);
    });
    assert_eq!(hits.load(Ordering::Relaxed), 3);
    // Pools dropped before (or right after) their threads start must still shut down.
    for jobs in 0..3 {
        for _ in 0..30 {
            let p = Pool::new(2);
            for _ in 0..jobs {
                p.run(5, &|_| ());
            }
        }
    }
}

/// Products that share an input, done as one job, give exactly what separate
/// `matmul` calls give (same quantised input, same row splits).
#[test]
fn matmul_many_equals_separate_products() {
    let mut rng = Rng::fresh();
    for path in KernelPath::available() {
        for threads in [1, 2, 3] {
            let mut one = Cpu::with_path(threads, path).expect("available");
            let mut many = Cpu::with_path(threads, path).expect("available");
            for dtype in DType::ALL {
                let cols = split_cols(dtype);
                let ws: Vec<Weights> = [301, 64, 33]
                    .iter()
                    .map(|&rows| Weights::random(&mut rng, dtype, rows, cols))
                    .collect();
                let mats: Vec<Matrix<'_>> = ws.iter().map(|w| w.matrix()).collect();
                for n in [1, 5] {
                    let x = rng.vec(n * cols);
                    let mut got: Vec<Vec<f32>> =
                        mats.iter().map(|m| poisoned(n * m.rows)).collect();
                    let mut outs: Vec<&mut [f32]> =
                        got.iter_mut().map(|v| v.as_mut_slice()).collect();
                    many.matmul_many(&mats, &x, n, &mut outs);
                    for (m, g) in mats.iter().zip(&got) {
                        let mut want = poisoned(n * m.rows);
                        one.matmul(m, &x, n, &mut want);
                        let same = want.iter().zip(g).all(|(a, b)| a.to_bits() == b.to_bits());
                        assert!(same, "{path} x{threads} {dtype} {}x{cols} n={n}", m.rows);
                    }
                }
            }
        }
    }
}
