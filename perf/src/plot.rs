//! SVG percentile plots: latency (µs, linear y) against percentile on the usual
//! logarithmic "1/(1-p)" x axis, with gridlines at 90%, 99%, 99.9%, 99.99% and 99.999%, and
//! one line per named series (for example "order round trip" against "tcp echo").
//!
//! Hand-written SVG: a plotting crate would bring a font stack and image codecs for what is
//! a few polylines and labels.

use std::fmt::Write as _;
use std::io;
use std::path::Path;

use hdrhistogram::Histogram;

use crate::hgrm::{Hgrm, TICKS_PER_HALF_DISTANCE};

/// Most series one plot accepts (the palette has this many distinct colours).
pub const SERIES_MAX: usize = 8;

/// Most points one series keeps (a 3-digit histogram yields a few hundred).
pub const POINTS_PER_SERIES_MAX: usize = 10_000;

/// The x axis always reaches at least 99.999% (5 decades) and never beyond 99.99999%.
const DECADES_MIN: u32 = 5;
const DECADES_MAX: u32 = 7;

const WIDTH: f64 = 1120.0;
const HEIGHT: f64 = 540.0;
const LEFT: f64 = 80.0;
const RIGHT: f64 = 330.0;
const TOP: f64 = 50.0;
const BOTTOM: f64 = 60.0;

const PALETTE: [&str; SERIES_MAX] =
    ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf"];

/// One named line: (quantile in 0..1, latency in µs) points in increasing quantile order.
#[derive(Clone, Debug, PartialEq)]
pub struct Series {
    pub name: String,
    pub points: Vec<(f64, f64)>,
    /// The largest value (µs), shown in the legend since the 100% point has no place on a
    /// log(1/(1-p)) axis.
    pub max_us: f64,
}

impl Series {
    /// Points of a histogram recorded in ns, at the `.hgrm` file's percentile steps.
    pub fn from_histogram(name: &str, hist: &Histogram<u64>) -> Series {
        let mut points = Vec::new();
        if !hist.is_empty() {
            for step in hist.iter_quantiles(TICKS_PER_HALF_DISTANCE) {
                if points.len() == POINTS_PER_SERIES_MAX {
                    break;
                }
                points.push((step.quantile_iterated_to(), step.value_iterated_to() as f64 / 1e3));
            }
        }
        let max_us = if hist.is_empty() { 0.0 } else { hist.max() as f64 / 1e3 };
        Series { name: name.to_string(), points, max_us }
    }

    /// Points of a parsed `.hgrm` file (whose values are already in µs).
    pub fn from_hgrm(name: &str, hgrm: &Hgrm) -> Series {
        let points =
            hgrm.rows.iter().take(POINTS_PER_SERIES_MAX).map(|r| (r.quantile, r.value)).collect();
        Series { name: name.to_string(), points, max_us: hgrm.max }
    }
}

/// `log10(1 / (1 - q))`: 0 at 0%, 1 at 90%, 2 at 99%, ...; `None` at 100%.
pub fn nines(quantile: f64) -> Option<f64> {
    if !(0.0..1.0).contains(&quantile) {
        return None;
    }
    Some((1.0 / (1.0 - quantile)).log10())
}

/// Escapes text for an SVG text node or attribute.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c if c.is_control() => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

/// A "nice" axis step (1, 2 or 5 times a power of ten) giving at most about 8 ticks.
fn nice_step(max: f64) -> f64 {
    if max.is_nan() || max <= 0.0 || max.is_infinite() {
        return 1.0;
    }
    let raw = max / 8.0;
    let magnitude = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0].iter().map(|m| m * magnitude).find(|s| *s >= raw);
    step.unwrap_or(10.0 * magnitude)
}

fn percentile_label(decade: u32) -> String {
    match decade {
        0 => "0%".to_string(),
        1 => "90%".to_string(),
        d => format!("99.{}%", "9".repeat(d as usize - 2)).replace("99.%", "99%"),
    }
}

