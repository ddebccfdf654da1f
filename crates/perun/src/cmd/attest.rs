//! `perun policy` and `perun attest`: platform policies and offline evidence checks.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _, Result};
use clap::Subcommand;
use perun_attest::evidence::{appraise, Endorsement, TpmEvidence};
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
        who: crate::cmd::context::As,
    },
    /// Write a TEE policy (for `tee` jobs, and for `perun predict` clients).
    Tee(crate::cmd::enclave::TeePolicyArgs),
    /// Build a policy from a directory tree (every regular file, by its path under the
    /// tree) or from an observed IMA log.
    Generate {
        /// A directory tree, as the measured machine sees it from `/`.
        #[arg(long, conflicts_with = "ima_log")]
        tree: Option<PathBuf>,
        /// An IMA log: `binary_runtime_measurements`, or `ascii_runtime_measurements`
        /// (recognised by its first byte, or forced with --ascii).
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
        #[command(flatten)]
        anchors: AnchorArgs,
        /// Where to write the policy (JSON).
        #[arg(long)]
        out: PathBuf,
    },
}

/// The trust anchors of a platform policy: which TPMs, and what booted.
#[derive(clap::Args)]
pub struct AnchorArgs {
    /// EK CA certificates of the shipped bundle to trust: a group (`hardware`: TPM chip
    /// makers; `cloud`: cloud vTPMs) or certificate names (see ek-roots/PROVENANCE.md).
    #[arg(long = "ek-roots", value_delimiter = ',')]
    pub ek_roots: Vec<String>,
    /// An EK CA certificate of your own to trust as a root (PEM or DER): a local
    /// development CA (`swtpm-localca`) or your organisation's. Approvers are told it
    /// is not a chip maker's.
    #[arg(long = "ek-ca")]
    pub ek_ca: Vec<PathBuf>,
    /// An intermediate EK CA certificate the bundle lacks (not trusted as a root).
    #[arg(long = "ek-intermediate")]
    pub ek_intermediate: Vec<PathBuf>,
    /// Pin measured boot from a reference machine's evidence bundle (`perun attest
    /// collect`): its quoted PCRs 0-9 and, where it has one, its event log.
    #[arg(long = "bundle", alias = "boot-from", conflicts_with_all = ["boot_log", "boot_pcrs"], group = "boot_from_or_log")]
    pub boot_from: Option<PathBuf>,
    /// Pin measured boot from a reference machine's TCG2 event log
    /// (`/sys/kernel/security/tpm0/binary_bios_measurements`), replayed to PCRs 0-9.
    #[arg(long = "boot-log", conflicts_with = "boot_pcrs", group = "boot_from_or_log")]
    pub boot_log: Option<PathBuf>,
    /// Pin PCRs 0-9 to values where no event log exists: JSON `{"0": "hex", ...}`.
    #[arg(long = "boot-pcrs")]
    pub boot_pcrs: Option<PathBuf>,
    /// The kernel command line the reference machine booted (`/proc/cmdline`): checked
    /// against its measurement in the event log, and shown to approvers as what proves
    /// the kernel runs an IMA policy (`ima_policy=`).
    #[arg(long = "kernel-cmdline", requires = "boot_from_or_log")]
    pub kernel_cmdline: Option<String>,
    /// The custom IMA policy file the workers' measured initramfs loads by its path
    /// (`echo /etc/ima/ima-policy > /sys/kernel/security/ima/policy`): pinned by digest,
    /// its load must be in every worker's IMA log (the built-in `tcb` policy does not
    /// measure tmpfs, and root could replace it).
    #[arg(long = "ima-policy", value_name = "FILE")]
    pub ima_policy: Option<PathBuf>,
    /// The path the initramfs loads the IMA policy from, as the kernel records it.
    #[arg(long = "ima-policy-path", default_value = "/etc/ima/ima-policy", requires = "ima_policy")]
    pub ima_policy_path: String,
}

