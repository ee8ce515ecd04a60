//! Two plots as standalone SVG documents: a throughput timeline (operations
//! per second over the phase) and latency CDFs (one line per operation type,
//! logarithmic latency axis). Plain SVG 1.1, viewable in any browser.

use std::fmt::Write;

use crate::report::recorder::OpLatency;

const WIDTH: f64 = 720.0;
const HEIGHT: f64 = 420.0;
const LEFT: f64 = 80.0;
const RIGHT: f64 = 150.0;
const TOP: f64 = 40.0;
const BOTTOM: f64 = 50.0;
const COLOURS: [&str; 8] = [
    "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf",
];

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// Plot area width and height.
fn plot_size() -> (f64, f64) {
    (WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM)
}

fn header(title: &str, x_label: &str, y_label: &str) -> String {
    let (w, h) = plot_size();
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(s, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        s,
        r#"<text x="{}" y="22" text-anchor="middle" font-size="15">{}</text>"#,
        LEFT + w / 2.0,
        escape(title)
    );
    let _ = writeln!(
        s,
        r#"<rect x="{LEFT}" y="{TOP}" width="{w}" height="{h}" fill="none" stroke="black"/>"#
    );
    let _ = writeln!(
        s,
        r#"<text x="{}" y="{}" text-anchor="middle">{}</text>"#,
        LEFT + w / 2.0,
        HEIGHT - 12.0,
        escape(x_label)
    );
    let _ = writeln!(
        s,
        r#"<text x="18" y="{}" text-anchor="middle" transform="rotate(-90 18 {})">{}</text>"#,
        TOP + h / 2.0,
        TOP + h / 2.0,
        escape(y_label)
    );
    s
}

fn x_tick(s: &mut String, x: f64, label: &str) {
    let (_, h) = plot_size();
    let y = TOP + h;
    let _ = writeln!(
        s,
        r#"<line x1="{x:.1}" y1="{y}" x2="{x:.1}" y2="{}" stroke="black"/><text x="{x:.1}" y="{}" text-anchor="middle">{label}</text>"#,
        y + 5.0,
        y + 18.0
    );
}

fn y_tick(s: &mut String, y: f64, label: &str) {
    let _ = writeln!(
        s,
        r##"<line x1="{}" y1="{y:.1}" x2="{LEFT}" y2="{y:.1}" stroke="black"/><line x1="{LEFT}" y1="{y:.1}" x2="{}" y2="{y:.1}" stroke="#ddd"/><text x="{}" y="{:.1}" text-anchor="end">{label}</text>"##,
        LEFT - 5.0,
        WIDTH - RIGHT,
        LEFT - 8.0,
        y + 4.0
    );
}

fn polyline(s: &mut String, points: &[(f64, f64)], colour: &str) {
    let pts: Vec<String> = points
        .iter()
        .map(|(x, y)| format!("{x:.1},{y:.1}"))
        .collect();
    let _ = writeln!(
        s,
        r#"<polyline fill="none" stroke="{colour}" stroke-width="1.5" points="{}"/>"#,
        pts.join(" ")
    );
}

/// A readable count: 1234567 → "1.23M".
fn short(v: f64) -> String {
    if v >= 1e6 {
        format!("{:.2}M", v / 1e6)
    } else if v >= 1e3 {
        format!("{:.1}k", v / 1e3)
    } else {
        format!("{v:.0}")
    }
}

