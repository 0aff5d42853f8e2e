//! Unit tests of the page: escaping, empty data, degenerate data, no network references, every section.

use crate::html::SECTIONS;
use crate::*;

/// Checks that the page's elements nest properly: every opened element is closed, in order (void
/// elements and `<style>` content aside).
fn assert_well_formed(html: &str) {
    const VOID: [&str; 6] = ["meta", "br", "img", "hr", "input", "link"];
    assert!(html.starts_with("<!DOCTYPE html>"), "no doctype");
    assert!(html.trim_end().ends_with("</html>"), "does not end with </html>");
    let mut stack: Vec<String> = Vec::new();
    let mut rest = html;
    while let Some(start) = rest.find('<') {
        rest = &rest[start + 1..];
        let end = rest.find('>').expect("unterminated tag");
        let tag = &rest[..end];
        rest = &rest[end + 1..];
        if tag.starts_with('!') {
            continue;
        }
        let name: String = tag.trim_start_matches('/').chars().take_while(|c| c.is_ascii_alphanumeric()).collect();
        assert!(!name.is_empty(), "bad tag <{tag}>");
        if let Some(closing) = tag.strip_prefix('/') {
            let closing = closing.trim();
            let open = stack.pop().unwrap_or_else(|| panic!("</{closing}> closes nothing"));
            assert_eq!(open, closing, "<{open}> closed by </{closing}>");
        } else if tag.ends_with('/') || VOID.contains(&name.as_str()) {
            continue;
        } else if name == "style" {
            let close = rest.find("</style>").expect("unclosed <style>");
            rest = &rest[close + "</style>".len()..];
        } else {
            stack.push(name);
        }
    }
    assert!(stack.is_empty(), "unclosed elements: {stack:?}");
}

/// Every numeric SVG attribute parses as a finite number, and no NaN or inf appears anywhere as a word.
fn assert_finite(html: &str) {
    for word in ["NaN", "nan", "inf", "Infinity"] {
        let bytes = html.as_bytes();
        let mut from = 0;
        while let Some(i) = html[from..].find(word) {
            let at = from + i;
            let before = at.checked_sub(1).map(|j| bytes[j]);
            let after = bytes.get(at + word.len()).copied();
            let is_word_char = |c: Option<u8>| c.is_some_and(|c| c.is_ascii_alphanumeric() || c == b'_');
            assert!(is_word_char(before) || is_word_char(after), "'{word}' in the page at byte {at}");
            from = at + word.len();
        }
    }
    const NUMERIC: [&str; 15] = [
        "x",
        "y",
        "x1",
        "y1",
        "x2",
        "y2",
        "cx",
        "cy",
        "r",
        "width",
        "height",
        "points",
        "font-size",
        "stroke-width",
        "opacity",
    ];
    let mut checked = 0;
    for svg in html.split("<svg").skip(1) {
        let svg = &svg[..svg.find("</svg>").expect("unclosed svg")];
        let mut rest = svg;
        while let Some(eq) = rest.find("=\"") {
            let name_start = rest[..eq].rfind(|c: char| c.is_whitespace()).map_or(0, |i| i + 1);
            let name = &rest[name_start..eq];
            let value_end = rest[eq + 2..].find('"').expect("unterminated attribute");
            let value = &rest[eq + 2..eq + 2 + value_end];
            rest = &rest[eq + 2 + value_end + 1..];
            let tokens: Vec<&str> = if name == "transform" {
                let inner = value.split_once('(').and_then(|(_, r)| r.split_once(')')).map_or("", |(i, _)| i);
                inner.split([' ', ',']).collect()
            } else if NUMERIC.contains(&name) {
                value.split([' ', ',']).collect()
            } else {
                continue;
            };
            for t in tokens.into_iter().filter(|t| !t.is_empty()) {
                let v: f64 = t.parse().unwrap_or_else(|_| panic!("{name}=\"{value}\": '{t}' is not a number"));
                assert!(v.is_finite(), "{name}=\"{value}\" is not finite");
                checked += 1;
            }
        }
    }
    if html.contains("<svg") {
        assert!(checked > 0, "no numeric SVG attribute found");
    }
}

