//! A loaded model: its options, its tokenizer and where each weight lives in the
//! file's bytes. Loading is parse + validate; weights stay in the mapped (or
//! borrowed) file and are never copied, except the small f32 norm and bias vectors.

use crate::error::Error;
use crate::kernels::Matrix;
use crate::tokenizer::Tokenizer;
use alloc::format;
use alloc::vec::Vec;
use core::ops::Range;
use llm_format::options::{LinearSlots, NormSlots, TensorSlot};
use llm_format::{reader::LlmFile, AlignedBuf, DType, Layout, ModelOptions};

/// Where the file's bytes live. Every variant gives a stable address for the
/// model's lifetime, so tensor ranges stay valid.
pub enum Storage {
    /// A buffer with `'static` lifetime (embedded in the binary, or leaked by the host).
    Static(&'static [u8]),
    /// A 64-byte-aligned heap copy of a caller's buffer.
    Owned(AlignedBuf),
    /// A read-only memory map of a file.
    #[cfg(feature = "std")]
    Mapped(llm_format::mmap::MappedFile),
}

impl Storage {
    /// The whole file.
    pub fn bytes(&self) -> &[u8] {
        match self {
            Storage::Static(b) => b,
            Storage::Owned(b) => b.as_bytes(),
            #[cfg(feature = "std")]
            Storage::Mapped(m) => m.bytes(),
        }
    }
}

/// A weight matrix: dtype, byte range in the storage, and shape `[rows, cols]`.
#[derive(Clone, Debug)]
pub struct WeightRef {
    /// Storage dtype.
    pub dtype: DType,
    /// Arrangement of the rows in the file (`llm-train quantize --layout`).
    pub layout: Layout,
    /// Byte range in [`Storage::bytes`].
    pub range: Range<usize>,
    /// Output features.
    pub rows: usize,
    /// Input features.
    pub cols: usize,
}

/// A linear layer: its weight matrix (a reference into the storage) and, when the
/// model has biases, its bias (an f32 copy).
#[derive(Clone, Debug)]
pub struct Linear {
    /// Weight `[out, in]`.
    pub w: WeightRef,
    /// Bias `[out]`.
    pub b: Option<Vec<f32>>,
}

/// A norm's weight and, for LayerNorm with biases, its bias (f32 copies).
#[derive(Clone, Debug)]
pub struct NormWeights {
    /// Weight `[d]`.
    pub w: Vec<f32>,
    /// Bias `[d]`.
    pub b: Option<Vec<f32>>,
}

/// One decoder block's weights. Vectors are f32 copies; matrices are references.
pub struct Layer {
    /// Attention norm `[d]`.
    pub attn_norm: NormWeights,
    /// Query projection `[q_dim, d]`.
    pub wq: Linear,
    /// Key projection `[kv_dim, d]`.
    pub wk: Linear,
    /// Value projection `[kv_dim, d]`.
    pub wv: Linear,
    /// RMSNorm weight of each query head `[head_dim]` (q/k norm only).
    pub q_norm: Option<Vec<f32>>,
    /// RMSNorm weight of each key head `[head_dim]` (q/k norm only).
    pub k_norm: Option<Vec<f32>>,
    /// Attention output projection `[d, q_dim]`.
    pub wo: Linear,
    /// Norm of the attention output `[d]` (post norms only).
    pub attn_post_norm: Option<NormWeights>,
    /// MLP norm `[d]`.
    pub mlp_norm: NormWeights,
    /// Norm of the MLP output `[d]` (post norms only).
    pub mlp_post_norm: Option<NormWeights>,
    /// Gate `[d_ff, d]` (SwiGLU and GeGLU).
    pub gate: Option<Linear>,
    /// Up projection `[d_ff, d]`.
    pub up: Linear,
    /// Down projection `[d, d_ff]`.
    pub down: Linear,
}

/// A model ready to run: options, tokenizer and weights over its storage.
/// Shareable between threads (`Sync`); each [`crate::Context`] holds its own state.
pub struct Model {
    storage: Storage,
    /// Hyper-parameters from the file.
    pub opts: ModelOptions,
    /// The file's tokenizer.
    pub tokenizer: Tokenizer,
    /// Token embedding `[vocab, d]`.
    pub tok_emb: WeightRef,
    /// Learned position table `[max_len, d]` (F32), if positions are learned.
    pub pos_emb: Option<WeightRef>,
    /// RoPE frequency factors `[head_dim/2]`, each dividing one inverse frequency.
    pub rope_freqs: Option<Vec<f32>>,
    /// Decoder blocks.
    pub layers: Vec<Layer>,
    /// Final norm.
    pub out_norm: NormWeights,
    /// Output projection `[vocab, d]` (the token embedding itself when tied).
    pub output: WeightRef,
    /// The dtype most matrices are stored in (for display).
    pub main_dtype: DType,
}

impl Model {
    /// Loads from a `'static` buffer (no copy if it is 64-byte aligned).
    pub fn from_static(bytes: &'static [u8]) -> Result<Model, Error> {
        if bytes.as_ptr() as usize % 64 == 0 {
            Model::from_storage(Storage::Static(bytes))
        } else {
            Model::from_storage(Storage::Owned(AlignedBuf::from_slice(bytes)))
        }
    }

