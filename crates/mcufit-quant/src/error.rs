use thiserror::Error;

use crate::fixedpoint::MultiplierError;

/// Everything that can go wrong quantizing or running a model.
#[derive(Debug, Error)]
pub enum QuantError {
    #[error(transparent)]
    Ir(#[from] mcufit_ir::IrError),
    #[error("node '{node}': no weights given")]
    MissingWeights { node: String },
    #[error("node '{node}': {msg}")]
    Unsupported { node: String, msg: String },
    #[error("calibration: {0}")]
    Calibration(String),
    #[error("input has {got} values, the model takes {expected}")]
    InputSize { expected: usize, got: usize },
    #[error("op '{op}': {source}")]
    Multiplier {
        op: String,
        #[source]
        source: MultiplierError,
    },
    #[error("invalid quantized model: {0}")]
    Model(String),
}

pub type Result<T, E = QuantError> = std::result::Result<T, E>;