/// The only `http(s)://` in the page is the SVG namespace, once per `<svg>`; nothing loads from elsewhere.
fn assert_no_network(html: &str) {
    let lower = html.to_ascii_lowercase();
    let svgs = lower.matches("<svg").count();
    let ns = "xmlns=\"http://www.w3.org/2000/svg\"";
    assert_eq!(lower.matches(ns).count(), svgs, "every <svg> carries the SVG namespace");
    let stripped = lower.replace(ns, "");
    for pattern in ["http://", "https://", "//www.", "ftp://", "<script", "<link", "<img", "<iframe", "@import", "url("]
    {
        assert!(!stripped.contains(pattern), "the page contains {pattern:?}");
    }
    assert!(!stripped.contains(" src="), "the page loads something (src=)");
    assert!(
        !stripped.contains("href=\"") || stripped.matches("href=\"").count() == stripped.matches("href=\"#").count()
    );
}

fn section_ids(html: &str) -> Vec<&'static str> {
    SECTIONS.iter().map(|(id, _)| *id).filter(|id| html.contains(&format!("<section id=\"{id}\""))).collect()
}

#[test]
fn empty_data_renders_a_valid_page() {
    let html = render_html(&ReportData::default());
    assert_well_formed(&html);
    assert_finite(&html);
    assert_no_network(&html);
    assert!(html.contains("<title>mcufit report</title>"));
    assert!(html.contains("This report has no data."));
    assert!(section_ids(&html).is_empty());
    assert!(!html.contains("<svg"));
    assert!(!html.contains("<nav"));
}

#[test]
fn every_section_is_present_when_its_data_is() {
    let data = example();
    let html = render_html(&data);
    assert_well_formed(&html);
    assert_finite(&html);
    assert_no_network(&html);
    assert_eq!(section_ids(&html), SECTIONS.iter().map(|(id, _)| *id).collect::<Vec<_>>());
    // one memory chart and one chart per curve, each with its markers and a legend entry per series
    assert_eq!(html.matches("<svg ").count(), 1 + data.curves.len());
    assert_eq!(html.matches("class=\"chart memory-chart\"").count(), 1);
    assert_eq!(html.matches("class=\"chart curve-chart\"").count(), data.curves.len());
    assert_eq!(html.matches(">pruning starts</text>").count(), data.curves.len());
    assert_eq!(html.matches("<i class=\"sw line\"").count(), data.curves.iter().map(|c| c.series.len()).sum::<usize>());
    // the memory peak and the budget line
    assert!(html.contains(">peak 11,760 B · pool1</text>"), "peak label");
    assert!(html.contains("stroke-dasharray=\"7 5\"") && html.contains(">budget 16 KiB</text>"), "budget line");
    // rows: resources, layers (+ total), confusion (10 x 10 + recall), M4 (+ total), steps, notes
    assert_eq!(html.matches("<div class=\"res-row\">").count(), data.resources.len());
    assert!(html.contains("64 → 36<span class=\"cut\">−28</span>"), "pruned channels highlighted");
    assert_eq!(html.matches("<td class=\"c").count(), 100);
    assert!(html.contains("<td class=\"recall\">99.8 %</td>"));
    assert!(html.contains("<td class=\"num\">4.40</td>"), "instructions per MAC of conv1");
    assert_eq!(html.matches("<span class=\"badge ").count(), data.steps.len());
    assert_eq!(html.matches("<li>").count(), data.notes.len());
    for kv in &data.summary {
        assert!(html.contains(&format::escape(&kv.value)), "summary card {}", kv.key);
    }
    // numbers with units
    assert!(html.contains(">18,312 B</div>") && html.contains("budget 64 KiB"));
    assert!(html.contains("199 K MACs"));
}

