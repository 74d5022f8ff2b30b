//! llama2.c checkpoints (`run.c` legacy header and `export.py` v1 "ak42" header)
//! and llama2.c's `tokenizer.bin`.
//!
//! Both headers carry `dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size,
//! seq_len`. The weights are fp32, each a stack over layers, `[out, in]` row-major
//! (llama2.c's `matmul(xout, x, w, n, d)` reads `w` as `(d, n)`), and RoPE rotates
//! adjacent pairs, so every tensor is copied byte for byte:
//!
//! * legacy (`run.c` `memory_map_weights`): tok_emb (V,D), rms_att (L,D), wq (L,D,D),
//!   wk (L,KV,D), wv (L,KV,D), wo (L,D,D), rms_ffn (L,D), w1 (L,F,D), w2 (L,D,F),
//!   w3 (L,F,D), rms_final (D), freq_cis_real and _imag (T·hs/2 each, unused),
//!   then wcls (V,D) when `vocab_size < 0`;
//! * v1 (`export.py` `version1_export`, header padded to 256 bytes): rms_att, rms_ffn,
//!   rms_final, tok_emb, wq, wk, wv, wo, w1, w2, w3, then wcls unless the shared byte is 1.
//!
//! w1 is the gate, w3 the up projection and w2 the down projection.

use super::cursor::Cursor;
use super::{
    file_name, map_file, read_file, slot_name, ImportError, ImportedModel, LayerPick, RawTensor,
};
use llm_format::options::LayerSlots;
use llm_format::{DType, Mlp, ModelOptions, Norm, Positions, TokenizerKind, TokenizerSpec};
use std::borrow::Cow;
use std::path::Path;

/// v1 magic: "ak42" read as a little-endian u32.
pub const MAGIC_V1: u32 = 0x616b_3432;
/// Header bytes of the v1 format.
pub const V1_HEADER: usize = 256;

/// Reads `model` (a `.bin` checkpoint) and `tokenizer` (`tokenizer.bin`).
pub fn import(model: &Path, tokenizer: &Path) -> Result<ImportedModel, ImportError> {
    let name = file_name(model);
    let map = map_file(model)?;
    let bytes = map.bytes();
    let tok_bytes = read_file(tokenizer)?;
    let (opts, tensors) = parse_checkpoint(bytes, &name)?;
    let tok = parse_tokenizer(&tok_bytes, opts.vocab_size, &file_name(tokenizer))?;
    ImportedModel::finish(opts, tok, tensors, format!("llama2c:{name}"))
}

fn dim(v: i32, field: &str, file: &str) -> Result<usize, ImportError> {
    if v <= 0 {
        return Err(ImportError::malformed(
            file,
            format!("header field {field} = {v}, expected a positive number"),
        ));
    }
    Ok(v as usize)
}

