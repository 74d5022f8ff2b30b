//! `llm-train train --device/--precision` through the binary: `--device cuda` without
//! a GPU fails with one line and exit code 1, `--device auto` trains on the CPU with a
//! one-line note (or on the GPU where one is present), bf16 on the CPU is refused
//! before anything is written, and the precision is recorded in the run's config.

use std::path::Path;
use std::process::{Command, Output};

mod run_util;
use run_util::scratch;

/// `llm-train train` on a 3-step model of the corpus, plus `extra` flags.
fn train(dir: &Path, out: &str, extra: &[&str]) -> Output {
    let data = run_util::corpus_bytes(dir, 20_000);
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_llm-train"));
    cmd.args(["train", "--preset", "tiny", "--quiet", "--no-export"])
        .arg("--data")
        .arg(&data)
        .arg("--out")
        .arg(dir.join(out));
    for kv in [
        "d_model=32",
        "n_layers=1",
        "n_heads=2",
        "max_len=16",
        "batch_size=2",
        "max_steps=3",
        "eval_iters=1",
    ] {
        cmd.args(["--set", kv]);
    }
    cmd.args(extra).output().unwrap()
}

fn gpu_present() -> bool {
    llm_train::cuda::CudaBackend::new(0).is_ok()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn device_cuda_without_a_gpu_is_one_line_and_exit_1() {
    if gpu_present() {
        eprintln!("skipped: a GPU is present, so --device cuda does not fail here");
        return;
    }
    let d = scratch("cuda");
    let o = train(&d, "run", &["--device", "cuda"]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.starts_with("error: --device: no CUDA GPU/driver found"),
        "{err}"
    );
    assert!(!d.join("run/checkpoints").exists());
}

#[test]
fn device_auto_trains_and_records_the_precision() {
    let d = scratch("auto");
    let o = train(&d, "run", &["--device", "auto"]);
    let err = stderr(&o);
    assert!(o.status.success(), "{err}");
    let config = std::fs::read_to_string(d.join("run/config.toml")).unwrap();
    let metrics = std::fs::read_to_string(d.join("run/metrics.jsonl")).unwrap();
    assert_eq!(metrics.lines().count(), 3);
    if gpu_present() {
        assert!(config.contains("precision = \"bf16\""), "{config}");
    } else {
        // The CPU fallback says so in one line, and the run is fp32.
        let notes: Vec<&str> = err.lines().filter(|l| l.starts_with("note:")).collect();
        assert_eq!(notes.len(), 1, "{err}");
        assert!(notes[0].ends_with("using the CPU"), "{err}");
        assert!(config.contains("precision = \"fp32\""), "{config}");
    }
}

#[test]
fn bf16_on_the_cpu_is_refused_and_fp32_is_recorded() {
    let d = scratch("prec");
    let o = train(&d, "bf16", &["--device", "cpu", "--precision", "bf16"]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("--precision bf16 is not supported"), "{err}");
    assert!(!d.join("bf16/config.toml").exists());

    let o = train(&d, "fp32", &["--device", "cpu", "--precision", "fp32"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let config = std::fs::read_to_string(d.join("fp32/config.toml")).unwrap();
    assert!(config.contains("precision = \"fp32\""), "{config}");

    let o = train(&d, "bad", &["--device", "tpu"]);
    assert_eq!(o.status.code(), Some(2), "clap's usage error");
    assert!(stderr(&o).contains("auto|cpu|cuda"));
}