#[test]
fn each_section_is_omitted_without_its_data() {
    let full = example();
    let only = |f: &dyn Fn(&mut ReportData)| {
        let mut d = ReportData::default();
        f(&mut d);
        section_ids(&render_html(&d))
    };
    assert_eq!(only(&|d| d.summary = full.summary.clone()), ["summary"]);
    assert_eq!(only(&|d| d.resources = full.resources.clone()), ["resources"]);
    assert_eq!(only(&|d| d.layers = full.layers.clone()), ["layers"]);
    assert_eq!(only(&|d| d.memory = full.memory.clone()), ["memory"]);
    assert_eq!(only(&|d| d.curves = full.curves.clone()), ["curves"]);
    assert_eq!(only(&|d| d.confusion = full.confusion.clone()), ["confusion"]);
    assert_eq!(only(&|d| d.m4_profile = full.m4_profile.clone()), ["m4-profile"]);
    assert_eq!(only(&|d| d.steps = full.steps.clone()), ["steps"]);
    assert_eq!(only(&|d| d.notes = full.notes.clone()), ["notes"]);
    // present but empty inside: still left out
    assert!(only(&|d| d.memory = Some(MemoryTimeline::default())).is_empty());
    assert!(only(&|d| d.confusion = Some(Confusion::default())).is_empty());
}

#[test]
fn all_text_is_escaped() {
    let evil = r#"<script>alert("x")</script> & 'q' <b>"#;
    let s = || evil.to_string();
    let data = ReportData {
        title: s(),
        model: s(),
        data: s(),
        summary: vec![KeyValue { key: s(), value: s() }],
        resources: vec![ResourceRow {
            name: s(),
            unit: s(),
            before: Some(2.0),
            value: 1.0,
            limit: Some(3.0),
            terms: vec![Term { name: s(), value: 1.0 }],
        }],
        layers: vec![LayerRow {
            name: s(),
            kind: s(),
            output: s(),
            channels_before: Some(4),
            channels_after: 2,
            params: 1,
            macs: 1,
        }],
        memory: Some(MemoryTimeline {
            steps: vec![MemoryStep { op: s(), live_bytes: 10.0 }, MemoryStep { op: s(), live_bytes: 20.0 }],
            peak_bytes: 20.0,
            limit_bytes: Some(30.0),
        }),
        curves: vec![Curve {
            title: s(),
            x_label: s(),
            y_label: s(),
            series: vec![Series { name: s(), points: vec![[0.0, 1.0], [1.0, 2.0]] }],
            markers: vec![Marker { x: 0.5, label: s() }],
        }],
        confusion: Some(Confusion { class_names: vec![s(), s()], matrix: vec![vec![3, 1], vec![0, 4]] }),
        m4_profile: vec![OpProfile { op: s(), kind: s(), macs: 1, instructions: 5 }],
        steps: vec![StepRow { step: s(), status: s(), seconds: Some(1.0), detail: s() }],
        notes: vec![s()],
    };
    let html = render_html(&data);
    assert_well_formed(&html);
    assert_no_network(&html);
    assert_finite(&html);
    assert!(!html.contains(evil) && !html.contains("<script") && !html.contains("alert(\"x\")"), "raw markup");
    assert!(!html.contains("'q'") && !html.contains("& '"), "raw quote or ampersand");
    let escaped = format::escape(evil);
    // title twice (<title> and <h1>), every text field at least once
    assert!(html.matches(escaped.as_str()).count() >= 20, "{}", html.matches(escaped.as_str()).count());
    // plotters escapes SVG text its own way (&apos;); either way no raw markup
    assert!(html.contains("&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;"));
}

