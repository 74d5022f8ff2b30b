//! The decoder: parameters in one flat buffer walked by a size table whose names and
//! shapes are exactly `ModelOptions::tensor_layout()` (so export is a copy), the
//! activations of one micro-batch allocated once per (B, T), and a forward and a
//! backward that call nothing but the [`Backend`] trait.
//!
//! Pre-norm block (SPEC §Model): `x += attn(norm1(x)); x += mlp(norm2(x));
//! logits = norm_f(x) · Wᵀ` with W = `tok_emb` when tied. Dropout (training only) acts on
//! the embedding sum and on the output of both residual branches (nanoGPT's places,
//! without attention-probability dropout).
//!
//! Gradient checkpointing ([`Model::recompute`]): the forward keeps only the residual
//! stream at each block boundary (plus the embedding and loss buffers) and runs every
//! block through one shared scratch set; the backward re-runs each block's forward into
//! that scratch, through the same [`Backend`] calls with the same dropout seeds, just
//! before the block's backward, so the activations — and hence the loss and every
//! gradient — are bit-identical to a run that kept them all.

use crate::backend::{Activation, Backend};
use crate::layers::attention::AttnShape;
use crate::layers::embedding::PosAdd;
use crate::layers::rope::Rope;
use crate::rng::Rng;
use crate::scalar::Real;
use llm_format::options::{LinearSlots, NormSlots, TensorSlot};
use llm_format::{Mlp, ModelOptions, Norm, Positions};
use std::fmt;
use std::ops::Range;

/// A model-level problem with the inputs; the message says what.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelError(pub String);

impl fmt::Display for ModelError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "model: {}", self.0)
    }
}

impl std::error::Error for ModelError {}

/// One tensor of the flat parameter buffer.
#[derive(Clone, Debug, PartialEq)]
pub struct ParamSlot {
    /// Canonical name (`blk.0.attn_q.weight`).
    pub name: String,
    /// Shape, outermost first.
    pub shape: Vec<usize>,
    /// First element in the flat buffer.
    pub offset: usize,
    /// Element count.
    pub len: usize,
    /// A matrix that export may quantise.
    pub matrix: bool,
    /// AdamW applies weight decay (matrices; embeddings by option; never norms/biases).
    pub decays: bool,
}

impl ParamSlot {
    /// `offset..offset + len`.
    pub fn range(&self) -> Range<usize> {
        self.offset..self.offset + self.len
    }
}

/// The size table shared by parameters, gradients and both Adam moments.
#[derive(Clone, Debug, PartialEq)]
pub struct ParamTable {
    /// Slots in file order.
    pub slots: Vec<ParamSlot>,
    /// Total elements.
    pub total: usize,
}

impl ParamTable {
    /// Lays out `o.tensor_layout()` back to back.
    pub fn new(o: &ModelOptions, decay_embeddings: bool) -> Self {
        let mut off = 0;
        let embeddings = [Some(o.tok_emb()), o.pos_emb()];
        let slots = o
            .tensor_layout()
            .into_iter()
            .map(|t| {
                let len = t.shape.iter().product();
                let embedding = embeddings.iter().flatten().any(|e| e.name == t.name);
                let s = ParamSlot {
                    decays: if embedding {
                        decay_embeddings
                    } else {
                        t.matrix
                    },
                    name: t.name,
                    shape: t.shape,
                    offset: off,
                    len,
                    matrix: t.matrix,
                };
                off += len;
                s
            })
            .collect();
        ParamTable { slots, total: off }
    }

    /// The slot of a canonical name.
    pub fn get(&self, name: &str) -> Option<&ParamSlot> {
        self.slots.iter().find(|s| s.name == name)
    }

    /// `(offset, len, decays)` per slot, for the optimizer.
    pub fn ranges(&self) -> Vec<(usize, usize, bool)> {
        self.slots
            .iter()
            .map(|s| (s.offset, s.len, s.decays))
            .collect()
    }

    fn range(&self, name: &str) -> Result<Range<usize>, ModelError> {
        self.get(name)
            .map(ParamSlot::range)
            .ok_or_else(|| ModelError(format!("internal: no tensor '{name}' in the layout")))
    }
}

#[derive(Clone, Debug)]
struct Lin {
    w: Range<usize>,
    b: Option<Range<usize>>,
}

#[derive(Clone, Debug)]
struct NormIdx {
    w: Range<usize>,
    b: Option<Range<usize>>,
}

#[derive(Clone, Debug)]
struct LayerIdx {
    attn_norm: NormIdx,
    q: Lin,
    k: Lin,
    v: Lin,
    /// Per-head RMSNorm weights `[hd]` of q and of k (q/k norm).
    q_norm: Option<Range<usize>>,
    k_norm: Option<Range<usize>>,
    o: Lin,
    attn_post: Option<NormIdx>,
    mlp_post: Option<NormIdx>,
    mlp_norm: NormIdx,
    gate: Option<Lin>,
    up: Lin,
    down: Lin,
}

#[derive(Clone, Debug)]
struct Idx {
    tok_emb: Range<usize>,
    pos_emb: Option<Range<usize>>,
    layers: Vec<LayerIdx>,
    out_norm: NormIdx,
    /// `output.weight`, or `tok_emb` when tied.
    output: Range<usize>,
}

impl Idx {
    fn new(t: &ParamTable, o: &ModelOptions) -> Result<Self, ModelError> {
        let bias = |b: &Option<TensorSlot>| b.as_ref().map(|b| t.range(&b.name)).transpose();
        let lin = |s: &LinearSlots| -> Result<Lin, ModelError> {
            Ok(Lin {
                w: t.range(&s.weight.name)?,
                b: bias(&s.bias)?,
            })
        };
        let norm = |s: &NormSlots| -> Result<NormIdx, ModelError> {
            Ok(NormIdx {
                w: t.range(&s.weight.name)?,
                b: bias(&s.bias)?,
            })
        };
        let layers = (0..o.n_layers)
            .map(|l| {
                let s = o.layer(l);
                Ok(LayerIdx {
                    attn_norm: norm(&s.attn_norm)?,
                    q: lin(&s.attn_q)?,
                    k: lin(&s.attn_k)?,
                    v: lin(&s.attn_v)?,
                    q_norm: s
                        .attn_q_norm
                        .as_ref()
                        .map(|w| t.range(&w.name))
                        .transpose()?,
                    k_norm: s
                        .attn_k_norm
                        .as_ref()
                        .map(|w| t.range(&w.name))
                        .transpose()?,
                    o: lin(&s.attn_out)?,
                    attn_post: s.attn_post_norm.as_ref().map(norm).transpose()?,
                    mlp_post: s.mlp_post_norm.as_ref().map(norm).transpose()?,
                    mlp_norm: norm(&s.mlp_norm)?,
                    gate: s.mlp_gate.as_ref().map(lin).transpose()?,
                    up: lin(&s.mlp_up)?,
                    down: lin(&s.mlp_down)?,
                })
            })
            .collect::<Result<_, ModelError>>()?;
        let tok_emb = t.range(&o.tok_emb().name)?;
        Ok(Idx {
            output: match o.output() {
                Some(s) => t.range(&s.name)?,
                None => tok_emb.clone(),
            },
            tok_emb,
            pos_emb: o.pos_emb().map(|s| t.range(&s.name)).transpose()?,
            layers,
            out_norm: norm(&o.out_norm())?,
        })
    }
}

