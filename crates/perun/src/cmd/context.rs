//! What every command that talks to the trust service starts from: the saved remote
//! (`perun remote add`), a client speaking as a local identity, and who runs the command.

use std::path::PathBuf;

use anyhow::{Context as _, Result};
use clap::Args;
use perun_client::{Caller, Client};
use perun_core::{Digest, Name};
use serde::{Deserialize, Serialize};

use crate::home::Home;

/// Where the trust service is, as `perun remote add` saved it.
#[derive(Serialize, Deserialize)]
pub struct Remote {
    /// Base URL.
    pub url: String,
    /// The pinned certificate fingerprint.
    pub fingerprint: Digest,
    /// The service's audit signing key (Ed25519, standard base64), pinned when the
    /// remote was added: `perun audit verify` checks the chain against it, never against
    /// a key fetched anew.
    #[serde(default)]
    pub audit_key: String,
    /// More addresses of the same service (its replicas), tried in turn after `url`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub replicas: Vec<String>,
}

impl Remote {
    /// Every address of the service, `url` first.
    pub fn urls(&self) -> Vec<String> {
        std::iter::once(self.url.clone()).chain(self.replicas.iter().cloned()).collect()
    }
}

/// Where the saved remote is kept.
pub fn remote_file(home: &Home) -> PathBuf {
    home.root().join("remote.json")
}

/// The saved remote.
pub fn load_remote(home: &Home) -> Result<Remote> {
    let f = remote_file(home);
    let bytes = std::fs::read(&f).with_context(|| {
        format!("no trust service configured ({}): run `perun remote add URL --fingerprint ...`", f.display())
    })?;
    serde_json::from_slice(&bytes).with_context(|| format!("{} is not a remote", f.display()))
}

/// A client speaking as `who` (or anonymous).
pub fn client(home: &Home, who: Option<&Name>) -> Result<Client> {
    let r = load_remote(home)?;
    let caller = match who {
        Some(n) => {
            let keys = home.load_identity(n)?;
            Caller::Stakeholder { name: n.clone(), key: keys.signing_key().clone() }
        }
        None => Caller::Anonymous,
    };
    Ok(Client::replicated(&r.urls(), r.fingerprint, caller)?)
}

/// Who runs a command, and how it prints.
#[derive(Args)]
pub struct As {
    /// The identity to act as (see `perun id new`).
    #[arg(long = "as")]
    pub who: Name,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}
