//! # mcufit-import
//!
//! Models from outside mcufit, brought into its IR so that every command takes them:
//!
//! - `.tflite` ([`tflite`]): a fully int8 model as TensorFlow Lite Micro runs it becomes an
//!   [`Imported::Int8`] (the IR graph for the cost model plus the exact [`QuantizedModel`] for the
//!   bit-exact reference, C and .tflite export); a float model (float activations, weights float or
//!   int8 with per-channel scales, which are dequantized) becomes an [`Imported::Float`] with weights,
//!   trainable like any other.
//! - ONNX ([`onnx`]): a float model as `torch.onnx.export` writes it becomes an [`Imported::Float`]
//!   (NCHW weights transposed to mcufit's NHWC layouts).
//!
//! One mapping per operator; shapes come from the IR's own shape inference, and an imported shape that
//! disagrees with it is an error. An unsupported operator, layout or quantization is an
//! [`ImportError::Unsupported`] naming the operator and tensor; nothing is guessed.

pub mod error;
pub mod onnx;
pub mod tflite;

use std::path::Path;

use mcufit_ir::{Graph, Weights};
use mcufit_quant::QuantizedModel;

pub use error::{ImportError, Result};

/// A model read from a file of another tool.
#[derive(Debug, Clone)]
pub enum Imported {
    /// A float model: its architecture and trained weights (batch norm kept or folded, as the file has it).
    Float { graph: Graph, weights: Weights },
    /// A fully int8 model: `graph` is the float view of its architecture (for the cost model and
    /// analysis), `model` computes exactly what TFLite Micro computes for the file.
    Int8 { graph: Graph, model: QuantizedModel },
}

impl Imported {
    /// The architecture, whichever kind the model is.
    pub fn graph(&self) -> &Graph {
        match self {
            Imported::Float { graph, .. } | Imported::Int8 { graph, .. } => graph,
        }
    }
}

/// The formats [`import_file`] recognises.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Tflite,
    Onnx,
}

/// The format of a model file, by its content (a .tflite has the `TFL3` identifier at bytes 4..8)
/// and, for ONNX (a protobuf without a magic number), its `.onnx` extension. `None`: neither.
pub fn detect(path: &Path, head: &[u8]) -> Option<Format> {
    if head.len() >= 8 && &head[4..8] == b"TFL3" {
        return Some(Format::Tflite);
    }
    let ext = path.extension().and_then(|e| e.to_str()).map(|e| e.to_ascii_lowercase());
    match ext.as_deref() {
        Some("tflite") => Some(Format::Tflite),
        Some("onnx") => Some(Format::Onnx),
        _ => None,
    }
}

/// True when `spec` names a file [`import_file`] reads (by extension; the content decides later).
pub fn is_import_path(spec: &str) -> bool {
    let lower = spec.to_ascii_lowercase();
    lower.ends_with(".tflite") || lower.ends_with(".onnx")
}

/// Reads a `.tflite` or `.onnx` file.
pub fn import_file(path: &Path) -> Result<Imported> {
    let bytes = std::fs::read(path).map_err(|e| ImportError::io(path, e))?;
    let name = path.file_stem().and_then(|s| s.to_str()).unwrap_or("imported");
    match detect(path, &bytes) {
        Some(Format::Tflite) => tflite::import_bytes(&bytes, name),
        Some(Format::Onnx) => onnx::import_bytes(&bytes, name),
        None => Err(ImportError::Unsupported {
            format: "model",
            msg: format!("{}: neither a .tflite (no TFL3 identifier) nor an .onnx file", path.display()),
        }),
    }
}