impl AnchorArgs {
    /// Sets the policy's EK roots and boot references, where given (a policy without
    /// them refuses every worker: [`PlatformPolicy::missing_anchors`]).
    pub fn apply(&self, policy: &mut PlatformPolicy) -> Result<()> {
        use perun_attest::policy::BOOT_PCRS;
        let names: Vec<&str> = self.ek_roots.iter().map(String::as_str).collect();
        policy.ek = perun_attest::ek::EkPolicy::from_bundle(&names)?;
        for f in &self.ek_ca {
            policy.ek.add_own_root(&read(f)?).with_context(|| format!("{}", f.display()))?;
        }
        for f in &self.ek_intermediate {
            policy.ek.add_intermediate(&read(f)?).with_context(|| format!("{}", f.display()))?;
        }
        let mut reference_ima = None;
        let log = match (&self.boot_from, &self.boot_log, &self.boot_pcrs) {
            (Some(b), _, _) => {
                let b: EvidenceBundle = serde_json::from_slice(&read(b)?).context("reading the reference bundle")?;
                policy.pin_boot_pcrs(&b.evidence.pcrs)?;
                reference_ima = Some(b.evidence.ima_log.clone());
                (!b.evidence.event_log.is_empty()).then_some(b.evidence.event_log)
            }
            (None, Some(l), _) => Some(read(l)?),
            (None, None, Some(p)) => {
                let m: std::collections::BTreeMap<u32, String> =
                    serde_json::from_slice(&read(p)?).context("--boot-pcrs: expected {\"0\": \"hex\", ...}")?;
                policy.required_pcrs = m;
                None
            }
            (None, None, None) => return Ok(()),
        };
        if let Some(log) = log {
            let parsed = perun_attest::bootlog::parse(&log)?;
            if self.boot_from.is_none() {
                for i in BOOT_PCRS {
                    policy.required_pcrs.insert(i, hex::encode(parsed.pcr(i)));
                }
            }
            policy.boot_events = perun_attest::bootlog::reference(&parsed, BOOT_PCRS);
        }
        if let Some(c) = &self.kernel_cmdline {
            let c = c.trim();
            if !policy.cmdline_measured(c) {
                bail!("the reference event log holds no measurement of the kernel command line `{c}` (PCR 8 or 9): is it /proc/cmdline of that boot?");
            }
            policy.kernel_cmdline = Some(c.to_owned());
        }
        if let Some(f) = &self.ima_policy {
            let path = self.ima_policy_path.trim();
            anyhow::ensure!(path.starts_with('/'), "--ima-policy-path must be absolute, as the kernel records it");
            let log = reference_ima.as_deref().context(
                "--ima-policy needs the reference machine's evidence (--bundle from `perun attest collect`): its IMA \
                 log shows where the policy is loaded",
            )?;
            let entries: Vec<_> =
                parse_binary(log, 0).context("reading the reference IMA log")?.into_iter().map(|(e, _)| e).collect();
            policy.ima_policy = Some(perun_attest::policy::ImaPolicyPin::from_reference(path, &read(f)?, &entries)?);
        }
        let unpinned: Vec<u32> = BOOT_PCRS.filter(|i| !policy.required_pcrs.contains_key(i)).collect();
        if !unpinned.is_empty() {
            bail!("the boot references leave PCRs {unpinned:?} unpinned: every PCR 0-9 must be pinned");
        }
        Ok(())
    }
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
        /// The worker's EK public area (with --evidence).
        #[arg(long, requires = "ek_cert")]
        ek: Option<PathBuf>,
        /// Its EK certificate (DER or PEM; with --evidence).
        #[arg(long, requires = "ek")]
        ek_cert: Option<PathBuf>,
        /// A bundle from `perun attest collect` (evidence, EK, its certificate, AK).
        #[arg(long, conflicts_with_all = ["evidence", "ak", "ek", "ek_cert"])]
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
    /// The EK certificate read from the TPM's NV index (hex; empty where it has none).
    #[serde(default, with = "hex::serde")]
    pub ek_certificate: Vec<u8>,
    /// The evidence.
    pub evidence: TpmEvidence,
    /// Seconds since boot when it was collected, where known.
    #[serde(default)]
    pub uptime_s: Option<f64>,
}