/// Renders the plot as SVG text. Series beyond [`SERIES_MAX`] are left out.
pub fn render_svg(title: &str, series: &[Series]) -> String {
    let series = &series[..series.len().min(SERIES_MAX)];
    let plotted = |s: &Series| -> Vec<(f64, f64)> {
        s.points
            .iter()
            .filter_map(|&(q, v)| Some((nines(q)?, v)))
            .filter(|(x, v)| x.is_finite() && v.is_finite() && *v >= 0.0)
            .collect()
    };
    let lines: Vec<Vec<(f64, f64)>> = series.iter().map(plotted).collect();
    let x_data_max = lines.iter().flatten().map(|p| p.0).fold(0.0, f64::max);
    let decades = (x_data_max.ceil() as u32).clamp(DECADES_MIN, DECADES_MAX);
    let y_data_max = lines.iter().flatten().map(|p| p.1).fold(0.0, f64::max);
    let y_step = nice_step(y_data_max);
    let y_max = ((y_data_max / y_step).ceil() * y_step).max(y_step);

    let plot_w = WIDTH - LEFT - RIGHT;
    let plot_h = HEIGHT - TOP - BOTTOM;
    let px = |x: f64| LEFT + x.min(f64::from(decades)) / f64::from(decades) * plot_w;
    let py = |y: f64| TOP + plot_h - y.min(y_max) / y_max * plot_h;

    let mut svg = String::new();
    // Writing to a String cannot fail.
    let _ = writeln!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(svg, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        svg,
        r#"<text x="{}" y="28" font-size="16" text-anchor="middle">{}</text>"#,
        LEFT + plot_w / 2.0,
        escape(title)
    );
    // Vertical gridlines at each decade of nines.
    for decade in 0..=decades {
        let x = px(f64::from(decade));
        let _ = writeln!(
            svg,
            r##"<line class="grid-x" x1="{x:.1}" y1="{TOP}" x2="{x:.1}" y2="{:.1}" stroke="#ccc"/>"##,
            TOP + plot_h
        );
        let _ = writeln!(
            svg,
            r#"<text x="{x:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
            TOP + plot_h + 18.0,
            percentile_label(decade)
        );
    }
    // Horizontal gridlines at nice latency steps.
    let mut tick = 0.0;
    while tick <= y_max + y_step * 1e-9 {
        let y = py(tick);
        let _ = writeln!(
            svg,
            r##"<line class="grid-y" x1="{LEFT}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="#eee"/>"##,
            LEFT + plot_w
        );
        let _ = writeln!(
            svg,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"#,
            LEFT - 6.0,
            y + 4.0,
            trim_number(tick)
        );
        tick += y_step;
    }
    let _ = writeln!(
        svg,
        r#"<rect x="{LEFT}" y="{TOP}" width="{plot_w}" height="{plot_h}" fill="none" stroke="black"/>"#
    );
    let _ = writeln!(
        svg,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">percentile</text>"#,
        LEFT + plot_w / 2.0,
        HEIGHT - 14.0
    );
    let _ = writeln!(
        svg,
        r#"<text transform="translate(22 {:.1}) rotate(-90)" text-anchor="middle">latency (us)</text>"#,
        TOP + plot_h / 2.0
    );
    for (i, (s, line)) in series.iter().zip(&lines).enumerate() {
        let colour = PALETTE[i];
        let points: Vec<String> =
            line.iter().map(|&(x, y)| format!("{:.1},{:.1}", px(x), py(y))).collect();
        let _ = writeln!(
            svg,
            r#"<polyline class="series" fill="none" stroke="{colour}" stroke-width="2" points="{}"/>"#,
            points.join(" ")
        );
        let ly = TOP + 10.0 + 20.0 * i as f64;
        let lx = LEFT + plot_w + 14.0;
        let _ = writeln!(
            svg,
            r#"<line x1="{lx:.1}" y1="{ly:.1}" x2="{:.1}" y2="{ly:.1}" stroke="{colour}" stroke-width="3"/>"#,
            lx + 20.0
        );
        let _ = writeln!(
            svg,
            r#"<text x="{:.1}" y="{:.1}">{} (max {} us)</text>"#,
            lx + 26.0,
            ly + 4.0,
            escape(&s.name),
            trim_number(s.max_us)
        );
    }
    svg.push_str("</svg>\n");
    svg
}

/// A number with at most 3 decimals and no trailing zeros.
fn trim_number(value: f64) -> String {
    let text = format!("{value:.3}");
    let text = text.trim_end_matches('0').trim_end_matches('.');
    text.to_string()
}

