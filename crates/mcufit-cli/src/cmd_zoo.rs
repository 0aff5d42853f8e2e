//! `mcufit zoo` and `mcufit boards`.

use std::process::ExitCode;

use anyhow::Result;
use clap::Args;
use mcufit_pipeline::budget::{human_bytes, load_boards};

use crate::args::BoardsArgs;

#[derive(Args, Debug)]
pub struct ZooCmd {
    /// Print this zoo model's model file (JSON) to edit and use as MODEL.
    #[arg(long, value_name = "NAME")]
    pub show: Option<String>,
    /// Print the list as JSON.
    #[arg(long)]
    pub json: bool,
}

pub fn zoo(args: &ZooCmd) -> Result<ExitCode> {
    if let Some(name) = &args.show {
        println!("{}", mcufit_pipeline::config::zoo::to_json(name.trim_start_matches("zoo:"))?);
        return Ok(ExitCode::SUCCESS);
    }
    if args.json {
        let list: Vec<_> = mcufit_pipeline::config::zoo::ENTRIES
            .iter()
            .map(|e| serde_json::json!({"name": format!("zoo:{}", e.name), "description": e.description}))
            .collect();
        println!("{}", serde_json::to_string_pretty(&list)?);
        return Ok(ExitCode::SUCCESS);
    }
    for e in mcufit_pipeline::config::zoo::ENTRIES {
        println!("zoo:{:<18} {}", e.name, e.description);
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(Args, Debug)]
pub struct BoardsCmd {
    #[command(flatten)]
    pub boards: BoardsArgs,
    /// Print the profiles as JSON.
    #[arg(long)]
    pub json: bool,
}

pub fn boards(args: &BoardsCmd) -> Result<ExitCode> {
    let boards = load_boards(args.boards.boards.as_deref())?;
    if args.json {
        let list: Vec<_> = boards.iter().collect();
        println!("{}", serde_json::to_string_pretty(&list)?);
        return Ok(ExitCode::SUCCESS);
    }
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
