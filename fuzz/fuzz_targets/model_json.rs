//! Model files: `mcufit_ir::Graph::from_json`; a graph it accepts must write back to a file it accepts again.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mcufit_ir::Graph;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(g) = Graph::from_json(text) else { return };
    let json = g.to_json();
    let back = Graph::from_json(&json).expect("a graph's own model file must parse");
    assert_eq!(back.to_json(), json, "model file round trip changed the graph");
});
