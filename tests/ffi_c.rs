//! libllmrt from C and C++: the programs in `ffi/examples/` and `ffi/tests/c/` are
//! compiled with `-Wall -Wextra -Werror` against the freshly built `libllmrt.so` and
//! `libllmrt.a` and run on two random models (SentencePiece with byte fallback, Q8_0;
//! char-level with multi-byte characters, Q4_0, RoPE/SwiGLU/GQA).
//!
//! * `generate.c` prints byte for byte what `llm-run` prints for the same flags;
//! * `api.c` checks the step-by-step API against the one-call one;
//! * `threads.c`: four threads over one model give the single-thread texts; cancellation;
//! * `abuse.c`: NULL, garbage handles, bad sizes and text, corrupt files, a context
//!   too large for memory: error codes with messages, no crash;
//! * `embed.c` prints the vectors `llm-run embed` prints, and `llm-run similar` ranks
//!   lines by the cosine of those vectors; `score.c` (every position's logits from
//!   one `llmrt_eval_all`) prints the perplexity `llm-run perplexity` prints;
//! * `parallel.c` (four sequences of one context: the prompt copied, decoded in one
//!   batch per step) prints for each sequence what `llm-run` prints with its seed;
//! * all of them (and `chat.cpp`) under valgrind memcheck and AddressSanitizer.
//!
//! Each test prints a SKIP line and passes when the C compiler (or valgrind) is missing.

mod ffi_support;

use ffi_support::*;
use std::path::PathBuf;

const SP_PROMPT: &str = "the tea é日本";
const CHAR_PROMPT: &str = "hello wüld, ß日本語";

fn need_cc(test: &str) -> bool {
    let ok = have("cc");
    if !ok {
        skip(test, "no C compiler (cc) on this machine");
    }
    ok
}

fn stdout(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Flag sets shared by `llm-run` and `generate`, after `-m MODEL -p PROMPT`.
fn flag_sets() -> Vec<Vec<&'static str>> {
    vec![
        vec!["-n", "40", "-s", "42", "-t", "1"],
        vec![
            "-n",
            "60",
            "-s",
            "7",
            "--temperature",
            "1.3",
            "--top-k",
            "0",
            "--top-p",
            "1",
            "--min-p",
            "0",
            "-t",
            "2",
        ],
        vec!["-n", "30", "-s", "1", "--temperature", "0"],
        vec![
            "-n",
            "50",
            "-s",
            "5",
            "--repeat-penalty",
            "1.3",
            "--frequency-penalty",
            "0.2",
            "--presence-penalty",
            "0.1",
            "--repeat-last-n",
            "16",
            "--top-k",
            "12",
        ],
        vec![
            "-n",
            "80",
            "-s",
            "3",
            "--ignore-eos",
            "--temperature",
            "1.1",
            "--top-p",
            "0.9",
            "--min-p",
            "0.02",
        ],
        vec!["-n", "20", "-s", "9", "--no-bos", "-c", "64"],
    ]
}

