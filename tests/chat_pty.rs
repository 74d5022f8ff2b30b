//! `llm-run chat` driven through a pseudo-terminal, as a person at a terminal drives
//! it (`expect`-style): answers stream while they are generated, a second turn reuses
//! the KV cache and answers what a fresh context answers for the whole conversation,
//! `/clear` starts over (the same first answer again, nothing cached), Ctrl-C stops
//! an answer without ending the program, and Ctrl-C at the prompt leaves; `/save`
//! then `/load` (after `/clear`, or in a new process) goes on with the same answer an
//! uninterrupted session gives, its prompt cached.
#![cfg(unix)]

use llm_format::{DType, Mlp, Norm, Positions};
use llmrt::chat::{builtin, ChatTemplate, Message};
use llmrt::sampler::SamplerConfig;
use llmrt::{generate, Context, ContextParams, GenerateParams, Model};
use llmrt_suite::fixtures::*;
use llmrt_suite::rng::test_seed;
use std::borrow::Cow;
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A random 2-layer model over a char vocabulary of printable ASCII and newline, with a
/// context long enough for a few ChatML turns, written to its own file `name` (tests
/// run at once, and rewriting a file that a running `llm-run` maps would break it).
fn tiny_model(name: &str) -> (PathBuf, Vec<u8>) {
    let mut tokens: Vec<Cow<'static, str>> = vec!["\n".into()];
    tokens.extend((0x20u8..0x7f).map(|b| Cow::Owned((b as char).to_string())));
    let mut o = opts(Positions::Rope, Norm::RmsNorm, Mlp::SwiGlu, false, false, 2);
    o.vocab_size = tokens.len();
    o.max_len = 1024;
    let tok = char_tokenizer_of(tokens);
    let (bytes, _) = write_model_with(&o, &tok, &random_weights(&o, test_seed(1501)), DType::F32);
    (temp_file(name, &bytes), bytes)
}

/// A child on the slave side of a pseudo-terminal, as its session leader (so the
/// terminal's Ctrl-C reaches it as SIGINT); everything it prints is collected.
struct Pty {
    child: Child,
    master: File,
    output: Arc<Mutex<Vec<u8>>>,
}

impl Pty {
    fn spawn(args: &[&str]) -> Pty {
        let (mut m, mut s) = (-1, -1);
        // SAFETY: openpty writes two descriptors; the name, termios and size are NULL.
        let r = unsafe {
            libc::openpty(
                &mut m,
                &mut s,
                std::ptr::null_mut(),
                std::ptr::null(),
                std::ptr::null(),
            )
        };
        assert_eq!(r, 0, "openpty: {}", std::io::Error::last_os_error());
        // SAFETY: both descriptors were just opened and are owned here alone.
        let (master, slave) = unsafe { (OwnedFd::from_raw_fd(m), OwnedFd::from_raw_fd(s)) };
        let io = |fd: &OwnedFd| Stdio::from(fd.try_clone().expect("dup"));
        let mut cmd = Command::new(workspace_bin("llmrt", "llm-run"));
        cmd.args(args)
            .stdin(io(&slave))
            .stdout(io(&slave))
            .stderr(io(&slave));
        // SAFETY: only async-signal-safe calls between fork and exec.
        unsafe {
            cmd.pre_exec(|| {
                if libc::setsid() < 0 || libc::ioctl(0, libc::TIOCSCTTY as _, 0) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd.spawn().expect("spawn llm-run chat");
        drop(slave);
        let master = File::from(master);
        let output = Arc::new(Mutex::new(Vec::new()));
        let (mut reader, sink) = (master.try_clone().expect("dup"), output.clone());
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            // Ends with EIO once the child has gone.
            while let Ok(n) = reader.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        });
        Pty {
            child,
            master,
            output,
        }
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.output.lock().unwrap()).into_owned()
    }

    fn send(&mut self, s: &str) {
        self.master.write_all(s.as_bytes()).expect("write to pty");
    }

