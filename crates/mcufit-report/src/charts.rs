//! The SVG charts, drawn with `plotters`' SVG backend (text as SVG `<text>`, no font files), plus a few
//! hand-written SVG elements that plotters does not do well: rotated category labels, dashed reference
//! lines with labels, the peak marker.
//!
//! Every coordinate comes from finite data: non-finite points are dropped and empty or zero-width ranges
//! are widened before plotters sees them.

use std::fmt::Write as _;

use plotters::prelude::*;

use crate::format::{self, escape};
use crate::{Curve, MemoryTimeline};

type DynError = Box<dyn std::error::Error>;

/// The series colours, in order (also used by the HTML legend).
pub(crate) const PALETTE: [(u8, u8, u8); 8] = [
    (37, 99, 235),  // blue
    (234, 88, 12),  // orange
    (5, 150, 105),  // green
    (124, 58, 237), // violet
    (219, 39, 119), // pink
    (8, 145, 178),  // cyan
    (202, 138, 4),  // amber
    (71, 85, 105),  // slate
];

pub(crate) fn palette_hex(i: usize) -> String {
    let (r, g, b) = PALETTE[i % PALETTE.len()];
    format!("#{r:02x}{g:02x}{b:02x}")
}

fn palette(i: usize) -> RGBColor {
    let (r, g, b) = PALETTE[i % PALETTE.len()];
    RGBColor(r, g, b)
}

const AXIS: RGBColor = RGBColor(148, 163, 184);
const GRID: RGBColor = RGBColor(230, 234, 240);
const INK: &str = "#475569";
const MUTED: &str = "#64748b";
const RED: &str = "#dc2626";
const FONT: &str = "sans-serif";
/// plotters writes `size / 1.24` as the SVG font size: 14.5 gives 11.7 px.
const LABEL_SIZE: f64 = 14.5;
const DESC_SIZE: f64 = 15.5;
/// Average glyph width of 11 px system sans-serif text, for layout estimates.
const CHAR_W: f64 = 6.3;

fn label_style() -> TextStyle<'static> {
    TextStyle::from((FONT, LABEL_SIZE).into_font()).color(&RGBColor(100, 116, 139))
}

fn desc_style() -> TextStyle<'static> {
    TextStyle::from((FONT, DESC_SIZE).into_font()).color(&RGBColor(71, 85, 105))
}

/// Adds `class` and an accessible label to plotters' `<svg>` tag and the hand-written elements before its end.
fn finish_svg(mut svg: String, class: &str, label: &str, extra: &str) -> String {
    if let Some(pos) = svg.rfind("</svg>") {
        svg.insert_str(pos, extra);
    }
    if let Some(pos) = svg.find("<svg ") {
        svg.insert_str(pos + 5, &format!("class=\"{class}\" role=\"img\" aria-label=\"{}\" ", escape(label)));
    }
    svg
}

/// Shortens `text` to at most `max` characters, ending in "…" when cut.
fn abbreviate(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        text.to_string()
    } else {
        let mut s: String = text.chars().take(max.saturating_sub(1)).collect();
        s.push('…');
        s
    }
}

/// A step of 1, 2, 2.5 or 5 times a power of ten that cuts `range` into about `target` parts.
fn nice_step(range: f64, target: usize) -> f64 {
    let raw = range / target.max(1) as f64;
    if !raw.is_finite() || raw <= 0.0 {
        return 1.0;
    }
    let mag = 10f64.powf(raw.log10().floor());
    let r = raw / mag;
    let m = if r <= 1.0 {
        1.0
    } else if r <= 2.0 {
        2.0
    } else if r <= 2.5 {
        2.5
    } else if r <= 5.0 {
        5.0
    } else {
        10.0
    };
    m * mag
}

/// Tick values for a byte axis from 0 to `top`: round numbers of B, KiB or MiB.
fn byte_ticks(top: f64) -> Vec<f64> {
    let unit = if top < 10.0 * 1024.0 {
        1.0
    } else if top < 10.0 * 1024.0 * 1024.0 {
        1024.0
    } else {
        1024.0 * 1024.0
    };
    let step = nice_step(top / unit, 5).max(if unit == 1.0 { 1.0 } else { 0.0 }) * unit;
    (0..=40).map(|k| k as f64 * step).take_while(|v| *v <= top * 1.0001).collect()
}

