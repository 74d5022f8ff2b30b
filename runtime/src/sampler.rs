//! The sampler chain: logits → next token id, in llama.cpp's order
//! logit bias → penalties → top-k → top-p → min-p → temperature → draw (temperature below
//! [`GREEDY_BELOW`]: greedy).
//!
//! * [`SamplerConfig::validate`] is the one check of the settings, used by `llm-run`,
//!   the C ABI and `llm-train sample`: every value finite and in its documented range,
//!   or a [`SettingError`] naming the setting.
//! * Logit bias adds a fixed amount to chosen tokens' logits (`-inf` bans a token)
//!   before anything else, as llama.cpp's `logit_bias` sampler does.
//! * Penalties look at the last `repeat_last_n` tokens of the history: repetition as in
//!   CTRL / llama.cpp (a seen token's logit is divided by the penalty when positive,
//!   multiplied when not), then OpenAI's `logit -= count·frequency + (count > 0)·presence`.
//! * top-p and min-p see the distribution before temperature (as llama.cpp); top-p drops
//!   the tail below `(1 - p)/(n - 1)` before it sorts (as llama2.c), which cannot change
//!   the nucleus.
//! * Reproducible everywhere: the RNG is xorshift64* (llama2.c), `exp` is computed here
//!   with plain f32 operations in a fixed order (no libm, whose last bits differ between
//!   platforms), and candidates are ordered by (logit desc, id asc), a total order, so the
//!   same seed and the same logits give the same token on every machine.
//! * [`Sampler`] owns its scratch, sized once for the vocabulary: `sample` does not
//!   allocate. The stage functions are pure; the draw takes its `coin` as an argument.

use alloc::vec::Vec;
use core::cmp::Ordering;
use core::fmt;

/// Temperatures below this (0 included) mean greedy decoding (argmax). Dividing the
/// logits by a smaller temperature would overflow them to the same value and draw
/// uniformly instead.
pub const GREEDY_BELOW: f32 = 1e-6;

/// A setting outside its documented range: which one, its value, and the rule.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SettingError {
    /// The setting's name as in [`SamplerConfig`] (`top_p`) or
    /// [`ContextParams`](crate::ContextParams) (`threads`).
    pub setting: &'static str,
    /// The value given (a thread count as the nearest f32).
    pub value: f32,
    /// What is allowed, as a phrase ("must be finite and >= 0").
    pub rule: &'static str,
}

impl fmt::Display for SettingError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} is {}: it {}", self.setting, self.value, self.rule)
    }
}

#[cfg(feature = "std")]
impl std::error::Error for SettingError {}

/// Sampling settings; [`Default`] gives llama.cpp's defaults.
#[derive(Clone, Debug, PartialEq)]
pub struct SamplerConfig {
    /// Divides the logits before the draw; finite and `>= 0`, below [`GREEDY_BELOW`]
    /// (0 included) greedy (argmax). Default 0.8.
    pub temperature: f32,
    /// Keep the `k` most likely tokens; 0 = off. Default 40.
    pub top_k: usize,
    /// Keep the smallest set of most likely tokens whose probability reaches `p`;
    /// in `[0, 1]`, 1 = off. Default 0.95.
    pub top_p: f32,
    /// Drop tokens less likely than `min_p` × the most likely one's probability;
    /// in `[0, 1]`, 0 = off. Default 0.05.
    pub min_p: f32,
    /// Repetition penalty (CTRL); finite and `> 0`, 1 = off. Default 1.0.
    pub repeat_penalty: f32,
    /// How many of the last tokens the penalties look at; 0 = off. Default 64.
    pub repeat_last_n: usize,
    /// Subtracted once per occurrence (OpenAI); finite, 0 = off. Default 0.
    pub frequency_penalty: f32,
    /// Subtracted once if the token occurs at all (OpenAI); finite, 0 = off. Default 0.
    pub presence_penalty: f32,
    /// RNG seed: the same seed and settings give the same tokens. Default 42.
    pub seed: u64,
    /// `(token, bias)`: `bias` is added to the token's logit before the penalties;
    /// finite or `-inf` (bans the token). A token listed twice gets both. Default none.
    pub logit_bias: Vec<(u32, f32)>,
}

