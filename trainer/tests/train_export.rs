//! Export parity: the runtime's logits on an exported f32 file equal the trainer's
//! forward within 1e-4 (relative to the row's largest logit), for the GPT-2, LLaMA
//! and classic option sets and the Qwen 3 / Gemma 3 settings the trainer trains;
//! quantised exports keep norms/biases f32.

use llm_format::options::keys;
use llm_format::{DType, LlmFile, Mlp, ModelOptions, Norm, Positions};
use llm_train::backend::Cpu;
use llm_train::export::export_model;
use llm_train::model::Model;
use llm_train::rng::Rng;
use llm_train::tokenize::TextTokenizer;
use std::sync::Arc;

fn opts(pos: Positions, norm: Norm, mlp: Mlp, bias: bool, tied: bool, kvh: usize) -> ModelOptions {
    ModelOptions {
        vocab_size: 256,
        d_model: 64,
        n_layers: 2,
        n_heads: 4,
        n_kv_heads: kvh,
        d_ff: 96,
        max_len: 24,
        positions: pos,
        norm,
        mlp,
        bias,
        tied_embeddings: tied,
        norm_eps: 1e-5,
        rope_base: 10000.0,
        arch: Default::default(),
    }
}

fn parity(o: ModelOptions, seed: u64) {
    let mut m = Model::<f32>::new(o.clone(), true).unwrap();
    m.init_gpt2(seed);
    // Larger than GPT-2's 0.02 so the logits carry signal well above f32 round-off.
    let mut r = Rng::for_test(seed);
    for x in m.params.iter_mut() {
        *x += (r.normal() * 0.1) as f32;
    }
    let path = std::env::temp_dir().join(format!(
        "llm-train-export-{}-{seed}.llm",
        std::process::id()
    ));
    export_model(
        &m,
        &TextTokenizer::byte().spec(),
        Some("d_model = 64\n"),
        "test",
        DType::F32.into(),
        &path,
    )
    .unwrap();

    let t = 20;
    let tokens: Vec<u32> = (0..t).map(|_| r.below(256) as u32).collect();
    m.forward(&Cpu, &tokens, None, 1, t, None).unwrap();
    let want = m.logits().to_vec();

    let rt = Arc::new(llmrt::Model::load(&path).unwrap());
    // The exact f32 KV cache: the comparison is at f32 tolerance.
    let params = llmrt::ContextParams {
        cache_type: llmrt::CacheType::F32,
        ..llmrt::ContextParams::default()
    };
    let mut ctx = llmrt::Context::new(rt, &params).unwrap();
    for (i, &tok) in tokens.iter().enumerate() {
        let got = ctx.eval(&[tok]).unwrap();
        let row = &want[i * 256..(i + 1) * 256];
        let scale = row.iter().fold(0f32, |a, &b| a.max(b.abs())).max(1e-3);
        for (j, (&g, &w)) in got.iter().zip(row).enumerate() {
            assert!(
                (g - w).abs() <= 1e-4 * scale,
                "{o:?}: position {i} logit {j}: runtime {g} vs trainer {w} (row max {scale})"
            );
        }
    }
    let _ = std::fs::remove_file(&path);
}

#[test]
fn train_export_runtime_logits_match_gpt2_llama_classic() {
    parity(
        opts(
            Positions::Learned,
            Norm::LayerNorm,
            Mlp::Gelu,
            true,
            true,
            4,
        ),
        1,
    );
    parity(
        opts(Positions::Rope, Norm::RmsNorm, Mlp::SwiGlu, false, false, 2),
        2,
    );
    parity(
        opts(
            Positions::Sinusoidal,
            Norm::LayerNorm,
            Mlp::Relu,
            true,
            true,
            1,
        ),
        3,
    );
}

#[test]
fn train_export_runtime_logits_match_with_rope_scale() {
    // Linear position interpolation (`llm.rope_scale`): the trainer's rotation of
    // positions `t / scale` against the runtime's scaled frequency table.
    for (scale, seed) in [(4.0, 4), (1.5, 5)] {
        let mut o = opts(Positions::Rope, Norm::RmsNorm, Mlp::SwiGlu, false, false, 2);
        o.arch.rope_scale = Some(scale);
        parity(o, seed);
    }
}

#[test]
fn train_export_runtime_logits_match_with_the_newer_options() {
    // Each Qwen 3 / Gemma 3 setting the trainer trains, then all together: the
    // runtime's q/k norm, GeGLU, head width, post norms and embedding scale against
    // the trainer's forward on the exported file.
    let base = || opts(Positions::Rope, Norm::RmsNorm, Mlp::SwiGlu, false, false, 2);
    let mut cases = Vec::new();
    let mut o = base();
    o.arch.qk_norm = true;
    cases.push(o);
    let mut o = base();
    o.mlp = Mlp::GeGlu;
    cases.push(o);
    let mut o = base();
    o.arch.head_dim = Some(24); // q width 96 over d = 64
    cases.push(o);
    let mut o = opts(
        Positions::Learned,
        Norm::LayerNorm,
        Mlp::Gelu,
        true,
        true,
        4,
    );
    o.arch.post_norms = true;
    cases.push(o);
    let mut o = base();
    o.arch.embed_scale = Some(8.0);
    cases.push(o);
    let mut o = opts(Positions::Rope, Norm::RmsNorm, Mlp::GeGlu, false, true, 1);
    o.arch = llm_format::ArchOptions {
        head_dim: Some(8),
        qkv_bias: true,
        qk_norm: true,
        post_norms: true,
        embed_scale: Some(8.0),
        ..Default::default()
    };
    cases.push(o);
    for (i, o) in cases.into_iter().enumerate() {
        parity(o, 10 + i as u64);
    }
}

#[test]
fn train_export_quantised_keeps_norms_f32() {
    let o = opts(
        Positions::Learned,
        Norm::LayerNorm,
        Mlp::Gelu,
        true,
        false,
        4,
    );
    let mut m = Model::<f32>::new(o.clone(), true).unwrap();
    m.init_gpt2(5);
    let path = std::env::temp_dir().join(format!("llm-train-export-q-{}.llm", std::process::id()));
    export_model(
        &m,
        &TextTokenizer::byte().spec(),
        None,
        "test",
        DType::Q8_0.into(),
        &path,
    )
    .unwrap();
    let bytes = std::fs::read(&path).unwrap();
    let f = LlmFile::parse(&bytes).unwrap();
    assert_eq!(f.options().unwrap(), o);
    f.check_layout(&o).unwrap();
    assert_eq!(f.tensor("blk.0.attn_q.weight").unwrap().dtype, DType::Q8_0);
    assert_eq!(
        f.tensor("blk.0.attn_norm.weight").unwrap().dtype,
        DType::F32
    );
    assert_eq!(f.tensor("blk.0.attn_q.bias").unwrap().dtype, DType::F32);
    assert_eq!(f.tensor("pos_emb").unwrap().dtype, DType::F32);
    assert!(f.get(keys::PROV_TOOL).is_some());
    // Dequantised q8_0 stays within its per-block error budget.
    let q = f.tensor("blk.1.mlp_up.weight").unwrap().to_f32_vec();
    let x = m.param("blk.1.mlp_up.weight").unwrap();
    for (row_q, row_x) in q.chunks(32).zip(x.chunks(32)) {
        let amax = row_x.iter().fold(0f32, |a, &b| a.max(b.abs()));
        for (a, b) in row_q.iter().zip(row_x) {
            assert!((a - b).abs() <= amax / 127.0 * 0.6 + 1e-6);
        }
    }
    let _ = std::fs::remove_file(&path);
}
