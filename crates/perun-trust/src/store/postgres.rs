//! The store for replicas: PostgreSQL, shared by every `perun serve` of one deployment.
//!
//! Each table of [`Table`] is a `key TEXT COLLATE "C"` (byte order, as SQLite's) to
//! `body BYTEA` map, plus the audit chain keyed by its sequence number. Schema
//! migrations run at start-up under an advisory lock, so replicas starting together
//! migrate once (`perun_schema.version` records how many ran).
//!
//! **Decisions under races.** Every write transaction first takes one transaction-scoped
//! advisory lock (`pg_advisory_xact_lock`) and then runs at `READ COMMITTED`, so each
//! statement sees every write committed before the lock was granted: write transactions
//! of all replicas run one after another, exactly as on SQLite's single writer. That is
//! what keeps the release rule's invariants across replicas with no retry logic: a key
//! released at most once per job, no approval lost, one audit chain (its `seq` is also
//! the primary key, so a fork cannot even be written), a nonce used once. Reads take no
//! lock: `REPEATABLE READ, READ ONLY` snapshots. Commits are synchronous
//! (`synchronous_commit` as the server has it, `on` by default). The one lock is also
//! what bounds the write rate; the README's "Replicas" section gives the numbers.
//!
//! **The connection.** The store holds what the release rule decides on (stakeholders'
//! public keys and roles, approvals, jobs): whoever can change it in transit can approve
//! for others. So a database reached over a network is reached over TLS with its server
//! certificate verified against the CA the operator names ([`StoreTls::Verified`]);
//! plaintext is accepted only to loopback and Unix sockets, or where the operator says
//! so for a network only the service reaches ([`StoreTls::Plaintext`] with
//! `allow_network`).

use std::time::Duration;

use postgres::config::{Host, SslMode};
use postgres::IsolationLevel;
use r2d2_postgres::PostgresConnectionManager;
use tokio_postgres_rustls::MakeRustlsConnect;

use super::{Store, Table, Tx};
use crate::TrustError;

/// Schema migrations, applied in order.
const MIGRATIONS: &[&str] = &[
    // 1: one keyed table per entity, and the audit chain (as SQLite's migration 1).
    r#"CREATE TABLE stakeholders (key TEXT COLLATE "C" PRIMARY KEY, body BYTEA NOT NULL, expires BIGINT);
     CREATE TABLE assets (key TEXT COLLATE "C" PRIMARY KEY, body BYTEA NOT NULL, expires BIGINT);
     CREATE TABLE policies (key TEXT COLLATE "C" PRIMARY KEY, body BYTEA NOT NULL, expires BIGINT);
     CREATE TABLE workers (key TEXT COLLATE "C" PRIMARY KEY, body BYTEA NOT NULL, expires BIGINT);
     CREATE TABLE jobs (key TEXT COLLATE "C" PRIMARY KEY, body BYTEA NOT NULL, expires BIGINT);
     CREATE TABLE approvals (key TEXT COLLATE "C" PRIMARY KEY, body BYTEA NOT NULL, expires BIGINT);
     CREATE TABLE sessions (key TEXT COLLATE "C" PRIMARY KEY, body BYTEA NOT NULL, expires BIGINT);
     CREATE TABLE request_nonces (key TEXT COLLATE "C" PRIMARY KEY, body BYTEA NOT NULL, expires BIGINT);
     CREATE TABLE releases (key TEXT COLLATE "C" PRIMARY KEY, body BYTEA NOT NULL, expires BIGINT);
     CREATE TABLE metrics (key TEXT COLLATE "C" PRIMARY KEY, body BYTEA NOT NULL, expires BIGINT);
     CREATE TABLE audit (seq BIGINT PRIMARY KEY, hash TEXT NOT NULL, body BYTEA NOT NULL);
     CREATE INDEX sessions_expires ON sessions(expires);
     CREATE INDEX request_nonces_expires ON request_nonces(expires);"#,
    // 2: the service's identity (replicas and restarts must hold the same keys).
    r#"CREATE TABLE service (key TEXT COLLATE "C" PRIMARY KEY, body BYTEA NOT NULL, expires BIGINT);"#,
    // 3: registrations awaiting admission.
    r#"CREATE TABLE applications (key TEXT COLLATE "C" PRIMARY KEY, body BYTEA NOT NULL, expires BIGINT);
       CREATE INDEX applications_expires ON applications(expires);"#,
];

