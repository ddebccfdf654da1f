//! An owner's terms, the review of a job's outputs, the receivers' opening of them, and
//! the training receipt: `perun asset register --terms`, `perun asset show`,
//! `perun job review|receipt|output`, `perun receipt verify`.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _, Result};
use clap::Subcommand;

use perun_core::terms::TERMS_CONTEXT;
use perun_core::{sign_digest, AssetTerms, Digest, JobMode, Name, PrivacyBudget, SignedTerms};
use perun_proto::wire::{AssetInfo, JobInfo};
use perun_proto::ReviewOutcome;

use perun_client::Stakeholder;

use super::context::{client, load_remote, As};
use crate::home::Home;
use crate::ui::print_json;

/// A terms file as an owner writes it: every term optional; the asset and its content
/// digest are filled in from the sealed file at registration.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TermsFile {
    /// Unix seconds after which no key is released.
    #[serde(default)]
    pub expires_at: Option<u64>,
    /// The most jobs that may use the asset.
    #[serde(default)]
    pub max_jobs: Option<u32>,
    /// Allowed modes (`attested`, `tee`); empty: any.
    #[serde(default)]
    pub modes: BTreeSet<JobMode>,
    /// Allowed receivers; empty: any.
    #[serde(default)]
    pub receivers: BTreeSet<Name>,
    /// Whether you review each job's outputs before they reach the receivers.
    #[serde(default)]
    pub review: bool,
    /// DP-SGD at most at this budget.
    #[serde(default)]
    pub privacy: Option<PrivacyBudget>,
}

impl TermsFile {
    /// Reads a terms file (JSON, at most 64 KiB).
    pub fn load(path: &Path) -> Result<Self> {
        let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        if bytes.len() > 64 << 10 {
            bail!("{}: a terms file is at most 64 KiB", path.display());
        }
        serde_json::from_slice(&bytes).with_context(|| format!("{}: not a terms file", path.display()))
    }

    /// The terms for asset `name` with `content`, signed by `keys`.
    pub fn sign(self, name: &Name, content: Digest, keys: &perun_seal::keys::StakeholderKeys) -> Result<SignedTerms> {
        let terms = AssetTerms {
            asset: name.clone(),
            content_digest: content,
            expires_at: self.expires_at,
            max_jobs: self.max_jobs,
            modes: self.modes,
            receivers: self.receivers,
            review: self.review,
            privacy: self.privacy,
        };
        terms.validate()?;
        let signature = sign_digest(keys.signing_key(), TERMS_CONTEXT, &terms.digest());
        Ok(SignedTerms { terms, signature })
    }
}

/// Prints an asset with its terms and what is left of them.
pub fn print_asset(a: &AssetInfo) {
    println!("{} `{}` owned by {}", a.kind.as_str(), a.name, a.owner);
    println!("  content   {}", a.content_digest);
    println!("  location  {}", a.location);
    let Some(t) = &a.terms else {
        println!("  terms     none: any job you approve may use it");
        return;
    };
    let left = |max: u32| max.saturating_sub(a.usage.jobs);
    match t.max_jobs {
        Some(m) => println!("  jobs      {} used, {} of {m} left", a.usage.jobs, left(m)),
        None => println!("  jobs      {} used, no limit", a.usage.jobs),
    }
    if let Some(e) = t.expires_at {
        println!("  expires   {e} (Unix seconds)");
    }
    let modes: Vec<&str> = t.modes.iter().map(|m| m.as_str()).collect();
    println!("  modes     {}", if modes.is_empty() { "any".into() } else { modes.join(", ") });
    let receivers: Vec<&str> = t.receivers.iter().map(|r| r.as_str()).collect();
    println!("  receivers {}", if receivers.is_empty() { "any you approve".into() } else { receivers.join(", ") });
    println!("  review    {}", if t.review { "you release each job's outputs" } else { "no" });
    match &t.privacy {
        Some(p) => println!(
            "  privacy   DP-SGD, epsilon <= {} per job at delta <= {}; budget {:.4} of {} spent, {:.4} left",
            p.epsilon_per_job,
            p.delta,
            a.usage.epsilon_spent,
            p.total_epsilon,
            (p.total_epsilon - a.usage.epsilon_spent).max(0.0)
        ),
        None => println!("  privacy   not required"),
    }
}

/// `perun job review`: read the receipt, then release (signed) or refuse.
pub fn review(home: &Home, job: &Digest, release: bool, who: &As) -> Result<()> {
    let keys = home.load_identity(&who.who)?;
    let me = Stakeholder::new(&client(home, None)?, &keys);
    let info = me.review_output(job, &pinned_audit_key(home)?, release).context("not signing")?;
    if who.json {
        return print_json(&info);
    }
    let outcome = info.review.as_ref().map(|r| r.outcome);
    match outcome {
        Some(ReviewOutcome::Released) => {
            println!("released: the outputs of job {job} are now wrapped to the receivers")
        }
        Some(ReviewOutcome::Refused) => println!("refused: the outputs of job {job} never reach the receivers"),
        _ => println!("released by {}; other reviewers have not decided", who.who),
    }
    Ok(())
}

