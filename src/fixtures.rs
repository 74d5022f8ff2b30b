//! Random models written as `.llm` bytes, for tests and benches.

use crate::rng::Rng;
use llm_format::{
    quant, DType, LlmWriter, Mlp, ModelOptions, Norm, Positions, TokenizerKind, TokenizerSpec,
};
use std::borrow::Cow;
use std::collections::HashMap;

/// A small model with the given options.
pub fn opts(
    positions: Positions,
    norm: Norm,
    mlp: Mlp,
    bias: bool,
    tied: bool,
    n_kv: usize,
) -> ModelOptions {
    ModelOptions {
        vocab_size: 61,
        d_model: 64,
        n_layers: 2,
        n_heads: 4,
        n_kv_heads: n_kv,
        d_ff: 96,
        max_len: 48,
        positions,
        norm,
        mlp,
        bias,
        tied_embeddings: tied,
        norm_eps: 1e-5,
        rope_base: 10000.0,
        arch: Default::default(),
    }
}

/// A char-level tokenizer over `vocab` printable characters.
pub fn char_tokenizer(vocab: usize) -> TokenizerSpec<'static> {
    char_tokenizer_of(
        (0..vocab)
            .map(|i| Cow::Owned(char::from_u32(0x21 + i as u32).expect("ascii").to_string()))
            .collect(),
    )
}

/// A char-level tokenizer over the pieces `tokens` (one character each), with no
/// special ids and no BOS/EOS added.
pub fn char_tokenizer_of(tokens: Vec<Cow<'static, str>>) -> TokenizerSpec<'static> {
    TokenizerSpec {
        kind: TokenizerKind::Char,
        tokens,
        scores: vec![],
        merges: vec![],
        bos: None,
        eos: None,
        unk: None,
        pad: None,
        add_bos: false,
        add_eos: false,
        token_types: Vec::new(),
        pre: None,
        add_space_prefix: true,
        lowercase: false,
        strip_accents: false,
    }
}

/// Random weights for every slot of the layout; norms near 1, the rest uniform.
pub fn random_weights(o: &ModelOptions, seed: u64) -> HashMap<String, Vec<f32>> {
    let mut rng = Rng::new(seed);
    o.tensor_layout()
        .into_iter()
        .map(|slot| {
            let n: usize = slot.shape.iter().product();
            let v = if slot.name == "rope_freqs" {
                // Divisors of the frequencies, as Llama 3's: 1 up to 8.
                (0..n).map(|_| 1.0 + 3.5 * (1.0 + rng.uniform())).collect()
            } else if slot.name.ends_with("norm.weight") {
                (0..n).map(|_| 1.0 + 0.2 * rng.uniform()).collect()
            } else if slot.matrix || slot.name == "pos_emb" {
                let fan_in = *slot.shape.last().expect("shape") as f32;
                rng.vec(n, 1.7 / fan_in.sqrt())
            } else {
                rng.vec(n, 0.1)
            };
            (slot.name, v)
        })
        .collect()
}

/// Writes the model with matrices in `dtype` and a char tokenizer, and returns the
/// file bytes and the weights as the file holds them (dequantised), for the reference.
pub fn write_model(
    o: &ModelOptions,
    w: &HashMap<String, Vec<f32>>,
    dtype: DType,
) -> (Vec<u8>, HashMap<String, Vec<f32>>) {
    write_model_with(o, &char_tokenizer(o.vocab_size), w, dtype)
}

/// [`write_model`] with the given tokenizer.
pub fn write_model_with(
    o: &ModelOptions,
    tok: &TokenizerSpec<'_>,
    w: &HashMap<String, Vec<f32>>,
    dtype: DType,
) -> (Vec<u8>, HashMap<String, Vec<f32>>) {
    let mut wr = LlmWriter::new();
    wr.extend_meta(o.to_meta());
    wr.extend_meta(tok.to_meta());
    let mut held = HashMap::new();
    for slot in o.tensor_layout() {
        let v = &w[&slot.name];
        let dt = if slot.matrix { dtype } else { DType::F32 };
        let bytes = quant::quantize(dt, v).expect("whole blocks");
        held.insert(
            slot.name.clone(),
            quant::dequantize_vec(dt, &bytes, v.len()).expect("size"),
        );
        wr.add_tensor(slot.name.clone(), dt, &slot.shape, bytes)
            .expect("valid tensor");
    }
    (wr.to_bytes().expect("serialise"), held)
}

/// Writes `bytes` to a fresh file under the system temp directory and returns its path.
pub fn temp_file(name: &str, bytes: &[u8]) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("llmrt-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let p = dir.join(name);
    std::fs::write(&p, bytes).expect("write temp file");
    p
}

/// Path of a binary of this workspace built in the same profile as the running
/// test, building it first with the same cargo if it is missing or stale.
pub fn workspace_bin(package: &str, bin: &str) -> std::path::PathBuf {
    let exe = std::env::current_exe().expect("test exe");
    let profile_dir = exe
        .parent()
        .and_then(|p| p.parent())
        .expect("target/<profile>/deps");
    let path = profile_dir.join(bin);
    // Build once per test process: later calls reuse the binary.
    static BUILT: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());
    let mut built = BUILT.lock().unwrap_or_else(|e| e.into_inner());
    if built.iter().any(|b| b == bin) {
        return path;
    }
    let release = profile_dir.file_name().is_some_and(|n| n == "release");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = std::process::Command::new(cargo);
    cmd.args(["build", "-q", "-p", package, "--bin", bin]);
    if release {
        cmd.arg("--release");
    }
    let status = cmd.status().expect("run cargo build");
    assert!(
        status.success(),
        "cargo build -p {package} --bin {bin} failed"
    );
    built.push(bin.to_string());
    path
}
