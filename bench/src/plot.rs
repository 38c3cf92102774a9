//! A dependency-free SVG line chart: a [`PlotSpec`] in, an SVG document
//! out. No I/O.
//!
//! `bench plot SPEC.json --out FILE.svg` renders a spec file; `bench run` and
//! `bench plot-results` build specs from result files; `tuning sweep` writes
//! a spec and calls `bench plot`, so the spec format is a contract:
//!
//! ```json
//! {"title": "…", "x_label": "…", "y_label": "…", "log_y": false,
//!  "series": [{"name": "…", "points": [[x, y], …]}]}
//! ```
//!
//! `log_y` is optional (default false). Each series is drawn as a polyline
//! through its points in the order given, with a marker on every point, in
//! its own colour, and named in the legend. Points that are not finite — or
//! not positive on a log axis — are left out. Axes get "nice" ticks (1, 2, 5
//! × 10ⁿ) on a linear scale and powers of ten on a log scale.

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

/// What to draw (the spec file's format, see the module docs).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct PlotSpec {
    /// Title above the chart.
    pub title: String,
    /// Label of the x axis.
    pub x_label: String,
    /// Label of the y axis.
    pub y_label: String,
    /// Logarithmic y axis.
    #[serde(default)]
    pub log_y: bool,
    /// The lines.
    pub series: Vec<Series>,
}

/// One line of a chart.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Series {
    /// Legend name.
    pub name: String,
    /// `[x, y]` points, drawn in this order.
    pub points: Vec<[f64; 2]>,
}

/// Document size, px.
const WIDTH: f64 = 820.0;
const HEIGHT: f64 = 460.0;
/// The plot area inside the document.
const LEFT: f64 = 84.0;
const RIGHT: f64 = 240.0;
const TOP: f64 = 48.0;
const BOTTOM: f64 = 64.0;

/// Series colours, in order (then repeated).
const COLOURS: &[&str] = &[
    "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
];

/// A mapping of data values to pixels along one axis.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Axis {
    lo: f64,
    hi: f64,
    log: bool,
    /// Pixel of `lo` and of `hi`.
    p0: f64,
    p1: f64,
}

impl Axis {
    fn pos(&self, v: f64) -> f64 {
        let (v, lo, hi) = if self.log {
            (v.log10(), self.lo.log10(), self.hi.log10())
        } else {
            (v, self.lo, self.hi)
        };
        let t = if hi > lo { (v - lo) / (hi - lo) } else { 0.5 };
        self.p0 + t * (self.p1 - self.p0)
    }
}

/// A step of 1, 2 or 5 × 10ⁿ giving about `target` intervals over `span`.
fn nice_step(span: f64, target: usize) -> f64 {
    let raw = span / target.max(1) as f64;
    if !(raw.is_finite() && raw > 0.0) {
        return 1.0;
    }
    let mag = 10f64.powf(raw.log10().floor());
    let f = raw / mag;
    let nice = if f <= 1.0 {
        1.0
    } else if f <= 2.0 {
        2.0
    } else if f <= 5.0 {
        5.0
    } else {
        10.0
    };
    nice * mag
}

/// The linear range covering `[lo, hi]` (extended to whole steps) and its
/// ticks. A single value gets a range around it; ranges of non-negative
/// data start at 0 when that is near.
fn linear_ticks(lo: f64, hi: f64) -> (f64, f64, Vec<f64>) {
    let (mut lo, mut hi) = (lo, hi);
    if lo >= 0.0 && lo <= hi * 0.5 {
        lo = 0.0;
    }
    if hi - lo <= f64::EPSILON * hi.abs().max(1.0) {
        let pad = if hi == 0.0 { 1.0 } else { hi.abs() * 0.5 };
        lo -= pad;
        hi += pad;
        if lo < 0.0 && hi - pad >= 0.0 {
            lo = 0.0;
        }
    }
    let step = nice_step(hi - lo, 5);
    let lo = (lo / step).floor() * step;
    let hi = (hi / step).ceil() * step;
    let n = ((hi - lo) / step).round() as usize;
    let ticks = (0..=n).map(|i| lo + i as f64 * step).collect();
    (lo, hi, ticks)
}

/// The log range covering `[lo, hi]` (both > 0), whole decades, and one
/// tick per decade.
fn log_ticks(lo: f64, hi: f64) -> (f64, f64, Vec<f64>) {
    let a = lo.log10().floor() as i32;
    let mut b = hi.log10().ceil() as i32;
    if b <= a {
        b = a + 1;
    }
    let ticks = (a..=b).map(|e| 10f64.powi(e)).collect();
    (10f64.powi(a), 10f64.powi(b), ticks)
}

