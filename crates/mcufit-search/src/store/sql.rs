//! The store's logic, written once over a small transaction interface that both backends implement.
//! SQL is written with `$1, $2, …` placeholders (SQLite gets `?1, ?2, …`).

use std::time::Duration;

use super::{now, Claim, NewTrial, Outcome, Proposer, SearchMeta, Status, Trial, TrialStore};
use crate::error::{Result, SearchError};

/// A database the store runs on: its name for messages and one transaction at a time. Every
/// [`TrialStore`] operation is the same SQL over it (the impl below), whichever engine it is.
pub(crate) trait SqlDatabase: Send + Sync {
    fn describe(&self) -> String;
    /// Runs `f` in a transaction and commits it when `f` succeeds.
    fn with_tx<T>(&self, f: impl FnOnce(&mut dyn Tx) -> Result<T>) -> Result<T>;
}

impl<D: SqlDatabase> TrialStore for D {
    fn describe(&self) -> String {
        SqlDatabase::describe(self)
    }
    fn create(&self, meta: &SearchMeta) -> Result<()> {
        self.with_tx(|tx| create(tx, meta))
    }
    fn meta(&self) -> Result<Option<SearchMeta>> {
        self.with_tx(read_meta)
    }
    fn claim(&self, worker: &str, lease: Duration, propose: &mut Proposer) -> Result<Claim> {
        self.with_tx(|tx| claim(tx, worker, lease, propose))
    }
    fn renew(&self, id: u64, worker: &str, lease: Duration) -> Result<bool> {
        self.with_tx(|tx| renew(tx, id, worker, lease))
    }
    fn finish(&self, id: u64, worker: &str, outcome: &Outcome) -> Result<bool> {
        self.with_tx(|tx| finish(tx, id, worker, outcome))
    }
    fn requeue_running(&self) -> Result<u64> {
        self.with_tx(requeue_running)
    }
    fn trials(&self) -> Result<Vec<Trial>> {
        self.with_tx(trials)
    }
}

/// The tables (the same text for both engines: SQLite maps the type names to its affinities).
pub(crate) const SCHEMA: [&str; 3] = [
    "CREATE TABLE IF NOT EXISTS mcufit_search (k BIGINT PRIMARY KEY, meta TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS mcufit_trials (
        id BIGINT PRIMARY KEY,
        genotype TEXT NOT NULL,
        hyper TEXT NOT NULL,
        status TEXT NOT NULL,
        worker TEXT,
        lease_expires DOUBLE PRECISION,
        seed BIGINT NOT NULL,
        attempts BIGINT NOT NULL,
        proposed_at DOUBLE PRECISION NOT NULL,
        started_at DOUBLE PRECISION,
        finished_at DOUBLE PRECISION,
        price_us DOUBLE PRECISION NOT NULL,
        unpruned TEXT,
        resources TEXT,
        val_accuracy DOUBLE PRECISION,
        test_accuracy DOUBLE PRECISION,
        timings TEXT,
        model_dir TEXT,
        error TEXT
    )",
    "CREATE INDEX IF NOT EXISTS mcufit_trials_status ON mcufit_trials (status, id)",
];

const COLUMNS: &str = "id, genotype, hyper, status, worker, lease_expires, seed, attempts, proposed_at, started_at, \
                       finished_at, price_us, unpruned, resources, val_accuracy, test_accuracy, timings, model_dir, error";

/// A value bound to a placeholder.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Val {
    Null,
    I(i64),
    F(f64),
    T(String),
}

impl From<Option<f64>> for Val {
    fn from(v: Option<f64>) -> Self {
        v.map_or(Val::Null, Val::F)
    }
}
impl From<Option<String>> for Val {
    fn from(v: Option<String>) -> Self {
        v.map_or(Val::Null, Val::T)
    }
}

