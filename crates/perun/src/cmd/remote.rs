//! The stakeholders' commands against a trust service: `perun remote`, `id register`,
//! `asset`, `policy add`, `job`, `worker enrol`, `audit`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context as _, Result};
use clap::Subcommand;
use perun_attest::JobPolicy;
use perun_client::workflow::parse_audit_key;
use perun_client::{AssetRegistration, Caller, Client, ClientError, Development, ManifestBuilder, Stakeholder};
use perun_core::{AssetKind, AssetRef, Digest, JobMode, JobPurpose, Name, Role};
use perun_proto::wire::*;
use perun_seal::AssetKey;

/// Prints a line with every control character escaped: manifest names, hyper-parameter
/// keys, policy and output names come from other parties and must not be able to move
/// the cursor, hide text or rewrite what an approver reads.
macro_rules! show {
    ($($arg:tt)*) => {
        println!("{}", crate::ui::printable(&format!($($arg)*)))
    };
}

use super::context::{client, load_remote, remote_file, As, Remote};
use crate::home::Home;
use crate::ui::print_json;

/// Where `who`'s audit checkpoint is kept (each stakeholder is shown other records).
fn checkpoint_file(home: &Home, who: &Name) -> PathBuf {
    home.root().join("audit").join(format!("{who}.json"))
}

