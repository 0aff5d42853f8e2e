//! Loading data for a model from the command line, and remembering how it was split.

use std::path::Path;

use anyhow::{Context, Result};
use mcufit_data::{LoadOptions, Splits};
use mcufit_ir::Graph;
use serde::{Deserialize, Serialize};

/// The data a model was trained on, stored in its directory (`data.json`) so `eval` and `compress`
/// reproduce the same seeded split without the user repeating it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct DataRecord {
    pub spec: String,
    pub seed: u64,
}

impl DataRecord {
    pub fn read(dir: &Path) -> Option<DataRecord> {
        let text = std::fs::read_to_string(dir.join("data.json")).ok()?;
        serde_json::from_str(&text).ok()
    }
    pub fn write(&self, dir: &Path) -> Result<()> {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        std::fs::write(dir.join("data.json"), serde_json::to_string_pretty(self)?)
            .with_context(|| format!("cannot write {}", dir.join("data.json").display()))
    }
}

/// The built-in data set used when no `--data` is given.
pub const DEFAULT_DATA: &str = "digits";

/// Loads `spec` resized to the model's input, and checks the classes match the classifier.
pub fn load_for(graph: &Graph, spec: &str, seed: u64) -> Result<Splits> {
    let s = graph.input_shape();
    let opts = LoadOptions { seed, target_shape: Some([s.h, s.w, s.c]), ..LoadOptions::default() };
    let splits = mcufit_data::load(spec, &opts).with_context(|| format!("cannot load data '{spec}'"))?;
    let classes = splits.train.num_classes();
    let outputs = graph.num_outputs();
    if classes != outputs {
        anyhow::bail!(
            "the data '{spec}' has {classes} classes but model '{}' has {outputs} outputs; \
             pick a model with {classes} outputs (or edit its last dense layer)",
            graph.name
        );
    }
    Ok(splits)
}
