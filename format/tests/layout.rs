//! The canonical tensor directory, pinned: names, shapes and file order must never
//! change (files written before must still load), and the typed slots of
//! `ModelOptions::layer` and the globals must be exactly the layout's entries.

use llm_format::options::TensorSlot;
use llm_format::{Mlp, ModelOptions, Norm, Positions};

fn opts(positions: Positions, norm: Norm, mlp: Mlp, bias: bool, tied: bool) -> ModelOptions {
    ModelOptions {
        vocab_size: 50,
        d_model: 16,
        n_layers: 2,
        n_heads: 4,
        n_kv_heads: 2,
        d_ff: 24,
        max_len: 12,
        positions,
        norm,
        mlp,
        bias,
        tied_embeddings: tied,
        norm_eps: 1e-5,
        rope_base: 10000.0,
        arch: Default::default(),
    }
}

fn listed(layout: &[TensorSlot]) -> Vec<(String, Vec<usize>, bool)> {
    layout
        .iter()
        .map(|s| (s.name.clone(), s.shape.clone(), s.matrix))
        .collect()
}

fn want(list: &[(&str, &[usize], bool)]) -> Vec<(String, Vec<usize>, bool)> {
    list.iter()
        .map(|(n, s, m)| (n.to_string(), s.to_vec(), *m))
        .collect()
}

#[test]
fn gpt2_style_layout_is_pinned() {
    let o = opts(Positions::Learned, Norm::LayerNorm, Mlp::Gelu, true, true);
    let mut w: Vec<(&str, &[usize], bool)> =
        vec![("tok_emb", &[50, 16], true), ("pos_emb", &[12, 16], false)];
    let blk: [Vec<(&str, &[usize], bool)>; 2] = [
        vec![
            ("blk.0.attn_norm.weight", &[16], false),
            ("blk.0.attn_norm.bias", &[16], false),
            ("blk.0.attn_q.weight", &[16, 16], true),
            ("blk.0.attn_q.bias", &[16], false),
            ("blk.0.attn_k.weight", &[8, 16], true),
            ("blk.0.attn_k.bias", &[8], false),
            ("blk.0.attn_v.weight", &[8, 16], true),
            ("blk.0.attn_v.bias", &[8], false),
            ("blk.0.attn_out.weight", &[16, 16], true),
            ("blk.0.attn_out.bias", &[16], false),
            ("blk.0.mlp_norm.weight", &[16], false),
            ("blk.0.mlp_norm.bias", &[16], false),
            ("blk.0.mlp_up.weight", &[24, 16], true),
            ("blk.0.mlp_up.bias", &[24], false),
            ("blk.0.mlp_down.weight", &[16, 24], true),
            ("blk.0.mlp_down.bias", &[16], false),
        ],
        vec![
            ("blk.1.attn_norm.weight", &[16], false),
            ("blk.1.attn_norm.bias", &[16], false),
            ("blk.1.attn_q.weight", &[16, 16], true),
            ("blk.1.attn_q.bias", &[16], false),
            ("blk.1.attn_k.weight", &[8, 16], true),
            ("blk.1.attn_k.bias", &[8], false),
            ("blk.1.attn_v.weight", &[8, 16], true),
            ("blk.1.attn_v.bias", &[8], false),
            ("blk.1.attn_out.weight", &[16, 16], true),
            ("blk.1.attn_out.bias", &[16], false),
            ("blk.1.mlp_norm.weight", &[16], false),
            ("blk.1.mlp_norm.bias", &[16], false),
            ("blk.1.mlp_up.weight", &[24, 16], true),
            ("blk.1.mlp_up.bias", &[24], false),
            ("blk.1.mlp_down.weight", &[16, 24], true),
            ("blk.1.mlp_down.bias", &[16], false),
        ],
    ];
    for b in &blk {
        w.extend(b.iter().cloned());
    }
    w.push(("out_norm.weight", &[16], false));
    w.push(("out_norm.bias", &[16], false));
    assert_eq!(listed(&o.tensor_layout()), want(&w));
}

