//! `perun demo`: the whole flow on one machine, on embedded data.
//!
//! Today it plays the sealing and training part of the mission: stakeholders make
//! identities, two hospitals seal their halves of a real data set without the plaintext
//! touching disk, the model owner seals its model spec, the assets are opened in memory
//! and trained on, the trained weights are sealed to the model owner, who evaluates them
//! on a held-out set; and the attacks that the sealed format must stop (a modified file,
//! a truncated file, another owner's key) are shown refused. Attestation and the trust
//! service join in later issues.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _, Result};
use clap::{Args, ValueEnum};
use perun_core::{AssetKind, Name};
use perun_seal::{dataset, sealed, AssetKey, SealError, StakeholderKeys};

use crate::embedded;
use crate::home::Home;

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
            (None, dir.clone())
        }
        None => {
            let t = tempfile::tempdir().context("creating a temporary folder")?;
            let p = t.path().to_owned();
            (Some(t), p)
        }
    };
    let result = play(&root, a.data);
    match (&tmp, &result) {
        (None, _) => println!("\neverything is kept in {}", root.display()),
        (Some(_), Ok(())) => println!("\n(temporary folder removed; use --keep DIR to explore)"),
        _ => {}
    }
    result
}

fn play(root: &Path, data: DemoData) -> Result<()> {
    let home = Home::at(&root.join("home"));
    let (csv, label, what, spec_json) = match data {
        DemoData::BreastCancer => {
            (embedded::BREAST_CANCER_CSV, "diagnosis", "breast-cancer", embedded::BREAST_CANCER_MLP)
        }
        DemoData::Digits => (embedded::DIGITS_CSV, "digit", "digits", embedded::DIGITS_CNN),
    };

    step(1, "stakeholders create their identities");
    let names = ["hospital-a", "hospital-b", "model-owner"];
    let mut ids = Vec::new();
    for n in names {
        let name = Name::new(n)?;
        let keys = StakeholderKeys::generate(name.clone());
        keys.save(&home.identity_dir(&name))?;
        let p = keys.public();
        println!("  {n:<12} signing key {}…  age {}…", &p.signing_key[..12], &p.age_recipient[..16]);
        ids.push(keys);
    }

    step(2, &format!("the hospitals import their halves of the {what} data set"));
    let full = dataset::import_csv(csv, label)?;
    let parts = full.split(&[40.0, 40.0, 20.0], 7)?;
    println!("  source: {} rows x {} features, {} classes", full.len(), full.sample_len(), full.class_names.len());
    for (n, p) in names.iter().zip(&parts[..2]) {
        let counts: Vec<String> = p.summary().classes.iter().map(|c| format!("{} {}", c.count, c.name)).collect();
        println!("  {n}: {} rows ({})", p.len(), counts.join(", "));
    }
    println!("  held-out test set: {} rows (kept for the evaluation step)", parts[2].len());

    step(3, "each hospital seals its half under a fresh asset key (the plaintext never touches the disk)");
    let mut sealed_files = Vec::new();
    for (keys, part) in ids.iter().zip(&parts[..2]) {
        let name = keys.name();
        let bytes = zeroize::Zeroizing::new(part.to_safetensors()?);
        let key = AssetKey::generate();
        let key_dir = home.asset_key_dir(name);
        std::fs::create_dir_all(&key_dir)?;
        let key_file = key_dir.join(format!("{what}.key"));
        key.save(&key_file)?;
        let out = root.join(format!("{name}-{what}.sealed"));
        let info = sealed::seal_bytes_to_file(&bytes, AssetKind::Dataset, &[key.recipient()], &out)?;
        println!("  {name}: {} ({} bytes)", out.display(), info.sealed_len);
        println!("      content digest {}", info.header.content_digest);
        println!("      key            {} (mode 0600)", key_file.display());
        sealed_files.push((name.clone(), out, key, info));
    }

    step(4, "each owner opens its own asset in memory and checks it");
    for (name, path, key, info) in &sealed_files {
        let (opened, plain) = sealed::open_file(path, key.identity(), Some(AssetKind::Dataset))?;
        let ds = perun_seal::Dataset::from_safetensors(&plain)?;
        let ok = opened.content_digest == info.header.content_digest;
        println!("  {name}: {} rows, digest {}", ds.len(), if ok { "matches" } else { "DOES NOT MATCH" });
        if !ok {
            bail!("{name}'s asset does not match its digest");
        }
    }

    step(5, "the model owner seals its model spec; the data and the model are opened in memory and trained");
    let owner = &ids[2];
    let spec = perun_ml::ModelSpec::from_json(spec_json)?;
    let model_key = AssetKey::generate();
    let model_path = root.join(format!("model-owner-{}.sealed", spec.name));
    sealed::seal_bytes_to_file(spec_json, AssetKind::Model, &[model_key.recipient()], &model_path)?;
    println!("  model-owner: {} ({} layers, {:?} loss)", model_path.display(), spec.layers.len(), spec.loss);
    println!("  (today the training runs right here, with no attestation: the attested worker is issue 6)");
    let (_, spec_plain) = sealed::open_file(&model_path, model_key.identity(), Some(AssetKind::Model))?;
    let spec = perun_ml::ModelSpec::from_json(&spec_plain)?;
    let mut joined: Option<perun_seal::Dataset> = None;
    for (_, path, key, _) in &sealed_files {
        let (_, plain) = sealed::open_file(path, key.identity(), Some(AssetKind::Dataset))?;
        let part = perun_seal::Dataset::from_safetensors(&plain)?;
        match joined.as_mut() {
            Some(j) => j.append(&part)?,
            None => joined = Some(part),
        }
    }
    let joined = joined.context("no data")?;
    let steps = joined.len().div_ceil(spec.training.batch_size) as u64 * spec.training.epochs as u64;
    let bar = super::train::step_bar(steps);
    let outcome = perun_ml::train(&spec, None, &joined, perun_ml::backend::Compute::Cpu, &mut |ev| {
        match ev {
            perun_ml::TrainEvent::Step { .. } => bar.inc(1),
            perun_ml::TrainEvent::Epoch(m) if m.epoch % 10 == 0 || m.epoch == spec.training.epochs => {
                super::train::say(&bar, format!("  {}", super::train::epoch_line(m)));
            }
            perun_ml::TrainEvent::Epoch(_) => {}
        }
        std::ops::ControlFlow::Continue(())
    })?;
    bar.finish_and_clear();
    drop(joined);
    let out_path = root.join(format!("{}-trained.sealed", spec.name));
    let receiver = owner.age_identity().to_public();
    sealed::seal_bytes_to_file(&outcome.weights, AssetKind::Output, &[receiver], &out_path)?;
    println!(
        "  trained in {:.1}s on {} samples; weights sealed to the model owner: {}",
        outcome.seconds,
        outcome.train_samples,
        out_path.display()
    );
    let (_, weights) = sealed::open_file(&out_path, owner.age_identity(), Some(AssetKind::Output))?;
    let e = perun_ml::evaluate(&spec, &weights, &parts[2], perun_ml::backend::Compute::Cpu)?;
    println!(
        "  the model owner opens its model and evaluates it on the held-out set: accuracy {:.2}% ({} samples)",
        e.accuracy * 100.0,
        e.samples
    );

    step(6, "attacks on sealed files are refused, and nothing is opened");
    let (_, a_path, a_key, _) = &sealed_files[0];
    let (_, _, b_key, _) = &sealed_files[1];
    let bytes = std::fs::read(a_path)?;
    let mut tampered = bytes.clone();
    let at = tampered.len() - 100;
    tampered[at] ^= 1;
    let cut = &bytes[..bytes.len() / 2];
    let attempts: [(&str, &[u8], &AssetKey); 3] = [
        ("one byte of hospital-a's file flipped", &tampered, a_key),
        ("hospital-a's file cut in half", cut, a_key),
        ("hospital-b's key on hospital-a's file", &bytes, b_key),
    ];
    for (what, file, key) in attempts {
        match sealed::open_to_vec(file, Some(file.len() as u64), key.identity(), None) {
            Err(
                e @ (SealError::PayloadTampered { .. }
                | SealError::TamperedOrTruncated
                | SealError::Truncated { .. }
                | SealError::WrongKey),
            ) => {
                println!("  {what}: refused ({e})");
            }
            Err(e) => bail!("{what}: refused for an unexpected reason: {e}"),
            Ok(_) => bail!("{what}: was opened, which must never happen"),
        }
    }

    step(7, "what comes next");
    println!("  the sealed halves, the model and a platform policy go to the trust service; a job that");
    println!("  every owner signed is trained by an attested worker (see the open issues).");
    Ok(())
}
