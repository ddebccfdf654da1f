//! `perun bench attest`: the Verifier's IMA replay and quote checks, next to tpm2-tools.

use std::process::Command;
use std::time::Instant;

use anyhow::{bail, Result};

use super::measure::run_tool;

/// Runs the benchmark.
pub fn run(n: usize, more: usize, quotes: usize) -> Result<()> {
    use perun_attest::ima::{extend_all, replay_to_quote, Entry, ReplayState};
    use perun_attest::policy::PlatformPolicy;

    let entry = |i: usize| {
        Entry::ima_ng(
            &format!("/usr/lib/x86_64-linux-gnu/lib{i}.so"),
            "sha256",
            perun_core::Digest::of(&i.to_le_bytes()).as_bytes(),
        )
    };
    let entries: Vec<Entry> = (0..n + more).map(entry).collect();
    let mut policy = PlatformPolicy::from_log("bench", &entries);
    // The first round must find the worker binary: the log's first file stands for it.
    policy.worker_binary = entries.first().map(|e| e.file_digest.to_text());
    let log: Vec<u8> = entries[..n].iter().flat_map(Entry::to_binary).collect();
    let quoted = extend_all([0; 32], &entries[..n]);
    println!(
        "IMA: {n} ima-ng entries ({:.1} MB binary log), then {more} more; policy of {} files",
        log.len() as f64 / 1e6,
        policy.allowed_files.len()
    );
    let t = Instant::now();
    let (state, verified) = replay_to_quote(&ReplayState::default(), &log, &quoted)?;
    let replayed = t.elapsed();
    let failures = policy.check_entries(&verified, true);
    let full = t.elapsed();
    if verified.len() != n || !failures.is_empty() {
        let why: Vec<String> = failures.iter().take(3).map(ToString::to_string).collect();
        bail!("the benchmark log did not verify: {}", why.join("; "));
    }
    let mut log2 = log.clone();
    log2.extend(entries[n..].iter().flat_map(Entry::to_binary));
    let quoted2 = extend_all(quoted, &entries[n..]);
    let t = Instant::now();
    let (_, new) = replay_to_quote(&state, &log2, &quoted2)?;
    let failures = policy.check_entries(&new, false);
    let inc = t.elapsed();
    if new.len() != more || !failures.is_empty() {
        bail!("the incremental round did not verify");
    }
    println!(
        "{:<48} {:>10.2} ms   (goal: under 100 ms; parse and replay {:.1} ms, policy {:.1} ms)",
        format!("full verification ({n} entries, parse + replay + policy)"),
        full.as_secs_f64() * 1e3,
        replayed.as_secs_f64() * 1e3,
        (full - replayed).as_secs_f64() * 1e3
    );
    println!(
        "{:<48} {:>10.3} ms   (goal: under 2 ms)",
        format!("incremental re-attestation ({more} new entries)"),
        inc.as_secs_f64() * 1e3
    );

    let tpm = match perun_tpm::swtpm::Swtpm::start() {
        Ok(t) => t,
        Err(e) => {
            println!("no quote benchmark: {e}");
            return Ok(());
        }
    };
    let dir = tempfile::tempdir()?;
    let tools = perun_tpm::tools::Tpm2Tools::new(&tpm.tcti(), dir.path());
    println!();
    println!("quote verification, per quote (sha256 PCRs 0-7 and 10):");
    for alg in [perun_tpm::tools::KeyAlg::Rsa, perun_tpm::tools::KeyAlg::Ecc] {
        let name = if alg == perun_tpm::tools::KeyAlg::Rsa { "rsa" } else { "ecc" };
        if !dir.path().join("ek.ctx").exists() {
            tools.create_ek(perun_tpm::tools::KeyAlg::Rsa)?;
        }
        let ak_bytes = tools.create_ak(alg, name)?;
        let ak = perun_attest::tpm::AkPublic::parse(&ak_bytes)?;
        let nonce = [0x42u8; 32];
        tools.run(&[
            "tpm2_quote",
            "-c",
            &format!("{name}.ctx"),
            "-l",
            "sha256:0,1,2,3,4,5,6,7,10",
            "-q",
            &hex::encode(nonce),
            "-m",
            "quote.msg",
            "-s",
            "quote.sig",
            "-o",
            "quote.pcrs",
            "-g",
            "sha256",
        ])?;
        let (msg, sig) = (std::fs::read(tools.path("quote.msg"))?, std::fs::read(tools.path("quote.sig"))?);
        let pcrs = tools.pcr_read("0,1,2,3,4,5,6,7,10")?;
        let t = Instant::now();
        for _ in 0..quotes {
            perun_attest::tpm::verify_quote(&ak, &msg, &sig, &nonce, &pcrs)?;
        }
        let ours = t.elapsed().as_secs_f64() / quotes as f64;
        let runs = 20;
        let t = Instant::now();
        for _ in 0..runs {
            run_tool(
                Command::new("tpm2_checkquote")
                    .current_dir(dir.path())
                    .args([
                        "-u",
                        &format!("{name}.pub"),
                        "-m",
                        "quote.msg",
                        "-s",
                        "quote.sig",
                        "-f",
                        "quote.pcrs",
                        "-g",
                        "sha256",
                        "-q",
                    ])
                    .arg(hex::encode(nonce)),
            )?;
        }
        let theirs = t.elapsed().as_secs_f64() / f64::from(runs);
        println!(
            "  {:<6} perun-attest {:>9.1} us   tpm2_checkquote {:>9.1} us (a process each)   ratio {:>6.0}x",
            if name == "rsa" { "RSA" } else { "ECDSA" },
            ours * 1e6,
            theirs * 1e6,
            theirs / ours
        );
    }
    Ok(())
}
