//! The on-disk CUBIN cache: a compiled kernel file is stored under
//! `$LLMRT_CUBIN_CACHE` or `$XDG_CACHE_HOME/llmrt/cubin` (default `~/.cache/llmrt/cubin`)
//! as `<hash>.cubin`, the hash covering NVRTC's version, the options (architecture,
//! variant macros, headers) and the full source, so any change compiles afresh.

use crate::error::CudaError;
use std::io::Write;
use std::path::PathBuf;
use xxhash_rust::xxh3::xxh3_128;

/// Environment variable overriding the cache folder.
pub const CACHE_ENV: &str = "LLMRT_CUBIN_CACHE";

/// The cache folder, or `None` when no home or cache folder is known.
pub fn dir() -> Option<PathBuf> {
    if let Some(d) = std::env::var_os(CACHE_ENV) {
        return Some(PathBuf::from(d));
    }
    let base = match std::env::var_os("XDG_CACHE_HOME") {
        Some(x) if !x.is_empty() => PathBuf::from(x),
        _ => PathBuf::from(std::env::var_os("HOME")?).join(".cache"),
    };
    Some(base.join("llmrt").join("cubin"))
}

/// The cache key of one compilation (32 hex digits).
pub fn key(nvrtc_version: (i32, i32), options: &[String], source: &str) -> String {
    let mut text = format!("nvrtc {}.{}\n", nvrtc_version.0, nvrtc_version.1);
    for o in options {
        text.push_str(o);
        text.push('\n');
    }
    text.push_str(source);
    format!("{:032x}", xxh3_128(text.as_bytes()))
}

/// The cached CUBIN for `key`, if there is one.
pub fn load(key: &str) -> Option<Vec<u8>> {
    let data = std::fs::read(dir()?.join(format!("{key}.cubin"))).ok()?;
    // A truncated or foreign file is not trusted: CUBINs are ELF images.
    data.starts_with(b"\x7fELF").then_some(data)
}

/// Stores `cubin` under `key`, atomically (temporary file, then rename).
pub fn store(key: &str, cubin: &[u8]) -> Result<(), CudaError> {
    let dir = dir().ok_or_else(|| CudaError::Cache("no cache folder (HOME unset)".into()))?;
    let err = |e: std::io::Error| CudaError::Cache(format!("{}: {e}", dir.display()));
    std::fs::create_dir_all(&dir).map_err(err)?;
    let tmp = dir.join(format!("{key}.{}.tmp", std::process::id()));
    let mut f = std::fs::File::create(&tmp).map_err(err)?;
    f.write_all(cubin).map_err(err)?;
    f.sync_all().map_err(err)?;
    std::fs::rename(&tmp, dir.join(format!("{key}.cubin"))).map_err(err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_changes_with_every_input() {
        let o = vec!["--gpu-architecture=sm_80".to_string()];
        let k = key((13, 0), &o, "a");
        assert_eq!(k.len(), 32);
        assert_eq!(k, key((13, 0), &o, "a"));
        assert_ne!(k, key((13, 1), &o, "a"));
        assert_ne!(k, key((13, 0), &o, "b"));
        assert_ne!(
            k,
            key((13, 0), &["--gpu-architecture=sm_90".to_string()], "a")
        );
    }
}
