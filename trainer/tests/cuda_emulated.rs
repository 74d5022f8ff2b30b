//! The CUDA kernels run on the CPU through `llmrt_cuda::emu` (`cuda/src/emu/cuda_emu.h`:
//! one std::thread per CUDA thread, barriers for __syncthreads and warp shuffles), against
//! the CPU trainer's reference functions, on fresh random inputs. This checks the
//! kernels' arithmetic and indexing on machines without a GPU; the launchers and the real
//! device are covered by `cuda_kernels.rs` on a GPU. Tolerances as there: element-wise
//! `|got - want| <= rtol * max(|want|, rms(want))`, rtol 1e-5 (fp32) / 1e-2 (bf16).
//!
//! Needs a C++20 compiler (`$CXX`, default `g++`); without one it prints
//! `skipped: no C++20 compiler (...)` and returns.

use half::bf16;
use llm_train::cuda::kernels::{GpuFloat, KernelFile, Precision};
use llm_train::cuda::launch::{
    column_chunks, column_grid, elementwise, rope_tables, warp_per_row, AttnGeometry, TokenBuckets,
    BLOCK,
};
use llm_train::cuda::{activation, attention, bias_grad, cast, classifier, embedding};
use llm_train::cuda::{adamw, grad_norm, layernorm, rmsnorm, rope};
use llm_train::layers::attention::AttnShape;
use llm_train::layers::embedding::PosAdd;
use llm_train::layers::{
    attention as cpu_attn, embedding as cpu_emb, gelu, layernorm as cpu_ln, relu,
    rmsnorm as cpu_rms, rope as cpu_rope, softmax_ce, swiglu,
};
use llm_train::optim::{adamw_update, AdamParams};
use llm_train::rng::Rng;

mod cuda_util;
use cuda_util::{assert_close, rng, rtol};
use llmrt_cuda::emu::{compiler, cptr as c, ptr as p, EmuArg as A, EmuModule as Emu};
use std::sync::OnceLock;

/// Normal(0, scale) values rounded through T (as f32) and in T.
fn rand<T: GpuFloat>(r: &mut Rng, n: usize, scale: f64) -> (Vec<f32>, Vec<T>) {
    let t: Vec<T> = (0..n)
        .map(|_| T::from_f32((r.normal() * scale) as f32))
        .collect();
    (t.iter().map(|x| x.to_f32()).collect(), t)
}

fn f<T: GpuFloat>(v: &[T]) -> Vec<f32> {
    v.iter().map(|x| x.to_f32()).collect()
}

fn zeros<T: GpuFloat>(n: usize) -> Vec<T> {
    vec![T::from_f32(0.0); n]
}

/// Builds `file` at both precisions and runs `case` on each; skips without a compiler.
fn each_precision(test: &str, file: &'static KernelFile, case: impl Fn(&Emu, &mut Rng, Precision)) {
    if let Err(e) = compiler() {
        eprintln!("skipped {test}: no C++20 compiler ({e})");
        return;
    }
    let mut r = rng(test);
    for prec in Precision::ALL {
        let emu = Emu::build(file, prec.variant()).expect("emulator build");
        case(&emu, &mut r, prec);
    }
}

/// bias_grad.cu built once per precision for the norms' parameter gradients.
fn bias_grad_emu(prec: Precision) -> &'static Emu {
    static BUILT: [OnceLock<Emu>; 2] = [OnceLock::new(), OnceLock::new()];
    BUILT[usize::from(prec == Precision::Bf16)]
        .get_or_init(|| Emu::build(&bias_grad::FILE, prec.variant()).expect("emulator build"))
}

/// Column sums through bias_grad.cu's finish kernel, as the launchers do.
fn finish<T: GpuFloat>(
    out: &mut [T],
    partial: &[f32],
    offset: usize,
    chunks: usize,
    cols: usize,
    stride: usize,
) {
    let emu = bias_grad_emu(T::PRECISION);
    emu.launch(
        "column_sum_finish",
        elementwise(cols).unwrap(),
        &[
            p(out),
            c(&partial[offset..]),
            A::I(chunks as i32),
            A::I(cols as i32),
            A::L(stride as i64),
        ],
    );
}

