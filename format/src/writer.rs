//! The writer: collects metadata and tensors in insertion order and lays them out as
//! SPEC.md describes. Output is a pure function of what was added, so
//! write → read → [`LlmWriter::from_file`] → write gives the same bytes.

use crate::dtype::DType;
use crate::error::FormatError;
use crate::gguf_value;
use crate::header::{
    self, align_up, Header, ALIGN, FLAG_LAYOUTS, HEADER_LEN, MAX_DIMS, MAX_NAME_LEN, VERSION,
};
use crate::layout::{self, Layout};
use crate::meta::Value;
use crate::quant;
use crate::reader::LlmFile;
use alloc::format;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;

/// A tensor waiting to be written.
#[derive(Clone, Debug, PartialEq)]
struct PendingTensor {
    name: String,
    dtype: DType,
    /// Arrangement of `data`'s rows.
    layout: Layout,
    shape: Vec<usize>,
    data: Vec<u8>,
    /// xxh3-64 of `data`, computed when added.
    checksum: u64,
}

/// Builds a `.llm` file: metadata and tensors are written in the order they were added.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LlmWriter {
    meta: Vec<(String, Value<'static>)>,
    tensors: Vec<PendingTensor>,
}

impl LlmWriter {
    /// An empty writer.
    pub fn new() -> Self {
        LlmWriter::default()
    }

    /// A writer holding a copy of everything in `file` (metadata and tensors, in file
    /// order), so a tool can change a few things and write it again.
    pub fn from_file(file: &LlmFile<'_>) -> Self {
        let mut w = LlmWriter::new();
        for (k, v) in file.metadata() {
            w.meta.push((String::from(*k), v.clone().into_owned()));
        }
        for info in file.tensors() {
            if let Some(t) = file.tensor(info.name) {
                w.tensors.push(PendingTensor {
                    name: info.name.into(),
                    dtype: info.dtype,
                    layout: info.layout,
                    shape: info.shape.clone(),
                    data: t.data.to_vec(),
                    checksum: header::checksum(t.data),
                });
            }
        }
        w
    }

    /// Sets metadata `key` to `value`. A key that is already there keeps its place and
    /// gets the new value. Values are checked by [`LlmWriter::to_bytes`].
    pub fn add_meta(&mut self, key: impl Into<String>, value: Value<'_>) {
        let key = key.into();
        let value = value.into_owned();
        match self.meta.iter_mut().find(|(k, _)| *k == key) {
            Some(slot) => slot.1 = value,
            None => self.meta.push((key, value)),
        }
    }

