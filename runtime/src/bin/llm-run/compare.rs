//! `llm-run compare`: the same prompts under several sampling settings, the samples
//! side by side and, per setting, how diverse and how likely its text is.
//!
//! A setting (`--sampler "temperature=0.7,top_p=0.9"`) starts from plain sampling at
//! temperature 1 with every filter off (`top_k=0, top_p=1, min_p=0`, no penalties),
//! so it is exactly what it names. Sample `j` of every setting uses seed `S + j`, so
//! the settings draw with the same coins. Per setting, pooled over its prompts and
//! samples (n-grams never cross from one sample into another):
//! - distinct-n: distinct n-grams ÷ n-grams (Li et al. 2016), n = 1, 2;
//! - repetition: the share of 4-grams that repeat an earlier 4-gram of the same sample;
//! - log-prob: the mean natural-log probability of the generated tokens under the
//!   model's unmodified logits (temperature 1, no filters);
//! - tokens/s: generated tokens ÷ wall time, prompt evaluation included.

use clap::Args;
use llmrt::sampler::{Sampler, SamplerConfig};
use llmrt::{ops, Context, ContextParams, Model};
use std::collections::HashSet;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Instant;

/// Arguments of `llm-run compare`.
#[derive(Args)]
pub struct CompareArgs {
    /// Model file (.llm).
    #[arg(short = 'm', long)]
    model: PathBuf,
    /// Prompt text (repeatable).
    #[arg(short = 'p', long = "prompt", required = true)]
    prompts: Vec<String>,
    /// A sampling setting, `key=value,...` with keys temperature, top_k, top_p, min_p,
    /// repeat_penalty, repeat_last_n, frequency_penalty, presence_penalty
    /// (repeatable; unnamed keys: temperature 1, every filter and penalty off).
    #[arg(long = "sampler", required = true, value_name = "K=V,...")]
    samplers: Vec<String>,
    /// Tokens to generate per sample.
    #[arg(short = 'n', long, default_value_t = 100)]
    n_predict: usize,
    /// Samples per prompt and setting.
    #[arg(long, default_value_t = 3)]
    samples: usize,
    /// Seed of sample 0 (sample j uses seed + j, in every setting).
    #[arg(short = 's', long, default_value_t = 1)]
    seed: u64,
    /// Output: `text` (samples side by side, then the table), `md` or `json`.
    #[arg(long, default_value = "text", value_parser = ["text", "md", "json"])]
    format: String,
    /// Width of the text output (default: $COLUMNS, else 100); settings that do not
    /// fit side by side at 20 characters each are printed one after another.
    #[arg(long)]
    width: Option<usize>,
    /// Threads (default: physical cores).
    #[arg(short = 't', long)]
    threads: Option<usize>,
    /// KV-cache storage: f16, q8_0 or f32.
    #[arg(long, default_value = "f16", value_parser = crate::parse_cache_type)]
    cache_type: llmrt::CacheType,
    /// Keep f32 activations and products: for F16/BF16 weights in prompts (and BF16
    /// generation) instead of bf16 dot products (which round both to bf16 where the
    /// CPU has AVX-512 BF16 or aarch64 BF16), and for F32 prompts instead of the AMX
    /// tiles' three bf16 products (about 2⁻¹⁶ relative per product). Exact f32 at
    /// half to a third of the prompt speed.
    #[arg(long, visible_alias = "exact")]
    f16_exact: bool,
}

/// Parses one `--sampler` value over plain sampling at temperature 1.
pub fn parse_sampler(spec: &str) -> Result<SamplerConfig, String> {
    let mut c = SamplerConfig::pure(1.0, 0);
    for kv in spec.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let (k, v) = kv
            .split_once('=')
            .ok_or_else(|| format!("--sampler '{spec}': '{kv}' is not key=value"))?;
        let (k, v) = (k.trim(), v.trim());
        let bad = || format!("--sampler '{spec}': {k} = '{v}' is not a number");
        let f = || {
            v.parse::<f32>()
                .ok()
                .filter(|x| x.is_finite())
                .ok_or_else(bad)
        };
        let u = || v.parse::<usize>().map_err(|_| bad());
        match k {
            "temperature" | "temp" => c.temperature = f()?,
            "top_k" => c.top_k = u()?,
            "top_p" => c.top_p = f()?,
            "min_p" => c.min_p = f()?,
            "repeat_penalty" => c.repeat_penalty = f()?,
            "repeat_last_n" => c.repeat_last_n = u()?,
            "frequency_penalty" => c.frequency_penalty = f()?,
            "presence_penalty" => c.presence_penalty = f()?,
            _ => {
                return Err(format!(
                    "--sampler '{spec}': unknown key '{k}' (temperature, top_k, top_p, min_p, \
                     repeat_penalty, repeat_last_n, frequency_penalty, presence_penalty)"
                ))
            }
        }
    }
    c.validate().map_err(|e| {
        format!(
            "--sampler '{spec}': {} is {}: it {}",
            e.setting, e.value, e.rule
        )
    })?;
    Ok(c)
}