/// Parses a checkpoint into options and canonical f32 tensors.
pub fn parse_checkpoint(
    bytes: &[u8],
    file: &str,
) -> Result<(ModelOptions, Vec<RawTensor>), ImportError> {
    let mut c = Cursor::new(bytes, file);
    let first = c.u32("header")?;
    let v1 = first == MAGIC_V1;
    if v1 {
        let version = c.i32("version")?;
        if version != 1 {
            return Err(ImportError::unsupported(
                file,
                format!("llama2.c checkpoint version {version} (only 1 and the legacy header)"),
            ));
        }
    } else {
        c.seek(0, "header")?;
    }
    let mut h = [0i32; 7];
    for (v, field) in h.iter_mut().zip([
        "dim",
        "hidden_dim",
        "n_layers",
        "n_heads",
        "n_kv_heads",
        "vocab_size",
        "seq_len",
    ]) {
        *v = c.i32(field)?;
    }
    let (vocab, shared) = if v1 {
        let shared = c.u8("shared_classifier")?;
        if shared > 1 {
            return Err(ImportError::malformed(
                file,
                format!("shared_classifier byte is {shared}, expected 0 or 1"),
            ));
        }
        (dim(h[5], "vocab_size", file)?, shared == 1)
    } else {
        // Legacy: a negative vocab_size means a separate classifier follows.
        if h[5] == 0 || h[5] == i32::MIN {
            return Err(ImportError::malformed(
                file,
                format!("header field vocab_size = {}, expected non-zero", h[5]),
            ));
        }
        (h[5].unsigned_abs() as usize, h[5] > 0)
    };
    let opts = ModelOptions {
        vocab_size: vocab,
        d_model: dim(h[0], "dim", file)?,
        n_layers: dim(h[2], "n_layers", file)?,
        n_heads: dim(h[3], "n_heads", file)?,
        n_kv_heads: dim(h[4], "n_kv_heads", file)?,
        d_ff: dim(h[1], "hidden_dim", file)?,
        max_len: dim(h[6], "seq_len", file)?,
        positions: Positions::Rope,
        norm: Norm::RmsNorm,
        mlp: Mlp::SwiGlu,
        bias: false,
        tied_embeddings: shared,
        norm_eps: 1e-5,
        rope_base: 10000.0,
        arch: Default::default(),
    };
    opts.validate()
        .map_err(|e| ImportError::malformed(file, format!("header: {e}")))?;
    if v1 {
        c.seek(V1_HEADER, "v1 header")?;
    }
    // Sizes are now bounded (validate caps each option at 2^28); u64 products cannot
    // overflow for two factors, and Cursor checks three-factor products.
    let (d, f, l, v) = (opts.d_model, opts.d_ff, opts.n_layers, opts.vocab_size);
    let kv = opts.kv_dim();
    let hs = opts.head_dim();
    let floats = expected_floats(&opts, v1, shared, file)?;
    let want = floats
        .checked_mul(4)
        .and_then(|n| n.checked_add(c.pos() as u64))
        .ok_or_else(|| ImportError::malformed(file, "header sizes overflow"))?;
    if bytes.len() as u64 != want {
        return Err(ImportError::malformed(
            file,
            format!(
                "file has {} bytes, the header implies {want} ({} classifier{})",
                bytes.len(),
                if shared { "shared" } else { "separate" },
                if v1 { ", v1" } else { ", legacy" }
            ),
        ));
    }

    let mut t = Vec::new();
    let layers: Vec<LayerSlots> = (0..l).map(|i| opts.layer(i)).collect();
    let mut stack = |c: &mut Cursor<'_>, what: &str, slot: LayerPick, rows: usize, cols: usize| {
        // One tensor per layer, each `rows × cols` (or a vector when rows == 0).
        let per = if rows == 0 { cols } else { rows * cols };
        let all = c.take_n((l * per) as u64, 4, what)?;
        for (chunk, s) in all.chunks_exact(per * 4).zip(&layers) {
            let shape = if rows == 0 {
                vec![cols]
            } else {
                vec![rows, cols]
            };
            t.push(RawTensor {
                name: slot_name(slot(s), file, what)?,
                dtype: DType::F32,
                shape,
                data: chunk.to_vec(),
            });
        }
        Ok::<(), ImportError>(())
    };
    let attn_norm: LayerPick = |s| Some(&s.attn_norm.weight);
    let attn_q: LayerPick = |s| Some(&s.attn_q.weight);
    let attn_k: LayerPick = |s| Some(&s.attn_k.weight);
    let attn_v: LayerPick = |s| Some(&s.attn_v.weight);
    let attn_out: LayerPick = |s| Some(&s.attn_out.weight);
    let mlp_norm: LayerPick = |s| Some(&s.mlp_norm.weight);
    let mlp_gate: LayerPick = |s| s.mlp_gate.as_ref().map(|g| &g.weight);
    let mlp_up: LayerPick = |s| Some(&s.mlp_up.weight);
    let mlp_down: LayerPick = |s| Some(&s.mlp_down.weight);
    let (tok_emb, out_norm) = (opts.tok_emb().name, opts.out_norm().weight.name);
    let single = |c: &mut Cursor<'_>, name: &str, shape: Vec<usize>| {
        let n: usize = shape.iter().product();
        Ok::<RawTensor, ImportError>(RawTensor {
            name: name.into(),
            dtype: DType::F32,
            shape,
            data: c.take_n(n as u64, 4, name)?.to_vec(),
        })
    };
    let mut singles = Vec::new();
    if v1 {
        stack(&mut c, "attn_norm", attn_norm, 0, d)?;
        stack(&mut c, "mlp_norm", mlp_norm, 0, d)?;
        singles.push(single(&mut c, &out_norm, vec![d])?);
        singles.push(single(&mut c, &tok_emb, vec![v, d])?);
        stack(&mut c, "attn_q", attn_q, d, d)?;
        stack(&mut c, "attn_k", attn_k, kv, d)?;
        stack(&mut c, "attn_v", attn_v, kv, d)?;
        stack(&mut c, "attn_out", attn_out, d, d)?;
        stack(&mut c, "mlp_gate", mlp_gate, f, d)?;
        stack(&mut c, "mlp_down", mlp_down, d, f)?;
        stack(&mut c, "mlp_up", mlp_up, f, d)?;
    } else {
        singles.push(single(&mut c, &tok_emb, vec![v, d])?);
        stack(&mut c, "attn_norm", attn_norm, 0, d)?;
        stack(&mut c, "attn_q", attn_q, d, d)?;
        stack(&mut c, "attn_k", attn_k, kv, d)?;
        stack(&mut c, "attn_v", attn_v, kv, d)?;
        stack(&mut c, "attn_out", attn_out, d, d)?;
        stack(&mut c, "mlp_norm", mlp_norm, 0, d)?;
        stack(&mut c, "mlp_gate", mlp_gate, f, d)?;
        stack(&mut c, "mlp_down", mlp_down, d, f)?;
        stack(&mut c, "mlp_up", mlp_up, f, d)?;
        singles.push(single(&mut c, &out_norm, vec![d])?);
        // freq_cis_real and freq_cis_imag: (seq_len, head_size/2) each, unused.
        c.take_n((opts.max_len * hs) as u64, 4, "freq_cis")?;
    }
    // A separate classifier (`tied_embeddings` is `shared`).
    if let Some(output) = opts.output() {
        singles.push(single(&mut c, &output.name, vec![v, d])?);
    }
    t.extend(singles);
    Ok((opts, t))
}

