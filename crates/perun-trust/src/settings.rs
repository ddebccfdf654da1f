//! The trust service's settings: one [`SettingsLayer`] shape for every source (defaults <
//! a TOML file < environment < flags, the layering of rust-keylime's agent), merged with
//! [`SettingsLayer::over`] and checked once by [`Settings::resolve`]. With the `clap`
//! feature the same struct is the flags of `perun serve` (each flag's help is the field's
//! doc below), so a setting is spelled once.

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::service::TrustConfig;
use crate::store::postgres::{describe, parse_url, DEFAULT_CONNECTIONS};
use crate::AnyStore;

/// A setting that cannot be used; each names the setting and what to give instead.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    /// A value outside its range.
    #[error("{name} = {value} is out of range: give {low} to {high}")]
    OutOfRange {
        /// The setting (`threads`, `limits.nonce_valid_s`...).
        name: &'static str,
        /// The value given.
        value: String,
        /// The lowest value accepted.
        low: String,
        /// The highest value accepted.
        high: String,
    },
    /// The file is not TOML of this shape (an unknown key, a value of the wrong type).
    #[error("not a perun serve configuration: {0}")]
    File(#[source] toml::de::Error),
    /// The file names a store URL with a password, or one that does not parse (and may).
    #[error(
        "`store` holds a password, or does not parse (and may hold one); give the URL in PERUN_STORE instead (a \
         file is read by more than this service, and copied)"
    )]
    PasswordInFile,
    /// The `/metrics` token is too short to be a secret.
    #[error("PERUN_METRICS_TOKEN must be at least 16 characters (e.g. `openssl rand -hex 16`), or unset to turn /metrics off")]
    MetricsToken,
}

/// One layer of settings (the defaults, a file, the environment and flags): every key
/// optional, none unknown. In a file, the keys are the flags' names with `_` for `-`,
/// `hosts` for `--host`, and `[limits]` (see `deploy/perun.toml`).
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[cfg_attr(feature = "clap", derive(clap::Args))]
#[serde(deny_unknown_fields)]
pub struct SettingsLayer {
    /// Folder of the service's state: `perun.db` (SQLite) and `keys/` (mode 0600), unless
    /// `--store` and `--keys` put them elsewhere. Default: `perun-trust`.
    #[cfg_attr(feature = "clap", arg(long))]
    pub data: Option<PathBuf>,
    /// The store: a PostgreSQL URL (`postgres://user:password@host/db`: replicas share it)
    /// or a SQLite file. Default: `DATA/perun.db`. Prefer the environment variable for a
    /// URL with a password: command lines are visible to every user of the host.
    #[cfg_attr(feature = "clap", arg(long, env = "PERUN_STORE", hide_env_values = true))]
    pub store: Option<String>,
    /// The CA certificate(s) (PEM) that signed the PostgreSQL server's certificate: the
    /// store is then reached over TLS, the server verified. Required for a server that is
    /// not on this machine, unless --store-plaintext.
    #[cfg_attr(feature = "clap", arg(long, env = "PERUN_STORE_CA"))]
    pub store_ca: Option<PathBuf>,
    /// Reach a PostgreSQL server on another machine without TLS (only on a network that
    /// no one but this service reaches: the store decides who may approve what).
    #[cfg_attr(feature = "clap", arg(long, num_args = 0..=1, default_missing_value = "true", value_name = "BOOL"))]
    pub store_plaintext: Option<bool>,
    /// PostgreSQL connections this process keeps, at most (default 8).
    #[cfg_attr(feature = "clap", arg(long))]
    pub store_connections: Option<u32>,
    /// Folder of the service's keys (TLS, audit signing, key wrapping), shared by every
    /// replica of one service. Default: `DATA/keys`, made on first start; a folder given
    /// here must hold keys already (see `--make-keys`).
    #[cfg_attr(feature = "clap", arg(long, env = "PERUN_KEYS"))]
    pub keys: Option<PathBuf>,
    /// Address to listen on (TLS). Default: `127.0.0.1:7443`.
    #[cfg_attr(feature = "clap", arg(long))]
    pub listen: Option<SocketAddr>,
    /// Extra host names or addresses for the service's certificate.
    #[cfg_attr(feature = "clap", arg(long = "host"))]
    pub hosts: Option<Vec<String>>,
    /// Runtime threads (default 2).
    #[cfg_attr(feature = "clap", arg(long))]
    pub threads: Option<usize>,
    /// Development only: registrations take effect at once, without admission (off by
    /// default: the operator admits each one with `--admit`, or a quorum of members).
    #[cfg_attr(
        feature = "clap",
        arg(long, env = "PERUN_OPEN_REGISTRATION", num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")
    )]
    pub open_registration: Option<bool>,
    /// Members' votes (`perun id admit`) that admit a pending registration; 0 (the
    /// default): only the operator admits.
    #[cfg_attr(feature = "clap", arg(long))]
    pub admission_quorum: Option<u32>,
    /// The release rule's clocks and the service's rate limits (a file's `[limits]` only).
    #[cfg_attr(feature = "clap", arg(skip))]
    pub limits: Option<Limits>,
}

