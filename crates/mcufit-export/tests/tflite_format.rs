//! The .tflite writer/reader: round trips, operator order, and malformed input failing cleanly.

#[path = "../../mcufit-quant/tests/common/mod.rs"]
mod common;

use mcufit_export::tflite::{self, schema};
use mcufit_export::{default_order, export_tflite, plan_arena, ExportError, PlanOptions};
use mcufit_quant::{quantize, random_weights, QuantizedModel};
use proptest::prelude::*;

fn all_ops() -> (QuantizedModel, Vec<Vec<i8>>) {
    let g = common::all_ops_net();
    let w = random_weights(&g, 21).unwrap();
    let q = quantize(&g, &w, &common::image_inputs(&g, 8, 2)).unwrap();
    let xs = common::image_inputs(&g, 16, 3).iter().map(|x| q.quantize_input(x)).collect();
    (q, xs)
}

#[test]
fn round_trip_is_structurally_identical_and_computes_the_same() {
    for seed in [0u64, 1, 2, 3] {
        let g = if seed == 0 { common::all_ops_net() } else { common::random_net(seed * 17) };
        let w = random_weights(&g, seed).unwrap();
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
    let w = random_weights(&g, 4).unwrap();
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
        let produced: Vec<String> = m
            .operators
            .iter()
            .map(|o| m.tensors[o.outputs[0] as usize].name.clone())
            .filter(|n| !n.contains('/'))
            .collect();
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
        let w = random_weights(&g, 1).unwrap();
        let q = quantize(&g, &w, &common::image_inputs(&g, 1, 1)).unwrap();
        for opts in [PlanOptions::default(), PlanOptions { count_input: true, in_place_add: true }] {
            let p = plan_arena(&q, &default_order(&q), opts).unwrap();
            println!(
                "{name}: peak {} B, arena {} B ({}, in-place add {})",
                p.peak_bytes, p.arena_bytes, p.method, opts.in_place_add
            );
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

/// The embedded TFLM offline plan: one offset per tensor, -1 for constants, every activation
/// placed, no two tensors that are alive together overlapping in the arena unless one is a
/// byte-for-byte alias of the other (a RESHAPE view, a 1x1 clamp, an in-place ADD), and the arena
/// it spans is mcufit's planned arena.
#[test]
fn offline_plan_places_every_activation_without_overlap() {
    let mut cases = vec![common::all_ops_net(), mcufit_ir::zoo::get("branchy-net").unwrap()];
    cases.extend((0..6).map(|s| common::random_net(500 + s)));
    for (k, g) in cases.iter().enumerate() {
        let w = random_weights(g, k as u64).unwrap();
        let q = quantize(g, &w, &common::image_inputs(g, 2, k as u64)).unwrap();
        let order = default_order(&q);
        for opts in [PlanOptions::default(), PlanOptions { count_input: true, in_place_add: true }] {
            let (lowered, plan) = tflite::lower_planned(&q, &order, opts).unwrap();
            let m = tflite::read(&tflite::write(&lowered).unwrap()).unwrap();
            assert_eq!(m, lowered, "{}: metadata does not round-trip", g.name);
            let off = tflite::offline_plan(&m).expect("offline plan present");
            assert_eq!(off.len(), m.tensors.len());
            let n_ops = m.operators.len();
            // Lifetime of each activation tensor in operator steps: [producer, last reader].
            let mut life: Vec<(usize, usize)> = vec![(usize::MAX, 0); m.tensors.len()];
            for &i in &m.inputs {
                life[i as usize] = (0, 0);
            }
            for (s, o) in m.operators.iter().enumerate() {
                for &t in &o.outputs {
                    life[t as usize] = (s, s);
                }
                for &t in o.inputs.iter().filter(|&&t| t >= 0) {
                    life[t as usize].1 = s;
                }
            }
            for &t in &m.outputs {
                life[t as usize].1 = n_ops;
            }
            // Byte-for-byte aliases: an op whose output sits exactly on its input.
            let mut root: Vec<usize> = (0..m.tensors.len()).collect();
            fn find(r: &mut Vec<usize>, x: usize) -> usize {
                if r[x] != x {
                    let y = find(r, r[x]);
                    r[x] = y;
                }
                r[x]
            }
            for o in &m.operators {
                let y = o.outputs[0] as usize;
                for &x in o.inputs.iter().filter(|&&x| x >= 0 && off[x as usize] >= 0) {
                    if off[x as usize] == off[y]
                        && [schema::op::RESHAPE, schema::op::MAX_POOL_2D, schema::op::ADD].contains(&o.code)
                    {
                        let (a, b) = (find(&mut root, x as usize), find(&mut root, y));
                        root[a] = b;
                    }
                }
            }
            let mut span = 0usize;
            let acts: Vec<usize> = (0..m.tensors.len()).filter(|&t| m.tensors[t].data.is_none()).collect();
            for (t, tensor) in m.tensors.iter().enumerate() {
                if tensor.data.is_some() {
                    assert_eq!(off[t], -1, "{}: constant '{}' placed in the arena", g.name, tensor.name);
                } else {
                    assert!(off[t] >= 0, "{}: activation '{}' not planned", g.name, tensor.name);
                    span = span.max(off[t] as usize + tensor.elements());
                }
            }
            assert_eq!(
                span, plan.arena_bytes,
                "{}: offline plan spans {span} B, mcufit planned {}",
                g.name, plan.arena_bytes
            );
            for (i, &a) in acts.iter().enumerate() {
                for &b in &acts[i + 1..] {
                    let (la, lb) = (life[a], life[b]);
                    let alive_together = la.0 <= lb.1 && lb.0 <= la.1;
                    let (oa, ob) = (off[a] as usize, off[b] as usize);
                    let share_bytes = oa < ob + m.tensors[b].elements() && ob < oa + m.tensors[a].elements();
                    if alive_together && share_bytes {
                        assert_eq!(
                            find(&mut root, a),
                            find(&mut root, b),
                            "{}: '{}' and '{}' overlap while both are alive",
                            g.name,
                            m.tensors[a].name,
                            m.tensors[b].name
                        );
                    }
                }
            }
        }
    }
}
