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
    /// Check saved TPM evidence (JSON) against a policy.
    Verify {
        /// The evidence (JSON: quote, signature, PCRs, IMA log, IMA source).
        #[arg(long)]
        evidence: PathBuf,
        /// The worker's attestation key (`TPM2B_PUBLIC`, as `tpm2_createak -u` writes it).
        #[arg(long)]
        ak: PathBuf,
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

fn read(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("reading {}", path.display()))
}

/// Runs a policy subcommand.
pub fn policy(cmd: PolicyCmd, home: &crate::home::Home) -> Result<()> {
    let (tree, ima_log, ascii, name, worker_binary, accept_user_space_ima, out) = match cmd {
        PolicyCmd::Add { file, who } => return crate::cmd::remote::policy_add(home, &file, &who),
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
    let AttestCmd::Verify { evidence, ak, policy, qualifying_data, state, json } = cmd;
    let ev: TpmEvidence = serde_json::from_slice(&read(&evidence)?).context("reading the evidence")?;
    let ak = AkPublic::parse(&read(&ak)?).context("reading the attestation key")?;
    let policy = PlatformPolicy::from_json(&read(&policy)?)?;
    let qd = hex::decode(qualifying_data.trim()).context("--qualifying-data is not hex")?;
    let prior: ReplayState = match &state {
        Some(p) if p.exists() => serde_json::from_slice(&read(p)?).context("reading the replay state")?,
        _ => ReplayState::default(),
    };
    let a = appraise(&ev, &ak, &qd, &policy, &prior);
    if let (Some(p), Some(next)) = (&state, &a.state) {
        std::fs::write(p, serde_json::to_vec_pretty(next)?)?;
    }
    if json {
        print_json(&a)?;
    } else if a.accepted() {
        println!("accepted: {} new IMA entries verified against policy `{}`", a.new_entries, policy.name);
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
