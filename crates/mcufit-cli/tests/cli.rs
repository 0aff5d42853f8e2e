//! The mcufit binary end to end: outputs, JSON shape, and clean failures on bad input.

use std::process::{Command, Output};

fn mcufit(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_mcufit")).args(args).output().expect("run mcufit")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn analyze_json_has_the_documented_fields() {
    let o = mcufit(&["analyze", "zoo:ds-cnn", "--board", "nucleo-f411re", "--macs", "5M", "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    for key in ["params", "model_bytes", "macs", "peak_memory_bytes", "layers", "fit", "footprint"] {
        assert!(v.get(key).is_some(), "missing {key}");
    }
    assert_eq!(v["macs"], 2_656_768.0);
    assert_eq!(v["params"], 22_604.0);
    let row = |name: &str| v["fit"]["rows"].as_array().unwrap().iter().find(|r| r["resource"] == name).unwrap().clone();
    assert_eq!(row("RAM")["fits"], true);
    assert_eq!(row("RAM")["limit"], 131072.0);
    // RAM is the arena plus scratch, stack and runtime: each term is listed and they add up.
    let terms: f64 = row("RAM")["terms"].as_array().unwrap().iter().map(|t| t["value"].as_f64().unwrap()).sum();
    assert_eq!(terms, row("RAM")["value"].as_f64().unwrap());
    assert_eq!(row("MACs")["limit"], 5e6);
    assert_eq!(v["fit"]["fits"], true);
}

#[test]
fn analyze_table_marks_the_peak_and_a_failed_budget_exits_1() {
    let o = mcufit(&["analyze", "zoo:resnet-8", "--ram", "16KiB"]);
    assert_eq!(o.status.code(), Some(1));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("◀ peak"));
    assert!(out.contains("DOES NOT FIT"));
    assert!(out.contains("48.0 KiB"));
}

