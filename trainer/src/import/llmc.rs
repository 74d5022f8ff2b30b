//! llm.c GPT-2 checkpoints (`train_gpt2.c`) and llm.c's GPT-2 tokenizer file.
//!
//! Checkpoint: 256 × i32 header `[20240326, version (3 = fp32, 5 = bf16), max_seq_len,
//! vocab_size, num_layers, num_heads, channels, padded_vocab_size, ...]`, then the
//! parameters in `fill_in_parameter_sizes` order, each `[out, in]` row-major
//! (llm.c's `matmul_forward` reads `weight[o*C + i]`):
//! wte (Vp,C), wpe (T,C), ln1w (L,C), ln1b (L,C), qkvw (L,3C,C), qkvb (L,3C),
//! attprojw (L,C,C), attprojb (L,C), ln2w (L,C), ln2b (L,C), fcw (L,4C,C), fcb (L,4C),
//! fcprojw (L,C,4C), fcprojb (L,C), lnfw (C), lnfb (C).
//!
//! qkv rows split into q, k, v (rows `0..C`, `C..2C`, `2C..3C`); the padded vocab rows
//! `V..Vp` of wte are dropped; bf16 weights stay bf16 bytes (norms and biases become
//! f32 later, exactly, in [`super::ImportedModel::convert`]).
//!
//! Tokenizer: 256 × u32 header `[20240328, version 1|2, vocab_size, eot (v2)]`, then
//! per token a u8 length and that many raw bytes, stored here in GPT-2's
//! bytes-to-unicode form.

use super::cursor::Cursor;
use super::{file_name, map_file, read_file, slot_name, ImportError, ImportedModel, RawTensor};
use llm_format::options::{LayerSlots, TensorSlot};
use llm_format::{DType, Mlp, ModelOptions, Norm, Positions, TokenizerKind, TokenizerSpec};
use std::borrow::Cow;
use std::path::Path;

/// Checkpoint magic.
pub const MODEL_MAGIC: i32 = 20240326;
/// Tokenizer magic.
pub const TOKENIZER_MAGIC: u32 = 20240328;
/// Header bytes of both files (256 × 4).
pub const HEADER: usize = 1024;

/// Reads `model` (`gpt2_124M.bin` style) and `tokenizer` (`gpt2_tokenizer.bin`).
pub fn import(model: &Path, tokenizer: &Path) -> Result<ImportedModel, ImportError> {
    let name = file_name(model);
    let map = map_file(model)?;
    let bytes = map.bytes();
    let tok_bytes = read_file(tokenizer)?;
    let (opts, tensors) = parse_checkpoint(bytes, &name)?;
    let tok = parse_tokenizer(&tok_bytes, &file_name(tokenizer))?;
    ImportedModel::finish(opts, tok, tensors, format!("llmc:{name}"))
}

