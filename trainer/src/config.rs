//! The training configuration: one flat TOML table whose keys are the names people
//! know from nanoGPT / llm.c (`d_model`, `n_layers`, `lr`, ...), four presets, `--set k=v`
//! overrides, validation, the mapping to the file's [`ModelOptions`], and the
//! parameter/memory estimate printed before anything large is allocated.

pub use crate::data::Shuffle;
use llm_format::{Mlp, ModelOptions, Norm, Positions};
use serde::{Deserialize, Serialize};
use std::fmt;

/// A configuration problem; the message names the key.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigError(pub String);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "config: {}", self.0)
    }
}

impl std::error::Error for ConfigError {}

/// Storage precision of a run (config key `precision`, `train --precision`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Precision {
    /// fp32 storage: the CPU backend's only precision.
    Fp32,
    /// bf16 working copies over fp32 master weights (CUDA).
    Bf16,
}

impl Precision {
    /// The name in configs and on the command line: `fp32` or `bf16`.
    pub fn name(self) -> &'static str {
        match self {
            Precision::Fp32 => "fp32",
            Precision::Bf16 => "bf16",
        }
    }

    /// Parses [`Self::name`].
    pub fn from_name(s: &str) -> Option<Self> {
        match s {
            "fp32" => Some(Precision::Fp32),
            "bf16" => Some(Precision::Bf16),
            _ => None,
        }
    }
}

impl fmt::Display for Precision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A config value stored by name: the model options' enums and [`Precision`].
trait Named: Sized + Copy {
    /// The config key.
    const KEY: &'static str;
    /// The allowed names, for errors (`a|b|c`).
    const NAMES: &'static str;
    /// The stored name.
    fn to_name(self) -> &'static str;
    /// Parses a stored name.
    fn parse_name(s: &str) -> Option<Self>;

    /// Parses `s`; the error names the key and the allowed values on one line.
    fn parse(s: &str) -> Result<Self, ConfigError> {
        Self::parse_name(s).ok_or_else(|| {
            ConfigError(format!(
                "{} = '{s}' is not one of {}",
                Self::KEY,
                Self::NAMES
            ))
        })
    }
}

macro_rules! named {
    ($($t:ty: $key:literal, $names:literal;)*) => {$(
        impl Named for $t {
            const KEY: &'static str = $key;
            const NAMES: &'static str = $names;
            fn to_name(self) -> &'static str {
                self.name()
            }
            fn parse_name(s: &str) -> Option<Self> {
                <$t>::from_name(s)
            }
        }
    )*};
}
named! {
    Positions: "positions", "learned|sinusoidal|rope";
    Norm: "norm", "layernorm|rmsnorm";
    Mlp: "mlp", "gelu|relu|swiglu|geglu";
    Precision: "precision", "fp32|bf16";
    Shuffle: "shuffle", "random|epoch|off";
}

/// Checks a named key's value before the config is rebuilt from a table, so that a
/// bad name is the one-line error of [`Named::parse`] (other keys and other value
/// types are left to the deserialiser).
fn check_named(key: &str, value: &toml::Value) -> Result<(), ConfigError> {
    let toml::Value::String(s) = value else {
        return Ok(());
    };
    match key {
        "positions" => Positions::parse(s).map(drop),
        "norm" => Norm::parse(s).map(drop),
        "mlp" => Mlp::parse(s).map(drop),
        "precision" => Precision::parse(s).map(drop),
        "shuffle" => Shuffle::parse(s).map(drop),
        _ => Ok(()),
    }
}

/// `#[serde(with)]` for `shuffle`: written as its name, read from a name or from the
/// old boolean (`true` = `epoch`, `false` = `off`), so older configs and checkpoints
/// keep the reading they were trained with.
mod shuffle_serde {
    use super::{Named, Shuffle};
    use serde::{de::Error, Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &Shuffle, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(v.name())
    }

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Bool(bool),
        Name(String),
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Shuffle, D::Error> {
        match Raw::deserialize(d)? {
            Raw::Bool(b) => Ok(Shuffle::from_bool(b)),
            Raw::Name(s) => Shuffle::parse(&s).map_err(|e| D::Error::custom(e.0)),
        }
    }
}

