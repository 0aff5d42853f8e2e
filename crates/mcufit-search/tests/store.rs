//! The store and the worker loop with a stand-in runner (no training): seeded determinism, a crash
//! and resume that loses and repeats nothing, rejection accounting, leases.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use mcufit_search::store::SqliteStore;
use mcufit_search::{
    progress, run_worker, Bounds, EvolutionConfig, Genotype, Outcome, Preset, Resources, SearchMeta, SearchSpace,
    Status, Timings, Trial, TrialRunner, TrialStore, WorkerOptions,
};

/// A runner whose "accuracy" is a deterministic function of the genotype, and which rejects any
/// candidate with a stem wider than `max_stem`.
struct Fake {
    max_stem: usize,
    runs: AtomicU64,
    /// Panic (as a kill would end the process) on this run number.
    die_on: Option<u64>,
}

fn figures(g: &Genotype) -> Resources {
    let c: usize = g.blocks.iter().map(|b| b.channels * b.kernel).sum();
    Resources {
        peak: (g.stem.channels * 10) as f64,
        model_bytes: (c * 7) as f64,
        macs: (c * 1000) as f64,
        params: c as f64,
    }
}

impl TrialRunner for Fake {
    fn price(&self, g: &Genotype) -> mcufit_search::Result<Result<Resources, String>> {
        Ok(if g.stem.channels > self.max_stem {
            Err(format!("stem {} > {}", g.stem.channels, self.max_stem))
        } else {
            Ok(figures(g))
        })
    }
    fn run(&self, t: &Trial) -> Outcome {
        let n = self.runs.fetch_add(1, Ordering::SeqCst) + 1;
        if self.die_on == Some(n) {
            panic!("killed");
        }
        let h = serde_json::to_string(&t.genotype)
            .unwrap()
            .bytes()
            .fold(0u64, |a, b| a.wrapping_mul(31).wrapping_add(b as u64));
        Outcome::Done {
            resources: figures(&t.genotype),
            val_accuracy: 0.5 + (h % 500) as f64 / 1000.0,
            test_accuracy: 0.5,
            timings: Timings { total_s: 1.0, ..Default::default() },
            model_dir: format!("trials/{}", t.id),
        }
    }
}

fn meta(seed: u64, trials: u64) -> SearchMeta {
    SearchMeta {
        space: SearchSpace::new(Preset::Resnet),
        evolution: EvolutionConfig { population: 5, sample: 3, ..Default::default() },
        seed,
        max_trials: trials,
        bounds: Bounds { peak: Some(1000.0), model_bytes: None, macs: Some(1e6) },
        hyper: serde_json::json!({"epochs": 1}),
        task: serde_json::json!({}),
    }
}

