//! Every CUDA kernel against the CPU trainer's reference (`llm_train::layers`, `optim`)
//! on fresh random inputs (the seed is printed), at fp32 and bf16 storage.
//!
//! Tolerance: element-wise `|gpu - cpu| <= rtol * max(|cpu|, rms(cpu))`, with rtol 1e-5
//! for fp32 and 1e-2 for bf16 (the RMS floor keeps entries that cancel to near zero from
//! demanding more than the tensor's own precision). For bf16 the inputs are rounded to
//! bf16 first and the reference runs in f32 on those same values.
//!
//! Every test that needs a device is `#[ignore = "needs a CUDA GPU"]`, so the summary
//! shows it as skipped; `cargo test -- --include-ignored` (as `scripts/gpu-check.sh`
//! runs it) runs them, and then a missing GPU fails them with the reason. The one test
//! that runs everywhere checks that a missing GPU is a one-line error.

use half::bf16;
use llm_train::cuda::attention::AttnShape as GpuAttn;
use llm_train::cuda::embedding::EmbeddingShape;
use llm_train::cuda::matmul::Blas;
use llm_train::cuda::{
    activation, adamw, attention, bias_grad, cast, classifier, embedding, grad_norm, layernorm,
    rmsnorm, rope, CudaDevice, CudaError, GpuFloat, Precision,
};
use llm_train::layers::attention::AttnShape;
use llm_train::layers::embedding::PosAdd;
use llm_train::layers::{
    attention as cpu_attn, embedding as cpu_emb, gelu, layernorm as cpu_ln, linear, relu,
    rmsnorm as cpu_rms, rope as cpu_rope, softmax_ce, swiglu,
};
use llm_train::optim::{adamw_update, AdamParams};
use llm_train::rng::Rng;

mod cuda_util;
use cuda_util::{assert_close, device, rng, rtol};

/// Normal(0, scale) values, rounded through T.
fn rand<T: GpuFloat>(r: &mut Rng, n: usize, scale: f64) -> Vec<f32> {
    (0..n)
        .map(|_| T::from_f32((r.normal() * scale) as f32).to_f32())
        .collect()
}

fn up<T: GpuFloat>(dev: &CudaDevice, v: &[f32]) -> cudarc::driver::CudaSlice<T> {
    let h: Vec<T> = v.iter().map(|&x| T::from_f32(x)).collect();
    dev.stream().clone_htod(&h).expect("upload")
}

fn down<T: GpuFloat>(dev: &CudaDevice, d: &cudarc::driver::CudaSlice<T>) -> Vec<f32> {
    let h: Vec<T> = dev.stream().clone_dtoh(d).expect("download");
    h.into_iter().map(|x| x.to_f32()).collect()
}

fn down32(dev: &CudaDevice, d: &cudarc::driver::CudaSlice<f32>) -> Vec<f32> {
    dev.stream().clone_dtoh(d).expect("download")
}

fn each_precision(test: &str, f: impl Fn(&CudaDevice, &mut Rng, Precision)) {
    let dev = device(test);
    let mut r = rng(test);
    for p in Precision::ALL {
        f(&dev, &mut r, p);
    }
}

#[test]
fn no_gpu_is_a_one_line_error_not_a_panic() {
    match CudaDevice::open(0) {
        Ok(d) => {
            eprintln!("GPU present: {} ({})", d.name(), d.arch().name());
            let e = CudaDevice::open(1 << 20).unwrap_err();
            assert!(matches!(e, CudaError::NoDevice(_)), "{e}");
        }
        Err(e) => {
            let msg = e.to_string();
            assert!(msg.starts_with("no CUDA GPU/driver found: "), "{msg}");
            assert!(!msg.contains('\n'), "{msg}");
            eprintln!("no GPU here: {msg}");
        }
    }
}

