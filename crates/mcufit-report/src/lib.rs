//! One self-contained HTML report of an mcufit run, with inline SVG charts.
//!
//! [`render_html`] turns a [`ReportData`] into a single HTML page that shows: the headline facts as cards,
//! resources against the budget (bars with the limit line, the unpruned figure and the breakdown), the
//! per-layer table (channels before → after), the live-memory timeline along the operator order, the
//! training curves, the confusion matrix as a heat map, the Cortex-M4 instruction profile, the pipeline
//! steps and the notes. A section whose data is empty is left out.
//!
//! Contract:
//! - the page is self-contained: one file, its styles embedded, its charts inline `<svg>` (drawn with
//!   `plotters`' SVG backend, text as SVG `<text>`, no font files);
//! - no network references at all: no `http(s)://` URL apart from the SVG namespace
//!   `http://www.w3.org/2000/svg`, no external fonts, scripts, style sheets or images;
//! - no JavaScript;
//! - every piece of text from the input is HTML-escaped, and no NaN or infinity reaches the markup
//!   (non-finite inputs are dropped or shown as "n/a");
//! - the library does no I/O: writing the page to a file is the caller's job.

mod charts;
mod example;
pub mod format;
mod html;
#[cfg(test)]
mod tests;

pub use charts::{render_svg_curve, render_svg_memory};
pub use example::example;
pub use html::render_html;

use serde::{Deserialize, Serialize};

/// Everything the report shows. Every field may be empty; its section is then left out.
#[derive(Serialize, Deserialize, Debug, Clone, Default, PartialEq)]
#[serde(default)]
pub struct ReportData {
    /// The page title, e.g. "mnist-ds on mnist → 2,368 B peak, 4,455 B weights".
    pub title: String,
    /// The model: a zoo name or a model path.
    pub model: String,
    /// The data spec, e.g. "mnist:/data/mnist".
    pub data: String,
    /// Headline facts in order, shown as cards: ("int8 test accuracy", "99.06 %"), ...
    pub summary: Vec<KeyValue>,
    /// Resources against the budget, one bar each.
    pub resources: Vec<ResourceRow>,
    /// The per-layer table of the delivered model.
    pub layers: Vec<LayerRow>,
    /// Live activation memory along the chosen operator order.
    pub memory: Option<MemoryTimeline>,
    /// Training curves, one chart each.
    pub curves: Vec<Curve>,
    /// The confusion matrix on the test set.
    pub confusion: Option<Confusion>,
    /// Instructions per operator measured on a Cortex-M4 (empty when not verified there).
    pub m4_profile: Vec<OpProfile>,
    /// Pipeline steps: train, compress, quantize, export, verify.
    pub steps: Vec<StepRow>,
    /// What was skipped and why, warnings.
    pub notes: Vec<String>,
}

/// One headline fact: the key is shown small above the value.
#[derive(Serialize, Deserialize, Debug, Clone, Default, PartialEq)]
#[serde(default)]
pub struct KeyValue {
    /// What it is, e.g. "int8 test accuracy".
    pub key: String,
    /// Its value as text, units included, e.g. "99.06 %".
    pub value: String,
}

/// One resource against its budget.
#[derive(Serialize, Deserialize, Debug, Clone, Default, PartialEq)]
#[serde(default)]
pub struct ResourceRow {
    /// "RAM", "flash", "peak activations", "weights", "MACs", "latency".
    pub name: String,
    /// The unit of `before`, `value`, `limit` and the terms: "B" (bytes), "MACs", "ms".
    pub unit: String,
    /// The unpruned model's figure, in `unit`.
    pub before: Option<f64>,
    /// The delivered model's figure, in `unit`.
    pub value: f64,
    /// The budget, in `unit` (None: not bounded).
    pub limit: Option<f64>,
    /// What the value is made of, in `unit`, e.g. arena 2368 + scratch 40 + stack 4096.
    pub terms: Vec<Term>,
}

/// One part of a resource figure.
#[derive(Serialize, Deserialize, Debug, Clone, Default, PartialEq)]
#[serde(default)]
pub struct Term {
    /// What the part is, e.g. "arena".
    pub name: String,
    /// Its size, in the unit of its [`ResourceRow`].
    pub value: f64,
}

