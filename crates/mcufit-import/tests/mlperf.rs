//! The MLPerf Tiny reference models (`../shared/models/mlperf-tiny`): the int8 files import and the
//! bit-exact reference computes exactly what TFLite Micro computes on the original file; the float
//! files import with their weights (KWS: int8 weight-only, dequantized) and match LiteRT.
//!
//! Skips with a loud message when the models or the `.venv` TFLite Micro are absent; under CI
//! (`CI` set) a skip is a failure.

mod common;

use std::path::PathBuf;
use std::process::Command;

use common::read_f32;
use mcufit_export::verify::{self, Runtime, Tools};
use mcufit_import::{import_file, Imported};
use mcufit_quant::rng::SplitMix64;
use mcufit_quant::run_float;

fn skip(test: &str, why: &str) {
    assert!(std::env::var_os("CI").is_none(), "{test}: {why} (a skip is a failure under CI)");
    let bar = "=".repeat(78);
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "\n{bar}\nSKIPPING {test}: {why}\n{bar}\n");
}

/// `$MCUFIT_MODELS`, else `shared/models/mlperf-tiny` beside the repository, else `/work/shared/...`.
fn models(test: &str) -> Option<PathBuf> {
    let mut roots = Vec::new();
    if let Some(r) = std::env::var_os("MCUFIT_MODELS") {
        roots.push(PathBuf::from(r));
    }
    roots.push(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/models/mlperf-tiny"));
    roots.push(PathBuf::from("/work/shared/models/mlperf-tiny"));
    let found = roots.into_iter().find(|p| p.join("kws_ref_model.tflite").is_file());
    if found.is_none() {
        skip(test, "the MLPerf Tiny models are not in ../shared/models/mlperf-tiny (set MCUFIT_MODELS)");
    }
    found
}

fn python(test: &str) -> bool {
    match verify::tools_available(Tools::Python) {
        Ok(()) => true,
        Err(e) => {
            skip(test, &e.to_string());
            false
        }
    }
}

fn tmp(tag: &str) -> PathBuf {
    std::env::temp_dir().join(format!("mcufit-import-mlperf-{tag}-{}", std::process::id()))
}

#[test]
fn int8_reference_models_match_tflite_micro_bit_for_bit() {
    let test = "int8_reference_models_match_tflite_micro_bit_for_bit";
    let Some(dir) = models(test) else { return };
    if !python(test) {
        return;
    }
    for (file, ops, classes) in [("kws_ref_model.tflite", 13, 12), ("pretrainedResnet_quant.tflite", 16, 10)] {
        let path = dir.join(file);
        let (graph, q) = match import_file(&path).unwrap() {
            Imported::Int8 { graph, model } => (graph, model),
            Imported::Float { .. } => panic!("{file} imported as float"),
        };
        // Every TFLite operator is one kernel, except the RESHAPE folded into the average pool.
        assert_eq!(q.ops.len(), ops, "{file}");
        assert_eq!(graph.num_outputs(), classes);
        let mut r = SplitMix64::new(7);
        let n = q.input().elements();
        let mut xs: Vec<Vec<i8>> = (0..24).map(|_| (0..n).map(|_| r.i8()).collect()).collect();
        xs.push(vec![q.input().zero_point as i8; n]);
        xs.push(vec![127; n]);
        xs.push(vec![-128; n]);
        let ours = q.run_int8_batch(&xs).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        let tflm = verify::run_tflite(&bytes, &xs, Runtime::Tflm, &tmp(file)).unwrap();
        let _ = std::fs::remove_dir_all(tmp(file));
        assert_eq!(ours, tflm.outputs, "{file}: the int8 reference differs from TFLite Micro on the original file");
        // Not a degenerate agreement: the outputs vary with the input.
        assert!(ours.iter().any(|o| o != &ours[0]), "{file}");
    }
}

/// Runs a float model in LiteRT on float32 inputs; also writes, for every operator with a filter,
/// `w{op index}.bin`: the filter as LiteRT holds it, dequantized `scale * q` when it is int8.
const LITERT_FLOAT: &str = r#"
import sys, os, numpy as np
from ai_edge_litert.interpreter import Interpreter
model, inp, n, out = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
it = Interpreter(model_path=model)
it.allocate_tensors()
i, o = it.get_input_details()[0], it.get_output_details()[0]
x = np.fromfile(inp, dtype=np.float32).reshape(n, -1)
ys = []
for row in x:
    it.set_tensor(i["index"], row.reshape(i["shape"]).astype(np.float32))
    it.invoke()
    ys.append(it.get_tensor(o["index"]).reshape(-1))
np.asarray(ys, dtype=np.float32).tofile(out)
details = {t["index"]: t for t in it.get_tensor_details()}
for op in it._get_ops_details():
    if op["op_name"] not in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED"):
        continue
    t = details[op["inputs"][1]]
    w = it.get_tensor(t["index"])
    q = t["quantization_parameters"]
    if w.dtype == np.int8:
        s = q["scales"].astype(np.float32)
        d = q["quantized_dimension"]
        shape = [1] * w.ndim
        shape[d] = -1
        w = w.astype(np.float32) * (s.reshape(shape) if s.size > 1 else s[0])
    w.astype(np.float32).tofile(os.path.join(os.path.dirname(out), "w%d.bin" % op["index"]))
"#;

#[test]
fn float_reference_models_match_litert() {
    let test = "float_reference_models_match_litert";
    let Some(dir) = models(test) else { return };
    if !python(test) {
        return;
    }
    // Inputs in each model's own range: raw MFCC (the int8 KWS input's float range) and pixels 0..255.
    // The float KWS stores its conv weights int8 without DEQUANTIZE ops, so LiteRT runs those convs
    // with hybrid kernels (activations quantized on the fly): its outputs are an approximation of
    // the float model and are compared loosely; its weights, dequantized, are compared exactly.
    for (file, lo, hi, tolerance) in
        [("kws_ref_model_float32.tflite", -123.0f32, 25.0f32, 0.2f32), ("pretrainedResnet.tflite", 0.0, 255.0, 1e-4)]
    {
        let path = dir.join(file);
        let (graph, weights) = match import_file(&path).unwrap() {
            Imported::Float { graph, weights } => (graph, weights),
            Imported::Int8 { .. } => panic!("{file} imported as int8"),
        };
        weights.check_deployable(&graph).unwrap();
        let n = graph.input_shape().elements();
        let mut r = SplitMix64::new(3);
        let xs: Vec<Vec<f32>> = (0..8).map(|_| (0..n).map(|_| r.uniform(lo, hi)).collect()).collect();
        let work = tmp(file);
        std::fs::create_dir_all(&work).unwrap();
        let (ip, op) = (work.join("in.bin"), work.join("out.bin"));
        std::fs::write(&ip, xs.iter().flatten().flat_map(|v| v.to_le_bytes()).collect::<Vec<u8>>()).unwrap();
        let o = Command::new(verify::python())
            .arg("-c")
            .arg(LITERT_FLOAT)
            .arg(&path)
            .arg(&ip)
            .arg(xs.len().to_string())
            .arg(&op)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let theirs = read_f32(&op);
        // Every kernel, exactly as LiteRT holds it (nodes are named KIND_OPINDEX).
        let mut kernels = 0;
        for node in graph.nodes.iter().filter(|n| weights.kernel(&n.name).is_some()) {
            let index = node.name.rsplit('_').next().unwrap();
            let want = read_f32(&work.join(format!("w{index}.bin")));
            assert_eq!(weights.kernel(&node.name).unwrap().data, want, "{file}: kernel of '{}'", node.name);
            kernels += 1;
        }
        assert!(kernels >= 9, "{file}: {kernels} kernels");
        let _ = std::fs::remove_dir_all(&work);
        let ours: Vec<f32> = xs.iter().flat_map(|x| run_float(&graph, &weights, x).unwrap()).collect();
        assert_eq!(ours.len(), theirs.len(), "{file}");
        let worst = ours.iter().zip(&theirs).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
        assert!(worst < tolerance, "{file}: softmax outputs differ from LiteRT by up to {worst}");
        eprintln!("{file}: largest softmax difference from LiteRT {worst:e} over {} inputs", xs.len());
    }
}
