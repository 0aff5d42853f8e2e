//! # mcufit-export
//!
//! Exporters for quantized models ([`mcufit_quant::QuantizedModel`]):
//! - [`export_tflite`]: a schema-v3 `.tflite` with int8 builtin ops in a given operator order,
//!   runnable in TFLite Micro and LiteRT; [`tflite::read`] parses `.tflite` files safely.
//! - [`export_c`]: a standalone C99 library with one static arena planned by [`plan_arena`].
//! - [`verify`]: checks against TFLM / LiteRT (Python), host gcc and a Cortex-M4 under QEMU.

pub mod c;
pub mod error;
pub mod order;
pub mod plan;
pub mod tflite;
pub mod verify;

pub use c::{export_c, export_c_with, generate_c, CExportOptions, CSources};
pub use error::{ExportError, Result};
pub use order::{check_order, default_order};
pub use plan::{plan_arena, ArenaPlan, PlanOptions};

use mcufit_quant::QuantizedModel;

/// Exports `model` as `.tflite` bytes with operators in `order` (op indices of the model, which
/// are the IR's fused-op indices; the input op 0 may be included).
pub fn export_tflite(model: &QuantizedModel, order: &[usize]) -> Result<Vec<u8>> {
    tflite::write(&tflite::lower(model, order)?)
}
