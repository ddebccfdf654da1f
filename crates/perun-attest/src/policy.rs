//! Platform policies (reference values for `attested` mode) and verdicts.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::bootlog::BootReference;
use crate::ek::EkPolicy;
use crate::ima::Entry;
use crate::tpm::PcrBank;
use crate::AttestError;

/// The PCRs measured boot extends (firmware, boot loader, kernel, initrd, command line):
/// a policy must pin every one, and IMA's `boot_aggregate` is SHA-256 over them.
pub const BOOT_PCRS: std::ops::RangeInclusive<u32> = 0..=9;

pub use perun_proto::evidence::USER_SPACE_MARKER;

/// The policy schema this build reads. Schema 2 pins the EK roots and measured boot;
/// schema 1 policies did neither and are refused.
pub const POLICY_SCHEMA: u32 = 2;

/// Reference values a worker's evidence must meet.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlatformPolicy {
    /// Schema version ([`POLICY_SCHEMA`]).
    pub schema: u32,
    /// A human-readable name.
    pub name: String,
    /// Which TPMs are genuine: the EK CA roots a worker's EK certificate must chain to.
    /// Empty accepts no TPM.
    #[serde(default)]
    pub ek: EkPolicy,
    /// Required SHA-256 values of the boot PCRs (index to hex): every PCR of
    /// [`BOOT_PCRS`] must be pinned.
    #[serde(default)]
    pub required_pcrs: BTreeMap<u32, String>,
    /// The reference machine's measured-boot events per PCR (from its TCG2 event log):
    /// a worker's log is compared with them to name what differs.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub boot_events: BootReference,
    /// The kernel command line the reference machine booted, as text, proven by an
    /// event of `boot_events` whose digest is its measurement
    /// ([`crate::bootlog::cmdline_measurements`]): what shows approvers that the kernel runs
    /// with an IMA policy (`ima_policy=`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kernel_cmdline: Option<String>,
    /// File digests allowed at any path (`sha256:hex`).
    #[serde(default)]
    pub allowed_digests: BTreeSet<String>,
    /// Allowed digests per path.
    #[serde(default)]
    pub allowed_files: BTreeMap<String, BTreeSet<String>>,
    /// Path prefixes whose measurements are not checked.
    #[serde(default)]
    pub excludes: Vec<String>,
    /// The `perun` worker binary's digest (`sha256:hex`), which must be measured.
    #[serde(default)]
    pub worker_binary: Option<String>,
    /// Whether evidence from the user-space IMA measurer (no kernel IMA) is acceptable.
    /// Off by default: that evidence is for development only.
    #[serde(default)]
    pub accept_user_space_ima: bool,
    /// The IMA policy the worker's kernel must run: a custom policy file, loaded by its
    /// path from the measured initramfs (`echo PATH > /sys/kernel/security/ima/policy`),
    /// which the built-in policy measures (`func=POLICY_CHECK`). See [`ImaPolicyPin`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ima_policy: Option<ImaPolicyPin>,
}

/// A custom IMA policy pinned by its path, its digest, and where its load stands in the
/// log.
///
/// What the kernel's IMA log proves is only what its IMA policy measures (Linux,
/// `Documentation/ABI/testing/ima_policy`): the built-in `tcb` policy does not measure
/// `tmpfs`, and the first write to `/sys/kernel/security/ima/policy` replaces it. A kernel
/// built without `CONFIG_IMA_WRITE_POLICY` (Debian's) takes one write only and then
/// removes the file; written as a path, the policy file is measured under the built-in
/// policy's `POLICY_CHECK` rule. An entry of the file proves nothing alone (an `ima-ng`
/// entry does not say which hook measured it: root reading the file under `tcb` makes the
/// same entry), so the pin holds the log as the reference boot began it: the entries
/// between `boot_aggregate` and the load (`prelude`: the measured initramfs's init and
/// what it ran, which nobody but that pinned initramfs controls), then the load. A worker's
/// log must begin exactly so; then the pinned policy is the one in force, and nothing
/// replaced it. The kernel (and so its configuration) is pinned by the boot PCRs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImaPolicyPin {
    /// The policy file's path as the kernel records it (`/etc/ima/ima-policy`).
    pub path: String,
    /// Its digest (`sha256:hex`).
    pub digest: String,
    /// The reference log's entries between `boot_aggregate` and the load, as
    /// `(path, digest)`.
    #[serde(default)]
    pub prelude: Vec<(String, String)>,
}

