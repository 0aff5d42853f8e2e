//! IDX files (MNIST), plain or gzip: `mcufit_data`'s `idx` parser.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = mcufit_data::fuzzing::idx(data);
});
