//! `mcufit export`: int8-quantize a trained model directory and write a `.tflite` or a standalone C
//! library; check it against a budget (the C library is linked for a Cortex-M4 with the budget's RAM
//! and flash) and, with `--verify`, against the int8 reference in TFLM, host gcc and QEMU.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::{Args, ValueEnum};
use mcufit_pipeline::budget::{human_bytes, human_count};
use mcufit_pipeline::deploy::{VerifyOptions, VerifyReport, DEFAULT_CALIBRATION};
use mcufit_pipeline::tasks::{export_dir, ExportReport, Format};

use crate::args::{BudgetArgs, DirData};

#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
pub enum FormatArg {
    /// A .tflite flatbuffer (int8 builtin ops) for TFLite Micro / LiteRT.
    Tflite,
    /// A standalone C99 library (mcufit_model.[ch], mcufit_kernels.[ch]) with one static arena.
    C,
}

#[derive(Args, Debug)]
pub struct ExportCmd {
    /// A model directory written by train, compress or fit, or an int8 .tflite (exported as it is;
    /// --verify needs --data for real inputs and also runs the original file in TFLite Micro).
    pub model_dir: PathBuf,
    #[arg(long, value_enum)]
    pub format: FormatArg,
    /// The .tflite file to write, or the directory for the C library.
    #[arg(long)]
    pub out: PathBuf,
    /// Replace an existing --out.
    #[arg(long)]
    pub force: bool,
    #[command(flatten)]
    pub budget: BudgetArgs,
    /// Training samples (spread evenly over the training split) that calibrate activation ranges.
    #[arg(long, default_value_t = DEFAULT_CALIBRATION)]
    pub calibration: usize,
    /// Check the export: int8 vs float test accuracy, TFLite Micro and host-gcc C outputs against
    /// the int8 reference, arenas against the predicted peak, Cortex-M4 (QEMU) instructions/MAC.
    #[arg(long)]
    pub verify: bool,
    /// Real inputs for the TFLM and host C checks (test split, then validation, then training).
    #[arg(long, default_value_t = 1000)]
    pub verify_inputs: usize,
    /// Inputs run on the Cortex-M4 under QEMU (they are compiled into the image).
    #[arg(long, default_value_t = 10)]
    pub m4_inputs: usize,
    #[command(flatten)]
    pub data: DirData,
    /// Print the results as JSON.
    #[arg(long)]
    pub json: bool,
    /// Also write the results as JSON to this file (an existing one is replaced only with --force).
    #[arg(long, value_name = "FILE")]
    pub report: Option<PathBuf>,
}

pub fn run(args: &ExportCmd) -> Result<ExitCode> {
    let budget = args.budget.spec().resolve()?;
    for path in std::iter::once(&args.out).chain(&args.report) {
        if path.exists() && !args.force {
            anyhow::bail!("{} exists; give --force to replace it", path.display());
        }
    }
    let format = match args.format {
        FormatArg::Tflite => Format::Tflite,
        FormatArg::C => Format::C,
    };
    let verify =
        args.verify.then_some(VerifyOptions { inputs: args.verify_inputs.max(1), m4_inputs: args.m4_inputs.max(1) });
    let r = export_dir(
        &args.model_dir,
        args.data.data.as_deref(),
        args.data.seed,
        format,
        &args.out,
        &budget,
        args.calibration,
        verify,
    )?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&r)?);
    } else {
        print_report(&r, &budget.describe());
    }
    if let Some(path) = &args.report {
        mcufit_pipeline::modeldir::write_atomic(path, serde_json::to_string_pretty(&r)?.as_bytes())?;
    }
    let mut code = ExitCode::SUCCESS;
    if let Some(f) = r.fit.as_ref().filter(|f| !f.fits) {
        eprintln!("error: model '{}' does not fit: {}", r.model, f.failures().join("; "));
        code = ExitCode::from(1);
    }
    if r.verify.as_ref().is_some_and(|v| !v.passed) {
        eprintln!("error: verification failed");
        code = ExitCode::from(1);
    }
    Ok(code)
}

