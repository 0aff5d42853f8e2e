//! The HTML page.

use std::fmt::Write as _;

use crate::charts::{palette_hex, render_svg_curve, render_svg_memory};
use crate::format::{self, css_pct, escape};
use crate::{Confusion, Curve, LayerRow, MemoryTimeline, OpProfile, ReportData, ResourceRow, StepRow};

const STYLE: &str = include_str!("style.css");

/// Colours of the parts of a resource breakdown.
const TERM_COLORS: [&str; 8] = ["#3b82f6", "#f59e0b", "#10b981", "#8b5cf6", "#ec4899", "#06b6d4", "#84cc16", "#64748b"];

/// The id and the navigation label of each section, in page order.
pub(crate) const SECTIONS: [(&str, &str); 9] = [
    ("summary", "Summary"),
    ("resources", "Resources"),
    ("layers", "Layers"),
    ("memory", "Memory timeline"),
    ("curves", "Training"),
    ("confusion", "Confusion matrix"),
    ("m4-profile", "Cortex-M4 profile"),
    ("steps", "Pipeline"),
    ("notes", "Notes"),
];

/// Renders the whole report as one self-contained HTML page (embedded styles, inline SVG, no scripts, no
/// network references). Sections whose data is empty are left out.
pub fn render_html(data: &ReportData) -> String {
    let title = if data.title.trim().is_empty() { "mcufit report" } else { data.title.as_str() };
    let sections: Vec<(&str, String)> = [
        ("summary", summary(data)),
        ("resources", resources(&data.resources)),
        ("layers", layers(&data.layers)),
        ("memory", data.memory.as_ref().and_then(memory)),
        ("curves", curves(&data.curves)),
        ("confusion", data.confusion.as_ref().and_then(confusion)),
        ("m4-profile", m4_profile(&data.m4_profile)),
        ("steps", steps(&data.steps)),
        ("notes", notes(&data.notes)),
    ]
    .into_iter()
    .filter_map(|(id, html)| html.map(|h| (id, h)))
    .collect();

    let mut out = String::with_capacity(64 * 1024);
    out.push_str("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n");
    out.push_str("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n");
    out.push_str("<meta name=\"generator\" content=\"mcufit-report\">\n");
    let _ = writeln!(out, "<title>{}</title>", escape(title));
    let _ = writeln!(out, "<style>\n{STYLE}</style>\n</head>\n<body>\n<main class=\"page\">");

    out.push_str("<header class=\"hero\">\n<div class=\"eyebrow\">mcufit report</div>\n");
    let _ = writeln!(out, "<h1>{}</h1>", escape(title));
    let mut meta = String::new();
    if !data.model.is_empty() {
        let _ = write!(meta, "<span>model <code>{}</code></span>", escape(&data.model));
    }
    if !data.data.is_empty() {
        let _ = write!(meta, "<span>data <code>{}</code></span>", escape(&data.data));
    }
    if !meta.is_empty() {
        let _ = writeln!(out, "<div class=\"meta\">{meta}</div>");
    }
    out.push_str("</header>\n");

    let nav: Vec<_> = sections.iter().filter(|(id, _)| *id != "summary").collect();
    if nav.len() > 1 {
        out.push_str("<nav class=\"toc\">");
        for (id, _) in nav {
            let label = SECTIONS.iter().find(|(s, _)| s == id).map_or(*id, |(_, l)| l);
            let _ = write!(out, "<a href=\"#{id}\">{label}</a>");
        }
        out.push_str("</nav>\n");
    }
    if sections.is_empty() {
        out.push_str("<p class=\"empty\">This report has no data.</p>\n");
    }
    for (_, html) in &sections {
        out.push_str(html);
    }
    let _ = writeln!(
        out,
        "<footer>mcufit-report {} · a self-contained page: no scripts, no network</footer>\n</main>\n</body>\n</html>",
        env!("CARGO_PKG_VERSION")
    );
    out
}

