//! burn network ⇄ the backend-free [`Weights`] (mcufit-ir; TFLite layouts, documented there),
//! and the on-disk model directory.
//!
//! ## Model directory
//! `model.json` is the IR graph (mcufit-ir's model file) and `weights.safetensors` holds the
//! tensors, named `<node>.kernel`, `<node>.bias`, `<node>.bn.{gamma,beta,mean,var}` in the
//! layouts above, plus `mask.<group>` for channel-group masks. It is a standard safetensors file
//! (F32, little endian), so any safetensors reader can open it. Its `__metadata__` maps tensor
//! names to burn parameter ids (`param_ids`, JSON) so that optimizer state recorded against those
//! ids stays valid after a reload — what makes checkpoints resumable.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use burn::module::{Param, RunningState};
use burn::tensor::{Device, Tensor, TensorData};
use mcufit_ir::layout::{ohwi_to_oihw, oihw_to_ohwi, transpose};
use mcufit_ir::{BnWeights, Graph, NodeWeights, Op, TensorF32, Weights};
use serde::{Deserialize, Serialize};

use crate::error::{Result, TrainError};
use crate::network::{param, to_vec, Bn, Layer, Network};

fn dims4(t: &Tensor<4>) -> [usize; 4] {
    t.dims()
}

impl Network {
    /// Training form: raw node weights plus masks, in TFLite layouts.
    pub fn to_weights(&self) -> Result<Weights> {
        let mut nodes = BTreeMap::new();
        for (id, node) in self.graph().nodes.iter().enumerate() {
            let l = &self.layers[id];
            let mut lw = NodeWeights::default();
            if let Some(k) = &l.kernel {
                let t = k.val();
                let d = dims4(&t);
                let v = to_vec(t)?;
                lw.kernel = Some(match node.op {
                    // [c, 1, kh, kw] → [1, kh, kw, c]
                    Op::DepthwiseConv2d(_) => {
                        TensorF32 { shape: vec![1, d[2], d[3], d[0]], data: transpose(&v, d[0], d[2] * d[3]) }
                    }
                    _ => TensorF32 { shape: vec![d[0], d[2], d[3], d[1]], data: oihw_to_ohwi(&v, d) },
                });
            }
            if let Some(w) = &l.weight {
                let t = w.val();
                let [n_in, units] = t.dims();
                lw.kernel = Some(TensorF32 { shape: vec![units, n_in], data: transpose(&to_vec(t)?, n_in, units) });
            }
            if let Some(b) = &l.bias {
                lw.bias = Some(to_vec(b.val())?);
            }
            if let Some(bn) = &l.bn {
                let (m, v) = bn.running_stats();
                lw.bn = Some(BnWeights {
                    gamma: to_vec(bn.gamma.val())?,
                    beta: to_vec(bn.beta.val())?,
                    mean: to_vec(m)?,
                    var: to_vec(v)?,
                    eps: bn.eps as f32,
                });
            }
            if !lw.is_empty() {
                nodes.insert(node.name.clone(), lw);
            }
        }
        let mut masks = BTreeMap::new();
        for (g, m) in self.masks.iter().enumerate() {
            if let Some(m) = m {
                masks.insert(g, to_vec(m.val())?);
            }
        }
        Ok(Weights { nodes, masks })
    }

    /// Deployment form for the quantizer/exporter: masks folded into the layer that produces the
    /// masked tensor (BN gamma/beta, else the conv/dense kernel rows and bias), `masks` empty.
    pub fn export_weights(&self) -> Result<Weights> {
        let mut w = self.to_weights()?;
        let masks = std::mem::take(&mut w.masks);
        for (g, m) in masks {
            for &site in self.mask_nodes(g) {
                let name = &self.graph().nodes[site].name;
                let lw = w
                    .nodes
                    .get_mut(name)
                    .ok_or_else(|| TrainError::Weights(format!("mask site '{name}' has no weights")))?;
                if let Some(bn) = &mut lw.bn {
                    for (c, &s) in m.iter().enumerate() {
                        bn.gamma[c] *= s;
                        bn.beta[c] *= s;
                    }
                } else if let Some(k) = &mut lw.kernel {
                    // conv OHWI and dense [units, in]: output channel is the leading axis.
                    let per = k.data.len() / m.len().max(1);
                    for (c, &s) in m.iter().enumerate() {
                        k.data[c * per..(c + 1) * per].iter_mut().for_each(|x| *x *= s);
                    }
                    if let Some(b) = &mut lw.bias {
                        b.iter_mut().zip(&m).for_each(|(x, s)| *x *= s);
                    }
                }
            }
        }
        Ok(w)
    }