#[test]
fn llama_style_layout_is_pinned() {
    let o = opts(Positions::Rope, Norm::RmsNorm, Mlp::SwiGlu, false, false);
    let mut w: Vec<(&str, &[usize], bool)> = vec![("tok_emb", &[50, 16], true)];
    for l in 0..2 {
        let names = [
            "attn_norm.weight",
            "attn_q.weight",
            "attn_k.weight",
            "attn_v.weight",
            "attn_out.weight",
            "mlp_norm.weight",
            "mlp_gate.weight",
            "mlp_up.weight",
            "mlp_down.weight",
        ];
        let shapes: [(&[usize], bool); 9] = [
            (&[16], false),
            (&[16, 16], true),
            (&[8, 16], true),
            (&[8, 16], true),
            (&[16, 16], true),
            (&[16], false),
            (&[24, 16], true),
            (&[24, 16], true),
            (&[16, 24], true),
        ];
        for (n, (s, m)) in names.iter().zip(shapes) {
            let name: &'static str = Box::leak(format!("blk.{l}.{n}").into_boxed_str());
            w.push((name, s, m));
        }
    }
    w.push(("out_norm.weight", &[16], false));
    w.push(("output.weight", &[50, 16], true));
    assert_eq!(listed(&o.tensor_layout()), want(&w));
}

#[test]
fn typed_slots_are_the_layout() {
    for positions in [Positions::Learned, Positions::Sinusoidal, Positions::Rope] {
        for norm in [Norm::LayerNorm, Norm::RmsNorm] {
            for mlp in [Mlp::Gelu, Mlp::Relu, Mlp::SwiGlu] {
                for bias in [false, true] {
                    for tied in [false, true] {
                        let o = opts(positions, norm, mlp, bias, tied);
                        let mut v: Vec<TensorSlot> = vec![o.tok_emb()];
                        v.extend(o.pos_emb());
                        for l in 0..o.n_layers {
                            let s = o.layer(l);
                            assert_eq!(s.mlp_gate.is_some(), mlp == Mlp::SwiGlu);
                            assert_eq!(s.attn_q.bias.is_some(), bias);
                            assert_eq!(s.attn_norm.bias.is_some(), bias && norm == Norm::LayerNorm);
                            v.extend(s.tensors().into_iter().cloned());
                        }
                        v.extend(o.out_norm().tensors().cloned());
                        v.extend(o.output());
                        assert_eq!(v, o.tensor_layout());
                    }
                }
            }
        }
    }
}

