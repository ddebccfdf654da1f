//! Every fuzz target over its seed corpus (`corpus/<target>/`), then over deterministic
//! mutations of each seed (bit flips, interesting bytes, truncation, insertion, deletion,
//! length fields set to edge values, splices with the target's other seeds, digits and
//! hex digits replaced), on stable Rust: what `cargo fuzz` explores at random, replayed
//! the same way on every run.
//!
//! A target must return whatever its input; a panic is a bug. Each failure is reported
//! with the target, the seed, the mutations and the input's first bytes in hex; the whole
//! input is written under `CARGO_TARGET_TMPDIR/perun-fuzz-failures/`.
//!
//! `PERUN_FUZZ_MUTATIONS` sets the mutations per seed (default 300);
//! `PERUN_FUZZ_SECONDS` caps the time a target's mutations may take (default 20 s; the
//! cap only shortens a run on a slow machine, and says so).

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use perun_fuzz::{Target, TARGETS};

const DEFAULT_MUTATIONS: usize = 300;
const DEFAULT_SECONDS: u64 = 20;
/// Mutated inputs are cut to this length.
const MAX_INPUT: usize = 1 << 20;
/// Inputs every target also gets, whatever its seeds.
const GENERIC: &[&[u8]] = &[b"", b"\0", b"{}", b"null", b"[]", b"\n", b"\xff\xff\xff\xff", b"0 0 0\n"];

fn corpus_dir(target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus").join(target)
}

/// The seeds of `target`, sorted by file name.
fn seeds(target: &str) -> Vec<(String, Vec<u8>)> {
    let Ok(rd) = std::fs::read_dir(corpus_dir(target)) else { return Vec::new() };
    let mut v: Vec<(String, Vec<u8>)> = rd
        .filter_map(Result::ok)
        .filter(|e| e.path().is_file())
        .map(|e| (e.file_name().to_string_lossy().into_owned(), e.path()))
        .filter(|(n, _)| !n.starts_with('.'))
        .map(|(n, p)| (n, std::fs::read(&p).unwrap()))
        .collect();
    v.sort();
    v
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// SplitMix64: a small PRNG whose sequence no dependency update can change.
struct Rng(u64);

impl Rng {
    fn new(parts: &[&str]) -> Self {
        // FNV-1a of the parts: the same target and seed get the same mutations.
        let mut h = 0xcbf2_9ce4_8422_2325u64;
        for p in parts {
            for b in p.bytes().chain([0]) {
                h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
            }
        }
        Self(h)
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number below `n` (0 for `n` = 0).
    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }

    fn pick<'a, T>(&mut self, v: &'a [T]) -> &'a T {
        &v[self.below(v.len())]
    }
}

const INTERESTING_BYTES: &[u8] =
    &[0, 1, 0x7f, 0x80, 0xff, b'0', b'9', b'"', b'{', b'}', b'\n', b' ', b':', b',', b'\\'];
const NUMBERS: &[&str] = &[
    "0",
    "-1",
    "1",
    "255",
    "65536",
    "4294967295",
    "4294967296",
    "9223372036854775807",
    "-9223372036854775808",
    "18446744073709551615",
    "18446744073709551616",
    "1e999",
    "-0",
    "0.5",
    "99999999999999999999",
];

