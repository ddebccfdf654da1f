//! Helpers shared by the end-to-end tests: run the `perun` binary in a scratch folder.

#![allow(dead_code)]

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

use perun_core::Digest;

/// A scratch folder with its own Perun home and temp folder.
pub struct Scratch {
    pub dir: tempfile::TempDir,
}

impl Scratch {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("tmp")).unwrap();
        Self { dir }
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// `perun ARGS` with PERUN_HOME and TMPDIR inside the scratch folder.
    pub fn perun(&self, args: &[&str]) -> Output {
        self.perun_env(args, &[])
    }

    /// `perun ARGS` with extra environment variables.
    pub fn perun_env(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_perun"))
            .envs(env.iter().copied())
            .args(args)
            .current_dir(self.dir.path())
            .env("PERUN_HOME", self.path("home"))
            .env("TMPDIR", self.path("tmp"))
            .output()
            .unwrap()
    }

    /// Runs `perun` and asserts success; returns stdout.
    /// Registers identity `who` (made first) with `roles` on the service whose data is
    /// `trust/`, and admits it as that service's operator (`perun serve --admit`): until
    /// then it can do nothing.
    pub fn register_admitted(&self, who: &str, roles: &str) {
        let made = self.ok(&["id", "new", who]);
        let fingerprint = made.lines().find_map(|l| l.strip_prefix("fingerprint:")).unwrap().trim().to_owned();
        let applied = self.ok(&["id", "register", who, "--role", roles]);
        assert!(applied.contains("awaits admission"), "{applied}");
        let trust = self.path("trust");
        let admitted =
            self.ok(&["serve", "--data", trust.to_str().unwrap(), "--admit", who, "--fingerprint", &fingerprint]);
        assert!(admitted.contains("is admitted"), "{admitted}");
    }

    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.perun(args);
        assert!(out.status.success(), "perun {args:?} failed:\n{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    }

    /// Runs `perun` and asserts failure; returns stderr.
    pub fn fails(&self, args: &[&str]) -> String {
        let out = self.perun(args);
        assert!(
            !out.status.success(),
            "perun {args:?} succeeded but must fail:\n{}",
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8(out.stderr).unwrap()
    }

    /// Every regular file under the scratch folder.
    pub fn files(&self) -> Vec<PathBuf> {
        fn walk(p: &Path, out: &mut Vec<PathBuf>) {
            for e in std::fs::read_dir(p).unwrap() {
                let p = e.unwrap().path();
                if p.is_dir() {
                    walk(&p, out);
                } else {
                    out.push(p);
                }
            }
        }
        let mut v = Vec::new();
        walk(self.dir.path(), &mut v);
        v.sort();
        v
    }
}

/// The project's examples folder.
pub fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples")
}

/// Whether a command-line tool is installed; in CI a missing tool fails the test.
pub fn require_tool(tool: &str, install_hint: &str) -> bool {
    let found =
        Command::new("sh").arg("-c").arg(format!("command -v {tool}")).output().is_ok_and(|o| o.status.success());
    if !found {
        assert!(std::env::var_os("CI").is_none(), "`{tool}` is missing in CI: {install_hint}");
        eprintln!("SKIPPED: `{tool}` is not installed ({install_hint}); scripts/test installs it");
    }
    found
}

/// Whether `haystack` contains `needle`.
pub fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// `perun serve` in its own process, on a store in the scratch folder.
pub struct Service {
    child: Child,
    pub url: String,
    pub fingerprint: Digest,
}

impl Service {
    pub fn start(s: &Scratch, listen: &str) -> Self {
        Self::start_env(s, listen, &[])
    }

    /// [`Service::start`] with extra environment variables (`PERUN_LOG`...).
    pub fn start_env(s: &Scratch, listen: &str, env: &[(&str, &str)]) -> Self {
        Self::start_with(s, listen, &[], env)
    }

    /// [`Service::start`] with extra arguments of `perun serve` and environment variables.
    pub fn start_with(s: &Scratch, listen: &str, args: &[&str], env: &[(&str, &str)]) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_perun"))
            .args(["serve", "--data", s.path("trust").to_str().unwrap(), "--listen", listen])
            .args(args)
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let first = lines.next().unwrap().unwrap();
        let url = first.rsplit(' ').next().unwrap().to_owned();
        let second = lines.next().unwrap().unwrap();
        let fingerprint = second.rsplit(' ').next().unwrap().parse().unwrap();
        // Keep draining what the service prints, as a terminal would.
        std::thread::spawn(move || lines.for_each(drop));
        Service { child, url, fingerprint }
    }

    /// The service's peak resident memory so far (`VmHWM`), in KiB.
    pub fn peak_rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    }

    pub fn kill(mut self) -> String {
        // SIGKILL: no shutdown code runs.
        self.child.kill().unwrap();
        self.child.wait().unwrap();
        self.url.trim_start_matches("https://").to_owned()
    }

    /// Stops it as an operator does (SIGTERM) and waits for a clean exit.
    pub fn stop(mut self) {
        let pid = self.child.id().to_string();
        let sent = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        assert!(sent.success(), "kill -TERM {pid} failed");
        let status = self.child.wait().unwrap();
        assert!(status.success(), "perun serve exited with {status} on SIGTERM");
    }
}

/// The PostgreSQL store the suites share (one file, `crates/perun-trust/tests/common/store.rs`,
/// for this binary and the trust service's).
#[path = "../../crates/perun-trust/tests/common/store.rs"]
mod store;
pub use store::{postgres_database, postgres_installed_or_skip, postgres_or_skip};
