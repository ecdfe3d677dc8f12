//! `--plot FILE`: the loss curves and the evaluation score of a run, as SVG or PNG, with titles,
//! labelled axes and a legend (text drawn in the Hack font built into the binary), and the
//! history the plot is drawn from, which travels in checkpoints so that a resumed run plots it all.

use super::{CliError, Result};
use plotters::coord::Shift;
use plotters::prelude::*;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Once;

/// What a run recorded: the training loss of every step, and evaluations at some steps.
#[derive(Debug, Default, PartialEq)]
pub struct History {
    pub train_loss: Vec<(u64, f32)>,
    /// (step, evaluation loss, accuracy in [0, 1] for image models).
    pub evals: Vec<(u64, f64, Option<f64>)>,
    /// A text model: the loss is in nats per character and the right panel shows the
    /// validation loss instead of an accuracy.
    pub nats_per_char: bool,
}

/// Checkpoint metadata keys of the history.
const TRAIN_KEY: &str = "plot history: train loss";
const EVAL_KEY: &str = "plot history: evaluations";

impl History {
    /// Adds the history to a checkpoint's metadata ("step:loss" pairs; evaluations
    /// "step:loss[:accuracy]"), in the shortest text that reads back to the same numbers.
    pub fn record(&self, meta: &mut BTreeMap<String, String>) {
        let train: Vec<String> = self
            .train_loss
            .iter()
            .map(|(s, l)| format!("{s}:{l}"))
            .collect();
        let evals: Vec<String> = self
            .evals
            .iter()
            .map(|(s, l, a)| match a {
                Some(a) => format!("{s}:{l}:{a}"),
                None => format!("{s}:{l}"),
            })
            .collect();
        meta.insert(TRAIN_KEY.into(), train.join(" "));
        meta.insert(EVAL_KEY.into(), evals.join(" "));
    }

    /// The history a checkpoint holds (empty for one written before histories were kept, up
    /// to `step`: a later part cannot be in it).
    pub fn restore(meta: &BTreeMap<String, String>, file: &Path, step: u64) -> Result<Self> {
        let bad = || {
            CliError::Usage(format!(
                "--resume {}: the plot history in this checkpoint is unreadable",
                file.display()
            ))
        };
        let fields = |key: &str| -> Vec<Vec<String>> {
            meta.get(key)
                .map(|v| {
                    v.split_whitespace()
                        .map(|p| p.split(':').map(str::to_string).collect())
                        .collect()
                })
                .unwrap_or_default()
        };
        let mut h = History::default();
        for f in fields(TRAIN_KEY) {
            match f.as_slice() {
                [s, l] => h
                    .train_loss
                    .push((s.parse().map_err(|_| bad())?, l.parse().map_err(|_| bad())?)),
                _ => return Err(bad()),
            }
        }
        for f in fields(EVAL_KEY) {
            let (s, l) = match f.as_slice() {
                [s, l] | [s, l, _] => (
                    s.parse::<u64>().map_err(|_| bad())?,
                    l.parse::<f64>().map_err(|_| bad())?,
                ),
                _ => return Err(bad()),
            };
            let a = match f.get(2) {
                Some(a) => Some(a.parse::<f64>().map_err(|_| bad())?),
                None => None,
            };
            h.evals.push((s, l, a));
        }
        h.train_loss.retain(|p| p.0 <= step);
        h.evals.retain(|p| p.0 <= step);
        Ok(h)
    }
}

/// The family every text of the plots is drawn in, and the font behind it.
const FONT: &str = "sans-serif";

/// Registers the built-in font once: plotters draws text only in registered fonts, so the
/// plots look the same on a machine without fonts.
fn register_font() -> Result<()> {
    static ONCE: Once = Once::new();
    let mut result = Ok(());
    ONCE.call_once(|| {
        result = plotters::style::register_font(
            FONT,
            FontStyle::Normal,
            epaint_default_fonts::HACK_REGULAR,
        )
        .map_err(|_| CliError::Usage("the built-in plot font is unreadable".into()));
    });
    result
}

pub fn write(path: &Path, history: &History) -> Result<()> {
    let fail =
        |e: String| CliError::Usage(format!("{}: could not draw the plot: {e}", path.display()));
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_ascii_lowercase();
    register_font()?;
    match ext.as_str() {
        "svg" => {
            let root = SVGBackend::new(path, (1000, 420)).into_drawing_area();
            draw(&root, history).map_err(|e| fail(e.to_string()))?;
            root.present().map_err(|e| fail(e.to_string()))
        }
        "png" => {
            let root = BitMapBackend::new(path, (1000, 420)).into_drawing_area();
            draw(&root, history).map_err(|e| fail(e.to_string()))?;
            root.present().map_err(|e| fail(e.to_string()))
        }
        _ => Err(CliError::Usage(format!(
            "--plot {}: the file must end in .svg or .png",
            path.display()
        ))),
    }
}

type DrawResult = std::result::Result<(), Box<dyn std::error::Error>>;

/// The range of `values` with a margin, never empty.
fn span(values: impl Iterator<Item = f32>, floor: Option<f32>) -> std::ops::Range<f32> {
    let (mut lo, mut hi) = values
        .filter(|v| v.is_finite())
        .fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), v| {
            (lo.min(v), hi.max(v))
        });
    if !lo.is_finite() {
        (lo, hi) = (0.0, 1.0);
    }
    let pad = ((hi - lo) * 0.05).max(1e-3);
    lo -= pad;
    hi += pad;
    if let Some(f) = floor {
        lo = lo.max(f);
    }
    lo..hi
}

