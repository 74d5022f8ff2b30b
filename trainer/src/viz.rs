//! `llm-train viz`: pictures of a `.llm` model.
//! * `embeddings`: the token embedding rows projected to 2-D by PCA (top two principal
//!   axes, by power iteration on the C×C covariance), every token labelled (or the N
//!   most frequent in a text) with whitespace escaped (`␣`, `\n`, `\t`), optionally
//!   coloured by class (letter, digit, space, punctuation);
//! * `attention`: the attention probabilities of a prompt, one heat map per layer
//!   (rows) and head (columns); row = query position, column = key position, both
//!   axes labelled with the prompt's tokens.

use crate::backend::Cpu;
use crate::plot::{ensure_font, err, PlotError};
use crate::rng::Rng;
use crate::tokenize::TextTokenizer;
use crate::train::load_llm;
use plotters::coord::Shift;
use plotters::prelude::*;
use std::path::PathBuf;

/// Projects the rows of `x: [n, c]` onto its top two principal axes; returns `[n]` points.
pub fn pca2(x: &[f32], n: usize, c: usize) -> Vec<(f64, f64)> {
    let mean: Vec<f64> = (0..c)
        .map(|j| (0..n).map(|i| x[i * c + j] as f64).sum::<f64>() / n.max(1) as f64)
        .collect();
    let centred: Vec<f64> = (0..n * c).map(|k| x[k] as f64 - mean[k % c]).collect();
    let mut cov = vec![0.0; c * c];
    for row in centred.chunks_exact(c) {
        for a in 0..c {
            for b in 0..c {
                cov[a * c + b] += row[a] * row[b];
            }
        }
    }
    let mut axes: Vec<Vec<f64>> = Vec::new();
    let mut rng = Rng::new(7);
    for _ in 0..2 {
        let mut v: Vec<f64> = (0..c).map(|_| rng.normal()).collect();
        for _ in 0..200 {
            let mut w: Vec<f64> = (0..c)
                .map(|a| (0..c).map(|b| cov[a * c + b] * v[b]).sum())
                .collect();
            // Deflate: stay orthogonal to the axes already found.
            for u in &axes {
                let d: f64 = w.iter().zip(u).map(|(p, q)| p * q).sum();
                w.iter_mut().zip(u).for_each(|(p, q)| *p -= d * q);
            }
            let norm = w.iter().map(|p| p * p).sum::<f64>().sqrt();
            if norm == 0.0 {
                break;
            }
            v = w.into_iter().map(|p| p / norm).collect();
        }
        axes.push(v);
    }
    centred
        .chunks_exact(c)
        .map(|row| {
            let p = |u: &[f64]| row.iter().zip(u).map(|(a, b)| a * b).sum::<f64>();
            (p(&axes[0]), p(&axes[1]))
        })
        .collect()
}

fn show(tok: &TextTokenizer, id: usize) -> String {
    escape(&tok.decode(&[id as u32]))
}

/// A token's text with whitespace made visible: `␣` for a space (DejaVu Sans, the
/// usual plot font, has no glyph for `␠`), `\n`, `\r`, `\t`.
pub fn escape(s: &str) -> String {
    s.replace('\n', "\\n")
        .replace('\r', "\\r")
        .replace(' ', "␣")
        .replace('\t', "\\t")
}

/// What a token's text is made of, for colouring.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenClass {
    /// Letters only.
    Letter,
    /// Digits only.
    Digit,
    /// Whitespace only.
    Space,
    /// Anything else (punctuation, symbols, mixtures, empty).
    Punct,
}

impl TokenClass {
    /// The class of a token's (unescaped) text.
    pub fn of(s: &str) -> TokenClass {
        let all = |f: fn(&char) -> bool| !s.is_empty() && s.chars().all(|c| f(&c));
        if all(|c| c.is_alphabetic()) {
            TokenClass::Letter
        } else if all(|c| c.is_numeric()) {
            TokenClass::Digit
        } else if all(|c| c.is_whitespace()) {
            TokenClass::Space
        } else {
            TokenClass::Punct
        }
    }

    /// The class's colour and name.
    pub fn style(self) -> (RGBColor, &'static str) {
        match self {
            TokenClass::Letter => (RGBColor(31, 90, 200), "letter"),
            TokenClass::Digit => (RGBColor(20, 150, 60), "digit"),
            TokenClass::Space => (RGBColor(230, 120, 0), "space"),
            TokenClass::Punct => (RGBColor(200, 30, 40), "punctuation"),
        }
    }
}