/// Templates whose entries are file measurements (an `ima-buf` entry measures a buffer
/// under a name of the caller's choice; the legacy `ima` template is SHA-1 only).
const FILE_TEMPLATES: [&str; 5] = ["ima-ng", "ima-ngv2", "ima-sig", "ima-sigv2", "ima-modsig"];

impl ImaPolicyPin {
    /// Pins the policy file `bytes` at `path`, with the prelude the reference `log` (its
    /// first round, from `boot_aggregate`) shows before its load.
    ///
    /// Errors: [`AttestError::Policy`] when the reference log never loads that policy.
    pub fn from_reference(path: &str, bytes: &[u8], log: &[Entry]) -> Result<Self, AttestError> {
        let digest = format!("sha256:{}", perun_core::Digest::of(bytes).to_hex());
        let at = log
            .iter()
            .position(|e| e.path == path && e.file_digest.to_text() == digest)
            .filter(|&i| i >= 1)
            .ok_or_else(|| {
                AttestError::Policy(format!(
                    "the reference boot's IMA log never loads the IMA policy {path} ({digest}): boot the reference \
                     machine with its initramfs loading it (`echo {path} > /sys/kernel/security/ima/policy`)"
                ))
            })?;
        let prelude = log[1..at].iter().map(|e| (e.path.clone(), e.file_digest.to_text())).collect();
        Ok(Self { path: path.to_owned(), digest, prelude })
    }

    /// Why the first round of a log (from `boot_aggregate`) does not begin as pinned.
    fn check_start(&self, entries: &[Entry]) -> Option<String> {
        let load = 1 + self.prelude.len();
        for (i, (path, digest)) in self.prelude.iter().enumerate() {
            let Some(e) = entries.get(i + 1) else {
                return Some("the log ends before the pinned IMA policy's load".into());
            };
            if e.violation || &e.path != path || &e.file_digest.to_text() != digest {
                return Some(format!(
                    "entry {} is {} ({}), where the reference boot measured {path} ({digest}) before loading its \
                     IMA policy",
                    i + 1,
                    e.path,
                    e.file_digest.to_text()
                ));
            }
        }
        match entries.get(load) {
            Some(e)
                if !e.violation
                    && FILE_TEMPLATES.contains(&e.template.as_str())
                    && e.path == self.path
                    && e.file_digest.to_text() == self.digest =>
            {
                None
            }
            _ => Some(format!("entry {load} is not the load of the pinned IMA policy {} ({})", self.path, self.digest)),
        }
    }
}

/// Whether `path` lies under the exclude `prefix`, by whole path components (`/tmp`
/// covers `/tmp/x`, not `/tmpfoo`).
fn excluded(path: &str, prefix: &str) -> bool {
    // `from_json` refuses relative excludes; one built in code that is not absolute
    // excludes nothing.
    if !prefix.starts_with('/') {
        return false;
    }
    let prefix = prefix.trim_end_matches('/');
    path == prefix || path.strip_prefix(prefix).is_some_and(|rest| rest.starts_with('/'))
}

pub use perun_proto::verdict::Failure;

impl PlatformPolicy {
    /// Parses and checks a policy.
    pub fn from_json(bytes: &[u8]) -> Result<Self, AttestError> {
        #[derive(Deserialize)]
        struct Schema {
            schema: u32,
        }
        if let Ok(Schema { schema: 1 }) = serde_json::from_slice::<Schema>(bytes) {
            return Err(AttestError::Policy(
                "schema 1 policies pin neither the TPM's EK roots nor what booted: generate the policy again \
                 with `perun policy generate` (--ek-roots, --boot-pcrs or --bundle)"
                    .into(),
            ));
        }
        let p: Self = serde_json::from_slice(bytes).map_err(|e| AttestError::Policy(e.to_string()))?;
        if p.schema != POLICY_SCHEMA {
            return Err(AttestError::Policy(format!(
                "schema {} is not supported (expected {POLICY_SCHEMA})",
                p.schema
            )));
        }
        for (i, v) in &p.required_pcrs {
            if *i > 23 || v.len() != 64 || hex::decode(v).is_err() {
                return Err(AttestError::Policy(format!(
                    "required PCR {i}: expected an index 0..23 and 64 hex digits"
                )));
            }
        }
        p.ek.check()?;
        if let Some(x) = p.excludes.iter().find(|x| !x.starts_with('/') || x.split('/').any(|c| c == "." || c == ".."))
        {
            return Err(AttestError::Policy(format!(
                "exclude `{x}`: an exclude is an absolute path without `.` or `..` (`/var/log`), matched by whole \
                 path components"
            )));
        }
        if p.boot_events.values().flatten().any(|e| !e.text.is_empty()) {
            return Err(AttestError::Policy(
                "boot_events carry event types and digests only (texts are not covered by the digests)".into(),
            ));
        }
        if let Some(c) = &p.kernel_cmdline {
            if !p.cmdline_measured(c) {
                return Err(AttestError::Policy(format!(
                    "kernel_cmdline `{c}`: no event of boot_events (PCR 8 or 9) is its measurement"
                )));
            }
        }
        Ok(p)
    }

