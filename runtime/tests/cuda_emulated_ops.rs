//! The runtime's CUDA kernels other than the matmul — the embedding, the row-wise
//! operations, the activations, the position codes and the attention — run on the CPU
//! through the emulator (`llmrt_cuda::emu`: one std::thread per CUDA thread), with each
//! launcher's own geometry (its pub `config` functions), against the CPU's functions in
//! `llmrt::ops` where they exist and an f64 reference written here otherwise (SwiGLU,
//! attention), on fresh random inputs (the seed is printed; `LLMRT_TEST_SEED` replays
//! it). Outputs are poisoned with NaN first, so a value the kernel does not write fails.
//! None of these kernels loads more than 4 bytes at a time, so plain `Vec`s (4-byte
//! aligned) stand for device buffers.
//!
//! Needs a C++20 compiler (`$CXX`, default `g++`); without one each emulator test
//! prints `skipped ...` and returns. The host-side checks (token ids, shapes) run
//! everywhere.
#![cfg(feature = "cuda")]

mod common;

use common::Rng;
use llm_format::quant::{dequantize_vec, quantize};
use llm_format::DType;
use llmrt::cuda::attention::{self, Heads};
use llmrt::cuda::{act, embed, rope, rows};
use llmrt::ops;
use llmrt_cuda::emu::{self, EmuArg, EmuModule};
use llmrt_cuda::{CudaError, KernelFile};

const EPS: f64 = f32::EPSILON as f64;

/// The emulator build of `file`, or `None` (after saying so) without a compiler.
fn module(file: &'static KernelFile) -> Option<EmuModule> {
    if let Err(e) = emu::compiler() {
        eprintln!("skipped {}: no C++20 compiler ({e})", file.name);
        return None;
    }
    Some(EmuModule::build(file, &[]).expect("emulator build"))
}

fn nans(len: usize) -> Vec<f32> {
    vec![f32::NAN; len]
}

fn i32s(v: usize) -> EmuArg {
    EmuArg::I(v as i32)
}

fn null() -> EmuArg {
    EmuArg::P(std::ptr::null_mut())
}

/// Checks `got` against `want` element-wise with the tolerance `tol(i)`.
fn assert_close(what: &str, got: &[f32], want: &[f32], tol: impl Fn(usize) -> f64) {
    assert_eq!(got.len(), want.len(), "{what}: lengths");
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let t = tol(i);
        assert!(
            (g as f64 - w as f64).abs() <= t,
            "{what}: [{i}] = {g}, want {w} (tolerance {t:.3e})"
        );
    }
}

/// Checks that `got` is `want` bit for bit (operations that round once, as the CPU).
fn assert_exact(what: &str, got: &[f32], want: &[f32]) {
    assert_eq!(got.len(), want.len(), "{what}: lengths");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert_eq!(g.to_bits(), w.to_bits(), "{what}: [{i}] = {g}, want {w}");
    }
}

/// The largest |v| of each row of `d` values, repeated per element (the row's scale).
fn row_scale(v: &[f32], d: usize) -> Vec<f64> {
    v.chunks(d)
        .flat_map(|r| {
            let m = r.iter().fold(0.0f64, |m, x| m.max((*x as f64).abs()));
            std::iter::repeat_n(m, r.len())
        })
        .collect()
}

// ---------------------------------------------------------------------------------
// rows.cu

/// Norm tolerance: 1e-5 of the row's largest output. Each output is x·r·w (or
/// (x - mean)·rstd·w + b) with r from a sum over the row that the kernel takes in a
/// tree and the CPU serially: the sums' relative errors are at most about
/// sqrt(d)·eps ≈ 6e-6 for d = 2176 in practice (the rsqrt halves it), and the products
/// add a few roundings; 1e-5 of the row's scale leaves room without hiding an indexing
/// or formula error, which is off by O(1).
const NORM_TOL: f64 = 1e-5;