fn layernorm_case<T: GpuFloat>(emu: &Emu, r: &mut Rng) {
    let (n, ch) = (21usize, 100usize);
    let (x, xt) = rand::<T>(r, n * ch, 2.0);
    let ((w, wt), (b, bt)) = (rand::<T>(r, ch, 1.0), rand::<T>(r, ch, 1.0));
    let (mut want, mut m, mut rs) = (vec![0.0f32; n * ch], vec![0.0f32; n], vec![0.0f32; n]);
    cpu_ln::layernorm_forward(&mut want, &mut m, &mut rs, &x, &w, Some(&b), ch, 1e-5);
    let (mut out, mut gm, mut gr) = (zeros::<T>(n * ch), vec![0.0f32; n], vec![0.0f32; n]);
    emu.launch(
        "layernorm_forward",
        warp_per_row(n).unwrap(),
        &[
            p(&mut out),
            p(&mut gm),
            p(&mut gr),
            c(&xt),
            c(&wt),
            c(&bt),
            A::I(n as i32),
            A::I(ch as i32),
            A::F(1e-5),
        ],
    );
    assert_close("layernorm out", &f(&out), &want, rtol::<T>());
    assert_close("layernorm mean", &gm, &m, 1e-5);
    assert_close("layernorm rstd", &gr, &rs, 1e-5);

    let (dout, dot) = rand::<T>(r, n * ch, 1.0);
    let ((mut gx, gxt), (mut gw, gwt), (mut gb, gbt)) = (
        rand::<T>(r, n * ch, 1.0),
        rand::<T>(r, ch, 1.0),
        rand::<T>(r, ch, 1.0),
    );
    cpu_ln::layernorm_backward(&mut gx, &mut gw, Some(&mut gb), &dout, &x, &w, &m, &rs, ch);
    let mut dx = gxt;
    emu.launch(
        "layernorm_backward_input",
        warp_per_row(n).unwrap(),
        &[
            p(&mut dx),
            c(&dot),
            c(&xt),
            c(&wt),
            c(&gm),
            c(&gr),
            A::I(n as i32),
            A::I(ch as i32),
            A::I(1),
        ],
    );
    assert_close("layernorm dinp", &f(&dx), &gx, rtol::<T>());
    let (chunks, per) = column_chunks(n);
    let mut partial = vec![0.0f32; chunks * 2 * ch];
    emu.launch(
        "layernorm_backward_params_partial",
        column_grid(n, ch).unwrap(),
        &[
            p(&mut partial),
            c(&dot),
            c(&xt),
            c(&gm),
            c(&gr),
            A::I(n as i32),
            A::I(ch as i32),
            A::I(per as i32),
        ],
    );
    let (mut dw, mut db) = (gwt, gbt);
    finish(&mut dw, &partial, 0, chunks, ch, 2 * ch);
    finish(&mut db, &partial, ch, chunks, ch, 2 * ch);
    assert_close("layernorm dweight", &f(&dw), &gw, rtol::<T>());
    assert_close("layernorm dbias", &f(&db), &gb, rtol::<T>());

    let (a, at) = rand::<T>(r, n * ch, 1.0);
    let resid: Vec<f32> = a
        .iter()
        .zip(&x)
        .map(|(u, v)| T::from_f32(u + v).to_f32())
        .collect();
    cpu_ln::layernorm_forward(&mut want, &mut m, &mut rs, &resid, &w, None, ch, 1e-5);
    let mut res = zeros::<T>(n * ch);
    emu.launch(
        "fused_residual_layernorm_forward",
        warp_per_row(n).unwrap(),
        &[
            p(&mut res),
            p(&mut out),
            p(&mut gm),
            p(&mut gr),
            c(&at),
            c(&xt),
            c(&wt),
            A::P(std::ptr::null_mut()),
            A::I(n as i32),
            A::I(ch as i32),
            A::F(1e-5),
        ],
    );
    assert_close("fused residual", &f(&res), &resid, rtol::<T>());
    assert_close("fused layernorm", &f(&out), &want, rtol::<T>());
}

#[test]
fn layernorm_kernels_match_cpu() {
    each_precision("layernorm", &layernorm::FILE, |e, r, prec| {
        dispatch!(prec, layernorm_case, e, r)
    });
}