/// `perun remote`.
#[derive(Subcommand)]
pub enum RemoteCmd {
    /// Pin a trust service: its URL (or its replicas' URLs) and TLS certificate
    /// fingerprint.
    Add {
        /// `https://host:port`; several for replicas of one service, tried in turn.
        #[arg(required = true, num_args = 1..)]
        urls: Vec<String>,
        /// The fingerprint `perun serve` printed. Without it, the presented one is shown
        /// and nothing is saved.
        #[arg(long)]
        fingerprint: Option<Digest>,
    },
    /// Show the pinned service and ask it who it is.
    Show {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

/// Runs `perun remote`.
pub fn remote(cmd: RemoteCmd, home: &Home) -> Result<()> {
    match cmd {
        RemoteCmd::Add { urls, fingerprint } => {
            let all = urls.join(" ");
            let mut audit = None;
            let mut down = Vec::new();
            for url in &urls {
                // A replica that is down now is pinned all the same (every later
                // connection checks the pinned certificate); at least one must answer.
                let presented = match Client::presented_fingerprint(url) {
                    Ok(p) => p,
                    Err(e @ perun_client::ClientError::Transport { .. }) if urls.len() > 1 => {
                        down.push(format!("{url}: {e}"));
                        continue;
                    }
                    Err(e) => return Err(e.into()),
                };
                let Some(fp) = fingerprint else {
                    bail!(
                        "{url} presents certificate {presented}. Compare it with the fingerprint `perun serve` \
                         printed, then run `perun remote add {all} --fingerprint {presented}`"
                    );
                };
                if fp != presented {
                    bail!("{url} presents certificate {presented}, not {fp}: refusing to pin it (wrong service, or someone in between)");
                }
                // The audit key comes over the connection just pinned; replicas of one
                // service sign with one key.
                let info = Client::new(url, fp, Caller::Anonymous)?.service()?;
                parse_audit_key(&info.audit_key)?;
                match &audit {
                    Some(k) if *k != info.audit_key => bail!(
                        "{url} signs its audit log with another key than {}: these are not replicas of one service",
                        urls[0]
                    ),
                    _ => audit = Some(info.audit_key),
                }
            }
            let (Some(fp), Some(audit_key), Some((url, replicas))) = (fingerprint, audit, urls.split_first()) else {
                bail!("none of {all} answered, nothing pinned: {}", down.join("; "));
            };
            std::fs::create_dir_all(home.root())?;
            let remote =
                Remote { url: url.clone(), fingerprint: fp, audit_key: audit_key.clone(), replicas: replicas.to_vec() };
            std::fs::write(remote_file(home), serde_json::to_vec_pretty(&remote)?)?;
            // A new service starts a new history.
            let _ = std::fs::remove_dir_all(home.root().join("audit"));
            show!("pinned {all} ({fp}), audit key ed25519:{audit_key}");
            for d in &down {
                show!("warning: not reachable now, pinned all the same: {d}");
            }
            Ok(())
        }
        RemoteCmd::Show { json } => {
            let info = client(home, None)?.service()?;
            if json {
                return print_json(&info);
            }
            let r = load_remote(home)?;
            show!("url:            {}", r.urls().join(" "));
            show!("fingerprint:    {}", info.tls_fingerprint);
            show!("version:        {}", info.version);
            show!("wrap recipient: {}", info.wrap_recipient);
            show!("audit key:      ed25519:{}", info.audit_key);
            Ok(())
        }
    }
}

/// Registers an identity with the service, with its roles.
pub fn register(home: &Home, name: &Name, roles: &[Role]) -> Result<()> {
    let keys = home.load_identity(name)?;
    let answer = Stakeholder::new(&client(home, None)?, &keys).register(roles)?;
    let roles: std::collections::BTreeSet<Role> = roles.iter().copied().collect();
    let shown: Vec<&str> = roles.iter().map(|r| r.as_str()).collect();
    match answer.status {
        RegistrationStatus::Admitted => {
            show!("registered `{name}` as {} ({})", shown.join(", "), keys.public().fingerprint())
        }
        RegistrationStatus::Pending => {
            show!("applied as `{name}` ({}) with roles {}", keys.public().fingerprint(), shown.join(", "));
            show!("{}", answer.message);
        }
    }
    Ok(())
}

/// `perun id admit`: a member's vote to admit a pending registration whose key the
/// member checked with the applicant (`fingerprint`, as `perun id show` prints it).
pub fn vote_admission(home: &Home, name: &Name, fingerprint: &str, who: &As) -> Result<()> {
    let answer = client(home, Some(&who.who))?.vote_admission(name, fingerprint)?;
    if who.json {
        return print_json(&answer);
    }
    show!("{}", answer.message);
    Ok(())
}

/// `perun id applications`: the registrations awaiting admission, as a member sees them.
pub fn applications(home: &Home, who: &As) -> Result<()> {
    let list = client(home, Some(&who.who))?.applications()?;
    if who.json {
        return print_json(&list);
    }
    if list.is_empty() {
        show!("no registration awaits admission");
    }
    for a in &list {
        show!("{}", application_line(a));
    }
    Ok(())
}

/// One pending registration in a line: name, key fingerprint, roles, who admits it.
pub fn application_line(a: &Application) -> String {
    let roles: Vec<&str> = a.roles.iter().map(|r| r.as_str()).collect();
    let admits = match a.quorum {
        0 => "the operator admits it".to_owned(),
        q => format!("{} of {q} member votes", a.votes.len()),
    };
    format!("{:<24} key {} roles {}: {admits}", a.identity.name.as_str(), a.identity.fingerprint(), roles.join(","))
}

/// `perun asset`.
#[derive(Subcommand)]
pub enum AssetCmd {
    /// Register a sealed asset: its descriptor and its key, wrapped to the service. The
    /// sealed file stays where you keep it.
    Register {
        /// The asset's name.
        #[arg(long)]
        name: Name,
        /// The sealed file (its authenticated header gives kind and content digest).
        #[arg(long)]
        sealed: PathBuf,
        /// The asset key file.
        #[arg(long)]
        key: PathBuf,
        /// Where workers fetch it (a path or http(s) URL). Default: the sealed file's
        /// absolute path.
        #[arg(long)]
        location: Option<String>,
        /// Your terms for the asset (JSON: expires_at, max_jobs, modes, receivers,
        /// review, privacy {epsilon_per_job, delta, total_epsilon}); signed here and
        /// enforced by the service at every key release.
        #[arg(long)]
        terms: Option<PathBuf>,
        #[command(flatten)]
        who: As,
    },
    /// Your registered assets.
    List {
        #[command(flatten)]
        who: As,
    },
    /// One of your assets, with its terms and the budget left.
    Show {
        /// The asset's name.
        name: Name,
        #[command(flatten)]
        who: As,
    },
}

/// Runs `perun asset`.
pub fn asset(cmd: AssetCmd, home: &Home) -> Result<()> {
    match cmd {
        AssetCmd::Register { name, sealed, key, location, terms, who } => {
            let key = AssetKey::load(&key)?;
            let header = read_header(&sealed, &key)?;
            let location = match location {
                Some(l) => l,
                None => std::fs::canonicalize(&sealed)?.to_string_lossy().into_owned(),
            };
            let keys = home.load_identity(&who.who)?;
            let terms = match terms {
                Some(f) => Some(super::outputs::TermsFile::load(&f)?.sign(&name, header.content_digest, &keys)?),
                None => None,
            };
            let a = Stakeholder::new(&client(home, None)?, &keys).register_asset(AssetRegistration {
                name,
                kind: header.kind,
                content_digest: header.content_digest,
                location,
                key: &key,
                terms,
            })?;
            if who.json {
                return print_json(&a);
            }
            show!("registered {} `{}` ({}) at {}", a.kind.as_str(), a.name, a.content_digest, a.location);
            Ok(())
        }
        AssetCmd::List { who } => {
            let list = client(home, Some(&who.who))?.assets()?;
            if who.json {
                return print_json(&list);
            }
            for a in list {
                show!("{:<20} {:<8} {} {}", a.name.as_str(), a.kind.as_str(), a.content_digest, a.location);
            }
            Ok(())
        }
        AssetCmd::Show { name, who } => {
            let a = client(home, Some(&who.who))?.asset(&name)?;
            if who.json {
                return print_json(&a);
            }
            super::outputs::print_asset(&a);
            Ok(())
        }
    }
}

fn read_header(sealed: &Path, key: &AssetKey) -> Result<perun_seal::AssetHeader> {
    let f = std::fs::File::open(sealed).with_context(|| format!("opening {}", sealed.display()))?;
    let len = f.metadata()?.len();
    let r = perun_seal::SealedReader::new(std::io::BufReader::new(f), Some(len), key.identity())?;
    r.header().cloned().with_context(|| format!("{} has no Perun header: seal it with `perun seal`", sealed.display()))
}

/// Publishes a platform policy.
pub fn policy_add(home: &Home, file: &Path, who: &As) -> Result<()> {
    let bytes = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
    let p = client(home, Some(&who.who))?.publish_policy(bytes)?;
    if who.json {
        return print_json(&p);
    }
    let policy = perun_attest::JobPolicy::try_from(&p.policy)?;
    show!("policy `{}` published: {}", policy.name(), p.digest);
    Ok(())
}

/// `perun job`.
#[derive(Subcommand)]
pub enum JobCmd {
    /// Propose a job: a model, data sets, a platform policy, receivers.
    Propose {
        /// A human-readable job name.
        #[arg(long)]
        name: String,
        /// The model asset: `NAME` if it is yours, else `OWNER/NAME@sha256:...` as its
        /// owner told you.
        #[arg(long)]
        model: String,
        /// The data assets, named the same way (a serving job may have none).
        #[arg(long = "data", required_unless_present = "serve")]
        data: Vec<String>,
        /// A serving job (`perun enclave serve`) instead of a training job.
        #[arg(long)]
        serve: bool,
        /// Further stakeholders whose approval the job needs (a data owner whose terms
        /// cover serving the model trained on its data).
        #[arg(long = "approver")]
        approvers: Vec<Name>,
        /// The policy digest (`perun policy add` prints it): a platform policy for
        /// `attested` jobs, a TEE policy for `tee` jobs.
        #[arg(long)]
        policy: Digest,
        /// Who receives the outputs.
        #[arg(long = "receiver", required = true)]
        receivers: Vec<Name>,
        /// The infrastructure provider whose workers may run the job (it published the
        /// policy).
        #[arg(long)]
        provider: Name,
        /// Only these of the provider's workers (by name or EK digest `sha256:...`) may
        /// run it; default: any worker the provider enrolled.
        #[arg(long = "worker")]
        workers: Vec<String>,
        /// `attested` (TPM + IMA) or `tee`.
        #[arg(long, default_value = "attested")]
        mode: String,
        /// Seconds between continuous attestations.
        #[arg(long, default_value_t = 5)]
        interval: u64,
        /// Seconds until the job expires.
        #[arg(long, default_value_t = 86_400)]
        expires_in: u64,
        /// Hyper-parameter overrides, `key=value` (JSON values).
        #[arg(long = "hyper")]
        hyper: Vec<String>,
        /// Train with DP-SGD to this epsilon for the whole job (the data owners' terms
        /// may require it); needs --dp-delta.
        #[arg(long, requires = "dp_delta")]
        dp_epsilon: Option<f64>,
        /// The delta of the DP guarantee.
        #[arg(long, requires = "dp_epsilon")]
        dp_delta: Option<f64>,
        /// The L2 norm each sample's gradient is clipped to.
        #[arg(long, default_value_t = 1.0)]
        dp_clip: f64,
        /// Also write the manifest to this file.
        #[arg(long)]
        out: Option<PathBuf>,
        #[command(flatten)]
        who: As,
    },
    /// Approve a job: sign the digest of its manifest, recomputed here, after checking
    /// its policy against the digest the manifest names.
    Approve {
        /// The job id (its manifest digest).
        job: Digest,
        /// Sign even though the job's policy accepts development evidence (the sim TEE,
        /// the user-space IMA measurer, a local EK CA): for trying Perun only.
        #[arg(long)]
        allow_development: bool,
        #[command(flatten)]
        who: As,
    },
    /// Show a job you are party to.
    Show {
        /// The job id.
        job: Digest,
        #[command(flatten)]
        who: As,
    },
    /// The jobs you are party to.
    List {
        #[command(flatten)]
        who: As,
    },
    /// A job's state and per-epoch metrics.
    Status {
        /// The job id.
        job: Digest,
        /// Keep printing until the job ends.
        #[arg(long)]
        follow: bool,
        #[command(flatten)]
        who: As,
    },
    /// Revoke a job (proposer or asset owner): nothing more is released.
    Revoke {
        /// The job id.
        job: Digest,
        /// Why.
        #[arg(long)]
        reason: String,
        #[command(flatten)]
        who: As,
    },
    /// Review a finished job's outputs (your terms ask for it): read its receipt and
    /// metrics, then release them to the receivers (signed) or refuse them.
    Review {
        /// The job id.
        job: Digest,
        /// Release the outputs to the receivers.
        #[arg(long, conflicts_with = "refuse", required_unless_present = "refuse")]
        release: bool,
        /// Refuse them: they never reach the receivers.
        #[arg(long)]
        refuse: bool,
        #[command(flatten)]
        who: As,
    },
    /// Save a finished job's training receipt, verified under the pinned audit key.
    Receipt {
        /// The job id.
        job: Digest,
        /// Where to write it (never over a file).
        #[arg(long)]
        out: PathBuf,
        #[command(flatten)]
        who: As,
    },
    /// Open a finished job's model (as a receiver) and write its weights (mode 0600).
    Output {
        /// The job id.
        job: Digest,
        /// Where to write the weights (never over a file).
        #[arg(long)]
        out: PathBuf,
        #[command(flatten)]
        who: As,
    },
}

/// Runs `perun job`.
pub fn job(cmd: JobCmd, home: &Home) -> Result<()> {
    match cmd {
        JobCmd::Propose {
            name,
            model,
            data,
            serve,
            approvers,
            policy,
            receivers,
            provider,
            workers,
            mode,
            interval,
            expires_in,
            hyper,
            dp_epsilon,
            dp_delta,
            dp_clip,
            out,
            who,
        } => {
            let c = client(home, Some(&who.who))?;
            let mine = c.assets()?;
            let lookup =
                |n: &String, kind| -> Result<AssetRef> { Ok(perun_client::workflow::asset_ref(&mine, n, kind)?) };
            let mode = match mode.as_str() {
                "attested" => JobMode::Attested,
                "tee" => JobMode::Tee,
                other => bail!("mode `{other}`: expected `attested` or `tee`"),
            };
            let mut hyperparameters = std::collections::BTreeMap::new();
            for h in hyper {
                let (k, v) = h.split_once('=').with_context(|| format!("`{h}`: expected key=value"))?;
                let v = serde_json::from_str(v).unwrap_or_else(|_| serde_json::Value::String(v.to_owned()));
                hyperparameters.insert(k.to_owned(), v);
            }
            // The builder sets standardize=false for a DP job that does not say (see
            // `ManifestBuilder::build`): say so.
            if dp_epsilon.is_some() && !hyperparameters.contains_key("standardize") {
                eprintln!(
                    "note: a DP-SGD job trains without fitted standardisation: the manifest sets standardize=false"
                );
            }
            let manifest = ManifestBuilder::new(name, mode, lookup(&model, AssetKind::Model)?, policy, provider)
                .data(data.iter().map(|d| lookup(d, AssetKind::Dataset)).collect::<Result<Vec<_>>>()?)
                .workers(workers)
                .hyperparameters(hyperparameters)
                .receivers(receivers)
                .purpose(if serve { JobPurpose::Serve } else { JobPurpose::Train })
                .approvers(approvers)
                .privacy(dp_epsilon.zip(dp_delta).map(|(epsilon, delta)| perun_core::DpTarget {
                    epsilon,
                    delta,
                    max_grad_norm: dp_clip,
                }))
                .attestation_interval_s(interval)
                .valid_for_s(expires_in)
                .build(perun_proto::unix_now());
            let job = c.propose(&ProposeJob { manifest: manifest.clone() })?;
            if let Some(out) = out {
                std::fs::write(&out, serde_json::to_vec_pretty(&manifest)?)?;
            }
            if who.json {
                return print_json(&job);
            }
            show!("proposed job {}", job.id);
            show!("awaiting approval of: {}", names(&job.missing));
            Ok(())
        }
        JobCmd::Approve { job, allow_development, who } => {
            let keys = home.load_identity(&who.who)?;
            // Sign what we see, not what we are told: the workflow recomputes the digest
            // and reads the pinned policy first.
            let development = if allow_development { Development::Allow } else { Development::Refuse };
            let (info, after) = match Stakeholder::new(&client(home, None)?, &keys).approve(&job, development) {
                Err(e @ ClientError::DevelopmentPolicy { .. }) => bail!(
                    "{e}. Its keys could reach a machine that proves nothing. Run `perun job show {job} --as {}` to \
                     read it; pass --allow-development only to try Perun",
                    who.who
                ),
                r => r?,
            };
            if who.json {
                return print_json(&after);
            }
            show!("{} approved job {job} ({}): now {}", who.who, info.manifest.name, after.state.as_str());
            if !after.missing.is_empty() {
                show!("still awaiting: {}", names(&after.missing));
            }
            Ok(())
        }
        JobCmd::Show { job, who } => {
            let keys = home.load_identity(&who.who)?;
            let (info, policy) = Stakeholder::new(&client(home, None)?, &keys).review_job(&job)?;
            if who.json {
                return print_json(
                    &serde_json::json!({ "job": info, "policy": policy, "development": policy.development() }),
                );
            }
            print_job(&info, &policy);
            Ok(())
        }
        JobCmd::List { who } => {
            let list = client(home, Some(&who.who))?.jobs()?;
            if who.json {
                return print_json(&list);
            }
            for j in list {
                show!("{} {:<9} {}", j.id, j.state.as_str(), j.manifest.name);
            }
            Ok(())
        }
        JobCmd::Status { job, follow, who } => {
            let c = client(home, Some(&who.who))?;
            let mut shown = 0;
            loop {
                let m = c.job_metrics(&job)?;
                if who.json && !follow {
                    return print_json(&m);
                }
                for e in m.epochs.iter().skip(shown) {
                    let v: Vec<String> = e.values.iter().map(|(k, v)| format!("{k}={v}")).collect();
                    show!("epoch {:>3}: {}", e.epoch, v.join(" "));
                }
                shown = m.epochs.len();
                let live = matches!(m.state, perun_proto::JobState::Ready | perun_proto::JobState::Running);
                if !follow || !live {
                    show!("state: {}", m.state.as_str());
                    return Ok(());
                }
                std::thread::sleep(Duration::from_secs(1));
            }
        }
        JobCmd::Review { job, release, refuse: _, who } => super::outputs::review(home, &job, release, &who),
        JobCmd::Receipt { job, out, who } => super::outputs::receipt(home, &job, &out, &who),
        JobCmd::Output { job, out, who } => super::outputs::output(home, &job, &out, &who),
        JobCmd::Revoke { job, reason, who } => {
            let info = client(home, Some(&who.who))?.revoke(&job, &RevokeJob { reason })?;
            if who.json {
                return print_json(&info);
            }
            show!("job {job} is {}", info.state.as_str());
            Ok(())
        }
    }
}

fn print_job(j: &JobInfo, policy: &JobPolicy) {
    show!("job:       {}", j.id);
    show!("name:      {}", j.manifest.name);
    show!("state:     {}", j.state.as_str());
    let purpose = match j.manifest.purpose {
        JobPurpose::Train => "training",
        JobPurpose::Serve => "serving",
    };
    let mode = match j.manifest.mode {
        JobMode::Attested => "attested (TPM quote + IMA)",
        JobMode::Tee => "tee (TEE report)",
    };
    show!("kind:      {purpose}, {mode}");
    show!("proposer:  {}", j.proposer);
    show!("model:     {} of {} ({})", j.manifest.model.asset, j.manifest.model.owner, j.manifest.model.content_digest);
    for d in &j.manifest.data {
        show!("data:      {} of {} ({})", d.asset, d.owner, d.content_digest);
    }
    show!("provider:  {}", j.manifest.provider);
    if j.manifest.workers.is_empty() && j.manifest.mode == JobMode::Tee {
        show!("workers:   any enclave on {}'s TEE hosts whose report the policy accepts", j.manifest.provider);
    } else if j.manifest.workers.is_empty() {
        show!("workers:   any worker {} enrolled", j.manifest.provider);
    } else {
        show!("workers:   {}", j.manifest.workers.iter().cloned().collect::<Vec<_>>().join(", "));
    }
    show!("policy:    `{}` {} (checked against the manifest)", policy.name(), j.manifest.platform_policy);
    for (k, v) in policy.summary() {
        show!("  {k:<14} {v}");
    }
    for d in policy.development() {
        show!("  !!! DEVELOPMENT: {d}");
    }
    if !j.manifest.hyperparameters.is_empty() {
        let h: Vec<String> = j.manifest.hyperparameters.iter().map(|(k, v)| format!("{k}={v}")).collect();
        show!("hyper:     {}", h.join(" "));
    }
    match &j.manifest.privacy {
        Some(p) => show!(
            "privacy:   DP-SGD at epsilon {} delta {:e}, per-sample gradients clipped to {}",
            p.epsilon,
            p.delta,
            p.max_grad_norm
        ),
        None => show!("privacy:   no differential privacy"),
    }
    if let Some(r) = &j.review {
        let by: Vec<&str> = r.reviewers.iter().map(Name::as_str).collect();
        show!("review:    {} (reviewers: {})", r.outcome.as_str(), by.join(", "));
    }
    show!("interval:  attests every {} s", j.manifest.attestation_interval_s);
    show!("expires:   {} (Unix time)", j.manifest.expires_at);
    show!("receivers: {}", names(&j.manifest.receivers));
    if !j.manifest.approvers.is_empty() {
        let extra: Vec<Name> = j.manifest.approvers.iter().cloned().collect();
        show!("approvers: {} (besides the asset owners)", names(&extra));
    }
    show!("approved:  {}", names(&j.approved_by));
    show!("missing:   {}", names(&j.missing));
    if let Some(w) = &j.worker {
        show!("worker:    {w}");
    }
    if let Some(r) = &j.reason {
        show!("reason:    {r}");
    }
    for o in &j.outputs {
        show!("output:    {} {} at {}", o.name, o.sealed_digest, o.location);
    }
}

fn names(n: &[Name]) -> String {
    if n.is_empty() {
        return "-".into();
    }
    n.iter().map(|x| x.as_str()).collect::<Vec<_>>().join(", ")
}

/// `perun worker`.
#[derive(Subcommand)]
pub enum WorkerCmd {
    /// Enrol a worker's TPM (infrastructure provider): its EK public area, from a file
    /// (`tpm2_createek -u`) or read from the TPM at `--tcti`.
    Enrol {
        /// The worker's name.
        #[arg(long)]
        name: Name,
        /// The EK public file.
        #[arg(long, conflicts_with = "tcti")]
        ek: Option<PathBuf>,
        /// Read the EK and its certificate (NV index 0x01c00002) from this TPM
        /// (`device:/dev/tpmrm0`, `swtpm:host=...,port=...`).
        #[arg(long)]
        tcti: Option<String>,
        /// The EK certificate (DER or PEM), where it is not read from the TPM.
        #[arg(long)]
        ek_cert: Option<PathBuf>,
        /// Intermediate CA certificates between the EK certificate and its root.
        #[arg(long = "ek-chain")]
        ek_chain: Vec<PathBuf>,
        #[command(flatten)]
        who: As,
    },
    /// De-enrol a worker you enrolled: it can no longer attest; a job it runs is revoked.
    Deenrol {
        /// The worker's name.
        #[arg(long)]
        name: Name,
        #[command(flatten)]
        who: As,
    },
    /// Run the worker: enrol the TPM's AK with the trust service, then claim and run
    /// ready attested jobs.
    #[cfg(feature = "worker")]
    Run(super::worker::WorkerRunArgs),
}

/// Runs `perun worker`.
pub fn worker(cmd: WorkerCmd, home: &Home) -> Result<()> {
    match cmd {
        #[cfg(feature = "worker")]
        WorkerCmd::Run(a) => super::worker::run(a, home),
        WorkerCmd::Enrol { name, ek, tcti, ek_cert, ek_chain, who } => {
            let read = |f: &PathBuf| std::fs::read(f).with_context(|| format!("reading {}", f.display()));
            let (ek_public, from_tpm) = match (ek, tcti) {
                (Some(f), _) => (read(&f)?, None),
                (None, Some(t)) => read_ek(&t, ek_cert.is_none())?,
                (None, None) => bail!("give the EK with --ek FILE or --tcti TCTI"),
            };
            let ek_certificate = match (ek_cert, from_tpm) {
                (Some(f), _) => read(&f)?,
                (None, Some(c)) => c,
                (None, None) => {
                    bail!("give the EK certificate with --ek-cert FILE (or read it from the TPM with --tcti)")
                }
            };
            let ek_chain = ek_chain.iter().map(|f| read(f).map(Into::into)).collect::<Result<_>>()?;
            let body = EnrolWorker { name, ek_public, ek_certificate, ek_chain };
            let w = client(home, Some(&who.who))?.enrol_worker(&body)?;
            if who.json {
                return print_json(&w);
            }
            show!("enrolled worker `{}` (EK {}, certified by {})", w.name, w.ek_digest, w.ek_issuer);
            match w.ek_bundle_group.as_str() {
                "" => show!(
                    "note: no CA of the shipped TPM makers' or cloud bundle vouches for this TPM: only a policy that \
                     names its CA (`perun policy generate --ek-ca`) accepts it, and approvers are told it is development"
                ),
                g => show!("its TPM chains to the shipped `{g}` EK CA bundle"),
            }
            Ok(())
        }
        WorkerCmd::Deenrol { name, who } => {
            let w = client(home, Some(&who.who))?.deenrol_worker(&name)?;
            if who.json {
                return print_json(&w);
            }
            show!("de-enrolled worker `{}` (EK {})", w.name, w.ek_digest);
            Ok(())
        }
    }
}

/// `perun audit`.
#[derive(Subcommand)]
pub enum AuditCmd {
    /// The records that concern you.
    Show {
        #[command(flatten)]
        who: As,
    },
    /// Check the whole chain: signatures, hashes, order; then show your records.
    Verify {
        #[command(flatten)]
        who: As,
    },
}

/// The EK public area and (with `with_cert`) its certificate, read from the TPM at
/// `tcti`.
#[cfg(feature = "worker")]
fn read_ek(tcti: &str, with_cert: bool) -> Result<(Vec<u8>, Option<Vec<u8>>)> {
    let mut tpm = perun_tpm::device::Tpm::connect(tcti, perun_tpm::tools::KeyAlg::Rsa).with_context(|| {
        format!("connecting to the TPM at {tcti} (no TPM here? see README: without a TPM, an swtpm)")
    })?;
    let cert = if with_cert { Some(tpm.ek_certificate()?) } else { None };
    Ok((tpm.ek_public().to_vec(), cert))
}

/// This build has no TPM access (it was built without the `worker` role).
#[cfg(not(feature = "worker"))]
fn read_ek(_tcti: &str, _with_cert: bool) -> Result<(Vec<u8>, Option<Vec<u8>>)> {
    bail!("this perun was built without the worker role: read the EK with `tpm2_createek -u ek.pub` and give --ek ek.pub --ek-cert FILE")
}

/// Runs `perun audit`.
pub fn audit(cmd: AuditCmd, home: &Home) -> Result<()> {
    let (who, verify) = match cmd {
        AuditCmd::Show { who } => (who, false),
        AuditCmd::Verify { who } => (who, true),
    };
    let keys = home.load_identity(&who.who)?;
    let me = Stakeholder::new(&client(home, None)?, &keys);
    let log = if verify {
        let remote = load_remote(home)?;
        if remote.audit_key.is_empty() {
            bail!(
                "no audit key was pinned for {} (a remote added by an older perun): run `perun remote add {} \
                 --fingerprint {}` again",
                remote.url,
                remote.url,
                remote.fingerprint
            );
        }
        let key = parse_audit_key(&remote.audit_key)?;
        let file = checkpoint_file(home, &who.who);
        let since: Option<perun_proto::audit::Checkpoint> = match std::fs::read(&file) {
            Ok(b) => {
                Some(serde_json::from_slice(&b).with_context(|| format!("{} is not a checkpoint", file.display()))?)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(e).with_context(|| format!("reading {}", file.display())),
        };
        let (log, head) = me.verify_audit(&key, since.as_ref())?;
        if let Some(dir) = file.parent() {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(&file, serde_json::to_vec(&head)?).with_context(|| format!("writing {}", file.display()))?;
        if !who.json {
            let extends = match since {
                Some(c) => format!(", extending the one verified before (record {})", c.seq),
                None => String::new(),
            };
            show!(
                "audit chain verified: {} records, each signed by the service's pinned key, none missing or edited{extends}",
                head.seq
            );
        }
        log
    } else {
        me.client().audit()?
    };
    if who.json {
        return print_json(&log);
    }
    for r in log.records.iter().filter_map(|v| v.body.as_ref()) {
        let job = r.job.map(|j| j.to_string()[7..19].to_owned()).unwrap_or_else(|| "-".into());
        show!("{:>5} {} {:<22} {:<16} job {job}: {}", r.seq, r.at, format!("{:?}", r.kind), r.actor, r.detail);
    }
    Ok(())
}
