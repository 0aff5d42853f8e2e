//! The budget, parsed once, and the one meaning of "fits" that analyze, compress, fit and export share.
//!
//! Two kinds of limit:
//! - **What the model needs on the target in total** (`--ram`, `--flash`, or a `--board`'s SRAM and flash):
//!   RAM = activation arena (the memory-optimal peak) + conv scratch + stack reserve + runtime data;
//!   flash = weights and biases + requantization data + the target's code/runtime.
//! - **The papers' bounds** (`--peak`, `--size`): the activation peak and the weight bytes alone, as μNAS,
//!   SpArSe and DiffPrune count them, so their bounds can be quoted as they are.
//!
//! Plus `--macs` and `--latency-ms` (the latter needs a board: its clock and cycle model).
//!
//! A [`Footprint`] holds every term for one model; [`Budget::check`] compares it with every limit and
//! returns one [`FitCheck`]. Before export the code/runtime terms are the target's estimates
//! ([`TargetOverhead`]); after a Cortex-M link they are the linked image's measured sizes.

use std::path::PathBuf;
use std::str::FromStr;

use mcufit_cost::{parse_count, parse_size, Board, Boards, CostModel, CostOptions, MemoryOptions};
use mcufit_ir::{Graph, Op};
use serde::{Deserialize, Serialize};

use crate::error::{PipelineError, Result};

/// The deployment target: its runtime's code and data count against flash and RAM.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Target {
    /// mcufit's standalone C library (one static arena, mcufit's kernels).
    #[default]
    C,
    /// A .tflite run by TensorFlow Lite Micro.
    Tflite,
}

impl FromStr for Target {
    type Err = PipelineError;
    fn from_str(s: &str) -> Result<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "c" => Ok(Target::C),
            "tflite" | "tflm" => Ok(Target::Tflite),
            other => Err(PipelineError::Config(format!("unknown target '{other}': use c or tflite"))),
        }
    }
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Target::C => "c",
            Target::Tflite => "tflite",
        })
    }
}

/// A target's fixed costs beside the model's own arena, scratch, weights and requantization data.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct TargetOverhead {
    /// Runtime data in RAM besides the arena and scratch (C: the harness's globals; TFLM: the
    /// interpreter's persistent allocations, the arena "tail"), bytes.
    pub runtime_ram: u64,
    /// Code and runtime in flash (kernels, start-up, interpreter), bytes.
    pub code_flash: u64,
}

impl Target {
    /// Estimates used before a model is linked.
    ///
    /// C: measured on the Cortex-M4 link of the pruned MNIST model (16,996 B flash = 4,484 B weights +
    /// 912 B requantization + 784 B test input + 10.8 KB code and start-up; 6,672 B RAM = 4,096 B stack +
    /// 2,368 B arena + 208 B other), rounded up.
    ///
    /// TFLM: its interpreter with the int8 reference kernels is in the 50-100 KB range on Cortex-M and
    /// its persistent allocations grow with the tensor count; both are rough, so the .tflite target's
    /// verdict before a real link is an estimate (the report says so).
    pub fn overhead(self, ops: usize) -> TargetOverhead {
        match self {
            Target::C => TargetOverhead { runtime_ram: 256, code_flash: 12 * 1024 },
            Target::Tflite => TargetOverhead { runtime_ram: 1024 + 128 * ops as u64, code_flash: 64 * 1024 },
        }
    }
}

/// The stack reserved on the target unless `--stack` says otherwise (the C export's linker script).
pub const DEFAULT_STACK_BYTES: u64 = mcufit_export::verify::STACK_BYTES;

/// Budget flags as the user writes them. Explicit `--ram` / `--flash` override the board's.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BudgetSpec {
    pub board: Option<String>,
    /// Extra board profiles (TOML).
    pub boards_file: Option<PathBuf>,
    /// Total RAM, e.g. `64KiB`.
    pub ram: Option<String>,
    /// Total flash, e.g. `256KiB`.
    pub flash: Option<String>,
    /// Activation peak alone, e.g. `2500`.
    pub peak: Option<String>,
    /// Weight bytes alone, e.g. `4500`.
    pub size: Option<String>,
    /// MACs, e.g. `30M`.
    pub macs: Option<String>,
    /// Milliseconds, e.g. `50`.
    pub latency_ms: Option<String>,
    /// Stack reserve, e.g. `2KiB` (default 4 KiB).
    pub stack: Option<String>,
    pub target: Target,
}