/// The pinned audit key of this home's remote.
fn pinned_audit_key(home: &Home) -> Result<ed25519_dalek::VerifyingKey> {
    let r = load_remote(home)?;
    Ok(perun_client::workflow::parse_audit_key(&r.audit_key)?)
}

/// `perun job receipt`: fetch and verify a finished job's receipt, and save it.
pub fn receipt(home: &Home, job: &Digest, out: &Path, who: &As) -> Result<()> {
    let keys = home.load_identity(&who.who)?;
    let (env, _) = Stakeholder::new(&client(home, None)?, &keys).verified_receipt(job, &pinned_audit_key(home)?)?;
    perun_seal::fsutil::write_secret_file(out, &serde_json::to_vec_pretty(&env)?)?;
    println!("receipt of job {job} verified and saved to {}", out.display());
    Ok(())
}

/// `perun job output`: a receiver opens the job's model (under review: with the key the
/// service wrapped to it once released) and writes the plaintext (0600, never over a file).
pub fn output(home: &Home, job: &Digest, out: &Path, who: &As) -> Result<()> {
    let c = client(home, Some(&who.who))?;
    let info: JobInfo = c.job(job)?;
    let o = info.outputs.first().with_context(|| format!("job {job} has delivered no output"))?;
    let sealed = std::fs::read(&o.location).with_context(|| format!("reading {}", o.location))?;
    let keys = home.load_identity(&who.who)?;
    let plain = Stakeholder::new(&c, &keys).open_output(&info, o, &sealed)?;
    perun_seal::fsutil::write_secret_file(out, &plain)?;
    println!("model of job {job} opened: {} bytes written to {} ({})", plain.len(), out.display(), Digest::of(&plain));
    Ok(())
}

/// `perun receipt`.
#[derive(Subcommand)]
pub enum ReceiptCmd {
    /// Check a model against a training receipt, offline, with the pinned audit key.
    Verify {
        /// The model file (the plaintext weights or the sealed output).
        model: PathBuf,
        /// The receipt (`perun job receipt` saved it).
        receipt: PathBuf,
        /// The service's audit key (base64 Ed25519); default: the one `perun remote add`
        /// pinned.
        #[arg(long)]
        audit_key: Option<String>,
    },
}

/// Runs `perun receipt`.
pub fn receipt_cmd(cmd: ReceiptCmd, home: &Home) -> Result<()> {
    let ReceiptCmd::Verify { model, receipt, audit_key } = cmd;
    let key = match audit_key {
        Some(k) => perun_client::workflow::parse_audit_key(&k)?,
        None => pinned_audit_key(home)?,
    };
    let bytes = read_bounded(&receipt, perun_core::receipt::MAX_RECEIPT_BYTES)?;
    let st = perun_client::workflow::verify_receipt(
        &bytes,
        &std::fs::read(&model).with_context(|| format!("reading {}", model.display()))?,
        &key,
    )?;
    let p = &st.predicate;
    println!("receipt verified: {} is the output of job {} (`{}`)", model.display(), p.job, p.name);
    for i in &p.inputs {
        println!("  input    {} {} of {} ({})", i.kind.as_str(), i.asset, i.owner, i.content_digest);
    }
    let approvers: Vec<&str> = p.approvals.iter().map(|a| a.approver.as_str()).collect();
    println!("  approved by {}", approvers.join(", "));
    println!("  worker   {} under policy {}", p.worker, p.policy);
    if let Some(a) = &p.attestation {
        println!("  evidence {} ({}), result {}", a.evidence, a.attester, a.result);
    }
    match &p.privacy {
        Some(dp) => println!(
            "  DP-SGD   epsilon {:.4} spent (target {}, delta {}), noise multiplier {:.4}, sample rate {:.4}, {} steps, clip {}",
            dp.epsilon, dp.target.epsilon, dp.target.delta, dp.noise_multiplier, dp.sample_rate, dp.steps, dp.target.max_grad_norm
        ),
        None => println!("  DP-SGD   none"),
    }
    Ok(())
}

fn read_bounded(path: &Path, max: usize) -> Result<Vec<u8>> {
    let meta = std::fs::metadata(path).with_context(|| format!("reading {}", path.display()))?;
    if meta.len() > max as u64 {
        bail!("{}: larger than {max} bytes", path.display());
    }
    std::fs::read(path).with_context(|| format!("reading {}", path.display()))
}
