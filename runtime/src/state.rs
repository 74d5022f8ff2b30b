//! Saving and restoring a [`Context`]'s state (with `std`): the tokens evaluated so
//! far, the logits of the last one and the KV cache rows, so that a conversation can
//! stop and go on later exactly where it was.
//!
//! The file, little-endian:
//!
//! | bytes | field |
//! |---|---|
//! | 8 | magic `LLMKVST\0` |
//! | 4 | version (1) |
//! | 8 | the model's identity: the `.llm` file's header checksum, which covers its metadata and every tensor's checksum |
//! | 4 | cache type ([`CacheType::code`]) |
//! | 4 × 3 | layers, KV heads, head size |
//! | 4 | vocabulary size |
//! | 8 | n, the tokens evaluated |
//! | 4 × n | the tokens |
//! | 4 × vocab | the logits of the last token (n > 0 only) |
//! | per layer | the keys then the values of positions `0..n`, KV head by KV head, in the cache type (f32, f16 bits, or q8_0 blocks as `d` bits then 32 quants) |
//! | 8 | xxh3-64 of everything before |
//!
//! Loading checks each field against the context and the checksum before it changes
//! anything, and says in one line what does not match.

use crate::context::Context;
use crate::error::Error;
use crate::kv_cache::CacheType;
use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use std::io::{Read, Write};

/// The first bytes of a state file.
pub const MAGIC: [u8; 8] = *b"LLMKVST\0";
/// The version this runtime writes and reads.
pub const VERSION: u32 = 1;

fn io(what: &str, e: std::io::Error) -> Error {
    Error::Invalid(format!("state: {what}: {e}"))
}

/// The model's identity: the checksum its file's header stores (over the header,
/// the metadata and the tensor directory with every tensor's checksum).
fn model_id(ctx: &Context) -> Result<u64, Error> {
    let bytes = ctx.model().bytes();
    let h = llm_format::header::Header::parse(bytes)?;
    let at = h.checksum_offset as usize;
    let b = bytes
        .get(at..at + 8)
        .ok_or_else(|| Error::Invalid("the model file's header checksum is missing".into()))?;
    let mut w = [0u8; 8];
    w.copy_from_slice(b);
    Ok(u64::from_le_bytes(w))
}

/// The fixed fields after the magic: version, identity, cache type, shape, vocabulary.
struct Head {
    version: u32,
    model: u64,
    cache: u32,
    layers: u32,
    kv_heads: u32,
    head_dim: u32,
    vocab: u32,
}

impl Head {
    fn of(ctx: &Context) -> Result<Head, Error> {
        let o = &ctx.model().opts;
        Ok(Head {
            version: VERSION,
            model: model_id(ctx)?,
            cache: ctx.kv_cache().cache_type().code(),
            layers: o.n_layers as u32,
            kv_heads: o.n_kv_heads as u32,
            head_dim: o.head_dim() as u32,
            vocab: o.vocab_size as u32,
        })
    }
}

impl Context {
    /// Writes the state (see the module documentation) to `w`: sequence 0's, which
    /// is all of it when the other sequences are empty.
    ///
    /// # Errors
    /// [`Error::Invalid`] naming the failed write, or when a sequence other than 0
    /// holds tokens (a state file holds one sequence).
    pub fn save_state<W: Write + ?Sized>(&self, w: &mut W) -> Result<(), Error> {
        if let Some(s) =
            (1..self.n_seq()).find(|&s| self.seq_tokens(s).is_ok_and(|t| !t.is_empty()))
        {
            return Err(Error::Invalid(format!(
                "state: sequence {s} holds tokens; a state file holds sequence 0 only \
                 (remove the other sequences first)"
            )));
        }
        let h = Head::of(self)?;
        let n = self.tokens().len();
        let mut b = Vec::new();
        b.extend_from_slice(&MAGIC);
        b.extend_from_slice(&h.version.to_le_bytes());
        b.extend_from_slice(&h.model.to_le_bytes());
        for v in [h.cache, h.layers, h.kv_heads, h.head_dim, h.vocab] {
            b.extend_from_slice(&v.to_le_bytes());
        }
        b.extend_from_slice(&(n as u64).to_le_bytes());
        for t in self.tokens() {
            b.extend_from_slice(&t.to_le_bytes());
        }
        if n > 0 {
            for x in self.logits() {
                b.extend_from_slice(&x.to_le_bytes());
            }
        }
        for l in 0..h.layers as usize {
            for values in [false, true] {
                self.kv_cache().put_rows(l, values, n, &mut b);
            }
        }
        let sum = llm_format::header::checksum(&b);
        b.extend_from_slice(&sum.to_le_bytes());
        w.write_all(&b)
            .and_then(|_| w.flush())
            .map_err(|e| io("write failed", e))
    }

