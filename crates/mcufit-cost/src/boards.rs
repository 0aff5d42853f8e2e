//! Board profiles and the per-core latency model.
//!
//! Boards live in `boards.toml` (compiled in); users add or override boards with their own TOML
//! file of the same form. Latency is the sum over ops of the core's cycles, over the clock. A core
//! with a `[cores.NAME.kernels]` table ([`KernelFit`], measured: the Cortex-M4) prices each op with a
//! model of mcufit's C kernels fitted to instruction counts (`docs/latency.md`); the others use
//! `cpm[kind] · MACs + cpe · elementwise + per_op`, estimates for CMSIS-NN-class int8 kernels meant
//! to be calibrated (the `calibrate_m4` example measures and fits one).

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::{CostError, Result};

/// Cycles per MAC for each kernel kind, per element for the rest, and a fixed cost per op; or,
/// where one was measured, a [`KernelFit`] of mcufit's own C kernels on the core, which replaces them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CycleModel {
    pub conv: f64,
    pub pointwise: f64,
    pub depthwise: f64,
    pub dense: f64,
    pub elementwise: f64,
    pub per_op: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kernels: Option<KernelFit>,
}

/// What one fused op asks of its kernel: the quantities the latency models are functions of.
/// Channel counts may be fractional (the pruning relaxation); the formulas are polynomials of
/// degree ≤ 2 in them, so [`crate::CostModel::gradient`]'s central difference stays exact.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize)]
pub struct OpWork {
    pub macs: f64,
    /// Element operations that are not MACs (pool windows, adds, copies).
    pub elementwise: f64,
    /// Output elements.
    pub outputs: f64,
    /// Output positions (h · w).
    pub pixels: f64,
    /// Output positions whose whole kernel window lies inside the input (no padding read).
    pub interior_pixels: f64,
    pub in_channels: f64,
    pub out_channels: f64,
    /// Kernel (or pool window) positions, kh · kw.
    pub taps: f64,
}

/// A linear model of the instructions of mcufit's C kernels (`mf_*` in `mcufit_kernels.c`) per op,
/// fitted to per-op instruction counts measured under QEMU (`-icount shift=0`) by
/// `cargo run --release -p mcufit-export --example calibrate_m4` (see `docs/latency.md`). Each
/// array holds the coefficients of the features listed at [`KernelFit::instructions`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KernelFit {
    /// Core cycles per executed instruction (1.0 takes QEMU's instruction count as the cycle
    /// count: a lower bound, since loads and taken branches cost more than one cycle).
    pub cycles_per_instruction: f64,
    pub conv: [f64; 6],
    pub depthwise: [f64; 6],
    pub dense: [f64; 3],
    pub max_pool: [f64; 3],
    pub avg_pool: [f64; 3],
    pub global_avg_pool: [f64; 3],
    pub add: [f64; 3],
    pub concat: [f64; 3],
    pub softmax: [f64; 3],
    /// Where the figures come from.
    pub source: String,
}

impl KernelFit {
    /// The fitted families (field names) in order.
    pub const FAMILIES: [&'static str; 9] =
        ["conv", "depthwise", "dense", "max_pool", "avg_pool", "global_avg_pool", "add", "concat", "softmax"];

    /// The family of an op kind and the features its instructions are linear in:
    /// - conv and 1x1 conv (`mf_conv_fast`, two output pixels at a time, output channels in pairs):
    ///   `[p·(o/2+¼)·(K+1.5), p·(o/2+¼), p·K, p·taps, p, 1]`, `p = ⌈pixels/2⌉`, `K = taps·in`
    ///   (the im2col row, padded to a multiple of 4 by 1.5 on average);
    /// - depthwise (`mf_depthwise_fast`): `[interior·c·taps, border·c·taps, pixels·c, border·taps,
    ///   pixels, 1]`;
    /// - dense: `[in·out, out, 1]`; pools, add, concat, softmax: `[elementwise, outputs, 1]`.
    ///
    /// `None` for kinds that run no kernel (input, reshape).
    pub fn features(kind: &str, w: &OpWork) -> Option<(&'static str, Vec<f64>)> {
        let simple = |f: &'static str| Some((f, vec![w.elementwise, w.outputs, 1.0]));
        match kind {
            "conv2d" | "conv2d_1x1" => {
                let p = (w.pixels / 2.0).ceil();
                let k = w.taps * w.in_channels;
                let pairs = w.out_channels / 2.0 + 0.25;
                Some(("conv", vec![p * pairs * (k + 1.5), p * pairs, p * k, p * w.taps, p, 1.0]))
            }
            "depthwise_conv2d" => {
                let (c, t) = (w.out_channels, w.taps);
                let border = w.pixels - w.interior_pixels;
                Some((
                    "depthwise",
                    vec![w.interior_pixels * c * t, border * c * t, w.pixels * c, border * t, w.pixels, 1.0],
                ))
            }
            "dense" => Some(("dense", vec![w.in_channels * w.out_channels, w.out_channels, 1.0])),
            "max_pool2d" => simple("max_pool"),
            "avg_pool2d" => simple("avg_pool"),
            "global_avg_pool" => simple("global_avg_pool"),
            "add" => simple("add"),
            "concat" => simple("concat"),
            "softmax" => simple("softmax"),
            _ => None,
        }
    }

    /// The coefficients of a family named by [`KernelFit::features`] (empty for another name).
    pub fn coefficients(&self, family: &str) -> &[f64] {
        match family {
            "conv" => &self.conv,
            "depthwise" => &self.depthwise,
            "dense" => &self.dense,
            "max_pool" => &self.max_pool,
            "avg_pool" => &self.avg_pool,
            "global_avg_pool" => &self.global_avg_pool,
            "add" => &self.add,
            "concat" => &self.concat,
            "softmax" => &self.softmax,
            _ => &[],
        }
    }

    /// The coefficients of a family (see [`KernelFit::FAMILIES`]), to fit them.
    pub fn coefficients_mut(&mut self, family: &str) -> Option<&mut [f64]> {
        Some(match family {
            "conv" => &mut self.conv[..],
            "depthwise" => &mut self.depthwise[..],
            "dense" => &mut self.dense[..],
            "max_pool" => &mut self.max_pool[..],
            "avg_pool" => &mut self.avg_pool[..],
            "global_avg_pool" => &mut self.global_avg_pool[..],
            "add" => &mut self.add[..],
            "concat" => &mut self.concat[..],
            "softmax" => &mut self.softmax[..],
            _ => return None,
        })
    }

    /// Instructions of one op of `kind`: the family's coefficients dotted with
    /// [`KernelFit::features`]; 0 for kinds that run no kernel.
    pub fn instructions(&self, kind: &str, w: &OpWork) -> f64 {
        let Some((family, f)) = Self::features(kind, w) else { return 0.0 };
        self.coefficients(family).iter().zip(&f).map(|(a, b)| a * b).sum()
    }
}

impl CycleModel {
    /// Cycles of one op of `kind` (the fitted kernel model when the core has one).
    pub fn cycles(&self, kind: &str, w: &OpWork) -> f64 {
        if let Some(k) = &self.kernels {
            return k.cycles_per_instruction * k.instructions(kind, w);
        }
        let cpm = match kind {
            "conv2d_1x1" => self.pointwise,
            "conv2d" => self.conv,
            "depthwise_conv2d" => self.depthwise,
            "dense" => self.dense,
            _ => 0.0,
        };
        cpm * w.macs + self.elementwise * w.elementwise + self.per_op
    }
}

/// One microcontroller board.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Board {
    #[serde(default)]
    pub name: String,
    pub title: String,
    pub mcu: String,
    /// Key of the core's cycle model in `[cores]`.
    pub core: String,
    pub clock_mhz: f64,
    pub sram_bytes: u64,
    pub flash_bytes: u64,
    /// Where the figures come from.
    pub source: String,
    /// Filled in from `[cores]` when a board file is loaded (a `cycles` table there is overwritten);
    /// kept when a resolved board is serialized and read back (a fit directory's `fit.json`).
    #[serde(default = "no_cycles")]
    pub cycles: CycleModel,
}

