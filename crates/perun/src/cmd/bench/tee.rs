//! `tee`-mode benchmarks, each printed next to its baseline:
//!
//! - `perun bench predict`: the breast-cancer model behind `perun enclave serve` (sim
//!   TEE, private requests: fresh evidence verified by the client, HPKE-sealed rows,
//!   requests signed by the job's receiver, sealed answers, over loopback HTTP) against the same model evaluated in-process
//!   with no protection; predictions per second and p50/p99 latency, one row per
//!   request and in batches.
//! - `perun bench tee-train`: seconds per training sample of the same job in `tee` mode
//!   (an enclave on the sim TEE) and in `attested` mode (swtpm, IMA), on the same CPU.

use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use perun_core::{AssetKind, JobPurpose};
use perun_enclave::source::SimTee;
use perun_worker::job::RunOptions;

use crate::cmd::local::LocalWorld;
use crate::embedded;

fn sim() -> Result<SimTee> {
    Ok(SimTee::for_this_binary(ed25519_dalek::SigningKey::generate(&mut rand::rngs::OsRng))?)
}

/// Latencies of `n` calls of `f`, and the wall time of all.
fn timed(n: usize, mut f: impl FnMut(usize) -> Result<()>) -> Result<(Vec<Duration>, Duration)> {
    let mut lat = Vec::with_capacity(n);
    let start = Instant::now();
    for i in 0..n {
        let t = Instant::now();
        f(i)?;
        lat.push(t.elapsed());
    }
    let all = start.elapsed();
    lat.sort();
    Ok((lat, all))
}

fn pct(lat: &[Duration], p: f64) -> f64 {
    lat[((lat.len() as f64 * p) as usize).min(lat.len() - 1)].as_secs_f64() * 1e3
}

/// Runs `perun bench predict`.
pub fn predict(requests: usize, batch: usize) -> Result<()> {
    let full = perun_seal::dataset::import_csv(embedded::BREAST_CANCER_CSV, "diagnosis")?;
    let spec = perun_ml::ModelSpec::from_json(embedded::BREAST_CANCER_MLP)?;
    let out = perun_ml::train(&spec, None, &full, perun_ml::backend::Compute::Cpu, &mut |_| {
        std::ops::ControlFlow::Continue(())
    })?;
    let rows = full.rows();

    let root = tempfile::tempdir()?;
    let world = LocalWorld::start(root.path(), &["model-owner", "clinic"])?;
    // The model owner, the clinic and the provider `LocalWorld` adds.
    let [owner, _clinic, _infra] = &world.parties[..] else { bail!("three parties") };
    let served = world.serve_on_sim(owner, &[], "mlp-trained", &out.weights, sim()?, &mut |_, _| {})?;
    let url = served.running.url();
    let t = Instant::now();
    // The serving job's receiver (the model owner) queries it; each request is signed.
    let querier = perun_enclave::Querier { name: owner.name().clone(), key: owner.keys.signing_key().clone() };
    let remote =
        perun_enclave::RemoteModel::connect(&url, &served.policy, served.job, querier, perun_trust::unix_now())?;
    let connect_ms = t.elapsed().as_secs_f64() * 1e3;
    let local = perun_ml::Predictor::from_model(&out.weights, perun_ml::backend::Compute::Cpu)?;

    println!(
        "breast-cancer MLP ({} features), {requests} requests each; enclave: sim TEE on loopback",
        full.sample_len()
    );
    println!("client connect (fresh nonce, report, appraisal): {connect_ms:.2} ms\n");
    println!("| rows per request | in-process, no protection: predictions/s | p50 / p99 ms | `perun enclave serve`, private: predictions/s | p50 / p99 ms | ratio (throughput) |");
    println!("|---|---|---|---|---|---|");
    let mut crypto_ms = Vec::new();
    for b in [1, batch.max(1)] {
        let request = |i: usize| -> Vec<Vec<f32>> { (0..b).map(|k| rows[(i * b + k) % rows.len()].clone()).collect() };
        let (plain_lat, plain_all) = timed(requests, |i| {
            let r = request(i);
            local.predict(&r.concat())?;
            Ok(())
        })?;
        let (tee_lat, tee_all) = timed(requests, |i| {
            remote.predict(&request(i))?;
            Ok(())
        })?;
        // The privacy itself, in process: seal the request, open it, seal and open the answer.
        let key = perun_seal::release::EphemeralKey::generate();
        let info = perun_seal::release::request_info(&served.job);
        let body = serde_json::to_vec(&perun_enclave::api::PredictRequest { rows: request(0) })?;
        let (crypto_lat, _) = timed(requests, |_| {
            let (sealed, client_key) = perun_seal::release::seal_request(&key.public_key(), &info, &body)?;
            let (_, server_key) = key.open_request(&sealed, &info)?;
            client_key.open(&server_key.seal(b"answer")?)?;
            Ok(())
        })?;
        crypto_ms.push((b, pct(&crypto_lat, 0.5)));
        let plain_rate = (requests * b) as f64 / plain_all.as_secs_f64();
        let tee_rate = (requests * b) as f64 / tee_all.as_secs_f64();
        println!(
            "| {b} | {plain_rate:.0} | {:.3} / {:.3} | {tee_rate:.0} | {:.3} / {:.3} | {:.2}x slower |",
            pct(&plain_lat, 0.5),
            pct(&plain_lat, 0.99),
            pct(&tee_lat, 0.5),
            pct(&tee_lat, 0.99),
            plain_rate / tee_rate
        );
    }
    for (b, ms) in crypto_ms {
        println!("of which HPKE seal/open of a {b}-row request and its sealed answer, in process: {ms:.3} ms (p50)");
    }
    println!(
        "\n(private requests add: JSON, HPKE seal/open and answer AEAD, the receiver's Ed25519 request signature and"
    );
    println!(" its check, one loopback HTTP round trip; the sim TEE");
    println!(" has no hardware cost; an SGX enclave adds its transitions, a TDX/SNP guest its virtualisation)");
    served.running.finish()?;
    Ok(())
}

