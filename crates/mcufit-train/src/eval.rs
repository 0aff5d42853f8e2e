//! Evaluation: accuracy, per-class accuracy, confusion matrix.

use burn::module::Module;
use serde::{Deserialize, Serialize};

use crate::data::BatchSource;
use crate::error::{Result, TrainError};
use crate::fast::{EngineKind, FastPath};
use std::collections::HashMap;

use mcufit_ir::NodeId;

use crate::network::{to_vec, Mode, Network};

/// Result of [`evaluate`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalReport {
    pub examples: usize,
    /// Mean cross-entropy.
    pub loss: f64,
    pub accuracy: f64,
    /// Accuracy per true class (`NaN`-free: classes without examples report 0 and have
    /// `class_counts[c] == 0`).
    pub per_class_accuracy: Vec<f64>,
    pub class_counts: Vec<usize>,
    /// `confusion[true][predicted]`.
    pub confusion: Vec<Vec<usize>>,
}

/// Checks that a dataset fits a network's input and classes.
pub(crate) fn check_data(network: &Network, data: &dyn BatchSource, what: &str) -> Result<()> {
    let s = network.input_shape();
    if data.shape() != [s.h, s.w, s.c] {
        return Err(TrainError::Data(format!(
            "{what} images are {:?} (h, w, c), the network input is [{}, {}, {}]",
            data.shape(),
            s.h,
            s.w,
            s.c
        )));
    }
    if data.num_classes() != network.num_classes() {
        return Err(TrainError::Data(format!(
            "{what} data has {} classes, the network outputs {}",
            data.num_classes(),
            network.num_classes()
        )));
    }
    Ok(())
}

/// Evaluates `network` (BN in inference mode, no autodiff) on every example of `data`.
pub fn evaluate(network: &Network, data: &dyn BatchSource, batch_size: usize) -> Result<EvalReport> {
    check_data(network, data, "evaluation")?;
    if batch_size == 0 {
        return Err(TrainError::Config("batch size must be positive".into()));
    }
    if data.is_empty() {
        return Err(TrainError::Data("evaluation dataset is empty".into()));
    }
    let mut eval = Evaluator::new(network)?;
    let k = network.num_classes();
    let mut confusion = vec![vec![0usize; k]; k];
    let mut loss_sum = 0f64;
    let (mut images, mut labels) = (Vec::new(), Vec::new());
    let all: Vec<usize> = (0..data.len()).collect();
    for idx in all.chunks(batch_size) {
        data.batch(idx, &mut images, &mut labels)?;
        let n = labels.len();
        let logits = eval.logits(&images, n)?;
        for (row, &y) in logits.chunks_exact(k).zip(&labels) {
            let y = y as usize;
            if y >= k {
                return Err(TrainError::Data(format!("label {y} out of range for {k} classes")));
            }
            loss_sum -= log_softmax_at(row, y);
            let pred = argmax(row);
            confusion[y][pred] += 1;
        }
    }
    EvalReport::from_confusion(confusion, loss_sum)
}

/// Evaluation-mode forward passes of one network on host NHWC batches: on mcufit's CPU engine
/// where it applies (buffers kept between batches), else on burn with BN folded into the convs.
pub struct Evaluator {
    network: Network,
    fast: Option<FastPath>,
    /// Whether the engine has this network's parameters already.
    gathered: bool,
    /// On burn: the NHWC outputs of the last [`Evaluator::forward`]'s nodes.
    captured: HashMap<NodeId, Vec<f32>>,
}

impl Evaluator {
    /// An evaluator of `network` (an evaluation-mode copy; the original is not changed).
    pub fn new(network: &Network) -> Result<Evaluator> {
        let valid = network.valid();
        let fast = FastPath::for_network(&valid, EngineKind::Auto);
        let network = if fast.is_some() { valid } else { valid.fuse_bn()? };
        Ok(Evaluator { network, fast, gathered: false, captured: HashMap::new() })
    }

    /// The network evaluated (BN-folded when burn runs it).
    pub fn network(&self) -> &Network {
        &self.network
    }

    /// Whether mcufit's CPU engine runs it (`false`: burn).
    pub fn uses_engine(&self) -> bool {
        self.fast.is_some()
    }