/// Saved activations of one block; shapes with N = B·T rows, Q = H·hd the query
/// width, KV = KVH·hd.
#[derive(Default)]
struct LayerActs<T> {
    ln1: Vec<T>,      // [N, C]
    ln1_mean: Vec<T>, // [N]
    ln1_rstd: Vec<T>, // [N]
    q: Vec<T>,        // [N, Q], after the q/k norm and RoPE
    k: Vec<T>,        // [N, KV], after the q/k norm and RoPE
    v: Vec<T>,        // [N, KV]
    q_pre: Vec<T>,    // [N, Q] projection before the q/k norm (q/k norm only)
    k_pre: Vec<T>,    // [N, KV] (q/k norm only)
    q_rstd: Vec<T>,   // [N·H] (q/k norm only)
    k_rstd: Vec<T>,   // [N·KVH] (q/k norm only)
    att: Vec<T>,      // [B, H, T, T] probabilities
    atty: Vec<T>,     // [N, Q] attention output before the projection
    attn_raw: Vec<T>, // [N, C] projection before the post norm (post norms only)
    pn1_mean: Vec<T>, // [N] (post norms only)
    pn1_rstd: Vec<T>, // [N] (post norms only)
    attproj: Vec<T>,  // [N, C] after the post norm and dropout
    drop1: Vec<T>,    // [N, C] mask, empty without dropout
    res2: Vec<T>,     // [N, C]
    ln2: Vec<T>,      // [N, C]
    ln2_mean: Vec<T>, // [N]
    ln2_rstd: Vec<T>, // [N]
    gate: Vec<T>,     // [N, F] (SwiGLU and GeGLU only)
    up: Vec<T>,       // [N, F]
    act: Vec<T>,      // [N, F]
    mlp_raw: Vec<T>,  // [N, C] down projection before the post norm (post norms only)
    pn2_mean: Vec<T>, // [N] (post norms only)
    pn2_rstd: Vec<T>, // [N] (post norms only)
    mlpout: Vec<T>,   // [N, C] after the post norm and dropout
    drop2: Vec<T>,    // [N, C] mask
}

/// Activations and backward scratch for one (B, T).
struct Acts<T> {
    b: usize,
    t: usize,
    tokens: Vec<u32>,  // [N]
    targets: Vec<u32>, // [N], empty when the last forward had none
    x0: Vec<T>,        // [N, C] embedding (+ positions), after dropout
    drop0: Vec<T>,     // [N, C]
    /// One set per block, or (recompute) one scratch set that every block shares.
    layers: Vec<LayerActs<T>>,
    /// `[L][N, C]` block outputs: the residual stream at each block boundary (block
    /// `l` reads `x0` or `outs[l - 1]`; the final norm reads the last).
    outs: Vec<Vec<T>>,
    /// Gradient checkpointing: `layers` is one scratch set, refilled by the backward.
    recompute: bool,
    /// With recompute: the block whose activations the scratch set holds now.
    held: Option<usize>,
    lnf: Vec<T>,      // [N, C]
    lnf_mean: Vec<T>, // [N]
    lnf_rstd: Vec<T>, // [N]
    logits: Vec<T>,   // [N, V]: logits, then probabilities, then dlogits
    losses: Vec<T>,   // [N]
    /// The dropout masks are allocated (the set was built for training).
    has_masks: bool,
    /// The dropout (probability, seed) of the last forward, which the backward (and a
    /// recomputing backward's block forwards) must apply again; `None` = dropout off.
    drop: Option<(f64, u64)>,
    // Backward scratch, shared by all layers.
    dloss: Vec<T>,    // [N] loss scale per row
    d_res: Vec<T>,    // [N, C] gradient of the residual stream
    d_branch: Vec<T>, // [N, C]
    d_ln: Vec<T>,     // [N, C]
    d_post: Vec<T>,   // [N, C] gradient before a post norm (post norms only)
    d_atty: Vec<T>,   // [N, Q]
    dq: Vec<T>,       // [N, Q]
    dk: Vec<T>,       // [N, KV]
    dv: Vec<T>,       // [N, KV]
    dq_pre: Vec<T>,   // [N, Q] gradient before the q/k norm (q/k norm only)
    dk_pre: Vec<T>,   // [N, KV] (q/k norm only)
    d_act: Vec<T>,    // [N, F]
    d_up: Vec<T>,     // [N, F]
    d_gate: Vec<T>,   // [N, F]
}

/// Elements (f32 or u32, 4 bytes each in training) of the activation set a training
/// forward/backward of `b × t` tokens allocates: exactly what `Acts::new` builds, so the
/// memory estimate and the model cannot drift apart (a test compares them). Per block
/// set: norms and their statistics, q/k/v (and their values before a q/k norm),
/// attention probabilities `B·H·T·T`, the MLP hidden, branch outputs (and their values
/// before post norms) and dropout masks; `n_layers` such sets, or one with
/// `recompute`. Then the block outputs (`n_layers · N·C`), the embedding, final norm,
/// logits (their probabilities and gradient in place), losses, tokens, targets and the
/// backward's scratch.
pub fn activation_elems(
    o: &ModelOptions,
    b: usize,
    t: usize,
    dropout: bool,
    recompute: bool,
) -> usize {
    let n = b * t;
    let (c, qd, kv, f, v) = (o.d_model, o.q_dim(), o.kv_dim(), o.d_ff, o.vocab_size);
    let hidden = if o.mlp.gated() { 3 * f } else { 2 * f };
    let masks = if dropout { 2 * c } else { 0 };
    let qk = if o.arch.qk_norm {
        qd + kv + o.n_heads + o.n_kv_heads
    } else {
        0
    };
    let post = if o.arch.post_norms { 2 * c + 4 } else { 0 };
    let block =
        n * (5 * c + 2 * qd + masks + 2 * kv + 4 + hidden + qk + post) + b * o.n_heads * t * t;
    let sets = if recompute {
        o.n_layers.min(1)
    } else {
        o.n_layers
    };
    let globals = n * (2 + c + if dropout { c } else { 0 } + c + 2 + v + 2);
    let scratch_qk = if o.arch.qk_norm { qd + kv } else { 0 };
    let scratch_post = if o.arch.post_norms { c } else { 0 };
    let scratch = n * (3 * c + 2 * qd + 2 * kv + hidden + scratch_qk + scratch_post);
    sets * block + o.n_layers * n * c + globals + scratch
}