#[test]
fn c_example_prints_what_llm_run_prints() {
    if !need_cc("c_example_prints_what_llm_run_prints") {
        return;
    }
    let b = build();
    let shared = compile(
        "generate_so",
        &[src("examples/generate.c")],
        Link::Shared,
        &[],
    );
    let stat = compile(
        "generate_a",
        &[src("examples/generate.c")],
        Link::Static,
        &[],
    );
    let m = models();
    let mut nonempty = 0;
    let mut stopped = 0;
    for (model, prompt) in [(&m.sp.0, SP_PROMPT), (&m.chars.0, CHAR_PROMPT)] {
        let model = model.to_str().expect("utf-8 path");
        for flags in flag_sets() {
            let mut args = vec!["-m", model, "-p", prompt];
            args.extend(&flags);
            let want = run(&b.llm_run(), &args);
            assert_ok("llm-run", &want);
            for exe in [&shared, &stat] {
                let got = run(exe, &args);
                assert_ok("generate", &got);
                assert_eq!(stdout(&got), stdout(&want), "{} {args:?}", exe.display());
            }
            let text = stdout(&want);
            nonempty += usize::from(text.trim_end_matches('\n').chars().count() > 3);

            // A stop string taken from the middle of that text.
            let chars: Vec<char> = text.trim_end_matches('\n').chars().collect();
            if chars.len() >= 8 {
                let stop: String = chars[chars.len() / 2..chars.len() / 2 + 2].iter().collect();
                let mut args = args.clone();
                args.extend(["--stop", stop.as_str()]);
                let want = run(&b.llm_run(), &args);
                assert_ok("llm-run --stop", &want);
                let got = run(&shared, &args);
                assert_ok("generate --stop", &got);
                assert_eq!(stdout(&got), stdout(&want), "{args:?}");
                assert!(
                    stdout(&got).len() < text.len(),
                    "the stop string did not stop"
                );
                stopped += 1;
            }
        }
        // The positional form: MODEL PROMPT N SEED TEMP.
        let want = run(
            &b.llm_run(),
            &[
                "-m",
                model,
                "-p",
                prompt,
                "-n",
                "25",
                "-s",
                "11",
                "--temperature",
                "0.9",
            ],
        );
        let got = run(&stat, &[model, prompt, "25", "11", "0.9"]);
        assert_ok("generate (positional)", &got);
        assert_eq!(stdout(&got), stdout(&want));
    }
    assert!(
        nonempty >= 8,
        "too few non-trivial completions ({nonempty})"
    );
    assert!(stopped >= 4, "too few stop-string runs ({stopped})");

    // Errors: one line on stderr, exit code 1, nothing on stdout.
    let bad = run(&shared, &["-m", "/nonexistent.llm", "-p", "x", "-s", "1"]);
    assert_eq!(bad.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("LLMRT_ERR_IO"));
    assert!(bad.stdout.is_empty());
}

/// Whether a CUDA GPU can run here (then the no-GPU refusals are not checked).
fn have_gpu() -> bool {
    llmrt::cuda::decoder::probe().is_ok()
}

#[test]
fn devices_through_the_c_abi() {
    if !need_cc("devices_through_the_c_abi") {
        return;
    }
    let b = build();
    let m = models();
    let chars = m.chars.0.to_str().expect("utf-8 path");
    let exe = compile("device", &[src("tests/c/device.c")], Link::Shared, &[]);
    let out = run(&exe, &[chars, CHAR_PROMPT]);
    assert_ok("device", &out);
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 4, "{text}");
    assert_eq!(lines[3], "ok");
    if !have_gpu() {
        let why = "LLMRT_ERR_DEVICE: LLMRT_DEVICE_CUDA: no CUDA GPU/driver found: ";
        assert!(lines[0].starts_with(&format!("cuda: {why}")), "{text}");
        assert!(
            lines[1].starts_with(&format!("cuda context: {why}")),
            "{text}"
        );
        assert_eq!(lines[2], "auto: cpu");
    }

    // generate.c --device: auto prints what llm-run --device cpu prints; cuda without
    // a GPU is one line on stderr and exit code 1.
    let gen = compile(
        "generate_device",
        &[src("examples/generate.c")],
        Link::Shared,
        &[],
    );
    let args = |device: &'static str| {
        vec![
            "-m",
            chars,
            "-p",
            CHAR_PROMPT,
            "-n",
            "30",
            "-s",
            "4",
            "--device",
            device,
        ]
    };
    let want = run(&b.llm_run(), &args("cpu"));
    assert_ok("llm-run --device cpu", &want);
    let got = run(&gen, &args("auto"));
    assert_ok("generate --device auto", &got);
    if !have_gpu() {
        assert_eq!(stdout(&got), stdout(&want));
        let bad = run(&gen, &args("cuda"));
        assert_eq!(bad.status.code(), Some(1));
        let err = String::from_utf8_lossy(&bad.stderr);
        let errs: Vec<&str> = err.lines().filter(|l| l.starts_with("error:")).collect();
        assert_eq!(errs.len(), 1, "{err}");
        assert!(
            errs[0].starts_with("error: --device cuda: LLMRT_DEVICE_CUDA: no CUDA GPU")
                && errs[0].ends_with("(LLMRT_ERR_DEVICE)"),
            "{err}"
        );
        assert!(bad.stdout.is_empty());
    }
    let bad = run(&gen, &args("tpu"));
    assert_eq!(bad.status.code(), Some(2), "a usage error");
}

/// Parses lines of tab-separated floats.
fn vectors(text: &str) -> Vec<Vec<f32>> {
    text.lines()
        .map(|l| {
            l.split('\t')
                .map(|v| v.parse::<f32>().expect("a float"))
                .collect()
        })
        .collect()
}

