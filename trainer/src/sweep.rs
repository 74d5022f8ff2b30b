//! `llm-train sweep`: a grid of settings over one base config, each point an ordinary
//! run folder (`OUT/<key>-<value>_...`), resumable, with its own checkpoints.
//!
//! A point is finished when its folder holds `sweep.done`; a restarted sweep skips
//! finished points and resumes the others from their newest checkpoint. After each
//! point, and at the end, the sweep prints and writes `summary.md` and `summary.csv`
//! (settings, parameters, final train and val loss, best val loss and its step,
//! median tokens/s, training time; sorted by final val loss) and `curves.png` (every
//! point's val loss against steps, labelled by its settings). Everything is rebuilt
//! from the run folders, so a restarted sweep reports the points finished before.
//! `--parallel N` runs N points at once, each in its own pool of cores ÷ N threads.

use crate::config::{ConfigArgs, TrainConfig};
use crate::plot::{self, ensure_font, read_metrics, PlotError};
use crate::train::{train, Metrics, TrainArgs, TrainError};
use plotters::prelude::*;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Instant;

/// Arguments of `llm-train sweep`.
#[derive(clap::Args, Clone, Debug)]
pub struct SweepArgs {
    /// Base config: preset, config file and `--set` overrides (as for `train`).
    #[command(flatten)]
    pub config: ConfigArgs,
    /// One axis of the grid, `KEY=V1,V2,...` (repeatable; the grid is every
    /// combination, the first axis varying slowest).
    #[arg(long = "grid", value_name = "KEY=V1,V2,...", required = true)]
    pub grid: Vec<String>,
    /// Training text or shards (as for `train`; default data/shakespeare.txt).
    #[arg(long)]
    pub data: Vec<PathBuf>,
    /// Sweep folder (default `runs/sweep-<preset>`).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Points trained at once; the cores are split between them.
    #[arg(long, default_value_t = 1)]
    pub parallel: usize,
    /// Skip the plot (summary.md and summary.csv only).
    #[arg(long)]
    pub no_plot: bool,
}

/// One point of the grid: its `key=value` settings and its run folder.
#[derive(Clone, Debug, PartialEq)]
pub struct Point {
    /// `(key, value)` per grid axis, in the axes' order.
    pub settings: Vec<(String, String)>,
    /// The run folder.
    pub dir: PathBuf,
}

impl Point {
    /// `key=value,key=value`.
    pub fn label(&self) -> String {
        let v: Vec<String> = self
            .settings
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        v.join(",")
    }
}

/// Every combination of the `--grid` axes, the first axis varying slowest.
pub fn expand(grid: &[String], out: &Path) -> Result<Vec<Point>, TrainError> {
    let mut axes = Vec::new();
    for g in grid {
        let (k, vs) = g
            .split_once('=')
            .ok_or_else(|| TrainError(format!("--grid expects KEY=V1,V2,..., got '{g}'")))?;
        let vals: Vec<String> = vs
            .split(',')
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
            .collect();
        if vals.is_empty() {
            return Err(TrainError(format!("--grid {g}: no values")));
        }
        if axes
            .iter()
            .any(|(key, _): &(String, Vec<String>)| key == k.trim())
        {
            return Err(TrainError(format!(
                "--grid: key '{}' given twice",
                k.trim()
            )));
        }
        axes.push((k.trim().to_string(), vals));
    }
    let mut points: Vec<Vec<(String, String)>> = vec![Vec::new()];
    for (k, vals) in &axes {
        points = points
            .into_iter()
            .flat_map(|p| {
                vals.iter().map(move |v| {
                    let mut q = p.clone();
                    q.push((k.clone(), v.clone()));
                    q
                })
            })
            .collect();
    }
    Ok(points
        .into_iter()
        .map(|settings| {
            let name: Vec<String> = settings
                .iter()
                .map(|(k, v)| {
                    let v: String = v
                        .chars()
                        .map(|c| {
                            if c.is_ascii_alphanumeric() || ".-+".contains(c) {
                                c
                            } else {
                                '_'
                            }
                        })
                        .collect();
                    format!("{k}-{v}")
                })
                .collect();
            Point {
                dir: out.join(name.join("_")),
                settings,
            }
        })
        .collect())
}