fn panel(id: &str, title: &str, lead: &str, body: &str) -> String {
    let lead = if lead.is_empty() { String::new() } else { format!("<p class=\"lead\">{lead}</p>\n") };
    format!("<section id=\"{id}\" class=\"panel\">\n<h2>{}</h2>\n{lead}{body}</section>\n", escape(title))
}

fn summary(data: &ReportData) -> Option<String> {
    if data.summary.is_empty() {
        return None;
    }
    let mut out = String::from("<section id=\"summary\" class=\"cards\">\n");
    for kv in &data.summary {
        let _ = writeln!(
            out,
            "<div class=\"card\"><div class=\"k\">{}</div><div class=\"v{}\">{}</div></div>",
            escape(&kv.key),
            if kv.value.chars().count() > 14 { " long" } else { "" },
            escape(&kv.value)
        );
    }
    out.push_str("</section>\n");
    Some(out)
}

fn finite(v: Option<f64>) -> Option<f64> {
    v.filter(|x| x.is_finite())
}

fn resources(rows: &[ResourceRow]) -> Option<String> {
    if rows.is_empty() {
        return None;
    }
    let mut body = String::from(
        "<div class=\"legend\"><span><i class=\"sw ok\"></i>delivered, within budget</span>\
         <span><i class=\"sw over\"></i>over budget</span><span><i class=\"sw plain\"></i>no budget</span>\
         <span><i class=\"sw before\"></i>before pruning</span><span><i class=\"sw limit\"></i>budget</span></div>\n\
         <div class=\"res\">\n",
    );
    for row in rows {
        let value = finite(Some(row.value));
        let limit = finite(row.limit).filter(|l| *l > 0.0);
        let before = finite(row.before);
        let scale = [value, limit, before].into_iter().flatten().fold(0.0f64, f64::max) * 1.06;
        let frac = |v: f64| if scale > 0.0 { v / scale } else { 0.0 };
        let unit_text = if format::is_byte_unit(&row.unit) { "bytes" } else { row.unit.as_str() };

        let _ = write!(
            body,
            "<div class=\"res-row\"><div class=\"res-name\">{}<span class=\"unit\">{}</span></div><div class=\"res-main\">",
            escape(&row.name),
            escape(unit_text)
        );
        body.push_str("<div class=\"track\">");
        if let Some(b) = before {
            let _ = write!(
                body,
                "<div class=\"bar before\" style=\"width:{}\" title=\"before pruning: {}\"></div>",
                css_pct(frac(b)),
                escape(&format::value(b, &row.unit))
            );
        }
        let state = match (value, limit) {
            (Some(v), Some(l)) if v > l => "over",
            (Some(_), Some(_)) => "ok",
            _ => "plain",
        };
        if let Some(v) = value {
            let _ = write!(body, "<div class=\"bar value {state}\" style=\"width:{}\"></div>", css_pct(frac(v)));
        }
        if let Some(l) = limit {
            let _ = write!(
                body,
                "<div class=\"limit\" style=\"left:{}\" title=\"budget: {}\"></div>",
                css_pct(frac(l)),
                escape(&format::value(l, &row.unit))
            );
        }
        body.push_str("</div>");

        let terms: Vec<(&str, f64)> =
            row.terms.iter().filter(|t| t.value.is_finite()).map(|t| (t.name.as_str(), t.value)).collect();
        let total: f64 = terms.iter().map(|t| t.1.max(0.0)).sum();
        if !terms.is_empty() {
            if total > 0.0 {
                // drawn to the scale of the bar above: the breakdown sits under the value it adds up to
                let _ = write!(body, "<div class=\"stack\" style=\"width:{}\">", css_pct(frac(total)));
                for (i, (name, v)) in terms.iter().enumerate() {
                    let _ = write!(
                        body,
                        "<i style=\"width:{};background:{}\" title=\"{}\"></i>",
                        css_pct(v.max(0.0) / total),
                        TERM_COLORS[i % TERM_COLORS.len()],
                        escape(name)
                    );
                }
                body.push_str("</div>");
            }
            body.push_str("<div class=\"terms\">");
            for (i, (name, v)) in terms.iter().enumerate() {
                let _ = write!(
                    body,
                    "<span><i style=\"background:{}\"></i>{} <b>{}</b></span>",
                    TERM_COLORS[i % TERM_COLORS.len()],
                    escape(name),
                    escape(&format::value(*v, &row.unit))
                );
            }
            body.push_str("</div>");
        }
        body.push_str("</div><div class=\"res-fig\">");
        let _ = write!(body, "<div class=\"big\">{}</div>", escape(&format::value(row.value, &row.unit)));
        match (value, limit) {
            (Some(v), Some(l)) if v > l => {
                let _ = write!(
                    body,
                    "<div class=\"sub\"><span class=\"bad\">over budget by {}</span></div><div class=\"sub\">budget {}</div>",
                    format::percent(v / l - 1.0),
                    escape(&format::value(l, &row.unit))
                );
            }
            (Some(v), Some(l)) => {
                let _ = write!(
                    body,
                    "<div class=\"sub\"><span class=\"good\">{} of budget</span></div><div class=\"sub\">budget {}</div>",
                    format::percent(v / l),
                    escape(&format::value(l, &row.unit))
                );
            }
            _ => body.push_str("<div class=\"sub\">no budget</div>"),
        }
        if let (Some(b), Some(v)) = (before, value) {
            let change = if b > 0.0 {
                format!(" ({}{})", if v <= b { "−" } else { "+" }, format::percent((v - b).abs() / b))
            } else {
                String::new()
            };
            let _ = write!(body, "<div class=\"sub\">was {}{change}</div>", escape(&format::value(b, &row.unit)));
        }
        body.push_str("</div></div>\n");
    }
    body.push_str("</div>\n");
    Some(panel(
        "resources",
        "Resources vs budget",
        "The delivered model against its budget; the hatched bar is the model before pruning, the thin bar under it what the figure is made of.",
        &body,
    ))
}