/// `#[serde(with)]` for [`Named`] fields: the same TOML strings as the names.
mod named {
    use super::Named;
    use serde::{de::Error, Deserialize, Deserializer, Serializer};

    pub fn serialize<T: Named, S: Serializer>(v: &T, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(v.to_name())
    }

    pub fn deserialize<'de, T: Named, D: Deserializer<'de>>(d: D) -> Result<T, D::Error> {
        let s = String::deserialize(d)?;
        T::parse(&s).map_err(|e| D::Error::custom(e.0))
    }
}

/// Every hyper-parameter of a run. Missing keys in a TOML file take the `tiny` values.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrainConfig {
    /// Tokens in the vocabulary (the tokenizer may lower it: char-level uses what it finds).
    pub vocab_size: usize,
    /// Residual width C.
    pub d_model: usize,
    /// Decoder blocks.
    pub n_layers: usize,
    /// Query heads.
    pub n_heads: usize,
    /// Key/value heads (GQA/MQA); 0 means `n_heads`.
    pub n_kv_heads: usize,
    /// MLP hidden width; 0 means `4 * d_model`.
    pub d_ff: usize,
    /// Context length T.
    pub max_len: usize,
    /// Training window T when shorter than `max_len` (0 = `max_len`), e.g. to
    /// fine-tune a 1024-position model on 64-token windows.
    pub seq_len: usize,
    /// Sequences per micro-batch B.
    pub batch_size: usize,
    /// Peak learning rate.
    pub lr: f64,
    /// Passes over the training tokens (used when `max_steps` is 0).
    pub num_epochs: usize,
    /// Steps between checkpoints (0 = only at the end).
    pub save_interval: usize,
    /// Dropout probability on the embedding and on both residual branches.
    pub dropout: f64,
    /// AdamW decoupled weight decay (not applied to norms and biases).
    pub weight_decay: f64,
    /// Linear warm-up steps.
    pub warmup_steps: usize,
    /// Learning rate at the end of the cosine decay.
    pub min_lr: f64,
    /// Global gradient-norm clip (0 = off).
    pub grad_clip: f64,
    /// Micro-batches per optimizer step.
    pub grad_accum: usize,
    /// Optimizer steps (0 = derive from `num_epochs`).
    pub max_steps: usize,
    /// Steps between validation evaluations (0 = only at the end).
    pub eval_interval: usize,
    /// Validation batches per evaluation.
    pub eval_iters: usize,
    /// Seed of initialisation, dropout and shuffling.
    pub seed: u64,
    /// `learned`, `sinusoidal` or `rope`.
    #[serde(with = "named")]
    pub positions: Positions,
    /// `layernorm` or `rmsnorm`.
    #[serde(with = "named")]
    pub norm: Norm,
    /// `gelu`, `relu`, `swiglu` or `geglu`.
    #[serde(with = "named")]
    pub mlp: Mlp,
    /// Biases on linear layers and LayerNorm.
    pub bias: bool,
    /// Output projection shares the token embedding.
    pub tied_embeddings: bool,
    /// Epsilon inside the norms.
    pub norm_eps: f64,
    /// RoPE frequency base.
    pub rope_base: f64,
    /// RoPE linear position interpolation: positions are divided by it (1 = off;
    /// `llm.rope_scale`). Set by `train --init-from` when `max_len` grows, see
    /// `crate::extend`.
    pub rope_scale: f64,
    /// Width of one attention head; 0 means `d_model / n_heads` (`llm.head_dim`): the
    /// q projection is then `[n_heads·head_dim, d_model]`, k and v
    /// `[n_kv_heads·head_dim, d_model]`, the output projection back to `d_model`.
    pub head_dim: usize,
    /// Biases on the q, k and v projections even with `bias = false` (Qwen 2;
    /// `llm.qkv_bias`).
    pub qkv_bias: bool,
    /// RMSNorm of every query and key head before RoPE, one weight `[head_dim]` for q
    /// and one for k per layer (Qwen 3, Gemma 3; `llm.qk_norm`).
    pub qk_norm: bool,
    /// A norm of each branch's output before its residual add (Gemma 2/3;
    /// `llm.post_norms`).
    pub post_norms: bool,
    /// Multiplier of the input token embedding (Gemma: √d_model; 1 = off;
    /// `llm.embed_scale`). RoPE models only.
    pub embed_scale: f64,
    /// AdamW beta1.
    pub beta1: f64,
    /// AdamW beta2.
    pub beta2: f64,
    /// AdamW epsilon.
    pub adam_eps: f64,
    /// Apply weight decay to the embedding tables too.
    pub decay_embeddings: bool,
    /// How training windows are read: `random` (nanoGPT's `get_batch`: random starts,
    /// seeded), `epoch` (non-overlapping windows, a seeded permutation per epoch) or
    /// `off` (in order). The old `true`/`false` mean `epoch`/`off`.
    #[serde(with = "shuffle_serde")]
    pub shuffle: Shuffle,
    /// `char`, `byte` or `bpe` (used by `tokenize` and by `train` on raw text).
    pub tokenizer: String,
    /// Checkpoints kept in the run folder.
    pub keep_checkpoints: usize,
    /// Tokens generated for the sample printed at each evaluation.
    pub sample_len: usize,
    /// Stop when the loss exceeds this multiple of the best loss seen so far.
    pub explode_factor: f64,
    /// Storage precision of the run: `fp32` (the CPU backend's only one) or `bf16`
    /// (CUDA: bf16 working copies over fp32 master weights). `train --precision`
    /// and `--device` set it; it is recorded here for the run's record and `--resume`.
    #[serde(with = "named")]
    pub precision: Precision,
    /// Gradient checkpointing: keep only each block's input in the forward and
    /// recompute the block in the backward (same losses and gradients bit for bit,
    /// activation memory of one block instead of all; `train --recompute` sets it).
    pub recompute: bool,
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig::tiny()
    }
}

