//! `perun bench seal`: sealing and opening an asset, next to `age`.

use std::io::Write as _;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::{Context as _, Result};
use perun_core::AssetKind;
use perun_seal::{sealed, AssetKey};
use rand::RngCore as _;

use super::measure::{best_of, have, run_tool};

/// Runs the benchmark.
pub fn run(size_mib: u64, dir: Option<&Path>, runs: u32) -> Result<()> {
    let tmp = match dir {
        Some(d) => tempfile::tempdir_in(d),
        None => tempfile::tempdir(),
    }
    .context("creating a temporary folder")?;
    let plain = tmp.path().join("asset.bin");
    let size = size_mib * 1024 * 1024;
    {
        let mut f = std::io::BufWriter::new(std::fs::File::create(&plain)?);
        let mut rng = rand::thread_rng();
        let mut buf = vec![0u8; 1 << 20];
        for _ in 0..size_mib {
            rng.fill_bytes(&mut buf);
            f.write_all(&buf)?;
        }
        f.flush()?;
    }
    let key = AssetKey::generate();
    let key_file = tmp.path().join("asset.key");
    key.save(&key_file)?;
    let sealed_path = tmp.path().join("asset.sealed");
    let mb = size as f64 / 1e6;
    let rate = |d: Duration| mb / d.as_secs_f64();

    println!("asset: {size_mib} MiB of random bytes in {}; best of {runs} runs; perun open decrypts on one thread and hashes on another", tmp.path().display());
    println!("{:<34} {:>10} {:>10}", "operation", "seconds", "MB/s");
    let perun_seal = best_of(runs, || {
        let _ = std::fs::remove_file(&sealed_path);
        sealed::seal_file(&plain, AssetKind::Dataset, &[key.recipient()], &sealed_path, &mut |_| {})?;
        Ok(())
    })?;
    println!("{:<34} {:>10.3} {:>10.0}", "perun seal (digest + encrypt)", perun_seal.as_secs_f64(), rate(perun_seal));
    let perun_open = best_of(runs, || {
        let f = std::fs::File::open(&sealed_path)?;
        let len = f.metadata()?.len();
        sealed::open(f, Some(len), key.identity(), None, &mut std::io::sink())?;
        Ok(())
    })?;
    println!("{:<34} {:>10.3} {:>10.0}", "perun open (decrypt + verify)", perun_open.as_secs_f64(), rate(perun_open));
    // What the job runner does: the sealed file in memory, opened on every core.
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let in_memory = std::fs::read(&sealed_path)?;
    let perun_to_memory = best_of(runs, || {
        sealed::open_in_parallel(&in_memory, key.identity(), None, 1)?;
        Ok(())
    })?;
    println!(
        "{:<34} {:>10.3} {:>10.0}",
        "perun open, 1 thread (memory)",
        perun_to_memory.as_secs_f64(),
        rate(perun_to_memory)
    );
    let perun_parallel = best_of(runs, || {
        sealed::open_in_parallel(&in_memory, key.identity(), None, threads)?;
        Ok(())
    })?;
    println!(
        "{:<34} {:>10.3} {:>10.0}",
        format!("perun open, {threads} threads (memory)"),
        perun_parallel.as_secs_f64(),
        rate(perun_parallel)
    );
    println!(
        "parallel ratio: {:.2}x the one-thread open into memory (the job runner's path, plaintext wiped after)",
        perun_to_memory.as_secs_f64() / perun_parallel.as_secs_f64()
    );

    if !have("age") {
        println!("the `age` tool is not installed (apt-get install age): no baseline to compare with");
        return Ok(());
    }
    let age_sealed = tmp.path().join("asset.age");
    let age_seal = best_of(runs, || {
        let _ = std::fs::remove_file(&age_sealed);
        run_tool(
            Command::new("age")
                .arg("-e")
                .arg("-r")
                .arg(key.recipient().to_string())
                .arg("-o")
                .arg(&age_sealed)
                .arg(&plain),
        )
    })?;
    println!("{:<34} {:>10.3} {:>10.0}", "age -e (encrypt)", age_seal.as_secs_f64(), rate(age_seal));
    let age_open = best_of(runs, || {
        run_tool(Command::new("age").arg("-d").arg("-i").arg(&key_file).arg("-o").arg("/dev/null").arg(&sealed_path))
    })?;
    println!("{:<34} {:>10.3} {:>10.0}", "age -d (decrypt, same file)", age_open.as_secs_f64(), rate(age_open));
    println!();
    println!(
        "open ratio  perun/age: {:.2}x (above 1 means Perun is faster)",
        age_open.as_secs_f64() / perun_open.as_secs_f64()
    );
    println!(
        "seal ratio  perun/age: {:.2}x (Perun also hashes the input first)",
        age_seal.as_secs_f64() / perun_seal.as_secs_f64()
    );
    Ok(())
}
