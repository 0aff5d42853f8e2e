//! ONNX (float) → IR + weights. Owned by the ONNX import work in progress.

use crate::{ImportError, Imported, Result};

/// Imports an ONNX model; `name` becomes the graph's name.
pub fn import_bytes(_bytes: &[u8], _name: &str) -> Result<Imported> {
    Err(ImportError::Unsupported { format: "onnx", msg: "the ONNX importer is being written".into() })
}
