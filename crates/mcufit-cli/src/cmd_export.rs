//! `mcufit export`: int8-quantize a trained model directory (calibrated on its own training data)
//! and write a `.tflite` or a standalone C library with operators in the memory-optimal order.
//! `--verify` checks the export against the bit-exact int8 reference in TFLite Micro, with the
//! host gcc and on a Cortex-M4 under QEMU. Also home of the trained-weights → quantizer bridge and
//! the int8 test accuracy that `mcufit eval --int8` reports.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{anyhow, bail, Context, Result};
use clap::{Args, ValueEnum};
use mcufit_cost::{parse_size, CostModel, CostOptions, MemoryOptions};
use mcufit_data::{Dataset, InputEncoding, Splits};
use mcufit_export::verify::{self, Agreement, BoardMemory, M4Run, Runtime, Tools};
use mcufit_export::{CExportOptions, CSources, ExportError, PlanOptions};
use mcufit_ir::Graph;
use mcufit_quant::{FloatWeights, InputQuant, NodeWeights, QOpKind, QuantizeOptions, QuantizedModel};
use mcufit_train::{default_device, evaluate, Network, Weights};
use serde::Serialize;
use serde_json::json;

use crate::datasets::{load_for, DataRecord};
use crate::resources::{human_bytes, human_count, load_boards, BoardsArgs};

// ---- trained weights → quantizer ---------------------------------------------------------------

/// Converts trained weights in deployment form (channel masks already folded, see
/// [`Network::export_weights`]) into the quantizer's [`FloatWeights`]. Both use TFLite layouts
/// (conv OHWI, depthwise `[1, kh, kw, c]`, dense `[units, in]` in NHWC-flatten order), so this
/// only re-labels; the result is checked against `graph`'s shapes.
pub fn to_float_weights(graph: &Graph, w: &Weights) -> Result<FloatWeights> {
    if !w.masks.is_empty() {
        bail!("the weights still carry {} channel-group masks; fold them first (Network::export_weights)", w.masks.len());
    }
    let mut out = FloatWeights::new();
    for (name, lw) in &w.layers {
        let nw = match (&lw.kernel, &lw.bn) {
            (Some(k), None) => NodeWeights::Kernel { kernel: k.data.clone(), bias: lw.bias.clone() },
            (None, Some(bn)) if lw.bias.is_none() => NodeWeights::BatchNorm {
                gamma: bn.gamma.clone(),
                beta: bn.beta.clone(),
                mean: bn.mean.clone(),
                var: bn.var.clone(),
            },
            _ => bail!("layer '{name}' has an unexpected combination of kernel / bias / batch-norm parameters"),
        };
        out.nodes.insert(name.clone(), nw);
    }
    out.check(graph).with_context(|| format!("the trained weights do not match model '{}'", graph.name))?;
    Ok(out)
}

/// The float weights of a trained network as the quantizer needs them (masks folded).
pub fn network_float_weights(net: &Network) -> Result<FloatWeights> {
    let w = net.export_weights().context("cannot read the network's weights")?;
    to_float_weights(net.graph(), &w)
}

// ---- data, calibration, quantization -------------------------------------------------------------

/// NHWC f32 samples `idx` of `ds` (clean: no augmentation) and their labels.
pub fn samples(ds: &Dataset, idx: &[usize]) -> Result<(Vec<Vec<f32>>, Vec<u32>)> {
    let (mut flat, mut labels) = (Vec::new(), Vec::new());
    ds.batch(idx, &mut flat, &mut labels).with_context(|| format!("cannot read samples of {}", ds.name()))?;
    let len = ds.sample_len();
    Ok((flat.chunks(len.max(1)).map(<[f32]>::to_vec).collect(), labels))
}

/// `n` indices spread evenly over `0..len` (all of them when `n >= len`): deterministic, and
/// covers every class even when a split is stored class by class.
pub fn spread(len: usize, n: usize) -> Vec<usize> {
    if n >= len {
        return (0..len).collect();
    }
    (0..n).map(|k| k * len / n).collect()
}

/// The input quantization the data's encoding implies (see `docs/export.md`, input contract).
pub fn input_quant(ds: &Dataset) -> Result<InputQuant> {
    match ds.input_encoding() {
        InputEncoding::Pixels { scale, zero_point } if (*scale - 1.0 / 128.0).abs() < 1e-9 && *zero_point == 128 => {
            Ok(InputQuant::Image)
        }
        InputEncoding::Pixels { scale, zero_point } => {
            bail!("image encoding scale {scale}, zero point {zero_point}: the int8 export expects (p - 128) / 128")
        }
        InputEncoding::Features { .. } => Ok(InputQuant::Calibrated),
    }
}

