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
//! * GELU is the tanh approximation (GPT-2); SwiGLU is `down(silu(gate·x) * (up·x))`,
//!   GeGLU `down(gelu(gate·x) * (up·x))`.

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
    /// `down(gelu(gate·x) ⊙ up·x)`, GELU the tanh approximation (Gemma).
    GeGlu,
}

impl Mlp {
    /// Whether the MLP has a gate projection (`mlp_gate`).
    pub fn gated(self) -> bool {
        matches!(self, Mlp::SwiGlu | Mlp::GeGlu)
    }
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
str_enum!(Mlp, Mlp::Gelu => "gelu", Mlp::Relu => "relu", Mlp::SwiGlu => "swiglu", Mlp::GeGlu => "geglu");

/// Every hyper-parameter the runtime needs to run a model.
#[derive(Clone, Debug, PartialEq)]
pub struct ModelOptions {
    /// Number of tokens.
    pub vocab_size: usize,
    /// Residual width.
    pub d_model: usize,
    /// Decoder blocks.
    pub n_layers: usize,
    /// Query heads; `d_model % n_heads == 0` unless [`ArchOptions::head_dim`] is set.
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
    /// The settings beyond the classic decoder (head width, q/k/v biases, q/k norms,
    /// RoPE frequency factors); [`ArchOptions::default`] is the classic decoder.
    pub arch: ArchOptions,
}

/// Settings of the newer decoder families (Qwen 2/3, Llama 3.1), each a named
/// metadata key that is absent when it has its default, so files written before
/// the key existed read as before. `Default` is the classic decoder.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ArchOptions {
    /// Width of one attention head when it is not `d_model / n_heads` (Qwen 3,
    /// Gemma 3): the query projection is then `[n_heads·head_dim, d]` and the output
    /// projection `[d, n_heads·head_dim]`. `None`: `d_model / n_heads`.
    pub head_dim: Option<usize>,
    /// Biases on the q, k and v projections even when `bias` is off (Qwen 2).
    pub qkv_bias: bool,
    /// RMSNorm of every query and key head over its `head_dim` values, before RoPE,
    /// with one weight vector `[head_dim]` for q and one for k per layer (Qwen 3).
    pub qk_norm: bool,
    /// RoPE frequency factors: a tensor `rope_freqs [head_dim/2]` divides each
    /// inverse frequency, `θ_i = pos·base^(−2i/head_dim) / rope_freqs[i]` (Llama 3.1's
    /// `llama3` scaling; llama.cpp's `rope_freqs.weight`).
    pub rope_freq_factors: bool,
    /// Multiplier of the token embedding on input (not of the tied output): Gemma's
    /// `√d_model`. `None`: 1.
    pub embed_scale: Option<f32>,
    /// A second norm of each sub-block's output before the residual add
    /// (`x += post_norm(attn(norm1(x)))`, the same for the MLP), weights
    /// `blk.N.attn_post_norm` and `blk.N.mlp_post_norm` `[d]` (Gemma 2/3).
    pub post_norms: bool,
    /// Sliding-window attention: a query at position `p` sees the keys at
    /// `p − window + 1 ..= p` only, on the layers [`ModelOptions::layer_window`] names.
    pub sliding_window: Option<usize>,
    /// With a sliding window, every `pattern`-th layer (`l % pattern == pattern − 1`)
    /// is global, the others slide (Gemma 3: 6); 0: every layer slides.
    pub sliding_window_pattern: usize,
    /// RoPE base of the sliding-window layers (Gemma 3: 10000 where the global
    /// layers use 1e6). `None`: `rope_base`.
    pub rope_base_local: Option<f32>,
    /// Linear RoPE position interpolation (Chen et al. 2023; Hugging Face's
    /// `rope_scaling: {type: linear, factor}`): positions are divided by it, so the
    /// angle is `(pos / rope_scale)·base^(−2i/head_dim)`, and a model trained for
    /// `L` positions sees `rope_scale · L` positions within the angles it learned.
    /// Applies to the layers on `rope_base` (not to sliding layers with their own
    /// `rope_base_local`, as in Gemma 3). `None`: 1.
    pub rope_scale: Option<f32>,
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
    /// u32, optional: head width when not `d_model / n_heads`
    pub const HEAD_DIM: &str = "llm.head_dim";
    /// bool, optional (false): biases on q, k, v
    pub const QKV_BIAS: &str = "llm.qkv_bias";
    /// bool, optional (false): per-head RMSNorm of q and k before RoPE
    pub const QK_NORM: &str = "llm.qk_norm";
    /// bool, optional (false): a `rope_freqs` tensor divides the RoPE frequencies
    pub const ROPE_FREQ_FACTORS: &str = "llm.rope_freq_factors";
    /// f32, optional (1): multiplier of the input embedding
    pub const EMBED_SCALE: &str = "llm.embed_scale";
    /// bool, optional (false): norms of the attention and MLP outputs
    pub const POST_NORMS: &str = "llm.post_norms";
    /// u32, optional (none): sliding attention window in tokens
    pub const SLIDING_WINDOW: &str = "llm.sliding_window";
    /// u32, optional (0): every N-th layer is global, the others slide
    pub const SLIDING_WINDOW_PATTERN: &str = "llm.sliding_window_pattern";
    /// f32, optional (rope_base): RoPE base of the sliding-window layers
    pub const ROPE_BASE_LOCAL: &str = "llm.rope_base_local";
    /// f32, optional (1): linear RoPE position interpolation, positions divided by it
    pub const ROPE_SCALE: &str = "llm.rope_scale";
    /// string: gpt2 | sentencepiece | char | raw-bpe | wpm
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
    /// bool: append EOS when encoding a prompt (absent = false)
    pub const TOK_ADD_EOS: &str = "tokenizer.add_eos";
    /// array of u8, one per token: [`crate::token_type`] (absent = derived from the
    /// special ids)
    pub const TOK_TYPES: &str = "tokenizer.token_types";
    /// string: pre-tokenizer name, llama.cpp's `tokenizer.ggml.pre` (gpt2 kind; absent =
    /// GPT-2's)
    pub const TOK_PRE: &str = "tokenizer.pre";
    /// bool: sentencepiece prefixes text with a space (absent = true)
    pub const TOK_ADD_SPACE_PREFIX: &str = "tokenizer.add_space_prefix";
    /// bool: wpm lowercases the text (absent = true)
    pub const TOK_LOWERCASE: &str = "tokenizer.lowercase";
    /// bool: wpm strips accents (absent = `tokenizer.lowercase`)
    pub const TOK_STRIP_ACCENTS: &str = "tokenizer.strip_accents";
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
    /// Width of one attention head: [`ArchOptions::head_dim`], else `d_model / n_heads`.
    pub fn head_dim(&self) -> usize {
        self.arch.head_dim.unwrap_or(self.d_model / self.n_heads)
    }

