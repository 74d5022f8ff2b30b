//! The zero-copy reader: [`LlmFile::parse`] checks a whole `.llm` buffer (SPEC.md §7)
//! and keeps borrowed views into it. Nothing proportional to the weights is copied or
//! allocated; allocations proportional to a count happen only after the count has been
//! bounded by the bytes that are left.

use crate::dtype::DType;
use crate::error::FormatError;
use crate::gguf_value::ValueReader;
use crate::header::{
    self, align_up, Header, ALIGN, FLAG_LAYOUTS, HEADER_LEN, MAX_DIMS, MAX_NAME_LEN,
};
use crate::layout::Layout;
use crate::meta::{MetaReader, Value};
use crate::options::{ModelOptions, TokenizerSpec};
use alloc::collections::BTreeMap;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use nom::number::complete::{le_u32, le_u64};

pub use crate::tensor::{Tensor, TensorInfo};

/// Smallest encoding of one metadata entry: key length, one-byte key, type, u8 value.
const MIN_META_ENTRY: u64 = 8 + 1 + 4 + 1;
/// Smallest encoding of one directory entry: name length, one-byte name, dtype, ndim,
/// one dim, offset, size, checksum.
const MIN_DIR_ENTRY: u64 = 8 + 1 + 4 + 4 + 8 + 8 + 8 + 8;

type NomErr<'a> = nom::error::Error<&'a [u8]>;

/// A cursor over one section of the file; each read names the field for the error.
struct Cursor<'a> {
    /// The file up to the end of the section, to turn positions into absolute offsets.
    head: &'a [u8],
    rest: &'a [u8],
}

impl<'a> Cursor<'a> {
    fn pos(&self) -> u64 {
        (self.head.len() - self.rest.len()) as u64
    }

