//! Names of stakeholders and assets, and the kinds of asset.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::CoreError;

/// A stakeholder or asset name: 1 to 64 characters of `a-z`, `0-9`, `-`, `_`, `.`,
/// starting with a letter or digit. Safe to use as a file name.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Name(String);

impl Name {
    /// Checks and wraps a name.
    pub fn new(s: &str) -> Result<Self, CoreError> {
        let err = |why| CoreError::InvalidName { name: s.chars().take(80).collect(), why };
        if s.is_empty() || s.len() > 64 {
            return Err(err("must be 1 to 64 characters"));
        }
        if !s.chars().next().is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit()) {
            return Err(err("must start with a lower-case letter or a digit"));
        }
        if !s.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '_' | '.')) {
            return Err(err("may hold only a-z, 0-9, '-', '_' and '.'"));
        }
        Ok(Self(s.to_owned()))
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl FromStr for Name {
    type Err = CoreError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}

impl Serialize for Name {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Name {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::new(&s).map_err(serde::de::Error::custom)
    }
}

/// What a stakeholder does in a job, as its registration declares and the trust
/// service checks (docs/architecture.md, section 1): only a data owner registers data sets, only a
/// model owner models, only an infrastructure provider enrols workers and publishes
/// platform and TEE policies, only a receiver receives outputs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    /// Owns data sets.
    DataOwner,
    /// Owns models (architecture, weights, recipe).
    ModelOwner,
    /// Runs the machines: enrols workers, publishes policies.
    Provider,
    /// Receives a job's outputs.
    Receiver,
}

impl Role {
    /// Every role.
    pub const ALL: [Role; 4] = [Role::DataOwner, Role::ModelOwner, Role::Provider, Role::Receiver];

    /// The text form (`data-owner`, `model-owner`, `provider`, `receiver`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::DataOwner => "data-owner",
            Self::ModelOwner => "model-owner",
            Self::Provider => "provider",
            Self::Receiver => "receiver",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Role {
    type Err = CoreError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL.into_iter().find(|r| r.as_str() == s).ok_or_else(|| CoreError::UnknownRole(s.to_owned()))
    }
}

/// What a sealed asset holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AssetKind {
    /// A data set container (`safetensors` with `features` and `labels`).
    Dataset,
    /// A model: a JSON spec, optionally with initial weights.
    Model,
    /// The output of a job (trained weights, predictions).
    Output,
}

impl AssetKind {
    /// The lower-case text form.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Dataset => "dataset",
            Self::Model => "model",
            Self::Output => "output",
        }
    }
}

impl fmt::Display for AssetKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for AssetKind {
    type Err = CoreError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "dataset" => Ok(Self::Dataset),
            "model" => Ok(Self::Model),
            "output" => Ok(Self::Output),
            other => Err(CoreError::UnknownAssetKind(other.chars().take(40).collect())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_rule() {
        for ok in ["hospital-a", "a", "model_owner.2", "0x"] {
            assert!(Name::new(ok).is_ok(), "{ok} refused");
        }
        for bad in ["", "Hospital", "-a", "a/b", "../x", "a b", &"a".repeat(65)] {
            assert!(Name::new(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn asset_kinds_round_trip() {
        for k in [AssetKind::Dataset, AssetKind::Model, AssetKind::Output] {
            assert_eq!(k.as_str().parse::<AssetKind>(), Ok(k));
        }
        assert!("weights".parse::<AssetKind>().is_err());
    }
}
