//! `perun enclave` (the `tee`-mode worker: serve a model, or train, inside a TEE),
//! `perun predict --remote` (a client's private predictions) and `perun policy tee`.

#[cfg(feature = "enclave")]
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _, Result};
#[cfg(feature = "enclave")]
use clap::Subcommand;
use clap::{Args, ValueEnum};
use perun_attest::tee::{AllowedTee, TcbLevel, TeeKind, TeePolicy};
use perun_core::{Digest, Name};
#[cfg(feature = "enclave")]
use perun_enclave::enclave::Enclave;
#[cfg(feature = "enclave")]
use perun_enclave::serve::{RunningEnclave, Serving};
#[cfg(feature = "enclave")]
use perun_enclave::source::{ConfigfsTsm, EvidenceSource, Gramine, SimTee};
use perun_enclave::{Querier, RemoteModel};
#[cfg(feature = "enclave")]
use perun_worker::job::{Progress, RunOptions};

use crate::home::Home;

/// Which TEE interface the enclave uses.
#[cfg(feature = "enclave")]
#[derive(Clone, Copy, ValueEnum)]
pub enum TeeArg {
    /// The sim TEE: software, for development; policies refuse it unless they name its key.
    Sim,
    /// Gramine SGX: `/dev/attestation`.
    Gramine,
    /// Linux configfs-tsm: TDX or SEV-SNP guests.
    Tsm,
}

#[cfg(feature = "enclave")]
/// Where the enclave's evidence comes from.
#[derive(Args)]
pub struct SourceArgs {
    /// The TEE interface.
    #[arg(long, value_enum)]
    pub tee: TeeArg,
    /// The sim TEE's key file (made if missing; `perun enclave sim-key` prints its
    /// public half for policies).
    #[arg(long, default_value = "perun-sim-tee.key")]
    pub sim_key: PathBuf,
    /// The interface folder (default: `/dev/attestation` for Gramine,
    /// `/sys/kernel/config/tsm/report` for configfs-tsm).
    #[arg(long)]
    pub attestation_dir: Option<PathBuf>,
    /// Verification material that travels with each report (JSON): DCAP collateral for
    /// SGX and TDX, `{"vcek": "<DER hex>"}` for SEV-SNP.
    #[arg(long)]
    pub collateral: Option<PathBuf>,
}

#[cfg(feature = "enclave")]
impl SourceArgs {
    fn open(&self) -> Result<Box<dyn EvidenceSource>> {
        let collateral = || -> Result<serde_json::Value> {
            let p = self.collateral.as_ref().context("--collateral is needed for hardware TEE reports")?;
            let bytes = std::fs::read(p).with_context(|| format!("reading {}", p.display()))?;
            serde_json::from_slice(&bytes).with_context(|| format!("{} is not JSON", p.display()))
        };
        Ok(match self.tee {
            TeeArg::Sim => {
                let key = SimTee::load_or_create_key(&self.sim_key)?;
                Box::new(SimTee::for_this_binary(key)?)
            }
            TeeArg::Gramine => Box::new(Gramine::new(
                self.attestation_dir.clone().unwrap_or_else(|| "/dev/attestation".into()),
                collateral()?,
            )),
            TeeArg::Tsm => Box::new(ConfigfsTsm::new(
                self.attestation_dir.clone().unwrap_or_else(|| "/sys/kernel/config/tsm/report".into()),
                collateral()?,
            )),
        })
    }
}

#[cfg(feature = "enclave")]
/// Which job an enclave claims, as whom, with which TEE.
#[derive(Args)]
pub struct ClaimArgs {
    /// The job.
    #[arg(long)]
    pub job: Digest,
    /// The enclave's name (it becomes the job's worker).
    #[arg(long)]
    pub name: Name,
    #[command(flatten)]
    pub source: SourceArgs,
}

#[cfg(feature = "enclave")]
impl ClaimArgs {
    /// Claims the job with this TEE's report.
    fn claim(&self, home: &Home) -> Result<perun_enclave::enclave::Claim> {
        let base = super::context::client(home, None)?;
        Enclave::claim(&base, self.name.clone(), self.source.open()?, self.job)
            .with_context(|| format!("claiming job {} as enclave `{}`", self.job, self.name))
    }
}

#[cfg(feature = "enclave")]
/// Why serving stops on SIGINT or SIGTERM.
const OPERATOR_STOP: &str = "the operator stopped the enclave";