/// Names of the presets, for `--preset` help and errors.
pub const PRESETS: [&str; 4] = ["tiny", "small", "medium", "large"];

impl TrainConfig {
    /// nanoGPT's Shakespeare-char CPU configuration, small enough to train on a laptop
    /// CPU (timings on 2 cores in docs/PERF.md, "Trainer").
    pub fn tiny() -> Self {
        TrainConfig {
            vocab_size: 256,
            d_model: 128,
            n_layers: 4,
            n_heads: 4,
            n_kv_heads: 0,
            d_ff: 0,
            max_len: 64,
            seq_len: 0,
            batch_size: 12,
            lr: 1e-3,
            num_epochs: 1,
            save_interval: 500,
            dropout: 0.0,
            weight_decay: 0.1,
            warmup_steps: 100,
            min_lr: 1e-4,
            grad_clip: 1.0,
            grad_accum: 1,
            max_steps: 2000,
            eval_interval: 250,
            eval_iters: 20,
            seed: 1337,
            positions: Positions::Learned,
            norm: Norm::LayerNorm,
            mlp: Mlp::Gelu,
            bias: true,
            tied_embeddings: true,
            norm_eps: 1e-5,
            rope_base: 10000.0,
            rope_scale: 1.0,
            head_dim: 0,
            qkv_bias: false,
            qk_norm: false,
            post_norms: false,
            embed_scale: 1.0,
            beta1: 0.9,
            beta2: 0.99,
            adam_eps: 1e-8,
            decay_embeddings: true,
            shuffle: Shuffle::Random,
            tokenizer: "char".into(),
            keep_checkpoints: 3,
            sample_len: 200,
            explode_factor: 10.0,
            precision: Precision::Fp32,
            recompute: false,
        }
    }

