//! Board profiles and the per-core latency model.
//!
//! Boards live in `boards.toml` (compiled in); users add or override boards with their own TOML
//! file of the same form. Latency is `Σ ops (cpm[kind] · MACs + cpe · elementwise + per_op)`
//! cycles over the clock. The cycles-per-MAC defaults are estimates for CMSIS-NN-class int8 kernels
//! and are meant to be calibrated: measure one model on the board (or on qemu with instruction
//! counts) and put the measured figures in a `[cores.NAME]` table of your own file.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::{CostError, Result};

/// Cycles per MAC for each kernel kind, per element for the rest, and a fixed cost per op.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CycleModel {
    pub conv: f64,
    pub pointwise: f64,
    pub depthwise: f64,
    pub dense: f64,
    pub elementwise: f64,
    pub per_op: f64,
}

impl CycleModel {
    pub fn cycles(&self, kind: &str, macs: f64, elementwise: f64) -> f64 {
        let cpm = match kind {
            "conv2d_1x1" => self.pointwise,
            "conv2d" => self.conv,
            "depthwise_conv2d" => self.depthwise,
            "dense" => self.dense,
            _ => 0.0,
        };
        cpm * macs + self.elementwise * elementwise + self.per_op
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
    CycleModel { conv: 0.0, pointwise: 0.0, depthwise: 0.0, dense: 0.0, elementwise: 0.0, per_op: 0.0 }
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
    /// The boards shipped with mcufit.
    pub fn builtin() -> Self {
        let mut b = Boards { cores: BTreeMap::new(), boards: BTreeMap::new() };
        b.merge_text(BUILT_IN, "built-in boards.toml").expect("built-in boards.toml is valid");
        b
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
