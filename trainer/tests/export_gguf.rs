//! `export-gguf`: an `.llm` written as GGUF and read back by the GGUF importer gives
//! the same options, tokenizer and tensor bytes; `--dtype q4_k_m` gives each tensor
//! the mixture's type; models GGUF's llama layout cannot hold are refused with the
//! reason. (That llama.cpp itself runs the exported files is checked by hand, see
//! docs/PERF.md "K-quants against llama.cpp".)

use llm_format::{AlignedBuf, DType, LlmFile, Mlp, ModelOptions, Norm, Positions};
use llm_train::export::export_model;
use llm_train::export_gguf::to_gguf;
use llm_train::import::gguf;
use llm_train::model::Model;
use llm_train::quantize::requantize;
use llm_train::recipe::QuantPlan;
use llm_train::tokenize::TextTokenizer;

fn llama(mlp: Mlp) -> ModelOptions {
    ModelOptions {
        vocab_size: 256,
        d_model: 256,
        n_layers: 3,
        n_heads: 4,
        n_kv_heads: 2,
        d_ff: 288,
        max_len: 32,
        positions: Positions::Rope,
        norm: Norm::RmsNorm,
        mlp,
        bias: false,
        tied_embeddings: false,
        norm_eps: 1e-5,
        rope_base: 10000.0,
        arch: Default::default(),
    }
}

fn exported(o: ModelOptions, tag: &str) -> Vec<u8> {
    let mut m = Model::<f32>::new(o, true).unwrap();
    m.init_gpt2(7);
    let path = std::env::temp_dir().join(format!("llm-gguf-{tag}-{}.llm", std::process::id()));
    let tok = TextTokenizer::byte().spec();
    export_model(&m, &tok, None, "test", DType::F16.into(), &path).unwrap();
    let bytes = std::fs::read(&path).unwrap();
    std::fs::remove_file(&path).ok();
    bytes
}

fn round_trip(llm: &[u8]) {
    let buf = AlignedBuf::from_slice(llm);
    let file = LlmFile::parse(&buf).unwrap();
    let g = to_gguf(&file, "test").unwrap();
    let parsed = gguf::parse(&g, "test.gguf").unwrap();
    let back = gguf::to_model(&parsed, "test.gguf").unwrap();
    assert_eq!(back.opts, file.options().unwrap());
    let tok = file.tokenizer().unwrap();
    assert_eq!(back.tokenizer.tokens, tok.tokens);
    assert_eq!(back.tokenizer.merges, tok.merges);
    assert_eq!((back.tokenizer.bos, back.tokenizer.eos), (tok.bos, tok.eos));
    let chat = llm_format::options::keys::TOK_CHAT_TEMPLATE;
    assert_eq!(
        back.chat_template.as_deref(),
        file.get(chat).and_then(|v| v.as_str())
    );
    let layout = back.opts.tensor_layout();
    assert_eq!(back.tensors.len(), layout.len());
    for t in &back.tensors {
        let orig = file.tensor(&t.name).unwrap();
        assert_eq!(t.dtype, orig.dtype, "{}", t.name);
        assert_eq!(t.shape, orig.shape.to_vec(), "{}", t.name);
        assert!(t.data == orig.data, "{}: bytes differ", t.name);
    }
}

#[test]
fn f16_and_q4_k_m_round_trip_through_the_importer() {
    let llm = exported(llama(Mlp::SwiGlu), "rt");
    round_trip(&llm);
    // The same through the Q4_K_M mixture: K-quants, Q6_K and (rows of 288) the
    // 32-block fallback all survive byte for byte.
    let buf = AlignedBuf::from_slice(&llm);
    let file = LlmFile::parse(&buf).unwrap();
    let plan = QuantPlan::parse("q4_k_m").unwrap();
    let q = requantize(&file, plan).unwrap().to_bytes().unwrap();
    let qbuf = AlignedBuf::from_slice(&q);
    let qfile = LlmFile::parse(&qbuf).unwrap();
    let types: Vec<DType> = qfile.tensors().iter().map(|t| t.dtype).collect();
    for want in [DType::Q4_K, DType::Q6_K, DType::Q5_0, DType::Q8_0] {
        assert!(types.contains(&want), "{want} in {types:?}");
    }
    round_trip(&q);
}

