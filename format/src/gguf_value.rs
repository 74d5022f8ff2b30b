//! The one codec for GGUF-typed metadata values, shared by the `.llm` reader and
//! writer and by the trainer's GGUF importer: the value-type ids ([`ValueType`]), a
//! decoder over a byte buffer ([`ValueReader`]) and the encoder ([`write_value`]).
//!
//! Encoding (GGUF's, SPEC.md §4): little-endian scalars; a string is a u64 byte length
//! and UTF-8 bytes; an array is a u32 element type, a u64 count and that many payloads
//! of the element type without per-element type ids. Arrays may hold arrays (GGUF
//! allows it; llama.cpp's files use at most one level), up to [`MAX_ARRAY_DEPTH`]
//! arrays deep. Every error is a [`FormatError`] that names the metadata key.

use crate::error::FormatError;
use crate::meta::Value;
use alloc::borrow::Cow;
use alloc::format;
use alloc::vec::Vec;

/// How many arrays may nest, the outermost counted: 3 allows an array of arrays of
/// arrays of scalars.
pub const MAX_ARRAY_DEPTH: usize = 3;

/// A GGUF metadata value-type id.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(u32)]
pub enum ValueType {
    /// 1 byte.
    U8 = 0,
    /// 1 byte.
    I8 = 1,
    /// 2 bytes.
    U16 = 2,
    /// 2 bytes.
    I16 = 3,
    /// 4 bytes.
    U32 = 4,
    /// 4 bytes.
    I32 = 5,
    /// 4 bytes, IEEE 754.
    F32 = 6,
    /// 1 byte, 0 or 1.
    Bool = 7,
    /// u64 length, UTF-8 bytes.
    String = 8,
    /// u32 element type, u64 count, payloads.
    Array = 9,
    /// 8 bytes.
    U64 = 10,
    /// 8 bytes.
    I64 = 11,
    /// 8 bytes, IEEE 754.
    F64 = 12,
}

impl ValueType {
    /// Every type, in id order.
    pub const ALL: [ValueType; 13] = [
        ValueType::U8,
        ValueType::I8,
        ValueType::U16,
        ValueType::I16,
        ValueType::U32,
        ValueType::I32,
        ValueType::F32,
        ValueType::Bool,
        ValueType::String,
        ValueType::Array,
        ValueType::U64,
        ValueType::I64,
        ValueType::F64,
    ];

    /// The type with id `id`, if there is one.
    pub fn from_u32(id: u32) -> Option<ValueType> {
        ValueType::ALL.get(id as usize).copied()
    }

    /// The id.
    pub fn to_u32(self) -> u32 {
        self as u32
    }

    /// A short name, for error messages.
    pub fn name(self) -> &'static str {
        match self {
            ValueType::U8 => "u8",
            ValueType::I8 => "i8",
            ValueType::U16 => "u16",
            ValueType::I16 => "i16",
            ValueType::U32 => "u32",
            ValueType::I32 => "i32",
            ValueType::F32 => "f32",
            ValueType::Bool => "bool",
            ValueType::String => "string",
            ValueType::Array => "array",
            ValueType::U64 => "u64",
            ValueType::I64 => "i64",
            ValueType::F64 => "f64",
        }
    }

    /// The fewest bytes one value of this type takes (a string's length field, an
    /// array's element type and count), which bounds an array's count by the bytes left.
    pub fn min_size(self) -> u64 {
        match self {
            ValueType::U8 | ValueType::I8 | ValueType::Bool => 1,
            ValueType::U16 | ValueType::I16 => 2,
            ValueType::U32 | ValueType::I32 | ValueType::F32 => 4,
            ValueType::String | ValueType::U64 | ValueType::I64 | ValueType::F64 => 8,
            ValueType::Array => 4 + 8,
        }
    }
}