#[test]
fn norms_match_ops() {
    let Some(m) = module(&rows::FILE) else { return };
    let mut r = Rng::fresh();
    // One row; d not a multiple of 32 (70, 33); d past the block's 512 threads; rows
    // not a multiple of anything.
    for (n, d) in [(1, 70), (3, 2176), (5, 33), (2, 512), (7, 96)] {
        let x = r.vec(n * d);
        let w = r.vec(d);
        let b = r.vec(d);
        let eps = if d % 2 == 0 { 1e-5 } else { 1e-6 };
        let cfg = rows::norm_config(n, d).expect("geometry");

        let mut want = vec![0.0; n * d];
        ops::rmsnorm(&mut want, &x, &w, eps);
        let mut got = nans(n * d);
        let args = |out: EmuArg| {
            [
                out,
                emu::cptr(&x),
                emu::cptr(&w),
                i32s(n),
                i32s(d),
                EmuArg::F(eps),
            ]
        };
        m.launch("rmsnorm", cfg, &args(emu::ptr(&mut got)));
        let s = row_scale(&want, d);
        assert_close(&format!("rmsnorm {n}x{d}"), &got, &want, |i| {
            NORM_TOL * s[i]
        });

        // In place (out = x), as the forward pass may call it.
        let mut inplace = x.clone();
        let p = emu::ptr(&mut inplace);
        m.launch(
            "rmsnorm",
            cfg,
            &[p, p, emu::cptr(&w), i32s(n), i32s(d), EmuArg::F(eps)],
        );
        assert_close(&format!("rmsnorm in place {n}x{d}"), &inplace, &want, |i| {
            NORM_TOL * s[i]
        });

        for bias in [Some(&b), None] {
            let mut want = vec![0.0; n * d];
            ops::layernorm(&mut want, &x, &w, bias.map(|b| &b[..]), eps);
            let mut got = nans(n * d);
            m.launch(
                "layernorm",
                cfg,
                &[
                    emu::ptr(&mut got),
                    emu::cptr(&x),
                    emu::cptr(&w),
                    bias.map_or_else(null, |b| emu::cptr(b)),
                    i32s(n),
                    i32s(d),
                    EmuArg::F(eps),
                ],
            );
            let s = row_scale(&want, d);
            let what = format!("layernorm {n}x{d} bias {}", bias.is_some());
            assert_close(&what, &got, &want, |i| NORM_TOL * s[i]);
        }
    }
}

#[test]
fn head_norms_match_rmsnorm_in_place_per_row() {
    let Some(m) = module(&rows::FILE) else { return };
    let mut r = Rng::fresh();
    // (tokens, heads per row, hd): head sizes 40, 64, 128; piece counts that do not
    // fill the last block of 8 warps.
    for (n, heads, hd) in [(1, 5, 40), (3, 8, 64), (2, 3, 128), (1, 1, 64)] {
        let row = heads * hd;
        let x = r.vec(n * row);
        let w = r.vec(hd);
        let eps = 1e-6;
        let mut want = x.clone();
        for qi in want.chunks_exact_mut(row) {
            ops::rmsnorm_in_place(qi, &w, eps);
        }
        let mut got = x.clone();
        let pieces = n * row / hd;
        m.launch(
            "rmsnorm_heads",
            rows::heads_config(pieces).expect("geometry"),
            &[
                emu::ptr(&mut got),
                emu::cptr(&w),
                i32s(pieces),
                i32s(hd),
                EmuArg::F(eps),
            ],
        );
        // As NORM_TOL, per head (a sum over hd values).
        let s = row_scale(&want, hd);
        assert_close(&format!("head norm {n}x{heads}x{hd}"), &got, &want, |i| {
            NORM_TOL * s[i]
        });
    }
}

#[test]
fn adds_and_scale_match_ops_exactly() {
    let Some(m) = module(&rows::FILE) else { return };
    let mut r = Rng::fresh();
    // One rounding per element, as the CPU: bit for bit.
    for (n, d) in [(1, 70), (3, 257), (4, 1024)] {
        let count = n * d;
        let (x, y, b) = (r.vec(count), r.vec(count), r.vec(d));
        let cfg = rows::config(count).expect("geometry");

        let mut want = x.clone();
        ops::add(&mut want, &y);
        let mut got = x.clone();
        m.launch(
            "add",
            cfg,
            &[emu::ptr(&mut got), emu::cptr(&y), i32s(count)],
        );
        assert_exact(&format!("add {n}x{d}"), &got, &want);

        let mut want = x.clone();
        ops::add_bias(&mut want, &b);
        let mut got = x.clone();
        m.launch(
            "add_bias",
            cfg,
            &[emu::ptr(&mut got), emu::cptr(&b), i32s(count), i32s(d)],
        );
        assert_exact(&format!("add_bias {n}x{d}"), &got, &want);

        let s = 1.0 + r.unit().abs() * 40.0;
        let want: Vec<f32> = x.iter().map(|v| v * s).collect();
        let mut got = x.clone();
        m.launch(
            "scale",
            cfg,
            &[emu::ptr(&mut got), EmuArg::F(s), i32s(count)],
        );
        assert_exact(&format!("scale {n}x{d}"), &got, &want);
    }
}

