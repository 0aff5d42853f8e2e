//! Helpers shared by the import tests (`mod common;` in each test file that needs them).

#![allow(dead_code)]

use std::path::Path;

use mcufit_import::{import_file, Imported};
use mcufit_ir::{Graph, Weights};

/// A little-endian f32 file (the fixtures' inputs and reference outputs).
pub fn read_f32(path: &Path) -> Vec<f32> {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    bytes.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()
}

/// One example in ONNX layout → the IR's: `[1, C, H, W]` → HWC; 2-D unchanged.
pub fn to_nhwc(x: &[f32], dims: &[usize]) -> Vec<f32> {
    let [_, c, h, w] = dims[..] else { return x.to_vec() };
    let mut y = vec![0f32; x.len()];
    for ch in 0..c {
        for i in 0..h * w {
            y[i * c + ch] = x[ch * h * w + i];
        }
    }
    y
}

/// `DIR/NAME.onnx` imported as a float model (panics with the import error otherwise).
pub fn import_onnx(dir: &Path, name: &str) -> (Graph, Weights) {
    match import_file(&dir.join(format!("{name}.onnx"))) {
        Ok(Imported::Float { graph, weights }) => (graph, weights),
        Ok(Imported::Int8 { .. }) => panic!("{name}: an ONNX import must be float"),
        Err(e) => panic!("{name}: {e}"),
    }
}
