//! The single-stage commands over a model or a model directory: analyze, evaluate, export.
//! Each returns a typed report the CLI prints as text or JSON.

use std::path::{Path, PathBuf};

use mcufit_cost::{CostModel, CostOptions, MemoryOptions, OpCost};
use mcufit_data::Splits;
use mcufit_ir::Graph;
use mcufit_quant::QuantizedModel;
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

/// Which samples `eval` scores.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum EvalSplit {
    /// The test split (the default: the one every command uses).
    #[default]
    Test,
    /// Every sample of the data: train, validation and test splits together (for a model trained
    /// elsewhere, e.g. an imported `.tflite`, on a data folder that is itself a test set).
    All,
}

/// Test accuracy of a model: float and/or int8 (the int8 reference's).
#[derive(Debug, Clone, Serialize)]
pub struct EvalOutcome {
    pub model: String,
    pub data: String,
    pub split: EvalSplit,
    pub class_names: Vec<String>,
    /// The float network's (absent for an int8 import: it has none).
    pub float: Option<EvalReport>,
    pub int8: Option<EvalReport>,
    /// Training samples that calibrated the int8 model (0 for an int8 import: none needed).
    pub calibration: usize,
    /// How the model was fed and read (imports: raw features, class order), to print.
    pub notes: Vec<String>,
}

/// The data sets of `split`.
fn sets_of(splits: &Splits, split: EvalSplit) -> Vec<&mcufit_data::Dataset> {
    match split {
        EvalSplit::Test => vec![&splits.test],
        EvalSplit::All => [&splits.train, &splits.val, &splits.test].into_iter().filter(|d| !d.is_empty()).collect(),
    }
}

/// Float evaluation over several data sets, as one report.
fn evaluate_sets(net: &Network, sets: &[&mcufit_data::Dataset]) -> Result<EvalReport> {
    let mut confusion: Option<Vec<Vec<usize>>> = None;
    let mut loss = 0.0;
    for ds in sets {
        let r = evaluate(net, *ds, 256)?;
        loss += r.loss * r.examples as f64;
        match &mut confusion {
            None => confusion = Some(r.confusion),
            Some(c) => c.iter_mut().flatten().zip(r.confusion.iter().flatten()).for_each(|(a, b)| *a += b),
        }
    }
    let confusion = confusion.ok_or_else(|| PipelineError::Config("evaluation without data".into()))?;
    Ok(EvalReport::from_confusion(confusion, loss)?)
}

/// Accuracy of a model directory (float, and with `int8` the int8 reference's beside it), or of an
/// imported `.tflite` / `.onnx` file ([`eval_imported`]).
pub fn eval_dir(
    dir: &Path,
    data: Option<&str>,
    seed: Option<u64>,
    int8: bool,
    calibration: usize,
    split: EvalSplit,
) -> Result<EvalOutcome> {
    if crate::imported::is_import_path(&dir.to_string_lossy()) {
        return eval_imported(dir, data, seed, int8, calibration, split);
    }
    let l = load_dir(dir, data, seed)?;
    let sets = sets_of(&l.splits, split);
    let float = evaluate_sets(&l.network, &sets)?;
    let int8 = if int8 {
        let q = deploy::quantize(&l.network, &l.splits.train, calibration)?;
        Some(deploy::int8_eval_with(&q, &sets, &|x: &[f32]| q.quantize_input(x), None)?)
    } else {
        None
    };
    Ok(EvalOutcome {
        model: l.network.graph().name.clone(),
        data: l.record.spec,
        split,
        class_names: l.splits.test.class_names().to_vec(),
        float: Some(float),
        int8,
        calibration,
        notes: Vec::new(),
    })
}

