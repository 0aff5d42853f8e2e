//! `verify::tools_available` detects and never installs: with the tools out of reach it names the
//! missing tool and the command that installs it. (Own test binary: it changes the environment.)

use mcufit_export::verify::{self, Tools};
use mcufit_export::ExportError;

#[test]
fn missing_tools_are_named_with_their_installer() {
    let empty = std::env::temp_dir().join(format!("mcufit-no-tools-{}", std::process::id()));
    std::fs::create_dir_all(&empty).unwrap();
    std::env::set_var("MCUFIT_PYTHON", empty.join("python"));
    std::env::set_var("PATH", &empty);

    let e = verify::tools_available(Tools::Python).unwrap_err();
    assert_eq!(e.tools, Tools::Python);
    assert!(e.tool.ends_with("python"), "{e}");
    assert!(e.install.contains("setup-verify-tools.sh python"), "{e}");
    assert_eq!(e.install, Tools::Python.install_command());

    let e = verify::tools_available(Tools::Arm).unwrap_err();
    assert_eq!((e.tools, e.tool.as_str(), e.reason.as_str()), (Tools::Arm, "arm-none-eabi-gcc", "not found on PATH"));
    assert!(e.install.contains("setup-verify-tools.sh arm"), "{e}");
    let msg = e.to_string();
    assert!(msg.starts_with("arm-none-eabi-gcc is not available (not found on PATH); install it with `bash "), "{msg}");

    // The former name only checks, too.
    assert!(
        matches!(verify::ensure_tools(Tools::Arm), Err(ExportError::MissingTool(m)) if m.tool == "arm-none-eabi-gcc")
    );
    let _ = std::fs::remove_dir(&empty);
}