/// Parses a checkpoint into GPT-2 options and canonical tensors (f32 or bf16).
pub fn parse_checkpoint(
    bytes: &[u8],
    file: &str,
) -> Result<(ModelOptions, Vec<RawTensor>), ImportError> {
    let mut c = Cursor::new(bytes, file);
    let mut h = [0i32; 8];
    for (v, field) in h.iter_mut().zip([
        "magic",
        "version",
        "max_seq_len",
        "vocab_size",
        "num_layers",
        "num_heads",
        "channels",
        "padded_vocab_size",
    ]) {
        *v = c.i32(field)?;
    }
    if h[0] != MODEL_MAGIC {
        return Err(ImportError::malformed(
            file,
            format!(
                "bad magic {}, expected {MODEL_MAGIC} (llm.c checkpoint)",
                h[0]
            ),
        ));
    }
    let (dtype, esz) = match h[1] {
        3 => (DType::F32, 4usize),
        5 => (DType::BF16, 2usize),
        v => {
            return Err(ImportError::unsupported(
                file,
                format!("llm.c checkpoint version {v} (expected 3 = fp32 or 5 = bf16)"),
            ))
        }
    };
    let pos = |i: usize, name: &str| -> Result<usize, ImportError> {
        if h[i] <= 0 {
            return Err(ImportError::malformed(
                file,
                format!("header field {name} = {}, expected a positive number", h[i]),
            ));
        }
        Ok(h[i] as usize)
    };
    let (t_max, v, l, nh, ch, vp) = (
        pos(2, "max_seq_len")?,
        pos(3, "vocab_size")?,
        pos(4, "num_layers")?,
        pos(5, "num_heads")?,
        pos(6, "channels")?,
        pos(7, "padded_vocab_size")?,
    );
    if vp < v {
        return Err(ImportError::malformed(
            file,
            format!("padded_vocab_size {vp} is smaller than vocab_size {v}"),
        ));
    }
    let opts = ModelOptions {
        vocab_size: v,
        d_model: ch,
        n_layers: l,
        n_heads: nh,
        n_kv_heads: nh,
        d_ff: ch.saturating_mul(4),
        max_len: t_max,
        positions: Positions::Learned,
        norm: Norm::LayerNorm,
        mlp: Mlp::Gelu,
        bias: true,
        tied_embeddings: true,
        norm_eps: 1e-5,
        rope_base: 10000.0,
        arch: Default::default(),
    };
    opts.validate()
        .map_err(|e| ImportError::malformed(file, format!("header: {e}")))?;
    if vp > 1 << 28 {
        return Err(ImportError::malformed(
            file,
            format!("padded_vocab_size {vp} is out of range"),
        ));
    }
    // Every option is now at most 2^28, so these products fit u128.
    let (c64, l64) = (ch as u64, l as u64);
    let (c128, l128) = (ch as u128, l as u128);
    let n_params =
        vp as u128 * c128 + t_max as u128 * c128 + l128 * (12 * c128 * c128 + 13 * c128) + 2 * c128;
    let want = n_params * esz as u128 + HEADER as u128;
    if bytes.len() as u128 != want {
        return Err(ImportError::malformed(
            file,
            format!(
                "file has {} bytes, the header implies {want} ({n_params} {} parameters)",
                bytes.len(),
                dtype
            ),
        ));
    }
    c.seek(HEADER, "header")?;

    let mut t = Vec::new();
    let raw = |name: String, shape: Vec<usize>, data: &[u8]| RawTensor {
        name,
        dtype,
        shape,
        data: data.to_vec(),
    };
    let wte = c.take_n(vp as u64 * c64, esz as u64, "wte")?;
    // Keep rows 0..V; rows V..Vp are padding.
    t.push(raw(opts.tok_emb().name, vec![v, ch], &wte[..v * ch * esz]));
    let wpe = c.take_n(t_max as u64 * c64, esz as u64, "wpe")?;
    let pos_emb = slot_name(opts.pos_emb().as_ref(), file, "wpe")?;
    t.push(raw(pos_emb, vec![t_max, ch], wpe));
    // Per-layer stacks in file order: (llm.c name, rows (0 = a vector), cols).
    let stacks: [(&str, usize, usize); 12] = [
        ("ln1w", 0, ch),
        ("ln1b", 0, ch),
        ("qkvw", 3 * ch, ch),
        ("qkvb", 0, 3 * ch),
        ("attprojw", ch, ch),
        ("attprojb", 0, ch),
        ("ln2w", 0, ch),
        ("ln2b", 0, ch),
        ("fcw", 4 * ch, ch),
        ("fcb", 0, 4 * ch),
        ("fcprojw", ch, 4 * ch),
        ("fcprojb", 0, ch),
    ];
    let layers: Vec<LayerSlots> = (0..l).map(|i| opts.layer(i)).collect();
    for (what, rows, cols) in stacks {
        let per = rows.max(1) * cols;
        let all = c.take_n(l64 * per as u64, esz as u64, what)?;
        for (chunk, s) in all.chunks_exact(per * esz).zip(&layers) {
            let bias = |b: &Option<TensorSlot>| slot_name(b.as_ref(), file, what);
            match what {
                "ln1w" => t.push(raw(s.attn_norm.weight.name.clone(), vec![ch], chunk)),
                "ln1b" => t.push(raw(bias(&s.attn_norm.bias)?, vec![ch], chunk)),
                "qkvw" | "qkvb" => {
                    // Rows [q; k; v], each C rows of `cols` (weights) or C values (bias).
                    let part = chunk.len() / 3;
                    for (j, lin) in [&s.attn_q, &s.attn_k, &s.attn_v].into_iter().enumerate() {
                        let (name, shape) = if what == "qkvw" {
                            (lin.weight.name.clone(), vec![ch, ch])
                        } else {
                            (bias(&lin.bias)?, vec![ch])
                        };
                        t.push(raw(name, shape, &chunk[j * part..(j + 1) * part]));
                    }
                }
                "attprojw" => t.push(raw(s.attn_out.weight.name.clone(), vec![ch, ch], chunk)),
                "attprojb" => t.push(raw(bias(&s.attn_out.bias)?, vec![ch], chunk)),
                "ln2w" => t.push(raw(s.mlp_norm.weight.name.clone(), vec![ch], chunk)),
                "ln2b" => t.push(raw(bias(&s.mlp_norm.bias)?, vec![ch], chunk)),
                "fcw" => t.push(raw(s.mlp_up.weight.name.clone(), vec![4 * ch, ch], chunk)),
                "fcb" => t.push(raw(bias(&s.mlp_up.bias)?, vec![4 * ch], chunk)),
                "fcprojw" => t.push(raw(s.mlp_down.weight.name.clone(), vec![ch, 4 * ch], chunk)),
                _ => t.push(raw(bias(&s.mlp_down.bias)?, vec![ch], chunk)),
            }
        }
    }
    let out_norm = opts.out_norm();
    let lnfw = c.take_n(c64, esz as u64, "lnfw")?;
    t.push(raw(out_norm.weight.name.clone(), vec![ch], lnfw));
    let lnfb = c.take_n(c64, esz as u64, "lnfb")?;
    t.push(raw(
        slot_name(out_norm.bias.as_ref(), file, "lnfb")?,
        vec![ch],
        lnfb,
    ));
    Ok((opts, t))
}

