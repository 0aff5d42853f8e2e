//! `.tflite` → IR (float) or IR + QuantizedModel (int8). Owned by the tflite import work in progress.

use crate::{ImportError, Imported, Result};

/// Imports a `.tflite` flatbuffer; `name` becomes the graph's name.
pub fn import_bytes(_bytes: &[u8], _name: &str) -> Result<Imported> {
    Err(ImportError::Unsupported { format: "tflite", msg: "the .tflite importer is being written".into() })
}
