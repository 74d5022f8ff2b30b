//! The decoder of `format/src/options.rs`, in plain f64 and without a KV cache:
//! every call recomputes the whole sequence. Written from the conventions, not from
//! the runtime's code, so that agreement between the two means something.

use llm_format::options::{LinearSlots, NormSlots};
use llm_format::{Mlp, ModelOptions, Norm, Positions};
use std::collections::HashMap;

/// Weights by canonical name, as f64, row-major in the layout's shapes.
pub struct RefModel {
    /// Options.
    pub opts: ModelOptions,
    /// name → values.
    pub w: HashMap<String, Vec<f64>>,
    /// Rotate the pairs `(x[i], x[i + head_dim/2])` instead of `(x[2i], x[2i+1])`
    /// (Hugging Face's rotate-half, GGUF's NEOX): not a model option (the format
    /// has one convention), but how an importer test runs the weights as the source
    /// stored them, so that the importer's permutation is checked, not assumed.
    pub rotate_half: bool,
}

fn matvec(w: &[f64], x: &[f64], rows: usize) -> Vec<f64> {
    let cols = x.len();
    (0..rows)
        .map(|r| (0..cols).map(|c| w[r * cols + c] * x[c]).sum())
        .collect()
}

impl RefModel {
    /// Builds from f32 weights (each widened to f64).
    pub fn new(opts: ModelOptions, w32: &HashMap<String, Vec<f32>>) -> RefModel {
        let w = w32
            .iter()
            .map(|(k, v)| (k.clone(), v.iter().map(|&x| x as f64).collect()))
            .collect();
        RefModel {
            opts,
            w,
            rotate_half: false,
        }
    }

    fn get(&self, name: &str) -> &[f64] {
        self.w
            .get(name)
            .unwrap_or_else(|| panic!("reference model lacks {name}"))
    }

    fn norm(&self, s: &NormSlots, x: &[f64]) -> Vec<f64> {
        let o = &self.opts;
        let d = x.len() as f64;
        let w = self.get(&s.weight.name);
        match o.norm {
            Norm::LayerNorm => {
                let mean = x.iter().sum::<f64>() / d;
                let var = x.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / d;
                let r = 1.0 / (var + o.norm_eps as f64).sqrt();
                let b = s.bias.as_ref().map(|b| self.get(&b.name));
                (0..x.len())
                    .map(|i| (x[i] - mean) * r * w[i] + b.map_or(0.0, |b| b[i]))
                    .collect()
            }
            Norm::RmsNorm => {
                let ms = x.iter().map(|v| v * v).sum::<f64>() / d;
                let r = 1.0 / (ms + o.norm_eps as f64).sqrt();
                (0..x.len()).map(|i| x[i] * r * w[i]).collect()
            }
        }
    }

    fn linear(&self, s: &LinearSlots, x: &[f64], rows: usize) -> Vec<f64> {
        let mut y = matvec(self.get(&s.weight.name), x, rows);
        if let Some(b) = &s.bias {
            for (v, b) in y.iter_mut().zip(self.get(&b.name)) {
                *v += b;
            }
        }
        y
    }

    /// RoPE at `pos` with `base`; `yarn`: the layer is on the global base and the model
    /// has YaRN scaling.
    fn rope(&self, v: &mut [f64], pos: f64, base: f64, yarn: Option<&llm_format::RopeYarn>) {
        let hd = self.opts.head_dim();
        let factors = self.opts.rope_freqs().map(|s| self.get(&s.name).to_vec());
        // YaRN, as transformers' `_compute_yarn_parameters` (truncated correction range).
        let ramp = yarn.map(|y| {
            let dim = |rot: f64| {
                hd as f64 * (y.original_max_len as f64 / (rot * 2.0 * std::f64::consts::PI)).ln()
                    / (2.0 * base.ln())
            };
            let low = dim(y.beta_fast as f64).floor().max(0.0);
            let mut high = dim(y.beta_slow as f64).ceil().min(hd as f64 - 1.0);
            if high == low {
                high += 0.001;
            }
            (low, high, y.factor as f64, y.attn_factor as f64)
        });
        for head in v.chunks_mut(hd) {
            for i in 0..hd / 2 {
                let mut freq = base.powf(-((2 * i) as f64) / hd as f64);
                let mut mscale = 1.0;
                if let Some((low, high, factor, attn)) = ramp {
                    let extra = 1.0 - ((i as f64 - low) / (high - low)).clamp(0.0, 1.0);
                    freq = freq / factor * (1.0 - extra) + freq * extra;
                    mscale = attn;
                }
                let mut theta = pos * freq;
                if let Some(f) = &factors {
                    theta /= f[i];
                }
                let (s, c) = theta.sin_cos();
                let (s, c) = (s * mscale, c * mscale);
                let (ia, ib) = if self.rotate_half {
                    (i, i + hd / 2)
                } else {
                    (2 * i, 2 * i + 1)
                };
                let (a, b) = (head[ia], head[ib]);
                head[ia] = a * c - b * s;
                head[ib] = a * s + b * c;
            }
        }
    }

