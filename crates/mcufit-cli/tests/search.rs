//! `mcufit search` end to end on the built-in digits with tiny proxy training: a search killed -9
//! mid-trial and resumed ends every trial exactly once (SQLite), and three workers on one
//! PostgreSQL search, one killed -9 mid-trial, end every trial exactly once with the killed one re-run.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

#[path = "../../mcufit-search/tests/support/pg.rs"]
mod pg;

fn mcufit() -> Command {
    Command::new(env!("CARGO_BIN_EXE_mcufit"))
}

fn temp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("mcufit-cli-search-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

/// A quick search: digits, a budget pruning must work for, tiny training.
const QUICK: &[&str] = &[
    "--peak",
    "2KB",
    "--size",
    "3000",
    "--population",
    "3",
    "--sample",
    "2",
    "--proxy-epochs",
    "1",
    "--prune-epochs",
    "2",
    "--max-steps",
    "12",
    "--threads",
    "1",
    "--seed",
    "5",
];

fn status(store: &[&str]) -> serde_json::Value {
    let out = mcufit().args(["search", "--status", "--json"]).args(store).output().unwrap();
    assert!(out.status.success(), "status: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn progress(store: &[&str]) -> serde_json::Value {
    status(store)["progress"].clone()
}

fn n(v: &serde_json::Value, k: &str) -> u64 {
    v[k].as_u64().unwrap_or_else(|| panic!("{k} in {v}"))
}

/// Waits until `pred` holds on the search's progress (or fails after `secs`).
fn wait_for(store: &[&str], secs: u64, what: &str, pred: impl Fn(&serde_json::Value) -> bool) -> serde_json::Value {
    let t = Instant::now();
    loop {
        // The store may not exist for the first few polls.
        let out = mcufit().args(["search", "--status", "--json"]).args(store).output().unwrap();
        if out.status.success() {
            let p = serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()["progress"].clone();
            if pred(&p) {
                return p;
            }
        }
        assert!(t.elapsed() < Duration::from_secs(secs), "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(150));
    }
}

fn running_on(p: &serde_json::Value, pid: u32) -> bool {
    p["running_on"].as_array().unwrap().iter().any(|r| r[1].as_str().unwrap().contains(&format!(":{pid}:")))
}

fn spawn(args: &[&str], log: &Path) -> Child {
    mcufit().args(args).stdout(Stdio::null()).stderr(std::fs::File::create(log).unwrap()).spawn().unwrap()
}

fn check_trial_dirs(p: &serde_json::Value, front: &serde_json::Value) {
    assert!(!front.as_array().unwrap().is_empty());
    for m in front.as_array().unwrap() {
        let dir = m["model_dir"].as_str().unwrap();
        assert!(Path::new(dir).join("model.json").is_file() && Path::new(dir).join("data.json").is_file(), "{dir}");
    }
    assert_eq!(n(p, "proposed"), n(p, "done") + n(p, "rejected") + n(p, "failed"));
}

#[test]
fn search_killed_mid_trial_resumes_with_every_trial_exactly_once() {
    let out = temp("sqlite");
    let o = out.to_str().unwrap();
    let store = ["--out", o];
    let mut child = spawn(&[&["search", "--out", o, "--trials", "6"], QUICK].concat(), &out.with_extension("log"));
    let pid = child.id();
    wait_for(&store, 300, "two trials done and a third running", |p| n(p, "done") >= 2 && running_on(p, pid));
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let killed = progress(&store);
    assert_eq!(n(&killed, "running"), 1, "killed mid-trial: {killed}");
    let done_before = n(&killed, "done");

    // --resume needs no search flags: they are in the store.
    let r = mcufit().args(["search", "--resume", "--out", o]).output().unwrap();
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    let log = String::from_utf8_lossy(&r.stderr);
    assert!(log.contains("1 interrupted trial(s) back in the queue"), "{log}");
    assert!(log.contains("(attempt 2: its worker died)"), "{log}");
    let s = status(&store);
    let p = &s["progress"];
    assert_eq!((n(p, "done"), n(p, "running"), n(p, "queued"), n(p, "failed")), (6, 0, 0, 0), "{p}");
    assert_eq!(n(p, "rerun"), 1, "only the killed trial ran twice: {p}");
    // The resumed run trained only what was left.
    assert!(log.matches(" training").count() as u64 == 6 - done_before, "{log}");
    check_trial_dirs(p, &s["front"]);
    assert!(out.join("pareto.json").is_file());
    // A trial directory is a model directory eval takes.
    let e = mcufit().args(["eval", s["front"][0]["model_dir"].as_str().unwrap()]).output().unwrap();
    assert!(e.status.success() && String::from_utf8_lossy(&e.stdout).contains("test accuracy"));
    // Starting a different search into the same store is refused.
    let again = mcufit().args(["search", "--out", o, "--trials", "7"]).args(QUICK).output().unwrap();
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("another search"));
    let _ = std::fs::remove_file(out.with_extension("log"));
    let _ = std::fs::remove_dir_all(&out);
}

#[test]
fn three_postgres_workers_one_killed_end_every_trial_exactly_once() {
    let Some(server) = pg::start_or_skip("three_postgres_workers_one_killed_end_every_trial_exactly_once") else {
        return;
    };
    let out = temp("pg");
    let o = out.to_str().unwrap();
    let url = server.url.as_str();
    let store = ["--store", url];
    let trials = "9";
    // The first worker creates the search; the others join it with --worker.
    let mut first = spawn(
        &[&["search", "--store", url, "--out", o, "--trials", trials, "--lease", "3s"], QUICK].concat(),
        &out.with_extension("1.log"),
    );
    wait_for(&store, 120, "the search to start", |p| n(p, "proposed") >= 1);
    let join = |i: usize| {
        spawn(
            &["search", "--worker", "--store", url, "--threads", "1", "--lease", "3s"],
            &out.with_extension(format!("{i}.log")),
        )
    };
    let (mut w2, mut w3) = (join(2), join(3));
    let pid = first.id();
    // Kill the first worker while it trains a trial and the others are busy too.
    wait_for(&store, 300, "worker 1 mid-trial beside the others", |p| {
        running_on(p, pid) && p["running_on"].as_array().unwrap().len() >= 2 && n(p, "done") >= 1
    });
    first.kill().unwrap();
    first.wait().unwrap();
    let killed = progress(&store);
    assert!(running_on(&killed, pid), "worker 1 died holding a trial: {killed}");
    for w in [&mut w2, &mut w3] {
        let st = w.wait().unwrap();
        assert!(st.success(), "a worker failed: {}", std::fs::read_to_string(out.with_extension("2.log")).unwrap());
    }
    let s = status(&store);
    let p = &s["progress"];
    assert_eq!((n(p, "done"), n(p, "running"), n(p, "queued"), n(p, "failed")), (9, 0, 0, 0), "{p}");
    assert_eq!(n(p, "rerun"), 1, "the killed worker's trial was re-run, nothing else: {p}");
    let logs = std::fs::read_to_string(out.with_extension("2.log")).unwrap()
        + &std::fs::read_to_string(out.with_extension("3.log")).unwrap();
    assert_eq!(logs.matches("(attempt 2: its worker died)").count(), 1, "{logs}");
    assert!(!logs.contains("lease lost"), "{logs}");
    // Both surviving workers trained trials.
    for i in [2, 3] {
        let l = std::fs::read_to_string(out.with_extension(format!("{i}.log"))).unwrap();
        assert!(l.contains(" done: val "), "worker {i} trained nothing:\n{l}");
    }
    check_trial_dirs(p, &s["front"]);
    drop(server);
    for i in 1..=3 {
        let _ = std::fs::remove_file(out.with_extension(format!("{i}.log")));
    }
    let _ = std::fs::remove_dir_all(&out);
}