fn no_cycles() -> CycleModel {
    CycleModel { conv: 0.0, pointwise: 0.0, depthwise: 0.0, dense: 0.0, elementwise: 0.0, per_op: 0.0, kernels: None }
}

impl Board {
    pub fn clock_hz(&self) -> f64 {
        self.clock_mhz * 1e6
    }
}

#[derive(Debug, Deserialize)]
struct BoardFile {
    #[serde(default)]
    cores: BTreeMap<String, CycleModel>,
    #[serde(default)]
    boards: BTreeMap<String, Board>,
}

/// The known boards.
#[derive(Debug, Clone)]
pub struct Boards {
    cores: BTreeMap<String, CycleModel>,
    boards: BTreeMap<String, Board>,
}

const BUILT_IN: &str = include_str!("../boards.toml");

impl Boards {
    /// The boards shipped with mcufit (parsed once per process, then cloned).
    pub fn builtin() -> Self {
        static PARSED: std::sync::OnceLock<Boards> = std::sync::OnceLock::new();
        PARSED
            .get_or_init(|| {
                let mut b = Boards { cores: BTreeMap::new(), boards: BTreeMap::new() };
                b.merge_text(BUILT_IN, "built-in boards.toml").expect("built-in boards.toml is valid");
                b
            })
            .clone()
    }

    /// Built-in boards plus a user file (its boards and cores add to or replace the built-in ones).
    pub fn with_file(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path)
            .map_err(|e| CostError::BoardFile { path: path.display().to_string(), msg: e.to_string() })?;
        Self::with_text(&text, &path.display().to_string())
    }

    /// Built-in boards plus the boards file `text` (`origin` names it in errors), as [`Boards::with_file`].
    pub fn with_text(text: &str, origin: &str) -> Result<Self> {
        let mut b = Self::builtin();
        b.merge_text(text, origin)?;
        Ok(b)
    }

    fn merge_text(&mut self, text: &str, path: &str) -> Result<()> {
        let err = |msg: String| CostError::BoardFile { path: path.into(), msg };
        let file: BoardFile = toml::from_str(text).map_err(|e| err(e.to_string()))?;
        self.cores.extend(file.cores);
        for (name, mut board) in file.boards {
            board.cycles = self.cores.get(&board.core).cloned().ok_or_else(|| {
                err(format!("board '{name}' uses core '{}', which has no [cores.{}] table", board.core, board.core))
            })?;
            if board.sram_bytes == 0 || board.flash_bytes == 0 || board.clock_mhz.is_nan() || board.clock_mhz <= 0.0 {
                return Err(err(format!("board '{name}' needs positive sram_bytes, flash_bytes and clock_mhz")));
            }
            board.name = name.clone();
            self.boards.insert(name, board);
        }
        Ok(())
    }

    pub fn get(&self, name: &str) -> Result<&Board> {
        self.boards.get(name).ok_or_else(|| CostError::UnknownBoard {
            name: name.into(),
            known: self.boards.keys().cloned().collect::<Vec<_>>().join(", "),
        })
    }

    pub fn iter(&self) -> impl Iterator<Item = &Board> {
        self.boards.values()
    }
}