/// The boards: built in, plus a file.
pub fn load_boards(file: Option<&std::path::Path>) -> Result<Boards> {
    Ok(match file {
        Some(p) => Boards::with_file(p)?,
        None => Boards::builtin(),
    })
}

fn size_flag(flag: &str, v: &Option<String>) -> Result<Option<u64>> {
    v.as_deref()
        .map(|t| {
            let b = parse_size(t)?;
            if b == 0 {
                return Err(PipelineError::Config(format!("--{flag} must be positive, got {t}")));
            }
            Ok(b)
        })
        .transpose()
}

impl BudgetSpec {
    /// Resolves the flags: looks the board up, parses every figure, checks ranges.
    pub fn resolve(&self) -> Result<Budget> {
        let board = match &self.board {
            Some(name) => Some(load_boards(self.boards_file.as_deref())?.get(name)?.clone()),
            None => None,
        };
        let macs = self
            .macs
            .as_deref()
            .map(|t| match parse_count(t)? {
                0 => Err(PipelineError::Config(format!("--macs must be positive, got {t}"))),
                n => Ok(n),
            })
            .transpose()?;
        let latency_ms = match self.latency_ms.as_deref() {
            None => None,
            Some(t) => {
                let v: f64 = t
                    .trim()
                    .parse()
                    .map_err(|_| PipelineError::Config(format!("--latency-ms takes milliseconds, got '{t}'")))?;
                if !(v.is_finite() && v > 0.0) {
                    return Err(PipelineError::Config(format!("--latency-ms must be a positive number, got {t}")));
                }
                if board.is_none() {
                    return Err(PipelineError::Config(
                        "--latency-ms needs --board: latency depends on the board's clock and core".into(),
                    ));
                }
                Some(v)
            }
        };
        Ok(Budget {
            ram: size_flag("ram", &self.ram)?.or(board.as_ref().map(|b| b.sram_bytes)),
            flash: size_flag("flash", &self.flash)?.or(board.as_ref().map(|b| b.flash_bytes)),
            peak: size_flag("peak", &self.peak)?,
            size: size_flag("size", &self.size)?,
            macs,
            latency_ms,
            stack: size_flag("stack", &self.stack)?.unwrap_or(DEFAULT_STACK_BYTES),
            target: self.target,
            board,
        })
    }
}

/// Resolved limits (bytes, MACs, milliseconds); `None` is unbounded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Budget {
    pub board: Option<Board>,
    pub target: Target,
    /// Total RAM on the target.
    pub ram: Option<u64>,
    /// Total flash on the target.
    pub flash: Option<u64>,
    /// Activation peak alone.
    pub peak: Option<u64>,
    /// Weight bytes (int8 weights + int32 biases) alone.
    pub size: Option<u64>,
    pub macs: Option<u64>,
    pub latency_ms: Option<f64>,
    /// Stack reserved in RAM.
    pub stack: u64,
}

impl Budget {
    /// True when something is bounded.
    pub fn is_bounded(&self) -> bool {
        self.ram.is_some()
            || self.flash.is_some()
            || self.peak.is_some()
            || self.size.is_some()
            || self.macs.is_some()
            || self.latency_ms.is_some()
    }

