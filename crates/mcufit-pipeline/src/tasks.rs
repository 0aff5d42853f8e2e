//! The single-stage commands over a model or a model directory: analyze, evaluate, export.
//! Each returns a typed report the CLI prints as text or JSON.

use std::path::{Path, PathBuf};

use mcufit_cost::{CostModel, CostOptions, MemoryOptions, OpCost};
use mcufit_data::Splits;
use mcufit_ir::Graph;
use mcufit_train::{evaluate, EvalReport, Network};
use serde::Serialize;

use crate::budget::{Budget, FitCheck, Footprint, Target};
use crate::deploy::{self, Artefacts, VerifyOptions, VerifyReport};
use crate::error::{PipelineError, Result};
use crate::modeldir::{DataRecord, ModelDir};

/// Cost-model options of `analyze`.
#[derive(Debug, Clone, Copy, Default)]
pub struct AnalyzeOptions {
    pub in_place_add: bool,
    pub exclude_input: bool,
}

/// One op in the memory-optimal order.
#[derive(Debug, Clone, Serialize)]
pub struct AnalyzedOp {
    pub cost: OpCost,
    /// The IR nodes fused into this op (the anchor first).
    pub fused: Vec<String>,
    /// Arena bytes in use while it runs.
    pub live_bytes: f64,
}

/// What `analyze` reports.
#[derive(Debug, Clone, Serialize)]
pub struct Analysis {
    pub model: String,
    pub board: Option<String>,
    pub params: f64,
    pub model_bytes: f64,
    pub macs: f64,
    pub peak_memory_bytes: f64,
    /// True when `peak_memory_bytes` is the minimum over all operator orders; false when the
    /// order search hit its limit (too many parallel branches) and the peak is an upper bound.
    pub peak_memory_exact: bool,
    /// A proven lower bound on the minimum peak (equal to the peak when exact).
    pub peak_memory_lower_bound: f64,
    pub latency_ms: Option<f64>,
    /// Ops in the memory-optimal order.
    pub layers: Vec<AnalyzedOp>,
    /// Index into `layers` of the (first) op at the peak.
    pub peak_step: usize,
    pub footprint: Footprint,
    pub fit: FitCheck,
}

/// The exact cost of `graph` and its fit against `budget`.
pub fn analyze(graph: &Graph, budget: &Budget, opts: AnalyzeOptions) -> Result<Analysis> {
    let options = CostOptions {
        memory: MemoryOptions { count_input: !opts.exclude_input, in_place_add: opts.in_place_add },
        quant_params: false,
    };
    let model = CostModel::new(graph, options)?;
    let usage = model.usage(&model.sizes(), budget.board.as_ref());
    let plan = &usage.plan;
    let mut fp = Footprint::of_graph(graph, budget)?;
    fp.arena = usage.peak_memory.round() as u64;
    let layers = plan
        .order
        .iter()
        .zip(&plan.steps)
        .map(|(&op, &live)| {
            let f = &model.fused.ops[op];
            let mut fused = vec![graph.nodes[f.anchor].name.clone()];
            fused.extend(f.absorbed.iter().map(|&a| graph.nodes[a].name.clone()));
            AnalyzedOp { cost: usage.ops[op].clone(), fused, live_bytes: live }
        })
        .collect();
    Ok(Analysis {
        model: graph.name.clone(),
        board: budget.board.as_ref().map(|b| b.name.clone()),
        params: usage.params,
        model_bytes: usage.model_bytes,
        macs: usage.macs,
        peak_memory_bytes: usage.peak_memory,
        peak_memory_exact: plan.exact,
        peak_memory_lower_bound: plan.lower_bound,
        latency_ms: usage.latency_ms,
        layers,
        peak_step: plan.peak_step,
        fit: budget.check(&fp),
        footprint: fp,
    })
}

/// The depth-pruning cut points of `graph` with `head` on each, priced by the exact cost model, against
/// the pruner's form of `budget` (unbounded when it bounds nothing).
pub fn cut_table(graph: &Graph, head: &mcufit_ir::HeadSpec, budget: &Budget) -> Result<mcufit_prune::CutTable> {
    let pb = if budget.is_bounded() {
        budget.prune_budget(&Footprint::of_graph(graph, budget)?)?
    } else {
        mcufit_cost::Budget::default()
    };
    Ok(mcufit_prune::CutTable::new(
        graph,
        head,
        graph.num_outputs(),
        &pb,
        budget.board.as_ref(),
        CostOptions::default(),
    )?)
}

/// A trained model directory, its data (the recorded spec and split seed unless overridden) and
/// the network.
pub struct LoadedDir {
    pub network: Network,
    pub splits: Splits,
    pub record: DataRecord,
}

/// Loads a model directory and the data it was trained on (or `data` / `seed` overrides).
pub fn load_dir(dir: &Path, data: Option<&str>, seed: Option<u64>) -> Result<LoadedDir> {
    let md = ModelDir::new(dir);
    let network = md.load_network()?;
    let rec = md.data_record()?;
    let spec = data.map(str::to_string).or_else(|| rec.as_ref().map(|r| r.spec.clone())).ok_or_else(|| {
        PipelineError::Config(format!("{} has no data.json saying what it was trained on: give --data", dir.display()))
    })?;
    let seed = seed.or(rec.as_ref().map(|r| r.seed)).unwrap_or(42);
    let splits = crate::data::load_for(network.graph(), &spec, seed)?;
    Ok(LoadedDir { network, splits, record: DataRecord { spec, seed } })
}