fn embedding_case<T: GpuFloat>(dev: &CudaDevice, r: &mut Rng) {
    let (b, t, c, v) = (3usize, 29usize, 70usize, 53usize);
    let s = EmbeddingShape {
        batch: b,
        seq: t,
        channels: c,
        vocab: v,
    };
    let tokens: Vec<u32> = (0..b * t).map(|_| r.below(v as u64) as u32).collect();
    let itok: Vec<i32> = tokens.iter().map(|&x| x as i32).collect();
    let (wte, wpe) = (rand::<T>(r, v * c, 1.0), rand::<T>(r, t * c, 1.0));
    let mut want = vec![0.0f32; b * t * c];
    cpu_emb::embedding_forward(&mut want, &tokens, &wte, PosAdd::Learned(&wpe), t, c);
    let dtok = dev.stream().clone_htod(&itok).unwrap();
    let mut out = up::<T>(dev, &vec![0.0; b * t * c]);
    embedding::forward(
        dev,
        &mut out,
        &dtok,
        &itok,
        &up(dev, &wte),
        Some(&up(dev, &wpe)),
        s,
    )
    .unwrap();
    assert_close("embedding forward", &down(dev, &out), &want, rtol::<T>());

    let dout = rand::<T>(r, b * t * c, 1.0);
    let (mut gte, mut gpe) = (rand::<T>(r, v * c, 1.0), rand::<T>(r, t * c, 1.0));
    let (mut dte, mut dpe) = (up::<T>(dev, &gte), up::<T>(dev, &gpe));
    cpu_emb::embedding_backward(&mut gte, Some(&mut gpe), &dout, &tokens, t, c);
    let ddout = up::<T>(dev, &dout);
    embedding::backward_tok(dev, &mut dte, &ddout, &itok, s).unwrap();
    embedding::backward_pos(dev, &mut dpe, &ddout, s).unwrap();
    assert_close("embedding dwte", &down(dev, &dte), &gte, rtol::<T>());
    assert_close("embedding dwpe", &down(dev, &dpe), &gpe, rtol::<T>());
    let bad = embedding::forward(
        dev,
        &mut out,
        &dtok,
        &[v as i32; 87],
        &up(dev, &wte),
        None,
        s,
    );
    assert!(matches!(bad, Err(CudaError::Shape(_))));
}

#[test]
#[ignore = "needs a CUDA GPU"]
fn embedding_matches_cpu() {
    each_precision("embedding", |d, r, p| dispatch!(p, embedding_case, d, r));
}

fn layernorm_case<T: GpuFloat>(dev: &CudaDevice, r: &mut Rng) {
    let (n, c) = (37usize, 100usize);
    let x = rand::<T>(r, n * c, 2.0);
    let (w, bias) = (rand::<T>(r, c, 1.0), rand::<T>(r, c, 1.0));
    let (mut want, mut m, mut rs) = (vec![0.0f32; n * c], vec![0.0f32; n], vec![0.0f32; n]);
    cpu_ln::layernorm_forward(&mut want, &mut m, &mut rs, &x, &w, Some(&bias), c, 1e-5);
    let st = dev.stream();
    let (dx, dw, db) = (up::<T>(dev, &x), up::<T>(dev, &w), up::<T>(dev, &bias));
    let mut out = up::<T>(dev, &vec![0.0; n * c]);
    let (mut gm, mut gr) = (
        st.alloc_zeros::<f32>(n).unwrap(),
        st.alloc_zeros::<f32>(n).unwrap(),
    );
    layernorm::forward(
        dev,
        &mut out,
        &mut gm,
        &mut gr,
        &dx,
        &dw,
        Some(&db),
        n,
        c,
        1e-5,
    )
    .unwrap();
    assert_close("layernorm out", &down(dev, &out), &want, rtol::<T>());
    assert_close("layernorm mean", &down32(dev, &gm), &m, 1e-5);
    assert_close("layernorm rstd", &down32(dev, &gr), &rs, 1e-5);

    // Backward, accumulating into random gradients (the CPU's += convention).
    let dout = rand::<T>(r, n * c, 1.0);
    let (mut gx, mut gw, mut gb) = (
        rand::<T>(r, n * c, 1.0),
        rand::<T>(r, c, 1.0),
        rand::<T>(r, c, 1.0),
    );
    let (mut ddx, mut ddw, mut ddb) = (up::<T>(dev, &gx), up::<T>(dev, &gw), up::<T>(dev, &gb));
    cpu_ln::layernorm_backward(&mut gx, &mut gw, Some(&mut gb), &dout, &x, &w, &m, &rs, c);
    layernorm::backward(
        dev,
        &mut ddx,
        &mut ddw,
        Some(&mut ddb),
        &up(dev, &dout),
        &dx,
        &dw,
        &gm,
        &gr,
        n,
        c,
        true,
    )
    .unwrap();
    assert_close("layernorm dinp", &down(dev, &ddx), &gx, rtol::<T>());
    assert_close("layernorm dweight", &down(dev, &ddw), &gw, rtol::<T>());
    assert_close("layernorm dbias", &down(dev, &ddb), &gb, rtol::<T>());

    // Fused residual + norm: residual = a + b (stored in T), then the norm of it.
    let a = rand::<T>(r, n * c, 1.0);
    let resid: Vec<f32> = a
        .iter()
        .zip(&x)
        .map(|(p, q)| T::from_f32(p + q).to_f32())
        .collect();
    cpu_ln::layernorm_forward(&mut want, &mut m, &mut rs, &resid, &w, None, c, 1e-5);
    let mut gres = up::<T>(dev, &vec![0.0; n * c]);
    layernorm::fused_residual_forward(
        dev,
        &mut gres,
        &mut out,
        &mut gm,
        &mut gr,
        &up(dev, &a),
        &dx,
        &dw,
        None,
        n,
        c,
        1e-5,
    )
    .unwrap();
    assert_close("fused residual", &down(dev, &gres), &resid, rtol::<T>());
    assert_close("fused layernorm", &down(dev, &out), &want, rtol::<T>());
}