/// A finished (or failed) point's line of the summary, from its run folder.
#[derive(Clone, Debug, PartialEq)]
pub struct Row {
    /// `key=value,...`.
    pub label: String,
    /// The grid values, in the axes' order.
    pub values: Vec<String>,
    /// `done` or `failed: ...`.
    pub status: String,
    /// Trainable parameters.
    pub params: usize,
    /// Train loss of the last step.
    pub final_train: f64,
    /// Val loss of the last evaluation.
    pub final_val: f64,
    /// Lowest val loss and its step.
    pub best_val: (f64, u64),
    /// Median tokens/s of the steps.
    pub tokens_per_s: f64,
    /// Seconds spent in training steps (evaluations included), over every resume.
    pub train_s: f64,
    /// (step, val loss) of every evaluation, for the plot.
    pub curve: Vec<(u64, f64)>,
}

fn row(p: &Point) -> Option<Row> {
    let status = if p.dir.join("sweep.done").is_file() {
        "done".to_string()
    } else {
        let why = std::fs::read_to_string(p.dir.join("sweep.failed")).ok()?;
        format!("failed: {}", why.trim())
    };
    let cfg =
        TrainConfig::from_toml(&std::fs::read_to_string(p.dir.join("config.toml")).ok()?).ok()?;
    let m: Vec<Metrics> = read_metrics(&p.dir).unwrap_or_default();
    let tokens_per_step = (cfg.batch_size * cfg.seq() * cfg.grad_accum) as f64;
    let curve: Vec<(u64, f64)> = m
        .iter()
        .filter_map(|x| x.val_loss.map(|v| (x.step, v)))
        .collect();
    let best_val = curve
        .iter()
        .map(|&(s, v)| (v, s))
        .min_by(|a, b| a.0.total_cmp(&b.0))
        .unwrap_or((f64::NAN, 0));
    let mut tps: Vec<f64> = m.iter().map(|x| x.tokens_per_s).collect();
    tps.sort_by(f64::total_cmp);
    Some(Row {
        label: p.label(),
        values: p.settings.iter().map(|s| s.1.clone()).collect(),
        status,
        params: cfg.estimate().map_or(0, |e| e.params),
        final_train: m.last().map_or(f64::NAN, |x| x.train_loss),
        final_val: curve.last().map_or(f64::NAN, |x| x.1),
        best_val,
        tokens_per_s: tps.get(tps.len() / 2).copied().unwrap_or(f64::NAN),
        train_s: m
            .iter()
            .map(|x| tokens_per_step / x.tokens_per_s.max(1e-9))
            .sum(),
        curve,
    })
}

/// The rows of every point that finished or failed, sorted by final val loss (NaN last).
pub fn rows(points: &[Point]) -> Vec<Row> {
    let mut r: Vec<Row> = points.iter().filter_map(row).collect();
    r.sort_by(|a, b| {
        let key = |x: &Row| {
            if x.final_val.is_nan() {
                f64::INFINITY
            } else {
                x.final_val
            }
        };
        key(a).total_cmp(&key(b))
    });
    r
}

fn f4(x: f64) -> String {
    if x.is_finite() {
        format!("{x:.4}")
    } else {
        "-".into()
    }
}

/// `summary.md`: a Markdown table.
pub fn markdown(keys: &[String], rows: &[Row], total: usize) -> String {
    let mut s = format!("{} of {total} points\n\n| ", rows.len());
    for k in keys {
        let _ = write!(s, "{k} | ");
    }
    s.push_str(
        "params | final train | final val | best val (step) | tokens/s | time (s) | status |\n|",
    );
    s.push_str(&"---|".repeat(keys.len() + 7));
    s.push('\n');
    for r in rows {
        s.push_str("| ");
        for v in &r.values {
            let _ = write!(s, "{v} | ");
        }
        let _ = writeln!(
            s,
            "{:.2}M | {} | {} | {} ({}) | {:.0} | {:.1} | {} |",
            r.params as f64 / 1e6,
            f4(r.final_train),
            f4(r.final_val),
            f4(r.best_val.0),
            r.best_val.1,
            r.tokens_per_s,
            r.train_s,
            r.status
        );
    }
    s
}

