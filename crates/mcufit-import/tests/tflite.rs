//! `.tflite` import: every supported op round-trips through mcufit's writer (int8 bit-exact and
//! structurally identical; float with identical weights and outputs); unsupported operators,
//! options, quantizations and malformed files fail with errors that name the operator and tensor.

#[path = "../../mcufit-quant/tests/common/mod.rs"]
mod common;

use mcufit_export::default_order;
use mcufit_export::tflite::{self, schema, TflModel, TflOptions};
use mcufit_import::{tflite as import, ImportError, Imported};
use mcufit_ir::{Conv2d, Graph, GraphBuilder, Op, Padding, Pool2d, Shape, Weights};
use mcufit_quant::{quantize, random_weights, run_float, QuantizedModel};
use proptest::prelude::*;

fn quantized(g: &Graph, seed: u64) -> QuantizedModel {
    let w = random_weights(g, seed).unwrap();
    quantize(g, &w, &common::image_inputs(g, 6, seed)).unwrap()
}

fn int8_of(i: Imported) -> (Graph, QuantizedModel) {
    match i {
        Imported::Int8 { graph, model } => (graph, model),
        Imported::Float { .. } => panic!("an int8 file imported as float"),
    }
}

/// The model with every name blanked: what must survive a round trip.
fn anonymous(q: &QuantizedModel) -> QuantizedModel {
    let mut q = q.clone();
    q.name.clear();
    q.ops.iter_mut().for_each(|o| o.name.clear());
    q.tensors.iter_mut().for_each(|t| t.name.clear());
    q
}

fn lowered(q: &QuantizedModel) -> TflModel {
    tflite::lower(q, &default_order(q)).unwrap()
}

fn bytes_of(m: &TflModel) -> Vec<u8> {
    tflite::write(m).unwrap()
}

fn unsupported_msg(r: mcufit_import::Result<Imported>) -> String {
    match r {
        Err(e @ ImportError::Unsupported { .. }) => e.to_string(),
        Err(e) => panic!("expected Unsupported, got {e}"),
        Ok(_) => panic!("expected an error, the import succeeded"),
    }
}

#[test]
fn every_int8_op_round_trips_identically() {
    // all-ops: grouped conv, depthwise, folded and standalone BN, ReLU/ReLU6, max/avg pool with SAME
    // padding, residual add, concat, a 4-D reshape (a RESHAPE view in the file), GAP, dense, softmax.
    for (k, g) in [common::all_ops_net(), common::random_net(17), common::random_net(34), common::random_net(51)]
        .into_iter()
        .enumerate()
    {
        let q = quantized(&g, k as u64);
        let file = bytes_of(&lowered(&q));
        let (graph, back) = int8_of(import::import_bytes(&file, &g.name).unwrap());
        assert!(anonymous(&back) == anonymous(&q), "{}: the imported model differs from the written one", g.name);
        // The graph view is the quantized model's: one fused op per model op, same costs.
        assert_eq!(graph.fused().ops.len(), back.ops.len());
        assert_eq!(
            graph.fused().ops.iter().map(|f| f.shape).collect::<Vec<_>>(),
            back.tensors.iter().map(|t| t.shape).collect::<Vec<_>>()
        );
        let xs: Vec<Vec<i8>> = common::image_inputs(&g, 8, 99).iter().map(|x| q.quantize_input(x)).collect();
        assert_eq!(back.run_int8_batch(&xs).unwrap(), q.run_int8_batch(&xs).unwrap(), "{}", g.name);
        // Writing the import and importing that again is a fixed point, names included.
        let (_, again) = int8_of(import::import_bytes(&bytes_of(&lowered(&back)), &g.name).unwrap());
        assert!(again == back, "{}: import(write(import(f))) != import(f)", g.name);
    }
}

