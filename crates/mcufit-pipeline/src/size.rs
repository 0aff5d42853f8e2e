//! Size checks before anything is allocated. A model file can ask for a billion filters or a
//! 100000×100000 input; training it would abort on a tens-of-GB allocation and its cost figures
//! would be meaningless. [`crate::load_model`] refuses what no microcontroller can hold
//! ([`check_mcu`]: more than 4 GiB of weights or of one layer's activations), and
//! [`crate::load_model_for_data`] (train, compress, fit) also refuses what this machine cannot train
//! ([`check_trainable`] against [`memory_limit`]), before the data is loaded or resized.
//! All arithmetic saturates: the figures are estimates for refusing, never wrapped.

use mcufit_ir::{Graph, Op};
use serde::Serialize;

use crate::budget::human_bytes;
use crate::error::{PipelineError, Result};

/// The most any microcontroller addresses: 4 GiB (a 32-bit address space).
pub const MCU_LIMIT: u64 = 1 << 32;
/// The batch the training-memory estimate assumes (the recipe's default).
pub const ASSUMED_BATCH: u64 = 64;
/// Environment variable that sets the training-memory limit (a size: `8GiB`, `500MB`).
pub const LIMIT_ENV: &str = "MCUFIT_MEMORY_LIMIT";

/// Sizes of a model, in counts and bytes (saturating at `u64::MAX`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct SizeEstimate {
    /// Weights and biases (and batch-norm statistics) of every layer.
    pub params: u64,
    /// Elements of the largest activation tensor (the input included).
    pub largest_activation: u64,
    /// The largest (inputs + output) elements of one layer: int8 bytes no memory plan avoids.
    pub layer_activation_bytes: u64,
    /// Training memory estimate at `batch`: params × 4 copies (weights, gradients, two optimizer
    /// moments) × 4 B + largest activation × batch × 3 (forward, saved, gradient) × 4 B.
    pub training_bytes: u64,
    pub batch: u64,
}

/// The sizes of `graph` for a training batch of `batch`.
pub fn estimate(graph: &Graph, batch: u64) -> Result<SizeEstimate> {
    let shapes = graph.shapes()?;
    let el = |i: usize| shapes[i].checked_elements().unwrap_or(u64::MAX);
    let (mut params, mut largest, mut layer) = (0u64, 0u64, 0u64);
    for (i, n) in graph.nodes.iter().enumerate() {
        let out = shapes[i];
        let in_c = n.inputs.first().map(|&x| shapes[x].c as u64).unwrap_or(0);
        let p = match &n.op {
            Op::Conv2d(c) => {
                let per = (c.kernel[0] as u64)
                    .saturating_mul(c.kernel[1] as u64)
                    .saturating_mul(in_c / c.groups.max(1) as u64);
                per.saturating_add(1).saturating_mul(c.filters as u64)
            }
            Op::DepthwiseConv2d(d) => {
                (d.kernel[0] as u64).saturating_mul(d.kernel[1] as u64).saturating_add(1).saturating_mul(out.c as u64)
            }
            Op::Dense(d) => in_c.saturating_add(1).saturating_mul(d.units as u64),
            Op::BatchNorm(_) => 4u64.saturating_mul(out.c as u64),
            _ => 0,
        };
        params = params.saturating_add(p);
        largest = largest.max(el(i));
        let io = n.inputs.iter().fold(el(i), |a, &x| a.saturating_add(el(x)));
        layer = layer.max(io);
    }
    let training_bytes =
        params.saturating_mul(4 * 4).saturating_add(largest.saturating_mul(batch).saturating_mul(3 * 4));
    Ok(SizeEstimate { params, largest_activation: largest, layer_activation_bytes: layer, training_bytes, batch })
}

fn figure(b: u64) -> String {
    format!("{b} B ({})", human_bytes(b as f64))
}

/// Refuses a model no microcontroller can hold: more than [`MCU_LIMIT`] of int8 weights, or one
/// layer whose int8 input(s) and output together take more.
pub fn check_mcu(graph: &Graph) -> Result<SizeEstimate> {
    let e = estimate(graph, ASSUMED_BATCH)?;
    if e.params > MCU_LIMIT {
        return Err(PipelineError::Config(format!(
            "model '{}' has {} parameters: {} as int8, more than the {} any microcontroller can address",
            graph.name,
            e.params,
            figure(e.params),
            human_bytes(MCU_LIMIT as f64)
        )));
    }
    if e.layer_activation_bytes > MCU_LIMIT {
        return Err(PipelineError::Config(format!(
            "model '{}' has a layer whose int8 input and output take {}, more than the {} any microcontroller can address",
            graph.name,
            figure(e.layer_activation_bytes),
            human_bytes(MCU_LIMIT as f64)
        )));
    }
    Ok(e)
}