fn rmsnorm_case<T: GpuFloat>(emu: &Emu, r: &mut Rng) {
    let (n, ch) = (19usize, 72usize);
    let (x, xt) = rand::<T>(r, n * ch, 2.0);
    let (w, wt) = rand::<T>(r, ch, 1.0);
    let (mut want, mut rs) = (vec![0.0f32; n * ch], vec![0.0f32; n]);
    cpu_rms::rmsnorm_forward(&mut want, &mut rs, &x, &w, ch, 1e-6);
    let (mut out, mut gr) = (zeros::<T>(n * ch), vec![0.0f32; n]);
    emu.launch(
        "rmsnorm_forward",
        warp_per_row(n).unwrap(),
        &[
            p(&mut out),
            p(&mut gr),
            c(&xt),
            c(&wt),
            A::I(n as i32),
            A::I(ch as i32),
            A::F(1e-6),
        ],
    );
    assert_close("rmsnorm out", &f(&out), &want, rtol::<T>());
    assert_close("rmsnorm rstd", &gr, &rs, 1e-5);
    let (dout, dot) = rand::<T>(r, n * ch, 1.0);
    let ((mut gx, gxt), (mut gw, gwt)) = (rand::<T>(r, n * ch, 1.0), rand::<T>(r, ch, 1.0));
    cpu_rms::rmsnorm_backward(&mut gx, &mut gw, &dout, &x, &w, &rs, ch);
    let mut dx = gxt;
    emu.launch(
        "rmsnorm_backward_input",
        warp_per_row(n).unwrap(),
        &[
            p(&mut dx),
            c(&dot),
            c(&xt),
            c(&wt),
            c(&gr),
            A::I(n as i32),
            A::I(ch as i32),
            A::I(1),
        ],
    );
    assert_close("rmsnorm dinp", &f(&dx), &gx, rtol::<T>());
    let (chunks, per) = column_chunks(n);
    let mut partial = vec![0.0f32; chunks * ch];
    emu.launch(
        "rmsnorm_backward_params_partial",
        column_grid(n, ch).unwrap(),
        &[
            p(&mut partial),
            c(&dot),
            c(&xt),
            c(&gr),
            A::I(n as i32),
            A::I(ch as i32),
            A::I(per as i32),
        ],
    );
    let mut dw = gwt;
    finish(&mut dw, &partial, 0, chunks, ch, ch);
    assert_close("rmsnorm dweight", &f(&dw), &gw, rtol::<T>());
    let (a, at) = rand::<T>(r, n * ch, 1.0);
    let resid: Vec<f32> = a
        .iter()
        .zip(&x)
        .map(|(u, v)| T::from_f32(u + v).to_f32())
        .collect();
    cpu_rms::rmsnorm_forward(&mut want, &mut rs, &resid, &w, ch, 1e-6);
    let mut res = zeros::<T>(n * ch);
    emu.launch(
        "fused_residual_rmsnorm_forward",
        warp_per_row(n).unwrap(),
        &[
            p(&mut res),
            p(&mut out),
            p(&mut gr),
            c(&at),
            c(&xt),
            c(&wt),
            A::I(n as i32),
            A::I(ch as i32),
            A::F(1e-6),
        ],
    );
    assert_close("fused rms residual", &f(&res), &resid, rtol::<T>());
    assert_close("fused rmsnorm", &f(&out), &want, rtol::<T>());
}

#[test]
fn rmsnorm_kernels_match_cpu() {
    each_precision("rmsnorm", &rmsnorm::FILE, |e, r, prec| {
        dispatch!(prec, rmsnorm_case, e, r)
    });
}

