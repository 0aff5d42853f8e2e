//! The shared store: a PostgreSQL database (`postgres://USER[:PASSWORD]@HOST[:PORT]/DB`, one search per
//! database or per `search_path` schema). Any number of workers connect to it; it is the coordinator.
//! Each operation is one READ COMMITTED transaction; claims use `FOR UPDATE SKIP LOCKED`, proposals
//! and creation an advisory transaction lock (see [`crate::store`]).

use std::error::Error as StdError;
use std::sync::Mutex;

use postgres::types::{to_sql_checked, IsNull, ToSql, Type};
use postgres::{Client, NoTls};

use super::sql::{RowGet, SqlDatabase, Tx, Val};
use crate::error::{Result, SearchError};

/// A trial store in a PostgreSQL database.
pub struct PostgresStore {
    shown: String,
    client: Mutex<Client>,
}

impl ToSql for Val {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut postgres::types::private::BytesMut,
    ) -> std::result::Result<IsNull, Box<dyn StdError + Sync + Send>> {
        match self {
            Val::Null => Ok(IsNull::Yes),
            Val::I(v) => v.to_sql(ty, out),
            Val::F(v) => v.to_sql(ty, out),
            Val::T(s) => s.to_sql(ty, out),
        }
    }
    fn accepts(ty: &Type) -> bool {
        <i64 as ToSql>::accepts(ty) || <f64 as ToSql>::accepts(ty) || <String as ToSql>::accepts(ty)
    }
    to_sql_checked!();
}

impl RowGet for postgres::Row {
    fn int(&self, i: usize) -> Result<Option<i64>> {
        Ok(self.try_get(i)?)
    }
    fn real(&self, i: usize) -> Result<Option<f64>> {
        Ok(self.try_get(i)?)
    }
    fn text(&self, i: usize) -> Result<Option<String>> {
        Ok(self.try_get(i)?)
    }
}

struct PgTx<'a>(postgres::Transaction<'a>);

fn params(p: &[Val]) -> Vec<&(dyn ToSql + Sync)> {
    p.iter().map(|v| v as &(dyn ToSql + Sync)).collect()
}

impl Tx for PgTx<'_> {
    fn exec(&mut self, q: &str, p: &[Val]) -> Result<u64> {
        Ok(self.0.execute(q, &params(p))?)
    }
    fn query(&mut self, q: &str, p: &[Val], f: &mut dyn FnMut(&dyn RowGet) -> Result<()>) -> Result<()> {
        for r in self.0.query(q, &params(p))? {
            f(&r)?;
        }
        Ok(())
    }
    fn postgres(&self) -> bool {
        true
    }
}

impl PostgresStore {
    /// Connects to `url` (no TLS: run it on a trusted network or through a tunnel).
    pub fn connect(url: &str) -> Result<PostgresStore> {
        let shown = hide_password(url);
        let client = Client::connect(url, NoTls).map_err(|e| {
            SearchError::Store(format!(
                "cannot connect to {shown}: {e} (is the server running and does the database exist? \
                 e.g. `createdb mcufit` on the server)"
            ))
        })?;
        Ok(PostgresStore { shown, client: Mutex::new(client) })
    }
}

impl SqlDatabase for PostgresStore {
    fn describe(&self) -> String {
        self.shown.clone()
    }

    fn with_tx<T>(&self, f: impl FnOnce(&mut dyn Tx) -> Result<T>) -> Result<T> {
        let mut client = self.client.lock().map_err(|_| SearchError::Store("connection lock poisoned".into()))?;
        let tx = client.transaction()?;
        let mut t = PgTx(tx);
        let v = f(&mut t)?;
        t.0.commit()?;
        Ok(v)
    }
}

/// `postgres://user:secret@host/db` → `postgres://user:***@host/db`.
fn hide_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else { return url.to_string() };
    let Some((cred, host)) = rest.split_once('@') else { return url.to_string() };
    match cred.split_once(':') {
        Some((user, _)) => format!("{scheme}://{user}:***@{host}"),
        None => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn passwords_are_not_shown() {
        assert_eq!(super::hide_password("postgres://u:pw@h:5/db"), "postgres://u:***@h:5/db");
        assert_eq!(super::hide_password("postgres://u@h/db"), "postgres://u@h/db");
    }
}