#[cfg(feature = "enclave")]
/// Stops `serving` (the model is wiped) when the process gets SIGINT or SIGTERM.
fn stop_on_signal(serving: std::sync::Arc<Serving>) -> Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let (mut int, mut term) = rt.block_on(async {
        Ok::<_, std::io::Error>((signal(SignalKind::interrupt())?, signal(SignalKind::terminate())?))
    })?;
    std::thread::Builder::new().name("perun-signals".into()).spawn(move || {
        rt.block_on(async {
            tokio::select! {
                _ = int.recv() => {}
                _ = term.recv() => {}
            }
        });
        serving.stop(OPERATOR_STOP.into());
    })?;
    Ok(())
}

#[cfg(feature = "enclave")]
/// `perun enclave` subcommands.
#[derive(Subcommand)]
pub enum EnclaveCmd {
    /// Claim a `tee` serving job with this TEE's report, open the model in memory and
    /// serve predictions (private requests only, unless --allow-plain).
    Serve {
        #[command(flatten)]
        claim: ClaimArgs,
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:8443")]
        listen: SocketAddr,
        /// Also answer rows sent in the clear (the host's operator can read them).
        #[arg(long)]
        allow_plain: bool,
    },
    /// Claim a `tee` training job and train inside the TEE (CPU), sealing the model to
    /// the receivers.
    Run {
        #[command(flatten)]
        claim: ClaimArgs,
        /// Where sealed outputs are written.
        #[arg(long, default_value = "perun-outputs")]
        out: PathBuf,
    },
    /// Make (or read) a sim TEE key, and print what a policy names to accept it.
    SimKey {
        /// The key file.
        #[arg(long, default_value = "perun-sim-tee.key")]
        out: PathBuf,
    },
}

#[cfg(feature = "enclave")]
/// Runs `perun enclave`.
pub fn run(cmd: EnclaveCmd, home: &Home) -> Result<()> {
    match cmd {
        EnclaveCmd::Serve { claim: args, listen, allow_plain } => {
            let (job, name) = (args.job, &args.name);
            let claim = args.claim(home)?;
            say!(
                "enclave {name}: {:?} report accepted ({}); model key released",
                claim.claims.kind,
                claim.claims.tcb_status
            );
            let serving = Serving::open(claim, perun_ml::backend::Compute::Cpu, allow_plain)?;
            let running = RunningEnclave::start(serving, listen, 2)?;
            // Handlers first: once the URL is out, a stop request must find them.
            stop_on_signal(running.serving().clone())?;
            say!("serving job {job} at {} (POST /v1/attestation, /v1/predict)", running.url());
            let why = running.wait();
            if why == OPERATOR_STOP {
                running.finish()?;
                say!("stopped by the operator: model wiped, serving job finished");
                return Ok(());
            }
            bail!("stopped serving: {why}")
        }
        EnclaveCmd::Run { claim: args, out } => {
            let (job, name) = (args.job, &args.name);
            let claim = args.claim(home)?;
            say!(
                "enclave {name}: {:?} report accepted; keys released for {} assets",
                claim.claims.kind,
                claim.keys.keys.len()
            );
            let opts = RunOptions { out_dir: out, compute: perun_ml::backend::Compute::Cpu };
            let mut enclave = claim.enclave;
            let report = perun_worker::job::run_released(
                &mut enclave,
                &claim.claimed,
                claim.keys,
                claim.seconds,
                &opts,
                &mut |p, _| match p {
                    Progress::Opened { asset, bytes } => say!("  {asset}: opened in memory ({bytes} bytes)"),
                    Progress::Epoch(m) => say!("  {}", super::train::epoch_line(m)),
                    Progress::Delivered { path, review } => {
                        say!("  {}", super::train::delivered_line(path, review))
                    }
                    _ => {}
                },
            )?;
            say!("job {job} finished ({} continuous attestations)", report.reattestations);
            Ok(())
        }
        EnclaveCmd::SimKey { out } => {
            let sim = SimTee::for_this_binary(SimTee::load_or_create_key(&out)?)?;
            say!("sim TEE key {} (software: no hardware protects it)", out.display());
            say!("  public key   {}", sim.public_key());
            say!("  measurement  {} (this perun binary)", sim.measurement().to_hex());
            say!("a policy accepts it only if it names both: perun policy tee --sim-key {} --measurement measurement={} ...", sim.public_key(), sim.measurement().to_hex());
            Ok(())
        }
    }
}