    /// The attention window of layer `l`: `Some(window)` for a sliding layer, `None`
    /// for a global one (see [`ArchOptions::sliding_window_pattern`]).
    pub fn layer_window(&self, l: usize) -> Option<usize> {
        let p = self.arch.sliding_window_pattern;
        self.arch
            .sliding_window
            .filter(|_| p == 0 || l % p != p - 1)
    }

    /// The RoPE base of layer `l`: [`ArchOptions::rope_base_local`] on sliding layers.
    pub fn layer_rope_base(&self, l: usize) -> f32 {
        match (self.layer_window(l), self.arch.rope_base_local) {
            (Some(_), Some(b)) => b,
            _ => self.rope_base,
        }
    }

    /// The RoPE position scale of layer `l` ([`ArchOptions::rope_scale`], 1 when
    /// unset): positions are divided by it; sliding layers with their own base keep 1.
    pub fn layer_rope_scale(&self, l: usize) -> f32 {
        match (self.layer_window(l), self.arch.rope_base_local) {
            (Some(_), Some(_)) => 1.0,
            _ => self.arch.rope_scale.unwrap_or(1.0),
        }
    }

    /// Width of the query projection (and of the attention output): `n_heads · head_dim`.
    pub fn q_dim(&self) -> usize {
        self.n_heads * self.head_dim()
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
        if let Some(hd) = self.arch.head_dim {
            if hd == 0 || hd > (1 << 16) {
                return bad(format!("model option head_dim = {hd} is out of range"));
            }
        } else if self.d_model % self.n_heads != 0 {
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
        if self.arch.rope_freq_factors && self.positions != Positions::Rope {
            return bad("rope_freq_factors needs positions = rope".into());
        }
        if let Some(s) = self.arch.embed_scale {
            if !(s.is_finite() && s > 0.0) {
                return bad(format!("embed_scale {s} is out of range"));
            }
        }
        if self.arch.sliding_window == Some(0) {
            return bad("sliding_window 0 is out of range".into());
        }
        if let Some(b) = self.arch.rope_base_local {
            if self.arch.sliding_window.is_none() || !(b > 1.0 && b.is_finite()) {
                return bad(format!(
                    "rope_base_local {b} needs a sliding window and a base above 1"
                ));
            }
        }
        if let Some(s) = self.arch.rope_scale {
            if !(s.is_finite() && s > 0.0) || self.positions != Positions::Rope {
                return bad(format!(
                    "rope_scale {s} needs positions = rope and a finite value above 0"
                ));
            }
        }
        Ok(())
    }

    /// The options as metadata entries (the [`ArchOptions`] keys only when they are
    /// not the default).
    pub fn to_meta(&self) -> Vec<(String, Value<'static>)> {
        let u = |v: usize| Value::U32(v as u32);
        let a = &self.arch;
        let mut m = vec![
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
        ];
        if let Some(hd) = a.head_dim {
            m.push((keys::HEAD_DIM.into(), u(hd)));
        }
        for (key, on) in [
            (keys::QKV_BIAS, a.qkv_bias),
            (keys::QK_NORM, a.qk_norm),
            (keys::ROPE_FREQ_FACTORS, a.rope_freq_factors),
            (keys::POST_NORMS, a.post_norms),
        ] {
            if on {
                m.push((key.into(), Value::Bool(true)));
            }
        }
        if let Some(s) = a.embed_scale {
            m.push((keys::EMBED_SCALE.into(), Value::F32(s)));
        }
        if let Some(w) = a.sliding_window {
            m.push((keys::SLIDING_WINDOW.into(), u(w)));
        }
        if a.sliding_window_pattern != 0 {
            m.push((
                keys::SLIDING_WINDOW_PATTERN.into(),
                u(a.sliding_window_pattern),
            ));
        }
        if let Some(b) = a.rope_base_local {
            m.push((keys::ROPE_BASE_LOCAL.into(), Value::F32(b)));
        }
        if let Some(s) = a.rope_scale {
            m.push((keys::ROPE_SCALE.into(), Value::F32(s)));
        }
        m
    }

    /// Reads and validates the options.
    pub fn from_meta(m: &MetaReader<'_, '_>) -> Result<Self, FormatError> {
        let choice = |key: &str| -> Result<String, FormatError> { Ok(m.str(key)?.to_string()) };
        let unknown = |key: &str, v: &str| {
            FormatError::Invalid(format!("unknown value '{v}' for metadata key '{key}'"))
        };
        let opt_bool = |key: &str| -> Result<bool, FormatError> {
            match m.get(key) {
                None => Ok(false),
                Some(_) => m.bool(key),
            }
        };
        let opt_usize = |key: &str| -> Result<Option<usize>, FormatError> {
            m.get(key).map(|_| m.usize(key)).transpose()
        };
        let opt_f32 = |key: &str| -> Result<Option<f32>, FormatError> {
            m.get(key).map(|_| m.f32(key)).transpose()
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
            arch: ArchOptions {
                head_dim: opt_usize(keys::HEAD_DIM)?,
                qkv_bias: opt_bool(keys::QKV_BIAS)?,
                qk_norm: opt_bool(keys::QK_NORM)?,
                rope_freq_factors: opt_bool(keys::ROPE_FREQ_FACTORS)?,
                embed_scale: opt_f32(keys::EMBED_SCALE)?,
                post_norms: opt_bool(keys::POST_NORMS)?,
                sliding_window: opt_usize(keys::SLIDING_WINDOW)?,
                sliding_window_pattern: opt_usize(keys::SLIDING_WINDOW_PATTERN)?.unwrap_or(0),
                rope_base_local: opt_f32(keys::ROPE_BASE_LOCAL)?,
                rope_scale: opt_f32(keys::ROPE_SCALE)?,
            },
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
        let (d, f, kv, qd) = (self.d_model, self.d_ff, self.kv_dim(), self.q_dim());
        let b = format!("blk.{l}");
        let qkv_bias = self.bias || self.arch.qkv_bias;
        let head_norm = |stem: &str| {
            self.arch.qk_norm.then(|| {
                TensorSlot::new(format!("{b}.{stem}.weight"), vec![self.head_dim()], false)
            })
        };
        LayerSlots {
            attn_norm: self.norm_slots(format!("{b}.attn_norm")),
            attn_q: linear_slots(format!("{b}.attn_q"), qd, d, qkv_bias),
            attn_k: linear_slots(format!("{b}.attn_k"), kv, d, qkv_bias),
            attn_v: linear_slots(format!("{b}.attn_v"), kv, d, qkv_bias),
            attn_q_norm: head_norm("attn_q_norm"),
            attn_k_norm: head_norm("attn_k_norm"),
            attn_out: self.linear_slots(format!("{b}.attn_out"), d, qd),
            attn_post_norm: self
                .arch
                .post_norms
                .then(|| self.norm_slots(format!("{b}.attn_post_norm"))),
            mlp_norm: self.norm_slots(format!("{b}.mlp_norm")),
            mlp_gate: self
                .mlp
                .gated()
                .then(|| self.linear_slots(format!("{b}.mlp_gate"), f, d)),
            mlp_up: self.linear_slots(format!("{b}.mlp_up"), f, d),
            mlp_down: self.linear_slots(format!("{b}.mlp_down"), d, f),
            mlp_post_norm: self
                .arch
                .post_norms
                .then(|| self.norm_slots(format!("{b}.mlp_post_norm"))),
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
        linear_slots(stem, out, inp, self.bias)
    }

    /// The RoPE frequency factors `rope_freqs` `[head_dim/2]`, with
    /// [`ArchOptions::rope_freq_factors`].
    pub fn rope_freqs(&self) -> Option<TensorSlot> {
        self.arch
            .rope_freq_factors
            .then(|| TensorSlot::new("rope_freqs".into(), vec![self.head_dim() / 2], false))
    }

    /// The canonical tensor directory: every tensor the model has, in file order
    /// (`tok_emb`, `pos_emb`, `rope_freqs`, each block's [`LayerSlots::tensors`], `out_norm`,
    /// `output.weight`), with its shape (outermost dimension first) and whether it is a
    /// matrix that may be quantised (`false` for norms, biases and position tables,
    /// which stay f32). Built from the typed slots above.
    pub fn tensor_layout(&self) -> Vec<TensorSlot> {
        let mut v = vec![self.tok_emb()];
        v.extend(self.pos_emb());
        v.extend(self.rope_freqs());
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

/// A linear layer's weight `[out, inp]`, and its bias `[out]` when `bias`.
fn linear_slots(stem: String, out: usize, inp: usize, bias: bool) -> LinearSlots {
    LinearSlots {
        bias: bias.then(|| TensorSlot::new(format!("{stem}.bias"), vec![out], false)),
        weight: TensorSlot::new(format!("{stem}.weight"), vec![out, inp], true),
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
    /// `blk.N.attn_q`: query projection `[q_dim, d]`.
    pub attn_q: LinearSlots,
    /// `blk.N.attn_k`: key projection `[kv_dim, d]`.
    pub attn_k: LinearSlots,
    /// `blk.N.attn_v`: value projection `[kv_dim, d]`.
    pub attn_v: LinearSlots,
    /// `blk.N.attn_q_norm.weight`: RMSNorm weight of each query head `[head_dim]`
    /// (with [`ArchOptions::qk_norm`]).
    pub attn_q_norm: Option<TensorSlot>,
    /// `blk.N.attn_k_norm.weight`: RMSNorm weight of each key head `[head_dim]`
    /// (with [`ArchOptions::qk_norm`]).
    pub attn_k_norm: Option<TensorSlot>,
    /// `blk.N.attn_out`: attention output projection `[d, q_dim]`.
    pub attn_out: LinearSlots,
    /// `blk.N.attn_post_norm`: the norm of the attention output (post norms only).
    pub attn_post_norm: Option<NormSlots>,
    /// `blk.N.mlp_norm`: the norm before the MLP.
    pub mlp_norm: NormSlots,
    /// `blk.N.mlp_gate`: the gate `[d_ff, d]` of SwiGLU and GeGLU.
    pub mlp_gate: Option<LinearSlots>,
    /// `blk.N.mlp_up`: up projection `[d_ff, d]`.
    pub mlp_up: LinearSlots,
    /// `blk.N.mlp_down`: down projection `[d, d_ff]`.
    pub mlp_down: LinearSlots,
    /// `blk.N.mlp_post_norm`: the norm of the MLP output (post norms only).
    pub mlp_post_norm: Option<NormSlots>,
}

impl LayerSlots {
    /// Every tensor of the block in file order.
    pub fn tensors(&self) -> Vec<&TensorSlot> {
        let mut v: Vec<&TensorSlot> = Vec::new();
        v.extend(self.attn_norm.tensors());
        for lin in [&self.attn_q, &self.attn_k, &self.attn_v] {
            v.extend(lin.tensors());
        }
        v.extend(self.attn_q_norm.iter().chain(&self.attn_k_norm));
        v.extend(self.attn_out.tensors());
        v.extend(self.attn_post_norm.iter().flat_map(|n| n.tensors()));
        v.extend(self.mlp_norm.tensors());
        for lin in self.mlp_gate.iter().chain([&self.mlp_up, &self.mlp_down]) {
            v.extend(lin.tensors());
        }
        v.extend(self.mlp_post_norm.iter().flat_map(|n| n.tensors()));
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
    /// BPE over raw UTF-8 (Gemma 4, GGUF `gemma4`): tokens as text with `▁` for spaces,
    /// merge priority is `tokenizer.merges` order, text split only at newlines, `<0xXX>`
    /// byte fallback, no space prefix.
    RawBpe,
    /// WordPiece (BERT, GGUF `bert`), as llama.cpp's WPM: word-initial pieces carry a `▁`
    /// prefix (Hugging Face's `##` continuation pieces are stored without it); the text
    /// is normalised (`lowercase`, `strip_accents`) and split at whitespace, punctuation
    /// and CJK ideographs, then each word is matched greedily, longest piece first.
    Wpm,
}
str_enum!(TokenizerKind, TokenizerKind::Gpt2 => "gpt2", TokenizerKind::SentencePiece => "sentencepiece", TokenizerKind::Char => "char", TokenizerKind::RawBpe => "raw-bpe", TokenizerKind::Wpm => "wpm");

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
    /// Whether prompts get an EOS appended.
    pub add_eos: bool,
    /// Token id → type ([`crate::token_type`]); empty when the file has none (the
    /// special ids are then control tokens, `unk` unknown, the rest normal).
    pub token_types: Vec<u8>,
    /// Pre-tokenizer name (llama.cpp's `tokenizer.ggml.pre`, e.g. `llama-bpe`, `qwen2`);
    /// `None` = GPT-2's. Only the gpt2 kind uses it.
    pub pre: Option<Cow<'a, str>>,
    /// SentencePiece: prefix each text with a space (`▁`), as LLaMA's tokenizer does.
    pub add_space_prefix: bool,
    /// WPM: lowercase the text (BERT's `do_lower_case`; llama.cpp's
    /// `tokenizer.ggml.normalizer.lowercase`). False for the other kinds.
    pub lowercase: bool,
    /// WPM: drop accents (each char to the first char of its canonical decomposition,
    /// combining marks removed; llama.cpp's `tokenizer.ggml.normalizer.strip_accents`).
    /// False for the other kinds.
    pub strip_accents: bool,
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
        m.push((keys::TOK_ADD_EOS.into(), Value::Bool(self.add_eos)));
        if !self.token_types.is_empty() {
            m.push((
                keys::TOK_TYPES.into(),
                Value::Array(self.token_types.iter().map(|&t| Value::U8(t)).collect()),
            ));
        }
        if let Some(pre) = &self.pre {
            m.push((
                keys::TOK_PRE.into(),
                Value::Str(Cow::Owned(pre.to_string())),
            ));
        }
        if self.kind == TokenizerKind::SentencePiece {
            m.push((
                keys::TOK_ADD_SPACE_PREFIX.into(),
                Value::Bool(self.add_space_prefix),
            ));
        }
        if self.kind == TokenizerKind::Wpm {
            m.push((keys::TOK_LOWERCASE.into(), Value::Bool(self.lowercase)));
            m.push((
                keys::TOK_STRIP_ACCENTS.into(),
                Value::Bool(self.strip_accents),
            ));
        }
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
        let token_types = match m.get(keys::TOK_TYPES) {
            None => Vec::new(),
            Some(_) => m
                .array(keys::TOK_TYPES)?
                .iter()
                .map(|v| match v {
                    Value::U8(t) if crate::token_type::is_valid(*t) => Ok(*t),
                    _ => Err(FormatError::Invalid(format!(
                        "{} must hold token types 0..=6 as u8",
                        keys::TOK_TYPES
                    ))),
                })
                .collect::<Result<Vec<u8>, _>>()?,
        };
        if !token_types.is_empty() && token_types.len() != tokens.len() {
            return Err(FormatError::Invalid(format!(
                "tokenizer has {} tokens but {} token types",
                tokens.len(),
                token_types.len()
            )));
        }
        let flag = |key: &str, default: bool| -> Result<bool, FormatError> {
            match m.get(key) {
                None => Ok(default),
                Some(_) => m.bool(key),
            }
        };
        let pre = match m.get(keys::TOK_PRE) {
            None => None,
            Some(Value::Str(s)) => Some(s.clone()),
            Some(_) => m.str(keys::TOK_PRE).map(|_| None)?,
        };
        // The normaliser settings mean something for wpm only; other kinds hold false.
        let wpm = kind == TokenizerKind::Wpm;
        let lowercase = wpm && flag(keys::TOK_LOWERCASE, true)?;
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
            add_eos: flag(keys::TOK_ADD_EOS, false)?,
            token_types,
            pre,
            add_space_prefix: flag(keys::TOK_ADD_SPACE_PREFIX, true)?,
            lowercase,
            strip_accents: wpm && flag(keys::TOK_STRIP_ACCENTS, lowercase)?,
            tokens,
            scores,
            merges,
        })
    }
}