fn layers(rows: &[LayerRow]) -> Option<String> {
    if rows.is_empty() {
        return None;
    }
    let total_params: u64 = rows.iter().map(|r| r.params).sum();
    let total_macs: u64 = rows.iter().map(|r| r.macs).sum();
    let (mut kept, mut had, mut pruned_layers) = (0usize, 0usize, 0usize);
    for r in rows {
        if let Some(b) = r.channels_before {
            kept += r.channels_after.min(b);
            had += b;
            pruned_layers += usize::from(r.channels_after < b);
        }
    }
    let lead = if had > 0 && kept < had {
        format!(
            "<b>{}</b> of {} channels pruned ({}) in {} of {} layers · {} params · {} MACs per inference.",
            format::group((had - kept) as i128),
            format::group(had as i128),
            format::percent((had - kept) as f64 / had as f64),
            pruned_layers,
            rows.len(),
            format::count(total_params as f64),
            format::count(total_macs as f64)
        )
    } else {
        format!(
            "{} layers · {} params · {} MACs per inference.",
            rows.len(),
            format::count(total_params as f64),
            format::count(total_macs as f64)
        )
    };
    let mut body = String::from(
        "<div class=\"table-wrap\"><table class=\"layers\">\n<thead><tr><th>#</th><th>layer</th><th>kind</th><th>output</th>\
         <th>channels before → after</th><th class=\"num\">params</th><th class=\"num\">MACs</th></tr></thead>\n<tbody>\n",
    );
    for (i, r) in rows.iter().enumerate() {
        let channels = match r.channels_before {
            Some(b) if b > 0 => {
                let cut = b.saturating_sub(r.channels_after);
                let cut_html = if cut > 0 { format!("<span class=\"cut\">−{cut}</span>") } else { String::new() };
                format!(
                    "<span class=\"ch\"><span class=\"chbar\" title=\"{} of {b} kept\"><i style=\"width:{}\"></i></span>{b} → {}{cut_html}</span>",
                    r.channels_after,
                    css_pct(r.channels_after as f64 / b as f64),
                    r.channels_after
                )
            }
            _ => format!("<span class=\"ch\">{}</span>", r.channels_after),
        };
        let share = if total_macs > 0 { r.macs as f64 / total_macs as f64 } else { 0.0 };
        let _ = writeln!(
            body,
            "<tr><td class=\"idx\">{}</td><td class=\"name\">{}</td><td><span class=\"pill\">{}</span></td><td class=\"mono\">{}</td>\
             <td>{channels}</td><td class=\"num\">{}</td><td class=\"num\"><span class=\"share\" title=\"{} of all MACs\">{}<span class=\"sharebar\"><i style=\"width:{}\"></i></span></span></td></tr>",
            i + 1,
            escape(&r.name),
            escape(&r.kind),
            escape(&r.output),
            format::group(r.params as i128),
            format::percent(share),
            format::group(r.macs as i128),
            css_pct(share)
        );
    }
    let _ = writeln!(
        body,
        "<tr class=\"total\"><td></td><td>total</td><td></td><td></td><td>{}</td><td class=\"num\">{}</td>\
         <td class=\"num\"><span class=\"share\">{}<span class=\"sharebar\" style=\"visibility:hidden\"></span></span></td></tr>",
        if had > 0 { format!("{had} → {kept}") } else { String::new() },
        format::group(total_params as i128),
        format::group(total_macs as i128)
    );
    body.push_str("</tbody></table></div>\n");
    Some(panel("layers", "Layers", &lead, &body))
}

