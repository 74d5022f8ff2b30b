//! The model family's options and the tokenizer, as stored in metadata, and the
//! canonical tensor directory (names and shapes) that every producer and consumer
//! of `.llm` files shares.
//!
//! Conventions (normative, see SPEC.md §8):
//! * pre-norm decoder: `x += attn(norm1(x)); x += mlp(norm2(x)); logits = out(norm_f(x))`;
//! * linear weights are `[out, in]`, row-major, so one output is one contiguous row and
//!   quantisation blocks run along `in`;
//! * RoPE rotates adjacent pairs `(x[2i], x[2i+1])` with angle `pos·base^(-2i/head_dim)`
//!   (llama2.c / GGUF convention); sinusoidal positions add
//!   `pe[pos, 2i] = sin(pos·10000^(-2i/d))`, `pe[pos, 2i+1] = cos(...)` to the embedding;
//! * GELU is the tanh approximation (GPT-2); SwiGLU is `down(silu(gate·x) * (up·x))`.

use crate::error::FormatError;
use crate::meta::{MetaReader, Value};
use alloc::borrow::Cow;
use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec;
use alloc::vec::Vec;

/// How token positions enter the model.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Positions {
    /// A learned `pos_emb` table added to the token embedding (GPT-2).
    Learned,
    /// Fixed sine/cosine table added to the token embedding (the classic transformer).
    Sinusoidal,
    /// Rotary embedding applied to queries and keys (LLaMA).
    Rope,
}

/// The normalisation layer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Norm {
    /// LayerNorm: mean and variance, weight and (if biases are on) bias.
    LayerNorm,
    /// RMSNorm: root-mean-square, weight only.
    RmsNorm,
}

/// The feed-forward block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mlp {
    /// `down(gelu(up·x))`, tanh approximation.
    Gelu,
    /// `down(relu(up·x))`.
    Relu,
    /// `down(silu(gate·x) ⊙ up·x)`.
    SwiGlu,
}

macro_rules! str_enum {
    ($t:ty, $( $v:path => $s:literal ),+ $(,)?) => {
        impl $t {
            /// The name stored in metadata and accepted in configs.
            pub fn name(self) -> &'static str { match self { $( $v => $s ),+ } }
            /// Parses [`Self::name`].
            pub fn from_name(s: &str) -> Option<Self> { match s { $( $s => Some($v), )+ _ => None } }
        }
    };
}
str_enum!(Positions, Positions::Learned => "learned", Positions::Sinusoidal => "sinusoidal", Positions::Rope => "rope");
str_enum!(Norm, Norm::LayerNorm => "layernorm", Norm::RmsNorm => "rmsnorm");
str_enum!(Mlp, Mlp::Gelu => "gelu", Mlp::Relu => "relu", Mlp::SwiGlu => "swiglu");

/// Every hyper-parameter the runtime needs to run a model.
#[derive(Clone, Debug, PartialEq)]
pub struct ModelOptions {
    /// Number of tokens.
    pub vocab_size: usize,
    /// Residual width.
    pub d_model: usize,
    /// Decoder blocks.
    pub n_layers: usize,
    /// Query heads; `d_model % n_heads == 0`.
    pub n_heads: usize,
    /// Key/value heads (GQA/MQA); divides `n_heads`.
    pub n_kv_heads: usize,
    /// Hidden width of the MLP.
    pub d_ff: usize,
    /// Context length (positions the model was trained for).
    pub max_len: usize,
    /// Position scheme.
    pub positions: Positions,
    /// Norm layer.
    pub norm: Norm,
    /// MLP kind.
    pub mlp: Mlp,
    /// Biases on linear layers and LayerNorm.
    pub bias: bool,
    /// Output projection shares the token embedding.
    pub tied_embeddings: bool,
    /// Epsilon inside the norm.
    pub norm_eps: f32,
    /// RoPE frequency base (ignored unless `positions == Rope`).
    pub rope_base: f32,
}

