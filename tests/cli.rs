//! `llm-run` end to end: determinism, agreement with the reference, stop strings,
//! perplexity, and one-line errors on bad input.

use llm_format::{DType, Mlp, Norm, Positions};
use llmrt_suite::fixtures::*;
use llmrt_suite::reference::RefModel;
use llmrt_suite::rng::test_seed;
use std::path::{Path, PathBuf};
use std::process::Command;

struct Out {
    ok: bool,
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

fn llm_run(args: &[&str]) -> Out {
    let bin = workspace_bin("llmrt", "llm-run");
    let o = Command::new(bin).args(args).output().expect("run llm-run");
    Out {
        ok: o.status.success(),
        code: o.status.code(),
        stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
    }
}

fn model_file(name: &str) -> (PathBuf, RefModel) {
    let o = opts(Positions::Rope, Norm::RmsNorm, Mlp::SwiGlu, false, false, 2);
    let w = random_weights(&o, test_seed(2024));
    let (bytes, held) = write_model(&o, &w, DType::F32);
    (temp_file(name, &bytes), RefModel::new(o, &held))
}

fn p(path: &Path) -> &str {
    path.to_str().expect("utf-8 temp path")
}

/// Asserts a clean failure: exit code 1, one `error:` line, no panic.
fn assert_one_line_error(o: &Out, mentions: &str) {
    assert!(
        !o.ok && o.code == Some(1),
        "expected exit 1, got {:?}: {}",
        o.code,
        o.stderr
    );
    assert!(!o.stderr.contains("panicked"), "panic: {}", o.stderr);
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
fn same_seed_same_text_and_seed_matters() {
    let (m, _) = model_file("seed.llm");
    let run = |seed: &str| {
        let o = llm_run(&[
            "-m",
            p(&m),
            "-p",
            "ABC",
            "-n",
            "40",
            "--temperature",
            "1.0",
            "--seed",
            seed,
            "--top-k",
            "0",
            "--min-p",
            "0",
            "--top-p",
            "1",
        ]);
        assert!(o.ok, "{}", o.stderr);
        o.stdout
    };
    let a = run("7");
    assert_eq!(a, run("7"));
    assert_ne!(
        a,
        run("8"),
        "different seeds gave the same 40 sampled tokens"
    );
    assert!(
        a.trim_end().chars().count() >= 30,
        "expected ~40 chars, got {a:?}"
    );
}

#[test]
fn greedy_ids_equal_the_reference() {
    let (m, reference) = model_file("greedy.llm");
    let o = llm_run(&[
        "-m",
        p(&m),
        "--prompt-ids",
        "5 17 33 2",
        "-n",
        "24",
        "--temperature",
        "0",
        "--print-ids",
    ]);
    assert!(o.ok, "{}", o.stderr);
    let got: Vec<u32> = o
        .stdout
        .split_whitespace()
        .map(|t| t.parse().expect("id"))
        .collect();
    assert_eq!(got, reference.greedy(&[5, 17, 33, 2], 24));
}

#[test]
fn stop_string_cuts_the_completion() {
    let (m, _) = model_file("stop.llm");
    let base = [
        "-m",
        p(&m),
        "-p",
        "HELLO",
        "-n",
        "48",
        "--seed",
        "3",
        "--temperature",
        "1.0",
        "--top-k",
        "0",
    ];
    let full = llm_run(&base);
    assert!(full.ok, "{}", full.stderr);
    let text = full.stdout.trim_end_matches('\n').to_string();
    let chars: Vec<char> = text.chars().collect();
    assert!(chars.len() > 20, "{text:?}");
    let stop: String = chars[12..14].iter().collect();
    let cut = &text[..text.find(&stop).expect("stop occurs")];
    let mut args = base.to_vec();
    args.extend(["--stop", &stop]);
    let o = llm_run(&args);
    assert!(o.ok, "{}", o.stderr);
    assert_eq!(o.stdout.trim_end_matches('\n'), cut);
}

#[test]
fn perplexity_equals_the_reference() {
    let (m, reference) = model_file("ppl.llm");
    // Text over the char vocabulary ('!' .. ']'), 3 windows of 16 tokens and a remainder.
    let text: String = (0..53)
        .map(|i| char::from(b'!' + ((i * 7 + i / 3) % 61) as u8))
        .collect();
    let f = temp_file("ppl.txt", text.as_bytes());
    let o = llm_run(&["perplexity", "-m", p(&m), "-f", p(&f), "--ctx", "16"]);
    assert!(o.ok, "{}", o.stderr);
    let last = o.stdout.lines().last().expect("output");
    let got: f64 = last
        .strip_prefix("perplexity: ")
        .expect("last line")
        .parse()
        .expect("number");
    let ids: Vec<u32> = text.bytes().map(|b| (b - b'!') as u32).collect();
    let (mut nll, mut n) = (0.0, 0);
    for win in ids.chunks_exact(16) {
        let logits = reference.forward(win);
        for i in 0..15 {
            let row = &logits[i];
            let m = row.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let z: f64 = row.iter().map(|v| (v - m).exp()).sum();
            nll -= row[win[i + 1] as usize] - m - z.ln();
            n += 1;
        }
    }
    let want = (nll / n as f64).exp();
    assert!(
        (got - want).abs() / want < 1e-3,
        "perplexity {got} vs reference {want}"
    );
}

#[test]
fn info_tokenize_and_verify() {
    let (m, _) = model_file("info.llm");
    let o = llm_run(&["info", "-m", p(&m), "--verify"]);
    assert!(o.ok, "{}", o.stderr);
    assert!(
        o.stdout.contains("rmsnorm")
            && o.stdout.contains("swiglu")
            && o.stdout.contains("blk.0.attn_q.weight")
    );
    assert!(o.stdout.contains("checksums match"));
    let t = llm_run(&["tokenize", "-m", p(&m), "-p", "AB!"]);
    assert!(t.ok, "{}", t.stderr);
    assert_eq!(t.stdout.trim(), "32 33 0");

    // A flipped byte in the last tensor: loads (data is checked on demand) but fails --verify.
    let mut bytes = std::fs::read(&m).expect("read");
    let n = bytes.len();
    bytes[n - 3] ^= 0x40;
    let bad = temp_file("info-bad.llm", &bytes);
    assert_one_line_error(&llm_run(&["info", "-m", p(&bad), "--verify"]), "checksum");
}

#[test]
fn bad_input_gives_one_line_errors() {
    let (m, _) = model_file("bad.llm");
    let mp = p(&m);
    assert_one_line_error(
        &llm_run(&["-m", "/nonexistent/x.llm", "-p", "A"]),
        "/nonexistent/x.llm",
    );
    let bytes = std::fs::read(&m).expect("read");
    let trunc = temp_file("trunc.llm", &bytes[..bytes.len() / 2]);
    assert_one_line_error(&llm_run(&["-m", p(&trunc), "-p", "A"]), "trunc");
    let mut flipped = bytes.clone();
    flipped[20] ^= 1;
    let flip = temp_file("flip.llm", &flipped);
    assert_one_line_error(&llm_run(&["-m", p(&flip), "-p", "A"]), "flip");
    assert_one_line_error(&llm_run(&["-m", mp, "--prompt-ids", "1 999"]), "999");
    assert_one_line_error(&llm_run(&["-m", mp, "--prompt-ids", "1 x"]), "'x'");
    assert_one_line_error(&llm_run(&["-m", mp, "-p", ""]), "empty");
    let long = "A".repeat(60);
    assert_one_line_error(&llm_run(&["-m", mp, "-p", &long]), "context");
    assert_one_line_error(&llm_run(&["-m", mp, "-p", "abc"]), "'a'");
}

/// `--grammar`, `--json-schema` and `--logit-bias` end to end on the char-level test
/// model ('!' to ']', no EOS): the output follows the grammar token by token (checked
/// here by hand, not by the grammar engine); a grammar whose text must end where the
/// vocabulary has no EOS is a one-line error, not a hang; a banned token never comes;
/// bad grammars, schemas and biases are one-line errors naming the problem.
#[test]
fn constrained_generation_and_its_errors() {
    let (m, reference) = model_file("grammar.llm");
    let mp = p(&m);
    let g = temp_file(
        "g.gbnf",
        b"# words, then numbers\nroot ::= [A-Z]+ (\",\" [0-9]+)*\n",
    );
    for seed in ["1", "2", "3"] {
        let o = llm_run(&[
            "-m",
            mp,
            "-p",
            "HELLO",
            "-n",
            "30",
            "-s",
            seed,
            "--grammar",
            p(&g),
        ]);
        assert!(o.ok, "{}", o.stderr);
        let text = o.stdout.trim_end_matches('\n');
        assert_eq!(text.chars().count(), 30, "{text:?}");
        let (word, rest) = text.split_at(text.find(',').unwrap_or(text.len()));
        assert!(
            !word.is_empty() && word.chars().all(|c| c.is_ascii_uppercase()),
            "{text:?}"
        );
        for (i, part) in rest.split(',').skip(1).enumerate() {
            let last = i + 2 == rest.split(',').count();
            assert!(
                part.chars().all(|c| c.is_ascii_digit()) && (last || !part.is_empty()),
                "{text:?}"
            );
        }
    }
    // The text "AB" must end, but this vocabulary has no EOS.
    let ab = temp_file("ab.gbnf", b"root ::= \"AB\"\n");
    assert_one_line_error(
        &llm_run(&["-m", mp, "-p", "HELLO", "-n", "10", "--grammar", p(&ab)]),
        "no token of the vocabulary can continue",
    );
    // An array of at least 100 integers cannot close in 40 tokens.
    let s = temp_file(
        "ints.json",
        br#"{"type": "array", "items": {"type": "integer"}, "minItems": 100}"#,
    );
    let o = llm_run(&[
        "-m",
        mp,
        "-p",
        "HELLO",
        "-n",
        "40",
        "-s",
        "5",
        "--json-schema",
        p(&s),
    ]);
    assert!(o.ok, "{}", o.stderr);
    let text = o.stdout.trim_end_matches('\n');
    assert!(text.starts_with('['), "{text:?}");
    for n in text[1..].split(',') {
        let digits = n.strip_prefix('-').unwrap_or(n);
        assert!(digits.chars().all(|c| c.is_ascii_digit()), "{text:?}");
        assert!(
            !digits.starts_with('0') || digits.len() <= 1,
            "leading zero: {text:?}"
        );
    }
    // Logit bias: ban the greedy first token, and it is not the first token any more.
    let first = reference.greedy(&[5, 17, 33, 2], 1)[0];
    let ban = format!("{first}:-inf");
    let o = llm_run(&[
        "-m",
        mp,
        "--prompt-ids",
        "5 17 33 2",
        "-n",
        "8",
        "--temperature",
        "0",
        "--print-ids",
        "--logit-bias",
        &ban,
    ]);
    assert!(o.ok, "{}", o.stderr);
    let ids: Vec<u32> = o
        .stdout
        .split_whitespace()
        .map(|t| t.parse().expect("id"))
        .collect();
    assert_eq!(ids.len(), 8);
    assert!(!ids.contains(&first), "banned {first} in {ids:?}");
    // Errors.
    let bad = temp_file("bad.gbnf", b"root ::= \"A\"\nx ::= [A-\n");
    assert_one_line_error(
        &llm_run(&["-m", mp, "-p", "A", "--grammar", p(&bad)]),
        "line 2, column",
    );
    let lr = temp_file("lr.gbnf", b"root ::= root \"A\" | \"B\"\n");
    assert_one_line_error(
        &llm_run(&["-m", mp, "-p", "A", "--grammar", p(&lr)]),
        "left-recursive",
    );
    let pat = temp_file("pat.json", br#"{"type": "string", "pattern": "A+"}"#);
    assert_one_line_error(
        &llm_run(&["-m", mp, "-p", "A", "--json-schema", p(&pat)]),
        "pattern",
    );
    assert_one_line_error(
        &llm_run(&["-m", mp, "-p", "A", "--logit-bias", "999:1"]),
        "--logit-bias is 999",
    );
    assert_one_line_error(
        &llm_run(&["-m", mp, "-p", "A", "--logit-bias", "3:nan"]),
        "--logit-bias",
    );
    let o = llm_run(&["-m", mp, "-p", "A", "--logit-bias", "3"]);
    assert_eq!(o.code, Some(2), "not ID:BIAS: {}", o.stderr);
    assert!(o.stderr.contains("ID:BIAS"), "{}", o.stderr);
}

/// A model whose tokenizer is BERT's WordPiece (kind `wpm`): `llm-run tokenize` adds
/// [CLS] … [SEP] and lowercases, `info` names the kind.
#[test]
fn tokenize_with_a_wordpiece_vocabulary() {
    let o = opts(Positions::Rope, Norm::RmsNorm, Mlp::SwiGlu, false, false, 2);
    let w = random_weights(&o, test_seed(2025));
    let mut tok = char_tokenizer(o.vocab_size);
    tok.kind = llm_format::TokenizerKind::Wpm;
    for (i, t) in [
        "[PAD]", "[UNK]", "[CLS]", "[SEP]", "▁hello", "▁!", "▁wor", "ld",
    ]
    .into_iter()
    .enumerate()
    {
        tok.tokens[i] = t.into();
    }
    (tok.pad, tok.unk, tok.bos, tok.eos) = (Some(0), Some(1), Some(2), Some(3));
    (tok.add_bos, tok.add_eos, tok.lowercase, tok.strip_accents) = (true, true, true, true);
    let (bytes, _) = write_model_with(&o, &tok, &w, DType::F32);
    let m = temp_file("wpm.llm", &bytes);
    let t = llm_run(&["tokenize", "-m", p(&m), "-p", "HELLO World!  qq"]);
    assert!(t.ok, "{}", t.stderr);
    assert_eq!(t.stdout.trim(), "2 4 6 7 5 1 3");
    let t = llm_run(&["tokenize", "-m", p(&m), "--no-bos", "-p", "Héllo"]);
    assert_eq!(t.stdout.trim(), "4");
    let i = llm_run(&["info", "-m", p(&m)]);
    assert!(i.ok && i.stdout.contains("wpm"), "{}", i.stdout);
}

/// Whether a CUDA GPU can run here (then `--device auto` takes it and the no-GPU
/// refusals are not checked).
fn have_gpu() -> bool {
    llmrt::cuda::decoder::probe().is_ok()
}

/// `--device auto|cpu|cuda` (generation, perplexity, bench; chat refuses cuda): without
/// a GPU, cuda is a one-line error with exit code 1 naming why, auto runs on the CPU
/// (saying so and why on stderr) and prints what cpu prints for the same seed; a bad
/// value is clap's usage error.
#[test]
fn device_flag_selects_and_refuses_in_one_line() {
    let (m, _) = model_file("device.llm");
    let mp = p(&m);
    let gen = |device: &str| {
        llm_run(&[
            "-m",
            mp,
            "-p",
            "ABC",
            "-n",
            "30",
            "--seed",
            "7",
            "--temperature",
            "1.0",
            "--top-k",
            "0",
            "--min-p",
            "0",
            "--cache-type",
            "f32",
            "--device",
            device,
        ])
    };
    let cpu = gen("cpu");
    assert!(cpu.ok, "{}", cpu.stderr);
    assert!(cpu.stderr.contains(", cpu, "), "{}", cpu.stderr);
    let auto = gen("auto");
    assert!(auto.ok, "{}", auto.stderr);
    assert_eq!(
        auto.stdout, cpu.stdout,
        "--device auto against --device cpu"
    );
    let f = temp_file(
        "device.txt",
        "ABCDEFGHIJKLMNOPQRSTUVWXYZ!#$%&".repeat(2).as_bytes(),
    );
    let ppl = |device: &str| {
        llm_run(&[
            "perplexity",
            "-m",
            mp,
            "-f",
            p(&f),
            "--ctx",
            "16",
            "--cache-type",
            "f32",
            "--device",
            device,
        ])
    };
    let (pc, pa) = (ppl("cpu"), ppl("auto"));
    assert!(pc.ok && pa.ok, "{}\n{}", pc.stderr, pa.stderr);
    if !have_gpu() {
        assert!(
            auto.stderr.contains(", cpu, ") && auto.stderr.contains("(auto: no CUDA GPU"),
            "the start-up line says where and why: {}",
            auto.stderr
        );
        assert_eq!(pa.stdout, pc.stdout, "perplexity --device auto against cpu");
        let o = gen("cuda");
        assert_one_line_error(&o, "--device cuda: no CUDA GPU/driver found");
        assert!(o.stdout.is_empty(), "{}", o.stdout);
        assert_one_line_error(&ppl("cuda"), "--device cuda: ");
        let bench = llm_run(&["bench", "-m", mp, "-p", "4", "-n", "4", "--device", "cuda"]);
        assert_one_line_error(&bench, "--device cuda: ");
    }
    // chat stays on the CPU: cuda is refused before anything is read.
    let chat = llm_run(&["chat", "-m", mp, "--device", "cuda"]);
    assert_one_line_error(&chat, "chat runs on the CPU only");
    // A value clap does not know: its usage error (exit code 2), naming the choices.
    let bad = gen("tpu");
    assert_eq!(bad.code, Some(2), "{}", bad.stderr);
    assert!(
        bad.stderr.contains("invalid value 'tpu'") && bad.stderr.contains("cuda"),
        "{}",
        bad.stderr
    );
}