/// This build has no TPM access (it was built without the `worker` role).
#[cfg(not(feature = "worker"))]
fn collect(_tcti: &str, _qualifying_data: &str, _out: &Path) -> Result<()> {
    anyhow::bail!(
        "this perun was built without the worker role, which reads the TPM: run `perun attest collect` on the worker"
    )
}

#[cfg(feature = "worker")]
fn collect(tcti: &str, qualifying_data: &str, out: &Path) -> Result<()> {
    let qd = hex::decode(qualifying_data.trim()).context("--qualifying-data is not hex")?;
    let tpm = perun_tpm::device::Tpm::connect(tcti, perun_tpm::tools::KeyAlg::Rsa)
        .with_context(|| format!("connecting to the TPM at {tcti}"))?;
    let mut platform = perun_worker::Platform::kernel(tpm)?;
    let ek_certificate = platform.tpm().ek_certificate().unwrap_or_else(|e| {
        eprintln!("warning: {e}");
        Vec::new()
    });
    let ak = platform.tpm().create_ak(perun_tpm::tools::KeyAlg::Rsa)?;
    let evidence = platform.evidence(&qd)?;
    let uptime_s = std::fs::read_to_string("/proc/uptime")
        .ok()
        .and_then(|u| u.split_whitespace().next().and_then(|v| v.parse().ok()));
    let bundle = EvidenceBundle {
        ek_public: platform.tpm().ek_public().to_vec(),
        ak_public: ak.public,
        ek_certificate,
        evidence,
        uptime_s,
    };
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
    let (tree, ima_log, ascii, name, worker_binary, accept_user_space_ima, anchors, out) = match cmd {
        PolicyCmd::Add { file, who } => return crate::cmd::remote::policy_add(home, &file, &who),
        PolicyCmd::Tee(a) => return crate::cmd::enclave::tee_policy(a),
        PolicyCmd::Generate { tree, ima_log, ascii, name, worker_binary, accept_user_space_ima, anchors, out } => {
            (tree, ima_log, ascii, name, worker_binary, accept_user_space_ima, anchors, out)
        }
    };
    let mut policy = match (tree, ima_log) {
        (Some(t), None) => PlatformPolicy::from_tree(&name, &t)?,
        (None, Some(l)) => {
            let bytes = read(&l)?;
            if bytes.is_empty() {
                bail!("{} is empty: an IMA log holds at least boot_aggregate", l.display());
            }
            // The binary form starts with the PCR index as 4 little-endian bytes (10 is
            // `0a 00 00 00`); the ASCII form with the index in digits.
            let first = bytes.iter().find(|b| !matches!(b, b'\n' | b'\r'));
            let ascii = ascii || first.is_some_and(|b| b.is_ascii_digit() || *b == b' ');
            let entries = if ascii {
                parse_ascii(&bytes).with_context(|| format!("reading {}", l.display()))?
            } else {
                parse_binary(&bytes, 0)
                    .with_context(|| format!("reading {}", l.display()))?
                    .into_iter()
                    .map(|(e, _)| e)
                    .collect()
            };
            PlatformPolicy::from_log(&name, &entries)
        }
        _ => bail!("give --tree DIR or --ima-log FILE"),
    };
    if let Some(w) = worker_binary {
        policy.worker_binary = Some(perun_core::Digest::of(&read(&w)?).to_string());
    }
    policy.accept_user_space_ima |= accept_user_space_ima;
    anchors.apply(&mut policy)?;
    if out.exists() {
        bail!("{} already exists: refusing to overwrite it", out.display());
    }
    std::fs::write(&out, serde_json::to_vec_pretty(&policy)?).with_context(|| format!("writing {}", out.display()))?;
    let missing = policy.missing_anchors();
    println!(
        "policy `{}`: {} files, {} digests, {} EK roots, boot PCRs 0-9 {}{}; digest {}",
        crate::ui::printable(&name),
        policy.allowed_files.len(),
        policy.allowed_digests.len(),
        policy.ek.roots.len(),
        if policy.required_pcrs.is_empty() { "not pinned" } else { "pinned" },
        if policy.boot_events.is_empty() {
            String::new()
        } else {
            format!(" with {} reference events", policy.boot_events.values().map(Vec::len).sum::<usize>())
        },
        policy.digest()
    );
    for d in policy.development() {
        println!("DEVELOPMENT: {d}");
    }
    if !missing.is_empty() {
        eprintln!("INCOMPLETE: this policy refuses every worker, and the trust service refuses to publish it, until it names:");
        for m in &missing {
            eprintln!("  - {m}");
        }
        eprintln!(
            "  (generate it again with the same --ima-log or --tree and those options, into a new --out file or \
             after removing {})",
            out.display()
        );
    }
    Ok(())
}

