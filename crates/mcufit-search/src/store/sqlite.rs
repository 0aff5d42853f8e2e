//! The embedded store: one SQLite file (WAL journal, so `--status` can read while a search writes,
//! and several local processes may share it). Each operation is a `BEGIN IMMEDIATE` transaction.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rusqlite::types::{ToSqlOutput, Value as SqlValue};
use rusqlite::{Connection, ToSql, TransactionBehavior};

use super::sql::{self, RowGet, SqlDatabase, Tx, Val};
use crate::error::{Result, SearchError};

/// How long an operation waits for another process's lock before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(60);

/// A trial store in a SQLite file.
pub struct SqliteStore {
    path: PathBuf,
    conn: Mutex<Connection>,
}

impl ToSql for Val {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::Owned(match self {
            Val::Null => SqlValue::Null,
            Val::I(v) => SqlValue::Integer(*v),
            Val::F(v) => SqlValue::Real(*v),
            Val::T(s) => SqlValue::Text(s.clone()),
        }))
    }
}

impl RowGet for rusqlite::Row<'_> {
    fn int(&self, i: usize) -> Result<Option<i64>> {
        Ok(self.get(i)?)
    }
    fn real(&self, i: usize) -> Result<Option<f64>> {
        Ok(self.get(i)?)
    }
    fn text(&self, i: usize) -> Result<Option<String>> {
        Ok(self.get(i)?)
    }
}

struct SqliteTx<'a>(rusqlite::Transaction<'a>);

impl Tx for SqliteTx<'_> {
    fn exec(&mut self, q: &str, p: &[Val]) -> Result<u64> {
        Ok(self.0.execute(&sql::sqlite_placeholders(q), rusqlite::params_from_iter(p))? as u64)
    }
    fn query(&mut self, q: &str, p: &[Val], f: &mut dyn FnMut(&dyn RowGet) -> Result<()>) -> Result<()> {
        let mut stmt = self.0.prepare(&sql::sqlite_placeholders(q))?;
        let mut rows = stmt.query(rusqlite::params_from_iter(p))?;
        while let Some(r) = rows.next()? {
            f(r)?;
        }
        Ok(())
    }
    fn postgres(&self) -> bool {
        false
    }
}

impl SqliteStore {
    /// Opens (creating) the file at `path`; its directory is created too.
    pub fn open(path: &Path) -> Result<SqliteStore> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|e| SearchError::Store(format!("cannot create {}: {e}", dir.display())))?;
        }
        let conn = Connection::open(path)
            .map_err(|e| SearchError::Store(format!("cannot open sqlite:{}: {e}", path.display())))?;
        conn.busy_timeout(BUSY_TIMEOUT)?;
        // Switching a new file to WAL: two connections doing it at once (a search starting while
        // `--status` polls for it) can deadlock on their shared locks, which SQLite reports as
        // busy at once, without the busy handler; retry for as long as the busy timeout.
        let deadline = Instant::now() + BUSY_TIMEOUT;
        loop {
            match conn.pragma_update(None, "journal_mode", "WAL") {
                Err(rusqlite::Error::SqliteFailure(e, _))
                    if e.code == rusqlite::ErrorCode::DatabaseBusy && Instant::now() < deadline =>
                {
                    std::thread::sleep(Duration::from_millis(10));
                }
                r => break r?,
            }
        }
        conn.pragma_update(None, "synchronous", "FULL")?;
        Ok(SqliteStore { path: path.to_path_buf(), conn: Mutex::new(conn) })
    }
}

impl SqlDatabase for SqliteStore {
    fn describe(&self) -> String {
        format!("sqlite:{}", self.path.display())
    }

    fn with_tx<T>(&self, f: impl FnOnce(&mut dyn Tx) -> Result<T>) -> Result<T> {
        let mut conn = self.conn.lock().map_err(|_| SearchError::Store("connection lock poisoned".into()))?;
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mut t = SqliteTx(tx);
        let v = f(&mut t)?;
        t.0.commit()?;
        Ok(v)
    }
}