/// A concat with a fused ReLU is written as CONCATENATION + a 1x1 MAX_POOL_2D clamp; a reshape of
/// the network input stays a RESHAPE kernel. Different structure, same outputs.
#[test]
fn concat_clamp_and_input_reshape_compute_the_same() {
    let mut b = GraphBuilder::new("clamp", Shape::new(8, 6, 2));
    let r = b.add(Op::Reshape { shape: Shape::new(6, 8, 2) }, &[0]);
    let a = b.conv(r, 4, 3, 1, Padding::Same);
    let c = b.conv(r, 3, 1, 1, Padding::Same);
    let cat = b.add(Op::Concat, &[a, c]);
    let cat = b.relu(cat);
    let p = b.add(Op::MaxPool2d(Pool2d { pool: [2, 2], stride: None, padding: Padding::Valid }), &[cat]);
    let f = b.add(Op::Flatten, &[p]);
    b.dense(f, 3);
    let g = b.build().unwrap();
    let q = quantized(&g, 5);
    let (_, back) = int8_of(import::import_bytes(&bytes_of(&lowered(&q)), "clamp").unwrap());
    let names: Vec<&str> = back.ops.iter().map(|o| o.kind.name()).collect();
    assert!(names.contains(&"reshape") && names.iter().filter(|&&n| n == "max_pool").count() == 2, "{names:?}");
    let xs: Vec<Vec<i8>> = common::image_inputs(&g, 8, 3).iter().map(|x| q.quantize_input(x)).collect();
    assert_eq!(back.run_int8_batch(&xs).unwrap(), q.run_int8_batch(&xs).unwrap());
}

/// A float net (no batch norm, so the file's weights are the IR's own) with every op.
fn float_net() -> Graph {
    let mut b = GraphBuilder::new("float", Shape::new(10, 8, 2));
    let c = b.conv(0, 6, 3, 1, Padding::Same);
    let c = b.add(Op::Relu6, &[c]);
    let d = b.dw(c, 3, 2, Padding::Same);
    let d = b.relu(d);
    let p = b.conv(d, 6, 1, 1, Padding::Valid);
    let s = b.add(Op::Add, &[d, p]);
    let s = b.relu(s);
    let gconv = Op::Conv2d(Conv2d {
        filters: 4,
        kernel: [1, 1],
        stride: [1, 1],
        padding: Padding::Valid,
        groups: 2,
        bias: true,
    });
    let gc = b.add(gconv, &[s]);
    let m = b.add(Op::MaxPool2d(Pool2d { pool: [2, 2], stride: Some([1, 1]), padding: Padding::Same }), &[s]);
    let cat = b.add(Op::Concat, &[m, gc]); // 5x4x10
    let a = b.add(Op::AvgPool2d(Pool2d { pool: [2, 2], stride: Some([2, 2]), padding: Padding::Valid }), &[cat]);
    let f = b.add(Op::Flatten, &[a]);
    let h = b.dense(f, 7);
    b.add(Op::Softmax, &[h]);
    b.build().unwrap()
}

/// The float file of `g` with `w`: mcufit's int8 lowering of the same net with every activation
/// made float32 and every weight replaced by `w`'s (float32, or int8 weight-only with the int8
/// model's scales when `int8_weights`).
fn float_file(g: &Graph, w: &Weights, q: &QuantizedModel, int8_weights: bool) -> TflModel {
    let mut m = lowered(q);
    for t in &mut m.tensors {
        let f32s = |v: &[f32]| v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>();
        if let Some(node) = t.name.strip_suffix("/filter") {
            if !int8_weights {
                t.data = Some(f32s(&w.kernel(node).unwrap().data));
                t.ttype = schema::ttype::FLOAT32;
                t.quant = None;
            }
        } else if let Some(node) = t.name.strip_suffix("/bias") {
            t.data = Some(f32s(w.bias(node).unwrap()));
            t.ttype = schema::ttype::FLOAT32;
            t.quant = None;
        } else if t.ttype == schema::ttype::INT8 {
            t.ttype = schema::ttype::FLOAT32;
            t.quant = None;
        }
    }
    let _ = g;
    m
}

