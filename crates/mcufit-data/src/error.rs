//! The crate's error type.

use std::path::PathBuf;

/// The spec forms [`crate::load`] accepts, quoted in errors.
pub const ACCEPTED_SPECS: &str = "digits (default), mnist:DIR, fashion-mnist:DIR, cifar10:DIR, \
images:DIR, speech-commands:DIR";

/// Everything that can go wrong while loading or batching data.
///
/// Every variant that concerns a file carries its path so the message names it.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// The file or folder could not be read.
    #[error("{}: {source}", .path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A required file or folder does not exist.
    #[error("{}: not found ({what})", .path.display())]
    NotFound { path: PathBuf, what: String },
    /// The dataset spec has an unknown prefix or lacks its directory.
    #[error("unknown dataset spec `{spec}`; accepted forms: {ACCEPTED_SPECS}")]
    UnknownSpec { spec: String },
    /// An IDX file does not start with the expected magic number.
    #[error("{}: bad IDX magic 0x{found:08x}, expected 0x{expected:08x}", .path.display())]
    BadMagic { path: PathBuf, found: u32, expected: u32 },
    /// The file ends before the data its header announces.
    #[error("{}: truncated: need {expected} bytes, found {found}", .path.display())]
    Truncated { path: PathBuf, expected: u64, found: u64 },
    /// A CIFAR-10 binary file whose length is not a whole number of records.
    #[error("{}: length {len} is not a multiple of the 3073-byte CIFAR-10 record", .path.display())]
    CifarLength { path: PathBuf, len: u64 },
    /// The file parses but its content is inconsistent (counts, labels, dims, trailing bytes).
    #[error("{}: {msg}", .path.display())]
    Malformed { path: PathBuf, msg: String },
    /// A WAV file that cannot be decoded or is not 16-bit PCM mono.
    #[error("{}: unsupported WAV: {msg}", .path.display())]
    Wav { path: PathBuf, msg: String },
    /// A WAV file with the wrong sample rate.
    #[error("{}: sample rate {found} Hz, expected {expected} Hz", .path.display())]
    SampleRate { path: PathBuf, found: u32, expected: u32 },
    /// An image that cannot be decoded.
    #[error("{}: cannot decode image: {msg}", .path.display())]
    Image { path: PathBuf, msg: String },
    /// Images of one folder dataset differ in size while no target shape was given.
    #[error(
        "{}: image is {found_w}x{found_h}, expected {want_w}x{want_h} like the first image \
         (set a target shape to resize)",
        .path.display()
    )]
    ImageSize { path: PathBuf, found_w: u32, found_h: u32, want_w: u32, want_h: u32 },
    /// A class folder with no usable sample in it.
    #[error("{}: class folder holds no {what}", .path.display())]
    EmptyClass { path: PathBuf, what: &'static str },
    /// An option value outside its allowed range.
    #[error("invalid option: {0}")]
    InvalidOption(String),
    /// A batch asked for a sample the dataset does not have.
    #[error("dataset `{dataset}`: sample index {index} out of range (len {len})")]
    IndexOutOfRange { dataset: String, index: usize, len: usize },
}

impl DataError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        DataError::Io { path: path.into(), source }
    }

    pub(crate) fn malformed(path: impl Into<PathBuf>, msg: impl Into<String>) -> Self {
        DataError::Malformed { path: path.into(), msg: msg.into() }
    }
}