    /// The trust anchors this policy lacks, each as what to add: a policy that lacks any
    /// refuses every worker ([`Self::check_pcrs`], [`Self::check_entries`], the EK check).
    /// Empty for a complete policy.
    pub fn missing_anchors(&self) -> Vec<&'static str> {
        let mut out = Vec::new();
        if self.ek.roots.is_empty() {
            out.push("the TPMs it trusts (--ek-roots hardware, or --ek-ca FILE)");
        }
        if BOOT_PCRS.clone().any(|i| !self.required_pcrs.contains_key(&i)) {
            out.push("what booted (--bundle FILE, --boot-log FILE or --boot-pcrs FILE)");
        }
        if self.worker_binary.is_none() {
            out.push("the approved worker binary (--worker-binary FILE), whose measurement proves IMA ran");
        }
        out
    }

    /// Whether an event of the boot references (PCR 8 or 9) measured `cmdline`.
    pub fn cmdline_measured(&self, cmdline: &str) -> bool {
        crate::bootlog::cmdline_measurements(cmdline).iter().any(|(pcr, ty, digest)| {
            self.boot_events
                .get(pcr)
                .is_some_and(|events| events.iter().any(|e| e.event_type == *ty && e.sha256 == *digest))
        })
    }

    /// What in this policy accepts development evidence, in words for approvers: a
    /// TPM vouched for by a CA outside the shipped manufacturers' bundle (a local
    /// development CA), the user-space IMA measurer. Empty for a production policy.
    pub fn development(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.ek.trusts_outside_bundle() {
            out.push(
                "it trusts EK certificates from a CA outside the shipped TPM manufacturers' bundle \
                 (a local development CA such as swtpm-localca, or an operator's own): software TPMs can pass"
                    .to_owned(),
            );
        }
        if self.accept_user_space_ima {
            out.push(
                "it accepts the user-space IMA measurer: the host's root can write any measurement log".to_owned(),
            );
        } else if !self.kernel_cmdline.as_deref().is_some_and(crate::bootlog::cmdline_measures_what_runs) {
            out.push(
                "nothing shows that the kernel runs an IMA policy (no measured kernel command line with ima_policy=tcb): \
                 the host's root could extend PCR 10 with any log (pin it with `perun policy generate --kernel-cmdline`)"
                    .to_owned(),
            );
        } else if !self.kernel_cmdline.as_deref().is_some_and(|c| {
            crate::bootlog::kernel_params(c).iter().any(|(n, v)| n == "lockdown" && v == "confidentiality")
        }) {
            out.push(
                "its kernel command line does not set lockdown=confidentiality: the host's root can read kernel \
                 memory, and the worker's through it (/dev/mem, /proc/kcore, kprobes, eBPF), and load unsigned \
                 modules"
                    .to_owned(),
            );
        }
        if !self.accept_user_space_ima && self.ima_policy.is_none() {
            out.push(
                "it pins no IMA policy: the kernel's built-in `tcb` policy does not measure programs run from tmpfs, \
                 and root can replace it, so the host's root can run code nobody measured (pin a custom policy \
                 loaded from the measured initramfs: `perun policy generate --ima-policy FILE`)"
                    .to_owned(),
            );
        }
        if self.excludes.iter().any(|x| x.trim_end_matches('/').matches('/').count() < 2) {
            out.push(
                "an exclude covers a whole top-level folder or more (`/`, `/usr`...): IMA measurements there are not \
                 checked"
                    .to_owned(),
            );
        }
        out
    }

    /// Pins the boot PCRs to `pcrs` (the SHA-256 bank of a reference machine).
    pub fn pin_boot_pcrs(&mut self, pcrs: &PcrBank) -> Result<(), AttestError> {
        for i in BOOT_PCRS {
            let v = pcrs.values.get(&i).ok_or_else(|| AttestError::Policy(format!("PCR {i} was not given")))?;
            self.required_pcrs.insert(i, hex::encode(v));
        }
        Ok(())
    }

    /// The policy's digest (SHA-256 of its canonical JSON), which manifests name.
    pub fn digest(&self) -> perun_core::Digest {
        perun_core::Digest::of(&serde_json::to_vec(self).unwrap_or_default())
    }

    /// Checks boot PCR values (already proven by a quote).
    pub fn check_pcrs(&self, pcrs: &PcrBank) -> Vec<Failure> {
        let mut out = Vec::new();
        let unpinned: Vec<String> =
            BOOT_PCRS.filter(|i| !self.required_pcrs.contains_key(i)).map(|i| i.to_string()).collect();
        if !unpinned.is_empty() {
            out.push(Failure::new(format!(
                "the policy does not pin boot PCR(s) {}: it cannot tell what booted (generate it with --boot-pcrs or --bundle)",
                unpinned.join(", ")
            )));
        }
        for (i, want) in &self.required_pcrs {
            match pcrs.values.get(i) {
                None => out.push(Failure::new(format!("PCR {i} is required but was not quoted"))),
                Some(v) if hex::encode(v) != *want => {
                    out.push(Failure::new(format!("PCR {i} is {} but the policy requires {want}", hex::encode(v))))
                }
                Some(_) => {}
            }
        }
        out
    }

    /// Checks measured entries (already proven by replay). `first_round` is true when
    /// the entries start at the beginning of the log, where the worker binary must be.
    pub fn check_entries(&self, entries: &[Entry], first_round: bool) -> Vec<Failure> {
        let mut out = Vec::new();
        let mut saw_worker = false;
        // The pinned IMA policy's load stands where the reference boot put it; a later
        // entry of the same file (root reading it) is any file's entry.
        let pinned_load = match (first_round, &self.ima_policy) {
            (true, Some(pin)) if !entries.iter().any(|e| e.path == USER_SPACE_MARKER) => {
                match pin.check_start(entries) {
                    Some(why) => {
                        out.push(Failure {
                            path: Some(pin.path.clone()),
                            digest: Some(pin.digest.clone()),
                            why: format!(
                                "the pinned IMA policy was never loaded as the reference boot loaded it ({why}): the \
                                 kernel ran another IMA policy (or the built-in one, which does not measure tmpfs), \
                                 so what ran unmeasured cannot be ruled out"
                            ),
                        });
                        None
                    }
                    None => Some(1 + pin.prelude.len()),
                }
            }
            _ => None,
        };
        for (i, e) in entries.iter().enumerate() {
            let digest = e.file_digest.to_text();
            let digest = digest.as_str();
            if Some(i) == pinned_load {
                continue;
            }
            if e.violation {
                out.push(Failure {
                    path: Some(e.path.clone()),
                    digest: None,
                    why: "IMA violation: measured while open for writing".into(),
                });
                continue;
            }
            if e.path == USER_SPACE_MARKER {
                if !self.accept_user_space_ima {
                    out.push(Failure::new(
                        "evidence comes from the user-space IMA measurer (no kernel IMA); this policy does not accept it",
                    ));
                }
                continue;
            }
            if self.worker_binary.as_deref() == Some(digest) {
                saw_worker = true;
            }
            // Only the log's first entry is IMA's boot_aggregate; an entry of that name
            // anywhere else (an `ima-buf` key or buffer so named) is checked like any.
            let boot_aggregate = first_round && i == 0 && e.path == "boot_aggregate";
            if boot_aggregate || self.excludes.iter().any(|x| excluded(&e.path, x)) {
                continue;
            }
            let allowed = self.allowed_digests.contains(digest)
                || self.allowed_files.get(&e.path).is_some_and(|set| set.contains(digest));
            if !allowed {
                let why = if self.allowed_files.contains_key(&e.path) {
                    "digest not allowed for this path"
                } else {
                    "file not in the policy"
                };
                out.push(Failure { path: Some(e.path.clone()), digest: Some(digest.to_owned()), why: why.into() });
            }
        }
        if first_round && !saw_worker {
            match &self.worker_binary {
                Some(w) => out.push(Failure {
                    path: None,
                    digest: Some(w.clone()),
                    why: "the approved worker binary was not measured: IMA did not measure what runs".into(),
                }),
                None => out.push(Failure::new(
                    "the policy names no worker binary: without that required measurement a kernel running \
                     without the IMA policy would pass",
                )),
            }
        }
        out
    }

    /// Checks IMA's `boot_aggregate` (the log's first entry) against the quoted boot
    /// PCRs: it must be SHA-256 over PCRs 0-9 of the SHA-256 bank, concatenated in
    /// order, as Linux 5.8 and later compute it on a TPM 2.0
    /// (`security/integrity/ima/ima_crypto.c`, `ima_calc_boot_aggregate`). The proof
    /// that the log belongs to this boot of this machine.
    pub fn check_boot_aggregate(entries: &[Entry], pcrs: &PcrBank) -> Vec<Failure> {
        let Some(first) = entries.first().filter(|e| e.path == "boot_aggregate") else {
            return vec![Failure::new("the IMA log does not start with boot_aggregate")];
        };
        let mut h = Sha256::new();
        for i in BOOT_PCRS {
            match pcrs.values.get(&i) {
                Some(v) => h.update(v),
                None => return vec![Failure::new(format!("the quote does not cover boot PCR {i}"))],
            }
        }
        let want = format!("sha256:{}", hex::encode(h.finalize()));
        let got = first.file_digest.to_text();
        if first.file_digest.algorithm == "sha1" {
            return vec![Failure {
                path: Some("boot_aggregate".into()),
                digest: Some(got),
                why: "boot_aggregate is SHA-1: the kernel's IMA hash is SHA-1 (booted with `ima_hash=sha1`, or built \
                      with it as the default), or the kernel is older than 5.8, which computed it from the SHA-1 bank \
                      over PCRs 0-7 alone; either way it does not cover PCRs 8-9 (the kernel command line). Perun \
                      requires SHA-256 over PCRs 0-9: boot Linux 5.8 or later with `ima_hash=sha256`"
                    .into(),
            }];
        }
        if got != want {
            return vec![Failure {
                path: Some("boot_aggregate".into()),
                digest: Some(got),
                why: format!(
                    "boot_aggregate is not SHA-256 over the quoted PCRs 0-9 ({want}): the log is from another boot or machine"
                ),
            }];
        }
        Vec::new()
    }

    /// A policy that allows every regular file under `root`, by path as the measured
    /// system would see it (`root` becomes `/`).
    pub fn from_tree(name: &str, root: &Path) -> Result<Self, AttestError> {
        let mut files = BTreeMap::new();
        let mut stack = vec![root.to_path_buf()];
        while let Some(dir) = stack.pop() {
            let rd = std::fs::read_dir(&dir).map_err(|e| AttestError::Policy(format!("{}: {e}", dir.display())))?;
            for entry in rd {
                let entry = entry.map_err(|e| AttestError::Policy(e.to_string()))?;
                let ty = entry.file_type().map_err(|e| AttestError::Policy(e.to_string()))?;
                let p = entry.path();
                if ty.is_dir() {
                    stack.push(p);
                } else if ty.is_file() {
                    let bytes = std::fs::read(&p).map_err(|e| AttestError::Policy(format!("{}: {e}", p.display())))?;
                    let rel = p.strip_prefix(root).map_err(|e| AttestError::Policy(e.to_string()))?;
                    let digest = format!("sha256:{}", hex::encode(Sha256::digest(&bytes)));
                    use std::os::unix::ffi::OsStrExt as _;
                    let path = [b"/", rel.as_os_str().as_bytes()].concat();
                    files.insert(crate::ima::path_text(&path), BTreeSet::from([digest]));
                }
            }
        }
        Ok(Self { schema: POLICY_SCHEMA, name: name.into(), allowed_files: files, ..Self::default() })
    }

    /// A policy that allows exactly what an observed log measured.
    pub fn from_log(name: &str, entries: &[Entry]) -> Self {
        let mut files: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        let mut user_space = false;
        let first_is_aggregate = entries.first().is_some_and(|e| e.path == "boot_aggregate");
        for e in entries.iter().skip(usize::from(first_is_aggregate)).filter(|e| !e.violation) {
            if e.path == USER_SPACE_MARKER {
                user_space = true;
                continue;
            }
            files.entry(e.path.clone()).or_default().insert(e.file_digest.to_text());
        }
        Self {
            schema: POLICY_SCHEMA,
            name: name.into(),
            allowed_files: files,
            accept_user_space_ima: user_space,
            ..Self::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdicts_name_every_failing_entry() {
        let ok = Entry::ima_ng("/usr/bin/perun", "sha256", &[1; 32]);
        let policy = PlatformPolicy::from_log("p", std::slice::from_ref(&ok));
        assert!(policy.check_entries(std::slice::from_ref(&ok), false).is_empty());
        // On the first round a policy must name the worker binary that proves IMA measured.
        assert_eq!(policy.check_entries(std::slice::from_ref(&ok), true).len(), 1);
        let stranger = Entry::ima_ng("/tmp/exfiltrate", "sha256", &[2; 32]);
        let swapped = Entry::ima_ng("/usr/bin/perun", "sha256", &[3; 32]);
        let f = policy.check_entries(&[ok, stranger, swapped], false);
        assert_eq!(f.len(), 2);
        assert_eq!(f[0].path.as_deref(), Some("/tmp/exfiltrate"));
        assert_eq!(f[0].why, "file not in the policy");
        assert_eq!(f[1].why, "digest not allowed for this path");
        // Only the log's first entry may be boot_aggregate: one later in the log (or in a
        // later round) is checked like any other entry.
        let aggregate = Entry::ima_ng("boot_aggregate", "sha256", &[4; 32]);
        let ok = Entry::ima_ng("/usr/bin/perun", "sha256", &[1; 32]);
        let f = policy.check_entries(&[ok.clone(), aggregate.clone()], false);
        assert_eq!((f.len(), f[0].path.as_deref()), (1, Some("boot_aggregate")));
        assert_eq!(policy.check_entries(std::slice::from_ref(&aggregate), false).len(), 1);
        let mut with_worker = policy.clone();
        with_worker.worker_binary = Some(ok.file_digest.to_text());
        assert!(with_worker.check_entries(&[aggregate, ok], true).is_empty());
    }

    #[test]
    fn a_policy_from_a_tree_lists_every_file_by_its_path() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("usr/bin")).unwrap();
        std::fs::write(dir.path().join("usr/bin/perun"), b"worker").unwrap();
        std::fs::write(dir.path().join("init"), b"init").unwrap();
        let p = PlatformPolicy::from_tree("vm", dir.path()).unwrap();
        assert_eq!(p.allowed_files.keys().collect::<Vec<_>>(), ["/init", "/usr/bin/perun"]);
        let worker = Entry::ima_ng("/usr/bin/perun", "sha256", &Sha256::digest(b"worker"));
        let other = Entry::ima_ng("/usr/bin/perun", "sha256", &Sha256::digest(b"patched"));
        assert!(p.check_entries(&[worker], false).is_empty());
        assert_eq!(p.check_entries(&[other], false).len(), 1);
        let back = PlatformPolicy::from_json(&serde_json::to_vec(&p).unwrap()).unwrap();
        assert_eq!(back.digest(), p.digest());
    }

    #[test]
    fn user_space_evidence_needs_opt_in() {
        let marker = Entry::ima_ng(USER_SPACE_MARKER, "sha256", &[0; 32]);
        let mut p = PlatformPolicy { schema: POLICY_SCHEMA, ..Default::default() };
        assert_eq!(p.check_entries(std::slice::from_ref(&marker), false).len(), 1);
        p.accept_user_space_ima = true;
        assert!(p.check_entries(&[marker], false).is_empty());
    }

    #[test]
    fn worker_binary_and_pcrs_are_required() {
        let p = PlatformPolicy {
            schema: POLICY_SCHEMA,
            worker_binary: Some(format!("sha256:{}", hex::encode([5u8; 32]))),
            required_pcrs: BTreeMap::from([(0, hex::encode([0u8; 32]))]),
            allowed_digests: BTreeSet::from([format!("sha256:{}", hex::encode([5u8; 32]))]),
            ..Default::default()
        };
        assert_eq!(p.check_entries(&[], true).len(), 1);
        assert!(p.check_entries(&[Entry::ima_ng("/w", "sha256", &[5; 32])], true).is_empty());
        let bank = PcrBank { hash_alg: crate::tpm::alg::SHA256, values: BTreeMap::from([(0, vec![1u8; 32])]) };
        // PCRs 1-9 unpinned, and PCR 0 differs.
        let f = p.check_pcrs(&bank);
        assert_eq!(f.len(), 2, "{f:?}");
        assert!(f[0].why.contains("does not pin boot PCR(s) 1, 2, 3, 4, 5, 6, 7, 8, 9"), "{f:?}");
        let mut pinned = p.clone();
        let zeros =
            PcrBank { hash_alg: crate::tpm::alg::SHA256, values: (0..=9).map(|i| (i, vec![0u8; 32])).collect() };
        pinned.pin_boot_pcrs(&zeros).unwrap();
        assert!(pinned.check_pcrs(&zeros).is_empty());
        let mut other = zeros.clone();
        other.values.insert(3, vec![1u8; 32]);
        let f = pinned.check_pcrs(&other);
        assert_eq!(f.len(), 1, "{f:?}");
        assert!(f[0].why.starts_with("PCR 3 is 0101"), "{f:?}");
        assert!(PlatformPolicy::from_json(br#"{"schema":2,"name":"x","smuggled":1}"#).is_err());
        let old = PlatformPolicy::from_json(br#"{"schema":1,"name":"x"}"#).unwrap_err().to_string();
        assert!(old.contains("generate the policy again"), "{old}");
    }

    #[test]
    fn boot_aggregate_must_be_the_quoted_boot_pcrs() {
        let bank =
            PcrBank { hash_alg: crate::tpm::alg::SHA256, values: (0..=10).map(|i| (i, vec![i as u8; 32])).collect() };
        let mut h = Sha256::new();
        for i in 0..=9u8 {
            h.update([i; 32]);
        }
        let good = Entry::ima_ng("boot_aggregate", "sha256", &h.finalize());
        assert!(PlatformPolicy::check_boot_aggregate(std::slice::from_ref(&good), &bank).is_empty());
        // Over PCRs 0-7 only (kernels before 5.8), or from another boot: refused, saying which set.
        let mut h = Sha256::new();
        for i in 0..=7u8 {
            h.update([i; 32]);
        }
        let old = Entry::ima_ng("boot_aggregate", "sha256", &h.finalize());
        let f = PlatformPolicy::check_boot_aggregate(&[old], &bank);
        assert!(f[0].why.contains("not SHA-256 over the quoted PCRs 0-9"), "{f:?}");
        let f = PlatformPolicy::check_boot_aggregate(&[Entry::ima_ng("/bin/sh", "sha256", &[0; 32]), good], &bank);
        assert!(f[0].why.contains("does not start with boot_aggregate"), "{f:?}");
    }

    #[test]
    fn development_evidence_is_named() {
        let mut p = PlatformPolicy { schema: POLICY_SCHEMA, ..Default::default() };
        // Kernel IMA claimed, but nothing shows the kernel runs an IMA policy.
        assert!(
            p.development()[0].contains("no measured kernel command line with ima_policy="),
            "{:?}",
            p.development()
        );
        p.kernel_cmdline = Some("root=/dev/sda1 ima_policy=tcb".into());
        // Without lockdown, root reads the worker's memory through the kernel's.
        assert!(p.development()[0].contains("lockdown=confidentiality"), "{:?}", p.development());
        p.kernel_cmdline = Some("root=/dev/sda1 ima_policy=tcb lockdown=confidentiality".into());
        // ... and the built-in policy it names measures neither tmpfs nor its own rewrite.
        assert!(p.development()[0].contains("pins no IMA policy"), "{:?}", p.development());
        p.ima_policy =
            Some(ImaPolicyPin { path: "/etc/ima/ima-policy".into(), digest: "sha256:00".into(), prelude: Vec::new() });
        assert!(p.development().is_empty());
        for wide in ["", "/", "/usr", "/a/"] {
            p.excludes = vec![wide.into()];
            assert!(p.development()[0].contains("an exclude covers a whole top-level folder"), "{wide}");
        }
        p.excludes = vec!["/var/log".into()];
        assert!(p.development().is_empty());
        assert!(excluded("/var/log/x", "/var/log") && excluded("/var/log", "/var/log/"));
        assert!(!excluded("/var/logfoo", "/var/log"));
        assert!(!excluded("/tmpX/a", "/tmp") && excluded("/tmp/a", "/tmp"));
        assert!(!excluded("/etc/passwd", "") && !excluded("/etc/passwd", "etc"));
        for bad in ["", "var/log", "/var/../etc"] {
            let mut json = serde_json::to_value(&p).unwrap();
            json["excludes"] = serde_json::json!([bad]);
            let e = PlatformPolicy::from_json(&serde_json::to_vec(&json).unwrap()).unwrap_err();
            assert!(e.to_string().contains("absolute path"), "{bad}: {e}");
        }
        p.excludes.clear();
        p.accept_user_space_ima = true;
        assert_eq!(p.development().len(), 1);
        // A kernel command line must be one the boot references measured.
        let mut json = serde_json::to_value(&p).unwrap();
        json["kernel_cmdline"] = serde_json::json!("ima_policy=tcb");
        let e = PlatformPolicy::from_json(json.to_string().as_bytes()).unwrap_err().to_string();
        assert!(e.contains("no event of boot_events"), "{e}");
    }

    /// Issue 31, 2: with an IMA policy pinned, the log must begin as the reference boot's
    /// did (its initramfs's measurements, then the policy's load); an entry of the policy
    /// file anywhere else (root reading it under the built-in policy) proves nothing.
    #[test]
    fn a_pinned_ima_policy_must_be_loaded_where_the_reference_boot_loaded_it() {
        use crate::ima::Entry;
        let d = |b: &[u8]| perun_core::Digest::of(b);
        let worker = d(b"perun");
        let e = |path: &str, b: &[u8]| Entry::ima_ng(path, "sha256", d(b).as_bytes());
        let boot = e("boot_aggregate", b"agg");
        let reference =
            [boot.clone(), e("/init", b"init"), e("/etc/ima/ima-policy", b"rules"), e("/usr/bin/perun", b"perun")];
        let pin = ImaPolicyPin::from_reference("/etc/ima/ima-policy", b"rules", &reference).unwrap();
        assert_eq!(pin.prelude.len(), 1);
        assert!(ImaPolicyPin::from_reference("/etc/ima/ima-policy", b"other", &reference).is_err());
        let mut p = PlatformPolicy {
            schema: POLICY_SCHEMA,
            name: "pinned".into(),
            worker_binary: Some(format!("sha256:{}", worker.to_hex())),
            ..Default::default()
        };
        for b in [&b"perun"[..], b"init", b"rules"] {
            p.allowed_digests.insert(format!("sha256:{}", d(b).to_hex()));
        }
        p.ima_policy = Some(pin);
        let never = |f: &[Failure]| f.iter().any(|f| f.why.contains("never loaded"));
        assert!(p.check_entries(&reference, true).is_empty(), "{:?}", p.check_entries(&reference, true));
        // Later rounds do not repeat it.
        assert!(p.check_entries(&reference[3..], false).is_empty());
        // Not loaded; loaded late (root reading the file after the built-in policy stayed);
        // another file; an ima-buf or violation entry in its place.
        let missing = [boot.clone(), e("/init", b"init"), e("/usr/bin/perun", b"perun")];
        let late =
            [boot.clone(), e("/init", b"init"), e("/usr/bin/perun", b"perun"), e("/etc/ima/ima-policy", b"rules")];
        let other = [
            boot.clone(),
            e("/init", b"init"),
            e("/etc/ima/ima-policy", b"dont_measure"),
            e("/usr/bin/perun", b"perun"),
        ];
        let mut buf = e("/etc/ima/ima-policy", b"rules");
        buf.template = "ima-buf".into();
        let as_buf = [boot.clone(), e("/init", b"init"), buf, e("/usr/bin/perun", b"perun")];
        let mut violation = e("/etc/ima/ima-policy", b"rules");
        violation.violation = true;
        let as_violation = [boot, e("/init", b"init"), violation, e("/usr/bin/perun", b"perun")];
        for (what, log) in [
            ("missing", &missing[..]),
            ("late", &late),
            ("other", &other),
            ("ima-buf", &as_buf),
            ("violation", &as_violation),
        ] {
            assert!(never(&p.check_entries(log, true)), "{what}: {:?}", p.check_entries(log, true));
        }
        // Approvers see an unpinned kernel IMA policy as what it is.
        let mut unpinned = p.clone();
        unpinned.ima_policy = None;
        unpinned.kernel_cmdline = Some("ima_policy=tcb lockdown=confidentiality".into());
        assert!(unpinned.development().iter().any(|w| w.contains("pins no IMA policy")));
        let mut pinned = unpinned.clone();
        pinned.ima_policy = p.ima_policy.clone();
        assert!(pinned.development().is_empty(), "{:?}", pinned.development());
    }
}