impl Default for SamplerConfig {
    fn default() -> Self {
        SamplerConfig {
            temperature: 0.8,
            top_k: 40,
            top_p: 0.95,
            min_p: 0.05,
            repeat_penalty: 1.0,
            repeat_last_n: 64,
            frequency_penalty: 0.0,
            presence_penalty: 0.0,
            seed: 42,
            logit_bias: Vec::new(),
        }
    }
}

impl SamplerConfig {
    /// Greedy decoding (temperature 0), no penalties.
    pub fn greedy() -> Self {
        SamplerConfig {
            temperature: 0.0,
            ..Self::default()
        }
    }

    /// Checks every setting against its documented range; the first one outside it
    /// is the error. `top_k`, `repeat_last_n` and `seed` take any value.
    pub fn validate(&self) -> Result<(), SettingError> {
        let check = |setting, v: f32, ok: bool, rule| {
            if ok && v.is_finite() {
                Ok(())
            } else {
                Err(SettingError {
                    setting,
                    value: v,
                    rule,
                })
            }
        };
        let t = self.temperature;
        check(
            "temperature",
            t,
            t >= 0.0,
            "must be finite and >= 0 (below 1e-6: greedy)",
        )?;
        let p = self.top_p;
        check(
            "top_p",
            p,
            (0.0..=1.0).contains(&p),
            "must be in [0, 1] (1: off)",
        )?;
        let p = self.min_p;
        check(
            "min_p",
            p,
            (0.0..=1.0).contains(&p),
            "must be in [0, 1] (0: off)",
        )?;
        let r = self.repeat_penalty;
        check(
            "repeat_penalty",
            r,
            r > 0.0,
            "must be finite and > 0 (1: off)",
        )?;
        let f = self.frequency_penalty;
        check("frequency_penalty", f, true, "must be finite (0: off)")?;
        let f = self.presence_penalty;
        check("presence_penalty", f, true, "must be finite (0: off)")?;
        for &(_, b) in &self.logit_bias {
            if b != f32::NEG_INFINITY {
                check(
                    "logit_bias",
                    b,
                    true,
                    "must be finite or -inf (bans the token)",
                )?;
            }
        }
        Ok(())
    }

    /// [`validate`](Self::validate), and every logit-bias token inside a vocabulary of
    /// `vocab_size` tokens (the error's value is the first id outside it).
    pub fn validate_for_vocab(&self, vocab_size: usize) -> Result<(), SettingError> {
        self.validate()?;
        match self
            .logit_bias
            .iter()
            .find(|(id, _)| *id as usize >= vocab_size)
        {
            Some(&(id, _)) => Err(SettingError {
                setting: "logit_bias",
                value: id as f32,
                rule: "names a token outside the vocabulary",
            }),
            None => Ok(()),
        }
    }

    /// Whether these settings decode greedily (temperature below [`GREEDY_BELOW`], or NaN).
    pub fn is_greedy(&self) -> bool {
        self.temperature.is_nan() || self.temperature < GREEDY_BELOW
    }

    /// Plain sampling from the softmax at temperature `t`: no truncation, no penalties.
    pub fn pure(temperature: f32, seed: u64) -> Self {
        SamplerConfig {
            temperature,
            top_k: 0,
            top_p: 1.0,
            min_p: 0.0,
            seed,
            ..Self::default()
        }
    }
}

/// One token still in the running.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Candidate {
    /// Token id.
    pub id: u32,
    /// Its (penalised, possibly tempered) logit.
    pub logit: f32,
}

/// The candidates' order: higher logit first, then lower id. A total order, so sorting
/// and selection give the same result on every machine.
fn better(a: &Candidate, b: &Candidate) -> Ordering {
    b.logit.total_cmp(&a.logit).then(a.id.cmp(&b.id))
}

