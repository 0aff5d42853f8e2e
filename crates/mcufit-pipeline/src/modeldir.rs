//! The model directory: the one place that names and writes its files.
//!
//! ```text
//! DIR/model.json            the architecture (docs/model-format.md)
//! DIR/weights.safetensors   trained weights (masks folded)
//! DIR/data.json             the data spec and split seed ([`DataRecord`]), so eval/export reuse the split
//! DIR/report.json           what the stage that wrote the model measured
//! DIR/last/ DIR/best/       training checkpoints (train); DIR/checkpoints/ (compress)
//! ```
//! Every JSON file is written to a temporary file in the same directory and renamed into place, so a
//! crash leaves the old file or the new one, never half of one.

use std::path::{Path, PathBuf};

use mcufit_train::{default_device, Network};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::error::{PipelineError, Result};

/// The data a model was trained on: the spec and the seed of its train/val/test split.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct DataRecord {
    pub spec: String,
    pub seed: u64,
}

/// A model directory (it need not exist yet).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelDir {
    root: PathBuf,
}

pub const MODEL_JSON: &str = "model.json";
pub const WEIGHTS: &str = "weights.safetensors";
pub const DATA_JSON: &str = "data.json";
pub const REPORT_JSON: &str = "report.json";

impl ModelDir {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        ModelDir { root: root.into() }
    }
    pub fn path(&self) -> &Path {
        &self.root
    }
    pub fn join(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }
    /// True when the directory holds a trained model (architecture and weights).
    pub fn has_model(&self) -> bool {
        self.join(MODEL_JSON).is_file() && self.join(WEIGHTS).is_file()
    }

    pub fn create(&self) -> Result<()> {
        std::fs::create_dir_all(&self.root).map_err(|e| PipelineError::io(&self.root, e))
    }

    /// Loads the trained network, with an error that says what the directory lacks.
    pub fn load_network(&self) -> Result<Network> {
        if !self.root.is_dir() {
            return Err(PipelineError::Config(format!("{} is not a directory", self.root.display())));
        }
        if !self.has_model() {
            return Err(PipelineError::Config(format!(
                "{} is not a model directory: it needs {MODEL_JSON} and {WEIGHTS} (written by mcufit train, compress or fit)",
                self.root.display()
            )));
        }
        Network::load(&self.root, &default_device()).map_err(|e| PipelineError::Context {
            context: format!("cannot load the model in {}", self.root.display()),
            inner: Box::new(e.into()),
        })
    }

    /// Writes the network's architecture and weights.
    pub fn save_network(&self, network: &Network) -> Result<()> {
        self.create()?;
        network.save(&self.root).map_err(|e| PipelineError::Context {
            context: format!("cannot save the model to {}", self.root.display()),
            inner: Box::new(e.into()),
        })
    }

    pub fn data_record(&self) -> Result<Option<DataRecord>> {
        self.read_json(DATA_JSON)
    }
    pub fn write_data_record(&self, r: &DataRecord) -> Result<()> {
        self.write_json(DATA_JSON, r)
    }

    /// Reads `name` as JSON; `None` when absent, an error naming the file when unreadable.
    pub fn read_json<T: DeserializeOwned>(&self, name: &str) -> Result<Option<T>> {
        let p = self.join(name);
        match std::fs::read_to_string(&p) {
            Ok(text) => serde_json::from_str(&text)
                .map(Some)
                .map_err(|e| PipelineError::File { path: p.display().to_string(), msg: format!("not valid: {e}") }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(PipelineError::io(&p, e)),
        }
    }

    /// Writes `value` as pretty JSON, atomically.
    pub fn write_json<T: Serialize + ?Sized>(&self, name: &str, value: &T) -> Result<()> {
        let text = serde_json::to_string_pretty(value)
            .map_err(|e| PipelineError::File { path: self.join(name).display().to_string(), msg: e.to_string() })?;
        self.write_bytes(name, text.as_bytes())
    }

    /// Writes `bytes` to `name`, atomically (temporary file + rename in the same directory).
    pub fn write_bytes(&self, name: &str, bytes: &[u8]) -> Result<()> {
        self.create()?;
        write_atomic(&self.join(name), bytes)
    }
}

/// Writes `bytes` to `path` through a temporary file in the same directory and a rename.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| PipelineError::io(dir, e))?;
    let name = path.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let result = (|| {
        use std::io::Write;
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    result.map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        PipelineError::io(path, e)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_round_trip_is_atomic_and_missing_is_none() {
        let d = ModelDir::new(std::env::temp_dir().join(format!("mcufit-modeldir-{}", std::process::id())));
        assert_eq!(d.data_record().unwrap(), None);
        let r = DataRecord { spec: "digits".into(), seed: 7 };
        d.write_data_record(&r).unwrap();
        assert_eq!(d.data_record().unwrap(), Some(r));
        // No temporary file is left behind.
        let names: Vec<_> = std::fs::read_dir(d.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names.len(), 1, "{names:?}");
        std::fs::write(d.join(DATA_JSON), "{").unwrap();
        assert!(d.data_record().unwrap_err().to_string().contains("data.json"));
        let e = d.load_network().unwrap_err().to_string();
        assert!(e.contains("not a model directory"), "{e}");
        std::fs::remove_dir_all(d.path()).unwrap();
    }
}