#[test]
#[ignore = "needs a CUDA GPU"]
fn layernorm_matches_cpu() {
    each_precision("layernorm", |d, r, p| dispatch!(p, layernorm_case, d, r));
}

fn rmsnorm_case<T: GpuFloat>(dev: &CudaDevice, r: &mut Rng) {
    let (n, c) = (41usize, 72usize);
    let x = rand::<T>(r, n * c, 2.0);
    let w = rand::<T>(r, c, 1.0);
    let (mut want, mut rs) = (vec![0.0f32; n * c], vec![0.0f32; n]);
    cpu_rms::rmsnorm_forward(&mut want, &mut rs, &x, &w, c, 1e-6);
    let (dx, dw) = (up::<T>(dev, &x), up::<T>(dev, &w));
    let mut out = up::<T>(dev, &vec![0.0; n * c]);
    let mut gr = dev.stream().alloc_zeros::<f32>(n).unwrap();
    rmsnorm::forward(dev, &mut out, &mut gr, &dx, &dw, n, c, 1e-6).unwrap();
    assert_close("rmsnorm out", &down(dev, &out), &want, rtol::<T>());
    assert_close("rmsnorm rstd", &down32(dev, &gr), &rs, 1e-5);

    let dout = rand::<T>(r, n * c, 1.0);
    let (mut gx, mut gw) = (rand::<T>(r, n * c, 1.0), rand::<T>(r, c, 1.0));
    let (mut ddx, mut ddw) = (up::<T>(dev, &gx), up::<T>(dev, &gw));
    cpu_rms::rmsnorm_backward(&mut gx, &mut gw, &dout, &x, &w, &rs, c);
    rmsnorm::backward(
        dev,
        &mut ddx,
        &mut ddw,
        &up(dev, &dout),
        &dx,
        &dw,
        &gr,
        n,
        c,
        true,
    )
    .unwrap();
    assert_close("rmsnorm dinp", &down(dev, &ddx), &gx, rtol::<T>());
    assert_close("rmsnorm dweight", &down(dev, &ddw), &gw, rtol::<T>());

    let a = rand::<T>(r, n * c, 1.0);
    let resid: Vec<f32> = a
        .iter()
        .zip(&x)
        .map(|(p, q)| T::from_f32(p + q).to_f32())
        .collect();
    cpu_rms::rmsnorm_forward(&mut want, &mut rs, &resid, &w, c, 1e-6);
    let mut gres = up::<T>(dev, &vec![0.0; n * c]);
    rmsnorm::fused_residual_forward(
        dev,
        &mut gres,
        &mut out,
        &mut gr,
        &up(dev, &a),
        &dx,
        &dw,
        n,
        c,
        1e-6,
    )
    .unwrap();
    assert_close("fused rms residual", &down(dev, &gres), &resid, rtol::<T>());
    assert_close("fused rmsnorm", &down(dev, &out), &want, rtol::<T>());
}

#[test]
#[ignore = "needs a CUDA GPU"]
fn rmsnorm_matches_cpu() {
    each_precision("rmsnorm", |d, r, p| dispatch!(p, rmsnorm_case, d, r));
}