/// `[limits]`: the intervals and rates of [`TrustConfig`], each optional.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// Seconds an attestation nonce stays valid (10 to 600; default 60).
    pub nonce_valid_s: Option<u64>,
    /// Seconds a credential challenge stays valid (10 to 3600; default 300).
    pub challenge_valid_s: Option<u64>,
    /// Extra seconds past twice a job's attestation interval before a missed attestation
    /// revokes it (0 to 600; default 5).
    pub attestation_grace_s: Option<u64>,
    /// Refusals of anonymous requests audited per minute (1 to 10000; default 60).
    pub anonymous_audits_per_minute: Option<u32>,
}

impl SettingsLayer {
    /// Reads a file's layer (TOML).
    ///
    /// Errors: [`SettingsError::File`] naming an unknown key or a bad value;
    /// [`SettingsError::PasswordInFile`] for a store URL with a password.
    pub fn from_toml(text: &str) -> Result<Self, SettingsError> {
        let layer: Self = toml::from_str(text).map_err(SettingsError::File)?;
        if let Some(store) = layer.store.as_deref().filter(|s| AnyStore::is_postgres(s)) {
            // A URL that does not parse may hold a password all the same: refused too.
            if parse_url(store).map_or(true, |c| c.get_password().is_some()) {
                return Err(SettingsError::PasswordInFile);
            }
        }
        Ok(layer)
    }

    /// This layer over `lower`: each key this layer sets wins (a flag over the file; a
    /// list of hosts replaces, it does not extend).
    pub fn over(self, lower: Self) -> Self {
        let limits = match (self.limits, lower.limits) {
            (Some(a), Some(b)) => Some(Limits {
                nonce_valid_s: a.nonce_valid_s.or(b.nonce_valid_s),
                challenge_valid_s: a.challenge_valid_s.or(b.challenge_valid_s),
                attestation_grace_s: a.attestation_grace_s.or(b.attestation_grace_s),
                anonymous_audits_per_minute: a.anonymous_audits_per_minute.or(b.anonymous_audits_per_minute),
            }),
            (a, b) => a.or(b),
        };
        Self {
            data: self.data.or(lower.data),
            store: self.store.or(lower.store),
            store_ca: self.store_ca.or(lower.store_ca),
            store_plaintext: self.store_plaintext.or(lower.store_plaintext),
            store_connections: self.store_connections.or(lower.store_connections),
            keys: self.keys.or(lower.keys),
            listen: self.listen.or(lower.listen),
            hosts: self.hosts.filter(|h| !h.is_empty()).or(lower.hosts),
            threads: self.threads.or(lower.threads),
            open_registration: self.open_registration.or(lower.open_registration),
            admission_quorum: self.admission_quorum.or(lower.admission_quorum),
            limits,
        }
    }
}

/// The settings in force: merged, defaults filled in, each checked. They serialize as a
/// layer with every key set (the shape of a file), the store's password never shown.
#[derive(Clone, Debug)]
pub struct Settings {
    /// See [`SettingsLayer::data`].
    pub data: PathBuf,
    /// See [`SettingsLayer::store`].
    pub store: Option<String>,
    /// See [`SettingsLayer::store_ca`].
    pub store_ca: Option<PathBuf>,
    /// See [`SettingsLayer::store_plaintext`].
    pub store_plaintext: bool,
    /// See [`SettingsLayer::store_connections`].
    pub store_connections: u32,
    /// See [`SettingsLayer::keys`].
    pub keys: Option<PathBuf>,
    /// See [`SettingsLayer::listen`].
    pub listen: SocketAddr,
    /// See [`SettingsLayer::hosts`].
    pub hosts: Vec<String>,
    /// See [`SettingsLayer::threads`].
    pub threads: usize,
    /// The service's own configuration: the limits, registration (`open_registration`,
    /// `admission_quorum`), the `/metrics` token.
    pub trust: TrustConfig,
}

fn within<T: PartialOrd + std::fmt::Display>(name: &'static str, v: T, lo: T, hi: T) -> Result<T, SettingsError> {
    if v >= lo && v <= hi {
        Ok(v)
    } else {
        Err(SettingsError::OutOfRange { name, value: v.to_string(), low: lo.to_string(), high: hi.to_string() })
    }
}