    /// A metadata value (type id and payload) through the shared GGUF value codec.
    fn meta_value(&mut self, key: &str) -> Result<Value<'a>, FormatError> {
        let mut r = ValueReader::new(self.head, self.pos() as usize);
        let v = r.typed_value(key)?;
        self.rest = &self.head[r.pos()..];
        Ok(v)
    }

    fn run<O>(
        &mut self,
        what: &'static str,
        p: impl FnOnce(&'a [u8]) -> nom::IResult<&'a [u8], O, NomErr<'a>>,
    ) -> Result<O, FormatError> {
        let offset = self.pos();
        match p(self.rest) {
            Ok((rest, o)) => {
                self.rest = rest;
                Ok(o)
            }
            Err(_) => Err(FormatError::Truncated { what, offset }),
        }
    }

    fn u32(&mut self, what: &'static str) -> Result<u32, FormatError> {
        self.run(what, le_u32)
    }

    fn u64(&mut self, what: &'static str) -> Result<u64, FormatError> {
        self.run(what, le_u64)
    }

    fn take(&mut self, n: u64, what: &'static str) -> Result<&'a [u8], FormatError> {
        let offset = self.pos();
        let n = usize::try_from(n)
            .ok()
            .filter(|&n| n <= self.rest.len())
            .ok_or(FormatError::Truncated { what, offset })?;
        self.run(what, nom::bytes::complete::take(n))
    }

    /// A u64 length, then that many UTF-8 bytes.
    fn str(&mut self, what: &'static str) -> Result<&'a str, FormatError> {
        let len = self.u64(what)?;
        let at = self.pos();
        let b = self.take(len, what)?;
        core::str::from_utf8(b)
            .map_err(|_| FormatError::Invalid(format!("{what} at byte {at} is not valid UTF-8")))
    }

    fn bound(&self, n: u64, min_size: u64, what: &str, at: u64) -> Result<usize, FormatError> {
        let left = self.rest.len() as u64;
        match n.checked_mul(min_size) {
            Some(need) if need <= left => Ok(n as usize),
            _ => Err(FormatError::Invalid(format!(
                "{what} {n} at byte {at} is larger than the {left} bytes left could hold"
            ))),
        }
    }
}

/// A parsed and checked `.llm` file, borrowing everything from the caller's buffer.
#[derive(Clone, Debug)]
pub struct LlmFile<'a> {
    bytes: &'a [u8],
    header: Header,
    meta: Vec<(&'a str, Value<'a>)>,
    meta_index: BTreeMap<&'a str, usize>,
    tensors: Vec<TensorInfo<'a>>,
    tensor_index: BTreeMap<&'a str, usize>,
}

impl<'a> LlmFile<'a> {
    /// Parses and checks `bytes` (SPEC.md §7): magic, version, header checksum, every
    /// count, offset, length and shape against the buffer. Tensor checksums are not
    /// checked here (see [`LlmFile::verify_all`]).
    pub fn parse(bytes: &'a [u8]) -> Result<LlmFile<'a>, FormatError> {
        let header = Header::parse(bytes)?;
        let len = bytes.len() as u64;

        // 1. The checksum over header + metadata + directory, before trusting any count.
        let cs_off = header.checksum_offset;
        if cs_off < HEADER_LEN {
            return Err(FormatError::Invalid(format!(
                "header checksum offset {cs_off} lies inside the header"
            )));
        }
        let cs_end = cs_off
            .checked_add(8)
            .filter(|&e| e <= len)
            .ok_or(FormatError::Truncated {
                what: "header checksum",
                offset: cs_off,
            })?;
        let stored = read_u64(bytes, cs_off);
        let covered = bytes.get(..cs_off as usize).unwrap_or_default();
        if header::checksum(covered) != stored {
            return Err(FormatError::Checksum(
                "header, metadata and directory".into(),
            ));
        }

        // 2. The data section: where the header says, exactly to the end of the file.
        let want_data = align_up(cs_end).ok_or_else(|| overflow("data offset"))?;
        if header.data_offset != want_data {
            return Err(FormatError::Invalid(format!(
                "data offset {} should be {want_data} (checksum end rounded up to {ALIGN})",
                header.data_offset
            )));
        }
        let data_end = want_data
            .checked_add(header.data_size)
            .ok_or_else(|| overflow("data section size"))?;
        if data_end > len {
            return Err(FormatError::Truncated {
                what: "data section",
                offset: want_data.min(len),
            });
        }
        if data_end < len {
            return Err(FormatError::Invalid(format!(
                "{} trailing bytes after the data section",
                len - data_end
            )));
        }
        if let Some(b) = bytes[cs_end as usize..want_data as usize]
            .iter()
            .position(|&b| b != 0)
        {
            return Err(FormatError::Invalid(format!(
                "padding byte at {} before the data section is not zero",
                cs_end + b as u64
            )));
        }

        // 3. Metadata and directory, inside [HEADER_LEN, cs_off).
        let mut c = Cursor {
            head: &bytes[..cs_off as usize],
            rest: &bytes[HEADER_LEN as usize..cs_off as usize],
        };
        let n_meta = c.bound(header.n_meta, MIN_META_ENTRY, "metadata count", 16)?;
        let mut meta = Vec::with_capacity(n_meta);
        let mut meta_index = BTreeMap::new();
        for _ in 0..n_meta {
            let at = c.pos();
            let key = name(&mut c, "metadata key", at)?;
            let v = c.meta_value(key)?;
            if meta_index.insert(key, meta.len()).is_some() {
                return Err(FormatError::Invalid(format!(
                    "metadata key '{key}' appears twice"
                )));
            }
            meta.push((key, v));
        }

        let n_tensors = c.bound(header.n_tensors, MIN_DIR_ENTRY, "tensor count", 24)?;
        let data = &bytes[want_data as usize..];
        let mut tensors: Vec<TensorInfo<'a>> = Vec::with_capacity(n_tensors);
        let mut tensor_index = BTreeMap::new();
        let mut end = 0u64; // end of the previous tensor, relative to the data section
        for _ in 0..n_tensors {
            let t = dir_entry(&mut c, header.flags & FLAG_LAYOUTS != 0)?;
            check_placement(&t, end, data)?;
            end = t.offset + t.size; // no overflow: checked against data.len()
            if tensor_index.insert(t.name, tensors.len()).is_some() {
                return Err(FormatError::Invalid(format!(
                    "tensor '{}' appears twice in the directory",
                    t.name
                )));
            }
            tensors.push(t);
        }
        if !c.rest.is_empty() {
            return Err(FormatError::Invalid(format!(
                "directory ends at byte {} but the checksum is at byte {cs_off}",
                c.pos()
            )));
        }
        if end != header.data_size {
            return Err(FormatError::Invalid(format!(
                "data section is {} bytes but its last tensor ends at {end}",
                header.data_size
            )));
        }
        Ok(LlmFile {
            bytes,
            header,
            meta,
            meta_index,
            tensors,
            tensor_index,
        })
    }

    /// The container version.
    pub fn version(&self) -> u32 {
        self.header.version
    }

    /// The whole file buffer.
    pub fn bytes(&self) -> &'a [u8] {
        self.bytes
    }

    /// Absolute byte offset of the data section (a multiple of 64).
    pub fn data_offset(&self) -> u64 {
        self.header.data_offset
    }

    /// Metadata entries in file order.
    pub fn metadata(&self) -> &[(&'a str, Value<'a>)] {
        &self.meta
    }

    /// The value of metadata key `key`.
    pub fn get(&self, key: &str) -> Option<&Value<'a>> {
        self.meta_index.get(key).map(|&i| &self.meta[i].1)
    }

    /// Typed access to the metadata, naming the key in each error.
    pub fn meta_reader(&self) -> MetaReader<'_, 'a> {
        MetaReader::from_entries(&self.meta)
    }

    /// The model options, read and validated.
    pub fn options(&self) -> Result<ModelOptions, FormatError> {
        ModelOptions::from_meta(&self.meta_reader())
    }

    /// The tokenizer, read and checked; its strings borrow from the file.
    pub fn tokenizer(&self) -> Result<TokenizerSpec<'a>, FormatError> {
        TokenizerSpec::from_meta(&self.meta_reader())
    }

    /// The tensor directory in file order.
    pub fn tensors(&self) -> &[TensorInfo<'a>] {
        &self.tensors
    }

    fn view(&self, t: &TensorInfo<'a>) -> Tensor<'a> {
        // Ranges were checked at parse; the fallback keeps this panic-free regardless.
        let start = self.header.data_offset + t.offset;
        let data = self
            .bytes
            .get(start as usize..(start + t.size) as usize)
            .unwrap_or_default();
        Tensor {
            name: t.name,
            dtype: t.dtype,
            layout: t.layout,
            shape: t.shape.clone(),
            data,
        }
    }

    /// The tensor called `name`.
    pub fn tensor(&self, name: &str) -> Option<Tensor<'a>> {
        let i = *self.tensor_index.get(name)?;
        Some(self.view(&self.tensors[i]))
    }

    /// The tensor called `name`, which must have `shape` and (unless `allowed` is
    /// empty) one of the dtypes in `allowed`. The error names the tensor and the mismatch.
    pub fn require(
        &self,
        name: &str,
        allowed: &[DType],
        shape: &[usize],
    ) -> Result<Tensor<'a>, FormatError> {
        let t = self
            .tensor(name)
            .ok_or_else(|| FormatError::MissingTensor(name.into()))?;
        if t.shape != shape {
            return Err(FormatError::Invalid(format!(
                "tensor '{name}' has shape {:?}, expected {shape:?}",
                t.shape
            )));
        }
        if !allowed.is_empty() && !allowed.contains(&t.dtype) {
            let names: Vec<&str> = allowed.iter().map(|d| d.name()).collect();
            return Err(FormatError::Invalid(format!(
                "tensor '{name}' has dtype {}, expected {}",
                t.dtype,
                names.join(" or ")
            )));
        }
        Ok(t)
    }

    /// Checks that every tensor of `opts.tensor_layout()` is present with its shape,
    /// that the non-matrix slots (norms, biases, position tables) are F32, and that the
    /// file holds no other tensor: a tensor the options do not use (a fifth layer when
    /// `llm.n_layers` says 4) means the metadata and the tensors disagree.
    pub fn check_layout(&self, opts: &ModelOptions) -> Result<(), FormatError> {
        // Every layer has tensors of its own: refuse a layer count the file cannot hold
        // before building a layout of that size (a small file claiming 2^28 layers).
        if opts.n_layers > self.tensors.len() {
            return Err(FormatError::Invalid(format!(
                "llm.n_layers = {} but the file holds only {} tensors: metadata and tensors disagree",
                opts.n_layers,
                self.tensors.len()
            )));
        }
        let layout = opts.tensor_layout();
        for slot in &layout {
            let allowed: &[DType] = if slot.matrix { &[] } else { &[DType::F32] };
            self.require(&slot.name, allowed, &slot.shape)?;
        }
        if self.tensors.len() != layout.len() {
            let unused = self
                .tensors
                .iter()
                .find(|t| !layout.iter().any(|s| s.name == t.name))
                .map_or("?", |t| t.name);
            return Err(FormatError::Invalid(format!(
                "tensor '{unused}' is not used by the model the metadata describes \
                 ({} tensors in the file, {} expected; llm.n_layers = {}): metadata and \
                 tensors disagree",
                self.tensors.len(),
                layout.len(),
                opts.n_layers
            )));
        }
        Ok(())
    }

    /// Checks the xxh3-64 checksum of tensor `name`.
    pub fn verify_tensor(&self, name: &str) -> Result<(), FormatError> {
        let i = *self
            .tensor_index
            .get(name)
            .ok_or_else(|| FormatError::MissingTensor(name.into()))?;
        let info = &self.tensors[i];
        if header::checksum(self.view(info).data) != info.checksum {
            return Err(FormatError::Checksum(format!("tensor '{name}'")));
        }
        Ok(())
    }

    /// Checks every tensor's checksum; the error names the first bad tensor.
    pub fn verify_all(&self) -> Result<(), FormatError> {
        self.tensors
            .iter()
            .try_for_each(|t| self.verify_tensor(t.name))
    }
}