/// Floats after the header, for the exact-size check.
fn expected_floats(
    o: &ModelOptions,
    v1: bool,
    shared: bool,
    file: &str,
) -> Result<u64, ImportError> {
    let (d, f, l, v) = (
        o.d_model as u64,
        o.d_ff as u64,
        o.n_layers as u64,
        o.vocab_size as u64,
    );
    let kv = o.kv_dim() as u64;
    let per_layer = 2 * d + 2 * d * d + 2 * kv * d + 3 * d * f;
    let mut n = l
        .checked_mul(per_layer)
        .and_then(|x| x.checked_add(v * d + d))
        .ok_or_else(|| ImportError::malformed(file, "header sizes overflow"))?;
    if !v1 {
        n += o.max_len as u64 * o.head_dim() as u64; // freq_cis real + imag
    }
    if !shared {
        n += v * d;
    }
    Ok(n)
}

/// Parses llama2.c's `tokenizer.bin` for `vocab_size` tokens: `max_token_length`
/// (i32), then per token `score` (f32), `len` (i32), `len` bytes of UTF-8.
/// llama2.c's exporter wrote `▁` as a space and BOS/EOS as `"\n<s>\n"`/`"\n</s>\n"`;
/// both are mapped back to SentencePiece's pieces.
pub fn parse_tokenizer(
    bytes: &[u8],
    vocab_size: usize,
    file: &str,
) -> Result<TokenizerSpec<'static>, ImportError> {
    let mut c = Cursor::new(bytes, file);
    let max_len = c.i32("max_token_length")?;
    if max_len <= 0 {
        return Err(ImportError::malformed(
            file,
            format!("max_token_length = {max_len}, expected a positive number"),
        ));
    }
    // Each token takes at least 8 bytes: bound the allocation by the file.
    if vocab_size as u64 * 8 > c.remaining() as u64 {
        return Err(ImportError::malformed(
            file,
            format!(
                "truncated: {vocab_size} tokens need at least {} bytes, {} left",
                vocab_size as u64 * 8,
                c.remaining()
            ),
        ));
    }
    let mut tokens = Vec::with_capacity(vocab_size);
    let mut scores = Vec::with_capacity(vocab_size);
    for i in 0..vocab_size {
        let score = c.f32("token score")?;
        let len = c.i32("token length")?;
        if len < 0 || len > max_len {
            return Err(ImportError::malformed(
                file,
                format!("token {i} has length {len}, expected 0..={max_len}"),
            ));
        }
        let raw = c.take(len as usize, "token bytes")?;
        let s = std::str::from_utf8(raw)
            .map_err(|_| ImportError::malformed(file, format!("token {i} is not valid UTF-8")))?;
        let piece = match (i, s) {
            (1, "\n<s>\n") => "<s>".to_string(),
            (2, "\n</s>\n") => "</s>".to_string(),
            _ => s.replace(' ', "\u{2581}"),
        };
        if !score.is_finite() {
            return Err(ImportError::malformed(
                file,
                format!("token {i} has a non-finite score {score}"),
            ));
        }
        tokens.push(Cow::Owned(piece));
        scores.push(score);
    }
    let id = |i: u32| (i < vocab_size as u32).then_some(i);
    Ok(TokenizerSpec {
        kind: TokenizerKind::SentencePiece,
        tokens,
        scores,
        merges: Vec::new(),
        bos: id(1),
        eos: id(2),
        unk: id(0),
        pad: None,
        add_bos: vocab_size > 1,
        add_eos: false,
        token_types: Vec::new(),
        pre: None,
        add_space_prefix: true,
        lowercase: false,
        strip_accents: false,
    })
}
