//! A small SVG chart shared by every plot o3-bench writes: a frame, two axes
//! whose ticks come from [`super::ticks`], series drawn as lines or points in
//! distinct colours, and a legend beside the plot, so no label sits over the
//! data or over another label. Plain SVG 1.1 with no fonts to install; text
//! sizes are estimated from the character count (see [`text_width`]).

use std::fmt::Write;

use super::ticks;

/// Series colours in order (matplotlib's "tab10", chosen to be told apart
/// on screen and in print). A chart with more series than colours reuses
/// them; the legend still names every series.
pub const PALETTE: [&str; 10] = [
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
    "#bcbd22", "#17becf",
];

/// Font size of tick labels, axis labels and the legend.
pub const FONT_SIZE: f64 = 12.0;
const TITLE_SIZE: f64 = 15.0;
/// Average advance of a sans-serif character, in font sizes (generous, so
/// layouts based on it leave room).
pub(crate) const CHAR_WIDTH: f64 = 0.6;

const PLOT_WIDTH: f64 = 520.0;
const PLOT_HEIGHT: f64 = 320.0;
const TOP: f64 = 40.0;
const BOTTOM: f64 = 50.0;
const TICK: f64 = 5.0;
const GAP: f64 = 8.0;
/// Height of a legend line, and the extra space between two series.
const LEGEND_LINE: f64 = 15.0;
const LEGEND_GAP: f64 = 4.0;
/// Longest legend line in characters; longer series names wrap after a
/// comma, a colon or a space (strategy labels run to a hundred characters).
const LEGEND_CHARS: usize = 40;
const SWATCH: f64 = 20.0;

/// Estimated width of `text` at `font_size`.
pub fn text_width(text: &str, font_size: f64) -> f64 {
    text.chars().count() as f64 * CHAR_WIDTH * font_size
}

/// `text` in lines of at most `max` characters, broken after a comma, a
/// colon or a space (a piece with no break in it stays whole).
fn wrap(text: &str, max: usize) -> Vec<String> {
    let mut lines = Vec::new();
    let mut line = String::new();
    for piece in text.split_inclusive([',', ':', ' ']) {
        if !line.is_empty() && line.chars().count() + piece.chars().count() > max {
            lines.push(std::mem::take(&mut line).trim_end().to_string());
        }
        line.push_str(piece);
    }
    if !line.is_empty() || lines.is_empty() {
        lines.push(line.trim_end().to_string());
    }
    lines
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// One labelled tick, at a value in the axis's data units.
#[derive(Debug, Clone, PartialEq)]
pub struct Tick {
    pub at: f64,
    pub label: String,
}

/// An axis: its label, the span drawn and its ticks.
#[derive(Debug, Clone)]
pub struct Axis {
    pub label: String,
    pub lo: f64,
    pub hi: f64,
    /// Values are placed by their logarithm (all must be positive).
    pub log: bool,
    pub ticks: Vec<Tick>,
}

impl Axis {
    /// A linear axis spanning round ticks that cover `lo..=hi`.
    pub fn linear(label: &str, lo: f64, hi: f64) -> Axis {
        let t = ticks::linear(lo, hi);
        Axis {
            label: label.to_string(),
            lo: t.values.first().copied().unwrap_or(0.0),
            hi: t.values.last().copied().unwrap_or(1.0),
            log: false,
            ticks: t
                .values
                .iter()
                .map(|&v| Tick {
                    at: v,
                    label: ticks::label(v, t.step),
                })
                .collect(),
        }
    }

    /// A logarithmic axis spanning the decades that cover `lo..=hi`, each
    /// labelled by `name`.
    pub fn log10(label: &str, lo: f64, hi: f64, name: fn(f64) -> String) -> Axis {
        let t = ticks::log10(lo, hi);
        Axis {
            label: label.to_string(),
            lo: t.first().copied().unwrap_or(1.0),
            hi: t.last().copied().unwrap_or(10.0),
            log: true,
            ticks: t
                .iter()
                .map(|&v| Tick {
                    at: v,
                    label: name(v),
                })
                .collect(),
        }
    }

    /// A linear axis over `lo..=hi` with ticks the caller chose (e.g.
    /// percentiles on a nines axis).
    pub fn custom(label: &str, lo: f64, hi: f64, ticks: Vec<Tick>) -> Axis {
        Axis {
            label: label.to_string(),
            lo,
            hi: if hi > lo { hi } else { lo + 1.0 },
            log: false,
            ticks,
        }
    }

    /// Where `v` falls, from 0 (the axis's start) to 1 (its end); values
    /// outside the span are held at its ends.
    fn fraction(&self, v: f64) -> f64 {
        let f = if self.log {
            let low = self.lo.max(f64::MIN_POSITIVE).log10();
            let high = self.hi.max(f64::MIN_POSITIVE).log10();
            (v.max(f64::MIN_POSITIVE).log10() - low) / (high - low)
        } else {
            (v - self.lo) / (self.hi - self.lo)
        };
        if f.is_finite() {
            f.clamp(0.0, 1.0)
        } else {
            0.0
        }
    }
}

/// How a series is drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mark {
    /// A line through the points in order.
    Line,
    /// A dot per point.
    Points,
}