fn memory(m: &MemoryTimeline) -> Option<String> {
    if m.steps.is_empty() {
        return None;
    }
    let svg = render_svg_memory(m)?;
    let (peak_idx, max_live) = m
        .steps
        .iter()
        .enumerate()
        .filter(|(_, s)| s.live_bytes.is_finite())
        .fold((0, 0.0f64), |(bi, bv), (i, s)| if s.live_bytes > bv { (i, s.live_bytes) } else { (bi, bv) });
    let peak = if m.peak_bytes.is_finite() && m.peak_bytes > 0.0 { m.peak_bytes } else { max_live };
    let mut lead = format!(
        "Live activation bytes while each operator runs, in the memory-optimal order of its {} operators. Peak <b>{}</b> at <b>{}</b>",
        m.steps.len(),
        escape(&format::bytes(peak)),
        escape(&m.steps[peak_idx].op)
    );
    if let Some(l) = m.limit_bytes.filter(|l| l.is_finite() && *l > 0.0) {
        let (class, word) = if peak <= l { ("good", "within") } else { ("bad", "over") };
        let _ = write!(
            lead,
            "; budget {} (<span class=\"{class}\">{word}, {} used</span>)",
            escape(&format::bytes(l)),
            format::percent(peak / l)
        );
    }
    lead.push('.');
    Some(panel("memory", "Live memory timeline", &lead, &svg))
}

fn curves(curves: &[Curve]) -> Option<String> {
    if curves.is_empty() {
        return None;
    }
    let mut body = String::from("<div class=\"curves\">\n");
    for c in curves {
        let mut legend = String::from("<span class=\"legend\">");
        for (i, s) in c.series.iter().enumerate() {
            let _ = write!(
                legend,
                "<span><i class=\"sw line\" style=\"background:{}\"></i>{}</span>",
                palette_hex(i),
                escape(&s.name)
            );
        }
        legend.push_str("</span>");
        let chart = render_svg_curve(c).unwrap_or_else(|| "<p class=\"empty\">no data points</p>".to_string());
        let _ = writeln!(
            body,
            "<figure class=\"curve\"><figcaption><span class=\"ct\">{}</span>{legend}</figcaption>\n{chart}</figure>",
            escape(&c.title)
        );
    }
    body.push_str("</div>\n");
    Some(panel("curves", "Training", "", &body))
}