    /// Builds a network with the given weights. Every parametrised node must be present with
    /// the exact shapes the graph implies; unknown node names are an error.
    pub fn from_weights(graph: &Graph, weights: &Weights, device: &Device) -> Result<Network> {
        Self::from_weights_with_ids(graph, weights, device, &HashMap::new())
    }

    pub(crate) fn from_weights_with_ids(
        graph: &Graph,
        weights: &Weights,
        device: &Device,
        ids: &HashMap<String, u64>,
    ) -> Result<Network> {
        graph.validate()?;
        weights.check(graph).map_err(|e| TrainError::Weights(e.to_string()))?;
        let ngroups = graph.channel_groups()?.groups.len();
        let id_of = |k: String| ids.get(&k).copied();
        // Shapes are checked: the kernels' own shapes are the graph's.
        let mut layers = Vec::with_capacity(graph.nodes.len());
        for node in &graph.nodes {
            let name = &node.name;
            let mut layer = Layer { kernel: None, weight: None, bias: None, bn: None };
            match (&node.op, weights.kernel(name)) {
                (Op::Conv2d(_), Some(k)) => {
                    let d = [k.shape[0], k.shape[1], k.shape[2], k.shape[3]];
                    let t = TensorData::new(ohwi_to_oihw(&k.data, d), [d[0], d[3], d[1], d[2]]);
                    layer.kernel = Some(param(Tensor::from_data(t, device), id_of(format!("{name}.kernel")), true));
                }
                (Op::DepthwiseConv2d(_), Some(k)) => {
                    // [1, kh, kw, c] → [c, 1, kh, kw]
                    let (kh, kw, c) = (k.shape[1], k.shape[2], k.shape[3]);
                    let data = transpose(&k.data, kh * kw, c);
                    let t = Tensor::from_data(TensorData::new(data, [c, 1, kh, kw]), device);
                    layer.kernel = Some(param(t, id_of(format!("{name}.kernel")), true));
                }
                (Op::Dense(_), Some(k)) => {
                    let (units, n_in) = (k.shape[0], k.shape[1]);
                    let t = Tensor::from_data(TensorData::new(transpose(&k.data, units, n_in), [n_in, units]), device);
                    layer.weight = Some(param(t, id_of(format!("{name}.kernel")), true));
                }
                _ => {}
            }
            if let Some(b) = weights.bias(name) {
                layer.bias = Some(param(t1(b.to_vec(), device), id_of(format!("{name}.bias")), true));
            }
            if let (Op::BatchNorm(b), Some(bw)) = (&node.op, weights.bn(name)) {
                // Running stats are buffers, not optimizer targets: their ids need not persist.
                layer.bn = Some(Bn {
                    gamma: param(t1(bw.gamma.clone(), device), id_of(format!("{name}.bn.gamma")), true),
                    beta: param(t1(bw.beta.clone(), device), id_of(format!("{name}.bn.beta")), true),
                    running_mean: RunningState::new(t1(bw.mean.clone(), device)),
                    running_var: RunningState::new(t1(bw.var.clone(), device)),
                    eps: b.eps as f64,
                    momentum: 0.1,
                });
            }
            layers.push(layer);
        }
        let mut masks: Vec<Option<Param<Tensor<1>>>> = vec![None; ngroups];
        for (&g, m) in &weights.masks {
            // A reloaded mask is frozen; pruning code re-enables learning explicitly.
            masks[g] = Some(param(t1(m.clone(), device), id_of(format!("mask.{g}")), false));
        }
        Network::from_parts(graph, layers, masks)
    }

    /// Saves `model.json` + `weights.safetensors` into `dir` (created if needed).
    pub fn save(&self, dir: impl AsRef<Path>) -> Result<()> {
        let dir = dir.as_ref();
        std::fs::create_dir_all(dir).map_err(|e| TrainError::io(dir, e))?;
        self.graph().save(dir.join("model.json"))?;
        let weights = self.to_weights()?;
        let ids = self.param_ids();
        write_safetensors(&dir.join("weights.safetensors"), &weights_to_tensors(&weights), &ids)
    }

    /// Loads a directory written by [`Network::save`].
    pub fn load(dir: impl AsRef<Path>, device: &Device) -> Result<Network> {
        let dir = dir.as_ref();
        let graph = Graph::load(dir.join("model.json"))?;
        let (tensors, ids) = read_safetensors(&dir.join("weights.safetensors"))?;
        let weights = tensors_to_weights(&graph, tensors)?;
        Network::from_weights_with_ids(&graph, &weights, device, &ids)
    }

