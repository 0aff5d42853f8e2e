use thiserror::Error;

/// Errors of the exporters, the .tflite reader and the verification helpers.
#[derive(Debug, Error)]
pub enum ExportError {
    #[error(transparent)]
    Quant(#[from] mcufit_quant::QuantError),
    #[error("operator order: {0}")]
    Order(String),
    #[error("cannot export op '{op}': {msg}")]
    Unsupported { op: String, msg: String },
    #[error("malformed .tflite: {0}")]
    Malformed(String),
    #[error("the .tflite uses something mcufit does not import: {0}")]
    Import(String),
    #[error("memory plan: {0}")]
    Plan(String),
    #[error("does not fit: needs {needed} B {what}, board has {available}")]
    DoesNotFit { what: &'static str, needed: u64, available: u64 },
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    MissingTool(#[from] crate::verify::MissingTool),
    #[error("tool '{tool}' failed: {msg}")]
    Tool { tool: String, msg: String },
    #[error("verification failed: {0}")]
    Mismatch(String),
}

impl ExportError {
    pub(crate) fn io(path: impl AsRef<std::path::Path>, source: std::io::Error) -> Self {
        ExportError::Io { path: path.as_ref().display().to_string(), source }
    }
}

pub type Result<T, E = ExportError> = std::result::Result<T, E>;