/// Metadata keys of the model options.
pub mod keys {
    /// u32
    pub const VOCAB_SIZE: &str = "llm.vocab_size";
    /// u32
    pub const D_MODEL: &str = "llm.d_model";
    /// u32
    pub const N_LAYERS: &str = "llm.n_layers";
    /// u32
    pub const N_HEADS: &str = "llm.n_heads";
    /// u32
    pub const N_KV_HEADS: &str = "llm.n_kv_heads";
    /// u32
    pub const D_FF: &str = "llm.d_ff";
    /// u32
    pub const MAX_LEN: &str = "llm.max_len";
    /// string: learned | sinusoidal | rope
    pub const POSITIONS: &str = "llm.positions";
    /// string: layernorm | rmsnorm
    pub const NORM: &str = "llm.norm";
    /// string: gelu | relu | swiglu
    pub const MLP: &str = "llm.mlp";
    /// bool
    pub const BIAS: &str = "llm.bias";
    /// bool
    pub const TIED: &str = "llm.tied_embeddings";
    /// f32
    pub const NORM_EPS: &str = "llm.norm_eps";
    /// f32
    pub const ROPE_BASE: &str = "llm.rope_base";
    /// string: gpt2 | sentencepiece | char
    pub const TOK_KIND: &str = "tokenizer.kind";
    /// array of string
    pub const TOK_TOKENS: &str = "tokenizer.tokens";
    /// array of f32 (sentencepiece)
    pub const TOK_SCORES: &str = "tokenizer.scores";
    /// array of string "left right" (gpt2; optional)
    pub const TOK_MERGES: &str = "tokenizer.merges";
    /// string (optional): the model's Jinja chat template, as Hugging Face's
    /// `chat_template` and GGUF's key of the same name
    pub const TOK_CHAT_TEMPLATE: &str = "tokenizer.chat_template";
    /// i32, -1 = none
    pub const TOK_BOS: &str = "tokenizer.bos_id";
    /// i32, -1 = none
    pub const TOK_EOS: &str = "tokenizer.eos_id";
    /// i32, -1 = none
    pub const TOK_UNK: &str = "tokenizer.unk_id";
    /// i32, -1 = none
    pub const TOK_PAD: &str = "tokenizer.pad_id";
    /// bool: prepend BOS when encoding a prompt
    pub const TOK_ADD_BOS: &str = "tokenizer.add_bos";
    /// string: where the weights came from (`llama2c:path`, `llm-train`, ...)
    pub const PROV_SOURCE: &str = "provenance.source";
    /// string: RFC 3339 date of writing
    pub const PROV_DATE: &str = "provenance.date";
    /// string: the training config (TOML), if trained here
    pub const PROV_CONFIG: &str = "provenance.train_config";
    /// string: the program and version that wrote the file
    pub const PROV_TOOL: &str = "provenance.tool";
}

impl ModelOptions {
    /// Width of one attention head.
    pub fn head_dim(&self) -> usize {
        self.d_model / self.n_heads
    }

    /// Width of the key/value projections.
    pub fn kv_dim(&self) -> usize {
        self.n_kv_heads * self.head_dim()
    }

    /// Checks the relations between options; the error names the option.
    pub fn validate(&self) -> Result<(), FormatError> {
        let bad = |m: String| Err(FormatError::Invalid(m));
        for (name, v) in [
            ("vocab_size", self.vocab_size),
            ("d_model", self.d_model),
            ("n_layers", self.n_layers),
            ("n_heads", self.n_heads),
            ("n_kv_heads", self.n_kv_heads),
            ("d_ff", self.d_ff),
            ("max_len", self.max_len),
        ] {
            if v == 0 || v > (1 << 28) {
                return bad(format!("model option {name} = {v} is out of range"));
            }
        }
        if self.d_model % self.n_heads != 0 {
            return bad(format!(
                "d_model {} is not a multiple of n_heads {}",
                self.d_model, self.n_heads
            ));
        }
        if self.n_heads % self.n_kv_heads != 0 {
            return bad(format!(
                "n_heads {} is not a multiple of n_kv_heads {}",
                self.n_heads, self.n_kv_heads
            ));
        }
        if self.positions == Positions::Rope && self.head_dim() % 2 != 0 {
            return bad(format!(
                "rope needs an even head_dim, got {}",
                self.head_dim()
            ));
        }
        if self.positions == Positions::Sinusoidal && self.d_model % 2 != 0 {
            return bad(format!(
                "sinusoidal positions need an even d_model, got {}",
                self.d_model
            ));
        }
        if !(self.norm_eps > 0.0 && self.norm_eps < 1.0) {
            return bad(format!("norm_eps {} is out of range", self.norm_eps));
        }
        if self.positions == Positions::Rope
            && !(self.rope_base > 1.0 && self.rope_base.is_finite())
        {
            return bad(format!("rope_base {} is out of range", self.rope_base));
        }
        Ok(())
    }

