//! A throwaway PostgreSQL cluster on loopback, for tests and `perun bench trust`: made
//! with the server's own `initdb` and run as an unprivileged user (as PostgreSQL
//! requires; `postgres` when the caller is root), in a private temporary folder that is
//! removed when the cluster stops.
//!
//! The server runs under a small shell that holds a pipe from this process: when the
//! [`LocalCluster`] is dropped, or this process ends in any way (a test binary's statics
//! are never dropped; a SIGKILL runs no code), the pipe closes and the shell stops the
//! server (`SIGQUIT`, immediate shutdown) and removes the folder.
//!
//! Authentication is `trust` on 127.0.0.1 only: a cluster for one machine's tests, never
//! a deployment (see `deploy/` for that). [`LocalCluster::start_tls`] also serves TLS with
//! a certificate for `127.0.0.1` from a CA made for it ([`LocalCluster::ca_pem`]), to
//! test the store's verified connections.

use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::TrustError;

/// The superuser `initdb` creates, and the user of every URL this cluster hands out.
pub const USER: &str = "perun";

/// Stops the server when this process closes the pipe on the shell's stdin.
const WATCHDOG: &str = r#"bin=$1 data=$2 port=$3 durable=$4 ssl=$5
"$bin/postgres" -D "$data/db" -p "$port" -k "$data" -c listen_addresses=127.0.0.1 \
  -c max_connections=400 -c fsync="$durable" -c synchronous_commit="$durable" \
  -c full_page_writes="$durable" -c ssl="$ssl" \
  -c ssl_cert_file="$data/server.crt" -c ssl_key_file="$data/server.key" \
  </dev/null >"$data/server.log" 2>&1 &
pid=$!
read -r _ || true
kill -QUIT "$pid" 2>/dev/null
wait "$pid" 2>/dev/null
rm -rf "$data"
"#;

/// A running cluster; dropping it stops the server and removes its files.
#[derive(Debug)]
pub struct LocalCluster {
    port: u16,
    dir: PathBuf,
    watchdog: Child,
    ca_pem: Option<String>,
}

