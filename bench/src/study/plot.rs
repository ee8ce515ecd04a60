//! The study's plot: one point per strategy, write amplification across,
//! space amplification up, labelled with the strategy and its read
//! amplification, so the trade-off between strategies is visible at once.

use std::fmt::Write;

use super::workload::StrategyResult;

const W: f64 = 760.0;
const H: f64 = 460.0;
const PAD: f64 = 70.0;

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// A standalone SVG document.
pub fn tradeoff(title: &str, results: &[StrategyResult]) -> String {
    let max_x = results
        .iter()
        .map(|r| r.write_amplification)
        .fold(1.0, f64::max)
        * 1.15;
    let max_y = results
        .iter()
        .map(|r| r.space_amplification)
        .fold(1.0, f64::max)
        * 1.15;
    let (pw, ph) = (W - 2.0 * PAD, H - 2.0 * PAD);
    let x_of = |v: f64| PAD + pw * v / max_x;
    let y_of = |v: f64| H - PAD - ph * v / max_y;
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(s, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        s,
        r#"<text x="{}" y="24" text-anchor="middle" font-size="15">{}</text>"#,
        W / 2.0,
        escape(title)
    );
    let _ = writeln!(
        s,
        r#"<rect x="{PAD}" y="{PAD}" width="{pw}" height="{ph}" fill="none" stroke="black"/>"#
    );
    for i in 0..=4 {
        let f = i as f64 / 4.0;
        let (x, y) = (x_of(max_x * f), y_of(max_y * f));
        let _ = writeln!(
            s,
            r#"<text x="{x:.1}" y="{}" text-anchor="middle">{:.1}</text><text x="{}" y="{:.1}" text-anchor="end">{:.2}</text>"#,
            H - PAD + 16.0,
            max_x * f,
            PAD - 6.0,
            y + 4.0,
            max_y * f
        );
    }
    let _ = writeln!(
        s,
        r#"<text x="{}" y="{}" text-anchor="middle">write amplification</text>"#,
        W / 2.0,
        H - 20.0
    );
    let _ = writeln!(
        s,
        r#"<text x="18" y="{}" text-anchor="middle" transform="rotate(-90 18 {})">space amplification</text>"#,
        H / 2.0,
        H / 2.0
    );
    for r in results {
        let (x, y) = (x_of(r.write_amplification), y_of(r.space_amplification));
        let _ = writeln!(
            s,
            r##"<circle cx="{x:.1}" cy="{y:.1}" r="5" fill="#1f77b4"/><text x="{:.1}" y="{:.1}">{} (read amp {:.1})</text>"##,
            x + 8.0,
            y - 6.0,
            escape(&r.strategy),
            r.read_amplification
        );
    }
    s.push_str("</svg>\n");
    s
}
