//! `.tflite` files: `mcufit_export::tflite::read`, then `import` of what it read.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mcufit_export::tflite;

fuzz_target!(|data: &[u8]| {
    let Ok(model) = tflite::read(data) else { return };
    let _ = tflite::import(&model);
});
