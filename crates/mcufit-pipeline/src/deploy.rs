//! Quantize → export → verify: from a trained network to checked deployment files.
//!
//! - [`quantize`]: int8 post-training quantization calibrated on training samples;
//! - [`int8_eval`]: the deployed accuracy, from the bit-exact int8 reference;
//! - [`build`]: the `.tflite` (with mcufit's arena plan embedded) and the C library, in the
//!   memory-optimal operator order;
//! - [`link_for_board`]: links the C library for a Cortex-M4 with the budget's RAM and flash: the
//!   measured footprint;
//! - [`verify`]: TFLite Micro, host gcc and Cortex-M4 (QEMU) outputs against the int8 reference.
//!
//! Missing verification tools are reported as skipped checks with the command that installs them;
//! nothing here installs anything.

use std::path::{Path, PathBuf};

use mcufit_cost::{CostModel, CostOptions, MemoryOptions};
use mcufit_data::{Dataset, InputEncoding, Splits};
use mcufit_export::verify::{self, Agreement, BoardMemory, Runtime, Tools};
use mcufit_export::{CExportOptions, CSources, ExportError, PlanOptions};
use mcufit_ir::Weights;
use mcufit_quant::{InputQuant, QuantizeOptions, QuantizedModel};
use mcufit_train::{evaluate, EvalReport, Network};
use serde::{Deserialize, Serialize};

use crate::budget::{Budget, Footprint, Target};
use crate::error::{Context, PipelineError, Result};

// ---- trained weights → quantizer ---------------------------------------------------------------

/// The weights of a trained network as the quantizer and the float reference take them: channel
/// masks folded ([`Network::export_weights`]), checked against the graph
/// ([`Weights::check_deployable`]).
pub fn deployed_weights(net: &Network) -> Result<Weights> {
    let w = net.export_weights().context(|| "cannot read the network's weights".to_string())?;
    w.check_deployable(net.graph())
        .context(|| format!("the trained weights do not match model '{}'", net.graph().name))?;
    Ok(w)
}

// ---- data, calibration, quantization -----------------------------------------------------------

/// NHWC f32 samples `idx` of `ds` (clean: no augmentation) and their labels.
pub fn samples(ds: &Dataset, idx: &[usize]) -> Result<(Vec<Vec<f32>>, Vec<u32>)> {
    let (mut flat, mut labels) = (Vec::new(), Vec::new());
    ds.batch(idx, &mut flat, &mut labels).context(|| format!("cannot read samples of {}", ds.name()))?;
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
        InputEncoding::Pixels { scale, zero_point } => Err(PipelineError::Config(format!(
            "image encoding scale {scale}, zero point {zero_point}: the int8 export expects (p - 128) / 128"
        ))),
        InputEncoding::Features { .. } => Ok(InputQuant::Calibrated),
    }
}

/// Training samples calibrating the activation ranges, unless told otherwise.
pub const DEFAULT_CALIBRATION: usize = 200;

