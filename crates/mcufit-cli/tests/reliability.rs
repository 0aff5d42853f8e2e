//! What the bad-input table (`bench/bad_inputs.py`, issue 15) found, kept fixed: usage errors are JSON
//! under `--json`, `export --report` does not replace a file without `--force`, `--max-steps 0` is
//! refused, and a wide graph's memory-order search stays fast.

use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::Instant;

fn mcufit(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_mcufit")).args(args).output().expect("run mcufit")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn scratch(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("mcufit-rel-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn usage_errors_under_json_are_json_and_help_is_not() {
    for args in [
        &["analyze", "zoo:ds-cnn", "--frobnicate", "--json"][..],
        &["analyze", "zoo:ds-cnn", "--target", "foo", "--json"],
        &["analyze", "--json"],
    ] {
        let o = mcufit(args);
        assert_eq!(o.status.code(), Some(2), "{args:?}");
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{args:?}: {e}"));
        assert_eq!(v["kind"], "usage");
        assert!(!v["error"].as_str().unwrap().is_empty() && v["usage"].as_str().unwrap().contains("--help"), "{v}");
    }
    let help = mcufit(&["analyze", "--help", "--json"]);
    assert!(help.status.success() && String::from_utf8_lossy(&help.stdout).contains("Usage:"));
}

#[test]
fn export_report_does_not_replace_a_file_without_force_and_max_steps_0_is_refused() {
    let d = scratch("report");
    let model = d.join("m");
    let o = mcufit(&[
        "train",
        "zoo:mnist-ds",
        "--epochs",
        "1",
        "--limit",
        "100",
        "--threads",
        "1",
        "--out",
        model.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let report = d.join("r.json");
    std::fs::write(&report, "mine").unwrap();
    let out = d.join("m.tflite");
    let args = [
        "export",
        model.to_str().unwrap(),
        "--format",
        "tflite",
        "--out",
        out.to_str().unwrap(),
        "--report",
        report.to_str().unwrap(),
    ];
    let o = mcufit(&args);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("r.json exists; give --force"), "{}", stderr(&o));
    assert_eq!(std::fs::read_to_string(&report).unwrap(), "mine");
    assert!(!out.exists(), "nothing is written when one output is refused");
    let mut forced = args.to_vec();
    forced.push("--force");
    assert!(mcufit(&forced).status.success());
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    assert!(v.is_object());

    let o = mcufit(&["train", "zoo:mnist-ds", "--max-steps", "0", "--out", d.join("t").to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("--max-steps) must be at least 1"), "{}", stderr(&o));
    std::fs::remove_dir_all(&d).ok();
}

/// 200 parallel branches joined by a concat: the bounded memory-order search (13 s before its beam
/// step became O(degree) and its width shrank with the op count) answers exactly, well within 5 s.
#[test]
fn two_hundred_parallel_branches_are_analyzed_in_seconds() {
    let d = scratch("wide");
    let mut nodes = vec![serde_json::json!({"name": "input", "op": "input", "shape": [16, 16, 8]})];
    for i in 0..200 {
        nodes.push(serde_json::json!({"name": format!("b{i}"), "op": "conv2d", "inputs": ["input"], "filters": 8, "kernel": [3, 3]}));
    }
    nodes.push(serde_json::json!({"name": "cat", "op": "concat", "inputs": (0..200).map(|i| format!("b{i}")).collect::<Vec<_>>()}));
    let m = serde_json::json!({"format": "mcufit-model", "version": 1, "name": "wide-200", "nodes": nodes});
    let p = d.join("wide.json");
    std::fs::write(&p, m.to_string()).unwrap();
    let t = Instant::now();
    let o = mcufit(&["analyze", p.to_str().unwrap()]);
    let secs = t.elapsed().as_secs_f64();
    assert!(o.status.success(), "{}", stderr(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("612.5 KiB   (exact)"), "{out}");
    assert!(secs < 5.0, "{secs:.1} s");
    std::fs::remove_dir_all(&d).ok();
}