/// xorshift64* (llama2.c's `random_u32`), seeded through splitmix64 so that every seed,
/// 0 included, gives a well-mixed non-zero state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rng {
    state: u64,
}

impl Rng {
    /// A generator for `seed`.
    pub fn new(seed: u64) -> Self {
        let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        Rng {
            state: if z == 0 { 0x2545_F491_4F6C_DD1D } else { z },
        }
    }

    /// The next 32 random bits.
    pub fn next_u32(&mut self) -> u32 {
        self.state ^= self.state >> 12;
        self.state ^= self.state << 25;
        self.state ^= self.state >> 27;
        (self.state.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 32) as u32
    }

    /// Uniform in `[0, 1)`, a multiple of 2⁻²⁴ (exact in f32).
    pub fn next_f32(&mut self) -> f32 {
        (self.next_u32() >> 8) as f32 / 16_777_216.0
    }
}

/// `e^x` in f32 from basic operations only (Cephes `expf`: Cody–Waite reduction by ln 2,
/// degree-6 polynomial), so it is bit-identical on every platform. Relative error below
/// 3e-7 for normal results; results below the smallest normal f32 flush to 0.
pub fn expf(x: f32) -> f32 {
    const LOG2E: f32 = core::f32::consts::LOG2_E;
    // ln 2 = C1 + C2, C1 exact in few bits so k·C1 is exact.
    const C1: f32 = 0.693_359_4;
    const C2: f32 = -2.121_944_4e-4;
    if x.is_nan() {
        return x;
    }
    if x > 88.722_83 {
        return f32::INFINITY;
    }
    if x < -87.336_54 {
        return 0.0;
    }
    // k = floor(x·log2(e) + 1/2), |r| <= ln2/2.
    let t = x * LOG2E + 0.5;
    let mut k = t as i32;
    if (k as f32) > t {
        k -= 1;
    }
    let kf = k as f32;
    let r = x - kf * C1 - kf * C2;
    let z = r * r;
    let p = (((((1.987_569_1e-4 * r + 1.398_199_9e-3) * r + 8.333_452e-3) * r + 4.166_579_6e-2)
        * r
        + 1.666_666_5e-1)
        * r
        + 0.5)
        * z
        + r
        + 1.0;
    // p · 2^k, with k in [-126, 128].
    let pow2 = |e: i32| f32::from_bits(((e + 127) as u32) << 23);
    if k > 127 {
        p * pow2(127) * 2.0
    } else {
        p * pow2(k)
    }
}

/// Index of the largest logit, the first one on ties; NaN never wins. 0 for an empty slice.
pub fn argmax(logits: &[f32]) -> usize {
    let mut best = 0;
    let mut max = f32::NEG_INFINITY;
    for (i, &l) in logits.iter().enumerate() {
        if l > max {
            max = l;
            best = i;
        }
    }
    best
}

/// Index drawn from `probs` (summing to about 1) with `coin` in `[0, 1)`: the first index
/// whose cumulative probability exceeds the coin; the last one if rounding leaves the
/// total below it. 0 for an empty slice.
pub fn sample_mult(probs: &[f32], coin: f32) -> usize {
    let mut cdf = 0.0f32;
    for (i, &p) in probs.iter().enumerate() {
        cdf += p;
        if coin < cdf {
            return i;
        }
    }
    probs.len().saturating_sub(1)
}

/// Adds each `(token, bias)` to the token's logit (ids outside `logits` are ignored).
pub fn apply_logit_bias(logits: &mut [f32], bias: &[(u32, f32)]) {
    for &(id, b) in bias {
        if let Some(l) = logits.get_mut(id as usize) {
            *l += b;
        }
    }
}