#[allow(clippy::too_many_arguments)]
fn attention_case<T: GpuFloat>(
    emu: &Emu,
    r: &mut Rng,
    b: usize,
    t: usize,
    h: usize,
    kvh: usize,
    hd: usize,
) {
    let (qn, kn) = (b * t * h * hd, b * t * kvh * hd);
    let ((q, qt), (k, kt), (v, vt)) = (
        rand::<T>(r, qn, 1.0),
        rand::<T>(r, kn, 1.0),
        rand::<T>(r, kn, 1.0),
    );
    let sh = AttnShape { t, h, kvh, hd };
    let (mut want, mut att) = (vec![0.0f32; qn], vec![0.0f32; b * h * t * t]);
    cpu_attn::attention_forward(&mut want, &mut att, &q, &k, &v, sh);
    let g = AttnGeometry::new(hd).unwrap();
    let (qs, kvs) = ((h * hd) as i32, (kvh * hd) as i32);
    let scale = 1.0 / (hd as f32).sqrt();
    let (mut out, mut lse) = (zeros::<T>(qn), vec![0.0f32; b * h * t]);
    let geo = [
        A::I(t as i32),
        A::I(h as i32),
        A::I(kvh as i32),
        A::I(hd as i32),
        A::I(g.group as i32),
        A::I(g.tile as i32),
    ];
    let mut args = vec![p(&mut out), p(&mut lse), c(&qt), c(&kt), c(&vt)];
    args.extend(geo.iter().map(|a| match a {
        A::I(i) => A::I(*i),
        _ => unreachable!(),
    }));
    args.extend([A::I(qs), A::I(kvs), A::I(qs), A::F(scale)]);
    emu.launch(
        "attention_forward",
        g.config(t, h, b, g.smem_forward()).unwrap(),
        &args,
    );
    let what = format!("attention B{b} T{t} H{h} KVH{kvh} hd{hd}");
    assert_close(&format!("{what} out"), &f(&out), &want, rtol::<T>());

    let (dout, dot) = rand::<T>(r, qn, 1.0);
    let ((mut gq, gqt), (mut gk, gkt), (mut gv, gvt)) = (
        rand::<T>(r, qn, 1.0),
        rand::<T>(r, kn, 1.0),
        rand::<T>(r, kn, 1.0),
    );
    cpu_attn::attention_backward(&mut gq, &mut gk, &mut gv, &dout, &q, &k, &v, &att, sh);
    let mut d = vec![0.0f32; b * h * t];
    let rows = b * h * t;
    let pre = cudarc::driver::LaunchConfig {
        grid_dim: (rows.div_ceil((BLOCK / 32) as usize) as u32, 1, 1),
        block_dim: (BLOCK, 1, 1),
        shared_mem_bytes: 0,
    };
    emu.launch(
        "attention_backward_preprocess",
        pre,
        &[
            p(&mut d),
            c(&out),
            c(&dot),
            A::I(b as i32),
            A::I(t as i32),
            A::I(h as i32),
            A::I(hd as i32),
            A::I(qs),
        ],
    );
    let (mut dq, mut dk, mut dv) = (gqt, gkt, gvt);
    let tail = |acc: i32| [A::I(qs), A::I(kvs), A::I(qs), A::F(scale), A::I(acc)];
    let mut args = vec![p(&mut dq), c(&dot), c(&qt), c(&kt), c(&vt), c(&lse), c(&d)];
    args.extend(geo.iter().map(|a| match a {
        A::I(i) => A::I(*i),
        _ => unreachable!(),
    }));
    args.extend(tail(1));
    emu.launch(
        "attention_backward_dq",
        g.config(t, h, b, g.smem_forward()).unwrap(),
        &args,
    );
    let mut args = vec![
        p(&mut dk),
        p(&mut dv),
        c(&dot),
        c(&qt),
        c(&kt),
        c(&vt),
        c(&lse),
        c(&d),
    ];
    args.extend(geo.iter().map(|a| match a {
        A::I(i) => A::I(*i),
        _ => unreachable!(),
    }));
    args.extend(tail(1));
    emu.launch(
        "attention_backward_dkv",
        g.config(t, kvh, b, g.smem_dkv()).unwrap(),
        &args,
    );
    let tol = rtol::<T>()
        * if T::PRECISION == Precision::F32 {
            1.0
        } else {
            2.0
        };
    assert_close(&format!("{what} dq"), &f(&dq), &gq, tol);
    assert_close(&format!("{what} dk"), &f(&dk), &gk, tol);
    assert_close(&format!("{what} dv"), &f(&dv), &gv, tol);
}

