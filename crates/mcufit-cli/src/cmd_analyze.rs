//! `mcufit analyze`: the exact cost of a model on a microcontroller, and every term of its fit.

use std::process::ExitCode;

use anyhow::Result;
use clap::Args;
use mcufit_pipeline::budget::{human, human_bytes, human_count};
use mcufit_pipeline::config::HeadSpec;
use mcufit_pipeline::tasks::{analyze, AnalyzeOptions};
use mcufit_pipeline::FitCheck;

use crate::args::BudgetArgs;

#[derive(Args, Debug)]
pub struct AnalyzeArgs {
    /// zoo:NAME, a model .json file, a model directory (with model.json), or a .tflite / .onnx file.
    pub model: String,
    #[command(flatten)]
    pub budget: BudgetArgs,
    /// Let an add overwrite an input that dies at it (CMSIS-NN/TFLM-style in-place add).
    #[arg(long)]
    pub in_place_add: bool,
    /// Do not count the network input tensor in peak memory (when it lives in its own buffer).
    #[arg(long)]
    pub exclude_input: bool,
    /// Also list the depth-pruning cut points with this head on each (ds:32,16, gap, conv:C): every
    /// truncated model's params, bytes, MACs and peak.
    #[arg(long, value_name = "HEAD", num_args = 0..=1, default_missing_value = "ds:32,16")]
    pub cuts: Option<String>,
    /// Print one JSON object instead of tables.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: &AnalyzeArgs) -> Result<ExitCode> {
    let graph = mcufit_pipeline::load_model(&args.model)?;
    let budget = args.budget.spec().resolve()?;
    let a = analyze(
        &graph,
        &budget,
        AnalyzeOptions { in_place_add: args.in_place_add, exclude_input: args.exclude_input },
    )?;
    let code = if a.fit.fits { ExitCode::SUCCESS } else { ExitCode::from(1) };
    if let Some(head) = &args.cuts {
        let head: HeadSpec = head.parse().map_err(|e| anyhow::anyhow!("--cuts: {e}"))?;
        let table = mcufit_pipeline::tasks::cut_table(&graph, &head, &budget)?;
        if args.json {
            println!("{}", serde_json::to_string_pretty(&table)?);
        } else {
            print!("{}", table.summary());
        }
        return Ok(code);
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&a)?);
        return Ok(code);
    }
    println!("{} — {} kernels after fusing batch norm / activations / reshapes", a.model, a.layers.len());
    println!();
    println!(
        "{:>3}  {:<26} {:<17} {:>12} {:>9} {:>11} {:>10}",
        "#", "layer (memory-optimal order)", "kind", "output", "params", "MACs", "live"
    );
    for (k, l) in a.layers.iter().enumerate() {
        let o = &l.cost;
        let mark = if k == a.peak_step { " ◀ peak" } else { "" };
        println!(
            "{:>3}  {:<26} {:<17} {:>12} {:>9} {:>11} {:>10}{mark}",
            k,
            truncate(&o.name, 26),
            o.kind,
            o.shape.to_string(),
            human_count(o.params),
            human_count(o.macs),
            human_bytes(l.live_bytes),
        );
    }
    println!();
    println!("params        {:>12}   ({:.0})", human_count(a.params), a.params);
    println!("weights       {:>12}   int8 weights + int32 biases", human_bytes(a.model_bytes));
    println!("MACs          {:>12}   ({:.0})", human_count(a.macs), a.macs);
    let exact = if a.peak_memory_exact {
        "exact".to_string()
    } else {
        format!(
            "upper bound, within {} of the lower bound",
            human_bytes((a.peak_memory_bytes - a.peak_memory_lower_bound).max(0.0))
        )
    };
    println!(
        "peak memory   {:>12}   ({exact}) at '{}' (input {}, in-place add {})",
        human_bytes(a.peak_memory_bytes),
        a.layers[a.peak_step].cost.name,
        if args.exclude_input { "excluded" } else { "counted" },
        if args.in_place_add { "on" } else { "off" }
    );
    if let (Some(ms), Some(b)) = (a.latency_ms, &a.board) {
        println!("latency       {:>12}   on {b} (uncalibrated cycle model)", format!("{ms:.2} ms"));
    }
    print_fit(&a.fit, &budget.describe());
    Ok(code)
}

/// The fit table: every resource with its terms, value, limit and margin.
pub fn print_fit(fit: &FitCheck, describe: &str) {
    println!();
    println!("on the target ({describe}){}:", if fit.measured { ", measured from the linked image" } else { "" });
    for r in &fit.rows {
        let (verdict, margin) = match (r.limit, r.margin()) {
            (Some(l), Some(m)) if m >= 0.0 => ("fits", format!("{} spare ({:.0} %)", human(&r.unit, m), 100.0 * m / l)),
            (Some(_), Some(m)) => ("DOES NOT FIT", format!("{} over", human(&r.unit, -m))),
            _ => ("", String::new()),
        };
        let limit = r.limit.map(|l| format!("of {}", human(&r.unit, l))).unwrap_or_default();
        println!("  {:<17} {:>12} {:<16} {verdict:<13} {margin}", r.resource, human(&r.unit, r.value), limit);
        if !r.terms.is_empty() {
            let terms: Vec<String> =
                r.terms.iter().map(|t| format!("{} {}", t.name, human(&r.unit, t.value))).collect();
            println!("  {:<17} = {}", "", terms.join(" + "));
        }
    }
    if let Some(e) = &fit.link_error {
        println!("  Cortex-M link: DOES NOT FIT: {e}");
    }
    if !fit.measured {
        println!("  (code, runtime and stack are the target's estimates until the model is linked: `mcufit export --format c` with the Arm tools)");
    }
}

fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        s.chars().take(n - 1).collect::<String>() + "…"
    }
}