/// Refuses a model whose training-memory estimate (see [`SizeEstimate::training_bytes`]) at
/// `batch` is over `limit` bytes.
pub fn check_trainable(graph: &Graph, batch: u64, limit: u64) -> Result<SizeEstimate> {
    let e = estimate(graph, batch)?;
    if e.training_bytes > limit {
        let source = if std::env::var_os(LIMIT_ENV).is_some() {
            format!("set by {LIMIT_ENV}")
        } else {
            format!("half of this machine's RAM; {LIMIT_ENV} changes it")
        };
        return Err(PipelineError::Config(format!(
            "model '{}' is too large to train here: it needs about {} = {} parameters × 4 copies × 4 B + \
             {} elements of its largest activation × batch {} × 3 × 4 B, over the limit of {} ({source})",
            graph.name,
            figure(e.training_bytes),
            e.params,
            e.largest_activation,
            e.batch,
            figure(limit)
        )));
    }
    Ok(e)
}

/// The training-memory limit: `MCUFIT_MEMORY_LIMIT` if set (an error if it does not parse), else
/// half of `MemTotal` in /proc/meminfo, else 4 GiB.
pub fn memory_limit() -> Result<u64> {
    if let Ok(v) = std::env::var(LIMIT_ENV) {
        return mcufit_cost::parse_size(&v).map_err(|e| PipelineError::Config(format!("{LIMIT_ENV}: {e}")));
    }
    let total_kib = std::fs::read_to_string("/proc/meminfo").ok().and_then(|s| {
        s.lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|r| r.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
    });
    Ok(total_kib.map(|k| k.saturating_mul(1024) / 2).unwrap_or(4 << 30))
}

#[cfg(test)]
mod tests {
    use super::*;
    use mcufit_ir::{GraphBuilder, Padding, Shape};

    fn wide_conv(filters: usize, input: usize) -> Graph {
        let mut b = GraphBuilder::new("absurd", Shape::new(input, input, 3));
        let x = b.conv(0, filters, 3, 1, Padding::Same);
        let g = b.add(Op::GlobalAvgPool, &[x]);
        b.dense(g, 10);
        b.build().unwrap()
    }

    #[test]
    fn zoo_models_pass_and_their_params_are_counted() {
        for name in mcufit_ir::zoo::names() {
            let g = mcufit_ir::zoo::get(name).unwrap();
            let e = check_mcu(&g).unwrap();
            check_trainable(&g, ASSUMED_BATCH, 1 << 30).unwrap();
            assert!(e.params > 0 && e.training_bytes > 16 * e.params, "{name}");
        }
        // mnist-cnn-like: conv 3x3x3 -> 8 filters = 8*(27+1); dense 8 -> 10 = 90.
        let e = estimate(&wide_conv(8, 8), 2).unwrap();
        assert_eq!(e.params, 8 * 28 + 90);
        assert_eq!(e.largest_activation, 8 * 8 * 8);
        assert_eq!(e.layer_activation_bytes, 8 * 8 * 8 + 8 * 8 * 3);
        assert_eq!(e.training_bytes, 16 * e.params + 512 * 2 * 12);
    }

    #[test]
    fn absurd_models_are_refused_with_the_figure_and_the_limit() {
        let g = wide_conv(1_000_000_000, 8);
        let e = check_trainable(&g, 64, 8 << 30).unwrap_err().to_string();
        assert!(
            e.contains("too large to train") && e.contains("38000000010 parameters") && e.contains("8589934592 B"),
            "{e}"
        );
        let e = check_mcu(&g).unwrap_err().to_string();
        assert!(e.contains("microcontroller") && e.contains("38000000010"), "{e}");
        let g = wide_conv(8, 100_000);
        assert!(check_trainable(&g, 64, 8 << 30).unwrap_err().to_string().contains("80000000000 elements"));
        assert!(check_mcu(&g).unwrap_err().to_string().contains("int8 input and output"));
    }

    #[test]
    fn the_limit_is_positive() {
        assert!(memory_limit().unwrap() > 0);
    }
}