impl<T: Real> Acts<T> {
    fn new(o: &ModelOptions, b: usize, t: usize, dropout: bool, recompute: bool) -> Self {
        let n = b * t;
        let (c, qd, kv, f) = (o.d_model, o.q_dim(), o.kv_dim(), o.d_ff);
        let z = |len: usize| vec![T::zero(); len];
        let maybe = |on: bool, len: usize| if on { z(len) } else { Vec::new() };
        let gated = o.mlp.gated();
        let (qk, post) = (o.arch.qk_norm, o.arch.post_norms);
        let sets = if recompute {
            o.n_layers.min(1)
        } else {
            o.n_layers
        };
        let layers = (0..sets)
            .map(|_| LayerActs {
                ln1: z(n * c),
                ln1_mean: z(n),
                ln1_rstd: z(n),
                q: z(n * qd),
                k: z(n * kv),
                v: z(n * kv),
                q_pre: maybe(qk, n * qd),
                k_pre: maybe(qk, n * kv),
                q_rstd: maybe(qk, n * o.n_heads),
                k_rstd: maybe(qk, n * o.n_kv_heads),
                att: z(b * o.n_heads * t * t),
                atty: z(n * qd),
                attn_raw: maybe(post, n * c),
                pn1_mean: maybe(post, n),
                pn1_rstd: maybe(post, n),
                attproj: z(n * c),
                drop1: maybe(dropout, n * c),
                res2: z(n * c),
                ln2: z(n * c),
                ln2_mean: z(n),
                ln2_rstd: z(n),
                gate: maybe(gated, n * f),
                up: z(n * f),
                act: z(n * f),
                mlp_raw: maybe(post, n * c),
                pn2_mean: maybe(post, n),
                pn2_rstd: maybe(post, n),
                mlpout: z(n * c),
                drop2: maybe(dropout, n * c),
            })
            .collect();
        Acts {
            b,
            t,
            tokens: Vec::with_capacity(n),
            targets: Vec::with_capacity(n),
            x0: z(n * c),
            drop0: maybe(dropout, n * c),
            layers,
            outs: (0..o.n_layers).map(|_| z(n * c)).collect(),
            recompute,
            held: None,
            lnf: z(n * c),
            lnf_mean: z(n),
            lnf_rstd: z(n),
            logits: z(n * o.vocab_size),
            losses: z(n),
            has_masks: dropout,
            drop: None,
            dloss: z(n),
            d_res: z(n * c),
            d_branch: z(n * c),
            d_ln: z(n * c),
            d_post: maybe(post, n * c),
            d_atty: z(n * qd),
            dq: z(n * qd),
            dk: z(n * kv),
            dv: z(n * kv),
            dq_pre: maybe(qk, n * qd),
            dk_pre: maybe(qk, n * kv),
            d_act: z(n * f),
            d_up: z(n * f),
            d_gate: maybe(gated, n * f),
        }
    }

    /// Elements held (tokens and targets counted at their reserved size `N`).
    fn elems(&self) -> usize {
        let n = self.b * self.t;
        let l: usize = self
            .layers
            .iter()
            .map(|a| {
                [
                    &a.ln1,
                    &a.ln1_mean,
                    &a.ln1_rstd,
                    &a.q,
                    &a.k,
                    &a.v,
                    &a.q_pre,
                    &a.k_pre,
                    &a.q_rstd,
                    &a.k_rstd,
                    &a.att,
                    &a.atty,
                    &a.attn_raw,
                    &a.pn1_mean,
                    &a.pn1_rstd,
                    &a.attproj,
                    &a.drop1,
                    &a.res2,
                    &a.ln2,
                    &a.ln2_mean,
                    &a.ln2_rstd,
                    &a.gate,
                    &a.up,
                    &a.act,
                    &a.mlp_raw,
                    &a.pn2_mean,
                    &a.pn2_rstd,
                    &a.mlpout,
                    &a.drop2,
                ]
                .iter()
                .map(|x| x.len())
                .sum::<usize>()
            })
            .sum();
        let outs: usize = self.outs.iter().map(Vec::len).sum();
        let rest: usize = [
            &self.x0,
            &self.drop0,
            &self.lnf,
            &self.lnf_mean,
            &self.lnf_rstd,
            &self.logits,
            &self.losses,
            &self.dloss,
            &self.d_res,
            &self.d_branch,
            &self.d_ln,
            &self.d_post,
            &self.d_atty,
            &self.dq,
            &self.dk,
            &self.dv,
            &self.dq_pre,
            &self.dk_pre,
            &self.d_act,
            &self.d_up,
            &self.d_gate,
        ]
        .iter()
        .map(|x| x.len())
        .sum();
        l + outs + rest + 2 * n
    }
}

/// Dropout seed of site `site` (1: embedding; 2 + 2l, 3 + 2l: block l's branches).
fn site_seed(seed: u64, site: u64) -> u64 {
    seed ^ site.wrapping_mul(0xD1B5_4A32_D192_ED03)
}

/// What a block's forward reads besides its buffers: the backend, options, parameters
/// and the shape of this pass. The forward and a recomputing backward both use it, so
/// the replayed block runs exactly the calls of the original.
struct Pass<'a, T: Real> {
    be: &'a dyn Backend<T>,
    o: &'a ModelOptions,
    p: &'a [T],
    n: usize,
    t: usize,
}

