//! Board files: `mcufit_cost::Boards::with_text` (what `--boards FILE` reads).
#![no_main]

use libfuzzer_sys::fuzz_target;
use mcufit_cost::Boards;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(boards) = Boards::with_text(text, "<fuzz input>") else { return };
    for b in boards.iter() {
        assert!(b.sram_bytes > 0 && b.flash_bytes > 0 && b.clock_hz() > 0.0, "board '{}' accepted", b.name);
        boards.get(&b.name).expect("listed board is found");
    }
});
