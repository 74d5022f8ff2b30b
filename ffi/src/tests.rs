//! Unit tests of the boundary, calling the exported functions as C would.

#[test]
fn header_is_current() {
    let generated = include_str!(concat!(env!("OUT_DIR"), "/llmrt.h"));
    let checked_in = include_str!("../include/llmrt.h");
    assert!(
        generated == checked_in,
        "ffi/include/llmrt.h is stale: run `make -C ffi header` \
         (or LLMRT_WRITE_HEADER=1 cargo build -p libllmrt) and commit it"
    );
}