impl LocalCluster {
    /// The folder of PostgreSQL's server programs: `PERUN_PG_BIN`, else the newest
    /// `/usr/lib/postgresql/N/bin` (Debian's `postgresql` package), else the folder of an
    /// `initdb` on `PATH`.
    pub fn binaries() -> Option<PathBuf> {
        if let Some(dir) = std::env::var_os("PERUN_PG_BIN") {
            return Some(PathBuf::from(dir));
        }
        let mut debian: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| {
                let v = e.file_name().to_str()?.parse::<u32>().ok()?;
                let bin = e.path().join("bin");
                bin.join("initdb").is_file().then_some((v, bin))
            })
            .collect();
        debian.sort();
        if let Some((_, bin)) = debian.pop() {
            return Some(bin);
        }
        std::env::var_os("PATH")
            .into_iter()
            .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
            .find(|d| d.join("initdb").is_file() && d.join("postgres").is_file())
    }

    /// Makes and starts a cluster. `durable` keeps PostgreSQL's defaults (`fsync`,
    /// synchronous commits: what a benchmark must measure); without it they are off
    /// (tests, which lose nothing they need if the machine crashes).
    ///
    /// Errors: [`TrustError::Store`] when the server programs are missing (install
    /// Debian's `postgresql`), no unprivileged user exists to run them as root, or the
    /// server does not start within 30 s (its log is in the message).
    pub fn start(durable: bool) -> Result<Self, TrustError> {
        Self::start_with(durable, false)
    }

    /// [`LocalCluster::start`], also serving TLS with a certificate for `127.0.0.1` and
    /// `localhost` signed by a CA made for this cluster ([`LocalCluster::ca_pem`]).
    ///
    /// Errors: as [`LocalCluster::start`]; [`TrustError::Crypto`] if a certificate
    /// cannot be made.
    pub fn start_tls(durable: bool) -> Result<Self, TrustError> {
        Self::start_with(durable, true)
    }

    fn start_with(durable: bool, tls: bool) -> Result<Self, TrustError> {
        let bin = Self::binaries().ok_or_else(|| {
            TrustError::Store(
                "PostgreSQL's server programs (initdb, postgres) are missing: install Debian's `postgresql` \
                 package, or set PERUN_PG_BIN to their folder"
                    .into(),
            )
        })?;
        let io = |what: &str, e: std::io::Error| TrustError::Store(format!("local PostgreSQL: {what}: {e}"));
        let run_as = unprivileged_user()?;
        let dir = private_dir().map_err(|e| io("making its folder", e))?;
        if let Some((uid, gid)) = run_as {
            std::os::unix::fs::chown(&dir, Some(uid), Some(gid)).map_err(|e| io("chown", e))?;
        }
        let as_user = |c: &mut Command| {
            use std::os::unix::process::CommandExt as _;
            if let Some((uid, gid)) = run_as {
                c.uid(uid).gid(gid);
            }
            c.env("LC_ALL", "C").env_remove("PGDATA");
        };
        let mut initdb = Command::new(bin.join("initdb"));
        initdb
            .args(["-D"])
            .arg(dir.join("db"))
            .args(["-U", USER, "-A", "trust", "-E", "UTF8", "--locale=C", "--no-sync"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        as_user(&mut initdb);
        let out = initdb.output().map_err(|e| io(&format!("running {}", bin.join("initdb").display()), e))?;
        if !out.status.success() {
            let _ = std::fs::remove_dir_all(&dir);
            return Err(TrustError::Store(format!(
                "local PostgreSQL: initdb failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        let ca_pem = if tls {
            let (ca, crt, key) = server_certificate()?;
            std::fs::write(dir.join("server.crt"), crt).map_err(|e| io("writing server.crt", e))?;
            {
                use std::os::unix::fs::OpenOptionsExt as _;
                let mut f = std::fs::OpenOptions::new()
                    .create_new(true)
                    .write(true)
                    .mode(0o600)
                    .open(dir.join("server.key"))
                    .map_err(|e| io("writing server.key", e))?;
                std::io::Write::write_all(&mut f, key.as_bytes()).map_err(|e| io("writing server.key", e))?;
            }
            if let Some((uid, gid)) = run_as {
                for f in ["server.crt", "server.key"] {
                    std::os::unix::fs::chown(dir.join(f), Some(uid), Some(gid)).map_err(|e| io("chown", e))?;
                }
            }
            Some(ca)
        } else {
            None
        };
        let port = free_port().map_err(|e| io("finding a free port", e))?;
        let mut sh = Command::new("sh");
        sh.args(["-c", WATCHDOG, "perun-pg"])
            .arg(&bin)
            .arg(&dir)
            .arg(port.to_string())
            .arg(if durable { "on" } else { "off" })
            .arg(if tls { "on" } else { "off" })
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        as_user(&mut sh);
        let watchdog = sh.spawn().map_err(|e| io("starting the server", e))?;
        let mut cluster = Self { port, dir, watchdog, ca_pem };
        cluster.wait_ready()?;
        Ok(cluster)
    }

    fn wait_ready(&mut self) -> Result<(), TrustError> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match postgres::Client::connect(&self.url("postgres"), postgres::NoTls) {
                Ok(_) => return Ok(()),
                Err(e) => {
                    let exited = matches!(self.watchdog.try_wait(), Ok(Some(_)));
                    if exited || Instant::now() > deadline {
                        let mut log = String::new();
                        if let Ok(mut f) = std::fs::File::open(self.dir.join("server.log")) {
                            let _ = f.read_to_string(&mut log);
                        }
                        return Err(TrustError::Store(format!(
                            "local PostgreSQL did not start on port {}: {e}; its log: {}",
                            self.port,
                            log.trim()
                        )));
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
        }
    }

    /// The URL of database `db` on this cluster.
    pub fn url(&self, db: &str) -> String {
        format!("postgres://{USER}@127.0.0.1:{}/{db}", self.port)
    }

    /// The PEM certificate of the CA that signed the server's TLS certificate, for a
    /// cluster started with [`LocalCluster::start_tls`].
    pub fn ca_pem(&self) -> Option<&str> {
        self.ca_pem.as_deref()
    }

    /// The server's TCP port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Creates an empty database `name` (letters, digits and `_`) and returns its URL.
    pub fn create_database(&self, name: &str) -> Result<String, TrustError> {
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_') {
            return Err(TrustError::BadRequest(format!("`{name}`: a database name of a-z, 0-9 and _")));
        }
        let mut admin = postgres::Client::connect(&self.url("postgres"), postgres::NoTls)?;
        admin.batch_execute(&format!("CREATE DATABASE {name}"))?;
        Ok(self.url(name))
    }

    /// The folder the cluster lives in (removed when it stops).
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

impl Drop for LocalCluster {
    fn drop(&mut self) {
        // Closing the pipe tells the shell to stop the server and remove the folder.
        drop(self.watchdog.stdin.take());
        let _ = self.watchdog.wait();
    }
}

/// The user to run PostgreSQL as: `None` (this one) unless this process is root, which
/// PostgreSQL refuses to run as; then Debian's `postgres` user.
fn unprivileged_user() -> Result<Option<(u32, u32)>, TrustError> {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let euid = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|u| u.parse::<u32>().ok());
    if euid != Some(0) {
        return Ok(None);
    }
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    passwd
        .lines()
        .find_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            (f.first() == Some(&"postgres")).then(|| Some((f.get(2)?.parse().ok()?, f.get(3)?.parse().ok()?)))?
        })
        .map(Some)
        .ok_or_else(|| {
            TrustError::Store(
                "PostgreSQL does not run as root, and there is no `postgres` user to run it as: install Debian's \
                 `postgresql` package (it creates one), or run as an unprivileged user"
                    .into(),
            )
        })
}

/// A CA (PEM), and a server certificate it signed for 127.0.0.1 and localhost with its
/// key (PEM).
fn server_certificate() -> Result<(String, String, String), TrustError> {
    let e = |e: rcgen::Error| TrustError::Crypto(format!("local PostgreSQL certificate: {e}"));
    let ca_key = rcgen::KeyPair::generate().map_err(e)?;
    let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).map_err(e)?;
    ca.distinguished_name.push(rcgen::DnType::CommonName, "perun local PostgreSQL CA (tests)");
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca_pem = ca.self_signed(&ca_key).map_err(e)?.pem();
    let issuer = rcgen::Issuer::new(ca, ca_key);
    let key = rcgen::KeyPair::generate().map_err(e)?;
    let server = rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()]).map_err(e)?;
    let crt = server.signed_by(&key, &issuer).map_err(e)?.pem();
    Ok((ca_pem, crt, key.serialize_pem()))
}

/// A new folder only this user reads, under the temporary folder.
fn private_dir() -> std::io::Result<PathBuf> {
    use std::os::unix::fs::DirBuilderExt as _;
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.subsec_nanos());
    let dir = std::env::temp_dir().join(format!(
        "perun-pg-{}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed),
        nanos.unwrap_or(0)
    ));
    std::fs::DirBuilder::new().mode(0o700).create(&dir)?;
    Ok(dir)
}

/// A TCP port on 127.0.0.1 that was free a moment ago.
fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind(("127.0.0.1", 0))?.local_addr()?.port())
}