/// A row being read, by column index.
pub(crate) trait RowGet {
    fn int(&self, i: usize) -> Result<Option<i64>>;
    fn real(&self, i: usize) -> Result<Option<f64>>;
    fn text(&self, i: usize) -> Result<Option<String>>;
}

/// One open transaction.
pub(crate) trait Tx {
    fn exec(&mut self, sql: &str, p: &[Val]) -> Result<u64>;
    /// Calls `f` on every row.
    fn query(&mut self, sql: &str, p: &[Val], f: &mut dyn FnMut(&dyn RowGet) -> Result<()>) -> Result<()>;
    /// PostgreSQL: row locks with `SKIP LOCKED`, and the advisory lock proposals take.
    fn postgres(&self) -> bool;
}

fn need<T>(v: Option<T>, what: &str) -> Result<T> {
    v.ok_or_else(|| SearchError::Store(format!("a trial row lacks {what}")))
}

fn json<T: serde::de::DeserializeOwned>(t: Option<String>) -> Result<Option<T>> {
    t.map(|s| serde_json::from_str(&s)).transpose().map_err(Into::into)
}

fn trial(r: &dyn RowGet) -> Result<Trial> {
    Ok(Trial {
        id: need(r.int(0)?, "id")? as u64,
        genotype: need(json(r.text(1)?)?, "genotype")?,
        hyper: need(json(r.text(2)?)?, "hyper")?,
        status: Status::parse(&need(r.text(3)?, "status")?)?,
        worker: r.text(4)?,
        lease_expires: r.real(5)?,
        seed: need(r.int(6)?, "seed")? as u64,
        attempts: need(r.int(7)?, "attempts")? as u64,
        proposed_at: need(r.real(8)?, "proposed_at")?,
        started_at: r.real(9)?,
        finished_at: r.real(10)?,
        price_us: need(r.real(11)?, "price_us")?,
        unpruned: json(r.text(12)?)?,
        resources: json(r.text(13)?)?,
        val_accuracy: r.real(14)?,
        test_accuracy: r.real(15)?,
        timings: json(r.text(16)?)?,
        model_dir: r.text(17)?,
        error: r.text(18)?,
    })
}

fn select_trials(tx: &mut dyn Tx, filter: &str, p: &[Val]) -> Result<Vec<Trial>> {
    let mut out = Vec::new();
    tx.query(&format!("SELECT {COLUMNS} FROM mcufit_trials {filter}"), p, &mut |r| {
        out.push(trial(r)?);
        Ok(())
    })?;
    Ok(out)
}

fn scalar(tx: &mut dyn Tx, sql: &str, p: &[Val]) -> Result<Option<i64>> {
    let mut v = None;
    tx.query(sql, p, &mut |r| {
        v = r.int(0)?;
        Ok(())
    })?;
    Ok(v)
}

fn lock(tx: &mut dyn Tx) -> Result<()> {
    if tx.postgres() {
        // One lock key for the search's proposals and its creation; held until the transaction ends.
        tx.query("SELECT pg_advisory_xact_lock(6617282915)", &[], &mut |_| Ok(()))?;
    }
    Ok(())
}

pub(crate) fn create(tx: &mut dyn Tx, meta: &SearchMeta) -> Result<()> {
    lock(tx)?;
    for s in SCHEMA {
        tx.exec(s, &[])?;
    }
    match read_meta(tx)? {
        Some(m) if m == *meta => Ok(()),
        Some(m) => Err(SearchError::Config(format!(
            "the store already holds another search (space {}, seed {}, {} trials, population {}): \
             continue it with --resume (or --worker), or give another --store / --out",
            m.space.preset, m.seed, m.max_trials, m.evolution.population
        ))),
        None => {
            tx.exec("INSERT INTO mcufit_search (k, meta) VALUES (1, $1)", &[Val::T(serde_json::to_string(meta)?)])?;
            Ok(())
        }
    }
}