/// Quantizes `net` with activation ranges from `n` training samples.
pub fn quantize_network(net: &Network, train: &Dataset, n: usize) -> Result<QuantizedModel> {
    if n == 0 {
        bail!("--calibration must be at least 1");
    }
    let weights = network_float_weights(net)?;
    let (calib, _) = samples(train, &spread(train.len(), n))?;
    let opts = QuantizeOptions { input: input_quant(train)? };
    mcufit_quant::quantize_with(net.graph(), &weights, &calib, &opts)
        .with_context(|| format!("cannot quantize model '{}'", net.graph().name))
}

/// Loads a model directory and the data it was trained on (or `data` / `seed` overrides).
pub fn load_model_and_data(dir: &Path, data: Option<&str>, seed: Option<u64>) -> Result<(Network, Splits, String)> {
    let record = DataRecord::read(dir);
    let spec = data
        .map(str::to_string)
        .or_else(|| record.as_ref().map(|r| r.spec.clone()))
        .context("no --data given and the model directory has no data.json saying what it was trained on")?;
    let seed = seed.or(record.as_ref().map(|r| r.seed)).unwrap_or(42);
    let network = Network::load(dir, &default_device())
        .with_context(|| format!("cannot load a trained model from {}", dir.display()))?;
    let splits = load_for(network.graph(), &spec, seed)?;
    Ok((network, splits, spec))
}

fn argmax_i8(v: &[i8]) -> usize {
    let mut best = 0;
    for (i, &x) in v.iter().enumerate() {
        if x > v[best] {
            best = i;
        }
    }
    best
}

/// Test accuracy of the int8 reference interpreter (what the device computes).
#[derive(Debug, Clone, Serialize)]
pub struct Int8Eval {
    pub examples: usize,
    pub accuracy: f64,
    pub per_class_accuracy: Vec<f64>,
    pub class_counts: Vec<usize>,
    /// `confusion[true][predicted]`.
    pub confusion: Vec<Vec<usize>>,
}