/// distinct-n pooled over `seqs`: distinct n-grams ÷ n-grams (0 when there are none).
pub fn distinct_n(seqs: &[Vec<u32>], n: usize) -> f64 {
    let mut seen = HashSet::new();
    let mut total = 0usize;
    for s in seqs {
        for g in s.windows(n) {
            seen.insert(g.to_vec());
            total += 1;
        }
    }
    if total == 0 {
        0.0
    } else {
        seen.len() as f64 / total as f64
    }
}

/// The share of 4-grams that repeat an earlier 4-gram of the same sequence, pooled
/// over `seqs` (0 when there are none).
pub fn repetition_rate(seqs: &[Vec<u32>]) -> f64 {
    let (mut repeated, mut total) = (0usize, 0usize);
    for s in seqs {
        let mut seen = HashSet::new();
        for g in s.windows(4) {
            total += 1;
            if !seen.insert(g) {
                repeated += 1;
            }
        }
    }
    if total == 0 {
        0.0
    } else {
        repeated as f64 / total as f64
    }
}

/// One sample: its prompt index, seed, tokens, their log-probabilities, and text.
struct Sample {
    prompt: usize,
    seed: u64,
    tokens: Vec<u32>,
    logprobs: Vec<f32>,
    text: String,
}

/// One setting's samples and metrics.
struct Setting {
    spec: String,
    samples: Vec<Sample>,
    distinct1: f64,
    distinct2: f64,
    repetition: f64,
    logprob: f64,
    tokens_per_s: f64,
}

/// Draws `n` tokens after `prompt` with `cfg`, recording each token's log-probability
/// under the raw logits; when the context fills, the older half is dropped and the
/// rest re-evaluated, as `generate` does. EOS ends a sample early.
fn draw(
    ctx: &mut Context,
    prompt: &[u32],
    n: usize,
    cfg: SamplerConfig,
) -> Result<(Vec<u32>, Vec<f32>), String> {
    let model = ctx.model().clone();
    let eos = model.tokenizer.eos();
    let mut sampler = Sampler::new(cfg, model.opts.vocab_size);
    ctx.reset();
    let mut logits = ctx.eval(prompt).map_err(|e| e.to_string())?.to_vec();
    let mut scratch = logits.clone();
    let (mut out, mut lps) = (Vec::with_capacity(n), Vec::with_capacity(n));
    while out.len() < n {
        scratch.copy_from_slice(&logits);
        let next = sampler.sample(&mut scratch, ctx.tokens());
        if Some(next) == eos {
            break;
        }
        lps.push(ops::log_prob(&logits, next as usize));
        out.push(next);
        if out.len() == n {
            break;
        }
        let r = if ctx.tokens().len() >= ctx.n_ctx() {
            let keep = ctx.n_ctx() / 2;
            if keep < 2 {
                break;
            }
            let hist = ctx.tokens();
            let mut window = hist[hist.len() + 1 - keep..].to_vec();
            window.push(next);
            ctx.reset();
            ctx.eval(&window)
        } else {
            ctx.eval(&[next])
        };
        logits.copy_from_slice(r.map_err(|e| e.to_string())?);
    }
    Ok((out, lps))
}