/// Draws the embedding scatter with `labels` (token id, text, colour) named; with
/// `legend`, one entry per class.
pub fn draw_embeddings<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    points: &[(f64, f64)],
    labels: &[(usize, String, RGBColor)],
    title: &str,
    legend: bool,
) -> Result<(), PlotError> {
    area.fill(&WHITE).map_err(err)?;
    let fold = |f: fn(&(f64, f64)) -> f64| {
        points
            .iter()
            .map(f)
            .fold((f64::MAX, f64::MIN), |(a, b), v| (a.min(v), b.max(v)))
    };
    let ((x0, x1), (y0, y1)) = (fold(|p| p.0), fold(|p| p.1));
    let pad = |a: f64, b: f64| ((b - a) * 0.05).max(1e-6);
    let mut chart = ChartBuilder::on(area)
        .caption(title, ("sans-serif", 22))
        .margin(12)
        .x_label_area_size(35)
        .y_label_area_size(50)
        .build_cartesian_2d(
            (x0 - pad(x0, x1))..(x1 + pad(x0, x1)),
            (y0 - pad(y0, y1))..(y1 + pad(y0, y1)),
        )
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc("PC 1")
        .y_desc("PC 2")
        .draw()
        .map_err(err)?;
    chart
        .draw_series(
            points
                .iter()
                .map(|&p| Circle::new(p, 2, RGBColor(150, 150, 150).filled())),
        )
        .map_err(err)?;
    chart
        .draw_series(labels.iter().filter_map(|(id, name, color)| {
            points
                .get(*id)
                .map(|&p| Text::new(name.clone(), p, ("sans-serif", 14).into_font().color(color)))
        }))
        .map_err(err)?;
    if legend {
        for class in [
            TokenClass::Letter,
            TokenClass::Digit,
            TokenClass::Space,
            TokenClass::Punct,
        ] {
            let (color, name) = class.style();
            chart
                .draw_series(std::iter::empty::<Circle<(f64, f64), i32>>())
                .map_err(err)?
                .label(name)
                .legend(move |(x, y)| Circle::new((x + 8, y), 4, color.filled()));
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .draw()
            .map_err(err)?;
    }
    Ok(())
}

/// Draws one heat map per (layer, head) of `att[l]: [H, T, T]`; with `labels` (one per
/// position, e.g. the prompt's tokens) both axes name their tokens: keys along the
/// bottom, queries down the left.
pub fn draw_attention<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    att: &[Vec<f32>],
    heads: usize,
    t: usize,
    labels: &[String],
) -> Result<(), PlotError> {
    area.fill(&WHITE).map_err(err)?;
    let cells = area.split_evenly((att.len().max(1), heads.max(1)));
    let (w, _) = area.dim_in_pixel();
    let caption = (w / heads.max(1) as u32 / 14).clamp(9, 20);
    let named = labels.len() == t;
    let label_px = if named {
        let longest = labels.iter().map(|l| l.chars().count()).max().unwrap_or(1) as u32;
        (longest * 7 + 8).min(80)
    } else {
        0
    };
    let name = |v: &SegmentValue<usize>| match v {
        SegmentValue::CenterOf(i) => labels.get(*i).cloned().unwrap_or_default(),
        _ => String::new(),
    };
    for (k, cell) in cells.iter().enumerate() {
        let (l, h) = (k / heads, k % heads);
        let Some(probs) = att.get(l) else { continue };
        let mut chart = ChartBuilder::on(cell)
            .caption(format!("layer {l} head {h}"), ("sans-serif", caption))
            .margin(4)
            .x_label_area_size(label_px)
            .y_label_area_size(label_px)
            .build_cartesian_2d((0..t).into_segmented(), (0..t).into_segmented())
            .map_err(err)?;
        if named {
            // Query q is drawn top-down: row y holds query t - 1 - y.
            let flip = |v: &SegmentValue<usize>| match v {
                SegmentValue::CenterOf(i) if *i < t => name(&SegmentValue::CenterOf(t - 1 - i)),
                _ => String::new(),
            };
            chart
                .configure_mesh()
                .disable_mesh()
                .x_labels(t)
                .y_labels(t)
                .x_label_formatter(&name)
                .y_label_formatter(&flip)
                .label_style(("sans-serif", 11))
                .draw()
                .map_err(err)?;
        }
        chart
            .draw_series(
                (0..t)
                    .flat_map(|q| (0..t).map(move |s| (q, s)))
                    .map(|(q, s)| {
                        let p = probs
                            .get((h * t + q) * t + s)
                            .copied()
                            .unwrap_or(0.0)
                            .clamp(0.0, 1.0);
                        let shade = (255.0 * (1.0 - p)) as u8;
                        // Query q is drawn top-down, key s left to right.
                        Rectangle::new(
                            [
                                (SegmentValue::Exact(s), SegmentValue::Exact(t - 1 - q)),
                                (SegmentValue::Exact(s + 1), SegmentValue::Exact(t - q)),
                            ],
                            RGBColor(shade, shade, 255).filled(),
                        )
                    }),
            )
            .map_err(err)?;
    }
    Ok(())
}

