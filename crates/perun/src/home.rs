//! Where a stakeholder's identities and asset keys live on disk.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _, Result};
use perun_core::Name;
use perun_seal::StakeholderKeys;

/// The Perun home folder: `identities/<name>/` holds each identity's keys, and
/// `identities/<name>/assets/` the keys of the assets it sealed.
pub struct Home {
    root: PathBuf,
}

impl Home {
    /// `--home`, else `$PERUN_HOME` (both via clap), else `~/.perun`.
    pub fn resolve(explicit: Option<PathBuf>) -> Self {
        let root = explicit.unwrap_or_else(|| {
            std::env::var_os("HOME").map_or_else(|| PathBuf::from(".perun"), |h| PathBuf::from(h).join(".perun"))
        });
        Self { root }
    }

    /// A home at an explicit folder.
    #[cfg_attr(not(any(feature = "demo", feature = "bench")), allow(dead_code))]
    pub fn at(root: &Path) -> Self {
        Self { root: root.to_owned() }
    }

    /// The home folder itself.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The folder of one identity.
    pub fn identity_dir(&self, name: &Name) -> PathBuf {
        self.root.join("identities").join(name.as_str())
    }

    /// The folder of the asset keys an identity made.
    pub fn asset_key_dir(&self, name: &Name) -> PathBuf {
        self.identity_dir(name).join("assets")
    }

    /// Loads an identity's keys, with advice when it does not exist.
    pub fn load_identity(&self, name: &Name) -> Result<StakeholderKeys> {
        let dir = self.identity_dir(name);
        if !dir.exists() {
            bail!("no identity `{name}` in {}: create it with `perun id new {name}`", self.root.display());
        }
        StakeholderKeys::load(&dir).with_context(|| format!("loading identity `{name}`"))
    }
}
