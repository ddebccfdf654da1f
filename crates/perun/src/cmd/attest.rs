//! `perun policy` and `perun attest`: platform policies and offline evidence checks.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _, Result};
use clap::Subcommand;
use perun_attest::evidence::{appraise, TpmEvidence};
use perun_attest::ima::{parse_ascii, parse_binary, ReplayState};
use perun_attest::policy::PlatformPolicy;
use perun_attest::tpm::AkPublic;

use crate::ui::print_json;

/// Policy subcommands.
#[derive(Subcommand)]
pub enum PolicyCmd {
    /// Publish a policy file to the trust service; prints its digest for manifests.
    Add {
        /// The policy (JSON).
        file: PathBuf,
        #[command(flatten)]
        who: crate::cmd::remote::As,
    },
    /// Write a TEE policy (for `tee` jobs, and for `perun predict` clients).
    Tee(crate::cmd::enclave::TeePolicyArgs),
    /// Build a policy from a directory tree (every regular file, by its path under the
    /// tree) or from an observed IMA log.
    Generate {
        /// A directory tree, as the measured machine sees it from `/`.
        #[arg(long, conflicts_with = "ima_log")]
        tree: Option<PathBuf>,
        /// An IMA log (binary, or ASCII with --ascii).
        #[arg(long)]
        ima_log: Option<PathBuf>,
        /// The log is in the ASCII form.
        #[arg(long)]
        ascii: bool,
        /// The policy's name.
        #[arg(long)]
        name: String,
        /// The approved `perun` worker binary, which must be measured.
        #[arg(long)]
        worker_binary: Option<PathBuf>,
        /// Accept evidence from the user-space IMA measurer (development only).
        #[arg(long)]
        accept_user_space_ima: bool,
        /// Where to write the policy (JSON).
        #[arg(long)]
        out: PathBuf,
    },
}