/// GPT-2's `bytes_to_unicode`: printable Latin-1 bytes map to themselves, the other
/// 68 bytes to U+0100.. in byte order.
pub fn byte_to_unicode() -> [char; 256] {
    let mut table = ['\0'; 256];
    let mut n = 0u32;
    for b in 0..256u32 {
        let printable = (0x21..=0x7e).contains(&b) || (0xa1..=0xac).contains(&b) || b >= 0xae;
        let cp = if printable {
            b
        } else {
            n += 1;
            255 + n
        };
        // Code points here are below 0x200: always valid chars.
        table[b as usize] = char::from_u32(cp).unwrap_or('\u{FFFD}');
    }
    table
}

/// Parses llm.c's tokenizer file.
pub fn parse_tokenizer(bytes: &[u8], file: &str) -> Result<TokenizerSpec<'static>, ImportError> {
    let mut c = Cursor::new(bytes, file);
    let magic = c.u32("magic")?;
    if magic != TOKENIZER_MAGIC {
        return Err(ImportError::malformed(
            file,
            format!("bad magic {magic}, expected {TOKENIZER_MAGIC} (llm.c tokenizer)"),
        ));
    }
    let version = c.u32("version")?;
    let vocab = c.u32("vocab_size")? as usize;
    let eot = match version {
        1 => 50256,
        2 => c.u32("eot_token")?,
        v => {
            return Err(ImportError::unsupported(
                file,
                format!("llm.c tokenizer version {v} (expected 1 or 2)"),
            ))
        }
    };
    c.seek(HEADER, "header")?;
    // Each token takes at least 2 bytes (length byte + one byte).
    if vocab == 0 || vocab as u64 * 2 > c.remaining() as u64 {
        return Err(ImportError::malformed(
            file,
            format!(
                "vocab_size {vocab} does not fit the {} bytes after the header",
                c.remaining()
            ),
        ));
    }
    if eot as usize >= vocab {
        return Err(ImportError::malformed(
            file,
            format!("eot token {eot} is not below vocab_size {vocab}"),
        ));
    }
    let table = byte_to_unicode();
    let mut tokens = Vec::with_capacity(vocab);
    for i in 0..vocab {
        let len = c.u8("token length")?;
        if len == 0 {
            return Err(ImportError::malformed(
                file,
                format!("token {i} has length 0"),
            ));
        }
        let raw = c.take(len as usize, "token bytes")?;
        tokens.push(Cow::Owned(
            raw.iter().map(|&b| table[b as usize]).collect::<String>(),
        ));
    }
    Ok(TokenizerSpec {
        kind: TokenizerKind::Gpt2,
        tokens,
        scores: Vec::new(),
        merges: Vec::new(),
        bos: None,
        eos: Some(eot),
        unk: None,
        pad: None,
        add_bos: false,
        add_eos: false,
        token_types: Vec::new(),
        pre: None,
        add_space_prefix: true,
        lowercase: false,
        strip_accents: false,
    })
}