    /// The options as metadata entries.
    pub fn to_meta(&self) -> Vec<(String, Value<'static>)> {
        let u = |v: usize| Value::U32(v as u32);
        vec![
            (keys::VOCAB_SIZE.into(), u(self.vocab_size)),
            (keys::D_MODEL.into(), u(self.d_model)),
            (keys::N_LAYERS.into(), u(self.n_layers)),
            (keys::N_HEADS.into(), u(self.n_heads)),
            (keys::N_KV_HEADS.into(), u(self.n_kv_heads)),
            (keys::D_FF.into(), u(self.d_ff)),
            (keys::MAX_LEN.into(), u(self.max_len)),
            (keys::POSITIONS.into(), self.positions.name().into()),
            (keys::NORM.into(), self.norm.name().into()),
            (keys::MLP.into(), self.mlp.name().into()),
            (keys::BIAS.into(), Value::Bool(self.bias)),
            (keys::TIED.into(), Value::Bool(self.tied_embeddings)),
            (keys::NORM_EPS.into(), Value::F32(self.norm_eps)),
            (keys::ROPE_BASE.into(), Value::F32(self.rope_base)),
        ]
    }

    /// Reads and validates the options.
    pub fn from_meta(m: &MetaReader<'_, '_>) -> Result<Self, FormatError> {
        let choice = |key: &str| -> Result<String, FormatError> { Ok(m.str(key)?.to_string()) };
        let unknown = |key: &str, v: &str| {
            FormatError::Invalid(format!("unknown value '{v}' for metadata key '{key}'"))
        };
        let pos = choice(keys::POSITIONS)?;
        let norm = choice(keys::NORM)?;
        let mlp = choice(keys::MLP)?;
        let o = ModelOptions {
            vocab_size: m.usize(keys::VOCAB_SIZE)?,
            d_model: m.usize(keys::D_MODEL)?,
            n_layers: m.usize(keys::N_LAYERS)?,
            n_heads: m.usize(keys::N_HEADS)?,
            n_kv_heads: m.usize(keys::N_KV_HEADS)?,
            d_ff: m.usize(keys::D_FF)?,
            max_len: m.usize(keys::MAX_LEN)?,
            positions: Positions::from_name(&pos).ok_or_else(|| unknown(keys::POSITIONS, &pos))?,
            norm: Norm::from_name(&norm).ok_or_else(|| unknown(keys::NORM, &norm))?,
            mlp: Mlp::from_name(&mlp).ok_or_else(|| unknown(keys::MLP, &mlp))?,
            bias: m.bool(keys::BIAS)?,
            tied_embeddings: m.bool(keys::TIED)?,
            norm_eps: m.f32(keys::NORM_EPS)?,
            rope_base: m.f32(keys::ROPE_BASE)?,
        };
        o.validate()?;
        Ok(o)
    }

    /// The token embedding `tok_emb` `[vocab, d]` (also the output projection when tied).
    pub fn tok_emb(&self) -> TensorSlot {
        TensorSlot::new("tok_emb".into(), vec![self.vocab_size, self.d_model], true)
    }

    /// The learned position table `pos_emb` `[max_len, d]`, if positions are learned.
    pub fn pos_emb(&self) -> Option<TensorSlot> {
        (self.positions == Positions::Learned)
            .then(|| TensorSlot::new("pos_emb".into(), vec![self.max_len, self.d_model], false))
    }