    /// [`LlmWriter::add_meta`] for each entry, e.g. `ModelOptions::to_meta()`.
    pub fn extend_meta<'v>(&mut self, entries: impl IntoIterator<Item = (String, Value<'v>)>) {
        for (k, v) in entries {
            self.add_meta(k, v);
        }
    }

    /// The value of metadata `key`.
    pub fn get_meta(&self, key: &str) -> Option<&Value<'static>> {
        self.meta.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    /// Removes metadata `key`; returns whether it was there.
    pub fn remove_meta(&mut self, key: &str) -> bool {
        let n = self.meta.len();
        self.meta.retain(|(k, _)| k != key);
        self.meta.len() != n
    }

    /// The metadata entries in write order.
    pub fn metadata(&self) -> &[(String, Value<'static>)] {
        &self.meta
    }

    /// Adds a tensor. `shape` is outermost first; `data` must hold exactly
    /// `dtype.bytes_for(product of shape)` bytes. Errors name the tensor: a duplicate
    /// name, 0 or more than 4 dimensions, a zero dimension, a quantised last dimension
    /// that is not a multiple of 32, or a byte length that disagrees.
    pub fn add_tensor(
        &mut self,
        name: impl Into<String>,
        dtype: DType,
        shape: &[usize],
        data: Vec<u8>,
    ) -> Result<(), FormatError> {
        let name = name.into();
        if self.tensors.iter().any(|t| t.name == name) {
            return Err(FormatError::Invalid(format!(
                "tensor '{name}' is added twice"
            )));
        }
        let t = check_tensor(name, dtype, shape, data)?;
        self.tensors.push(t);
        Ok(())
    }

    /// Quantises `x` (the scalar reference path) to `dtype` and adds it.
    pub fn add_tensor_f32(
        &mut self,
        name: impl Into<String>,
        dtype: DType,
        shape: &[usize],
        x: &[f32],
    ) -> Result<(), FormatError> {
        let name = name.into();
        let data = quantize_checked(&name, dtype, shape, x)?;
        self.add_tensor(name, dtype, shape, data)
    }

    /// Replaces tensor `name` in place (keeping its position), or adds it at the end
    /// if there is none. Same checks as [`LlmWriter::add_tensor`].
    pub fn set_tensor(
        &mut self,
        name: impl Into<String>,
        dtype: DType,
        shape: &[usize],
        data: Vec<u8>,
    ) -> Result<(), FormatError> {
        let name = name.into();
        let t = check_tensor(name, dtype, shape, data)?;
        match self.tensors.iter_mut().find(|p| p.name == t.name) {
            Some(slot) => *slot = t,
            None => self.tensors.push(t),
        }
        Ok(())
    }

    /// Stores tensor `name` (added in plain rows, or in another layout) in `layout`:
    /// its bytes are rearranged ([`crate::layout`]). Errors name the tensor: no such
    /// tensor, or one whose dtype or shape the layout does not take
    /// ([`Layout::unfit`]).
    pub fn set_layout(&mut self, name: &str, to: Layout) -> Result<(), FormatError> {
        let t = self
            .tensors
            .iter_mut()
            .find(|t| t.name == name)
            .ok_or_else(|| FormatError::MissingTensor(name.into()))?;
        if t.layout == to {
            return Ok(());
        }
        if let Some(why) = to.unfit(t.dtype, &t.shape) {
            return Err(FormatError::Invalid(format!("tensor '{name}': {why}")));
        }
        let cols = t.shape.last().copied().unwrap_or(1);
        let row_bytes = cols / t.dtype.block_len() * t.dtype.block_bytes();
        let rows = layout::to_rows(t.layout, &t.data, row_bytes);
        t.data = layout::from_rows(to, &rows, row_bytes);
        t.layout = to;
        t.checksum = header::checksum(&t.data);
        Ok(())
    }

    /// The layout of tensor `name`.
    pub fn layout(&self, name: &str) -> Option<Layout> {
        self.tensors
            .iter()
            .find(|t| t.name == name)
            .map(|t| t.layout)
    }

    /// Removes tensor `name`; returns whether it was there.
    pub fn remove_tensor(&mut self, name: &str) -> bool {
        let n = self.tensors.len();
        self.tensors.retain(|t| t.name != name);
        self.tensors.len() != n
    }

    /// Tensor `name` as (dtype, shape, bytes), the bytes in its [`LlmWriter::layout`].
    pub fn tensor(&self, name: &str) -> Option<(DType, &[usize], &[u8])> {
        self.tensors
            .iter()
            .find(|t| t.name == name)
            .map(|t| (t.dtype, t.shape.as_slice(), t.data.as_slice()))
    }

    /// Tensor names in write order.
    pub fn tensor_names(&self) -> impl Iterator<Item = &str> {
        self.tensors.iter().map(|t| t.name.as_str())
    }

    /// Everything before the data section (header, metadata, directory, checksum,
    /// zero padding), and the data section's length.
    fn head(&self) -> Result<(Vec<u8>, u64), FormatError> {
        let mut out = vec![0u8; HEADER_LEN as usize];
        let layouts = self.tensors.iter().any(|t| t.layout != Layout::Rows);
        for (k, v) in &self.meta {
            put_name(&mut out, k, "metadata key")?;
            gguf_value::write_typed_value(&mut out, k, v)?;
        }
        let mut end = 0u64;
        for t in &self.tensors {
            let offset =
                align_up(end).ok_or_else(|| FormatError::Invalid("file too large".into()))?;
            put_name(&mut out, &t.name, "tensor name")?;
            put_u32(&mut out, t.dtype.to_u32());
            if layouts {
                put_u32(&mut out, t.layout.to_u32());
            }
            put_u32(&mut out, t.shape.len() as u32);
            for &d in &t.shape {
                put_u64(&mut out, d as u64);
            }
            put_u64(&mut out, offset);
            put_u64(&mut out, t.data.len() as u64);
            put_u64(&mut out, t.checksum);
            end = offset + t.data.len() as u64;
        }
        let checksum_offset = out.len() as u64;
        let data_offset = align_up(checksum_offset + 8)
            .ok_or_else(|| FormatError::Invalid("file too large".into()))?;
        let h = Header {
            version: VERSION,
            flags: if layouts { FLAG_LAYOUTS } else { 0 },
            n_meta: self.meta.len() as u64,
            n_tensors: self.tensors.len() as u64,
            checksum_offset,
            data_offset,
            data_size: end,
        };
        out[..HEADER_LEN as usize].copy_from_slice(&h.to_bytes());
        let cs = header::checksum(&out);
        put_u64(&mut out, cs);
        out.resize(data_offset as usize, 0);
        Ok((out, end))
    }

    /// Calls `sink` with the file's bytes in order (head, then each tensor and its
    /// zero padding).
    fn emit(
        &self,
        sink: &mut dyn FnMut(&[u8]) -> Result<(), FormatError>,
    ) -> Result<(), FormatError> {
        let (head, _) = self.head()?;
        sink(&head)?;
        let zeros = [0u8; ALIGN as usize];
        let mut pos = 0u64;
        for t in &self.tensors {
            let pad = align_up(pos).unwrap_or(pos) - pos;
            sink(&zeros[..pad as usize])?;
            sink(&t.data)?;
            pos += pad + t.data.len() as u64;
        }
        Ok(())
    }

    /// The whole file in memory.
    pub fn to_bytes(&self) -> Result<Vec<u8>, FormatError> {
        let (head, data_size) = self.head()?;
        let total = usize::try_from(head.len() as u64 + data_size)
            .map_err(|_| FormatError::Invalid("file too large for memory".into()))?;
        let mut out = Vec::with_capacity(total);
        self.emit(&mut |b| {
            out.extend_from_slice(b);
            Ok(())
        })?;
        Ok(out)
    }

    /// Streams the file into `w` (no whole-file buffer).
    #[cfg(feature = "std")]
    pub fn write_into(&self, w: &mut dyn std::io::Write) -> Result<(), FormatError> {
        self.emit(&mut |b| {
            w.write_all(b)
                .map_err(|e| FormatError::Io(format!("write failed: {e}")))
        })
    }

    /// Writes the file to `path` atomically: a temporary file in the same directory is
    /// written, flushed to disk and renamed over `path`, then the directory is synced.
    /// Readers see either the old file or the whole new one.
    #[cfg(feature = "std")]
    pub fn write_to(&self, path: &std::path::Path) -> Result<(), FormatError> {
        crate::atomic::write_atomic(path, &mut |w| self.write_into(w))
    }
}

