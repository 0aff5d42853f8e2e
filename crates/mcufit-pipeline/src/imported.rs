//! Models from other tools (`.tflite`, `.onnx`, read by `mcufit-import`) wherever a MODEL is taken.
//!
//! - **int8** `.tflite` (a deployed model): `analyze` (its graph), `eval --data` (the bit-exact int8
//!   reference on the data's *raw* features, quantized with the model's own input scale and zero
//!   point), `export --format c|tflite [--verify]` (no quantization: the file's own int8 model).
//! - **float** (`.tflite`, `.onnx`): `analyze`, and `train` / `compress` / `fit` start from its
//!   weights as a trained base ([`load_base_for_data`]).
//!
//! **Raw features** ([`raw_features`]) are what a model trained outside mcufit takes: image pixels
//! 0..=255 and un-standardized MFCC. mcufit's data sets encode samples differently
//! ([`InputEncoding`]: pixels as `(p - 128) / 128`, MFCC standardized per coefficient on the
//! training split), so an int8 model is fed the decoded raw features, and a float model gets an
//! exact **input adapter** in front ([`adapt_float`]): for images a 1x1 depthwise conv computing
//! `x / scale + zero_point` per channel; for speech a reshape that puts the 10 coefficients on the
//! channel axis, a 1x1 depthwise conv computing `x * std[k] + mean[k]`, and the reshape back. The
//! adapter's channel groups are fixed (never pruned); it costs 20 parameters and one 490-byte
//! tensor on the KWS input.
//!
//! **Class order**: a model file does not carry its class names. When `<model>.labels.txt` lies
//! beside the file (one name per line, in output order) the outputs are mapped to the data's
//! classes by name (int8: predictions are renumbered; float: the classifier's rows are permuted
//! into the data's order); without it the data's order is assumed, and said.

use std::path::{Path, PathBuf};

use mcufit_data::{Dataset, InputEncoding, LoadOptions, Splits};
use mcufit_ir::{DepthwiseConv2d, Graph, Node, NodeWeights, Op, Padding, Shape, TensorF32, Weights};
use mcufit_quant::QuantizedModel;
use mcufit_train::{default_device, Network};

pub use mcufit_import::{is_import_path, Imported};

use crate::error::{Context, PipelineError, Result};

/// An imported model file, its class names (from `<model>.labels.txt`) and where they came from.
#[derive(Debug, Clone)]
pub struct ImportedModel {
    pub path: PathBuf,
    pub imported: Imported,
    /// Class names in output order, when `labels_path` exists.
    pub labels: Option<Vec<String>>,
    pub labels_path: PathBuf,
}

impl ImportedModel {
    pub fn graph(&self) -> &Graph {
        self.imported.graph()
    }
    /// The int8 model, or an error saying what an int8 model is needed for.
    pub fn int8(&self, what: &str) -> Result<(&Graph, &QuantizedModel)> {
        match &self.imported {
            Imported::Int8 { graph, model } => Ok((graph, model)),
            Imported::Float { .. } => Err(PipelineError::Config(format!(
                "{} is a float model; {what} takes an int8 (deployed) model. Start from the float model with \
                 `mcufit compress` or `mcufit fit` (which quantize and export it), or give the int8 .tflite",
                self.path.display()
            ))),
        }
    }
}

/// `<dir>/<stem>.labels.txt` for `<dir>/<stem>.<ext>`.
pub fn labels_path(model: &Path) -> PathBuf {
    let stem = model.file_stem().map(|s| s.to_string_lossy().to_string()).unwrap_or_default();
    model.with_file_name(format!("{stem}.labels.txt"))
}