/// Quantizes `net` with activation ranges from `n` training samples spread over `train`.
pub fn quantize(net: &Network, train: &Dataset, n: usize) -> Result<QuantizedModel> {
    if n == 0 {
        return Err(PipelineError::Config("calibration needs at least 1 sample".into()));
    }
    let weights = deployed_weights(net)?;
    let (calib, _) = samples(train, &spread(train.len(), n))?;
    let opts = QuantizeOptions { input: input_quant(train)? };
    mcufit_quant::quantize_with(net.graph(), &weights, &calib, &opts)
        .context(|| format!("cannot quantize model '{}'", net.graph().name))
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

/// Runs the int8 reference on every sample of `ds` (two threads) and scores the argmax of its
/// int8 output (ties go to the lower class, as on the device). The loss is the cross-entropy of the
/// dequantized softmax output, each probability floored at half its quantization step.
pub fn int8_eval(q: &QuantizedModel, ds: &Dataset) -> Result<EvalReport> {
    int8_eval_with(q, &[ds], &|x: &[f32]| q.quantize_input(x), None)
}

/// [`int8_eval`] over several data sets at once (e.g. every split), with the int8 input computed by
/// `encode` from a sample, and model output `j` counted as data class `class_of_output[j]` (the
/// identity when `None`).
pub fn int8_eval_with(
    q: &QuantizedModel,
    sets: &[&Dataset],
    encode: &(dyn Fn(&[f32]) -> Vec<i8> + Sync),
    class_of_output: Option<&[usize]>,
) -> Result<EvalReport> {
    let Some(first) = sets.first() else {
        return Err(PipelineError::Config("int8 evaluation without data".into()));
    };
    let k = first.num_classes();
    let class_of: Vec<usize> = class_of_output.map_or_else(|| (0..k).collect(), <[usize]>::to_vec);
    let mut output_of = vec![usize::MAX; k];
    for (j, &c) in class_of.iter().enumerate() {
        if c < k {
            output_of[c] = j;
        }
    }
    let out = q.output().clone();
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).clamp(1, 2);
    type Part = Result<Vec<(u32, usize, f64)>>;
    let mut results: Vec<Part> = Vec::new();
    for ds in sets {
        let idx: Vec<usize> = (0..ds.len()).collect();
        let chunk = idx.len().div_ceil(threads).max(1);
        let part: Vec<Part> = std::thread::scope(|s| {
            let handles: Vec<_> = idx
                .chunks(chunk)
                .map(|part| {
                    let (out, output_of) = (&out, &output_of);
                    s.spawn(move || -> Part {
                        let mut r = Vec::with_capacity(part.len());
                        for batch in part.chunks(256) {
                            let (xs, labels) = samples(ds, batch)?;
                            let qx: Vec<Vec<i8>> = xs.iter().map(|x| encode(x)).collect();
                            for (y, l) in q.run_int8_batch(&qx)?.iter().zip(labels) {
                                let j = output_of.get(l as usize).copied().unwrap_or(usize::MAX);
                                let p = y.get(j).map_or(0.0, |&v| out.dequantize(v) as f64);
                                r.push((l, argmax_i8(y), -(p.max(out.scale as f64 / 2.0)).ln()));
                            }
                        }
                        Ok(r)
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join().unwrap_or_else(|_| Err(PipelineError::Config("int8 evaluation thread panicked".into())))
                })
                .collect()
        });
        results.extend(part);
    }
    let mut confusion = vec![vec![0usize; k]; k];
    let mut loss = 0.0;
    for r in results {
        for (l, p, ce) in r? {
            let l = l as usize;
            let p = class_of.get(p).copied().unwrap_or(usize::MAX);
            if l >= k || p >= k {
                return Err(PipelineError::Config(format!("label {l} or prediction {p} outside the {k} classes")));
            }
            confusion[l][p] += 1;
            loss += ce;
        }
    }
    let names: Vec<&str> = sets.iter().map(|d| d.name()).collect();
    EvalReport::from_confusion(confusion, loss).context(|| format!("int8 evaluation on {}", names.join(" + ")))
}

/// Float and int8 test accuracy side by side.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Accuracies {
    pub float: EvalReport,
    pub int8: EvalReport,
}

/// Float and int8 evaluation of the same network on `ds`.
pub fn evaluate_both(net: &Network, q: &QuantizedModel, ds: &Dataset) -> Result<Accuracies> {
    Ok(Accuracies { float: evaluate(net, ds, 256)?, int8: int8_eval(q, ds)? })
}

// ---- export ------------------------------------------------------------------------------------

/// The memory-optimal operator order (fused-op indices, input first) and its peak in bytes.
pub fn memory_order(graph: &mcufit_ir::Graph) -> Result<(Vec<usize>, usize)> {
    let cm = CostModel::new(graph, CostOptions { memory: MemoryOptions::default(), quant_params: true })?;
    let plan = cm.memory_plan(&cm.sizes());
    Ok((plan.order, plan.peak.round() as usize))
}

/// Both deployment artefacts of one quantized model, in one operator order.
#[derive(Debug, Clone)]
pub struct Artefacts {
    pub order: Vec<usize>,
    /// The predicted activation peak for `order`, bytes.
    pub peak: usize,
    pub tflite: Vec<u8>,
    pub c: CSources,
}

/// Builds the `.tflite` (mcufit's arena plan embedded) and the C sources in the memory-optimal order.
pub fn build(q: &QuantizedModel, graph: &mcufit_ir::Graph) -> Result<Artefacts> {
    let (order, peak) = memory_order(graph)?;
    if order.len() != q.ops.len() {
        return Err(PipelineError::Config(format!(
            "the cost model orders {} ops but the quantized model has {}",
            order.len(),
            q.ops.len()
        )));
    }
    let plan = PlanOptions { count_input: true, in_place_add: false };
    let tflite = mcufit_export::export_tflite_with(q, &order, Some(plan))?;
    let c = mcufit_export::generate_c(q, &order, CExportOptions { plan })?;
    Ok(Artefacts { order, peak, tflite, c })
}

/// Writes the `.tflite` file atomically.
pub fn write_tflite(a: &Artefacts, path: &Path) -> Result<()> {
    crate::modeldir::write_atomic(path, &a.tflite)
}

/// Writes the C library (model and kernels, `.c`/`.h`) into `dir`. A new `dir` is written as one unit
/// (`DIR.partial`, then renamed into place), so a kill leaves all of the library or none of it; into
/// an existing `dir` (other files there are kept) each file is written atomically.
pub fn write_c(a: &Artefacts, dir: &Path) -> Result<Vec<PathBuf>> {
    let files = a.c.files();
    if !dir.exists() {
        mcufit_train::replace_dir(dir, |tmp| {
            for (name, text) in &files {
                let p = tmp.join(name);
                std::fs::write(&p, text.as_bytes()).map_err(|e| mcufit_train::TrainError::io(&p, e))?;
            }
            Ok(())
        })?;
        return Ok(files.iter().map(|(name, _)| dir.join(name)).collect());
    }
    let mut written = Vec::new();
    for (name, text) in files {
        let p = dir.join(name);
        crate::modeldir::write_atomic(&p, text.as_bytes())?;
        written.push(p);
    }
    Ok(written)
}

/// The footprint of the exported model: the arena and scratch of the C plan, the cost model's
/// weights and requantization, and the target's code/runtime (estimated until linked).
pub fn footprint(graph: &mcufit_ir::Graph, a: &Artefacts, budget: &Budget) -> Result<Footprint> {
    let graph_fp = Footprint::of_graph(graph, budget)?;
    Ok(Footprint {
        arena: a.peak as u64,
        scratch: match budget.target {
            Target::C => a.c.scratch_bytes as u64,
            Target::Tflite => 0,
        },
        ..graph_fp
    })
}

// ---- tools -------------------------------------------------------------------------------------

/// Why a check was not run: the tool that is missing and the command that installs it.
pub fn missing_tool(t: Tools) -> Option<String> {
    verify::tools_available(t).err().map(|e| e.to_string())
}

/// Links the C export for a Cortex-M4 with the budget's RAM and flash (QEMU's 4 MiB where a side is
/// unbounded), replacing the code/runtime terms of `estimate` ([`footprint`]) by the image's.
/// `Ok(Ok(measured))`: it links, with the image's real sizes; `Ok(Err(why))`: it does not fit;
/// `Err`: the link could not be attempted.
///
/// The link runs in a fresh directory under the system temp directory (unique per call, so that
/// concurrent links in one process never share one), removed afterwards.
pub fn link_for_board(
    q: &QuantizedModel,
    estimate: &Footprint,
    a: &Artefacts,
    budget: &Budget,
) -> Result<std::result::Result<Footprint, String>> {
    static LINKS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let call = LINKS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let workdir = std::env::temp_dir().join(format!("mcufit-link-{}-{call}", std::process::id()));
    let workdir = workdir.as_path();
    let mut fp = estimate.clone();
    let mem = BoardMemory {
        ram_bytes: budget.ram.unwrap_or(verify::QEMU_MAX.ram_bytes),
        flash_bytes: budget.flash.unwrap_or(verify::QEMU_MAX.flash_bytes),
    };
    let zero = vec![vec![0i8; q.input().elements()]];
    let r = verify::build_m4(&a.c, &zero, mem, workdir).and_then(|elf| verify::image_sizes(&elf));
    let _ = std::fs::remove_dir_all(workdir);
    match r {
        Ok((flash, ram)) => {
            // Everything in the image that is not the model's own data is code and runtime.
            fp.stack = verify::STACK_BYTES;
            fp.runtime_ram = ram.saturating_sub(fp.arena + fp.scratch + fp.stack);
            fp.code = flash.saturating_sub(fp.weights + fp.requant);
            fp.measured = true;
            Ok(Ok(fp))
        }
        Err(e @ ExportError::DoesNotFit { .. }) => Ok(Err(e.to_string())),
        Err(e) => Err(PipelineError::Context { context: "cannot link the C export".into(), inner: Box::new(e.into()) }),
    }
}

// ---- verification ------------------------------------------------------------------------------

/// What [`verify`] checked, and what it could not.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct VerifyReport {
    pub inputs: usize,
    pub tflm: Option<Agreement>,
    /// TFLM's arena figures (total, head, tail) against the predicted peak.
    pub tflm_arena: Option<(usize, usize, usize)>,
    /// An imported `.tflite` itself in TFLite Micro against the int8 reference (imports only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub original_tflm: Option<Agreement>,
    /// TFLM's arena figures (total, head, tail) for the original file, with TFLM's own planner.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub original_tflm_arena: Option<(usize, usize, usize)>,
    pub c_host: Option<Agreement>,
    pub m4: Option<M4Report>,
    pub c_arena_bytes: usize,
    pub predicted_peak: usize,
    /// Checks not run, each with why (a missing tool and how to install it).
    pub skipped: Vec<String>,
    /// Checks that ran and failed.
    pub problems: Vec<String>,
    /// Every check that ran agreed (skipped checks are listed in `skipped`, not counted as passed).
    pub passed: bool,
}

