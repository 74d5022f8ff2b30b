//! `llm-run compare` end to end: the same seed gives the same samples and metrics,
//! the greedy setting is the reference decoder's greedy sequence, the mean
//! log-probability is the f64 reference's, and bad settings are one-line errors.

use llm_format::{DType, Mlp, Norm, Positions};
use llmrt_suite::fixtures::*;
use llmrt_suite::reference::RefModel;
use llmrt_suite::rng::test_seed;
use serde_json::Value;
use std::path::PathBuf;
use std::process::{Command, Output};

fn model_file(name: &str) -> (PathBuf, RefModel) {
    let o = opts(
        Positions::Learned,
        Norm::LayerNorm,
        Mlp::Gelu,
        true,
        true,
        4,
    );
    let w = random_weights(&o, test_seed(77));
    let (bytes, held) = write_model(&o, &w, DType::F32);
    (temp_file(name, &bytes), RefModel::new(o, &held))
}

fn compare(args: &[&str]) -> Output {
    Command::new(workspace_bin("llmrt", "llm-run"))
        .arg("compare")
        .args(args)
        .output()
        .expect("run llm-run compare")
}

/// The JSON report without its timings.
fn report(m: &str, n: &str, seed: &str) -> Value {
    let o = compare(&[
        "-m",
        m,
        "-p",
        "ABC",
        "-p",
        "XY",
        "--sampler",
        "temperature=0",
        "--sampler",
        "temperature=0.7,top_p=0.9",
        "--sampler",
        "temperature=1.2,top_k=20",
        "-n",
        n,
        "--samples",
        "3",
        "--seed",
        seed,
        "--format",
        "json",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let mut v: Value = serde_json::from_slice(&o.stdout).expect("json");
    for s in v["settings"].as_array_mut().expect("settings") {
        s.as_object_mut().expect("object").remove("tokens_per_s");
    }
    v
}

fn ids(sample: &Value) -> Vec<u32> {
    sample["tokens"]
        .as_array()
        .expect("tokens")
        .iter()
        .map(|t| t.as_u64().expect("id") as u32)
        .collect()
}

#[test]
fn compare_is_deterministic_for_a_seed() {
    let (m, _) = model_file("cmp-seed.llm");
    let m = m.to_str().expect("utf-8 path");
    // 60 tokens after the prompt overflow the 48-position context: the crop is covered.
    let a = report(m, "60", "5");
    assert_eq!(a, report(m, "60", "5"));
    let b = report(m, "60", "6");
    let sampled = |v: &Value| v["settings"][1]["samples"].clone();
    assert_ne!(
        sampled(&a),
        sampled(&b),
        "seeds 5 and 6 drew the same samples"
    );
    // Greedy does not depend on the seed; 3 prompts' worth of samples per setting.
    assert_eq!(
        a["settings"][0]["samples"][0]["tokens"],
        b["settings"][0]["samples"][0]["tokens"]
    );
    assert_eq!(a["settings"][2]["samples"].as_array().unwrap().len(), 6);
}

#[test]
fn greedy_and_log_probs_match_the_reference() {
    let (m, reference) = model_file("cmp-ref.llm");
    let v = report(m.to_str().expect("utf-8 path"), "40", "3");
    // The char tokenizer maps '!' + i to id i.
    let prompts: Vec<Vec<u32>> = ["ABC", "XY"]
        .iter()
        .map(|p| p.bytes().map(|b| (b - b'!') as u32).collect())
        .collect();
    for setting in v["settings"].as_array().expect("settings") {
        let (mut sum, mut n) = (0.0f64, 0usize);
        for s in setting["samples"].as_array().expect("samples") {
            let prompt = &prompts[s["prompt"].as_u64().expect("prompt") as usize];
            let gen = ids(s);
            assert_eq!(gen.len(), 40);
            if setting["sampler"] == "temperature=0" {
                assert_eq!(gen, reference.greedy(prompt, 40));
            }
            let mut all = prompt.clone();
            all.extend(&gen);
            let logits = reference.forward(&all[..all.len() - 1]);
            for (i, &t) in gen.iter().enumerate() {
                let row = &logits[prompt.len() - 1 + i];
                let mx = row.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                let z: f64 = row.iter().map(|x| (x - mx).exp()).sum();
                sum += row[t as usize] - mx - z.ln();
                n += 1;
            }
        }
        let want = sum / n as f64;
        let got = setting["mean_logprob"].as_f64().expect("mean_logprob");
        assert!(
            (got - want).abs() < 1e-3,
            "{}: mean log-prob {got} vs reference {want}",
            setting["sampler"]
        );
        // distinct and repetition are shares.
        for k in ["distinct_1", "distinct_2", "repetition_4gram"] {
            let x = setting[k].as_f64().expect(k);
            assert!((0.0..=1.0).contains(&x), "{k} = {x}");
        }
    }
}

#[test]
fn bad_settings_are_one_line_errors() {
    let (m, _) = model_file("cmp-bad.llm");
    let m = m.to_str().expect("utf-8 path");
    for (sampler, says) in [
        ("top_q=1", "unknown key 'top_q'"),
        ("temperature=hot", "not a number"),
    ] {
        let o = compare(&["-m", m, "-p", "AB", "--sampler", sampler]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{err}");
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.starts_with("error: ") && err.contains(says), "{err}");
    }
}