    /// One line naming the limits, e.g. "nucleo-g031k8: RAM 8 KiB, flash 64 KiB, c target".
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if let Some(b) = &self.board {
            parts.push(format!("board {}", b.name));
        }
        for (name, v) in [("RAM", self.ram), ("flash", self.flash), ("peak", self.peak), ("weights", self.size)] {
            if let Some(v) = v {
                parts.push(format!("{name} {}", human_bytes(v as f64)));
            }
        }
        if let Some(m) = self.macs {
            parts.push(format!("{} MACs", human_count(m as f64)));
        }
        if let Some(l) = self.latency_ms {
            parts.push(format!("{l} ms"));
        }
        parts.push(format!("{} target", self.target));
        parts.join(", ")
    }

    /// The cost-model budget the pruner works to: the activation peak and weight bytes left once the
    /// fixed terms of `start` (scratch, stack, runtime, requantization, code) are taken off the totals.
    /// The fixed terms are those of the unpruned model, which only shrink with pruning, so a model
    /// within this budget fits the totals.
    pub fn prune_budget(&self, start: &Footprint) -> Result<mcufit_cost::Budget> {
        let mut b = mcufit_cost::Budget::default();
        let min = |a: Option<f64>, b: Option<f64>| match (a, b) {
            (Some(x), Some(y)) => Some(x.min(y)),
            (x, y) => x.or(y),
        };
        let ram_left = match self.ram {
            Some(r) => {
                let fixed = start.scratch + self.stack + start.runtime_ram;
                if fixed >= r {
                    return Err(PipelineError::DoesNotFit(format!(
                        "RAM {r} B leaves nothing for activations: conv scratch {} B + stack {} B + runtime {} B = {fixed} B \
                         (lower the stack with --stack, or give a larger --ram)",
                        start.scratch, self.stack, start.runtime_ram
                    )));
                }
                Some((r - fixed) as f64)
            }
            None => None,
        };
        let flash_left = match self.flash {
            Some(f) => {
                let fixed = start.code + start.requant;
                if fixed >= f {
                    return Err(PipelineError::DoesNotFit(format!(
                        "flash {f} B leaves nothing for weights: code/runtime {} B + requantization data {} B = {fixed} B",
                        start.code, start.requant
                    )));
                }
                Some((f - fixed) as f64)
            }
            None => None,
        };
        b.peak_memory = min(ram_left, self.peak.map(|p| p as f64));
        b.model_bytes = min(flash_left, self.size.map(|s| s as f64));
        b.macs = self.macs.map(|m| m as f64);
        b.latency_ms = self.latency_ms;
        Ok(b)
    }

    /// Every resource against its limit.
    pub fn check(&self, fp: &Footprint) -> FitCheck {
        let bytes = |t: &[(&str, u64)]| t.iter().map(|&(n, v)| Term { name: n.to_string(), value: v as f64 }).collect();
        let mut rows = vec![
            FitRow::new(
                "RAM",
                "B",
                fp.ram() as f64,
                self.ram.map(|v| v as f64),
                bytes(&[
                    ("activation arena", fp.arena),
                    ("conv scratch", fp.scratch),
                    ("stack", fp.stack),
                    ("runtime data", fp.runtime_ram),
                ]),
            ),
            FitRow::new(
                "flash",
                "B",
                fp.flash() as f64,
                self.flash.map(|v| v as f64),
                bytes(&[("weights + biases", fp.weights), ("requantization", fp.requant), ("code + runtime", fp.code)]),
            ),
            FitRow::new("peak activations", "B", fp.arena as f64, self.peak.map(|v| v as f64), vec![]),
            FitRow::new("weights", "B", fp.weights as f64, self.size.map(|v| v as f64), vec![]),
            FitRow::new("MACs", "MACs", fp.macs as f64, self.macs.map(|v| v as f64), vec![]),
        ];
        if let Some(ms) = fp.latency_ms {
            rows.push(FitRow::new("latency", "ms", ms, self.latency_ms, vec![]));
        }
        let fits = rows.iter().all(|r| r.fits);
        FitCheck { fits, link_error: None, measured: fp.measured, rows }
    }
}

/// One part of a total.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Term {
    pub name: String,
    pub value: f64,
}

/// One resource against its limit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FitRow {
    pub resource: String,
    pub unit: String,
    pub value: f64,
    pub limit: Option<f64>,
    /// What `value` is made of (RAM and flash).
    pub terms: Vec<Term>,
    pub fits: bool,
}

impl FitRow {
    fn new(resource: &str, unit: &str, value: f64, limit: Option<f64>, terms: Vec<Term>) -> Self {
        FitRow {
            resource: resource.into(),
            unit: unit.into(),
            value,
            limit,
            terms,
            fits: limit.is_none_or(|l| value <= l),
        }
    }
    /// `limit - value` (negative when over).
    pub fn margin(&self) -> Option<f64> {
        self.limit.map(|l| l - self.value)
    }
}

/// The verdict: every bounded resource within its limit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FitCheck {
    pub fits: bool,
    /// The linker refused the image for the target's memories (then `fits` is false whatever the rows say).
    #[serde(default)]
    pub link_error: Option<String>,
    /// The code/runtime terms come from a linked image (true) or the target's estimate (false).
    pub measured: bool,
    pub rows: Vec<FitRow>,
}

impl FitCheck {
    /// Records a failed link: the model does not fit, whatever the estimates said.
    pub fn with_link_error(mut self, why: String) -> Self {
        self.fits = false;
        self.link_error = Some(why);
        self
    }