    fn scaled(vocab: usize, d: usize, layers: usize, heads: usize, t: usize, b: usize) -> Self {
        TrainConfig {
            vocab_size: vocab,
            d_model: d,
            n_layers: layers,
            n_heads: heads,
            max_len: t,
            batch_size: b,
            lr: 6e-4,
            min_lr: 6e-5,
            beta2: 0.95,
            max_steps: 0,
            warmup_steps: 200,
            save_interval: 1000,
            eval_interval: 500,
            tokenizer: "bpe".into(),
            ..TrainConfig::tiny()
        }
    }

    /// A preset by name (`tiny`, `small`, `medium`, `large`).
    pub fn preset(name: &str) -> Result<Self, ConfigError> {
        Ok(match name {
            "tiny" => TrainConfig::tiny(),
            "small" => TrainConfig::scaled(20_000, 512, 6, 8, 128, 32),
            "medium" => TrainConfig::scaled(50_000, 1024, 12, 16, 256, 64),
            "large" => TrainConfig::scaled(100_000, 2048, 24, 32, 512, 128),
            _ => {
                return Err(ConfigError(format!(
                    "unknown preset '{name}' (one of {})",
                    PRESETS.join(", ")
                )))
            }
        })
    }

    /// Parses a TOML document; missing keys keep the `tiny` values, unknown keys are errors.
    pub fn from_toml(text: &str) -> Result<Self, ConfigError> {
        if let Ok(table) = toml::from_str::<toml::Table>(text) {
            for (k, v) in &table {
                check_named(k, v)?;
            }
        }
        toml::from_str(text).map_err(|e| ConfigError(e.to_string()))
    }

    /// The resolved configuration as TOML (written to the run folder).
    pub fn to_toml(&self) -> String {
        // Every field is a plain scalar, so serialisation cannot fail; keep a message anyway.
        toml::to_string(self).unwrap_or_else(|e| format!("# could not serialise config: {e}\n"))
    }

    /// Applies one `key=value` override; the value is read as TOML (`4`, `1e-3`, `true`)
    /// and falls back to a string (`norm=rmsnorm`).
    pub fn set(&mut self, assignment: &str) -> Result<(), ConfigError> {
        let (key, raw) = assignment
            .split_once('=')
            .ok_or_else(|| ConfigError(format!("--set expects key=value, got '{assignment}'")))?;
        let (key, raw) = (key.trim(), raw.trim());
        let mut table: toml::Table =
            toml::from_str(&self.to_toml()).map_err(|e| ConfigError(format!("internal: {e}")))?;
        let old = table
            .get(key)
            .ok_or_else(|| ConfigError(format!("unknown key '{key}' in --set {assignment}")))?;
        let parsed: Option<toml::Value> = toml::from_str::<toml::Table>(&format!("v = {raw}"))
            .ok()
            .and_then(|mut t| t.remove("v"));
        let value = match (old, parsed) {
            // An integer given to a float key, e.g. `lr=1`.
            (toml::Value::Float(_), Some(toml::Value::Integer(i))) => toml::Value::Float(i as f64),
            (_, Some(v)) => v,
            (_, None) => toml::Value::String(raw.to_string()),
        };
        check_named(key, &value)?;
        table.insert(key.to_string(), value);
        *self = table
            .try_into()
            .map_err(|e: toml::de::Error| ConfigError(format!("--set {assignment}: {e}")))?;
        Ok(())
    }

    /// Effective KV heads.
    pub fn kv_heads(&self) -> usize {
        if self.n_kv_heads == 0 {
            self.n_heads
        } else {
            self.n_kv_heads
        }
    }

    /// Effective training window T.
    pub fn seq(&self) -> usize {
        if self.seq_len == 0 {
            self.max_len
        } else {
            self.seq_len
        }
    }

    /// Effective MLP width.
    pub fn ff(&self) -> usize {
        if self.d_ff == 0 {
            4 * self.d_model
        } else {
            self.d_ff
        }
    }

