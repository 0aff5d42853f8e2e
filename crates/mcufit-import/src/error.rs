use thiserror::Error;

/// Errors of the importers. Every message names the operator (and tensor) it is about.
#[derive(Debug, Error)]
pub enum ImportError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// The file is not a readable model of its format (truncated, wrong magic, bad offsets).
    #[error("malformed {format} file: {msg}")]
    Malformed { format: &'static str, msg: String },
    /// A readable model that uses an operator, layout or quantization mcufit does not import.
    #[error("unsupported {format} model: {msg}")]
    Unsupported { format: &'static str, msg: String },
    #[error(transparent)]
    Ir(#[from] mcufit_ir::IrError),
    #[error(transparent)]
    Quant(#[from] mcufit_quant::QuantError),
    #[error(transparent)]
    Export(#[from] mcufit_export::ExportError),
}

impl ImportError {
    pub(crate) fn io(path: impl AsRef<std::path::Path>, source: std::io::Error) -> Self {
        ImportError::Io { path: path.as_ref().display().to_string(), source }
    }
}

pub type Result<T, E = ImportError> = std::result::Result<T, E>;
