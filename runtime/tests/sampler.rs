//! The sampler chain through its public API, on fresh random logits: greedy, top-k = 1,
//! truncation stages, the empirical distribution against an f64 softmax, penalties and
//! seeds.

use llmrt::sampler::{argmax, Rng, Sampler, SamplerConfig};

mod common;

/// Random logits in [-4, 4) from a generator independent of the sampler's seed:
/// case `seed` of the test's inputs (`common::test_seed`).
fn random_logits(n: usize, seed: u64) -> Vec<f32> {
    let mut rng = Rng::new(seed ^ common::test_seed(0xDEAD_BEEF));
    (0..n).map(|_| rng.next_f32() * 8.0 - 4.0).collect()
}

/// f64 softmax of `logits / t`.
fn softmax64(logits: &[f32], t: f64) -> Vec<f64> {
    let max = logits
        .iter()
        .fold(f64::NEG_INFINITY, |m, &l| m.max(l as f64 / t));
    let e: Vec<f64> = logits.iter().map(|&l| (l as f64 / t - max).exp()).collect();
    let s: f64 = e.iter().sum();
    e.iter().map(|x| x / s).collect()
}

#[test]
fn greedy_picks_the_argmax() {
    let mut s = Sampler::new(SamplerConfig::greedy(), 1000);
    for seed in 0..50 {
        let logits = random_logits(1000, seed);
        let want = logits
            .iter()
            .enumerate()
            .fold(
                (0, f32::NEG_INFINITY),
                |b, (i, &l)| if l > b.1 { (i, l) } else { b },
            )
            .0 as u32;
        assert_eq!(s.sample(&mut logits.clone(), &[]), want);
    }
    // First max on ties.
    assert_eq!(s.sample(&mut [0.5, 2.0, 2.0, 1.0], &[]), 1);
    assert_eq!(argmax(&[0.5, 2.0, 2.0]), 1);
}

#[test]
fn top_k_one_equals_greedy() {
    let cfg = SamplerConfig {
        temperature: 1.5,
        top_k: 1,
        ..SamplerConfig::default()
    };
    let mut s = Sampler::new(cfg, 500);
    let mut g = Sampler::new(SamplerConfig::greedy(), 500);
    for seed in 0..50 {
        let logits = random_logits(500, seed);
        assert_eq!(
            s.sample(&mut logits.clone(), &[]),
            g.sample(&mut logits.clone(), &[])
        );
    }
}

#[test]
fn distribution_matches_softmax() {
    // 20000 draws per case: a frequency's standard deviation is at most
    // sqrt(0.25 / 20000) = 0.0035, so 0.015 is more than 4 sigma.
    const N: usize = 20_000;
    const TOL: f64 = 0.015;
    for (t, seed) in [(1.0f32, 1u64), (0.7, 2), (1.6, 3)] {
        let logits: Vec<f32> = random_logits(8, seed).iter().map(|l| l * 0.5).collect();
        let want = softmax64(&logits, t as f64);
        let mut s = Sampler::new(SamplerConfig::pure(t, seed), logits.len());
        let mut hist = [0usize; 8];
        for _ in 0..N {
            hist[s.sample(&mut logits.clone(), &[]) as usize] += 1;
        }
        for (i, (&h, &p)) in hist.iter().zip(&want).enumerate() {
            let f = h as f64 / N as f64;
            assert!(
                (f - p).abs() < TOL,
                "T={t} token {i}: frequency {f:.4}, softmax {p:.4}"
            );
        }
    }
}

#[test]
fn truncation_stages_exclude_what_they_should() {
    // Probabilities 0.5, 0.3, 0.15, 0.05 for ids 0..4.
    let base: Vec<f32> = [0.5f64, 0.3, 0.15, 0.05]
        .iter()
        .map(|p| p.ln() as f32)
        .collect();
    for (cfg, allowed) in [
        (
            SamplerConfig {
                top_p: 0.75,
                ..SamplerConfig::pure(1.0, 9)
            },
            vec![0u32, 1],
        ),
        (
            SamplerConfig {
                min_p: 0.2,
                ..SamplerConfig::pure(1.0, 9)
            },
            vec![0, 1, 2],
        ),
        (
            SamplerConfig {
                top_k: 2,
                ..SamplerConfig::pure(3.0, 9)
            },
            vec![0, 1],
        ),
    ] {
        let mut s = Sampler::new(cfg.clone(), 4);
        let mut seen = [false; 4];
        for _ in 0..2000 {
            seen[s.sample(&mut base.clone(), &[]) as usize] = true;
        }
        for id in 0..4u32 {
            assert_eq!(
                seen[id as usize],
                allowed.contains(&id),
                "{cfg:?}: token {id}"
            );
        }
    }
}