const CORPUS: &str =
    "the tea is hot\n\nhello wüld\nthe cat sat\né日本 the\n  \nhe sat on the tea\n";

#[test]
fn c_embed_example_prints_what_llm_run_prints() {
    if !need_cc("c_embed_example_prints_what_llm_run_prints") {
        return;
    }
    let b = build();
    let exe = compile("embed", &[src("examples/embed.c")], Link::Shared, &[]);
    let m = models();
    let corpus = b.scratch.join("corpus.txt");
    std::fs::write(&corpus, CORPUS).expect("corpus");
    let corpus = corpus.to_str().expect("utf-8 path");
    let n_lines = CORPUS.lines().filter(|l| !l.trim().is_empty()).count();
    for (model, o) in [&m.sp, &m.chars] {
        let model = model.to_str().expect("utf-8 path");
        for pooling in ["mean", "last", "first"] {
            for normalize in [false, true] {
                let mut args = vec![
                    "embed",
                    "-m",
                    model,
                    "-f",
                    corpus,
                    "--pooling",
                    pooling,
                    "--format",
                    "tsv",
                    "-t",
                    "1",
                ];
                let mut c_args = vec![model, corpus, pooling, "1"];
                if normalize {
                    args.push("--normalize");
                    c_args.push("--normalize");
                }
                let want = run(&b.llm_run(), &args);
                assert_ok("llm-run embed", &want);
                let got = run(&exe, &c_args);
                assert_ok("embed.c", &got);
                let (want, got) = (vectors(&stdout(&want)), vectors(&stdout(&got)));
                assert_eq!(want.len(), n_lines, "one vector per non-blank line");
                assert!(want.iter().all(|v| v.len() == o.d_model));
                // The same computation through the C ABI: the same floats.
                assert_eq!(got, want, "{pooling} normalize={normalize}");
                if normalize {
                    for v in &want {
                        let n2: f64 = v.iter().map(|x| (*x as f64).powi(2)).sum();
                        assert!((n2 - 1.0).abs() < 1e-5, "unit length: {n2}");
                    }
                }
                if pooling != "first" || model.ends_with("chars.llm") {
                    // Different texts, different vectors (first-token pooling with a
                    // BOS is the same for every text of a causal model).
                    assert_ne!(want[0], want[1], "{pooling}");
                }
            }
        }
        // JSON lines hold the same numbers.
        let json = run(
            &b.llm_run(),
            &[
                "embed", "-m", model, "-f", corpus, "--format", "json", "-t", "1",
            ],
        );
        assert_ok("llm-run embed --format json", &json);
        let tsv = run(
            &b.llm_run(),
            &[
                "embed", "-m", model, "-f", corpus, "--format", "tsv", "-t", "1",
            ],
        );
        let from_json: Vec<Vec<f32>> = stdout(&json)
            .lines()
            .map(|l| serde_json::from_str(l).expect("a JSON array"))
            .collect();
        assert_eq!(from_json, vectors(&stdout(&tsv)));

        // `similar`: lines ranked by the cosine of those mean-pooled vectors.
        let query = "the tea";
        let qfile = b.scratch.join("query.txt");
        std::fs::write(&qfile, query).expect("query");
        let qv = run(
            &b.llm_run(),
            &[
                "embed",
                "-m",
                model,
                "-f",
                qfile.to_str().expect("utf-8"),
                "--format",
                "tsv",
                "-t",
                "1",
            ],
        );
        let q = &vectors(&stdout(&qv))[0];
        let vs = vectors(&stdout(&tsv));
        let cos = |a: &[f32], b: &[f32]| {
            let dot: f64 = a.iter().zip(b).map(|(x, y)| *x as f64 * *y as f64).sum();
            let na: f64 = a.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
            let nb: f64 = b.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
            dot / (na * nb)
        };
        let lines: Vec<&str> = CORPUS.lines().filter(|l| !l.trim().is_empty()).collect();
        let mut want: Vec<(f64, &str)> = vs.iter().map(|v| cos(q, v)).zip(lines).collect();
        want.sort_by(|a, b| b.0.total_cmp(&a.0));
        let sim = run(
            &b.llm_run(),
            &[
                "similar", "-m", model, "--query", query, "-f", corpus, "-t", "1",
            ],
        );
        assert_ok("llm-run similar", &sim);
        let got: Vec<(f64, String)> = stdout(&sim)
            .lines()
            .map(|l| {
                let (s, t) = l.split_once('\t').expect("score<TAB>line");
                (s.parse().expect("score"), t.to_string())
            })
            .collect();
        assert_eq!(got.len(), want.len());
        for ((gs, gt), (ws, wt)) in got.iter().zip(&want) {
            assert!((gs - ws).abs() < 2e-6, "{gt}: {gs} vs {ws}");
            assert!(gt == wt || (gs - ws).abs() < 2e-6, "order: {gt} vs {wt}");
        }
        assert!(got.windows(2).all(|w| w[0].0 >= w[1].0), "best first");
        let top = run(
            &b.llm_run(),
            &[
                "similar", "-m", model, "--query", query, "-f", corpus, "--top", "2",
            ],
        );
        assert_eq!(stdout(&top).lines().count(), 2);
    }
    // Errors: one line, exit 1.
    let bad = run(
        &b.llm_run(),
        &["embed", "-m", "/nonexistent.llm", "-f", corpus],
    );
    assert_eq!(bad.status.code(), Some(1));
    let bad = run(&exe, &["/nonexistent.llm", corpus]);
    assert_eq!(bad.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("LLMRT_ERR_IO"));
}

