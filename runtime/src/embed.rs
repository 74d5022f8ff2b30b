//! Sentence embeddings: the hidden states after the final norm
//! ([`Context::hidden_until`]) pooled into one vector per text, optionally
//! L2-normalised, and the cosine similarity that compares them.

use crate::context::Context;
use crate::error::Error;
use alloc::vec::Vec;

/// How the per-token hidden states of a text become one vector.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pooling {
    /// The mean over every token (BOS included when the text has one).
    Mean,
    /// The last token's state: in a causal decoder the only one that saw the whole text.
    Last,
    /// The first token's state (CLS pooling). In a causal decoder it sees only
    /// itself, so with a BOS it is the same vector for every text.
    First,
}

impl Pooling {
    /// Every pooling, in the order of their names.
    pub const ALL: [Pooling; 3] = [Pooling::Mean, Pooling::Last, Pooling::First];

    /// The name used on command lines: "mean", "last", "first".
    pub fn name(self) -> &'static str {
        match self {
            Pooling::Mean => "mean",
            Pooling::Last => "last",
            Pooling::First => "first",
        }
    }

    /// The pooling called `name` (see [`Pooling::name`]).
    pub fn from_name(name: &str) -> Option<Pooling> {
        Pooling::ALL.into_iter().find(|p| p.name() == name)
    }
}

/// Pools `hidden` (`[n, d]`, `n >= 1`) into `out` (`[d]`). Means are summed in f64.
pub fn pool(hidden: &[f32], d: usize, pooling: Pooling, out: &mut [f32]) {
    let n = hidden.len() / d.max(1);
    debug_assert!(n >= 1 && out.len() == d);
    match pooling {
        Pooling::First => out.copy_from_slice(&hidden[..d]),
        Pooling::Last => out.copy_from_slice(&hidden[(n - 1) * d..n * d]),
        Pooling::Mean => {
            for (j, o) in out.iter_mut().enumerate() {
                let s: f64 = (0..n).map(|i| hidden[i * d + j] as f64).sum();
                *o = (s / n as f64) as f32;
            }
        }
    }
}

/// Scales `v` to unit Euclidean length (a zero vector stays zero).
pub fn l2_normalize(v: &mut [f32]) {
    let norm = libm::sqrt(v.iter().map(|&x| x as f64 * x as f64).sum::<f64>());
    if norm > 0.0 {
        for x in v.iter_mut() {
            *x = (*x as f64 / norm) as f32;
        }
    }
}

/// The cosine of the angle between `a` and `b` (0 when either is zero).
pub fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let (mut ab, mut aa, mut bb) = (0f64, 0f64, 0f64);
    for (&x, &y) in a.iter().zip(b) {
        ab += x as f64 * y as f64;
        aa += x as f64 * x as f64;
        bb += y as f64 * y as f64;
    }
    if aa == 0.0 || bb == 0.0 {
        return 0.0;
    }
    (ab / libm::sqrt(aa * bb)) as f32
}

/// Embeds `tokens` as a new sequence: empties `ctx`'s KV cache, evaluates them,
/// pools the hidden states after the final norm and, when `normalize`, scales the
/// result to unit length. The cache then holds `tokens`; on an error (no tokens, too
/// many, an id outside the vocabulary) it is left as it was. `Ok(None)` when
/// `cancelled()` said so (see [`Context::eval_until`]). `hidden` is scratch
/// (`[n, d_model]` after the call).
pub fn embed_until(
    ctx: &mut Context,
    tokens: &[u32],
    pooling: Pooling,
    normalize: bool,
    hidden: &mut Vec<f32>,
    cancelled: &dyn Fn() -> bool,
) -> Result<Option<Vec<f32>>, Error> {
    let (d, vocab) = (ctx.model().opts.d_model, ctx.model().opts.vocab_size);
    // Refuse what would fail before emptying the cache.
    if tokens.is_empty() {
        return Err(Error::EmptyPrompt);
    }
    if tokens.len() > ctx.n_ctx() {
        return Err(Error::ContextFull(tokens.len(), ctx.n_ctx()));
    }
    if let Some(&bad) = tokens.iter().find(|&&t| t as usize >= vocab) {
        return Err(Error::BadToken(bad as u64, vocab));
    }
    ctx.reset();
    if !ctx.hidden_until(tokens, hidden, cancelled)? {
        return Ok(None);
    }
    let mut out = alloc::vec![0.0; d];
    pool(hidden, d, pooling, &mut out);
    if normalize {
        l2_normalize(&mut out);
    }
    Ok(Some(out))
}
