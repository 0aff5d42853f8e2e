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
/// are the IR's fused-op indices; the input op 0 may be included), with mcufit's arena plan for
/// that order embedded for TFLite Micro (default [`PlanOptions`]: input in the arena, no
/// in-place ADD). See [`export_tflite_with`].
pub fn export_tflite(model: &QuantizedModel, order: &[usize]) -> Result<Vec<u8>> {
    export_tflite_with(model, order, Some(PlanOptions::default()))
}

/// [`export_tflite`] with a choice of arena plan: `Some(opts)` embeds mcufit's plan as TFLM's
/// `OfflineMemoryAllocation` metadata (TFLM then uses mcufit's offsets and its arena head equals
/// mcufit's planned arena); `None` leaves planning to the runtime.
pub fn export_tflite_with(model: &QuantizedModel, order: &[usize], plan: Option<PlanOptions>) -> Result<Vec<u8>> {
    match plan {
        Some(opts) => tflite::write(&tflite::lower_planned(model, order, opts)?.0),
        None => tflite::write(&tflite::lower(model, order)?),
    }
}
