//! Kill -9 at 20 random instants of a `train`, a `compress` and an `export` (issue 15).
//!
//! Each command first runs uninterrupted (the seeded reference, its wall time measured). Then, 20 times,
//! the same command starts afresh and gets SIGKILL at an instant drawn from a seeded RNG across its
//! wall time (the shorter of the reference's and one more timed run's); right after the kill every
//! file in the output directory must be whole (each JSON parses, each model file loads, each weights
//! file is complete, and each final output matches the reference), and then `--resume` (a plain
//! rerun for export) must end identical to the reference: the same weights bytes, model file, data
//! record and report (timings aside), the same C and .tflite bytes. Only `DIR.partial/` directories
//! and `.NAME.tmp-PID` / `.tmp` files, written before their rename, may hold a half-written file.
//!
//! `MCUFIT_KILL_SEED` changes the instants (default 15); `MCUFIT_KILLS` the number of kills (default 20).

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::Value;

const TRAIN: &[&str] = &["train", "zoo:mnist-ds", "--epochs", "3", "--limit", "600", "--threads", "1", "--out", "out"];
const COMPRESS: &[&str] = &[
    "compress",
    "zoo:mnist-ds",
    "--size",
    "8KiB",
    "--epochs",
    "4",
    "--limit",
    "600",
    "--threads",
    "1",
    "--out",
    "out",
];

fn kills() -> usize {
    std::env::var("MCUFIT_KILLS").ok().and_then(|v| v.parse().ok()).unwrap_or(20)
}

/// SplitMix64: the instants are the same on every run of the test.
struct Rng(u64);
impl Rng {
    fn new(stream: u64) -> Self {
        let seed = std::env::var("MCUFIT_KILL_SEED").ok().and_then(|v| v.parse().ok()).unwrap_or(15u64);
        Rng(seed ^ stream.wrapping_mul(0x9E37_79B9_7F4A_7C15))
    }
    fn unit(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64
    }
}

fn scratch(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("mcufit-kill-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn mcufit(cwd: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_mcufit")).current_dir(cwd).args(args).output().expect("run mcufit")
}

fn ok(o: &Output, what: &str) {
    assert!(o.status.success(), "{what} failed ({}): {}", o.status, String::from_utf8_lossy(&o.stderr));
}

/// Runs `args` in `cwd` and kills it (SIGKILL) `after` its start; returns whether the kill came while
/// it ran (false: it had already finished).
fn kill_after(cwd: &Path, args: &[&str], after: Duration) -> bool {
    let mut child = Command::new(env!("CARGO_BIN_EXE_mcufit"))
        .current_dir(cwd)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("run mcufit");
    std::thread::sleep(after);
    let running = child.try_wait().unwrap().is_none();
    child.kill().ok(); // SIGKILL
    child.wait().unwrap();
    running
}

/// A reference run: its directory and wall time.
struct Reference {
    dir: PathBuf,
    wall: Duration,
}

fn reference(tag: &str, args: &[&str]) -> Reference {
    let dir = scratch(tag);
    let t = Instant::now();
    ok(&mcufit(&dir, args), tag);
    Reference { dir, wall: t.elapsed() }
}

/// The trained model every export starts from (the train reference run).
fn trained() -> &'static Reference {
    static R: OnceLock<Reference> = OnceLock::new();
    R.get_or_init(|| reference("train-ref", TRAIN))
}

/// A temporary name: a directory `X.partial` (being filled) or a file `.X.tmp-PID` / `X.tmp` (before
/// its rename). Nothing else may ever be half-written.
fn is_temporary(name: &str) -> bool {
    name.ends_with(".partial") || name.contains(".tmp-") || name.ends_with(".tmp")
}

fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else { continue };
        for e in rd {
            let p = e.unwrap().path();
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            if is_temporary(&name) {
                continue;
            }
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// Temporary files and directories under `dir` (a SIGKILLed writer cannot remove its own).
fn temporaries(dir: &Path) -> usize {
    let mut n = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten() {
            let p = e.unwrap().path();
            if is_temporary(&p.file_name().unwrap().to_string_lossy()) {
                n += 1;
            } else if p.is_dir() {
                stack.push(p);
            }
        }
    }
    n
}

/// JSON without what differs between two identical runs: timings, parameter ids, where a run resumed.
fn untimed(v: Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.into_iter()
                .filter(|(k, _)| {
                    // Parameter ids (`mask_id`, `width_id`) are drawn per process, as in the weights' metadata.
                    !matches!(
                        k.as_str(),
                        "times"
                            | "seconds"
                            | "images_per_sec"
                            | "train_seconds"
                            | "resumed_at_epoch"
                            | "mask_id"
                            | "width_id"
                    )
                })
                .map(|(k, v)| (k, untimed(v)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.into_iter().map(untimed).collect()),
        v => v,
    }
}

