//! `llm-train lr-find`: the learning-rate range test (Smith 2015, fastai's `lr_find`).
//!
//! A fresh model of the config trains for up to `--steps` steps while the rate grows
//! exponentially from `--start-lr` to `--end-lr`, with the config's AdamW, weight decay
//! and clipping but no warm-up or decay. The loss is smoothed by an exponential moving
//! average (bias-corrected, as fastai does); the test stops when the smoothed loss
//! exceeds `--stop-factor` × its minimum (divergence) or becomes NaN. It suggests two
//! rates: where the smoothed loss falls fastest against log(lr) ("steepest"), and the
//! rate at the lowest smoothed loss, the largest before the loss turns up towards
//! divergence, ÷ 10 ("valley ÷ 10", fastai's `lr_min`). It writes `lr_find.csv` and
//! `lr_find.png` (loss against lr, log axis, both suggestions marked).

use crate::backend::{Backend, Cpu};
use crate::config::ConfigArgs;
use crate::data::Loader;
use crate::optim::{clip_grad_norm, AdamState};
use crate::plot::{self, ensure_font, err, PlotError};
use crate::train::{new_model, prepare, DataFiles, TrainArgs, TrainError};
use plotters::prelude::*;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// Arguments of `llm-train lr-find`.
#[derive(clap::Args, Clone, Debug)]
pub struct LrFindArgs {
    /// Preset, config file and `--set` overrides (as for `train`).
    #[command(flatten)]
    pub config: ConfigArgs,
    /// Training text or shards (as for `train`; default data/shakespeare.txt).
    #[arg(long)]
    pub data: Vec<PathBuf>,
    /// Folder for the tokenised data, lr_find.csv and lr_find.png (default
    /// `runs/lr-find-<preset>`).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Most steps of the ramp.
    #[arg(long, default_value_t = 200)]
    pub steps: usize,
    /// Rate of the first step.
    #[arg(long, default_value_t = 1e-5)]
    pub start_lr: f64,
    /// Rate of the last step.
    #[arg(long, default_value_t = 1.0)]
    pub end_lr: f64,
    /// Stop when the smoothed loss exceeds this multiple of its minimum.
    #[arg(long, default_value_t = 4.0)]
    pub stop_factor: f64,
    /// Weight of the past in the loss's moving average.
    #[arg(long, default_value_t = 0.9)]
    pub smoothing: f64,
    /// No plot (the CSV and the suggestions only).
    #[arg(long)]
    pub no_plot: bool,
    /// Print only the suggestions.
    #[arg(long)]
    pub quiet: bool,
}

/// What the range test measured and suggests.
#[derive(Clone, Debug)]
pub struct LrFind {
    /// (lr, raw loss, smoothed loss) per step taken.
    pub points: Vec<(f64, f64, f64)>,
    /// The rate where the smoothed loss falls fastest against log(lr).
    pub steepest: f64,
    /// The rate at the lowest smoothed loss.
    pub valley: f64,
    /// The rate at which the loss diverged, if it did.
    pub diverged_at: Option<f64>,
}

impl LrFind {
    /// `valley / 10`: the suggestion for a run's peak rate.
    pub fn valley_div10(&self) -> f64 {
        self.valley / 10.0
    }
}

/// The two suggestions from (lr, smoothed loss) points: the steepest descent of the
/// smoothed loss against ln(lr) (central differences, the first and last tenth left
/// out as noise and divergence), and the rate at the lowest smoothed loss.
pub fn suggest(points: &[(f64, f64)]) -> Option<(f64, f64)> {
    if points.len() < 5 {
        return None;
    }
    let valley = points
        .iter()
        .filter(|p| p.1.is_finite())
        .min_by(|a, b| a.1.total_cmp(&b.1))?
        .0;
    let n = points.len();
    let (lo, hi) = (n / 10 + 1, (n - n / 10).min(n - 1));
    let steepest = (lo.max(1)..hi)
        .map(|i| {
            let (a, b) = (points[i - 1], points[i + 1]);
            (points[i].0, (b.1 - a.1) / (b.0.ln() - a.0.ln()))
        })
        .filter(|p| p.1.is_finite())
        .min_by(|a, b| a.1.total_cmp(&b.1))?
        .0;
    Some((steepest, valley))
}

