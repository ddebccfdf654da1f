//! The service's durable state, behind the [`Store`] trait.
//!
//! A store is a set of keyed tables of JSON records plus the audit chain, changed only
//! inside transactions: every grant or revocation and its audit record commit together,
//! synchronously, or not at all. [`sqlite::SqliteStore`] is the embedded default;
//! [`postgres::PostgresStore`] serves several replicas from one database;
//! [`AnyStore`] is whichever `perun serve --store` names.

#[cfg(any(test, feature = "test-support"))]
pub mod local_cluster;
pub mod postgres;
pub mod sqlite;

use std::path::Path;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::TrustError;

/// The tables of the store.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Table {
    /// Registered stakeholders, by name.
    Stakeholders,
    /// Registered assets (with their wrapped keys), by name.
    Assets,
    /// Platform policies, by digest.
    Policies,
    /// Enrolled workers, by name.
    Workers,
    /// Jobs, by digest.
    Jobs,
    /// Approvals, by `job/approver`.
    Approvals,
    /// Attestation nonces issued to workers, by nonce.
    Sessions,
    /// Nonces of signed stakeholder requests already seen, by nonce.
    RequestNonces,
    /// Key releases, by `job/asset`.
    Releases,
    /// Training metrics reported by workers, by `job/epoch`.
    Metrics,
    /// Facts about the service itself (its identity), by name.
    Service,
    /// Registrations awaiting admission, by name (they expire).
    Applications,
}

impl Table {
    /// Every table.
    pub const ALL: [Table; 12] = [
        Table::Stakeholders,
        Table::Assets,
        Table::Policies,
        Table::Workers,
        Table::Jobs,
        Table::Approvals,
        Table::Sessions,
        Table::RequestNonces,
        Table::Releases,
        Table::Metrics,
        Table::Service,
        Table::Applications,
    ];

    /// The table's name in SQL.
    pub fn name(self) -> &'static str {
        match self {
            Table::Stakeholders => "stakeholders",
            Table::Assets => "assets",
            Table::Policies => "policies",
            Table::Workers => "workers",
            Table::Jobs => "jobs",
            Table::Approvals => "approvals",
            Table::Sessions => "sessions",
            Table::RequestNonces => "request_nonces",
            Table::Releases => "releases",
            Table::Metrics => "metrics",
            Table::Service => "service",
            Table::Applications => "applications",
        }
    }
}

/// Operations inside one transaction.
pub trait Tx {
    /// The record at `key`, if any.
    fn get_raw(&mut self, table: Table, key: &str) -> Result<Option<Vec<u8>>, TrustError>;
    /// Writes the record at `key`, replacing any. `expires` (Unix seconds) lets
    /// [`Tx::prune`] remove it later.
    fn put_raw(&mut self, table: Table, key: &str, body: &[u8], expires: Option<u64>) -> Result<(), TrustError>;
    /// Writes the record only if `key` is new; returns whether it was.
    fn insert_raw(&mut self, table: Table, key: &str, body: &[u8], expires: Option<u64>) -> Result<bool, TrustError>;
    /// Every record whose key starts with `prefix`, in key order.
    fn list_raw(&mut self, table: Table, prefix: &str) -> Result<Vec<Vec<u8>>, TrustError>;
    /// Removes the record at `key`, if any; returns whether there was one.
    fn delete(&mut self, table: Table, key: &str) -> Result<bool, TrustError>;
    /// Removes the records that expired before `now`; returns how many.
    fn prune(&mut self, table: Table, now: u64) -> Result<usize, TrustError>;
    /// The last audit record's sequence number and chain hash.
    fn audit_tail(&mut self) -> Result<Option<(u64, String)>, TrustError>;
    /// Appends an audit record with its chain hash (its `seq` must follow the tail).
    fn audit_append(&mut self, seq: u64, hash: &str, body: &[u8]) -> Result<(), TrustError>;
    /// Audit records from `from_seq` on, in order.
    fn audit_since(&mut self, from_seq: u64) -> Result<Vec<Vec<u8>>, TrustError>;
}

/// A durable store.
pub trait Store: Send + Sync + 'static {
    /// Runs `f` in a write transaction, committed durably when it returns `Ok`.
    fn write<T>(&self, f: impl FnOnce(&mut dyn Tx) -> Result<T, TrustError>) -> Result<T, TrustError>;
    /// Runs `f` on a consistent read-only view.
    fn read<T>(&self, f: impl FnOnce(&mut dyn Tx) -> Result<T, TrustError>) -> Result<T, TrustError>;
}

/// A record type kept in one table as JSON.
pub trait Record: Serialize + DeserializeOwned {
    /// The table it lives in.
    const TABLE: Table;
    /// Its key.
    fn key(&self) -> String;
    /// When [`Tx::prune`] may remove it (Unix seconds); `None`: never.
    fn expires(&self) -> Option<u64> {
        None
    }
}