/// One layer of the delivered model.
#[derive(Serialize, Deserialize, Debug, Clone, Default, PartialEq)]
#[serde(default)]
pub struct LayerRow {
    /// The layer's name, e.g. "conv2".
    pub name: String,
    /// Its operator kind, e.g. "conv2d", "depthwise", "dense".
    pub kind: String,
    /// Its output shape, e.g. "14x14x11".
    pub output: String,
    /// Output channels of the unpruned model (None: not known or not prunable).
    pub channels_before: Option<usize>,
    /// Output channels of the delivered model.
    pub channels_after: usize,
    /// Parameters (weights and biases), a count.
    pub params: u64,
    /// Multiply-accumulates per inference, a count.
    pub macs: u64,
}

/// Live activation memory along the operator order.
#[derive(Serialize, Deserialize, Debug, Clone, Default, PartialEq)]
#[serde(default)]
pub struct MemoryTimeline {
    /// One entry per operator, in the chosen (memory-optimal) operator order.
    pub steps: Vec<MemoryStep>,
    /// The peak of live memory, in bytes.
    pub peak_bytes: f64,
    /// The RAM budget for activations, in bytes (None: not bounded).
    pub limit_bytes: Option<f64>,
}

/// Live memory while one operator runs.
#[derive(Serialize, Deserialize, Debug, Clone, Default, PartialEq)]
#[serde(default)]
pub struct MemoryStep {
    /// The operator's name.
    pub op: String,
    /// Bytes of activations live while it runs (its inputs, its output and everything kept for later).
    pub live_bytes: f64,
}

/// One training chart.
#[derive(Serialize, Deserialize, Debug, Clone, Default, PartialEq)]
#[serde(default)]
pub struct Curve {
    /// The chart's title: "loss", "accuracy", "pruning penalty", "resources".
    pub title: String,
    /// The x axis' label, with its unit, e.g. "epoch".
    pub x_label: String,
    /// The y axis' label, with its unit.
    pub y_label: String,
    /// The lines, each with a legend entry.
    pub series: Vec<Series>,
    /// Vertical lines at phase boundaries ("pruning starts", "fine-tune"), in x units.
    pub markers: Vec<Marker>,
}

/// One line of a chart.
#[derive(Serialize, Deserialize, Debug, Clone, Default, PartialEq)]
#[serde(default)]
pub struct Series {
    /// Its legend entry, e.g. "train", "test".
    pub name: String,
    /// `[x, y]` points in the chart's axis units; non-finite points are dropped.
    pub points: Vec<[f64; 2]>,
}

/// A labelled vertical line.
#[derive(Serialize, Deserialize, Debug, Clone, Default, PartialEq)]
#[serde(default)]
pub struct Marker {
    /// Where, in x axis units.
    pub x: f64,
    /// What happens there, e.g. "pruning starts".
    pub label: String,
}

/// A confusion matrix.
#[derive(Serialize, Deserialize, Debug, Clone, Default, PartialEq)]
#[serde(default)]
pub struct Confusion {
    /// The class names, in class index order.
    pub class_names: Vec<String>,
    /// Counts of test samples, `matrix[true class][predicted class]`.
    pub matrix: Vec<Vec<usize>>,
}

/// One operator as measured on a Cortex-M4.
#[derive(Serialize, Deserialize, Debug, Clone, Default, PartialEq)]
#[serde(default)]
pub struct OpProfile {
    /// The operator's name.
    pub op: String,
    /// Its kind, e.g. "conv2d".
    pub kind: String,
    /// Its multiply-accumulates per inference, a count.
    pub macs: u64,
    /// Instructions it executed per inference, a count.
    pub instructions: u64,
}

/// One pipeline step.
#[derive(Serialize, Deserialize, Debug, Clone, Default, PartialEq)]
#[serde(default)]
pub struct StepRow {
    /// "train", "compress", "quantize", "export", "verify".
    pub step: String,
    /// "done", "reused", "skipped" (or "failed").
    pub status: String,
    /// Its wall-clock time in seconds (None: not measured or not run).
    pub seconds: Option<f64>,
    /// One line on what it did or why it was skipped.
    pub detail: String,
}