/// One mutation of `v` in place; returns what it did.
fn mutate_once(rng: &mut Rng, v: &mut Vec<u8>, others: &[&[u8]]) -> String {
    let len = v.len();
    match rng.below(10) {
        0 if len > 0 => {
            let n = 1 + rng.below(8);
            for _ in 0..n {
                let at = rng.below(len);
                v[at] ^= 1 << rng.below(8);
            }
            format!("flip {n} bits")
        }
        1 if len > 0 => {
            let at = rng.below(len);
            v[at] = *rng.pick(INTERESTING_BYTES);
            format!("byte {at} = {:#04x}", v[at])
        }
        2 if len > 0 => {
            let keep = rng.below(len);
            v.truncate(keep);
            format!("truncate to {keep}")
        }
        3 => {
            let at = rng.below(len + 1);
            let n = 1 + rng.below(32);
            let fill: Vec<u8> = if rng.below(2) == 0 {
                (0..n).map(|_| rng.next() as u8).collect()
            } else {
                vec![*rng.pick(INTERESTING_BYTES); n]
            };
            v.splice(at..at, fill);
            format!("insert {n} at {at}")
        }
        4 if len > 0 => {
            let at = rng.below(len);
            let n = (1 + rng.below(32)).min(len - at);
            v.drain(at..at + n);
            format!("delete {n} at {at}")
        }
        5 if len > 0 => {
            // A length or count field set to an edge value, in either byte order.
            let width = *rng.pick(&[1usize, 2, 4, 8]);
            let at = rng.below(len);
            let values = [
                0u64,
                1,
                len as u64,
                len as u64 + 1,
                (len as u64).saturating_sub(1),
                0x7f,
                0x80,
                0xff,
                0xffff,
                0x1_0000,
            ];
            let value = match rng.below(4) {
                0 => u64::MAX,
                1 => 0x7fff_ffff,
                2 => 0x8000_0000,
                _ => *rng.pick(&values),
            };
            let little = rng.below(2) == 0;
            let bytes: Vec<u8> =
                if little { value.to_le_bytes()[..width].to_vec() } else { value.to_be_bytes()[8 - width..].to_vec() };
            let end = (at + width).min(len);
            v.splice(at..end, bytes.iter().copied().take(end - at));
            format!("{width}-byte field at {at} = {value:#x}")
        }
        6 if !others.is_empty() => {
            let other = *rng.pick(others);
            if other.is_empty() {
                return "splice nothing".into();
            }
            let from = rng.below(other.len());
            let n = 1 + rng.below((other.len() - from).min(256));
            let at = rng.below(len + 1);
            let chunk = other[from..from + n].to_vec();
            if rng.below(2) == 0 {
                v.splice(at..at, chunk);
                format!("splice {n} other bytes in at {at}")
            } else {
                let end = (at + n).min(len);
                v.splice(at..end, chunk);
                format!("splice {n} other bytes over {at}")
            }
        }
        7 if len > 0 => {
            let from = rng.below(len);
            let n = 1 + rng.below((len - from).min(512));
            let at = rng.below(len + 1);
            let chunk = v[from..from + n].to_vec();
            v.splice(at..at, chunk);
            format!("repeat {n} bytes at {at}")
        }
        8 => {
            // A number in text replaced by an edge value.
            let digits: Vec<usize> = (0..len).filter(|&i| v[i].is_ascii_digit()).collect();
            if digits.is_empty() {
                return "no digits".into();
            }
            let start = *rng.pick(&digits);
            let end = (start..len).find(|&i| !v[i].is_ascii_digit()).unwrap_or(len);
            let n = rng.pick(NUMBERS);
            v.splice(start..end, n.bytes());
            format!("number at {start} = {n}")
        }
        _ => {
            // A hex digit replaced by another: hex inside JSON stays hex.
            let hex: Vec<usize> = (0..len).filter(|&i| v[i].is_ascii_hexdigit()).collect();
            if hex.is_empty() {
                return "no hex digits".into();
            }
            let n = 1 + rng.below(4);
            for _ in 0..n {
                let at = *rng.pick(&hex);
                v[at] = *rng.pick(b"0123456789abcdef");
            }
            format!("{n} hex digits")
        }
    }
}

/// A havoc-style mutation: one to four mutations stacked.
fn mutate(rng: &mut Rng, seed: &[u8], others: &[&[u8]]) -> (Vec<u8>, String) {
    let mut v = seed.to_vec();
    let mut did = Vec::new();
    for _ in 0..1 + rng.below(4) {
        did.push(mutate_once(rng, &mut v, others));
    }
    v.truncate(MAX_INPUT);
    (v, did.join(", "))
}

/// Runs `f` on `input`; the panic's message when it panics.
fn run(f: Target, input: &[u8]) -> Result<(), String> {
    catch_unwind(AssertUnwindSafe(|| f(input))).map_err(|p| {
        p.downcast_ref::<String>()
            .cloned()
            .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_default()
    })
}

fn hex_prefix(input: &[u8]) -> String {
    let shown = &input[..input.len().min(64)];
    format!("{}{} ({} bytes)", hex::encode(shown), if input.len() > 64 { "..." } else { "" }, input.len())
}

fn run_target(name: &str, f: Target) {
    let seeds = seeds(name);
    assert!(!seeds.is_empty(), "no seeds in {}", corpus_dir(name).display());
    let mutations = env_or("PERUN_FUZZ_MUTATIONS", DEFAULT_MUTATIONS);
    let budget = Duration::from_secs(env_or("PERUN_FUZZ_SECONDS", DEFAULT_SECONDS));
    let others: Vec<&[u8]> = seeds.iter().map(|(_, s)| s.as_slice()).collect();
    let mut failures = Vec::new();
    let mut fail = |input: &[u8], what: String, why: String| {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("perun-fuzz-failures");
        let file = dir.join(format!("{name}-{}.bin", failures.len()));
        let _ = std::fs::create_dir_all(&dir).and_then(|_| std::fs::write(&file, input));
        failures.push(format!("{what}: {why}\n    input {}\n    saved as {}", hex_prefix(input), file.display()));
    };
    for g in GENERIC {
        if let Err(why) = run(f, g) {
            fail(g, "generic input".into(), why);
        }
    }
    let started = Instant::now();
    let (mut runs, mut cut) = (0usize, false);
    for (seed_name, seed) in &seeds {
        if let Err(why) = run(f, seed) {
            fail(seed, format!("seed {seed_name}"), why);
        }
        let mut rng = Rng::new(&[name, seed_name]);
        for i in 0..mutations {
            if started.elapsed() > budget {
                cut = true;
                break;
            }
            let (input, what) = mutate(&mut rng, seed, &others);
            runs += 1;
            if let Err(why) = run(f, &input) {
                fail(&input, format!("seed {seed_name}, mutation {i} ({what})"), why);
            }
        }
    }
    eprintln!(
        "{name}: {} seeds, {runs} mutations in {:.1} s{}",
        seeds.len(),
        started.elapsed().as_secs_f64(),
        if cut { " (cut short by PERUN_FUZZ_SECONDS)" } else { "" }
    );
    assert!(failures.is_empty(), "target {name} panicked on {} inputs:\n  {}", failures.len(), failures.join("\n  "));
}

