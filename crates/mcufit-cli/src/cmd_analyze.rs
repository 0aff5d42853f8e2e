//! `mcufit analyze`: the exact cost of a model on a microcontroller.

use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Args;
use mcufit_cost::{CostModel, CostOptions, MemoryOptions};
use serde_json::json;

use crate::resources::{fits, human, human_bytes, human_count, BudgetArgs};

#[derive(Args, Debug)]
pub struct AnalyzeArgs {
    /// zoo:NAME, a model .json file, or a model directory (with model.json).
    pub model: String,
    #[command(flatten)]
    pub budget: BudgetArgs,
    /// Let an add overwrite an input that dies at it (CMSIS-NN/TFLM-style in-place add).
    #[arg(long)]
    pub in_place_add: bool,
    /// Do not count the network input tensor in peak memory (when it lives in its own buffer).
    #[arg(long)]
    pub exclude_input: bool,
    /// Count per-channel requantisation data (8 B per output channel) in the model size.
    #[arg(long)]
    pub quant_params: bool,
    /// Print one JSON object instead of tables.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: &AnalyzeArgs) -> Result<ExitCode> {
    let graph = mcufit_ir::load_model(&args.model).with_context(|| format!("cannot load model '{}'", args.model))?;
    let (board, budget) = args.budget.resolve()?;
    let options = CostOptions {
        memory: MemoryOptions { count_input: !args.exclude_input, in_place_add: args.in_place_add },
        quant_params: args.quant_params,
    };
    let model = CostModel::new(&graph, options)?;
    let usage = model.usage(&model.sizes(), board.as_ref());
    let fit = fits(&usage, &budget);
    let plan = &usage.plan;
    // Memory in use while each op runs, indexed by op.
    let mut live_at = vec![0.0; usage.ops.len()];
    for (k, &op) in plan.order.iter().enumerate() {
        live_at[op] = plan.steps[k];
    }
    let layer_names = |op: usize| {
        let f = &model.fused.ops[op];
        let mut names = vec![graph.nodes[f.anchor].name.clone()];
        names.extend(f.absorbed.iter().map(|&a| graph.nodes[a].name.clone()));
        names
    };
    if args.json {
        let layers: Vec<_> = plan
            .order
            .iter()
            .map(|&op| {
                let o = &usage.ops[op];
                json!({
                    "name": o.name, "kind": o.kind, "fused": layer_names(op),
                    "output_shape": [o.shape.h, o.shape.w, o.shape.c],
                    "params": o.params, "model_bytes": o.model_bytes, "macs": o.macs,
                    "output_bytes": o.output_bytes, "live_bytes": live_at[op],
                })
            })
            .collect();
        let fits_obj: serde_json::Map<String, serde_json::Value> = fit
            .iter()
            .map(|f| {
                (
                    serde_json::to_value(f.resource).unwrap().as_str().unwrap().to_string(),
                    json!({"value": f.value, "limit": f.limit, "fits": f.fits, "margin": f.margin}),
                )
            })
            .collect();
        let out = json!({
            "model": graph.name,
            "board": board.as_ref().map(|b| b.name.clone()),
            "params": usage.params,
            "model_bytes": usage.model_bytes,
            "macs": usage.macs,
            "peak_memory_bytes": usage.peak_memory,
            "latency_ms": usage.latency_ms,
            "order": plan.order.iter().map(|&op| usage.ops[op].name.clone()).collect::<Vec<_>>(),
            "peak_step": usage.ops[plan.order[plan.peak_step]].name,
            "layers": layers,
            "fits": fits_obj,
            "options": options,
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(verdict(&fit));
    }

    println!("{} — {} kernels after fusing batch norm / activations / reshapes", graph.name, usage.ops.len());
    println!();
    println!(
        "{:>3}  {:<26} {:<17} {:>12} {:>9} {:>11} {:>10}",
        "#", "layer (memory-optimal order)", "kind", "output", "params", "MACs", "live"
    );
    for (k, &op) in plan.order.iter().enumerate() {
        let o = &usage.ops[op];
        let mark = if k == plan.peak_step { " ◀ peak" } else { "" };
        println!(
            "{:>3}  {:<26} {:<17} {:>12} {:>9} {:>11} {:>10}{mark}",
            k,
            truncate(&o.name, 26),
            o.kind,
            o.shape.to_string(),
            human_count(o.params),
            human_count(o.macs),
            human_bytes(live_at[op]),
        );
    }
    println!();
    println!("params        {:>12}   ({:.0})", human_count(usage.params), usage.params);
    println!("model size    {:>12}   int8 weights + int32 biases{}", human_bytes(usage.model_bytes), if args.quant_params { " + requant data" } else { "" });
    println!("MACs          {:>12}   ({:.0})", human_count(usage.macs), usage.macs);
    println!(
        "peak memory   {:>12}   at '{}' (input {}, in-place add {})",
        human_bytes(usage.peak_memory),
        usage.ops[plan.order[plan.peak_step]].name,
        if args.exclude_input { "excluded" } else { "counted" },
        if args.in_place_add { "on" } else { "off" }
    );
    if let (Some(ms), Some(b)) = (usage.latency_ms, &board) {
        println!("latency       {:>12}   on {} ({} @ {} MHz, uncalibrated cycle model)", format!("{ms:.2} ms"), b.name, b.core, b.clock_mhz);
    }
    if !fit.is_empty() {
        println!();
        let target = board.as_ref().map(|b| format!(" on {}", b.title)).unwrap_or_default();
        println!("budget{target}:");
        for f in &fit {
            let verdict = if f.fits { "fits" } else { "DOES NOT FIT" };
            let margin = if f.fits {
                format!("{} spare ({:.0} %)", human(f.resource, f.margin), 100.0 * f.margin / f.limit)
            } else {
                format!("{} over", human(f.resource, -f.margin))
            };
            println!(
                "  {:<12} {:>12} of {:>12}  {verdict:<13} {margin}",
                f.resource.name(),
                human(f.resource, f.value),
                human(f.resource, f.limit)
            );
        }
    }
    Ok(verdict(&fit))
}

/// Exit status 1 when a given budget is exceeded, so scripts can test `mcufit analyze` directly.
fn verdict(fit: &[crate::resources::Fit]) -> ExitCode {
    if fit.iter().all(|f| f.fits) {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        s.chars().take(n - 1).collect::<String>() + "…"
    }
}
