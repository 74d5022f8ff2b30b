//! A model file is mapped, not read: loading a ~100 MB model touches only the
//! header, metadata, directory and the small norm vectors; the weight pages become
//! resident only when the forward pass reads them.

use llm_format::{DType, Mlp, Norm, Positions};
use llmrt::{Context, ContextParams, Model};
use llmrt_suite::fixtures::*;
use std::sync::Arc;

/// Resident bytes of this process's mappings of `path`, from /proc/self/smaps.
fn mapped_rss(path: &std::path::Path) -> Option<u64> {
    let smaps = std::fs::read_to_string("/proc/self/smaps").ok()?;
    let name = path.to_str()?;
    let (mut inside, mut total) = (false, 0u64);
    for line in smaps.lines() {
        let first = line.split_whitespace().next().unwrap_or("");
        if first.contains('-') && first.chars().all(|c| c.is_ascii_hexdigit() || c == '-') {
            inside = line.ends_with(name);
        } else if inside && first == "Rss:" {
            total += line.split_whitespace().nth(1)?.parse::<u64>().ok()? * 1024;
        }
    }
    Some(total)
}

#[test]
fn loading_maps_and_only_touched_pages_become_resident() {
    if !std::path::Path::new("/proc/self/smaps").exists() {
        eprintln!("skipped: no /proc/self/smaps on this system");
        return;
    }
    let mut o = opts(Positions::Rope, Norm::RmsNorm, Mlp::SwiGlu, false, true, 8);
    (
        o.vocab_size,
        o.d_model,
        o.n_layers,
        o.n_heads,
        o.d_ff,
        o.max_len,
    ) = (4096, 1024, 2, 8, 2816, 64);
    let w = random_weights(&o, llmrt_suite::rng::test_seed(1));
    let (bytes, _) = write_model(&o, &w, DType::F32);
    drop(w);
    let size = bytes.len() as u64;
    assert!(size > 95 << 20, "model is {size} bytes");
    let path = temp_file("big.llm", &bytes);
    drop(bytes);

    let t = std::time::Instant::now();
    let model = Arc::new(Model::load(&path).expect("load"));
    let load = t.elapsed();
    let loaded = mapped_rss(&path).expect("smaps");
    eprintln!(
        "load of {} MiB: {:.2} ms, {} KiB of the mapping resident",
        size >> 20,
        load.as_secs_f64() * 1e3,
        loaded >> 10
    );
    // Load reads the header, metadata, directory, the zero padding between tensors
    // and the norm vectors: a few KiB each, but the kernel maps whole folios around
    // each fault (up to 2 MiB on file systems with large folios, such as tmpfs), so
    // allow a quarter of the file.
    assert!(
        loaded < size / 4,
        "load made {loaded} of {size} bytes of the mapping resident"
    );

    // A forward pass reads every matrix: now the mapping is resident.
    let mut ctx = Context::new(model, &ContextParams::default()).expect("context");
    ctx.eval(&[1, 2, 3]).expect("eval");
    let used = mapped_rss(&path).expect("smaps");
    assert!(
        used > size * 8 / 10,
        "after a forward pass only {used} of {size} bytes are resident"
    );
    let _ = std::fs::remove_file(&path);
}
