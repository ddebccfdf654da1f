//! `perun seal` and `perun unseal`.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result};
use clap::Args;
use perun_core::{AssetKind, Name};
use perun_seal::keys::parse_recipient;
use perun_seal::{sealed, AssetKey};

use crate::home::Home;
use crate::ui::{byte_bar, print_json};

/// Arguments of `perun seal`.
#[derive(Args)]
pub struct SealArgs {
    /// The file to seal.
    pub input: PathBuf,
    /// What it holds: dataset, model or output.
    #[arg(long)]
    pub kind: AssetKind,
    /// The identity that owns the asset (its key is kept under that identity).
    #[arg(long)]
    pub owner: Name,
    /// The sealed file to write (never overwritten).
    #[arg(long)]
    pub out: PathBuf,
    /// Where to write the new asset key (mode 0600). Default: the owner's key folder.
    #[arg(long)]
    pub key_out: Option<PathBuf>,
    /// Also seal to these age recipients (`age1...`).
    #[arg(long = "to")]
    pub extra_recipients: Vec<String>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// Arguments of `perun unseal`.
#[derive(Args)]
pub struct UnsealArgs {
    /// The sealed file.
    pub input: PathBuf,
    /// The asset key file (or an age identity file).
    #[arg(long)]
    pub key: PathBuf,
    /// Where to write the plaintext (mode 0600, never overwritten). Without it, the file
    /// is opened and verified in memory only.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

#[derive(serde::Serialize)]
struct SealReport {
    sealed: PathBuf,
    key_file: PathBuf,
    recipient: String,
    kind: AssetKind,
    content_digest: perun_core::Digest,
    content_len: u64,
    sealed_digest: perun_core::Digest,
    sealed_len: u64,
}

/// Seals a file under a fresh asset key.
pub fn seal(a: SealArgs, home: &Home) -> Result<()> {
    home.load_identity(&a.owner)?;
    let key_file = match a.key_out {
        Some(k) => k,
        None => {
            let dir = home.asset_key_dir(&a.owner);
            std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
            dir.join(format!("{}.key", stem(&a.out)))
        }
    };
    if key_file.exists() {
        anyhow::bail!("{} already exists: refusing to overwrite a key (choose --key-out)", key_file.display());
    }
    let key = AssetKey::generate();
    let mut recipients = vec![key.recipient()];
    for r in &a.extra_recipients {
        recipients.push(parse_recipient(r)?);
    }
    let size = std::fs::metadata(&a.input).with_context(|| format!("reading {}", a.input.display()))?.len();
    // The key is written first, so a sealed file never exists without its key; if
    // sealing fails, the key is removed again and nothing is left.
    key.save(&key_file)?;
    let bar = byte_bar(2 * size, "sealing");
    let info = match sealed::seal_file(&a.input, a.kind, &recipients, &a.out, &mut |n| bar.inc(n)) {
        Ok(info) => info,
        Err(e) => {
            let _ = std::fs::remove_file(&key_file);
            return Err(e.into());
        }
    };
    bar.finish_and_clear();
    let report = SealReport {
        sealed: a.out,
        key_file,
        recipient: key.recipient().to_string(),
        kind: a.kind,
        content_digest: info.header.content_digest,
        content_len: info.header.content_len,
        sealed_digest: info.sealed_digest,
        sealed_len: info.sealed_len,
    };
    if a.json {
        return print_json(&report);
    }
    println!("sealed {} ({} bytes) -> {}", a.input.display(), report.content_len, report.sealed.display());
    println!("  kind:           {}", report.kind);
    println!("  content digest: {}", report.content_digest);
    println!("  sealed digest:  {}", report.sealed_digest);
    println!("  asset key:      {} (mode 0600; keep it secret)", report.key_file.display());
    Ok(())
}

fn stem(p: &Path) -> String {
    p.file_stem().map_or_else(|| "asset".into(), |s| s.to_string_lossy().into_owned())
}

/// Opens a sealed file: to a new file, or in memory only to verify it.
pub fn unseal(a: UnsealArgs) -> Result<()> {
    let key = AssetKey::load(&a.key)?;
    let size = std::fs::metadata(&a.input).with_context(|| format!("reading {}", a.input.display()))?.len();
    let bar = byte_bar(size, "opening");
    let opened = match &a.out {
        Some(out) => sealed::unseal_file(&a.input, key.identity(), out, &mut |n| bar.inc(n)),
        None => {
            let f = std::fs::File::open(&a.input).with_context(|| format!("opening {}", a.input.display()))?;
            sealed::open(bar.wrap_read(f), Some(size), key.identity(), None, &mut std::io::sink())
        }
    }
    .with_context(|| format!("{} was refused", a.input.display()))?;
    bar.finish_and_clear();
    match &opened.header {
        Some(h) => println!("verified: {} of {} bytes, content digest {}", h.kind, h.content_len, h.content_digest),
        None => println!(
            "opened a plain age file (no Perun header): {} bytes, digest {}",
            opened.content_len, opened.content_digest
        ),
    }
    if let Some(out) = &a.out {
        println!("plaintext written to {} (mode 0600)", out.display());
    }
    Ok(())
}
