//! issue 16 for the run folder: one writer at a time (two processes), `--resume`
//! after a kill during the very first checkpoint, and stale temporary files.

use llm_train::runlock::RunLock;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

mod run_util;
use run_util::{corpus, scratch};

const SMALL: [&str; 10] = [
    "d_model=32",
    "n_layers=1",
    "n_heads=4",
    "n_kv_heads=2",
    "max_len=16",
    "batch_size=2",
    "eval_interval=2",
    "eval_iters=1",
    "save_interval=1",
    "sample_len=0",
];

fn train_cmd(data: &Path, run: &Path, extra: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_llm-train"));
    cmd.args(["train", "--quiet", "--no-export", "--data"])
        .arg(data)
        .arg("--out")
        .arg(run);
    for s in SMALL.iter().chain(&["max_steps=2"]) {
        cmd.arg("--set").arg(s);
    }
    cmd.args(extra);
    cmd
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// One `error:` line, exit 1.
fn one_line_error(o: &Output) -> String {
    let e = stderr(o);
    assert_eq!(o.status.code(), Some(1), "{e}");
    let lines: Vec<&str> = e.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(lines.len(), 1, "{e}");
    lines[0].to_string()
}

#[test]
fn a_second_writer_is_refused_naming_the_holder() {
    let d = scratch("lock2");
    let data = corpus(&d);
    let run: PathBuf = d.join("run");
    // This test process is the first writer; the CLI processes are the second.
    let (lock, _) = RunLock::acquire(&run).unwrap();
    let me = format!("pid {}", std::process::id());
    for extra in [&[][..], &["--resume"][..]] {
        let o = train_cmd(&data, &run, extra).output().unwrap();
        let e = one_line_error(&o);
        assert!(e.contains("in use by") && e.contains(&me), "{e}");
    }
    let o = Command::new(env!("CARGO_BIN_EXE_llm-train"))
        .args(["export", "--run"])
        .arg(&run)
        .arg("--out")
        .arg(run.join("model.llm"))
        .output()
        .unwrap();
    let e = one_line_error(&o);
    assert!(e.contains(&me), "{e}");
    // Nothing was written by the refused writers.
    assert!(!run.join("config.toml").exists());
    assert!(!run.join("metrics.jsonl").exists());
    drop(lock);
    let o = train_cmd(&data, &run, &[]).output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
}

#[test]
fn resume_after_a_kill_in_the_first_checkpoint_starts_over() {
    let d = scratch("firstck");
    let data = corpus(&d);
    let run = d.join("run");
    // The process aborts half-way through its first checkpoint (step 1).
    let o = train_cmd(&data, &run, &[])
        .env("LLM_TRAIN_CRASH_IN_SAVE", "1")
        .output()
        .unwrap();
    assert!(!o.status.success());
    let ck = run.join("checkpoints");
    assert!(ck.join("ckpt_00000001.bin.tmp").exists());
    // Its lock record stays behind (abort); the next writer takes it over.
    let o = train_cmd(&data, &run, &["--resume"]).output().unwrap();
    let e = stderr(&o);
    assert!(o.status.success(), "{e}");
    assert!(e.contains("starting from step 0"), "{e}");
    assert!(e.contains("took over the lock"), "{e}");
    assert!(
        !ck.join("ckpt_00000001.bin.tmp").exists(),
        "stale .tmp removed"
    );
    let (c, _) = llm_train::checkpoint::load_latest(&ck).unwrap();
    assert_eq!(c.meta.step, 2);
    // The same losses as a run never interrupted.
    let whole = d.join("whole");
    assert!(train_cmd(&data, &whole, &[]).status().unwrap().success());
    let m = |r: &Path| std::fs::read_to_string(r.join("metrics.jsonl")).unwrap();
    let strip = |t: String| -> Vec<String> {
        // Drop the wall-clock fields; keep steps and losses.
        t.lines()
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).unwrap();
                format!("{} {} {}", v["step"], v["train_loss"], v["val_loss"])
            })
            .collect()
    };
    assert_eq!(strip(m(&run)), strip(m(&whole)));
}

/// issue 16, finding 8: messages that name their cause.
#[test]
fn data_and_out_errors_name_their_cause() {
    let d = scratch("msgs");
    let run = d.join("run");
    // An empty data file used to give "vocab_size = 0 is out of range".
    let empty = d.join("empty.txt");
    std::fs::write(&empty, "").unwrap();
    let e = one_line_error(&train_cmd(&empty, &run, &[]).output().unwrap());
    assert!(e.contains("empty.txt") && e.contains("is empty"), "{e}");
    // A binary file used to train as text, while perplexity refused it.
    let bin = d.join("blob.bin");
    let bytes: Vec<u8> = (0..4096u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    std::fs::write(&bin, &bytes).unwrap();
    let e = one_line_error(&train_cmd(&bin, &d.join("run2"), &[]).output().unwrap());
    assert!(e.contains("blob.bin") && e.contains("not UTF-8"), "{e}");
    // An --out that cannot be written names the path (/proc refuses new folders even
    // to root).
    let data = corpus(&d);
    let e = one_line_error(
        &train_cmd(&data, Path::new("/proc/llm-train-no-such-run"), &[])
            .output()
            .unwrap(),
    );
    assert!(e.contains("/proc/llm-train-no-such-run"), "{e}");
}

/// `llm-train export --layout r16` stores the matrices whose rows come in sixteens
/// in layout r16 and the rest in plain rows, with the values of a plain export.
#[test]
fn export_layout_r16_keeps_the_plain_exports_values() {
    use llm_format::{Layout, LlmFile};
    let d = scratch("export_r16");
    let data = corpus(&d);
    let run = d.join("run");
    let o = train_cmd(&data, &run, &[]).output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let export = |out: &Path, layout: &str| {
        let o = Command::new(env!("CARGO_BIN_EXE_llm-train"))
            .args(["export", "--dtype", "f16", "--layout", layout, "--run"])
            .arg(&run)
            .arg("--out")
            .arg(out)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", stderr(&o));
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    let (plain, r16) = (d.join("plain.llm"), d.join("r16.llm"));
    export(&plain, "rows");
    let said = export(&r16, "r16");
    let (x, y) = (std::fs::read(&plain).unwrap(), std::fs::read(&r16).unwrap());
    let (x, y) = (LlmFile::parse(&x).unwrap(), LlmFile::parse(&y).unwrap());
    y.verify_all().unwrap();
    let mut stored = 0;
    for slot in x.options().unwrap().tensor_layout() {
        let (tx, ty) = (x.tensor(&slot.name).unwrap(), y.tensor(&slot.name).unwrap());
        assert_eq!(tx.layout, Layout::Rows);
        let fits = slot.matrix && slot.shape[0] % 16 == 0;
        let want = if fits { Layout::R16 } else { Layout::Rows };
        assert_eq!(ty.layout, want, "{}", slot.name);
        stored += usize::from(fits);
        assert_eq!(tx.to_f32_vec(), ty.to_f32_vec(), "{}", slot.name);
    }
    assert!(stored > 0, "no matrix in r16");
    assert!(
        said.contains(&format!("{stored} matrices in layout r16")),
        "{said}"
    );
}
