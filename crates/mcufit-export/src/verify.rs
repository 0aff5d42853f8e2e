//! Verification helpers: run an export in TFLite Micro / LiteRT (Python: `$MCUFIT_PYTHON`, else
//! the repo's `.venv`), build and run the C export with the host gcc, cross-compile it for a
//! Cortex-M4 board and run it under QEMU (mps2-an386) with instruction counts.
//!
//! Nothing here installs anything: [`tools_available`] detects the external tools and, when one is
//! missing, says which and the command that installs it (`scripts/setup-verify-tools.sh`).

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::c::CSources;
use crate::error::{ExportError, Result};

/// The TFLM / LiteRT runner, written next to the model and run with [`python`].
const RUN_PY: &str = include_str!("verify/tflite_run.py");

/// The repository root (where `.venv` and `scripts/` live): `$MCUFIT_ROOT`, else the workspace
/// this crate was built in.
pub fn repo_root() -> PathBuf {
    std::env::var_os("MCUFIT_ROOT")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../.."))
}

/// The Python that runs TFLite Micro / LiteRT: `$MCUFIT_PYTHON`, else `.venv/bin/python` under
/// [`repo_root`].
pub fn python() -> PathBuf {
    std::env::var_os("MCUFIT_PYTHON")
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join(".venv/bin/python"))
}

/// A set of external verification tools.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tools {
    /// [`python`] with the `tflite_micro`, `ai_edge_litert` and `numpy` modules.
    Python,
    /// `arm-none-eabi-gcc`, `arm-none-eabi-size` and `qemu-system-arm`.
    Arm,
}

impl Tools {
    fn setup_arg(self) -> &'static str {
        match self {
            Tools::Python => "python",
            Tools::Arm => "arm",
        }
    }

    /// The command that installs this set: `bash <repo>/scripts/setup-verify-tools.sh python|arm`
    /// where that script exists, else the plain pip / apt-get commands.
    pub fn install_command(self) -> String {
        let script = repo_root().join("scripts/setup-verify-tools.sh");
        if script.is_file() {
            let script = script.canonicalize().unwrap_or(script);
            return format!("bash {} {}", script.display(), self.setup_arg());
        }
        match self {
            Tools::Python => format!(
                "python3 -m venv {venv} && {venv}/bin/pip install --pre tflite-micro ai-edge-litert numpy",
                venv = repo_root().join(".venv").display()
            ),
            Tools::Arm => "sudo apt-get install gcc-arm-none-eabi libnewlib-arm-none-eabi qemu-system-arm".into(),
        }
    }
}

/// A verification tool that is not available: which one, what the check found, and the command
/// that installs it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{tool} is not available ({reason}); install it with `{install}`")]
pub struct MissingTool {
    /// The set it belongs to.
    pub tools: Tools,
    /// The missing program or Python module, e.g. `qemu-system-arm` or `tflite_micro`.
    pub tool: String,
    /// What the check found (not on PATH, the import error, ...).
    pub reason: String,
    /// The command that installs it ([`Tools::install_command`]).
    pub install: String,
}

/// Python modules the TFLM / LiteRT runner imports.
const PY_MODULES: [&str; 3] = ["tflite_micro", "ai_edge_litert", "numpy"];

/// Prints the modules of `sys.argv[1:]` that do not import, one `name: error` per line.
const PY_CHECK: &str = r#"import sys
bad = []
for name in sys.argv[1:]:
    try:
        __import__(name)
    except Exception as e:
        bad.append(f"{name}: {type(e).__name__}: {e}")
print("\n".join(bad))
sys.exit(1 if bad else 0)
"#;