fn run_setting(
    ctx: &mut Context,
    model: &Model,
    spec: &str,
    prompts: &[Vec<u32>],
    a: &CompareArgs,
) -> Result<Setting, String> {
    let base = parse_sampler(spec)?;
    let start = Instant::now();
    let mut samples = Vec::new();
    for (pi, prompt) in prompts.iter().enumerate() {
        for j in 0..a.samples {
            let seed = a.seed.wrapping_add(j as u64);
            let cfg = SamplerConfig {
                seed,
                ..base.clone()
            };
            let (tokens, logprobs) = draw(ctx, prompt, a.n_predict, cfg)?;
            let text = model.tokenizer.decode(&tokens).map_err(|e| e.to_string())?;
            samples.push(Sample {
                prompt: pi,
                seed,
                tokens,
                logprobs,
                text,
            });
        }
    }
    let secs = start.elapsed().as_secs_f64();
    let seqs: Vec<Vec<u32>> = samples.iter().map(|s| s.tokens.clone()).collect();
    let n_tok: usize = seqs.iter().map(Vec::len).sum();
    let lp_sum: f64 = samples
        .iter()
        .flat_map(|s| s.logprobs.iter())
        .map(|&x| x as f64)
        .sum();
    Ok(Setting {
        spec: spec.to_string(),
        distinct1: distinct_n(&seqs, 1),
        distinct2: distinct_n(&seqs, 2),
        repetition: repetition_rate(&seqs),
        logprob: if n_tok == 0 {
            f64::NAN
        } else {
            lp_sum / n_tok as f64
        },
        tokens_per_s: n_tok as f64 / secs.max(1e-9),
        samples,
    })
}

/// Runs the command.
pub fn run(a: CompareArgs) -> Result<(), String> {
    if a.samples == 0 || a.n_predict == 0 {
        return Err("--samples and -n must be at least 1".into());
    }
    // Every setting is checked before anything is generated.
    for s in &a.samplers {
        parse_sampler(s)?;
    }
    let model = crate::load(&a.model)?;
    let tok = &model.tokenizer;
    let prompts: Vec<Vec<u32>> = a
        .prompts
        .iter()
        .map(|p| {
            tok.encode_with(p, crate::encode_options(false, false))
                .map_err(|e| e.to_string())
        })
        .collect::<Result<_, _>>()?;
    if prompts.iter().any(Vec::is_empty) {
        return Err("a prompt is empty: give some text".into());
    }
    let params = ContextParams {
        n_ctx: 0,
        n_batch: 64,
        threads: a.threads.unwrap_or_else(crate::default_threads),
        cache_type: a.cache_type,
        n_seq: 1,
        f16_exact: a.f16_exact,
    };
    let mut ctx = Context::new(model.clone(), &params).map_err(|e| e.to_string())?;
    if let Some(p) = prompts.iter().find(|p| p.len() >= ctx.n_ctx()) {
        return Err(format!(
            "a prompt has {} tokens but the context holds {}",
            p.len(),
            ctx.n_ctx()
        ));
    }
    let settings: Vec<Setting> = a
        .samplers
        .iter()
        .map(|s| run_setting(&mut ctx, &model, s, &prompts, &a))
        .collect::<Result<_, _>>()?;
    let out = match a.format.as_str() {
        "json" => json(&a, &settings),
        "md" => markdown(&a, &settings),
        _ => {
            let width = a
                .width
                .or_else(|| std::env::var("COLUMNS").ok()?.parse().ok())
                .unwrap_or(100);
            text(&a, &settings, width)
        }
    };
    print!("{out}");
    Ok(())
}

/// The metrics table in Markdown (also the text format's table).
fn table(settings: &[Setting]) -> String {
    let mut s = String::from(
        "| sampler | distinct-1 | distinct-2 | repetition (4-gram) | mean log-prob | tokens/s |\n\
         |---|---|---|---|---|---|\n",
    );
    for x in settings {
        let _ = writeln!(
            s,
            "| `{}` | {:.3} | {:.3} | {:.3} | {:.3} | {:.0} |",
            x.spec, x.distinct1, x.distinct2, x.repetition, x.logprob, x.tokens_per_s
        );
    }
    s
}

/// Cuts `text` into lines of at most `w` characters (newlines start a new line).
fn wrap(text: &str, w: usize) -> Vec<String> {
    let mut lines = Vec::new();
    for line in text.split('\n') {
        let chars: Vec<char> = line
            .chars()
            .map(|c| if c == '\t' { ' ' } else { c })
            .collect();
        if chars.is_empty() {
            lines.push(String::new());
        }
        for chunk in chars.chunks(w.max(1)) {
            lines.push(chunk.iter().collect());
        }
    }
    lines
}