// ---------------------------------------------------------------------------------
// act.cu

#[test]
fn activations_match_the_cpu() {
    let Some(m) = module(&act::FILE) else { return };
    let mut r = Rng::fresh();
    for count in [1usize, 70, 1000, 4099] {
        // Gates up to about ±17, and a few far out where e^-g overflows or vanishes.
        let mut g: Vec<f32> = r.vec(count).iter().map(|v| v * 4.0).collect();
        for (i, big) in [(0, -100.0), (count / 2, 95.0), (count - 1, -88.5)] {
            if count > 2 {
                g[i] = big;
            }
        }
        let h = r.vec(count);
        let cfg = act::config(count).expect("geometry");

        // SwiGLU against f64: expf within 2 ulp (the CPU's polynomial too), then a
        // division, an add and a product: 8 ulp of the result bounds it; an absolute
        // 1e-35 covers results that underflow (g < -87).
        let want: Vec<f32> = h
            .iter()
            .zip(&g)
            .map(|(&h, &g)| {
                let (h, g) = (h as f64, g as f64);
                (h * (g / (1.0 + (-g).exp()))) as f32
            })
            .collect();
        let mut got = h.clone();
        m.launch(
            "swiglu",
            cfg,
            &[emu::ptr(&mut got), emu::cptr(&g), i32s(count)],
        );
        assert_close(&format!("swiglu {count}"), &got, &want, |i| {
            8.0 * EPS * (want[i] as f64).abs() + 1e-35
        });

        // GELU against ops::gelu: tanhf may differ by 2 ulp of 1 between libraries, and
        // 0.5·u·(1 + t) carries that as 0.5·|u|·2.4e-7; 1e-6·|u| bounds it with room for
        // the products' roundings (and a fused multiply-add on the GPU).
        let mut want = g.clone();
        ops::gelu(&mut want);
        let mut got = g.clone();
        m.launch("gelu", cfg, &[emu::ptr(&mut got), i32s(count)]);
        assert_close(&format!("gelu {count}"), &got, &want, |i| {
            1e-6 * (g[i] as f64).abs() + 1e-30
        });

        // GeGLU against ops::geglu: as GELU, times |h|.
        let mut want = h.clone();
        ops::geglu(&mut want, &mut g.clone());
        let mut got = h.clone();
        m.launch(
            "geglu",
            cfg,
            &[emu::ptr(&mut got), emu::cptr(&g), i32s(count)],
        );
        assert_close(&format!("geglu {count}"), &got, &want, |i| {
            1e-6 * (g[i] as f64 * h[i] as f64).abs() + 1e-30
        });

        // ReLU: exact.
        let mut want = h.clone();
        ops::relu(&mut want);
        let mut got = h.clone();
        m.launch("relu", cfg, &[emu::ptr(&mut got), i32s(count)]);
        assert_exact(&format!("relu {count}"), &got, &want);
    }
}

// ---------------------------------------------------------------------------------
// rope.cu

