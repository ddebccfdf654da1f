//! The embedded store: SQLite in one file, WAL journal, `synchronous = FULL` so that a
//! committed grant or revocation survives a crash, and schema migrations at start-up
//! (`PRAGMA user_version`).

use std::path::Path;
use std::sync::Mutex;

use rusqlite::{params, Connection, OptionalExtension as _, TransactionBehavior};

use super::{Store, Table, Tx};
use crate::TrustError;

/// Schema migrations, applied in order; `user_version` records how many ran.
const MIGRATIONS: &[&str] = &[
    // 1: one keyed JSON table per entity, and the audit chain.
    "CREATE TABLE stakeholders (key TEXT PRIMARY KEY, body BLOB NOT NULL, expires INTEGER);
     CREATE TABLE assets (key TEXT PRIMARY KEY, body BLOB NOT NULL, expires INTEGER);
     CREATE TABLE policies (key TEXT PRIMARY KEY, body BLOB NOT NULL, expires INTEGER);
     CREATE TABLE workers (key TEXT PRIMARY KEY, body BLOB NOT NULL, expires INTEGER);
     CREATE TABLE jobs (key TEXT PRIMARY KEY, body BLOB NOT NULL, expires INTEGER);
     CREATE TABLE approvals (key TEXT PRIMARY KEY, body BLOB NOT NULL, expires INTEGER);
     CREATE TABLE sessions (key TEXT PRIMARY KEY, body BLOB NOT NULL, expires INTEGER);
     CREATE TABLE request_nonces (key TEXT PRIMARY KEY, body BLOB NOT NULL, expires INTEGER);
     CREATE TABLE releases (key TEXT PRIMARY KEY, body BLOB NOT NULL, expires INTEGER);
     CREATE TABLE metrics (key TEXT PRIMARY KEY, body BLOB NOT NULL, expires INTEGER);
     CREATE TABLE audit (seq INTEGER PRIMARY KEY, hash TEXT NOT NULL, body BLOB NOT NULL);
     CREATE INDEX sessions_expires ON sessions(expires);
     CREATE INDEX request_nonces_expires ON request_nonces(expires);",
    // 2: the service's identity (replicas and restarts must hold the same keys).
    "CREATE TABLE service (key TEXT PRIMARY KEY, body BLOB NOT NULL, expires INTEGER);",
    // 3: registrations awaiting admission.
    "CREATE TABLE applications (key TEXT PRIMARY KEY, body BLOB NOT NULL, expires INTEGER);
     CREATE INDEX applications_expires ON applications(expires);",
];

/// Read connections of a file store: WAL lets them read while the writer commits.
const READERS: usize = 4;

/// A SQLite store: one write connection behind a mutex (SQLite has one writer anyway),
/// and a few read connections that WAL lets read committed state while a write
/// transaction waits for its disk flush.
#[derive(Debug)]
pub struct SqliteStore {
    conn: Mutex<Connection>,
    readers: Vec<Mutex<Connection>>,
    next_reader: std::sync::atomic::AtomicUsize,
}

impl SqliteStore {
    /// Opens (creating if needed) the store at `path` and migrates its schema.
    pub fn open(path: &Path) -> Result<Self, TrustError> {
        // The store holds wrapped keys and the whole audit log: only the service's user
        // reads it (SQLite gives its -wal and -shm files the database file's mode).
        {
            use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
            let io = |e: std::io::Error| TrustError::Store(format!("cannot create store {}: {e}", path.display()));
            std::fs::OpenOptions::new().create(true).append(true).mode(0o600).open(path).map_err(io)?;
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(io)?;
        }
        let open = || {
            Connection::open(path).map_err(|e| TrustError::Store(format!("cannot open store {}: {e}", path.display())))
        };
        let mut store = Self::init(open()?)?;
        for _ in 0..READERS {
            let r = open()?;
            r.busy_timeout(std::time::Duration::from_secs(10))?;
            r.pragma_update(None, "query_only", "ON")?;
            store.readers.push(Mutex::new(r));
        }
        Ok(store)
    }

    /// An in-memory store (tests and benchmarks that need no durability); it reads
    /// through its one connection.
    pub fn in_memory() -> Result<Self, TrustError> {
        Self::init(Connection::open_in_memory()?)
    }