#[test]
fn arch_options_add_their_tensors_and_keys_only_when_set() {
    use llm_format::options::keys;
    let plain = opts(Positions::Rope, Norm::RmsNorm, Mlp::SwiGlu, false, false);
    // The default writes none of the new keys: such a file reads in older readers.
    let meta = plain.to_meta();
    for k in [
        keys::HEAD_DIM,
        keys::QKV_BIAS,
        keys::QK_NORM,
        keys::ROPE_FREQ_FACTORS,
        keys::EMBED_SCALE,
        keys::POST_NORMS,
        keys::SLIDING_WINDOW,
        keys::SLIDING_WINDOW_PATTERN,
        keys::ROPE_BASE_LOCAL,
        keys::ROPE_SCALE,
        keys::ROPE_YARN_FACTOR,
        keys::ROPE_YARN_ATTN_FACTOR,
    ] {
        assert!(
            meta.iter().all(|(m, _)| m != k),
            "{k} written for the default"
        );
    }
    let mut o = plain.clone();
    o.arch = llm_format::ArchOptions {
        head_dim: Some(6),
        qkv_bias: true,
        qk_norm: true,
        rope_freq_factors: true,
        embed_scale: Some(4.0),
        post_norms: true,
        sliding_window: Some(3),
        sliding_window_pattern: 2,
        rope_base_local: Some(100.0),
        rope_scale: Some(2.0),
        rope_yarn: None,
    };
    o.mlp = Mlp::GeGlu;
    o.validate().unwrap();
    // Layer 0 slides with the local base, layer 1 (2 % 2 == 1) is global.
    assert_eq!((o.layer_window(0), o.layer_rope_base(0)), (Some(3), 100.0));
    assert_eq!((o.layer_window(1), o.layer_rope_base(1)), (None, 10000.0));
    // The position scale applies to the global base only.
    assert_eq!((o.layer_rope_scale(0), o.layer_rope_scale(1)), (1.0, 2.0));
    let layout = listed(&o.tensor_layout());
    let plain_layout = listed(&plain.tensor_layout());
    // q_dim = 4 heads × 6 = 24 over d_model 16; kv 2 × 6 = 12.
    let blk0: Vec<_> = layout
        .iter()
        .filter(|t| t.0.starts_with("blk.0."))
        .cloned()
        .collect();
    assert_eq!(
        blk0,
        want(&[
            ("blk.0.attn_norm.weight", &[16], false),
            ("blk.0.attn_q.weight", &[24, 16], true),
            ("blk.0.attn_q.bias", &[24], false),
            ("blk.0.attn_k.weight", &[12, 16], true),
            ("blk.0.attn_k.bias", &[12], false),
            ("blk.0.attn_v.weight", &[12, 16], true),
            ("blk.0.attn_v.bias", &[12], false),
            ("blk.0.attn_q_norm.weight", &[6], false),
            ("blk.0.attn_k_norm.weight", &[6], false),
            ("blk.0.attn_out.weight", &[16, 24], true),
            ("blk.0.attn_post_norm.weight", &[16], false),
            ("blk.0.mlp_norm.weight", &[16], false),
            ("blk.0.mlp_gate.weight", &[24, 16], true),
            ("blk.0.mlp_up.weight", &[24, 16], true),
            ("blk.0.mlp_down.weight", &[16, 24], true),
            ("blk.0.mlp_post_norm.weight", &[16], false),
        ])
    );
    assert_eq!(layout[1], ("rope_freqs".to_string(), vec![3], false));
    assert_eq!(layout.len(), plain_layout.len() + 1 + 2 * 7);
    // The keys round-trip through the metadata.
    let mut w = llm_format::LlmWriter::new();
    w.extend_meta(o.to_meta());
    let bytes = w.to_bytes().unwrap();
    let f = llm_format::LlmFile::parse(&bytes).unwrap();
    assert_eq!(f.options().unwrap(), o);
    // rope factors without rope are refused.
    let mut bad = opts(Positions::Learned, Norm::LayerNorm, Mlp::Gelu, true, true);
    bad.arch.rope_freq_factors = true;
    assert!(bad
        .validate()
        .unwrap_err()
        .to_string()
        .contains("rope_freq_factors"));
    // A rope scale needs rope and a positive value.
    bad.arch.rope_freq_factors = false;
    bad.arch.rope_scale = Some(2.0);
    assert!(bad
        .validate()
        .unwrap_err()
        .to_string()
        .contains("rope_scale"));
    let mut bad = plain.clone();
    bad.arch.rope_scale = Some(0.0);
    assert!(bad
        .validate()
        .unwrap_err()
        .to_string()
        .contains("rope_scale"));
    // YaRN's settings round-trip; it excludes the linear scale and needs positive values.
    let yarn = llm_format::RopeYarn {
        factor: 4.0,
        original_max_len: 4096,
        beta_fast: 32.0,
        beta_slow: 1.0,
        attn_factor: 1.25,
    };
    let mut y = plain.clone();
    y.arch.rope_yarn = Some(yarn);
    y.validate().unwrap();
    let mut w = llm_format::LlmWriter::new();
    w.extend_meta(y.to_meta());
    let bytes = w.to_bytes().unwrap();
    assert_eq!(
        llm_format::LlmFile::parse(&bytes)
            .unwrap()
            .options()
            .unwrap(),
        y
    );
    for bad in [
        llm_format::ArchOptions {
            rope_scale: Some(2.0),
            rope_yarn: Some(yarn),
            ..Default::default()
        },
        llm_format::ArchOptions {
            rope_yarn: Some(llm_format::RopeYarn {
                factor: 0.0,
                ..yarn
            }),
            ..Default::default()
        },
        llm_format::ArchOptions {
            rope_yarn: Some(llm_format::RopeYarn {
                original_max_len: 0,
                ..yarn
            }),
            ..Default::default()
        },
    ] {
        let mut o = plain.clone();
        o.arch = bad;
        let e = o.validate().unwrap_err().to_string();
        assert!(e.contains("rope_yarn"), "{e}");
    }
}