/// Reads values from a buffer. Positions are offsets into the buffer, so a caller
/// that passes the whole file (or a prefix of it) gets file offsets in its errors.
#[derive(Clone, Debug)]
pub struct ValueReader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> ValueReader<'a> {
    /// A reader of `buf` starting at offset `pos` (clamped to the end).
    pub fn new(buf: &'a [u8], pos: usize) -> Self {
        ValueReader {
            buf,
            pos: pos.min(buf.len()),
        }
    }

    /// The offset of the next read.
    pub fn pos(&self) -> usize {
        self.pos
    }

    /// A u32 value-type id, then a value of that type (one metadata entry after its key).
    pub fn typed_value(&mut self, key: &str) -> Result<Value<'a>, FormatError> {
        let at = self.pos;
        let id = u32::from_le_bytes(self.array(key, "value type")?);
        let ty = ValueType::from_u32(id).ok_or_else(|| {
            FormatError::Invalid(format!(
                "metadata key '{key}': unknown value type {id} at byte {at}"
            ))
        })?;
        self.value(key, ty)
    }

    /// One value of type `ty`.
    pub fn value(&mut self, key: &str, ty: ValueType) -> Result<Value<'a>, FormatError> {
        self.value_at(key, ty, 0)
    }

    /// A value inside `depth` arrays.
    fn value_at(
        &mut self,
        key: &str,
        ty: ValueType,
        depth: usize,
    ) -> Result<Value<'a>, FormatError> {
        const W: &str = "metadata value";
        Ok(match ty {
            ValueType::U8 => Value::U8(self.array::<1>(key, W)?[0]),
            ValueType::I8 => Value::I8(self.array::<1>(key, W)?[0] as i8),
            ValueType::U16 => Value::U16(u16::from_le_bytes(self.array(key, W)?)),
            ValueType::I16 => Value::I16(i16::from_le_bytes(self.array(key, W)?)),
            ValueType::U32 => Value::U32(u32::from_le_bytes(self.array(key, W)?)),
            ValueType::I32 => Value::I32(i32::from_le_bytes(self.array(key, W)?)),
            ValueType::F32 => Value::F32(f32::from_le_bytes(self.array(key, W)?)),
            ValueType::U64 => Value::U64(u64::from_le_bytes(self.array(key, W)?)),
            ValueType::I64 => Value::I64(i64::from_le_bytes(self.array(key, W)?)),
            ValueType::F64 => Value::F64(f64::from_le_bytes(self.array(key, W)?)),
            ValueType::Bool => {
                let at = self.pos;
                match self.array::<1>(key, W)?[0] {
                    0 => Value::Bool(false),
                    1 => Value::Bool(true),
                    b => {
                        return Err(FormatError::Invalid(format!(
                            "metadata key '{key}': bool value at byte {at} is {b}, must be 0 or 1"
                        )))
                    }
                }
            }
            ValueType::String => Value::Str(Cow::Borrowed(self.str(key, "metadata string")?)),
            ValueType::Array => {
                let at = self.pos;
                if depth >= MAX_ARRAY_DEPTH {
                    return Err(FormatError::Invalid(format!(
                        "metadata key '{key}': array at byte {at} has arrays nested more than \
                         {MAX_ARRAY_DEPTH} deep"
                    )));
                }
                let id = u32::from_le_bytes(self.array(key, "array element type")?);
                let elem = ValueType::from_u32(id).ok_or_else(|| {
                    FormatError::Invalid(format!(
                        "metadata key '{key}': array at byte {at} has element type {id}, \
                         which is not a value type"
                    ))
                })?;
                let n = self.count(key, elem)?;
                let mut v = Vec::with_capacity(n);
                for _ in 0..n {
                    v.push(self.value_at(key, elem, depth + 1)?);
                }
                Value::Array(v)
            }
        })
    }

    /// A u64 length, then that many UTF-8 bytes.
    pub fn str(&mut self, key: &str, what: &'static str) -> Result<&'a str, FormatError> {
        let len = u64::from_le_bytes(self.array(key, what)?);
        let at = self.pos;
        let b = self.take(key, len, what)?;
        core::str::from_utf8(b).map_err(|_| {
            FormatError::Invalid(format!(
                "metadata key '{key}': {what} at byte {at} is not valid UTF-8"
            ))
        })
    }

    /// An array's u64 count, bounded by the bytes left (each element takes at least
    /// `elem.min_size()` bytes), so that `Vec::with_capacity(count)` is safe.
    fn count(&mut self, key: &str, elem: ValueType) -> Result<usize, FormatError> {
        let at = self.pos;
        let n = u64::from_le_bytes(self.array(key, "array length")?);
        let left = (self.buf.len() - self.pos) as u64;
        match n.checked_mul(elem.min_size()) {
            Some(need) if need <= left => Ok(n as usize),
            _ => Err(FormatError::Invalid(format!(
                "metadata key '{key}': array length {n} at byte {at} is larger than the \
                 {left} bytes left could hold"
            ))),
        }
    }

    fn truncated(&self, key: &str, what: &str) -> FormatError {
        FormatError::Invalid(format!(
            "metadata key '{key}': file truncated: {what} at byte {} runs past the end",
            self.pos
        ))
    }

    fn take(&mut self, key: &str, n: u64, what: &str) -> Result<&'a [u8], FormatError> {
        let left = self.buf.len() - self.pos;
        let n = usize::try_from(n)
            .ok()
            .filter(|&n| n <= left)
            .ok_or_else(|| self.truncated(key, what))?;
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    fn array<const N: usize>(&mut self, key: &str, what: &str) -> Result<[u8; N], FormatError> {
        let s = self.take(key, N as u64, what)?;
        let mut a = [0u8; N];
        a.copy_from_slice(s);
        Ok(a)
    }
}