/// Advisory lock keys (any 64-bit numbers; "perun" in ASCII, then 1 and 2).
const WRITE_LOCK: i64 = 0x7065_7275_6e00_0001;
const MIGRATE_LOCK: i64 = 0x7065_7275_6e00_0002;

/// Connections one service process keeps by default.
pub const DEFAULT_CONNECTIONS: u32 = 8;

type Pool = r2d2::Pool<Manager>;

/// A connection and the statements prepared on it: each statement the store runs is
/// parsed and planned once per connection, then sent as one round trip (Bind/Execute).
struct Conn {
    client: postgres::Client,
    statements: std::collections::HashMap<String, postgres::Statement>,
    /// When a request last used it: one idle longer than [`IDLE_CHECK`] is checked with
    /// an empty query before it is handed out (its server may have restarted meanwhile).
    last_used: std::time::Instant,
    /// Set when that check failed: the pool then discards it.
    broken: bool,
}

/// Idle time after which a connection is checked before use.
const IDLE_CHECK: Duration = Duration::from_secs(5);

/// `r2d2_postgres`'s manager, keeping each connection's prepared statements.
struct Manager(PostgresConnectionManager<MakeRustlsConnect>);

impl r2d2::ManageConnection for Manager {
    type Connection = Conn;
    type Error = postgres::Error;

    fn connect(&self) -> Result<Conn, postgres::Error> {
        Ok(Conn {
            client: self.0.connect()?,
            statements: Default::default(),
            last_used: std::time::Instant::now(),
            broken: false,
        })
    }

    fn is_valid(&self, c: &mut Conn) -> Result<(), postgres::Error> {
        self.0.is_valid(&mut c.client)
    }

    fn has_broken(&self, c: &mut Conn) -> bool {
        c.broken || self.0.has_broken(&mut c.client)
    }
}

/// How the store's connections are protected.
#[derive(Clone, Debug)]
pub enum StoreTls {
    /// TLS, the server's certificate verified (name and chain) against these CA
    /// certificates (DER).
    Verified(Vec<Vec<u8>>),
    /// No TLS: refused for a server reached over a network unless `allow_network`.
    Plaintext {
        /// Accept plaintext to a host that is not loopback (a network only the service
        /// reaches; the operator's decision, named on the command line).
        allow_network: bool,
    },
}

impl StoreTls {
    /// TLS verified against the CA certificates of PEM file `path`.
    ///
    /// Errors: [`TrustError::Store`] when the file is unreadable or holds no certificate.
    pub fn ca_file(path: &std::path::Path) -> Result<Self, TrustError> {
        use rustls::pki_types::pem::PemObject as _;
        let pem = std::fs::read(path)
            .map_err(|e| TrustError::Store(format!("the store's CA file {}: {e}", path.display())))?;
        let certs: Vec<Vec<u8>> = rustls::pki_types::CertificateDer::pem_slice_iter(&pem)
            .map(|c| c.map(|c| c.to_vec()))
            .collect::<Result<_, _>>()
            .map_err(|e| TrustError::Store(format!("the store's CA file {}: {e}", path.display())))?;
        if certs.is_empty() {
            return Err(TrustError::Store(format!("the store's CA file {} holds no certificate", path.display())));
        }
        Ok(Self::Verified(certs))
    }
}

/// Whether `host` is this machine (loopback address, `localhost`, a Unix socket).
fn is_local(host: &Host) -> bool {
    match host {
        Host::Unix(_) => true,
        Host::Tcp(name) => {
            name == "localhost"
                || name.trim_matches(['[', ']']).parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
        }
    }
}

/// The TLS connector for `tls`, and the SSL mode it requires of `config`.
fn connector(tls: &StoreTls, config: &mut postgres::Config, shown: &str) -> Result<MakeRustlsConnect, TrustError> {
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TrustError::Crypto(e.to_string()))?;
    let mut roots = rustls::RootCertStore::empty();
    match tls {
        StoreTls::Verified(cas) => {
            for ca in cas {
                roots
                    .add(rustls::pki_types::CertificateDer::from(ca.clone()))
                    .map_err(|e| TrustError::Store(format!("the store's CA certificate: {e}")))?;
            }
            config.ssl_mode(SslMode::Require);
        }
        StoreTls::Plaintext { allow_network } => {
            // `hostaddr`, where given, is where the client connects (`host` then only
            // names the server for TLS): both must be this machine.
            let remote = config
                .get_hosts()
                .iter()
                .find(|h| !is_local(h))
                .map(|h| match h {
                    Host::Tcp(n) => n.clone(),
                    Host::Unix(p) => p.display().to_string(),
                })
                .or_else(|| config.get_hostaddrs().iter().find(|a| !a.is_loopback()).map(|a| a.to_string()));
            if let Some(h) = remote {
                if !allow_network {
                    return Err(TrustError::Store(format!(
                        "{shown}: PostgreSQL at {h} is reached over a network, where the store's records could be \
                         read and changed in transit: give its CA with --store-ca FILE (TLS, server verified), or \
                         --store-plaintext if only this service can reach that network"
                    )));
                }
            }
            config.ssl_mode(SslMode::Disable);
        }
    }
    Ok(MakeRustlsConnect::new(builder.with_root_certificates(roots).with_no_client_auth()))
}