    /// Loads from a caller's buffer, copying it once into aligned memory.
    pub fn from_bytes(bytes: &[u8]) -> Result<Model, Error> {
        Model::from_storage(Storage::Owned(AlignedBuf::from_slice(bytes)))
    }

    /// Memory-maps and loads the file at `path`.
    #[cfg(feature = "std")]
    pub fn load(path: &std::path::Path) -> Result<Model, Error> {
        let map = llm_format::mmap::MappedFile::open(path)?;
        Model::from_storage(Storage::Mapped(map))
    }

    /// The file's bytes.
    pub fn bytes(&self) -> &[u8] {
        self.storage.bytes()
    }

    /// Parses the file again (cheap: no weight is read), for inspection tools.
    pub fn file(&self) -> Result<LlmFile<'_>, Error> {
        Ok(LlmFile::parse(self.storage.bytes())?)
    }

    /// A matrix view of `w` for the kernels.
    pub fn matrix(&self, w: &WeightRef) -> Matrix<'_> {
        Matrix {
            dtype: w.dtype,
            layout: w.layout,
            data: &self.storage.bytes()[w.range.clone()],
            rows: w.rows,
            cols: w.cols,
        }
    }

    /// Writes token `id`'s embedding row into `out` (`[d]`).
    pub fn embed(&self, id: u32, out: &mut [f32]) -> Result<(), Error> {
        let id = id as usize;
        if id >= self.opts.vocab_size {
            return Err(Error::BadToken(id as u64, self.opts.vocab_size));
        }
        row_f32(self.storage.bytes(), &self.tok_emb, id, out);
        Ok(())
    }

    /// Adds the learned position row `pos` (F32, `[max_len, d]`) into `out` (`[d]`).
    pub(crate) fn add_pos_emb(&self, pos: usize, out: &mut [f32]) {
        if let Some(p) = &self.pos_emb {
            let d = out.len();
            let start = p.range.start + pos * d * 4;
            let row = &self.storage.bytes()[start..start + d * 4];
            for (o, c) in out.iter_mut().zip(row.chunks_exact(4)) {
                *o += f32::from_le_bytes([c[0], c[1], c[2], c[3]]);
            }
        }
    }

    fn from_storage(storage: Storage) -> Result<Model, Error> {
        let bytes = storage.bytes();
        let file = LlmFile::parse(bytes)?;
        let opts = file.options()?;
        file.check_layout(&opts)?;
        let tokenizer = Tokenizer::from_spec(&file.tokenizer()?)?;
        if tokenizer.vocab_size() != opts.vocab_size {
            return Err(Error::Invalid(format!(
                "tokenizer has {} tokens but vocab_size is {}",
                tokenizer.vocab_size(),
                opts.vocab_size
            )));
        }
        let base = bytes.as_ptr() as usize;
        let find = |slot: &TensorSlot| -> Result<llm_format::reader::Tensor<'_>, Error> {
            Ok(file
                .tensor(&slot.name)
                .ok_or_else(|| llm_format::FormatError::MissingTensor(slot.name.clone()))?)
        };
        let weight = |slot: &TensorSlot| -> Result<WeightRef, Error> {
            let t = find(slot)?;
            let start = t.data.as_ptr() as usize - base;
            let (rows, cols) = (slot.shape[0], slot.shape[1]);
            if t.dtype.is_quantized() && cols % 32 != 0 {
                return Err(Error::Invalid(format!(
                    "tensor '{}' is {} but its rows of {cols} are not whole blocks",
                    slot.name, t.dtype
                )));
            }
            Ok(WeightRef {
                dtype: t.dtype,
                layout: t.layout,
                range: start..start + t.data.len(),
                rows,
                cols,
            })
        };
        let vector =
            |slot: &TensorSlot| -> Result<Vec<f32>, Error> { Ok(find(slot)?.to_f32_vec()) };
        let norm = |s: &NormSlots| -> Result<NormWeights, Error> {
            Ok(NormWeights {
                w: vector(&s.weight)?,
                b: s.bias.as_ref().map(vector).transpose()?,
            })
        };
        let linear = |s: &LinearSlots| -> Result<Linear, Error> {
            Ok(Linear {
                w: weight(&s.weight)?,
                b: s.bias.as_ref().map(vector).transpose()?,
            })
        };
        let mut layers = Vec::with_capacity(opts.n_layers);
        for l in 0..opts.n_layers {
            let s = opts.layer(l);
            layers.push(Layer {
                attn_norm: norm(&s.attn_norm)?,
                wq: linear(&s.attn_q)?,
                wk: linear(&s.attn_k)?,
                wv: linear(&s.attn_v)?,
                q_norm: s.attn_q_norm.as_ref().map(vector).transpose()?,
                k_norm: s.attn_k_norm.as_ref().map(vector).transpose()?,
                wo: linear(&s.attn_out)?,
                attn_post_norm: s.attn_post_norm.as_ref().map(norm).transpose()?,
                mlp_norm: norm(&s.mlp_norm)?,
                mlp_post_norm: s.mlp_post_norm.as_ref().map(norm).transpose()?,
                gate: s.mlp_gate.as_ref().map(linear).transpose()?,
                up: linear(&s.mlp_up)?,
                down: linear(&s.mlp_down)?,
            });
        }
        let tok_emb = weight(&opts.tok_emb())?;
        let pos_emb = match opts.pos_emb() {
            Some(slot) => {
                let t = find(&slot)?;
                if t.layout != Layout::Rows {
                    return Err(Error::Invalid(format!(
                        "tensor '{}' is stored in layout {}; position rows must be plain rows",
                        slot.name,
                        t.layout.name()
                    )));
                }
                let start = t.data.as_ptr() as usize - base;
                Some(WeightRef {
                    dtype: DType::F32,
                    layout: Layout::Rows,
                    range: start..start + t.data.len(),
                    rows: opts.max_len,
                    cols: opts.d_model,
                })
            }
            None => None,
        };
        let output = match opts.output() {
            Some(slot) => weight(&slot)?,
            None => tok_emb.clone(),
        };
        let out_norm = norm(&opts.out_norm())?;
        let rope_freqs = opts.rope_freqs().as_ref().map(vector).transpose()?;
        if let Some(f) = &rope_freqs {
            if let Some(bad) = f.iter().find(|v| !(v.is_finite() && **v > 0.0)) {
                return Err(Error::Invalid(format!(
                    "tensor 'rope_freqs' holds {bad}, expected positive factors"
                )));
            }
        }
        let main_dtype = layers.first().map_or(tok_emb.dtype, |l| l.wq.w.dtype);
        drop(file);
        Ok(Model {
            storage,
            opts,
            tokenizer,
            tok_emb,
            pos_emb,
            rope_freqs,
            layers,
            out_norm,
            output,
            main_dtype,
        })
    }

    /// Bytes of matrix weights read per generated token (all matrices once, the
    /// embedding row aside): the numerator of generation's memory bandwidth.
    pub fn weight_bytes_per_token(&self) -> usize {
        let mut n = self.output.range.len();
        for l in &self.layers {
            for lin in [&l.wq, &l.wk, &l.wv, &l.wo, &l.up, &l.down] {
                n += lin.w.range.len();
            }
            if let Some(g) = &l.gate {
                n += g.w.range.len();
            }
        }
        n
    }
}

/// Dequantises row `r` of a `[rows, cols]` matrix into `out` (de-interleaving it
/// first when the matrix is not in plain rows).
fn row_f32(bytes: &[u8], w: &WeightRef, r: usize, out: &mut [f32]) {
    let row_bytes = w.range.len() / w.rows;
    let data = &bytes[w.range.clone()];
    let copy;
    let row = match w.layout {
        Layout::Rows => &data[r * row_bytes..(r + 1) * row_bytes],
        l => {
            copy = {
                let mut v = alloc::vec![0u8; row_bytes];
                llm_format::layout::rows_into(l, data, row_bytes, r, &mut v);
                v
            };
            &copy
        }
    };
    // The layout check guarantees the row is whole and the byte count matches.
    let ok = llm_format::quant::dequantize(w.dtype, row, out);
    debug_assert!(ok.is_some());
}

// A model is shared between contexts on several threads; it is read-only after load.
const _: fn() = || {
    fn assert_sync<T: Sync + Send>() {}
    assert_sync::<Model>();
};
