//! Support for `tests/ffi_c.rs`: builds `libllmrt` (.so and .a) and `llm-run` with
//! the profile the tests run under, writes two random test models, and compiles and
//! runs the C and C++ programs of `ffi/` against the library.
#![allow(dead_code)]

use llm_format::{DType, Mlp, ModelOptions, Norm, Positions, TokenizerKind, TokenizerSpec};
use std::borrow::Cow;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

/// Libraries a program linked against `libllmrt.a` needs (`cargo rustc -- --print
/// native-static-libs` on Linux; the same list is in ffi/Makefile and llmrt.pc).
pub const STATIC_LIBS: &[&str] = &[
    "-lgcc_s",
    "-lutil",
    "-lrt",
    "-lpthread",
    "-lm",
    "-ldl",
    "-lc",
];

/// The shared library's SONAME, `libllmrt.so.ABI` (ffi/build.rs and ffi/Makefile:
/// the major version, or `0.MINOR` while it is 0).
pub fn soname() -> String {
    let (major, minor) = (
        env!("CARGO_PKG_VERSION_MAJOR"),
        env!("CARGO_PKG_VERSION_MINOR"),
    );
    if major == "0" {
        format!("libllmrt.so.0.{minor}")
    } else {
        format!("libllmrt.so.{major}")
    }
}

/// The workspace root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Where the built artefacts are, and a scratch directory for this test binary.
pub struct Build {
    /// `target/<profile>`: libllmrt.so, libllmrt.a, llm-run.
    pub dir: PathBuf,
    /// Scratch space for models and compiled programs.
    pub scratch: PathBuf,
}

impl Build {
    /// `llm-run`.
    pub fn llm_run(&self) -> PathBuf {
        self.dir.join("llm-run")
    }
}

/// Builds the library and `llm-run` once per test binary (the tests' own profile and
/// target directory) and returns where they are.
pub fn build() -> &'static Build {
    static BUILD: OnceLock<Build> = OnceLock::new();
    BUILD.get_or_init(|| {
        // The test executable is target/<profile>/deps/<name>.
        let exe = std::env::current_exe().expect("test executable path");
        let dir = exe
            .parent()
            .and_then(Path::parent)
            .expect("target/<profile>")
            .to_path_buf();
        let target = dir.parent().expect("target dir").to_path_buf();
        let release = dir.file_name().is_some_and(|n| n == "release");
        let cargo = option_env!("CARGO").unwrap_or("cargo");
        let mut cmd = Command::new(cargo);
        cmd.args([
            "build", "-p", "libllmrt", "-p", "llmrt", "--lib", "--bin", "llm-run",
        ])
        .env("CARGO_TARGET_DIR", &target)
        .current_dir(root());
        if release {
            cmd.arg("--release");
        }
        let out = cmd.output().expect("run cargo build");
        assert!(
            out.status.success(),
            "cargo build of libllmrt / llm-run failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        // Programs linked against libllmrt.so record its SONAME; give the loader that
        // name next to the library, as `make -C ffi` does.
        let link = dir.join(soname());
        if std::fs::read_link(&link).is_err() {
            let _ = std::fs::remove_file(&link);
            #[cfg(unix)]
            std::os::unix::fs::symlink("libllmrt.so", &link).expect("SONAME link");
        }
        let scratch = dir.join("ffi-tests").join(env!("CARGO_CRATE_NAME"));
        std::fs::create_dir_all(&scratch).expect("scratch dir");
        Build { dir, scratch }
    })
}

/// Whether `tool --version` runs.
pub fn have(tool: &str) -> bool {
    Command::new(tool)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Prints why a test is skipped.
pub fn skip(test: &str, why: &str) {
    eprintln!("SKIP {test}: {why}");
}

/// How a program links libllmrt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Link {
    /// Against libllmrt.so, found through an rpath.
    Shared,
    /// Against libllmrt.a (plus the system libraries Rust's std needs).
    Static,
}

/// Compiles `sources` (C, or C++ when the first ends in `.cpp`) with
/// `-Wall -Wextra -Werror` into `name` in the scratch directory.
pub fn compile(name: &str, sources: &[PathBuf], link: Link, extra: &[&str]) -> PathBuf {
    let b = build();
    let cpp = sources
        .first()
        .is_some_and(|s| s.extension().is_some_and(|e| e == "cpp"));
    let out = b.scratch.join(name);
    let mut cmd = Command::new(if cpp { "c++" } else { "cc" });
    cmd.args(if cpp { ["-std=c++17"] } else { ["-std=c11"] })
        .args(["-Wall", "-Wextra", "-Werror", "-O1", "-g", "-pthread"])
        .arg("-I")
        .arg(root().join("ffi/include"))
        .arg("-I")
        .arg(root().join("ffi/tests/c"))
        .args(extra)
        .args(sources)
        .arg("-o")
        .arg(&out);
    match link {
        Link::Shared => {
            cmd.arg("-L").arg(&b.dir).arg("-lllmrt");
            cmd.arg(format!("-Wl,-rpath,{}", b.dir.display()));
        }
        Link::Static => {
            cmd.arg(b.dir.join("libllmrt.a")).args(STATIC_LIBS);
        }
    }
    cmd.arg("-lm");
    let o = cmd.output().expect("run the C compiler");
    assert!(
        o.status.success(),
        "compiling {name} failed:\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    out
}

/// Path of a C/C++ source in `ffi/`.
pub fn src(rel: &str) -> PathBuf {
    root().join("ffi").join(rel)
}

/// Runs `exe args...` and returns its output.
pub fn run(exe: &Path, args: &[&str]) -> Output {
    Command::new(exe)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("run {}: {e}", exe.display()))
}

