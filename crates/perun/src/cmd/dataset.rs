//! `perun dataset`: import data into the container format, inspect it, split it.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _, Result};
use clap::{Subcommand, ValueEnum};
use perun_core::Digest;
use perun_seal::dataset::{self, CifarSplit};
use perun_seal::Dataset;

use crate::ui::print_json;

/// Dataset subcommands.
#[derive(Subcommand)]
pub enum DatasetCmd {
    /// Import a CSV file, an image folder (one sub-folder per class) or a CIFAR-10
    /// binary folder into a dataset container (`.safetensors`).
    Import {
        /// A `.csv` file, or a folder.
        source: PathBuf,
        /// The container to write (never overwritten).
        #[arg(long)]
        out: PathBuf,
        /// CSV: the label column (default: `label`, else the last column).
        #[arg(long)]
        label: Option<String>,
        /// Images: resize every image to WIDTHxHEIGHT.
        #[arg(long, value_parser = parse_size)]
        resize: Option<(u32, u32)>,
        /// Images: 1 (grey) or 3 (RGB) channels.
        #[arg(long, default_value_t = 3)]
        channels: u8,
        /// CIFAR-10: which batches.
        #[arg(long, value_enum, default_value_t = Split::Train)]
        split: Split,
        /// CSV: drop a first column with an empty name (the row names R's write.csv
        /// writes; pandas calls them `Unnamed: 0`).
        #[arg(long)]
        drop_row_names: bool,
    },
    /// Show rows, shape, classes and counts, feature names and digest.
    Inspect {
        /// A dataset container.
        file: PathBuf,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Split a container into parts (stratified by class, seeded shuffle).
    Split {
        /// A dataset container.
        file: PathBuf,
        /// Relative sizes, for example `40,40,20`.
        #[arg(long, value_delimiter = ',', required = true)]
        ratios: Vec<f64>,
        /// Output files, one per ratio.
        #[arg(long = "out", required = true)]
        outs: Vec<PathBuf>,
        /// Shuffle seed.
        #[arg(long, default_value_t = 42)]
        seed: u64,
    },
}

/// CIFAR-10 batch choice.
#[derive(Clone, Copy, ValueEnum)]
pub enum Split {
    /// data_batch_1..5.bin
    Train,
    /// test_batch.bin
    Test,
}

fn parse_size(s: &str) -> Result<(u32, u32), String> {
    let (w, h) = s.split_once(['x', 'X']).ok_or("expected WIDTHxHEIGHT, for example 32x32")?;
    let p = |v: &str| v.parse::<u32>().ok().filter(|n| (1..=8192).contains(n)).ok_or("sizes are 1..8192");
    Ok((p(w)?, p(h)?))
}

/// Imports `source` by its type.
pub fn import(
    source: &Path,
    label: Option<&str>,
    resize: Option<(u32, u32)>,
    channels: u8,
    split: Split,
    csv: dataset::CsvOptions,
) -> Result<Dataset> {
    if source.is_dir() {
        if dataset::is_cifar10_dir(source) {
            let split = match split {
                Split::Train => CifarSplit::Train,
                Split::Test => CifarSplit::Test,
            };
            return Ok(dataset::import_cifar10(source, split)?);
        }
        return Ok(dataset::import_image_folder(source, resize, channels)?);
    }
    let bytes = std::fs::read(source).with_context(|| format!("reading {}", source.display()))?;
    dataset::import_csv_with(&bytes, label, csv).with_context(|| format!("importing {}", source.display()))
}

/// Runs a dataset subcommand.
pub fn run(cmd: DatasetCmd) -> Result<()> {
    match cmd {
        DatasetCmd::Import { source, out, label, resize, channels, split, drop_row_names } => {
            let csv = dataset::CsvOptions { drop_row_names };
            let ds = import(&source, label.as_deref(), resize, channels, split, csv)?;
            let digest = ds.write_file(&out)?;
            println!(
                "imported {} samples of shape {:?} in {} classes into {} ({digest})",
                ds.len(),
                ds.sample_shape,
                ds.class_names.len(),
                out.display()
            );
            Ok(())
        }
        DatasetCmd::Inspect { file, json } => inspect(&file, json),
        DatasetCmd::Split { file, ratios, outs, seed } => {
            if ratios.len() != outs.len() {
                bail!("{} ratios but {} --out files: give one --out per ratio", ratios.len(), outs.len());
            }
            let ds = Dataset::read_file(&file)?;
            for (part, out) in ds.split(&ratios, seed)?.iter().zip(&outs) {
                part.write_file(out)?;
                println!("{}: {} samples", out.display(), part.len());
            }
            Ok(())
        }
    }
}

fn inspect(file: &Path, json: bool) -> Result<()> {
    let bytes = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
    let ds = Dataset::from_safetensors(&bytes).with_context(|| format!("reading {}", file.display()))?;
    let summary = ds.summary();
    let digest = Digest::of(&bytes);
    if json {
        #[derive(serde::Serialize)]
        struct Out<'a> {
            file_digest: Digest,
            #[serde(flatten)]
            summary: &'a dataset::DatasetSummary,
        }
        return print_json(&Out { file_digest: digest, summary: &summary });
    }
    println!("file:          {}", file.display());
    println!("digest:        {digest}");
    println!("rows:          {}", summary.rows);
    println!("sample shape:  {:?}", summary.sample_shape);
    if let Some(s) = summary.source_digest {
        println!("source digest: {s}");
    }
    println!("classes:");
    for c in &summary.classes {
        println!("  {:>3} {:<20} {:>7}", c.index, crate::ui::printable(&c.name), c.count);
    }
    if !summary.feature_names.is_empty() {
        println!(
            "features ({}): {}",
            summary.feature_names.len(),
            crate::ui::printable(&summary.feature_names.join(", "))
        );
    }
    Ok(())
}