    /// The rows over their limit (and a failed link), one sentence each.
    pub fn failures(&self) -> Vec<String> {
        self.link_error
            .iter()
            .cloned()
            .chain(self.rows.iter().filter(|r| !r.fits).map(|r| {
                let l = r.limit.unwrap_or_default();
                format!(
                    "{} {} over the limit {} by {}",
                    r.resource,
                    human(&r.unit, r.value),
                    human(&r.unit, l),
                    human(&r.unit, r.value - l)
                )
            }))
            .collect()
    }
}

/// Everything a model needs on a target, bytes (and MACs, ms).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Footprint {
    /// Activation arena: the memory-optimal peak.
    pub arena: u64,
    /// Static im2col scratch of the C convolution kernels (outside the arena).
    pub scratch: u64,
    pub stack: u64,
    pub runtime_ram: u64,
    /// int8 weights + int32 biases.
    pub weights: u64,
    /// Per-channel requantization data (multiplier and shift, 8 B per output channel).
    pub requant: u64,
    pub code: u64,
    pub macs: u64,
    pub latency_ms: Option<f64>,
    /// The code/runtime terms are measured from a linked image rather than estimated.
    pub measured: bool,
}

impl Footprint {
    pub fn ram(&self) -> u64 {
        self.arena + self.scratch + self.stack + self.runtime_ram
    }
    pub fn flash(&self) -> u64 {
        self.weights + self.requant + self.code
    }

    /// The footprint of `graph` as it stands, from the exact cost model (arena, weights,
    /// requantization, MACs, latency), the C kernels' scratch formula and the target's overhead
    /// estimate.
    pub fn of_graph(graph: &Graph, budget: &Budget) -> Result<Footprint> {
        let opts = |quant_params| CostOptions { memory: MemoryOptions::default(), quant_params };
        let plain = CostModel::new(graph, opts(false))?;
        let with_q = CostModel::new(graph, opts(true))?;
        let board = budget.board.as_ref();
        let usage = plain.usage(&plain.sizes(), board);
        // Only the bytes differ with requantization data counted: no second memory-order search.
        let bytes_q: f64 = with_q.op_costs(&with_q.sizes()).iter().map(|o| o.model_bytes).sum();
        let overhead = budget.target.overhead(plain.fused.ops.len());
        Ok(Footprint {
            arena: usage.peak_memory.round() as u64,
            scratch: match budget.target {
                Target::C => conv_scratch_bytes(graph)?,
                Target::Tflite => 0,
            },
            stack: budget.stack,
            runtime_ram: overhead.runtime_ram,
            weights: usage.model_bytes.round() as u64,
            requant: (bytes_q - usage.model_bytes).round().max(0.0) as u64,
            code: overhead.code_flash,
            macs: usage.macs.round() as u64,
            latency_ms: usage.latency_ms,
            measured: false,
        })
    }
}

/// The C export's convolution scratch for `graph`: the largest over its group-1 convolutions
/// ([`mcufit_export::c::conv_scratch_bytes`], the formula the C generator sizes it with).
pub fn conv_scratch_bytes(graph: &Graph) -> Result<u64> {
    let shapes = graph.shapes()?;
    let mut most = 0usize;
    for node in &graph.nodes {
        if let Op::Conv2d(c) = &node.op {
            let Some(&src) = node.inputs.first() else { continue };
            let in_c = shapes[src].c;
            if c.groups == 1 {
                most = most.max(mcufit_export::c::conv_scratch_bytes(c.kernel[0] * c.kernel[1] * in_c, in_c));
            }
        }
    }
    Ok(most as u64)
}

/// Bytes for people: `812 B`, `12.4 KiB`, `1.50 MiB`.
pub fn human_bytes(b: f64) -> String {
    let a = b.abs();
    if a >= 1024.0 * 1024.0 * 1024.0 {
        format!("{:.2} GiB", b / 1024.0 / 1024.0 / 1024.0)
    } else if a >= 1024.0 * 1024.0 {
        format!("{:.2} MiB", b / 1024.0 / 1024.0)
    } else if a >= 10.0 * 1024.0 {
        format!("{:.1} KiB", b / 1024.0)
    } else {
        format!("{b:.0} B")
    }
}

/// Counts for people: `812`, `12.5 K`, `2.66 M`.
pub fn human_count(n: f64) -> String {
    let a = n.abs();
    if a >= 1e9 {
        format!("{:.2} G", n / 1e9)
    } else if a >= 1e6 {
        format!("{:.2} M", n / 1e6)
    } else if a >= 1e4 {
        format!("{:.1} K", n / 1e3)
    } else {
        format!("{n:.0}")
    }
}