impl Settings {
    /// The settings of `layer` (all layers merged) with the defaults under it, and the
    /// `/metrics` token (`PERUN_METRICS_TOKEN`, read by the caller), checked.
    ///
    /// Errors: [`SettingsError::OutOfRange`] naming the setting and its range;
    /// [`SettingsError::MetricsToken`] for a token under 16 characters.
    pub fn resolve(layer: SettingsLayer, metrics_token: Option<&str>) -> Result<Self, SettingsError> {
        let l = layer.limits.unwrap_or_default();
        let d = TrustConfig::default();
        let metrics_token = match metrics_token {
            Some(t) if t.len() < 16 => return Err(SettingsError::MetricsToken),
            Some(t) => Some(perun_core::Digest::of(t.as_bytes())),
            None => None,
        };
        let trust = TrustConfig {
            nonce_valid_s: within("limits.nonce_valid_s", l.nonce_valid_s.unwrap_or(d.nonce_valid_s), 10, 600)?,
            challenge_valid_s: within(
                "limits.challenge_valid_s",
                l.challenge_valid_s.unwrap_or(d.challenge_valid_s),
                10,
                3600,
            )?,
            attestation_grace_s: within(
                "limits.attestation_grace_s",
                l.attestation_grace_s.unwrap_or(d.attestation_grace_s),
                0,
                600,
            )?,
            anonymous_audits_per_minute: within(
                "limits.anonymous_audits_per_minute",
                l.anonymous_audits_per_minute.unwrap_or(d.anonymous_audits_per_minute),
                1,
                10_000,
            )?,
            metrics_token,
            open_registration: layer.open_registration.unwrap_or(d.open_registration),
            admission_quorum: within("admission_quorum", layer.admission_quorum.unwrap_or(d.admission_quorum), 0, 64)?,
        };
        Ok(Self {
            data: layer.data.unwrap_or_else(|| PathBuf::from("perun-trust")),
            store: layer.store,
            store_ca: layer.store_ca,
            store_plaintext: layer.store_plaintext.unwrap_or(false),
            store_connections: within(
                "store_connections",
                layer.store_connections.unwrap_or(DEFAULT_CONNECTIONS),
                1,
                1024,
            )?,
            keys: layer.keys,
            listen: layer.listen.unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 7443))),
            hosts: layer.hosts.unwrap_or_default(),
            threads: within("threads", layer.threads.unwrap_or(2), 1, 256)?,
            trust,
        })
    }

    /// Where these settings are weaker than the defaults, each in words: an operator may
    /// mean it, but nobody should find out from an incident. Empty for the defaults.
    pub fn weaker_than_default(&self) -> Vec<String> {
        let d = TrustConfig::default();
        let mut weaker = Vec::new();
        if self.store_plaintext {
            weaker.push("store_plaintext: the store is reached without TLS".to_owned());
        }
        if self.trust.open_registration {
            weaker.push(
                "open_registration: anyone who reaches the service becomes a member with the roles it asks for \
                 (development only)"
                    .to_owned(),
            );
        }
        let longer = [
            ("limits.nonce_valid_s", self.trust.nonce_valid_s, d.nonce_valid_s),
            ("limits.challenge_valid_s", self.trust.challenge_valid_s, d.challenge_valid_s),
            ("limits.attestation_grace_s", self.trust.attestation_grace_s, d.attestation_grace_s),
        ];
        for (name, now, default) in longer {
            if now > default {
                weaker.push(format!("{name} = {now} (default {default})"));
            }
        }
        weaker
    }
}

impl Serialize for Settings {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let t = &self.trust;
        SettingsLayer {
            data: Some(self.data.clone()),
            store: self.store.as_deref().map(shown_store),
            store_ca: self.store_ca.clone(),
            store_plaintext: Some(self.store_plaintext),
            store_connections: Some(self.store_connections),
            keys: self.keys.clone(),
            listen: Some(self.listen),
            hosts: Some(self.hosts.clone()),
            threads: Some(self.threads),
            open_registration: Some(t.open_registration),
            admission_quorum: Some(t.admission_quorum),
            // The metrics token is never shown.
            limits: Some(Limits {
                nonce_valid_s: Some(t.nonce_valid_s),
                challenge_valid_s: Some(t.challenge_valid_s),
                attestation_grace_s: Some(t.attestation_grace_s),
                anonymous_audits_per_minute: Some(t.anonymous_audits_per_minute),
            }),
        }
        .serialize(s)
    }
}

