//! Loading a model and its data together: one split function for the CLI and the benchmarks.

use mcufit_data::{LoadOptions, Splits};
use mcufit_ir::Graph;

use crate::error::{PipelineError, Result};

/// The built-in data set used when no data is given.
pub const DEFAULT_DATA: &str = "digits";

/// What loading a model for a data set changed, said once to the user.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Adjustments {
    /// The model's classifier or input channels were adapted to the data.
    pub model: Option<String>,
    /// The samples were resized or channel-converted to the model's input.
    pub data: Option<String>,
}

impl Adjustments {
    pub fn lines(&self) -> Vec<String> {
        self.model.iter().chain(self.data.iter()).cloned().collect()
    }
}

/// Loads `spec` split with `seed` (the one split every command and benchmark uses), resized to the
/// model's input, and checks the classes match the classifier.
pub fn load_for(graph: &Graph, spec: &str, seed: u64) -> Result<Splits> {
    load_with(graph, spec, &LoadOptions { seed, ..LoadOptions::default() })
}

/// [`load_for`] with more options (a sample `limit` for quick runs).
pub fn load_with(graph: &Graph, spec: &str, opts: &LoadOptions) -> Result<Splits> {
    let s = graph.input_shape();
    let opts = LoadOptions { target_shape: Some([s.h, s.w, s.c]), ..opts.clone() };
    let splits = mcufit_data::load(spec, &opts).map_err(|e| PipelineError::Context {
        context: format!("cannot load data '{spec}'"),
        inner: Box::new(e.into()),
    })?;
    let classes = splits.train.num_classes();
    let outputs = graph.num_outputs();
    if classes != outputs {
        return Err(PipelineError::Config(format!(
            "the data '{spec}' has {classes} classes but model '{}' has {outputs} outputs; \
             pick a model with {classes} outputs (zoo models adapt by themselves; edit the last dense layer of a model file)",
            graph.name
        )));
    }
    Ok(splits)
}