/// A PostgreSQL store: a pool of connections to one database.
pub struct PostgresStore {
    /// `None` only while being dropped (see the `Drop` impl).
    pool: Option<Pool>,
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = self.pool.as_ref().map(|p| p.state());
        write!(
            f,
            "PostgresStore({:?} connections, {:?} idle)",
            state.as_ref().map(|s| s.connections),
            state.as_ref().map(|s| s.idle_connections)
        )
    }
}

impl Drop for PostgresStore {
    fn drop(&mut self) {
        // The `postgres` client closes a connection by blocking on its own runtime, which
        // panics on a thread that drives an async runtime (the last `Arc` of a service
        // may go with the server's runtime): close them on a thread of their own.
        if let Some(pool) = self.pool.take() {
            let _ =
                std::thread::Builder::new().name("perun-pg-close".into()).spawn(move || drop(pool)).map(|t| t.join());
        }
    }
}

impl PostgresStore {
    /// Connects to `url` (`postgres://user:password@host:port/db`, or libpq's `key=value`
    /// form) with at most `connections` connections protected as `tls` says, and
    /// migrates the schema.
    ///
    /// Errors: [`TrustError::Store`] when the URL does not parse, names a host over a
    /// network without TLS (see [`StoreTls`]), the server cannot be reached (or its
    /// certificate verified) within 10 s, or the schema is newer than this build knows.
    pub fn open(url: &str, connections: u32, tls: &StoreTls) -> Result<Self, TrustError> {
        let mut config = parse_url(url)?;
        let shown = describe(&config);
        let connect = connector(tls, &mut config, &shown)?;
        let manager = Manager(PostgresConnectionManager::new(config, connect));
        // One connection first, to say why it fails (the server's own words: no such
        // database, authentication failed...) instead of the pool's timeout.
        let first = r2d2::ManageConnection::connect(&manager).map_err(|e| {
            TrustError::Store(format!(
                "cannot connect to PostgreSQL at {shown}: {} (is the server running, and the URL's user, password \
                 and database right?)",
                cause(&e)
            ))
        })?;
        drop(first);
        let pool = r2d2::Pool::builder()
            .max_size(connections.max(1))
            .min_idle(Some(1))
            .connection_timeout(Duration::from_secs(10))
            // A connection that died with its server (restart, failover) is closed, and
            // replaced when it is returned (`has_broken`); no round trip per check-out.
            .test_on_check_out(false)
            .error_handler(Box::new(r2d2::NopErrorHandler))
            .build(manager)
            .map_err(|e| {
                TrustError::Store(format!(
                    "cannot connect to PostgreSQL at {}: {e} (is the server running, and the URL's user, \
                     password and database right?)",
                    shown
                ))
            })?;
        let store = Self { pool: Some(pool) };
        store.migrate()?;
        Ok(store)
    }

