//! Dtype conversion of tensors and `llm-train quantize`: re-quantise an `.llm` file.
//!
//! Conversion goes through f32 (dequantise with the format crate's reference path,
//! then quantise with `llm_format::quant::quantize`), so the output blocks are the
//! deterministic ggml reference blocks for that f32 input. Only `matrix` slots of the
//! layout are converted to the requested dtype; norms, biases and position tables
//! stay f32. Quantised blocks run along the last (`in`) dimension, so a matrix whose
//! row length is not a multiple of the type's block (32 or 256) cannot be stored in it;
//! the K-quant mixtures fall back to a type that fits (`crate::recipe`).
//!
//! `--layout r16` then stores every matrix that the layout takes (F32, F16 and BF16
//! matrices of a multiple of 16 rows of whole 64-byte lines) as 16 rows interleaved
//! (`llm_format::layout`), the order the runtime's AVX-512 prompt kernels read, so
//! they read it through the memory map as it is instead of transposing each chunk.

use crate::import::{provenance, ImportError, RawTensor};
use crate::recipe::QuantPlan;
use llm_format::options::keys;
use llm_format::quant;
use llm_format::{DType, Layout, LlmFile, LlmWriter, MappedFile, ModelOptions, Value};
use std::path::Path;

/// Converts `t` to `target` in place. A tensor already in `target` is untouched (its
/// bytes stay identical). Errors name the tensor: a block dtype for a tensor whose
/// last dimension is not a multiple of 32, or bytes that do not match the shape.
pub fn convert_tensor(t: &mut RawTensor, target: DType) -> Result<(), ImportError> {
    if t.dtype == target {
        return Ok(());
    }
    let cols = t.shape.last().copied().unwrap_or(1);
    let bl = target.block_len();
    if cols % bl != 0 {
        return Err(ImportError::convert(
            &t.name,
            format!(
                "rows of {cols} values (shape {:?}) are not a multiple of {bl}: cannot store as {target}",
                t.shape
            ),
        ));
    }
    let n = t.numel();
    let x = quant::dequantize_vec(t.dtype, &t.data, n).ok_or_else(|| {
        ImportError::convert(
            &t.name,
            format!(
                "{} bytes do not hold {n} {} values (shape {:?})",
                t.data.len(),
                t.dtype,
                t.shape
            ),
        )
    })?;
    t.data = quant::quantize(target, &x).ok_or_else(|| {
        ImportError::convert(&t.name, format!("{n} values cannot be stored as {target}"))
    })?;
    t.dtype = target;
    Ok(())
}

/// Re-quantises a parsed `.llm` file: copies every metadata entry (provenance date
/// and tool refreshed, source kept), converts each `matrix` slot to `dtype` and
/// each other tensor to f32, in the file's layout order.
pub fn requantize(file: &LlmFile<'_>, plan: QuantPlan) -> Result<LlmWriter, ImportError> {
    let opts = file.options()?;
    // Verify the input before writing anything: a converter must not launder a
    // corrupt file into one whose checksums pass, nor carry over metadata that
    // contradicts the tensors.
    file.verify_all()?;
    file.check_layout(&opts)?;
    crate::import::check_tokenizer(&opts, &file.tokenizer()?, "input")?;
    let layout = opts.tensor_layout();
    let mut w = LlmWriter::new();
    let refreshed = [keys::PROV_DATE, keys::PROV_TOOL];
    for (k, v) in file.metadata() {
        if !refreshed.contains(k) {
            w.add_meta(k.to_string(), v.clone());
        }
    }
    let source = file
        .get(keys::PROV_SOURCE)
        .and_then(|v| v.as_str())
        .unwrap_or("unknown")
        .to_string();
    for (k, v) in provenance::entries(&source) {
        if k != keys::PROV_SOURCE {
            w.add_meta(k, v);
        }
    }
    if file.get(keys::PROV_SOURCE).is_none() {
        w.add_meta(keys::PROV_SOURCE, Value::from("unknown"));
    }
    for slot in &layout {
        let t = file
            .tensor(&slot.name)
            .ok_or_else(|| ImportError::convert(&slot.name, "missing from the input file"))?;
        let mut raw = RawTensor {
            name: slot.name.clone(),
            dtype: t.dtype,
            shape: t.shape.to_vec(),
            // Plain rows whatever the input's layout: conversion works on rows.
            data: t.rows_data().into_owned(),
        };
        let cols = slot.shape.last().copied().unwrap_or(1);
        let target = if slot.matrix {
            plan.dtype_for(&slot.name, cols, &opts)
        } else {
            DType::F32
        };
        convert_tensor(&mut raw, target)?;
        w.add_tensor(raw.name, raw.dtype, &raw.shape, raw.data)?;
    }
    Ok(w)
}

