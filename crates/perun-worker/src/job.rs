//! Running one claimed job: attest and receive the keys, fetch and open the sealed assets
//! in memory (checking their digests against the manifest), train, re-attest at the
//! manifest's interval, report metrics, seal the model to the receivers and deliver it.
//! On an abort answer or a refused attestation training stops, every key, plaintext and
//! weight is wiped, and the worker reports why.

use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use perun_client::claim::{open_asset, ReleasedKeys};
use perun_client::{ClaimError, ClientError};
use perun_core::{AssetKind, Digest, JobManifest, Name};
use perun_ml::backend::Compute;
use perun_ml::{EpochMetrics, ModelSpec, TrainEvent};
use perun_proto::wire::{AssetLocation, Claimed, FailJob, FinishJob, ReportMetrics};
use perun_proto::OutputInfo;
use perun_seal::{AssetKey, Dataset};
use zeroize::{Zeroize as _, Zeroizing};

use crate::WorkerError;

/// What the job runner tells its caller as it goes.
#[derive(Debug)]
pub enum Progress<'a> {
    /// The first attestation was accepted and these keys released.
    Released {
        /// Assets whose keys arrived.
        assets: Vec<Name>,
    },
    /// A sealed asset was fetched, opened in memory and its digest checked.
    Opened {
        /// The asset.
        asset: &'a Name,
        /// Plaintext bytes (in memory only).
        bytes: usize,
    },
    /// Training starts: total steps.
    Training {
        /// Steps in all epochs.
        steps: u64,
    },
    /// A training step finished.
    Step,
    /// An epoch finished (already reported to the service).
    Epoch(&'a EpochMetrics),
    /// A continuous attestation was accepted.
    Reattested {
        /// IMA entries verified this round.
        new_entries: usize,
    },
    /// The model was sealed and delivered: to the receivers, or, where an owner's terms
    /// ask for review, under a key only the trust service holds until the owners release it.
    Delivered {
        /// Where it was written.
        path: &'a Path,
        /// Whether the model awaits the owners' review.
        review: bool,
    },
}

/// Seconds spent in each phase of a job.
#[derive(Clone, Debug, Default)]
pub struct Phases {
    /// First attestation and key release (quote, log, appraisal, HPKE).
    pub attest_and_release: f64,
    /// Fetching and opening the sealed assets.
    pub fetch_and_open: f64,
    /// Training, including continuous attestations and metric reports.
    pub train: f64,
    /// Of which continuous attestations.
    pub reattest: f64,
    /// Sealing and delivering the outputs.
    pub seal_and_deliver: f64,
}

/// A finished job.
#[derive(Debug)]
pub struct JobReport {
    /// The outputs delivered.
    pub outputs: Vec<OutputInfo>,
    /// What DP-SGD spent, for a job that declared privacy.
    pub privacy: Option<perun_core::receipt::PrivacySpent>,
    /// Per-epoch metrics.
    pub metrics: Vec<EpochMetrics>,
    /// Continuous attestations made.
    pub reattestations: usize,
    /// Time per phase.
    pub phases: Phases,
}

/// Options of a job run.
#[derive(Clone, Debug)]
pub struct RunOptions {
    /// Where sealed outputs are written.
    pub out_dir: PathBuf,
    /// Compute device.
    pub compute: Compute,
}

/// What runs a job needs from whatever attests for it: a TPM worker (`Agent`, feature `tpm`) or an
/// enclave (`perun-enclave`).
pub trait Attester {
    /// A continuous attestation for `job`; returns the IMA entries it verified (0 for a
    /// TEE report).
    fn reattest(&mut self, job: &Digest) -> Result<usize, WorkerError>;
    /// The client authenticated as the job's worker.
    fn client(&self) -> &perun_client::Client;
    /// Delivers the job's outputs: a TPM worker with a last quote over their claims
    /// ([`FinishJob::attestation`]); an enclave with the token sealed to it.
    fn finish(&mut self, job: &Digest, body: FinishJob) -> Result<(), WorkerError>;
}