/// Arguments of `llm-train viz`.
#[derive(clap::Args, Clone, Debug)]
pub struct VizArgs {
    /// What to draw.
    #[command(subcommand)]
    pub what: VizKind,
}

/// The pictures.
#[derive(clap::Subcommand, Clone, Debug)]
pub enum VizKind {
    /// Token embeddings projected to 2-D by PCA.
    Embeddings {
        /// The model (.llm).
        #[arg(long, short)]
        model: PathBuf,
        /// Output PNG.
        #[arg(long, short, default_value = "emb.png")]
        out: PathBuf,
        /// Text whose most frequent tokens get labels (default data/shakespeare.txt).
        #[arg(long)]
        text: Option<PathBuf>,
        /// How many tokens to label, the most frequent in --text first (0: every token).
        #[arg(long, default_value_t = 0)]
        labels: usize,
        /// Colour tokens by class: letter, digit, space, punctuation.
        #[arg(long)]
        classes: bool,
    },
    /// Attention maps of a prompt, one per layer and head.
    Attention {
        /// The model (.llm).
        #[arg(long, short)]
        model: PathBuf,
        /// The prompt.
        #[arg(long, short)]
        prompt: String,
        /// Output PNG.
        #[arg(long, short, default_value = "att.png")]
        out: PathBuf,
    },
}