#[test]
fn attention_kernels_match_cpu() {
    each_precision("attention", &attention::FILE, |e, r, prec| {
        // GQA with a head size that is not a power of two; MQA across two K/V tiles.
        dispatch!(prec, attention_case, e, r, 1, 37, 4, 2, 24);
        dispatch!(prec, attention_case, e, r, 1, 70, 2, 1, 64);
        // The largest head group (G = 16 lanes per row) and MQA across four heads.
        dispatch!(prec, attention_case, e, r, 1, 40, 4, 1, 128);
    });
}

fn classifier_case<T: GpuFloat>(emu: &Emu, r: &mut Rng) {
    let (n, v) = (7usize, 1013usize);
    let (logits, lt) = rand::<T>(r, n * v, 3.0);
    let targets: Vec<u32> = (0..n).map(|_| r.below(v as u64) as u32).collect();
    let mut itg: Vec<i32> = targets.iter().map(|&x| x as i32).collect();
    let dloss = 1.0 / n as f32;
    let (mut probs, mut losses) = (logits.clone(), vec![0.0f32; n]);
    softmax_ce::softmax_ce_forward(&mut probs, &mut losses, &targets, v);
    let probs_cpu = probs.clone();
    softmax_ce::softmax_ce_backward(&mut probs, &vec![dloss; n], &targets, v);
    // A negative target is an ignored row: loss 0 and no gradient.
    itg[n - 1] = -1;
    losses[n - 1] = 0.0;
    probs[(n - 1) * v..].iter_mut().for_each(|x| *x = 0.0);
    let rows = cudarc::driver::LaunchConfig {
        grid_dim: (n as u32, 1, 1),
        block_dim: (classifier::CLASSIFIER_BLOCK, 1, 1),
        shared_mem_bytes: 0,
    };
    let (mut dl, mut gl) = (lt.clone(), vec![0.0f32; n]);
    emu.launch(
        "fused_classifier",
        rows,
        &[
            p(&mut dl),
            p(&mut gl),
            c(&itg),
            A::I(n as i32),
            A::I(v as i32),
            A::F(dloss),
        ],
    );
    assert_close("classifier losses", &gl, &losses, rtol::<T>());
    assert_close("classifier dlogits", &f(&dl), &probs, rtol::<T>());
    let mut dl = lt;
    emu.launch(
        "softmax_ce_probs",
        rows,
        &[
            p(&mut dl),
            p(&mut gl),
            c(&itg),
            A::I(n as i32),
            A::I(v as i32),
        ],
    );
    assert_close("softmax probs", &f(&dl), &probs_cpu, rtol::<T>());
    assert_eq!(gl[n - 1], 0.0, "ignored row's loss");
    let dls = vec![dloss; n];
    emu.launch(
        "softmax_ce_grad",
        elementwise(n * v).unwrap(),
        &[p(&mut dl), c(&dls), c(&itg), A::I(n as i32), A::I(v as i32)],
    );
    assert_close("softmax grad", &f(&dl), &probs, rtol::<T>());
}

#[test]
fn classifier_kernels_match_cpu() {
    each_precision("classifier", &classifier::FILE, |e, r, prec| {
        dispatch!(prec, classifier_case, e, r)
    });
}

