//! `mcufit`: make a CNN fit a microcontroller. Each subcommand lives in its own module.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod cmd_analyze;
mod cmd_compress;
mod cmd_export;
mod cmd_train;
mod datasets;
mod resources;

#[derive(Parser)]
#[command(name = "mcufit", version, about = "Make a convolutional network fit a microcontroller", long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// List the built-in models (use them as zoo:NAME).
    Zoo,
    /// List the board profiles (built-in, plus --boards FILE).
    Boards(resources::BoardsArgs),
    /// Cost of a model on a microcontroller: per-layer table, memory-optimal order, fits or not.
    Analyze(cmd_analyze::AnalyzeArgs),
    /// Train a model on a data set (the built-in digits when no --data is given).
    Train(cmd_train::TrainCmd),
    /// Prune a model while it trains until it fits a board or budget; writes the smaller dense model.
    Compress(cmd_compress::CompressCmd),
    /// Test accuracy of a trained model directory (per class too).
    Eval(cmd_train::EvalCmd),
    /// Int8-quantize a trained model directory and export it as .tflite or standalone C.
    Export(cmd_export::ExportCmd),
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Zoo => {
            for e in mcufit_ir::zoo::ENTRIES {
                println!("zoo:{:<18} {}", e.name, e.description);
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Boards(args) => resources::list_boards(&args),
        Command::Analyze(args) => cmd_analyze::run(&args),
        Command::Train(args) => cmd_train::train(&args),
        Command::Compress(args) => cmd_compress::run(&args),
        Command::Eval(args) => cmd_train::eval(&args),
        Command::Export(args) => cmd_export::run(&args),
    }
}

fn main() -> ExitCode {
    // Die quietly on a closed pipe (`mcufit analyze ... | head`) like other Unix tools.
    #[cfg(unix)]
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}