/// Checks that the tools of `which` are installed and run. Never installs anything: a missing
/// tool is reported with the command that installs it.
pub fn tools_available(which: Tools) -> Result<(), MissingTool> {
    let missing = |tool: &str, reason: String| MissingTool {
        tools: which,
        tool: tool.into(),
        reason,
        install: which.install_command(),
    };
    match which {
        Tools::Python => {
            let py = python();
            let out = Command::new(&py).arg("-c").arg(PY_CHECK).args(PY_MODULES).output();
            let out = out.map_err(|e| missing(&py.display().to_string(), format!("cannot run it: {e}")))?;
            if out.status.success() {
                return Ok(());
            }
            // The first module that does not import, as "name: error".
            let text = String::from_utf8_lossy(&out.stdout);
            match text.lines().next().and_then(|l| l.split_once(": ")) {
                Some((module, why)) => Err(missing(module, format!("{} cannot import it: {why}", py.display()))),
                None => Err(missing(&py.display().to_string(), format!("the module check exited with {}", out.status))),
            }
        }
        Tools::Arm => {
            for tool in ["arm-none-eabi-gcc", "arm-none-eabi-size", "qemu-system-arm"] {
                match Command::new(tool).arg("--version").output() {
                    Ok(o) if o.status.success() => {}
                    Ok(o) => return Err(missing(tool, format!("`{tool} --version` exited with {}", o.status))),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                        return Err(missing(tool, "not found on PATH".into()))
                    }
                    Err(e) => return Err(missing(tool, format!("cannot run it: {e}"))),
                }
            }
            Ok(())
        }
    }
}

/// The former name of [`tools_available`], kept for existing callers. It no longer installs
/// anything; the error is [`ExportError::MissingTool`].
pub fn ensure_tools(which: Tools) -> Result<()> {
    Ok(tools_available(which)?)
}

fn run(cmd: &mut Command, tool: &str) -> Result<String> {
    let out = cmd.output().map_err(|e| ExportError::Tool { tool: tool.into(), msg: e.to_string() })?;
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    if !out.status.success() {
        return Err(ExportError::Tool { tool: tool.into(), msg: format!("exit status {}: {text}", out.status) });
    }
    Ok(text)
}

fn write(path: &Path, data: &[u8]) -> Result<()> {
    std::fs::write(path, data).map_err(|e| ExportError::io(path, e))
}

fn read(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| ExportError::io(path, e))
}

fn split(flat: &[u8], n: usize) -> Result<Vec<Vec<i8>>> {
    if n == 0 || !flat.len().is_multiple_of(n) {
        return Err(ExportError::Mismatch(format!("{} output bytes for {n} inputs", flat.len())));
    }
    Ok(flat.chunks(flat.len() / n).map(|c| c.iter().map(|&v| v as i8).collect()).collect())
}

/// TFLM's RecordingMicroAllocator figures in bytes: (total, head = planned tensor arena, tail).
pub type TflmArena = (usize, usize, usize);

/// What a TFLite runtime produced.
#[derive(Debug, Clone)]
pub struct RuntimeRun {
    pub outputs: Vec<Vec<i8>>,
    /// TFLM's RecordingMicroAllocator figures.
    pub tflm_arena: Option<TflmArena>,
    pub log: String,
}

/// Which TFLite runtime.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Runtime {
    /// TFLite Micro (`tflite_micro` Python package).
    Tflm,
    /// LiteRT with the builtin reference kernels (`OpResolverType.BUILTIN_REF`).
    LiteRtRef,
}

/// Runs `model` (a .tflite image) on `inputs` in a TFLite runtime from the repo's `.venv`.
pub fn run_tflite(model: &[u8], inputs: &[Vec<i8>], runtime: Runtime, workdir: &Path) -> Result<RuntimeRun> {
    std::fs::create_dir_all(workdir).map_err(|e| ExportError::io(workdir, e))?;
    let py = python();
    let script = workdir.join("tflite_run.py");
    write(&script, RUN_PY.as_bytes())?;
    let mp = workdir.join("model.tflite");
    write(&mp, model)?;
    let ip = workdir.join("inputs.bin");
    write(&ip, &inputs.iter().flatten().map(|&v| v as u8).collect::<Vec<_>>())?;
    let op = workdir.join("outputs.bin");
    let mode = match runtime {
        Runtime::Tflm => "tflm",
        Runtime::LiteRtRef => "litert",
    };
    let log = run(
        Command::new(&py).arg(&script).arg(mode).arg(&mp).arg(&ip).arg(inputs.len().to_string()).arg(&op),
        &format!("python ({mode})"),
    )?;
    let outputs = split(&read(&op)?, inputs.len())?;
    let grab = |what: &str| -> Option<usize> {
        log.lines()
            .find(|l| l.contains(&format!("Arena allocation {what}")))
            .and_then(|l| l.split_whitespace().rev().nth(1))
            .and_then(|v| v.parse().ok())
    };
    let tflm_arena = match (grab("total"), grab("head"), grab("tail")) {
        (Some(t), Some(h), Some(tl)) => Some((t, h, tl)),
        _ => None,
    };
    Ok(RuntimeRun { outputs, tflm_arena, log })
}