    /// The tensors of decoder block `l` (`blk.{l}.*`; `l` should be below `n_layers`).
    pub fn layer(&self, l: usize) -> LayerSlots {
        let (d, f, kv) = (self.d_model, self.d_ff, self.kv_dim());
        let b = format!("blk.{l}");
        LayerSlots {
            attn_norm: self.norm_slots(format!("{b}.attn_norm")),
            attn_q: self.linear_slots(format!("{b}.attn_q"), d, d),
            attn_k: self.linear_slots(format!("{b}.attn_k"), kv, d),
            attn_v: self.linear_slots(format!("{b}.attn_v"), kv, d),
            attn_out: self.linear_slots(format!("{b}.attn_out"), d, d),
            mlp_norm: self.norm_slots(format!("{b}.mlp_norm")),
            mlp_gate: (self.mlp == Mlp::SwiGlu)
                .then(|| self.linear_slots(format!("{b}.mlp_gate"), f, d)),
            mlp_up: self.linear_slots(format!("{b}.mlp_up"), f, d),
            mlp_down: self.linear_slots(format!("{b}.mlp_down"), d, f),
        }
    }

    /// The final norm `out_norm`.
    pub fn out_norm(&self) -> NormSlots {
        self.norm_slots("out_norm".into())
    }

    /// The output projection `output.weight` `[vocab, d]`; `None` when it is tied to
    /// [`ModelOptions::tok_emb`].
    pub fn output(&self) -> Option<TensorSlot> {
        (!self.tied_embeddings).then(|| {
            TensorSlot::new(
                "output.weight".into(),
                vec![self.vocab_size, self.d_model],
                true,
            )
        })
    }

    /// A norm's weight `[d]`, and its bias for LayerNorm with biases.
    fn norm_slots(&self, stem: String) -> NormSlots {
        let d = self.d_model;
        NormSlots {
            bias: (self.norm == Norm::LayerNorm && self.bias)
                .then(|| TensorSlot::new(format!("{stem}.bias"), vec![d], false)),
            weight: TensorSlot::new(format!("{stem}.weight"), vec![d], false),
        }
    }

    /// A linear layer's weight `[out, inp]`, and its bias `[out]` with biases.
    fn linear_slots(&self, stem: String, out: usize, inp: usize) -> LinearSlots {
        LinearSlots {
            bias: self
                .bias
                .then(|| TensorSlot::new(format!("{stem}.bias"), vec![out], false)),
            weight: TensorSlot::new(format!("{stem}.weight"), vec![out, inp], true),
        }
    }

    /// The canonical tensor directory: every tensor the model has, in file order
    /// (`tok_emb`, `pos_emb`, each block's [`LayerSlots::tensors`], `out_norm`,
    /// `output.weight`), with its shape (outermost dimension first) and whether it is a
    /// matrix that may be quantised (`false` for norms, biases and position tables,
    /// which stay f32). Built from the typed slots above.
    pub fn tensor_layout(&self) -> Vec<TensorSlot> {
        let mut v = vec![self.tok_emb()];
        v.extend(self.pos_emb());
        for l in 0..self.n_layers {
            v.extend(self.layer(l).tensors().into_iter().cloned());
        }
        v.extend(self.out_norm().tensors().cloned());
        v.extend(self.output());
        v
    }

    /// Total parameter count (tied output counted once).
    pub fn n_params(&self) -> usize {
        self.tensor_layout()
            .iter()
            .map(|t| t.shape.iter().product::<usize>())
            .sum()
    }
}

/// One entry of [`ModelOptions::tensor_layout`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TensorSlot {
    /// Canonical name, e.g. `blk.3.attn_q.weight`.
    pub name: String,
    /// Shape, outermost first (`[out, in]` for matrices).
    pub shape: Vec<usize>,
    /// A matrix that may be stored quantised.
    pub matrix: bool,
}

impl TensorSlot {
    fn new(name: String, shape: Vec<usize>, matrix: bool) -> Self {
        TensorSlot {
            name,
            shape,
            matrix,
        }
    }
}

/// A linear layer's tensors: weight `[out, in]` and, when the options have biases,
/// bias `[out]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LinearSlots {
    /// `….weight`, `[out, in]`, a matrix.
    pub weight: TensorSlot,
    /// `….bias`, `[out]` (only with `bias`).
    pub bias: Option<TensorSlot>,
}