/// Runs an attestation subcommand.
pub fn attest(cmd: AttestCmd) -> Result<()> {
    let (evidence, ak, ek, ek_cert, bundle, policy, qualifying_data, state, json) = match cmd {
        AttestCmd::Collect { tcti, qualifying_data, out } => return collect(&tcti, &qualifying_data, &out),
        AttestCmd::Verify { evidence, ak, ek, ek_cert, bundle, policy, qualifying_data, state, json } => {
            (evidence, ak, ek, ek_cert, bundle, policy, qualifying_data, state, json)
        }
    };
    let (ev, ak, ek, ek_cert) = match (bundle, evidence, ak) {
        (Some(b), _, _) => {
            let b: EvidenceBundle = serde_json::from_slice(&read(&b)?).context("reading the evidence bundle")?;
            if let Some(up) = b.uptime_s {
                println!("evidence collected {up:.1} s after boot; IMA log of {} bytes", b.evidence.ima_log.len());
            }
            let ak = AkPublic::parse(&b.ak_public).context("the bundle's attestation key")?;
            let ek = AkPublic::parse(&b.ek_public).context("the bundle's EK")?;
            (b.evidence, ak, ek, b.ek_certificate)
        }
        (None, Some(e), Some(k)) => {
            let (Some(ek), Some(cert)) = (ek, ek_cert) else {
                bail!("give the worker's TPM with --ek FILE --ek-cert FILE (the policy checks its EK certificate)");
            };
            (
                serde_json::from_slice(&read(&e)?).context("reading the evidence")?,
                AkPublic::parse(&read(&k)?).context("reading the attestation key")?,
                AkPublic::parse(&read(&ek)?).context("reading the EK")?,
                read(&cert)?,
            )
        }
        _ => bail!("give --bundle, or --evidence, --ak, --ek and --ek-cert"),
    };
    let policy = PlatformPolicy::from_json(&read(&policy)?)?;
    let qd = hex::decode(qualifying_data.trim()).context("--qualifying-data is not hex")?;
    let started = std::time::Instant::now();
    let mut prior: ReplayState = match &state {
        Some(p) if p.exists() => serde_json::from_slice(&read(p)?).context("reading the replay state")?,
        _ => ReplayState::default(),
    };
    // A quote from a later boot than the saved state's: the log started over, so it is
    // verified from its start (the trust service refuses such evidence in a running
    // job: the worker lost its memory).
    if let Ok(q) = perun_attest::tpm::Quote::parse(&ev.quote) {
        let boot = perun_attest::ima::TpmBoot { reset_count: q.reset_count, restart_count: q.restart_count };
        if let (Some(before), Some(_)) = (prior.boot, perun_attest::evidence::rebooted(&prior, boot)) {
            println!(
                "the TPM was reset since the saved state ({before} then, {boot} now): the machine rebooted and its \
                 IMA log started over; verifying the new log from its start"
            );
            prior = ReplayState::default();
        }
    }
    let endorsement = Endorsement { ek: &ek, certificate: &ek_cert, chain: &[] };
    let a = appraise(&ev, endorsement, &ak, &qd, &policy, &prior);
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
            println!("  - {}", crate::ui::printable(&f.to_string()));
        }
    }
    if !a.accepted() {
        bail!("the evidence was refused");
    }
    Ok(())
}
