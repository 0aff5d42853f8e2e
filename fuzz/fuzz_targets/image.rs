//! Image files (PNG, JPEG, BMP, GIF, TIFF) through the `images:` loader's decode and resize.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = mcufit_data::fuzzing::image(data);
});
