//! An `swtpm` for development and tests, manufactured like a real TPM: `swtpm_setup
//! --create-ek-cert` gives it EK certificates from a local CA (`swtpm_localca`, Debian's
//! swtpm-tools) in NV indices `0x01c00002` (RSA 2048) and `0x01c00016` (ECC P-384), so
//! enrolment reads them as it would a chip maker's. Only a policy that names that local
//! CA accepts such a TPM.

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::TpmError;

/// A local EK CA for software TPMs (development only): `swtpm_localca`'s root and
/// intermediate, made in `dir` on first use.
#[derive(Clone, Debug)]
pub struct LocalCa {
    dir: PathBuf,
}

impl LocalCa {
    /// A CA whose files live in `dir` (created when the first TPM is manufactured).
    pub fn at(dir: &Path) -> Result<Self, TpmError> {
        std::fs::create_dir_all(dir)
            .map_err(|e| TpmError::Io { what: format!("creating {}", dir.display()), source: e })?;
        let dir =
            dir.canonicalize().map_err(|e| TpmError::Io { what: format!("resolving {}", dir.display()), source: e })?;
        let write = |name: &str, text: String| {
            std::fs::write(dir.join(name), text)
                .map_err(|e| TpmError::Io { what: format!("writing {name}"), source: e })
        };
        let d = dir.display();
        write(
            "localca.conf",
            format!("statedir = {d}\nsigningkey = {d}/signkey.pem\nissuercert = {d}/issuercert.pem\ncertserial = {d}/certserial\n"),
        )?;
        write(
            "localca.options",
            "--platform-manufacturer Perun\n--platform-version 2.1\n--platform-model swtpm\n".into(),
        )?;
        write(
            "swtpm_setup.conf",
            format!(
                "create_certs_tool = /usr/bin/swtpm_localca\ncreate_certs_tool_config = {d}/localca.conf\n\
                 create_certs_tool_options = {d}/localca.options\nactive_pcr_banks = sha1,sha256\n"
            ),
        )?;
        Ok(Self { dir })
    }

    /// The CA shared by every software TPM this process starts with [`Swtpm::start`], in
    /// a folder of the temp directory named for the process.
    pub fn for_process() -> Result<Self, TpmError> {
        static CA: std::sync::OnceLock<Result<LocalCa, String>> = std::sync::OnceLock::new();
        CA.get_or_init(|| {
            Self::at(&std::env::temp_dir().join(format!("perun-swtpm-localca-{}", std::process::id())))
                .map_err(|e| e.to_string())
        })
        .clone()
        .map_err(|e| TpmError::SwtpmStart(format!("local EK CA: {e}")))
    }

    /// Its root certificate (PEM), the trust anchor a development policy names.
    pub fn root_pem(&self) -> Result<Vec<u8>, TpmError> {
        self.read("swtpm-localca-rootca-cert.pem")
    }

    /// Its intermediate (the EK certificates' issuer, PEM).
    pub fn issuer_pem(&self) -> Result<Vec<u8>, TpmError> {
        self.read("issuercert.pem")
    }

    fn read(&self, name: &str) -> Result<Vec<u8>, TpmError> {
        std::fs::read(self.dir.join(name)).map_err(|e| TpmError::Io {
            what: format!("reading {name} of the local CA (manufacture a TPM with it first)"),
            source: e,
        })
    }

    /// Manufactures a TPM state in `state`: EKs, their certificates, SHA-1 and SHA-256
    /// PCR banks.
    fn manufacture(&self, state: &Path) -> Result<(), TpmError> {
        let out = Command::new("swtpm_setup")
            .args(["--tpm2", "--create-ek-cert", "--overwrite", "--pcr-banks", "sha1,sha256"])
            .arg("--tpmstate")
            .arg(state)
            .arg("--config")
            .arg(self.dir.join("swtpm_setup.conf"))
            .output()
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::NotFound => {
                    TpmError::Missing { tool: "swtpm_setup", hint: "apt-get install swtpm-tools" }
                }
                _ => TpmError::Io { what: "running swtpm_setup".into(), source: e },
            })?;
        if !out.status.success() {
            return Err(TpmError::Tool {
                command: "swtpm_setup --create-ek-cert".into(),
                stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
            });
        }
        Ok(())
    }
}

/// A running `swtpm socket --tpm2`, stopped (and its state removed) when dropped.
pub struct Swtpm {
    child: Child,
    port: u16,
    ctrl: u16,
    state: tempfile::TempDir,
}

impl Swtpm {
    /// Starts an swtpm on a free loopback port pair (server, then control on the next
    /// port, as the `swtpm` TCTI expects), manufactured with EK certificates from this
    /// process's [`LocalCa`] and started, and waits until it answers.
    pub fn start() -> Result<Self, TpmError> {
        Self::start_with(&LocalCa::for_process()?)
    }

    /// [`Self::start`] with EK certificates from `ca`.
    pub fn start_with(ca: &LocalCa) -> Result<Self, TpmError> {
        let state = tempfile::tempdir()
            .map_err(|e| TpmError::Io { what: "creating the swtpm state folder".into(), source: e })?;
        ca.manufacture(state.path())?;
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
        let mut tpm = Self { child, port, ctrl, state };
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if TcpStream::connect(("127.0.0.1", port)).is_ok() && TcpStream::connect(("127.0.0.1", ctrl)).is_ok() {
                return Ok(tpm);
            }
            if let Ok(Some(status)) = tpm.child.try_wait() {
                return Err(TpmError::SwtpmStart(format!("exited at start: {status}")));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Err(TpmError::SwtpmStart("did not answer within 10 s".into()))
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

    /// Power-cycles the TPM, as a reboot of its machine does: `CMD_INIT` on the control
    /// channel (`swtpm_ioctl -i`), then `TPM2_Startup(CLEAR)` (`tpm2_startup -c`). The
    /// TPM's resetCount grows by one and its PCRs start over; its keys stay. Connections
    /// open before must be opened again.
    pub fn reset(&self) -> Result<(), TpmError> {
        let run = |tool: &'static str, cmd: &mut Command| -> Result<(), TpmError> {
            let out = cmd.output().map_err(|e| match e.kind() {
                std::io::ErrorKind::NotFound => {
                    TpmError::Missing { tool, hint: "apt-get install swtpm-tools tpm2-tools" }
                }
                _ => TpmError::Io { what: format!("running {tool}"), source: e },
            })?;
            if !out.status.success() {
                return Err(TpmError::Tool {
                    command: tool.to_owned(),
                    stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
                });
            }
            Ok(())
        };
        run("swtpm_ioctl", Command::new("swtpm_ioctl").args(["--tcp", &format!("127.0.0.1:{}", self.ctrl), "-i"]))?;
        run("tpm2_startup", Command::new("tpm2_startup").args(["-c", "-T", &self.tcti()]))
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
    Err(TpmError::SwtpmStart("found no free pair of loopback ports".into()))
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