fn attention_case<T: GpuFloat>(
    dev: &CudaDevice,
    r: &mut Rng,
    b: usize,
    t: usize,
    h: usize,
    kvh: usize,
    hd: usize,
) {
    let (qn, kn) = (b * t * h * hd, b * t * kvh * hd);
    let (q, k, v) = (
        rand::<T>(r, qn, 1.0),
        rand::<T>(r, kn, 1.0),
        rand::<T>(r, kn, 1.0),
    );
    let sh = AttnShape { t, h, kvh, hd };
    let gs = GpuAttn {
        batch: b,
        seq: t,
        heads: h,
        kv_heads: kvh,
        head_dim: hd,
    };
    let (mut want, mut att) = (vec![0.0f32; qn], vec![0.0f32; b * h * t * t]);
    cpu_attn::attention_forward(&mut want, &mut att, &q, &k, &v, sh);
    let (dq_, dk_, dv_) = (up::<T>(dev, &q), up::<T>(dev, &k), up::<T>(dev, &v));
    let mut out = up::<T>(dev, &vec![0.0; qn]);
    let mut lse = dev.stream().alloc_zeros::<f32>(b * h * t).unwrap();
    attention::forward(dev, &mut out, &mut lse, &dq_, &dk_, &dv_, gs).unwrap();
    let what = format!("attention B{b} T{t} H{h} KVH{kvh} hd{hd}");
    let got_out = down(dev, &out);
    assert_close(&format!("{what} out"), &got_out, &want, rtol::<T>());

    let dout = rand::<T>(r, qn, 1.0);
    let (mut gq, mut gk, mut gv) = (
        rand::<T>(r, qn, 1.0),
        rand::<T>(r, kn, 1.0),
        rand::<T>(r, kn, 1.0),
    );
    let (mut ddq, mut ddk, mut ddv) = (up::<T>(dev, &gq), up::<T>(dev, &gk), up::<T>(dev, &gv));
    cpu_attn::attention_backward(&mut gq, &mut gk, &mut gv, &dout, &q, &k, &v, &att, sh);
    // The GPU backward reads its own (T-rounded) output, as training does.
    attention::backward(
        dev,
        &mut ddq,
        &mut ddk,
        &mut ddv,
        &up(dev, &dout),
        &dq_,
        &dk_,
        &dv_,
        &out,
        &lse,
        gs,
        true,
    )
    .unwrap();
    let tol = rtol::<T>()
        * if T::PRECISION == Precision::F32 {
            1.0
        } else {
            2.0
        };
    assert_close(&format!("{what} dq"), &down(dev, &ddq), &gq, tol);
    assert_close(&format!("{what} dk"), &down(dev, &ddk), &gk, tol);
    assert_close(&format!("{what} dv"), &down(dev, &ddv), &gv, tol);
}

#[test]
#[ignore = "needs a CUDA GPU"]
fn attention_matches_cpu() {
    each_precision("attention", |d, r, p| {
        // GQA, a head size that is not a power of two, T across several tiles.
        dispatch!(p, attention_case, d, r, 2, 67, 4, 2, 24);
        dispatch!(p, attention_case, d, r, 1, 150, 2, 2, 64);
        dispatch!(p, attention_case, d, r, 2, 33, 4, 1, 128);
    });
}

fn activation_case<T: GpuFloat>(dev: &CudaDevice, r: &mut Rng) {
    let n = 3001usize;
    let x = rand::<T>(r, n, 2.0);
    let dout = rand::<T>(r, n, 1.0);
    let dx = up::<T>(dev, &x);
    let ddout = up::<T>(dev, &dout);
    for (act, name) in [
        (activation::Activation::Gelu, "gelu"),
        (activation::Activation::Relu, "relu"),
    ] {
        let mut want = vec![0.0f32; n];
        let mut grad = rand::<T>(r, n, 1.0);
        let mut dgrad = up::<T>(dev, &grad);
        match act {
            activation::Activation::Gelu => {
                gelu::gelu_forward(&mut want, &x);
                gelu::gelu_backward(&mut grad, &x, &dout);
            }
            activation::Activation::Relu => {
                relu::relu_forward(&mut want, &x);
                relu::relu_backward(&mut grad, &x, &dout);
            }
        }
        let mut out = up::<T>(dev, &vec![0.0; n]);
        activation::forward(dev, act, &mut out, &dx, n).unwrap();
        activation::backward(dev, act, &mut dgrad, &dx, &ddout, n, true).unwrap();
        assert_close(
            &format!("{name} forward"),
            &down(dev, &out),
            &want,
            rtol::<T>(),
        );
        assert_close(
            &format!("{name} backward"),
            &down(dev, &dgrad),
            &grad,
            rtol::<T>(),
        );
    }
    let u = rand::<T>(r, n, 1.0);
    let mut want = vec![0.0f32; n];
    swiglu::swiglu_forward(&mut want, &x, &u);
    let mut out = up::<T>(dev, &vec![0.0; n]);
    let du = up::<T>(dev, &u);
    activation::swiglu_forward(dev, &mut out, &dx, &du, n).unwrap();
    assert_close("swiglu forward", &down(dev, &out), &want, rtol::<T>());
    let (mut gg, mut gu) = (rand::<T>(r, n, 1.0), rand::<T>(r, n, 1.0));
    let (mut dgg, mut dgu) = (up::<T>(dev, &gg), up::<T>(dev, &gu));
    swiglu::swiglu_backward(&mut gg, &mut gu, &dout, &x, &u);
    activation::swiglu_backward(dev, &mut dgg, &mut dgu, &dx, &du, &ddout, n, true).unwrap();
    assert_close("swiglu dgate", &down(dev, &dgg), &gg, rtol::<T>());
    assert_close("swiglu dup", &down(dev, &dgu), &gu, rtol::<T>());
}

