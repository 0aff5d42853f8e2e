//! `mcufit`: make a CNN fit a microcontroller. The commands parse arguments and print; the work is
//! in `mcufit-pipeline`. Exit codes: 0 done (and fits), 1 does not fit / verification failed, 2 error.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod args;
mod cmd_analyze;
mod cmd_compress;
mod cmd_export;
mod cmd_fit;
mod cmd_search;
mod cmd_train;
mod cmd_zoo;

/// Training allocates and frees activation-sized buffers every step; glibc returns large blocks to
/// the OS and page-faults them back in (~8 % of a training step on mnist-cnn), mimalloc keeps them.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(name = "mcufit", version, about = "Make a convolutional network fit a microcontroller", long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Train, compress, quantize, export and verify in one go, with an HTML report.
    Fit(cmd_fit::FitCmd),
    /// List the built-in models (use them as zoo:NAME), or print one's model file (--show NAME).
    Zoo(cmd_zoo::ZooCmd),
    /// List the board profiles (built-in, plus --boards FILE).
    Boards(cmd_zoo::BoardsCmd),
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
    /// Search architectures that fit the budget (evolution + pruning), with a resumable trial store.
    Search(cmd_search::SearchCmd),
    /// Write report.html for a fit directory.
    Report(cmd_fit::ReportCmd),
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Fit(a) => cmd_fit::run(&a),
        Command::Zoo(a) => cmd_zoo::zoo(&a),
        Command::Boards(a) => cmd_zoo::boards(&a),
        Command::Analyze(a) => cmd_analyze::run(&a),
        Command::Train(a) => cmd_train::train(&a),
        Command::Compress(a) => cmd_compress::run(&a),
        Command::Eval(a) => cmd_train::eval(&a),
        Command::Export(a) => cmd_export::run(&a),
        Command::Report(a) => cmd_fit::report(&a),
        Command::Search(a) => cmd_search::run(&a),
    }
}

fn main() -> ExitCode {
    // Die quietly on a closed pipe (`mcufit analyze ... | head`) like other Unix tools.
    #[cfg(unix)]
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let json = std::env::args().any(|a| a == "--json");
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        // Under --json a usage error is JSON too (same exit code 2); --help and --version print as usual.
        Err(e) if json && e.use_stderr() => {
            let text = e.to_string();
            let head = text.split("\n\n").next().unwrap_or_default();
            let first = head.trim_start_matches("error: ").split_whitespace().collect::<Vec<_>>().join(" ");
            println!("{}", serde_json::json!({"error": first, "kind": "usage", "usage": e.render().to_string()}));
            return ExitCode::from(2);
        }
        Err(e) => e.exit(),
    };
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            let misfit = e.downcast_ref::<mcufit_pipeline::PipelineError>().is_some_and(|p| p.is_does_not_fit());
            if json {
                // Under --json the error is JSON too, on stdout where the caller reads the result.
                let kind = if misfit { "does_not_fit" } else { "error" };
                println!("{}", serde_json::json!({"error": format!("{e:#}"), "kind": kind}));
            } else {
                eprintln!("error: {e:#}");
            }
            ExitCode::from(if misfit { 1 } else { 2 })
        }
    }
}