impl<T: Real> Pass<'_, T> {
    fn shape(&self) -> AttnShape {
        AttnShape {
            t: self.t,
            h: self.o.n_heads,
            kvh: self.o.n_kv_heads,
            hd: self.o.head_dim(),
        }
    }

    fn norm(&self, out: &mut [T], mean: &mut [T], rstd: &mut [T], inp: &[T], ni: &NormIdx) {
        let (o, p) = (self.o, self.p);
        let w = &p[ni.w.clone()];
        let eps = o.norm_eps as f64;
        match o.norm {
            Norm::LayerNorm => {
                let bias = ni.b.as_ref().map(|r| &p[r.clone()]);
                self.be
                    .layernorm_forward(out, mean, rstd, inp, w, bias, o.d_model, eps)
            }
            Norm::RmsNorm => self.be.rmsnorm_forward(out, rstd, inp, w, o.d_model, eps),
        }
    }

    fn lin(&self, out: &mut [T], inp: &[T], li: &Lin, i: usize, od: usize) {
        let bias = li.b.as_ref().map(|r| &self.p[r.clone()]);
        self.be
            .matmul_forward(out, inp, &self.p[li.w.clone()], bias, self.n, i, od)
    }

    /// Block `l` from its input `inp` into `la`, and its output into `out`. A
    /// recomputing backward passes `out = None`: it needs the saved activations, not the
    /// output (already in `outs`), so the residual add and (without a post norm, whose
    /// backward needs its input) the down projection are skipped — the second dropout
    /// mask is drawn all the same, from the same seed.
    #[allow(clippy::too_many_arguments)]
    fn block(
        &self,
        li: &LayerIdx,
        l: usize,
        la: &mut LayerActs<T>,
        inp: &[T],
        out: Option<&mut [T]>,
        drop: Option<(f64, u64)>,
    ) -> Result<(), ModelError> {
        let (be, o, p) = (self.be, self.o, self.p);
        let (c, qd, kv, f, t) = (o.d_model, o.q_dim(), o.kv_dim(), o.d_ff, self.t);
        let sh = self.shape();
        let rope = Rope::of(o);
        let eps = o.norm_eps as f64;
        // attention branch: ln1 = norm(x); q,k,v = ln1·W; [q/k norm]; rope; atty =
        // attn; proj [post norm]
        self.norm(
            &mut la.ln1,
            &mut la.ln1_mean,
            &mut la.ln1_rstd,
            inp,
            &li.attn_norm,
        );
        match (&li.q_norm, &li.k_norm) {
            (Some(qn), Some(kn)) => {
                // RMSNorm of every head over its hd values, one weight shared by the
                // heads (Qwen 3, Gemma 3), before RoPE.
                self.lin(&mut la.q_pre, &la.ln1, &li.q, c, qd);
                self.lin(&mut la.k_pre, &la.ln1, &li.k, c, kv);
                let (q, k) = (&la.q_pre, &la.k_pre);
                be.rmsnorm_forward(&mut la.q, &mut la.q_rstd, q, &p[qn.clone()], sh.hd, eps);
                be.rmsnorm_forward(&mut la.k, &mut la.k_rstd, k, &p[kn.clone()], sh.hd, eps);
            }
            _ => {
                self.lin(&mut la.q, &la.ln1, &li.q, c, qd);
                self.lin(&mut la.k, &la.ln1, &li.k, c, kv);
            }
        }
        self.lin(&mut la.v, &la.ln1, &li.v, c, kv);
        if o.positions == Positions::Rope {
            be.rope(&mut la.q, t, sh.h, sh.hd, rope, false);
            be.rope(&mut la.k, t, sh.kvh, sh.hd, rope, false);
        }
        be.attention_forward(&mut la.atty, &mut la.att, &la.q, &la.k, &la.v, sh);
        match &li.attn_post {
            Some(pn) => {
                self.lin(&mut la.attn_raw, &la.atty, &li.o, qd, c);
                let (m, r) = (&mut la.pn1_mean, &mut la.pn1_rstd);
                self.norm(&mut la.attproj, m, r, &la.attn_raw, pn);
            }
            None => self.lin(&mut la.attproj, &la.atty, &li.o, qd, c),
        }
        if let Some((p, seed)) = drop {
            be.dropout_forward(
                &mut la.attproj,
                &mut la.drop1,
                p,
                site_seed(seed, 2 + 2 * l as u64),
            );
        }
        be.residual_forward(&mut la.res2, inp, &la.attproj);
        // MLP branch: ln2 = norm(res2); act(ln2·Wup [⊙ gate]); down
        self.norm(
            &mut la.ln2,
            &mut la.ln2_mean,
            &mut la.ln2_rstd,
            &la.res2,
            &li.mlp_norm,
        );
        self.lin(&mut la.up, &la.ln2, &li.up, c, f);
        match (o.mlp, &li.gate) {
            (Mlp::SwiGlu, Some(g)) => {
                self.lin(&mut la.gate, &la.ln2, g, c, f);
                be.swiglu_forward(&mut la.act, &la.gate, &la.up);
            }
            (Mlp::GeGlu, Some(g)) => {
                self.lin(&mut la.gate, &la.ln2, g, c, f);
                be.geglu_forward(&mut la.act, &la.gate, &la.up);
            }
            (Mlp::Gelu, _) => be.activation_forward(Activation::Gelu, &mut la.act, &la.up),
            (Mlp::Relu, _) => be.activation_forward(Activation::Relu, &mut la.act, &la.up),
            (Mlp::SwiGlu | Mlp::GeGlu, None) => {
                return Err(ModelError("internal: mlp_gate missing".into()))
            }
        }
        // Recomputing (`out = None`) without post norms: only the mask of the second
        // dropout is still needed (it depends on the seed alone; `mlpout`'s stale values
        // are not read). A post norm's backward needs its input, so that one is redone.
        if out.is_some() || li.mlp_post.is_some() {
            match &li.mlp_post {
                Some(pn) => {
                    self.lin(&mut la.mlp_raw, &la.act, &li.down, f, c);
                    let (m, r) = (&mut la.pn2_mean, &mut la.pn2_rstd);
                    self.norm(&mut la.mlpout, m, r, &la.mlp_raw, pn);
                }
                None => self.lin(&mut la.mlpout, &la.act, &li.down, f, c),
            }
        }
        if let Some((p, seed)) = drop {
            be.dropout_forward(
                &mut la.mlpout,
                &mut la.drop2,
                p,
                site_seed(seed, 3 + 2 * l as u64),
            );
        }
        if let Some(out) = out {
            be.residual_forward(out, &la.res2, &la.mlpout);
        }
        Ok(())
    }
}

fn zero<T: Real>(x: &mut [T]) {
    x.iter_mut().for_each(|v| *v = T::zero());
}

/// Disjoint mutable views of a weight range and an optional bias range.
fn wb<'a, T>(
    g: &'a mut [T],
    w: &Range<usize>,
    b: &Option<Range<usize>>,
) -> (&'a mut [T], Option<&'a mut [T]>) {
    match b {
        None => (&mut g[w.clone()], None),
        Some(b) if b.start >= w.end => {
            let (lo, hi) = g.split_at_mut(b.start);
            (&mut lo[w.clone()], Some(&mut hi[..b.len()]))
        }
        Some(b) => {
            let (lo, hi) = g.split_at_mut(w.start);
            (&mut hi[..w.len()], Some(&mut lo[b.clone()]))
        }
    }
}

/// Refuses the model options the trainer cannot train (run-only), naming each one.
///
/// Trained: every classic option, q/k/v biases, a head width other than
/// `d_model / n_heads`, the per-head q/k RMSNorm, GeGLU, post norms, linear RoPE
/// scaling, and an embedding scale on a RoPE model. Run-only: sliding-window
/// attention (and its pattern and local RoPE base), RoPE frequency factors, and an
/// embedding scale with a position table (the scale applies to the token embedding
/// only, which the trainer's embedding op does not separate from the positions).
pub fn check_trainable(o: &ModelOptions) -> Result<(), ModelError> {
    let a = &o.arch;
    let mut run_only = Vec::new();
    if let Some(w) = a.sliding_window {
        run_only.push(format!("sliding_window = {w}"));
    }
    if a.sliding_window_pattern != 0 {
        run_only.push(format!(
            "sliding_window_pattern = {}",
            a.sliding_window_pattern
        ));
    }
    if let Some(b) = a.rope_base_local {
        run_only.push(format!("rope_base_local = {b}"));
    }
    if a.rope_freq_factors {
        run_only.push("rope_freq_factors (rope_freqs tensor)".into());
    }
    if let (Some(s), true) = (a.embed_scale, o.positions != Positions::Rope) {
        run_only.push(format!(
            "embed_scale = {s} with {} positions (only with rope)",
            o.positions.name()
        ));
    }
    if run_only.is_empty() {
        return Ok(());
    }
    Err(ModelError(format!(
        "the trainer does not train these model options (run-only): {}",
        run_only.join(", ")
    )))
}

/// Weights, gradients and saved activations of one decoder.
pub struct Model<T: Real> {
    /// The model options (the file's metadata).
    pub opts: ModelOptions,
    /// Size table of `params` and `grads`.
    pub table: ParamTable,
    /// All parameters, flat, in table order.
    pub params: Vec<T>,
    /// Gradients in the same layout (accumulated by `backward`).
    pub grads: Vec<T>,
    /// Dropout probability used by `forward` when given a dropout seed.
    pub dropout: f64,
    /// Gradient checkpointing: keep only the block boundaries in the forward and
    /// recompute each block's activations in the backward (same result, bit for bit;
    /// about one block forward more per step, `n_layers - 1` blocks' activations less).
    pub recompute: bool,
    idx: Idx,
    acts: Option<Acts<T>>,
    /// The previous activation set, kept when a forward of another shape (an
    /// evaluation with dropout off, a sample of one sequence) replaced it, so that the
    /// next training step gets its buffers back instead of allocating them again.
    spare: Option<Acts<T>>,
}