#[test]
#[ignore = "needs a CUDA GPU"]
fn activations_match_cpu() {
    each_precision("activations", |d, r, p| dispatch!(p, activation_case, d, r));
}

fn rope_case<T: GpuFloat>(dev: &CudaDevice, r: &mut Rng) {
    let (b, t, h, hd) = (2usize, 300usize, 3usize, 32usize);
    let x = rand::<T>(r, b * t * h * hd, 1.0);
    let tables = rope::RopeTables::new(dev, 512, hd, cpu_rope::Rope::plain(10000.0)).unwrap();
    let mut want = x.clone();
    cpu_rope::rope_apply(&mut want, t, h, hd, cpu_rope::Rope::plain(10000.0), false);
    let mut dx = up::<T>(dev, &x);
    rope::forward(dev, &tables, &mut dx, b, t, h).unwrap();
    assert_close("rope forward", &down(dev, &dx), &want, rtol::<T>());
    let mut want = x.clone();
    cpu_rope::rope_apply(&mut want, t, h, hd, cpu_rope::Rope::plain(10000.0), true);
    let mut dx = up::<T>(dev, &x);
    rope::backward(dev, &tables, &mut dx, b, t, h).unwrap();
    assert_close("rope backward", &down(dev, &dx), &want, rtol::<T>());
}

#[test]
#[ignore = "needs a CUDA GPU"]
fn rope_matches_cpu() {
    each_precision("rope", |d, r, p| dispatch!(p, rope_case, d, r));
}

fn classifier_case<T: GpuFloat>(dev: &CudaDevice, r: &mut Rng) {
    let (n, v) = (19usize, 1013usize);
    let logits = rand::<T>(r, n * v, 3.0);
    let targets: Vec<u32> = (0..n).map(|_| r.below(v as u64) as u32).collect();
    let itg: Vec<i32> = targets.iter().map(|&x| x as i32).collect();
    let dloss = 1.0 / n as f32;
    let (mut probs, mut losses) = (logits.clone(), vec![0.0f32; n]);
    softmax_ce::softmax_ce_forward(&mut probs, &mut losses, &targets, v);
    let probs_cpu = probs.clone();
    softmax_ce::softmax_ce_backward(&mut probs, &vec![dloss; n], &targets, v);
    let st = dev.stream();
    let dtg = st.clone_htod(&itg).unwrap();
    let mut dl = up::<T>(dev, &logits);
    let mut gl = st.alloc_zeros::<f32>(n).unwrap();
    classifier::forward_backward(dev, &mut dl, &mut gl, &dtg, &itg, n, v, dloss).unwrap();
    assert_close("classifier losses", &down32(dev, &gl), &losses, rtol::<T>());
    assert_close("classifier dlogits", &down(dev, &dl), &probs, rtol::<T>());
    // The split pair.
    let mut dl = up::<T>(dev, &logits);
    classifier::probs(dev, &mut dl, &mut gl, &dtg, &itg, n, v).unwrap();
    assert_close("softmax probs", &down(dev, &dl), &probs_cpu, rtol::<T>());
    let ddl = st.clone_htod(&vec![dloss; n]).unwrap();
    classifier::grad(dev, &mut dl, &ddl, &dtg, n, v).unwrap();
    assert_close("softmax grad", &down(dev, &dl), &probs, rtol::<T>());
}