#[test]
fn float_models_import_with_their_weights() {
    let g = float_net();
    let w = random_weights(&g, 3).unwrap();
    let q = quantize(&g, &w, &common::image_inputs(&g, 4, 1)).unwrap();
    let (graph, weights) = match import::import_bytes(&bytes_of(&float_file(&g, &w, &q, false)), "float").unwrap() {
        Imported::Float { graph, weights } => (graph, weights),
        Imported::Int8 { .. } => panic!("float file imported as int8"),
    };
    weights.check_deployable(&graph).unwrap();
    assert_eq!(graph.shapes().unwrap().last(), g.shapes().unwrap().last());
    for x in common::image_inputs(&g, 4, 8) {
        assert_eq!(run_float(&graph, &weights, &x).unwrap(), run_float(&g, &w, &x).unwrap());
    }
    // Weight-only int8 (the MLPerf float KWS): the kernels are dequantized, scale * q per channel.
    let (graph, weights) = match import::import_bytes(&bytes_of(&float_file(&g, &w, &q, true)), "float").unwrap() {
        Imported::Float { graph, weights } => (graph, weights),
        Imported::Int8 { .. } => panic!("float file imported as int8"),
    };
    // Weighted nodes come in the file's order, which is the quantized model's.
    let kernels: Vec<_> = graph.nodes.iter().filter_map(|n| weights.kernel(&n.name)).collect();
    let qops: Vec<_> = q.ops.iter().filter(|o| o.kind.weights().is_some()).collect();
    assert_eq!(kernels.len(), qops.len());
    for (k, op) in kernels.iter().zip(qops) {
        let qw = op.kind.weights().unwrap();
        let axis = if matches!(op.kind, mcufit_quant::QOpKind::DepthwiseConv2d { .. }) { 3 } else { 0 };
        let inner: usize = qw.filter_dims[axis + 1..].iter().product();
        let c = qw.filter_dims[axis];
        let want: Vec<f32> =
            qw.filter.iter().enumerate().map(|(i, &v)| qw.filter_scales[(i / inner) % c] * v as f32).collect();
        assert_eq!(k.shape, qw.filter_dims, "{}", op.name);
        assert_eq!(k.data, want, "dequantized kernel of '{}'", op.name);
    }
}

fn all_ops_file() -> (QuantizedModel, TflModel) {
    let q = quantized(&common::all_ops_net(), 21);
    let m = lowered(&q);
    (q, m)
}

#[test]
fn unsupported_operators_and_options_name_the_operator_and_tensor() {
    let (_, base) = all_ops_file();
    let first_conv = base.operators.iter().position(|o| o.code == schema::op::CONV_2D).unwrap();
    let out_name = |m: &TflModel, i: usize| m.tensors[m.operators[i].outputs[0] as usize].name.clone();

    // An operator mcufit has no kernel for.
    let mut m = base.clone();
    m.operators[first_conv].code = 18; // MUL
    let e = unsupported_msg(import::import_model(&m, "x"));
    assert!(e.contains(&format!("operator #{first_conv} MUL")) && e.contains(&out_name(&m, first_conv)), "{e}");
    assert!(e.contains("CONV_2D, DEPTHWISE_CONV_2D"), "lists what is supported: {e}");

    // QUANTIZE / DEQUANTIZE around the model: says how to convert.
    let mut m = base.clone();
    m.operators[first_conv].code = schema::op::QUANTIZE;
    let e = unsupported_msg(import::import_model(&m, "x"));
    assert!(e.contains("QUANTIZE") && e.contains("tf.int8"), "{e}");

    // Dilation, a fused TANH, a depth multiplier.
    let mut m = base.clone();
    if let TflOptions::Conv2D { dilation_h, .. } = &mut m.operators[first_conv].options {
        *dilation_h = 2;
    }
    let e = unsupported_msg(import::import_model(&m, "x"));
    assert!(e.contains("dilation 2x1") && e.contains(&out_name(&m, first_conv)), "{e}");
    let mut m = base.clone();
    if let TflOptions::Conv2D { activation, .. } = &mut m.operators[first_conv].options {
        *activation = 4;
    }
    assert!(unsupported_msg(import::import_model(&m, "x")).contains("fused activation TANH"));

    // Per-channel scales on the wrong axis; a nonzero weight zero point.
    let mut m = base.clone();
    let f = m.operators[first_conv].inputs[1] as usize;
    m.tensors[f].quant.as_mut().unwrap().quantized_dimension = 3;
    let e = unsupported_msg(import::import_model(&m, "x"));
    assert!(e.contains(&m.tensors[f].name) && e.contains("dimension 3"), "{e}");
    let mut m = base.clone();
    m.tensors[f].quant.as_mut().unwrap().zero_point[0] = 3;
    assert!(unsupported_msg(import::import_model(&m, "x")).contains("nonzero zero point"));

    // Output dims that disagree with the IR's shape inference.
    let mut m = base.clone();
    let o = m.operators[first_conv].outputs[0] as usize;
    m.tensors[o].dims[1] += 1;
    let e = unsupported_msg(import::import_model(&m, "x"));
    assert!(e.contains("shape inference") && e.contains(&m.tensors[o].name), "{e}");

    // A float activation inside an int8 model.
    let mut m = base.clone();
    m.tensors[o].ttype = schema::ttype::FLOAT32;
    assert!(unsupported_msg(import::import_model(&m, "x")).contains("float32 in an int8 model"));

    // Several subgraphs; uint8 input.
    let mut m = base.clone();
    m.subgraphs = 2;
    assert!(unsupported_msg(import::import_model(&m, "x")).contains("2 subgraphs"));
    let mut m = base.clone();
    let i = m.inputs[0] as usize;
    m.tensors[i].ttype = 3;
    assert!(unsupported_msg(import::import_model(&m, "x")).contains("uint8"));

    // Broadcasting ADD.
    let add = base.operators.iter().position(|o| o.code == schema::op::ADD).unwrap();
    let mut m = base.clone();
    m.operators[add].inputs[1] = m.inputs[0];
    assert!(unsupported_msg(import::import_model(&m, "x")).contains("without broadcasting"));
}