    fn migrate(&self) -> Result<(), TrustError> {
        let mut conn = self.conn()?;
        let mut tx = conn.client.transaction()?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATE_LOCK])?;
        // (Not IF NOT EXISTS, whose notice every later start would log.)
        let exists: Option<String> = tx.query_one("SELECT to_regclass('perun_schema')::text", &[])?.try_get(0)?;
        if exists.is_none() {
            tx.batch_execute("CREATE TABLE perun_schema (version INTEGER NOT NULL)")?;
        }
        let version: i32 = match tx.query_opt("SELECT version FROM perun_schema", &[])? {
            Some(row) => row.try_get(0)?,
            None => {
                tx.execute("INSERT INTO perun_schema (version) VALUES (0)", &[])?;
                0
            }
        };
        let known = i32::try_from(MIGRATIONS.len()).unwrap_or(i32::MAX);
        if version > known {
            return Err(TrustError::Store(format!(
                "the store has schema version {version}, newer than this build knows ({known}): run a newer perun"
            )));
        }
        for (i, sql) in MIGRATIONS.iter().enumerate().skip(usize::try_from(version).unwrap_or(0)) {
            tx.batch_execute(sql)?;
            let v = i32::try_from(i + 1).unwrap_or(i32::MAX);
            tx.execute("UPDATE perun_schema SET version = $1", &[&v])?;
        }
        tx.commit()?;
        Ok(())
    }

    fn conn(&self) -> Result<r2d2::PooledConnection<Manager>, TrustError> {
        let pool = self.pool.as_ref().ok_or_else(|| TrustError::Store("the store is closed".into()))?;
        // A busy connection is handed out at once; one that sat idle is checked first (a
        // round trip), so a database restart costs no request an error. At most as many
        // tries as the pool holds connections, then a fresh one.
        for _ in 0..=pool.max_size() {
            let mut c = pool.get().map_err(|e| TrustError::Unavailable(format!("no PostgreSQL connection: {e}")))?;
            if c.last_used.elapsed() < IDLE_CHECK || c.client.simple_query("").is_ok() {
                c.last_used = std::time::Instant::now();
                return Ok(c);
            }
            c.broken = true;
        }
        Err(TrustError::Unavailable("no PostgreSQL connection answers".into()))
    }
}

/// What the database has done so far (PostgreSQL's `pg_stat_database`, updated by each
/// backend within about a second of its work).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Activity {
    /// Transactions committed.
    pub commits: i64,
    /// Rows inserted, updated or deleted.
    pub rows_written: i64,
}

impl PostgresStore {
    /// The database's [`Activity`] so far (for `perun bench trust`: writes per
    /// attestation).
    ///
    /// Errors: [`TrustError::Store`] when the database cannot be read.
    pub fn activity(&self) -> Result<Activity, TrustError> {
        let mut conn = self.conn()?;
        conn.client.batch_execute("SELECT pg_stat_clear_snapshot()")?;
        let row = conn.client.query_one(
            "SELECT xact_commit, tup_inserted + tup_updated + tup_deleted FROM pg_stat_database \
             WHERE datname = current_database()",
            &[],
        )?;
        Ok(Activity { commits: row.try_get(0)?, rows_written: row.try_get(1)? })
    }
}

/// Where `config` connects, for messages and logs: user, hosts, ports and database,
/// never the password (nor the URL it came from, which may hold one anywhere).
pub fn describe(config: &postgres::Config) -> String {
    let hosts: Vec<String> = config
        .get_hosts()
        .iter()
        .map(|h| match h {
            Host::Tcp(name) => name.clone(),
            Host::Unix(path) => path.display().to_string(),
        })
        .collect();
    let ports: Vec<String> = config.get_ports().iter().map(u16::to_string).collect();
    format!(
        "postgres://{}@{}{}/{}",
        config.get_user().unwrap_or(""),
        hosts.join(","),
        if ports.is_empty() { String::new() } else { format!(":{}", ports.join(",")) },
        config.get_dbname().unwrap_or("")
    )
}

/// Parses a store URL (`postgres://` or `postgresql://`, any case, or libpq's
/// `key=value` form), refusing what would connect somewhere other than it seems.
///
/// Errors: [`TrustError::Store`], never showing the URL (it may hold a password).
pub fn parse_url(url: &str) -> Result<postgres::Config, TrustError> {
    // The scheme in lower case, as the parser wants it.
    let normalised = match url.split_once("://") {
        Some((scheme, rest)) => format!("{}://{rest}", scheme.to_ascii_lowercase()),
        None => url.to_owned(),
    };
    let config: postgres::Config = normalised.parse().map_err(|e| {
        TrustError::Store(format!("the store URL does not parse ({e}); it is not shown, as it may hold a password"))
    })?;
    if config.get_hosts().iter().any(|h| matches!(h, Host::Tcp(n) if n.contains('@'))) {
        return Err(TrustError::Store(
            "the store URL's host contains '@': percent-encode an '@' in the user or password as %40 (the URL is \
             not shown, as it may hold a password)"
                .into(),
        ));
    }
    Ok(config)
}

fn to_i64(v: u64) -> Result<i64, TrustError> {
    i64::try_from(v).map_err(|_| TrustError::Store(format!("{v} does not fit a BIGINT")))
}

struct PgTx<'a, 'b> {
    tx: &'a mut postgres::Transaction<'b>,
    statements: &'a mut std::collections::HashMap<String, postgres::Statement>,
}

