//! The .tflite writer/reader: round trips, operator order, and malformed input failing cleanly.

#[path = "../../mcufit-quant/tests/common/mod.rs"]
mod common;

use mcufit_export::tflite::{self, schema};
use mcufit_export::{default_order, export_tflite, plan_arena, ExportError, PlanOptions};
use mcufit_quant::{quantize, FloatWeights, QuantizedModel};
use proptest::prelude::*;

fn all_ops() -> (QuantizedModel, Vec<Vec<i8>>) {
    let g = common::all_ops_net();
    let w = FloatWeights::random(&g, 21).unwrap();
    let q = quantize(&g, &w, &common::image_inputs(&g, 8, 2)).unwrap();
    let xs = common::image_inputs(&g, 16, 3).iter().map(|x| q.quantize_input(x)).collect();
    (q, xs)
}

#[test]
fn round_trip_is_structurally_identical_and_computes_the_same() {
    for seed in [0u64, 1, 2, 3] {
        let g = if seed == 0 { common::all_ops_net() } else { common::random_net(seed * 17) };
        let w = FloatWeights::random(&g, seed).unwrap();
        let q = quantize(&g, &w, &common::image_inputs(&g, 4, seed)).unwrap();
        let lowered = tflite::lower(&q, &default_order(&q)).unwrap();
        let bytes = tflite::write(&lowered).unwrap();
        assert_eq!(&bytes[4..8], b"TFL3");
        let back = tflite::read(&bytes).unwrap();
        assert_eq!(back, lowered, "{}: read(write(m)) != m", g.name);
        let imported = tflite::import(&back).unwrap();
        let xs: Vec<Vec<i8>> = common::image_inputs(&g, 8, 9).iter().map(|x| q.quantize_input(x)).collect();
        assert_eq!(imported.run_int8_batch(&xs).unwrap(), q.run_int8_batch(&xs).unwrap());
        // Constant data is 8-byte aligned in the file (int32 biases are read in place by TFLM).
        for t in &back.tensors {
            if let Some(d) = &t.data {
                let pos = bytes.windows(d.len()).position(|win| win == d.as_slice());
                if let (Some(p), true) = (pos, d.len() >= 64) {
                    assert_eq!(p % 8, 0, "tensor '{}' data at {p}", t.name);
                }
            }
        }
    }
}

#[test]
fn operators_follow_the_given_order() {
    // branchy: after the stem, the two branches of the residual block can run in either order.
    let g = mcufit_ir::zoo::get("branchy-net").unwrap();
    let w = FloatWeights::random(&g, 4).unwrap();
    let q = quantize(&g, &w, &common::image_inputs(&g, 2, 4)).unwrap();
    let order = default_order(&q);
    // Find two adjacent independent ops and swap them.
    let mut alt = order.clone();
    let pos = (0..alt.len() - 1)
        .find(|&i| !q.ops[alt[i + 1]].inputs.contains(&alt[i]))
        .expect("branchy-net has independent neighbours");
    alt.swap(pos, pos + 1);
    for ord in [&order, &alt] {
        let m = tflite::read(&export_tflite(&q, ord).unwrap()).unwrap();
        // Every model op's output tensor appears in the file in `ord`'s order.
        let produced: Vec<String> =
            m.operators.iter().map(|o| m.tensors[o.outputs[0] as usize].name.clone()).filter(|n| !n.contains('/')).collect();
        let want: Vec<String> = ord.iter().map(|&i| q.tensors[i].name.clone()).collect();
        assert_eq!(produced, want);
        let plan = plan_arena(&q, ord, PlanOptions::default()).unwrap();
        assert_eq!(plan.arena_bytes, plan.peak_bytes);
    }
    // Orders that break dependencies or miss ops are rejected.
    let mut bad = order.clone();
    bad.reverse();
    assert!(matches!(export_tflite(&q, &bad), Err(ExportError::Order(_))));
    assert!(matches!(export_tflite(&q, &order[1..]), Err(ExportError::Order(_))));
    let mut dup = order.clone();
    dup.push(order[0]);
    assert!(matches!(export_tflite(&q, &dup), Err(ExportError::Order(_))));
}

#[test]
fn zoo_models_plan_to_their_peak() {
    // Structure only: one calibration sample is enough to build the int8 model.
    for name in ["ds-cnn", "resnet-8", "branchy-net", "mnist-cnn", "mnist-wide"] {
        let g = mcufit_ir::zoo::get(name).unwrap();
        let w = FloatWeights::random(&g, 1).unwrap();
        let q = quantize(&g, &w, &common::image_inputs(&g, 1, 1)).unwrap();
        for opts in [PlanOptions::default(), PlanOptions { count_input: true, in_place_add: true }] {
            let p = plan_arena(&q, &default_order(&q), opts).unwrap();
            println!("{name}: peak {} B, arena {} B ({}, in-place add {})", p.peak_bytes, p.arena_bytes, p.method, opts.in_place_add);
            assert_eq!(p.arena_bytes, p.peak_bytes, "{name}");
        }
    }
}

#[test]
fn wrong_identifier_and_short_files_fail() {
    let (q, _) = all_ops();
    let mut bytes = export_tflite(&q, &default_order(&q)).unwrap();
    assert!(matches!(tflite::read(&bytes[..7]), Err(ExportError::Malformed(_))));
    assert!(matches!(tflite::read(&[]), Err(ExportError::Malformed(_))));
    bytes[4..8].copy_from_slice(b"TFL2");
    let e = tflite::read(&bytes).unwrap_err();
    assert!(e.to_string().contains("TFL3"), "{e}");
    bytes[4..8].copy_from_slice(schema::FILE_IDENTIFIER.as_bytes());
    // Root offset past the end.
    let past = (bytes.len() as u32 + 10).to_le_bytes();
    bytes[0..4].copy_from_slice(&past);
    assert!(matches!(tflite::read(&bytes), Err(ExportError::Malformed(_))));
}

/// Parse, import and run whatever the reader accepts: nothing may panic.
fn exercise(data: &[u8], input_len: usize) {
    if let Ok(m) = tflite::read(data) {
        if let Ok(q) = tflite::import(&m) {
            let _ = q.run_int8(&vec![0i8; q.input().elements().min(input_len * 4)]);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn truncated_files_fail_cleanly(cut in 0usize..10_000) {
        let (q, _) = all_ops();
        let bytes = export_tflite(&q, &default_order(&q)).unwrap();
        let cut = cut % bytes.len();
        prop_assert!(tflite::read(&bytes[..cut]).is_err());
    }

    #[test]
    fn corrupted_files_never_panic(flips in proptest::collection::vec((0usize..1_000_000, any::<u8>()), 1..8)) {
        let (q, _) = all_ops();
        let mut bytes = export_tflite(&q, &default_order(&q)).unwrap();
        let n = bytes.len();
        for (pos, v) in flips {
            // Bias the flips towards the header and tables, where offsets live.
            let p = if pos % 2 == 0 { pos % 256.min(n) } else { pos % n };
            bytes[p] ^= v | 1;
        }
        exercise(&bytes, q.input().elements());
    }

    #[test]
    fn random_bytes_never_panic(mut data in proptest::collection::vec(any::<u8>(), 0..512)) {
        if data.len() >= 8 {
            data[4..8].copy_from_slice(b"TFL3");
        }
        exercise(&data, 64);
    }
}