    /// Logits `[n, classes]` (row-major) of `n` NHWC images.
    pub fn logits(&mut self, images: &[f32], n: usize) -> Result<Vec<f32>> {
        let end = self.network.plan().logits_node;
        self.forward(images, n, &[end])?;
        Ok(self.output(end)?.to_vec())
    }

    /// Runs `n` NHWC images through the network; then [`Evaluator::output`] reads the outputs of
    /// `nodes` (on the engine every node up to the logits is readable without copies).
    pub fn forward(&mut self, images: &[f32], n: usize, nodes: &[NodeId]) -> Result<()> {
        if let Some(fast) = &mut self.fast {
            fast.forward_eval(&self.network, images, n, !self.gathered)?;
            self.gathered = true;
            return Ok(());
        }
        let x = self.network.input_from_nhwc(images, n, &self.network.device())?;
        let end = self.network.plan().logits_node;
        let (logits, mut cap) = self.network.forward_capture(x, Mode::Eval, nodes)?;
        self.captured.clear();
        for &id in nodes {
            let t = if id == end {
                logits.clone().reshape([n, self.network.num_classes(), 1, 1])
            } else {
                cap.remove(&id).ok_or_else(|| TrainError::Graph(format!("node #{id} is after the logits")))?
            };
            self.captured.insert(id, nchw_to_nhwc(t)?);
        }
        Ok(())
    }

    /// The NHWC output of `node` (`n·h·w·c` floats of its shape) from the last
    /// [`Evaluator::forward`].
    pub fn output(&self, node: NodeId) -> Result<&[f32]> {
        match &self.fast {
            Some(fast) => fast.output(node),
            None => self
                .captured
                .get(&node)
                .map(Vec::as_slice)
                .ok_or_else(|| TrainError::Graph(format!("node #{node} was not captured by the last forward"))),
        }
    }
}

/// NCHW tensor → host NHWC floats.
fn nchw_to_nhwc(t: burn::tensor::Tensor<4>) -> Result<Vec<f32>> {
    let [n, c, h, w] = t.dims();
    let v = to_vec(t)?;
    let hw = h * w;
    let mut out = vec![0.0; v.len()];
    for b in 0..n {
        let (src, dst) = (&v[b * c * hw..(b + 1) * c * hw], &mut out[b * c * hw..(b + 1) * c * hw]);
        for ch in 0..c {
            for p in 0..hw {
                dst[p * c + ch] = src[ch * hw + p];
            }
        }
    }
    Ok(out)
}

impl EvalReport {
    /// The report of a confusion matrix (`confusion[true][predicted]`) and the summed loss over
    /// its examples: the one place accuracy, per-class accuracy and class counts are derived
    /// (float evaluation here, the int8 reference's in `mcufit-pipeline`).
    pub fn from_confusion(confusion: Vec<Vec<usize>>, loss_sum: f64) -> Result<EvalReport> {
        let k = confusion.len();
        let class_counts: Vec<usize> = confusion.iter().map(|r| r.iter().sum()).collect();
        let examples: usize = class_counts.iter().sum();
        if examples == 0 {
            return Err(TrainError::Data("evaluation dataset is empty".into()));
        }
        let correct: usize = (0..k).map(|c| confusion[c].get(c).copied().unwrap_or(0)).sum();
        let per_class_accuracy = (0..k)
            .map(|c| if class_counts[c] == 0 { 0.0 } else { confusion[c][c] as f64 / class_counts[c] as f64 })
            .collect();
        Ok(EvalReport {
            examples,
            loss: loss_sum / examples as f64,
            accuracy: correct as f64 / examples as f64,
            per_class_accuracy,
            class_counts,
            confusion,
        })
    }
}

/// `log softmax(row)[y]`, computed stably in f64.
pub fn log_softmax_at(row: &[f32], y: usize) -> f64 {
    let max = row.iter().fold(f64::NEG_INFINITY, |m, &v| m.max(v as f64));
    let sum: f64 = row.iter().map(|&v| (v as f64 - max).exp()).sum();
    row[y] as f64 - max - sum.ln()
}

/// Index of the largest value (first one on ties; NaN never wins).
pub(crate) fn argmax(row: &[f32]) -> usize {
    let mut best = 0;
    for (i, &v) in row.iter().enumerate() {
        if v > row[best] || row[best].is_nan() {
            best = i;
        }
    }
    best
}
