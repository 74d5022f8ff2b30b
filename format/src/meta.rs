//! Typed metadata values. The value types are GGUF's ([`ValueType`]), so GGUF metadata
//! maps one to one; strings borrow from the file when read. Their byte encoding is in
//! [`crate::gguf_value`].

use crate::error::FormatError;
pub use crate::gguf_value::ValueType;
use alloc::borrow::Cow;
use alloc::format;
use alloc::vec::Vec;

/// One metadata value. Arrays are homogeneous (one element type, checked on write
/// and on read) and may hold arrays, at most [`crate::gguf_value::MAX_ARRAY_DEPTH`] deep.
#[derive(Clone, Debug, PartialEq)]
pub enum Value<'a> {
    /// Type id 0.
    U8(u8),
    /// Type id 1.
    I8(i8),
    /// Type id 2.
    U16(u16),
    /// Type id 3.
    I16(i16),
    /// Type id 4.
    U32(u32),
    /// Type id 5.
    I32(i32),
    /// Type id 6.
    F32(f32),
    /// Type id 7 (one byte, 0 or 1).
    Bool(bool),
    /// Type id 8: UTF-8 text.
    Str(Cow<'a, str>),
    /// Type id 9: element type id, count, elements.
    Array(Vec<Value<'a>>),
    /// Type id 10.
    U64(u64),
    /// Type id 11.
    I64(i64),
    /// Type id 12.
    F64(f64),
}

impl<'a> Value<'a> {
    /// The GGUF value type.
    pub fn value_type(&self) -> ValueType {
        match self {
            Value::U8(_) => ValueType::U8,
            Value::I8(_) => ValueType::I8,
            Value::U16(_) => ValueType::U16,
            Value::I16(_) => ValueType::I16,
            Value::U32(_) => ValueType::U32,
            Value::I32(_) => ValueType::I32,
            Value::F32(_) => ValueType::F32,
            Value::Bool(_) => ValueType::Bool,
            Value::Str(_) => ValueType::String,
            Value::Array(_) => ValueType::Array,
            Value::U64(_) => ValueType::U64,
            Value::I64(_) => ValueType::I64,
            Value::F64(_) => ValueType::F64,
        }
    }

    /// The GGUF value-type id.
    pub fn type_id(&self) -> u32 {
        self.value_type().to_u32()
    }

    /// A short name of the type, for error messages.
    pub fn type_name(&self) -> &'static str {
        self.value_type().name()
    }

    /// Any integer type that fits in u64 and is not negative.
    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            Value::U8(v) => Some(v as u64),
            Value::U16(v) => Some(v as u64),
            Value::U32(v) => Some(v as u64),
            Value::U64(v) => Some(v),
            Value::I8(v) => u64::try_from(v).ok(),
            Value::I16(v) => u64::try_from(v).ok(),
            Value::I32(v) => u64::try_from(v).ok(),
            Value::I64(v) => u64::try_from(v).ok(),
            _ => None,
        }
    }

    /// Any integer type that fits in i64.
    pub fn as_i64(&self) -> Option<i64> {
        match *self {
            Value::I8(v) => Some(v as i64),
            Value::I16(v) => Some(v as i64),
            Value::I32(v) => Some(v as i64),
            Value::I64(v) => Some(v),
            _ => self.as_u64().and_then(|v| i64::try_from(v).ok()),
        }
    }

    /// F32 or F64 (narrowed).
    pub fn as_f32(&self) -> Option<f32> {
        match *self {
            Value::F32(v) => Some(v),
            Value::F64(v) => Some(v as f32),
            _ => None,
        }
    }

    /// Bool.
    pub fn as_bool(&self) -> Option<bool> {
        match *self {
            Value::Bool(v) => Some(v),
            _ => None,
        }
    }

    /// Str.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    /// Array.
    pub fn as_array(&self) -> Option<&[Value<'a>]> {
        match self {
            Value::Array(v) => Some(v),
            _ => None,
        }
    }

    /// A copy that owns its strings.
    pub fn into_owned(self) -> Value<'static> {
        match self {
            Value::Str(s) => Value::Str(Cow::Owned(s.into_owned())),
            Value::Array(v) => Value::Array(v.into_iter().map(Value::into_owned).collect()),
            Value::U8(v) => Value::U8(v),
            Value::I8(v) => Value::I8(v),
            Value::U16(v) => Value::U16(v),
            Value::I16(v) => Value::I16(v),
            Value::U32(v) => Value::U32(v),
            Value::I32(v) => Value::I32(v),
            Value::F32(v) => Value::F32(v),
            Value::Bool(v) => Value::Bool(v),
            Value::U64(v) => Value::U64(v),
            Value::I64(v) => Value::I64(v),
            Value::F64(v) => Value::F64(v),
        }
    }
}