fn text(a: &CompareArgs, settings: &[Setting], width: usize) -> String {
    let mut s = String::new();
    let k = settings.len();
    let sep = " │ ";
    let col = width.saturating_sub(sep.chars().count() * (k - 1)) / k;
    let side_by_side = col >= 20;
    for (pi, prompt) in a.prompts.iter().enumerate() {
        for j in 0..a.samples {
            let seed = a.seed.wrapping_add(j as u64);
            let _ = writeln!(s, "=== prompt {:?}, sample {} (seed {seed})", prompt, j + 1);
            let texts: Vec<&str> = settings
                .iter()
                .map(|x| {
                    x.samples
                        .iter()
                        .find(|y| y.prompt == pi && y.seed == seed)
                        .map_or("", |y| y.text.as_str())
                })
                .collect();
            if side_by_side {
                let cols: Vec<Vec<String>> = settings
                    .iter()
                    .zip(&texts)
                    .map(|(x, t)| {
                        let mut v = wrap(&x.spec, col);
                        v.push("─".repeat(col));
                        v.extend(wrap(&format!("{prompt}{t}"), col));
                        v
                    })
                    .collect();
                let rows = cols.iter().map(Vec::len).max().unwrap_or(0);
                for r in 0..rows {
                    let cells: Vec<String> = cols
                        .iter()
                        .map(|c| {
                            let cell = c.get(r).map_or("", String::as_str);
                            format!("{cell}{}", " ".repeat(col - cell.chars().count()))
                        })
                        .collect();
                    let _ = writeln!(s, "{}", cells.join(sep).trim_end());
                }
            } else {
                for (x, t) in settings.iter().zip(&texts) {
                    let _ = writeln!(s, "--- {}\n{prompt}{t}", x.spec);
                }
            }
            s.push('\n');
        }
    }
    let _ = write!(
        s,
        "{} prompt(s) × {} sample(s) × {} tokens per setting\n{}",
        a.prompts.len(),
        a.samples,
        a.n_predict,
        table(settings)
    );
    s
}

fn markdown(a: &CompareArgs, settings: &[Setting]) -> String {
    let mut s = format!(
        "`llm-run compare -m {} -n {} --samples {} --seed {}`\n\n",
        a.model.display(),
        a.n_predict,
        a.samples,
        a.seed
    );
    s.push_str(&table(settings));
    for (pi, prompt) in a.prompts.iter().enumerate() {
        let _ = writeln!(s, "\n### Prompt {:?}", prompt);
        for x in settings {
            let _ = writeln!(s, "\n`{}`\n", x.spec);
            for y in x.samples.iter().filter(|y| y.prompt == pi) {
                let _ = writeln!(s, "```\n{prompt}{}\n```", y.text);
            }
        }
    }
    s
}

/// A JSON string literal.
fn js(x: &str) -> String {
    let mut s = String::from("\"");
    for c in x.chars() {
        match c {
            '"' => s.push_str("\\\""),
            '\\' => s.push_str("\\\\"),
            '\n' => s.push_str("\\n"),
            '\r' => s.push_str("\\r"),
            '\t' => s.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(s, "\\u{:04x}", c as u32);
            }
            c => s.push(c),
        }
    }
    s.push('"');
    s
}

/// A JSON number (`null` for NaN or infinity).
fn jn(x: f64) -> String {
    if x.is_finite() {
        format!("{x}")
    } else {
        "null".into()
    }
}