fn embedding_case<T: GpuFloat>(emu: &Emu, r: &mut Rng) {
    let (b, t, ch, v) = (2usize, 13usize, 70usize, 23usize);
    let tokens: Vec<u32> = (0..b * t).map(|_| r.below(v as u64) as u32).collect();
    let itok: Vec<i32> = tokens.iter().map(|&x| x as i32).collect();
    let ((wte, wtet), (wpe, wpet)) = (rand::<T>(r, v * ch, 1.0), rand::<T>(r, t * ch, 1.0));
    let mut want = vec![0.0f32; b * t * ch];
    cpu_emb::embedding_forward(&mut want, &tokens, &wte, PosAdd::Learned(&wpe), t, ch);
    let mut out = zeros::<T>(b * t * ch);
    emu.launch(
        "embedding_forward",
        elementwise(b * t * ch).unwrap(),
        &[
            p(&mut out),
            c(&itok),
            c(&wtet),
            c(&wpet),
            A::I((b * t) as i32),
            A::I(t as i32),
            A::I(ch as i32),
        ],
    );
    assert_close("embedding forward", &f(&out), &want, rtol::<T>());
    let (dout, dot) = rand::<T>(r, b * t * ch, 1.0);
    let ((mut gte, gtet), (mut gpe, gpet)) = (rand::<T>(r, v * ch, 1.0), rand::<T>(r, t * ch, 1.0));
    cpu_emb::embedding_backward(&mut gte, Some(&mut gpe), &dout, &tokens, t, ch);
    let bk = TokenBuckets::build(&itok, v).unwrap();
    let mut dte = gtet;
    let cfg = cudarc::driver::LaunchConfig {
        grid_dim: (bk.token.len() as u32, ch.div_ceil(BLOCK as usize) as u32, 1),
        block_dim: (BLOCK, 1, 1),
        shared_mem_bytes: 0,
    };
    emu.launch(
        "embedding_backward_tok",
        cfg,
        &[
            p(&mut dte),
            c(&dot),
            c(&bk.order),
            c(&bk.start),
            c(&bk.token),
            A::I(ch as i32),
        ],
    );
    let mut dpe = gpet;
    emu.launch(
        "embedding_backward_pos",
        elementwise(t * ch).unwrap(),
        &[
            p(&mut dpe),
            c(&dot),
            A::I(b as i32),
            A::I(t as i32),
            A::I(ch as i32),
        ],
    );
    assert_close("embedding dwte", &f(&dte), &gte, rtol::<T>());
    assert_close("embedding dwpe", &f(&dpe), &gpe, rtol::<T>());
}

#[test]
fn embedding_kernels_match_cpu() {
    each_precision("embedding", &embedding::FILE, |e, r, prec| {
        dispatch!(prec, embedding_case, e, r)
    });
}

fn activation_case<T: GpuFloat>(emu: &Emu, r: &mut Rng) {
    let n = 1001usize;
    let ((x, xt), (dout, dot), (u, ut)) = (
        rand::<T>(r, n, 2.0),
        rand::<T>(r, n, 1.0),
        rand::<T>(r, n, 1.0),
    );
    let cfg = elementwise(n).unwrap();
    for name in ["gelu", "relu"] {
        let (mut want, (mut grad, gt)) = (vec![0.0f32; n], rand::<T>(r, n, 1.0));
        if name == "gelu" {
            gelu::gelu_forward(&mut want, &x);
            gelu::gelu_backward(&mut grad, &x, &dout);
        } else {
            relu::relu_forward(&mut want, &x);
            relu::relu_backward(&mut grad, &x, &dout);
        }
        let (mut out, mut g) = (zeros::<T>(n), gt);
        emu.launch(
            &format!("{name}_forward"),
            cfg,
            &[p(&mut out), c(&xt), A::L(n as i64)],
        );
        emu.launch(
            &format!("{name}_backward"),
            cfg,
            &[p(&mut g), c(&xt), c(&dot), A::L(n as i64), A::I(1)],
        );
        assert_close(&format!("{name} forward"), &f(&out), &want, rtol::<T>());
        assert_close(&format!("{name} backward"), &f(&g), &grad, rtol::<T>());
    }
    let mut want = vec![0.0f32; n];
    swiglu::swiglu_forward(&mut want, &x, &u);
    let mut out = zeros::<T>(n);
    emu.launch(
        "swiglu_forward",
        cfg,
        &[p(&mut out), c(&xt), c(&ut), A::L(n as i64)],
    );
    assert_close("swiglu forward", &f(&out), &want, rtol::<T>());
    let ((mut gg, ggt), (mut gu, gut)) = (rand::<T>(r, n, 1.0), rand::<T>(r, n, 1.0));
    swiglu::swiglu_backward(&mut gg, &mut gu, &dout, &x, &u);
    let (mut dg, mut du) = (ggt, gut);
    emu.launch(
        "swiglu_backward",
        cfg,
        &[
            p(&mut dg),
            p(&mut du),
            c(&xt),
            c(&ut),
            c(&dot),
            A::L(n as i64),
            A::I(1),
        ],
    );
    assert_close("swiglu dgate", &f(&dg), &gg, rtol::<T>());
    assert_close("swiglu dup", &f(&du), &gu, rtol::<T>());
}

#[test]
fn activation_kernels_match_cpu() {
    each_precision("activation", &activation::FILE, |e, r, prec| {
        dispatch!(prec, activation_case, e, r)
    });
}