fn overflow(what: &str) -> FormatError {
    FormatError::Invalid(format!("{what} overflows"))
}

/// Reads the u64 at `at`; the caller has checked the range.
fn read_u64(bytes: &[u8], at: u64) -> u64 {
    let mut b = [0u8; 8];
    if let Some(s) = bytes.get(at as usize..at as usize + 8) {
        b.copy_from_slice(s);
    }
    u64::from_le_bytes(b)
}

/// A key or tensor name: non-empty UTF-8 of at most `MAX_NAME_LEN` bytes.
fn name<'a>(c: &mut Cursor<'a>, what: &'static str, at: u64) -> Result<&'a str, FormatError> {
    let s = c.str(what)?;
    if s.is_empty() || s.len() as u64 > MAX_NAME_LEN {
        return Err(FormatError::Invalid(format!(
            "{what} at byte {at} is {} bytes long (must be 1..={MAX_NAME_LEN})",
            s.len()
        )));
    }
    Ok(s)
}

/// One directory entry, with its shape and byte length checked against its dtype.
/// With `layouts` (header flag [`FLAG_LAYOUTS`]) the entry has a layout id after the
/// dtype, checked to be known and to fit the dtype and shape.
fn dir_entry<'a>(c: &mut Cursor<'a>, layouts: bool) -> Result<TensorInfo<'a>, FormatError> {
    let at = c.pos();
    let name = name(c, "tensor name", at)?;
    let dtype = DType::from_u32(c.u32("tensor dtype")?)?;
    let layout = if layouts {
        let id = c.u32("tensor layout")?;
        Layout::from_u32(id).ok_or_else(|| {
            FormatError::Invalid(format!("tensor '{name}' has unknown layout id {id}"))
        })?
    } else {
        Layout::Rows
    };
    let ndim = c.u32("tensor ndim")?;
    if ndim == 0 || ndim > MAX_DIMS {
        return Err(FormatError::Invalid(format!(
            "tensor '{name}' has {ndim} dimensions (must be 1..={MAX_DIMS})"
        )));
    }
    let mut dims = [0u64; MAX_DIMS as usize];
    for d in dims.iter_mut().take(ndim as usize) {
        *d = c.u64("tensor dimension")?;
    }
    let dims = &dims[..ndim as usize];
    let offset = c.u64("tensor offset")?;
    let size = c.u64("tensor size")?;
    let checksum = c.u64("tensor checksum")?;

    let bad = |m: String| Err(FormatError::Invalid(format!("tensor '{name}': {m}")));
    if dims.contains(&0) {
        return bad(format!("shape {dims:?} has a zero dimension"));
    }
    let Some(n) = dims.iter().try_fold(1u64, |a, &d| a.checked_mul(d)) else {
        return bad(format!("shape {dims:?} overflows"));
    };
    let mut shape = Vec::with_capacity(dims.len());
    for &d in dims {
        match usize::try_from(d) {
            Ok(d) => shape.push(d),
            Err(_) => return bad(format!("dimension {d} does not fit this machine")),
        }
    }
    if usize::try_from(n).is_err() {
        return bad(format!(
            "shape {dims:?} has too many elements for this machine"
        ));
    }
    let last = dims[dims.len() - 1];
    if dtype.is_quantized() && last % dtype.block_len() as u64 != 0 {
        return bad(format!(
            "{dtype} needs the last dimension to be a multiple of {}, shape is {dims:?}",
            dtype.block_len()
        ));
    }
    let Some(want) = dtype.bytes_for(n) else {
        return bad(format!("{dtype} shape {dims:?} overflows in bytes"));
    };
    if size != want {
        return bad(format!(
            "{dtype} shape {dims:?} takes {want} bytes but the directory says {size}"
        ));
    }
    if let Some(why) = layout.unfit(dtype, &shape) {
        return bad(why);
    }
    Ok(TensorInfo {
        name,
        dtype,
        layout,
        shape,
        offset,
        size,
        checksum,
    })
}