/// Host harness: reads N inputs from a file, writes N outputs.
const HOST_MAIN: &str = r#"#include <stdio.h>
#include <stdlib.h>
#include "mcufit_model.h"
int main(int argc, char **argv) {
    static int8_t in[MCUFIT_INPUT_SIZE], out[MCUFIT_OUTPUT_SIZE];
    FILE *fi, *fo;
    if (argc != 3) return 2;
    fi = fopen(argv[1], "rb");
    fo = fopen(argv[2], "wb");
    if (!fi || !fo) return 3;
    while (fread(in, 1, sizeof in, fi) == sizeof in) {
        if (mcufit_invoke(in, out) != 0) return 4;
        if (fwrite(out, 1, sizeof out, fo) != sizeof out) return 5;
    }
    fclose(fi);
    return fclose(fo) == 0 ? 0 : 6;
}
"#;

fn write_sources(src: &CSources, dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| ExportError::io(dir, e))?;
    for (name, text) in src.files() {
        write(&dir.join(name), text.as_bytes())?;
    }
    Ok(())
}

/// Builds the C export with the host `gcc -std=c99 -Wall -Wextra -Werror -O2` and runs it.
pub fn run_host_c(src: &CSources, inputs: &[Vec<i8>], dir: &Path) -> Result<Vec<Vec<i8>>> {
    write_sources(src, dir)?;
    write(&dir.join("host_main.c"), HOST_MAIN.as_bytes())?;
    let exe = dir.join("model_host");
    run(
        Command::new("gcc")
            .args(["-std=c99", "-Wall", "-Wextra", "-Werror", "-pedantic", "-O2", "-o"])
            .arg(&exe)
            .arg(dir.join("host_main.c"))
            .arg(dir.join("mcufit_model.c"))
            .arg(dir.join("mcufit_kernels.c")),
        "gcc",
    )?;
    let ip = dir.join("inputs.bin");
    write(&ip, &inputs.iter().flatten().map(|&v| v as u8).collect::<Vec<_>>())?;
    let op = dir.join("outputs.bin");
    run(Command::new(&exe).arg(&ip).arg(&op), "model_host")?;
    split(&read(&op)?, inputs.len())
}

/// A board's memories, for the linker script.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BoardMemory {
    pub ram_bytes: u64,
    pub flash_bytes: u64,
}

/// Bytes reserved for the stack in the linker script.
pub const STACK_BYTES: u64 = 4096;

/// The QEMU mps2-an386 machine: 4 MiB code memory at 0x0, 4 MiB SRAM at 0x20000000.
pub const QEMU_MAX: BoardMemory = BoardMemory { ram_bytes: 4 << 20, flash_bytes: 4 << 20 };

fn linker_script(mem: BoardMemory) -> String {
    format!(
        r#"/* mcufit: board memories; a model that does not fit fails to link. */
MEMORY
{{
  FLASH (rx)  : ORIGIN = 0x00000000, LENGTH = {flash}
  RAM   (rwx) : ORIGIN = 0x20000000, LENGTH = {ram}
}}
_stack_size = {stack};
ENTRY(reset_handler)
SECTIONS
{{
  .text : {{ KEEP(*(.vectors)) *(.text*) *(.rodata*) . = ALIGN(4); }} > FLASH
  .ARM.exidx : {{ *(.ARM.exidx*) }} > FLASH
  _data_load = LOADADDR(.data);
  .data : {{ _data_start = .; *(.data*) . = ALIGN(4); _data_end = .; }} > RAM AT > FLASH
  .bss (NOLOAD) : {{ _bss_start = .; *(.bss*) *(COMMON) . = ALIGN(4); _bss_end = .; }} > RAM
  .stack (NOLOAD) : {{ . = ALIGN(8); . = . + _stack_size; _stack_top = .; }} > RAM
  _flash_used = SIZEOF(.text) + SIZEOF(.ARM.exidx) + SIZEOF(.data);
  _ram_used = SIZEOF(.data) + SIZEOF(.bss) + SIZEOF(.stack);
  ASSERT(_ram_used <= LENGTH(RAM), "mcufit: does not fit in the board's RAM")
  ASSERT(_flash_used <= LENGTH(FLASH), "mcufit: does not fit in the board's flash")
}}
"#,
        flash = mem.flash_bytes,
        ram = mem.ram_bytes,
        stack = STACK_BYTES
    )
}