#[test]
fn rope_matches_rope_table_and_rope() {
    let Some(m) = module(&rope::FILE) else { return };
    let mut r = Rng::fresh();
    // (heads, positions, base, YaRN attention factor): hd 40, 64, 128; GQA; position
    // 0 and a long one.
    let cases = [
        (
            Heads {
                n_heads: 4,
                n_kv_heads: 4,
                hd: 64,
            },
            vec![0u32, 1, 2],
            10000.0,
            1.0,
        ),
        (
            Heads {
                n_heads: 8,
                n_kv_heads: 2,
                hd: 128,
            },
            vec![5000, 17],
            1e6,
            1.1,
        ),
        (
            Heads {
                n_heads: 5,
                n_kv_heads: 1,
                hd: 40,
            },
            vec![123],
            10000.0,
            1.0,
        ),
    ];
    for (heads, pos, base, scale) in cases {
        let n = pos.len();
        let (qd, kvd, hd) = (heads.q_dim(), heads.kv_dim(), heads.hd);
        let freqs = ops::rope_freqs(hd, base);
        let (q, k) = (r.vec(n * qd), r.vec(n * kvd));
        let (mut wq, mut wk) = (q.clone(), k.clone());
        let mut cs = vec![0.0; hd];
        for (i, &p) in pos.iter().enumerate() {
            ops::rope_table(&mut cs, &freqs, p as usize, scale);
            ops::rope(&mut wq[i * qd..(i + 1) * qd], &cs);
            ops::rope(&mut wk[i * kvd..(i + 1) * kvd], &cs);
        }
        let dev_pos: Vec<i32> = pos.iter().map(|&p| p as i32).collect();
        let (mut gq, mut gk) = (q.clone(), k.clone());
        m.launch(
            "rope",
            rope::config(n, heads).expect("geometry"),
            &[
                emu::ptr(&mut gq),
                emu::ptr(&mut gk),
                emu::cptr(&freqs),
                emu::cptr(&dev_pos),
                i32s(n),
                i32s(qd),
                i32s(kvd),
                i32s(hd),
                EmuArg::F(scale),
                i32s(0),
            ],
        );
        // The angle is the same float product on both sides; cosf and sinf may differ
        // by 2 ulp between libraries, so each output (a·c - b·s) is within a few ulp of
        // (|a| + |b|)·scale: 1e-6 of that.
        let tol = |x: &[f32], i: usize| {
            let j = i & !1;
            1e-6 * scale as f64 * (x[j].abs() as f64 + x[j + 1].abs() as f64)
        };
        let what = format!("rope {heads:?} at {pos:?}");
        assert_close(&format!("{what} q"), &gq, &wq, |i| tol(&q, i));
        assert_close(&format!("{what} k"), &gk, &wk, |i| tol(&k, i));
    }
}

#[test]
fn position_codes_match_ops() {
    let Some(m) = module(&rope::FILE) else { return };
    let mut r = Rng::fresh();
    // d = 70, and odd d (the last value is left alone); position 0 and a long one.
    for (d, pos) in [
        (70usize, vec![0i32, 3000, 7]),
        (71, vec![1]),
        (64, vec![2047, 0]),
    ] {
        let n = pos.len();
        let x = r.vec(n * d);
        let mut want = x.clone();
        for (row, &p) in want.chunks_exact_mut(d).zip(&pos) {
            ops::add_sinusoidal(row, p as usize);
        }
        let div = rope::sinusoidal_divisors(d);
        let mut got = x.clone();
        m.launch(
            "add_sinusoidal",
            rope::sinusoidal_config(n, d).expect("geometry"),
            &[
                emu::ptr(&mut got),
                emu::cptr(&div),
                emu::cptr(&pos),
                i32s(n),
                i32s(d),
            ],
        );
        // The angles are the CPU's to the bit (same divisors, one division); sinf and
        // cosf may differ by 2 ulp of 1, and the add rounds once.
        assert_close(&format!("sinusoidal d={d} at {pos:?}"), &got, &want, |i| {
            1e-6 * (1.0 + x[i].abs() as f64)
        });
    }

    // Learned rows: one add per value, exact; a position outside the table gives NaN.
    let (max_len, d) = (9usize, 70usize);
    let table = r.vec(max_len * d);
    let pos = [0i32, 8, 3, 9, -1];
    let n = pos.len();
    let x = r.vec(n * d);
    let mut got = x.clone();
    m.launch(
        "add_pos_rows",
        rope::pos_rows_config(n, d).expect("geometry"),
        &[
            emu::ptr(&mut got),
            emu::cptr(&table),
            emu::cptr(&pos),
            i32s(n),
            i32s(d),
            i32s(max_len),
        ],
    );
    for (i, &p) in pos.iter().enumerate() {
        let g = &got[i * d..(i + 1) * d];
        if (0..max_len as i32).contains(&p) {
            let p = p as usize;
            let want: Vec<f32> = (0..d).map(|c| x[i * d + c] + table[p * d + c]).collect();
            assert_exact(&format!("position row {p}"), g, &want);
        } else {
            assert!(g.iter().all(|v| v.is_nan()), "position {p}: {g:?}");
        }
    }
}

