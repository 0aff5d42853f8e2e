//! # mcufit-pipeline
//!
//! The layer between the `mcufit` command line (and the benchmarks) and the crates that do the
//! work: one API for every stage, each returning a typed record.
//!
//! - [`ModelDir`]: the one writer of a model directory (model, weights, `data.json`, `report.json`);
//! - [`BudgetSpec`] → [`Budget`]: the limits, parsed once; [`Footprint`] and [`Budget::check`]: the
//!   one meaning of "fits" (RAM and flash in total on the target, or the papers' activation peak and
//!   weight bytes alone; see [`budget`]);
//! - [`load_model_for_data`]: a model and a data set made to agree (zoo models adapt their classifier
//!   and input channels; the data is resized to the model's input), with the notes to show once;
//! - stages: [`stages::train`], [`stages::compress`], [`deploy::quantize`], [`deploy::build`],
//!   [`deploy::verify`], and [`fit::fit`], all of them in order;
//! - [`report`]: the HTML report of a fit.
//!
//! Libraries print nothing: progress goes through [`fit::Event`] callbacks (the trainer's progress
//! bars are its own, switched by `progress` flags).

pub mod budget;
pub mod data;
pub mod deploy;
pub mod error;
pub mod fit;
pub mod imported;
pub mod modeldir;
pub mod report;
pub mod search;
pub mod size;
pub mod stages;
pub mod tasks;

pub use budget::{Budget, BudgetSpec, FitCheck, FitRow, Footprint, Target};
pub use data::{load_for, load_with, Adjustments, DEFAULT_DATA};
pub use error::{Context, PipelineError, Result};
pub use fit::{fit, Event, FitOptions, FitReport, FitRequest, Method, Recipe};
pub use modeldir::{DataRecord, ModelDir};

use mcufit_data::{LoadOptions, Splits, NATIVE_CHANNELS};
use mcufit_ir::Graph;

/// Loads a model given as `zoo:NAME`, a model `.json` file, a model directory, or a `.tflite` /
/// `.onnx` file ([`imported`]: its graph), and refuses one that no microcontroller can hold
/// ([`size::check_mcu`]).
pub fn load_model(spec: &str) -> Result<Graph> {
    let graph = load_graph(spec)?;
    size::check_mcu(&graph)?;
    Ok(graph)
}

fn load_graph(spec: &str) -> Result<Graph> {
    if imported::is_import_path(spec) {
        return Ok(imported::load_imported(std::path::Path::new(spec))?.graph().clone());
    }
    mcufit_ir::load_model(spec).context(|| format!("cannot load model '{spec}'"))
}

/// Refuses a model this machine cannot train ([`size::check_trainable`] at the default batch,
/// against [`size::memory_limit`]) or no microcontroller can hold.
fn check_for_training(graph: &Graph) -> Result<()> {
    size::check_trainable(graph, size::ASSUMED_BATCH, size::memory_limit()?)?;
    size::check_mcu(graph)?;
    Ok(())
}

/// Loads `model` and the data `spec` so that they agree. A zoo model takes the data's class count
/// and input channels (its classifier and stem adapt); any model gets the data resized (and, for a
/// model file, channel-converted) to its input. Returns the graph, the splits (seeded by `seed`:
/// the split every command uses) and what was changed, to say once.
pub fn load_model_for_data(model: &str, spec: &str, opts: &LoadOptions) -> Result<(Graph, Splits, Adjustments)> {
    let (graph, splits, adj, _) = load_base_for_data(model, spec, opts)?;
    Ok((graph, splits, adj))
}

/// [`load_model_for_data`], plus the trained starting network when `model` is a float `.tflite` /
/// `.onnx` file: its weights, behind the input adapter and with its classes in the data's order
/// ([`imported::float_base_for_data`]; the notes say so). An int8 file is refused: it is a deployed
/// model (analyze, eval and export take it).
pub fn load_base_for_data(
    model: &str,
    spec: &str,
    opts: &LoadOptions,
) -> Result<(Graph, Splits, Adjustments, Option<mcufit_train::Network>)> {
    if imported::is_import_path(model) {
        let m = imported::load_imported(std::path::Path::new(model))?;
        let (graph, splits, notes, net) = imported::float_base_for_data(&m, spec, opts)?;
        check_for_training(&graph)?;
        let adj =
            Adjustments { model: Some(notes.join("; ")), data: splits.conversion.as_ref().map(|c| c.to_string()) };
        return Ok((graph, splits, adj, Some(net)));
    }
    let graph = load_graph(model)?;
    // Before the data is loaded: it is resized to the model's input.
    check_for_training(&graph)?;
    let mut adj = Adjustments::default();
    if !model.starts_with("zoo:") {
        let splits = data::load_with(&graph, spec, opts)?;
        adj.data = splits.conversion.as_ref().map(|c| c.to_string());
        return Ok((graph, splits, adj, None));
    }
    let s = graph.input_shape();
    let native = LoadOptions { target_shape: Some([s.h, s.w, NATIVE_CHANNELS]), ..opts.clone() };
    let splits = mcufit_data::load(spec, &native).map_err(|e| PipelineError::Context {
        context: format!("cannot load data '{spec}'"),
        inner: Box::new(e.into()),
    })?;
    let channels = splits.train.shape()[2];
    let (graph, adaptation) = mcufit_ir::adapt_to_data(&graph, splits.train.num_classes(), channels)
        .context(|| format!("cannot adapt {model} to the data '{spec}'"))?;
    check_for_training(&graph)?;
    adj.model = adaptation.map(|a| a.to_string());
    adj.data = splits.conversion.as_ref().map(|c| c.to_string());
    Ok((graph, splits, adj, None))
}

/// The types a front end configures stages with, re-exported so the CLI needs no other crate.
pub mod config {
    pub use mcufit_data::LoadOptions;
    pub use mcufit_ir::zoo;
    pub use mcufit_ir::HeadSpec;
    pub use mcufit_prune::baselines::BaselineKind;
    pub use mcufit_prune::{summary as compress_summary, CompressConfig, DepthConfig, Salience};
    pub use mcufit_train::{EngineKind, LrSchedule, Network, OptimizerKind, TrainConfig};
}