/// Bare-metal harness: vector table, semihosting output and exit, SysTick wrap counting.
const M4_MAIN: &str = r#"#include <stdint.h>
#include "mcufit_model.h"
#include "test_vectors.h"

extern uint32_t _data_load, _data_start, _data_end, _bss_start, _bss_end, _stack_top;
int main(void);

/* Freestanding: the compiler may emit calls to these. */
void *memcpy(void *d, const void *s, unsigned n) { uint8_t *a = d; const uint8_t *b = s; while (n--) *a++ = *b++; return d; }
void *memset(void *d, int v, unsigned n) { uint8_t *a = d; while (n--) *a++ = (uint8_t)v; return d; }

static int semihost(int op, void *arg) {
    register int r0 __asm__("r0") = op;
    register void *r1 __asm__("r1") = arg;
    __asm__ volatile("bkpt 0xab" : "+r"(r0) : "r"(r1) : "memory");
    return r0;
}
static void put(const char *s) { semihost(0x04, (void *)s); }
static void put_u32(uint32_t v) {
    char buf[12]; int i = 11; buf[i] = 0;
    do { buf[--i] = (char)('0' + v % 10); v /= 10; } while (v && i > 0);
    put(buf + i);
}
static void exit_code(int code) {
    uint32_t block[2] = {0x20026u, (uint32_t)code}; /* ADP_Stopped_ApplicationExit, status */
    semihost(0x20, block);                           /* SYS_EXIT_EXTENDED */
    for (;;) {}
}

#define SYST_CSR (*(volatile uint32_t *)0xE000E010u)
#define SYST_RVR (*(volatile uint32_t *)0xE000E014u)
#define SYST_CVR (*(volatile uint32_t *)0xE000E018u)
static volatile uint32_t systick_wraps;
void systick_handler(void) { systick_wraps++; }
#define SCB_ICSR (*(volatile uint32_t *)0xE000ED04u)
static uint64_t ticks(void) {
    uint32_t w, v, pending;
    do {
        w = systick_wraps;
        v = SYST_CVR;
        pending = SCB_ICSR & (1u << 26); /* PENDSTSET: a wrap not yet counted by the handler */
    } while (w != systick_wraps);
    /* The counter reloaded but the interrupt has not run yet: count that wrap here. */
    if (pending && v > 0x800000u) ++w;
    return (uint64_t)w * 0x1000000u + (0xFFFFFFu - v);
}

void reset_handler(void) {
    uint32_t *s = &_data_load, *d = &_data_start;
    while (d < &_data_end) *d++ = *s++;
    for (d = &_bss_start; d < &_bss_end;) *d++ = 0;
    /* Enable the FPU (CP10/CP11) since the code is built for the hard-float ABI. */
    *(volatile uint32_t *)0xE000ED88u |= (0xFu << 20);
    __asm__ volatile("dsb\n isb");
    exit_code(main());
}
static void default_handler(void) { put("fault\n"); exit_code(99); }

__attribute__((section(".vectors"), used)) static void (*const vectors[16])(void) = {
    (void (*)(void))&_stack_top, reset_handler, default_handler, default_handler, default_handler,
    default_handler, default_handler, 0, 0, 0, 0, default_handler, default_handler, 0, default_handler,
    systick_handler};

#ifdef MCUFIT_PROFILE
/* Per-op profile: mcufit_model.c calls this after every op (MCUFIT_OP_DONE); the fastest
 * time of each op over all inferences is kept. */
static uint64_t prof_last;
static uint32_t prof_best[MCUFIT_NUM_OPS];
void mcufit_prof(int op) {
    const uint64_t t = ticks();
    if (op >= 0 && op < MCUFIT_NUM_OPS && (uint32_t)(t - prof_last) < prof_best[op]) prof_best[op] = (uint32_t)(t - prof_last);
    prof_last = ticks();
}
#endif

