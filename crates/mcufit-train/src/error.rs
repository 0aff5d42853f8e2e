//! Error type of the training engine.

use thiserror::Error;

/// Everything that can go wrong building, training, saving or loading a network.
#[derive(Debug, Error)]
pub enum TrainError {
    /// The IR graph is invalid or uses something the trainer cannot build.
    #[error("graph: {0}")]
    Graph(String),
    /// An IR-level error (shape inference, model file).
    #[error(transparent)]
    Ir(#[from] mcufit_ir::IrError),
    /// Input data does not match the network (shape, labels, sizes).
    #[error("data: {0}")]
    Data(String),
    /// Bad configuration value.
    #[error("config: {0}")]
    Config(String),
    /// Weights file or weights map does not match the graph.
    #[error("weights: {0}")]
    Weights(String),
    /// A checkpoint could not be written or read.
    #[error("checkpoint: {0}")]
    Checkpoint(String),
    /// Training diverged (non-finite loss).
    #[error("training diverged: {0}")]
    Diverged(String),
    /// A burn tensor operation reported an error.
    #[error("tensor: {0}")]
    Tensor(String),
    /// A file could not be read or written. The OS error is in the message, not also a `source`, so
    /// an error chain (`{:#}`) does not say it twice.
    #[error("{path}: {error}")]
    Io { path: String, error: std::io::Error },
}

impl TrainError {
    pub fn io(path: &std::path::Path, source: std::io::Error) -> Self {
        TrainError::Io { path: path.display().to_string(), error: source }
    }
}

pub type Result<T, E = TrainError> = std::result::Result<T, E>;
