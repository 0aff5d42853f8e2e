//! ONNX import checked against onnxruntime. `tests/fixtures/make_onnx.py` (onnx + onnxruntime, pip)
//! builds a DS-CNN, a ResNet-8 and one small model per supported operator with seeded random weights,
//! and saves onnxruntime's outputs on 100 inputs; here each model is imported and run through the
//! float reference (`mcufit_quant::run_float_all`, NHWC), and must agree to 1e-4.
//!
//! Without a Python that has onnx and onnxruntime (`$MCUFIT_PYTHON`, else the repo's `.venv`; the test
//! runs `scripts/setup-verify-tools.sh onnx` once to install them) the tests print a loud SKIPPING
//! line and pass, except under `CI`, where a skip fails.

mod common;

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use common::{import_onnx, read_f32, to_nhwc};
use mcufit_cost::{CostModel, CostOptions};
use mcufit_import::import_file;
use mcufit_ir::{Graph, Op};

const TOLERANCE: f32 = 1e-4;

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn python() -> PathBuf {
    std::env::var_os("MCUFIT_PYTHON").map(PathBuf::from).unwrap_or_else(|| repo_root().join(".venv/bin/python"))
}

fn has_onnx(py: &Path) -> bool {
    Command::new(py).args(["-c", "import onnx, onnxruntime, numpy"]).output().is_ok_and(|o| o.status.success())
}

/// The fixtures, made once per test binary; `None` after a loud SKIPPING line (a failure under CI).
fn fixtures() -> Option<&'static Path> {
    static DIR: OnceLock<Option<PathBuf>> = OnceLock::new();
    DIR.get_or_init(|| {
        let mut log = String::new();
        if !has_onnx(&python()) {
            let script = repo_root().join("scripts/setup-verify-tools.sh");
            match Command::new("bash").arg(&script).arg("onnx").output() {
                Ok(o) => log = format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr)),
                Err(e) => log = format!("cannot run {}: {e}", script.display()),
            }
        }
        let py = python();
        if !has_onnx(&py) {
            let msg = format!(
                "{} cannot import onnx, onnxruntime and numpy; `bash scripts/setup-verify-tools.sh onnx` installs them \
                 into .venv (or set MCUFIT_PYTHON to a Python that has them)\n{log}",
                py.display()
            );
            if std::env::var_os("CI").is_some() {
                panic!("ONNX import tests cannot run under CI: {msg}");
            }
            let bar = "=".repeat(78);
            let _ = writeln!(std::io::stderr(), "\n{bar}\nSKIPPING the ONNX-vs-onnxruntime tests: {msg}\n{bar}\n");
            return None;
        }
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("onnx-fixtures");
        let _ = std::fs::remove_dir_all(&dir);
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/make_onnx.py");
        let out = Command::new(&py).arg(&script).arg(&dir).arg("100").output().expect("run make_onnx.py");
        assert!(
            out.status.success(),
            "{} failed:\n{}{}",
            script.display(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        Some(dir)
    })
    .as_deref()
}

/// One manifest line: `NAME input=DIMS output=DIMS logits=DIMS|-`.
struct Fixture {
    name: String,
    input: Vec<usize>,
    output: Vec<usize>,
    logits: Option<Vec<usize>>,
}

fn manifest(dir: &Path) -> Vec<Fixture> {
    let text = std::fs::read_to_string(dir.join("manifest.txt")).expect("manifest.txt");
    let dims = |s: &str| -> Vec<usize> { s.split(',').map(|d| d.parse().expect("dim")).collect() };
    text.lines()
        .map(|line| {
            let mut parts = line.split_whitespace();
            let name = parts.next().expect("name").to_string();
            let mut field = |key: &str| parts.next().and_then(|p| p.strip_prefix(key)).expect(key).to_string();
            let (input, output, logits) = (field("input="), field("output="), field("logits="));
            Fixture { name, input: dims(&input), output: dims(&output), logits: (logits != "-").then(|| dims(&logits)) }
        })
        .collect()
}