int main(void) {
    static int8_t out[MCUFIT_OUTPUT_SIZE];
    static const char hex[] = "0123456789abcdef";
    static char line[2 * MCUFIT_OUTPUT_SIZE + 2];
    uint64_t t0, t1, best = ~(uint64_t)0;
    int i, k;
    SYST_RVR = 0xFFFFFFu;
    SYST_CVR = 0;
    SYST_CSR = 7; /* processor clock, interrupt on wrap, enable */
#ifdef MCUFIT_PROFILE
    for (k = 0; k < MCUFIT_NUM_OPS; ++k) prof_best[k] = 0xFFFFFFFFu;
#endif
    for (i = 0; i < MCUFIT_TEST_COUNT; ++i) {
#ifdef MCUFIT_PROFILE
        prof_last = ticks();
#endif
        t0 = ticks();
        if (mcufit_invoke(mcufit_test_inputs[i], out) != 0) return 1;
        t1 = ticks();
        if (t1 - t0 < best) best = t1 - t0;
        for (k = 0; k < MCUFIT_OUTPUT_SIZE; ++k) {
            line[2 * k] = hex[((uint8_t)out[k]) >> 4];
            line[2 * k + 1] = hex[((uint8_t)out[k]) & 15];
        }
        line[2 * MCUFIT_OUTPUT_SIZE] = '\n';
        line[2 * MCUFIT_OUTPUT_SIZE + 1] = 0;
        put("out ");
        put(line);
    }
    put("ticks ");
    put_u32((uint32_t)best);
    put("\n");
#ifdef MCUFIT_PROFILE
    for (k = 0; k < MCUFIT_NUM_OPS; ++k) {
        if (prof_best[k] == 0xFFFFFFFFu) continue;
        put("op ");
        put_u32((uint32_t)k);
        put(" ");
        put_u32(prof_best[k]);
        put("\n");
    }
#endif
    return 0;
}
"#;

/// Result of a Cortex-M4 run under QEMU.
#[derive(Debug, Clone)]
pub struct M4Run {
    pub outputs: Vec<Vec<i8>>,
    /// SysTick ticks of the fastest inference (processor clock, 25 MHz on mps2-an386).
    pub systick_ticks: u64,
    /// Executed instructions of one inference: with `-icount shift=0` QEMU advances virtual time
    /// 1 ns per instruction, so instructions = ticks * 1e9 / 25 MHz (resolution 40 instructions).
    pub instructions: u64,
    /// `.text + .rodata + .data` and `.data + .bss + stack` of the linked image.
    pub flash_used: u64,
    pub ram_used: u64,
    /// Profiled builds ([`profile_m4`]) only: (op index, instructions of the fastest run of that
    /// op), by op index. Resolution 40 instructions; the ~20 instructions of the tick
    /// read after each op are included in the next op.
    pub op_instructions: Vec<(usize, u64)>,
    pub log: String,
}

/// mps2-an386 system clock feeding SysTick.
pub const MPS2_SYSCLK_HZ: u64 = 25_000_000;

/// The gcc flags for the Cortex-M4 build.
pub const M4_CFLAGS: &[&str] = &["-mcpu=cortex-m4", "-mthumb", "-mfloat-abi=hard", "-mfpu=fpv4-sp-d16", "-O2"];

/// Cross-compiles the C export for a Cortex-M4 with `mem`'s RAM and flash. A model that does not
/// fit fails with [`ExportError::DoesNotFit`].
pub fn build_m4(src: &CSources, tests: &[Vec<i8>], mem: BoardMemory, dir: &Path) -> Result<PathBuf> {
    build_m4_with(src, tests, mem, dir, false)
}

/// Builds a profiling image (a tick read after every op) for the QEMU machine, runs it on
/// `tests` and returns the run with [`M4Run::op_instructions`] filled in. The total
/// `instructions` of this run include the profiling reads; use [`verify_m4`] for the exact total.
pub fn profile_m4(src: &CSources, tests: &[Vec<i8>], dir: &Path) -> Result<M4Run> {
    let elf = build_m4_with(src, tests, QEMU_MAX, dir, true)?;
    run_qemu(&elf, tests.len())
}

