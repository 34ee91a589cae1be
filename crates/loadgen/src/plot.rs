//! `--plot FILE.svg`: throughput (accepted and decided per second) above latency (p50 and p99
//! of POST → BOOKING_RESULT for the results of each second) over the run, as an SVG that a
//! browser or the docs show as it is. SVG needs no fonts or image libraries at build time.

use crate::stats::Second;
use plotters::prelude::*;
use std::path::Path;

/// Draws the timeline into `path`.
pub fn draw(path: &Path, title: &str, timeline: &[Second]) -> Result<(), String> {
    let fail = |e: &dyn std::fmt::Display| format!("--plot {}: {e}", path.display());
    let seconds = timeline.len().max(1) as f64;
    let rate_max = timeline
        .iter()
        .map(|s| s.accepted.max(s.decided))
        .max()
        .unwrap_or(0)
        .max(1) as f64
        * 1.1;
    let p = |s: &Second, q: f64| {
        (!s.latency.is_empty()).then(|| s.latency.value_at_quantile(q) as f64 / 1000.0)
    };
    let latency_max = timeline
        .iter()
        .filter_map(|s| p(s, 0.99))
        .fold(1.0f64, f64::max)
        * 1.1;

    let root = SVGBackend::new(path, (960, 640)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| fail(&e))?;
    let root = root
        .titled(title, ("sans-serif", 20))
        .map_err(|e| fail(&e))?;
    let (top, bottom) = root.split_vertically(300);

    let mut rates = ChartBuilder::on(&top)
        .margin(10)
        .x_label_area_size(30)
        .y_label_area_size(60)
        .build_cartesian_2d(0f64..seconds, 0f64..rate_max)
        .map_err(|e| fail(&e))?;
    rates
        .configure_mesh()
        .x_desc("second of the run")
        .y_desc("requests/s")
        .draw()
        .map_err(|e| fail(&e))?;
    for (name, color, pick) in [
        (
            "accepted (202)/s",
            BLUE,
            (|s: &Second| s.accepted) as fn(&Second) -> u64,
        ),
        ("decided (BOOKING_RESULT)/s", RED, |s: &Second| s.decided),
    ] {
        rates
            .draw_series(LineSeries::new(
                timeline
                    .iter()
                    .enumerate()
                    .map(|(i, s)| (i as f64 + 0.5, pick(s) as f64)),
                color.stroke_width(2),
            ))
            .map_err(|e| fail(&e))?
            .label(name)
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], color.stroke_width(2)));
    }
    rates
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(|e| fail(&e))?;

    let mut latency = ChartBuilder::on(&bottom)
        .margin(10)
        .x_label_area_size(30)
        .y_label_area_size(60)
        .build_cartesian_2d(0f64..seconds, 0f64..latency_max)
        .map_err(|e| fail(&e))?;
    latency
        .configure_mesh()
        .x_desc("second of the run (by when the result arrived)")
        .y_desc("POST -> result, ms")
        .draw()
        .map_err(|e| fail(&e))?;
    for (name, color, q) in [("p50", GREEN, 0.5), ("p99", MAGENTA, 0.99)] {
        latency
            .draw_series(LineSeries::new(
                timeline
                    .iter()
                    .enumerate()
                    .filter_map(|(i, s)| p(s, q).map(|v| (i as f64 + 0.5, v))),
                color.stroke_width(2),
            ))
            .map_err(|e| fail(&e))?
            .label(name)
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], color.stroke_width(2)));
    }
    latency
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(|e| fail(&e))?;
    root.present().map_err(|e| fail(&e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use hdrhistogram::Histogram;

    #[test]
    fn a_timeline_becomes_an_svg_with_both_charts() {
        let timeline: Vec<Second> = (0..5)
            .map(|i| {
                let mut latency = Histogram::new_with_bounds(1, 3_600_000_000, 2).unwrap();
                latency.record(1000 * (i + 1)).unwrap();
                Second {
                    accepted: 100 * i,
                    rejected: 0,
                    decided: 90 * i,
                    latency,
                }
            })
            .collect();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("run.svg");
        draw(&path, "test run", &timeline).unwrap();
        let svg = std::fs::read_to_string(&path).unwrap();
        assert!(svg.starts_with("<svg"), "{:.80}", svg);
        for label in [
            "test run",
            "requests/s",
            "p99",
            "decided (BOOKING_RESULT)/s",
        ] {
            assert!(svg.contains(label), "no {label:?} in the SVG");
        }
        assert!(svg.matches("<polyline").count() >= 4, "four series drawn");
    }
}