    /// RMSNorm of each `head_dim` piece of `v` with the weight `name`.
    fn head_norm(&self, name: &str, v: &mut [f64]) {
        let w = self.get(name);
        for head in v.chunks_mut(w.len()) {
            let ms = head.iter().map(|x| x * x).sum::<f64>() / w.len() as f64;
            let r = 1.0 / (ms + self.opts.norm_eps as f64).sqrt();
            for (x, wi) in head.iter_mut().zip(w) {
                *x *= r * wi;
            }
        }
    }

    /// Logits `[tokens.len()][vocab]` for every position.
    pub fn forward(&self, tokens: &[u32]) -> Vec<Vec<f64>> {
        let o = &self.opts;
        let out = o.output().unwrap_or_else(|| o.tok_emb());
        let wout = self.get(&out.name);
        self.hidden(tokens)
            .iter()
            .map(|h| matvec(wout, h, o.vocab_size))
            .collect()
    }

    /// The hidden state of every position after the final norm (the classifier's
    /// input), `[tokens.len()][d_model]`.
    pub fn hidden(&self, tokens: &[u32]) -> Vec<Vec<f64>> {
        let o = &self.opts;
        let (d, kv, hd, f, qd) = (o.d_model, o.kv_dim(), o.head_dim(), o.d_ff, o.q_dim());
        let emb = self.get(&o.tok_emb().name);
        let mut xs: Vec<Vec<f64>> = tokens
            .iter()
            .enumerate()
            .map(|(pos, &t)| {
                let mut x = emb[t as usize * d..(t as usize + 1) * d].to_vec();
                let scale = o.arch.embed_scale.map_or(1.0, |s| s as f64);
                x.iter_mut().for_each(|v| *v *= scale);
                match o.positions {
                    Positions::Learned => {
                        let p = self.get(&o.pos_emb().expect("learned positions").name);
                        for i in 0..d {
                            x[i] += p[pos * d + i];
                        }
                    }
                    Positions::Sinusoidal => {
                        for i in 0..d / 2 {
                            let a = pos as f64 / 10000f64.powf((2 * i) as f64 / d as f64);
                            x[2 * i] += a.sin();
                            x[2 * i + 1] += a.cos();
                        }
                    }
                    Positions::Rope => {}
                }
                x
            })
            .collect();
        let group = o.n_heads / o.n_kv_heads;
        for l in 0..o.n_layers {
            let s = o.layer(l);
            let mut qs = Vec::new();
            let mut ks = Vec::new();
            let mut vs = Vec::new();
            for (pos, x) in xs.iter().enumerate() {
                let h = self.norm(&s.attn_norm, x);
                let mut q = self.linear(&s.attn_q, &h, qd);
                let mut k = self.linear(&s.attn_k, &h, kv);
                if let (Some(qn), Some(kn)) = (&s.attn_q_norm, &s.attn_k_norm) {
                    self.head_norm(&qn.name, &mut q);
                    self.head_norm(&kn.name, &mut k);
                }
                if o.positions == Positions::Rope {
                    let base = o.layer_rope_base(l) as f64;
                    // Linear position interpolation: the position itself is scaled.
                    let p = pos as f64 / o.layer_rope_scale(l) as f64;
                    // YaRN on the layers on the global base, as the linear scale.
                    let global = o.layer_window(l).is_none() || o.arch.rope_base_local.is_none();
                    let yarn = o.arch.rope_yarn.as_ref().filter(|_| global);
                    self.rope(&mut q, p, base, yarn);
                    self.rope(&mut k, p, base, yarn);
                }
                qs.push(q);
                ks.push(k);
                vs.push(self.linear(&s.attn_v, &h, kv));
            }
            for (i, x) in xs.iter_mut().enumerate() {
                let mut att = vec![0.0; qd];
                for h in 0..o.n_heads {
                    let g = h / group;
                    let q = &qs[i][h * hd..(h + 1) * hd];
                    // A sliding layer sees the last `window` positions, itself included.
                    let lo = o.layer_window(l).map_or(0, |w| (i + 1).saturating_sub(w));
                    let s: Vec<f64> = (lo..=i)
                        .map(|t| {
                            let k = &ks[t][g * hd..(g + 1) * hd];
                            q.iter().zip(k).map(|(a, b)| a * b).sum::<f64>() / (hd as f64).sqrt()
                        })
                        .collect();
                    let m = s.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                    let e: Vec<f64> = s.iter().map(|v| (v - m).exp()).collect();
                    let z: f64 = e.iter().sum();
                    for (t, et) in (lo..=i).zip(&e) {
                        for j in 0..hd {
                            att[h * hd + j] += et / z * vs[t][g * hd + j];
                        }
                    }
                }
                let mut y = self.linear(&s.attn_out, &att, d);
                if let Some(post) = &s.attn_post_norm {
                    y = self.norm(post, &y);
                }
                for j in 0..d {
                    x[j] += y[j];
                }
                let h = self.norm(&s.mlp_norm, x);
                let up = self.linear(&s.mlp_up, &h, f);
                let act: Vec<f64> = match o.mlp {
                    Mlp::Gelu => up
                        .iter()
                        .map(|&u| {
                            0.5 * u
                                * (1.0
                                    + ((2.0 / std::f64::consts::PI).sqrt()
                                        * (u + 0.044715 * u.powi(3)))
                                    .tanh())
                        })
                        .collect(),
                    Mlp::Relu => up.iter().map(|&u| u.max(0.0)).collect(),
                    Mlp::GeGlu => {
                        let gate = self.linear(s.mlp_gate.as_ref().expect("geglu gate"), &h, f);
                        gate.iter()
                            .zip(&up)
                            .map(|(&g, &u)| {
                                0.5 * g
                                    * (1.0
                                        + ((2.0 / std::f64::consts::PI).sqrt()
                                            * (g + 0.044715 * g.powi(3)))
                                        .tanh())
                                    * u
                            })
                            .collect()
                    }
                    Mlp::SwiGlu => {
                        let gate = self.linear(s.mlp_gate.as_ref().expect("swiglu gate"), &h, f);
                        gate.iter()
                            .zip(&up)
                            .map(|(&g, &u)| g / (1.0 + (-g).exp()) * u)
                            .collect()
                    }
                };
                let mut y = self.linear(&s.mlp_down, &act, d);
                if let Some(post) = &s.mlp_post_norm {
                    y = self.norm(post, &y);
                }
                for j in 0..d {
                    x[j] += y[j];
                }
            }
        }
        let out_norm = o.out_norm();
        xs.iter().map(|x| self.norm(&out_norm, x)).collect()
    }

    /// Greedy continuation of `prompt` by `n` tokens (first maximum on ties).
    pub fn greedy(&self, prompt: &[u32], n: usize) -> Vec<u32> {
        let mut toks = prompt.to_vec();
        let mut out = Vec::new();
        for _ in 0..n {
            let logits = self.forward(&toks);
            let last = logits.last().expect("non-empty prompt");
            let mut best = 0;
            for (i, v) in last.iter().enumerate() {
                if *v > last[best] {
                    best = i;
                }
            }
            out.push(best as u32);
            toks.push(best as u32);
        }
        out
    }
}