    /// Parameter ids by tensor name (see module docs).
    pub(crate) fn param_ids(&self) -> HashMap<String, u64> {
        let mut ids = HashMap::new();
        for (id, node) in self.graph().nodes.iter().enumerate() {
            let l = &self.layers[id];
            let name = &node.name;
            if let Some(k) = &l.kernel {
                ids.insert(format!("{name}.kernel"), k.id.val());
            }
            if let Some(w) = &l.weight {
                ids.insert(format!("{name}.kernel"), w.id.val());
            }
            if let Some(b) = &l.bias {
                ids.insert(format!("{name}.bias"), b.id.val());
            }
            if let Some(bn) = &l.bn {
                ids.insert(format!("{name}.bn.gamma"), bn.gamma.id.val());
                ids.insert(format!("{name}.bn.beta"), bn.beta.id.val());
            }
        }
        for (g, m) in self.masks.iter().enumerate() {
            if let Some(m) = m {
                ids.insert(format!("mask.{g}"), m.id.val());
            }
        }
        ids
    }
}

/// burn depthwise `[c, 1, kh, kw]` → TFLite `[1, kh, kw, c]`.
fn t1(v: Vec<f32>, device: &Device) -> Tensor<1> {
    let n = v.len();
    Tensor::from_data(TensorData::new(v, [n]), device)
}

// ---- safetensors -----------------------------------------------------------------------------

/// Flattens weights into named tensors (see module docs for names).
pub fn weights_to_tensors(w: &Weights) -> Vec<(String, TensorF32)> {
    let mut out = Vec::new();
    for (name, lw) in &w.nodes {
        if let Some(k) = &lw.kernel {
            out.push((format!("{name}.kernel"), k.clone()));
        }
        if let Some(b) = &lw.bias {
            out.push((format!("{name}.bias"), TensorF32::vector(b.clone())));
        }
        if let Some(bn) = &lw.bn {
            for (what, v) in [("gamma", &bn.gamma), ("beta", &bn.beta), ("mean", &bn.mean), ("var", &bn.var)] {
                out.push((format!("{name}.bn.{what}"), TensorF32::vector(v.clone())));
            }
        }
    }
    for (g, m) in &w.masks {
        out.push((format!("mask.{g}"), TensorF32::vector(m.clone())));
    }
    out
}

/// Rebuilds [`Weights`] from named tensors, using the graph to know which names to expect
/// (node names may contain dots) and the BN eps. Leftover tensors are an error.
pub fn tensors_to_weights(graph: &Graph, tensors: Vec<(String, TensorF32)>) -> Result<Weights> {
    let mut map: HashMap<String, TensorF32> = HashMap::new();
    for (n, t) in tensors {
        if map.insert(n.clone(), t).is_some() {
            return Err(TrainError::Weights(format!("tensor '{n}' appears twice")));
        }
    }
    let mut w = Weights::default();
    let vec1 = |t: TensorF32, n: &str| -> Result<Vec<f32>> {
        if t.shape.len() != 1 {
            return Err(TrainError::Weights(format!("tensor '{n}' should be 1-D, has shape {:?}", t.shape)));
        }
        Ok(t.data)
    };
    for node in &graph.nodes {
        let name = &node.name;
        let mut lw = NodeWeights::default();
        if let Some(k) = map.remove(&format!("{name}.kernel")) {
            lw.kernel = Some(k);
        }
        if let Some(b) = map.remove(&format!("{name}.bias")) {
            lw.bias = Some(vec1(b, name)?);
        }
        if let Op::BatchNorm(b) = &node.op {
            let mut get = |what: &str| -> Result<Vec<f32>> {
                let key = format!("{name}.bn.{what}");
                let t = map.remove(&key).ok_or_else(|| TrainError::Weights(format!("missing tensor '{key}'")))?;
                vec1(t, &key)
            };
            lw.bn = Some(BnWeights {
                gamma: get("gamma")?,
                beta: get("beta")?,
                mean: get("mean")?,
                var: get("var")?,
                eps: b.eps,
            });
        }
        if !lw.is_empty() {
            w.nodes.insert(name.clone(), lw);
        }
    }
    let mut rest: Vec<String> = Vec::new();
    for (n, t) in map {
        match n.strip_prefix("mask.").and_then(|g| g.parse::<usize>().ok()) {
            Some(g) => {
                w.masks.insert(g, vec1(t, &n)?);
            }
            None => rest.push(n),
        }
    }
    if !rest.is_empty() {
        rest.sort();
        return Err(TrainError::Weights(format!("tensors not matching any node of the graph: {rest:?}")));
    }
    Ok(w)
}

