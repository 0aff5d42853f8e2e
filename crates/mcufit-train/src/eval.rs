//! Evaluation: accuracy, per-class accuracy, confusion matrix.

use burn::module::Module;
use burn::tensor::activation::log_softmax;
use serde::{Deserialize, Serialize};

use crate::data::BatchSource;
use crate::error::{Result, TrainError};
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
    // Fold BN into the convs: inference needs no separate normalisation pass.
    let net = network.valid().fuse_bn()?;
    let device = net.device();
    let k = net.num_classes();
    let mut confusion = vec![vec![0usize; k]; k];
    let mut loss_sum = 0f64;
    let (mut images, mut labels) = (Vec::new(), Vec::new());
    let all: Vec<usize> = (0..data.len()).collect();
    for idx in all.chunks(batch_size) {
        data.batch(idx, &mut images, &mut labels)?;
        let n = labels.len();
        let x = net.input_from_nhwc(&images, n, &device)?;
        let logits = net.forward_mode(x, Mode::Eval)?;
        let logp = to_vec(log_softmax(logits, 1))?;
        for (row, &y) in logp.chunks_exact(k).zip(&labels) {
            let y = y as usize;
            if y >= k {
                return Err(TrainError::Data(format!("label {y} out of range for {k} classes")));
            }
            loss_sum -= row[y] as f64;
            let pred = argmax(row);
            confusion[y][pred] += 1;
        }
    }
    EvalReport::from_confusion(confusion, loss_sum)
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