/// Where `a` and `b` first differ (a JSON path and both values), `None` when equal.
fn json_diff(a: &Value, b: &Value, at: String) -> Option<String> {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => x.keys().chain(y.keys()).find_map(|k| match (x.get(k), y.get(k)) {
            (Some(u), Some(v)) => json_diff(u, v, format!("{at}.{k}")),
            (u, v) => Some(format!("{at}.{k}: {u:?} vs reference {v:?}")),
        }),
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => {
            x.iter().zip(y).enumerate().find_map(|(i, (u, v))| json_diff(u, v, format!("{at}[{i}]")))
        }
        _ => (a != b).then(|| format!("{at}: {a} vs reference {b}")),
    }
}

fn json(p: &Path) -> Value {
    let bytes = std::fs::read(p).unwrap();
    serde_json::from_slice(&bytes)
        .unwrap_or_else(|e| panic!("{}: not whole JSON ({e}): {} bytes", p.display(), bytes.len()))
}

/// A safetensors file: complete (header length, JSON header, every tensor's bytes, nothing more).
/// Returns (tensor bytes, header without the per-process parameter ids).
fn safetensors(p: &Path) -> (Vec<u8>, Value) {
    let b = std::fs::read(p).unwrap();
    assert!(b.len() >= 8, "{}: {} bytes", p.display(), b.len());
    let n = u64::from_le_bytes(b[..8].try_into().unwrap()) as usize;
    assert!(8 + n <= b.len(), "{}: header of {n} bytes in a {}-byte file", p.display(), b.len());
    let mut header: Value =
        serde_json::from_slice(&b[8..8 + n]).unwrap_or_else(|e| panic!("{}: header: {e}", p.display()));
    let end = header
        .as_object()
        .unwrap()
        .iter()
        .filter(|(k, _)| *k != "__metadata__")
        .map(|(_, t)| t["data_offsets"][1].as_u64().unwrap() as usize)
        .max()
        .unwrap_or(0);
    assert_eq!(
        8 + n + end,
        b.len(),
        "{}: tensors end at {} but the file has {} bytes",
        p.display(),
        8 + n + end,
        b.len()
    );
    if let Some(m) = header.get_mut("__metadata__").and_then(Value::as_object_mut) {
        m.remove("param_ids");
    }
    (b[8 + n..].to_vec(), header)
}

/// Whether `rel` is in a checkpoint directory (`last/`, `best/`), rewritten every epoch.
fn changing(rel: &Path) -> bool {
    rel.components().any(|c| matches!(c.as_os_str().to_str(), Some("last" | "best")))
}

/// Checks one file of a killed run's output: whole, and equal to the reference's where that file only
/// ever has its final content (outputs written once, at the end).
fn check_file(p: &Path, rel: &Path, reference: &Path, last_is_final: bool) {
    let name = p.file_name().unwrap().to_string_lossy();
    let ext = p.extension().map(|e| e.to_string_lossy().into_owned()).unwrap_or_default();
    match ext.as_str() {
        "json" => {
            let v = json(p);
            if name == "model.json" {
                mcufit_ir::Graph::from_json(&std::fs::read_to_string(p).unwrap())
                    .unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            }
            // Checkpoints change every epoch; the rest is written once. A resumed run's config says so.
            let r = reference.join(rel);
            if (!changing(rel) || last_is_final) && r.exists() && name != "config.json" {
                if let Some(d) = json_diff(&untimed(v), &untimed(json(&r)), String::new()) {
                    panic!("{} differs from the reference at {d}", rel.display());
                }
            }
        }
        "safetensors" => {
            let (data, header) = safetensors(p);
            let r = reference.join(rel);
            if (!changing(rel) || last_is_final) && r.exists() {
                let (rdata, rheader) = safetensors(&r);
                assert!(header == rheader && data == rdata, "{}: weights differ from the reference", rel.display());
            }
        }
        "c" | "h" | "tflite" => {
            let r = std::fs::read(reference.join(rel)).unwrap();
            assert!(std::fs::read(p).unwrap() == r, "{}: differs from the reference", rel.display());
        }
        "txt" => {
            let strip = |t: String| t.lines().filter(|l| !l.starts_with("wall time")).collect::<Vec<_>>().join("\n");
            let r = std::fs::read_to_string(reference.join(rel)).unwrap();
            assert_eq!(strip(std::fs::read_to_string(p).unwrap()), strip(r), "{}", rel.display());
        }
        "html" => {
            let t = std::fs::read_to_string(p).unwrap();
            assert!(t.trim_end().ends_with("</html>"), "{}: cut off", rel.display());
        }
        // The optimizer state has no reader here: the resume loads it, and the resumed weights must match.
        "bpk" => assert!(std::fs::metadata(p).unwrap().len() > 0, "{}: empty", rel.display()),
        _ => panic!("{}: unexpected file in the output", rel.display()),
    }
}

