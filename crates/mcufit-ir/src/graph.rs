//! The typed graph: nodes in topological order, shape inference, and the versioned model file.

use std::collections::HashMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{IrError, Result};
use crate::op::{Op, Shape};

/// Index of a node in [`Graph::nodes`].
pub type NodeId = usize;

/// One operator application.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub name: String,
    pub op: Op,
    pub inputs: Vec<NodeId>,
}

/// A network: nodes in topological order; node 0 is the only `input`, the last node is the output.
#[derive(Debug, Clone, PartialEq)]
pub struct Graph {
    pub name: String,
    pub nodes: Vec<Node>,
}

/// Identifies the model file format; bumped on any incompatible change.
pub const MODEL_FORMAT: &str = "mcufit-model";
pub const MODEL_FORMAT_VERSION: u32 = 1;

impl Graph {
    /// Builds and validates a graph (names unique, inputs earlier in the list, shapes consistent).
    pub fn new(name: impl Into<String>, nodes: Vec<Node>) -> Result<Self> {
        let g = Graph { name: name.into(), nodes };
        g.validate()?;
        Ok(g)
    }

    pub fn input(&self) -> NodeId {
        0
    }
    pub fn output(&self) -> NodeId {
        self.nodes.len() - 1
    }
    pub fn input_shape(&self) -> Shape {
        match &self.nodes[0].op {
            Op::Input { shape } => *shape,
            _ => unreachable!("validated: node 0 is the input"),
        }
    }
    pub fn node(&self, id: NodeId) -> &Node {
        &self.nodes[id]
    }
    pub fn find(&self, name: &str) -> Option<NodeId> {
        self.nodes.iter().position(|n| n.name == name)
    }

    /// Checks structure and shapes; every constructor and reader calls this.
    pub fn validate(&self) -> Result<()> {
        if self.nodes.is_empty() {
            return Err(IrError::Graph("the graph has no nodes".into()));
        }
        if !matches!(self.nodes[0].op, Op::Input { .. }) {
            return Err(IrError::Graph(format!("the first node ('{}') must be the input", self.nodes[0].name)));
        }
        let mut seen = HashMap::new();
        for (i, n) in self.nodes.iter().enumerate() {
            if n.name.is_empty() {
                return Err(IrError::Graph(format!("node #{i} has an empty name")));
            }
            if let Some(j) = seen.insert(n.name.as_str(), i) {
                return Err(IrError::Graph(format!("node name '{}' is used twice (#{j} and #{i})", n.name)));
            }
            if i > 0 && matches!(n.op, Op::Input { .. }) {
                return Err(IrError::node(&n.name, "only one input node is allowed, and it must come first"));
            }
            if let Some(&bad) = n.inputs.iter().find(|&&x| x >= i) {
                return Err(IrError::node(
                    &n.name,
                    format!("input #{bad} does not come before it (nodes must be in topological order)"),
                ));
            }
        }
        // Every node except the output must feed something: dead branches would silently cost memory.
        let consumers = self.consumers();
        for (i, n) in self.nodes.iter().enumerate().take(self.nodes.len() - 1) {
            if consumers[i].is_empty() {
                return Err(IrError::node(&n.name, "its output is never used (only the last node may be unused)"));
            }
        }
        self.shapes().map(|_| ())
    }

    /// Output shape of every node, in node order.
    pub fn shapes(&self) -> Result<Vec<Shape>> {
        let mut shapes: Vec<Shape> = Vec::with_capacity(self.nodes.len());
        for n in &self.nodes {
            let ins: Vec<Shape> = n.inputs.iter().map(|&i| shapes[i]).collect();
            shapes.push(n.op.output_shape(&n.name, &ins)?);
        }
        Ok(shapes)
    }

    /// For each node, the nodes that read its output.
    pub fn consumers(&self) -> Vec<Vec<NodeId>> {
        let mut out = vec![Vec::new(); self.nodes.len()];
        for (i, n) in self.nodes.iter().enumerate() {
            for &j in &n.inputs {
                if !out[j].contains(&i) {
                    out[j].push(i);
                }
            }
        }
        out
    }

