//! `llm-train plot`: train and validation loss against steps, as a PNG (plotters).
//!
//! Text needs a TrueType font: `LLM_TRAIN_FONT`, else DejaVu / Liberation / Arial from
//! the usual system folders; without one the error says so.

use crate::train::Metrics;
use plotters::coord::Shift;
use plotters::prelude::*;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// A plotting problem.
#[derive(Debug)]
pub struct PlotError(pub String);

impl std::fmt::Display for PlotError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "plot: {}", self.0)
    }
}

impl std::error::Error for PlotError {}

const FONT_PATHS: [&str; 7] = [
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
    "/System/Library/Fonts/Supplemental/Arial.ttf",
    "/Library/Fonts/Arial.ttf",
    "C:\\Windows\\Fonts\\arial.ttf",
];

/// Registers a system font as `sans-serif` once; the path used, or an error.
pub fn ensure_font() -> Result<PathBuf, PlotError> {
    static FONT: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    FONT.get_or_init(|| {
        let env = std::env::var_os("LLM_TRAIN_FONT").map(PathBuf::from);
        let candidates = env.into_iter().chain(FONT_PATHS.iter().map(PathBuf::from));
        for p in candidates {
            let Ok(bytes) = std::fs::read(&p) else {
                continue;
            };
            // plotters keeps fonts for the whole process: leak one copy, once.
            let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
            if plotters::style::register_font("sans-serif", FontStyle::Normal, bytes).is_ok() {
                return Ok(p);
            }
        }
        Err("no TrueType font found; set LLM_TRAIN_FONT=/path/to/font.ttf".into())
    })
    .clone()
    .map_err(PlotError)
}

/// A plotters error as a [`PlotError`].
pub(crate) fn err<E: std::fmt::Display>(e: E) -> PlotError {
    PlotError(e.to_string())
}

/// Every line chart's frame, declared once: the title, margins and label areas.
pub(crate) fn frame<'a, 'b, DB: DrawingBackend>(
    area: &'a DrawingArea<DB, Shift>,
    title: &str,
) -> ChartBuilder<'a, 'b, DB> {
    let mut b = ChartBuilder::on(area);
    b.caption(title, ("sans-serif", 22))
        .margin(12)
        .margin_right(30)
        .x_label_area_size(40)
        .y_label_area_size(55);
    b
}

/// `lo..hi` widened by 5% of its span on each side (at least 1e-3), for a loss axis.
pub(crate) fn padded(lo: f64, hi: f64) -> std::ops::Range<f64> {
    let pad = ((hi - lo) * 0.05).max(1e-3);
    (lo - pad)..(hi + pad)
}

/// Draws the train loss (blue) and validation loss (red) of `metrics` on `area`.
pub fn draw_losses<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    metrics: &[Metrics],
    title: &str,
) -> Result<(), PlotError> {
    if metrics.is_empty() {
        return Err(PlotError("no metrics to plot".into()));
    }
    area.fill(&WHITE).map_err(err)?;
    let x_max = metrics.iter().map(|m| m.step).max().unwrap_or(1).max(1) as f64;
    let finite = metrics
        .iter()
        .flat_map(|m| [Some(m.train_loss), m.val_loss])
        .flatten()
        .filter(|v| v.is_finite());
    let (lo, hi) = finite.fold((f64::MAX, f64::MIN), |(a, b), v| (a.min(v), b.max(v)));
    let (lo, hi) = if lo <= hi { (lo, hi) } else { (0.0, 1.0) };
    let mut chart = frame(area, title)
        .build_cartesian_2d(0f64..x_max, padded(lo, hi))
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc("step")
        .x_label_formatter(&|x| format!("{x:.0}"))
        .y_desc("loss")
        .draw()
        .map_err(err)?;
    let train = metrics
        .iter()
        .filter(|m| m.train_loss.is_finite())
        .map(|m| (m.step as f64, m.train_loss));
    chart
        .draw_series(LineSeries::new(train, &BLUE))
        .map_err(err)?
        .label("train")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLUE));
    let val: Vec<(f64, f64)> = metrics
        .iter()
        .filter_map(|m| {
            m.val_loss
                .filter(|v| v.is_finite())
                .map(|v| (m.step as f64, v))
        })
        .collect();
    if !val.is_empty() {
        chart
            .draw_series(LineSeries::new(val.iter().copied(), RED.stroke_width(2)))
            .map_err(err)?
            .label("validation")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], RED));
        chart
            .draw_series(val.iter().map(|&p| Circle::new(p, 3, RED.filled())))
            .map_err(err)?;
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(err)?;
    Ok(())
}

/// Reads `metrics.jsonl` of a run folder.
pub fn read_metrics(run: &Path) -> Result<Vec<Metrics>, PlotError> {
    let path = run.join("metrics.jsonl");
    let text = std::fs::read_to_string(&path)
        .map_err(|e| PlotError(format!("cannot read {}: {e}", path.display())))?;
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            serde_json::from_str(l)
                .map_err(|e| PlotError(format!("{} line {}: {e}", path.display(), i + 1)))
        })
        .collect()
}