fn rope_case<T: GpuFloat>(emu: &Emu, r: &mut Rng) {
    let (b, t, h, hd) = (2usize, 300usize, 2usize, 16usize);
    let (x, xt) = rand::<T>(r, b * t * h * hd, 1.0);
    let (cos, sin) = rope_tables(512, hd, cpu_rope::Rope::plain(10000.0));
    for (inverse, sign) in [(false, 1.0f32), (true, -1.0)] {
        let mut want = x.clone();
        cpu_rope::rope_apply(&mut want, t, h, hd, cpu_rope::Rope::plain(10000.0), inverse);
        let mut out = zeros::<T>(x.len());
        emu.launch(
            "rope_rotate",
            elementwise(x.len() / 2).unwrap(),
            &[
                p(&mut out),
                c(&xt),
                c(&cos),
                c(&sin),
                A::I((b * t) as i32),
                A::I(t as i32),
                A::I(h as i32),
                A::I(hd as i32),
                A::F(sign),
            ],
        );
        assert_close(
            &format!("rope inverse={inverse}"),
            &f(&out),
            &want,
            rtol::<T>(),
        );
    }
}

#[test]
fn rope_kernel_matches_cpu() {
    each_precision("rope", &rope::FILE, |e, r, prec| {
        dispatch!(prec, rope_case, e, r)
    });
}

fn adamw_case<T: GpuFloat>(emu: &Emu, r: &mut Rng) {
    let n = 3000usize;
    let p0: Vec<f32> = (0..n).map(|_| r.normal() as f32).collect();
    let (g, gt) = rand::<T>(r, n, 1.0);
    let m0: Vec<f32> = (0..n).map(|_| r.normal() as f32 * 0.1).collect();
    let v0: Vec<f32> = (0..n).map(|_| r.uniform() as f32 * 0.1).collect();
    let hp = AdamParams {
        lr: 1e-2,
        beta1: 0.9,
        beta2: 0.95,
        eps: 1e-8,
        weight_decay: 0.1,
        step: 3,
    };
    let (mut pc, mut m, mut v) = (p0.clone(), m0.clone(), v0.clone());
    adamw_update(&mut pc, &g, &mut m, &mut v, &hp);
    let (bc1, bc2) = llm_train::cuda::launch::adam_bias_corrections(0.9, 0.95, 3);
    let bf = T::PRECISION == Precision::Bf16;
    let mut params: Vec<T> = p0.iter().map(|&x| T::from_f32(x)).collect();
    let (mut master, mut dm, mut dv) = (p0.clone(), m0.clone(), v0.clone());
    let master_arg = if bf {
        p(&mut master)
    } else {
        A::P(std::ptr::null_mut())
    };
    emu.launch(
        "adamw_update",
        elementwise(n).unwrap(),
        &[
            p(&mut params),
            master_arg,
            c(&gt),
            p(&mut dm),
            p(&mut dv),
            A::L(n as i64),
            A::F(1e-2),
            A::F(0.9),
            A::F(0.95),
            A::F(bc1),
            A::F(bc2),
            A::F(1e-8),
            A::F(0.1),
            A::P(std::ptr::null_mut()),
            A::F(0.0),
        ],
    );
    assert_close("adamw m", &dm, &m, 1e-5);
    assert_close("adamw v", &dv, &v, 1e-5);
    assert_close("adamw params", &f(&params), &pc, rtol::<T>());
    if bf {
        assert_close("adamw master", &master, &pc, 1e-5);
    }
}

#[test]
fn adamw_kernel_matches_cpu() {
    each_precision("adamw", &adamw::FILE, |e, r, prec| {
        dispatch!(prec, adamw_case, e, r)
    });
}

