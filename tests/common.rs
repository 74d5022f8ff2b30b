//! Builders shared by the end-to-end tests: random models written as `.llm` bytes.
#![allow(dead_code)]

use llm_format::{
    quant, DType, LlmWriter, Mlp, ModelOptions, Norm, Positions, TokenizerKind, TokenizerSpec,
};
use llmrt_suite::rng::Rng;
use std::borrow::Cow;
use std::collections::HashMap;

/// A small model with the given options.
pub fn opts(
    positions: Positions,
    norm: Norm,
    mlp: Mlp,
    bias: bool,
    tied: bool,
    n_kv: usize,
) -> ModelOptions {
    ModelOptions {
        vocab_size: 61,
        d_model: 64,
        n_layers: 2,
        n_heads: 4,
        n_kv_heads: n_kv,
        d_ff: 96,
        max_len: 48,
        positions,
        norm,
        mlp,
        bias,
        tied_embeddings: tied,
        norm_eps: 1e-5,
        rope_base: 10000.0,
    }
}

/// A char-level tokenizer over `vocab` printable characters.
pub fn char_tokenizer(vocab: usize) -> TokenizerSpec<'static> {
    let tokens = (0..vocab)
        .map(|i| Cow::Owned(char::from_u32(0x21 + i as u32).expect("ascii").to_string()))
        .collect();
    TokenizerSpec {
        kind: TokenizerKind::Char,
        tokens,
        scores: vec![],
        merges: vec![],
        bos: None,
        eos: None,
        unk: None,
        pad: None,
        add_bos: false,
    }
}

/// Random weights for every slot of the layout; norms near 1, the rest uniform.
pub fn random_weights(o: &ModelOptions, seed: u64) -> HashMap<String, Vec<f32>> {
    let mut rng = Rng::new(seed);
    o.tensor_layout()
        .into_iter()
        .map(|slot| {
            let n: usize = slot.shape.iter().product();
            let v = if slot.name.ends_with("norm.weight") {
                (0..n).map(|_| 1.0 + 0.2 * rng.uniform()).collect()
            } else if slot.matrix || slot.name == "pos_emb" {
                let fan_in = *slot.shape.last().expect("shape") as f32;
                rng.vec(n, 1.7 / fan_in.sqrt())
            } else {
                rng.vec(n, 0.1)
            };
            (slot.name, v)
        })
        .collect()
}

/// Writes the model with matrices in `dtype` and returns the file bytes and the
/// weights as the file holds them (dequantised), for the reference.
pub fn write_model(
    o: &ModelOptions,
    w: &HashMap<String, Vec<f32>>,
    dtype: DType,
) -> (Vec<u8>, HashMap<String, Vec<f32>>) {
    let mut wr = LlmWriter::new();
    wr.extend_meta(o.to_meta());
    wr.extend_meta(char_tokenizer(o.vocab_size).to_meta());
    let mut held = HashMap::new();
    for slot in o.tensor_layout() {
        let v = &w[&slot.name];
        let dt = if slot.matrix { dtype } else { DType::F32 };
        let bytes = quant::quantize(dt, v).expect("whole blocks");
        held.insert(
            slot.name.clone(),
            quant::dequantize_vec(dt, &bytes, v.len()).expect("size"),
        );
        wr.add_tensor(slot.name.clone(), dt, &slot.shape, bytes)
            .expect("valid tensor");
    }
    (wr.to_bytes().expect("serialise"), held)
}
