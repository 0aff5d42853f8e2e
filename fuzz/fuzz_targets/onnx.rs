//! ONNX files: `mcufit_import::onnx::import_bytes` (protobuf decode, every node's mapping, shape and
//! weight checks). A model that imports must keep the importer's promises: a valid graph whose
//! weights fit it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mcufit_import::{onnx, Imported};

fuzz_target!(|data: &[u8]| {
    if let Ok(Imported::Float { graph, weights }) = onnx::import_bytes(data, "fuzz") {
        graph.validate().expect("an imported graph is valid");
        weights.check(&graph).expect("an imported model's weights fit its graph");
    }
});
