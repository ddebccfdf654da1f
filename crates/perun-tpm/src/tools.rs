//! A TPM client over `tpm2-tools`, for tests, benchmarks and the user-space measurer.
//!
//! Each call runs one tool against the TCTI and then flushes transient objects (there
//! is no resource manager between the tools and an swtpm).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use perun_proto::evidence::{alg, PcrBank};

use crate::ima::PcrExtender;
use crate::TpmError;

/// Which key algorithm.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyAlg {
    /// RSA 2048 (EK: RSA-OAEP; AK: RSASSA-SHA256).
    Rsa,
    /// NIST P-256 (EK: ECDH; AK: ECDSA-SHA256).
    Ecc,
}

/// A TPM driven through `tpm2-tools`, with a working folder for its context files.
pub struct Tpm2Tools {
    tcti: String,
    dir: PathBuf,
}

impl Tpm2Tools {
    /// A client for `tcti` keeping context files in `dir`.
    pub fn new(tcti: &str, dir: &Path) -> Self {
        Self { tcti: tcti.to_owned(), dir: dir.to_owned() }
    }

    /// A file in the working folder.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    fn raw(&self, args: &[&str]) -> Result<String, TpmError> {
        let out = Command::new(args[0])
            .args(&args[1..])
            .current_dir(&self.dir)
            .env("TPM2TOOLS_TCTI", &self.tcti)
            .output()
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::NotFound => {
                    TpmError::Missing { tool: "tpm2-tools", hint: "apt-get install tpm2-tools" }
                }
                _ => TpmError::Io { what: format!("running {}", args[0]), source: e },
            })?;
        if !out.status.success() {
            return Err(TpmError::Tool {
                command: args.join(" "),
                stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
            });
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Runs a tool, then flushes transient objects.
    pub fn run(&self, args: &[&str]) -> Result<String, TpmError> {
        let out = self.raw(args);
        let _ = self.raw(&["tpm2_flushcontext", "-t"]);
        out
    }

    /// Creates the EK (`ek.ctx`, `ek.pub`).
    pub fn create_ek(&self, alg: KeyAlg) -> Result<Vec<u8>, TpmError> {
        let g = if alg == KeyAlg::Rsa { "rsa" } else { "ecc" };
        self.run(&["tpm2_createek", "-c", "ek.ctx", "-G", g, "-u", "ek.pub"])?;
        self.read("ek.pub")
    }

    /// Creates an AK under the EK (`NAME.ctx`, `NAME.pub`); returns its `TPM2B_PUBLIC`.
    pub fn create_ak(&self, alg: KeyAlg, name: &str) -> Result<Vec<u8>, TpmError> {
        let (g, s) = if alg == KeyAlg::Rsa { ("rsa", "rsassa") } else { ("ecc", "ecdsa") };
        let (ctx, public) = (format!("{name}.ctx"), format!("{name}.pub"));
        self.run(&["tpm2_createak", "-C", "ek.ctx", "-c", &ctx, "-G", g, "-g", "sha256", "-s", s, "-u", &public])?;
        self.read(&public)
    }

    /// Quotes sha256 PCRs `list` (for example `0,1,10`) with the AK `name` over
    /// `qualifying_data`; returns `(TPMS_ATTEST, TPMT_SIGNATURE)`.
    pub fn quote(&self, name: &str, list: &str, qualifying_data: &[u8]) -> Result<(Vec<u8>, Vec<u8>), TpmError> {
        let q = hex::encode(qualifying_data);
        self.run(&[
            "tpm2_quote",
            "-c",
            &format!("{name}.ctx"),
            "-l",
            &format!("sha256:{list}"),
            "-q",
            &q,
            "-m",
            "quote.msg",
            "-s",
            "quote.sig",
            "-g",
            "sha256",
        ])?;
        Ok((self.read("quote.msg")?, self.read("quote.sig")?))
    }

    /// Reads sha256 PCRs `list`.
    pub fn pcr_read(&self, list: &str) -> Result<PcrBank, TpmError> {
        let text = self.run(&["tpm2_pcrread", &format!("sha256:{list}")])?;
        let mut values = BTreeMap::new();
        for line in text.lines() {
            if let Some((i, v)) = line.trim().split_once(':') {
                if let (Ok(i), Some(v)) = (i.trim().parse::<u32>(), v.trim().strip_prefix("0x")) {
                    values.insert(
                        i,
                        hex::decode(v).map_err(|e| TpmError::Output { tool: "tpm2_pcrread", detail: e.to_string() })?,
                    );
                }
            }
        }
        Ok(PcrBank { hash_alg: alg::SHA256, values })
    }

    fn read(&self, name: &str) -> Result<Vec<u8>, TpmError> {
        std::fs::read(self.path(name)).map_err(|e| TpmError::Io { what: format!("reading {name}"), source: e })
    }
}

impl PcrExtender for Tpm2Tools {
    fn extend_pcr10(&mut self, sha1: &[u8; 20], sha256: &[u8; 32]) -> Result<(), TpmError> {
        let arg = format!("10:sha1={},sha256={}", hex::encode(sha1), hex::encode(sha256));
        self.raw(&["tpm2_pcrextend", &arg]).map(|_| ())
    }
}
