//! The chart: heap, RSS, tasks, file descriptors, connections and
//! subscribers over time, one panel each, checkpoints marked.

use std::path::Path;

use anyhow::{Result, anyhow};
use plotters::prelude::*;

use crate::harness::Record;

type Series = (&'static str, fn(&crate::sample::Vars) -> f64);

const PANELS: [(&str, &[Series]); 6] = [
    (
        "live heap (MiB)",
        &[("heap", |v| v.heap_bytes as f64 / 1_048_576.0)],
    ),
    (
        "RSS (MiB)",
        &[("rss", |v| v.rss_bytes as f64 / 1_048_576.0)],
    ),
    ("tokio tasks", &[("tasks", |v| v.tasks as f64)]),
    ("open file descriptors", &[("fds", |v| v.open_fds as f64)]),
    (
        "connections",
        &[
            ("client", |v| v.client_connections as f64),
            ("upstream", |v| v.upstream_sockets as f64),
        ],
    ),
    ("subscribers", &[("streams", |v| v.client_streams as f64)]),
];

/// Writes `chart.svg` into `dir`.
pub(crate) fn draw(record: &Record, dir: &Path) -> Result<()> {
    let path = dir.join("chart.svg");
    let root = SVGBackend::new(&path, (1200, 1500)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| anyhow!("chart: {e}"))?;
    let panels = root.split_evenly((PANELS.len(), 1));
    let samples: Vec<_> = record.samples.iter().filter(|s| s.vars.tasks > 0).collect();
    let t_max = samples.last().map_or(1.0, |s| s.t).max(1.0);
    let colors = [BLUE, RED];
    for (area, (title, series)) in panels.iter().zip(PANELS) {
        let y_max = samples
            .iter()
            .flat_map(|s| series.iter().map(|(_, f)| f(&s.vars)))
            .fold(0.0f64, f64::max)
            .max(1.0)
            * 1.1;
        let mut chart = ChartBuilder::on(area)
            .caption(title, ("sans-serif", 16))
            .margin(8)
            .x_label_area_size(24)
            .y_label_area_size(60)
            .build_cartesian_2d(0.0..t_max, 0.0..y_max)
            .map_err(|e| anyhow!("chart: {e}"))?;
        chart
            .configure_mesh()
            .x_desc("seconds")
            .light_line_style(WHITE)
            .draw()
            .map_err(|e| anyhow!("chart: {e}"))?;
        // Checkpoints: vertical lines.
        for cp in &record.checkpoints {
            let color = if cp.differences.is_empty() {
                GREEN
            } else {
                MAGENTA
            };
            chart
                .draw_series(LineSeries::new(
                    [(cp.t, 0.0), (cp.t, y_max)],
                    color.mix(0.6).stroke_width(1),
                ))
                .map_err(|e| anyhow!("chart: {e}"))?;
        }
        for ((name, f), color) in series.iter().zip(colors) {
            chart
                .draw_series(LineSeries::new(
                    samples.iter().map(|s| (s.t, f(&s.vars))),
                    color.stroke_width(1),
                ))
                .map_err(|e| anyhow!("chart: {e}"))?
                .label(*name)
                .legend(move |(x, y)| PathElement::new([(x, y), (x + 16, y)], color));
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()
            .map_err(|e| anyhow!("chart: {e}"))?;
    }
    root.present().map_err(|e| anyhow!("chart: {e}"))?;
    Ok(())
}
