//! The sampler chain given arbitrary settings, logits (NaN, ±inf and denormals
//! included) and history. Settings are validated first, as every caller does; any
//! that validate must sample without a panic and return an id inside the logits.
//!
//! Input: 8 f32/u16 settings and a u64 seed (36 bytes), the history length (1 byte),
//! the history (u32 each, any value), the logit-bias length (1 byte, below 8), the
//! biases (u32 id and f32 bias each), the rest logits (f32 each).
#![no_main]

use libfuzzer_sys::fuzz_target;
use llmrt::sampler::{Sampler, SamplerConfig};

struct Input<'a>(&'a [u8]);

impl Input<'_> {
    fn take<const N: usize>(&mut self) -> [u8; N] {
        let mut b = [0u8; N];
        let n = N.min(self.0.len());
        b[..n].copy_from_slice(&self.0[..n]);
        self.0 = &self.0[n..];
        b
    }
    fn f32(&mut self) -> f32 {
        f32::from_le_bytes(self.take())
    }
    fn u16(&mut self) -> usize {
        u16::from_le_bytes(self.take()) as usize
    }
}

fuzz_target!(|data: &[u8]| {
    let mut i = Input(data);
    let cfg = SamplerConfig {
        temperature: i.f32(),
        top_k: i.u16(),
        top_p: i.f32(),
        min_p: i.f32(),
        repeat_penalty: i.f32(),
        repeat_last_n: i.u16(),
        frequency_penalty: i.f32(),
        presence_penalty: i.f32(),
        seed: u64::from_le_bytes(i.take()),
        logit_bias: Vec::new(),
    };
    let n_hist = i.take::<1>()[0] as usize;
    let history: Vec<u32> = (0..n_hist).map(|_| u32::from_le_bytes(i.take())).collect();
    let n_bias = (i.take::<1>()[0] % 8) as usize;
    let logit_bias: Vec<(u32, f32)> = (0..n_bias)
        .map(|_| (u32::from_le_bytes(i.take()), i.f32()))
        .collect();
    let cfg = SamplerConfig { logit_bias, ..cfg };
    let mut logits: Vec<f32> =
        i.0.chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
    if cfg.validate().is_err() || logits.is_empty() {
        return;
    }
    // The vocabulary given to `new` may differ from the logits' length (a caller's
    // vocabulary that grew): both ways.
    let vocab = if n_hist.is_multiple_of(2) {
        logits.len()
    } else {
        n_hist
    };
    let mut s = Sampler::new(cfg.clone(), vocab);
    let n = logits.len();
    for _ in 0..2 {
        let id = s.sample(&mut logits, &history) as usize;
        assert!(id < n, "sampled id {id} of {n} logits with {cfg:?}");
    }
});