#[test]
fn penalties_steer_away_from_history() {
    // Token 2 is the argmax; a repeat penalty on it (it is in the window) hands the pick
    // to token 0, but not when it is older than repeat_last_n.
    let logits = [2.0f32, -1.0, 2.2, 0.5];
    let cfg = SamplerConfig {
        repeat_penalty: 1.5,
        repeat_last_n: 2,
        ..SamplerConfig::greedy()
    };
    let mut s = Sampler::new(cfg.clone(), 4);
    let mut l = logits;
    assert_eq!(s.sample(&mut l, &[1, 2]), 0);
    assert!((l[2] - 2.2 / 1.5).abs() < 1e-6 && l[1] == -1.5 && l[0] == 2.0);
    let mut l = logits;
    assert_eq!(s.sample(&mut l, &[2, 1, 3]), 2);
    // Presence + frequency: two occurrences of token 2 cost 0.1·2 + 0.05.
    let cfg = SamplerConfig {
        frequency_penalty: 0.1,
        presence_penalty: 0.05,
        ..SamplerConfig::greedy()
    };
    let mut s = Sampler::new(cfg.clone(), 4);
    let mut l = logits;
    assert_eq!(s.sample(&mut l, &[2, 2]), 0);
    assert!((l[2] - 1.95).abs() < 1e-6);
}

#[test]
fn same_seed_same_tokens_different_seed_different() {
    let run = |seed: u64| {
        let mut s = Sampler::new(
            SamplerConfig {
                seed,
                repeat_penalty: 1.1,
                ..SamplerConfig::default()
            },
            300,
        );
        let mut history = Vec::new();
        for step in 0..200 {
            let mut logits = random_logits(300, step);
            // Flatten so that many tokens stay in the running.
            logits.iter_mut().for_each(|l| *l *= 0.2);
            let id = s.sample(&mut logits, &history);
            history.push(id);
        }
        history
    };
    assert_eq!(run(1234), run(1234));
    assert_ne!(run(1234), run(1235));
    // reseed restarts the stream.
    let mut a = Sampler::new(SamplerConfig::pure(1.0, 5), 50);
    let logits = random_logits(50, 77);
    let first: Vec<u32> = (0..20)
        .map(|_| a.sample(&mut logits.clone(), &[]))
        .collect();
    a.reseed(5);
    let again: Vec<u32> = (0..20)
        .map(|_| a.sample(&mut logits.clone(), &[]))
        .collect();
    assert_eq!(first, again);
}

#[test]
fn degenerate_logits_do_not_panic() {
    let mut s = Sampler::new(SamplerConfig::default(), 4);
    assert_eq!(s.sample(&mut [], &[]), 0);
    let mut l = [f32::NEG_INFINITY, f32::NEG_INFINITY, 1.0, f32::NAN];
    assert_eq!(s.sample(&mut l, &[7, 3]), 2);
    let mut l = [f32::NEG_INFINITY; 3];
    assert_eq!(s.sample(&mut l, &[]), 0);
    let mut l = [0.0, f32::INFINITY, 0.0];
    assert_eq!(s.sample(&mut l, &[]), 1);
}

/// issue 16: every out-of-range setting is refused, naming the setting; the defaults
/// and the edges of each range pass.
#[test]
fn settings_are_validated() {
    let ok = SamplerConfig::default();
    assert_eq!(ok.validate(), Ok(()));
    for edge in [
        SamplerConfig {
            temperature: 0.0,
            ..ok.clone()
        },
        SamplerConfig {
            top_p: 0.0,
            ..ok.clone()
        },
        SamplerConfig {
            top_p: 1.0,
            ..ok.clone()
        },
        SamplerConfig {
            min_p: 0.0,
            ..ok.clone()
        },
        SamplerConfig {
            min_p: 1.0,
            ..ok.clone()
        },
        SamplerConfig {
            repeat_penalty: 1e-3,
            ..ok.clone()
        },
        SamplerConfig {
            frequency_penalty: -2.0,
            ..ok.clone()
        },
    ] {
        assert_eq!(edge.validate(), Ok(()), "{edge:?}");
    }
    let bad: [(SamplerConfig, &str); 14] = [
        (
            SamplerConfig {
                temperature: f32::NAN,
                ..ok.clone()
            },
            "temperature",
        ),
        (
            SamplerConfig {
                temperature: -1.0,
                ..ok.clone()
            },
            "temperature",
        ),
        (
            SamplerConfig {
                temperature: f32::INFINITY,
                ..ok.clone()
            },
            "temperature",
        ),
        (
            SamplerConfig {
                top_p: f32::NAN,
                ..ok.clone()
            },
            "top_p",
        ),
        (
            SamplerConfig {
                top_p: 1.5,
                ..ok.clone()
            },
            "top_p",
        ),
        (
            SamplerConfig {
                top_p: -0.1,
                ..ok.clone()
            },
            "top_p",
        ),
        (
            SamplerConfig {
                min_p: f32::INFINITY,
                ..ok.clone()
            },
            "min_p",
        ),
        (
            SamplerConfig {
                min_p: 2.0,
                ..ok.clone()
            },
            "min_p",
        ),
        (
            SamplerConfig {
                repeat_penalty: 0.0,
                ..ok.clone()
            },
            "repeat_penalty",
        ),
        (
            SamplerConfig {
                repeat_penalty: -1.0,
                ..ok.clone()
            },
            "repeat_penalty",
        ),
        (
            SamplerConfig {
                repeat_penalty: f32::NAN,
                ..ok.clone()
            },
            "repeat_penalty",
        ),
        (
            SamplerConfig {
                repeat_penalty: f32::INFINITY,
                ..ok.clone()
            },
            "repeat_penalty",
        ),
        (
            SamplerConfig {
                frequency_penalty: f32::NAN,
                ..ok.clone()
            },
            "frequency_penalty",
        ),
        (
            SamplerConfig {
                presence_penalty: f32::NEG_INFINITY,
                ..ok.clone()
            },
            "presence_penalty",
        ),
    ];
    for (cfg, name) in bad {
        let e = cfg.validate().expect_err(name);
        assert_eq!(e.setting, name);
        assert!(e.to_string().starts_with(name), "{e}");
    }
    let t = llmrt::ContextParams {
        threads: llmrt::context::MAX_THREADS + 1,
        ..Default::default()
    };
    let e = t.validate().expect_err("threads");
    assert_eq!(e.setting, "threads");
    assert!(e.rule.contains(&llmrt::context::MAX_THREADS.to_string()));
    assert!(llmrt::ContextParams {
        threads: llmrt::context::MAX_THREADS,
        ..Default::default()
    }
    .validate()
    .is_ok());
}