impl LinearSlots {
    /// Weight, then bias if any (file order).
    pub fn tensors(&self) -> impl Iterator<Item = &TensorSlot> {
        core::iter::once(&self.weight).chain(self.bias.as_ref())
    }
}

/// A norm's tensors: weight `[d]` and, for LayerNorm with biases, bias `[d]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NormSlots {
    /// `….weight`, `[d]`.
    pub weight: TensorSlot,
    /// `….bias`, `[d]` (only LayerNorm with `bias`).
    pub bias: Option<TensorSlot>,
}

impl NormSlots {
    /// Weight, then bias if any (file order).
    pub fn tensors(&self) -> impl Iterator<Item = &TensorSlot> {
        core::iter::once(&self.weight).chain(self.bias.as_ref())
    }
}

/// The tensors of one decoder block ([`ModelOptions::layer`]), one field per role.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LayerSlots {
    /// `blk.N.attn_norm`: the norm before attention.
    pub attn_norm: NormSlots,
    /// `blk.N.attn_q`: query projection `[d, d]`.
    pub attn_q: LinearSlots,
    /// `blk.N.attn_k`: key projection `[kv_dim, d]`.
    pub attn_k: LinearSlots,
    /// `blk.N.attn_v`: value projection `[kv_dim, d]`.
    pub attn_v: LinearSlots,
    /// `blk.N.attn_out`: attention output projection `[d, d]`.
    pub attn_out: LinearSlots,
    /// `blk.N.mlp_norm`: the norm before the MLP.
    pub mlp_norm: NormSlots,
    /// `blk.N.mlp_gate`: SwiGLU's gate `[d_ff, d]` (SwiGLU only).
    pub mlp_gate: Option<LinearSlots>,
    /// `blk.N.mlp_up`: up projection `[d_ff, d]`.
    pub mlp_up: LinearSlots,
    /// `blk.N.mlp_down`: down projection `[d, d_ff]`.
    pub mlp_down: LinearSlots,
}

impl LayerSlots {
    /// Every tensor of the block in file order.
    pub fn tensors(&self) -> Vec<&TensorSlot> {
        let mut v: Vec<&TensorSlot> = Vec::new();
        v.extend(self.attn_norm.tensors());
        for lin in [&self.attn_q, &self.attn_k, &self.attn_v, &self.attn_out] {
            v.extend(lin.tensors());
        }
        v.extend(self.mlp_norm.tensors());
        for lin in self.mlp_gate.iter().chain([&self.mlp_up, &self.mlp_down]) {
            v.extend(lin.tensors());
        }
        v
    }
}

/// Which tokenizer algorithm the vocabulary is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenizerKind {
    /// Byte-level BPE with GPT-2 pre-tokenisation. Tokens are stored in GPT-2's
    /// byte-to-unicode form; merge priority is `tokenizer.merges` order when present,
    /// else token id (tiktoken's rank rule). A byte-level tokenizer is this with 256 tokens.
    Gpt2,
    /// SentencePiece-style BPE: merge the adjacent pair whose concatenation has the
    /// highest score; spaces are `▁`, a `▁` is prefixed; unknown bytes fall back to `<0xXX>`.
    SentencePiece,
    /// One token per Unicode scalar value in `tokens` (char-level models).
    Char,
}
str_enum!(TokenizerKind, TokenizerKind::Gpt2 => "gpt2", TokenizerKind::SentencePiece => "sentencepiece", TokenizerKind::Char => "char");

/// The tokenizer as stored in a file.
#[derive(Clone, Debug, PartialEq)]
pub struct TokenizerSpec<'a> {
    /// Algorithm.
    pub kind: TokenizerKind,
    /// Token id → piece.
    pub tokens: Vec<Cow<'a, str>>,
    /// Token id → score (SentencePiece; empty otherwise).
    pub scores: Vec<f32>,
    /// Merge rules "left right" in priority order (GPT-2; may be empty).
    pub merges: Vec<Cow<'a, str>>,
    /// Beginning-of-sequence id.
    pub bos: Option<u32>,
    /// End-of-sequence id.
    pub eos: Option<u32>,
    /// Unknown-token id.
    pub unk: Option<u32>,
    /// Padding id.
    pub pad: Option<u32>,
    /// Whether prompts get a BOS prepended.
    pub add_bos: bool,
}