/// Runs the range test on the CPU backend.
pub fn lr_find(args: &LrFindArgs) -> Result<LrFind, TrainError> {
    if !(args.start_lr > 0.0 && args.end_lr > args.start_lr && args.steps >= 10) {
        return Err(TrainError(
            "lr-find needs 0 < --start-lr < --end-lr and --steps >= 10".into(),
        ));
    }
    if !(args.stop_factor > 1.0 && (0.0..1.0).contains(&args.smoothing)) {
        return Err(TrainError(
            "lr-find needs --stop-factor > 1 and --smoothing in [0, 1)".into(),
        ));
    }
    let dir = out_dir(args);
    let targs = TrainArgs {
        config: args.config.clone(),
        data: args.data.clone(),
        out: Some(dir.clone()),
        quiet: true,
        ..Default::default()
    };
    let (cfg, _) = prepare(&targs, &dir)?;
    let files: DataFiles = serde_json::from_str(&std::fs::read_to_string(dir.join("data.json"))?)
        .map_err(|e| TrainError(format!("{}/data.json: {e}", dir.display())))?;
    let (b, t) = (cfg.batch_size, cfg.seq());
    let mut data = Loader::open(&files.train, b, t, cfg.vocab_size, cfg.shuffle, cfg.seed)?;
    let be: &dyn Backend<f32> = &Cpu;
    let mut model = new_model(&cfg, None)?;
    let mut adam = AdamState::<f32>::new(model.table.total);
    let ranges = model.table.ranges();
    let ratio = (args.end_lr / args.start_lr).ln();
    let (mut avg, mut best) = (0.0f64, f64::INFINITY);
    let mut points = Vec::new();
    let mut diverged_at = None;
    for step in 0..args.steps {
        let lr = args.start_lr * (ratio * step as f64 / (args.steps - 1) as f64).exp();
        model.zero_grad();
        let mut loss = 0.0;
        for micro in 0..cfg.grad_accum {
            let batch = data.next_batch()?;
            let seed =
                cfg.seed ^ ((step as u64) << 8 | micro as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
            loss += model
                .forward(be, &batch.inputs, Some(&batch.targets), b, t, Some(seed))?
                .unwrap_or(f64::NAN)
                / cfg.grad_accum as f64;
            model.backward(be, 1.0 / cfg.grad_accum as f64)?;
        }
        if !loss.is_finite() {
            diverged_at = Some(lr);
            break;
        }
        avg = args.smoothing * avg + (1.0 - args.smoothing) * loss;
        let smooth = avg / (1.0 - args.smoothing.powi(step as i32 + 1));
        points.push((lr, loss, smooth));
        if !args.quiet {
            println!(
                "step {:>4}  lr {lr:.3e}  loss {loss:.4}  smoothed {smooth:.4}",
                step + 1
            );
        }
        if smooth > args.stop_factor * best {
            diverged_at = Some(lr);
            break;
        }
        best = best.min(smooth);
        clip_grad_norm(be, &mut model.grads, cfg.grad_clip);
        adam.update(
            be,
            &mut model.params,
            &model.grads,
            &ranges,
            lr,
            cfg.beta1,
            cfg.beta2,
            cfg.adam_eps,
            cfg.weight_decay,
        );
    }
    let smoothed: Vec<(f64, f64)> = points.iter().map(|p| (p.0, p.2)).collect();
    let (steepest, valley) = suggest(&smoothed).ok_or_else(|| {
        TrainError(format!(
            "the loss diverged after {} steps, too few to suggest a rate; lower --start-lr",
            points.len()
        ))
    })?;
    Ok(LrFind {
        points,
        steepest,
        valley,
        diverged_at,
    })
}

fn out_dir(args: &LrFindArgs) -> PathBuf {
    args.out.clone().unwrap_or_else(|| {
        let preset = args.config.preset.as_deref().unwrap_or("tiny");
        PathBuf::from("runs").join(format!("lr-find-{preset}"))
    })
}

/// Draws raw (light) and smoothed (blue) loss against lr on a log axis, with the two
/// suggestions as vertical lines.
pub fn draw<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    r: &LrFind,
    title: &str,
) -> Result<(), PlotError> {
    area.fill(&WHITE).map_err(err)?;
    let (x0, x1) = (
        r.points[0].0,
        r.points[r.points.len() - 1].0.max(r.points[0].0 * 1.01),
    );
    let ys = r
        .points
        .iter()
        .flat_map(|p| [p.1, p.2])
        .filter(|v| v.is_finite());
    let (lo, hi) = ys.fold((f64::MAX, f64::MIN), |(a, b), v| (a.min(v), b.max(v)));
    // The first loss is ln(vocab)-ish; the diverging tail may be far above it: clip there.
    let hi = hi.min(r.points[0].2 * 1.3);
    let y = plot::padded(lo, hi);
    let mut chart = plot::frame(area, title)
        .build_cartesian_2d((x0..x1).log_scale(), y.clone())
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc("learning rate")
        .x_label_formatter(&|x| format!("{x:.0e}"))
        .y_desc("loss")
        .draw()
        .map_err(err)?;
    let light = RGBColor(150, 170, 230);
    chart
        .draw_series(LineSeries::new(
            r.points.iter().map(|p| (p.0, p.1.min(y.end))),
            light,
        ))
        .map_err(err)?
        .label("loss")
        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], light));
    chart
        .draw_series(LineSeries::new(
            r.points.iter().map(|p| (p.0, p.2.min(y.end))),
            BLUE.stroke_width(2),
        ))
        .map_err(err)?
        .label("smoothed")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLUE));
    let marks = [
        (r.steepest, RED, format!("steepest {:.1e}", r.steepest)),
        (
            r.valley_div10(),
            GREEN,
            format!("valley/10 {:.1e}", r.valley_div10()),
        ),
    ];
    for (x, color, label) in marks {
        if x >= x0 && x <= x1 {
            chart
                .draw_series(LineSeries::new(
                    [(x, y.start), (x, y.end)],
                    color.stroke_width(2),
                ))
                .map_err(err)?
                .label(label)
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
        }
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(err)?;
    Ok(())
}