/// One named series; its colour is [`PALETTE`] at its index in the chart.
#[derive(Debug, Clone)]
pub struct Series {
    pub name: String,
    pub points: Vec<(f64, f64)>,
    pub mark: Mark,
}

/// A chart ready to be written as SVG.
#[derive(Debug, Clone)]
pub struct Chart {
    pub title: String,
    pub x: Axis,
    pub y: Axis,
    pub series: Vec<Series>,
    /// Name the series in a legend right of the plot.
    pub legend: bool,
}

/// Where the parts of a chart go, worked out from its text sizes.
struct Layout {
    left: f64,
    legend_x: f64,
    width: f64,
    height: f64,
}

impl Chart {
    fn layout(&self) -> Layout {
        let widest_y_tick = self
            .y
            .ticks
            .iter()
            .map(|t| text_width(&t.label, FONT_SIZE))
            .fold(0.0, f64::max);
        // Rotated y label, a gap, the tick labels, a gap, the tick marks.
        let left = 6.0 + FONT_SIZE + GAP + widest_y_tick + GAP + TICK;
        // The last x tick label reaches half its width past the plot.
        let last_x_tick = self
            .x
            .ticks
            .last()
            .map_or(0.0, |t| text_width(&t.label, FONT_SIZE) / 2.0);
        let legend_x = left + PLOT_WIDTH + last_x_tick.max(GAP) + 2.0 * GAP;
        let rows = self.legend_rows();
        let legend_width = if rows.is_empty() {
            last_x_tick
        } else {
            let widest = rows
                .iter()
                .flatten()
                .map(|line| text_width(line, FONT_SIZE))
                .fold(0.0, f64::max);
            legend_x - (left + PLOT_WIDTH) + SWATCH + GAP + widest
        };
        let width = (left + PLOT_WIDTH + legend_width + 2.0 * GAP)
            .max(text_width(&self.title, TITLE_SIZE) + 4.0 * GAP);
        let lines = rows.iter().map(Vec::len).sum::<usize>() as f64;
        let legend_height = lines * LEGEND_LINE + rows.len() as f64 * LEGEND_GAP;
        let height = (TOP + PLOT_HEIGHT + BOTTOM).max(TOP + legend_height + BOTTOM);
        Layout {
            left,
            legend_x,
            width: width.ceil(),
            height: height.ceil(),
        }
    }

    /// The legend's lines per series (none without a legend).
    fn legend_rows(&self) -> Vec<Vec<String>> {
        if !self.legend {
            return Vec::new();
        }
        self.series
            .iter()
            .map(|s| wrap(&s.name, LEGEND_CHARS))
            .collect()
    }