impl PgTx<'_, '_> {
    /// `sql` prepared on this connection (once).
    fn statement(&mut self, sql: &str) -> Result<postgres::Statement, TrustError> {
        if let Some(s) = self.statements.get(sql) {
            return Ok(s.clone());
        }
        let s = self.tx.prepare(sql)?;
        self.statements.insert(sql.to_owned(), s.clone());
        Ok(s)
    }

    fn exec(&mut self, sql: &str, params: &[&(dyn postgres::types::ToSql + Sync)]) -> Result<u64, TrustError> {
        let st = self.statement(sql)?;
        Ok(self.tx.execute(&st, params)?)
    }

    fn rows(
        &mut self,
        sql: &str,
        params: &[&(dyn postgres::types::ToSql + Sync)],
    ) -> Result<Vec<postgres::Row>, TrustError> {
        let st = self.statement(sql)?;
        Ok(self.tx.query(&st, params)?)
    }

    /// The first row (the queries it serves select by primary key).
    fn opt(
        &mut self,
        sql: &str,
        params: &[&(dyn postgres::types::ToSql + Sync)],
    ) -> Result<Option<postgres::Row>, TrustError> {
        Ok(self.rows(sql, params)?.into_iter().next())
    }
}

impl Tx for PgTx<'_, '_> {
    fn get_raw(&mut self, table: Table, key: &str) -> Result<Option<Vec<u8>>, TrustError> {
        let sql = format!("SELECT body FROM {} WHERE key = $1", table.name());
        Ok(match self.opt(&sql, &[&key])? {
            Some(row) => Some(row.try_get(0)?),
            None => None,
        })
    }

    fn put_raw(&mut self, table: Table, key: &str, body: &[u8], expires: Option<u64>) -> Result<(), TrustError> {
        let sql = format!(
            "INSERT INTO {} (key, body, expires) VALUES ($1, $2, $3) \
             ON CONFLICT (key) DO UPDATE SET body = EXCLUDED.body, expires = EXCLUDED.expires",
            table.name()
        );
        let expires = expires.map(to_i64).transpose()?;
        self.exec(&sql, &[&key, &body, &expires])?;
        Ok(())
    }

    fn insert_raw(&mut self, table: Table, key: &str, body: &[u8], expires: Option<u64>) -> Result<bool, TrustError> {
        let sql = format!(
            "INSERT INTO {} (key, body, expires) VALUES ($1, $2, $3) ON CONFLICT (key) DO NOTHING",
            table.name()
        );
        let expires = expires.map(to_i64).transpose()?;
        Ok(self.exec(&sql, &[&key, &body, &expires])? == 1)
    }

    fn list_raw(&mut self, table: Table, prefix: &str) -> Result<Vec<Vec<u8>>, TrustError> {
        let sql = format!("SELECT body FROM {} WHERE key >= $1 AND key < $2 ORDER BY key", table.name());
        let upper = format!("{prefix}\u{10FFFF}");
        self.rows(&sql, &[&prefix, &upper])?.iter().map(|r| r.try_get(0).map_err(TrustError::from)).collect()
    }

    fn delete(&mut self, table: Table, key: &str) -> Result<bool, TrustError> {
        let sql = format!("DELETE FROM {} WHERE key = $1", table.name());
        Ok(self.exec(&sql, &[&key])? == 1)
    }

    fn prune(&mut self, table: Table, now: u64) -> Result<usize, TrustError> {
        let sql = format!("DELETE FROM {} WHERE expires IS NOT NULL AND expires < $1", table.name());
        let n = self.exec(&sql, &[&to_i64(now)?])?;
        Ok(usize::try_from(n).unwrap_or(usize::MAX))
    }

    fn audit_tail(&mut self) -> Result<Option<(u64, String)>, TrustError> {
        match self.opt("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1", &[])? {
            Some(row) => {
                let seq: i64 = row.try_get(0)?;
                let seq = u64::try_from(seq).map_err(|_| TrustError::Store(format!("audit seq {seq} is negative")))?;
                Ok(Some((seq, row.try_get(1)?)))
            }
            None => Ok(None),
        }
    }

    fn audit_append(&mut self, seq: u64, hash: &str, body: &[u8]) -> Result<(), TrustError> {
        self.exec("INSERT INTO audit (seq, hash, body) VALUES ($1, $2, $3)", &[&to_i64(seq)?, &hash, &body])?;
        Ok(())
    }