fn temp(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("mcufit-search-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d.join("search.db")
}

fn run(store: &dyn TrialStore, runner: &Fake) -> mcufit_search::WorkerSummary {
    run_worker(store, runner, &WorkerOptions::new("w1".into()), &mut |_| {}).unwrap()
}

fn genotypes(store: &dyn TrialStore) -> Vec<(u64, Status, Genotype)> {
    store.trials().unwrap().into_iter().map(|t| (t.id, t.status, t.genotype)).collect()
}

#[test]
fn same_seed_same_search_and_rejections_do_not_count() {
    let fake = || Fake { max_stem: 64, runs: AtomicU64::new(0), die_on: None };
    let a = SqliteStore::open(&temp("det-a")).unwrap();
    a.create(&meta(3, 20)).unwrap();
    let sa = run(&a, &fake());
    let b = SqliteStore::open(&temp("det-b")).unwrap();
    b.create(&meta(3, 20)).unwrap();
    run(&b, &fake());
    assert_eq!(genotypes(&a), genotypes(&b));
    let c = SqliteStore::open(&temp("det-c")).unwrap();
    c.create(&meta(4, 20)).unwrap();
    run(&c, &fake());
    assert_ne!(genotypes(&a), genotypes(&c), "another seed, another search");

    let p = progress(&a.trials().unwrap());
    assert!(sa.finished);
    assert_eq!((p.done, p.failed, p.running, p.queued), (20, 0, 0, 0));
    assert!(p.rejected > 0, "wide stems are rejected");
    assert_eq!(p.rejected, sa.rejected);
    assert_eq!(p.proposed, 20 + p.rejected);
    for t in a.trials().unwrap() {
        match t.status {
            Status::Rejected => assert!(t.genotype.stem.channels > 64 && t.error.is_some() && t.attempts == 0),
            Status::Done => assert!(t.genotype.stem.channels <= 64 && t.attempts == 1),
            s => panic!("trial {} ended {s:?}", t.id),
        }
    }
}

/// Blocks forever on its `hang_on`-th run, as a worker killed in the middle of a trial never finishes it.
struct Hangs {
    inner: Fake,
    hang_on: u64,
}

impl TrialRunner for Hangs {
    fn price(&self, g: &Genotype) -> mcufit_search::Result<Result<Resources, String>> {
        self.inner.price(g)
    }
    fn run(&self, t: &Trial) -> Outcome {
        if self.inner.runs.load(Ordering::SeqCst) + 1 == self.hang_on {
            loop {
                std::thread::park();
            }
        }
        self.inner.run(t)
    }
}

#[test]
fn a_crash_then_resume_loses_and_repeats_nothing_and_replays_the_search() {
    let path = temp("crash");
    let store = SqliteStore::open(&path).unwrap();
    store.create(&meta(9, 12)).unwrap();
    let dead = std::sync::Arc::new(store);
    let d = dead.clone();
    let (tx, rx) = std::sync::mpsc::channel();
    // The first worker hangs in its 7th trial and is abandoned: it never finishes it.
    std::thread::spawn(move || {
        let hangs = Hangs { inner: Fake { max_stem: 64, runs: AtomicU64::new(0), die_on: None }, hang_on: 7 };
        run_worker(d.as_ref(), &hangs, &WorkerOptions::new("dead".into()), &mut |e| {
            if let mcufit_search::Event::Started { trial } = e {
                tx.send(trial.id).unwrap();
            }
        })
    });
    let mut started = 0;
    while started < 7 {
        rx.recv_timeout(Duration::from_secs(30)).expect("the first worker makes progress");
        started += 1;
    }
    let before = progress(&dead.trials().unwrap());
    assert_eq!((before.done, before.running), (6, 1));
    // --resume from another process: a second connection to the same file.
    let store = SqliteStore::open(&path).unwrap();
    assert_eq!(store.requeue_running().unwrap(), 1);
    let resumed = run_worker(
        &store,
        &Fake { max_stem: 64, runs: AtomicU64::new(0), die_on: None },
        &WorkerOptions::new("resumed".into()),
        &mut |_| {},
    )
    .unwrap();
    assert!(resumed.finished);
    assert_eq!(resumed.done, 6, "the interrupted trial and the five never started");
    let trials = store.trials().unwrap();
    let done: Vec<&Trial> = trials.iter().filter(|t| t.status == Status::Done).collect();
    assert_eq!(done.len(), 12);
    let rerun: Vec<u64> = done.iter().filter(|t| t.attempts > 1).map(|t| t.id).collect();
    assert_eq!(rerun.len(), 1, "only the interrupted trial ran twice");
    assert!(done.iter().all(|t| t.attempts <= 2));
    assert_eq!(trials.iter().find(|t| t.id == rerun[0]).unwrap().worker.as_deref(), Some("resumed"));
    // Same proposals as an uninterrupted search with the same seed.
    let uninterrupted = SqliteStore::open(&temp("crash-ref")).unwrap();
    uninterrupted.create(&meta(9, 12)).unwrap();
    run(&uninterrupted, &Fake { max_stem: 64, runs: AtomicU64::new(0), die_on: None });
    assert_eq!(genotypes(&store), genotypes(&uninterrupted));
}

#[test]
fn a_lost_lease_drops_the_result_and_an_expired_lease_requeues() {
    let store = SqliteStore::open(&temp("lease")).unwrap();
    store.create(&meta(1, 3)).unwrap();
    let fake = Fake { max_stem: 64, runs: AtomicU64::new(0), die_on: None };
    let mut propose = |all: &[Trial], next: u64| {
        let m = meta(1, 3);
        let g = mcufit_search::evolution::propose(&m.space, &m.evolution, &m.bounds, m.seed, next, all);
        let _ = &fake;
        Ok(vec![mcufit_search::NewTrial { genotype: g, seed: next, price_us: 1.0, unpruned: None, rejected: None }])
    };
    let mcufit_search::Claim::Trial(t) = store.claim("a", Duration::from_millis(50), &mut propose).unwrap() else {
        panic!("a trial")
    };
    std::thread::sleep(Duration::from_millis(120));
    // Worker b finds the queue empty of fresh work but a's lease expired: b gets the same trial.
    let mcufit_search::Claim::Trial(t2) = store.claim("b", Duration::from_secs(60), &mut propose).unwrap() else {
        panic!("a trial")
    };
    assert_eq!((t2.id, t2.attempts), (t.id, 2));
    assert!(!store.renew(t.id, "a", Duration::from_secs(60)).unwrap());
    let out = Outcome::Failed { error: "x".into(), timings: Timings::default() };
    assert!(!store.finish(t.id, "a", &out).unwrap(), "a no longer holds it");
    assert!(store.finish(t.id, "b", &out).unwrap());
    assert!(!store.finish(t.id, "b", &out).unwrap(), "a trial ends once");
    // The store refuses another search, accepts the same one.
    store.create(&meta(1, 3)).unwrap();
    let e = store.create(&meta(2, 3)).unwrap_err().to_string();
    assert!(e.contains("another search") && e.contains("--resume"), "{e}");
}

/// Several processes opening a store file that does not exist yet (a search starting while
/// `--status` polls for it): every open succeeds. Two connections switching a new file to WAL can
/// deadlock on their shared locks, which SQLite reports as "database is locked" at once, without
/// waiting out the busy timeout.
#[test]
fn concurrent_first_opens_of_a_new_store_all_succeed() {
    for round in 0..20 {
        let path = temp(&format!("first-open-{round}"));
        let opens: Vec<_> = (0..6)
            .map(|_| {
                let path = path.clone();
                std::thread::spawn(move || SqliteStore::open(&path).map(|_| ()))
            })
            .collect();
        for o in opens {
            o.join().unwrap().unwrap_or_else(|e| panic!("round {round}: {e}"));
        }
        let _ = std::fs::remove_dir_all(path.parent().unwrap());
    }
}