macro_rules! targets {
    ($($name:ident),* $(,)?) => {
        $(
            #[test]
            fn $name() {
                run_target(stringify!($name), perun_fuzz::$name);
            }
        )*

        /// The targets tested here, by name.
        const TESTED: &[&str] = &[$(stringify!($name)),*];
    };
}

targets!(
    ima_binary,
    ima_ascii,
    boot_event_log,
    tpm_public,
    tpm_quote,
    tpm_signature,
    tpm_evidence,
    ek_cert,
    tee_evidence,
    tee_dcap_quote,
    tee_snp_report,
    tee_sim_report,
    job_policy,
    sealed_header,
    sealed_file,
    manifest,
    wire_request,
    signed_request,
    dataset_csv,
    dataset_images,
    dataset_cifar,
    dataset_safetensors,
    predict_body,
);

#[test]
fn every_target_is_tested_seeded_and_has_a_libfuzzer_harness() {
    let names: Vec<&str> = TARGETS.iter().map(|(n, _)| *n).collect();
    assert_eq!(names, TESTED, "TARGETS and this test's list differ");
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let manifest = std::fs::read_to_string(root.join("fuzz/Cargo.toml")).unwrap();
    for name in &names {
        assert!(corpus_dir(name).is_dir(), "no corpus/{name}/");
        let harness = std::fs::read_to_string(root.join(format!("fuzz/fuzz_targets/{name}.rs")))
            .unwrap_or_else(|_| panic!("no fuzz/fuzz_targets/{name}.rs"));
        assert!(harness.contains(&format!("perun_fuzz::{name}(")), "fuzz_targets/{name}.rs does not call its target");
        assert!(manifest.contains(&format!("name = \"{name}\"")), "fuzz/Cargo.toml has no [[bin]] {name}");
    }
    for e in std::fs::read_dir(root.join("corpus")).unwrap().filter_map(Result::ok).filter(|e| e.path().is_dir()) {
        let n = e.file_name().to_string_lossy().into_owned();
        assert!(names.contains(&n.as_str()), "corpus/{n}/ belongs to no target");
    }
    assert!(perun_fuzz::target("ima_binary").is_some() && perun_fuzz::target("nope").is_none());
}

#[test]
fn mutations_are_the_same_on_every_run() {
    let seed = b"10 0123456789abcdef0123456789abcdef01234567 ima-ng sha256:00 /x\n";
    let a: Vec<_> = {
        let mut r = Rng::new(&["t", "s"]);
        (0..50).map(|_| mutate(&mut r, seed, &[b"other"])).collect()
    };
    let mut r = Rng::new(&["t", "s"]);
    let b: Vec<_> = (0..50).map(|_| mutate(&mut r, seed, &[b"other"])).collect();
    assert_eq!(a, b);
    assert!(a.iter().any(|(v, _)| v.len() < seed.len()) && a.iter().any(|(v, _)| v.len() > seed.len()));
}

/// The inputs of `crashes/` (known bugs, not yet fixed) through their targets: fails
/// while any still panics. Ignored, so that CI stays green until the fix lands; run it
/// to check a fix: `cargo test -p perun-fuzz --test tests -- --ignored corpus::known_crashes`.
#[test]
#[ignore = "known bugs (crashes/README.md): run to check a fix"]
fn known_crashes() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("crashes");
    let mut still = Vec::new();
    for e in std::fs::read_dir(&dir).unwrap().filter_map(Result::ok) {
        let file = e.file_name().to_string_lossy().into_owned();
        let Some(stem) = file.strip_suffix(".bin") else { continue };
        let name = stem.split('-').next().unwrap_or_default();
        let f = perun_fuzz::target(name).unwrap_or_else(|| panic!("crashes/{file} names no target"));
        let input = std::fs::read(e.path()).unwrap();
        if let Err(why) = run(f, &input) {
            still.push(format!("{file}: {why}"));
        }
    }
    assert!(still.is_empty(), "still panicking:\n  {}", still.join("\n  "));
}
