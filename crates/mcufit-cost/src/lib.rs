//! # mcufit-cost
//!
//! What a network costs on a microcontroller, computed on the deployed (fused) view of the IR:
//! batch norm and ReLU/ReLU6 fold into the preceding kernel and cost nothing of their own, and a
//! flatten/reshape is an alias. Every formula takes the channel count of each channel group as a
//! real number, so the same code gives the exact figures of an architecture (integer counts) and,
//! through [`CostModel::gradient`], the derivative the pruning budget loss needs: one source of truth.
//!
//! Counted (see `docs/cost-model.md`):
//! - **params**: weights + one bias per output channel of conv/depthwise/dense (a folded batch norm
//!   always leaves a bias).
//! - **model bytes**: int8 weights (1 B) + int32 biases (4 B); with `quant_params`, also 8 B per
//!   output channel (int32 multiplier + int32 shift, as the C export stores them).
//! - **MACs**: conv `oh·ow·cout·kh·kw·cin/groups`, depthwise `oh·ow·c·kh·kw`, dense `in·units`.
//!   Pooling, adds, concats and softmax do no multiply-accumulates; they are counted as
//!   element operations for latency only. This matches how MLPerf Tiny quotes its models' MACs.
//! - **peak memory**: int8 activations, 1 B per element; the minimum over all valid operator orders
//!   of the largest live set (see [`memory`]).
//! - **latency**: cycles from the board's core model ([`boards`]), divided by the clock: on the
//!   Cortex-M4 a model of mcufit's own C kernels fitted to QEMU instruction counts ([`KernelFit`],
//!   `docs/latency.md`), elsewhere cycles-per-MAC estimates.

pub mod boards;
pub mod memory;
mod model;

pub use boards::{Board, Boards, CycleModel, KernelFit, OpWork};
pub use memory::{MemoryOptions, MemoryPlan, SearchLimits};
pub use model::{Budget, CostModel, CostOptions, OpCost, Resource, Usage};

use thiserror::Error;

#[derive(Debug, Error)]
pub enum CostError {
    #[error(transparent)]
    Ir(#[from] mcufit_ir::IrError),
    #[error("unknown board '{name}'; known boards: {known}")]
    UnknownBoard { name: String, known: String },
    #[error("board file {path}: {msg}")]
    BoardFile { path: String, msg: String },
    #[error(
        "cannot parse size '{0}': use whole bytes (65536) or a unit (64KiB, 1MiB, 64KB, 2MB, 1GiB), at most 8 PiB"
    )]
    Size(String),
    #[error("cannot parse count '{0}': use a number (5000000) or a suffix (5M, 500k)")]
    Count(String),
}

pub type Result<T, E = CostError> = std::result::Result<T, E>;

/// Parses a byte size: `65536`, `64KiB`, `64K`, `1MiB`, `1.5MB`, `1GiB` (KB/MB/GB are decimal, KiB/K/MiB/GiB binary).
pub fn parse_size(text: &str) -> Result<u64> {
    let t = text.trim();
    let split = t.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let value: f64 = num.parse().map_err(|_| CostError::Size(text.into()))?;
    let mult = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "k" | "kib" => 1024.0,
        "kb" => 1000.0,
        "m" | "mib" => 1024.0 * 1024.0,
        "mb" => 1e6,
        "g" | "gib" => 1024.0 * 1024.0 * 1024.0,
        "gb" => 1e9,
        _ => return Err(CostError::Size(text.into())),
    };
    let bytes = value * mult;
    // Exact integers only, and no more than 2^53 B (8 PiB): a larger figure is a typo, not a memory.
    if !bytes.is_finite() || bytes < 0.0 || bytes.fract() != 0.0 || bytes > (1u64 << 53) as f64 {
        return Err(CostError::Size(text.into()));
    }
    Ok(bytes as u64)
}

/// Parses a count such as `5000000`, `5M`, `2.5M`, `500k`, `1G`.
pub fn parse_count(text: &str) -> Result<u64> {
    let t = text.trim();
    let split = t.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let value: f64 = num.parse().map_err(|_| CostError::Count(text.into()))?;
    let mult = match unit.trim() {
        "" => 1.0,
        "k" | "K" => 1e3,
        "M" | "m" => 1e6,
        "G" | "g" => 1e9,
        _ => return Err(CostError::Count(text.into())),
    };
    let v = value * mult;
    if !v.is_finite() || v < 0.0 || v.fract() != 0.0 || v > (1u64 << 53) as f64 {
        return Err(CostError::Count(text.into()));
    }
    Ok(v as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn sizes_and_counts_parse() {
        assert_eq!(parse_size("65536").unwrap(), 65536);
        assert_eq!(parse_size("64KiB").unwrap(), 65536);
        assert_eq!(parse_size("64k").unwrap(), 65536);
        assert_eq!(parse_size("1MiB").unwrap(), 1 << 20);
        assert_eq!(parse_size("2MB").unwrap(), 2_000_000);
        assert_eq!(parse_size("1.5KiB").unwrap(), 1536);
        assert_eq!(parse_size("1GiB").unwrap(), 1 << 30);
        assert_eq!(parse_size("2GB").unwrap(), 2_000_000_000);
        for bad in ["", "abc", "12XB", "-5", "1.3B", "KiB", "99999999999999999999", "inf", "1e3"] {
            assert!(parse_size(bad).is_err(), "{bad}");
        }
        assert_eq!(parse_count("5M").unwrap(), 5_000_000);
        assert_eq!(parse_count("2.5M").unwrap(), 2_500_000);
        assert_eq!(parse_count("500k").unwrap(), 500_000);
        assert!(parse_count("five").is_err());
    }
}