#[test]
#[ignore = "needs a CUDA GPU"]
fn classifier_matches_cpu() {
    each_precision("classifier", |d, r, p| dispatch!(p, classifier_case, d, r));
}

fn adamw_case<T: GpuFloat>(dev: &CudaDevice, r: &mut Rng) {
    let n = 5000usize;
    let st = dev.stream();
    let p0: Vec<f32> = (0..n).map(|_| r.normal() as f32).collect();
    let g = rand::<T>(r, n, 1.0);
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
    let (mut p, mut m, mut v) = (p0.clone(), m0.clone(), v0.clone());
    adamw_update(&mut p, &g, &mut m, &mut v, &hp);
    let step = adamw::AdamWStep {
        lr: 1e-2,
        beta1: 0.9,
        beta2: 0.95,
        eps: 1e-8,
        weight_decay: 0.1,
        step: 3,
    };
    let mut dp = up::<T>(dev, &p0);
    let (mut dm, mut dv) = (st.clone_htod(&m0).unwrap(), st.clone_htod(&v0).unwrap());
    let mut master = st.clone_htod(&p0).unwrap();
    let state = adamw::AdamWState {
        m: &mut dm,
        v: &mut dv,
        master: (T::PRECISION == Precision::Bf16).then_some(&mut master),
    };
    adamw::update(dev, &mut dp, &up(dev, &g), state, step, None).unwrap();
    assert_close("adamw m", &down32(dev, &dm), &m, 1e-5);
    assert_close("adamw v", &down32(dev, &dv), &v, 1e-5);
    assert_close("adamw params", &down(dev, &dp), &p, rtol::<T>());
    if T::PRECISION == Precision::Bf16 {
        assert_close("adamw master", &down32(dev, &master), &p, 1e-5);
    }
}

#[test]
#[ignore = "needs a CUDA GPU"]
fn adamw_matches_cpu() {
    each_precision("adamw", |d, r, p| dispatch!(p, adamw_case, d, r));
}

fn grad_norm_case<T: GpuFloat>(dev: &CudaDevice, r: &mut Rng) {
    let tensors: Vec<Vec<f32>> = [1usize, 777, 100_003]
        .iter()
        .map(|&n| rand::<T>(r, n, 1.0))
        .collect();
    let want = tensors
        .iter()
        .flatten()
        .map(|&x| (x as f64) * (x as f64))
        .sum::<f64>()
        .sqrt() as f32;
    let mut gn = grad_norm::GlobalNorm::new(dev).unwrap();
    let dts: Vec<_> = tensors.iter().map(|t| up::<T>(dev, t)).collect();
    for d in &dts {
        gn.add(dev, d).unwrap();
    }
    let norm = gn.finish::<T>(dev).unwrap().clone();
    let got = down32(dev, &norm)[0];
    assert_close("grad norm", &[got], &[want], 1e-5);
    // Clip the largest tensor to half the norm.
    let mut d = up::<T>(dev, &tensors[2]);
    grad_norm::clip(dev, &mut d, &norm, want * 0.5).unwrap();
    let clipped: Vec<f32> = tensors[2].iter().map(|x| x * 0.5).collect();
    assert_close("clip", &down(dev, &d), &clipped, rtol::<T>());
}

#[test]
#[ignore = "needs a CUDA GPU"]
fn grad_norm_matches_cpu() {
    each_precision("grad_norm", |d, r, p| dispatch!(p, grad_norm_case, d, r));
}

fn bias_case<T: GpuFloat>(dev: &CudaDevice, r: &mut Rng) {
    let (n, c) = (4099usize, 300usize);
    let dout = rand::<T>(r, n * c, 1.0);
    let mut db = rand::<T>(r, c, 1.0);
    let mut ddb = up::<T>(dev, &db);
    for row in dout.chunks(c) {
        for (a, &x) in db.iter_mut().zip(row) {
            *a += x;
        }
    }
    bias_grad::bias_backward(dev, &mut ddb, &up(dev, &dout), n, c).unwrap();
    assert_close("bias grad", &down(dev, &ddb), &db, rtol::<T>() * 4.0);
}

#[test]
#[ignore = "needs a CUDA GPU"]
fn bias_grad_matches_cpu() {
    each_precision("bias_grad", |d, r, p| dispatch!(p, bias_case, d, r));
}

