//! Real `torch.onnx.export` files (committed under `tests/fixtures/torch/`, made by
//! `tests/fixtures/make_torch_onnx.py` with torch 2.15, opset 17; CI has no torch, so they are files):
//! `F.pad` / `nn.ZeroPad2d` asymmetric padding (a Pad whose pads are computed from constants by
//! ConstantOfShape / Concat / Reshape / Slice / Transpose / Cast), the channels-last flatten
//! `x.permute(0, 2, 3, 1).reshape(n, -1)`, `x.mean((2, 3))` with and without keepdim, and the plain
//! NCHW flatten `x.view(x.size(0), -1)`. Each is imported, run through the float reference
//! (`mcufit_quant::run_float`, NHWC) on the committed inputs, and must match PyTorch's outputs to 1e-4.

mod common;

use std::path::{Path, PathBuf};

use common::{import_onnx, read_f32, to_nhwc};

use mcufit_ir::{Graph, Op, Padding, Weights};

const TOLERANCE: f32 = 1e-4;

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/torch")
}

/// `NAME input=DIMS output=DIMS` lines.
fn manifest() -> Vec<(String, Vec<usize>, Vec<usize>)> {
    let text = std::fs::read_to_string(dir().join("manifest.txt")).expect("manifest.txt");
    let dims = |s: &str| -> Vec<usize> { s.split(',').map(|d| d.parse().expect("dim")).collect() };
    text.lines()
        .map(|line| {
            let p: Vec<&str> = line.split_whitespace().collect();
            let field = |i: usize, key: &str| dims(p[i].strip_prefix(key).expect(key));
            (p[0].to_string(), field(1, "input="), field(2, "output="))
        })
        .collect()
}

fn import(name: &str) -> (Graph, Weights) {
    import_onnx(&dir(), name)
}

#[test]
fn torch_exports_match_pytorchs_outputs() {
    let models = manifest();
    assert_eq!(models.len(), 4, "manifest");
    for (name, input, output) in models {
        let (graph, weights) = import(&name);
        weights.check_deployable(&graph).unwrap_or_else(|e| panic!("{name}: {e}"));
        let xs = read_f32(&dir().join(format!("{name}.input.f32")));
        let ys = read_f32(&dir().join(format!("{name}.output.f32")));
        let (per_in, per_out) = (input.iter().product::<usize>(), output.iter().product::<usize>());
        let n = xs.len() / per_in;
        assert!(n >= 4 && ys.len() == n * per_out, "{name}: {} inputs, {} outputs", xs.len(), ys.len());
        let (mut diff, mut scale) = (0f32, 0f32);
        for i in 0..n {
            let x = to_nhwc(&xs[i * per_in..(i + 1) * per_in], &input);
            let got = mcufit_quant::run_float(&graph, &weights, &x).unwrap_or_else(|e| panic!("{name}: {e}"));
            let want = &ys[i * per_out..(i + 1) * per_out];
            assert_eq!(got.len(), want.len(), "{name}: output size");
            for (a, b) in got.iter().zip(want) {
                diff = diff.max((a - b).abs());
                scale = scale.max(b.abs());
            }
        }
        println!("{name:<28} {:>2} IR nodes  max |diff| {diff:.2e} (max |value| {scale:.2})", graph.nodes.len());
        assert!(diff <= TOLERANCE, "{name}: differs from PyTorch by {diff}");
        assert!(scale > 0.1, "{name}: outputs near zero test nothing");
    }
}

#[test]
fn torch_idioms_import_as_mcufits_own_ops() {
    let kinds = |g: &Graph| g.nodes.iter().map(|n| n.op.kind().to_string()).collect::<Vec<_>>();
    let conv_padding = |g: &Graph| {
        g.nodes
            .iter()
            .filter_map(|n| match &n.op {
                Op::Conv2d(c) => Some(c.padding),
                Op::DepthwiseConv2d(c) => Some(c.padding),
                _ => None,
            })
            .collect::<Vec<_>>()
    };
    // F.pad before a stride-2 conv is TensorFlow's 'same'; x.mean((2, 3)) a global average pool.
    let (g, _) = import("torch_ds_cnn_pad");
    assert_eq!(conv_padding(&g)[0], Padding::Same);
    assert!(kinds(&g).iter().any(|k| k == "global_avg_pool"), "{:?}", kinds(&g));
    // nn.ZeroPad2d((0, 1, 0, 1)) + padding=0 at stride 2 is 'same' too.
    let (g, _) = import("torch_resnet_pad");
    assert!(conv_padding(&g).contains(&Padding::Same));
    assert!(kinds(&g).iter().any(|k| k == "global_avg_pool"), "{:?}", kinds(&g));
    // permute + reshape is one flatten (the IR's own HWC order), then the dense layer.
    let (g, _) = import("torch_channels_last_flatten");
    assert_eq!(kinds(&g), ["input", "conv2d", "relu", "flatten", "dense"]);
    let (g, _) = import("torch_nchw_flatten");
    assert_eq!(kinds(&g), ["input", "conv2d", "relu", "flatten", "dense"]);
}