#[test]
fn every_fixture_matches_onnxruntime_on_100_inputs() {
    let Some(dir) = fixtures() else { return };
    let mut kinds = BTreeSet::new();
    let mut report = Vec::new();
    for f in manifest(dir) {
        let (graph, weights) = import_onnx(dir, &f.name);
        weights.check_deployable(&graph).unwrap_or_else(|e| panic!("{}: {e}", f.name));
        kinds.extend(graph.nodes.iter().map(|n| n.op.kind().trim_end_matches("_1x1")));
        let per_in: usize = f.input.iter().product();
        let per_out: usize = f.output.iter().product();
        let xs = read_f32(&dir.join(format!("{}.input.f32", f.name)));
        let ys = read_f32(&dir.join(format!("{}.output.f32", f.name)));
        let logits = f
            .logits
            .as_ref()
            .map(|d| (d.iter().product::<usize>(), read_f32(&dir.join(format!("{}.logits.f32", f.name)))));
        let n = xs.len() / per_in;
        assert_eq!(n, 100, "{}: inputs", f.name);
        assert_eq!(ys.len(), n * per_out, "{}: outputs", f.name);
        let (mut diff, mut diff_logits, mut scale, mut scale_logits) = (0f32, 0f32, 0f32, 0f32);
        for i in 0..n {
            let x = to_nhwc(&xs[i * per_in..(i + 1) * per_in], &f.input);
            let all = mcufit_quant::run_float_all(&graph, &weights, &x).unwrap_or_else(|e| panic!("{}: {e}", f.name));
            let want = to_nhwc(&ys[i * per_out..(i + 1) * per_out], &f.output);
            let got = all.last().expect("output");
            assert_eq!(got.len(), want.len(), "{}: output size", f.name);
            for (a, b) in got.iter().zip(&want) {
                diff = diff.max((a - b).abs());
                scale = scale.max(b.abs());
            }
            if let Some((per, l)) = &logits {
                // the logits are the softmax's input
                let out = graph.node(graph.output());
                assert!(matches!(out.op, Op::Softmax), "{}: ends in {}", f.name, out.op.kind());
                let got = &all[out.inputs[0]];
                for (a, b) in got.iter().zip(&l[i * per..(i + 1) * per]) {
                    diff_logits = diff_logits.max((a - b).abs());
                    scale_logits = scale_logits.max(b.abs());
                }
            }
        }
        report.push(format!(
            "{:<24} {:>3} IR nodes  max |diff| output {diff:.2e} (max |value| {scale:.2})  logits {}",
            f.name,
            graph.nodes.len(),
            if logits.is_some() { format!("{diff_logits:.2e} (max |value| {scale_logits:.2})") } else { "-".into() }
        ));
        assert!(
            diff <= TOLERANCE && diff_logits <= TOLERANCE,
            "{}: differs from onnxruntime by {diff} / {diff_logits}",
            f.name
        );
        assert!(scale > 0.1 && (logits.is_none() || scale_logits > 1.0), "{}: outputs near zero test nothing", f.name);
    }
    println!("ONNX import vs onnxruntime, 100 inputs per model:\n{}", report.join("\n"));
    // Every IR op an ONNX model can map to came out of some fixture.
    for kind in [
        "input",
        "conv2d",
        "depthwise_conv2d",
        "dense",
        "batch_norm",
        "relu",
        "relu6",
        "max_pool2d",
        "avg_pool2d",
        "global_avg_pool",
        "add",
        "concat",
        "flatten",
        "softmax",
    ] {
        assert!(kinds.contains(kind), "no fixture imports to {kind}: {kinds:?}");
    }
}

#[test]
fn ds_cnn_and_resnet_8_cost_exactly_what_the_zoo_models_cost() {
    let Some(dir) = fixtures() else { return };
    for (file, zoo) in [("ds_cnn", mcufit_ir::zoo::ds_cnn()), ("resnet_8", mcufit_ir::zoo::resnet_8())] {
        let (graph, _) = import_onnx(dir, file);
        let zoo = zoo.unwrap();
        let usage = |g: &Graph| {
            let m = CostModel::new(g, CostOptions::default()).unwrap();
            let u = m.usage(&m.sizes(), None);
            (u.params, u.model_bytes, u.macs, u.peak_memory)
        };
        let (ours, theirs) = (usage(&graph), usage(&zoo));
        println!(
            "{file}: params {} model bytes {} MACs {} peak {} B (zoo:{}: {theirs:?})",
            ours.0, ours.1, ours.2, ours.3, zoo.name
        );
        assert_eq!(ours, theirs, "{file} vs zoo:{}", zoo.name);
        // Same kernels in the same order, at the same shapes.
        let kernels = |g: &Graph| -> Vec<(String, Vec<usize>)> {
            let shapes = g.shapes().unwrap();
            g.nodes
                .iter()
                .filter_map(|n| {
                    let k = n.inputs.first().and_then(|&i| n.op.kernel_shape(shapes[i]))?;
                    Some((n.op.kind().to_string(), k))
                })
                .collect()
        };
        assert_eq!(kernels(&graph), kernels(&zoo), "{file}");
    }
}

#[test]
fn damaged_files_are_errors_not_panics() {
    let Some(dir) = fixtures() else { return };
    let bytes = std::fs::read(dir.join("ds_cnn.onnx")).unwrap();
    let tmp = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("onnx-damaged");
    std::fs::create_dir_all(&tmp).unwrap();
    // Every prefix length at 97 cut points, and the file minus its last byte.
    let cuts: Vec<usize> = (0..97).map(|i| i * bytes.len() / 97).chain([bytes.len() - 1]).collect();
    for cut in cuts {
        let path = tmp.join(format!("cut{cut}.onnx"));
        std::fs::write(&path, &bytes[..cut]).unwrap();
        let e = import_file(&path).err().unwrap_or_else(|| panic!("a {cut}-byte prefix imported"));
        assert!(e.to_string().contains("onnx"), "{e}");
    }
}