fn json(a: &CompareArgs, settings: &[Setting]) -> String {
    let prompts: Vec<String> = a.prompts.iter().map(|p| js(p)).collect();
    let sets: Vec<String> = settings
        .iter()
        .map(|x| {
            let samples: Vec<String> = x
                .samples
                .iter()
                .map(|y| {
                    let ids: Vec<String> = y.tokens.iter().map(u32::to_string).collect();
                    format!(
                        "{{\"prompt\": {}, \"seed\": {}, \"text\": {}, \"tokens\": [{}]}}",
                        y.prompt,
                        y.seed,
                        js(&y.text),
                        ids.join(", ")
                    )
                })
                .collect();
            format!(
                "    {{\"sampler\": {}, \"distinct_1\": {}, \"distinct_2\": {}, \"repetition_4gram\": {}, \
                 \"mean_logprob\": {}, \"tokens_per_s\": {},\n     \"samples\": [\n      {}\n     ]}}",
                js(&x.spec),
                jn(x.distinct1),
                jn(x.distinct2),
                jn(x.repetition),
                jn(x.logprob),
                jn(x.tokens_per_s),
                samples.join(",\n      ")
            )
        })
        .collect();
    format!(
        "{{\n  \"model\": {},\n  \"n_predict\": {},\n  \"samples\": {},\n  \"seed\": {},\n  \"prompts\": [{}],\n  \"settings\": [\n{}\n  ]\n}}\n",
        js(&a.model.display().to_string()),
        a.n_predict,
        a.samples,
        a.seed,
        prompts.join(", "),
        sets.join(",\n")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distinct_n_on_hand_made_sequences() {
        // [1 2 1 2 3]: unigrams 1,2,1,2,3 → 3 distinct of 5; bigrams 12,21,12,23 → 3 of 4.
        let a = vec![vec![1, 2, 1, 2, 3]];
        assert_eq!(distinct_n(&a, 1), 3.0 / 5.0);
        assert_eq!(distinct_n(&a, 2), 3.0 / 4.0);
        // Pooled over samples, but no n-gram spans two samples: [1 2] [2 1] has the
        // bigrams 12 and 21 (not 22): 2 of 2; unigrams 1,2,2,1: 2 of 4.
        let b = vec![vec![1, 2], vec![2, 1]];
        assert_eq!(distinct_n(&b, 2), 1.0);
        assert_eq!(distinct_n(&b, 1), 0.5);
        // Too short for any n-gram.
        assert_eq!(distinct_n(&[vec![7]], 2), 0.0);
    }

    #[test]
    fn repetition_rate_on_hand_made_sequences() {
        // Period 3 over 9 tokens: 4-grams 1231 2312 3123 1231 2312 3123 → the last
        // three repeat the first three: 3 of 6.
        let a = vec![vec![1, 2, 3, 1, 2, 3, 1, 2, 3]];
        assert_eq!(repetition_rate(&a), 0.5);
        // All different: none.
        assert_eq!(repetition_rate(&[vec![1, 2, 3, 4, 5, 6]]), 0.0);
        // One token over and over: 7 4-grams, all but the first repeat.
        assert_eq!(repetition_rate(&[vec![9; 10]]), 6.0 / 7.0);
        // A 4-gram in another sample does not count as a repeat: 0 of 2.
        assert_eq!(repetition_rate(&[vec![1, 2, 3, 4], vec![1, 2, 3, 4]]), 0.0);
        assert_eq!(repetition_rate(&[vec![1, 2, 3]]), 0.0);
    }

    #[test]
    fn sampler_specs_parse_over_plain_sampling() {
        let c = parse_sampler("temperature=0.7, top_p=0.9").unwrap();
        assert_eq!(
            (c.temperature, c.top_p, c.top_k, c.min_p),
            (0.7, 0.9, 0, 0.0)
        );
        let c = parse_sampler("temp=1.2,top_k=40,repeat_penalty=1.1").unwrap();
        assert_eq!((c.temperature, c.top_k, c.repeat_penalty), (1.2, 40, 1.1));
        assert_eq!(parse_sampler("").unwrap(), SamplerConfig::pure(1.0, 0));
        // The runtime's one validation applies: out-of-range values are refused.
        let e = parse_sampler("top_p=1.5").unwrap_err();
        assert!(e.contains("top_p is 1.5"), "{e}");
        assert!(parse_sampler("temperature=-1").is_err());
        assert!(parse_sampler("top_q=1")
            .unwrap_err()
            .contains("unknown key"));
        assert!(parse_sampler("top_k=-1")
            .unwrap_err()
            .contains("not a number"));
        assert!(parse_sampler("temperature")
            .unwrap_err()
            .contains("key=value"));
        assert!(parse_sampler("top_p=nan").is_err());
    }

    #[test]
    fn wrap_keeps_newlines_and_width() {
        assert_eq!(wrap("abcde\n\nfg", 2), ["ab", "cd", "e", "", "fg"]);
    }
}