#[test]
fn model_files_round_trip_through_analyze() {
    let dir = std::env::temp_dir().join(format!("mcufit-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("m.json");
    std::fs::write(&path, mcufit_ir::zoo::branchy_net().unwrap().to_json()).unwrap();
    let o = mcufit(&["analyze", path.to_str().unwrap(), "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
}

#[test]
fn bad_input_fails_with_a_clear_message_and_no_panic() {
    let dir = std::env::temp_dir().join(format!("mcufit-cli-bad-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let malformed = dir.join("malformed.json");
    std::fs::write(&malformed, "{ \"format\": \"mcufit-model\", ").unwrap();
    let mismatch = dir.join("mismatch.json");
    std::fs::write(
        &mismatch,
        r#"{"format":"mcufit-model","version":1,"name":"x","nodes":[
        {"name":"input","op":"input","shape":[8,8,3]},
        {"name":"a","op":"conv2d","inputs":["input"],"filters":4,"kernel":[3,3],"padding":"same"},
        {"name":"b","op":"conv2d","inputs":["input"],"filters":5,"kernel":[3,3],"padding":"same"},
        {"name":"s","op":"add","inputs":["a","b"]}]}"#,
    )
    .unwrap();
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["analyze", malformed.to_str().unwrap()], "not valid"),
        (vec!["analyze", mismatch.to_str().unwrap()], "add needs inputs of equal shape"),
        (vec!["analyze", "zoo:ds-cnn", "--board", "nano-99"], "unknown board 'nano-99'"),
        (vec!["analyze", "zoo:lenet-9000"], "unknown zoo model 'lenet-9000'"),
        (vec!["analyze", "zoo:ds-cnn", "--ram", "64QB"], "cannot parse size '64QB'"),
        (vec!["analyze", "zoo:ds-cnn", "--macs", "lots"], "cannot parse count 'lots'"),
        (vec!["analyze", "/no/such/model.json"], "no such model file"),
    ];
    for (args, needle) in cases {
        let o = mcufit(&args);
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(needle), "{args:?}: '{err}' lacks '{needle}'");
        assert!(!err.contains("panicked"), "{args:?} panicked: {err}");
    }
}

#[test]
fn zoo_and_boards_list_everything() {
    let o = mcufit(&["zoo"]);
    let out = String::from_utf8_lossy(&o.stdout);
    for name in mcufit_ir::zoo::names() {
        assert!(out.contains(&format!("zoo:{name}")));
    }
    let o = mcufit(&["boards"]);
    assert!(String::from_utf8_lossy(&o.stdout).lines().count() >= 9);
}

#[test]
fn compress_fails_fast_on_an_infeasible_budget_with_the_achievable_minimum() {
    let t = std::time::Instant::now();
    let o = mcufit(&["compress", "zoo:mnist-wide", "--peak", "500"]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    // 28x28 input (784 B) + the smallest 12x12x1 stem output (144 B).
    assert!(err.contains("peak memory") && err.contains("928 B"), "{err}");
    assert!(t.elapsed().as_secs() < 5, "infeasibility must be found before any data is loaded or trained");
}

#[test]
fn compress_writes_a_model_that_fits_and_reloads() {
    let out = std::env::temp_dir().join(format!("mcufit-cli-compress-{}", std::process::id()));
    let o = mcufit(&[
        "compress",
        "zoo:mnist-wide",
        "--peak",
        "4KiB",
        "--size",
        "12KiB",
        "--epochs",
        "3",
        "--threads",
        "2",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let report: serde_json::Value = serde_json::from_slice(&std::fs::read(out.join("report.json")).unwrap()).unwrap();
    assert!(report["accuracy_after"].is_object());
    // compress writes the same HTML report as fit (with the pruned model's int8 accuracy).
    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    assert!(html.contains("<svg") && html.contains("int8 test accuracy"));
    // The exact cost model agrees that the saved (physically smaller) model fits.
    let a = mcufit(&["analyze", out.to_str().unwrap(), "--peak", "4KiB", "--size", "12KiB", "--json"]);
    assert!(a.status.success(), "{}", stderr(&a));
    let v: serde_json::Value = serde_json::from_slice(&a.stdout).unwrap();
    assert!(v["peak_memory_bytes"].as_f64().unwrap() <= 4096.0);
    assert!(v["model_bytes"].as_f64().unwrap() <= 12288.0);
    let e = mcufit(&["eval", out.to_str().unwrap(), "--json"]);
    assert!(e.status.success(), "{}", stderr(&e));
    std::fs::remove_dir_all(&out).ok();
}

/// A killed `compress` picks up from its last checkpoint: the resumed run does not start over,
/// and still ends with a model that fits.
#[test]
fn compress_resumes_after_being_killed() {
    let out = std::env::temp_dir().join(format!("mcufit-cli-resume-{}", std::process::id()));
    std::fs::remove_dir_all(&out).ok();
    let args = [
        "compress",
        "zoo:mnist-wide",
        "--peak",
        "4KiB",
        "--size",
        "12KiB",
        "--epochs",
        "8",
        "--threads",
        "2",
        "--out",
        out.to_str().unwrap(),
    ];
    let mut child = Command::new(env!("CARGO_BIN_EXE_mcufit"))
        .args(args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("run mcufit");
    // Kill it once the pruning phase has written a checkpoint (warm-up is 2 of the 8 epochs).
    let hook = out.join("checkpoints/prune/last/hook.json");
    let t = std::time::Instant::now();
    while !hook.exists() {
        assert!(t.elapsed().as_secs() < 600, "no pruning checkpoint after 10 minutes");
        if let Some(status) = child.try_wait().unwrap() {
            panic!("compress ended ({status}) before it could be interrupted");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    std::thread::sleep(std::time::Duration::from_millis(300)); // let the checkpoint finish writing
    child.kill().ok();
    child.wait().unwrap();
    assert!(!out.join("report.json").exists(), "the run finished before it was killed; the test proves nothing");

    let mut resumed: Vec<&str> = args.to_vec();
    resumed.push("--resume");
    let o = mcufit(&resumed);
    assert!(o.status.success(), "{}", stderr(&o));
    let report: serde_json::Value = serde_json::from_slice(&std::fs::read(out.join("report.json")).unwrap()).unwrap();
    let at = report["resumed_at_epoch"].as_u64().expect("report says where the run resumed");
    assert!(at >= 1, "resumed at epoch {at}: it started over");
    for r in report["resources"].as_array().unwrap() {
        assert_eq!(r["fits"], true, "{r}");
    }
    std::fs::remove_dir_all(&out).ok();
}

#[test]
fn zoo_show_prints_a_model_file_that_loads() {
    let o = mcufit(&["zoo", "--show", "mnist-ds"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let dir = std::env::temp_dir().join(format!("mcufit-cli-show-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("m.json");
    std::fs::write(&path, &o.stdout).unwrap();
    let a = mcufit(&["analyze", path.to_str().unwrap(), "--json"]);
    assert!(a.status.success(), "{}", stderr(&a));
    let v: serde_json::Value = serde_json::from_slice(&a.stdout).unwrap();
    assert_eq!(v["params"], 13_514.0);
    let o = mcufit(&["zoo", "--show", "nope"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("unknown zoo model"), "{}", stderr(&o));
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn fit_runs_every_step_and_report_rewrites_the_html() {
    let out = std::env::temp_dir().join(format!("mcufit-cli-fit-{}", std::process::id()));
    std::fs::remove_dir_all(&out).ok();
    let o = mcufit(&[
        "fit",
        "zoo:mnist-ds",
        "--board",
        "nucleo-g031k8",
        "--epochs",
        "2,1,1",
        "--no-verify",
        "--threads",
        "2",
        "--out",
        out.to_str().unwrap(),
    ]);
    let text = format!("{}{}", String::from_utf8_lossy(&o.stdout), stderr(&o));
    assert!(o.status.success(), "{text}");
    for step in ["== train", "== compress", "== quantize", "== export", "== report"] {
        assert!(text.contains(step), "{step} missing: {text}");
    }
    assert!(text.contains("int8 test accuracy") && text.contains("report.html"), "{text}");
    assert!(text.contains("resized 8x8x1 → 28x28x1"), "the data conversion is said: {text}");
    std::fs::remove_file(out.join("report.html")).unwrap();
    let r = mcufit(&["report", out.to_str().unwrap()]);
    assert!(r.status.success(), "{}", stderr(&r));
    assert!(std::fs::read_to_string(out.join("report.html")).unwrap().contains("<svg"));
    // An impossible budget: exit 1 with the smallest reachable figure, nothing written.
    let bad = out.with_extension("bad");
    let o = mcufit(&["fit", "zoo:mnist-ds", "--peak", "200", "--out", bad.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("smallest"), "{}", stderr(&o));
    assert!(!bad.exists());
    std::fs::remove_dir_all(&out).ok();
}

#[test]
fn depth_pruning_picks_a_cut_and_refuses_bad_requests_cleanly() {
    let dir = std::env::temp_dir().join(format!("mcufit-cli-depth-{}", std::process::id()));
    std::fs::remove_dir_all(&dir).ok();
    let base = dir.join("base");
    let o = mcufit(&["train", "zoo:mnist-ds", "--epochs", "3", "--threads", "2", "--out", base.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = dir.join("depth");
    let args = |method: &'static str, head: &'static str, size: &'static str, out: &std::path::Path| {
        let mut v =
            vec!["compress", "zoo:mnist-ds", "--method", method, "--head", head, "--size", size, "--epochs", "2"];
        v.extend(["--threads", "2", "--from", base.to_str().unwrap(), "--out"]);
        v.push(out.to_str().unwrap());
        v.into_iter().map(String::from).collect::<Vec<_>>()
    };
    let run = |a: Vec<String>| Command::new(env!("CARGO_BIN_EXE_mcufit")).args(&a).output().unwrap();
    let o = run(args("depth", "ds:32,16", "9000", &out));
    let text = String::from_utf8_lossy(&o.stdout).to_string();
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(text.contains("◀ chosen"), "{text}");
    // The delivered model is the chosen cut with its head, within the weight budget.
    let a = mcufit(&["analyze", out.to_str().unwrap(), "--size", "9000", "--json"]);
    assert!(a.status.success(), "{}", stderr(&a));
    assert!(std::fs::read_to_string(out.join("cuts.txt")).unwrap().contains("◀ chosen"));

    // auto (the default with --from): both methods to the same budget, the better on validation
    // kept, and why; --resume of the finished run changes nothing.
    let auto = dir.join("auto");
    let mut auto_args = args("auto", "ds:32,16", "9000", &auto);
    auto_args.drain(2..4);
    let o = run(auto_args.clone());
    assert!(o.status.success(), "{}", stderr(&o));
    let read =
        || -> serde_json::Value { serde_json::from_slice(&std::fs::read(auto.join("auto.json")).unwrap()).unwrap() };
    let choice = read();
    let (w, d) = (choice["width_val"].as_f64().unwrap(), choice["depth_val"].as_f64().unwrap());
    assert_eq!(choice["winner"], if d > w { "depth+width" } else { "width" }, "{choice}");
    assert!(String::from_utf8_lossy(&o.stdout).contains("validation accuracy"));
    assert!(auto.join("model.json").is_file() && auto.join("width/model.json").is_file());
    auto_args.push("--resume".into());
    let again = run(auto_args);
    assert!(again.status.success(), "{}", stderr(&again));
    assert_eq!(read(), choice, "resuming a finished auto run must give the same choice");

    let bad = run(args("depth", "ds:32,x", "9000", &dir.join("bad-head")));
    assert_eq!(bad.status.code(), Some(2), "{}", stderr(&bad));
    assert!(stderr(&bad).contains("ds:32,x") && !dir.join("bad-head").exists(), "{}", stderr(&bad));
    // --head means nothing to width pruning: refused rather than silently ignored.
    let wh = dir.join("width-head");
    let o = mcufit(&["compress", "zoo:mnist-ds", "--size", "9000", "--head", "gap", "--out", wh.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("--head applies to depth pruning") && !wh.exists(), "{}", stderr(&o));
    let tiny = run(args("depth", "gap", "100", &dir.join("tiny")));
    assert_eq!(tiny.status.code(), Some(1), "{}", stderr(&tiny));
    assert!(!dir.join("tiny").exists(), "an impossible budget wrote {:?}", dir.join("tiny"));
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn errors_under_json_are_json_with_the_same_exit_codes() {
    let o = mcufit(&["analyze", "zoo:lenet-9000", "--json"]);
    assert_eq!(o.status.code(), Some(2));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["kind"], "error");
    assert!(v["error"].as_str().unwrap().contains("unknown zoo model"), "{v}");
    let o = mcufit(&["compress", "zoo:mnist-wide", "--peak", "500", "--json"]);
    assert_eq!(o.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["kind"], "does_not_fit");
    // Sizes take G units; an absurd figure is refused, not capped.
    assert!(mcufit(&["analyze", "zoo:ds-cnn", "--ram", "1GiB"]).status.success());
    let o = mcufit(&["analyze", "zoo:ds-cnn", "--ram", "99999999999999999999"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let o = mcufit(&["analyze", "zoo:ds-cnn", "--ram", "-5"]);
    assert!(stderr(&o).contains("cannot parse size '-5'"), "{}", stderr(&o));
}

/// Absurd sizes are refused before anything is allocated: exit 2, the figure in the message, no
/// panic, quickly (a billion filters used to abort train/compress on a 36 GB allocation, u64::MAX
/// filters panicked with "capacity overflow", and analyze printed 10^22 MiB and exited 0).
#[test]
fn absurd_model_sizes_are_refused_before_allocation() {
    let dir = std::env::temp_dir().join(format!("mcufit-cli-absurd-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let model = |name: &str, hw: u64, filters: &str| {
        let path = dir.join(format!("{name}.json"));
        std::fs::write(
            &path,
            format!(
                r#"{{"format":"mcufit-model","version":1,"name":"{name}","nodes":[
                {{"name":"input","op":"input","shape":[{hw},{hw},1]}},
                {{"name":"wide","op":"conv2d","inputs":["input"],"filters":{filters},"kernel":[3,3],"padding":"same"}},
                {{"name":"gap","op":"global_avg_pool","inputs":["wide"]}},
                {{"name":"fc","op":"dense","inputs":["gap"],"units":10}},
                {{"name":"out","op":"softmax","inputs":["fc"]}}]}}"#
            ),
        )
        .unwrap();
        path.to_str().unwrap().to_string()
    };
    let billion = model("billion-filters", 8, "1000000000");
    let huge_input = model("huge-input", 100_000, "8");
    let max_filters = model("max-filters", 8, &u64::MAX.to_string());
    let cases: Vec<(Vec<&str>, Vec<&str>)> = vec![
        (
            vec!["train", &billion, "--epochs", "1"],
            vec!["too large to train", "20000000010 parameters", "over the limit of"],
        ),
        (vec!["compress", &billion, "--peak", "4KiB"], vec!["too large to train", "over the limit of"]),
        (vec!["train", &huge_input, "--epochs", "1"], vec!["too large to train", "80000000000 elements"]),
        (vec!["compress", &huge_input, "--peak", "4KiB"], vec!["too large to train"]),
        (vec!["analyze", &billion], vec!["20000000010 parameters", "microcontroller"]),
        (vec!["analyze", &huge_input], vec!["90000000000 B", "microcontroller"]),
        (vec!["analyze", &max_filters], vec!["node 'wide'", "too large"]),
        (vec!["train", &max_filters, "--epochs", "1"], vec!["node 'wide'", "too large"]),
        (vec!["compress", &max_filters, "--peak", "4KiB"], vec!["node 'wide'", "too large"]),
    ];
    for (args, needles) in cases {
        let t = std::time::Instant::now();
        let o = mcufit(&args);
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {err}");
        for needle in needles {
            assert!(err.contains(needle), "{args:?}: '{err}' lacks '{needle}'");
        }
        assert!(!err.contains("panicked"), "{args:?} panicked: {err}");
        assert!(t.elapsed().as_secs_f64() < 5.0, "{args:?} took {:?}", t.elapsed());
    }
}

/// The peak line says whether the order search was exact.
#[test]
fn analyze_says_the_peak_is_exact() {
    let o = mcufit(&["analyze", "zoo:resnet-8"]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.lines().any(|l| l.starts_with("peak memory") && l.contains("(exact)")), "{out}");
    let o = mcufit(&["analyze", "zoo:resnet-8", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["peak_memory_exact"], true);
    assert_eq!(v["peak_memory_lower_bound"], v["peak_memory_bytes"]);
}

#[test]
fn train_learns_from_a_teacher_trained_on_its_own_split_only() {
    let dir = std::env::temp_dir().join(format!("mcufit-cli-distill-{}", std::process::id()));
    std::fs::remove_dir_all(&dir).ok();
    let p = |name: &str| dir.join(name).to_str().unwrap().to_string();
    let train = |out: &str, extra: &[&str]| {
        let mut a = vec!["train", "zoo:mnist-ds", "--limit", "400", "--threads", "1", "--out", out];
        a.extend_from_slice(extra);
        if !extra.contains(&"--epochs") {
            a.extend(["--epochs", "1"]);
        }
        mcufit(&a)
    };
    let o = train(&p("teacher"), &["--epochs", "3"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = train(&p("plain"), &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    let teacher = p("teacher");
    let o = train(&p("student"), &["--teacher", &teacher, "--distill", "0.7", "--distill-temperature", "2"]);
    assert!(o.status.success(), "{}", stderr(&o));
    // Same seed, same data, same schedule: only the teacher's targets differ, so the weights do.
    let weights = |d: &str| std::fs::read(dir.join(d).join("weights.safetensors")).unwrap();
    assert!(weights("student") != weights("plain"), "the teacher changed nothing");

    // A teacher trained on another split has seen this run's validation samples: refused, nothing written.
    let o = train(&p("other-split"), &["--teacher", &teacher, "--distill", "0.5", "--seed", "7"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("--seed 42") && !dir.join("other-split").exists(), "{}", stderr(&o));
    // Half a request is refused rather than silently ignored.
    let o = train(&p("no-weight"), &["--teacher", &teacher]);
    assert!(o.status.code() == Some(2) && stderr(&o).contains("--distill"), "{}", stderr(&o));
    let o = train(&p("no-teacher"), &["--distill", "0.5"]);
    assert!(o.status.code() == Some(2) && stderr(&o).contains("--teacher"), "{}", stderr(&o));
    assert!(!dir.join("no-weight").exists() && !dir.join("no-teacher").exists());
    std::fs::remove_dir_all(&dir).ok();
}
