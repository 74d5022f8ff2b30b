//! Generates the C header from `src/` with cbindgen into `$OUT_DIR/llmrt.h`. The
//! checked-in `include/llmrt.h` is compared with it by a test (`header_is_current`);
//! `LLMRT_WRITE_HEADER=1 cargo build -p libllmrt` (or `make -C ffi header`) rewrites it.

use std::path::PathBuf;

fn main() {
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
