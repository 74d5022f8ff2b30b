//! Forward parity with llm.c: a GPT-2 checkpoint in llm.c's format (padded vocab,
//! fused qkv) and llm.c token shards go through `train --init-from llmc:`, and the
//! first step's loss equals an independent f64 GPT-2 written here straight from
//! `train_gpt2.c`'s layout, within 1e-4.

use llm_train::config::ConfigArgs;
use llm_train::data::write_shard;
use llm_train::rng::Rng;
use llm_train::train::{train, TrainArgs};
use std::path::Path;

const V: usize = 50;
const VP: usize = 64;
const C: usize = 32;
const L: usize = 2;
const NH: usize = 4;
const MAXT: usize = 16;

/// llm.c's parameter tensors, in `fill_in_parameter_sizes` order.
struct Gpt2 {
    wte: Vec<f64>,      // [VP, C]
    wpe: Vec<f64>,      // [MAXT, C]
    ln1w: Vec<f64>,     // [L, C]
    ln1b: Vec<f64>,     // [L, C]
    qkvw: Vec<f64>,     // [L, 3C, C]
    qkvb: Vec<f64>,     // [L, 3C]
    attprojw: Vec<f64>, // [L, C, C]
    attprojb: Vec<f64>, // [L, C]
    ln2w: Vec<f64>,     // [L, C]
    ln2b: Vec<f64>,     // [L, C]
    fcw: Vec<f64>,      // [L, 4C, C]
    fcb: Vec<f64>,      // [L, 4C]
    fcprojw: Vec<f64>,  // [L, C, 4C]
    fcprojb: Vec<f64>,  // [L, C]
    lnfw: Vec<f64>,     // [C]
    lnfb: Vec<f64>,     // [C]
}

impl Gpt2 {
    fn random(seed: u64) -> Gpt2 {
        let mut r = Rng::for_test(seed);
        // Values are made exactly representable in f32 so file and reference agree.
        let mut g = |n: usize, mean: f64, std: f64| -> Vec<f64> {
            (0..n)
                .map(|_| (mean + std * r.normal()) as f32 as f64)
                .collect()
        };
        Gpt2 {
            wte: g(VP * C, 0.0, 0.1),
            wpe: g(MAXT * C, 0.0, 0.05),
            ln1w: g(L * C, 1.0, 0.1),
            ln1b: g(L * C, 0.0, 0.1),
            qkvw: g(L * 3 * C * C, 0.0, 0.1),
            qkvb: g(L * 3 * C, 0.0, 0.05),
            attprojw: g(L * C * C, 0.0, 0.1),
            attprojb: g(L * C, 0.0, 0.05),
            ln2w: g(L * C, 1.0, 0.1),
            ln2b: g(L * C, 0.0, 0.1),
            fcw: g(L * 4 * C * C, 0.0, 0.1),
            fcb: g(L * 4 * C, 0.0, 0.05),
            fcprojw: g(L * C * 4 * C, 0.0, 0.1),
            fcprojb: g(L * C, 0.0, 0.05),
            lnfw: g(C, 1.0, 0.1),
            lnfb: g(C, 0.0, 0.1),
        }
    }

    fn write(&self, path: &Path) {
        let mut out = Vec::new();
        let mut h = [0i32; 256];
        h[..8].copy_from_slice(&[
            20240326,
            3,
            MAXT as i32,
            V as i32,
            L as i32,
            NH as i32,
            C as i32,
            VP as i32,
        ]);
        h.iter()
            .for_each(|x| out.extend_from_slice(&x.to_le_bytes()));
        for t in [
            &self.wte,
            &self.wpe,
            &self.ln1w,
            &self.ln1b,
            &self.qkvw,
            &self.qkvb,
            &self.attprojw,
            &self.attprojb,
            &self.ln2w,
            &self.ln2b,
            &self.fcw,
            &self.fcb,
            &self.fcprojw,
            &self.fcprojb,
            &self.lnfw,
            &self.lnfb,
        ] {
            t.iter()
                .for_each(|x| out.extend_from_slice(&(*x as f32).to_le_bytes()));
        }
        std::fs::write(path, out).unwrap();
    }
}

fn layernorm(x: &[f64], w: &[f64], b: &[f64]) -> Vec<f64> {
    let n = x.len() as f64;
    let mean = x.iter().sum::<f64>() / n;
    let var = x.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n;
    let rstd = 1.0 / (var + 1e-5).sqrt();
    x.iter()
        .enumerate()
        .map(|(i, v)| (v - mean) * rstd * w[i] + b[i])
        .collect()
}

/// `y[o] = Σ_i w[o*inp + i] x[i] + b[o]`.
fn matvec(x: &[f64], w: &[f64], b: &[f64], out: usize) -> Vec<f64> {
    let inp = x.len();
    (0..out)
        .map(|o| (0..inp).map(|i| w[o * inp + i] * x[i]).sum::<f64>() + b[o])
        .collect()
}