    fn audit_since(&mut self, from_seq: u64) -> Result<Vec<Vec<u8>>, TrustError> {
        self.rows("SELECT body FROM audit WHERE seq >= $1 ORDER BY seq", &[&to_i64(from_seq)?])?
            .iter()
            .map(|r| r.try_get(0).map_err(TrustError::from))
            .collect()
    }
}

impl Store for PostgresStore {
    fn write<T>(&self, f: impl FnOnce(&mut dyn Tx) -> Result<T, TrustError>) -> Result<T, TrustError> {
        let mut conn = self.conn()?;
        let Conn { client, statements, .. } = &mut *conn;
        let mut tx = client.build_transaction().isolation_level(IsolationLevel::ReadCommitted).start()?;
        let mut ptx = PgTx { tx: &mut tx, statements };
        // One writer at a time across every replica; READ COMMITTED then shows each
        // statement all that committed before the lock was granted.
        ptx.exec("SELECT pg_advisory_xact_lock($1)", &[&WRITE_LOCK])?;
        let out = f(&mut ptx)?;
        tx.commit()?;
        Ok(out)
    }

    fn read<T>(&self, f: impl FnOnce(&mut dyn Tx) -> Result<T, TrustError>) -> Result<T, TrustError> {
        let mut conn = self.conn()?;
        let Conn { client, statements, .. } = &mut *conn;
        let mut tx =
            client.build_transaction().isolation_level(IsolationLevel::RepeatableRead).read_only(true).start()?;
        let out = f(&mut PgTx { tx: &mut tx, statements });
        // A read changes nothing; dropping the transaction rolls it back.
        drop(tx);
        out
    }
}

/// What went wrong, in the server's words where it gave any, else the error's chain.
fn cause(e: &postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        return format!("{} ({})", db.message(), db.code().code());
    }
    let mut msg = e.to_string();
    let mut src = std::error::Error::source(e);
    while let Some(s) = src {
        msg.push_str(": ");
        msg.push_str(&s.to_string());
        src = s.source();
    }
    msg
}

impl From<postgres::Error> for TrustError {
    fn from(e: postgres::Error) -> Self {
        // A lost connection or a server shutting down (SQLSTATE classes 08 and 57) is
        // an outage, which a retry may get past; anything else is the store's error.
        let outage =
            e.is_closed() || e.code().is_some_and(|c| c.code().starts_with("08") || c.code().starts_with("57"));
        if outage {
            Self::Unavailable(format!("PostgreSQL: {}", cause(&e)))
        } else {
            Self::Store(format!("PostgreSQL: {}", cause(&e)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plaintext_over_a_network_is_refused_before_connecting() {
        let plain = StoreTls::Plaintext { allow_network: false };
        for url in
            ["postgres://perun:pw@db.example:5432/perun", "postgres://perun@10.0.0.5/perun", "host=db user=perun"]
        {
            match PostgresStore::open(url, 1, &plain) {
                Err(TrustError::Store(m)) => {
                    assert!(m.contains("--store-ca"), "{m}");
                    assert!(!m.contains("pw@"), "the password is shown: {m}");
                }
                r => panic!("{url}: {r:?}"),
            }
        }
        for local in ["localhost", "127.0.0.1", "[::1]"] {
            assert!(is_local(&Host::Tcp(local.into())), "{local}");
        }
    }

    #[test]
    fn passwords_are_not_shown() {
        let plain = StoreTls::Plaintext { allow_network: false };
        for url in [
            "postgres://perun:s3cret@db:5432/perun",
            "postgres://perun@10.0.0.5/perun?password=s3cret",
            "postgres://perun:p@s3cret@10.0.0.5/perun",
            "host=db user=perun password=s3cret",
            "postgres://perun:s3cret@127.0.0.1:1/perun?sslmode=bogus",
        ] {
            let e = PostgresStore::open(url, 1, &plain).map(|_| ()).unwrap_err().to_string();
            assert!(!e.contains("s3cret"), "{url}: {e}");
        }
        let c = parse_url("Postgres://perun:s3cret@db:5432/perun").unwrap();
        assert_eq!(describe(&c), "postgres://perun@db:5432/perun");
    }

    #[test]
    fn a_hostaddr_over_a_network_needs_tls_too() {
        let plain = StoreTls::Plaintext { allow_network: false };
        let r = PostgresStore::open("postgres://perun@localhost:5432/perun?hostaddr=192.0.2.7", 1, &plain);
        assert!(matches!(r, Err(TrustError::Store(m)) if m.contains("192.0.2.7") && m.contains("--store-ca")));
    }
}