/// The Cortex-M4 run under QEMU.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct M4Report {
    pub agreement: Option<Agreement>,
    pub instructions: u64,
    pub instructions_per_mac: f64,
    pub pointwise_macs: u64,
    pub pointwise_instructions: u64,
    pub pointwise_instructions_per_mac: Option<f64>,
    pub per_op: Vec<OpInstructions>,
    pub flash_bytes: u64,
    pub ram_bytes: u64,
}

/// Instructions of one op on the Cortex-M4.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OpInstructions {
    pub index: usize,
    pub name: String,
    pub kind: String,
    pub macs: u64,
    pub instructions: u64,
}

/// How many inputs each check runs.
#[derive(Debug, Clone, Copy)]
pub struct VerifyOptions {
    /// Real inputs for TFLM and host C.
    pub inputs: usize,
    /// Inputs compiled into the Cortex-M4 image.
    pub m4_inputs: usize,
}

impl Default for VerifyOptions {
    fn default() -> Self {
        VerifyOptions { inputs: 1000, m4_inputs: 10 }
    }
}

/// Up to `n` real inputs: the test split first, then validation, then training (clean).
pub fn verify_samples(splits: &Splits, n: usize) -> Result<Vec<Vec<f32>>> {
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

fn scratch_dir(tag: &str) -> PathBuf {
    std::env::temp_dir().join(format!("mcufit-{tag}-{}", std::process::id()))
}

/// Runs the exports on real inputs in TFLite Micro, with the host gcc and on a Cortex-M4 under QEMU,
/// and compares every output byte with the int8 reference; checks the C arena equals the predicted peak.
pub fn verify(q: &QuantizedModel, a: &Artefacts, splits: &Splits, opts: VerifyOptions) -> Result<VerifyReport> {
    let xs: Vec<Vec<i8>> = verify_samples(splits, opts.inputs.max(1))?.iter().map(|x| q.quantize_input(x)).collect();
    verify_inputs(q, a, &xs, None, opts)
}

/// [`verify`] on given int8 inputs. With `original` (the bytes of an imported `.tflite`), that
/// file is run in TFLite Micro as well and compared with the int8 reference: the import computes
/// what TFLM computes for the user's own file.
pub fn verify_inputs(
    q: &QuantizedModel,
    a: &Artefacts,
    xs: &[Vec<i8>],
    original: Option<&[u8]>,
    opts: VerifyOptions,
) -> Result<VerifyReport> {
    let mut v = VerifyReport { c_arena_bytes: a.c.plan.arena_bytes, predicted_peak: a.peak, ..Default::default() };
    v.inputs = xs.len();
    let dir = scratch_dir("verify");
    let check = |what: &str, a: &Agreement, problems: &mut Vec<String>| {
        if a.mismatches > 0 {
            problems.push(format!("{what} differs from the int8 reference on {} of {} inputs", a.mismatches, a.inputs));
        }
    };
    match missing_tool(Tools::Python) {
        Some(why) => v.skipped.push(format!("TFLite Micro: {why}")),
        None => {
            let (agree, arena) = verify::verify_tflite(q, &a.tflite, xs, Runtime::Tflm, &dir.join("tflm"))?;
            check("TFLite Micro", &agree, &mut v.problems);
            v.tflm = Some(agree);
            v.tflm_arena = arena;
            if let Some(bytes) = original {
                let (agree, arena) = verify::verify_tflite(q, bytes, xs, Runtime::Tflm, &dir.join("tflm-original"))?;
                check("TFLite Micro on the original file", &agree, &mut v.problems);
                v.original_tflm = Some(agree);
                v.original_tflm_arena = arena;
            }
        }
    }
    // The host C compiler is part of the build toolchain: always there.
    let host = verify::verify_c_host(q, &a.c, xs, &dir.join("host"))?;
    check("host C", &host, &mut v.problems);
    v.c_host = Some(host);
    if a.c.plan.arena_bytes != a.peak {
        v.problems.push(format!("C arena {} B differs from the predicted peak {} B", a.c.plan.arena_bytes, a.peak));
    }
    match missing_tool(Tools::Arm) {
        Some(why) => v.skipped.push(format!("Cortex-M4: {why}")),
        None => {
            let n = opts.m4_inputs.clamp(1, xs.len());
            let m4 = m4_check(q, &a.c, &xs[..n], &dir)?;
            if let Some(agree) = &m4.agreement {
                check("Cortex-M4", agree, &mut v.problems);
            }
            v.m4 = Some(m4);
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    v.passed = v.problems.is_empty();
    Ok(v)
}

fn m4_check(q: &QuantizedModel, src: &CSources, inputs: &[Vec<i8>], dir: &Path) -> Result<M4Report> {
    let (agree, run) = verify::verify_m4(q, src, inputs, verify::QEMU_MAX, &dir.join("m4"))?;
    // A second image with a tick read after every op gives the per-op split (fastest of 3 runs).
    let prof = verify::profile_m4(src, &inputs[..inputs.len().min(3)], &dir.join("m4-profile"))?;
    let macs = q.macs();
    let mut r = M4Report {
        agreement: Some(agree),
        instructions: run.instructions,
        instructions_per_mac: run.instructions as f64 / macs.max(1) as f64,
        flash_bytes: run.flash_used,
        ram_bytes: run.ram_used,
        ..M4Report::default()
    };
    for &(i, instructions) in &prof.op_instructions {
        let m = q.op_macs(i);
        if q.is_pointwise(i) {
            r.pointwise_macs += m;
            r.pointwise_instructions += instructions;
        }
        r.per_op.push(OpInstructions {
            index: i,
            name: q.ops[i].name.clone(),
            kind: q.ops[i].kind.name().to_string(),
            macs: m,
            instructions,
        });
    }
    if r.pointwise_macs > 0 {
        r.pointwise_instructions_per_mac = Some(r.pointwise_instructions as f64 / r.pointwise_macs as f64);
    }
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spread_covers_the_split() {
        assert_eq!(spread(10, 20), (0..10).collect::<Vec<_>>());
        assert_eq!(spread(10, 5), vec![0, 2, 4, 6, 8]);
        assert!(spread(0, 5).is_empty());
    }
}
