//! The sampler flags, declared once for every command that samples (generation and
//! `chat`), and turned into a checked [`SamplerConfig`] by the runtime's one validation;
//! the output constraints (`--grammar`, `--json-schema`) read and checked here too.

use clap::Args;
use llmrt::grammar::Grammar;
use llmrt::sampler::SamplerConfig;
use std::path::PathBuf;
use std::sync::Arc;

/// Sampler settings as flags.
#[derive(Args, Clone, Debug)]
pub struct SamplerArgs {
    /// Temperature, >= 0; below 1e-6 (0 included) greedy.
    #[arg(long, default_value_t = 0.8)]
    pub temperature: f32,
    /// Keep the K most likely tokens (0: all).
    #[arg(long, default_value_t = 40)]
    pub top_k: usize,
    /// Keep the smallest set of tokens whose probability adds up to P, in [0, 1] (1: off).
    #[arg(long, default_value_t = 0.95)]
    pub top_p: f32,
    /// Drop tokens less likely than P times the most likely one, in [0, 1] (0: off).
    #[arg(long, default_value_t = 0.05)]
    pub min_p: f32,
    /// Repetition penalty over the last --repeat-last-n tokens, > 0 (1: off).
    #[arg(long, default_value_t = 1.0)]
    pub repeat_penalty: f32,
    /// How many recent tokens the penalties look at.
    #[arg(long, default_value_t = 64)]
    pub repeat_last_n: usize,
    /// Frequency penalty (0: off).
    #[arg(long, default_value_t = 0.0)]
    pub frequency_penalty: f32,
    /// Presence penalty (0: off).
    #[arg(long, default_value_t = 0.0)]
    pub presence_penalty: f32,
    /// Add BIAS to token ID's logit before the penalties; `ID:-inf` bans it (repeatable).
    #[arg(long, value_name = "ID:BIAS", value_parser = parse_logit_bias)]
    pub logit_bias: Vec<(u32, f32)>,
    /// Constrain the output to a GBNF grammar (llama.cpp's format) read from FILE.
    #[arg(long, value_name = "FILE", conflicts_with = "json_schema")]
    pub grammar: Option<PathBuf>,
    /// Constrain the output to JSON valid under the JSON Schema in FILE.
    #[arg(long, value_name = "FILE")]
    pub json_schema: Option<PathBuf>,
}

/// Parses `--logit-bias ID:BIAS` (`BIAS` a number, `-inf` to ban).
fn parse_logit_bias(s: &str) -> Result<(u32, f32), String> {
    let (id, bias) = s
        .split_once(':')
        .ok_or_else(|| format!("'{s}' is not ID:BIAS (e.g. 13:-inf or 42:2.5)"))?;
    let id = id
        .trim()
        .parse::<u32>()
        .map_err(|_| format!("'{id}' in '{s}' is not a token id"))?;
    let bias = bias
        .trim()
        .parse::<f32>()
        .map_err(|_| format!("'{bias}' in '{s}' is not a number (or -inf)"))?;
    Ok((id, bias))
}

impl SamplerArgs {
    /// The settings with `seed`, checked (`SamplerConfig::validate`); the error is one
    /// line naming the flag.
    pub fn config(&self, seed: u64) -> Result<SamplerConfig, String> {
        let c = SamplerConfig {
            temperature: self.temperature,
            top_k: self.top_k,
            top_p: self.top_p,
            min_p: self.min_p,
            repeat_penalty: self.repeat_penalty,
            repeat_last_n: self.repeat_last_n,
            frequency_penalty: self.frequency_penalty,
            presence_penalty: self.presence_penalty,
            seed,
            logit_bias: self.logit_bias.clone(),
        };
        c.validate().map_err(crate::flag_error)?;
        Ok(c)
    }
}

impl SamplerArgs {
    /// The grammar of `--grammar` or `--json-schema`, parsed and checked (an
    /// unsatisfiable one is an error here, before generation); `None` without either.
    pub fn grammar(&self) -> Result<Option<Arc<Grammar>>, String> {
        read_grammar(self.grammar.as_ref(), self.json_schema.as_ref())
    }
}

/// The grammar of a GBNF file or a JSON Schema file (at most one given), parsed and
/// checked; errors name the file.
pub fn read_grammar(
    gbnf: Option<&PathBuf>,
    schema: Option<&PathBuf>,
) -> Result<Option<Arc<Grammar>>, String> {
    let read =
        |p: &PathBuf| std::fs::read_to_string(p).map_err(|e| format!("{}: {e}", p.display()));
    if let Some(p) = gbnf {
        let g = Grammar::parse(&read(p)?).map_err(|e| format!("{}: {e}", p.display()))?;
        return Ok(Some(Arc::new(g)));
    }
    if let Some(p) = schema {
        let g =
            Grammar::from_json_schema(&read(p)?).map_err(|e| format!("{}: {e}", p.display()))?;
        return Ok(Some(Arc::new(g)));
    }
    Ok(None)
}