/// issue 16: a tiny temperature (a denormal included) is greedy, not a uniform draw:
/// below `GREEDY_BELOW` the pick is the argmax whatever the seed.
#[test]
fn tiny_temperature_is_greedy() {
    for t in [1e-40f32, 1e-20, 5e-7] {
        assert!(t < llmrt::sampler::GREEDY_BELOW);
        for seed in 0..20 {
            let logits = random_logits(300, seed);
            let want = argmax(&logits) as u32;
            let mut s = Sampler::new(SamplerConfig::pure(t, seed), 300);
            assert_eq!(
                s.sample(&mut logits.clone(), &[]),
                want,
                "t {t} seed {seed}"
            );
        }
    }
}

/// Logit bias: `-inf` bans a token even when it is the argmax; a positive bias makes a
/// token the argmax; biases apply before the penalties (a banned token stays banned
/// under a repetition penalty, which would otherwise scale it); a listed id twice gets
/// both; validation refuses NaN, +inf and ids outside the vocabulary.
#[test]
fn logit_bias_bans_and_boosts() {
    for seed in 0..30 {
        let logits = random_logits(200, seed);
        let top = argmax(&logits);
        let mut l = logits.clone();
        let cfg = SamplerConfig {
            logit_bias: vec![(top as u32, f32::NEG_INFINITY)],
            ..SamplerConfig::greedy()
        };
        let got = Sampler::new(cfg, 200).sample(&mut l, &[]);
        let mut want = logits.clone();
        want[top] = f32::NEG_INFINITY;
        assert_eq!(got as usize, argmax(&want), "seed {seed}");
        // Sampled (not greedy), with a repetition penalty on the banned token: never drawn.
        let cfg = SamplerConfig {
            logit_bias: vec![(top as u32, f32::NEG_INFINITY)],
            repeat_penalty: 1.5,
            ..SamplerConfig::pure(1.0, seed)
        };
        let mut s = Sampler::new(cfg, 200);
        for _ in 0..200 {
            let mut l = logits.clone();
            assert_ne!(s.sample(&mut l, &[top as u32]) as usize, top, "seed {seed}");
        }
        // Two +5 entries for the lowest token: +10 makes it the argmax (logits in [-4, 4)).
        let low = (0..200)
            .min_by(|&a, &b| logits[a].total_cmp(&logits[b]))
            .unwrap_or(0);
        let cfg = SamplerConfig {
            logit_bias: vec![(low as u32, 5.0), (low as u32, 5.0)],
            ..SamplerConfig::greedy()
        };
        let mut l = logits.clone();
        assert_eq!(Sampler::new(cfg, 200).sample(&mut l, &[]) as usize, low);
    }
    let ok = SamplerConfig {
        logit_bias: vec![(3, f32::NEG_INFINITY), (4, -2.5)],
        ..SamplerConfig::default()
    };
    assert!(ok.validate_for_vocab(5).is_ok());
    let e = ok.validate_for_vocab(4).expect_err("id 4 outside 4 tokens");
    assert_eq!((e.setting, e.value), ("logit_bias", 4.0));
    for bad in [f32::NAN, f32::INFINITY] {
        let c = SamplerConfig {
            logit_bias: vec![(0, bad)],
            ..SamplerConfig::default()
        };
        assert_eq!(c.validate().expect_err("bad bias").setting, "logit_bias");
    }
}