/// The live-memory timeline as an SVG step chart: live bytes along the operator order, the peak marked and
/// labelled, the budget as a dashed line (or a note when it is far off the scale), op names on the x axis.
/// None when there are no steps.
pub fn render_svg_memory(memory: &MemoryTimeline) -> Option<String> {
    if memory.steps.is_empty() {
        return None;
    }
    memory_chart(memory).ok()
}

fn memory_chart(memory: &MemoryTimeline) -> Result<String, DynError> {
    const W: u32 = 1040;
    const TOP: u32 = 34;
    const PLOT_H: u32 = 280;
    const LEFT: u32 = 74;
    const RIGHT: u32 = 16;

    let live: Vec<f64> =
        memory.steps.iter().map(|s| if s.live_bytes.is_finite() { s.live_bytes.max(0.0) } else { 0.0 }).collect();
    let n = live.len();
    let (peak_idx, max_live) =
        live.iter().enumerate().fold((0, 0.0f64), |(bi, bv), (i, &v)| if v > bv { (i, v) } else { (bi, bv) });
    let peak = if memory.peak_bytes.is_finite() && memory.peak_bytes > 0.0 { memory.peak_bytes } else { max_live };
    let data_top = peak.max(max_live);
    let limit = memory.limit_bytes.filter(|l| l.is_finite() && *l > 0.0);
    let limit_on_scale = limit.is_some_and(|l| data_top <= 0.0 || l <= 2.5 * data_top);
    let mut top = match limit {
        Some(l) if limit_on_scale => data_top.max(l) * 1.15,
        _ => data_top * 1.2,
    };
    if !top.is_finite() {
        top = data_top;
    }
    if !(top.is_finite() && top > 0.0) {
        top = limit.map_or(1024.0, |l| l * 1.15);
    }

    // x labels: horizontal when they fit, else rotated by 55° (steep enough that the first one stays clear
    // of the left edge), thinned out when very dense.
    const LABEL_CHAR_W: f64 = 6.9;
    let full_chars = memory.steps.iter().map(|s| s.op.chars().count()).max().unwrap_or(1).max(1) as f64;
    let plot_w = (W - LEFT - RIGHT - 8) as f64;
    let slot = plot_w / n as f64;
    let horizontal = full_chars.min(18.0) * LABEL_CHAR_W + 8.0 <= slot;
    let names: Vec<String> = memory.steps.iter().map(|s| abbreviate(&s.op, if horizontal { 18 } else { 16 })).collect();
    let max_chars = names.iter().map(|s| s.chars().count()).max().unwrap_or(1).max(1) as f64;
    let every = if horizontal { 1 } else { (16.0 / slot).ceil().max(1.0) as usize };
    let bottom = if horizontal { 30 } else { (max_chars * LABEL_CHAR_W * 0.82 + 22.0).clamp(34.0, 140.0) as u32 };
    let h = TOP + PLOT_H + bottom;

    let ticks = byte_ticks(top);
    let mut svg = String::new();
    let mut extra = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (W, h)).into_drawing_area();
        let mut chart = ChartBuilder::on(&root)
            .margin_top(TOP)
            .margin_right(RIGHT)
            .margin_left(8)
            .x_label_area_size(bottom)
            .y_label_area_size(LEFT - 8)
            .build_cartesian_2d(0f64..n as f64, 0f64..top)?;
        chart
            .configure_mesh()
            .disable_mesh()
            .x_labels(0)
            .y_labels(0)
            .axis_style(AXIS)
            .label_style(label_style())
            .draw()?;
        // Grid lines at round byte values, under the area.
        for &t in ticks.iter().filter(|t| **t > 0.0) {
            chart.draw_series(LineSeries::new([(0.0, t), (n as f64, t)], GRID.stroke_width(1)))?;
        }
        let blue = palette(0);
        let mut outline = Vec::with_capacity(2 * n);
        for (i, &v) in live.iter().enumerate() {
            outline.push((i as f64, v));
            outline.push((i as f64 + 1.0, v));
        }
        chart.draw_series(AreaSeries::new(outline, 0.0, blue.mix(0.16)).border_style(blue.stroke_width(2)))?;
        if max_live > 0.0 {
            let (x0, x1) = (peak_idx as f64, peak_idx as f64 + 1.0);
            let column = [(x0, 0.0), (x1, max_live)];
            chart.draw_series(std::iter::once(Rectangle::new(column, RGBColor(254, 226, 226).filled())))?;
            chart.draw_series(std::iter::once(Rectangle::new(column, RGBColor(220, 38, 38).stroke_width(2))))?;
        }

        let (plot_left, plot_bottom) = chart.backend_coord(&(0.0, 0.0));
        let (plot_right, plot_top) = chart.backend_coord(&(n as f64, top));
        // y tick labels
        for &t in &ticks {
            let (_, y) = chart.backend_coord(&(0.0, t));
            let _ = write!(
                extra,
                r##"<text x="{}" y="{y}" dy="0.35em" text-anchor="end" font-size="11.5" fill="{MUTED}">{}</text>"##,
                plot_left - 8,
                escape(&format::bytes(t))
            );
            let _ = write!(
                extra,
                r##"<line x1="{}" y1="{y}" x2="{plot_left}" y2="{y}" stroke="#94a3b8"/>"##,
                plot_left - 4
            );
        }
        // x labels, one per operator (or every `every`-th)
        for (i, name) in names.iter().enumerate() {
            let (x, _) = chart.backend_coord(&(i as f64 + 0.5, 0.0));
            let _ = write!(
                extra,
                r##"<line x1="{x}" y1="{plot_bottom}" x2="{x}" y2="{}" stroke="#94a3b8"/>"##,
                plot_bottom + 4
            );
            if i % every != 0 && i != peak_idx {
                continue;
            }
            let weight = if i == peak_idx { r##" font-weight="600""## } else { "" };
            let fill = if i == peak_idx { RED } else { INK };
            if horizontal {
                let _ = write!(
                    extra,
                    r##"<text x="{x}" y="{}" text-anchor="middle" font-size="11.5" fill="{fill}"{weight}>{}</text>"##,
                    plot_bottom + 18,
                    escape(name)
                );
            } else {
                let y = plot_bottom + 12;
                let _ = write!(
                    extra,
                    r##"<text x="{x}" y="{y}" text-anchor="end" font-size="11.5" fill="{fill}"{weight} transform="rotate(-55 {x} {y})">{}</text>"##,
                    escape(name)
                );
            }
        }
        // the peak: a dot and a label above it (and above the budget line when that is close), kept inside the
        // plot horizontally, with a white halo so that no line runs through it
        let (px, py) = chart.backend_coord(&(peak_idx as f64 + 0.5, max_live));
        let limit_y = limit.filter(|_| limit_on_scale).map(|l| chart.backend_coord(&(0.0, l)).1);
        let base = py - 10;
        let label_y = match limit_y {
            Some(ly) if ly > base - 16 && ly < base + 4 => (ly - 6).min(base),
            _ => base,
        };
        let label = format!("peak {} · {}", format::bytes(peak), abbreviate(&memory.steps[peak_idx].op, 24));
        let half = label.chars().count() as f64 * CHAR_W * 0.55;
        let anchor = if (px as f64) - half < plot_left as f64 {
            "start"
        } else if (px as f64) + half > plot_right as f64 {
            "end"
        } else {
            "middle"
        };
        let tx = match anchor {
            "start" => (px - 6).max(plot_left + 2),
            "end" => (px + 6).min(plot_right - 2),
            _ => px,
        };
        let _ = write!(
            extra,
            r##"<circle cx="{px}" cy="{py}" r="4.5" fill="{RED}" stroke="#fff" stroke-width="1.5"/><text x="{tx}" y="{label_y}" text-anchor="{anchor}" font-size="12.5" font-weight="600" fill="{RED}" stroke="#fff" stroke-width="4" stroke-linejoin="round" paint-order="stroke">{}</text>"##,
            escape(&label)
        );
        // the budget: a dashed line with its label on the side away from the peak, or a note when off scale
        if let Some(l) = limit {
            if limit_on_scale {
                let (_, ly) = chart.backend_coord(&(0.0, l));
                let peak_left = (px - plot_left) < (plot_right - px);
                let (lx, la) = if peak_left { (plot_right - 6, "end") } else { (plot_left + 6, "start") };
                let _ = write!(
                    extra,
                    r##"<line x1="{plot_left}" y1="{ly}" x2="{plot_right}" y2="{ly}" stroke="{RED}" stroke-width="1.5" stroke-dasharray="7 5"/><text x="{lx}" y="{}" text-anchor="{la}" font-size="12" fill="{RED}">budget {}</text>"##,
                    ly - 6,
                    escape(&format::bytes(l))
                );
            } else {
                let _ = write!(
                    extra,
                    r##"<text x="{}" y="{}" text-anchor="end" font-size="12" fill="{MUTED}">budget {} is off the scale ({:.1}× the peak)</text>"##,
                    plot_right - 4,
                    plot_top - 14,
                    escape(&format::bytes(l)),
                    l / data_top.max(1.0)
                );
            }
        }
        root.present()?;
    }
    Ok(finish_svg(svg, "chart memory-chart", "live memory along the operator order", &extra))
}