fn draw<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, h: &History) -> DrawResult
where
    DB::ErrorType: 'static,
{
    root.fill(&WHITE)?;
    let (left, right) = root.split_horizontally(500);
    // Steps on the x axis, whole numbers: from the first recorded step to the last.
    let first = h.train_loss.first().map_or(0, |p| p.0.saturating_sub(1));
    let last = h
        .train_loss
        .last()
        .map_or(1, |p| p.0)
        .max(h.evals.last().map_or(1, |e| e.0))
        .max(1);
    let first = first.min(last - 1);
    // A diverging run's losses would flatten the curve: the axis stops at 10 nats.
    let max_loss = h
        .train_loss
        .iter()
        .map(|p| p.1)
        .chain(h.evals.iter().map(|e| e.1 as f32))
        .filter(|l| l.is_finite())
        .fold(0.1f32, f32::max)
        .min(10.0);
    let unit = if h.nats_per_char { "nats/char" } else { "nats" };
    let eval_name = if h.nats_per_char {
        "validation"
    } else {
        "test"
    };

    let mut loss = ChartBuilder::on(&left);
    loss.margin(15).x_label_area_size(40).y_label_area_size(55);
    loss.caption("cross-entropy loss", (FONT, 20));
    // Headroom above the curves for the legend.
    let mut loss = loss.build_cartesian_2d(first..last, 0f32..max_loss * 1.3)?;
    loss.configure_mesh()
        .x_desc("step")
        .y_desc(format!("loss ({unit})"))
        .label_style((FONT, 13))
        .axis_desc_style((FONT, 15))
        .draw()?;
    loss.draw_series(LineSeries::new(
        h.train_loss
            .iter()
            .filter(|p| p.1.is_finite())
            .map(|&(s, l)| (s, l.min(max_loss))),
        BLUE.mix(0.6),
    ))?
    .label("train")
    .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLUE.mix(0.6)));
    loss.draw_series(LineSeries::new(
        h.evals
            .iter()
            .filter(|e| e.1.is_finite())
            .map(|&(s, l, _)| (s, (l as f32).min(max_loss))),
        RED.stroke_width(3),
    ))?
    .label(eval_name)
    .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], RED.stroke_width(3)));
    loss.configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .label_font((FONT, 14))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()?;

    // Right: what the evaluations score, zoomed to their range.
    let (title, y_desc, points): (&str, String, Vec<(u64, f32)>) = if h.nats_per_char {
        (
            "validation loss",
            "nats/char".into(),
            h.evals.iter().map(|&(s, l, _)| (s, l as f32)).collect(),
        )
    } else {
        (
            "test accuracy",
            "accuracy (%)".into(),
            h.evals
                .iter()
                .filter_map(|&(s, _, a)| Some((s, (a? * 100.0) as f32)))
                .collect(),
        )
    };
    let ys = if h.nats_per_char {
        span(points.iter().map(|p| p.1), Some(0.0))
    } else {
        let r = span(points.iter().map(|p| p.1), Some(0.0));
        r.start..r.end.min(100.0)
    };
    let mut score = ChartBuilder::on(&right);
    score.margin(15).x_label_area_size(40).y_label_area_size(55);
    score.caption(title, (FONT, 20));
    let mut score = score.build_cartesian_2d(first..last, ys)?;
    score
        .configure_mesh()
        .x_desc("step")
        .y_desc(y_desc)
        .label_style((FONT, 13))
        .axis_desc_style((FONT, 15))
        .draw()?;
    score
        .draw_series(LineSeries::new(
            points.iter().copied(),
            GREEN.stroke_width(3),
        ))?
        .label(if h.nats_per_char {
            "validation (nats/char)"
        } else {
            "test accuracy"
        })
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], GREEN.stroke_width(3)));
    score.draw_series(points.iter().map(|&p| Circle::new(p, 4, GREEN.filled())))?;
    score
        .configure_series_labels()
        // Away from the curve: accuracy rises, a validation loss falls.
        .position(if h.nats_per_char {
            SeriesLabelPosition::UpperRight
        } else {
            SeriesLabelPosition::LowerRight
        })
        .label_font((FONT, 14))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_history_reads_back_from_checkpoint_metadata_exactly() {
        let h = History {
            train_loss: vec![(1, std::f32::consts::LN_10), (2, 1.0e-7), (3, f32::NAN)],
            evals: vec![(2, 0.123_456_789_012_345, Some(0.9375)), (3, 1.5, None)],
            nats_per_char: false,
        };
        let mut meta = BTreeMap::new();
        h.record(&mut meta);
        let back = History::restore(&meta, Path::new("x.ckpt"), 3).unwrap();
        assert_eq!(back.evals, h.evals);
        assert_eq!(back.train_loss[..2], h.train_loss[..2]);
        assert!(back.train_loss[2].1.is_nan());
        let cut = History::restore(&meta, Path::new("x.ckpt"), 2).unwrap();
        assert_eq!(cut.train_loss.len(), 2);
        assert_eq!(cut.evals.len(), 1);
        meta.insert(TRAIN_KEY.into(), "1:x".into());
        let e = History::restore(&meta, Path::new("x.ckpt"), 3).unwrap_err();
        assert!(e.to_string().contains("--resume x.ckpt"), "{e}");
    }
}