/// Runs `perun bench tee-train`.
pub fn tee_train(epochs: usize, compute: perun_ml::backend::Compute) -> Result<()> {
    let full = perun_seal::dataset::import_csv(embedded::DIGITS_CSV, "digit")?;
    let mut spec: serde_json::Value = serde_json::from_slice(embedded::DIGITS_CNN)?;
    spec["training"]["epochs"] = serde_json::json!(epochs);
    let spec_bytes = serde_json::to_vec(&spec)?;
    let root = tempfile::tempdir()?;
    let world = LocalWorld::start(root.path(), &["hospital", "model-owner", "infra"])?;
    let [hospital, owner, infra] = &world.parties[..] else { bail!("three parties") };
    let plain = zeroize::Zeroizing::new(full.to_safetensors()?);
    let (data, _, _) = world.seal_and_register(hospital, "digits", AssetKind::Dataset, &plain)?;
    let (model, _, _) = world.seal_and_register(owner, "cnn", AssetKind::Model, &spec_bytes)?;
    let samples = (full.len() * epochs) as f64;
    let tee_opts = RunOptions { out_dir: root.path().join("outputs"), compute: perun_ml::backend::Compute::Cpu };
    let opts = RunOptions { compute, ..tee_opts.clone() };
    let parsed = perun_ml::ModelSpec::from_json(&spec_bytes)?;
    println!(
        "digits CNN, {} samples x {epochs} epochs, the same job in both modes: attested on {}, tee on {}",
        full.len(),
        perun_ml::backend::place(compute, &parsed)?.describe(),
        perun_ml::backend::place(tee_opts.compute, &parsed)?.describe()
    );

    // attested: swtpm + user-space IMA, continuous attestation every 5 s.
    let (mut agent, policy, _) = world.worker(infra, "gpu-1")?;
    let job = world.propose_and_approve(
        owner,
        "attested".into(),
        &model,
        std::slice::from_ref(&data),
        policy.digest,
        vec![owner.name().clone()],
        5,
        Default::default(),
        &[owner, hospital],
        &mut |_, _| {},
    )?;
    let t = Instant::now();
    let claimed = agent.claim(&job)?;
    let attested = perun_worker::job::run(&mut agent, &claimed, &opts, &mut |_, _| {})?;
    let attested_s = t.elapsed().as_secs_f64();

    // tee: an enclave on the sim TEE, the same engine on the same CPU.
    let s = sim()?;
    let (_, digest) = world.sim_tee_policy(&s)?;
    let job = world.tee_job(owner, &[hospital], "tee", JobPurpose::Train, model, vec![data], digest, &mut |_, _| {})?;
    let t = Instant::now();
    let claim = perun_enclave::Enclave::claim(&world.anon, perun_core::Name::new("tee-1")?, Box::new(s), job)?;
    let mut enclave = claim.enclave;
    let tee = perun_worker::job::run_released(
        &mut enclave,
        &claim.claimed,
        claim.keys,
        claim.seconds,
        &tee_opts,
        &mut |_, _| {},
    )?;
    let tee_s = t.elapsed().as_secs_f64();

    println!("\n| mode | attestation + release (s) | training (s) | whole job (s) | ms per sample (whole job) |");
    println!("|---|---|---|---|---|");
    for (mode, r, total) in
        [("attested (TPM quote + IMA)", &attested, attested_s), ("tee (sim TEE report)", &tee, tee_s)]
    {
        println!(
            "| {mode} | {:.3} | {:.3} | {total:.3} | {:.4} |",
            r.phases.attest_and_release,
            r.phases.train,
            total / samples * 1e3
        );
    }
    println!("\ntee / attested time per sample: {:.3}x", tee_s / attested_s);
    if opts.compute == perun_ml::backend::Compute::Gpu {
        println!(
            "(the tee job ran on this host's CPU cores with no TEE at all: the fastest a TEE-only run of this job"
        );
        println!(" could be, so the ratio is a lower bound of what the paper measures at 161x to 1560x)");
    } else {
        println!("(on the same CPU the engine is the same; what a hardware TEE adds (SGX paging beyond the EPC,");
        println!(" no GPU in any TEE) is what the paper measures at 161x to 1560x and cannot be measured without one)");
    }
    Ok(())
}