    /// Waits until the output after byte `from` holds `pat` and returns where it ends.
    fn wait_for(&self, from: usize, pat: &str) -> usize {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let t = self.text();
            if let Some(i) = t.get(from..).and_then(|s| s.find(pat)) {
                return from + i + pat.len();
            }
            assert!(
                Instant::now() < deadline,
                "no {pat:?} after byte {from} in:\n{t}"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn wait_exit(&mut self) -> std::process::ExitStatus {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(s) = self.child.try_wait().expect("wait") {
                return s;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("llm-run chat did not exit:\n{}", self.text());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// One turn: types `line`, waits for the statistics line, returns the answer as the
/// terminal shows it (after the echoed line, before the statistics) and the
/// numbers of new and cached prompt tokens.
fn turn(p: &mut Pty, from: &mut usize, line: &str) -> (String, usize, usize) {
    *from = p.wait_for(*from, "> ");
    p.send(&format!("{line}\n"));
    let start = p.wait_for(*from, &format!("{line}\r\n"));
    let end = p.wait_for(start, " cached]");
    let t = p.text();
    let stats_at = t[..end].rfind("\r\n[").expect("statistics line");
    let stats = &t[stats_at + 3..end];
    let num = |key: &str| -> usize {
        let s = &stats[..stats.find(key).expect(key)];
        s.rsplit(' ').next().unwrap_or(s).parse().expect(key)
    };
    let answer = t[start..stats_at].to_string();
    *from = end;
    (answer, num(" new"), num(" cached"))
}

#[test]
fn chat_streams_keeps_the_cache_clears_and_survives_ctrl_c() {
    let (path, bytes) = tiny_model("chat_pty_ctrl_c.llm");
    let model = path.to_str().expect("utf-8 path");
    let flags = [
        "chat",
        "-m",
        model,
        "--chat-template",
        "chatml",
        "--temperature",
        "0",
        "-t",
        "1",
    ];

    // Three turns and a /clear, answers of 30 tokens.
    let mut p = Pty::spawn(&[&flags[..], &["-n", "30"]].concat());
    let mut at = 0;
    let (a1, new1, cached1) = turn(&mut p, &mut at, "hi there");
    assert_eq!(cached1, 0, "nothing is cached before the first turn");
    assert!(!a1.trim().is_empty(), "an answer");
    let (a2, new2, cached2) = turn(&mut p, &mut at, "tell me more");
    assert!(
        cached2 > new1 / 2,
        "the second turn reuses the first ({cached2} cached, {new2} new)"
    );
    at = p.wait_for(at, "> ");
    p.send("/clear\n");
    at = p.wait_for(at, "(conversation cleared)");
    let (a3, _, cached3) = turn(&mut p, &mut at, "hi there");
    assert_eq!(cached3, 0, "/clear empties the cache");
    assert_eq!(a3, a1, "after /clear the first answer comes again");
    p.send("/exit\n");
    assert!(p.wait_exit().success(), "{}", p.text());

    // The cached second turn answered what a fresh context answers for the whole
    // conversation (greedy), as the terminal shows it (\n as \r\n).
    let m = Arc::new(Model::from_bytes(&bytes).expect("load"));
    let t = ChatTemplate::new(builtin::CHATML, None, None).expect("template");
    let first = a1.replace("\r\n", "\n");
    let conv = [
        Message::new("user", "hi there"),
        Message::new("assistant", first.as_str()),
        Message::new("user", "tell me more"),
    ];
    let ids = t.tokenize(&m.tokenizer, &conv, true).expect("tokenize");
    assert_eq!(ids.len(), new2 + cached2, "the prompt of turn 2");
    let mut ctx = Context::new(
        m.clone(),
        &ContextParams {
            n_ctx: 0,
            n_batch: 64,
            threads: 1,
            // What llm-run chat uses by default.
            cache_type: llmrt::CacheType::F16,
            n_seq: 1,
            f16_exact: false,
        },
    )
    .expect("context");
    let gp = GenerateParams {
        max_tokens: 30,
        sampler: SamplerConfig {
            temperature: 0.0,
            ..SamplerConfig::default()
        },
        ..GenerateParams::default()
    };
    let g = generate(&mut ctx, &ids, &gp, &mut |_| true).expect("generate");
    assert_eq!(a2.replace("\r\n", "\n"), g.text, "turn 2 with the cache");

    // Ctrl-C during a long answer stops it, and the chat goes on; at the prompt it leaves.
    let mut p = Pty::spawn(&[&flags[..], &["-n", "100000000"]].concat());
    let mut at = p.wait_for(0, "> ");
    p.send("go on\n");
    let start = p.wait_for(at, "go on\r\n");
    // Streaming: text arrives while the answer is still being generated.
    let deadline = Instant::now() + Duration::from_secs(60);
    while p.text().len() < start + 40 {
        assert!(Instant::now() < deadline, "no streamed text:\n{}", p.text());
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(
        !p.text()[start..].contains(" cached]"),
        "the answer is still running"
    );
    p.send("\x03");
    at = p.wait_for(start, "(stopped)");
    at = p.wait_for(at, " cached]");
    at = p.wait_for(at, "> ");
    p.send("/clear\n");
    at = p.wait_for(at, "(conversation cleared)");
    p.wait_for(at, "> ");
    std::thread::sleep(Duration::from_millis(100));
    p.send("\x03");
    let status = p.wait_exit();
    assert_eq!(
        status.code(),
        Some(130),
        "Ctrl-C at the prompt leaves: {}",
        p.text()
    );
}

/// Waits for the prompt, sends `line` and returns the first line that starts with
/// `(` or `error:` after it, and where the output then is.
fn command(p: &mut Pty, from: &mut usize, line: &str) -> String {
    *from = p.wait_for(*from, "> ");
    p.send(&format!("{line}\n"));
    let start = p.wait_for(*from, &format!("{line}\r\n"));
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let t = p.text();
        if let Some(end) = t[start..].find("\r\n") {
            *from = start + end + 2;
            return t[start..start + end].to_string();
        }
        assert!(Instant::now() < deadline, "no reply to {line}:\n{t}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn save_clear_load_goes_on_where_it_was() {
    let (path, _) = tiny_model("chat_pty_save.llm");
    let model = path.to_str().expect("utf-8 path");
    let state = path.with_file_name("chat_pty_save.state");
    let state_s = state.to_str().expect("utf-8 path");
    let flags = [
        "chat",
        "-m",
        model,
        "--chat-template",
        "chatml",
        "--temperature",
        "0",
        "-t",
        "1",
        "-n",
        "30",
    ];
    let mut p = Pty::spawn(&flags);
    let mut at = 0;
    let (a1, _, _) = turn(&mut p, &mut at, "hi there");
    let saved = command(&mut p, &mut at, &format!("/save {state_s}"));
    assert!(saved.starts_with("(saved 2 messages"), "{saved}");
    // The uninterrupted second turn.
    let (a2, new2, cached2) = turn(&mut p, &mut at, "tell me more");
    assert!(cached2 > new2, "{cached2} cached, {new2} new");
    at = p.wait_for(at, "> ");
    p.send("/clear\n");
    at = p.wait_for(at, "(conversation cleared)");
    // Errors are one line and the chat goes on.
    let e = command(&mut p, &mut at, "/load /no/such/state");
    assert!(
        e.starts_with("error: /load: ") && e.contains("/no/such/state"),
        "{e}"
    );
    let e = command(&mut p, &mut at, "/save /no/such/dir/state");
    assert!(e.starts_with("error: /save: "), "{e}");
    let e = command(&mut p, &mut at, "/load");
    assert!(e.starts_with("error: "), "{e}");
    let loaded = command(&mut p, &mut at, &format!("/load {state_s}"));
    assert!(loaded.starts_with("(loaded 2 messages"), "{loaded}");
    let (b2, new, cached) = turn(&mut p, &mut at, "tell me more");
    assert_eq!(
        b2, a2,
        "after /clear and /load the second answer is the same"
    );
    assert_eq!((new, cached), (new2, cached2), "the loaded cache is used");
    p.send("/exit\n");
    assert!(p.wait_exit().success(), "{}", p.text());
    assert!(!p.text().contains("panicked"), "{}", p.text());

    // The transcript beside the state holds the conversation as saved.
    let json = state.with_file_name("chat_pty_save.state.json");
    let doc: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&json).expect("transcript")).expect("json");
    let first = a1.replace("\r\n", "\n");
    assert_eq!(
        doc["messages"],
        serde_json::json!([
            { "role": "user", "content": "hi there" },
            { "role": "assistant", "content": first },
        ])
    );

    // In a new process: the same second answer, its prompt cached as before.
    let mut p = Pty::spawn(&flags);
    let mut at = 0;
    let loaded = command(&mut p, &mut at, &format!("/load {state_s}"));
    assert!(loaded.starts_with("(loaded 2 messages"), "{loaded}");
    let (c2, new, cached) = turn(&mut p, &mut at, "tell me more");
    assert_eq!(c2, a2, "a new process after /load answers the same");
    assert_eq!((new, cached), (new2, cached2), "the loaded cache is used");
    // Another cache type cannot load this state: one line, and the chat goes on.
    p.send("/exit\n");
    assert!(p.wait_exit().success(), "{}", p.text());
    let mut p = Pty::spawn(&[&flags[..], &["--cache-type", "f32"]].concat());
    let mut at = 0;
    let e = command(&mut p, &mut at, &format!("/load {state_s}"));
    assert!(
        e.starts_with("error: /load: ") && e.contains("cache type"),
        "{e}"
    );
    let (_, _, cached) = turn(&mut p, &mut at, "tell me more");
    assert_eq!(cached, 0, "a failed /load leaves the context empty");
    p.send("/exit\n");
    assert!(p.wait_exit().success(), "{}", p.text());
}

fn llm_run(args: &[&str]) -> std::process::Output {
    Command::new(workspace_bin("llmrt", "llm-run"))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run llm-run")
}

#[test]
fn one_turn_chat_and_missing_template_errors() {
    let (path, bytes) = tiny_model("chat_pty_one_turn.llm");
    let model = path.to_str().expect("utf-8 path");
    let common = ["-m", model, "--temperature", "0", "-n", "12", "-t", "1"];
    // -p TEXT --chat is the rendered conversation, given as ids.
    let chat = llm_run(
        &[
            &common[..],
            &[
                "-p",
                "hi",
                "--chat",
                "--system",
                "Be brief.",
                "--chat-template",
                "llama3",
            ],
        ]
        .concat(),
    );
    assert!(
        chat.status.success(),
        "{}",
        String::from_utf8_lossy(&chat.stderr)
    );
    let m = Model::from_bytes(&bytes).expect("load");
    let t = ChatTemplate::for_model(&m, Some("llama3")).expect("template");
    let conv = [
        Message::new("system", "Be brief."),
        Message::new("user", "hi"),
    ];
    let ids: Vec<String> = t
        .tokenize(&m.tokenizer, &conv, true)
        .expect("tokenize")
        .iter()
        .map(|i| i.to_string())
        .collect();
    let plain = llm_run(&[&common[..], &["--prompt-ids", &ids.join(" ")]].concat());
    assert!(plain.status.success());
    assert_eq!(chat.stdout, plain.stdout);

    // No template in the file and none named: one line saying what to do, exit 1.
    for args in [
        vec!["chat", "-m", model],
        vec!["-m", model, "-p", "hi", "--chat"],
    ] {
        let o = llm_run(&args);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{err}");
        let lines: Vec<&str> = err.lines().filter(|l| l.starts_with("error:")).collect();
        assert_eq!(lines.len(), 1, "{err}");
        assert!(
            lines[0].contains("no chat template") && lines[0].contains("--chat-template"),
            "{err}"
        );
        assert!(!err.contains("panicked"), "{err}");
    }
    let o = llm_run(&[
        "chat",
        "-m",
        model,
        "--chat-template",
        "/no/such/file.jinja",
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        o.status.code() == Some(1) && err.contains("nor a readable file"),
        "{err}"
    );
    let bad = temp_file("bad.jinja", b"{% for %}");
    let o = llm_run(&[
        "chat",
        "-m",
        model,
        "--chat-template",
        bad.to_str().expect("utf-8"),
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        o.status.code() == Some(1) && err.contains("chat template:"),
        "{err}"
    );
}
