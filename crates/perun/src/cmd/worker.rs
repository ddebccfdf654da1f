//! `perun worker run`: the attested worker as a long-running command.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context as _, Result};
use clap::{Args, ValueEnum};
use perun_core::Name;
use perun_tpm::device::Tpm;
use perun_tpm::tools::KeyAlg;
use perun_worker::job::{Progress, RunOptions};
use perun_worker::{Agent, Platform};

use crate::home::Home;

/// Where the IMA log comes from.
#[derive(Clone, Copy, ValueEnum)]
pub enum ImaArg {
    /// The kernel's log in securityfs (production).
    Kernel,
    /// Perun's user-space measurer (development; the policy must opt in).
    UserSpace,
}

/// Arguments of `perun worker run`.
#[derive(Args)]
pub struct WorkerRunArgs {
    /// The worker's name, as the infrastructure provider enrolled it.
    #[arg(long)]
    pub name: Name,
    /// The TPM: `device:/dev/tpmrm0`, or an swtpm (`swtpm:host=127.0.0.1,port=2321`).
    #[arg(long, default_value = "device:/dev/tpmrm0")]
    pub tcti: String,
    /// The IMA log source.
    #[arg(long, value_enum, default_value_t = ImaArg::Kernel)]
    pub ima: ImaArg,
    /// Where sealed outputs are written.
    #[arg(long, default_value = "perun-outputs")]
    pub out: PathBuf,
    /// Run one job, then exit.
    #[arg(long)]
    pub once: bool,
    /// Seconds between looks for ready jobs.
    #[arg(long, default_value_t = 2)]
    pub poll_s: u64,
}

/// Runs the worker.
pub fn run(a: WorkerRunArgs, home: &Home) -> Result<()> {
    // The engine first: a value it does not know is refused before anything enrols.
    let compute = perun_ml::backend::Compute::from_env()?;
    let client = super::context::client(home, None)?;
    let tpm = Tpm::connect(&a.tcti, KeyAlg::Rsa).with_context(|| format!("connecting to the TPM at {}", a.tcti))?;
    let platform = match a.ima {
        ImaArg::Kernel => Platform::kernel(tpm)?,
        ImaArg::UserSpace => Platform::user_space(tpm)?,
    };
    let mut agent = Agent::enrol(&client, a.name.clone(), platform, KeyAlg::Rsa).with_context(|| {
        format!(
            "enrolling `{}`: the infrastructure provider must first run `perun worker enrol --name {} --tcti ...`",
            a.name, a.name
        )
    })?;
    say!("worker {} enrolled: AK proven by credential activation", a.name);
    let opts = RunOptions { out_dir: a.out.clone(), compute };
    loop {
        let offered = agent.offered()?;
        let Some(job) = offered.first() else {
            if a.once {
                say!("no ready job");
                return Ok(());
            }
            std::thread::sleep(Duration::from_secs(a.poll_s.max(1)));
            continue;
        };
        let id = job.id;
        say!("claiming job {id} ({})", job.manifest.name);
        let claimed = agent.claim(&id)?;
        let r = perun_worker::job::run(&mut agent, &claimed, &opts, &mut |p, _| match p {
            Progress::Released { assets } => say!("  keys released for {} assets", assets.len()),
            Progress::Opened { asset, bytes } => say!("  {asset}: opened in memory ({bytes} bytes)"),
            Progress::Epoch(m) => say!("  {}", super::train::epoch_line(m)),
            Progress::Delivered { path, review } => say!("  {}", super::train::delivered_line(path, review)),
            _ => {}
        });
        let aborted = match r {
            Ok(report) => {
                say!("job {id} finished ({} continuous attestations)", report.reattestations);
                None
            }
            Err(e) => {
                say!("job {id} aborted, keys and data wiped: {e}");
                Some(e)
            }
        };
        if a.once {
            // One job was asked for: its abort is the command's failure.
            return match aborted {
                Some(e) => Err(anyhow::anyhow!("job {id} aborted: {e}")),
                None => Ok(()),
            };
        }
    }
}