fn build_m4_with(src: &CSources, tests: &[Vec<i8>], mem: BoardMemory, dir: &Path, profile: bool) -> Result<PathBuf> {
    write_sources(src, dir)?;
    let mut tv = String::from("#include <stdint.h>\n#include \"mcufit_model.h\"\n");
    tv.push_str(&format!("#define MCUFIT_TEST_COUNT {}\n", tests.len().max(1)));
    tv.push_str(&format!("static const int8_t mcufit_test_inputs[{}][MCUFIT_INPUT_SIZE] = {{\n", tests.len().max(1)));
    for t in tests {
        tv.push_str("  {");
        for v in t {
            tv.push_str(&format!("{v},"));
        }
        tv.push_str("},\n");
    }
    if tests.is_empty() {
        tv.push_str("  {0},\n");
    }
    tv.push_str("};\n");
    write(&dir.join("test_vectors.h"), tv.as_bytes())?;
    write(&dir.join("m4_main.c"), M4_MAIN.as_bytes())?;
    write(&dir.join("board.ld"), linker_script(mem).as_bytes())?;
    let elf = dir.join("prog.elf");
    let out = Command::new("arm-none-eabi-gcc")
        .args(M4_CFLAGS)
        .args([
            "-std=c99",
            "-Wall",
            "-Wextra",
            "-Werror",
            "-ffreestanding",
            "-nostdlib",
            "-nostartfiles",
            "-ffunction-sections",
        ])
        .args(if profile { &["-DMCUFIT_PROFILE"][..] } else { &[][..] })
        .arg("-T")
        .arg(dir.join("board.ld"))
        .arg("-o")
        .arg(&elf)
        .arg(dir.join("m4_main.c"))
        .arg(dir.join("mcufit_model.c"))
        .arg(dir.join("mcufit_kernels.c"))
        .arg("-lgcc")
        .output()
        .map_err(|e| ExportError::Tool { tool: "arm-none-eabi-gcc".into(), msg: e.to_string() })?;
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    if !out.status.success() {
        return Err(
            does_not_fit(&text, mem).unwrap_or(ExportError::Tool { tool: "arm-none-eabi-gcc".into(), msg: text })
        );
    }
    Ok(elf)
}

/// Turns the linker's overflow messages into "does not fit: needs X B RAM, board has Y".
fn does_not_fit(ld: &str, mem: BoardMemory) -> Option<ExportError> {
    for (region, what, have) in [("RAM", "RAM", mem.ram_bytes), ("FLASH", "flash", mem.flash_bytes)] {
        let key = format!("region `{region}' overflowed by ");
        if let Some(p) = ld.find(&key) {
            let rest = &ld[p + key.len()..];
            let by: u64 = rest.split_whitespace().next().and_then(|v| v.parse().ok()).unwrap_or(0);
            return Some(ExportError::DoesNotFit { what, needed: have + by, available: have });
        }
    }
    if ld.contains("does not fit in the board's RAM") {
        return Some(ExportError::DoesNotFit { what: "RAM", needed: mem.ram_bytes + 1, available: mem.ram_bytes });
    }
    if ld.contains("does not fit in the board's flash") {
        return Some(ExportError::DoesNotFit {
            what: "flash",
            needed: mem.flash_bytes + 1,
            available: mem.flash_bytes,
        });
    }
    None
}

/// Runs a Cortex-M4 image on `qemu-system-arm -M mps2-an386` with semihosting and
/// `-icount shift=0`; parses the outputs and the instruction count of one inference.
pub fn run_qemu(elf: &Path, n_tests: usize) -> Result<M4Run> {
    let out = Command::new("qemu-system-arm")
        .args(["-M", "mps2-an386", "-nographic", "-monitor", "none", "-serial", "none"])
        .args(["-semihosting-config", "enable=on,target=native", "-icount", "shift=0", "-kernel"])
        .arg(elf)
        .output()
        .map_err(|e| ExportError::Tool { tool: "qemu-system-arm".into(), msg: e.to_string() })?;
    let log = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    if !out.status.success() {
        return Err(ExportError::Tool {
            tool: "qemu-system-arm".into(),
            msg: format!("exit status {}: {log}", out.status),
        });
    }
    let mut outputs = Vec::new();
    let mut ticks = None;
    let mut op_instructions = Vec::new();
    for line in log.lines() {
        if let Some(h) = line.strip_prefix("out ") {
            let bytes: Option<Vec<i8>> =
                (0..h.len() / 2).map(|i| u8::from_str_radix(&h[2 * i..2 * i + 2], 16).ok().map(|v| v as i8)).collect();
            outputs.push(bytes.ok_or_else(|| ExportError::Mismatch(format!("bad output line '{line}'")))?);
        } else if let Some(t) = line.strip_prefix("ticks ") {
            ticks = t.trim().parse::<u64>().ok();
        } else if let Some(rest) = line.strip_prefix("op ") {
            let mut f = rest.split_whitespace().map(|v| v.parse::<u64>().ok());
            if let (Some(Some(op)), Some(Some(t))) = (f.next(), f.next()) {
                op_instructions.push((op as usize, t * 1_000_000_000 / MPS2_SYSCLK_HZ));
            }
        }
    }
    if outputs.len() != n_tests {
        return Err(ExportError::Mismatch(format!(
            "qemu printed {} outputs for {n_tests} inputs:\n{log}",
            outputs.len()
        )));
    }
    let systick_ticks = ticks.ok_or_else(|| ExportError::Mismatch(format!("no tick count in:\n{log}")))?;
    let (flash_used, ram_used) = image_sizes(elf).unwrap_or((0, 0));
    Ok(M4Run {
        outputs,
        systick_ticks,
        instructions: systick_ticks * 1_000_000_000 / MPS2_SYSCLK_HZ,
        flash_used,
        ram_used,
        op_instructions,
        log,
    })
}

