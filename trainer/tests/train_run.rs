//! End-to-end runs of the CPU trainer on a slice of the bundled corpus: resume is bit
//! exact, a crash while a checkpoint is written leaves the previous one loadable, the
//! loss goes down, divergence stops the run, and the exported file reproduces the
//! trainer's logits in the runtime.

use llm_train::checkpoint;
use llm_train::config::ConfigArgs;
use llm_train::train::{train, Metrics, TrainArgs};
use std::path::Path;
use std::process::Command;

mod run_util;
use run_util::{corpus, scratch};

/// A small model that still exercises dropout, shuffling and accumulation.
fn small(extra: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = [
        "d_model=32",
        "n_layers=2",
        "n_heads=4",
        "n_kv_heads=2",
        "max_len=16",
        "batch_size=4",
        "dropout=0.1",
        "shuffle=true",
        "grad_accum=2",
        "warmup_steps=2",
        "eval_interval=2",
        "eval_iters=2",
        "save_interval=1",
        "sample_len=0",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    v.extend(extra.iter().map(|s| s.to_string()));
    v
}

fn args(data: &Path, out: &Path, set: Vec<String>) -> TrainArgs {
    TrainArgs {
        config: ConfigArgs {
            preset: Some("tiny".into()),
            config: None,
            set,
        },
        data: vec![data.to_path_buf()],
        out: Some(out.to_path_buf()),
        quiet: true,
        export_dtype: "f32".into(),
        ..Default::default()
    }
}

fn metrics(run: &Path) -> Vec<Metrics> {
    std::fs::read_to_string(run.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn losses(m: &[Metrics]) -> Vec<(u64, u64, Option<u64>)> {
    m.iter()
        .map(|m| (m.step, m.train_loss.to_bits(), m.val_loss.map(f64::to_bits)))
        .collect()
}

#[test]
fn train_resume_is_bit_exact() {
    resume_is_bit_exact("epoch");
}

#[test]
fn train_resume_is_bit_exact_with_random_windows() {
    resume_is_bit_exact("random");
}

/// A run stopped after 2 of 4 steps and resumed logs the losses of an uninterrupted
/// one, bit for bit, and exports the same weights (`small` sets `shuffle=true`, the
/// old spelling of `epoch`; `mode` overrides it).
fn resume_is_bit_exact(mode: &str) {
    let d = scratch(&format!("resume-{mode}"));
    let data = corpus(&d);
    let set = small(&["max_steps=4", &format!("shuffle={mode}")]);
    let whole = train(&args(&data, &d.join("a"), set.clone())).unwrap();
    assert_eq!(whole.metrics.len(), 4);
    let mut first = args(&data, &d.join("b"), set.clone());
    first.stop_after = Some(2);
    assert_eq!(train(&first).unwrap().metrics.len(), 2);
    let mut rest = args(&data, &d.join("b"), Vec::new());
    rest.resume = true;
    train(&rest).unwrap();
    assert_eq!(
        losses(&metrics(&d.join("a"))),
        losses(&metrics(&d.join("b")))
    );
    let wa = std::fs::read(d.join("a/model.llm")).unwrap();
    let wb = std::fs::read(d.join("b/model.llm")).unwrap();
    let fa = llm_format::LlmFile::parse(&wa).unwrap();
    let fb = llm_format::LlmFile::parse(&wb).unwrap();
    for t in fa.tensors() {
        assert_eq!(
            fa.tensor(t.name).unwrap().data,
            fb.tensor(t.name).unwrap().data
        );
    }
}

#[test]
fn train_crash_during_checkpoint_write_keeps_previous() {
    let d = scratch("crash");
    let data = corpus(&d);
    let run = d.join("run");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_llm-train"));
    cmd.arg("train")
        .arg("--quiet")
        .arg("--data")
        .arg(&data)
        .arg("--out")
        .arg(&run);
    for s in small(&["max_steps=3"]) {
        cmd.arg("--set").arg(s);
    }
    // The process aborts half-way through writing the step-2 checkpoint.
    let out = cmd.env("LLM_TRAIN_CRASH_IN_SAVE", "2").output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("injected crash"));
    let ck = run.join("checkpoints");
    assert!(ck.join("ckpt_00000002.bin.tmp").exists());
    let (c, p) = checkpoint::load_latest(&ck).unwrap();
    assert_eq!((c.meta.step, p), (1, ck.join("ckpt_00000001.bin")));
    // Resuming finishes the run with the losses of an uninterrupted one.
    let mut rest = args(&data, &run, Vec::new());
    rest.resume = true;
    train(&rest).unwrap();
    let whole = d.join("whole");
    train(&args(&data, &whole, small(&["max_steps=3"]))).unwrap();
    assert_eq!(losses(&metrics(&run)), losses(&metrics(&whole)));
}

#[test]
fn train_loss_decreases_on_tiny_corpus() {
    let d = scratch("learn");
    let data = corpus(&d);
    let set = small(&[
        "max_steps=120",
        "lr=3e-3",
        "dropout=0",
        "save_interval=0",
        "eval_interval=0",
        "warmup_steps=10",
    ]);
    let mut a = args(&data, &d.join("run"), set);
    a.no_export = true;
    let out = train(&a).unwrap();
    let m = &out.metrics;
    let head: f64 = m[..5].iter().map(|x| x.train_loss).sum::<f64>() / 5.0;
    let tail: f64 = m[m.len() - 10..].iter().map(|x| x.train_loss).sum::<f64>() / 10.0;
    // Char-level: starts near ln(vocab) ≈ 4; 120 steps of a 2-layer model reach ~2.5.
    assert!(head > 3.5, "initial loss {head}");
    assert!(tail < head - 0.9, "loss went from {head} to {tail}");
    assert!(out.final_val_loss.unwrap() < head - 0.7);
}

#[test]
fn train_divergence_stops_with_advice() {
    let d = scratch("nan");
    let data = corpus(&d);
    let set = small(&[
        "max_steps=30",
        "lr=50",
        "grad_clip=0",
        "warmup_steps=0",
        "dropout=0",
    ]);
    let err = train(&args(&data, &d.join("run"), set)).unwrap_err();
    assert!(err.0.contains("Lower lr"), "{err}");
    assert!(err.0.contains("last good checkpoint"), "{err}");
}

#[test]
fn train_refuses_existing_run_and_bad_keys() {
    let d = scratch("refuse");
    let data = corpus(&d);
    train(&args(&data, &d.join("run"), small(&["max_steps=1"]))).unwrap();
    let err = train(&args(&data, &d.join("run"), small(&["max_steps=1"]))).unwrap_err();
    assert!(err.0.contains("--resume"), "{err}");
    let err = train(&args(&data, &d.join("x"), small(&["n_layer=1"]))).unwrap_err();
    assert!(err.0.contains("n_layer"), "{err}");
    // 10^8 sequences of 16 tokens need terabytes of activations: refused before allocating.
    let err = train(&args(&data, &d.join("y"), small(&["batch_size=100000000"]))).unwrap_err();
    assert!(err.0.contains("GiB are available"), "{err}");
}

#[test]
fn train_init_from_llm_continues_from_the_exported_weights() {
    let d = scratch("init");
    let data = corpus(&d);
    let set = small(&[
        "max_steps=60",
        "lr=3e-3",
        "dropout=0",
        "save_interval=0",
        "eval_interval=0",
    ]);
    let first = train(&args(&data, &d.join("a"), set)).unwrap();
    let model = first.model_path.unwrap();
    let mut a = args(&data, &d.join("b"), small(&["max_steps=1", "dropout=0"]));
    a.init_from = Some(format!("llm:{}", model.display()));
    a.no_export = true;
    let tuned = train(&a).unwrap();
    let fresh = first.metrics[0].train_loss;
    let trained = first.metrics.last().unwrap().train_loss;
    let start = tuned.metrics[0].train_loss;
    // The fine-tune starts where the first run ended, not from a fresh model.
    assert!(trained < fresh - 0.8, "{fresh} -> {trained}");
    assert!(
        (start - trained).abs() < 0.3,
        "fine-tune starts at {start}, run ended at {trained}"
    );
}

#[test]
fn train_init_from_with_a_longer_max_len_extends_the_context() {
    // Learned positions: the table grows; RoPE: rope_scale = 32/16 in the exported file.
    for (name, extra) in [
        ("learned", vec![]),
        (
            "rope",
            vec!["positions=rope", "norm=rmsnorm", "mlp=swiglu", "bias=false"],
        ),
    ] {
        let d = scratch(&format!("extend-{name}"));
        let data = corpus(&d);
        let mut set = extra.clone();
        set.extend(["max_steps=2", "save_interval=0", "eval_interval=0"]);
        let first = train(&args(&data, &d.join("a"), small(&set))).unwrap();
        let model = first.model_path.unwrap();
        let mut set = extra.clone();
        set.extend(["max_steps=1", "max_len=32"]);
        let mut a = args(&data, &d.join("b"), small(&set));
        a.init_from = Some(format!("llm:{}", model.display()));
        let out = train(&a).unwrap();
        let bytes = std::fs::read(out.model_path.unwrap()).unwrap();
        let f = llm_format::LlmFile::parse(&bytes).unwrap();
        let o = f.options().unwrap();
        assert_eq!(o.max_len, 32, "{name}");
        if name == "rope" {
            assert_eq!(o.arch.rope_scale, Some(2.0));
        } else {
            assert_eq!(f.tensor("pos_emb").unwrap().shape, vec![32, 32]);
            assert_eq!(o.arch.rope_scale, None);
        }
        // Without an explicit max_len the file's length is kept.
        let mut a = args(&data, &d.join("c"), small(&["max_steps=1"]));
        a.config.set.retain(|s| !s.starts_with("max_len"));
        a.config.set.extend(extra.iter().map(|s| s.to_string()));
        a.init_from = Some(format!("llm:{}", model.display()));
        let out = train(&a).unwrap();
        let bytes = std::fs::read(out.model_path.unwrap()).unwrap();
        let o = llm_format::LlmFile::parse(&bytes)
            .unwrap()
            .options()
            .unwrap();
        assert_eq!((o.max_len, o.arch.rope_scale), (16, None), "{name}");
    }
}

/// The Qwen 3 / Gemma 3 settings the CPU trainer trains, as `--set` keys.
const NEWER: [&str; 10] = [
    "positions=rope",
    "norm=rmsnorm",
    "bias=false",
    "mlp=geglu",
    "head_dim=12",
    "qkv_bias=true",
    "qk_norm=true",
    "post_norms=true",
    "embed_scale=5.66",
    "tied_embeddings=false",
];

#[test]
fn train_with_the_newer_options_reduces_the_loss_and_exports_them() {
    let d = scratch("newer");
    let data = corpus(&d);
    let mut set = NEWER.to_vec();
    set.extend([
        "max_steps=120",
        "lr=3e-3",
        "dropout=0",
        "save_interval=0",
        "eval_interval=0",
        "warmup_steps=10",
    ]);
    let out = train(&args(&data, &d.join("run"), small(&set))).unwrap();
    let m = &out.metrics;
    let head: f64 = m[..5].iter().map(|x| x.train_loss).sum::<f64>() / 5.0;
    let tail: f64 = m[m.len() - 10..].iter().map(|x| x.train_loss).sum::<f64>() / 10.0;
    // As `train_loss_decreases_on_tiny_corpus`: from about ln(vocab) down by 0.9.
    assert!(head > 3.5, "initial loss {head}");
    assert!(tail < head - 0.9, "loss went from {head} to {tail}");
    let bytes = std::fs::read(out.model_path.unwrap()).unwrap();
    let o = llm_format::LlmFile::parse(&bytes)
        .unwrap()
        .options()
        .unwrap();
    assert_eq!(o.mlp, llm_format::Mlp::GeGlu);
    assert_eq!((o.arch.head_dim, o.q_dim(), o.kv_dim()), (Some(12), 48, 24));
    assert!(o.arch.qkv_bias && o.arch.qk_norm && o.arch.post_norms);
    assert_eq!(o.arch.embed_scale, Some(5.66));
}

#[test]
fn train_init_from_a_qwen3_style_file_trains_and_run_only_settings_are_refused() {
    use llm_train::export::export_model;
    use llm_train::model::Model;
    use llm_train::tokenize::TextTokenizer;
    let d = scratch("init-qwen3");
    let data = corpus(&d);
    // A random Qwen 3-style model (q/k norm, head width 16 over d = 32 with 4 heads,
    // SwiGLU, untied) written by the test, on the byte tokenizer.
    let mut o = llm_train::config::TrainConfig::tiny()
        .model_options()
        .unwrap();
    (o.vocab_size, o.d_model, o.n_layers, o.n_heads, o.n_kv_heads) = (256, 32, 2, 4, 2);
    (o.d_ff, o.max_len) = (64, 16);
    (o.positions, o.norm, o.mlp) = (
        llm_format::Positions::Rope,
        llm_format::Norm::RmsNorm,
        llm_format::Mlp::SwiGlu,
    );
    (o.bias, o.tied_embeddings) = (false, false);
    o.arch.head_dim = Some(16);
    o.arch.qk_norm = true;
    let mut m = Model::<f32>::new(o.clone(), true).unwrap();
    m.init_gpt2(7);
    let file = d.join("qwen3.llm");
    let spec = TextTokenizer::byte().spec();
    export_model(
        &m,
        &spec,
        None,
        "test",
        llm_format::DType::F32.into(),
        &file,
    )
    .unwrap();
    let mut a = args(
        &data,
        &d.join("run"),
        small(&["max_steps=20", "lr=3e-3", "dropout=0"]),
    );
    a.init_from = Some(format!("llm:{}", file.display()));
    let out = train(&a).unwrap();
    let first = out.metrics[0].train_loss;
    let last = out.metrics.last().unwrap().train_loss;
    // A fresh model over 256 byte tokens starts near ln 256 ≈ 5.5 and learns.
    assert!((first - 256f64.ln()).abs() < 0.3, "{first}");
    assert!(last < first - 0.5, "{first} -> {last}");
    let bytes = std::fs::read(out.model_path.unwrap()).unwrap();
    let got = llm_format::LlmFile::parse(&bytes)
        .unwrap()
        .options()
        .unwrap();
    assert_eq!(got.arch, o.arch);

    // A Gemma 3-style sliding window cannot be trained: `--init-from` refuses it by
    // name instead of training a model without it.
    let f = llm_format::LlmFile::parse(&bytes).unwrap();
    let mut w = llm_format::LlmWriter::from_file(&f);
    w.add_meta(
        llm_format::options::keys::SLIDING_WINDOW,
        llm_format::Value::U32(8),
    );
    let gemma = d.join("sliding.llm");
    w.write_to(&gemma).unwrap();
    let mut a = args(&data, &d.join("run2"), small(&["max_steps=1"]));
    a.init_from = Some(format!("llm:{}", gemma.display()));
    let e = train(&a).unwrap_err().0;
    assert!(
        e.contains("run-only") && e.contains("sliding_window = 8"),
        "{e}"
    );
}
