//! Generates the C header from `src/` with cbindgen into `$OUT_DIR/llmrt.h`. The
//! checked-in `include/llmrt.h` is compared with it by a test (`header_is_current`);
//! `LLMRT_WRITE_HEADER=1 cargo build -p libllmrt` (or `make -C ffi header`) rewrites it.

use std::path::PathBuf;

/// The ABI part of the shared library's name, as ffi/Makefile computes it: the major
/// version, or `0.MINOR` while the major version is 0 (whose minor versions break the
/// ABI; see `LLMRT_VERSION_NUMBER`).
fn abi_version() -> String {
    let major = std::env::var("CARGO_PKG_VERSION_MAJOR").unwrap_or_else(|_| "0".into());
    let minor = std::env::var("CARGO_PKG_VERSION_MINOR").unwrap_or_else(|_| "0".into());
    if major == "0" {
        format!("0.{minor}")
    } else {
        major
    }
}

fn main() {
    // ELF platforms: the SONAME `libllmrt.so.ABI`, so programs record that name and a
    // package can install several ABIs side by side (`make -C ffi install` adds the links).
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    if matches!(
        os.as_str(),
        "linux" | "freebsd" | "netbsd" | "openbsd" | "android"
    ) {
        println!(
            "cargo:rustc-cdylib-link-arg=-Wl,-soname,libllmrt.so.{}",
            abi_version()
        );
    }
    let dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| ".".into()));
    let out = PathBuf::from(std::env::var("OUT_DIR").unwrap_or_else(|_| ".".into()));
    println!("cargo:rerun-if-changed=src");
    println!("cargo:rerun-if-changed=cbindgen.toml");
    println!("cargo:rerun-if-env-changed=LLMRT_WRITE_HEADER");
    let config = match cbindgen::Config::from_file(dir.join("cbindgen.toml")) {
        Ok(c) => c,
        Err(e) => panic!("ffi/cbindgen.toml: {e}"),
    };
    let bindings = match cbindgen::Builder::new()
        .with_crate(&dir)
        .with_config(config)
        .generate()
    {
        Ok(b) => b,
        Err(e) => panic!("cbindgen could not generate llmrt.h: {e}"),
    };
    bindings.write_to_file(out.join("llmrt.h"));
    if std::env::var_os("LLMRT_WRITE_HEADER").is_some_and(|v| v == "1") {
        bindings.write_to_file(dir.join("include").join("llmrt.h"));
    }
}