impl<T: Real> Model<T> {
    /// A zero-initialised model; call [`Model::init_gpt2`] or load weights.
    pub fn new(opts: ModelOptions, decay_embeddings: bool) -> Result<Self, ModelError> {
        opts.validate().map_err(|e| ModelError(e.to_string()))?;
        check_trainable(&opts)?;
        let table = ParamTable::new(&opts, decay_embeddings);
        let idx = Idx::new(&table, &opts)?;
        Ok(Model {
            params: vec![T::zero(); table.total],
            grads: vec![T::zero(); table.total],
            opts,
            table,
            dropout: 0.0,
            recompute: false,
            idx,
            acts: None,
            spare: None,
        })
    }

    /// GPT-2 initialisation: matrices and embedding tables N(0, 0.02), the two residual
    /// projections (`attn_out`, `mlp_down`) N(0, 0.02/√(2L)), biases 0, norm weights 1.
    pub fn init_gpt2(&mut self, seed: u64) {
        let mut rng = Rng::new(seed);
        let resid = 0.02 / (2.0 * self.opts.n_layers as f64).sqrt();
        for s in &self.table.slots {
            let p = &mut self.params[s.range()];
            let is_norm = s.name.contains("norm");
            if s.name.ends_with(".bias") {
                zero(p);
            } else if is_norm {
                p.iter_mut().for_each(|v| *v = T::one());
            } else {
                let std = if s.name.contains("attn_out") || s.name.contains("mlp_down") {
                    resid
                } else {
                    0.02
                };
                p.iter_mut().for_each(|v| *v = T::c(rng.normal() * std));
            }
        }
    }

    /// The parameters of one canonical tensor.
    pub fn param(&self, name: &str) -> Option<&[T]> {
        self.table.get(name).map(|s| &self.params[s.range()])
    }

    /// Mutable parameters of one canonical tensor.
    pub fn param_mut(&mut self, name: &str) -> Option<&mut [T]> {
        let r = self.table.get(name)?.range();
        Some(&mut self.params[r])
    }

    /// Zeroes the gradient buffer (before the first micro-batch of a step).
    pub fn zero_grad(&mut self) {
        zero(&mut self.grads);
    }

    /// Attention probabilities `[B, H, T, T]` of block `layer` from the last forward
    /// (CPU backend; a backend may store other statistics there). With
    /// [`Model::recompute`] only the block in the shared scratch set has them (the last
    /// block after a forward, the first after a backward); others give `None`.
    pub fn attention(&self, layer: usize) -> Option<&[T]> {
        let a = self.acts.as_ref()?;
        let slot = if a.recompute {
            (a.held == Some(layer)).then_some(0)?
        } else {
            layer
        };
        a.layers.get(slot).map(|l| l.att.as_slice())
    }

    /// Elements held by the activation sets now allocated (the current one and a spare
    /// kept for the next training step); for the memory estimate's test.
    pub fn activation_elems(&self) -> usize {
        [&self.acts, &self.spare]
            .iter()
            .filter_map(|a| a.as_ref())
            .map(Acts::elems)
            .sum()
    }

    /// Logits `[B·T, V]` of the last forward run without targets.
    pub fn logits(&self) -> &[T] {
        self.acts.as_ref().map_or(&[], |a| &a.logits)
    }

    fn check_inputs(
        &self,
        tokens: &[u32],
        targets: Option<&[u32]>,
        b: usize,
        t: usize,
    ) -> Result<(), ModelError> {
        let o = &self.opts;
        if b == 0 || t == 0 {
            return Err(ModelError(format!("empty batch (B = {b}, T = {t})")));
        }
        if t > o.max_len {
            return Err(ModelError(format!(
                "sequence length {t} exceeds the model's max_len {}",
                o.max_len
            )));
        }
        let n = b * t;
        if tokens.len() != n || targets.is_some_and(|x| x.len() != n) {
            return Err(ModelError(format!(
                "expected {n} tokens and targets for B = {b}, T = {t}, got {} and {}",
                tokens.len(),
                targets.map_or(0, |x| x.len())
            )));
        }
        let all = tokens.iter().chain(targets.unwrap_or(&[]));
        if let Some(bad) = all.copied().find(|&x| x as usize >= o.vocab_size) {
            return Err(ModelError(format!(
                "token id {bad} is not below vocab_size {}",
                o.vocab_size
            )));
        }
        Ok(())
    }

    /// Runs the decoder on `tokens: [B, T]`. With `targets`, returns the mean
    /// cross-entropy and keeps what `backward` needs; without, leaves the logits
    /// readable through [`Model::logits`]. `dropout_seed` turns dropout on (training).
    pub fn forward(
        &mut self,
        be: &dyn Backend<T>,
        tokens: &[u32],
        targets: Option<&[u32]>,
        b: usize,
        t: usize,
        dropout_seed: Option<u64>,
    ) -> Result<Option<f64>, ModelError> {
        self.check_inputs(tokens, targets, b, t)?;
        let drop_p = match dropout_seed {
            Some(_) if self.dropout > 0.0 => self.dropout,
            _ => 0.0,
        };
        let dropout_on = drop_p > 0.0;
        // A set serves (b, t) when its shape and mode match and it has dropout masks if
        // this forward needs them (a training set also serves a dropout-free evaluation).
        let recompute = self.recompute;
        let fits = |a: &Option<Acts<T>>| {
            a.as_ref().is_some_and(|a| {
                a.b == b && a.t == t && a.recompute == recompute && (a.has_masks || !dropout_on)
            })
        };
        if !fits(&self.acts) {
            if fits(&self.spare) {
                std::mem::swap(&mut self.acts, &mut self.spare);
            } else {
                let old = self
                    .acts
                    .replace(Acts::new(&self.opts, b, t, dropout_on, recompute));
                // Keep a larger set aside (sampling one sequence between training
                // steps); a smaller one is cheap to build again.
                if old.as_ref().is_some_and(|o| o.b * o.t > b * t) {
                    self.spare = old;
                }
            }
        }
        let drop = dropout_on.then(|| (drop_p, dropout_seed.unwrap_or(0)));
        if let Some(a) = self.acts.as_mut() {
            a.drop = drop;
        }
        let Model {
            opts: o,
            params: p,
            idx,
            acts,
            ..
        } = self;
        let Some(a) = acts.as_mut() else {
            return Err(ModelError("internal: activations missing".into()));
        };
        a.tokens.clear();
        a.tokens.extend_from_slice(tokens);
        a.targets.clear();
        if let Some(tg) = targets {
            a.targets.extend_from_slice(tg);
        }
        let n = b * t;
        let (c, v) = (o.d_model, o.vocab_size);
        let pass = Pass { be, o, p, n, t };
        let pos = match o.positions {
            Positions::Learned => match &idx.pos_emb {
                Some(r) => PosAdd::Learned(&p[r.clone()]),
                None => return Err(ModelError("internal: pos_emb missing".into())),
            },
            Positions::Sinusoidal => PosAdd::Sinusoidal,
            Positions::Rope => PosAdd::None,
        };
        // x0 = tok_emb[tokens] + pos
        be.embedding_forward(&mut a.x0, tokens, &p[idx.tok_emb.clone()], pos, t, c);
        if let Some(s) = o.arch.embed_scale {
            // Gemma's √d on the input embedding only (RoPE models: no position table
            // to leave unscaled, see `Model::new`).
            be.scale(&mut a.x0, s as f64);
        }
        if let Some((dp, seed)) = drop {
            be.dropout_forward(&mut a.x0, &mut a.drop0, dp, site_seed(seed, 1));
        }
        for (l, li) in idx.layers.iter().enumerate() {
            let la = &mut a.layers[if a.recompute { 0 } else { l }];
            let (prev, rest) = a.outs.split_at_mut(l);
            let inp: &[T] = prev.last().unwrap_or(&a.x0);
            pass.block(li, l, la, inp, Some(&mut rest[0]), drop)?;
            a.held = Some(l);
        }
        let last: &[T] = a.outs.last().unwrap_or(&a.x0);
        pass.norm(
            &mut a.lnf,
            &mut a.lnf_mean,
            &mut a.lnf_rstd,
            last,
            &idx.out_norm,
        );
        be.matmul_forward(&mut a.logits, &a.lnf, &p[idx.output.clone()], None, n, c, v);
        let Some(tg) = targets else {
            return Ok(None);
        };
        be.softmax_ce_forward(&mut a.logits, &mut a.losses, tg, v);
        let sum: f64 = a.losses.iter().map(|x| x.f64()).sum();
        Ok(Some(sum / n as f64))
    }

