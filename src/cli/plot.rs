//! `--plot FILE`: the loss and accuracy curves of a run, as SVG (with labelled axes) or PNG
//! (curves and grid only: drawing text into a bitmap would need a bundled font).

use super::{CliError, Result};
use plotters::coord::Shift;
use plotters::prelude::*;
use std::path::Path;

/// What a run recorded: the training loss of every step, and evaluations at some steps.
#[derive(Debug, Default)]
pub struct History {
    pub train_loss: Vec<(u64, f32)>,
    /// (step, test loss, test accuracy in [0, 1]).
    pub evals: Vec<(u64, f64, f64)>,
}

pub fn write(path: &Path, history: &History) -> Result<()> {
    let fail =
        |e: String| CliError::Usage(format!("{}: could not draw the plot: {e}", path.display()));
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_ascii_lowercase();
    match ext.as_str() {
        "svg" => {
            let root = SVGBackend::new(path, (1000, 420)).into_drawing_area();
            draw(&root, history, true).map_err(|e| fail(e.to_string()))?;
            root.present().map_err(|e| fail(e.to_string()))
        }
        "png" => {
            let root = BitMapBackend::new(path, (1000, 420)).into_drawing_area();
            draw(&root, history, false).map_err(|e| fail(e.to_string()))?;
            root.present().map_err(|e| fail(e.to_string()))
        }
        _ => Err(CliError::Usage(format!(
            "--plot {}: the file must end in .svg or .png",
            path.display()
        ))),
    }
}

type DrawResult = std::result::Result<(), Box<dyn std::error::Error>>;

fn draw<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, h: &History, text: bool) -> DrawResult
where
    DB::ErrorType: 'static,
{
    root.fill(&WHITE)?;
    let (left, right) = root.split_horizontally(500);
    let last = h.train_loss.last().map_or(1, |p| p.0).max(1) as f32;
    let max_loss = h
        .train_loss
        .iter()
        .map(|p| p.1)
        .fold(0.1f32, f32::max)
        .min(10.0);

    let mut loss = ChartBuilder::on(&left);
    loss.margin(15).x_label_area_size(35).y_label_area_size(45);
    if text {
        loss.caption("loss (train: thin, test: thick)", ("sans-serif", 18));
    }
    let mut loss = loss.build_cartesian_2d(0f32..last, 0f32..max_loss * 1.05)?;
    let mut mesh = loss.configure_mesh();
    if text {
        mesh.x_desc("step").y_desc("cross-entropy");
    } else {
        mesh.disable_x_axis().disable_y_axis();
    }
    mesh.draw()?;
    loss.draw_series(LineSeries::new(
        h.train_loss
            .iter()
            .map(|&(s, l)| (s as f32, l.min(max_loss))),
        &BLUE.mix(0.5),
    ))?;
    loss.draw_series(LineSeries::new(
        h.evals.iter().map(|&(s, l, _)| (s as f32, l as f32)),
        RED.stroke_width(3),
    ))?;

    let mut acc = ChartBuilder::on(&right);
    acc.margin(15).x_label_area_size(35).y_label_area_size(45);
    if text {
        acc.caption("test accuracy (%)", ("sans-serif", 18));
    }
    let lo = h
        .evals
        .iter()
        .map(|e| e.2 * 100.0)
        .fold(100.0f64, f64::min)
        .min(90.0) as f32;
    let mut acc = acc.build_cartesian_2d(0f32..last, lo..100f32)?;
    let mut mesh = acc.configure_mesh();
    if text {
        mesh.x_desc("step").y_desc("%");
    } else {
        mesh.disable_x_axis().disable_y_axis();
    }
    mesh.draw()?;
    acc.draw_series(LineSeries::new(
        h.evals
            .iter()
            .map(|&(s, _, a)| (s as f32, (a * 100.0) as f32)),
        GREEN.stroke_width(3),
    ))?;
    acc.draw_series(
        h.evals
            .iter()
            .map(|&(s, _, a)| Circle::new((s as f32, (a * 100.0) as f32), 4, GREEN.filled())),
    )?;
    Ok(())
}