/// Stores every `matrix` slot of `opts`'s layout in `w` that `layout` takes in it
/// ([`Layout::unfit`]); the others stay as they are. Returns how many were stored
/// in `layout` and how many matrices could not be.
pub fn set_matrix_layouts(
    w: &mut LlmWriter,
    opts: &ModelOptions,
    layout: Layout,
) -> Result<(usize, usize), ImportError> {
    let (mut done, mut kept) = (0, 0);
    for slot in opts.tensor_layout().iter().filter(|s| s.matrix) {
        let Some((dtype, shape, _)) = w.tensor(&slot.name) else {
            continue;
        };
        if layout.unfit(dtype, shape).is_some() {
            kept += 1;
            continue;
        }
        w.set_layout(&slot.name, layout)?;
        done += 1;
    }
    Ok((done, kept))
}

/// `llm-train quantize --in A --out B [--dtype D] [--layout L]`: map `input`,
/// re-quantise (or, without a plan, keep every tensor's dtype), store the matrices
/// in `layout`, write `output` atomically. Returns what [`set_matrix_layouts`]
/// returns.
pub fn requantize_file(
    input: &Path,
    output: &Path,
    plan: Option<QuantPlan>,
    layout: Layout,
) -> Result<(usize, usize), ImportError> {
    // Both errors already name the path.
    let mapped = MappedFile::open(input)?;
    let file = mapped.parse()?;
    let malformed =
        |e: ImportError| ImportError::malformed(input.display().to_string(), e.to_string());
    let mut w = match plan {
        Some(plan) => requantize(&file, plan).map_err(malformed)?,
        None => {
            // As `requantize` does: nothing corrupt is rewritten with fresh checksums.
            file.verify_all().map_err(|e| malformed(e.into()))?;
            file.check_layout(&file.options()?)
                .map_err(|e| malformed(e.into()))?;
            LlmWriter::from_file(&file)
        }
    };
    let counts = set_matrix_layouts(&mut w, &file.options()?, layout).map_err(malformed)?;
    w.write_to(output)?;
    Ok(counts)
}

/// `llm-train quantize`: re-quantise the weight matrices of an `.llm` file.
#[derive(clap::Args, Debug)]
pub struct QuantizeArgs {
    /// Input `.llm` file.
    #[arg(long = "in")]
    pub input: std::path::PathBuf,
    /// Output `.llm` file (written atomically).
    #[arg(long)]
    pub out: std::path::PathBuf,
    /// Target dtype of the weight matrices (norms, biases, position tables stay f32),
    /// or a llama.cpp K-quant mixture (`q4_k_m`, `q5_k_m`, `q6_k`, ...). Without it,
    /// every tensor keeps its dtype (to change only the `--layout`).
    #[arg(long, value_parser = QuantPlan::parse)]
    pub dtype: Option<QuantPlan>,
    /// How the weight matrices' rows are stored: `rows` (plain, every reader), or
    /// `r16` (F32/F16/BF16 matrices as 16 rows interleaved, read as they are by the
    /// AVX-512 prompt kernels; other types and shapes stay `rows`).
    #[arg(long, default_value = "rows", value_parser = parse_layout)]
    pub layout: Layout,
}

/// A `--layout` argument: a name of [`Layout::ALL`].
pub(crate) fn parse_layout(s: &str) -> Result<Layout, String> {
    Layout::from_name(s).ok_or_else(|| {
        let names: Vec<_> = Layout::ALL.iter().map(|l| l.name()).collect();
        format!("unknown layout '{s}' (one of: {})", names.join(", "))
    })
}

/// Runs `llm-train quantize`.
pub fn run_quantize(a: QuantizeArgs) -> Result<(), Box<dyn std::error::Error>> {
    let (done, kept) = requantize_file(&a.input, &a.out, a.dtype, a.layout)?;
    let dtype = a.dtype.map_or("dtypes kept".to_string(), |p| p.to_string());
    match a.layout {
        Layout::Rows => eprintln!("wrote {} ({dtype})", a.out.display()),
        l => eprintln!(
            "wrote {} ({dtype}, {done} matrices in layout {}{})",
            a.out.display(),
            l.name(),
            if kept > 0 {
                format!(", {kept} left in rows: their dtype or shape does not fit it")
            } else {
                String::new()
            }
        ),
    }
    Ok(())
}