/// (flash, RAM) bytes of an ELF from `arm-none-eabi-size -A`.
pub fn image_sizes(elf: &Path) -> Result<(u64, u64)> {
    let text = run(Command::new("arm-none-eabi-size").arg("-A").arg(elf), "arm-none-eabi-size")?;
    let mut flash = 0;
    let mut ram = 0;
    for l in text.lines() {
        let f: Vec<&str> = l.split_whitespace().collect();
        if f.len() >= 3 {
            let size: u64 = f[1].parse().unwrap_or(0);
            match f[0] {
                ".text" | ".ARM.exidx" => flash += size,
                ".data" => {
                    flash += size;
                    ram += size
                }
                ".bss" | ".stack" => ram += size,
                _ => {}
            }
        }
    }
    Ok((flash, ram))
}

/// Compares two output sets; returns (mismatching outputs, max |difference|).
pub fn compare(a: &[Vec<i8>], b: &[Vec<i8>]) -> (usize, i32) {
    let mut mism = 0;
    let mut maxd = 0;
    for (x, y) in a.iter().zip(b) {
        if x != y {
            mism += 1;
        }
        for (p, q) in x.iter().zip(y) {
            maxd = maxd.max((*p as i32 - *q as i32).abs());
        }
    }
    (mism + a.len().abs_diff(b.len()), maxd)
}

/// Summary of one verification against the int8 reference.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Agreement {
    pub inputs: usize,
    /// Outputs that differ from `QuantizedModel::run_int8` in any byte.
    pub mismatches: usize,
    /// Largest |difference| of any output byte.
    pub max_diff: i32,
}

fn agreement(model: &mcufit_quant::QuantizedModel, inputs: &[Vec<i8>], got: &[Vec<i8>]) -> Result<Agreement> {
    let want = model.run_int8_batch(inputs)?;
    let (mismatches, max_diff) = compare(&want, got);
    Ok(Agreement { inputs: inputs.len(), mismatches, max_diff })
}

/// Runs the .tflite export of `model` in a TFLite runtime and compares with the int8 reference.
/// Also returns TFLM's arena figures (total, head, tail) when the runtime is TFLM.
pub fn verify_tflite(
    model: &mcufit_quant::QuantizedModel,
    tflite: &[u8],
    inputs: &[Vec<i8>],
    runtime: Runtime,
    workdir: &Path,
) -> Result<(Agreement, Option<TflmArena>)> {
    let run = run_tflite(tflite, inputs, runtime, workdir)?;
    Ok((agreement(model, inputs, &run.outputs)?, run.tflm_arena))
}

/// Builds the C export with the host gcc and compares with the int8 reference.
pub fn verify_c_host(
    model: &mcufit_quant::QuantizedModel,
    src: &CSources,
    inputs: &[Vec<i8>],
    workdir: &Path,
) -> Result<Agreement> {
    let got = run_host_c(src, inputs, workdir)?;
    agreement(model, inputs, &got)
}

/// Builds the C export for a Cortex-M4 with `mem`, runs it under QEMU, compares with the int8
/// reference; returns the agreement and the run (instruction count, image sizes).
pub fn verify_m4(
    model: &mcufit_quant::QuantizedModel,
    src: &CSources,
    inputs: &[Vec<i8>],
    mem: BoardMemory,
    workdir: &Path,
) -> Result<(Agreement, M4Run)> {
    let elf = build_m4(src, inputs, mem, workdir)?;
    let run = run_qemu(&elf, inputs.len())?;
    Ok((agreement(model, inputs, &run.outputs)?, run))
}