/// Typed access over any [`Tx`].
pub trait TxExt: Tx {
    /// The record of type `R` at `key`.
    fn get<R: Record>(&mut self, key: &str) -> Result<Option<R>, TrustError> {
        match self.get_raw(R::TABLE, key)? {
            Some(b) => serde_json::from_slice(&b)
                .map(Some)
                .map_err(|e| TrustError::Store(format!("{} record {key} is unreadable: {e}", R::TABLE.name()))),
            None => Ok(None),
        }
    }
    /// Writes `r`, replacing any record at its key.
    fn put<R: Record>(&mut self, r: &R) -> Result<(), TrustError> {
        let body = serde_json::to_vec(r).map_err(|e| TrustError::Store(e.to_string()))?;
        self.put_raw(R::TABLE, &r.key(), &body, r.expires())
    }
    /// Writes `r` only if its key is new; returns whether it was.
    fn insert<R: Record>(&mut self, r: &R, expires: Option<u64>) -> Result<bool, TrustError> {
        let body = serde_json::to_vec(r).map_err(|e| TrustError::Store(e.to_string()))?;
        self.insert_raw(R::TABLE, &r.key(), &body, expires)
    }
    /// Every record of type `R` whose key starts with `prefix`.
    fn list<R: Record>(&mut self, prefix: &str) -> Result<Vec<R>, TrustError> {
        self.list_raw(R::TABLE, prefix)?
            .iter()
            .map(|b| serde_json::from_slice(b).map_err(|e| TrustError::Store(e.to_string())))
            .collect()
    }
    /// [`Self::list`] for views and scans over many parties' records (job lists, offers,
    /// the deadline sweep): a record that does not read is logged and left out, so one
    /// bad record never breaks every party's list. Decisions read their records with
    /// [`Self::get`], which refuses an unreadable one.
    fn list_readable<R: Record>(&mut self, prefix: &str) -> Result<Vec<R>, TrustError> {
        let raw = self.list_raw(R::TABLE, prefix)?;
        let mut out = Vec::with_capacity(raw.len());
        for (i, b) in raw.iter().enumerate() {
            match serde_json::from_slice(b) {
                Ok(r) => out.push(r),
                Err(e) => {
                    tracing::error!(table = R::TABLE.name(), index = i, error = %e, "unreadable record left out of a list")
                }
            }
        }
        Ok(out)
    }
}

impl<T: Tx + ?Sized> TxExt for T {}

/// The store a deployment names: a PostgreSQL URL, or a SQLite file.
#[derive(Debug)]
pub enum AnyStore {
    /// One process's embedded SQLite file.
    Sqlite(sqlite::SqliteStore),
    /// A PostgreSQL database that replicas share.
    Postgres(postgres::PostgresStore),
}

impl AnyStore {
    /// Opens `spec`: a `postgres://` or `postgresql://` URL (with at most `connections`
    /// connections, protected as `tls` says), else the path of a SQLite file (created if
    /// missing).
    ///
    /// Errors: as [`sqlite::SqliteStore::open`] and [`postgres::PostgresStore::open`].
    pub fn open(spec: &str, connections: u32, tls: &postgres::StoreTls) -> Result<Self, TrustError> {
        if Self::is_postgres(spec) {
            Ok(Self::Postgres(postgres::PostgresStore::open(spec, connections, tls)?))
        } else if spec.contains("://") {
            // Never a file named like a URL (which may hold a password).
            Err(TrustError::Store(
                "the store names an unknown scheme: give a postgres:// URL or a SQLite file's path (the URL is not \
                 shown, as it may hold a password)"
                    .into(),
            ))
        } else {
            Ok(Self::Sqlite(sqlite::SqliteStore::open(Path::new(spec))?))
        }
    }

    /// Whether `spec` names a PostgreSQL database: a `postgres://` or `postgresql://` URL
    /// (any case), or libpq's `key=value` form (`host=... dbname=...`): a first word that
    /// is a keyword (letters and `_`) with `=`, whichever of libpq's many keywords it is
    /// (`application_name=...`), so that no connection string, password and all, is ever
    /// taken for a file name.
    pub fn is_postgres(spec: &str) -> bool {
        let lower = spec.trim_start().to_ascii_lowercase();
        lower.starts_with("postgres://")
            || lower.starts_with("postgresql://")
            || spec.split_whitespace().next().is_some_and(|kv| {
                kv.split_once('=')
                    .is_some_and(|(k, _)| !k.is_empty() && k.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'))
            })
    }

    /// The engine, for logs and benchmark tables: `sqlite` or `postgres`.
    pub fn engine(&self) -> &'static str {
        match self {
            Self::Sqlite(_) => "sqlite",
            Self::Postgres(_) => "postgres",
        }
    }
}

impl Store for AnyStore {
    fn write<T>(&self, f: impl FnOnce(&mut dyn Tx) -> Result<T, TrustError>) -> Result<T, TrustError> {
        match self {
            Self::Sqlite(s) => s.write(f),
            Self::Postgres(s) => s.write(f),
        }
    }

    fn read<T>(&self, f: impl FnOnce(&mut dyn Tx) -> Result<T, TrustError>) -> Result<T, TrustError> {
        match self {
            Self::Sqlite(s) => s.read(f),
            Self::Postgres(s) => s.read(f),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_specs_name_postgres_or_a_file_and_nothing_else() {
        for pg in [
            "postgres://perun@db/perun",
            "POSTGRESQL://perun@db/perun",
            "host=db user=perun dbname=perun",
            "application_name=a password=s3cret host=db",
            "connect_timeout=5 password=s3cret",
        ] {
            assert!(AnyStore::is_postgres(pg), "{pg}");
        }
        for file in ["perun.db", "/var/lib/perun/perun.db", "./data=1/perun.db"] {
            assert!(!AnyStore::is_postgres(file), "{file}");
        }
        // A mistyped scheme is refused, never opened as a file named like the URL.
        let plain = postgres::StoreTls::Plaintext { allow_network: false };
        let dir = tempfile::tempdir().unwrap();
        let spec = format!("postgress://perun:s3cret@{}/db", dir.path().display());
        match AnyStore::open(&spec, 1, &plain) {
            Err(TrustError::Store(m)) => assert!(m.contains("unknown scheme") && !m.contains("s3cret"), "{m}"),
            r => panic!("{r:?}"),
        }
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }
}