fn grad_norm_case<T: GpuFloat>(emu: &Emu, r: &mut Rng) {
    let tensors: Vec<(Vec<f32>, Vec<T>)> = [1usize, 777, 20_003]
        .iter()
        .map(|&n| rand::<T>(r, n, 1.0))
        .collect();
    let want = tensors
        .iter()
        .flat_map(|t| t.0.iter())
        .map(|&x| (x as f64) * (x as f64))
        .sum::<f64>()
        .sqrt() as f32;
    // The kernels are grid-size agnostic (grid-stride loop, one partial per block): a
    // smaller grid than the launcher's NORM_BLOCKS keeps the emulation quick.
    let blocks = grad_norm::NORM_BLOCKS / 16;
    let cfg = cudarc::driver::LaunchConfig {
        grid_dim: (blocks as u32, 1, 1),
        block_dim: (BLOCK, 1, 1),
        shared_mem_bytes: 0,
    };
    let mut partials = vec![0.0f32; blocks];
    for (_, t) in &tensors {
        emu.launch(
            "norm_squared_accumulate",
            cfg,
            &[p(&mut partials), c(t), A::L(t.len() as i64)],
        );
    }
    let mut norm = vec![0.0f32; 1];
    let one = cudarc::driver::LaunchConfig {
        grid_dim: (1, 1, 1),
        block_dim: (BLOCK, 1, 1),
        shared_mem_bytes: 0,
    };
    emu.launch(
        "norm_finish",
        one,
        &[p(&mut norm), c(&partials), A::I(blocks as i32)],
    );
    assert_close("grad norm", &norm, &[want], 1e-5);
    let mut x = tensors[2].1.clone();
    emu.launch(
        "clip_by_norm",
        elementwise(x.len()).unwrap(),
        &[p(&mut x), A::L(x.len() as i64), c(&norm), A::F(want * 0.5)],
    );
    let clipped: Vec<f32> = tensors[2].0.iter().map(|v| v * 0.5).collect();
    assert_close("clip", &f(&x), &clipped, rtol::<T>());
}

#[test]
fn grad_norm_kernels_match_cpu() {
    each_precision("grad_norm", &grad_norm::FILE, |e, r, prec| {
        dispatch!(prec, grad_norm_case, e, r)
    });
}

fn bias_case<T: GpuFloat>(emu: &Emu, r: &mut Rng) {
    let (n, ch) = (1099usize, 300usize);
    let (dout, dot) = rand::<T>(r, n * ch, 1.0);
    let (mut db, dbt) = rand::<T>(r, ch, 1.0);
    for row in dout.chunks(ch) {
        for (a, &x) in db.iter_mut().zip(row) {
            *a += x;
        }
    }
    let (chunks, per) = column_chunks(n);
    let mut partial = vec![0.0f32; chunks * ch];
    emu.launch(
        "column_sum_partial",
        column_grid(n, ch).unwrap(),
        &[
            p(&mut partial),
            c(&dot),
            A::I(n as i32),
            A::I(ch as i32),
            A::I(per as i32),
        ],
    );
    let mut got = dbt;
    emu.launch(
        "column_sum_finish",
        elementwise(ch).unwrap(),
        &[
            p(&mut got),
            c(&partial),
            A::I(chunks as i32),
            A::I(ch as i32),
            A::L(ch as i64),
        ],
    );
    assert_close("bias grad", &f(&got), &db, rtol::<T>() * 4.0);
}

#[test]
fn bias_grad_kernels_match_cpu() {
    each_precision("bias_grad", &bias_grad::FILE, |e, r, prec| {
        dispatch!(prec, bias_case, e, r)
    });
}

#[test]
fn cast_kernels_round_like_half() {
    if let Err(e) = compiler() {
        eprintln!("skipped casts: no C++20 compiler ({e})");
        return;
    }
    let mut r = rng("casts");
    let emu = Emu::build(&cast::FILE, Precision::F32.variant()).expect("emulator build");
    let n = 5003usize;
    let x: Vec<f32> = (0..n).map(|_| (r.normal() * 100.0) as f32).collect();
    let mut b = vec![bf16::ZERO; n];
    emu.launch(
        "cast_f32_to_bf16",
        elementwise(n).unwrap(),
        &[p(&mut b), c(&x), A::L(n as i64)],
    );
    let want: Vec<bf16> = x.iter().map(|&v| bf16::from_f32(v)).collect();
    assert_eq!(b, want, "f32 -> bf16 must round to nearest even like half");
    let mut back = vec![0.0f32; n];
    emu.launch(
        "cast_bf16_to_f32",
        elementwise(n).unwrap(),
        &[p(&mut back), c(&b), A::L(n as i64)],
    );
    assert!(back.iter().zip(&want).all(|(a, b)| *a == b.to_f32()));
}