/// Reads a `.tflite` / `.onnx` model and its labels file, if any; refuses one no MCU can hold.
pub fn load_imported(path: &Path) -> Result<ImportedModel> {
    let imported = mcufit_import::import_file(path).map_err(|e| PipelineError::Context {
        context: format!("cannot import {}", path.display()),
        inner: Box::new(PipelineError::Config(e.to_string())),
    })?;
    crate::size::check_mcu(imported.graph())?;
    let lp = labels_path(path);
    let labels = match std::fs::read_to_string(&lp) {
        Ok(text) => Some(text.lines().map(str::trim).filter(|l| !l.is_empty()).map(str::to_string).collect::<Vec<_>>()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(PipelineError::io(&lp, e)),
    };
    if let Some(l) = &labels {
        let outputs = imported.graph().num_outputs();
        if l.len() != outputs {
            return Err(PipelineError::File {
                path: lp.display().to_string(),
                msg: format!("{} class names for a model with {outputs} outputs", l.len()),
            });
        }
    }
    Ok(ImportedModel { path: path.to_path_buf(), imported, labels, labels_path: lp })
}

/// For every model output, the data class it is: by name through the labels file, else the data's
/// own order. Returns the map and one note saying which.
pub fn class_map(m: &ImportedModel, data: &Dataset) -> Result<(Vec<usize>, String)> {
    let names = data.class_names();
    let outputs = m.graph().num_outputs();
    if names.len() != outputs {
        return Err(PipelineError::Config(format!(
            "the data has {} classes but {} has {outputs} outputs",
            names.len(),
            m.path.display()
        )));
    }
    let Some(labels) = &m.labels else {
        return Ok((
            (0..outputs).collect(),
            format!(
                "no {}: the model's outputs are taken to be the data's classes in the data's order ({})",
                m.labels_path.display(),
                names.join(", ")
            ),
        ));
    };
    let map = labels
        .iter()
        .map(|l| {
            names.iter().position(|n| n == l).ok_or_else(|| {
                PipelineError::Config(format!(
                    "{} names class '{l}', which the data does not have (its classes: {})",
                    m.labels_path.display(),
                    names.join(", ")
                ))
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let identity = map.iter().enumerate().all(|(i, &c)| i == c);
    let note = if identity {
        format!("model outputs are in the data's class order ({})", m.labels_path.display())
    } else {
        format!("model outputs mapped to the data's classes by name from {}", m.labels_path.display())
    };
    Ok((map, note))
}

/// Decodes `x`, one sample of a data set with encoding `enc`, to the raw features in place: image
/// bytes `p = x / scale + zero_point` (0..=255), MFCC `x * std[k] + mean[k]` (coefficient `k` =
/// index mod the coefficient count).
pub fn raw_features(enc: &InputEncoding, x: &mut [f32]) {
    match enc {
        InputEncoding::Pixels { scale, zero_point } => {
            for v in x.iter_mut() {
                *v = *v / scale + *zero_point as f32;
            }
        }
        InputEncoding::Features { mean, std } => {
            let k = mean.len().max(1);
            for (j, v) in x.iter_mut().enumerate() {
                *v = *v * std[j % k] + mean[j % k];
            }
        }
    }
}

/// One line describing the raw features of `enc`.
pub fn raw_note(enc: &InputEncoding) -> String {
    match enc {
        InputEncoding::Pixels { .. } => "input: the raw pixel values 0..255".into(),
        InputEncoding::Features { .. } => {
            "input: the raw MFCC (mcufit-data's per-coefficient standardization undone)".into()
        }
    }
}

/// The float model made to take the data's encoding and class order: the input adapter (see the
/// module docs) in front and the classifier rows permuted so that output `c` is data class `c`.
pub fn adapt_float(
    graph: &Graph,
    weights: &Weights,
    enc: &InputEncoding,
    class_of_output: &[usize],
) -> Result<(Graph, Weights)> {
    let input = graph.input_shape();
    let mut nodes = vec![graph.nodes[0].clone()];
    let mut w = Weights::default();
    let dw = |nodes: &mut Vec<Node>, w: &mut Weights, x: usize, scale: Vec<f32>, shift: Vec<f32>| {
        let c = scale.len();
        let name = "input_adapter".to_string();
        nodes.push(Node {
            name: name.clone(),
            op: Op::DepthwiseConv2d(DepthwiseConv2d {
                kernel: [1, 1],
                stride: [1, 1],
                padding: Padding::Valid,
                bias: true,
            }),
            inputs: vec![x],
        });
        let kernel = TensorF32 { shape: vec![1, 1, 1, c], data: scale };
        w.nodes.insert(name, NodeWeights { kernel: Some(kernel), bias: Some(shift), bn: None });
    };
    match enc {
        InputEncoding::Pixels { scale, zero_point } => {
            let c = input.c;
            dw(&mut nodes, &mut w, 0, vec![1.0 / scale; c], vec![*zero_point as f32; c]);
        }
        InputEncoding::Features { mean, std } => {
            if input.c != 1 || input.w != mean.len() {
                return Err(PipelineError::Config(format!(
                    "model '{}' takes {input}; the data's features are {} coefficients wide with 1 channel",
                    graph.name,
                    mean.len()
                )));
            }
            let across = Shape::new(input.h, 1, input.w);
            nodes.push(Node {
                name: "input_adapter/to_channels".into(),
                op: Op::Reshape { shape: across },
                inputs: vec![0],
            });
            dw(&mut nodes, &mut w, 1, std.clone(), mean.clone());
            nodes.push(Node { name: "input_adapter/back".into(), op: Op::Reshape { shape: input }, inputs: vec![2] });
        }
    }
    let shift = nodes.len() - 1;
    let last = nodes.len() - 1;
    for n in &graph.nodes[1..] {
        if nodes.iter().any(|m| m.name == n.name) {
            return Err(PipelineError::Config(format!("model '{}' already has a node '{}'", graph.name, n.name)));
        }
        let inputs = n.inputs.iter().map(|&i| if i == 0 { last } else { i + shift }).collect();
        nodes.push(Node { name: n.name.clone(), op: n.op.clone(), inputs });
    }
    for (k, v) in &weights.nodes {
        w.nodes.insert(k.clone(), v.clone());
    }
    let adapted = Graph::new(&graph.name, nodes)?;
    permute_classes(&adapted, &mut w, class_of_output)?;
    w.check(&adapted)?;
    Ok((adapted, w))
}

/// Reorders the classifier (the dense layer feeding the output, through a softmax if any) so that
/// output `class_of_output[j]` is what output `j` was.
fn permute_classes(graph: &Graph, w: &mut Weights, class_of_output: &[usize]) -> Result<()> {
    if class_of_output.iter().enumerate().all(|(i, &c)| i == c) {
        return Ok(());
    }
    let mut id = graph.output();
    if matches!(graph.nodes[id].op, Op::Softmax) {
        id = graph.nodes[id].inputs[0];
    }
    let name = graph.nodes[id].name.clone();
    let (Op::Dense(_), Some(nw)) = (&graph.nodes[id].op, w.nodes.get_mut(&name)) else {
        return Err(PipelineError::Config(format!(
            "the classes of model '{}' must be reordered to the data's, but its output is not a dense layer (+ softmax)",
            graph.name
        )));
    };
    let k = nw.kernel.as_mut().ok_or_else(|| PipelineError::Config(format!("'{name}' has no kernel")))?;
    let n_in = k.shape[1];
    let mut data = vec![0f32; k.data.len()];
    for (j, &c) in class_of_output.iter().enumerate() {
        data[c * n_in..(c + 1) * n_in].copy_from_slice(&k.data[j * n_in..(j + 1) * n_in]);
    }
    k.data = data;
    if let Some(b) = nw.bias.as_mut() {
        let mut nb = vec![0f32; b.len()];
        for (j, &c) in class_of_output.iter().enumerate() {
            nb[c] = b[j];
        }
        *b = nb;
    }
    Ok(())
}

/// A float import made ready to train on `spec`: the adapted graph and the network with the
/// file's weights, the splits, and the notes to say once.
pub fn float_base_for_data(
    m: &ImportedModel,
    spec: &str,
    opts: &LoadOptions,
) -> Result<(Graph, Splits, Vec<String>, Network)> {
    let Imported::Float { graph, weights } = &m.imported else {
        return Err(PipelineError::Config(format!(
            "{} is an int8 (deployed) model: analyze, eval and export take it; train, compress and fit need \
             the float model (a float .tflite or an .onnx)",
            m.path.display()
        )));
    };
    let splits = crate::data::load_with(graph, spec, opts)?;
    let (map, class_note) = class_map(m, &splits.train)?;
    let enc = splits.train.input_encoding();
    let (g, w) = adapt_float(graph, weights, enc, &map)?;
    let net = Network::from_weights(&g, &w, &default_device())
        .context(|| format!("cannot build a network from {}", m.path.display()))?;
    let notes = vec![
        format!("{}: imported float model with its trained weights (the starting point)", m.path.display()),
        class_note,
        format!(
            "an input adapter maps the data's encoding to the {} the model was trained on (20 parameters or fewer, never pruned)",
            match enc {
                InputEncoding::Pixels { .. } => "raw pixel values 0..255",
                InputEncoding::Features { .. } => "raw (un-standardized) MFCC",
            }
        ),
    ];
    Ok((g, splits, notes, net))
}

#[cfg(test)]
mod tests {
    use super::*;
    use mcufit_ir::GraphBuilder;
    use mcufit_quant::rng::SplitMix64;
    use mcufit_quant::{random_weights, run_float};

    fn net(input: Shape) -> (Graph, Weights) {
        let mut b = GraphBuilder::new("n", input);
        let c = b.conv(0, 4, 3, 1, Padding::Same);
        let c = b.relu(c);
        let f = b.add(Op::Flatten, &[c]);
        let d = b.dense(f, 3);
        b.add(Op::Softmax, &[d]);
        let g = b.build().unwrap();
        let w = random_weights(&g, 9).unwrap();
        (g, w)
    }

    /// The adapted model on an encoded sample computes what the file's model computes on the raw
    /// sample, with its outputs moved to the data's class order.
    fn check(enc: InputEncoding, input: Shape) {
        let (g, w) = net(input);
        let map = [2usize, 0, 1];
        let (ag, aw) = adapt_float(&g, &w, &enc, &map).unwrap();
        aw.check_deployable(&ag).unwrap();
        let mut r = SplitMix64::new(4);
        for _ in 0..5 {
            let x: Vec<f32> = (0..input.elements()).map(|_| r.uniform(-2.0, 2.0)).collect();
            let mut raw = x.clone();
            raw_features(&enc, &mut raw);
            let want = run_float(&g, &w, &raw).unwrap();
            let got = run_float(&ag, &aw, &x).unwrap();
            for (j, &c) in map.iter().enumerate() {
                assert!((got[c] - want[j]).abs() < 1e-5, "class {c} (output {j}): {} vs {}", got[c], want[j]);
            }
        }
    }

    #[test]
    fn the_input_adapter_and_class_order_are_exact() {
        let mean = vec![1.5, -20.0, 3.0, 0.25];
        let std = vec![2.0, 7.5, 0.5, 1.0];
        check(InputEncoding::Features { mean, std }, Shape::new(6, 4, 1));
        check(InputEncoding::PIXELS, Shape::new(5, 5, 3));
        // Decoding pixels is exact: (p - 128) / 128 → p.
        let mut x = vec![-1.0, 0.0, 127.0 / 128.0];
        raw_features(&InputEncoding::PIXELS, &mut x);
        assert_eq!(x, vec![0.0, 128.0, 255.0]);
    }

    #[test]
    fn feature_width_must_match_the_model() {
        let (g, w) = net(Shape::new(6, 5, 1));
        let enc = InputEncoding::Features { mean: vec![0.0; 4], std: vec![1.0; 4] };
        let e = adapt_float(&g, &w, &enc, &[0, 1, 2]).unwrap_err().to_string();
        assert!(e.contains("4 coefficients"), "{e}");
    }
}