    /// Adds `loss_scale · ∂(mean loss)/∂params` into `grads` (scale `1/grad_accum` for
    /// accumulation). Needs the immediately preceding `forward` to have had targets.
    pub fn backward(&mut self, be: &dyn Backend<T>, loss_scale: f64) -> Result<(), ModelError> {
        let Model {
            opts: o,
            params: p,
            grads: g,
            idx,
            acts,
            ..
        } = self;
        let Some(a) = acts.as_mut() else {
            return Err(ModelError("backward called before forward".into()));
        };
        if a.targets.is_empty() {
            return Err(ModelError("backward needs a forward with targets".into()));
        }
        let (b, t) = (a.b, a.t);
        let n = b * t;
        let (c, qd, kv, f, v) = (o.d_model, o.q_dim(), o.kv_dim(), o.d_ff, o.vocab_size);
        let sh = AttnShape {
            t,
            h: o.n_heads,
            kvh: o.n_kv_heads,
            hd: o.head_dim(),
        };
        let rope = Rope::of(o);
        let pass = Pass { be, o, p, n, t };
        // dlogits = scale/N · (p - onehot), in place over the probabilities.
        a.dloss.fill(T::c(loss_scale / n as f64));
        be.softmax_ce_backward(&mut a.logits, &a.dloss, &a.targets, v);
        let norm_bwd = |g: &mut [T],
                        dinp: &mut [T],
                        dout: &[T],
                        inp: &[T],
                        mean: &[T],
                        rstd: &[T],
                        ni: &NormIdx| {
            let w = &p[ni.w.clone()];
            let (dw, db) = wb(g, &ni.w, &ni.b);
            match o.norm {
                Norm::LayerNorm => be.layernorm_backward(dinp, dw, db, dout, inp, w, mean, rstd, c),
                Norm::RmsNorm => be.rmsnorm_backward(dinp, dw, dout, inp, w, rstd, c),
            }
        };
        let lin_bwd =
            |g: &mut [T], dinp: &mut [T], dout: &[T], inp: &[T], li: &Lin, i: usize, od: usize| {
                let (dw, db) = wb(g, &li.w, &li.b);
                be.matmul_backward(dinp, dw, db, dout, inp, &p[li.w.clone()], n, i, od)
            };
        // logits = lnf · Wᵀ
        zero(&mut a.d_ln);
        let out_r = idx.output.clone();
        be.matmul_backward(
            &mut a.d_ln,
            &mut g[out_r.clone()],
            None,
            &a.logits,
            &a.lnf,
            &p[out_r],
            n,
            c,
            v,
        );
        zero(&mut a.d_res);
        {
            let last: &[T] = a.outs.last().unwrap_or(&a.x0);
            norm_bwd(
                g,
                &mut a.d_res,
                &a.d_ln,
                last,
                &a.lnf_mean,
                &a.lnf_rstd,
                &idx.out_norm,
            );
        }
        let dropout_on = a.drop.is_some();
        for (l, li) in idx.layers.iter().enumerate().rev() {
            let inp: &[T] = if l == 0 { &a.x0 } else { &a.outs[l - 1] };
            let slot = if a.recompute {
                // Refill the scratch set with this block's activations (the last
                // block's are still there from the forward).
                if a.held != Some(l) {
                    a.held = None;
                    pass.block(li, l, &mut a.layers[0], inp, None, a.drop)?;
                    a.held = Some(l);
                }
                0
            } else {
                l
            };
            let la = &a.layers[slot];
            // out = res2 + mlpout: d_res flows on, and into the MLP branch.
            a.d_branch.copy_from_slice(&a.d_res);
            if dropout_on {
                be.dropout_backward(&mut a.d_branch, &la.drop2);
            }
            // mlpout = post_norm(mlp_raw), or the down projection itself.
            let d_down: &[T] = match &li.mlp_post {
                Some(pn) => {
                    zero(&mut a.d_post);
                    let (m, r) = (&la.pn2_mean, &la.pn2_rstd);
                    norm_bwd(g, &mut a.d_post, &a.d_branch, &la.mlp_raw, m, r, pn);
                    &a.d_post
                }
                None => &a.d_branch,
            };
            zero(&mut a.d_act);
            lin_bwd(g, &mut a.d_act, d_down, &la.act, &li.down, f, c);
            zero(&mut a.d_up);
            match (o.mlp, &li.gate) {
                (Mlp::SwiGlu, Some(_)) => {
                    zero(&mut a.d_gate);
                    be.swiglu_backward(&mut a.d_gate, &mut a.d_up, &a.d_act, &la.gate, &la.up);
                }
                (Mlp::GeGlu, Some(_)) => {
                    zero(&mut a.d_gate);
                    be.geglu_backward(&mut a.d_gate, &mut a.d_up, &a.d_act, &la.gate, &la.up);
                }
                (Mlp::Relu, _) => {
                    be.activation_backward(Activation::Relu, &mut a.d_up, &la.up, &a.d_act)
                }
                _ => be.activation_backward(Activation::Gelu, &mut a.d_up, &la.up, &a.d_act),
            }
            zero(&mut a.d_ln);
            lin_bwd(g, &mut a.d_ln, &a.d_up, &la.ln2, &li.up, c, f);
            if let Some(gl) = &li.gate {
                lin_bwd(g, &mut a.d_ln, &a.d_gate, &la.ln2, gl, c, f);
            }
            norm_bwd(
                g,
                &mut a.d_res,
                &a.d_ln,
                &la.res2,
                &la.ln2_mean,
                &la.ln2_rstd,
                &li.mlp_norm,
            );
            // res2 = x + attproj
            a.d_branch.copy_from_slice(&a.d_res);
            if dropout_on {
                be.dropout_backward(&mut a.d_branch, &la.drop1);
            }
            let d_o: &[T] = match &li.attn_post {
                Some(pn) => {
                    zero(&mut a.d_post);
                    let (m, r) = (&la.pn1_mean, &la.pn1_rstd);
                    norm_bwd(g, &mut a.d_post, &a.d_branch, &la.attn_raw, m, r, pn);
                    &a.d_post
                }
                None => &a.d_branch,
            };
            zero(&mut a.d_atty);
            lin_bwd(g, &mut a.d_atty, d_o, &la.atty, &li.o, qd, c);
            zero(&mut a.dq);
            zero(&mut a.dk);
            zero(&mut a.dv);
            be.attention_backward(
                &mut a.dq, &mut a.dk, &mut a.dv, &a.d_atty, &la.q, &la.k, &la.v, &la.att, sh,
            );
            if o.positions == Positions::Rope {
                be.rope(&mut a.dq, t, sh.h, sh.hd, rope, true);
                be.rope(&mut a.dk, t, sh.kvh, sh.hd, rope, true);
            }
            // Through the q/k norm: the projections' gradients are dq_pre and dk_pre.
            let (dq, dk): (&[T], &[T]) = match (&li.q_norm, &li.k_norm) {
                (Some(qn), Some(kn)) => {
                    zero(&mut a.dq_pre);
                    zero(&mut a.dk_pre);
                    let (w, r) = (&p[qn.clone()], &la.q_rstd);
                    let dw = &mut g[qn.clone()];
                    be.rmsnorm_backward(&mut a.dq_pre, dw, &a.dq, &la.q_pre, w, r, sh.hd);
                    let (w, r) = (&p[kn.clone()], &la.k_rstd);
                    let dw = &mut g[kn.clone()];
                    be.rmsnorm_backward(&mut a.dk_pre, dw, &a.dk, &la.k_pre, w, r, sh.hd);
                    (&a.dq_pre, &a.dk_pre)
                }
                _ => (&a.dq, &a.dk),
            };
            zero(&mut a.d_ln);
            lin_bwd(g, &mut a.d_ln, dq, &la.ln1, &li.q, c, qd);
            lin_bwd(g, &mut a.d_ln, dk, &la.ln1, &li.k, c, kv);
            lin_bwd(g, &mut a.d_ln, &a.dv, &la.ln1, &li.v, c, kv);
            norm_bwd(
                g,
                &mut a.d_res,
                &a.d_ln,
                inp,
                &la.ln1_mean,
                &la.ln1_rstd,
                &li.attn_norm,
            );
        }
        if dropout_on {
            be.dropout_backward(&mut a.d_res, &a.drop0);
        }
        if let Some(s) = o.arch.embed_scale {
            be.scale(&mut a.d_res, s as f64);
        }
        let (dtok, dpos) = wb(g, &idx.tok_emb, &idx.pos_emb);
        be.embedding_backward(dtok, dpos, &a.d_res, &a.tokens, t, c);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::Cpu;
    use crate::layers::testutil::rand_vec;

    fn opts(
        pos: Positions,
        norm: Norm,
        mlp: Mlp,
        bias: bool,
        tied: bool,
        kvh: usize,
    ) -> ModelOptions {
        ModelOptions {
            vocab_size: 11,
            d_model: 8,
            n_layers: 2,
            n_heads: 2,
            n_kv_heads: kvh,
            d_ff: 12,
            max_len: 6,
            positions: pos,
            norm,
            mlp,
            bias,
            tied_embeddings: tied,
            norm_eps: 1e-5,
            rope_base: 10000.0,
            arch: Default::default(),
        }
    }

    /// Checks every tensor's gradient (up to 6 sampled elements each) against central
    /// differences of the mean loss in f64; tolerance 1e-6 absolute + relative.
    fn gradcheck(o: ModelOptions, dropout: f64, seed: u64) {
        let mut m = Model::<f64>::new(o.clone(), true).unwrap();
        // Large random weights (not GPT-2's 0.02) so every gradient is well above round-off.
        m.params = rand_vec::<f64>(m.table.total, seed)
            .iter()
            .map(|x| x * 0.7)
            .collect();
        m.dropout = dropout;
        // Every other case with gradient checkpointing (the finite differences then
        // run through the recomputing model too).
        m.recompute = seed % 2 == 1;
        let (b, t) = (2, 5);
        let mut r = Rng::for_test(seed + 1);
        let tokens: Vec<u32> = (0..b * t).map(|_| r.below(11) as u32).collect();
        let targets: Vec<u32> = (0..b * t).map(|_| r.below(11) as u32).collect();
        let ds = Some(42);
        m.zero_grad();
        m.forward(&Cpu, &tokens, Some(&targets), b, t, ds).unwrap();
        m.backward(&Cpu, 1.0).unwrap();
        let grads = m.grads.clone();
        let h = 1e-5;
        for s in m.table.slots.clone() {
            let step = (s.len / 6).max(1);
            for i in (0..s.len).step_by(step).take(6) {
                let k = s.offset + (i * 7919) % s.len;
                let orig = m.params[k];
                m.params[k] = orig + h;
                let lp = m
                    .forward(&Cpu, &tokens, Some(&targets), b, t, ds)
                    .unwrap()
                    .unwrap();
                m.params[k] = orig - h;
                let lm = m
                    .forward(&Cpu, &tokens, Some(&targets), b, t, ds)
                    .unwrap()
                    .unwrap();
                m.params[k] = orig;
                let num = (lp - lm) / (2.0 * h);
                assert!(
                    (grads[k] - num).abs() <= 1e-6 * (1.0 + num.abs()),
                    "{o:?}: {} [{i}] analytic {} numeric {num}",
                    s.name,
                    grads[k]
                );
            }
        }
    }

    #[test]
    fn whole_model_gradients_every_option_combination() {
        let mut seed = 100;
        for pos in [Positions::Learned, Positions::Sinusoidal, Positions::Rope] {
            for norm in [Norm::LayerNorm, Norm::RmsNorm] {
                for mlp in [Mlp::Gelu, Mlp::Relu, Mlp::SwiGlu] {
                    for bias in [false, true] {
                        for tied in [false, true] {
                            for kvh in [2, 1] {
                                seed += 1;
                                gradcheck(opts(pos, norm, mlp, bias, tied, kvh), 0.0, seed);
                            }
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn qkv_bias_gradients_and_run_only_options_refused() {
        for (mlp, kvh, seed) in [(Mlp::SwiGlu, 1, 301), (Mlp::Gelu, 2, 302)] {
            let mut o = opts(Positions::Rope, Norm::RmsNorm, mlp, false, false, kvh);
            o.arch.qkv_bias = true;
            gradcheck(o, 0.0, seed);
        }
        let refused = |f: &dyn Fn(&mut ModelOptions), pos: Positions, want: &str| {
            let mut o = opts(pos, Norm::RmsNorm, Mlp::SwiGlu, false, false, 2);
            f(&mut o);
            let e = Model::<f64>::new(o, true)
                .err()
                .expect("refused")
                .to_string();
            assert!(e.contains("run-only") && e.contains(want), "{e}");
        };
        let rope = Positions::Rope;
        refused(
            &|o| o.arch.sliding_window = Some(3),
            rope,
            "sliding_window = 3",
        );
        refused(
            &|o| o.arch.rope_freq_factors = true,
            rope,
            "rope_freq_factors",
        );
        refused(
            &|o| o.arch.embed_scale = Some(2.0),
            Positions::Learned,
            "embed_scale = 2 with learned positions",
        );
    }

    /// Qwen 3 / Gemma 3 settings, one at a time over the option sets they meet and all
    /// together (with and without dropout); odd seeds run with recompute.
    #[test]
    fn newer_family_options_gradients() {
        let (rope, learned) = (Positions::Rope, Positions::Learned);
        let (rms, ln) = (Norm::RmsNorm, Norm::LayerNorm);
        let mut cases: Vec<(ModelOptions, f64)> = Vec::new();
        for (pos, norm, bias, kvh) in [(rope, rms, false, 1), (learned, ln, true, 2)] {
            let base = || opts(pos, norm, Mlp::SwiGlu, bias, false, kvh);
            let mut o = base();
            o.arch.qk_norm = true;
            cases.push((o, 0.0));
            let mut o = base();
            o.mlp = Mlp::GeGlu;
            cases.push((o, 0.0));
            let mut o = base();
            o.arch.head_dim = Some(6); // q width 12, kv width 6 or 12, against d = 8
            cases.push((o, 0.0));
            let mut o = base();
            o.arch.post_norms = true;
            cases.push((o, 0.0));
        }
        let mut o = opts(rope, rms, Mlp::Gelu, false, true, 2);
        o.arch.embed_scale = Some(2.5);
        cases.push((o, 0.0));
        for (kvh, dropout) in [(1, 0.0), (2, 0.0), (1, 0.2), (2, 0.2)] {
            let mut o = opts(rope, rms, Mlp::GeGlu, false, kvh == 2, kvh);
            o.arch = llm_format::ArchOptions {
                head_dim: Some(6),
                qkv_bias: true,
                qk_norm: true,
                post_norms: true,
                embed_scale: Some(8f32.sqrt()),
                ..Default::default()
            };
            cases.push((o, dropout));
        }
        for (i, (o, dropout)) in cases.into_iter().enumerate() {
            gradcheck(o, dropout, 400 + i as u64);
        }
    }

    #[test]
    fn whole_model_gradients_with_dropout() {
        gradcheck(
            opts(
                Positions::Learned,
                Norm::LayerNorm,
                Mlp::Gelu,
                true,
                true,
                2,
            ),
            0.3,
            7,
        );
        gradcheck(
            opts(Positions::Rope, Norm::RmsNorm, Mlp::SwiGlu, false, false, 1),
            0.2,
            8,
        );
    }

    #[test]
    fn reused_activation_sets_give_the_same_gradients() {
        // Training step, then an evaluation (dropout off) and samples of other shapes,
        // then the same training step again: the swapped-back buffers must give the
        // same loss and gradients bit for bit.
        let o = opts(Positions::Rope, Norm::LayerNorm, Mlp::Gelu, true, true, 1);
        let mut m = Model::<f32>::new(o, true).unwrap();
        m.params = rand_vec::<f32>(m.table.total, 90);
        m.dropout = 0.2;
        let mut r = Rng::for_test(91);
        let tokens: Vec<u32> = (0..12).map(|_| r.below(11) as u32).collect();
        let targets: Vec<u32> = (0..12).map(|_| r.below(11) as u32).collect();
        let step = |m: &mut Model<f32>| {
            m.zero_grad();
            let l = m
                .forward(&Cpu, &tokens, Some(&targets), 2, 6, Some(5))
                .unwrap()
                .unwrap();
            m.backward(&Cpu, 1.0).unwrap();
            (l, m.grads.clone())
        };
        let (l1, g1) = step(&mut m);
        m.forward(&Cpu, &tokens, Some(&targets), 2, 6, None)
            .unwrap();
        for t in 1..=6 {
            m.forward(&Cpu, &tokens[..t], None, 1, t, None).unwrap();
        }
        let (l2, g2) = step(&mut m);
        assert_eq!(l1.to_bits(), l2.to_bits());
        assert!(g1.iter().zip(&g2).all(|(a, b)| a.to_bits() == b.to_bits()));
        // The training set was swapped back (not rebuilt): the last sample's set took
        // its place as the spare.
        assert!(m.spare.as_ref().is_some_and(|s| (s.b, s.t) == (1, 6)));
    }

    #[test]
    fn accumulating_two_halves_equals_one_batch() {
        // Gradient accumulation: B=2 at scale 1 equals two B=1 passes at scale 1/2.
        let o = opts(Positions::Rope, Norm::RmsNorm, Mlp::SwiGlu, false, false, 1);
        let mut m = Model::<f64>::new(o, true).unwrap();
        m.params = rand_vec::<f64>(m.table.total, 77);
        let mut r = Rng::for_test(78);
        let tokens: Vec<u32> = (0..10).map(|_| r.below(11) as u32).collect();
        let targets: Vec<u32> = (0..10).map(|_| r.below(11) as u32).collect();
        m.zero_grad();
        let whole = m
            .forward(&Cpu, &tokens, Some(&targets), 2, 5, None)
            .unwrap()
            .unwrap();
        m.backward(&Cpu, 1.0).unwrap();
        let g_whole = m.grads.clone();
        m.zero_grad();
        let mut halves = 0.0;
        for k in 0..2 {
            let (a, b) = (&tokens[5 * k..5 * k + 5], &targets[5 * k..5 * k + 5]);
            halves += 0.5 * m.forward(&Cpu, a, Some(b), 1, 5, None).unwrap().unwrap();
            m.backward(&Cpu, 0.5).unwrap();
        }
        assert!((whole - halves).abs() < 1e-12);
        for (a, b) in g_whole.iter().zip(&m.grads) {
            assert!((a - b).abs() < 1e-12 * (1.0 + a.abs()));
        }
    }

    #[test]
    fn f32_forward_matches_f64() {
        let o = opts(Positions::Rope, Norm::RmsNorm, Mlp::SwiGlu, false, false, 1);
        let mut m64 = Model::<f64>::new(o.clone(), true).unwrap();
        m64.init_gpt2(3);
        let mut m32 = Model::<f32>::new(o, true).unwrap();
        m32.params = m64.params.iter().map(|&x| x as f32).collect();
        let tokens = [1u32, 2, 3, 4, 5, 6];
        let targets = [2u32, 3, 4, 5, 6, 7];
        let l64 = m64
            .forward(&Cpu, &tokens, Some(&targets), 1, 6, None)
            .unwrap()
            .unwrap();
        let l32 = m32
            .forward(&Cpu, &tokens, Some(&targets), 1, 6, None)
            .unwrap()
            .unwrap();
        assert!((l64 - l32).abs() < 1e-5 * l64, "{l64} vs {l32}");
        // A freshly initialised model predicts nearly uniformly: loss ≈ ln V.
        assert!((l64 - 11f64.ln()).abs() < 0.15, "{l64}");
    }

    #[test]
    fn table_matches_layout_and_rejects_bad_tokens() {
        let o = opts(
            Positions::Learned,
            Norm::LayerNorm,
            Mlp::Gelu,
            true,
            true,
            2,
        );
        let mut m = Model::<f32>::new(o.clone(), false).unwrap();
        assert_eq!(m.table.total, o.n_params());
        let names: Vec<_> = o.tensor_layout().into_iter().map(|s| s.name).collect();
        let ours: Vec<_> = m.table.slots.iter().map(|s| s.name.clone()).collect();
        assert_eq!(names, ours);
        assert!(!m.table.get("tok_emb").unwrap().decays);
        assert!(!m.table.get("blk.0.attn_norm.bias").unwrap().decays);
        assert!(m.table.get("blk.0.attn_q.weight").unwrap().decays);
        let err = m
            .forward(&Cpu, &[1, 11], Some(&[1, 2]), 1, 2, None)
            .unwrap_err();
        assert!(err.0.contains("11"));
        assert!(m
            .forward(&Cpu, &[1; 7], None, 1, 7, None)
            .unwrap_err()
            .0
            .contains("max_len"));
        assert!(m.backward(&Cpu, 1.0).is_err());
    }
}