fn matmul_case<T: GpuFloat>(dev: &CudaDevice, r: &mut Rng)
where
    Blas: cudarc::cublaslt::Matmul<T>,
{
    let blas = match Blas::new(dev) {
        Ok(b) => b,
        Err(e) => panic!("GPU present but {e}"),
    };
    let (n, i, o) = (77usize, 96usize, 130usize);
    let x = rand::<T>(r, n * i, 1.0);
    let w = rand::<T>(r, o * i, 0.2);
    let bias = rand::<T>(r, o, 1.0);
    let mut want = vec![0.0f32; n * o];
    linear::linear_forward(&mut want, &x, &w, Some(&bias), n, i, o);
    let (dx, dw, db) = (up::<T>(dev, &x), up::<T>(dev, &w), up::<T>(dev, &bias));
    let mut out = up::<T>(dev, &vec![0.0; n * o]);
    blas.forward(&mut out, &dx, &dw, Some(&db), n, i, o)
        .unwrap();
    assert_close("matmul forward", &down(dev, &out), &want, rtol::<T>() * 2.0);

    let dout = rand::<T>(r, n * o, 1.0);
    let (mut gx, mut gw) = (rand::<T>(r, n * i, 1.0), rand::<T>(r, o * i, 1.0));
    let (mut dgx, mut dgw) = (up::<T>(dev, &gx), up::<T>(dev, &gw));
    linear::linear_backward(&mut gx, &mut gw, None, &dout, &x, &w, n, i, o);
    blas.backward(&mut dgx, &mut dgw, &up(dev, &dout), &dx, &dw, n, i, o, true)
        .unwrap();
    assert_close("matmul dinp", &down(dev, &dgx), &gx, rtol::<T>() * 2.0);
    assert_close("matmul dweight", &down(dev, &dgw), &gw, rtol::<T>() * 2.0);
}

#[test]
#[ignore = "needs a CUDA GPU"]
fn matmul_matches_cpu() {
    each_precision("matmul", |d, r, p| dispatch!(p, matmul_case, d, r));
}

#[test]
#[ignore = "needs a CUDA GPU"]
fn casts_round_like_half() {
    let dev = device("casts");
    let mut r = rng("casts");
    let n = 10_007;
    let x: Vec<f32> = (0..n).map(|_| (r.normal() * 100.0) as f32).collect();
    let st = dev.stream();
    let dx = st.clone_htod(&x).unwrap();
    let mut b = st.alloc_zeros::<bf16>(n).unwrap();
    cast::f32_to_bf16(&dev, &mut b, &dx).unwrap();
    let got: Vec<bf16> = st.clone_dtoh(&b).unwrap();
    let want: Vec<bf16> = x.iter().map(|&v| bf16::from_f32(v)).collect();
    assert_eq!(
        got, want,
        "f32 -> bf16 must round to nearest even like half"
    );
    let mut back = st.alloc_zeros::<f32>(n).unwrap();
    cast::bf16_to_f32(&dev, &mut back, &b).unwrap();
    let back: Vec<f32> = st.clone_dtoh(&back).unwrap();
    assert!(back.iter().zip(&want).all(|(a, b)| *a == b.to_f32()));
}

