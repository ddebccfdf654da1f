//! Helpers shared by the end-to-end tests: run the `perun` binary in a scratch folder.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

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