#[test]
fn c_score_example_prints_what_llm_run_perplexity_prints() {
    if !need_cc("c_score_example_prints_what_llm_run_perplexity_prints") {
        return;
    }
    let b = build();
    let exe = compile("score", &[src("examples/score.c")], Link::Static, &[]);
    let m = models();
    for (model, text) in [
        (
            &m.sp.0,
            "the tea é日本 the hat, the sea. a tree on the hill",
        ),
        (
            &m.chars.0,
            "hello wüld, ß日本語 and the quiet river: it runs!",
        ),
    ] {
        let model = model.to_str().expect("utf-8 path");
        let file = b.scratch.join("score.txt");
        std::fs::write(&file, text).expect("text");
        let file = file.to_str().expect("utf-8 path");
        let ids = run(
            &b.llm_run(),
            &["tokenize", "-m", model, "--no-bos", "-p", text],
        );
        assert_ok("llm-run tokenize", &ids);
        let n = stdout(&ids).split_whitespace().count();
        assert!(n > 10, "{n} tokens");
        let want = run(
            &b.llm_run(),
            &[
                "perplexity",
                "-m",
                model,
                "-f",
                file,
                "--ctx",
                &n.to_string(),
                "-t",
                "1",
            ],
        );
        assert_ok("llm-run perplexity", &want);
        let got = run(&exe, &[model, file, "1"]);
        assert_ok("score.c", &got);
        let ppl = |o: &std::process::Output| -> f64 {
            stdout(o)
                .trim()
                .strip_prefix("perplexity: ")
                .expect("perplexity: X")
                .parse()
                .expect("a number")
        };
        let (w, g) = (ppl(&want), ppl(&got));
        // llm-run sums log-probabilities of f32 softmaxes, score.c of f64 ones; both
        // print 4 decimals.
        assert!((w - g).abs() <= 2e-4 * w.max(1.0), "{g} vs {w}");
        assert!(w > 1.0, "a random model is not certain");
    }
}

#[test]
fn c_parallel_example_prints_what_llm_run_prints_per_seed() {
    if !need_cc("c_parallel_example_prints_what_llm_run_prints_per_seed") {
        return;
    }
    let b = build();
    let exe = compile("parallel", &[src("examples/parallel.c")], Link::Shared, &[]);
    let m = models();
    // The char-level model: every token is whole characters, so the raw pieces the
    // example joins are the text llm-run's decoder prints.
    let model = m.chars.0.to_str().expect("utf-8 path");
    let mut distinct = std::collections::HashSet::new();
    for (seed, n) in [(7u64, 24), (1000, 40)] {
        let got = run(
            &exe,
            &[model, CHAR_PROMPT, &n.to_string(), &seed.to_string(), "2"],
        );
        assert_ok("parallel", &got);
        // "[s] TEXT\n" for each sequence in order, TEXT what llm-run prints (its
        // final newline aside) for the sequence's seed.
        let mut want_all = String::new();
        for s in 0..4u64 {
            let s_seed = (seed + s).to_string();
            let want = run(
                &b.llm_run(),
                &[
                    "-m",
                    model,
                    "-p",
                    CHAR_PROMPT,
                    "-n",
                    &n.to_string(),
                    "-s",
                    &s_seed,
                    "-t",
                    "1",
                ],
            );
            assert_ok("llm-run", &want);
            let want = stdout(&want);
            let text = want.strip_suffix('\n').unwrap_or(&want).to_string();
            want_all.push_str(&format!("[{s}] {text}\n"));
            distinct.insert(text);
        }
        // The batch's rows go through the matrix × matrix kernels, a lone token's
        // through the matrix × vector ones: logits equal to ~1e-6, which a seeded
        // draw crosses with negligible probability.
        assert_eq!(stdout(&got), want_all, "seed {seed}");
    }
    assert!(
        distinct.len() >= 4,
        "the sequences' seeds gave the same texts"
    );
    let bad = run(&exe, &["/nonexistent.llm", "x"]);
    assert_eq!(bad.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("LLMRT_ERR_IO"));
}