    /// Restores a state that [`Context::save_state`] wrote, from a context over the
    /// same model with the same cache type and room for its tokens (in one sequence),
    /// into sequence 0; the other sequences are emptied. On any error the context is
    /// unchanged.
    ///
    /// # Errors
    /// [`Error::Invalid`] with a one-line reason (not a state file, another version,
    /// another model or cache type, too many tokens for the context, truncated or
    /// corrupt), or [`Error::NoMemory`] if the cache cannot grow to hold it.
    pub fn load_state<R: Read + ?Sized>(&mut self, r: &mut R) -> Result<(), Error> {
        let mut b = Vec::new();
        r.read_to_end(&mut b).map_err(|e| io("read failed", e))?;
        let bad = |m: String| Error::Invalid(format!("state: {m}"));
        let short = || bad("the file is truncated".into());
        if b.len() < 8 || b[..8] != MAGIC {
            return Err(bad("not a state file (bad magic)".into()));
        }
        let mut at = 8;
        let mut take = |k: usize| -> Result<&[u8], Error> {
            let s = b.get(at..at + k).ok_or_else(short)?;
            at += k;
            Ok(s)
        };
        let u32_ = |s: &[u8]| u32::from_le_bytes([s[0], s[1], s[2], s[3]]);
        let u64_ = |s: &[u8]| {
            let mut w = [0u8; 8];
            w.copy_from_slice(s);
            u64::from_le_bytes(w)
        };
        let version = u32_(take(4)?);
        if version != VERSION {
            return Err(bad(format!(
                "version {version}, this runtime reads version {VERSION}"
            )));
        }
        let model = u64_(take(8)?);
        let mut f = [0u32; 5];
        for v in &mut f {
            *v = u32_(take(4)?);
        }
        let [cache, layers, kv_heads, head_dim, vocab] = f;
        let n = u64_(take(8)?);
        let want = Head::of(self)?;
        if model != want.model {
            return Err(bad(format!(
                "saved from another model (id {model:016x}, this one is {:016x})",
                want.model
            )));
        }
        if (layers, kv_heads, head_dim, vocab)
            != (want.layers, want.kv_heads, want.head_dim, want.vocab)
        {
            return Err(bad("the model's shape differs from the saved one".into()));
        }
        if cache != want.cache {
            let name = |c| CacheType::from_code(c).map_or("unknown", CacheType::name);
            return Err(bad(format!(
                "the cache type is {}, this context's is {}",
                name(cache),
                name(want.cache)
            )));
        }
        if n > self.n_ctx() as u64 {
            return Err(bad(format!(
                "{n} tokens do not fit in the context of {} tokens",
                self.n_ctx()
            )));
        }
        let n = n as usize;
        // Everything else has a known size: check it and the checksum before reading on.
        let ty = self.kv_cache().cache_type();
        let rows = kv_heads as usize * n * ty.row_bytes(head_dim as usize);
        let logits = if n > 0 { 4 * vocab as usize } else { 0 };
        let body = 4 * n + logits + 2 * layers as usize * rows;
        if b.len() != at + body + 8 {
            return Err(if b.len() < at + body + 8 {
                short()
            } else {
                bad("the file has bytes past its end".into())
            });
        }
        let (data, sum) = b.split_at(at + body);
        if llm_format::header::checksum(data) != u64_(sum) {
            return Err(bad("checksum mismatch: the file is corrupt".into()));
        }
        let tokens: Vec<u32> = b[at..at + 4 * n].chunks_exact(4).map(u32_).collect();
        if let Some(&t) = tokens.iter().find(|&&t| t >= vocab) {
            return Err(Error::BadToken(t as u64, vocab as usize));
        }
        let (logits, cache) = b[at + 4 * n..at + body].split_at(logits);
        self.restore(&tokens, logits, cache, rows)
    }

    /// [`Context::save_state`] into the file `path`, written atomically (a crash
    /// leaves the old file or the whole new one).
    pub fn save_state_file(&self, path: &std::path::Path) -> Result<(), Error> {
        llm_format::atomic::write_atomic(path, &mut |w| {
            self.save_state(w)
                .map_err(|e| llm_format::FormatError::Io(e.to_string()))
        })?;
        Ok(())
    }

    /// [`Context::load_state`] from the file `path`.
    pub fn load_state_file(&mut self, path: &std::path::Path) -> Result<(), Error> {
        let mut f = std::fs::File::open(path)
            .map_err(|e| Error::Invalid(format!("{}: {e}", path.display())))?;
        self.load_state(&mut f).map_err(|e| match e {
            Error::Invalid(m) => Error::Invalid(format!("{}: {m}", path.display())),
            other => other,
        })
    }
}