/// Writes the plot to `path`.
pub fn write_svg(path: &Path, title: &str, series: &[Series]) -> io::Result<()> {
    crate::create_parent_dir(path)?;
    std::fs::write(path, render_svg(title, series))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::{latency_histogram, record_ns};

    fn attribute<'a>(element: &'a str, name: &str) -> &'a str {
        let start = element.find(&format!(" {name}=\"")).unwrap() + name.len() + 3;
        let len = element[start..].find('"').unwrap();
        &element[start..start + len]
    }

    #[test]
    fn nines_axis() {
        assert_eq!(nines(0.0), Some(0.0));
        assert!((nines(0.9).unwrap() - 1.0).abs() < 1e-9);
        assert!((nines(0.999).unwrap() - 3.0).abs() < 1e-9);
        assert!((nines(0.99999).unwrap() - 5.0).abs() < 1e-6);
        assert_eq!(nines(1.0), None);
        assert_eq!(nines(f64::NAN), None);
    }

    #[test]
    fn labels_and_gridlines() {
        let labels: Vec<String> = (0..=5).map(percentile_label).collect();
        assert_eq!(labels, ["0%", "90%", "99%", "99.9%", "99.99%", "99.999%"]);
        let svg = render_svg("t", &[]);
        assert_eq!(svg.matches("class=\"grid-x\"").count(), 6);
        for label in &labels {
            assert!(svg.contains(&format!(">{label}</text>")), "{label}");
        }
    }

    #[test]
    fn nice_steps() {
        assert_eq!(nice_step(8.0), 1.0);
        assert_eq!(nice_step(9.0), 2.0);
        assert_eq!(nice_step(35.0), 5.0);
        assert_eq!(nice_step(0.7), 0.1);
        assert_eq!(nice_step(0.0), 1.0);
        assert_eq!(nice_step(f64::NAN), 1.0);
    }

    #[test]
    fn series_are_drawn_inside_the_plot_with_escaped_names() {
        let mut fast = latency_histogram();
        let mut slow = latency_histogram();
        for v in 1..=10_000u64 {
            record_ns(&mut fast, 1_000 + v % 100);
            record_ns(&mut slow, 50_000 + v * 3);
        }
        let series = [
            Series::from_histogram("order <round> trip", &fast),
            Series::from_histogram("tcp & echo", &slow),
        ];
        let svg = render_svg("a \"title\"", &series);
        assert!(svg.starts_with("<svg ") && svg.ends_with("</svg>\n"));
        assert!(svg.contains("order &lt;round&gt; trip"));
        assert!(svg.contains("tcp &amp; echo"));
        assert!(svg.contains("a &quot;title&quot;"));
        let polylines: Vec<&str> = svg.lines().filter(|l| l.contains("class=\"series\"")).collect();
        assert_eq!(polylines.len(), 2);
        let mut highest_y = [0.0f64; 2];
        for (i, line) in polylines.iter().enumerate() {
            let points = attribute(line, "points");
            let mut count = 0;
            for pair in points.split(' ') {
                let (x, y) = pair.split_once(',').unwrap();
                let (x, y): (f64, f64) = (x.parse().unwrap(), y.parse().unwrap());
                assert!((LEFT..=WIDTH - RIGHT).contains(&x), "{x}");
                assert!((TOP..=HEIGHT - BOTTOM).contains(&y), "{y}");
                highest_y[i] = highest_y[i].max(HEIGHT - y);
                count += 1;
            }
            assert!(count > 10, "{count} points");
        }
        // The slow series sits above the fast one.
        assert!(highest_y[1] > highest_y[0]);
    }

    #[test]
    fn series_from_hgrm_matches_from_histogram() {
        let mut hist = latency_histogram();
        for v in 1..=5_000u64 {
            record_ns(&mut hist, v * 7);
        }
        let mut text = Vec::new();
        crate::hgrm::write_percentile_distribution(
            &mut text,
            &hist,
            TICKS_PER_HALF_DISTANCE,
            1000.0,
        )
        .unwrap();
        let hgrm = crate::hgrm::parse(std::str::from_utf8(&text).unwrap()).unwrap();
        let a = Series::from_histogram("x", &hist);
        let b = Series::from_hgrm("x", &hgrm);
        assert_eq!(a.points.len(), b.points.len());
        for (p, q) in a.points.iter().zip(&b.points) {
            assert!((p.0 - q.0).abs() < 1e-9 && (p.1 - q.1).abs() < 1e-3, "{p:?} {q:?}");
        }
        assert!((a.max_us - b.max_us).abs() < 1e-3);
    }
}