/// Operations per second over the phase.
pub fn timeline(title: &str, per_second: &[u64]) -> String {
    let (w, h) = plot_size();
    let mut s = header(title, "elapsed seconds", "operations per second");
    let max = per_second.iter().copied().max().unwrap_or(0).max(1) as f64;
    let secs = per_second.len().max(1) as f64;
    for i in 0..=4 {
        let v = max * i as f64 / 4.0;
        y_tick(&mut s, TOP + h - h * i as f64 / 4.0, &short(v));
        x_tick(
            &mut s,
            LEFT + w * i as f64 / 4.0,
            &format!("{}", (secs * i as f64 / 4.0 * 10.0).round() / 10.0),
        );
    }
    // Each second's count is drawn at the middle of its second.
    let points: Vec<(f64, f64)> = per_second
        .iter()
        .enumerate()
        .map(|(i, &n)| {
            (
                LEFT + w * (i as f64 + 0.5) / secs,
                TOP + h - h * n as f64 / max,
            )
        })
        .collect();
    polyline(&mut s, &points, COLOURS[0]);
    s.push_str("</svg>\n");
    s
}

/// Latency CDF per operation type (x: latency, log scale; y: fraction).
pub fn latency_cdf(title: &str, ops: &[OpLatency]) -> String {
    let (w, h) = plot_size();
    let mut s = header(
        title,
        "latency (microseconds, log scale)",
        "fraction of operations",
    );
    let all = ops.iter().flat_map(|o| o.cdf.iter().map(|p| p.0));
    // With no points the axis spans 1..10 µs; with points, at least a decade.
    let lo = all.clone().fold(f64::INFINITY, f64::min);
    let lo = if lo.is_finite() { lo.max(0.01) } else { 1.0 };
    let hi = all.fold(0.0, f64::max).max(lo * 10.0);
    let (lo_dec, hi_dec) = (lo.log10().floor(), hi.log10().ceil());
    let span = (hi_dec - lo_dec).max(1.0);
    let x_of = |us: f64| LEFT + w * (us.max(lo).log10() - lo_dec) / span;
    let mut d = lo_dec;
    while d <= hi_dec {
        let v = 10f64.powf(d);
        x_tick(
            &mut s,
            x_of(v),
            &if v < 1.0 { format!("{v}") } else { short(v) },
        );
        d += 1.0;
    }
    for i in 0..=4 {
        let f = i as f64 / 4.0;
        y_tick(&mut s, TOP + h - h * f, &format!("{f:.2}"));
    }
    for (i, op) in ops.iter().enumerate() {
        let colour = COLOURS[i % COLOURS.len()];
        let points: Vec<(f64, f64)> = op
            .cdf
            .iter()
            .map(|&(us, q)| (x_of(us), TOP + h - h * q))
            .collect();
        polyline(&mut s, &points, colour);
        let ly = TOP + 15.0 + 18.0 * i as f64;
        let lx = WIDTH - RIGHT + 10.0;
        let _ = writeln!(
            s,
            r#"<line x1="{lx}" y1="{ly}" x2="{}" y2="{ly}" stroke="{colour}" stroke-width="2"/><text x="{}" y="{}">{}</text>"#,
            lx + 20.0,
            lx + 25.0,
            ly + 4.0,
            escape(op.op.name())
        );
    }
    s.push_str("</svg>\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::recorder::OpKind;

    #[test]
    fn plots_are_well_formed_documents() {
        let t = timeline("fill <random>", &[100, 2000, 1500]);
        assert!(t.starts_with("<svg") && t.trim_end().ends_with("</svg>"));
        assert!(t.contains("fill &lt;random&gt;"));
        assert_eq!(t.matches("<polyline").count(), 1);
        let op = OpLatency {
            op: OpKind::Read,
            count: 3,
            mean_us: 2.0,
            p50_us: 2.0,
            p99_us: 3.0,
            p999_us: 3.0,
            max_us: 3.0,
            cdf: vec![(1.0, 0.3), (2.0, 0.6), (3.0, 1.0)],
        };
        let c = latency_cdf(
            "cdf",
            &[
                op.clone(),
                OpLatency {
                    op: OpKind::Update,
                    ..op
                },
            ],
        );
        assert_eq!(c.matches("<polyline").count(), 2);
        assert!(c.contains("UPDATE"));
        // Empty inputs still give a document.
        assert!(timeline("t", &[]).contains("</svg>"));
        assert!(latency_cdf("c", &[]).contains("</svg>"));
    }
}
