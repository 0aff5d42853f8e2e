//! CIFAR-10 binary batch files: `mcufit_data`'s `cifar` parser.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = mcufit_data::fuzzing::cifar(data);
});
