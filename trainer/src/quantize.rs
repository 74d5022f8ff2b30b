//! Dtype conversion of tensors and `llm-train quantize`: re-quantise an `.llm` file.
//!
//! Conversion goes through f32 (dequantise with the format crate's reference path,
//! then quantise with `llm_format::quant::quantize`), so the output blocks are the
//! deterministic ggml reference blocks for that f32 input. Only `matrix` slots of the
//! layout are converted to the requested dtype; norms, biases and position tables
//! stay f32. Quantised blocks run along the last (`in`) dimension, so a matrix whose
//! row length is not a multiple of the type's block (32 or 256) cannot be stored in it;
//! the K-quant mixtures fall back to a type that fits (`crate::recipe`).

use crate::import::{provenance, ImportError, RawTensor};
use crate::recipe::QuantPlan;
use llm_format::options::keys;
use llm_format::quant;
use llm_format::{DType, LlmFile, LlmWriter, MappedFile, Value};
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
            data: t.data.to_vec(),
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

/// `llm-train quantize --in A --out B --dtype D`: map `input`, re-quantise, write
/// `output` atomically.
pub fn requantize_file(input: &Path, output: &Path, plan: QuantPlan) -> Result<(), ImportError> {
    // Both errors already name the path.
    let mapped = MappedFile::open(input)?;
    let file = mapped.parse()?;
    let w = requantize(&file, plan)
        .map_err(|e| ImportError::malformed(input.display().to_string(), e.to_string()))?;
    w.write_to(output)?;
    Ok(())
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
    /// or a llama.cpp K-quant mixture (`q4_k_m`, `q5_k_m`, `q6_k`, ...).
    #[arg(long, value_parser = QuantPlan::parse)]
    pub dtype: QuantPlan,
}

/// Runs `llm-train quantize`.
pub fn run_quantize(a: QuantizeArgs) -> Result<(), Box<dyn std::error::Error>> {
    requantize_file(&a.input, &a.out, a.dtype)?;
    eprintln!("wrote {} ({})", a.out.display(), a.dtype);
    Ok(())
}
