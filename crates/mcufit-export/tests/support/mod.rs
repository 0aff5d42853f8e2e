//! The verification tests' tools: checked with `verify::tools_available`; when some are missing the
//! tests (never the library) run the explicit installer `scripts/setup-verify-tools.sh` once, and
//! skip with a loud message if the tools are still missing.

use mcufit_export::verify::{self, Tools};

/// True when the tools of `which` are available, installing them first if needed.
pub fn tools(which: Tools) -> bool {
    if verify::tools_available(which).is_ok() {
        return true;
    }
    let arg = match which {
        Tools::Python => "python",
        Tools::Arm => "arm",
    };
    let script = verify::repo_root().join("scripts/setup-verify-tools.sh");
    let log = match std::process::Command::new("bash").arg(&script).arg(arg).output() {
        Ok(o) => format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr)),
        Err(e) => format!("cannot run {}: {e}", script.display()),
    };
    match verify::tools_available(which) {
        Ok(()) => true,
        Err(e) => {
            eprintln!("\n!!!!!!!! SKIPPING ({which:?} tools): {e}\n{log}\n");
            false
        }
    }
}