pub(crate) fn read_meta(tx: &mut dyn Tx) -> Result<Option<SearchMeta>> {
    let mut text = None;
    let exists = table_exists(tx)?;
    if !exists {
        return Ok(None);
    }
    tx.query("SELECT meta FROM mcufit_search WHERE k = 1", &[], &mut |r| {
        text = r.text(0)?;
        Ok(())
    })?;
    json(text)
}

fn table_exists(tx: &mut dyn Tx) -> Result<bool> {
    let sql = if tx.postgres() {
        "SELECT COUNT(*) FROM information_schema.tables WHERE table_name = 'mcufit_search' AND table_schema = current_schema()"
    } else {
        "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = 'mcufit_search'"
    };
    Ok(scalar(tx, sql, &[])?.unwrap_or(0) > 0)
}

fn no_search() -> SearchError {
    SearchError::Config(
        "the store holds no search yet: start one with `mcufit search BUDGET --store …` (workers join it with --worker)"
            .into(),
    )
}

/// Running trials whose lease ran out go back to the queue.
fn requeue_expired(tx: &mut dyn Tx, t: f64) -> Result<u64> {
    tx.exec(
        "UPDATE mcufit_trials SET status = 'queued', worker = NULL, lease_expires = NULL \
         WHERE status = 'running' AND lease_expires < $1",
        &[Val::F(t)],
    )
}

fn take(tx: &mut dyn Tx, id: u64, worker: &str, lease: Duration, t: f64) -> Result<Trial> {
    tx.exec(
        "UPDATE mcufit_trials SET status = 'running', worker = $1, lease_expires = $2, attempts = attempts + 1, \
         started_at = $3 WHERE id = $4",
        &[Val::T(worker.into()), Val::F(t + lease.as_secs_f64()), Val::F(t), Val::I(id as i64)],
    )?;
    let mut v = select_trials(tx, "WHERE id = $1", &[Val::I(id as i64)])?;
    v.pop().ok_or_else(|| SearchError::Store(format!("trial {id} vanished while being claimed")))
}

pub(crate) fn claim(tx: &mut dyn Tx, worker: &str, lease: Duration, propose: &mut Proposer) -> Result<Claim> {
    let meta = read_meta(tx)?.ok_or_else(no_search)?;
    let t = now();
    requeue_expired(tx, t)?;
    let pick = if tx.postgres() {
        "SELECT id FROM mcufit_trials WHERE status = 'queued' ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED"
    } else {
        "SELECT id FROM mcufit_trials WHERE status = 'queued' ORDER BY id LIMIT 1"
    };
    if let Some(id) = scalar(tx, pick, &[])? {
        return Ok(Claim::Trial(Box::new(take(tx, id as u64, worker, lease, t)?)));
    }
    // Proposals: one worker at a time, seeing every trial.
    lock(tx)?;
    let trained = scalar(tx, "SELECT COUNT(*) FROM mcufit_trials WHERE status <> 'rejected'", &[])?.unwrap_or(0) as u64;
    if trained >= meta.max_trials {
        let open =
            scalar(tx, "SELECT COUNT(*) FROM mcufit_trials WHERE status IN ('running', 'queued')", &[])?.unwrap_or(0);
        return Ok(if open > 0 { Claim::Wait } else { Claim::Finished });
    }
    let all = select_trials(tx, "ORDER BY id", &[])?;
    let next = all.last().map_or(1, |t| t.id + 1);
    let made = propose(&all, next)?;
    let mut claimed = None;
    for (i, n) in made.iter().enumerate() {
        let id = next + i as u64;
        insert(tx, id, n, &meta, worker, lease, t)?;
        if n.rejected.is_none() {
            claimed = Some(id);
            break;
        }
    }
    match claimed {
        Some(id) => {
            let mut v = select_trials(tx, "WHERE id = $1", &[Val::I(id as i64)])?;
            Ok(Claim::Trial(Box::new(v.pop().ok_or_else(|| SearchError::Store("inserted trial vanished".into()))?)))
        }
        None => Err(SearchError::Store("the proposer returned no accepted candidate".into())),
    }
}