/// GPT-2's mean cross-entropy on one sequence, as `train_gpt2.c` computes it.
fn reference_loss(m: &Gpt2, inputs: &[u32], targets: &[u32]) -> f64 {
    let t_len = inputs.len();
    let hs = C / NH;
    let mut x: Vec<Vec<f64>> = (0..t_len)
        .map(|t| {
            (0..C)
                .map(|c| m.wte[inputs[t] as usize * C + c] + m.wpe[t * C + c])
                .collect()
        })
        .collect();
    for l in 0..L {
        let sl = |v: &Vec<f64>, n: usize| v[l * n..(l + 1) * n].to_vec();
        let qkv: Vec<Vec<f64>> = x
            .iter()
            .map(|xt| {
                let h = layernorm(xt, &sl(&m.ln1w, C), &sl(&m.ln1b, C));
                matvec(&h, &sl(&m.qkvw, 3 * C * C), &sl(&m.qkvb, 3 * C), 3 * C)
            })
            .collect();
        for t in 0..t_len {
            let mut att = vec![0.0; C];
            for h in 0..NH {
                let q = &qkv[t][h * hs..(h + 1) * hs];
                let scores: Vec<f64> = (0..=t)
                    .map(|s| {
                        let k = &qkv[s][C + h * hs..C + (h + 1) * hs];
                        q.iter().zip(k).map(|(a, b)| a * b).sum::<f64>() / (hs as f64).sqrt()
                    })
                    .collect();
                let mx = scores.iter().cloned().fold(f64::MIN, f64::max);
                let e: Vec<f64> = scores.iter().map(|s| (s - mx).exp()).collect();
                let z: f64 = e.iter().sum();
                for s in 0..=t {
                    for d in 0..hs {
                        att[h * hs + d] += e[s] / z * qkv[s][2 * C + h * hs + d];
                    }
                }
            }
            let proj = matvec(&att, &sl(&m.attprojw, C * C), &sl(&m.attprojb, C), C);
            x[t].iter_mut().zip(proj).for_each(|(a, b)| *a += b);
        }
        for xt in x.iter_mut() {
            let h = layernorm(xt, &sl(&m.ln2w, C), &sl(&m.ln2b, C));
            let f: Vec<f64> = matvec(&h, &sl(&m.fcw, 4 * C * C), &sl(&m.fcb, 4 * C), 4 * C)
                .into_iter()
                .map(|u| {
                    0.5 * u
                        * (1.0
                            + ((2.0 / std::f64::consts::PI).sqrt() * (u + 0.044715 * u.powi(3)))
                                .tanh())
                })
                .collect();
            let p = matvec(&f, &sl(&m.fcprojw, C * 4 * C), &sl(&m.fcprojb, C), C);
            xt.iter_mut().zip(p).for_each(|(a, b)| *a += b);
        }
    }
    let mut loss = 0.0;
    for t in 0..t_len {
        let h = layernorm(&x[t], &m.lnfw, &m.lnfb);
        // Logits over the real vocabulary only (llm.c ignores the padded rows).
        let logits = matvec(&h, &m.wte[..V * C], &[0.0; V], V);
        let mx = logits.iter().cloned().fold(f64::MIN, f64::max);
        let z: f64 = logits.iter().map(|v| (v - mx).exp()).sum();
        loss += -(logits[targets[t] as usize] - mx - z.ln());
    }
    loss / t_len as f64
}

#[test]
fn train_llmc_first_step_loss_matches_f64_gpt2() {
    let d = std::env::temp_dir().join(format!("llm-train-llmc-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(d.join("shards")).unwrap();
    let m = Gpt2::random(11);
    let ckpt = d.join("gpt2_tiny.bin");
    m.write(&ckpt);
    // llm.c tokenizer v2: header, then (u8 length, bytes) per token; eot is the last.
    let mut tok = Vec::new();
    let mut h = [0u32; 256];
    h[..4].copy_from_slice(&[20240328, 2, V as u32, V as u32 - 1]);
    h.iter()
        .for_each(|x| tok.extend_from_slice(&x.to_le_bytes()));
    for i in 0..V {
        tok.extend_from_slice(&[1, b'A' + i as u8]);
    }
    let tok_path = d.join("tok.bin");
    std::fs::write(&tok_path, tok).unwrap();
    let (b, t) = (3, 12);
    let mut r = Rng::for_test(5);
    let stream: Vec<u16> = (0..200).map(|_| r.below(V as u64) as u16).collect();
    write_shard(&d.join("shards/train.bin"), &stream).unwrap();
    write_shard(&d.join("shards/val.bin"), &stream[..100]).unwrap();

    let args = TrainArgs {
        config: ConfigArgs {
            preset: Some("tiny".into()),
            config: None,
            set: [
                format!("batch_size={b}"),
                format!("max_len={t}"),
                "max_steps=1".into(),
                "dropout=0".into(),
                "grad_accum=1".into(),
                "sample_len=0".into(),
                // llm.c's loader reads in order; so does this comparison.
                "shuffle=off".into(),
            ]
            .to_vec(),
        },
        data: vec![d.join("shards")],
        out: Some(d.join("run")),
        init_from: Some(format!("llmc:{}", ckpt.display())),
        init_tokenizer: Some(tok_path),
        quiet: true,
        no_export: true,
        export_dtype: "f32".into(),
        ..Default::default()
    };
    let out = train(&args).unwrap();
    let got = out.metrics[0].train_loss;
    // llm.c's loader: B·T + 1 contiguous tokens, row k = tokens[k·T .. k·T + T + 1].
    let want: f64 = (0..b)
        .map(|k| {
            let w: Vec<u32> = stream[k * t..k * t + t + 1]
                .iter()
                .map(|&x| x as u32)
                .collect();
            reference_loss(&m, &w[..t], &w[1..])
        })
        .sum::<f64>()
        / b as f64;
    assert!(want > 2.0, "reference loss {want} looks degenerate");
    assert!(
        (got - want).abs() < 1e-4,
        "trainer {got} vs f64 GPT-2 {want}"
    );
}
