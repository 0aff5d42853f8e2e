//! Budget flags shared by analyze / compress / export: a board, or explicit limits.

use std::process::ExitCode;

use anyhow::Result;
use clap::Args;
use mcufit_cost::{parse_count, parse_size, Board, Boards, Budget, Resource, Usage};
use serde::Serialize;

#[derive(Args, Debug, Clone, Default)]
pub struct BoardsArgs {
    /// Extra board profiles (TOML, same form as the built-in boards.toml).
    #[arg(long, value_name = "FILE")]
    pub boards: Option<std::path::PathBuf>,
}

pub fn load_boards(args: &BoardsArgs) -> Result<Boards> {
    Ok(match &args.boards {
        Some(p) => Boards::with_file(p)?,
        None => Boards::builtin(),
    })
}

pub fn list_boards(args: &BoardsArgs) -> Result<ExitCode> {
    let boards = load_boards(args)?;
    println!("{:<22} {:<22} {:<14} {:>8} {:>10} {:>10}", "name", "mcu", "core", "MHz", "SRAM", "flash");
    for b in boards.iter() {
        println!(
            "{:<22} {:<22} {:<14} {:>8} {:>10} {:>10}",
            b.name,
            b.mcu,
            b.core,
            b.clock_mhz,
            human_bytes(b.sram_bytes as f64),
            human_bytes(b.flash_bytes as f64)
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// A board and/or explicit limits; explicit limits override the board's SRAM/flash.
#[derive(Args, Debug, Clone, Default)]
pub struct BudgetArgs {
    /// Target board (see `mcufit boards`): its SRAM bounds peak memory, its flash the model size.
    #[arg(long)]
    pub board: Option<String>,
    /// Peak activation memory limit, e.g. 64KiB, 2500, 1MiB.
    #[arg(long, value_name = "BYTES")]
    pub ram: Option<String>,
    /// Model size limit, e.g. 256KiB.
    #[arg(long, value_name = "BYTES")]
    pub flash: Option<String>,
    /// MAC limit, e.g. 5M.
    #[arg(long, value_name = "N")]
    pub macs: Option<String>,
    /// Latency limit in milliseconds (needs --board for the clock and cycle model).
    #[arg(long, value_name = "MS")]
    pub latency_ms: Option<f64>,
    #[command(flatten)]
    pub boards: BoardsArgs,
}

impl BudgetArgs {
    /// The board (if any) and the budget these flags describe.
    pub fn resolve(&self) -> Result<(Option<Board>, Budget)> {
        let board = match &self.board {
            Some(name) => Some(load_boards(&self.boards)?.get(name)?.clone()),
            None => None,
        };
        let mut budget = board.as_ref().map(Budget::from_board).unwrap_or_default();
        if let Some(r) = &self.ram {
            budget.peak_memory = Some(parse_size(r)? as f64);
        }
        if let Some(f) = &self.flash {
            budget.model_bytes = Some(parse_size(f)? as f64);
        }
        if let Some(m) = &self.macs {
            budget.macs = Some(parse_count(m)? as f64);
        }
        if let Some(l) = self.latency_ms {
            if board.is_none() {
                anyhow::bail!("--latency-ms needs --board: latency depends on the board's clock and core");
            }
            if !(l > 0.0) {
                anyhow::bail!("--latency-ms must be positive, got {l}");
            }
            budget.latency_ms = Some(l);
        }
        Ok((board, budget))
    }
}

/// One resource against its limit.
#[derive(Debug, Clone, Serialize)]
pub struct Fit {
    pub resource: Resource,
    pub value: f64,
    pub limit: f64,
    pub fits: bool,
    /// limit - value (negative when over).
    pub margin: f64,
}

pub fn fits(usage: &Usage, budget: &Budget) -> Vec<Fit> {
    Resource::ALL
        .iter()
        .filter_map(|&r| {
            let limit = budget.limit(r)?;
            let value = usage.get(r)?;
            Some(Fit { resource: r, value, limit, fits: value <= limit, margin: limit - value })
        })
        .collect()
}

pub fn human_bytes(b: f64) -> String {
    if b >= 1024.0 * 1024.0 {
        format!("{:.2} MiB", b / 1024.0 / 1024.0)
    } else if b >= 10.0 * 1024.0 {
        format!("{:.1} KiB", b / 1024.0)
    } else {
        format!("{b:.0} B")
    }
}

pub fn human_count(n: f64) -> String {
    if n >= 1e6 {
        format!("{:.2} M", n / 1e6)
    } else if n >= 1e4 {
        format!("{:.1} K", n / 1e3)
    } else {
        format!("{n:.0}")
    }
}

/// A resource value in its unit, for people.
pub fn human(r: Resource, v: f64) -> String {
    match r {
        Resource::PeakMemory | Resource::ModelBytes => human_bytes(v),
        Resource::Macs => human_count(v),
        Resource::Latency => format!("{v:.2} ms"),
    }
}