// ---------------------------------------------------------------------------------
// attention.cu

/// One attention case: `heads` over a cache of `n_ctx` positions, one query per
/// position of `pos`, keys `window` back (usize::MAX: none).
fn attention_case(
    m: &EmuModule,
    r: &mut Rng,
    heads: Heads,
    n_ctx: usize,
    pos: &[i32],
    window: usize,
) {
    let what = format!("attention {heads:?} n_ctx {n_ctx} at {pos:?} window {window}");
    let n = pos.len();
    let (qd, kvd, hd) = (heads.q_dim(), heads.kv_dim(), heads.hd);
    let group = heads.n_heads / heads.n_kv_heads;
    let scale = 1.0 / (hd as f32).sqrt();
    // Sharper than uniform: scores of a few units.
    let q: Vec<f32> = r.vec(n * qd).iter().map(|v| v * 3.0).collect();
    let mut k = r.vec(n_ctx * kvd);
    let mut v = r.vec(n_ctx * kvd);
    // Rows no query may read (past the last position, before the first window) are NaN,
    // so reading one fails the test.
    let valid: Vec<&i32> = pos
        .iter()
        .filter(|&&p| p >= 0 && (p as usize) < n_ctx)
        .collect();
    let hi = valid.iter().map(|&&p| p as usize + 1).max().unwrap_or(0);
    let lo = valid
        .iter()
        .map(|&&p| (p as usize + 1).saturating_sub(window))
        .min()
        .unwrap_or(0);
    for t in (0..lo).chain(hi..n_ctx) {
        k[t * kvd..(t + 1) * kvd].fill(f32::NAN);
        v[t * kvd..(t + 1) * kvd].fill(f32::NAN);
    }
    let mut out = nans(n * qd);
    let window_arg = attention::window_arg(window, n_ctx).expect("a window");
    m.launch(
        "attention",
        attention::config(heads.n_heads, n).expect("geometry"),
        &[
            emu::ptr(&mut out),
            emu::cptr(&q),
            emu::cptr(&k),
            emu::cptr(&v),
            emu::cptr(pos),
            i32s(n),
            i32s(heads.n_heads),
            i32s(heads.n_kv_heads),
            i32s(hd),
            i32s(n_ctx),
            EmuArg::I(window_arg),
            EmuArg::F(scale),
        ],
    );
    for (i, &p) in pos.iter().enumerate() {
        for h in 0..heads.n_heads {
            let got = &out[i * qd + h * hd..i * qd + (h + 1) * hd];
            if p < 0 || p as usize >= n_ctx {
                assert!(got.iter().all(|x| x.is_nan()), "{what}: row {i} {got:?}");
                continue;
            }
            let p = p as usize;
            let kvh = h / group;
            let qh = &q[i * qd + h * hd..i * qd + (h + 1) * hd];
            let keys = (p + 1).saturating_sub(window)..p + 1;
            let col = |x: &[f32], t: usize, c: usize| x[t * kvd + kvh * hd + c] as f64;
            // f64 reference: softmax(scale·K·q)·V.
            let (mut scores, mut dot_mag) = (Vec::new(), 0.0f64);
            for t in keys.clone() {
                let (mut s, mut mag) = (0.0, 0.0);
                for (c, &qc) in qh.iter().enumerate() {
                    let prod = qc as f64 * col(&k, t, c);
                    s += prod;
                    mag += prod.abs();
                }
                scores.push(s * scale as f64);
                dot_mag = dot_mag.max(mag * scale as f64);
            }
            let max = scores.iter().fold(f64::NEG_INFINITY, |a, &b| a.max(b));
            let w: Vec<f64> = scores.iter().map(|s| (s - max).exp()).collect();
            let sum: f64 = w.iter().sum();
            // Tolerance, a worst-case bound on f32 roundings times the values' scale:
            // each score is a sum of hd products (hd/32 per lane, then 5 levels of the
            // warp sum, and the scale): an absolute error of (hd/32 + 7)·eps·Σ|q·k|·scale,
            // which the softmax passes on as a relative error of each weight (twice: the
            // weight and the sum); expf adds 2 ulp per weight; the weighted sum of up to
            // ATT_TILE values per tile plus a rescaling per tile adds (64 + 3·tiles + 8)
            // ulp of max|v|.
            let tiles = keys.len().div_ceil(64) as f64;
            let score_err = (hd as f64 / 32.0 + 7.0) * EPS * dot_mag;
            let rel = 2.0 * score_err + (64.0 + 3.0 * tiles + 8.0) * EPS;
            for (c, &g) in got.iter().enumerate() {
                let want: f64 = keys
                    .clone()
                    .zip(&w)
                    .map(|(t, wt)| wt * col(&v, t, c))
                    .sum::<f64>()
                    / sum;
                let vmax = keys.clone().fold(0.0f64, |a, t| a.max(col(&v, t, c).abs()));
                let tol = rel * vmax;
                let g = g as f64;
                assert!(
                    (g - want).abs() <= tol,
                    "{what}: query {i} head {h} [{c}] = {g}, want {want} (tolerance {tol:.3e})"
                );
            }
        }
    }
}