/// Attestation subcommands.
#[derive(Subcommand)]
pub enum AttestCmd {
    /// Gather evidence on this machine: EK and AK on the TPM, a quote over the boot PCRs
    /// and PCR 10, and the kernel's IMA log; written as one JSON bundle.
    Collect {
        /// The TPM.
        #[arg(long, default_value = "device:/dev/tpmrm0")]
        tcti: String,
        /// The qualifying data the quote carries (hex), from the verifier.
        #[arg(long)]
        qualifying_data: String,
        /// Where to write the bundle (a file, or a device such as a serial port).
        #[arg(long)]
        out: PathBuf,
    },
    /// Check saved TPM evidence (JSON) against a policy.
    Verify {
        /// The evidence (JSON: quote, signature, PCRs, IMA log, IMA source).
        #[arg(long, required_unless_present = "bundle")]
        evidence: Option<PathBuf>,
        /// The worker's attestation key (`TPM2B_PUBLIC`, as `tpm2_createak -u` writes it).
        #[arg(long, required_unless_present = "bundle")]
        ak: Option<PathBuf>,
        /// A bundle from `perun attest collect` (evidence, AK and qualifying data).
        #[arg(long, conflicts_with_all = ["evidence", "ak"])]
        bundle: Option<PathBuf>,
        /// The platform policy (JSON).
        #[arg(long)]
        policy: PathBuf,
        /// The qualifying data the quote must carry (hex).
        #[arg(long)]
        qualifying_data: String,
        /// A saved replay state to continue from (JSON); updated on success.
        #[arg(long)]
        state: Option<PathBuf>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

/// What `perun attest collect` writes: the evidence and what a verifier needs with it.
#[derive(serde::Serialize, serde::Deserialize)]
pub struct EvidenceBundle {
    /// The EK public area (hex).
    #[serde(with = "hex::serde")]
    pub ek_public: Vec<u8>,
    /// The AK public area (hex).
    #[serde(with = "hex::serde")]
    pub ak_public: Vec<u8>,
    /// The evidence.
    pub evidence: TpmEvidence,
    /// Seconds since boot when it was collected, where known.
    #[serde(default)]
    pub uptime_s: Option<f64>,
}

fn collect(tcti: &str, qualifying_data: &str, out: &Path) -> Result<()> {
    let qd = hex::decode(qualifying_data.trim()).context("--qualifying-data is not hex")?;
    let tpm = perun_tpm::device::Tpm::connect(tcti, perun_tpm::tools::KeyAlg::Rsa)
        .with_context(|| format!("connecting to the TPM at {tcti}"))?;
    let mut platform = perun_worker::Platform::kernel(tpm)?;
    let ak = platform.tpm().create_ak(perun_tpm::tools::KeyAlg::Rsa)?;
    let evidence = platform.evidence(&qd)?;
    let uptime_s = std::fs::read_to_string("/proc/uptime")
        .ok()
        .and_then(|u| u.split_whitespace().next().and_then(|v| v.parse().ok()));
    let bundle =
        EvidenceBundle { ek_public: platform.tpm().ek_public().to_vec(), ak_public: ak.public, evidence, uptime_s };
    let mut bytes = serde_json::to_vec(&bundle)?;
    bytes.push(b'\n');
    std::fs::write(out, bytes).with_context(|| format!("writing {}", out.display()))?;
    eprintln!("evidence written to {}", out.display());
    Ok(())
}

fn read(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("reading {}", path.display()))
}

/// Runs a policy subcommand.
pub fn policy(cmd: PolicyCmd, home: &crate::home::Home) -> Result<()> {
    let (tree, ima_log, ascii, name, worker_binary, accept_user_space_ima, out) = match cmd {
        PolicyCmd::Add { file, who } => return crate::cmd::remote::policy_add(home, &file, &who),
        PolicyCmd::Tee(a) => return crate::cmd::enclave::tee_policy(a),
        PolicyCmd::Generate { tree, ima_log, ascii, name, worker_binary, accept_user_space_ima, out } => {
            (tree, ima_log, ascii, name, worker_binary, accept_user_space_ima, out)
        }
    };
    let mut policy = match (tree, ima_log) {
        (Some(t), None) => PlatformPolicy::from_tree(&name, &t)?,
        (None, Some(l)) => {
            let bytes = read(&l)?;
            let entries = if ascii {
                parse_ascii(&String::from_utf8_lossy(&bytes))?
            } else {
                parse_binary(&bytes, 0)?.into_iter().map(|(e, _)| e).collect()
            };
            PlatformPolicy::from_log(&name, &entries)
        }
        _ => bail!("give --tree DIR or --ima-log FILE"),
    };
    if let Some(w) = worker_binary {
        policy.worker_binary = Some(perun_core::Digest::of(&read(&w)?).to_string());
    }
    policy.accept_user_space_ima |= accept_user_space_ima;
    if out.exists() {
        bail!("{} already exists: refusing to overwrite it", out.display());
    }
    std::fs::write(&out, serde_json::to_vec_pretty(&policy)?).with_context(|| format!("writing {}", out.display()))?;
    println!(
        "policy `{name}`: {} files, {} digests; digest {}",
        policy.allowed_files.len(),
        policy.allowed_digests.len(),
        policy.digest()
    );
    Ok(())
}

/// Runs an attestation subcommand.
pub fn attest(cmd: AttestCmd) -> Result<()> {
    let (evidence, ak, bundle, policy, qualifying_data, state, json) = match cmd {
        AttestCmd::Collect { tcti, qualifying_data, out } => return collect(&tcti, &qualifying_data, &out),
        AttestCmd::Verify { evidence, ak, bundle, policy, qualifying_data, state, json } => {
            (evidence, ak, bundle, policy, qualifying_data, state, json)
        }
    };
    let (ev, ak) = match (bundle, evidence, ak) {
        (Some(b), _, _) => {
            let b: EvidenceBundle = serde_json::from_slice(&read(&b)?).context("reading the evidence bundle")?;
            if let Some(up) = b.uptime_s {
                println!("evidence collected {up:.1} s after boot; IMA log of {} bytes", b.evidence.ima_log.len());
            }
            (b.evidence, AkPublic::parse(&b.ak_public).context("the bundle's attestation key")?)
        }
        (None, Some(e), Some(k)) => (
            serde_json::from_slice(&read(&e)?).context("reading the evidence")?,
            AkPublic::parse(&read(&k)?).context("reading the attestation key")?,
        ),
        _ => bail!("give --bundle, or --evidence and --ak"),
    };
    let policy = PlatformPolicy::from_json(&read(&policy)?)?;
    let qd = hex::decode(qualifying_data.trim()).context("--qualifying-data is not hex")?;
    let started = std::time::Instant::now();
    let prior: ReplayState = match &state {
        Some(p) if p.exists() => serde_json::from_slice(&read(p)?).context("reading the replay state")?,
        _ => ReplayState::default(),
    };
    let a = appraise(&ev, &ak, &qd, &policy, &prior);
    if let (Some(p), Some(next)) = (&state, &a.state) {
        std::fs::write(p, serde_json::to_vec_pretty(next)?)?;
    }
    let took = started.elapsed();
    if json {
        print_json(&a)?;
    } else if a.accepted() {
        println!(
            "accepted: {} new IMA entries verified against policy `{}` in {:.2} ms",
            a.new_entries,
            policy.name,
            took.as_secs_f64() * 1e3
        );
    } else {
        println!("refused:");
        for f in &a.failures {
            println!("  - {f}");
        }
    }
    if !a.accepted() {
        bail!("the evidence was refused");
    }
    Ok(())
}