/// Test accuracy of a model directory: float, and with `int8` the int8 reference's beside it.
#[derive(Debug, Clone, Serialize)]
pub struct EvalOutcome {
    pub model: String,
    pub data: String,
    pub class_names: Vec<String>,
    pub float: EvalReport,
    pub int8: Option<EvalReport>,
    pub calibration: usize,
}

pub fn eval_dir(
    dir: &Path,
    data: Option<&str>,
    seed: Option<u64>,
    int8: bool,
    calibration: usize,
) -> Result<EvalOutcome> {
    let l = load_dir(dir, data, seed)?;
    let float = evaluate(&l.network, &l.splits.test, 256)?;
    let int8 = if int8 {
        let q = deploy::quantize(&l.network, &l.splits.train, calibration)?;
        Some(deploy::int8_eval(&q, &l.splits.test)?)
    } else {
        None
    };
    Ok(EvalOutcome {
        model: l.network.graph().name.clone(),
        data: l.record.spec,
        class_names: l.splits.test.class_names().to_vec(),
        float,
        int8,
        calibration,
    })
}

/// What to export.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    Tflite,
    C,
}

/// What `export` wrote and measured.
#[derive(Debug, Clone, Serialize)]
pub struct ExportReport {
    pub model: String,
    pub data: String,
    pub format: Format,
    pub out: PathBuf,
    pub calibration_samples: usize,
    pub input_scale: f32,
    pub input_zero_point: i32,
    pub ops: usize,
    pub macs: u64,
    pub order: Vec<usize>,
    pub predicted_peak_bytes: usize,
    pub tflite_bytes: usize,
    pub c_arena_bytes: usize,
    pub c_scratch_bytes: usize,
    pub c_const_bytes: usize,
    /// The fit against the budget (`None` without one); measured from the Cortex-M link for the C
    /// target when the Arm tools are there.
    pub fit: Option<FitCheck>,
    pub footprint: Footprint,
    /// Why the fit could not be measured (tools missing), if so.
    pub fit_note: Option<String>,
    pub accuracy: Option<deploy::Accuracies>,
    pub verify: Option<VerifyReport>,
}

/// Quantizes a model directory, writes the export (atomically), checks it against `budget` and,
/// with `verify`, runs it in TFLM, host C and Cortex-M4 against the int8 reference.
#[allow(clippy::too_many_arguments)]
pub fn export_dir(
    dir: &Path,
    data: Option<&str>,
    seed: Option<u64>,
    format: Format,
    out: &Path,
    budget: &Budget,
    calibration: usize,
    verify: Option<VerifyOptions>,
) -> Result<ExportReport> {
    let l = load_dir(dir, data, seed)?;
    let graph = l.network.graph().clone();
    let q = deploy::quantize(&l.network, &l.splits.train, calibration)?;
    let art: Artefacts = deploy::build(&q, &graph)?;
    match format {
        Format::Tflite => deploy::write_tflite(&art, out)?,
        Format::C => {
            deploy::write_c(&art, out)?;
        }
    }
    let mut footprint = deploy::footprint(&graph, &art, budget)?;
    let mut fit_note = None;
    let mut link_error = None;
    let fit = if budget.is_bounded() {
        if format == Format::C && budget.target == Target::C {
            match deploy::missing_tool(mcufit_export::verify::Tools::Arm) {
                Some(why) => fit_note = Some(format!("not linked ({why}): code and runtime terms are estimates")),
                None => {
                    let tmp = std::env::temp_dir().join(format!("mcufit-export-link-{}", std::process::id()));
                    match deploy::link_for_board(&q, &footprint, &art, budget, &tmp)? {
                        Ok(fp) => footprint = fp,
                        Err(why) => link_error = Some(why),
                    }
                }
            }
        }
        let check = budget.check(&footprint);
        Some(match link_error {
            Some(why) => check.with_link_error(why),
            None => check,
        })
    } else {
        None
    };
    let (accuracy, verify) = match verify {
        Some(opts) => (
            Some(deploy::evaluate_both(&l.network, &q, &l.splits.test)?),
            Some(deploy::verify(&q, &art, &l.splits, opts)?),
        ),
        None => (None, None),
    };
    Ok(ExportReport {
        model: graph.name.clone(),
        data: l.record.spec,
        format,
        out: out.to_path_buf(),
        calibration_samples: calibration.min(l.splits.train.len()),
        input_scale: q.input().scale,
        input_zero_point: q.input().zero_point,
        ops: q.ops.len(),
        macs: q.macs(),
        order: art.order.clone(),
        predicted_peak_bytes: art.peak,
        tflite_bytes: art.tflite.len(),
        c_arena_bytes: art.c.plan.arena_bytes,
        c_scratch_bytes: art.c.scratch_bytes,
        c_const_bytes: art.c.const_bytes,
        fit,
        footprint,
        fit_note,
        accuracy,
        verify,
    })
}
