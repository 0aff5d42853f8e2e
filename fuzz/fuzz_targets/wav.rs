//! WAV files through the `speech-commands:` loader's reader, then MFCCs.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = mcufit_data::fuzzing::wav(data);
});