fn insert(
    tx: &mut dyn Tx,
    id: u64,
    n: &NewTrial,
    meta: &SearchMeta,
    worker: &str,
    lease: Duration,
    t: f64,
) -> Result<()> {
    let accepted = n.rejected.is_none();
    let unpruned = n.unpruned.map(|u| serde_json::to_string(&u)).transpose()?;
    tx.exec(
        &format!(
            "INSERT INTO mcufit_trials ({COLUMNS}) VALUES \
             ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, NULL, NULL, NULL, NULL, NULL, $14)"
        ),
        &[
            Val::I(id as i64),
            Val::T(serde_json::to_string(&n.genotype)?),
            Val::T(serde_json::to_string(&meta.hyper)?),
            Val::T(if accepted { Status::Running } else { Status::Rejected }.as_str().into()),
            if accepted { Val::T(worker.into()) } else { Val::Null },
            if accepted { Val::F(t + lease.as_secs_f64()) } else { Val::Null },
            Val::I(n.seed as i64),
            Val::I(accepted as i64),
            Val::F(t),
            if accepted { Val::F(t) } else { Val::Null },
            if accepted { Val::Null } else { Val::F(t) },
            Val::F(n.price_us),
            unpruned.into(),
            n.rejected.clone().into(),
        ],
    )?;
    Ok(())
}

pub(crate) fn renew(tx: &mut dyn Tx, id: u64, worker: &str, lease: Duration) -> Result<bool> {
    let n = tx.exec(
        "UPDATE mcufit_trials SET lease_expires = $1 WHERE id = $2 AND status = 'running' AND worker = $3",
        &[Val::F(now() + lease.as_secs_f64()), Val::I(id as i64), Val::T(worker.into())],
    )?;
    Ok(n == 1)
}

pub(crate) fn finish(tx: &mut dyn Tx, id: u64, worker: &str, outcome: &Outcome) -> Result<bool> {
    let (status, res, val, test, timings, dir, err) = match outcome {
        Outcome::Done { resources, val_accuracy, test_accuracy, timings, model_dir } => (
            Status::Done,
            Some(serde_json::to_string(resources)?),
            Some(*val_accuracy),
            Some(*test_accuracy),
            timings,
            Some(model_dir.clone()),
            None,
        ),
        Outcome::Failed { error, timings } => (Status::Failed, None, None, None, timings, None, Some(error.clone())),
    };
    let n = tx.exec(
        "UPDATE mcufit_trials SET status = $1, resources = $2, val_accuracy = $3, test_accuracy = $4, timings = $5, \
         model_dir = $6, error = $7, finished_at = $8, lease_expires = NULL \
         WHERE id = $9 AND status = 'running' AND worker = $10",
        &[
            Val::T(status.as_str().into()),
            res.into(),
            val.into(),
            test.into(),
            Val::T(serde_json::to_string(timings)?),
            dir.into(),
            err.into(),
            Val::F(now()),
            Val::I(id as i64),
            Val::T(worker.into()),
        ],
    )?;
    Ok(n == 1)
}

pub(crate) fn requeue_running(tx: &mut dyn Tx) -> Result<u64> {
    if !table_exists(tx)? {
        return Ok(0);
    }
    tx.exec(
        "UPDATE mcufit_trials SET status = 'queued', worker = NULL, lease_expires = NULL WHERE status = 'running'",
        &[],
    )
}

pub(crate) fn trials(tx: &mut dyn Tx) -> Result<Vec<Trial>> {
    if !table_exists(tx)? {
        return Ok(vec![]);
    }
    select_trials(tx, "ORDER BY id", &[])
}

/// `$1` → `?1` for SQLite.
pub(crate) fn sqlite_placeholders(sql: &str) -> String {
    sql.replace('$', "?")
}
