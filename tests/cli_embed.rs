//! `llm-run embed` and `llm-run similar` end to end: the printed vectors are the f64
//! reference decoder's pooled hidden states, `similar` ranks by their cosine, and bad
//! input is a one-line error.

use llm_format::{DType, Mlp, Norm, Positions};
use llmrt_suite::fixtures::*;
use llmrt_suite::reference::RefModel;
use llmrt_suite::rng::test_seed;
use std::process::{Command, Output};

fn llm_run(args: &[&str]) -> Output {
    Command::new(workspace_bin("llmrt", "llm-run"))
        .args(args)
        .output()
        .expect("run llm-run")
}

fn text(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Lines of the char test vocabulary ('!'..), one blank.
const CORPUS: &str = "HELLO?WORLD\nABC=DEF\n\n1+1=2!\nHELLO.WORLD\n";

/// f32 weights; the runtime's states are within 1e-4 of the reference's scale
/// (tests/embed.rs), and pooling adds f32 rounding at most.
const TOL: f64 = 2e-4;

#[test]
fn embed_prints_the_reference_pooled_states() {
    let o = opts(Positions::Rope, Norm::RmsNorm, Mlp::SwiGlu, false, false, 2);
    let (bytes, held) = write_model(&o, &random_weights(&o, test_seed(41)), DType::F32);
    let model = temp_file("cli_embed.llm", &bytes);
    let corpus = temp_file("cli_embed.txt", CORPUS.as_bytes());
    let (model, corpus) = (
        model.to_str().expect("utf-8"),
        corpus.to_str().expect("utf-8"),
    );
    let reference = RefModel::new(o.clone(), &held);
    let vocab: Vec<char> = (0..o.vocab_size)
        .map(|i| char::from_u32(0x21 + i as u32).expect("ascii"))
        .collect();
    let ids = |s: &str| -> Vec<u32> {
        s.chars()
            .map(|c| vocab.iter().position(|&v| v == c).expect("in vocab") as u32)
            .collect()
    };
    let lines: Vec<&str> = CORPUS.lines().filter(|l| !l.is_empty()).collect();
    for (pooling, normalize) in [("mean", true), ("last", false), ("first", true)] {
        let mut args = vec![
            "embed",
            "-m",
            model,
            "-f",
            corpus,
            "--pooling",
            pooling,
            "--cache-type",
            "f32",
        ];
        if normalize {
            args.push("--normalize");
        }
        let out = llm_run(&args);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let got: Vec<Vec<f64>> = text(&out)
            .lines()
            .map(|l| serde_json::from_str(l).expect("a JSON array"))
            .collect();
        assert_eq!(got.len(), lines.len(), "one vector per non-blank line");
        for (line, g) in lines.iter().zip(&got) {
            let h = reference.hidden(&ids(line));
            let mut want: Vec<f64> = match pooling {
                "mean" => (0..o.d_model)
                    .map(|j| h.iter().map(|r| r[j]).sum::<f64>() / h.len() as f64)
                    .collect(),
                "last" => h[h.len() - 1].clone(),
                _ => h[0].clone(),
            };
            if normalize {
                let n = want.iter().map(|v| v * v).sum::<f64>().sqrt();
                want.iter_mut().for_each(|v| *v /= n);
            }
            let scale = want.iter().fold(0f64, |m, v| m.max(v.abs()));
            let err = g
                .iter()
                .zip(&want)
                .map(|(a, b)| (a - b).abs())
                .fold(0.0, f64::max);
            assert!(err < TOL * scale, "{pooling} {line}: error {err}");
        }
    }

    // `similar` ranks by the cosine of the mean-pooled reference states.
    let query = "HELLO!WORLD";
    let out = llm_run(&[
        "similar",
        "-m",
        model,
        "--query",
        query,
        "-f",
        corpus,
        "--cache-type",
        "f32",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mean = |s: &str| -> Vec<f64> {
        let h = reference.hidden(&ids(s));
        (0..o.d_model)
            .map(|j| h.iter().map(|r| r[j]).sum::<f64>() / h.len() as f64)
            .collect()
    };
    let cos = |a: &[f64], b: &[f64]| {
        let dot: f64 = a.iter().zip(b).map(|(x, y)| x * y).sum();
        dot / (a.iter().map(|x| x * x).sum::<f64>().sqrt()
            * b.iter().map(|x| x * x).sum::<f64>().sqrt())
    };
    let q = mean(query);
    let printed: Vec<(f64, String)> = text(&out)
        .lines()
        .map(|l| {
            let (s, t) = l.split_once('\t').expect("score<TAB>line");
            (s.parse().expect("a score"), t.to_string())
        })
        .collect();
    assert_eq!(printed.len(), lines.len());
    for (s, t) in &printed {
        let want = cos(&q, &mean(t));
        assert!((s - want).abs() < 1e-4, "{t}: {s} vs {want}");
    }
    assert!(printed.windows(2).all(|w| w[0].0 >= w[1].0), "best first");
}

#[test]
fn embed_bad_input_is_a_one_line_error() {
    let o = opts(Positions::Rope, Norm::RmsNorm, Mlp::SwiGlu, false, false, 2);
    let (bytes, _) = write_model(&o, &random_weights(&o, test_seed(42)), DType::F32);
    let model = temp_file("cli_embed_bad.llm", &bytes);
    let model = model.to_str().expect("utf-8");
    let blank = temp_file("cli_embed_blank.txt", b"\n  \n");
    let long = temp_file("cli_embed_long.txt", "A".repeat(40).as_bytes());
    let good = temp_file("cli_embed_good.txt", b"ABC\n");
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec![
                "embed",
                "-m",
                "/nonexistent.llm",
                "-f",
                good.to_str().expect("utf-8"),
            ],
            "nonexistent",
        ),
        (
            vec!["embed", "-m", model, "-f", "/nonexistent.txt"],
            "nonexistent",
        ),
        (
            vec!["embed", "-m", model, "-f", blank.to_str().expect("utf-8")],
            "no non-blank line",
        ),
        (
            vec![
                "embed",
                "-m",
                model,
                "-c",
                "16",
                "-f",
                long.to_str().expect("utf-8"),
            ],
            "context",
        ),
        (
            vec![
                "similar",
                "-m",
                model,
                "--query",
                "A",
                "-f",
                "/nonexistent.txt",
            ],
            "nonexistent",
        ),
    ];
    for (args, mentions) in cases {
        let out = llm_run(&args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{err}");
        let lines: Vec<&str> = err.lines().filter(|l| l.starts_with("error:")).collect();
        assert_eq!(lines.len(), 1, "{err}");
        assert!(lines[0].contains(mentions), "{args:?}: {}", lines[0]);
    }
}
