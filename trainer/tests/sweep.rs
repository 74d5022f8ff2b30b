//! `llm-train sweep` through the binary: a two-point sweep killed while it trains its
//! second point, then started again, skips the finished point, resumes the other from
//! its checkpoint, and reports the same losses as a sweep that was never stopped.

use std::path::Path;
use std::process::{Command, Output};

mod run_util;
use run_util::{corpus, scratch};

fn sweep(data: &Path, out: &Path, crash_at: Option<u64>) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_llm-train"));
    cmd.args([
        "sweep",
        "--preset",
        "tiny",
        "--no-plot",
        "--grid",
        "max_steps=2,4",
    ])
    .arg("--data")
    .arg(data)
    .arg("--out")
    .arg(out);
    for kv in [
        "d_model=32",
        "n_layers=1",
        "n_heads=2",
        "max_len=16",
        "batch_size=4",
        "dropout=0.1",
        "eval_interval=1",
        "eval_iters=2",
        "save_interval=1",
        "sample_len=0",
    ] {
        cmd.args(["--set", kv]);
    }
    if let Some(step) = crash_at {
        // Aborts the process half-way through writing the checkpoint of that step.
        cmd.env("LLM_TRAIN_CRASH_IN_SAVE", step.to_string());
    }
    cmd.output().unwrap()
}

/// summary.csv without the timing columns (tokens_per_s, train_seconds).
fn losses(out: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(out.join("summary.csv")).unwrap();
    text.lines()
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            [&f[..6], &f[8..]].concat().join(",")
        })
        .collect()
}

#[test]
fn sweep_killed_and_restarted_reports_what_an_uninterrupted_one_does() {
    let d = scratch("sweep");
    let data = corpus(&d);
    let whole = d.join("whole");
    let o = sweep(&data, &whole, None);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));

    // Point max_steps=2 finishes; point max_steps=4 dies saving step 3.
    let cut = d.join("cut");
    let o = sweep(&data, &cut, Some(3));
    assert!(!o.status.success());
    let first = cut.join("max_steps-2");
    assert!(first.join("sweep.done").is_file());
    assert!(!cut.join("max_steps-4/sweep.done").exists());
    let partial = std::fs::read_to_string(cut.join("summary.csv")).unwrap();
    assert_eq!(partial.lines().count(), 2, "{partial}");
    let before = std::fs::metadata(first.join("metrics.jsonl"))
        .unwrap()
        .modified()
        .unwrap();

    let o = sweep(&data, &cut, None);
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(stdout.contains("1 finished before, 1 to run"), "{stdout}");
    assert!(stdout.contains("[max_steps=4] resuming"), "{stdout}");
    let after = std::fs::metadata(first.join("metrics.jsonl"))
        .unwrap()
        .modified()
        .unwrap();
    assert_eq!(before, after, "the finished point was trained again");

    let (a, b) = (losses(&whole), losses(&cut));
    assert_eq!(a.len(), 3, "{a:?}");
    assert_eq!(a, b);
    // Sorted by final val loss: the longer run first, with 4 steps of losses.
    assert!(a[1].starts_with("4,"), "{a:?}");
    // A third start finds nothing to do and reports the same.
    let o = sweep(&data, &cut, None);
    assert!(String::from_utf8_lossy(&o.stdout).contains("2 finished before, 0 to run"));
    assert_eq!(losses(&cut), a);
}