#[test]
fn attention_matches_f64_softmax() {
    let Some(m) = module(&attention::FILE) else {
        return;
    };
    let mut r = Rng::fresh();
    let heads = |n_heads, n_kv_heads, hd| Heads {
        n_heads,
        n_kv_heads,
        hd,
    };
    // Group 1, hd 64: position 0, one tile, three tiles (150 keys).
    attention_case(&m, &mut r, heads(4, 4, 64), 150, &[0, 77, 149], usize::MAX);
    // Group 4, hd 128: a window of 32 smaller than position 99; position 5 inside it.
    attention_case(&m, &mut r, heads(8, 2, 128), 100, &[99, 5], 32);
    // hd 40 (not a multiple of 32), group 2: 64 keys exactly (one full tile), 65 keys,
    // position 0.
    attention_case(
        &m,
        &mut r,
        heads(6, 3, 40),
        70,
        &[63, 64, 0, 69],
        usize::MAX,
    );
    // hd 256 (two columns per thread), group 2.
    attention_case(&m, &mut r, heads(2, 1, 256), 10, &[9, 3], usize::MAX);
    // A window of 1: the token's own value; a window past the cache is none.
    attention_case(&m, &mut r, heads(4, 1, 128), 300, &[200], 1);
    attention_case(&m, &mut r, heads(4, 1, 64), 40, &[39, 20], 1000);
    // Positions outside the cache answer NaN without reading it.
    attention_case(&m, &mut r, heads(2, 2, 64), 16, &[16, -1, 15], usize::MAX);
}

#[test]
fn kv_store_writes_rows_at_their_positions() {
    let Some(m) = module(&attention::FILE) else {
        return;
    };
    let mut r = Rng::fresh();
    let (n_ctx, kvd) = (20usize, 2 * 40);
    let pos = [3i32, 4, 19, 20, -1];
    let n = pos.len();
    let (k, v) = (r.vec(n * kvd), r.vec(n * kvd));
    let (kc0, vc0) = (r.vec(n_ctx * kvd), r.vec(n_ctx * kvd));
    let (mut kc, mut vc) = (kc0.clone(), vc0.clone());
    m.launch(
        "kv_store",
        attention::store_config(n, kvd).expect("geometry"),
        &[
            emu::ptr(&mut kc),
            emu::ptr(&mut vc),
            emu::cptr(&k),
            emu::cptr(&v),
            emu::cptr(&pos),
            i32s(n),
            i32s(kvd),
            i32s(n_ctx),
        ],
    );
    let (mut wk, mut wv) = (kc0, vc0);
    for (i, &p) in pos.iter().enumerate() {
        if (0..n_ctx as i32).contains(&p) {
            let p = p as usize;
            wk[p * kvd..(p + 1) * kvd].copy_from_slice(&k[i * kvd..(i + 1) * kvd]);
            wv[p * kvd..(p + 1) * kvd].copy_from_slice(&v[i * kvd..(i + 1) * kvd]);
        }
    }
    assert_exact("k cache", &kc, &wk);
    assert_exact("v cache", &vc, &wv);
}

// ---------------------------------------------------------------------------------
// embed.cu

/// The storage types the GPU embedding covers: every one of the format.
const DTYPES: [DType; DType::ALL.len()] = DType::ALL;