/// A tick label: short, without float noise (1.5k, 2M, 0.25, 1e-3).
#[must_use]
pub fn format_tick(v: f64) -> String {
    let a = v.abs();
    if a == 0.0 {
        return "0".into();
    }
    let trim = |s: String| {
        if s.contains('.') {
            s.trim_end_matches('0').trim_end_matches('.').to_string()
        } else {
            s
        }
    };
    if a >= 1e9 {
        format!("{}G", trim(format!("{:.2}", v / 1e9)))
    } else if a >= 1e6 {
        format!("{}M", trim(format!("{:.2}", v / 1e6)))
    } else if a >= 1e4 {
        format!("{}k", trim(format!("{:.2}", v / 1e3)))
    } else if a >= 1.0 {
        trim(format!("{v:.2}"))
    } else if a >= 1e-3 {
        trim(format!("{v:.4}"))
    } else {
        format!("{v:.0e}")
    }
}

/// Escapes text for SVG content and attributes.
#[must_use]
pub fn xml_escape(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&apos;"),
            c => o.push(c),
        }
    }
    o
}

/// The points of a series that can be drawn on this y scale.
fn drawable(s: &Series, log_y: bool) -> impl Iterator<Item = (f64, f64)> + '_ {
    s.points
        .iter()
        .map(|p| (p[0], p[1]))
        .filter(move |(x, y)| x.is_finite() && y.is_finite() && (!log_y || *y > 0.0))
}