    /// The model options stored in the exported file.
    pub fn model_options(&self) -> Result<ModelOptions, ConfigError> {
        let o = ModelOptions {
            vocab_size: self.vocab_size,
            d_model: self.d_model,
            n_layers: self.n_layers,
            n_heads: self.n_heads,
            n_kv_heads: self.kv_heads(),
            d_ff: self.ff(),
            max_len: self.max_len,
            positions: self.positions,
            norm: self.norm,
            mlp: self.mlp,
            bias: self.bias,
            tied_embeddings: self.tied_embeddings,
            norm_eps: self.norm_eps as f32,
            rope_base: self.rope_base as f32,
            arch: llm_format::ArchOptions {
                rope_scale: (self.rope_scale != 1.0).then_some(self.rope_scale as f32),
                head_dim: (self.head_dim != 0).then_some(self.head_dim),
                qkv_bias: self.qkv_bias,
                qk_norm: self.qk_norm,
                post_norms: self.post_norms,
                embed_scale: (self.embed_scale != 1.0).then_some(self.embed_scale as f32),
                ..Default::default()
            },
        };
        o.validate().map_err(|e| ConfigError(e.to_string()))?;
        crate::model::check_trainable(&o).map_err(|e| ConfigError(e.0))?;
        Ok(o)
    }

    /// Checks every key and the relations between them.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.model_options()?;
        let positive = [
            ("batch_size", self.batch_size),
            ("grad_accum", self.grad_accum),
            ("eval_iters", self.eval_iters),
            ("keep_checkpoints", self.keep_checkpoints),
        ];
        for (k, v) in positive {
            if v == 0 {
                return Err(ConfigError(format!("{k} must be at least 1")));
            }
        }
        if self.seq() > self.max_len {
            return Err(ConfigError(format!(
                "seq_len {} exceeds max_len {}",
                self.seq_len, self.max_len
            )));
        }
        if self.max_steps == 0 && self.num_epochs == 0 {
            return Err(ConfigError(
                "set max_steps or num_epochs (both are 0)".into(),
            ));
        }
        let unit = [
            ("dropout", self.dropout, 0.0, 0.95),
            ("beta1", self.beta1, 0.0, 0.999_999),
            ("beta2", self.beta2, 0.0, 0.999_999_9),
            ("weight_decay", self.weight_decay, 0.0, 10.0),
        ];
        for (k, v, lo, hi) in unit {
            if !(v >= lo && v <= hi) {
                return Err(ConfigError(format!("{k} = {v} is outside [{lo}, {hi}]")));
            }
        }
        if !(self.lr > 0.0 && self.lr.is_finite()) {
            return Err(ConfigError(format!("lr = {} must be positive", self.lr)));
        }
        if !(self.min_lr >= 0.0 && self.min_lr <= self.lr) {
            return Err(ConfigError(format!(
                "min_lr = {} must lie in [0, lr = {}]",
                self.min_lr, self.lr
            )));
        }
        if !(self.grad_clip >= 0.0 && self.adam_eps > 0.0 && self.explode_factor > 1.0) {
            return Err(ConfigError(
                "grad_clip must be >= 0, adam_eps > 0 and explode_factor > 1".into(),
            ));
        }
        if !matches!(self.tokenizer.as_str(), "char" | "byte" | "bpe") {
            return Err(ConfigError(format!(
                "tokenizer = '{}' is not one of char|byte|bpe",
                self.tokenizer
            )));
        }
        Ok(())
    }

    /// Parameter count and the bytes training needs (see [`MemoryEstimate`]), with
    /// this config's dropout and `recompute`.
    pub fn estimate(&self) -> Result<MemoryEstimate, ConfigError> {
        let o = self.model_options()?;
        Ok(MemoryEstimate::new(
            &o,
            self.batch_size,
            self.seq(),
            self.dropout > 0.0,
            self.recompute,
        ))
    }
}

/// What a run will allocate, in f32 elements turned into bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemoryEstimate {
    /// Trainable parameters (a tied output counted once).
    pub params: usize,
    /// Parameters + gradients + Adam m and v: 16 bytes per parameter.
    pub param_bytes: usize,
    /// The activation set of one micro-batch (B×T): what the forward keeps for the
    /// backward, the logits and the backward's scratch.
    pub activation_bytes: usize,
    /// Counted with gradient checkpointing (one block's activations + the boundaries).
    pub recompute: bool,
    /// Decoder blocks (for the printed mode).
    pub n_layers: usize,
}