    /// Number of classes the classifier outputs.
    pub fn num_outputs(&self) -> usize {
        self.shapes().map(|s| s[self.output()].c).unwrap_or(0)
    }

    // ---- model file -------------------------------------------------------------------------

    /// Serialises to the versioned JSON model file (see `docs/model-format.md`).
    pub fn to_json(&self) -> String {
        let file = ModelFile {
            format: MODEL_FORMAT.into(),
            version: MODEL_FORMAT_VERSION,
            name: self.name.clone(),
            nodes: self
                .nodes
                .iter()
                .map(|n| FileNode {
                    name: n.name.clone(),
                    inputs: n.inputs.iter().map(|&i| self.nodes[i].name.clone()).collect(),
                    op: n.op.clone(),
                })
                .collect(),
        };
        serde_json::to_string_pretty(&file).expect("graph serialisation cannot fail")
    }

    /// Parses and validates a JSON model file.
    pub fn from_json(text: &str) -> Result<Self> {
        let raw: serde_json::Value = serde_json::from_str(text).map_err(|e| IrError::Parse(e.to_string()))?;
        let file: ModelFile = serde_json::from_value(raw.clone()).map_err(|e| IrError::Parse(e.to_string()))?;
        check_known_fields(&raw, &file)?;
        if file.format != MODEL_FORMAT {
            return Err(IrError::Format(format!("\"format\" is '{}', expected '{MODEL_FORMAT}'", file.format)));
        }
        if file.version != MODEL_FORMAT_VERSION {
            return Err(IrError::Format(format!(
                "version {} is not supported (this mcufit reads version {MODEL_FORMAT_VERSION})",
                file.version
            )));
        }
        let mut ids: HashMap<String, NodeId> = HashMap::new();
        let mut nodes = Vec::with_capacity(file.nodes.len());
        for (i, fnode) in file.nodes.into_iter().enumerate() {
            let inputs = fnode
                .inputs
                .iter()
                .map(|name| {
                    ids.get(name).copied().ok_or_else(|| {
                        IrError::node(&fnode.name, format!("input '{name}' is not defined before this node"))
                    })
                })
                .collect::<Result<Vec<_>>>()?;
            ids.insert(fnode.name.clone(), i);
            nodes.push(Node { name: fnode.name, op: fnode.op, inputs });
        }
        Graph::new(file.name, nodes)
    }

    /// Writes the model file atomically: to a temporary file in the same directory, then renamed over
    /// `path`, so a kill leaves the old file or the new one, never half of one.
    pub fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        let io = |e| IrError::Io { path: path.display().to_string(), source: e };
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let tmp = path.with_file_name(format!(".{name}.tmp-{}", std::process::id()));
        std::fs::write(&tmp, self.to_json()).and_then(|()| std::fs::rename(&tmp, path)).map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            io(e)
        })
    }

    pub fn load(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let text =
            std::fs::read_to_string(path).map_err(|e| IrError::Io { path: path.display().to_string(), source: e })?;
        Graph::from_json(&text).map_err(|e| match e {
            IrError::Parse(m) => IrError::Parse(format!("{}: {m}", path.display())),
            other => other,
        })
    }
}

