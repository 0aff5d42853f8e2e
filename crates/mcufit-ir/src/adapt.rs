//! Fitting a model's ends to a data set: the classifier's class count and the input's channel
//! count. Used when a zoo model (or a user's untrained model file) meets data it was not built for.

use std::fmt;

use crate::error::{IrError, Result};
use crate::graph::{Graph, NodeId};
use crate::op::Op;
use crate::zoo;

/// What [`adapt_to_data`] changed. Its `Display` is one sentence, e.g.
/// `zoo:mnist-ds adapted: 10 → 34 classes, input channels 1 → 3`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Adaptation {
    /// How the model is named in the sentence: `zoo:NAME` when the graph was exactly that zoo
    /// model, else `model 'NAME'`. A caller may overwrite it (e.g. with the path it loaded).
    pub model: String,
    /// Classifier outputs `(before, after)`, when they changed.
    pub classes: Option<(usize, usize)>,
    /// Input channels `(before, after)`, when they changed.
    pub input_channels: Option<(usize, usize)>,
    /// Name of the dense layer whose units were set to the class count.
    pub classifier: String,
}

impl fmt::Display for Adaptation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} adapted: ", self.model)?;
        let mut parts = Vec::new();
        if let Some((a, b)) = self.classes {
            parts.push(format!("{a} → {b} classes"));
        }
        if let Some((a, b)) = self.input_channels {
            parts.push(format!("input channels {a} → {b}"));
        }
        write!(f, "{}", parts.join(", "))
    }
}

/// The dense classifier of `graph`: the `dense` node that is the output, or that feeds the
/// output `softmax` and nothing else. The error names the layer that is in the way.
pub fn classifier(graph: &Graph) -> Result<NodeId> {
    let out = graph.output();
    let node = graph.node(out);
    let dense = match node.op {
        Op::Dense(_) => return Ok(out),
        Op::Softmax => node.inputs[0],
        _ => {
            return Err(IrError::node(
                &node.name,
                format!(
                    "the model output is a {}, not a dense classifier (dense → softmax), so its class count \
                     cannot be changed; end the model with a dense layer and a softmax",
                    node.op.kind()
                ),
            ))
        }
    };
    let d = graph.node(dense);
    if !matches!(d.op, Op::Dense(_)) {
        return Err(IrError::node(
            &d.name,
            format!(
                "the softmax '{}' reads a {}, not a dense classifier, so the class count cannot be changed; \
                 put a dense layer right before the softmax",
                node.name,
                d.op.kind()
            ),
        ));
    }
    if graph.consumers()[dense].len() > 1 {
        return Err(IrError::node(
            &d.name,
            "the classifier dense layer also feeds other layers, so its units cannot be changed on their own",
        ));
    }
    Ok(dense)
}

