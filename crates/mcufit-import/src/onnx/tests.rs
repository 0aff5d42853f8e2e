//! Python-free checks: models built here with the generated protobuf types. (The comparison with
//! onnxruntime is `tests/onnx.rs`.)

use proptest::prelude::*;

use super::proto::tensor_proto::DataType;
use super::proto::tensor_shape_proto::Dimension;
use super::proto::type_proto::Tensor as TensorType;
use super::proto::*;
use super::*;
use mcufit_ir::{Dense, Padding};

fn floats(name: &str, dims: &[i64], data: &[f32]) -> TensorProto {
    TensorProto {
        name: Some(name.into()),
        dims: dims.to_vec(),
        data_type: Some(DataType::Float as i32),
        raw_data: Some(data.iter().flat_map(|x| x.to_le_bytes()).collect()),
        ..Default::default()
    }
}

fn ints(name: &str, data: &[i64]) -> TensorProto {
    TensorProto {
        name: Some(name.into()),
        dims: vec![data.len() as i64],
        data_type: Some(DataType::Int64 as i32),
        int64_data: data.to_vec(),
        ..Default::default()
    }
}

enum A {
    I(i64),
    F(f32),
    Is(&'static [i64]),
    S(&'static str),
}

fn node(op: &str, name: &str, inputs: &[&str], attrs: &[(&str, A)]) -> NodeProto {
    let attribute = attrs
        .iter()
        .map(|(n, a)| {
            let mut p = AttributeProto { name: Some(n.to_string()), ..Default::default() };
            match a {
                A::I(i) => p.i = Some(*i),
                A::F(f) => p.f = Some(*f),
                A::Is(v) => p.ints = v.to_vec(),
                A::S(s) => p.s = Some(s.as_bytes().to_vec()),
            }
            p
        })
        .collect();
    NodeProto {
        op_type: Some(op.into()),
        name: Some(name.into()),
        input: inputs.iter().map(|s| s.to_string()).collect(),
        output: vec![format!("{name}_out")],
        attribute,
        ..Default::default()
    }
}

fn value_info(name: &str, dims: &[i64]) -> ValueInfoProto {
    let dim = dims
        .iter()
        .map(|&d| Dimension {
            value: Some(if d < 0 { Dim::DimParam("N".into()) } else { Dim::DimValue(d) }),
            ..Default::default()
        })
        .collect();
    ValueInfoProto {
        name: Some(name.into()),
        r#type: Some(TypeProto {
            value: Some(TypeValue::TensorType(TensorType {
                elem_type: Some(FLOAT),
                shape: Some(TensorShapeProto { dim }),
            })),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// A model reading `x` of `in_dims` (batch -1 = symbolic), whose output is the last node's.
fn model(in_dims: &[i64], nodes: Vec<NodeProto>, inits: Vec<TensorProto>, opset: i64) -> ModelProto {
    let out = nodes.last().map(|n| n.output[0].clone()).unwrap_or_else(|| "x".into());
    ModelProto {
        ir_version: Some(8),
        opset_import: vec![OperatorSetIdProto { domain: Some(String::new()), version: Some(opset) }],
        graph: Some(GraphProto {
            node: nodes,
            initializer: inits,
            input: vec![value_info("x", in_dims)],
            output: vec![ValueInfoProto { name: Some(out), ..Default::default() }],
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn import(m: &ModelProto) -> Result<(Graph, Weights)> {
    match import_bytes(&m.encode_to_vec(), "t")? {
        Imported::Float { graph, weights } => Ok((graph, weights)),
        Imported::Int8 { .. } => unreachable!(),
    }
}

fn err(m: &ModelProto) -> String {
    import(m).expect_err("the import must fail").to_string()
}

/// Deterministic pseudo-random values in [-1, 1).
fn values(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    (0..n)
        .map(|_| {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

/// NCHW `[c, h, w]` → HWC.
fn nhwc(x: &[f32], c: usize, hw: usize) -> Vec<f32> {
    (0..hw * c).map(|i| x[(i % c) * hw + i / c]).collect()
}

/// ONNX semantics written out: `[c, h, w]` input, `[m, c/g, kh, kw]` weights, pads [t, l, b, r].
#[allow(clippy::too_many_arguments)]
fn conv_nchw(
    x: &[f32],
    (c, h, w): (usize, usize, usize),
    wt: &[f32],
    (m, kh, kw): (usize, usize, usize),
    group: usize,
    stride: usize,
    pads: [usize; 4],
    bias: &[f32],
) -> (Vec<f32>, usize, usize) {
    let oh = (h + pads[0] + pads[2] - kh) / stride + 1;
    let ow = (w + pads[1] + pads[3] - kw) / stride + 1;
    let (cg, mg) = (c / group, m / group);
    let mut y = vec![0f32; m * oh * ow];
    for o in 0..m {
        for oy in 0..oh {
            for ox in 0..ow {
                let mut acc = bias.get(o).copied().unwrap_or(0.0);
                for i in 0..cg {
                    let ci = (o / mg) * cg + i;
                    for ky in 0..kh {
                        for kx in 0..kw {
                            let (iy, ix) = (
                                (oy * stride + ky) as isize - pads[0] as isize,
                                (ox * stride + kx) as isize - pads[1] as isize,
                            );
                            if iy >= 0 && ix >= 0 && (iy as usize) < h && (ix as usize) < w {
                                acc += x[(ci * h + iy as usize) * w + ix as usize]
                                    * wt[((o * cg + i) * kh + ky) * kw + kx];
                            }
                        }
                    }
                }
                y[(o * oh + oy) * ow + ox] = acc;
            }
        }
    }
    (y, oh, ow)
}

fn close(a: &[f32], b: &[f32]) {
    assert_eq!(a.len(), b.len());
    let d = a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0f32, f32::max);
    assert!(d < 1e-5, "max diff {d}");
}

#[test]
fn conv_kernels_are_transposed_to_the_irs_layouts() {
    // (in channels, out channels, group, stride, pads, IR kind)
    for (c, m, group, stride, pads, kind) in [
        (3, 5, 1, 1, [1, 1, 1, 1], "conv2d"),
        (4, 6, 2, 1, [1, 1, 1, 1], "conv2d"),
        (4, 4, 4, 2, [0, 0, 1, 1], "depthwise_conv2d"),
        (3, 2, 1, 2, [0, 0, 0, 0], "conv2d"),
    ] {
        let (h, w, kh, kw) = (6, 8, 3, 3);
        let wt = values(m * c / group * kh * kw, 1);
        let bias = values(m, 2);
        let conv = node(
            "Conv",
            "conv",
            &["x", "w", "b"],
            &[
                ("group", A::I(group as i64)),
                ("strides", A::Is(if stride == 1 { &[1, 1] } else { &[2, 2] })),
                (
                    "pads",
                    A::Is(match pads {
                        [1, 1, 1, 1] => &[1, 1, 1, 1],
                        [0, 0, 1, 1] => &[0, 0, 1, 1],
                        _ => &[0, 0, 0, 0],
                    }),
                ),
            ],
        );
        let inits = vec![
            floats("w", &[m as i64, (c / group) as i64, kh as i64, kw as i64], &wt),
            floats("b", &[m as i64], &bias),
        ];
        let (g, wts) = import(&model(&[-1, c as i64, h as i64, w as i64], vec![conv], inits, 17)).unwrap();
        assert_eq!(g.nodes[1].op.kind(), kind);
        let x = values(c * h * w, 3);
        let (want, oh, ow) = conv_nchw(&x, (c, h, w), &wt, (m, kh, kw), group, stride, pads, &bias);
        let got = mcufit_quant::run_float(&g, &wts, &nhwc(&x, c, h * w)).unwrap();
        close(&got, &nhwc(&want, m, oh * ow));
    }
}

#[test]
fn a_dense_layer_after_a_flatten_reads_the_irs_hwc_order() {
    // x [1, 3, 2, 4] → Flatten → Gemm (transB, alpha, beta) and → MatMul + Add: y = W · x_chw + b.
    let (c, h, w, units) = (3, 2, 4, 5);
    let k = c * h * w;
    let wt = values(units * k, 4);
    let b = values(units, 5);
    let x = values(k, 6);
    let want: Vec<f32> =
        (0..units).map(|u| (0..k).map(|j| wt[u * k + j] * x[j]).sum::<f32>() * 0.5 + 2.0 * b[u]).collect();
    let flat = node("Flatten", "flat", &["x"], &[]);
    let gemm =
        node("Gemm", "fc", &["flat_out", "w", "b"], &[("transB", A::I(1)), ("alpha", A::F(0.5)), ("beta", A::F(2.0))]);
    let inits = vec![floats("w", &[units as i64, k as i64], &wt), floats("b", &[units as i64], &b)];
    let (g, wts) = import(&model(&[1, c as i64, h as i64, w as i64], vec![flat, gemm], inits, 17)).unwrap();
    close(&mcufit_quant::run_float(&g, &wts, &nhwc(&x, c, h * w)).unwrap(), &want);

    // MatMul takes W as [k, units]; the Add of a constant becomes the dense layer's bias.
    let wt_t: Vec<f32> = (0..k * units).map(|i| wt[(i % units) * k + i / units]).collect();
    let want: Vec<f32> = (0..units).map(|u| (0..k).map(|j| wt[u * k + j] * x[j]).sum::<f32>() + b[u]).collect();
    let nodes = vec![
        node("Reshape", "flat", &["x", "shape"], &[]),
        node("MatMul", "mm", &["flat_out", "w"], &[]),
        node("Add", "bias", &["mm_out", "b"], &[]),
    ];
    let inits =
        vec![ints("shape", &[1, -1]), floats("w", &[k as i64, units as i64], &wt_t), floats("b", &[units as i64], &b)];
    let (g, wts) = import(&model(&[1, c as i64, h as i64, w as i64], nodes, inits, 17)).unwrap();
    assert!(matches!(g.nodes.last().unwrap().op, Op::Dense(Dense { bias: true, .. })));
    close(&mcufit_quant::run_float(&g, &wts, &nhwc(&x, c, h * w)).unwrap(), &want);
}

fn conv_model(pads: &'static [i64], stride: &'static [i64], hw: i64) -> ModelProto {
    let conv = node("Conv", "/stem/Conv", &["x", "w"], &[("pads", A::Is(pads)), ("strides", A::Is(stride))]);
    model(&[1, 2, hw, hw], vec![conv], vec![floats("w", &[4, 2, 3, 3], &values(72, 1))], 17)
}

#[test]
fn padding_maps_to_same_or_valid_and_anything_else_names_the_node() {
    let pad_of = |m: &ModelProto| match &import(m).unwrap().0.nodes[1].op {
        Op::Conv2d(c) => c.padding,
        _ => unreachable!(),
    };
    assert_eq!(pad_of(&conv_model(&[1, 1, 1, 1], &[1, 1], 8)), Padding::Same);
    assert_eq!(pad_of(&conv_model(&[0, 0, 1, 1], &[2, 2], 8)), Padding::Same);
    assert_eq!(pad_of(&conv_model(&[1, 1, 1, 1], &[2, 2], 7)), Padding::Same);
    assert_eq!(pad_of(&conv_model(&[0, 0, 0, 0], &[2, 2], 8)), Padding::Valid);
    // PyTorch's padding=1 at stride 2 on an even input pads the top/left: not TensorFlow's 'same'.
    let e = err(&conv_model(&[1, 1, 1, 1], &[2, 2], 8));
    assert!(e.contains("node '/stem/Conv' (Conv)") && e.contains("[0, 0, 1, 1]") && e.contains("ZeroPad2d"), "{e}");
    let e = err(&conv_model(&[2, 2, 2, 2], &[1, 1], 8));
    assert!(e.contains("'/stem/Conv'") && e.contains("neither 'valid'"), "{e}");
    let e = err(&conv_model(&[-1, 0, 0, 0], &[1, 1], 8));
    assert!(e.contains("negative pads"), "{e}");
}

#[test]
fn unsupported_operators_and_attributes_are_named() {
    let x = &[1, 2, 4, 4];
    let e = err(&model(x, vec![node("LeakyRelu", "/act/LeakyRelu", &["x"], &[])], vec![], 17));
    assert!(e.starts_with("unsupported onnx model: node '/act/LeakyRelu' (LeakyRelu)") && e.contains("Relu"), "{e}");
    let clip = node("Clip", "clip", &["x", "lo", "hi"], &[]);
    let e = err(&model(x, vec![clip], vec![floats("lo", &[], &[-1.0]), floats("hi", &[], &[1.0])], 17));
    assert!(e.contains("node 'clip' (Clip)") && e.contains("Clip(-1, 1)"), "{e}");
    let pool = node(
        "AveragePool",
        "avg",
        &["x"],
        &[("kernel_shape", A::Is(&[3, 3])), ("pads", A::Is(&[1, 1, 1, 1])), ("count_include_pad", A::I(1))],
    );
    assert!(err(&model(x, vec![pool], vec![], 17)).contains("count_include_pad"));
    let pool = node(
        "MaxPool",
        "mp",
        &["x"],
        &[("kernel_shape", A::Is(&[2, 2])), ("strides", A::Is(&[2, 2])), ("ceil_mode", A::I(1))],
    );
    import(&model(x, vec![pool.clone()], vec![], 17)).unwrap(); // ceil_mode changes nothing on 4x4
    let e = err(&model(&[1, 2, 5, 5], vec![pool], vec![], 17));
    assert!(e.contains("node 'mp' (MaxPool)") && e.contains("ceil_mode"), "{e}");
    let dil = node("MaxPool", "mp", &["x"], &[("kernel_shape", A::Is(&[2, 2])), ("dilations", A::Is(&[2, 2]))]);
    assert!(err(&model(x, vec![dil], vec![], 17)).contains("dilations"));
    let rs = node("Reshape", "rs", &["x", "s"], &[]);
    let e = err(&model(x, vec![rs], vec![ints("s", &[1, 8, 4])], 17));
    assert!(e.contains("node 'rs' (Reshape)") && e.contains("[1, 8, 4]"), "{e}");
    let sig = node("Sigmoid", "", &["x"], &[]);
    assert!(err(&model(x, vec![sig], vec![], 17)).contains("node #0 (Sigmoid)"));
    let pad = node("Pad", "pad", &["x", "p"], &[("mode", A::S("reflect"))]);
    assert!(err(&model(x, vec![pad], vec![ints("p", &[0, 0, 1, 1, 0, 0, 1, 1])], 17)).contains("reflect"));
    // A Pad that is not read by a Conv.
    let nodes = vec![node("Pad", "pad", &["x", "p"], &[]), node("Relu", "r", &["pad_out"], &[])];
    let e = err(&model(x, nodes, vec![ints("p", &[0, 0, 1, 1, 0, 0, 1, 1])], 17));
    assert!(e.contains("node 'r' (Relu)") && e.contains("Pad"), "{e}");
}

#[test]
fn clip_bounds_come_from_inputs_or_attributes_by_opset() {
    let x = &[1, 2, 4, 4];
    let kinds = |m: &ModelProto| import(m).unwrap().0.nodes[1].op.kind();
    let six = vec![floats("lo", &[], &[0.0]), floats("hi", &[], &[6.0])];
    assert_eq!(kinds(&model(x, vec![node("Clip", "c", &["x", "lo", "hi"], &[])], six, 13)), "relu6");
    assert_eq!(
        kinds(&model(x, vec![node("Clip", "c", &["x", "lo"], &[])], vec![floats("lo", &[], &[0.0])], 13)),
        "relu"
    );
    let attrs = node("Clip", "c", &["x"], &[("min", A::F(0.0)), ("max", A::F(6.0))]);
    assert_eq!(kinds(&model(x, vec![attrs], vec![], 10)), "relu6");
}

#[test]
fn stated_shapes_must_agree_with_the_irs_inference() {
    let mut m = conv_model(&[1, 1, 1, 1], &[1, 1], 8);
    let g = m.graph.as_mut().unwrap();
    g.value_info.push(value_info("/stem/Conv_out", &[1, 4, 8, 8]));
    import(&m).unwrap();
    m.graph.as_mut().unwrap().value_info[0] = value_info("/stem/Conv_out", &[1, 4, 8, 9]);
    let e = err(&m);
    assert!(e.contains("'/stem/Conv_out'") && e.contains("[1, 4, 8, 9]") && e.contains("[1, 4, 8, 8]"), "{e}");
    // A symbolic batch is not compared.
    m.graph.as_mut().unwrap().value_info[0] = value_info("/stem/Conv_out", &[-1, 4, 8, 8]);
    import(&m).unwrap();
}

#[test]
fn malformed_files_give_clear_errors() {
    let good = conv_model(&[1, 1, 1, 1], &[1, 1], 8).encode_to_vec();
    for (bytes, words) in [
        (vec![], "no graph"),
        (b"\xff\xff\xff\xff garbage".to_vec(), "not a readable ONNX protobuf"),
        (good[..good.len() / 2].to_vec(), "not a readable ONNX protobuf"),
        (b"TFL3 not protobuf at all".to_vec(), "onnx"),
    ] {
        let e = import_bytes(&bytes, "t").expect_err("must fail").to_string();
        assert!(e.contains(words), "{e}");
    }
    // A 2^40-element initializer that holds 16 bytes.
    let mut m = conv_model(&[1, 1, 1, 1], &[1, 1], 8);
    m.graph.as_mut().unwrap().initializer.push(floats("huge", &[1 << 40], &[0.0; 4]));
    let e = err(&m);
    assert!(e.contains("initializer 'huge'") && e.contains("1099511627776") && e.contains("holds 16 bytes"), "{e}");
    // An input with a 2^40 x 2^40 image.
    let e = err(&model(&[1, 1, 1 << 40, 1 << 40], vec![node("Relu", "r", &["x"], &[])], vec![], 17));
    assert!(e.contains("too large"), "{e}");
    // A node reading a value nothing produces.
    let e = err(&model(&[1, 2, 4, 4], vec![node("Relu", "r", &["nope"], &[])], vec![], 17));
    assert!(e.contains("node 'r' (Relu)") && e.contains("'nope'") && e.contains("topological"), "{e}");
    // Two graph inputs.
    let mut m = model(&[1, 2, 4, 4], vec![node("Relu", "r", &["x"], &[])], vec![], 17);
    m.graph.as_mut().unwrap().input.push(value_info("y", &[1, 2, 4, 4]));
    assert!(err(&m).contains("takes 2 inputs"));
    // No opset.
    let mut m = model(&[1, 2, 4, 4], vec![node("Relu", "r", &["x"], &[])], vec![], 17);
    m.opset_import.clear();
    assert!(err(&m).contains("opset_import"));
}

#[test]
fn names_are_identifier_safe_and_unique() {
    assert_eq!(sanitize("/layer1/layer1.0/conv1/Conv"), "layer1_layer1_0_conv1_Conv");
    assert_eq!(sanitize("//"), "");
    let nodes = vec![node("Relu", "/a/Relu", &["x"], &[]), node("Relu", "/a.Relu", &["/a/Relu_out"], &[])];
    let (g, _) = import(&model(&[1, 2, 4, 4], nodes, vec![], 17)).unwrap();
    let names: Vec<&str> = g.nodes.iter().map(|n| n.name.as_str()).collect();
    assert_eq!(names, ["input", "a_Relu", "a_Relu_2"]);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]
    /// Arbitrary bytes, and a valid model with bytes flipped, never panic.
    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512), flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8)) {
        let _ = import_bytes(&bytes, "t");
        let mut good = conv_model(&[1, 1, 1, 1], &[1, 1], 8).encode_to_vec();
        let n = good.len();
        for (i, b) in flips {
            good[i % n] ^= b;
        }
        let _ = import_bytes(&good, "t");
    }
}

#[test]
fn constant_chains_fold_and_unfoldable_constant_ops_are_named() {
    let x = &[1, 2, 4, 4];
    let w = floats("w", &[4, 2, 3, 3], &values(72, 1));
    // pads = Concat(zeros(4), Mul([0, 0, 1, 1], 1)) as int64: a constant Pad of the bottom/right.
    let zeros = node("ConstantOfShape", "zeros", &["four"], &[]);
    let cast = node("Cast", "cast", &["zeros_out"], &[("to", A::I(7))]);
    let mul = node("Mul", "mul", &["br", "one"], &[]);
    let cat = node("Concat", "pads", &["cast_out", "mul_out"], &[("axis", A::I(0))]);
    let pad = node("Pad", "pad", &["x", "pads_out"], &[]);
    let conv = node("Conv", "conv", &["pad_out", "w"], &[("strides", A::Is(&[2, 2]))]);
    let inits = vec![ints("four", &[4]), ints("br", &[0, 0, 1, 1]), ints("one", &[1]), w.clone()];
    let nodes = vec![zeros, cast, mul, cat, pad, conv];
    let (g, _) = import(&model(x, nodes.clone(), inits.clone(), 17)).unwrap();
    assert!(matches!(&g.nodes[1].op, Op::Conv2d(c) if c.padding == Padding::Same), "{:?}", g.nodes[1].op);
    // The same chain through an op mcufit does not fold on constants.
    let mut bad = nodes;
    bad[2] = node("Max", "mul", &["br", "one"], &[]);
    let e = err(&model(x, bad, inits, 17));
    assert!(e.contains("node 'mul' (Max)") && e.contains("all its inputs are constants") && e.contains("Slice"), "{e}");
    // Shape arithmetic on an activation is not folded.
    let e = err(&model(x, vec![node("Mul", "m", &["x", "x"], &[])], vec![], 17));
    assert!(e.contains("node 'm' (Mul)") && e.contains("constants only"), "{e}");
}

#[test]
fn transpose_and_reduce_mean_import_only_as_flatten_and_global_pool() {
    let x = &[1, 2, 4, 4];
    let tr = |perm: &'static [i64]| node("Transpose", "t", &["x"], &[("perm", A::Is(perm))]);
    // NCHW → NHWC, then a flatten: the IR's own order, no weight permutation.
    let nodes = vec![tr(&[0, 2, 3, 1]), node("Reshape", "r", &["t_out", "s"], &[])];
    let (g, _) = import(&model(x, nodes, vec![ints("s", &[1, -1])], 17)).unwrap();
    assert_eq!(g.nodes.iter().map(|n| n.op.kind()).collect::<Vec<_>>(), ["input", "flatten"]);
    // Read by anything but a flatten, or another permutation: refused, naming the node.
    let e = err(&model(x, vec![tr(&[0, 2, 3, 1]), node("Relu", "r", &["t_out"], &[])], vec![], 17));
    assert!(e.contains("node 'r' (Relu)") && e.contains("[0, 2, 3, 1]"), "{e}");
    let e = err(&model(x, vec![tr(&[0, 1, 3, 2])], vec![], 17));
    assert!(e.contains("node 't' (Transpose)") && e.contains("[0, 1, 3, 2]"), "{e}");
    // ReduceMean over H and W, keepdims 1 or 0: a global average pool.
    let cases: [(&'static [i64], i64); 2] = [(&[2, 3], 1), (&[-1, -2], 0)];
    for (axes, keep) in cases {
        let rm = node("ReduceMean", "m", &["x"], &[("axes", A::Is(axes)), ("keepdims", A::I(keep))]);
        let (g, wts) = import(&model(x, vec![rm], vec![], 17)).unwrap();
        assert_eq!(g.nodes[1].op.kind(), "global_avg_pool");
        let xs = values(32, 7);
        let want: Vec<f32> = (0..2).map(|c| xs[c * 16..(c + 1) * 16].iter().sum::<f32>() / 16.0).collect();
        close(&mcufit_quant::run_float(&g, &wts, &nhwc(&xs, 2, 16)).unwrap(), &want);
    }
    // Opset 18 takes the axes as an input.
    let rm = node("ReduceMean", "m", &["x", "axes"], &[("keepdims", A::I(0))]);
    import(&model(x, vec![rm], vec![ints("axes", &[2, 3])], 18)).unwrap();
    let rm = node("ReduceMean", "m", &["x"], &[("axes", A::Is(&[1]))]);
    let e = err(&model(x, vec![rm], vec![], 17));
    assert!(e.contains("node 'm' (ReduceMean)") && e.contains("[2, 3]"), "{e}");
}