/// `key=value` pairs of api.c's info line.
fn info_pairs(out: &str) -> std::collections::HashMap<String, String> {
    out.lines()
        .next()
        .unwrap_or("")
        .split(' ')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn step_by_step_api_matches_one_call_api() {
    if !need_cc("step_by_step_api_matches_one_call_api") {
        return;
    }
    let b = build();
    let api = compile("api", &[src("tests/c/api.c")], Link::Shared, &[]);
    let m = models();
    for ((model, o), prompt, tok, dtype) in [
        (&m.sp, SP_PROMPT, "sentencepiece", "q8_0"),
        (&m.chars, CHAR_PROMPT, "char", "q4_0"),
    ] {
        let path = model.to_str().expect("utf-8 path");
        let out = run(&api, &[path, prompt]);
        assert_ok("api", &out);
        let text = stdout(&out);
        assert!(text.ends_with("ok\n"), "{text}");
        let info = info_pairs(&text);
        let want = [
            ("vocab_size", o.vocab_size.to_string()),
            ("d_model", o.d_model.to_string()),
            ("n_layers", o.n_layers.to_string()),
            ("n_heads", o.n_heads.to_string()),
            ("n_kv_heads", o.n_kv_heads.to_string()),
            ("d_ff", o.d_ff.to_string()),
            ("context_length", o.max_len.to_string()),
            ("positions", o.positions.name().to_string()),
            ("norm", o.norm.name().to_string()),
            ("mlp", o.mlp.name().to_string()),
            ("bias", u8::from(o.bias).to_string()),
            ("tied", u8::from(o.tied_embeddings).to_string()),
            ("dtype", dtype.to_string()),
            ("tokenizer", tok.to_string()),
        ];
        for (k, v) in want {
            assert_eq!(info.get(k), Some(&v), "{k} in {text}");
        }
        // Token ids as llm-run tokenizes (with the file's BOS rule).
        let ids = run(&b.llm_run(), &["tokenize", "-m", path, "-p", prompt]);
        assert_ok("llm-run tokenize", &ids);
        let line = text.lines().nth(1).unwrap_or("");
        assert_eq!(line, format!("tokens={}", stdout(&ids).trim_end()));
    }
}

#[test]
fn four_threads_share_a_model_and_cancel_works() {
    if !need_cc("four_threads_share_a_model_and_cancel_works") {
        return;
    }
    let exe = compile("threads", &[src("tests/c/threads.c")], Link::Static, &[]);
    let m = models();
    for (model, prompt) in [(&m.chars.0, CHAR_PROMPT), (&m.sp.0, SP_PROMPT)] {
        let out = run(&exe, &[model.to_str().expect("utf-8 path"), prompt, "48"]);
        assert_ok("threads", &out);
        assert_eq!(stdout(&out), "ok\n");
    }
}

#[test]
fn every_entry_point_rejects_bad_input() {
    if !need_cc("every_entry_point_rejects_bad_input") {
        return;
    }
    let b = build();
    let exe = compile("abuse", &[src("tests/c/abuse.c")], Link::Shared, &[]);
    let m = models();
    let dir = b.scratch.join("abuse-files");
    std::fs::create_dir_all(&dir).expect("scratch");
    let dir = dir.to_str().expect("utf-8 path");
    let chars = m.chars.0.to_str().expect("utf-8 path");
    let out = run(&exe, &[chars, dir, "--oom"]);
    assert_ok("abuse --oom", &out);
    assert_eq!(stdout(&out), "ok\n");
    let out = run(&exe, &[m.sp.0.to_str().expect("utf-8 path"), dir]);
    assert_ok("abuse", &out);
    assert_eq!(stdout(&out), "ok\n");
}

/// The chat template the C++ chat test gives `chat.cpp` (the test models have none):
/// its first turn is the prompt `User: LINE\nBot:`.
const CHAT_TEMPLATE: &str = "{% for m in messages %}{% if m.role == 'user' %}User: {{ m.content }}\n\
{% else %}Bot:{{ m.content }}\n{% endif %}{% endfor %}{% if add_generation_prompt %}Bot:{% endif %}";

/// Runs chat.cpp with `lines` on stdin.
fn chat(exe: &PathBuf, wrapper: Option<&[&str]>, model: &str, lines: &str) -> std::process::Output {
    use std::io::Write;
    let mut cmd = match wrapper {
        Some(w) => {
            let mut c = std::process::Command::new(w[0]);
            c.args(&w[1..]).arg(exe);
            c
        }
        None => std::process::Command::new(exe),
    };
    let mut child = cmd
        .args([model, "5", "20", CHAT_TEMPLATE])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run chat");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(lines.as_bytes())
        .expect("write stdin");
    child.wait_with_output().expect("chat output")
}

#[test]
fn cpp_chat_example_first_reply_matches_llm_run() {
    if !need_cc("cpp_chat_example_first_reply_matches_llm_run") || !have("c++") {
        return;
    }
    let b = build();
    let exe = compile("chat", &[src("examples/chat.cpp")], Link::Shared, &[]);
    let model = models().chars.0.to_str().expect("utf-8 path");
    let out = chat(&exe, None, model, "hello there\nwhat now\nbye\n");
    assert_ok("chat", &out);
    let replies = stdout(&out);
    let want = run(
        &b.llm_run(),
        &[
            "-m",
            model,
            "-p",
            "User: hello there\nBot:",
            "-n",
            "20",
            "-s",
            "5",
            "-t",
            "1",
        ],
    );
    assert_ok("llm-run", &want);
    // The first answer, then its newline, is what llm-run prints for the first turn.
    let want = stdout(&want);
    assert!(
        replies.starts_with(&want) && replies.len() > want.len(),
        "chat.cpp: {replies:?}\nllm-run: {want:?}"
    );
}

const VALGRIND: &[&str] = &[
    "valgrind",
    "--quiet",
    "--error-exitcode=1",
    "--leak-check=full",
    "--errors-for-leak-kinds=definite",
];

#[test]
fn clean_under_valgrind_memcheck() {
    if !need_cc("clean_under_valgrind_memcheck") {
        return;
    }
    if !have("valgrind") {
        skip("clean_under_valgrind_memcheck", "valgrind is not installed");
        return;
    }
    let b = build();
    let m = models();
    let sp = m.sp.0.to_str().expect("utf-8 path");
    let chars = m.chars.0.to_str().expect("utf-8 path");
    let dir = b.scratch.join("abuse-vg");
    std::fs::create_dir_all(&dir).expect("scratch");
    let dir = dir.to_str().expect("utf-8 path");
    let gen = compile(
        "generate_vg",
        &[src("examples/generate.c")],
        Link::Shared,
        &[],
    );
    let api = compile("api_vg", &[src("tests/c/api.c")], Link::Shared, &[]);
    let device = compile("device_vg", &[src("tests/c/device.c")], Link::Shared, &[]);
    let abuse = compile("abuse_vg", &[src("tests/c/abuse.c")], Link::Shared, &[]);
    let threads = compile("threads_vg", &[src("tests/c/threads.c")], Link::Shared, &[]);
    let embed = compile("embed_vg", &[src("examples/embed.c")], Link::Shared, &[]);
    let score = compile("score_vg", &[src("examples/score.c")], Link::Shared, &[]);
    let parallel = compile(
        "parallel_vg",
        &[src("examples/parallel.c")],
        Link::Shared,
        &[],
    );
    let corpus = b.scratch.join("corpus_vg.txt");
    std::fs::write(&corpus, CORPUS).expect("corpus");
    let corpus = corpus.to_str().expect("utf-8 path");
    let runs: Vec<(&PathBuf, Vec<&str>)> = vec![
        (&embed, vec![sp, corpus, "last", "--normalize", "1"]),
        (&embed, vec![chars, corpus, "mean", "2"]),
        (&score, vec![chars, corpus, "2"]),
        (&parallel, vec![chars, CHAR_PROMPT, "12", "5", "2"]),
        (&parallel, vec![sp, SP_PROMPT, "8", "3", "1"]),
        (
            &gen,
            vec![
                "-m", sp, "-p", SP_PROMPT, "-n", "24", "-s", "3", "-t", "1", "--stop", "e",
            ],
        ),
        (&api, vec![chars, CHAR_PROMPT]),
        (&api, vec![sp, SP_PROMPT]),
        (&device, vec![chars, CHAR_PROMPT]),
        (&abuse, vec![chars, dir]),
        (&threads, vec![chars, CHAR_PROMPT, "12"]),
    ];
    for (exe, args) in runs {
        let out = run_under(VALGRIND[0], &VALGRIND[1..], exe, &args);
        assert_ok(&format!("valgrind {} {args:?}", exe.display()), &out);
    }
    if have("c++") {
        let exe = compile("chat_vg", &[src("examples/chat.cpp")], Link::Shared, &[]);
        let out = chat(&exe, Some(VALGRIND), chars, "hi\nok\n");
        assert_ok("valgrind chat", &out);
    }
}

#[test]
fn clean_under_address_sanitizer() {
    if !need_cc("clean_under_address_sanitizer") {
        return;
    }
    // Is ASan available here? Try a trivial program.
    let b = build();
    let probe_src = b.scratch.join("asan_probe.c");
    std::fs::write(&probe_src, "int main(void) { return 0; }\n").expect("write probe");
    let probe = std::process::Command::new("cc")
        .args(["-fsanitize=address", "-o"])
        .arg(b.scratch.join("asan_probe"))
        .arg(&probe_src)
        .output();
    if !probe.is_ok_and(|o| o.status.success()) {
        skip(
            "clean_under_address_sanitizer",
            "cc has no -fsanitize=address",
        );
        return;
    }
    let m = models();
    let sp = m.sp.0.to_str().expect("utf-8 path");
    let chars = m.chars.0.to_str().expect("utf-8 path");
    let dir = b.scratch.join("abuse-asan");
    std::fs::create_dir_all(&dir).expect("scratch");
    let dir = dir.to_str().expect("utf-8 path");
    let flags = ["-fsanitize=address,undefined", "-fno-omit-frame-pointer"];
    let gen = compile(
        "generate_asan",
        &[src("examples/generate.c")],
        Link::Shared,
        &flags,
    );
    let api = compile("api_asan", &[src("tests/c/api.c")], Link::Shared, &flags);
    let device = compile(
        "device_asan",
        &[src("tests/c/device.c")],
        Link::Shared,
        &flags,
    );
    let abuse = compile(
        "abuse_asan",
        &[src("tests/c/abuse.c")],
        Link::Shared,
        &flags,
    );
    let threads = compile(
        "threads_asan",
        &[src("tests/c/threads.c")],
        Link::Shared,
        &flags,
    );
    let embed = compile(
        "embed_asan",
        &[src("examples/embed.c")],
        Link::Shared,
        &flags,
    );
    let score = compile(
        "score_asan",
        &[src("examples/score.c")],
        Link::Shared,
        &flags,
    );
    let parallel = compile(
        "parallel_asan",
        &[src("examples/parallel.c")],
        Link::Shared,
        &flags,
    );
    let corpus = b.scratch.join("corpus_asan.txt");
    std::fs::write(&corpus, CORPUS).expect("corpus");
    let corpus = corpus.to_str().expect("utf-8 path");
    let runs: Vec<(&PathBuf, Vec<&str>)> = vec![
        (&embed, vec![sp, corpus, "first", "--normalize", "2"]),
        (&score, vec![sp, corpus, "1"]),
        (&parallel, vec![chars, CHAR_PROMPT, "20", "9", "2"]),
        (
            &gen,
            vec![
                "-m",
                chars,
                "-p",
                CHAR_PROMPT,
                "-n",
                "40",
                "-s",
                "3",
                "-t",
                "2",
            ],
        ),
        (&api, vec![sp, SP_PROMPT]),
        (&api, vec![chars, CHAR_PROMPT]),
        (&device, vec![sp, SP_PROMPT]),
        (&abuse, vec![sp, dir]),
        (&threads, vec![chars, CHAR_PROMPT, "24"]),
    ];
    for (exe, args) in runs {
        let out = std::process::Command::new(exe)
            .args(&args)
            .env("ASAN_OPTIONS", "detect_leaks=1:abort_on_error=0:exitcode=1")
            .env("UBSAN_OPTIONS", "halt_on_error=1")
            .output()
            .expect("run");
        assert_ok(&format!("ASan {} {args:?}", exe.display()), &out);
    }
}

#[test]
fn make_install_gives_a_prefix_that_pkg_config_finds() {
    if !need_cc("make_install_gives_a_prefix_that_pkg_config_finds") {
        return;
    }
    if !have("make") || !have("pkg-config") {
        skip(
            "make_install_gives_a_prefix_that_pkg_config_finds",
            "make or pkg-config is missing",
        );
        return;
    }
    let b = build();
    let prefix = b.scratch.join("prefix");
    let target = b.dir.parent().expect("target dir");
    let mut make = std::process::Command::new("make");
    make.arg("-C")
        .arg(root().join("ffi"))
        .arg("install")
        .arg(format!("PREFIX={}", prefix.display()))
        .arg(format!("TARGET_DIR={}", target.display()))
        .arg(format!("CARGO={}", option_env!("CARGO").unwrap_or("cargo")));
    let out = make.output().expect("run make");
    assert_ok("make install", &out);
    for f in [
        "lib/libllmrt.so",
        "lib/libllmrt.a",
        "include/llmrt.h",
        "lib/pkgconfig/llmrt.pc",
    ] {
        assert!(prefix.join(f).is_file(), "{f} not installed");
    }
    // The versioned file, the SONAME link to it and the link for -lllmrt.
    let lib = prefix.join("lib");
    let so_name = soname();
    let real = format!("libllmrt.so.{}", env!("CARGO_PKG_VERSION"));
    assert!(
        lib.join(&real).is_file() && !lib.join(&real).is_symlink(),
        "{real}"
    );
    let link = |name: &str| std::fs::read_link(lib.join(name)).ok();
    assert_eq!(link(&so_name), Some(PathBuf::from(&real)));
    assert_eq!(link("libllmrt.so"), Some(PathBuf::from(&so_name)));
    if have("readelf") {
        let d = std::process::Command::new("readelf")
            .arg("-d")
            .arg(lib.join(&real))
            .output()
            .expect("readelf");
        let d = stdout(&d);
        assert!(
            d.contains(&format!("Library soname: [{so_name}]")),
            "no SONAME {so_name}:\n{d}"
        );
    }
    let header = std::fs::read(prefix.join("include/llmrt.h")).expect("installed header");
    assert_eq!(
        header,
        std::fs::read(src("include/llmrt.h")).expect("header")
    );

    // Build the example with nothing but pkg-config's flags, and run it.
    let pc = std::process::Command::new("pkg-config")
        .args(["--cflags", "--libs", "llmrt"])
        .env("PKG_CONFIG_PATH", prefix.join("lib/pkgconfig"))
        .output()
        .expect("run pkg-config");
    assert_ok("pkg-config", &pc);
    let flags = stdout(&pc);
    let exe = b.scratch.join("generate_pc");
    let cc = std::process::Command::new("cc")
        .args(["-std=c11", "-Wall", "-Wextra", "-Werror"])
        .arg(src("examples/generate.c"))
        .args(flags.split_whitespace())
        .arg(format!("-Wl,-rpath,{}", prefix.join("lib").display()))
        .arg("-o")
        .arg(&exe)
        .output()
        .expect("run cc");
    assert_ok("cc with pkg-config flags", &cc);
    if have("readelf") {
        // The program asks for the SONAME, not the unversioned name.
        let d = std::process::Command::new("readelf")
            .arg("-d")
            .arg(&exe)
            .output()
            .expect("readelf");
        assert!(
            stdout(&d).contains(&format!("Shared library: [{}]", soname())),
            "{}",
            stdout(&d)
        );
    }
    let model = models().chars.0.to_str().expect("utf-8 path");
    let args = [
        "-m",
        model,
        "-p",
        CHAR_PROMPT,
        "-n",
        "30",
        "-s",
        "17",
        "-t",
        "1",
    ];
    let want = run(&b.llm_run(), &args);
    assert_ok("llm-run", &want);
    let got = run(&exe, &args);
    assert_ok("installed generate", &got);
    assert_eq!(stdout(&got), stdout(&want));
}