#[test]
fn embedding_rows_match_dequantised_rows() {
    let Some(m) = module(&embed::FILE) else {
        return;
    };
    let mut r = Rng::fresh();
    let vocab = 37usize;
    for dtype in DTYPES {
        let ds: &[usize] = match dtype.block_len() {
            1 => &[70, 64, 300],
            32 => &[64, 288],
            _ => &[256, 768],
        };
        for &d in ds {
            let e = r.vec(vocab * d);
            let bytes = quantize(dtype, &e).expect("whole blocks");
            let deq = dequantize_vec(dtype, &bytes, vocab * d).expect("same size");
            // The first and last ids, repeats, and ids out of range: the kernel's own
            // guard gives NaN rows there (the launcher refuses them before).
            let tokens = [0i32, (vocab - 1) as i32, 5, 5, vocab as i32, -1, 17];
            let n = tokens.len();
            let mut y = nans(n * d);
            m.launch(
                embed::kernel(dtype).expect("a kernel"),
                embed::config(n, d).expect("geometry"),
                &[
                    emu::cptr(&bytes),
                    emu::cptr(&tokens),
                    emu::ptr(&mut y),
                    i32s(n),
                    i32s(d),
                    i32s(vocab),
                ],
            );
            for (i, &t) in tokens.iter().enumerate() {
                let got = &y[i * d..(i + 1) * d];
                let what = format!("{} d={d} token {t}", dtype.name());
                if t < 0 || t as usize >= vocab {
                    assert!(got.iter().all(|x| x.is_nan()), "{what}: {got:?}");
                    continue;
                }
                let want = &deq[t as usize * d..(t as usize + 1) * d];
                // Decoding is exact or one rounding (q·d, q·d + m, (d·sc)·q - dmin·m;
                // the GPU may fuse the last two): one ulp of the row's largest value.
                let s = row_scale(want, d)[0];
                assert_close(&what, got, want, |_| EPS * s);
            }
        }
    }
}

#[test]
fn embedding_launcher_refuses_out_of_range_tokens() {
    assert_eq!(embed::check_tokens(&[0, 9, 3], 10), Ok(()));
    assert_eq!(embed::check_tokens(&[], 10), Ok(()));
    for bad in [&[3u32, 10][..], &[u32::MAX], &[9, 0, 11]] {
        match embed::check_tokens(bad, 10) {
            Err(CudaError::Shape(msg)) => {
                assert!(msg.contains("outside the vocabulary of 10"), "{msg}")
            }
            other => panic!("{bad:?}: {other:?}"),
        }
    }
    // A vocabulary past the kernels' int.
    assert!(embed::check_tokens(&[0], 1 << 31).is_err());
    for dtype in DTYPES {
        let name = embed::kernel(dtype).expect("covered");
        assert!(embed::FILE.functions.contains(&name), "{name}");
        assert_eq!(name, format!("embed_{}", dtype.name()));
    }
    // The tests cover every storage type of the format.
    for dtype in DType::ALL {
        assert!(DTYPES.contains(&dtype), "{} not tested", dtype.name());
    }
}

#[test]
fn host_checks_refuse_shapes_the_kernels_cannot_take() {
    let h = |n_heads, n_kv_heads, hd| Heads {
        n_heads,
        n_kv_heads,
        hd,
    };
    assert!(h(8, 2, 128).check().is_ok());
    assert!(h(8, 3, 128).check().is_err());
    assert!(h(8, 0, 128).check().is_err());
    assert!(h(4, 4, attention::HD_MAX + 2).check().is_err());
    assert!(h(4, 4, 0).check().is_err());
    assert_eq!(attention::window_arg(usize::MAX, 100), Ok(100));
    assert_eq!(attention::window_arg(7, 100), Ok(7));
    assert!(attention::window_arg(0, 100).is_err());
    assert!(attention::config(4, 0).is_err());
    assert!(attention::config(4, 70_000).is_err());
    let c = attention::config(5, 3).unwrap();
    assert_eq!(
        (c.grid_dim, c.block_dim.0),
        ((5, 3, 1), attention::THREADS as u32)
    );
    let c = rows::norm_config(3, 70).unwrap();
    assert_eq!((c.grid_dim.0, c.block_dim.0), (3, 96));
    assert_eq!(
        rows::norm_config(1, 4096).unwrap().block_dim.0,
        rows::NORM_THREADS as u32
    );
    assert!(rows::norm_config(0, 70).is_err());
    assert!(embed::config(70_000, 64).is_err());
}