/// `llm-train viz`.
pub fn run_viz(args: VizArgs) -> Result<(), Box<dyn std::error::Error>> {
    ensure_font()?;
    match args.what {
        VizKind::Embeddings {
            model,
            out,
            text,
            labels,
            classes,
        } => {
            let (m, tok) = load_llm(&model)?;
            let (v, c) = (m.opts.vocab_size, m.opts.d_model);
            let emb = m
                .param("tok_emb")
                .ok_or_else(|| PlotError("no tok_emb".into()))?;
            let points = pca2(emb, v, c);
            let text_path = text.unwrap_or_else(|| PathBuf::from("data/shakespeare.txt"));
            let mut counts = vec![0usize; v];
            if let Ok(t) = std::fs::read_to_string(&text_path) {
                for id in tok.encode(&t).unwrap_or_default() {
                    if let Some(c) = counts.get_mut(id as usize) {
                        *c += 1;
                    }
                }
            }
            let mut order: Vec<usize> = (0..v).collect();
            order.sort_by_key(|&i| std::cmp::Reverse(counts[i]));
            let take = if labels == 0 { v } else { labels };
            let named: Vec<(usize, String, RGBColor)> = order
                .into_iter()
                .take(take)
                .map(|i| {
                    let color = if classes {
                        TokenClass::of(&tok.decode(&[i as u32])).style().0
                    } else {
                        BLUE
                    };
                    (i, show(&tok, i), color)
                })
                .collect();
            let root = BitMapBackend::new(&out, (1000, 800)).into_drawing_area();
            draw_embeddings(
                &root,
                &points,
                &named,
                &format!("token embeddings (PCA) — {}", model.display()),
                classes,
            )?;
            root.present().map_err(err)?;
            println!("wrote {}", out.display());
        }
        VizKind::Attention { model, prompt, out } => {
            let (mut m, tok) = load_llm(&model)?;
            let mut ids = tok.encode(&prompt)?;
            ids.truncate(m.opts.max_len);
            if ids.is_empty() {
                return Err(PlotError("the prompt encodes to no tokens".into()).into());
            }
            let t = ids.len();
            m.forward(&Cpu, &ids, None, 1, t, None)?;
            let att: Vec<Vec<f32>> = (0..m.opts.n_layers)
                .filter_map(|l| m.attention(l).map(<[f32]>::to_vec))
                .collect();
            let heads = m.opts.n_heads;
            let side = (24 * t).clamp(160, 420) as u32;
            let (w, h) = (
                (side * heads as u32).min(4000),
                (side * att.len() as u32).min(4000),
            );
            let names: Vec<String> = ids.iter().map(|&i| show(&tok, i as usize)).collect();
            let root = BitMapBackend::new(&out, (w, h)).into_drawing_area();
            draw_attention(&root, &att, heads, t, &names)?;
            root.present().map_err(err)?;
            println!(
                "wrote {} ({} layers × {heads} heads, {t} tokens)",
                out.display(),
                att.len()
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pca_finds_the_dominant_axes() {
        // Points spread 10× more along (1,1,0)/√2 than along (0,0,1), little elsewhere.
        let mut r = Rng::for_test(3);
        let n = 300;
        let mut x = Vec::new();
        let mut truth = Vec::new();
        for _ in 0..n {
            let (a, b) = (10.0 * r.normal(), r.normal());
            let e = 0.01 * r.normal();
            let s = std::f64::consts::FRAC_1_SQRT_2;
            x.extend_from_slice(&[(a * s + e) as f32, (a * s - e) as f32, b as f32]);
            truth.push((a, b));
        }
        let p = pca2(&x, n, 3);
        // Each principal coordinate equals the true one up to sign and offset (pca2
        // centres the points, so both sides are centred before they are compared).
        let corr = |f: &dyn Fn(usize) -> (f64, f64)| {
            let (mu, mw) = (0..n).fold((0.0, 0.0), |(a, b), i| {
                let (u, w) = f(i);
                (a + u / n as f64, b + w / n as f64)
            });
            let (mut sxy, mut sxx, mut syy) = (0.0, 0.0, 0.0);
            for i in 0..n {
                let (u, w) = f(i);
                let (u, w) = (u - mu, w - mw);
                sxy += u * w;
                sxx += u * u;
                syy += w * w;
            }
            (sxy / (sxx * syy).sqrt()).abs()
        };
        assert!(corr(&|i| (p[i].0, truth[i].0)) > 0.999);
        assert!(corr(&|i| (p[i].1, truth[i].1)) > 0.99);
    }

    #[test]
    fn token_text_is_escaped_and_classed() {
        assert_eq!(escape(" a\n\tb\r"), "␣a\\n\\tb\\r");
        let c = |s| TokenClass::of(s);
        assert_eq!(
            [
                c("ab"),
                c("É"),
                c("42"),
                c(" "),
                c("\n"),
                c(","),
                c("a,"),
                c("")
            ],
            [
                TokenClass::Letter,
                TokenClass::Letter,
                TokenClass::Digit,
                TokenClass::Space,
                TokenClass::Space,
                TokenClass::Punct,
                TokenClass::Punct,
                TokenClass::Punct
            ]
        );
    }

    #[test]
    fn attention_map_is_drawn_lower_triangular() {
        if ensure_font().is_err() {
            return; // captions need a font; `plot`'s test covers the error text
        }
        let t = 6;
        // One layer, one head: uniform causal attention.
        let mut probs = vec![0.0f32; t * t];
        for q in 0..t {
            for s in 0..=q {
                probs[q * t + s] = 1.0 / (q + 1) as f32;
            }
        }
        let (w, h) = (120u32, 120u32);
        let mut buf = vec![0u8; (w * h * 3) as usize];
        {
            let root = BitMapBackend::with_buffer(&mut buf, (w, h)).into_drawing_area();
            draw_attention(&root, &[probs.clone()], 1, t, &[]).unwrap();
            root.present().unwrap();
        }
        // With the prompt's tokens as labels, dark text appears beside the map.
        let dark = |b: &[u8]| b.chunks(3).filter(|p| p.iter().all(|&c| c < 90)).count();
        let (lw, lh) = (240u32, 240u32);
        let mut plain = vec![0u8; (lw * lh * 3) as usize];
        let mut named = plain.clone();
        let names: Vec<String> = ["T", "o", "␣", "b", "e", "\\n"].map(String::from).to_vec();
        for (b, l) in [(&mut plain, &[][..]), (&mut named, &names[..])] {
            let root = BitMapBackend::with_buffer(b, (lw, lh)).into_drawing_area();
            draw_attention(&root, &[probs.clone()], 1, t, l).unwrap();
            root.present().unwrap();
        }
        assert!(
            dark(&named) > dark(&plain) + 20,
            "{} vs {}",
            dark(&named),
            dark(&plain)
        );
        // The bottom-left area (late queries, early keys) is tinted; top-right stays white.
        let px = |x: u32, y: u32| {
            let i = ((y * w + x) * 3) as usize;
            (buf[i], buf[i + 1], buf[i + 2])
        };
        let tinted = (0..w).flat_map(|x| (0..h).map(move |y| (x, y)));
        let (mut low_left, mut up_right) = (0, 0);
        for (x, y) in tinted {
            let (r, g, b) = px(x, y);
            if b == 255 && r < 250 && g < 250 {
                if x < w / 2 && y > h / 2 {
                    low_left += 1;
                }
                if x > w * 3 / 4 && y < h / 4 {
                    up_right += 1;
                }
            }
        }
        assert!(low_left > 100, "{low_left}");
        assert_eq!(up_right, 0);
    }
}