/// Runs under a wrapper (valgrind), `wrapper_args... exe args...`.
pub fn run_under(wrapper: &str, wrapper_args: &[&str], exe: &Path, args: &[&str]) -> Output {
    Command::new(wrapper)
        .args(wrapper_args)
        .arg(exe)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("run {wrapper} {}: {e}", exe.display()))
}

/// Asserts a run succeeded, showing its streams when it did not.
pub fn assert_ok(what: &str, o: &Output) {
    assert!(
        o.status.success(),
        "{what} failed ({}):\nstdout:\n{}\nstderr:\n{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
}

/// The test models: their files and options.
pub struct Models {
    /// SentencePiece vocabulary with BOS/EOS and 256 byte tokens, learned positions,
    /// LayerNorm, GELU, biases, tied output, Q8_0 matrices.
    pub sp: (PathBuf, ModelOptions),
    /// Char vocabulary with EOS and multi-byte characters, RoPE, RMSNorm, SwiGLU, GQA,
    /// untied, Q4_0 matrices.
    pub chars: (PathBuf, ModelOptions),
}

/// Writes the two test models once per test binary.
pub fn models() -> &'static Models {
    static MODELS: OnceLock<Models> = OnceLock::new();
    MODELS.get_or_init(|| {
        let dir = &build().scratch;
        let sp_tok = sentencepiece_tokenizer();
        let sp_opts = options(
            sp_tok.tokens.len(),
            Positions::Learned,
            Norm::LayerNorm,
            Mlp::Gelu,
            true,
            true,
            4,
        );
        let ch_tok = char_tokenizer();
        let ch_opts = options(
            ch_tok.tokens.len(),
            Positions::Rope,
            Norm::RmsNorm,
            Mlp::SwiGlu,
            false,
            false,
            2,
        );
        let sp = dir.join("sp.llm");
        let chars = dir.join("chars.llm");
        write_model(&sp, &sp_opts, &sp_tok, DType::Q8_0, 11);
        write_model(&chars, &ch_opts, &ch_tok, DType::Q4_0, 12);
        Models {
            sp: (sp, sp_opts),
            chars: (chars, ch_opts),
        }
    })
}

fn options(
    vocab: usize,
    positions: Positions,
    norm: Norm,
    mlp: Mlp,
    bias: bool,
    tied: bool,
    n_kv: usize,
) -> ModelOptions {
    ModelOptions {
        vocab_size: vocab,
        d_model: 64,
        n_layers: 2,
        n_heads: 4,
        n_kv_heads: n_kv,
        d_ff: 96,
        max_len: 160,
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

/// `<unk> <s> </s>`, the 256 `<0xXX>` byte tokens, then a few pieces.
fn sentencepiece_tokenizer() -> TokenizerSpec<'static> {
    let mut tokens: Vec<Cow<'static, str>> = vec!["<unk>".into(), "<s>".into(), "</s>".into()];
    tokens.extend((0..256).map(|b| Cow::Owned(format!("<0x{b:02X}>"))));
    let pieces = [
        "▁",
        "▁the",
        "▁a",
        "▁t",
        "th",
        "he",
        "e",
        "t",
        "h",
        "a",
        "o",
        "n",
        "s",
        "r",
        "i",
        "l",
        "d",
        "é",
        "ü",
        "日",
        "本",
        "▁日本",
        ".",
        ",",
        "ea",
        "▁tea",
    ];
    tokens.extend(pieces.iter().map(|p| Cow::Borrowed(*p)));
    let scores = tokens
        .iter()
        .enumerate()
        .map(|(i, t)| {
            if i < 259 {
                0.0
            } else {
                t.chars().count() as f32 - i as f32 * 1e-3
            }
        })
        .collect();
    TokenizerSpec {
        kind: TokenizerKind::SentencePiece,
        tokens,
        scores,
        merges: vec![],
        bos: Some(1),
        eos: Some(2),
        unk: Some(0),
        pad: None,
        add_bos: true,
        add_eos: false,
        token_types: Vec::new(),
        pre: None,
        add_space_prefix: true,
        lowercase: false,
        strip_accents: false,
    }
}

/// `<eos>` then single characters, some of them multi-byte.
fn char_tokenizer() -> TokenizerSpec<'static> {
    let mut tokens: Vec<Cow<'static, str>> = vec!["<eos>".into(), " ".into(), "\n".into()];
    tokens.extend(('a'..='z').map(|c| Cow::Owned(c.to_string())));
    tokens.extend(('A'..='Z').map(|c| Cow::Owned(c.to_string())));
    tokens.extend(
        [
            ".", ",", "!", "?", "'", ":", "é", "ü", "ß", "日", "本", "語", "—", "→",
        ]
        .iter()
        .map(|s| Cow::Borrowed(*s)),
    );
    TokenizerSpec {
        eos: Some(0),
        ..llmrt_suite::fixtures::char_tokenizer_of(tokens)
    }
}

/// Writes a model with weights of case `seed` (`seed ^ test_seed(0)`: exactly `seed`
/// unless `LLMRT_TEST_SEED` is set).
fn write_model(path: &Path, o: &ModelOptions, tok: &TokenizerSpec<'_>, dtype: DType, seed: u64) {
    let seed = seed ^ llmrt_suite::rng::test_seed(0);
    let w = llmrt_suite::fixtures::random_weights(o, seed);
    let (bytes, _) = llmrt_suite::fixtures::write_model_with(o, tok, &w, dtype);
    std::fs::write(path, bytes).expect("write model");
}
