//! An `swtpm` for development and tests.

use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::TpmError;

/// A running `swtpm socket --tpm2`, stopped (and its state removed) when dropped.
pub struct Swtpm {
    child: Child,
    port: u16,
    state: tempfile::TempDir,
}

impl Swtpm {
    /// Starts an swtpm on a free loopback port pair (server, then control on the next
    /// port, as the `swtpm` TCTI expects), manufactured and started, and waits until it
    /// answers.
    pub fn start() -> Result<Self, TpmError> {
        let state = tempfile::tempdir()
            .map_err(|e| TpmError::Io { what: "creating the swtpm state folder".into(), source: e })?;
        let (port, ctrl) = free_port_pair()?;
        let child = Command::new("swtpm")
            .args(["socket", "--tpm2", "--flags", "not-need-init,startup-clear"])
            .arg("--tpmstate")
            .arg(format!("dir={}", state.path().display()))
            .args(["--server", &format!("type=tcp,port={port},bindaddr=127.0.0.1")])
            .args(["--ctrl", &format!("type=tcp,port={ctrl},bindaddr=127.0.0.1")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::NotFound => {
                    TpmError::Missing { tool: "swtpm", hint: "apt-get install swtpm swtpm-tools" }
                }
                _ => TpmError::Io { what: "starting swtpm".into(), source: e },
            })?;
        let mut tpm = Self { child, port, state };
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if TcpStream::connect(("127.0.0.1", port)).is_ok() && TcpStream::connect(("127.0.0.1", ctrl)).is_ok() {
                return Ok(tpm);
            }
            if let Ok(Some(status)) = tpm.child.try_wait() {
                return Err(TpmError::Failed(format!("swtpm exited at start: {status}")));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Err(TpmError::Failed("swtpm did not answer within 10 s".into()))
    }

    /// For tests and benchmarks: an swtpm, or `None` with a `SKIPPED` line where swtpm is
    /// not installed. Under CI (`CI` set) a missing swtpm fails instead, so that a skip
    /// cannot hide a gap in the CI machine's set-up.
    pub fn start_or_skip() -> Option<Self> {
        match Self::start() {
            Ok(t) => Some(t),
            Err(e) => {
                // allow-panic: test support only; CI must have swtpm.
                assert!(std::env::var_os("CI").is_none(), "{e}");
                eprintln!("SKIPPED: {e}");
                None
            }
        }
    }

    /// The server port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The TCTI configuration string (`swtpm:host=127.0.0.1,port=N`), for tss-esapi or
    /// `TPM2TOOLS_TCTI`.
    pub fn tcti(&self) -> String {
        format!("swtpm:host=127.0.0.1,port={}", self.port)
    }

    /// The state folder.
    pub fn state_dir(&self) -> &std::path::Path {
        self.state.path()
    }
}

impl Drop for Swtpm {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port_pair() -> Result<(u16, u16), TpmError> {
    for _ in 0..100 {
        let l = TcpListener::bind("127.0.0.1:0")
            .map_err(|e| TpmError::Io { what: "finding a free port".into(), source: e })?;
        let p = l.local_addr().map_err(|e| TpmError::Io { what: "finding a free port".into(), source: e })?.port();
        if p < u16::MAX && TcpListener::bind(("127.0.0.1", p + 1)).is_ok() {
            return Ok((p, p + 1));
        }
    }
    Err(TpmError::Failed("no free pair of loopback ports".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_swtpm_has_its_own_ports_and_stops_on_drop() {
        let (Some(a), Some(b)) = (Swtpm::start_or_skip(), Swtpm::start_or_skip()) else { return };
        assert_ne!(a.port(), b.port());
        let port = a.port();
        drop(a);
        std::thread::sleep(Duration::from_millis(100));
        assert!(TcpStream::connect(("127.0.0.1", port)).is_err());
    }
}