/// Refuses a field the format does not have (a typo such as `"strides"` would otherwise be ignored and
/// its default used): every key of the file and of each node must be one the parsed value writes back.
/// (`#[serde(deny_unknown_fields)]` cannot be used: a node's op fields are flattened into it.)
fn check_known_fields(raw: &serde_json::Value, file: &ModelFile) -> Result<()> {
    const TOP: [&str; 4] = ["format", "version", "name", "nodes"];
    if let Some(obj) = raw.as_object() {
        if let Some(k) = obj.keys().find(|k| !TOP.contains(&k.as_str())) {
            return Err(IrError::Format(format!("unknown field '{k}' (a model file has {})", TOP.join(", "))));
        }
    }
    let raw_nodes = raw.get("nodes").and_then(|n| n.as_array()).map(Vec::as_slice).unwrap_or_default();
    for (rn, node) in raw_nodes.iter().zip(&file.nodes) {
        let known = serde_json::to_value(node).map_err(|e| IrError::Parse(e.to_string()))?;
        let (Some(rn), Some(known)) = (rn.as_object(), known.as_object()) else { continue };
        let mut fields: Vec<&str> = known.keys().map(String::as_str).filter(|k| *k != "name" && *k != "op").collect();
        if !fields.contains(&"inputs") {
            fields.push("inputs");
        }
        if let Some(k) = rn.keys().find(|k| !known.contains_key(*k) && k.as_str() != "inputs") {
            fields.sort_unstable();
            return Err(IrError::node(
                &node.name,
                format!(
                    "unknown field '{k}' for a{} '{}' node (its fields: {})",
                    if known["op"].as_str().is_some_and(|o| o.starts_with(['a', 'i'])) { "n" } else { "" },
                    known["op"].as_str().unwrap_or("?"),
                    fields.join(", ")
                ),
            ));
        }
    }
    Ok(())
}

#[derive(Serialize, Deserialize)]
struct ModelFile {
    format: String,
    version: u32,
    name: String,
    nodes: Vec<FileNode>,
}

#[derive(Serialize, Deserialize)]
struct FileNode {
    name: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    inputs: Vec<String>,
    #[serde(flatten)]
    op: Op,
}

/// Convenience builder used by the zoo, tests and search: each call appends a node and returns its id.
/// Names are generated (`conv2d_3`) unless given with [`GraphBuilder::named`].
pub struct GraphBuilder {
    name: String,
    nodes: Vec<Node>,
    next_name: Option<String>,
}

impl GraphBuilder {
    pub fn new(name: impl Into<String>, input: Shape) -> Self {
        GraphBuilder {
            name: name.into(),
            nodes: vec![Node { name: "input".into(), op: Op::Input { shape: input }, inputs: vec![] }],
            next_name: None,
        }
    }
    pub fn input(&self) -> NodeId {
        0
    }
    /// Names the next node added.
    pub fn named(&mut self, name: impl Into<String>) -> &mut Self {
        self.next_name = Some(name.into());
        self
    }
    pub fn add(&mut self, op: Op, inputs: &[NodeId]) -> NodeId {
        let id = self.nodes.len();
        let name = self.next_name.take().unwrap_or_else(|| format!("{}_{id}", op.kind().trim_end_matches("_1x1")));
        self.nodes.push(Node { name, op, inputs: inputs.to_vec() });
        id
    }
    pub fn conv(&mut self, x: NodeId, filters: usize, k: usize, s: usize, p: crate::Padding) -> NodeId {
        self.add(
            Op::Conv2d(crate::Conv2d { filters, kernel: [k, k], stride: [s, s], padding: p, groups: 1, bias: true }),
            &[x],
        )
    }
    pub fn dw(&mut self, x: NodeId, k: usize, s: usize, p: crate::Padding) -> NodeId {
        self.add(
            Op::DepthwiseConv2d(crate::DepthwiseConv2d { kernel: [k, k], stride: [s, s], padding: p, bias: true }),
            &[x],
        )
    }
    pub fn bn(&mut self, x: NodeId) -> NodeId {
        self.add(Op::BatchNorm(Default::default()), &[x])
    }
    pub fn relu(&mut self, x: NodeId) -> NodeId {
        self.add(Op::Relu, &[x])
    }
    /// conv → batch norm → ReLU, the zoo's basic unit.
    pub fn conv_bn_relu(&mut self, x: NodeId, filters: usize, k: usize, s: usize, p: crate::Padding) -> NodeId {
        let c = self.conv(x, filters, k, s, p);
        let b = self.bn(c);
        self.relu(b)
    }
    pub fn dense(&mut self, x: NodeId, units: usize) -> NodeId {
        self.add(Op::Dense(crate::Dense { units, bias: true }), &[x])
    }
    pub fn build(self) -> Result<Graph> {
        Graph::new(self.name, self.nodes)
    }
}