/// Runs a claimed job to its end. `on` sees each step and may touch the platform (the
/// demo uses it to run a program the policy does not allow).
#[cfg(feature = "tpm")]
pub fn run(
    agent: &mut crate::Agent,
    claimed: &Claimed,
    opts: &RunOptions,
    on: &mut dyn FnMut(Progress<'_>, &mut crate::Agent),
) -> Result<JobReport, WorkerError> {
    let job = claimed.job.id;
    perun_client::claim::check_claim(claimed)?;
    let t = Instant::now();
    let (eph, answer) = agent.attest(&job, &claimed.nonce)?;
    let released = perun_client::claim::open_released(&job, &eph, &answer)?;
    drop(eph);
    let attest_and_release = t.elapsed().as_secs_f64();
    run_released(agent, claimed, released, attest_and_release, opts, on)
}

/// Runs a job whose first attestation was accepted and whose keys are open (its claim
/// checked by [`perun_client::claim::check_claim`] before that, where the keys were opened): fetch and
/// open the assets, train under continuous attestation, seal and deliver the model.
/// `attest_and_release` is the time the first attestation took, for the report.
pub fn run_released<A: Attester>(
    agent: &mut A,
    claimed: &Claimed,
    released: ReleasedKeys,
    attest_and_release: f64,
    opts: &RunOptions,
    on: &mut dyn FnMut(Progress<'_>, &mut A),
) -> Result<JobReport, WorkerError> {
    let job = claimed.job.id;
    let manifest = &claimed.job.manifest;
    let mut phases = Phases { attest_and_release, ..Phases::default() };
    on(Progress::Released { assets: released.keys.iter().map(|(n, _)| n.clone()).collect() }, agent);

    let t = Instant::now();
    let opened = open_assets(agent, &claimed.assets, &released.keys, on);
    drop(released);
    let (spec_bytes, mut datasets) = match opened {
        Ok(o) => o,
        Err(e) => return Err(abort(agent, &job, e)),
    };
    phases.fetch_and_open = t.elapsed().as_secs_f64();

    let spec = match spec_with_overrides(&spec_bytes, manifest) {
        Ok(s) => s,
        Err(e) => return Err(abort(agent, &job, e)),
    };
    drop(spec_bytes);
    let mut data = datasets.remove(0);
    for d in &datasets {
        if let Err(e) = data.append(d) {
            return Err(abort(agent, &job, WorkerError::DataMismatch(e)));
        }
    }
    for mut d in datasets {
        wipe(&mut d);
    }

    let t = Instant::now();
    let interval = Duration::from_secs(manifest.attestation_interval_s);
    let mut last_attested = Instant::now();
    let mut reattestations = 0usize;
    let mut reattest_s = 0.0;
    let steps = data.len().div_ceil(spec.training.batch_size.max(1)) as u64 * spec.training.epochs as u64;
    on(Progress::Training { steps }, agent);
    let mut failure: Option<WorkerError> = None;
    let outcome = perun_ml::train(&spec, None, &data, opts.compute, &mut |ev| {
        match ev {
            TrainEvent::Step { .. } => on(Progress::Step, agent),
            TrainEvent::Epoch(m) => {
                let mut values = serde_json::Map::new();
                values.insert("train_loss".into(), serde_json::json!(m.train_loss));
                values.insert("train_accuracy".into(), serde_json::json!(m.train_accuracy));
                if let Some(v) = m.val_accuracy {
                    values.insert("val_accuracy".into(), serde_json::json!(v));
                }
                let r: Result<(), ClientError> =
                    agent.client().report_metrics(&job, &ReportMetrics { epoch: m.epoch as u32, values });
                if let Err(e) = r {
                    failure = Some(e.into());
                    return ControlFlow::Break("the trust service stopped the job".into());
                }
                on(Progress::Epoch(m), agent);
            }
        }
        if last_attested.elapsed() >= interval {
            let r0 = Instant::now();
            let r = agent.reattest(&job);
            reattest_s += r0.elapsed().as_secs_f64();
            match r {
                Ok(new_entries) => {
                    reattestations += 1;
                    last_attested = Instant::now();
                    on(Progress::Reattested { new_entries }, agent);
                }
                Err(e) => {
                    failure = Some(e);
                    return ControlFlow::Break("continuous attestation failed".into());
                }
            }
        }
        ControlFlow::Continue(())
    });
    wipe(&mut data);
    let outcome = match (outcome, failure) {
        (Ok(o), None) => o,
        (_, Some(e)) => return Err(abort(agent, &job, e)),
        (Err(e), None) => return Err(abort(agent, &job, WorkerError::Training(e))),
    };
    phases.train = t.elapsed().as_secs_f64();
    phases.reattest = reattest_s;

    // One last attestation covers everything up to the end of training.
    let t = Instant::now();
    if let Err(e) = agent.reattest(&job) {
        return Err(abort(agent, &job, e));
    }
    // Under the owners' review, the model is sealed under a fresh key wrapped to the
    // service for this job and output, which hands it to the receivers only once every
    // reviewer released it.
    let (recipients, wrapped_key) = match &claimed.review_recipient {
        Some(service) => {
            let key = AssetKey::generate();
            let service = perun_seal::keys::parse_recipient(service)
                .map_err(|source| WorkerError::Recipient { who: "the service".into(), source })?;
            let context = perun_seal::wrap::WrapContext::output_key(&job, "model");
            let wrapped = perun_seal::wrap::wrap(key.to_secret_string().as_bytes(), &service, &context)?;
            (vec![key.recipient()], Some(perun_core::HexBytes(wrapped)))
        }
        None => (
            claimed
                .receivers
                .iter()
                .map(|(n, r)| {
                    perun_seal::keys::parse_recipient(r)
                        .map_err(|source| WorkerError::Recipient { who: format!("receiver {n}"), source })
                })
                .collect::<Result<Vec<_>, _>>()?,
            None,
        ),
    };
    std::fs::create_dir_all(&opts.out_dir)
        .map_err(|source| WorkerError::Io { what: format!("creating {}", opts.out_dir.display()), source })?;
    let path = opts.out_dir.join(format!("{}-model.sealed", &job.to_hex()[..16]));
    let info = perun_seal::seal_bytes_to_file(&outcome.weights, AssetKind::Output, &recipients, &path)?;
    let output = OutputInfo {
        name: "model".into(),
        sealed_digest: info.sealed_digest,
        location: path.to_string_lossy().into_owned(),
        wrapped_key,
    };
    let outputs = vec![output];
    let finish = FinishJob {
        outputs: outputs.clone(),
        model_digest: Some(perun_core::Digest::of(&outcome.weights)),
        privacy: outcome.privacy,
        attestation: None,
    };
    if let Err(e) = agent.finish(&job, finish) {
        let _ = std::fs::remove_file(&path);
        return Err(e);
    }
    phases.seal_and_deliver = t.elapsed().as_secs_f64();
    on(Progress::Delivered { path: &path, review: claimed.review_recipient.is_some() }, agent);
    Ok(JobReport { outputs, metrics: outcome.metrics.clone(), reattestations, phases, privacy: outcome.privacy })
}

/// Fetches and opens every asset: the model spec's bytes, and the data sets.
fn open_assets<A>(
    agent: &mut A,
    assets: &[AssetLocation],
    keys: &[(Name, AssetKey)],
    on: &mut dyn FnMut(Progress<'_>, &mut A),
) -> Result<(Zeroizing<Vec<u8>>, Vec<Dataset>), WorkerError> {
    let mut spec = None;
    let mut data = Vec::new();
    for a in assets {
        let plain = open_asset(a, keys)?;
        on(Progress::Opened { asset: &a.asset, bytes: plain.len() }, agent);
        match a.kind {
            AssetKind::Model => spec = Some(plain),
            AssetKind::Dataset => data.push(Dataset::from_safetensors(&plain)?),
            AssetKind::Output => {
                return Err(ClaimError::Mismatch { what: format!("{} is an output, not an input", a.asset) }.into())
            }
        }
    }
    let spec = spec.ok_or_else(|| ClaimError::Mismatch { what: "the job has no model".into() })?;
    if data.is_empty() {
        return Err(ClaimError::Mismatch { what: "the job has no data".into() }.into());
    }
    Ok((spec, data))
}

/// The model spec with the manifest's hyper-parameters applied (to `training` or
/// `optimizer` fields; anything else is refused).
fn spec_with_overrides(bytes: &[u8], manifest: &JobManifest) -> Result<ModelSpec, WorkerError> {
    let bad = WorkerError::Spec;
    let mut v: serde_json::Value = serde_json::from_slice(bytes).map_err(|e| bad(e.to_string()))?;
    for (k, val) in &manifest.hyperparameters {
        let mut placed = false;
        for section in ["training", "optimizer"] {
            if let Some(obj) = v.get_mut(section).and_then(|s| s.as_object_mut()) {
                if obj.contains_key(k) || (section == "training" && matches!(k.as_str(), "seed" | "standardize")) {
                    obj.insert(k.clone(), val.clone());
                    placed = true;
                    break;
                }
            }
        }
        if !placed {
            return Err(bad(format!("hyper-parameter `{k}` is neither a training nor an optimizer setting")));
        }
    }
    let bytes = Zeroizing::new(serde_json::to_vec(&v).map_err(|e| bad(e.to_string()))?);
    let mut spec = ModelSpec::from_json(&bytes).map_err(|e| bad(e.to_string()))?;
    // The privacy the owners signed (and the ledger charges) is the manifest's, whatever
    // the spec says.
    spec.training.privacy = manifest.privacy;
    spec.validate().map_err(|e| bad(e.to_string()))?;
    Ok(spec)
}

/// Overwrites a data set's values in memory.
fn wipe(d: &mut Dataset) {
    d.features.zeroize();
    d.labels.zeroize();
}

/// Reports an aborted job to the service (best effort) and hands the error back. The
/// keys and plaintext were dropped (and wiped) on the way out.
fn abort<A: Attester>(agent: &mut A, job: &Digest, e: WorkerError) -> WorkerError {
    tracing::warn!(%job, error = %e, "job aborted; keys, data and weights wiped");
    let reason = e.to_string();
    let _: Result<(), ClientError> = agent.client().fail(job, &FailJob { reason });
    e
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hyperparameters_reach_the_spec_and_unknown_ones_are_refused() {
        let spec = include_bytes!("../../../examples/models/breast-cancer-mlp.json");
        let mut m: JobManifest = serde_json::from_value(serde_json::json!({
            "schema": 2, "name": "x", "mode": "attested", "provider": "infra",
            "model": {"asset": "m", "owner": "o", "kind": "model", "content_digest": Digest::of(b"m")},
            "data": [{"asset": "d", "owner": "o", "kind": "dataset", "content_digest": Digest::of(b"d")}],
            "platform_policy": Digest::of(b"p"), "receivers": ["o"], "attestation_interval_s": 5,
            "created_at": 1, "expires_at": 2
        }))
        .unwrap();
        m.hyperparameters.insert("epochs".into(), serde_json::json!(3));
        assert_eq!(spec_with_overrides(spec, &m).unwrap().training.epochs, 3);
        m.hyperparameters.insert("exfiltrate_to".into(), serde_json::json!("evil.example"));
        assert!(spec_with_overrides(spec, &m).is_err());
    }
}