/// A GGUF whose K-quant block has a NaN scale is refused at import, naming the tensor
/// and the block, instead of producing a model that prints NaN.
#[test]
fn import_refuses_a_corrupt_k_quant_scale() {
    let llm = exported(llama(Mlp::SwiGlu), "nan");
    let buf = AlignedBuf::from_slice(&llm);
    let file = LlmFile::parse(&buf).unwrap();
    let q = requantize(&file, QuantPlan::parse("q4_k_m").unwrap())
        .unwrap()
        .to_bytes()
        .unwrap();
    let qbuf = AlignedBuf::from_slice(&q);
    let mut g = to_gguf(&LlmFile::parse(&qbuf).unwrap(), "t").unwrap();
    // Find blk.0.attn_q.weight's data (Q4_K: d is the first 2 bytes of each block)
    // and set block 3's d to NaN.
    let off = {
        let p = gguf::parse(&g, "t.gguf").unwrap();
        let t = p
            .tensors
            .iter()
            .find(|t| t.name == "blk.0.attn_q.weight")
            .unwrap();
        assert_eq!(t.dtype, DType::Q4_K);
        t.data.as_ptr() as usize - g.as_ptr() as usize
    };
    g[off + 3 * 144..off + 3 * 144 + 2].copy_from_slice(&0x7e00u16.to_le_bytes());
    let p = gguf::parse(&g, "t.gguf").unwrap();
    let m = gguf::to_model(&p, "t.gguf").unwrap();
    let e = m
        .into_writer(None)
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(
        e.contains("blk.0.attn_q.weight") && e.contains("block 3") && e.contains("NaN"),
        "{e}"
    );
}

#[test]
fn refuses_what_gguf_llama_cannot_hold() {
    let llm = exported(llama(Mlp::Gelu), "gelu");
    let buf = AlignedBuf::from_slice(&llm);
    let file = LlmFile::parse(&buf).unwrap();
    let e = match to_gguf(&file, "x") {
        Ok(_) => panic!("a gelu model must be refused"),
        Err(e) => e.to_string(),
    };
    assert!(e.contains("mlp gelu"), "{e}");
}

#[test]
fn chat_template_round_trips() {
    let llm = exported(llama(Mlp::SwiGlu), "chat");
    let buf = AlignedBuf::from_slice(&llm);
    let file = LlmFile::parse(&buf).unwrap();
    let mut w = llm_format::LlmWriter::from_file(&file);
    let t =
        "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}";
    w.add_meta(
        llm_format::options::keys::TOK_CHAT_TEMPLATE,
        llm_format::Value::from(t),
    );
    let with = w.to_bytes().unwrap();
    round_trip(&with);
    let buf = AlignedBuf::from_slice(&with);
    let g = to_gguf(&LlmFile::parse(&buf).unwrap(), "test").unwrap();
    let back = gguf::to_model(&gguf::parse(&g, "t.gguf").unwrap(), "t.gguf").unwrap();
    assert_eq!(back.chat_template.as_deref(), Some(t));
}

/// A WordPiece (`wpm`) tokenizer goes out as GGUF's `bert` vocabulary (EOS as
/// `seperator_token_id`, the normaliser keys) and comes back the same.
#[test]
fn wpm_tokenizer_round_trips() {
    let llm = exported(llama(Mlp::SwiGlu), "wpm");
    let buf = AlignedBuf::from_slice(&llm);
    let file = LlmFile::parse(&buf).unwrap();
    let mut tok = file.tokenizer().unwrap();
    tok.kind = llm_format::TokenizerKind::Wpm;
    tok.merges.clear();
    tok.pre = None;
    tok.tokens = (0..tok.tokens.len())
        .map(|i| match i {
            0..=3 => ["[PAD]", "[UNK]", "[CLS]", "[SEP]"][i].to_string().into(),
            _ if i % 2 == 0 => format!("\u{2581}p{i}").into(),
            _ => format!("p{i}").into(),
        })
        .collect();
    tok.token_types = (0..tok.tokens.len())
        .map(|i| if i < 4 { 3 } else { 1 })
        .collect();
    (tok.pad, tok.unk, tok.bos, tok.eos) = (Some(0), Some(1), Some(2), Some(3));
    (tok.add_bos, tok.add_eos) = (true, true);
    for (lowercase, strip_accents) in [(true, true), (false, true), (false, false)] {
        (tok.lowercase, tok.strip_accents) = (lowercase, strip_accents);
        let mut w = llm_format::LlmWriter::from_file(&file);
        w.remove_meta(llm_format::options::keys::TOK_MERGES);
        w.remove_meta(llm_format::options::keys::TOK_PRE);
        w.extend_meta(tok.to_meta());
        let with = w.to_bytes().unwrap();
        round_trip(&with);
        let buf = AlignedBuf::from_slice(&with);
        let g = to_gguf(&LlmFile::parse(&buf).unwrap(), "test").unwrap();
        let back = gguf::to_model(&gguf::parse(&g, "t.gguf").unwrap(), "t.gguf").unwrap();
        assert_eq!(back.tokenizer, tok);
    }
}