#[derive(Serialize, Deserialize)]
struct StEntry {
    dtype: String,
    shape: Vec<usize>,
    data_offsets: [usize; 2],
}

/// Writes a safetensors file (all F32). `ids` goes to `__metadata__.param_ids` as JSON.
pub fn write_safetensors(path: &Path, tensors: &[(String, TensorF32)], ids: &HashMap<String, u64>) -> Result<()> {
    let mut header = serde_json::Map::new();
    let mut offset = 0usize;
    for (name, t) in tensors {
        if t.shape.iter().product::<usize>() != t.data.len() {
            return Err(TrainError::Weights(format!("tensor '{name}' shape {:?} vs {} values", t.shape, t.data.len())));
        }
        let bytes = t.data.len() * 4;
        let e = StEntry { dtype: "F32".into(), shape: t.shape.clone(), data_offsets: [offset, offset + bytes] };
        header.insert(name.clone(), serde_json::to_value(e).map_err(|e| TrainError::Weights(e.to_string()))?);
        offset += bytes;
    }
    let ids: BTreeMap<&String, &u64> = ids.iter().collect();
    let mut meta = serde_json::Map::new();
    meta.insert("format".into(), "mcufit-weights-1".into());
    meta.insert(
        "param_ids".into(),
        serde_json::to_string(&ids).map_err(|e| TrainError::Weights(e.to_string()))?.into(),
    );
    header.insert("__metadata__".into(), serde_json::Value::Object(meta));
    let mut h = serde_json::to_vec(&header).map_err(|e| TrainError::Weights(e.to_string()))?;
    // Pad the header so the data starts 8-byte aligned (the safetensors convention).
    while (h.len() + 8) % 8 != 0 {
        h.push(b' ');
    }
    let mut buf = Vec::with_capacity(8 + h.len() + offset);
    buf.extend_from_slice(&(h.len() as u64).to_le_bytes());
    buf.extend_from_slice(&h);
    for (_, t) in tensors {
        for v in &t.data {
            buf.extend_from_slice(&v.to_le_bytes());
        }
    }
    // Write-then-rename so a kill mid-write never leaves a truncated weights file behind.
    let tmp = path.with_extension("safetensors.tmp");
    std::fs::write(&tmp, &buf).map_err(|e| TrainError::io(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| TrainError::io(path, e))
}

/// Named tensors, in file order (what [`read_safetensors`] returns alongside the ids).
pub type NamedTensors = Vec<(String, TensorF32)>;

/// Persistent parameter ids by tensor name (stored in the safetensors metadata).
pub type ParamIds = HashMap<String, u64>;

/// Reads a safetensors file of F32 tensors; returns the tensors (file order) and parameter ids.
pub fn read_safetensors(path: &Path) -> Result<(NamedTensors, ParamIds)> {
    let buf = std::fs::read(path).map_err(|e| TrainError::io(path, e))?;
    let bad = |m: String| TrainError::Weights(format!("{}: {m}", path.display()));
    if buf.len() < 8 {
        return Err(bad("too short for a safetensors file".into()));
    }
    let hlen = u64::from_le_bytes(buf[..8].try_into().map_err(|_| bad("header".into()))?) as usize;
    let data_start = 8usize
        .checked_add(hlen)
        .filter(|&e| e <= buf.len())
        .ok_or_else(|| bad("header length beyond end of file".into()))?;
    let header: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(&buf[8..data_start]).map_err(|e| bad(format!("header is not JSON: {e}")))?;
    let data = &buf[data_start..];
    let mut ids = HashMap::new();
    let mut out = Vec::new();
    for (name, v) in header {
        if name == "__metadata__" {
            if let Some(s) = v.get("param_ids").and_then(|s| s.as_str()) {
                ids = serde_json::from_str(s).map_err(|e| bad(format!("param_ids: {e}")))?;
            }
            continue;
        }
        let e: StEntry = serde_json::from_value(v).map_err(|e| bad(format!("tensor '{name}': {e}")))?;
        if e.dtype != "F32" {
            return Err(bad(format!("tensor '{name}' has dtype {}, only F32 is supported", e.dtype)));
        }
        let [a, b] = e.data_offsets;
        let n: usize = e.shape.iter().product();
        if b < a || b > data.len() || b - a != n * 4 {
            return Err(bad(format!("tensor '{name}' has inconsistent offsets {a}..{b} for shape {:?}", e.shape)));
        }
        let vals = data[a..b].chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
        out.push((name, TensorF32 { shape: e.shape, data: vals }));
    }
    Ok((out, ids))
}
