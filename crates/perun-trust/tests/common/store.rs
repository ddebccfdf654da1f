//! The store a suite runs on: SQLite, or with `PERUN_TEST_STORE=postgres` a database of
//! the test binary's throwaway PostgreSQL cluster (`scripts/test` runs the trust service's
//! suites on both). The `perun` binary's tests include this file too.

#![allow(dead_code)]

use std::path::Path;

/// The throwaway PostgreSQL cluster of this test binary (one for all its tests, each
/// test on a database of its own), or `None` with a message where PostgreSQL is not
/// installed. Under CI a missing PostgreSQL fails the test instead: there it must run.
pub fn postgres_or_skip() -> Option<&'static perun_trust::store::local_cluster::LocalCluster> {
    use perun_trust::store::local_cluster::LocalCluster;
    static CLUSTER: std::sync::OnceLock<Option<LocalCluster>> = std::sync::OnceLock::new();
    let c = CLUSTER.get_or_init(|| {
        postgres_installed_or_skip()
            .then(|| LocalCluster::start(false).unwrap_or_else(|e| panic!("cannot start a local PostgreSQL: {e}")))
    });
    c.as_ref()
}

/// Whether PostgreSQL's server programs are here; `false` (with a message) only outside
/// CI, where a test needing them skips. Under CI they must be there.
pub fn postgres_installed_or_skip() -> bool {
    let here = perun_trust::store::local_cluster::LocalCluster::binaries().is_some();
    if !here && std::env::var_os("CI").is_none() {
        eprintln!("SKIP: PostgreSQL is not installed (Debian: apt-get install postgresql); CI runs this test");
        return false;
    }
    true
}

/// A fresh, empty PostgreSQL database on this binary's cluster: its URL.
pub fn postgres_database() -> Option<String> {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    let cluster = postgres_or_skip()?;
    Some(cluster.create_database(&format!("t{}", N.fetch_add(1, Ordering::Relaxed))).unwrap())
}

/// The store the in-process service runs on: SQLite in `dir`, or with
/// `PERUN_TEST_STORE=postgres` a fresh PostgreSQL database (the trust-service suite runs
/// on both; `scripts/test` runs it twice).
pub fn test_store(dir: &Path) -> perun_trust::AnyStore {
    use perun_trust::AnyStore;
    match std::env::var("PERUN_TEST_STORE").as_deref() {
        Ok("postgres") => {
            let url = postgres_database()
                .unwrap_or_else(|| panic!("PERUN_TEST_STORE=postgres, but PostgreSQL is not installed"));
            AnyStore::open(&url, 4, &perun_trust::store::postgres::StoreTls::Plaintext { allow_network: false })
                .unwrap()
        }
        Ok("sqlite") | Err(_) => AnyStore::Sqlite(perun_trust::SqliteStore::open(&dir.join("perun.db")).unwrap()),
        Ok(other) => panic!("PERUN_TEST_STORE={other}: say sqlite or postgres"),
    }
}