fn write_csv(path: &Path, r: &LrFind) -> Result<(), TrainError> {
    let mut s = String::from("lr,loss,smoothed\n");
    for p in &r.points {
        let _ = writeln!(s, "{},{},{}", p.0, p.1, p.2);
    }
    crate::checkpoint::write_atomic(path, s.as_bytes(), None).map_err(|e| TrainError(e.to_string()))
}

/// `llm-train lr-find`.
pub fn run_lr_find(args: LrFindArgs) -> Result<(), Box<dyn std::error::Error>> {
    if !args.no_plot {
        ensure_font()?;
    }
    let r = lr_find(&args)?;
    let dir = out_dir(&args);
    write_csv(&dir.join("lr_find.csv"), &r)?;
    println!(
        "{} steps from lr {:.1e}{}",
        r.points.len(),
        r.points[0].0,
        match r.diverged_at {
            Some(x) => format!("; the loss diverged at lr {x:.2e}"),
            None => format!(
                " to {:.1e} without diverging",
                r.points[r.points.len() - 1].0
            ),
        }
    );
    println!("steepest descent:   lr {:.2e}", r.steepest);
    println!(
        "lowest loss ÷ 10:   lr {:.2e}  (lowest smoothed loss at lr {:.2e})",
        r.valley_div10(),
        r.valley
    );
    if !args.no_plot {
        let png = dir.join("lr_find.png");
        let root = BitMapBackend::new(&png, (960, 560)).into_drawing_area();
        draw(&root, &r, "learning-rate range test")?;
        root.present().map_err(err)?;
        println!(
            "wrote {} and {}",
            png.display(),
            dir.join("lr_find.csv").display()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggestions_on_a_made_up_curve() {
        // Loss against ln(lr) from 1e-5 to 1: flat, a steep fall centred on 1e-3, a
        // valley at 1e-2, then a rise.
        let pts: Vec<(f64, f64)> = (0..101)
            .map(|i| {
                let x = -5.0 + 5.0 * i as f64 / 100.0; // log10 lr
                let fall = 2.0 / (1.0 + ((x + 3.0) * 4.0).exp());
                let rise = if x > -2.0 {
                    3.0 * (x + 2.0).powi(2)
                } else {
                    0.0
                };
                (10f64.powf(x), 2.0 + fall + rise)
            })
            .collect();
        let (steep, valley) = suggest(&pts).unwrap();
        assert!((steep.log10() + 3.0).abs() < 0.06, "steepest {steep}");
        assert!((valley.log10() + 2.0).abs() < 0.06, "valley {valley}");
        assert!(suggest(&pts[..3]).is_none());
    }
}