/// The data an imported model is evaluated or verified on: `data` (required: the file records
/// none), split with `seed` (default 42), resized to the model's input.
fn imported_data(
    m: &crate::imported::ImportedModel,
    data: Option<&str>,
    seed: Option<u64>,
) -> Result<(String, Splits)> {
    let spec = data.ok_or_else(|| {
        PipelineError::Config(format!(
            "{} records no data set: give --data SPEC (e.g. speech-commands:DIR or images:DIR)",
            m.path.display()
        ))
    })?;
    let splits = crate::data::load_for(m.graph(), spec, seed.unwrap_or(42))?;
    Ok((spec.to_string(), splits))
}

/// The int8 input of an imported int8 model for one data sample: the raw features
/// ([`crate::imported::raw_features`]) quantized with the model's own input scale and zero point.
pub fn imported_input(q: &QuantizedModel, enc: &mcufit_data::InputEncoding, x: &[f32]) -> Vec<i8> {
    let mut v = x.to_vec();
    crate::imported::raw_features(enc, &mut v);
    q.quantize_input(&v)
}

/// Accuracy of an imported model on `data`. int8: the bit-exact reference on the raw features,
/// outputs mapped to the data's classes ([`crate::imported::class_map`]). Float: the network behind
/// the input adapter ([`crate::imported::adapt_float`]), and with `int8` also quantized by mcufit
/// (calibrated on `calibration` training samples).
pub fn eval_imported(
    path: &Path,
    data: Option<&str>,
    seed: Option<u64>,
    int8: bool,
    calibration: usize,
    split: EvalSplit,
) -> Result<EvalOutcome> {
    use crate::imported::{adapt_float, class_map, load_imported, raw_note, Imported};
    let m = load_imported(path)?;
    let (spec, splits) = imported_data(&m, data, seed)?;
    let sets = sets_of(&splits, split);
    let (map, class_note) = class_map(&m, &splits.test)?;
    let enc = splits.test.input_encoding().clone();
    let mut notes = vec![class_note];
    let (float, int8, calibration) = match &m.imported {
        Imported::Int8 { model: q, .. } => {
            notes.push(format!(
                "{}, quantized with the model's own input scale {} and zero point {}",
                raw_note(&enc),
                q.input().scale,
                q.input().zero_point
            ));
            let r = deploy::int8_eval_with(q, &sets, &|x: &[f32]| imported_input(q, &enc, x), Some(&map))?;
            (None, Some(r), 0)
        }
        Imported::Float { graph, weights } => {
            let (g, w) = adapt_float(graph, weights, &enc, &map)?;
            let net = Network::from_weights(&g, &w, &mcufit_train::default_device())?;
            notes.push("an input adapter maps the data's encoding to the raw features the model takes".into());
            let float = evaluate_sets(&net, &sets)?;
            let int8 = if int8 {
                let q = deploy::quantize(&net, &splits.train, calibration)?;
                Some(deploy::int8_eval_with(&q, &sets, &|x: &[f32]| q.quantize_input(x), None)?)
            } else {
                None
            };
            let used = if int8.is_some() { calibration } else { 0 };
            (Some(float), int8, used)
        }
    };
    Ok(EvalOutcome {
        model: m.graph().name.clone(),
        data: spec,
        split,
        class_names: splits.test.class_names().to_vec(),
        float,
        int8,
        calibration,
        notes,
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
    /// What an imported model's export did differently, to print.
    pub notes: Vec<String>,
}

impl ExportReport {
    /// What every export reports about the model it built (`q` and its artefacts); fit, footprint,
    /// accuracy, verification and notes are the caller's (left empty).
    fn built(
        model: &str,
        data: String,
        format: Format,
        out: &Path,
        calibration_samples: usize,
        q: &QuantizedModel,
        art: &Artefacts,
    ) -> Self {
        ExportReport {
            model: model.to_string(),
            data,
            format,
            out: out.to_path_buf(),
            calibration_samples,
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
            fit: None,
            footprint: Footprint::default(),
            fit_note: None,
            accuracy: None,
            verify: None,
            notes: Vec::new(),
        }
    }
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
    if crate::imported::is_import_path(&dir.to_string_lossy()) {
        return export_imported(dir, data, seed, format, out, budget, verify);
    }
    let l = load_dir(dir, data, seed)?;
    let graph = l.network.graph().clone();
    let q = deploy::quantize(&l.network, &l.splits.train, calibration)?;
    let art: Artefacts = deploy::build(&q, &graph)?;
    write_export(&art, format, out)?;
    let (fit, footprint, fit_note) = export_fit(&q, &graph, &art, format, budget)?;
    let (accuracy, verify) = match verify {
        Some(opts) => (
            Some(deploy::evaluate_both(&l.network, &q, &l.splits.test)?),
            Some(deploy::verify(&q, &art, &l.splits, opts)?),
        ),
        None => (None, None),
    };
    let calibration = calibration.min(l.splits.train.len());
    let built = ExportReport::built(&graph.name, l.record.spec, format, out, calibration, &q, &art);
    Ok(ExportReport { fit, footprint, fit_note, accuracy, verify, ..built })
}

/// Exports an imported int8 `.tflite` as it is (no quantization: the file's own int8 model) in the
/// memory-optimal order; with `verify`, on real inputs of `data` (raw features, the model's input
/// quantization), also runs the original file in TFLite Micro against the int8 reference.
pub fn export_imported(
    path: &Path,
    data: Option<&str>,
    seed: Option<u64>,
    format: Format,
    out: &Path,
    budget: &Budget,
    verify: Option<VerifyOptions>,
) -> Result<ExportReport> {
    let m = crate::imported::load_imported(path)?;
    let (graph, q) = m.int8("export")?;
    let art: Artefacts = deploy::build(q, graph)?;
    let mut notes = vec![format!("{}: imported int8 model, exported without requantization", path.display())];
    let (spec, verify) = match verify {
        Some(opts) => {
            let (spec, splits) = imported_data(&m, data, seed)?;
            let enc = splits.test.input_encoding().clone();
            let xs: Vec<Vec<i8>> = deploy::verify_samples(&splits, opts.inputs.max(1))?
                .iter()
                .map(|x| imported_input(q, &enc, x))
                .collect();
            notes.push(format!("verification inputs: {}", crate::imported::raw_note(&enc)));
            let original = std::fs::read(path).map_err(|e| PipelineError::io(path, e))?;
            (spec, Some(deploy::verify_inputs(q, &art, &xs, Some(&original), opts)?))
        }
        None => (data.unwrap_or("-").to_string(), None),
    };
    write_export(&art, format, out)?;
    let (fit, footprint, fit_note) = export_fit(q, graph, &art, format, budget)?;
    let built = ExportReport::built(&graph.name, spec, format, out, 0, q, &art);
    Ok(ExportReport { fit, footprint, fit_note, verify, notes, ..built })
}

fn write_export(art: &Artefacts, format: Format, out: &Path) -> Result<()> {
    match format {
        Format::Tflite => deploy::write_tflite(art, out),
        Format::C => deploy::write_c(art, out).map(|_| ()),
    }
}

/// The export's footprint and its fit against `budget` (the C library linked for a Cortex-M with
/// the budget's memories when the Arm tools are there), and why it could not be measured, if so.
fn export_fit(
    q: &QuantizedModel,
    graph: &Graph,
    art: &Artefacts,
    format: Format,
    budget: &Budget,
) -> Result<(Option<FitCheck>, Footprint, Option<String>)> {
    let mut footprint = deploy::footprint(graph, art, budget)?;
    let mut fit_note = None;
    let mut link_error = None;
    let fit = if budget.is_bounded() {
        if format == Format::C && budget.target == Target::C {
            match deploy::missing_tool(mcufit_export::verify::Tools::Arm) {
                Some(why) => fit_note = Some(format!("not linked ({why}): code and runtime terms are estimates")),
                None => match deploy::link_for_board(q, &footprint, art, budget)? {
                    Ok(fp) => footprint = fp,
                    Err(why) => link_error = Some(why),
                },
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
    Ok((fit, footprint, fit_note))
}
