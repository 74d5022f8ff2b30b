//! Longer context from a trained model: `train --init-from ... --set max_len=N` with
//! `N` above the checkpoint's `max_len` (the cheat sheet's "expand context length").
//!
//! * Learned positions: the `pos_emb` table grows to `N` rows by
//!   [`extend_positions`] (old rows kept, new rows interpolated), so every
//!   logit at a position below the old length is what it was.
//! * RoPE: linear position interpolation (Chen et al. 2023, "Extending Context
//!   Window of Large Language Models via Positional Interpolation"; Hugging Face's
//!   `rope_scaling: {type: linear}`): `rope_scale` grows by `N / old`, so the `N`
//!   positions land on the angles the model was trained on (`llm.rope_scale`).
//!   This changes every position's angle (position `p` now looks like `p·old/N`),
//!   hence the short fine-tune that follows. `--set rope_scale=S` chooses another
//!   scale (1: plain extrapolation).
//! * Sinusoidal positions are a fixed function of the position and need nothing.

use crate::config::TrainConfig;
use llm_format::{ModelOptions, Positions};

/// The learned position table `table: [old, d]` grown to `[new, d]` (`new > old`,
/// `old ≥ 1`).
///
/// Rows `0..old` are copied unchanged, so positions below the old length see exactly
/// the embeddings they were trained with. Row `p ≥ old` is the old table stretched
/// over the new length and sampled at `p`: the linear interpolation between rows
/// `⌊x⌋` and `⌈x⌉` at `x = p·(old − 1)/(new − 1)` (the table resizing of ViT / Chen
/// et al.'s interpolation, applied to the new rows only). The new positions thus get
/// embeddings from the learned range, distinct from one another and in the old
/// table's order, rather than untrained noise; the fine-tune then adapts them.
pub fn extend_positions(table: &[f32], old: usize, new: usize, d: usize) -> Vec<f32> {
    let mut out = Vec::with_capacity(new * d);
    out.extend_from_slice(&table[..old * d]);
    let row = |i: usize| &table[i * d..(i + 1) * d];
    for p in old..new {
        let x = if new > 1 {
            p as f64 * (old - 1) as f64 / (new - 1) as f64
        } else {
            0.0
        };
        let (lo, frac) = (x.floor() as usize, x - x.floor());
        let hi = (lo + 1).min(old - 1);
        let (a, b) = (row(lo), row(hi));
        out.extend(
            a.iter()
                .zip(b)
                .map(|(&a, &b)| (a as f64 * (1.0 - frac) + b as f64 * frac) as f32),
        );
    }
    out
}

