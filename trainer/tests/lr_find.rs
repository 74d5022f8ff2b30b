//! `llm-train lr-find` on the bundled corpus: on `tiny`'s model shape the suggested
//! rate lies within 3× of the preset's lr, and a ramp into absurd rates stops at the
//! divergence it reports.

use llm_train::config::{ConfigArgs, TrainConfig};
use llm_train::lr_find::{lr_find, LrFindArgs};
use std::path::Path;

mod run_util;
use run_util::{corpus_bytes, scratch};

fn args(data: &Path, out: &Path, set: &[&str]) -> LrFindArgs {
    LrFindArgs {
        config: ConfigArgs {
            preset: Some("tiny".into()),
            config: None,
            set: set.iter().map(|s| s.to_string()).collect(),
        },
        data: vec![data.to_path_buf()],
        out: Some(out.to_path_buf()),
        steps: 100,
        start_lr: 1e-5,
        end_lr: 1.0,
        stop_factor: 4.0,
        smoothing: 0.9,
        no_plot: true,
        quiet: true,
    }
}

#[test]
fn lr_find_suggests_the_presets_rate_on_tiny() {
    let d = scratch("lr-find");
    let data = corpus_bytes(&d, 100_000);
    // tiny's model (4 layers × 4 heads × 128) and optimiser; shorter windows and
    // batches (32 × 4 instead of 64 × 12) keep the 100 steps to a few seconds.
    let r = lr_find(&args(
        &data,
        &d.join("run"),
        &["max_len=32", "batch_size=4"],
    ))
    .unwrap();
    let preset = TrainConfig::preset("tiny").unwrap().lr;
    let within = |x: f64, k: f64| x > preset / k && x < preset * k;
    assert!(
        within(r.valley_div10(), 3.0),
        "lowest-loss lr ÷ 10 = {:.2e}, preset lr {preset:.0e}",
        r.valley_div10()
    );
    // The steepest descent is the noisier estimate (a derivative of a smoothed,
    // noisy curve): only the order of magnitude is asserted.
    assert!(within(r.steepest, 10.0), "steepest {:.2e}", r.steepest);
    // The smoothed loss fell: from about ln(vocab) to well below it.
    let (first, low) = (
        r.points[0].2,
        r.points.iter().map(|p| p.2).fold(f64::MAX, f64::min),
    );
    assert!(first > 3.5 && low < first - 0.8, "{first} -> {low}");
}

#[test]
fn lr_find_stops_at_divergence() {
    let d = scratch("lr-find-div");
    let data = corpus_bytes(&d, 30_000);
    let mut a = args(
        &data,
        &d.join("run"),
        &[
            "d_model=32",
            "n_layers=1",
            "n_heads=2",
            "max_len=16",
            "batch_size=4",
            "grad_clip=0",
        ],
    );
    a.start_lr = 1e-3;
    a.end_lr = 1e4;
    a.steps = 60;
    let r = lr_find(&a).unwrap();
    let at = r.diverged_at.expect("rates up to 1e4 diverge");
    assert!(
        r.points.len() < 60,
        "stopped after {} steps",
        r.points.len()
    );
    assert!(
        at > r.valley,
        "diverged at {at:.2e} before the valley {:.2e}",
        r.valley
    );
}