    fn init(mut conn: Connection) -> Result<Self, TrustError> {
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
        let known = MIGRATIONS.len() as i64;
        if version > known {
            return Err(TrustError::Store(format!(
                "the store has schema version {version}, newer than this build knows ({known}): run a newer perun"
            )));
        }
        for (i, sql) in MIGRATIONS.iter().enumerate().skip(version as usize) {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Exclusive)?;
            tx.execute_batch(sql)?;
            tx.pragma_update(None, "user_version", (i + 1) as i64)?;
            tx.commit()?;
        }
        Ok(Self { conn: Mutex::new(conn), readers: Vec::new(), next_reader: Default::default() })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Connection> {
        recover(&self.conn)
    }
}

/// Locks a connection, also after a request panicked while holding it: the panic
/// unwound through the request's `rusqlite::Transaction`, whose drop rolled it back, so
/// the connection is as it was before that request and the service carries on (a
/// poisoned lock must not answer every later request with an error).
fn recover(m: &Mutex<Connection>) -> std::sync::MutexGuard<'_, Connection> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

struct SqliteTx<'a> {
    tx: &'a rusqlite::Transaction<'a>,
}

impl Tx for SqliteTx<'_> {
    fn get_raw(&mut self, table: Table, key: &str) -> Result<Option<Vec<u8>>, TrustError> {
        let sql = format!("SELECT body FROM {} WHERE key = ?1", table.name());
        Ok(self.tx.prepare_cached(&sql)?.query_row(params![key], |r| r.get(0)).optional()?)
    }

    fn put_raw(&mut self, table: Table, key: &str, body: &[u8], expires: Option<u64>) -> Result<(), TrustError> {
        let sql = format!("INSERT OR REPLACE INTO {} (key, body, expires) VALUES (?1, ?2, ?3)", table.name());
        self.tx.prepare_cached(&sql)?.execute(params![key, body, expires.map(|e| e as i64)])?;
        Ok(())
    }

    fn insert_raw(&mut self, table: Table, key: &str, body: &[u8], expires: Option<u64>) -> Result<bool, TrustError> {
        let sql = format!("INSERT OR IGNORE INTO {} (key, body, expires) VALUES (?1, ?2, ?3)", table.name());
        Ok(self.tx.prepare_cached(&sql)?.execute(params![key, body, expires.map(|e| e as i64)])? == 1)
    }

    fn list_raw(&mut self, table: Table, prefix: &str) -> Result<Vec<Vec<u8>>, TrustError> {
        let sql = format!("SELECT body FROM {} WHERE key >= ?1 AND key < ?2 ORDER BY key", table.name());
        let upper = format!("{prefix}\u{10FFFF}");
        let mut stmt = self.tx.prepare_cached(&sql)?;
        let rows = stmt.query_map(params![prefix, upper], |r| r.get(0))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn delete(&mut self, table: Table, key: &str) -> Result<bool, TrustError> {
        let sql = format!("DELETE FROM {} WHERE key = ?1", table.name());
        Ok(self.tx.prepare_cached(&sql)?.execute(params![key])? == 1)
    }

    fn prune(&mut self, table: Table, now: u64) -> Result<usize, TrustError> {
        let sql = format!("DELETE FROM {} WHERE expires IS NOT NULL AND expires < ?1", table.name());
        Ok(self.tx.prepare_cached(&sql)?.execute(params![now as i64])?)
    }

    fn audit_tail(&mut self) -> Result<Option<(u64, String)>, TrustError> {
        Ok(self
            .tx
            .prepare_cached("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1")?
            .query_row([], |r| Ok((r.get::<_, i64>(0)? as u64, r.get(1)?)))
            .optional()?)
    }

    fn audit_append(&mut self, seq: u64, hash: &str, body: &[u8]) -> Result<(), TrustError> {
        self.tx
            .prepare_cached("INSERT INTO audit (seq, hash, body) VALUES (?1, ?2, ?3)")?
            .execute(params![seq as i64, hash, body])?;
        Ok(())
    }

    fn audit_since(&mut self, from_seq: u64) -> Result<Vec<Vec<u8>>, TrustError> {
        let mut stmt = self.tx.prepare_cached("SELECT body FROM audit WHERE seq >= ?1 ORDER BY seq")?;
        let rows = stmt.query_map(params![from_seq as i64], |r| r.get(0))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}

impl Store for SqliteStore {
    fn write<T>(&self, f: impl FnOnce(&mut dyn Tx) -> Result<T, TrustError>) -> Result<T, TrustError> {
        let mut conn = self.lock();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let out = f(&mut SqliteTx { tx: &tx })?;
        tx.commit()?;
        Ok(out)
    }

    fn read<T>(&self, f: impl FnOnce(&mut dyn Tx) -> Result<T, TrustError>) -> Result<T, TrustError> {
        let mut conn = match self.readers.len() {
            0 => self.lock(),
            n => {
                let i = self.next_reader.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % n;
                recover(&self.readers[i])
            }
        };
        let tx = conn.transaction_with_behavior(TransactionBehavior::Deferred)?;
        let out = f(&mut SqliteTx { tx: &tx });
        // A read changes nothing; dropping the transaction rolls it back.
        drop(tx);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commits_survive_reopen_and_failed_transactions_leave_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("perun.db");
        {
            let s = SqliteStore::open(&path).unwrap();
            s.write(|tx| tx.put_raw(Table::Jobs, "a", b"1", None)).unwrap();
            let r: Result<(), _> = s.write(|tx| {
                tx.put_raw(Table::Jobs, "b", b"2", None)?;
                Err(TrustError::Conflict("no".into()))
            });
            assert!(r.is_err());
        }
        let s = SqliteStore::open(&path).unwrap();
        assert_eq!(s.read(|tx| tx.get_raw(Table::Jobs, "a")).unwrap(), Some(b"1".to_vec()));
        assert_eq!(s.read(|tx| tx.get_raw(Table::Jobs, "b")).unwrap(), None);
        assert!(s.write(|tx| tx.insert_raw(Table::RequestNonces, "n", b"", Some(10))).unwrap());
        assert!(!s.write(|tx| tx.insert_raw(Table::RequestNonces, "n", b"", Some(10))).unwrap());
        assert_eq!(s.write(|tx| tx.prune(Table::RequestNonces, 11)).unwrap(), 1);
        s.write(|tx| {
            tx.put_raw(Table::Approvals, "j1/a", b"x", None)?;
            tx.put_raw(Table::Approvals, "j1/b", b"y", None)?;
            tx.put_raw(Table::Approvals, "j2/a", b"z", None)
        })
        .unwrap();
        assert_eq!(s.read(|tx| tx.list_raw(Table::Approvals, "j1/")).unwrap(), vec![b"x".to_vec(), b"y".to_vec()]);
    }

    #[test]
    fn a_request_that_panics_inside_a_transaction_leaves_nothing_and_no_poisoned_lock() {
        let dir = tempfile::tempdir().unwrap();
        let s = SqliteStore::open(&dir.path().join("perun.db")).unwrap();
        let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let _: Result<(), _> = s.write(|tx| {
                tx.put_raw(Table::Jobs, "half", b"1", None)?;
                panic!("a bug in a request handler");
            });
        }));
        assert!(panicked.is_err());
        assert!(s.conn.is_poisoned(), "the test must poison the lock to mean anything");
        // The store carries on: writes and reads work, and the panicked write left nothing.
        s.write(|tx| tx.put_raw(Table::Jobs, "next", b"2", None)).unwrap();
        assert_eq!(s.read(|tx| tx.get_raw(Table::Jobs, "half")).unwrap(), None);
        assert_eq!(s.read(|tx| tx.get_raw(Table::Jobs, "next")).unwrap(), Some(b"2".to_vec()));
    }

    #[test]
    fn a_store_from_a_newer_build_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("perun.db");
        drop(SqliteStore::open(&path).unwrap());
        let c = Connection::open(&path).unwrap();
        c.pragma_update(None, "user_version", 99).unwrap();
        drop(c);
        assert!(SqliteStore::open(&path).unwrap_err().to_string().contains("newer"));
    }
}