impl MemoryEstimate {
    /// Estimates for `batch × seq` tokens, with dropout masks when `dropout` and with
    /// gradient checkpointing when `recompute`. The activation count is
    /// [`crate::model::activation_elems`], the very buffers the model allocates for a
    /// training step (not counted: the set of a one-sequence sample drawn between steps,
    /// at most `1/batch` of it, and a device backend's per-op transfers).
    pub fn new(o: &ModelOptions, batch: usize, seq: usize, dropout: bool, recompute: bool) -> Self {
        let params = o.n_params();
        let acts = crate::model::activation_elems(o, batch, seq, dropout, recompute);
        MemoryEstimate {
            params,
            param_bytes: params.saturating_mul(16),
            activation_bytes: acts.saturating_mul(4),
            recompute,
            n_layers: o.n_layers,
        }
    }

    /// Everything together.
    pub fn total_bytes(&self) -> usize {
        self.param_bytes.saturating_add(self.activation_bytes)
    }
}

impl fmt::Display for MemoryEstimate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mib = |b: usize| b as f64 / (1u64 << 20) as f64;
        let mode = if self.recompute {
            format!(
                "recompute: 1 of {} blocks kept + block inputs",
                self.n_layers
            )
        } else {
            format!("all {} blocks kept", self.n_layers)
        };
        write!(
            f,
            "{:.2}M parameters; memory: {:.1} MiB weights+grads+AdamW, {:.1} MiB activations ({mode}), {:.1} MiB total",
            self.params as f64 / 1e6,
            mib(self.param_bytes),
            mib(self.activation_bytes),
            mib(self.total_bytes())
        )
    }
}

/// Where a run's configuration comes from: a preset or a TOML file, then overrides.
#[derive(clap::Args, Clone, Debug, Default)]
pub struct ConfigArgs {
    /// Preset to start from: tiny, small, medium or large.
    #[arg(long)]
    pub preset: Option<String>,
    /// TOML file with any of the config keys (applied over the preset).
    #[arg(long)]
    pub config: Option<std::path::PathBuf>,
    /// Override one key, e.g. `--set n_layers=4` (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
}

impl ConfigArgs {
    /// Whether `key` is given explicitly, by a `--set` or in the config file, rather
    /// than left to the preset.
    pub fn sets_key(&self, key: &str) -> bool {
        let in_sets = self
            .set
            .iter()
            .any(|s| s.split_once('=').is_some_and(|(k, _)| k.trim() == key));
        in_sets
            || self
                .config
                .as_ref()
                .and_then(|p| std::fs::read_to_string(p).ok())
                .and_then(|t| toml::from_str::<toml::Table>(&t).ok())
                .is_some_and(|t| t.contains_key(key))
    }

    /// Preset (default `tiny`), then the TOML file's keys, then each `--set`, validated.
    pub fn resolve(&self) -> Result<TrainConfig, ConfigError> {
        let mut c = TrainConfig::preset(self.preset.as_deref().unwrap_or("tiny"))?;
        if let Some(path) = &self.config {
            let text = std::fs::read_to_string(path)
                .map_err(|e| ConfigError(format!("cannot read {}: {e}", path.display())))?;
            let mut table: toml::Table =
                toml::from_str(&c.to_toml()).map_err(|e| ConfigError(format!("internal: {e}")))?;
            let file: toml::Table = toml::from_str(&text)
                .map_err(|e| ConfigError(format!("{}: {e}", path.display())))?;
            for (k, v) in file {
                if !table.contains_key(&k) {
                    return Err(ConfigError(format!(
                        "{}: unknown key '{k}'",
                        path.display()
                    )));
                }
                check_named(&k, &v)?;
                table.insert(k, v);
            }
            c = table
                .try_into()
                .map_err(|e: toml::de::Error| ConfigError(format!("{}: {e}", path.display())))?;
        }
        for s in &self.set {
            c.set(s)?;
        }
        c.validate()?;
        Ok(c)
    }
}