#[test]
fn malformed_and_absurd_files_fail_cleanly() {
    let (_, m) = all_ops_file();
    let bytes = bytes_of(&m);
    let malformed = |b: &[u8]| match import::import_bytes(b, "x") {
        Err(e @ ImportError::Malformed { .. }) => e.to_string(),
        Err(e) => panic!("expected Malformed, got {e}"),
        Ok(_) => panic!("a malformed file imported"),
    };
    assert!(malformed(&bytes[..bytes.len() / 2]).contains("malformed tflite"));
    assert!(malformed(&bytes[..6]).contains("too short"));
    let mut wrong = bytes.clone();
    wrong[4..8].copy_from_slice(b"ONNX");
    assert!(malformed(&wrong).contains("TFL3"));
    // Absurd dims on the input: refused by the IR's size checks, named.
    let mut huge = m.clone();
    let i = huge.inputs[0] as usize;
    huge.tensors[i].dims = vec![1, 1 << 30, 1 << 30, 1 << 20];
    let e = unsupported_msg(import::import_bytes(&bytes_of(&huge), "x"));
    assert!(e.contains("too large") || e.contains("shape inference"), "{e}");
    // A negative (dynamic) dim.
    let mut dynamic = m.clone();
    dynamic.tensors[i].dims[1] = -1;
    assert!(unsupported_msg(import::import_bytes(&bytes_of(&dynamic), "x")).contains("batch 1"));
    // A filter whose data does not hold its dims.
    let mut short = m.clone();
    let f = short.tensors.iter().position(|t| t.name.ends_with("/filter")).unwrap();
    short.tensors[f].data.as_mut().unwrap().pop();
    let e = unsupported_msg(import::import_bytes(&bytes_of(&short), "x"));
    assert!(e.contains(&short.tensors[f].name), "{e}");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    /// Truncated or byte-flipped files: an error or a valid model, never a panic.
    #[test]
    fn corrupted_files_never_panic(cut in 0usize..100_000, flips in proptest::collection::vec((0usize..1_000_000, any::<u8>()), 0..6)) {
        let (_, m) = all_ops_file();
        let mut bytes = bytes_of(&m);
        let n = bytes.len();
        for (pos, v) in flips {
            bytes[pos % n] = v;
        }
        let cut = if cut % 3 == 0 { n } else { cut % n };
        if let Ok(Imported::Int8 { model, .. }) = import::import_bytes(&bytes[..cut], "x") {
            let _ = model.run_int8(&vec![0; model.input().elements()]);
        }
    }
}