/// A store as the settings show it: a SQLite path as it is; a PostgreSQL URL (any form,
/// `key=value` too) as user, hosts, ports and database only, never its password.
fn shown_store(spec: &str) -> String {
    if !AnyStore::is_postgres(spec) {
        return spec.to_owned();
    }
    match parse_url(spec) {
        Ok(config) => format!("{} (password not shown)", describe(&config)),
        Err(_) => "a PostgreSQL URL that does not parse (not shown: it may hold a password)".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolve(layer: SettingsLayer) -> Result<Settings, SettingsError> {
        Settings::resolve(layer, None)
    }

    #[test]
    fn a_layer_overrides_the_one_under_it_which_overrides_the_defaults() {
        let none = resolve(SettingsLayer::default()).unwrap();
        assert_eq!((none.listen.port(), none.threads, none.trust.nonce_valid_s), (7443, 2, 60));
        assert_eq!(none.data, PathBuf::from("perun-trust"));
        assert!(none.weaker_than_default().is_empty());

        let f = "listen = \"127.0.0.1:9000\"\nthreads = 4\ndata = \"/srv/perun\"\n[limits]\nnonce_valid_s = 30\n";
        let file = SettingsLayer::from_toml(f).unwrap();
        let from_file = resolve(file.clone()).unwrap();
        assert_eq!((from_file.listen.port(), from_file.threads, from_file.trust.nonce_valid_s), (9000, 4, 30));
        assert_eq!(from_file.data, PathBuf::from("/srv/perun"));

        let flags = SettingsLayer {
            listen: Some("127.0.0.1:9100".parse().unwrap()),
            threads: Some(3),
            limits: Some(Limits { challenge_valid_s: Some(20), ..Limits::default() }),
            ..SettingsLayer::default()
        };
        let both = resolve(flags.over(file)).unwrap();
        assert_eq!((both.listen.port(), both.threads, both.trust.nonce_valid_s), (9100, 3, 30));
        assert_eq!(both.trust.challenge_valid_s, 20);
    }

    #[test]
    fn unknown_keys_and_values_out_of_range_are_refused_naming_them() {
        let e = SettingsLayer::from_toml("listen = \"127.0.0.1:9000\"\nlisten_port = 1\n").unwrap_err();
        assert!(e.to_string().contains("listen_port"), "{e}");
        let e = SettingsLayer::from_toml("[limits]\nnonce_valid = 1\n").unwrap_err();
        assert!(e.to_string().contains("nonce_valid"), "{e}");
        let e = resolve(SettingsLayer::from_toml("[limits]\nnonce_valid_s = 0\n").unwrap()).unwrap_err();
        assert!(e.to_string().contains("limits.nonce_valid_s = 0 is out of range"), "{e}");
        let e = resolve(SettingsLayer { threads: Some(0), ..SettingsLayer::default() }).unwrap_err();
        assert!(e.to_string().contains("threads = 0"), "{e}");
        assert!(matches!(Settings::resolve(SettingsLayer::default(), Some("short")), Err(SettingsError::MetricsToken)));
    }

    #[test]
    fn the_settings_shown_hide_a_store_password_and_a_file_may_not_hold_one() {
        for url in [
            "postgres://perun:s3cret@db/perun",
            "postgres://perun@db/perun?password=s3cret",
            "host=db user=perun password=s3cret dbname=perun",
            "application_name=perun password=s3cret host=db user=perun dbname=perun",
        ] {
            let s = resolve(SettingsLayer { store: Some(url.into()), ..SettingsLayer::default() }).unwrap();
            let shown = toml::to_string(&s).unwrap();
            assert!(!shown.contains("s3cret"), "{shown}");
            assert!(shown.contains("postgres://perun@db") && shown.contains("/perun (password not shown)"), "{shown}");
        }
        for store in [
            "postgres://perun:s3cret@db/perun",
            "postgres://perun:s3cret@db:99999/perun",
            "connect_timeout=5 password=s3cret",
        ] {
            let e = SettingsLayer::from_toml(&format!("store = \"{store}\"\n")).unwrap_err();
            assert!(matches!(e, SettingsError::PasswordInFile), "{store}: {e}");
        }
    }

    #[test]
    fn weaker_settings_are_named() {
        let layer = SettingsLayer::from_toml(
            "store_plaintext = true\nopen_registration = true\n[limits]\nnonce_valid_s = 120\n",
        )
        .unwrap();
        let weaker = resolve(layer).unwrap().weaker_than_default();
        assert_eq!(weaker.len(), 3, "{weaker:?}");
        assert!(weaker[2].contains("limits.nonce_valid_s = 120 (default 60)"), "{weaker:?}");
    }
}
