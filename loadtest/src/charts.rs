//! SVG charts of a run, drawn with plotters into strings that the HTML page embeds.

use plotters::prelude::*;

use crate::stats::Summary;

const SIZE: (u32, u32) = (900, 320);
const PALETTE: [RGBColor; 6] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
];

/// One named line.
struct Series {
    name: String,
    points: Vec<(f64, f64)>,
}

/// Draws `series` on linear axes; `x_label` formats the x axis ticks.
fn line_chart(
    x_desc: &str,
    y_desc: &str,
    series: &[Series],
    x_label: &dyn Fn(&f64) -> String,
) -> anyhow::Result<String> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, SIZE).into_drawing_area();
        root.fill(&WHITE).map_err(draw_error)?;
        let points = series.iter().flat_map(|s| s.points.iter());
        let (x_max, y_max) = points.fold((1e-9f64, 1e-9f64), |(x, y), (px, py)| {
            (x.max(*px), y.max(*py))
        });
        let mut chart = ChartBuilder::on(&root)
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(60)
            .build_cartesian_2d(0f64..x_max, 0f64..y_max * 1.1)
            .map_err(draw_error)?;
        chart
            .configure_mesh()
            .x_desc(x_desc)
            .y_desc(y_desc)
            .x_label_formatter(x_label)
            .draw()
            .map_err(draw_error)?;
        for (index, line) in series.iter().enumerate() {
            let color = PALETTE[index % PALETTE.len()];
            chart
                .draw_series(LineSeries::new(
                    line.points.iter().copied(),
                    color.stroke_width(2),
                ))
                .map_err(draw_error)?
                .label(line.name.clone())
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], color));
        }
        if series.len() > 1 {
            chart
                .configure_series_labels()
                .border_style(BLACK)
                .background_style(WHITE.mix(0.8))
                .draw()
                .map_err(draw_error)?;
        }
        root.present().map_err(draw_error)?;
    }
    Ok(svg)
}

fn draw_error<E: std::fmt::Debug>(err: E) -> anyhow::Error {
    anyhow::anyhow!("drawing a chart failed: {err:?}")
}

fn seconds(x: &f64) -> String {
    if x.fract().abs() < 1e-9 {
        format!("{x:.0}")
    } else {
        format!("{x:.1}")
    }
}

/// Answers per second, slice by slice of answer time.
pub fn throughput(summary: &Summary) -> anyhow::Result<String> {
    let per_second = 1.0 / summary.slice_s.max(1e-9);
    let points = summary
        .answers
        .iter()
        .map(|slice| {
            let answered: u64 = slice.outcomes.values().sum();
            (slice.start_s, answered as f64 * per_second)
        })
        .collect();
    let series = [Series {
        name: "answers/s".to_owned(),
        points,
    }];
    line_chart("second", "answers per second", &series, &seconds)
}

/// p50, p90, p99 and max of the attempts scheduled in each second.
pub fn latency_over_time(summary: &Summary) -> anyhow::Result<String> {
    type Pick = fn(&crate::stats::Percentiles) -> f64;
    let picks: [(&str, Pick); 4] = [
        ("p50", |p| p.p50),
        ("p90", |p| p.p90),
        ("p99", |p| p.p99),
        ("max", |p| p.max),
    ];
    let series: Vec<Series> = picks
        .iter()
        .map(|(name, pick)| Series {
            name: (*name).to_owned(),
            points: summary
                .timeline
                .iter()
                .filter_map(|s| s.latency.as_ref().map(|p| (s.second as f64, pick(p))))
                .collect(),
        })
        .collect();
    line_chart("second (scheduled send)", "latency ms", &series, &seconds)
}

/// Latency by percentile, the x axis in "nines" (0 = p0, 1 = p90, 2 = p99, 3 = p99.9).
pub fn cdf(summary: &Summary) -> anyhow::Result<String> {
    let points = summary
        .cdf
        .iter()
        .map(|p| {
            (
                -(1.0 - p.percentile / 100.0).max(1e-12).log10(),
                p.latency_ms,
            )
        })
        .collect();
    let series = [Series {
        name: "latency".to_owned(),
        points,
    }];
    // Ticks only at whole nines: p0, p90, p99, p99.9, p99.99.
    let nines = |x: &f64| {
        if x.fract().abs() > 1e-9 {
            return String::new();
        }
        let percentile = 100.0 * (1.0 - 10f64.powf(-x));
        let decimals = (x.round() as usize).saturating_sub(2);
        format!("p{percentile:.decimals$}")
    };
    line_chart("percentile", "latency ms", &series, &nines)
}

/// Answers per second by outcome (`201`, `409 sold_out`, ...), slice by slice.
pub fn outcomes(summary: &Summary) -> anyhow::Result<String> {
    let per_second = 1.0 / summary.slice_s.max(1e-9);
    let series: Vec<Series> = summary
        .outcomes
        .keys()
        .map(|label| Series {
            name: label.clone(),
            points: summary
                .answers
                .iter()
                .map(|slice| {
                    let count = slice.outcomes.get(label).copied().unwrap_or(0);
                    (slice.start_s, count as f64 * per_second)
                })
                .collect(),
        })
        .collect();
    line_chart("second", "answers per second", &series, &seconds)
}