/// Every file under `root/out` whole; `final_run` after the resume: everything equal to the reference.
fn check_dir(root: &Path, reference: &Path, final_run: bool) {
    let out = root.join("out");
    let listed = files(&out);
    for p in &listed {
        let rel = p.strip_prefix(&out).unwrap();
        check_file(p, rel, &reference.join("out"), final_run);
    }
    if final_run {
        // The same set of files as the reference, and nothing temporary left behind.
        let want: Vec<PathBuf> = files(&reference.join("out"))
            .iter()
            .map(|p| p.strip_prefix(reference.join("out")).unwrap().into())
            .collect();
        let got: Vec<PathBuf> = listed.iter().map(|p| p.strip_prefix(&out).unwrap().into()).collect();
        assert_eq!(got, want, "files after the resume");
    }
}

/// Kills `args` at `kills()` seeded instants across its wall time (see `window`); after each kill checks
/// the files, then runs `finish` (resume or rerun) and checks the result equals the reference.
/// Returns how many kills landed while the command ran.
fn kill_and_finish(
    tag: &str,
    stream: u64,
    args: &[&str],
    reference: &Reference,
    setup: impl Fn(&Path),
    finish: impl Fn(&Path) -> String,
) -> usize {
    let mut rng = Rng::new(stream);
    // The window: the shorter of the reference's wall time and one more uninterrupted run's. The
    // reference may have run beside the other tests' references (two commands on two cores), and
    // a window longer than the command lets kills fall after its end.
    let window = {
        let root = scratch(&format!("{tag}-timing"));
        setup(&root);
        let t = Instant::now();
        ok(&mcufit(&root, args), tag);
        let wall = t.elapsed();
        std::fs::remove_dir_all(&root).unwrap();
        wall.min(reference.wall)
    };
    let mut landed = 0;
    let mut ways = std::collections::BTreeMap::new();
    let mut leftovers = 0;
    for i in 0..kills() {
        let root = scratch(&format!("{tag}-{i}"));
        setup(&root);
        let at = window.mul_f64(rng.unit());
        landed += kill_after(&root, args, at) as usize;
        check_dir(&root, &reference.dir, false);
        *ways.entry(finish(&root)).or_insert(0) += 1;
        check_dir(&root, &reference.dir, true);
        leftovers += temporaries(&root);
        std::fs::remove_dir_all(&root).unwrap();
    }
    eprintln!(
        "{tag}: {} kills over {:.2} s ({landed} while it ran), then: {ways:?}; {leftovers} temporary files of \
         killed writers left after the finish",
        kills(),
        window.as_secs_f64()
    );
    landed
}

/// `--resume`; a kill before the first checkpoint leaves nothing to resume (an error that says so),
/// and then the plain command (allowed: the directory holds no model yet) starts afresh.
fn resume(root: &Path, args: &[&str]) -> String {
    let mut with = args.to_vec();
    with.push("--resume");
    let o = mcufit(root, &with);
    if o.status.success() {
        return "resumed".into();
    }
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("holds no") && err.contains("to continue"), "--resume failed: {err}");
    ok(&mcufit(root, args), "rerun after nothing to resume");
    "restarted (no checkpoint yet)".into()
}

#[test]
fn train_killed_at_random_instants_resumes_to_the_same_weights() {
    // The reference stays: the export test exports it.
    let landed = kill_and_finish("train", 1, TRAIN, trained(), |_| {}, |root| resume(root, TRAIN));
    assert!(landed * 2 >= kills(), "only {landed} kills landed while train ran");
}

#[test]
fn compress_killed_at_random_instants_resumes_to_the_same_model() {
    let r = reference("compress-ref", COMPRESS);
    let landed = kill_and_finish("compress", 2, COMPRESS, &r, |_| {}, |root| resume(root, COMPRESS));
    assert!(landed * 2 >= kills(), "only {landed} kills landed while compress ran");
    std::fs::remove_dir_all(&r.dir).ok();
}

#[test]
fn export_killed_at_random_instants_leaves_no_partial_output() {
    let model = trained().dir.join("out");
    let model = model.to_str().unwrap();
    for (stream, format, out) in [(3, "c", "out"), (4, "tflite", "out/model.tflite")] {
        let args = ["export", model, "--format", format, "--out", out];
        // The C library is the directory `out`; the .tflite goes into an existing `out/`.
        let setup = |root: &Path| {
            if format == "tflite" {
                std::fs::create_dir_all(root.join("out")).unwrap();
            }
        };
        let r = scratch(&format!("export-{format}-ref"));
        setup(&r);
        let t = Instant::now();
        ok(&mcufit(&r, &args), "export");
        let r = Reference { dir: r, wall: t.elapsed() };
        // A rerun: the output, when the kill came after it was written, is refused without --force (and
        // must already equal the reference); otherwise the rerun writes it.
        let finish = |root: &Path| {
            let o = mcufit(root, &args);
            if o.status.success() {
                return "rerun".to_string();
            }
            let err = String::from_utf8_lossy(&o.stderr);
            assert!(err.contains("exists; give --force"), "rerun failed: {err}");
            "already complete".to_string()
        };
        kill_and_finish(&format!("export-{format}"), stream, &args, &r, setup, finish);
        std::fs::remove_dir_all(&r.dir).ok();
    }
}