/// Extends the `--init-from` model of options `opts` and tensors `tensors` to
/// `new_len` positions and sets `cfg`'s `max_len` and (RoPE) `rope_scale` to match;
/// `scale` is the user's `--set rope_scale`, if given. Returns a one-line note of
/// what was done.
pub fn extend_init(
    cfg: &mut TrainConfig,
    opts: &mut ModelOptions,
    tensors: &mut [(String, Vec<f32>)],
    new_len: usize,
    scale: Option<f64>,
) -> Result<String, String> {
    let old = opts.max_len;
    let note = match opts.positions {
        Positions::Learned => {
            let name = opts.pos_emb().map(|s| s.name).unwrap_or_default();
            let (_, t) = tensors
                .iter_mut()
                .find(|(n, _)| *n == name)
                .ok_or_else(|| format!("--init-from: no {name} tensor to extend"))?;
            if t.len() != old * opts.d_model {
                return Err(format!("--init-from: {name} has the wrong size"));
            }
            *t = extend_positions(t, old, new_len, opts.d_model);
            format!("learned positions {old}..{new_len} interpolated from the table")
        }
        Positions::Rope => {
            let s = scale.unwrap_or(cfg.rope_scale * new_len as f64 / old as f64);
            cfg.rope_scale = s;
            opts.arch.rope_scale = (s != 1.0).then_some(s as f32);
            format!("RoPE position interpolation, rope_scale = {s}")
        }
        Positions::Sinusoidal => "sinusoidal positions need no change".to_string(),
    };
    opts.max_len = new_len;
    cfg.max_len = new_len;
    Ok(format!(
        "note: --init-from: context extended from {old} to {new_len} positions ({note}); \
         fine-tune at the new length to bring the loss back"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::Cpu;
    use crate::export::export_model;
    use crate::model::Model;
    use crate::rng::Rng;
    use crate::tokenize::TextTokenizer;
    use llm_format::{DType, Mlp, Norm};

    #[test]
    fn new_rows_interpolate_the_stretched_table() {
        // old 3 rows of d 2, new 5: rows 3 and 4 sample x = 1.5 and 2.
        let t = [0.0, 10.0, 1.0, 11.0, 3.0, 13.0];
        let e = extend_positions(&t, 3, 5, 2);
        assert_eq!(&e[..6], &t);
        assert_eq!(&e[6..], &[2.0, 12.0, 3.0, 13.0]);
    }

    /// A learned-position model extended from 16 to 40 positions through the path of
    /// `train --init-from llm:... --set max_len=40`: its logits at positions 0..16 of
    /// a 40-token input are the original model's within 1e-4 (relative to the row's
    /// largest logit).
    #[test]
    fn learned_extension_keeps_the_logits_below_the_old_length() {
        let (old, new) = (16, 40);
        let o = ModelOptions {
            vocab_size: 256,
            d_model: 32,
            n_layers: 2,
            n_heads: 4,
            n_kv_heads: 4,
            d_ff: 64,
            max_len: old,
            positions: Positions::Learned,
            norm: Norm::LayerNorm,
            mlp: Mlp::Gelu,
            bias: true,
            tied_embeddings: true,
            norm_eps: 1e-5,
            rope_base: 10000.0,
            arch: Default::default(),
        };
        let mut m = Model::<f32>::new(o.clone(), true).unwrap();
        m.init_gpt2(3);
        let mut r = Rng::for_test(31);
        for x in m.params.iter_mut() {
            *x += (r.normal() * 0.1) as f32;
        }
        let path = std::env::temp_dir().join(format!("llm-extend-{}.llm", std::process::id()));
        let tok = TextTokenizer::byte();
        export_model(&m, &tok.spec(), None, "test", DType::F32.into(), &path).unwrap();

        let mut init = crate::train::load_init(&format!("llm:{}", path.display()), None).unwrap();
        let _ = std::fs::remove_file(&path);
        let mut cfg = TrainConfig::tiny();
        crate::train::apply_options(&mut cfg, &init.opts);
        let note = extend_init(&mut cfg, &mut init.opts, &mut init.tensors, new, None).unwrap();
        assert!(note.contains("16 to 40"), "{note}");
        let mut ext = crate::train::new_model(&cfg, Some(&init)).unwrap();
        assert_eq!(ext.opts.max_len, new);

        let tokens: Vec<u32> = (0..new).map(|_| r.below(256) as u32).collect();
        m.forward(&Cpu, &tokens[..old], None, 1, old, None).unwrap();
        ext.forward(&Cpu, &tokens, None, 1, new, None).unwrap();
        let (want, got) = (m.logits(), ext.logits());
        for i in 0..old {
            let (w, g) = (&want[i * 256..(i + 1) * 256], &got[i * 256..(i + 1) * 256]);
            let scale = w.iter().fold(0f32, |a, &b| a.max(b.abs())).max(1e-3);
            let e = w
                .iter()
                .zip(g)
                .map(|(a, b)| (a - b).abs())
                .fold(0f32, f32::max);
            assert!(
                e <= 1e-4 * scale,
                "position {i}: error {e} (row max {scale})"
            );
        }
        assert!(got.iter().all(|v| v.is_finite()));
        // The new rows are the interpolation, not the GPT-2 initialisation.
        let pe = ext.param("pos_emb").unwrap();
        let want_row = extend_positions(m.param("pos_emb").unwrap(), old, new, 32);
        assert_eq!(pe, &want_row[..]);
    }

    #[test]
    fn rope_extension_sets_the_scale() {
        let mut cfg = TrainConfig::tiny();
        cfg.positions = Positions::Rope;
        let mut o = cfg.model_options().unwrap();
        let note = extend_init(&mut cfg, &mut o, &mut [], 256, None).unwrap();
        assert_eq!((cfg.rope_scale, o.arch.rope_scale), (4.0, Some(4.0)));
        assert!(note.contains("rope_scale = 4"), "{note}");
        assert_eq!(cfg.model_options().unwrap(), o);
        // An explicit scale wins.
        let mut cfg = TrainConfig::tiny();
        cfg.positions = Positions::Rope;
        let mut o = cfg.model_options().unwrap();
        extend_init(&mut cfg, &mut o, &mut [], 256, Some(1.0)).unwrap();
        assert_eq!((cfg.rope_scale, o.arch.rope_scale), (1.0, None));
    }
}