impl<'a> TokenizerSpec<'a> {
    /// The tokenizer as metadata entries.
    pub fn to_meta(&self) -> Vec<(String, Value<'static>)> {
        let id = |v: Option<u32>| Value::I32(v.map_or(-1, |x| x as i32));
        let strs = |v: &[Cow<'a, str>]| {
            Value::Array(
                v.iter()
                    .map(|s| Value::Str(Cow::Owned(s.to_string())))
                    .collect(),
            )
        };
        let mut m = vec![
            (keys::TOK_KIND.into(), self.kind.name().into()),
            (keys::TOK_TOKENS.into(), strs(&self.tokens)),
        ];
        if !self.scores.is_empty() {
            m.push((
                keys::TOK_SCORES.into(),
                Value::Array(self.scores.iter().map(|s| Value::F32(*s)).collect()),
            ));
        }
        if !self.merges.is_empty() {
            m.push((keys::TOK_MERGES.into(), strs(&self.merges)));
        }
        m.push((keys::TOK_BOS.into(), id(self.bos)));
        m.push((keys::TOK_EOS.into(), id(self.eos)));
        m.push((keys::TOK_UNK.into(), id(self.unk)));
        m.push((keys::TOK_PAD.into(), id(self.pad)));
        m.push((keys::TOK_ADD_BOS.into(), Value::Bool(self.add_bos)));
        m
    }

    /// Reads and checks the tokenizer (ids in range, scores match tokens).
    pub fn from_meta<'m>(m: &MetaReader<'m, 'a>) -> Result<TokenizerSpec<'a>, FormatError> {
        let kind_s = m.str(keys::TOK_KIND)?;
        let kind = TokenizerKind::from_name(kind_s)
            .ok_or_else(|| FormatError::Invalid(format!("unknown tokenizer kind '{kind_s}'")))?;
        let strs = |key: &str| -> Result<Vec<Cow<'a, str>>, FormatError> {
            m.array(key)?
                .iter()
                .map(|v| match v {
                    Value::Str(s) => Ok(s.clone()),
                    _ => Err(FormatError::Invalid(format!("{key} must hold strings"))),
                })
                .collect()
        };
        let tokens = strs(keys::TOK_TOKENS)?;
        if tokens.is_empty() {
            return Err(FormatError::Invalid("tokenizer has no tokens".into()));
        }
        let scores = match m.get(keys::TOK_SCORES) {
            None => Vec::new(),
            Some(_) => m
                .array(keys::TOK_SCORES)?
                .iter()
                .map(|v| {
                    v.as_f32().ok_or_else(|| {
                        FormatError::Invalid(format!("{} must hold floats", keys::TOK_SCORES))
                    })
                })
                .collect::<Result<_, _>>()?,
        };
        if kind == TokenizerKind::SentencePiece && scores.len() != tokens.len() {
            return Err(FormatError::Invalid(format!(
                "tokenizer has {} tokens but {} scores",
                tokens.len(),
                scores.len()
            )));
        }
        let merges = match m.get(keys::TOK_MERGES) {
            None => Vec::new(),
            Some(_) => strs(keys::TOK_MERGES)?,
        };
        let n = tokens.len() as u64;
        let check = |key: &str| -> Result<Option<u32>, FormatError> {
            let id = m.opt_id(key)?;
            match id {
                Some(i) if i as u64 >= n => Err(FormatError::Invalid(format!(
                    "{key} = {i} is not below the vocabulary size {n}"
                ))),
                _ => Ok(id),
            }
        };
        Ok(TokenizerSpec {
            kind,
            bos: check(keys::TOK_BOS)?,
            eos: check(keys::TOK_EOS)?,
            unk: check(keys::TOK_UNK)?,
            pad: check(keys::TOK_PAD)?,
            add_bos: m
                .get(keys::TOK_ADD_BOS)
                .and_then(|v| v.as_bool())
                .unwrap_or(false),
            tokens,
            scores,
            merges,
        })
    }
}
