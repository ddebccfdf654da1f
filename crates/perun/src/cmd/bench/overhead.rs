//! `perun bench overhead`: what protection costs. The same CIFAR-10-shaped job is run
//! twice on the same data: by the training engine directly (what `perun train` does, no
//! protection), and through the whole attested flow of `perun demo` (two hospitals'
//! sealed halves, an approved job, attestation on an swtpm, HPKE key release, fetch and
//! open in memory, training under continuous attestation, the model sealed to its
//! receiver). Printed: each phase, the totals, and the ratio.

use std::collections::BTreeMap;
use std::time::Instant;

use anyhow::Result;
use perun_core::AssetKind;
use perun_worker::job::RunOptions;

use crate::cmd::local::LocalWorld;

/// Runs the benchmark.
pub fn run(samples: usize, epochs: usize, compute: perun_ml::backend::Compute) -> Result<()> {
    let mut spec = perun_ml::ModelSpec::from_json(crate::embedded::CIFAR10_CNN)?;
    spec.training.epochs = epochs;
    let data = super::data::cifar_shaped(samples, 11)?;
    println!(
        "CIFAR-10-shaped CNN, {samples} generated 3x32x32 images, {epochs} epoch(s), batch {}, on {}",
        spec.training.batch_size,
        perun_ml::backend::place(compute, &spec)?.describe()
    );

    // The baseline: training with no protection, once before and once after the attested
    // run (training time drifts between runs; the mean is the baseline).
    let plain_run = |data: &perun_seal::Dataset| -> Result<f64> {
        let t = Instant::now();
        perun_ml::train(&spec, None, data, compute, &mut |_| std::ops::ControlFlow::Continue(()))?;
        Ok(t.elapsed().as_secs_f64())
    };
    let plain_before = plain_run(&data)?;

    // The attested flow. Setup (identities, sealing, registration, enrolment, approval)
    // is the stakeholders' work before the job and is reported apart.
    let root = tempfile::tempdir()?;
    let t = Instant::now();
    let world = LocalWorld::start(root.path(), &["hospital-a", "hospital-b", "model-owner", "infra"])?;
    let [a, b, owner, infra] = &world.parties[..] else { anyhow::bail!("four parties") };
    let halves = data.split(&[50.0, 50.0], 3)?;
    let mut refs = Vec::new();
    for (p, half, name) in [(a, &halves[0], "cifar-a"), (b, &halves[1], "cifar-b")] {
        let plain = zeroize::Zeroizing::new(half.to_safetensors()?);
        refs.push(world.seal_and_register(p, name, AssetKind::Dataset, &plain)?.0);
    }
    drop(halves);
    let (model, _, _) = world.seal_and_register(owner, "cnn", AssetKind::Model, crate::embedded::CIFAR10_CNN)?;
    let (mut agent, policy, _) = world.worker(infra, "gpu-1")?;
    let hyper = BTreeMap::from([("epochs".to_owned(), serde_json::json!(epochs))]);
    let job = world.propose_and_approve(
        owner,
        "overhead".into(),
        &model,
        &refs,
        policy.digest,
        vec![owner.name().clone()],
        5,
        hyper,
        &[owner, a, b],
        &mut |_, _| {},
    )?;
    let setup_s = t.elapsed().as_secs_f64();

    let t = Instant::now();
    let claimed = agent.claim(&job)?;
    let claim_s = t.elapsed().as_secs_f64();
    let opts = RunOptions { out_dir: root.path().join("outputs"), compute };
    let t = Instant::now();
    let report = perun_worker::job::run(&mut agent, &claimed, &opts, &mut |_, _| {})?;
    let job_s = t.elapsed().as_secs_f64() + claim_s;
    let plain_after = plain_run(&data)?;
    let plain_s = (plain_before + plain_after) / 2.0;
    let ph = &report.phases;
    let training_only = ph.train - ph.reattest;
    let protection = job_s - training_only;

    println!();
    println!("| phase | attested flow (s) | plain training (s) |");
    println!("|---|---|---|");
    println!("| claim | {claim_s:.3} | - |");
    println!("| attestation + key release (quote, IMA, appraisal, HPKE) | {:.3} | - |", ph.attest_and_release);
    println!("| fetch + open sealed assets in memory (digest checks) | {:.3} | - |", ph.fetch_and_open);
    println!("| training | {training_only:.3} | {plain_s:.3} |");
    println!("| continuous attestations during training ({}) | {:.3} | - |", report.reattestations, ph.reattest);
    println!("| final attestation, seal model, deliver | {:.3} | - |", ph.seal_and_deliver);
    println!("| **total** | **{job_s:.3}** | **{plain_s:.3}** (runs before and after: {plain_before:.3}, {plain_after:.3}) |");
    println!();
    println!(
        "total: {:.3}x of plain training ({:+.1} %, within the drift between plain runs of {:.1} %)",
        job_s / plain_s,
        (job_s / plain_s - 1.0) * 100.0,
        (plain_before - plain_after).abs() / plain_s * 100.0
    );
    println!(
        "protection itself (every phase but training): {protection:.3} s = {:.2} % of plain training; goal: at most 3 %",
        protection / plain_s * 100.0
    );
    println!("(stakeholders' setup before the job, not counted: {setup_s:.2} s)");
    drop(agent);
    drop(world);
    Ok(())
}