/// Appends `v`'s type id and payload.
pub fn write_typed_value(out: &mut Vec<u8>, key: &str, v: &Value<'_>) -> Result<(), FormatError> {
    out.extend_from_slice(&v.type_id().to_le_bytes());
    write_value(out, key, v)
}

/// Appends `v`'s payload (the caller writes its type id). An array's elements must all
/// have one type (arrays inside it may differ in theirs) and arrays may nest at most
/// [`MAX_ARRAY_DEPTH`] deep; an empty array is written with element type u8.
pub fn write_value(out: &mut Vec<u8>, key: &str, v: &Value<'_>) -> Result<(), FormatError> {
    write_at(out, key, v, 0)
}

fn write_at(out: &mut Vec<u8>, key: &str, v: &Value<'_>, depth: usize) -> Result<(), FormatError> {
    match v {
        Value::U8(x) => out.push(*x),
        Value::I8(x) => out.push(*x as u8),
        Value::U16(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::I16(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::U32(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::I32(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::F32(x) => out.extend_from_slice(&x.to_bits().to_le_bytes()),
        Value::Bool(x) => out.push(*x as u8),
        Value::Str(s) => write_str(out, s),
        Value::U64(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::I64(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::F64(x) => out.extend_from_slice(&x.to_bits().to_le_bytes()),
        Value::Array(items) => {
            if depth >= MAX_ARRAY_DEPTH {
                return Err(FormatError::Invalid(format!(
                    "metadata key '{key}': arrays nested more than {MAX_ARRAY_DEPTH} deep"
                )));
            }
            let elem = items.first().map_or(ValueType::U8, |e| e.value_type());
            if let Some(e) = items.iter().find(|e| e.value_type() != elem) {
                return Err(FormatError::Invalid(format!(
                    "metadata key '{key}': array mixes {} and {}",
                    elem.name(),
                    e.type_name()
                )));
            }
            out.extend_from_slice(&elem.to_u32().to_le_bytes());
            out.extend_from_slice(&(items.len() as u64).to_le_bytes());
            for e in items {
                write_at(out, key, e, depth + 1)?;
            }
        }
    }
    Ok(())
}

/// Appends a u64 length and the bytes of `s`.
pub fn write_str(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u64).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;
    use alloc::vec;

    #[test]
    fn ids_and_names_round_trip() {
        for (i, t) in ValueType::ALL.iter().enumerate() {
            assert_eq!(t.to_u32(), i as u32);
            assert_eq!(ValueType::from_u32(i as u32), Some(*t));
        }
        assert_eq!(ValueType::from_u32(13), None);
        assert_eq!(ValueType::String.name(), "string");
    }

    #[test]
    fn nested_arrays_round_trip_up_to_the_limit() {
        let leaf = Value::Array(vec![Value::U16(7), Value::U16(9)]);
        let two = Value::Array(vec![leaf.clone(), Value::Array(vec![Value::from("x")])]);
        let three = Value::Array(vec![two.clone(), Value::Array(vec![])]);
        for v in [leaf, two, three.clone()] {
            let mut b = Vec::new();
            write_typed_value(&mut b, "k", &v).unwrap();
            let mut r = ValueReader::new(&b, 0);
            assert_eq!(r.typed_value("k").unwrap(), v);
            assert_eq!(r.pos(), b.len());
        }
        let four = Value::Array(vec![three]);
        let e = write_typed_value(&mut Vec::new(), "k", &four).unwrap_err();
        assert!(e.to_string().contains("'k'") && e.to_string().contains("nested"));
    }

    #[test]
    fn too_deep_arrays_are_refused_on_read() {
        // Four arrays deep, each holding one element.
        let mut b = Vec::new();
        b.extend_from_slice(&9u32.to_le_bytes());
        for _ in 0..4 {
            b.extend_from_slice(&9u32.to_le_bytes());
            b.extend_from_slice(&1u64.to_le_bytes());
        }
        b.extend_from_slice(&[0; 16]);
        let e = ValueReader::new(&b, 0).typed_value("deep").unwrap_err();
        assert!(e.to_string().contains("'deep'") && e.to_string().contains("nested"));
    }
}