/// Penalises the logits of the tokens in `window` (ids outside `logits` are ignored).
/// `counts` is zero on entry and on exit, one slot per logit; `seen` collects the
/// distinct ids (cleared on exit). Neither grows past its capacity when that is the
/// vocabulary size.
fn apply_penalties(
    logits: &mut [f32],
    window: &[u32],
    cfg: &SamplerConfig,
    counts: &mut [u32],
    seen: &mut Vec<u32>,
) {
    seen.clear();
    for &id in window {
        if let Some(c) = counts.get_mut(id as usize) {
            if *c == 0 {
                seen.push(id);
            }
            *c += 1;
        }
    }
    for &id in seen.iter() {
        let i = id as usize;
        let (Some(l), Some(c)) = (logits.get_mut(i), counts.get_mut(i)) else {
            continue;
        };
        if *l <= 0.0 {
            *l *= cfg.repeat_penalty;
        } else {
            *l /= cfg.repeat_penalty;
        }
        *l -= *c as f32 * cfg.frequency_penalty + cfg.presence_penalty;
        *c = 0;
    }
    seen.clear();
}

/// Keeps the `k` best candidates, sorted best first (no-op for `k == 0`; sorts only when
/// `k >= len`).
pub fn top_k(cands: &mut Vec<Candidate>, k: usize) {
    if k > 0 && k < cands.len() {
        cands.select_nth_unstable_by(k - 1, better);
        cands.truncate(k);
    }
    cands.sort_unstable_by(better);
}

/// Keeps the smallest best-first prefix whose probability reaches `p` (softmax over the
/// current candidates, at least one kept). Sorts the candidates best first.
pub fn top_p(cands: &mut Vec<Candidate>, p: f32) {
    let n = cands.len();
    if n <= 1 || p >= 1.0 {
        cands.sort_unstable_by(better);
        return;
    }
    let max = cands.iter().fold(f32::NEG_INFINITY, |m, c| m.max(c.logit));
    let sum: f32 = cands.iter().map(|c| expf(c.logit - max)).sum();
    if !(sum > 0.0 && sum.is_finite()) {
        cands.sort_unstable_by(better);
        cands.truncate(1);
        return;
    }
    // A token below (1 - p)/(n - 1) cannot be in the nucleus: all of them together hold
    // at most 1 - p. Dropping them first makes the sort short.
    let cutoff = (1.0 - p) / (n - 1) as f32;
    cands.retain(|c| expf(c.logit - max) / sum >= cutoff);
    cands.sort_unstable_by(better);
    let mut cum = 0.0f32;
    for i in 0..cands.len() {
        cum += expf(cands[i].logit - max) / sum;
        if cum >= p {
            cands.truncate(i + 1);
            break;
        }
    }
}

/// Keeps the candidates whose probability is at least `p` × the largest one's, i.e.
/// `e^(logit - max) >= p`; the best candidate always stays. Order is kept.
pub fn min_p(cands: &mut Vec<Candidate>, p: f32) {
    if p <= 0.0 {
        return;
    }
    let max = cands.iter().fold(f32::NEG_INFINITY, |m, c| m.max(c.logit));
    cands.retain(|c| c.logit == max || expf(c.logit - max) >= p);
}

/// Softmax of the candidates' logits into `probs` (cleared first).
pub fn softmax(cands: &[Candidate], probs: &mut Vec<f32>) {
    probs.clear();
    let max = cands.iter().fold(f32::NEG_INFINITY, |m, c| m.max(c.logit));
    let mut sum = 0.0f32;
    for c in cands {
        let e = expf(c.logit - max);
        probs.push(e);
        sum += e;
    }
    if sum > 0.0 && sum.is_finite() {
        for p in probs.iter_mut() {
            *p /= sum;
        }
    }
}

/// The chain with its RNG and scratch.
#[derive(Clone, Debug)]
pub struct Sampler {
    cfg: SamplerConfig,
    rng: Rng,
    /// Candidates, capacity = vocabulary size.
    cands: Vec<Candidate>,
    /// Their probabilities, capacity = vocabulary size.
    probs: Vec<f32>,
    /// Occurrences per token in the penalty window, all zero between calls.
    counts: Vec<u32>,
    /// Distinct ids of the window, capacity = vocabulary size.
    seen: Vec<u32>,
}