/// Returns `graph` with its classifier (see [`classifier`]) resized to `num_classes` outputs and its
/// input set to `input_channels` channels (the stem's input channels follow by shape inference),
/// plus a note of what changed; the note is `None` (and the graph an unchanged copy) when the model
/// already has that many classes and channels.
///
/// Fails, naming the layer, when the class count must change but the output is not a dense
/// classifier, or when the new shapes do not infer (e.g. a grouped stem conv or a `reshape` that
/// fixes the element count). Weights are not involved: the graph is an architecture, so a
/// trained model's weights no longer fit an adapted graph.
pub fn adapt_to_data(graph: &Graph, num_classes: usize, input_channels: usize) -> Result<(Graph, Option<Adaptation>)> {
    if num_classes == 0 || input_channels == 0 {
        return Err(IrError::Graph(format!(
            "cannot adapt '{}' to {num_classes} classes and {input_channels} input channels: both must be positive",
            graph.name
        )));
    }
    let mut g = graph.clone();
    let before_classes = graph.num_outputs();
    let before_channels = graph.input_shape().c;
    let classes = (before_classes != num_classes).then_some((before_classes, num_classes));
    let input = (before_channels != input_channels).then_some((before_channels, input_channels));
    if classes.is_none() && input.is_none() {
        return Ok((g, None));
    }
    let mut classifier_name = String::new();
    if classes.is_some() {
        let id = classifier(graph)?;
        if let Op::Dense(d) = &mut g.nodes[id].op {
            d.units = num_classes;
        }
        classifier_name = g.nodes[id].name.clone();
    }
    if input.is_some() {
        let id = g.input();
        if let Op::Input { shape } = &mut g.nodes[id].op {
            shape.c = input_channels;
        }
    }
    g.validate().map_err(|e| match e {
        IrError::Node { node, msg } => IrError::Node {
            node,
            msg: format!(
                "after adapting '{}' to {num_classes} classes and {input_channels} input channels: {msg}",
                graph.name
            ),
        },
        other => other,
    })?;
    let model = match zoo::get(&graph.name) {
        Ok(z) if z == *graph => format!("zoo:{}", graph.name),
        _ => format!("model '{}'", graph.name),
    };
    Ok((g, Some(Adaptation { model, classes, input_channels: input, classifier: classifier_name })))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::GraphBuilder;
    use crate::op::{Padding, Shape};

    #[test]
    fn every_zoo_model_adapts() {
        for e in zoo::ENTRIES {
            let g = (e.build)().unwrap();
            let (a, note) = adapt_to_data(&g, 34, 3).unwrap();
            assert_eq!(a.num_outputs(), 34, "{}", e.name);
            assert_eq!(a.input_shape().c, 3, "{}", e.name);
            let shapes = a.shapes().unwrap();
            assert_eq!(shapes[a.output()], Shape::flat(34), "{}", e.name);
            // Spatial input and every hidden layer's width are untouched.
            assert_eq!((a.input_shape().h, a.input_shape().w), (g.input_shape().h, g.input_shape().w));
            assert_eq!(a.nodes.len(), g.nodes.len());
            let note = note.expect("34 classes differs from every zoo model");
            assert_eq!(note.model, format!("zoo:{}", e.name));
            assert_eq!(note.classes, Some((g.num_outputs(), 34)));
            assert_eq!(note.input_channels, (g.input_shape().c != 3).then_some((g.input_shape().c, 3)));
            assert!(matches!(a.node(a.find(&note.classifier).unwrap()).op, Op::Dense(_)));
            // Adapting back restores the original graph exactly.
            let (back, _) = adapt_to_data(&a, g.num_outputs(), g.input_shape().c).unwrap();
            assert_eq!(back, g, "{}", e.name);
            // Already matching: nothing to say.
            let (same, none) = adapt_to_data(&g, g.num_outputs(), g.input_shape().c).unwrap();
            assert_eq!((same, none), (g, None));
        }
    }

    #[test]
    fn sentence() {
        let g = zoo::get("mnist-ds").unwrap();
        let (_, note) = adapt_to_data(&g, 34, 3).unwrap();
        assert_eq!(note.unwrap().to_string(), "zoo:mnist-ds adapted: 10 → 34 classes, input channels 1 → 3");
        let (_, note) = adapt_to_data(&g, 10, 3).unwrap();
        assert_eq!(note.unwrap().to_string(), "zoo:mnist-ds adapted: input channels 1 → 3");
        let (adapted, note) = adapt_to_data(&g, 5, 1).unwrap();
        assert_eq!(note.unwrap().to_string(), "zoo:mnist-ds adapted: 10 → 5 classes");
        // No longer the zoo model: named as a model.
        let (_, note) = adapt_to_data(&adapted, 7, 1).unwrap();
        assert_eq!(note.unwrap().to_string(), "model 'mnist-ds' adapted: 5 → 7 classes");
    }

    #[test]
    fn user_models_and_errors_name_the_layer() {
        // A model file whose last layer is dense → softmax adapts like the zoo.
        let text = r#"{"format": "mcufit-model", "version": 1, "name": "tiny", "nodes": [
            {"name": "input", "op": "input", "shape": [28, 28, 1]},
            {"name": "c1", "op": "conv2d", "inputs": ["input"], "filters": 8, "kernel": [3, 3], "stride": [2, 2], "padding": "same"},
            {"name": "g", "op": "global_avg_pool", "inputs": ["c1"]},
            {"name": "fc", "op": "dense", "inputs": ["g"], "units": 10},
            {"name": "p", "op": "softmax", "inputs": ["fc"]}]}"#;
        let g = Graph::from_json(text).unwrap();
        let (a, note) = adapt_to_data(&g, 3, 3).unwrap();
        assert_eq!((a.num_outputs(), a.input_shape().c), (3, 3));
        let note = note.unwrap();
        assert_eq!(note.classifier, "fc");
        assert_eq!(note.to_string(), "model 'tiny' adapted: 10 → 3 classes, input channels 1 → 3");

        // Logits output (dense last) is a classifier too.
        let mut b = GraphBuilder::new("logits", Shape::new(8, 8, 1));
        let x = b.conv(0, 4, 3, 1, Padding::Same);
        let p = b.add(Op::GlobalAvgPool, &[x]);
        b.named("head").dense(p, 10);
        let g = b.build().unwrap();
        assert_eq!(adapt_to_data(&g, 4, 1).unwrap().0.num_outputs(), 4);

        // Output not a dense classifier: the error names the output layer.
        let mut b = GraphBuilder::new("convhead", Shape::new(8, 8, 1));
        let x = b.conv(0, 10, 3, 1, Padding::Same);
        b.named("gap").add(Op::GlobalAvgPool, &[x]);
        let g = b.build().unwrap();
        let e = adapt_to_data(&g, 4, 1).unwrap_err().to_string();
        assert!(e.contains("'gap'") && e.contains("not a dense classifier"), "{e}");
        // ... but a model that already has the class count needs no classifier change.
        assert_eq!(adapt_to_data(&g, 10, 3).unwrap().1.unwrap().classes, None);

        // Softmax on something else: the error names that layer.
        let mut b = GraphBuilder::new("poolsoft", Shape::new(8, 8, 1));
        let x = b.conv(0, 10, 3, 1, Padding::Same);
        let p = b.named("gap").add(Op::GlobalAvgPool, &[x]);
        b.add(Op::Softmax, &[p]);
        let g = b.build().unwrap();
        let e = adapt_to_data(&g, 4, 1).unwrap_err().to_string();
        assert!(e.starts_with("node 'gap'") && e.contains("softmax"), "{e}");

        // A grouped stem conv cannot take 3 channels: shape inference names it.
        let mut b = GraphBuilder::new("grouped", Shape::new(8, 8, 2));
        let x = b.named("stem").add(
            Op::Conv2d(crate::Conv2d {
                filters: 4,
                kernel: [3, 3],
                stride: [1, 1],
                padding: Padding::Same,
                groups: 2,
                bias: true,
            }),
            &[0],
        );
        let p = b.add(Op::GlobalAvgPool, &[x]);
        let d = b.dense(p, 10);
        b.add(Op::Softmax, &[d]);
        let g = b.build().unwrap();
        let e = adapt_to_data(&g, 10, 3).unwrap_err().to_string();
        assert!(e.starts_with("node 'stem'") && e.contains("groups"), "{e}");

        assert!(adapt_to_data(&g, 0, 3).is_err());
    }
}
