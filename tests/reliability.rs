//! issue 16, "nothing lost, nothing silently wrong", through the command lines:
//! validated sampler settings, exit codes, a quiet end when the reader of stdout goes
//! away, strict model files and bounded input. Each test failed before its fix.

use llm_format::{DType, Mlp, Norm, Positions};
use llmrt_suite::fixtures::*;
use llmrt_suite::rng::test_seed;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

struct Out {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

fn run(bin: &Path, args: &[&str]) -> Out {
    let o = Command::new(bin)
        .args(args)
        .output()
        .expect("run the binary");
    Out {
        code: o.status.code(),
        stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
    }
}

fn llm_run(args: &[&str]) -> Out {
    run(&workspace_bin("llmrt", "llm-run"), args)
}

fn model_file(name: &str) -> PathBuf {
    let o = opts(Positions::Rope, Norm::RmsNorm, Mlp::SwiGlu, false, false, 2);
    let w = random_weights(&o, test_seed(1616));
    let (bytes, _) = write_model(&o, &w, DType::F32);
    temp_file(name, &bytes)
}

fn p(path: &Path) -> &str {
    path.to_str().expect("utf-8 temp path")
}

/// Exit 1 and exactly one `error:` line on stderr that mentions `mentions`, no usage
/// block, no panic.
fn assert_one_line_error(o: &Out, mentions: &str) {
    assert_eq!(o.code, Some(1), "stderr: {}", o.stderr);
    assert!(!o.stderr.contains("panicked"), "panic: {}", o.stderr);
    assert!(!o.stderr.contains("Usage:"), "usage block: {}", o.stderr);
    let lines: Vec<&str> = o
        .stderr
        .lines()
        .filter(|l| l.starts_with("error:"))
        .collect();
    assert_eq!(lines.len(), 1, "stderr: {}", o.stderr);
    assert!(
        lines[0].contains(mentions),
        "'{}' should mention '{mentions}'",
        lines[0]
    );
}

#[test]
fn sampler_flags_are_validated_naming_the_flag() {
    let m = model_file("rel_flags.llm");
    for (flag, value, mentions) in [
        ("--temperature", "NaN", "--temperature is NaN"),
        ("--temperature", "-1", "--temperature is -1"),
        ("--temperature", "inf", "--temperature is inf"),
        ("--repeat-penalty", "0", "--repeat-penalty is 0"),
        ("--repeat-penalty", "NaN", "--repeat-penalty"),
        ("--top-p", "1.5", "--top-p is 1.5"),
        ("--top-p", "-0.5", "--top-p is -0.5"),
        ("--min-p", "inf", "--min-p"),
        ("--frequency-penalty", "NaN", "--frequency-penalty"),
        ("--presence-penalty", "-1e39", "--presence-penalty is -inf"),
        ("--threads", "10000", "--threads is 10000"),
    ] {
        // Both spellings: `--flag value` and `--flag=value`.
        let o = llm_run(&["-m", p(&m), "-p", "AB", "-n", "2", flag, value]);
        assert_one_line_error(&o, mentions);
        let eq = format!("{flag}={value}");
        let o = llm_run(&["-m", p(&m), "-p", "AB", "-n", "2", &eq]);
        assert_one_line_error(&o, mentions);
    }
    // `chat` and `compare` go through the same check.
    for (flag, value, mentions) in [
        ("--temperature", "-1", "--temperature is -1"),
        ("--top-p", "1.5", "--top-p is 1.5"),
        ("--repeat-penalty", "0", "--repeat-penalty is 0"),
    ] {
        let eq = format!("{flag}={value}");
        let o = llm_run(&["chat", "-m", p(&m), "--chat-template", "chatml", &eq]);
        assert_one_line_error(&o, mentions);
    }
    let o = llm_run(&["compare", "-m", p(&m), "-p", "AB", "--sampler", "top_p=1.5"]);
    assert_one_line_error(&o, "top_p is 1.5");
    // A negative value where one means something parses.
    let o = llm_run(&[
        "-m",
        p(&m),
        "-p",
        "AB",
        "-n",
        "2",
        "--seed",
        "1",
        "--frequency-penalty",
        "-0.5",
    ]);
    assert_eq!(o.code, Some(0), "{}", o.stderr);
}

#[test]
fn tiny_temperature_is_greedy_on_the_command_line() {
    let m = model_file("rel_tiny_t.llm");
    let ids = |t: &str, seed: &str| {
        let o = llm_run(&[
            "-m",
            p(&m),
            "-p",
            "ABC",
            "-n",
            "24",
            "--print-ids",
            "--temperature",
            t,
            "--seed",
            seed,
            "--top-k",
            "0",
            "--top-p",
            "1",
            "--min-p",
            "0",
        ]);
        assert_eq!(o.code, Some(0), "{}", o.stderr);
        o.stdout
    };
    let greedy = ids("0", "1");
    for seed in ["1", "2", "3"] {
        assert_eq!(ids("1e-40", seed), greedy, "1e-40, seed {seed}");
    }
}

#[test]
fn argument_errors_exit_2_and_setting_errors_exit_1() {
    // clap's own errors (an unknown flag, a value that is not a number) keep exit 2,
    // as the README says.
    let o = llm_run(&["--no-such-flag"]);
    assert_eq!(o.code, Some(2), "{}", o.stderr);
    let o = llm_run(&["-m", "x.llm", "-p", "a", "--temperature", "warm"]);
    assert_eq!(o.code, Some(2), "{}", o.stderr);
}

#[test]
fn a_closed_pipe_ends_quietly() {
    // `llm-run tokenize … | head -c 1`: the reader goes away after one byte; the
    // writer must end without a panic or an error line.
    let m = model_file("rel_pipe.llm");
    let text = "ABC".repeat(30_000);
    let mut child = Command::new(workspace_bin("llmrt", "llm-run"))
        .args(["tokenize", "-m", p(&m), "-p", &text])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn llm-run");
    // Close our end of stdout at once, unread.
    drop(child.stdout.take());
    let o = child.wait_with_output().expect("wait");
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(!stderr.contains("error"), "{stderr}");
    use std::os::unix::process::ExitStatusExt;
    // Killed by SIGPIPE (13), as `cat` would be.
    assert_eq!(o.status.signal(), Some(13), "{:?} {stderr}", o.status);
}

fn llm_train(args: &[&str]) -> Out {
    run(&workspace_bin("llm-train", "llm-train"), args)
}

#[test]
fn trainer_sampling_uses_the_same_validation() {
    // The check comes before the run folder is read, so no run is needed.
    for (t, mentions) in [
        ("-1", "--temperature is -1"),
        ("NaN", "--temperature is NaN"),
        ("inf", "--temperature is inf"),
    ] {
        let o = llm_train(&["sample", "--run", "/nonexistent-run", "--temperature", t]);
        assert_one_line_error(&o, mentions);
    }
}

#[test]
fn a_model_whose_metadata_undercounts_its_layers_is_refused() {
    // The fixture holds 2 layers; the metadata says 1. The runtime used to run 1
    // layer without a word.
    let m = model_file("rel_layers_src.llm");
    let bytes = std::fs::read(&m).unwrap();
    let f = llm_format::LlmFile::parse(&bytes).unwrap();
    let mut w = llm_format::LlmWriter::from_file(&f);
    w.add_meta(
        llm_format::options::keys::N_LAYERS,
        llm_format::Value::U32(1),
    );
    let bad = temp_file("rel_layers.llm", &w.to_bytes().unwrap());
    let o = llm_run(&["-m", p(&bad), "-p", "AB", "-n", "2", "--seed", "1"]);
    assert_one_line_error(&o, "'blk.1.");
    assert!(o.stderr.contains("not used"), "{}", o.stderr);
    // The untouched file still runs.
    let o = llm_run(&["-m", p(&m), "-p", "AB", "-n", "2", "--seed", "1"]);
    assert_eq!(o.code, Some(0), "{}", o.stderr);
}

#[test]
fn perplexity_input_is_bounded() {
    // `-f /dev/zero` used to grow until the kernel killed it. A small --max-bytes
    // keeps the test quick; the default is a sixteenth of the available memory.
    let m = model_file("rel_ppl.llm");
    let o = llm_run(&[
        "perplexity",
        "-m",
        p(&m),
        "-f",
        "/dev/zero",
        "--max-bytes",
        "1000000",
    ]);
    assert_one_line_error(&o, "/dev/zero holds more than 1000000 bytes");
    // A regular file over the cap is refused from its size, before reading.
    let big = temp_file("rel_ppl_big.txt", &vec![b'A'; 3 << 20]);
    let o = llm_run(&[
        "perplexity",
        "-m",
        p(&m),
        "-f",
        p(&big),
        "--max-bytes",
        "1048576",
    ]);
    assert_one_line_error(&o, "is 3 MiB");
    // Binary text is refused, naming the file.
    let bin = temp_file("rel_ppl_bin.txt", &[0x41, 0xff, 0xfe, 0x41]);
    let o = llm_run(&["perplexity", "-m", p(&m), "-f", p(&bin)]);
    assert_one_line_error(&o, "not UTF-8");
}

/// A model whose char vocabulary has a line break and a space, for texts in lines.
fn lines_model_file(name: &str) -> PathBuf {
    let o = opts(Positions::Rope, Norm::RmsNorm, Mlp::SwiGlu, false, false, 2);
    let tokens = ["\n".to_string(), " ".to_string()]
        .into_iter()
        .chain((0..o.vocab_size - 2).map(|i| char::from(b'!' + i as u8).to_string()))
        .map(Into::into)
        .collect();
    let w = random_weights(&o, test_seed(1617));
    let (bytes, _) = write_model_with(&o, &char_tokenizer_of(tokens), &w, DType::F32);
    temp_file(name, &bytes)
}

#[test]
fn perplexity_streams_its_file() {
    let m = lines_model_file("rel_ppl_lines.llm");
    // Random lines (blank lines and trailing spaces included), about 9 KiB: read in
    // pieces of 64 bytes, of 1000, and whole, the figure is the same.
    let seed = test_seed(1618);
    let mut rng = llmrt_suite::rng::Rng::new(seed);
    let mut text = String::new();
    while text.len() < 9000 {
        let n = 1 + rng.below(40) as usize;
        for _ in 0..n {
            text.push(char::from(b'!' + rng.below(40) as u8));
        }
        text.push_str(["\n", "\n", "\n", " \n", "\n\n"][rng.below(5) as usize]);
    }
    let f = temp_file("rel_ppl_lines.txt", text.as_bytes());
    let ppl = |piece: &str| {
        let o = llm_run(&[
            "perplexity",
            "-m",
            p(&m),
            "-f",
            p(&f),
            "--ctx",
            "32",
            "-t",
            "1",
            "--piece-bytes",
            piece,
        ]);
        assert_eq!(o.code, Some(0), "{}", o.stderr);
        o.stdout
            .lines()
            .find(|l| l.starts_with("perplexity:"))
            .unwrap()
            .to_string()
    };
    let whole = ppl("1000000");
    assert_eq!(ppl("64"), whole);
    assert_eq!(ppl("1000"), whole);
    // An endless input: --chunks windows are scored from its first pieces (the whole
    // text was read first before, which never ended).
    let mut child = Command::new(workspace_bin("llmrt", "llm-run"))
        .args([
            "perplexity",
            "-m",
            p(&m),
            "-f",
            "/dev/stdin",
            "--ctx",
            "32",
            "--chunks",
            "3",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let feeder = std::thread::spawn(move || {
        use std::io::Write;
        // Until the reader goes away: a broken pipe ends the loop.
        while stdin.write_all(b"AB CD\nEF GH\n").is_ok() {}
    });
    let out = child.wait_with_output().unwrap();
    feeder.join().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.starts_with("perplexity:"), "{stdout}");
}

#[test]
fn perplexity_of_a_text_with_no_line_break_is_bounded() {
    // /dev/zero has no place to cut: at most 64 MiB is held, then a one-line error,
    // and the process stays far below the 23.9 GB it once reached.
    let m = lines_model_file("rel_ppl_zero.llm");
    let bin = workspace_bin("llmrt", "llm-run");
    // Reaped by wait4 below, which also gives its resource usage.
    #[allow(clippy::zombie_processes)]
    let child = Command::new(bin)
        .args(["perplexity", "-m", p(&m), "-f", "/dev/zero"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = String::new();
    let pid = child.id() as libc::pid_t;
    std::io::Read::read_to_string(&mut child.stderr.unwrap(), &mut stderr).unwrap();
    let mut status = 0;
    // SAFETY: a zeroed rusage for wait4 to fill.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: our own child's pid (not waited for yet), valid pointers.
    assert_eq!(unsafe { libc::wait4(pid, &mut status, 0, &mut ru) }, pid);
    let o = Out {
        code: libc::WIFEXITED(status).then(|| libc::WEXITSTATUS(status)),
        stdout: String::new(),
        stderr,
    };
    assert_one_line_error(&o, "no place to cut the text in");
    let peak_mib = ru.ru_maxrss / 1024;
    eprintln!("peak RSS of llm-run: {peak_mib} MiB");
    assert!(peak_mib < 400, "peak RSS {peak_mib} MiB");
}