/// The `Backend` trait on the GPU against the CPU backend, op by op, through the same
/// calls the model makes (fp32, `+=` gradients into random buffers).
#[test]
#[ignore = "needs a CUDA GPU"]
fn cuda_backend_matches_cpu_backend_through_the_trait() {
    use llm_train::backend::{Activation, Backend, Cpu};
    use llm_train::cuda::CudaBackend;
    let gpu = CudaBackend::new(0).unwrap_or_else(|e| panic!("cuda backend: needs a CUDA GPU: {e}"));
    let mut r = rng("cuda backend");
    let cpu = Cpu;
    let (b, t, h, kvh, hd) = (2usize, 40usize, 4usize, 2usize, 16usize);
    let (c, n) = (h * hd, b * t);
    let tol = 1e-5;
    let x = rand::<f32>(&mut r, n * c, 1.0);
    let w = rand::<f32>(&mut r, 3 * c * c, 0.2);
    let bias = rand::<f32>(&mut r, 3 * c, 1.0);
    // matmul
    let (mut o1, mut o2) = (vec![0.0f32; n * 3 * c], vec![0.0f32; n * 3 * c]);
    Backend::<f32>::matmul_forward(&cpu, &mut o1, &x, &w, Some(&bias), n, c, 3 * c);
    gpu.matmul_forward(&mut o2, &x, &w, Some(&bias), n, c, 3 * c);
    assert_close("trait matmul", &o2, &o1, 2.0 * tol);
    let dout = rand::<f32>(&mut r, n * 3 * c, 1.0);
    let (gi, gw, gb) = (
        rand::<f32>(&mut r, n * c, 1.0),
        rand::<f32>(&mut r, 3 * c * c, 1.0),
        rand::<f32>(&mut r, 3 * c, 1.0),
    );
    let (mut a1, mut w1, mut b1) = (gi.clone(), gw.clone(), gb.clone());
    let (mut a2, mut w2, mut b2) = (gi, gw, gb);
    Backend::<f32>::matmul_backward(
        &cpu,
        &mut a1,
        &mut w1,
        Some(&mut b1),
        &dout,
        &x,
        &w,
        n,
        c,
        3 * c,
    );
    gpu.matmul_backward(&mut a2, &mut w2, Some(&mut b2), &dout, &x, &w, n, c, 3 * c);
    assert_close("trait matmul dinp", &a2, &a1, 2.0 * tol);
    assert_close("trait matmul dw", &w2, &w1, 2.0 * tol);
    assert_close("trait matmul dbias", &b2, &b1, 4.0 * tol);
    // attention (q from the first c columns, k/v from narrower kv heads)
    let q = rand::<f32>(&mut r, n * c, 1.0);
    let k = rand::<f32>(&mut r, n * kvh * hd, 1.0);
    let v = rand::<f32>(&mut r, n * kvh * hd, 1.0);
    let sh = AttnShape { t, h, kvh, hd };
    let (mut out1, mut att1) = (vec![0.0f32; n * c], vec![0.0f32; b * h * t * t]);
    let (mut out2, mut att2) = (vec![0.0f32; n * c], vec![0.0f32; b * h * t * t]);
    Backend::<f32>::attention_forward(&cpu, &mut out1, &mut att1, &q, &k, &v, sh);
    gpu.attention_forward(&mut out2, &mut att2, &q, &k, &v, sh);
    assert_close("trait attention", &out2, &out1, tol);
    let dout = rand::<f32>(&mut r, n * c, 1.0);
    let (mut q1, mut k1, mut v1) = (
        vec![0.0f32; n * c],
        vec![0.0f32; k.len()],
        vec![0.0f32; v.len()],
    );
    let (mut q2, mut k2, mut v2) = (q1.clone(), k1.clone(), v1.clone());
    Backend::<f32>::attention_backward(
        &cpu, &mut q1, &mut k1, &mut v1, &dout, &q, &k, &v, &att1, sh,
    );
    gpu.attention_backward(&mut q2, &mut k2, &mut v2, &dout, &q, &k, &v, &att2, sh);
    assert_close("trait attention dq", &q2, &q1, tol);
    assert_close("trait attention dk", &k2, &k1, tol);
    assert_close("trait attention dv", &v2, &v1, tol);
    // activation, softmax-CE, sum of squares
    let (mut g1, mut g2) = (vec![0.0f32; n * c], vec![0.0f32; n * c]);
    Backend::<f32>::activation_forward(&cpu, Activation::Gelu, &mut g1, &x);
    gpu.activation_forward(Activation::Gelu, &mut g2, &x);
    assert_close("trait gelu", &g2, &g1, tol);
    let vocab = 301usize;
    let logits = rand::<f32>(&mut r, n * vocab, 2.0);
    let targets: Vec<u32> = (0..n).map(|_| r.below(vocab as u64) as u32).collect();
    let (mut p1, mut p2) = (logits.clone(), logits);
    let (mut l1, mut l2) = (vec![0.0f32; n], vec![0.0f32; n]);
    Backend::<f32>::softmax_ce_forward(&cpu, &mut p1, &mut l1, &targets, vocab);
    gpu.softmax_ce_forward(&mut p2, &mut l2, &targets, vocab);
    assert_close("trait ce losses", &l2, &l1, tol);
    let dl = vec![1.0 / n as f32; n];
    Backend::<f32>::softmax_ce_backward(&cpu, &mut p1, &dl, &targets, vocab);
    gpu.softmax_ce_backward(&mut p2, &dl, &targets, vocab);
    assert_close("trait ce dlogits", &p2, &p1, tol);
    let (s1, s2) = (Backend::<f32>::sum_squares(&cpu, &x), gpu.sum_squares(&x));
    assert!((s1 - s2).abs() <= 1e-5 * s1, "sum_squares {s2} vs {s1}");
}