impl Sampler {
    /// A sampler for logits of `vocab_size` entries; allocates all its scratch now.
    pub fn new(cfg: SamplerConfig, vocab_size: usize) -> Self {
        Sampler {
            rng: Rng::new(cfg.seed),
            cands: Vec::with_capacity(vocab_size),
            probs: Vec::with_capacity(vocab_size),
            counts: alloc::vec![0; vocab_size],
            seen: Vec::with_capacity(vocab_size.min(cfg.repeat_last_n)),
            cfg,
        }
    }

    /// The settings.
    pub fn config(&self) -> &SamplerConfig {
        &self.cfg
    }

    /// Restarts the random stream from `seed`.
    pub fn reseed(&mut self, seed: u64) {
        self.cfg.seed = seed;
        self.rng = Rng::new(seed);
    }

    /// Picks the next token. `logits` (one per token) are penalised in place;
    /// `history` is every token so far (prompt included), the newest last.
    /// Returns 0 for empty logits.
    pub fn sample(&mut self, logits: &mut [f32], history: &[u32]) -> u32 {
        let cfg = &self.cfg;
        apply_logit_bias(logits, &cfg.logit_bias);
        if logits.len() > self.counts.len() {
            // Only if the caller's vocabulary outgrew the one given to `new`.
            self.counts.resize(logits.len(), 0);
        }
        let penalise = cfg.repeat_penalty != 1.0
            || cfg.frequency_penalty != 0.0
            || cfg.presence_penalty != 0.0;
        if cfg.repeat_last_n > 0 && penalise {
            let start = history.len().saturating_sub(cfg.repeat_last_n);
            let window = history.get(start..).unwrap_or_default();
            apply_penalties(logits, window, cfg, &mut self.counts, &mut self.seen);
        }
        // Below GREEDY_BELOW (or NaN, which `validate` refuses): greedy.
        if cfg.is_greedy() {
            return argmax(logits) as u32;
        }
        self.cands.clear();
        self.cands
            .extend(logits.iter().enumerate().map(|(i, &l)| Candidate {
                id: i as u32,
                // NaN never wins; +inf would make the softmax NaN.
                logit: if l.is_nan() {
                    f32::NEG_INFINITY
                } else {
                    l.min(f32::MAX)
                },
            }));
        let max = self
            .cands
            .iter()
            .fold(f32::NEG_INFINITY, |m, c| m.max(c.logit));
        if max == f32::NEG_INFINITY {
            return argmax(logits) as u32;
        }
        if cfg.top_k > 0 {
            top_k(&mut self.cands, cfg.top_k);
        }
        if cfg.top_p < 1.0 {
            top_p(&mut self.cands, cfg.top_p);
        }
        min_p(&mut self.cands, cfg.min_p);
        for c in self.cands.iter_mut() {
            c.logit = (c.logit / cfg.temperature).min(f32::MAX);
        }
        softmax(&self.cands, &mut self.probs);
        let coin = self.rng.next_f32();
        let i = sample_mult(&self.probs, coin);
        self.cands.get(i).map_or(0, |c| c.id)
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use alloc::vec;

    fn cands(logits: &[f32]) -> Vec<Candidate> {
        logits
            .iter()
            .enumerate()
            .map(|(i, &l)| Candidate {
                id: i as u32,
                logit: l,
            })
            .collect()
    }

    fn ids(c: &[Candidate]) -> Vec<u32> {
        c.iter().map(|c| c.id).collect()
    }

    /// ln of the probabilities 0.5, 0.3, 0.15, 0.05, shuffled so order matters.
    fn four() -> Vec<f32> {
        [0.15f64, 0.5, 0.05, 0.3]
            .iter()
            .map(|p| p.ln() as f32)
            .collect()
    }

    #[test]
    fn top_k_keeps_the_k_best_ties_by_id() {
        let mut c = cands(&[1.0, 3.0, 2.0, 3.0, -1.0]);
        top_k(&mut c, 3);
        assert_eq!(ids(&c), vec![1, 3, 2]);
        let mut c = cands(&[1.0, 3.0, 2.0]);
        top_k(&mut c, 10);
        assert_eq!(ids(&c), vec![1, 2, 0]);
    }

    #[test]
    fn top_p_keeps_the_nucleus() {
        // Sorted probabilities 0.5 (id 1), 0.3 (id 3), 0.15 (id 0), 0.05 (id 2).
        for (p, want) in [
            (0.4, vec![1]),
            (0.75, vec![1, 3]),
            (0.85, vec![1, 3, 0]),
            (0.99, vec![1, 3, 0, 2]),
        ] {
            let mut c = cands(&four());
            top_p(&mut c, p);
            assert_eq!(ids(&c), want, "top_p {p}");
        }
    }

    #[test]
    fn min_p_drops_the_unlikely() {
        // Relative to the best (0.5): 0.3 → 0.6, 0.15 → 0.3, 0.05 → 0.1.
        for (p, want) in [
            (0.05, vec![0, 1, 2, 3]),
            (0.2, vec![0, 1, 3]),
            (0.35, vec![1, 3]),
            (0.9, vec![1]),
            (5.0, vec![1]),
        ] {
            let mut c = cands(&four());
            min_p(&mut c, p);
            assert_eq!(ids(&c), want, "min_p {p}");
        }
    }

    #[test]
    fn argmax_and_sample_mult() {
        assert_eq!(argmax(&[1.0, 5.0, f32::NAN, 5.0]), 1);
        assert_eq!(argmax(&[]), 0);
        let probs = [0.25, 0.5, 0.25];
        assert_eq!(sample_mult(&probs, 0.0), 0);
        assert_eq!(sample_mult(&probs, 0.2499), 0);
        assert_eq!(sample_mult(&probs, 0.25), 1);
        assert_eq!(sample_mult(&probs, 0.7499), 1);
        assert_eq!(sample_mult(&probs, 0.75), 2);
        assert_eq!(sample_mult(&[0.3, 0.3], 0.99), 1);
    }

    #[test]
    fn penalties_change_the_right_logits() {
        let cfg = SamplerConfig {
            repeat_penalty: 2.0,
            frequency_penalty: 0.25,
            presence_penalty: 0.5,
            repeat_last_n: 4,
            ..SamplerConfig::default()
        };
        let mut logits = vec![2.0, -1.0, 0.5, 3.0, 1.5];
        // Window = last 4 = [1, 1, 3, 9]: id 9 is outside the vocabulary; id 4 only in
        // the older part of the history.
        let history = [4, 1, 1, 3, 9];
        let mut counts = vec![0; 5];
        let mut seen = Vec::new();
        let start = history.len() - cfg.repeat_last_n;
        apply_penalties(&mut logits, &history[start..], &cfg, &mut counts, &mut seen);
        // id 1 (count 2): -1·2 - 2·0.25 - 0.5 = -3; id 3 (count 1): 3/2 - 0.25 - 0.5 = 0.75.
        assert_eq!(logits, vec![2.0, -3.0, 0.5, 0.75, 1.5]);
        assert!(counts.iter().all(|&c| c == 0));
    }

    #[test]
    fn expf_matches_std() {
        let mut rng = Rng::new(crate::test_common::test_seed(7));
        for _ in 0..100_000 {
            let x = rng.next_f32() * 175.0 - 87.0;
            let want = (x as f64).exp();
            let got = expf(x) as f64;
            assert!(
                ((got - want) / want).abs() < 3e-7,
                "exp({x}) = {got}, want {want}"
            );
        }
        assert_eq!(expf(0.0), 1.0);
        assert_eq!(expf(-100.0), 0.0);
        assert_eq!(expf(f32::NEG_INFINITY), 0.0);
        assert_eq!(expf(100.0), f32::INFINITY);
    }
}