/// Checks that `t` starts at the first 64-byte boundary at or after `prev_end` (so
/// tensors are in order, aligned, without overlap) and ends inside `data`, and that
/// the padding before it is zero.
fn check_placement(t: &TensorInfo<'_>, prev_end: u64, data: &[u8]) -> Result<(), FormatError> {
    let bad = |m: String| Err(FormatError::Invalid(format!("tensor '{}': {m}", t.name)));
    if t.offset % ALIGN != 0 {
        return bad(format!("offset {} is not a multiple of {ALIGN}", t.offset));
    }
    match t.offset.checked_add(t.size) {
        Some(end) if end <= data.len() as u64 => {}
        _ => {
            return bad(format!(
                "bytes {}+{} run past the end of the {}-byte data section",
                t.offset,
                t.size,
                data.len()
            ))
        }
    }
    if t.offset < prev_end {
        return bad(format!(
            "offset {} overlaps the previous tensor, which ends at {prev_end}",
            t.offset
        ));
    }
    let want = align_up(prev_end).ok_or_else(|| overflow("tensor offset"))?;
    if t.offset != want {
        return bad(format!(
            "offset {} should be {want} (tensors are packed in directory order)",
            t.offset
        ));
    }
    // prev_end <= offset <= data.len() was checked above.
    let pad = data
        .get(prev_end as usize..t.offset as usize)
        .unwrap_or_default();
    if pad.iter().any(|&b| b != 0) {
        return bad(format!("padding before offset {} is not zero", t.offset));
    }
    Ok(())
}