/// Checks a tensor's name, shape and byte length; computes its checksum.
fn check_tensor(
    name: String,
    dtype: DType,
    shape: &[usize],
    data: Vec<u8>,
) -> Result<PendingTensor, FormatError> {
    let bad = |m: String| Err(FormatError::Invalid(format!("tensor '{name}': {m}")));
    if name.is_empty() || name.len() as u64 > MAX_NAME_LEN {
        return bad(format!("name must be 1..={MAX_NAME_LEN} bytes"));
    }
    let n = elements(&name, dtype, shape)?;
    match dtype.bytes_for(n) {
        Some(want) if want == data.len() as u64 => {}
        Some(want) => {
            return bad(format!(
                "{dtype} shape {shape:?} takes {want} bytes, got {}",
                data.len()
            ))
        }
        None => return bad(format!("{dtype} shape {shape:?} overflows in bytes")),
    }
    if let Some(b) = crate::quant::first_bad_scale(dtype, &data) {
        return bad(format!(
            "{dtype} block {b} has a NaN or infinite scale (corrupt data)"
        ));
    }
    let checksum = header::checksum(&data);
    Ok(PendingTensor {
        name,
        dtype,
        layout: Layout::Rows,
        shape: shape.to_vec(),
        data,
        checksum,
    })
}

/// The element count of `shape`, after the shape rules of SPEC.md §5.
fn elements(name: &str, dtype: DType, shape: &[usize]) -> Result<u64, FormatError> {
    let bad = |m: String| Err(FormatError::Invalid(format!("tensor '{name}': {m}")));
    if shape.is_empty() || shape.len() > MAX_DIMS as usize {
        return bad(format!(
            "{} dimensions (must be 1..={MAX_DIMS})",
            shape.len()
        ));
    }
    if shape.contains(&0) {
        return bad(format!("shape {shape:?} has a zero dimension"));
    }
    let Some(n) = shape.iter().try_fold(1u64, |a, &d| a.checked_mul(d as u64)) else {
        return bad(format!("shape {shape:?} overflows"));
    };
    let last = shape[shape.len() - 1];
    if dtype.is_quantized() && last % dtype.block_len() != 0 {
        return bad(format!(
            "{dtype} needs the last dimension to be a multiple of {}, shape is {shape:?}",
            dtype.block_len()
        ));
    }
    Ok(n)
}

fn quantize_checked(
    name: &str,
    dtype: DType,
    shape: &[usize],
    x: &[f32],
) -> Result<Vec<u8>, FormatError> {
    let n = elements(name, dtype, shape)?;
    if n != x.len() as u64 {
        return Err(FormatError::Invalid(format!(
            "tensor '{name}': shape {shape:?} has {n} elements, got {} values",
            x.len()
        )));
    }
    quant::quantize(dtype, x)
        .ok_or_else(|| FormatError::Invalid(format!("tensor '{name}': cannot quantise to {dtype}")))
}

fn put_u32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_le_bytes());
}

fn put_u64(out: &mut Vec<u8>, v: u64) {
    out.extend_from_slice(&v.to_le_bytes());
}

fn put_name(out: &mut Vec<u8>, s: &str, what: &str) -> Result<(), FormatError> {
    if s.is_empty() || s.len() as u64 > MAX_NAME_LEN {
        return Err(FormatError::Invalid(format!(
            "{what} '{s}' must be 1..={MAX_NAME_LEN} bytes"
        )));
    }
    gguf_value::write_str(out, s);
    Ok(())
}