/// Draws several runs on one plot: each run's val loss (thick, with points) and train
/// loss (thin, light) in its own colour, labelled by `name`.
pub fn draw_overlay<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    runs: &[(String, Vec<Metrics>)],
    title: &str,
) -> Result<(), PlotError> {
    let all = runs.iter().flat_map(|r| r.1.iter());
    let x_max = all.clone().map(|m| m.step).max().unwrap_or(0).max(1) as f64;
    let finite = all
        .flat_map(|m| [Some(m.train_loss), m.val_loss])
        .flatten()
        .filter(|v| v.is_finite());
    let (lo, hi) = finite.fold((f64::MAX, f64::MIN), |(a, b), v| (a.min(v), b.max(v)));
    if lo > hi {
        return Err(PlotError("no metrics to plot".into()));
    }
    area.fill(&WHITE).map_err(err)?;
    let mut chart = frame(area, title)
        .build_cartesian_2d(0f64..x_max, padded(lo, hi))
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc("step")
        .x_label_formatter(&|x| format!("{x:.0}"))
        .y_desc("loss")
        .draw()
        .map_err(err)?;
    for (i, (name, m)) in runs.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        let train = m
            .iter()
            .filter(|m| m.train_loss.is_finite())
            .map(|m| (m.step as f64, m.train_loss));
        chart
            .draw_series(LineSeries::new(train, color.mix(0.35)))
            .map_err(err)?
            .label(format!("{name} train"))
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.mix(0.35)));
        let val: Vec<(f64, f64)> = m
            .iter()
            .filter_map(|m| {
                m.val_loss
                    .filter(|v| v.is_finite())
                    .map(|v| (m.step as f64, v))
            })
            .collect();
        chart
            .draw_series(LineSeries::new(val.iter().copied(), color.stroke_width(2)))
            .map_err(err)?
            .label(format!("{name} val"))
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
        chart
            .draw_series(val.iter().map(|&p| Circle::new(p, 3, color.filled())))
            .map_err(err)?;
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(err)?;
    Ok(())
}

/// Arguments of `llm-train plot`.
#[derive(clap::Args, Clone, Debug)]
pub struct PlotArgs {
    /// A run folder (reads metrics.jsonl); repeat to overlay several runs.
    #[arg(long, required = true)]
    pub run: Vec<PathBuf>,
    /// Output PNG (default RUN/loss.png for one run, loss-compare.png for several).
    #[arg(long, short)]
    pub out: Option<PathBuf>,
}

/// `llm-train plot`.
pub fn run_plot(args: PlotArgs) -> Result<(), Box<dyn std::error::Error>> {
    ensure_font()?;
    let runs: Vec<(String, Vec<Metrics>)> = args
        .run
        .iter()
        .map(|r| Ok((r.display().to_string(), read_metrics(r)?)))
        .collect::<Result<_, PlotError>>()?;
    let out = args.out.unwrap_or_else(|| match args.run.as_slice() {
        [one] => one.join("loss.png"),
        _ => PathBuf::from("loss-compare.png"),
    });
    let root = BitMapBackend::new(&out, (960, 560)).into_drawing_area();
    match runs.as_slice() {
        [(name, metrics)] => draw_losses(&root, metrics, &format!("loss — {name}"))?,
        _ => draw_overlay(&root, &runs, "loss")?,
    }
    root.present().map_err(err)?;
    println!("wrote {}", out.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(step: u64, train: f64, val: Option<f64>) -> Metrics {
        Metrics {
            step,
            train_loss: train,
            val_loss: val,
            lr: 1e-3,
            grad_norm: 1.0,
            tokens_per_s: 1.0,
            elapsed_s: 0.0,
        }
    }

    #[test]
    fn draws_both_curves() {
        if ensure_font().is_err() {
            // No font on this machine: the command reports it (checked here) instead of drawing.
            assert!(ensure_font().unwrap_err().0.contains("LLM_TRAIN_FONT"));
            return;
        }
        let metrics: Vec<Metrics> = (1..=100)
            .map(|s| {
                m(
                    s,
                    4.0 - s as f64 * 0.02,
                    (s % 25 == 0).then_some(3.9 - s as f64 * 0.018),
                )
            })
            .collect();
        let (w, h) = (400u32, 300u32);
        let mut buf = vec![0u8; (w * h * 3) as usize];
        {
            let root = BitMapBackend::with_buffer(&mut buf, (w, h)).into_drawing_area();
            draw_losses(&root, &metrics, "t").unwrap();
            root.present().unwrap();
        }
        let px: Vec<&[u8]> = buf.chunks(3).collect();
        let blue = px
            .iter()
            .filter(|p| p[2] > 200 && p[0] < 60 && p[1] < 60)
            .count();
        let red = px
            .iter()
            .filter(|p| p[0] > 200 && p[1] < 60 && p[2] < 60)
            .count();
        let white = px.iter().filter(|p| p.iter().all(|&c| c > 250)).count();
        assert!(blue > 40 && red > 40, "blue {blue} red {red}");
        assert!(white > px.len() / 2);
        assert!(draw_losses(
            &BitMapBackend::with_buffer(&mut buf, (w, h)).into_drawing_area(),
            &[],
            "t"
        )
        .is_err());
        // Two runs overlaid: each run's colour appears.
        let other: Vec<Metrics> = metrics
            .iter()
            .map(|x| m(x.step, x.train_loss - 0.5, x.val_loss.map(|v| v - 0.5)))
            .collect();
        let runs = [("a".to_string(), metrics.clone()), ("b".to_string(), other)];
        let mut buf = vec![0u8; (w * h * 3) as usize];
        {
            let root = BitMapBackend::with_buffer(&mut buf, (w, h)).into_drawing_area();
            draw_overlay(&root, &runs, "t").unwrap();
            root.present().unwrap();
        }
        for i in 0..2 {
            let c = Palette99::pick(i).to_rgba();
            let n = buf
                .chunks(3)
                .filter(|p| p[0] == c.0 && p[1] == c.1 && p[2] == c.2)
                .count();
            assert!(n > 40, "run {i}: {n} pixels of its colour");
        }
        assert!(draw_overlay(
            &BitMapBackend::with_buffer(&mut buf, (w, h)).into_drawing_area(),
            &[],
            "t"
        )
        .is_err());
    }
}