/// One training curve as an SVG line chart: axes with their labels, one line per series (colours in
/// [`PALETTE`] order; the legend is the caller's, see `render_html`), markers as labelled dashed vertical
/// lines. None when no series has a finite point.
pub fn render_svg_curve(curve: &Curve) -> Option<String> {
    curve_chart(curve).ok().flatten()
}

fn curve_chart(curve: &Curve) -> Result<Option<String>, DynError> {
    const W: u32 = 540;
    const PLOT_H: u32 = 230;
    const LEFT: u32 = 66;
    const RIGHT: u32 = 18;
    const BOTTOM: u32 = 46;

    let series: Vec<Vec<(f64, f64)>> = curve
        .series
        .iter()
        .map(|s| s.points.iter().filter(|p| p[0].is_finite() && p[1].is_finite()).map(|p| (p[0], p[1])).collect())
        .collect();
    let all = || series.iter().flatten();
    if all().next().is_none() {
        return Ok(None);
    }
    let markers: Vec<(f64, &str)> =
        curve.markers.iter().filter(|m| m.x.is_finite()).map(|m| (m.x, m.label.as_str())).collect();

    let fold = |it: &mut dyn Iterator<Item = f64>| {
        it.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| (a.min(v), b.max(v)))
    };
    let (mut x0, mut x1) = fold(&mut all().map(|p| p.0).chain(markers.iter().map(|m| m.0)));
    let (mut y0, mut y1) = fold(&mut all().map(|p| p.1));
    if !(x1 - x0).is_finite() || !(y1 - y0).is_finite() {
        return Ok(None);
    }
    if x1 - x0 <= f64::EPSILON * x1.abs().max(1.0) {
        x0 -= 0.5;
        x1 += 0.5;
    }
    if y1 - y0 <= f64::EPSILON * y1.abs().max(1.0) {
        let d = (y1.abs() * 0.1).max(0.5);
        y0 -= d;
        y1 += d;
    } else {
        let span = y1 - y0;
        if y0 >= 0.0 && y0 <= 0.3 * y1 {
            y0 = 0.0;
        } else {
            y0 -= span * 0.06;
        }
        y1 += span * 0.06;
    }
    if ![x0, x1, y0, y1, x1 - x0, y1 - y0].iter().all(|v| v.is_finite()) {
        return Ok(None);
    }

    // Marker labels go in rows above the plot, a new row when a label would overlap the one before it.
    let plot_w = (W - LEFT - RIGHT) as f64;
    let to_px = |x: f64| (x - x0) / (x1 - x0) * plot_w;
    let mut row_ends: Vec<f64> = Vec::new();
    let mut placed: Vec<(f64, &str, usize, bool)> = Vec::new();
    for &(x, label) in &markers {
        let px = to_px(x);
        let width = label.chars().count() as f64 * CHAR_W * 0.95 + 10.0;
        let right_side = px + width <= plot_w + RIGHT as f64;
        let (start, end) = if right_side { (px, px + width) } else { (px - width, px) };
        let row = match row_ends.iter().position(|e| *e < start) {
            Some(r) => r,
            None => {
                row_ends.push(f64::NEG_INFINITY);
                row_ends.len() - 1
            }
        };
        row_ends[row] = end;
        placed.push((x, label, row, right_side));
    }
    let top_margin = 12 + 15 * row_ends.len() as u32;
    let h = top_margin + PLOT_H + BOTTOM;

    let mut svg = String::new();
    let mut extra = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (W, h)).into_drawing_area();
        let mut chart = ChartBuilder::on(&root)
            .margin_top(top_margin)
            .margin_right(RIGHT)
            .margin_left(4)
            .x_label_area_size(BOTTOM)
            .y_label_area_size(LEFT - 4)
            .build_cartesian_2d(x0..x1, y0..y1)?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(8)
            .y_labels(6)
            .x_label_formatter(&|v| format::tick(*v))
            .y_label_formatter(&|v| format::tick(*v))
            .bold_line_style(GRID.stroke_width(1))
            .light_line_style(TRANSPARENT)
            .axis_style(AXIS)
            .label_style(label_style())
            .axis_desc_style(desc_style())
            .x_desc(curve.x_label.as_str())
            .y_desc(curve.y_label.as_str())
            .draw()?;
        for &(x, ..) in &placed {
            chart.draw_series(DashedLineSeries::new(
                [(x, y0), (x, y1)],
                5,
                4,
                RGBColor(100, 116, 139).stroke_width(1),
            ))?;
        }
        for (i, pts) in series.iter().enumerate() {
            let color = palette(i);
            if pts.len() == 1 {
                chart.draw_series(std::iter::once(Circle::new(pts[0], 4, color.filled())))?;
            } else {
                let dots = if pts.len() <= 40 { 2 } else { 0 };
                chart.draw_series(LineSeries::new(pts.iter().copied(), color.stroke_width(2)).point_size(dots))?;
            }
        }
        let (_, plot_top) = chart.backend_coord(&(x0, y1));
        for &(x, label, row, right_side) in &placed {
            let (px, _) = chart.backend_coord(&(x, y1));
            let y = plot_top as f64 - 6.0 - 15.0 * (row_ends.len() - 1 - row) as f64;
            let (tx, anchor) = if right_side { (px + 4, "start") } else { (px - 4, "end") };
            let _ = write!(
                extra,
                r##"<line x1="{px}" y1="{}" x2="{px}" y2="{plot_top}" stroke="#94a3b8" stroke-dasharray="2 2"/><text x="{tx}" y="{y:.1}" text-anchor="{anchor}" font-size="11.5" fill="{INK}">{}</text>"##,
                y - 4.0,
                escape(label)
            );
        }
        root.present()?;
    }
    Ok(Some(finish_svg(svg, "chart curve-chart", &curve.title, &extra)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_ticks_are_round() {
        assert_eq!(byte_ticks(3000.0), vec![0.0, 1000.0, 2000.0, 3000.0]);
        assert_eq!(byte_ticks(2400.0), vec![0.0, 500.0, 1000.0, 1500.0, 2000.0]);
        let t = byte_ticks(70.0 * 1024.0);
        assert_eq!(t[1], 20.0 * 1024.0);
        assert_eq!(byte_ticks(0.5), vec![0.0]);
    }

    #[test]
    fn abbreviates_long_names() {
        assert_eq!(abbreviate("conv1", 18), "conv1");
        assert_eq!(abbreviate("a_very_long_operator_name", 10), "a_very_lo…");
    }
}