#[test]
fn degenerate_data_renders_without_nan_or_panic() {
    let curve = |points: Vec<[f64; 2]>, markers: Vec<f64>| Curve {
        title: "c".into(),
        x_label: "x".into(),
        y_label: "y".into(),
        series: vec![Series { name: "s".into(), points }],
        markers: markers.into_iter().map(|x| Marker { x, label: "m".into() }).collect(),
    };
    let data = ReportData {
        summary: vec![KeyValue::default()],
        resources: vec![
            ResourceRow { name: "zero".into(), unit: "B".into(), ..Default::default() },
            ResourceRow {
                name: "not finite".into(),
                unit: "MACs".into(),
                before: Some(f64::INFINITY),
                value: f64::NAN,
                limit: Some(0.0),
                terms: vec![Term { name: "t".into(), value: f64::NAN }, Term { name: "z".into(), value: 0.0 }],
            },
            ResourceRow { name: "neg".into(), unit: "ms".into(), value: -1.0, limit: Some(-5.0), ..Default::default() },
        ],
        layers: vec![LayerRow::default(), LayerRow { channels_before: Some(0), ..Default::default() }],
        memory: Some(MemoryTimeline {
            steps: vec![MemoryStep { op: String::new(), live_bytes: 0.0 }; 3],
            peak_bytes: f64::NAN,
            limit_bytes: Some(f64::INFINITY),
        }),
        curves: vec![
            curve(vec![], vec![]),
            curve(vec![[1.0, 1.0]], vec![]),
            curve(vec![[0.0, 0.0], [1.0, 0.0], [2.0, 0.0]], vec![1.0, 1.0, f64::NAN]),
            curve(vec![[3.0, 5.0], [3.0, 5.0]], vec![3.0]),
            curve(vec![[f64::NAN, 1.0], [1.0, f64::INFINITY], [2.0, 2.0]], vec![]),
            curve(vec![[0.0, f64::MAX], [1.0, -f64::MAX]], vec![]),
            curve(vec![[0.0, 1e-300], [1e300, 2e-300]], vec![-1e300]),
            Curve::default(),
        ],
        confusion: Some(Confusion { class_names: vec!["a".into()], matrix: vec![vec![0, 0], vec![0]] }),
        m4_profile: vec![OpProfile::default()],
        steps: vec![StepRow { seconds: Some(f64::NAN), ..Default::default() }],
        notes: vec![String::new()],
        ..Default::default()
    };
    let html = render_html(&data);
    assert_well_formed(&html);
    assert_finite(&html);
    assert_no_network(&html);
    assert!(html.contains("no data points"), "an empty curve says so");

    // single-step and huge timelines
    for steps in [1usize, 200] {
        let m = MemoryTimeline {
            steps: (0..steps)
                .map(|i| MemoryStep { op: format!("operator_number_{i}"), live_bytes: (i % 7) as f64 * 1000.0 })
                .collect(),
            peak_bytes: 6000.0,
            limit_bytes: Some(1e9),
        };
        let svg = render_svg_memory(&m).expect("a chart");
        assert_finite(&format!("<div>{svg}</div>"));
        assert!(svg.contains("off the scale"), "a far-away budget is a note, not a line");
    }
    let m = MemoryTimeline {
        steps: vec![
            MemoryStep { op: "a".into(), live_bytes: f64::MAX },
            MemoryStep { op: "b".into(), live_bytes: 1.0 },
        ],
        peak_bytes: f64::MAX,
        limit_bytes: None,
    };
    assert_finite(&render_svg_memory(&m).expect("a chart"));
    assert!(render_svg_memory(&MemoryTimeline::default()).is_none());
    assert!(render_svg_curve(&Curve::default()).is_none());
}

#[test]
fn report_data_round_trips_through_json() {
    let data = example();
    let json = serde_json::to_string(&data).unwrap();
    assert_eq!(serde_json::from_str::<ReportData>(&json).unwrap(), data);
    // every field is optional in JSON
    let partial: ReportData = serde_json::from_str(r#"{"title":"t","resources":[{"name":"RAM","value":1}]}"#).unwrap();
    assert_eq!(partial.resources[0].unit, "");
    assert!(render_html(&partial).contains("id=\"resources\""));
}