/// A value in its unit (`B`, `MACs`, `ms`), for people.
pub fn human(unit: &str, v: f64) -> String {
    match unit {
        "B" => human_bytes(v),
        "ms" => format!("{v:.2} ms"),
        "MACs" => format!("{} MACs", human_count(v)),
        _ => format!("{v:.0} {unit}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> BudgetSpec {
        BudgetSpec::default()
    }

    #[test]
    fn board_gives_totals_and_flags_override() {
        let b =
            BudgetSpec { board: Some("nucleo-f411re".into()), ram: Some("64KiB".into()), ..spec() }.resolve().unwrap();
        assert_eq!(b.ram, Some(65536));
        assert_eq!(b.flash, Some(512 * 1024));
        assert_eq!(b.stack, DEFAULT_STACK_BYTES);
        assert!(b.is_bounded());
        assert!(!spec().resolve().unwrap().is_bounded());
    }

    #[test]
    fn bad_values_are_refused_with_the_flag_named() {
        for (s, want) in [
            (BudgetSpec { latency_ms: Some("inf".into()), board: Some("nucleo-f411re".into()), ..spec() }, "latency"),
            (BudgetSpec { latency_ms: Some("5".into()), ..spec() }, "needs --board"),
            (BudgetSpec { ram: Some("0".into()), ..spec() }, "--ram must be positive"),
            (BudgetSpec { macs: Some("0".into()), ..spec() }, "--macs"),
            (BudgetSpec { board: Some("no-such-board".into()), ..spec() }, "unknown board"),
        ] {
            let e = s.resolve().unwrap_err().to_string();
            assert!(e.contains(want), "{e}");
        }
    }

    #[test]
    fn totals_count_every_term_and_the_prune_budget_leaves_room_for_them() {
        let g = mcufit_ir::zoo::mnist_ds().unwrap();
        let b = BudgetSpec { ram: Some("8KiB".into()), flash: Some("64KiB".into()), ..spec() }.resolve().unwrap();
        let fp = Footprint::of_graph(&g, &b).unwrap();
        assert_eq!(fp.ram(), fp.arena + fp.scratch + fp.stack + fp.runtime_ram);
        assert_eq!(fp.stack, DEFAULT_STACK_BYTES);
        assert!(fp.requant > 0 && fp.weights > 0 && fp.code > 0);
        let check = b.check(&fp);
        let ram = &check.rows[0];
        assert_eq!(ram.resource, "RAM");
        assert_eq!(ram.terms.iter().map(|t| t.value).sum::<f64>(), ram.value);
        let pb = b.prune_budget(&fp).unwrap();
        assert_eq!(pb.peak_memory, Some((8192 - fp.scratch - fp.stack - fp.runtime_ram) as f64));
        assert_eq!(pb.model_bytes, Some((65536 - fp.code - fp.requant) as f64));
        // A model exactly at the prune budget fits the totals.
        let at =
            Footprint { arena: pb.peak_memory.unwrap() as u64, weights: pb.model_bytes.unwrap() as u64, ..fp.clone() };
        assert!(b.check(&at).rows[..2].iter().all(|r| r.fits));
        let over = Footprint { arena: at.arena + 1, ..at };
        assert!(!b.check(&over).fits);
        assert_eq!(b.check(&over).failures().len(), 1);
    }

    #[test]
    fn paper_bounds_count_the_peak_and_weights_alone() {
        let g = mcufit_ir::zoo::mnist_ds().unwrap();
        let b = BudgetSpec { peak: Some("2500".into()), size: Some("4500".into()), ..spec() }.resolve().unwrap();
        let fp = Footprint::of_graph(&g, &b).unwrap();
        let pb = b.prune_budget(&fp).unwrap();
        assert_eq!((pb.peak_memory, pb.model_bytes), (Some(2500.0), Some(4500.0)));
        let check = b.check(&fp);
        assert!(check.rows.iter().find(|r| r.resource == "RAM").unwrap().limit.is_none());
    }

    #[test]
    fn a_ram_smaller_than_the_fixed_terms_says_so() {
        let g = mcufit_ir::zoo::mnist_ds().unwrap();
        let b = BudgetSpec { ram: Some("4KiB".into()), ..spec() }.resolve().unwrap();
        let fp = Footprint::of_graph(&g, &b).unwrap();
        let e = b.prune_budget(&fp).unwrap_err();
        assert!(e.is_does_not_fit());
        assert!(e.to_string().contains("stack 4096 B"), "{e}");
    }
}