/// `llm-train config`: prints the resolved TOML and the estimate.
pub fn run_config(args: ConfigArgs) -> Result<(), Box<dyn std::error::Error>> {
    let c = args.resolve()?;
    print!("{}", c.to_toml());
    println!("# {}", c.estimate()?);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_match_the_issue_table() {
        let s = TrainConfig::preset("small").unwrap();
        assert_eq!(
            (
                s.vocab_size,
                s.d_model,
                s.n_layers,
                s.n_heads,
                s.max_len,
                s.batch_size
            ),
            (20_000, 512, 6, 8, 128, 32)
        );
        assert_eq!(s.ff(), 2048);
        let m = TrainConfig::preset("medium").unwrap();
        assert_eq!(
            (m.vocab_size, m.d_model, m.n_layers, m.n_heads),
            (50_000, 1024, 12, 16)
        );
        let l = TrainConfig::preset("large").unwrap();
        assert_eq!((l.max_len, l.batch_size, l.ff()), (512, 128, 8192));
        for p in PRESETS {
            TrainConfig::preset(p).unwrap().validate().unwrap();
        }
        assert!(TrainConfig::preset("huge").is_err());
    }

    #[test]
    fn set_overrides_and_round_trip() {
        let mut c = TrainConfig::tiny();
        c.set("n_layers=2").unwrap();
        c.set("lr=3e-4").unwrap();
        c.set("norm=rmsnorm").unwrap();
        c.set("bias = false").unwrap();
        c.set("lr=1").unwrap();
        assert_eq!(
            (c.n_layers, c.lr, c.norm, c.bias),
            (2, 1.0, Norm::RmsNorm, false)
        );
        assert!(c.set("n_layer=2").unwrap_err().0.contains("n_layer"));
        assert!(c.set("n_layers").is_err());
        assert!(c.set("n_layers=two").is_err());
        let back = TrainConfig::from_toml(&c.to_toml()).unwrap();
        assert_eq!(back, c);
        let partial = TrainConfig::from_toml("d_model = 64\nmlp = \"swiglu\"").unwrap();
        assert_eq!((partial.d_model, partial.n_layers), (64, 4));
        assert!(TrainConfig::from_toml("dmodel = 3").is_err());
    }

    #[test]
    fn shuffle_takes_names_and_the_old_booleans() {
        let mut c = TrainConfig::tiny();
        assert_eq!(c.shuffle, Shuffle::Random);
        for (v, want) in [
            ("epoch", Shuffle::Epoch),
            ("off", Shuffle::Off),
            ("true", Shuffle::Epoch),
            ("false", Shuffle::Off),
            ("random", Shuffle::Random),
        ] {
            c.set(&format!("shuffle={v}")).unwrap();
            assert_eq!(c.shuffle, want, "shuffle={v}");
            assert_eq!(TrainConfig::from_toml(&c.to_toml()).unwrap(), c);
        }
        // A config (or checkpoint) written before the names reads as it was trained.
        let old = TrainConfig::from_toml("shuffle = false").unwrap();
        assert_eq!(old.shuffle, Shuffle::Off);
        let bad = c.set("shuffle=sometimes").unwrap_err().0;
        assert!(bad.contains("random|epoch|off"), "{bad}");
        assert!(TrainConfig::from_toml("shuffle = 3").is_err());
    }

    #[test]
    fn resolve_preset_file_then_sets() {
        let p = std::env::temp_dir().join(format!("llm-train-cfg-{}.toml", std::process::id()));
        std::fs::write(&p, "n_layers = 2\nlr = 5e-4\nnorm = \"rmsnorm\"\n").unwrap();
        let a = ConfigArgs {
            preset: Some("small".into()),
            config: Some(p.clone()),
            set: vec!["lr=1e-4".into()],
        };
        let c = a.resolve().unwrap();
        assert_eq!(
            (c.d_model, c.n_layers, c.lr, c.norm),
            (512, 2, 1e-4, Norm::RmsNorm)
        );
        std::fs::write(&p, "layers = 2\n").unwrap();
        assert!(a.resolve().unwrap_err().0.contains("unknown key 'layers'"));
        let _ = std::fs::remove_file(p);
    }

    #[test]
    fn validation_names_the_key() {
        let mut c = TrainConfig::tiny();
        c.n_heads = 3;
        assert!(c.validate().unwrap_err().0.contains("n_heads"));
        let mut c = TrainConfig::tiny();
        assert_eq!(
            c.set("mlp=tanh").unwrap_err().0,
            "mlp = 'tanh' is not one of gelu|relu|swiglu|geglu"
        );
        let mut c = TrainConfig::tiny();
        c.min_lr = 1.0;
        assert!(c.validate().unwrap_err().0.contains("min_lr"));
    }

    #[test]
    fn named_keys_keep_their_toml_strings() {
        let c = TrainConfig::from_toml(
            "positions = \"rope\"\nnorm = \"rmsnorm\"\nmlp = \"swiglu\"\nprecision = \"bf16\"\n",
        )
        .unwrap();
        assert_eq!(
            (c.positions, c.norm, c.mlp, c.precision),
            (Positions::Rope, Norm::RmsNorm, Mlp::SwiGlu, Precision::Bf16)
        );
        let text = c.to_toml();
        for line in [
            "positions = \"rope\"",
            "norm = \"rmsnorm\"",
            "mlp = \"swiglu\"",
            "precision = \"bf16\"",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} not in\n{text}");
        }
        let tiny = TrainConfig::tiny().to_toml();
        for line in [
            "positions = \"learned\"",
            "norm = \"layernorm\"",
            "mlp = \"gelu\"",
            "precision = \"fp32\"",
        ] {
            assert!(tiny.lines().any(|l| l == line), "{line} not in\n{tiny}");
        }
        // A bad name is one line naming the allowed values, however it comes.
        let mut c = TrainConfig::tiny();
        c.set("positions=\"alibi\"").unwrap_err();
        assert_eq!(
            c.set("norm=batchnorm").unwrap_err().to_string(),
            "config: norm = 'batchnorm' is not one of layernorm|rmsnorm"
        );
        assert_eq!(
            TrainConfig::from_toml("precision = \"f16\"").unwrap_err().0,
            "precision = 'f16' is not one of fp32|bf16"
        );
        assert_eq!(
            TrainConfig::from_toml("positions = \"alibi\"")
                .unwrap_err()
                .0,
            "positions = 'alibi' is not one of learned|sinusoidal|rope"
        );
        // Not a string at all: the deserialiser's type error.
        assert!(c.set("norm=3").is_err());
    }

    #[test]
    fn estimate_counts_parameters() {
        let c = TrainConfig::tiny();
        let e = c.estimate().unwrap();
        // tiny, vocab 256 tied: emb 256*128 + pos 64*128 + 4 layers * (12*128^2 + 13*128) + 2*128.
        let per_layer = 12 * 128 * 128 + 13 * 128;
        assert_eq!(e.params, 256 * 128 + 64 * 128 + 4 * per_layer + 256);
        assert_eq!(e.param_bytes, 16 * e.params);
        assert!(e.activation_bytes > 12 * 64 * 256 * 4);
        assert!(e.to_string().contains("parameters"));
        assert!(e.to_string().contains("all 4 blocks kept"), "{e}");
        // Checkpointing keeps one block's activations of four: smaller, and said so.
        let mut r = c.clone();
        r.set("recompute=true").unwrap();
        let er = r.estimate().unwrap();
        assert!(er.activation_bytes < e.activation_bytes);
        assert_eq!(er.param_bytes, e.param_bytes);
        assert!(er.to_string().contains("recompute: 1 of 4 blocks"), "{er}");
        // Configs and checkpoints written before the key existed load with it off.
        assert!(!TrainConfig::from_toml("d_model = 64").unwrap().recompute);
        assert!(
            TrainConfig::from_toml("recompute = true")
                .unwrap()
                .recompute
        );
    }
}