/// The lowest acceptable TCB, as the command line spells it.
#[derive(Clone, Copy, ValueEnum)]
pub enum TcbArg {
    /// Fully up to date.
    UpToDate,
    /// Up to date, software hardening advised.
    SwHardeningNeeded,
    /// Up to date, configuration advised.
    ConfigurationNeeded,
    /// Out of date (not advised).
    OutOfDate,
}

/// TEE kinds, as the command line spells them.
#[derive(Clone, Copy, ValueEnum)]
pub enum KindArg {
    /// The sim TEE.
    Sim,
    /// Intel SGX.
    Sgx,
    /// Intel TDX.
    Tdx,
    /// AMD SEV-SNP.
    SevSnp,
}

/// Arguments of `perun policy tee`.
#[derive(Args)]
pub struct TeePolicyArgs {
    /// The policy's name.
    #[arg(long)]
    pub name: String,
    /// The TEE kind the measurements are for.
    #[arg(long, value_enum)]
    pub kind: KindArg,
    /// Required measurements, `name=hex` (`mr_enclave`, `mr_signer`, `isv_prod_id`,
    /// `mr_td`, `rtmr0`.., `measurement`, `policy`...).
    #[arg(long = "measurement", required = true)]
    pub measurements: Vec<String>,
    /// The lowest acceptable TCB status.
    #[arg(long, value_enum, default_value_t = TcbArg::UpToDate)]
    pub min_tcb: TcbArg,
    /// Accept the sim TEE with this public key (development only).
    #[arg(long)]
    pub sim_key: Vec<String>,
    /// The lowest security version of a TCB component, `component=N`: SEV-SNP policies
    /// need all of `bootloader`, `tee`, `snp` and `microcode` (the report states no
    /// vendor TCB level); SGX may set `isv_svn`.
    #[arg(long = "min-svn")]
    pub min_svn: Vec<String>,
    /// Accept TEEs that allow debugging (their memory is the host's to read; development
    /// only).
    #[arg(long)]
    pub allow_debug: bool,
    /// Where to write the policy (JSON).
    #[arg(long)]
    pub out: PathBuf,
}

/// Writes a TEE policy.
pub fn tee_policy(a: TeePolicyArgs) -> Result<()> {
    let mut measurements = std::collections::BTreeMap::new();
    for m in &a.measurements {
        let (k, v) = m.split_once('=').with_context(|| format!("`{m}`: expected name=hex"))?;
        measurements.insert(k.to_owned(), v.to_ascii_lowercase());
    }
    let mut min_svn = std::collections::BTreeMap::new();
    for m in &a.min_svn {
        let (k, v) = m.split_once('=').with_context(|| format!("`{m}`: expected component=N"))?;
        let v: u64 = v.parse().with_context(|| format!("`{m}`: the version must be a number"))?;
        min_svn.insert(k.to_owned(), v);
    }
    let kind = match a.kind {
        KindArg::Sim => TeeKind::Sim,
        KindArg::Sgx => TeeKind::Sgx,
        KindArg::Tdx => TeeKind::Tdx,
        KindArg::SevSnp => TeeKind::SevSnp,
    };
    let policy = TeePolicy {
        name: a.name,
        allowed: vec![AllowedTee { kind: Some(kind), measurements }],
        min_tcb: match a.min_tcb {
            TcbArg::UpToDate => TcbLevel::UpToDate,
            TcbArg::SwHardeningNeeded => TcbLevel::SwHardeningNeeded,
            TcbArg::ConfigurationNeeded => TcbLevel::ConfigurationNeeded,
            TcbArg::OutOfDate => TcbLevel::OutOfDate,
        },
        sim_keys: a.sim_key.into_iter().collect(),
        min_svn,
        allow_debug: a.allow_debug,
    };
    if kind == TeeKind::SevSnp {
        let missing: Vec<&str> = perun_attest::tee::SNP_TCB_COMPONENTS
            .iter()
            .copied()
            .filter(|c| !policy.min_svn.contains_key(*c))
            .collect();
        anyhow::ensure!(
            missing.is_empty(),
            "an SEV-SNP policy needs a TCB floor: add --min-svn for {} (e.g. --min-svn bootloader=3; the \
             values of a known-good report are in its reported TCB)",
            missing.join(", ")
        );
    }
    let json = serde_json::to_vec_pretty(&policy)?;
    TeePolicy::from_json(&json)?;
    if a.out.exists() {
        bail!("{} exists: choose a new file", a.out.display());
    }
    std::fs::write(&a.out, json).with_context(|| format!("writing {}", a.out.display()))?;
    println!("TEE policy `{}` written to {}", policy.name, a.out.display());
    if !policy.sim_keys.is_empty() {
        println!("it accepts the sim TEE (software, no hardware protection): for development only");
    }
    Ok(())
}