/// `summary.csv`.
pub fn csv(keys: &[String], rows: &[Row]) -> String {
    let mut s = keys.join(",");
    s.push_str(",params,final_train_loss,final_val_loss,best_val_loss,best_val_step,tokens_per_s,train_seconds,status\n");
    for r in rows {
        let _ = writeln!(
            s,
            "{},{},{},{},{},{},{:.1},{:.1},{}",
            r.values.join(","),
            r.params,
            r.final_train,
            r.final_val,
            r.best_val.0,
            r.best_val.1,
            r.tokens_per_s,
            r.train_s,
            r.status.replace(',', ";")
        );
    }
    s
}

/// Every row's val loss against steps, one colour per point, labelled by its settings.
pub fn draw_curves<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    rows: &[Row],
    title: &str,
) -> Result<(), PlotError> {
    area.fill(&WHITE).map_err(plot::err)?;
    let pts = rows
        .iter()
        .flat_map(|r| r.curve.iter())
        .filter(|p| p.1.is_finite());
    let (x_max, lo, hi) = pts.fold((1u64, f64::MAX, f64::MIN), |(x, a, b), p| {
        (x.max(p.0), a.min(p.1), b.max(p.1))
    });
    if lo > hi {
        return Err(PlotError("no validation losses to plot yet".into()));
    }
    let mut chart = plot::frame(area, title)
        .build_cartesian_2d(0f64..x_max as f64, plot::padded(lo, hi))
        .map_err(plot::err)?;
    chart
        .configure_mesh()
        .x_desc("step")
        .x_label_formatter(&|x| format!("{x:.0}"))
        .y_desc("val loss")
        .draw()
        .map_err(plot::err)?;
    for (i, r) in rows.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        let c: Vec<(f64, f64)> = r
            .curve
            .iter()
            .filter(|p| p.1.is_finite())
            .map(|&(s, v)| (s as f64, v))
            .collect();
        chart
            .draw_series(LineSeries::new(c.iter().copied(), color.stroke_width(2)))
            .map_err(plot::err)?
            .label(format!("{} ({})", r.label, f4(r.final_val)))
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
        chart
            .draw_series(c.iter().map(|&p| Circle::new(p, 3, color.filled())))
            .map_err(plot::err)?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(plot::err)?;
    Ok(())
}

/// Writes (atomically) and prints the summary of what `points` hold now.
fn report(
    args: &SweepArgs,
    out: &Path,
    keys: &[String],
    points: &[Point],
) -> Result<(), TrainError> {
    let rows = rows(points);
    let md = markdown(keys, &rows, points.len());
    let write = |name: &str, bytes: &[u8]| {
        crate::checkpoint::write_atomic(&out.join(name), bytes, None)
            .map_err(|e| TrainError(e.to_string()))
    };
    write("summary.md", md.as_bytes())?;
    write("summary.csv", csv(keys, &rows).as_bytes())?;
    println!("{md}");
    if !args.no_plot && rows.iter().any(|r| !r.curve.is_empty()) {
        let png = out.join("curves.png");
        let tmp = out.join(".curves.png.tmp.png");
        {
            let root = BitMapBackend::new(&tmp, (1000, 600)).into_drawing_area();
            draw_curves(&root, &rows, &format!("val loss — {}", out.display()))
                .map_err(|e| TrainError(e.to_string()))?;
            root.present().map_err(|e| TrainError(e.to_string()))?;
        }
        std::fs::rename(&tmp, &png)?;
    }
    Ok(())
}