impl From<&str> for Value<'static> {
    fn from(s: &str) -> Self {
        Value::Str(Cow::Owned(s.into()))
    }
}

/// Reads typed values out of a key → value lookup, naming the key in each error.
pub struct MetaReader<'m, 'a> {
    src: Source<'m, 'a>,
}

/// Where a [`MetaReader`] looks keys up.
enum Source<'m, 'a> {
    Lookup(&'m dyn Fn(&str) -> Option<&'m Value<'a>>),
    Entries(&'m [(&'a str, Value<'a>)]),
}

impl<'m, 'a> MetaReader<'m, 'a> {
    /// Wraps a lookup function (for example `|k| file.get(k)`).
    pub fn new(get: &'m dyn Fn(&str) -> Option<&'m Value<'a>>) -> Self {
        MetaReader {
            src: Source::Lookup(get),
        }
    }

    /// Reads from a list of entries (as [`crate::LlmFile::metadata`] returns); the
    /// first entry with a key wins.
    pub fn from_entries(entries: &'m [(&'a str, Value<'a>)]) -> Self {
        MetaReader {
            src: Source::Entries(entries),
        }
    }

    /// The raw value, if present.
    pub fn get(&self, key: &str) -> Option<&'m Value<'a>> {
        match self.src {
            Source::Lookup(f) => f(key),
            Source::Entries(e) => e.iter().find(|(k, _)| *k == key).map(|(_, v)| v),
        }
    }

    fn req(&self, key: &str) -> Result<&'m Value<'a>, FormatError> {
        self.get(key)
            .ok_or_else(|| FormatError::MissingKey(key.into()))
    }

    fn wrong(key: &str, want: &str, v: &Value<'_>) -> FormatError {
        FormatError::Invalid(format!(
            "metadata key '{key}' should be {want}, found {}",
            v.type_name()
        ))
    }

    /// A required non-negative integer that fits `usize`.
    pub fn usize(&self, key: &str) -> Result<usize, FormatError> {
        let v = self.req(key)?;
        v.as_u64()
            .and_then(|x| usize::try_from(x).ok())
            .ok_or_else(|| Self::wrong(key, "a non-negative integer", v))
    }

    /// A required float.
    pub fn f32(&self, key: &str) -> Result<f32, FormatError> {
        let v = self.req(key)?;
        v.as_f32().ok_or_else(|| Self::wrong(key, "a float", v))
    }

    /// A required bool.
    pub fn bool(&self, key: &str) -> Result<bool, FormatError> {
        let v = self.req(key)?;
        v.as_bool().ok_or_else(|| Self::wrong(key, "a bool", v))
    }

    /// A required string.
    pub fn str(&self, key: &str) -> Result<&'m str, FormatError> {
        let v = self.req(key)?;
        v.as_str().ok_or_else(|| Self::wrong(key, "a string", v))
    }

    /// An optional token id: absent or negative means none.
    pub fn opt_id(&self, key: &str) -> Result<Option<u32>, FormatError> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => match v.as_i64() {
                Some(x) if x < 0 => Ok(None),
                Some(x) => u32::try_from(x)
                    .map(Some)
                    .map_err(|_| Self::wrong(key, "a token id", v)),
                None => Err(Self::wrong(key, "an integer", v)),
            },
        }
    }

    /// A required array.
    pub fn array(&self, key: &str) -> Result<&'m [Value<'a>], FormatError> {
        let v = self.req(key)?;
        v.as_array().ok_or_else(|| Self::wrong(key, "an array", v))
    }
}