fn print_report(r: &ExportReport, describe: &str) {
    if r.calibration_samples > 0 {
        println!(
            "{}: int8 {:?} export, {} ops, {} MACs, calibrated on {} training samples of {}",
            r.model,
            r.format,
            r.ops - 1,
            human_count(r.macs as f64),
            r.calibration_samples,
            r.data
        );
    } else {
        println!("{}: int8 {:?} export, {} ops, {} MACs", r.model, r.format, r.ops - 1, human_count(r.macs as f64));
    }
    for n in &r.notes {
        println!("  note: {n}");
    }
    println!("  input: scale {:e}, zero point {}", r.input_scale, r.input_zero_point);
    println!("  operator order (memory-optimal, fused-op indices): {:?}", r.order);
    println!("  predicted peak activation memory: {} B", r.predicted_peak_bytes);
    println!("  .tflite: {} ({} B)", human_bytes(r.tflite_bytes as f64), r.tflite_bytes);
    println!(
        "  C: arena {} B ({} the predicted peak), conv scratch {} B (outside the arena), constants {}",
        r.c_arena_bytes,
        if r.c_arena_bytes == r.predicted_peak_bytes { "=" } else { "!=" },
        r.c_scratch_bytes,
        human_bytes(r.c_const_bytes as f64)
    );
    println!("  wrote {}", r.out.display());
    if let Some(f) = &r.fit {
        crate::cmd_analyze::print_fit(f, describe);
    }
    if let Some(n) = &r.fit_note {
        println!("  note: {n}");
    }
    if let Some(a) = &r.accuracy {
        println!(
            "  accuracy on {} test examples: float {:.2} %, int8 {:.2} % ({:+.2} points)",
            a.int8.examples,
            100.0 * a.float.accuracy,
            100.0 * a.int8.accuracy,
            100.0 * (a.int8.accuracy - a.float.accuracy)
        );
    }
    if let Some(v) = &r.verify {
        print_verify(v);
    }
}

/// The verification lines (shared with `fit`).
pub fn print_verify(v: &VerifyReport) {
    if let Some(a) = &v.tflm {
        print!(
            "  TFLite Micro: {} real inputs, {} mismatches vs the int8 reference (max diff {})",
            a.inputs, a.mismatches, a.max_diff
        );
        if let Some((total, head, _)) = v.tflm_arena {
            print!("; arena head {head} B vs predicted peak {} B (total {total} B)", v.predicted_peak);
        }
        println!();
    }
    if let Some(a) = &v.original_tflm {
        print!(
            "  TFLite Micro, original file: {} real inputs, {} mismatches vs the int8 reference (max diff {})",
            a.inputs, a.mismatches, a.max_diff
        );
        if let Some((total, head, _)) = v.original_tflm_arena {
            print!("; TFLM's own plan: arena head {head} B (total {total} B)");
        }
        println!();
    }
    if let Some(a) = &v.c_host {
        println!("  C, host gcc: {} real inputs, {} mismatches (max diff {})", a.inputs, a.mismatches, a.max_diff);
    }
    if let Some(m) = &v.m4 {
        if let Some(a) = &m.agreement {
            println!(
                "  Cortex-M4 (QEMU mps2-an386): {} inputs, {} mismatches; {} instructions/inference = {:.3} instructions/MAC",
                a.inputs, a.mismatches, m.instructions, m.instructions_per_mac
            );
        }
        if let Some(p) = m.pointwise_instructions_per_mac {
            println!(
                "    pointwise convs: {} instructions for {} MACs = {p:.3} instructions/MAC",
                m.pointwise_instructions, m.pointwise_macs
            );
        }
        println!("    image: {} B flash, {} B RAM (incl. the stack)", m.flash_bytes, m.ram_bytes);
        for o in &m.per_op {
            let per =
                if o.macs > 0 { format!("{:.3}/MAC", o.instructions as f64 / o.macs as f64) } else { String::new() };
            println!(
                "    op {:>3} {:<24} {:<18} {:>9} MACs {:>10} instr {per}",
                o.index, o.name, o.kind, o.macs, o.instructions
            );
        }
    }
    for s in &v.skipped {
        println!("  ! not checked: {s}");
    }
    for p in &v.problems {
        println!("  ! {p}");
    }
    let verdict = match (v.passed, v.skipped.is_empty()) {
        (true, true) => "passed",
        (true, false) => "passed for the checks that ran (see 'not checked')",
        (false, _) => "FAILED",
    };
    println!("  verification: {verdict}");
}