fn confusion(c: &Confusion) -> Option<String> {
    let n = c.class_names.len().max(c.matrix.len()).max(c.matrix.iter().map(Vec::len).max().unwrap_or(0));
    if n == 0 || c.matrix.is_empty() {
        return None;
    }
    let name = |i: usize| c.class_names.get(i).cloned().unwrap_or_else(|| i.to_string());
    let cell = |t: usize, p: usize| c.matrix.get(t).and_then(|r| r.get(p)).copied().unwrap_or(0);
    let total: usize = c.matrix.iter().flatten().sum();
    let correct: usize = (0..n).map(|i| cell(i, i)).sum();
    let mut worst: Vec<(usize, usize, usize)> = (0..n)
        .flat_map(|t| (0..n).map(move |p| (t, p)))
        .filter(|(t, p)| t != p)
        .map(|(t, p)| (cell(t, p), t, p))
        .collect();
    worst.retain(|w| w.0 > 0);
    worst.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)).then(a.2.cmp(&b.2)));
    let mut lead = format!(
        "Rows are the true class, columns the prediction; colour is the share of the row. Accuracy <b>{}</b> on {} samples",
        if total > 0 { format::percent(correct as f64 / total as f64) } else { "n/a".to_string() },
        format::group(total as i128)
    );
    if !worst.is_empty() {
        let list: Vec<String> = worst
            .iter()
            .take(3)
            .map(|(k, t, p)| format!("{} → {} ({k})", escape(&name(*t)), escape(&name(*p))))
            .collect();
        let _ = write!(lead, "; most confused: {}", list.join(", "));
    }
    lead.push('.');

    let vertical = (0..n).any(|i| name(i).chars().count() > 5);
    let colh = if vertical { "colh vert" } else { "colh" };
    let mut body = String::from(
        "<div class=\"table-wrap\"><table class=\"conf\">\n<thead><tr><th class=\"corner\">true ↓ · predicted →</th>",
    );
    for i in 0..n {
        let _ = write!(body, "<th class=\"{colh}\">{}</th>", escape(&name(i)));
    }
    body.push_str("<th class=\"recallh\">recall</th></tr></thead>\n<tbody>\n");
    for t in 0..n {
        let row_sum: usize = (0..n).map(|p| cell(t, p)).sum();
        let _ = write!(body, "<tr><th class=\"rowh\">{}</th>", escape(&name(t)));
        for p in 0..n {
            let k = cell(t, p);
            let frac = if row_sum > 0 { k as f64 / row_sum as f64 } else { 0.0 };
            if k == 0 {
                body.push_str("<td class=\"c zero\">0</td>");
                continue;
            }
            let (rgb, alpha) =
                if t == p { ("37,99,235", 0.10 + 0.90 * frac) } else { ("220,38,38", 0.10 + 0.90 * frac.sqrt()) };
            let ink = if alpha > 0.55 { "#fff" } else { "#0f172a" };
            let _ = write!(
                body,
                "<td class=\"c\" style=\"background:rgba({rgb},{alpha:.3});color:{ink}\" title=\"{} → {}: {k} ({})\">{k}</td>",
                escape(&name(t)),
                escape(&name(p)),
                format::percent(frac)
            );
        }
        let recall = if row_sum > 0 { cell(t, t) as f64 / row_sum as f64 } else { f64::NAN };
        let class = if recall.is_finite() && recall < 0.9 { " class=\"recall bad\"" } else { " class=\"recall\"" };
        let _ = writeln!(body, "<td{class}>{}</td></tr>", format::percent(recall));
    }
    body.push_str("</tbody></table></div>\n");
    Some(panel("confusion", "Confusion matrix", &lead, &body))
}