    /// The chart as a standalone SVG document.
    pub fn to_svg(&self) -> String {
        let l = self.layout();
        let mut s = String::new();
        let _ = writeln!(
            s,
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" font-family="sans-serif" font-size="{FONT_SIZE}">"#,
            w = l.width,
            h = l.height
        );
        let _ = writeln!(s, r#"<rect width="100%" height="100%" fill="white"/>"#);
        let _ = writeln!(
            s,
            r#"<text x="{:.1}" y="22" text-anchor="middle" font-size="{TITLE_SIZE}">{}</text>"#,
            l.width / 2.0,
            escape(&self.title)
        );
        self.write_axes(&mut s, &l);
        for (i, series) in self.series.iter().enumerate() {
            self.write_series(&mut s, &l, series, PALETTE[i % PALETTE.len()]);
        }
        if self.legend {
            self.write_legend(&mut s, &l);
        }
        s.push_str("</svg>\n");
        s
    }

    fn x_pos(&self, l: &Layout, v: f64) -> f64 {
        l.left + PLOT_WIDTH * self.x.fraction(v)
    }

    fn y_pos(&self, v: f64) -> f64 {
        TOP + PLOT_HEIGHT * (1.0 - self.y.fraction(v))
    }

    /// Grid lines, tick marks, tick labels, the frame and the axis labels.
    fn write_axes(&self, s: &mut String, l: &Layout) {
        let (right, bottom) = (l.left + PLOT_WIDTH, TOP + PLOT_HEIGHT);
        for t in &self.x.ticks {
            let x = self.x_pos(l, t.at);
            let _ = writeln!(
                s,
                r##"<line x1="{x:.1}" y1="{TOP}" x2="{x:.1}" y2="{bottom}" stroke="#e5e5e5"/><line x1="{x:.1}" y1="{bottom}" x2="{x:.1}" y2="{}" stroke="black"/><text x="{x:.1}" y="{}" text-anchor="middle">{}</text>"##,
                bottom + TICK,
                bottom + TICK + FONT_SIZE + 2.0,
                escape(&t.label)
            );
        }
        for t in &self.y.ticks {
            let y = self.y_pos(t.at);
            let _ = writeln!(
                s,
                r##"<line x1="{}" y1="{y:.1}" x2="{right}" y2="{y:.1}" stroke="#e5e5e5"/><line x1="{}" y1="{y:.1}" x2="{}" y2="{y:.1}" stroke="black"/><text x="{}" y="{:.1}" text-anchor="end">{}</text>"##,
                l.left,
                l.left - TICK,
                l.left,
                l.left - TICK - GAP,
                y + FONT_SIZE / 3.0,
                escape(&t.label)
            );
        }
        let _ = writeln!(
            s,
            r#"<rect x="{}" y="{TOP}" width="{PLOT_WIDTH}" height="{PLOT_HEIGHT}" fill="none" stroke="black"/>"#,
            l.left
        );
        let _ = writeln!(
            s,
            r#"<text x="{:.1}" y="{}" text-anchor="middle">{}</text>"#,
            l.left + PLOT_WIDTH / 2.0,
            bottom + BOTTOM - 8.0,
            escape(&self.x.label)
        );
        let (lx, ly) = (6.0 + FONT_SIZE * 0.8, TOP + PLOT_HEIGHT / 2.0);
        let _ = writeln!(
            s,
            r#"<text x="{lx:.1}" y="{ly:.1}" text-anchor="middle" transform="rotate(-90 {lx:.1} {ly:.1})">{}</text>"#,
            escape(&self.y.label)
        );
    }

    fn write_series(&self, s: &mut String, l: &Layout, series: &Series, colour: &str) {
        let name = escape(&series.name);
        match series.mark {
            Mark::Line => {
                let points: Vec<String> = series
                    .points
                    .iter()
                    .map(|&(x, y)| format!("{:.1},{:.1}", self.x_pos(l, x), self.y_pos(y)))
                    .collect();
                let _ = writeln!(
                    s,
                    r#"<polyline data-series="{name}" fill="none" stroke="{colour}" stroke-width="1.5" points="{}"/>"#,
                    points.join(" ")
                );
            }
            Mark::Points => {
                for &(x, y) in &series.points {
                    let _ = writeln!(
                        s,
                        r#"<circle data-series="{name}" cx="{:.1}" cy="{:.1}" r="5" fill="{colour}" stroke="white"/>"#,
                        self.x_pos(l, x),
                        self.y_pos(y)
                    );
                }
            }
        }
    }

    /// One row per series: a swatch in its colour (a line for lines, a
    /// square for points) beside its name, wrapped onto as many lines as it
    /// needs.
    fn write_legend(&self, s: &mut String, l: &Layout) {
        let x = l.legend_x;
        let mut y = TOP + LEGEND_LINE / 2.0;
        for (i, (series, lines)) in self.series.iter().zip(self.legend_rows()).enumerate() {
            let colour = PALETTE[i % PALETTE.len()];
            match series.mark {
                Mark::Line => {
                    let _ = write!(
                        s,
                        r#"<line x1="{x:.1}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="{colour}" stroke-width="2"/>"#,
                        x + SWATCH
                    );
                }
                Mark::Points => {
                    let _ = write!(
                        s,
                        r#"<rect x="{:.1}" y="{:.1}" width="10" height="10" fill="{colour}"/>"#,
                        x + SWATCH / 2.0 - 5.0,
                        y - 5.0
                    );
                }
            }
            for line in lines {
                let _ = writeln!(
                    s,
                    r#"<text x="{:.1}" y="{:.1}">{}</text>"#,
                    x + SWATCH + GAP,
                    y + FONT_SIZE / 3.0,
                    escape(&line)
                );
                y += LEGEND_LINE;
            }
            y += LEGEND_GAP;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::chart_reader::*;

    fn chart(names: &[&str], mark: Mark) -> Chart {
        Chart {
            title: "a <title> & more".into(),
            x: Axis::linear("x", 0.0, 39.0),
            y: Axis::linear("y", 0.0, 18_800.0),
            series: names
                .iter()
                .enumerate()
                .map(|(i, n)| Series {
                    name: n.to_string(),
                    points: vec![(1.0, 100.0 * i as f64), (30.0, 18_000.0)],
                    mark,
                })
                .collect(),
            legend: true,
        }
    }

    #[test]
    fn a_chart_is_a_document_with_escaped_text_and_round_ticks() {
        let svg = chart(&["one"], Mark::Line).to_svg();
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        assert!(svg.contains("a &lt;title&gt; &amp; more"));
        let texts: Vec<String> = text_boxes(&svg).into_iter().map(|b| b.text).collect();
        for label in ["0", "5k", "10k", "15k", "20k", "10", "20", "30", "40"] {
            assert!(texts.iter().any(|t| t == label), "{label} in {texts:?}");
        }
    }

    #[test]
    fn series_get_distinct_colours_and_labels_never_overlap() {
        let names: Vec<String> = (0..PALETTE.len())
            .map(|i| format!("series number {i} with a long name"))
            .collect();
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        for mark in [Mark::Line, Mark::Points] {
            let svg = chart(&names, mark).to_svg();
            assert_distinct_colours(&svg, names.len());
            assert_eq!(overlapping_texts(&svg), None);
        }
        // A legend taller than the plot grows the document instead.
        let many: Vec<String> = (0..30).map(|i| format!("s{i}")).collect();
        let many: Vec<&str> = many.iter().map(String::as_str).collect();
        assert_eq!(overlapping_texts(&chart(&many, Mark::Line).to_svg()), None);
    }

    #[test]
    fn long_legend_names_wrap_at_breaks() {
        let name = "one-leveling:picker=tombstone-density,trigger=level-saturation+tombstone-ttl,tombstone_ttl_ms=200 (read amp 1.7)";
        let lines = wrap(name, LEGEND_CHARS);
        assert!(lines.len() > 1, "{lines:?}");
        assert!(
            lines.iter().all(|l| l.chars().count() <= LEGEND_CHARS),
            "{lines:?}"
        );
        assert_eq!(lines.concat().replace(' ', ""), name.replace(' ', ""));
        assert_eq!(wrap("short", LEGEND_CHARS), ["short"]);
        assert_eq!(wrap("", LEGEND_CHARS), [""]);
        let svg = chart(&[name, "leveling"], Mark::Points).to_svg();
        assert_eq!(overlapping_texts(&svg), None);
        let width: f64 = svg
            .split("width=\"")
            .nth(1)
            .unwrap()
            .split('"')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        assert!(width < 1000.0, "{width}");
    }

    #[test]
    fn overlap_check_finds_overlapping_labels() {
        let svg = r#"<text x="10" y="20">wide label</text><text x="40" y="22">next</text>"#;
        assert!(overlapping_texts(svg).is_some());
        let svg = r#"<text x="10" y="20">wide label</text><text x="10" y="40">next</text>"#;
        assert!(overlapping_texts(svg).is_none());
    }
}