/// Runs the sweep; returns the final rows.
pub fn sweep(args: &SweepArgs) -> Result<Vec<Row>, TrainError> {
    if args.parallel == 0 {
        return Err(TrainError("--parallel must be at least 1".into()));
    }
    let out = args.out.clone().unwrap_or_else(|| {
        let preset = args.config.preset.as_deref().unwrap_or("tiny");
        PathBuf::from("runs").join(format!("sweep-{preset}"))
    });
    let points = expand(&args.grid, &out)?;
    let keys: Vec<String> = points[0].settings.iter().map(|s| s.0.clone()).collect();
    // Every point's config is checked before anything trains.
    let config_of = |p: &Point| {
        let mut c = args.config.clone();
        c.set
            .extend(p.settings.iter().map(|(k, v)| format!("{k}={v}")));
        c
    };
    for p in &points {
        config_of(p)
            .resolve()
            .map_err(|e| TrainError(format!("point {}: {e}", p.label())))?;
    }
    if !args.no_plot {
        ensure_font().map_err(|e| TrainError(e.to_string()))?;
    }
    std::fs::create_dir_all(&out)?;
    let todo: Vec<&Point> = points
        .iter()
        .filter(|p| !p.dir.join("sweep.done").is_file())
        .collect();
    println!(
        "sweep {}: {} points, {} finished before, {} to run, {} at a time",
        out.display(),
        points.len(),
        points.len() - todo.len(),
        todo.len(),
        args.parallel
    );
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let threads = (cores / args.parallel).max(1);
    let next = AtomicUsize::new(0);
    let lock = Mutex::new(());
    let worker = || -> Result<(), TrainError> {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .map_err(|e| TrainError(e.to_string()))?;
        loop {
            let i = next.fetch_add(1, Ordering::SeqCst);
            let Some(p) = todo.get(i) else {
                return Ok(());
            };
            let _ = std::fs::remove_file(p.dir.join("sweep.failed"));
            let resume = crate::checkpoint::list(&p.dir.join("checkpoints"))
                .last()
                .is_some();
            {
                let _g = lock.lock().unwrap_or_else(|e| e.into_inner());
                println!(
                    "[{}] {} point {} ({threads} threads)",
                    p.label(),
                    if resume { "resuming" } else { "starting" },
                    p.dir.display()
                );
            }
            let targs = TrainArgs {
                config: config_of(p),
                data: args.data.clone(),
                out: Some(p.dir.clone()),
                resume,
                quiet: true,
                export_dtype: "f32".into(),
                ..Default::default()
            };
            let t0 = Instant::now();
            let result = pool.install(|| train(&targs));
            let _g = lock.lock().unwrap_or_else(|e| e.into_inner());
            match result {
                Ok(o) => {
                    std::fs::write(p.dir.join("sweep.done"), "")?;
                    println!(
                        "[{}] done in {:.0} s, final val loss {}",
                        p.label(),
                        t0.elapsed().as_secs_f64(),
                        o.final_val_loss.map_or("-".into(), f4)
                    );
                }
                Err(e) => {
                    std::fs::create_dir_all(&p.dir)?;
                    std::fs::write(p.dir.join("sweep.failed"), e.0.lines().next().unwrap_or(""))?;
                    println!("[{}] failed: {e}", p.label());
                }
            }
            report(args, &out, &keys, &points)?;
        }
    };
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..args.parallel.min(todo.len().max(1)))
            .map(|_| s.spawn(worker))
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(TrainError("a sweep worker panicked".into())))
            })
            .collect::<Result<Vec<()>, TrainError>>()
    })?;
    report(args, &out, &keys, &points)?;
    Ok(rows(&points))
}

/// `llm-train sweep`.
pub fn run_sweep(args: SweepArgs) -> Result<(), Box<dyn std::error::Error>> {
    sweep(&args)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grid_expands_first_axis_slowest() {
        let g = ["n_layers=2,4".to_string(), "lr=3e-4, 1e-3".to_string()];
        let p = expand(&g, Path::new("s")).unwrap();
        let labels: Vec<String> = p.iter().map(Point::label).collect();
        assert_eq!(
            labels,
            [
                "n_layers=2,lr=3e-4",
                "n_layers=2,lr=1e-3",
                "n_layers=4,lr=3e-4",
                "n_layers=4,lr=1e-3"
            ]
        );
        assert_eq!(p[1].dir, Path::new("s/n_layers-2_lr-1e-3"));
        assert!(expand(&["lr".into()], Path::new("s")).is_err());
        assert!(expand(&["lr=".into()], Path::new("s")).is_err());
        assert!(expand(&["lr=1".into(), "lr=2".into()], Path::new("s")).is_err());
    }
}