/// Runs the int8 reference on every sample of `ds` (two threads) and scores the argmax of its
/// int8 output (ties go to the lower class, as on the device).
pub fn int8_eval(q: &QuantizedModel, ds: &Dataset) -> Result<Int8Eval> {
    let k = ds.num_classes();
    let idx: Vec<usize> = (0..ds.len()).collect();
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).clamp(1, 2);
    let chunk = idx.len().div_ceil(threads).max(1);
    let results: Vec<Result<Vec<(u32, usize)>>> = std::thread::scope(|s| {
        let handles: Vec<_> = idx
            .chunks(chunk)
            .map(|part| {
                s.spawn(move || -> Result<Vec<(u32, usize)>> {
                    let mut out = Vec::with_capacity(part.len());
                    for batch in part.chunks(256) {
                        let (xs, labels) = samples(ds, batch)?;
                        let qx: Vec<Vec<i8>> = xs.iter().map(|x| q.quantize_input(x)).collect();
                        for (y, l) in q.run_int8_batch(&qx)?.iter().zip(labels) {
                            out.push((l, argmax_i8(y)));
                        }
                    }
                    Ok(out)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap_or_else(|_| Err(anyhow!("int8 evaluation thread panicked")))).collect()
    });
    let mut confusion = vec![vec![0usize; k]; k];
    for r in results {
        for (l, p) in r? {
            let l = l as usize;
            if l >= k || p >= k {
                bail!("label {l} or prediction {p} outside the {k} classes");
            }
            confusion[l][p] += 1;
        }
    }
    let class_counts: Vec<usize> = confusion.iter().map(|r| r.iter().sum()).collect();
    let correct: usize = (0..k).map(|c| confusion[c][c]).sum();
    let examples: usize = class_counts.iter().sum();
    if examples == 0 {
        bail!("the evaluation split of {} is empty", ds.name());
    }
    let per_class_accuracy =
        (0..k).map(|c| if class_counts[c] == 0 { 0.0 } else { confusion[c][c] as f64 / class_counts[c] as f64 }).collect();
    Ok(Int8Eval { examples, accuracy: correct as f64 / examples as f64, per_class_accuracy, class_counts, confusion })
}

/// The memory-optimal operator order (fused-op indices, input first) and its peak in bytes.
pub fn memory_order(graph: &Graph, in_place_add: bool) -> Result<(Vec<usize>, usize)> {
    let cm = CostModel::new(graph, CostOptions { memory: MemoryOptions { count_input: true, in_place_add }, quant_params: true })?;
    let plan = cm.memory_plan(&cm.sizes());
    Ok((plan.order, plan.peak.round() as usize))
}

// ---- the command -------------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
pub enum Format {
    /// A .tflite flatbuffer (int8 builtin ops) for TFLite Micro / LiteRT.
    Tflite,
    /// A standalone C99 library (mcufit_model.[ch], mcufit_kernels.[ch]) with one static arena.
    C,
}

#[derive(Args, Debug)]
pub struct ExportCmd {
    /// A model directory written by train or compress.
    pub model_dir: PathBuf,
    #[arg(long, value_enum)]
    pub format: Format,
    /// The .tflite file to write, or the directory for the C library.
    #[arg(long)]
    pub out: PathBuf,
    /// Target board (see `mcufit boards`): the C export must link within its SRAM and flash.
    #[arg(long)]
    pub board: Option<String>,
    /// RAM limit for the fit check (overrides the board's SRAM), e.g. 64KiB.
    #[arg(long, value_name = "BYTES")]
    pub ram: Option<String>,
    /// Flash limit for the fit check (overrides the board's flash), e.g. 256KiB.
    #[arg(long, value_name = "BYTES")]
    pub flash: Option<String>,
    #[command(flatten)]
    pub boards: BoardsArgs,
    /// Training samples (spread evenly over the training split) that calibrate activation ranges.
    #[arg(long, default_value_t = 200)]
    pub calibration: usize,
    /// Let an ADD write its output over an input that dies at it.
    #[arg(long)]
    pub in_place_add: bool,
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
    /// Data spec (default: the one in the model directory's data.json).
    #[arg(long)]
    pub data: Option<String>,
    /// Split seed (default: the training seed from data.json).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Print the results as JSON.
    #[arg(long)]
    pub json: bool,
    /// Also write the results as JSON to this file.
    #[arg(long, value_name = "FILE")]
    pub report: Option<PathBuf>,
}

/// Everything `export` measured, printed as text or JSON.
#[derive(Debug, Default, Serialize)]
struct Report {
    model: String,
    data: String,
    format: String,
    out: String,
    calibration_samples: usize,
    input_scale: f32,
    input_zero_point: i32,
    ops: usize,
    macs: u64,
    order: Vec<usize>,
    predicted_peak_bytes: usize,
    tflite_bytes: Option<usize>,
    c: Option<CReport>,
    fit: Option<serde_json::Value>,
    verify: Option<VerifyReport>,
}

#[derive(Debug, Default, Serialize)]
struct CReport {
    arena_bytes: usize,
    scratch_bytes: usize,
    const_bytes: usize,
    arena_equals_predicted_peak: bool,
}

#[derive(Debug, Default, Serialize)]
struct VerifyReport {
    test_examples: usize,
    float_accuracy: f64,
    int8_accuracy: f64,
    inputs: usize,
    tflm: Option<Agreement>,
    tflm_arena: Option<serde_json::Value>,
    c_host: Option<Agreement>,
    m4: Option<M4Report>,
    passed: bool,
    problems: Vec<String>,
}

#[derive(Debug, Default, Serialize)]
struct M4Report {
    agreement: Option<Agreement>,
    instructions: u64,
    instructions_per_mac: f64,
    pointwise_macs: u64,
    pointwise_instructions: u64,
    pointwise_instructions_per_mac: Option<f64>,
    /// (op index, op name, kind, MACs, instructions) of the profiled run.
    per_op: Vec<(usize, String, String, u64, u64)>,
    flash_bytes: u64,
    ram_bytes: u64,
}

/// The limits to check against: a board and/or explicit sizes.
fn fit_limits(args: &ExportCmd) -> Result<Option<(String, BoardMemory)>> {
    let board = match &args.board {
        Some(name) => Some(load_boards(&args.boards)?.get(name)?.clone()),
        None => None,
    };
    if board.is_none() && args.ram.is_none() && args.flash.is_none() {
        return Ok(None);
    }
    // An unset side gets the whole QEMU machine (4 MiB), i.e. effectively no limit.
    let mut mem = board
        .as_ref()
        .map(|b| BoardMemory { ram_bytes: b.sram_bytes, flash_bytes: b.flash_bytes })
        .unwrap_or(verify::QEMU_MAX);
    if let Some(r) = &args.ram {
        mem.ram_bytes = parse_size(r)?;
    }
    if let Some(f) = &args.flash {
        mem.flash_bytes = parse_size(f)?;
    }
    let label = board.map_or_else(|| "the given limits".to_string(), |b| format!("board '{}'", b.name));
    Ok(Some((label, mem)))
}

fn temp_dir(tag: &str) -> PathBuf {
    std::env::temp_dir().join(format!("mcufit-export-{tag}-{}", std::process::id()))
}

/// Up to `n` real inputs: the test split first, then validation, then training (clean).
fn verify_samples(splits: &Splits, n: usize) -> Result<Vec<Vec<f32>>> {
    let mut out = Vec::with_capacity(n);
    for ds in [&splits.test, &splits.val, &splits.train] {
        if out.len() >= n {
            break;
        }
        let take = (n - out.len()).min(ds.len());
        let (xs, _) = samples(ds, &(0..take).collect::<Vec<_>>())?;
        out.extend(xs);
    }
    Ok(out)
}

fn is_pointwise(q: &QuantizedModel, i: usize) -> bool {
    let op = &q.ops[i];
    match &op.kind {
        QOpKind::Conv2d { weights, .. } => {
            let d = &weights.filter_dims;
            let in_c = op.inputs.first().map_or(0, |&j| q.tensors[j].shape.c);
            d[1] == 1 && d[2] == 1 && d[3] == in_c
        }
        _ => false,
    }
}

fn op_macs(q: &QuantizedModel, i: usize) -> u64 {
    let op = &q.ops[i];
    match &op.kind {
        QOpKind::Conv2d { weights: w, .. } => (op.kernel_shape.elements() * w.filter_dims[1] * w.filter_dims[2] * w.filter_dims[3]) as u64,
        QOpKind::DepthwiseConv2d { weights: w, .. } => (op.kernel_shape.elements() * w.filter_dims[1] * w.filter_dims[2]) as u64,
        QOpKind::FullyConnected { weights: w, .. } => w.filter.len() as u64,
        _ => 0,
    }
}

fn m4_check(q: &QuantizedModel, src: &CSources, inputs: &[Vec<i8>], dir: &Path) -> Result<M4Report> {
    let (agree, run) = verify::verify_m4(q, src, inputs, verify::QEMU_MAX, &dir.join("m4"))?;
    // A second image with a tick read after every op gives the per-op split (fastest of 3 runs).
    let prof: M4Run = verify::profile_m4(src, &inputs[..inputs.len().min(3)], &dir.join("m4-profile"))?;
    let macs = q.macs();
    let mut r = M4Report {
        agreement: Some(agree),
        instructions: run.instructions,
        instructions_per_mac: run.instructions as f64 / macs.max(1) as f64,
        flash_bytes: run.flash_used,
        ram_bytes: run.ram_used,
        ..M4Report::default()
    };
    for &(i, instr) in &prof.op_instructions {
        let m = op_macs(q, i);
        if is_pointwise(q, i) {
            r.pointwise_macs += m;
            r.pointwise_instructions += instr;
        }
        r.per_op.push((i, q.ops[i].name.clone(), q.ops[i].kind.name().to_string(), m, instr));
    }
    if r.pointwise_macs > 0 {
        r.pointwise_instructions_per_mac = Some(r.pointwise_instructions as f64 / r.pointwise_macs as f64);
    }
    Ok(r)
}

pub fn run(args: &ExportCmd) -> Result<ExitCode> {
    let limits = fit_limits(args)?;
    let (network, splits, spec) = load_model_and_data(&args.model_dir, args.data.as_deref(), args.seed)?;
    let graph = network.graph().clone();
    let q = quantize_network(&network, &splits.train, args.calibration)?;
    let (order, peak) = memory_order(&graph, args.in_place_add)?;
    if order.len() != q.ops.len() {
        bail!("the cost model orders {} ops but the quantized model has {}", order.len(), q.ops.len());
    }
    let plan_opts = PlanOptions { count_input: true, in_place_add: args.in_place_add };
    let mut report = Report {
        model: graph.name.clone(),
        data: spec.clone(),
        format: format!("{:?}", args.format).to_lowercase(),
        out: args.out.display().to_string(),
        calibration_samples: args.calibration.min(splits.train.len()),
        input_scale: q.input().scale,
        input_zero_point: q.input().zero_point,
        ops: q.ops.len(),
        macs: q.macs(),
        order: order.clone(),
        predicted_peak_bytes: peak,
        ..Report::default()
    };
    // Both artefacts are generated (the C sources in memory) so --verify can check both.
    let tflite = mcufit_export::export_tflite_with(&q, &order, Some(plan_opts))?;
    report.tflite_bytes = Some(tflite.len());
    let src = mcufit_export::generate_c(&q, &order, CExportOptions { plan: plan_opts })?;
    report.c = Some(CReport {
        arena_bytes: src.plan.arena_bytes,
        scratch_bytes: src.scratch_bytes,
        const_bytes: src.const_bytes,
        arena_equals_predicted_peak: src.plan.arena_bytes == peak,
    });
    match args.format {
        Format::Tflite => {
            if let Some(parent) = args.out.parent().filter(|p| !p.as_os_str().is_empty()) {
                std::fs::create_dir_all(parent).with_context(|| format!("cannot create {}", parent.display()))?;
            }
            std::fs::write(&args.out, &tflite).with_context(|| format!("cannot write {}", args.out.display()))?;
        }
        Format::C => {
            std::fs::create_dir_all(&args.out).with_context(|| format!("cannot create {}", args.out.display()))?;
            for (name, text) in src.files() {
                let p = args.out.join(name);
                std::fs::write(&p, text).with_context(|| format!("cannot write {}", p.display()))?;
            }
        }
    }

    // Board fit: the C library must link within the limits; the .tflite is checked against the
    // predicted arena and its file size.
    let mut misfit: Option<String> = None;
    if let Some((label, mem)) = &limits {
        let result = match args.format {
            Format::C => {
                verify::ensure_tools(Tools::Arm).map_err(|e| anyhow!("cannot check the board fit: {e}"))?;
                let dir = temp_dir("fit");
                let zero = vec![vec![0i8; q.input().elements()]];
                let r = verify::build_m4(&src, &zero, *mem, &dir).and_then(|elf| verify::image_sizes(&elf));
                let _ = std::fs::remove_dir_all(&dir);
                match r {
                    Ok((flash, ram)) => Ok(json!({"limits": label, "ram_limit": mem.ram_bytes, "flash_limit": mem.flash_bytes,
                        "linked": true, "flash_used": flash, "ram_used": ram, "stack_reserved": verify::STACK_BYTES})),
                    Err(e @ ExportError::DoesNotFit { .. }) => Err(e.to_string()),
                    Err(e) => return Err(anyhow!(e).context("cannot link the C export for the board")),
                }
            }
            Format::Tflite => {
                if peak as u64 > mem.ram_bytes {
                    Err(format!("does not fit: needs {peak} B RAM (predicted arena), board has {}", mem.ram_bytes))
                } else if tflite.len() as u64 > mem.flash_bytes {
                    Err(format!("does not fit: needs {} B flash (.tflite), board has {}", tflite.len(), mem.flash_bytes))
                } else {
                    Ok(json!({"limits": label, "ram_limit": mem.ram_bytes, "flash_limit": mem.flash_bytes,
                        "predicted_arena": peak, "tflite_bytes": tflite.len()}))
                }
            }
        };
        match result {
            Ok(v) => report.fit = Some(v),
            Err(msg) => {
                let m = format!("model '{}' {msg} ({label})", graph.name);
                report.fit = Some(json!({"limits": label, "ram_limit": mem.ram_bytes, "flash_limit": mem.flash_bytes, "error": m}));
                misfit = Some(m);
            }
        }
    }

    if args.verify {
        report.verify = Some(verify_all(args, &network, &splits, &q, &tflite, &src, peak)?);
    }
    print_report(&report, args.json)?;
    if let Some(path) = &args.report {
        std::fs::write(path, serde_json::to_string_pretty(&report)?).with_context(|| format!("cannot write {}", path.display()))?;
    }
    if let Some(m) = misfit {
        eprintln!("error: {m}");
        return Ok(ExitCode::from(1));
    }
    if report.verify.as_ref().is_some_and(|v| !v.passed) {
        eprintln!("error: verification failed");
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::SUCCESS)
}

fn verify_all(
    args: &ExportCmd,
    network: &Network,
    splits: &Splits,
    q: &QuantizedModel,
    tflite: &[u8],
    src: &CSources,
    peak: usize,
) -> Result<VerifyReport> {
    let mut v = VerifyReport::default();
    let float = evaluate(network, &splits.test, 256)?;
    let int8 = int8_eval(q, &splits.test)?;
    v.test_examples = int8.examples;
    v.float_accuracy = float.accuracy;
    v.int8_accuracy = int8.accuracy;
    let xs: Vec<Vec<i8>> = verify_samples(splits, args.verify_inputs.max(1))?.iter().map(|x| q.quantize_input(x)).collect();
    v.inputs = xs.len();
    let dir = temp_dir("verify");
    let tools = |t: Tools, what: &str, problems: &mut Vec<String>| match verify::ensure_tools(t) {
        Ok(()) => true,
        Err(e) => {
            problems.push(format!("{what} not checked: {e}"));
            false
        }
    };
    if tools(Tools::Python, "TFLite Micro", &mut v.problems) {
        let (agree, arena) = verify::verify_tflite(q, tflite, &xs, Runtime::Tflm, &dir.join("tflm"))?;
        if agree.mismatches > 0 {
            v.problems.push(format!("TFLM differs from the int8 reference on {} of {} inputs", agree.mismatches, agree.inputs));
        }
        v.tflm = Some(agree);
        v.tflm_arena = arena.map(|(total, head, tail)| json!({"total": total, "head": head, "tail": tail, "predicted_peak": peak}));
    }
    let host = verify::verify_c_host(q, src, &xs, &dir.join("host"))?;
    if host.mismatches > 0 {
        v.problems.push(format!("host C differs from the int8 reference on {} of {} inputs", host.mismatches, host.inputs));
    }
    v.c_host = Some(host);
    if src.plan.arena_bytes != peak {
        v.problems.push(format!("C arena {} B differs from the predicted peak {peak} B", src.plan.arena_bytes));
    }
    if tools(Tools::Arm, "Cortex-M4", &mut v.problems) {
        let n = args.m4_inputs.clamp(1, xs.len());
        let m4 = m4_check(q, src, &xs[..n], &dir)?;
        if let Some(a) = &m4.agreement {
            if a.mismatches > 0 {
                v.problems.push(format!("Cortex-M4 differs from the int8 reference on {} of {} inputs", a.mismatches, a.inputs));
            }
        }
        v.m4 = Some(m4);
    }
    let _ = std::fs::remove_dir_all(&dir);
    // Missing tools are reported but are not a failed check; a mismatch is.
    v.passed = v.tflm.as_ref().is_none_or(|a| a.mismatches == 0)
        && v.c_host.as_ref().is_none_or(|a| a.mismatches == 0)
        && v.m4.as_ref().and_then(|m| m.agreement.as_ref()).is_none_or(|a| a.mismatches == 0)
        && src.plan.arena_bytes == peak;
    Ok(v)
}

fn print_report(r: &Report, as_json: bool) -> Result<()> {
    if as_json {
        println!("{}", serde_json::to_string_pretty(r)?);
        return Ok(());
    }
    println!(
        "{}: int8 {} export, {} ops, {} MACs, calibrated on {} training samples of {}",
        r.model,
        r.format,
        r.ops - 1,
        human_count(r.macs as f64),
        r.calibration_samples,
        r.data
    );
    println!("  input: scale {:e}, zero point {}", r.input_scale, r.input_zero_point);
    println!("  operator order (memory-optimal, fused-op indices): {:?}", r.order);
    println!("  predicted peak activation memory: {} B", r.predicted_peak_bytes);
    if let Some(b) = r.tflite_bytes {
        println!("  .tflite: {} ({b} B)", human_bytes(b as f64));
    }
    if let Some(c) = &r.c {
        println!(
            "  C: arena {} B ({} the predicted peak), conv scratch {} B (outside the arena), constants {}",
            c.arena_bytes,
            if c.arena_equals_predicted_peak { "=" } else { "!=" },
            c.scratch_bytes,
            human_bytes(c.const_bytes as f64)
        );
    }
    println!("  wrote {}", r.out);
    if let Some(f) = &r.fit {
        match f.get("error") {
            Some(e) => println!("  fit: {}", e.as_str().unwrap_or_default()),
            None => println!(
                "  fit ({}): fits; RAM limit {} B, flash limit {} B{}",
                f["limits"].as_str().unwrap_or_default(),
                f["ram_limit"],
                f["flash_limit"],
                match (f.get("ram_used"), f.get("flash_used")) {
                    (Some(ram), Some(flash)) => format!(
                        "; linked image uses {ram} B RAM (incl. {} B stack) and {flash} B flash",
                        verify::STACK_BYTES
                    ),
                    _ => String::new(),
                }
            ),
        }
    }
    if let Some(v) = &r.verify {
        println!(
            "  accuracy on {} test examples: float {:.2} %, int8 {:.2} % ({:+.2} points)",
            v.test_examples,
            100.0 * v.float_accuracy,
            100.0 * v.int8_accuracy,
            100.0 * (v.int8_accuracy - v.float_accuracy)
        );
        if let Some(a) = &v.tflm {
            print!("  TFLite Micro: {} real inputs, {} mismatches vs the int8 reference (max diff {})", a.inputs, a.mismatches, a.max_diff);
            if let Some(t) = &v.tflm_arena {
                print!("; arena head {} B vs predicted peak {} B (total {} B)", t["head"], t["predicted_peak"], t["total"]);
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
            println!("    image: {} B flash, {} B RAM (incl. {} B stack)", m.flash_bytes, m.ram_bytes, verify::STACK_BYTES);
            for (i, name, kind, macs, instr) in &m.per_op {
                let per = if *macs > 0 { format!("{:.3}/MAC", *instr as f64 / *macs as f64) } else { String::new() };
                println!("    op {i:>3} {name:<24} {kind:<18} {macs:>9} MACs {instr:>10} instr {per}");
            }
        }
        for p in &v.problems {
            println!("  ! {p}");
        }
        println!("  verification: {}", if v.passed { "passed" } else { "FAILED" });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use mcufit_train::burn::tensor::Tensor;
    use mcufit_train::{BnWeights, LayerWeights, Mode, TensorF32};

    /// The real-data directory beside the repository (or /work/shared), if present.
    fn shared_datasets() -> Option<PathBuf> {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        [root.join("../shared/datasets"), PathBuf::from("/work/shared/datasets")].into_iter().find(|p| p.is_dir())
    }

    /// Trained-layout weights from the quantizer's random ones (random BN statistics too, so BN
    /// folding is exercised), as the training crate would hold them.
    fn train_weights(g: &Graph, seed: u64) -> Weights {
        let fw = FloatWeights::random(g, seed).unwrap();
        let shapes = g.shapes().unwrap();
        let mut w = Weights::default();
        for (id, node) in g.nodes.iter().enumerate() {
            let in_s = node.inputs.first().map(|&i| shapes[i]).unwrap_or(shapes[id]);
            match (fw.get(&node.name), &node.op) {
                (Some(NodeWeights::Kernel { kernel, bias }), op) => {
                    let shape = match op {
                        mcufit_ir::Op::Conv2d(c) => vec![c.filters, c.kernel[0], c.kernel[1], in_s.c / c.groups],
                        mcufit_ir::Op::DepthwiseConv2d(d) => vec![1, d.kernel[0], d.kernel[1], in_s.c],
                        mcufit_ir::Op::Dense(d) => vec![d.units, in_s.elements()],
                        _ => unreachable!(),
                    };
                    let kernel = Some(TensorF32::new(shape, kernel.clone()).unwrap());
                    w.layers.insert(node.name.clone(), LayerWeights { kernel, bias: bias.clone(), bn: None });
                }
                (Some(NodeWeights::BatchNorm { gamma, beta, mean, var }), mcufit_ir::Op::BatchNorm(b)) => {
                    let bn = BnWeights { gamma: gamma.clone(), beta: beta.clone(), mean: mean.clone(), var: var.clone(), eps: b.eps };
                    w.layers.insert(node.name.clone(), LayerWeights { kernel: None, bias: None, bn: Some(bn) });
                }
                _ => {}
            }
        }
        w
    }

    /// burn eval-mode logits vs mcufit-quant's float reference on the converted weights, on real
    /// inputs: catches OHWI / depthwise / NHWC-flatten / SAME-padding layout mistakes.
    fn check_bridge(g: &Graph, spec: &str, n: usize) {
        let w = train_weights(g, 11);
        let device = default_device();
        let net = Network::from_weights(g, &w, &device).unwrap();
        let fw = network_float_weights(&net).unwrap();
        let s = g.input_shape();
        let opts = mcufit_data::LoadOptions { seed: 1, target_shape: Some([s.h, s.w, s.c]), limit: Some(n), ..Default::default() };
        let splits = mcufit_data::load(spec, &opts).unwrap();
        let (xs, _) = samples(&splits.test, &(0..n.min(splits.test.len())).collect::<Vec<_>>()).unwrap();
        assert!(!xs.is_empty());
        // The node feeding the softmax holds the logits.
        let logits_node = g.nodes.last().map(|nd| nd.inputs[0]).unwrap();
        let flat: Vec<f32> = xs.concat();
        let t = net.input_from_nhwc(&flat, xs.len(), &device).unwrap();
        let burn: Tensor<2> = net.forward_mode(t, Mode::Eval).unwrap();
        let [rows, k] = burn.dims();
        let burn: Vec<f32> = burn.into_data().try_into_vec_as::<f32>().unwrap();
        assert_eq!(rows, xs.len());
        let mut worst = 0f32;
        for (r, x) in xs.iter().enumerate() {
            let all = mcufit_quant::run_float_all(g, &fw, x).unwrap();
            let ours = &all[logits_node];
            assert_eq!(ours.len(), k);
            let scale = ours.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-3);
            for (a, b) in ours.iter().zip(&burn[r * k..(r + 1) * k]) {
                worst = worst.max((a - b).abs() / scale);
            }
        }
        println!("{}: {} real inputs from {spec}, max |float ref - burn| / max|logit| = {worst:.2e}", g.name, xs.len());
        assert!(worst < 1e-4, "{}: float reference and burn differ by {worst:e} (relative)", g.name);
    }

    #[test]
    fn bridge_matches_burn_on_built_in_digits() {
        // Always available: the UCI digits are compiled in. mnist-cnn covers conv (SAME), max
        // pool, NHWC flatten + dense; branchy-net covers add and concat.
        check_bridge(&mcufit_ir::zoo::mnist_cnn().unwrap(), "digits", 16);
        check_bridge(&mcufit_ir::zoo::branchy_net().unwrap(), "digits", 16);
    }

    #[test]
    fn bridge_matches_burn_on_real_speech_and_mnist() {
        let Some(root) = shared_datasets() else {
            eprintln!("\n!!!!!!!! SKIPPING bridge_matches_burn_on_real_speech_and_mnist: no shared/datasets beside the repo or in /work\n");
            return;
        };
        let speech = root.join("speech_commands_v0.02_test");
        let mnist = root.join("mnist");
        if speech.is_dir() {
            // ds-cnn: 10x4 stride-2 SAME conv (asymmetric padding), depthwise, pointwise, BN.
            check_bridge(&mcufit_ir::zoo::ds_cnn().unwrap(), &format!("speech-commands:{}", speech.display()), 4);
        } else {
            eprintln!("!!!!!!!! SKIPPING ds-cnn bridge check: {} missing", speech.display());
        }
        if mnist.is_dir() {
            // resnet-8: stride-2 SAME convs, 1x1 shortcut convs, residual adds; MNIST as RGB.
            check_bridge(&mcufit_ir::zoo::resnet_8().unwrap(), &format!("mnist:{}", mnist.display()), 4);
        } else {
            eprintln!("!!!!!!!! SKIPPING resnet-8 bridge check: {} missing", mnist.display());
        }
    }

    #[test]
    fn masks_must_be_folded_and_shapes_must_match() {
        let g = mcufit_ir::zoo::mnist_cnn().unwrap();
        let mut w = train_weights(&g, 3);
        assert!(to_float_weights(&g, &w).is_ok());
        w.masks.insert(0, vec![1.0; 4]);
        assert!(to_float_weights(&g, &w).unwrap_err().to_string().contains("masks"));
        w.masks.clear();
        let k = w.layers.values_mut().find_map(|l| l.kernel.as_mut()).unwrap();
        k.data.pop();
        k.shape = vec![k.data.len()];
        let e = to_float_weights(&g, &w).unwrap_err();
        assert!(format!("{e:#}").contains("values"), "{e:#}");
    }

    #[test]
    fn spread_covers_the_split() {
        assert_eq!(spread(10, 20), (0..10).collect::<Vec<_>>());
        assert_eq!(spread(10, 5), vec![0, 2, 4, 6, 8]);
        assert!(spread(0, 5).is_empty());
    }
}