fn m4_profile(ops: &[OpProfile]) -> Option<String> {
    if ops.is_empty() {
        return None;
    }
    let max_instr = ops.iter().map(|o| o.instructions).max().unwrap_or(0);
    let total_instr: u64 = ops.iter().map(|o| o.instructions).sum();
    let total_macs: u64 = ops.iter().map(|o| o.macs).sum();
    let per_mac = |i: u64, m: u64| if m > 0 { format!("{:.2}", i as f64 / m as f64) } else { "—".to_string() };
    let lead = format!(
        "Instructions executed per inference on a Cortex-M4 (qemu), per operator: <b>{}</b> in all, {} per MAC.",
        format::count(total_instr as f64),
        per_mac(total_instr, total_macs)
    );
    let mut body = String::from(
        "<div class=\"table-wrap\"><table class=\"m4\">\n<thead><tr><th>op</th><th>kind</th><th class=\"num\">MACs</th>\
         <th style=\"width:45%\">instructions</th><th class=\"num\">instr / MAC</th></tr></thead>\n<tbody>\n",
    );
    for o in ops {
        let frac = if max_instr > 0 { o.instructions as f64 / max_instr as f64 } else { 0.0 };
        let _ = writeln!(
            body,
            "<tr><td class=\"name\">{}</td><td><span class=\"pill\">{}</span></td><td class=\"num\">{}</td>\
             <td><span class=\"pbar\"><span class=\"t\"><i style=\"width:{}\"></i></span><span class=\"n\">{}</span></span></td>\
             <td class=\"num\">{}</td></tr>",
            escape(&o.op),
            escape(&o.kind),
            format::group(o.macs as i128),
            css_pct(frac),
            format::group(o.instructions as i128),
            per_mac(o.instructions, o.macs)
        );
    }
    let _ = writeln!(
        body,
        "<tr class=\"total\"><td>total</td><td></td><td class=\"num\">{}</td><td><span class=\"pbar\"><span class=\"t\" style=\"visibility:hidden\"></span><span class=\"n\">{}</span></span></td><td class=\"num\">{}</td></tr>",
        format::group(total_macs as i128),
        format::group(total_instr as i128),
        per_mac(total_instr, total_macs)
    );
    body.push_str("</tbody></table></div>\n");
    Some(panel("m4-profile", "Cortex-M4 profile", &lead, &body))
}

fn steps(rows: &[StepRow]) -> Option<String> {
    if rows.is_empty() {
        return None;
    }
    let total: f64 = rows.iter().filter_map(|r| finite(r.seconds)).sum();
    let mut body = String::from(
        "<div class=\"table-wrap\"><table class=\"steps\">\n<thead><tr><th>step</th><th>status</th><th class=\"num\">time</th>\
         <th>detail</th></tr></thead>\n<tbody>\n",
    );
    for r in rows {
        let status = r.status.trim().to_ascii_lowercase();
        let class = match status.as_str() {
            "done" | "ok" | "passed" => "done",
            "reused" | "cached" => "reused",
            "skipped" => "skipped",
            "failed" | "error" => "failed",
            _ => "other",
        };
        let time = finite(r.seconds).map_or_else(|| "<span class=\"dim\">—</span>".to_string(), format::seconds);
        let _ = writeln!(
            body,
            "<tr><td class=\"name\">{}</td><td><span class=\"badge {class}\">{}</span></td><td class=\"num\">{time}</td><td>{}</td></tr>",
            escape(&r.step),
            escape(&r.status),
            escape(&r.detail)
        );
    }
    body.push_str("</tbody></table></div>\n");
    let lead =
        if total > 0.0 { format!("{} steps, {} in all.", rows.len(), format::seconds(total)) } else { String::new() };
    Some(panel("steps", "Pipeline steps", &lead, &body))
}

fn notes(notes: &[String]) -> Option<String> {
    if notes.is_empty() {
        return None;
    }
    let mut body = String::from("<ul class=\"notes\">\n");
    for n in notes {
        let _ = writeln!(body, "<li>{}</li>", escape(n));
    }
    body.push_str("</ul>\n");
    Some(panel("notes", "Notes", "", &body))
}