/// Renders `spec` as a complete SVG document.
#[must_use]
pub fn render_svg(spec: &PlotSpec) -> String {
    let pts: Vec<(f64, f64)> = spec
        .series
        .iter()
        .flat_map(|s| drawable(s, spec.log_y))
        .collect();
    let (x_lo, x_hi, x_ticks) = if pts.is_empty() {
        linear_ticks(0.0, 1.0)
    } else {
        let lo = pts.iter().map(|p| p.0).fold(f64::INFINITY, f64::min);
        let hi = pts.iter().map(|p| p.0).fold(f64::NEG_INFINITY, f64::max);
        linear_ticks(lo, hi)
    };
    let (y_lo, y_hi, y_ticks) = match (pts.is_empty(), spec.log_y) {
        (true, false) => linear_ticks(0.0, 1.0),
        (true, true) => log_ticks(1.0, 10.0),
        (false, log) => {
            let lo = pts.iter().map(|p| p.1).fold(f64::INFINITY, f64::min);
            let hi = pts.iter().map(|p| p.1).fold(f64::NEG_INFINITY, f64::max);
            if log {
                log_ticks(lo, hi)
            } else {
                linear_ticks(lo, hi)
            }
        }
    };
    let (pl, pr, pt, pb) = (LEFT, WIDTH - RIGHT, TOP, HEIGHT - BOTTOM);
    let xa = Axis {
        lo: x_lo,
        hi: x_hi,
        log: false,
        p0: pl,
        p1: pr,
    };
    let ya = Axis {
        lo: y_lo,
        hi: y_hi,
        log: spec.log_y,
        p0: pb,
        p1: pt,
    };

    let mut o = String::new();
    let _ = writeln!(
        o,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(
        o,
        r##"<rect x="0" y="0" width="{WIDTH}" height="{HEIGHT}" fill="#ffffff"/>"##
    );
    let _ = writeln!(
        o,
        r#"<text x="12" y="26" font-size="14" font-weight="bold">{}</text>"#,
        xml_escape(&spec.title)
    );
    // Grid, ticks and tick labels.
    for &t in &x_ticks {
        let x = xa.pos(t);
        let _ = writeln!(
            o,
            r##"<line x1="{x:.1}" y1="{pt:.1}" x2="{x:.1}" y2="{pb:.1}" stroke="#e4e4e4"/>"##
        );
        let _ = writeln!(
            o,
            r#"<text x="{x:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
            pb + 18.0,
            xml_escape(&format_tick(t))
        );
    }
    for &t in &y_ticks {
        let y = ya.pos(t);
        let _ = writeln!(
            o,
            r##"<line x1="{pl:.1}" y1="{y:.1}" x2="{pr:.1}" y2="{y:.1}" stroke="#e4e4e4"/>"##
        );
        let _ = writeln!(
            o,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"#,
            pl - 8.0,
            y + 4.0,
            xml_escape(&format_tick(t))
        );
    }
    // Axes and labels.
    let _ = writeln!(
        o,
        r##"<rect x="{pl:.1}" y="{pt:.1}" width="{:.1}" height="{:.1}" fill="none" stroke="#333333"/>"##,
        pr - pl,
        pb - pt
    );
    let _ = writeln!(
        o,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
        (pl + pr) / 2.0,
        HEIGHT - 18.0,
        xml_escape(&spec.x_label)
    );
    let (lx, ly) = (20.0, (pt + pb) / 2.0);
    let _ = writeln!(
        o,
        r#"<text x="{lx:.1}" y="{ly:.1}" text-anchor="middle" transform="rotate(-90 {lx:.1} {ly:.1})">{}{}</text>"#,
        xml_escape(&spec.y_label),
        if spec.log_y { " (log)" } else { "" }
    );
    if pts.is_empty() {
        let _ = writeln!(
            o,
            r##"<text x="{:.1}" y="{:.1}" text-anchor="middle" fill="#888888">no data</text>"##,
            (pl + pr) / 2.0,
            (pt + pb) / 2.0
        );
    }
    // Series and legend.
    for (i, s) in spec.series.iter().enumerate() {
        let colour = COLOURS[i % COLOURS.len()];
        let px: Vec<(f64, f64)> = drawable(s, spec.log_y)
            .map(|(x, y)| (xa.pos(x), ya.pos(y)))
            .collect();
        let _ = writeln!(o, r#"<g class="series">"#);
        if px.len() > 1 {
            let points: Vec<String> = px.iter().map(|(x, y)| format!("{x:.1},{y:.1}")).collect();
            let _ = writeln!(
                o,
                r#"<polyline fill="none" stroke="{colour}" stroke-width="2" points="{}"/>"#,
                points.join(" ")
            );
        }
        for (x, y) in &px {
            let _ = writeln!(
                o,
                r#"<circle cx="{x:.1}" cy="{y:.1}" r="3.5" fill="{colour}"/>"#
            );
        }
        let _ = writeln!(o, "</g>");
        let ly = pt + 10.0 + i as f64 * 20.0;
        let lx = pr + 14.0;
        let _ = writeln!(
            o,
            r#"<line x1="{lx:.1}" y1="{ly:.1}" x2="{:.1}" y2="{ly:.1}" stroke="{colour}" stroke-width="2"/>"#,
            lx + 22.0
        );
        let _ = writeln!(
            o,
            r#"<circle cx="{:.1}" cy="{ly:.1}" r="3.5" fill="{colour}"/>"#,
            lx + 11.0
        );
        let _ = writeln!(
            o,
            r#"<text x="{:.1}" y="{:.1}" font-size="11">{}</text>"#,
            lx + 28.0,
            ly + 4.0,
            xml_escape(&s.name)
        );
    }
    o.push_str("</svg>\n");
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(series: Vec<Series>, log_y: bool) -> PlotSpec {
        PlotSpec {
            title: "t".into(),
            x_label: "x".into(),
            y_label: "y".into(),
            log_y,
            series,
        }
    }

    fn line(name: &str, points: &[[f64; 2]]) -> Series {
        Series {
            name: name.into(),
            points: points.to_vec(),
        }
    }

    /// Every opened element is closed, in order (the documents have no
    /// comments, CDATA or `>` inside attribute values).
    fn assert_well_formed(svg: &str) {
        let mut stack = Vec::new();
        let mut rest = svg;
        while let Some(i) = rest.find('<') {
            let end = rest[i..].find('>').expect("tag closes") + i;
            let tag = &rest[i + 1..end];
            if let Some(name) = tag.strip_prefix('/') {
                assert_eq!(stack.pop().as_deref(), Some(name), "in {svg}");
            } else if !tag.ends_with('/') {
                stack.push(tag.split_whitespace().next().expect("name").to_string());
            }
            rest = &rest[end + 1..];
        }
        assert!(stack.is_empty(), "unclosed {stack:?}");
        assert!(svg.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""));
        assert!(svg.trim_end().ends_with("</svg>"));
    }

    /// The coordinates of the first polyline.
    fn polyline(svg: &str) -> Vec<(f64, f64)> {
        let start = svg.find("<polyline").expect("a polyline");
        let p = &svg[start..];
        let p = &p[p.find("points=\"").expect("points") + 8..];
        p[..p.find('"').expect("end")]
            .split(' ')
            .map(|xy| {
                let (x, y) = xy.split_once(',').expect("x,y");
                (x.parse().expect("x"), y.parse().expect("y"))
            })
            .collect()
    }

    #[test]
    fn renders_a_well_formed_document_with_legend_and_markers() {
        let svg = render_svg(&spec(
            vec![
                line("gateway <1 shard>", &[[1.0, 2.0], [2.0, 4.0], [3.0, 3.0]]),
                line("bun", &[[1.0, 1.0], [2.0, 5.0]]),
            ],
            false,
        ));
        assert_well_formed(&svg);
        assert_eq!(svg.matches("<polyline").count(), 2);
        // 5 markers plus one legend marker per series.
        assert_eq!(svg.matches("<circle").count(), 7);
        assert!(svg.contains("gateway &lt;1 shard&gt;"), "names are escaped");
        assert!(svg.contains(">bun</text>"));
    }

    #[test]
    fn points_scale_to_the_plot_area() {
        // x 0..10 and y 0..100 are already nice ranges: the ends of the
        // line are the plot area's corners.
        let svg = render_svg(&spec(vec![line("a", &[[0.0, 0.0], [10.0, 100.0]])], false));
        let pts = polyline(&svg);
        assert_eq!(pts[0], (LEFT, HEIGHT - BOTTOM));
        assert_eq!(pts[1], (WIDTH - RIGHT, TOP));
        let mid = render_svg(&spec(
            vec![line("a", &[[0.0, 0.0], [5.0, 50.0], [10.0, 100.0]])],
            false,
        ));
        let p = polyline(&mid)[1];
        assert!((p.0 - (LEFT + WIDTH - RIGHT) / 2.0).abs() < 0.1, "{p:?}");
        assert!((p.1 - (TOP + HEIGHT - BOTTOM) / 2.0).abs() < 0.1, "{p:?}");
    }

    #[test]
    fn empty_series_still_draw_axes() {
        for series in [vec![], vec![line("nothing", &[])]] {
            let svg = render_svg(&spec(series, false));
            assert_well_formed(&svg);
            assert!(svg.contains("no data"));
            assert!(!svg.contains("<polyline"));
        }
        let svg = render_svg(&spec(vec![line("nothing", &[])], true));
        assert_well_formed(&svg);
    }

    #[test]
    fn a_log_axis_has_decade_ticks_and_drops_non_positive_values() {
        let svg = render_svg(&spec(
            vec![line(
                "p99",
                &[[1.0, 0.0], [2.0, 30.0], [3.0, 700.0], [4.0, f64::NAN]],
            )],
            true,
        ));
        assert_well_formed(&svg);
        for label in [">10</text>", ">100</text>", ">1000</text>"] {
            assert!(svg.contains(label), "{label} in {svg}");
        }
        assert!(svg.contains("(log)"));
        let pts = polyline(&svg);
        assert_eq!(pts.len(), 2, "0 and NaN are left out");
        // 30 and 700 on a 10..1000 decade axis.
        let h = HEIGHT - BOTTOM - TOP;
        let y = |v: f64| HEIGHT - BOTTOM - (v.log10() - 1.0) / 2.0 * h;
        assert!((pts[0].1 - y(30.0)).abs() < 0.1);
        assert!((pts[1].1 - y(700.0)).abs() < 0.1);
    }

    #[test]
    fn a_single_point_gets_a_range_around_it() {
        let svg = render_svg(&spec(vec![line("one", &[[5.0, 7.0]])], false));
        assert_well_formed(&svg);
        assert_eq!(svg.matches("<circle").count(), 2);
        assert!(!svg.contains("NaN"));
    }

    #[test]
    fn nice_ticks_and_labels() {
        assert_eq!(linear_ticks(0.0, 97.0).2.len(), 6); // 0, 20, …, 100
        assert_eq!(linear_ticks(0.0, 97.0).1, 100.0);
        assert_eq!(
            log_ticks(3.0, 4000.0).2,
            vec![1.0, 10.0, 100.0, 1000.0, 10_000.0]
        );
        assert_eq!(format_tick(0.0), "0");
        assert_eq!(format_tick(2.5), "2.5");
        assert_eq!(format_tick(20_000.0), "20k");
        assert_eq!(format_tick(1_500_000.0), "1.5M");
        assert_eq!(format_tick(0.25), "0.25");
    }

    #[test]
    fn the_spec_format_reads_with_and_without_log_y() {
        let s: PlotSpec = serde_json::from_str(
            r#"{"title":"T","x_label":"X","y_label":"Y",
                "series":[{"name":"a","points":[[1,2],[3.5,4]]}]}"#,
        )
        .expect("valid spec");
        assert!(!s.log_y);
        assert_eq!(s.series[0].points, vec![[1.0, 2.0], [3.5, 4.0]]);
        let s: PlotSpec = serde_json::from_str(
            r#"{"title":"T","x_label":"X","y_label":"Y","log_y":true,"series":[]}"#,
        )
        .expect("valid spec");
        assert!(s.log_y);
    }
}