/// Arguments of `perun predict`.
#[derive(Args)]
pub struct PredictArgs {
    /// The serving enclave's URL.
    #[arg(long)]
    pub remote: String,
    /// The TEE policy this client trusts (JSON).
    #[arg(long)]
    pub policy: PathBuf,
    /// The serving job you are a receiver of (its id, `sha256:...`: `perun job list
    /// --as NAME` lists your jobs, `perun job show JOB --as NAME` shows one); the enclave
    /// must serve it, and answers only the job's receivers.
    #[arg(long, value_name = "JOB_ID")]
    pub job: Digest,
    /// The identity to query as: a receiver of the job (see `perun id new`); requests
    /// are signed with its key.
    #[arg(long = "as", value_name = "NAME")]
    pub who: Name,
    /// Rows to predict (CSV with a header; every column a number).
    #[arg(long)]
    pub input: PathBuf,
    /// A label column to leave out of the rows (and to score the predictions against).
    #[arg(long)]
    pub label: Option<String>,
    /// Rows per request (at most what the enclave takes, 1024 for most models).
    #[arg(long, default_value_t = 256)]
    pub batch: usize,
    /// The Perun home (`--home` or `$PERUN_HOME`), where the identity's key is.
    #[arg(from_global)]
    pub home: Option<PathBuf>,
}

/// Reads the rows to predict: every column a number; with `label`, that column is the
/// class (indexed as `perun dataset import` indexes it) and is left out of the rows.
pub fn read_rows(path: &Path, label: Option<&str>) -> Result<(Vec<Vec<f32>>, Vec<i64>)> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    if let Some(label) = label {
        let d =
            perun_seal::dataset::import_csv(&bytes, label).with_context(|| format!("reading {}", path.display()))?;
        return Ok((d.rows(), d.labels.clone()));
    }
    let table = perun_seal::dataset::read_table(&bytes).with_context(|| format!("reading {}", path.display()))?;
    let rows = table.numbers().with_context(|| format!("reading {}", path.display()))?;
    Ok((rows, Vec::new()))
}

/// Runs `perun predict`.
pub fn predict(a: PredictArgs) -> Result<()> {
    let home = Home::resolve(a.home.clone());
    let keys = home.load_identity(&a.who)?;
    let querier = Querier { name: a.who.clone(), key: keys.signing_key().clone() };
    drop(keys);
    let bytes = std::fs::read(&a.policy).with_context(|| format!("reading {}", a.policy.display()))?;
    let policy = TeePolicy::from_json(&bytes).with_context(|| format!("{} is not a TEE policy", a.policy.display()))?;
    let (rows, labels) = read_rows(&a.input, a.label.as_deref())?;
    let remote = RemoteModel::connect(&a.remote, &policy, a.job, querier, perun_proto::unix_now())
        .with_context(|| format!("verifying the enclave at {}", a.remote))?;
    let c = remote.claims();
    eprintln!(
        "enclave verified: {:?}, TCB {}, serving `{}` for job {}; rows are sealed to its attested key",
        c.kind,
        c.tcb_status,
        remote.model(),
        remote.job()
    );
    if c.kind == TeeKind::Sim {
        eprintln!("warning: the sim TEE is software: your policy names its key, so accept this for development only");
    }
    let mut predictions = Vec::with_capacity(rows.len());
    for chunk in rows.chunks(a.batch.clamp(1, remote.max_rows())) {
        predictions.extend(remote.predict(chunk).with_context(|| format!("predicting as `{}`", a.who))?);
    }
    println!("row,class,probabilities");
    for (i, p) in predictions.iter().enumerate() {
        let probs: Vec<String> = p.probabilities.iter().map(|v| format!("{v:.4}")).collect();
        println!("{},{},{}", i + 1, p.class, probs.join(" "));
    }
    if !labels.is_empty() {
        let hits = predictions.iter().zip(&labels).filter(|(p, &l)| p.class as i64 == l).count();
        eprintln!("{hits} of {} predictions match the `{}` column", labels.len(), a.label.unwrap_or_default());
    }
    Ok(())
}
