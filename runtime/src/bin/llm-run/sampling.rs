//! The sampler flags, declared once for every command that samples (generation and
//! `chat`), and turned into a checked [`SamplerConfig`] by the runtime's one validation.

use clap::Args;
use llmrt::sampler::SamplerConfig;

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
        };
        c.validate().map_err(crate::flag_error)?;
        Ok(c)
    }
}
