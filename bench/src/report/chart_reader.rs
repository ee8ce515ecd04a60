//! Reading back what [`super::chart`] drew, for the tests of every plot:
//! text boxes estimated the way the chart estimates them (to check that no
//! two labels overlap) and the colour of each named series.
#![cfg(test)]

use super::chart::{CHAR_WIDTH, FONT_SIZE};

/// The value of attribute `name` in the tag text `tag`.
fn attribute<'a>(tag: &'a str, name: &str) -> Option<&'a str> {
    let key = format!(" {name}=\"");
    let start = tag.find(&key)? + key.len();
    let len = tag[start..].find('"')?;
    Some(&tag[start..start + len])
}

fn number(tag: &str, name: &str) -> f64 {
    attribute(tag, name)
        .and_then(|v| v.parse().ok())
        .unwrap_or(f64::NAN)
}

/// Every element `<name ...>` of `svg`, as its opening tag's text.
pub fn elements<'a>(svg: &'a str, name: &str) -> Vec<&'a str> {
    let open = format!("<{name} ");
    svg.match_indices(&open)
        .filter_map(|(i, _)| svg[i..].find('>').map(|end| &svg[i..i + end + 1]))
        .collect()
}

/// A text element's estimated box: left, top, right, bottom, and text.
#[derive(Debug, Clone)]
pub struct TextBox {
    pub text: String,
    pub left: f64,
    pub top: f64,
    pub right: f64,
    pub bottom: f64,
}

impl TextBox {
    pub fn overlaps(&self, other: &TextBox) -> bool {
        self.left < other.right
            && other.left < self.right
            && self.top < other.bottom
            && other.top < self.bottom
    }
}

/// The estimated boxes of every `<text>` in `svg` (anchor, font size and
/// a -90° rotation about the anchor point taken into account).
pub fn text_boxes(svg: &str) -> Vec<TextBox> {
    let mut boxes = Vec::new();
    for (i, _) in svg.match_indices("<text ") {
        let rest = &svg[i..];
        let (Some(tag_end), Some(close)) = (rest.find('>'), rest.find("</text>")) else {
            continue;
        };
        let tag = &rest[..=tag_end];
        let text = rest[tag_end + 1..close]
            .replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&quot;", "\"")
            .replace("&amp;", "&");
        let size = attribute(tag, "font-size")
            .and_then(|v| v.parse().ok())
            .unwrap_or(FONT_SIZE);
        let width = text.chars().count() as f64 * CHAR_WIDTH * size;
        let (x, y) = (number(tag, "x"), number(tag, "y"));
        let start = match attribute(tag, "text-anchor") {
            Some("middle") => -width / 2.0,
            Some("end") => -width,
            _ => 0.0,
        };
        let b = if tag.contains("rotate(-90") {
            TextBox {
                text,
                left: x - 0.8 * size,
                right: x + 0.2 * size,
                top: y - start - width,
                bottom: y - start,
            }
        } else {
            TextBox {
                text,
                left: x + start,
                right: x + start + width,
                top: y - 0.8 * size,
                bottom: y + 0.2 * size,
            }
        };
        boxes.push(b);
    }
    boxes
}

/// The first two texts of `svg` whose boxes overlap, if any.
pub fn overlapping_texts(svg: &str) -> Option<(String, String)> {
    let boxes = text_boxes(svg);
    for (i, a) in boxes.iter().enumerate() {
        if let Some(b) = boxes[i + 1..].iter().find(|b| a.overlaps(b)) {
            return Some((a.text.clone(), b.text.clone()));
        }
    }
    None
}

/// `(series name, colour)` of every series element (a line's stroke, a
/// dot's fill), one entry per series.
pub fn series_colours(svg: &str) -> Vec<(String, String)> {
    let mut found: Vec<(String, String)> = Vec::new();
    let lines = elements(svg, "polyline").into_iter().map(|t| (t, "stroke"));
    let dots = elements(svg, "circle").into_iter().map(|t| (t, "fill"));
    for (tag, paint) in lines.chain(dots) {
        let Some(name) = attribute(tag, "data-series") else {
            continue;
        };
        let colour = attribute(tag, paint).unwrap_or("");
        if !found.iter().any(|(n, _)| n == name) {
            found.push((name.to_string(), colour.to_string()));
        }
    }
    found
}

/// Each series has its own colour.
pub fn assert_distinct_colours(svg: &str, series: usize) {
    let colours = series_colours(svg);
    assert_eq!(colours.len(), series, "{colours:?}");
    for (i, (name, colour)) in colours.iter().enumerate() {
        assert!(colour.starts_with('#'), "{name}: {colour}");
        for (other, c) in &colours[i + 1..] {
            assert_ne!(colour, c, "{name} and {other}");
        }
    }
}
