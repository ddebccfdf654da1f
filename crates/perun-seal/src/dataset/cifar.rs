//! CIFAR-10 binary-batch importer (`data_batch_*.bin`, `test_batch.bin`).
//!
//! Each record is one label byte then 3072 pixel bytes: the 1024 red, 1024 green and
//! 1024 blue values of a 32x32 image, row-major.

use std::fs;
use std::path::{Path, PathBuf};

use perun_core::DigestWriter;

use super::Dataset;
use crate::SealError;

const RECORD: usize = 1 + 3 * 32 * 32;
const CLASSES: [&str; 10] = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"];

/// Which CIFAR-10 batches to import.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CifarSplit {
    /// `data_batch_1.bin` .. `data_batch_5.bin` (whichever are present).
    Train,
    /// `test_batch.bin`.
    Test,
}

/// Whether `dir` looks like a CIFAR-10 binary folder.
pub fn is_cifar10_dir(dir: &Path) -> bool {
    dir.join("data_batch_1.bin").is_file() || dir.join("test_batch.bin").is_file()
}

/// Imports CIFAR-10 binary batches from `dir`. Class names come from
/// `batches.meta.txt` when present. Features are `[3, 32, 32]` in `0.0..=1.0`.
pub fn import_cifar10(dir: &Path, split: CifarSplit) -> Result<Dataset, SealError> {
    let files: Vec<PathBuf> = match split {
        CifarSplit::Train => (1..=5).map(|i| dir.join(format!("data_batch_{i}.bin"))).filter(|p| p.is_file()).collect(),
        CifarSplit::Test => vec![dir.join("test_batch.bin")].into_iter().filter(|p| p.is_file()).collect(),
    };
    if files.is_empty() {
        return Err(SealError::Cifar {
            path: dir.to_owned(),
            why: format!(
                "no {} batches found (data_batch_N.bin / test_batch.bin)",
                if split == CifarSplit::Train { "training" } else { "test" }
            ),
        });
    }
    let class_names = read_class_names(dir)?;
    let mut features = Vec::new();
    let mut labels = Vec::new();
    let mut source = DigestWriter::new();
    for path in &files {
        let bytes = fs::read(path).map_err(|e| SealError::io(path, e))?;
        if bytes.is_empty() || bytes.len() % RECORD != 0 {
            return Err(SealError::Cifar {
                path: path.clone(),
                why: format!("{} bytes is not a whole number of {RECORD}-byte records", bytes.len()),
            });
        }
        source.update(&bytes);
        features.reserve(bytes.len() / RECORD * (RECORD - 1));
        for (i, rec) in bytes.chunks_exact(RECORD).enumerate() {
            if usize::from(rec[0]) >= class_names.len() {
                return Err(SealError::Cifar {
                    path: path.clone(),
                    why: format!(
                        "record {i} (byte {}) has label {}, outside 0..{}",
                        i * RECORD,
                        rec[0],
                        class_names.len()
                    ),
                });
            }
            labels.push(i64::from(rec[0]));
            features.extend(rec[1..].iter().map(|&b| f32::from(b) / 255.0));
        }
    }
    Dataset::new(features, vec![3, 32, 32], labels, class_names, Vec::new(), Some(source.finish()))
}

fn read_class_names(dir: &Path) -> Result<Vec<String>, SealError> {
    let meta = dir.join("batches.meta.txt");
    if !meta.is_file() {
        return Ok(CLASSES.iter().map(|s| s.to_string()).collect());
    }
    let text = fs::read_to_string(&meta).map_err(|e| SealError::io(&meta, e))?;
    let names: Vec<String> = text.lines().map(str::trim).filter(|l| !l.is_empty()).map(str::to_owned).collect();
    if names.is_empty() || names.len() > 256 {
        return Err(SealError::Cifar { path: meta, why: "expected 1 to 256 class names, one a line".into() });
    }
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_records_in_plane_order() {
        let dir = tempfile::tempdir().unwrap();
        let mut rec = vec![7u8];
        rec.extend(std::iter::repeat_n(255, 1024)); // red
        rec.extend(std::iter::repeat_n(0, 2048));
        let mut batch = rec.clone();
        batch[0] = 3;
        batch.extend(&rec);
        fs::write(dir.path().join("data_batch_1.bin"), &batch).unwrap();
        fs::write(dir.path().join("test_batch.bin"), &rec).unwrap();
        assert!(is_cifar10_dir(dir.path()));
        let d = import_cifar10(dir.path(), CifarSplit::Train).unwrap();
        assert_eq!(d.labels, [3, 7]);
        assert_eq!(d.sample_shape, [3, 32, 32]);
        assert_eq!(d.features[0], 1.0);
        assert_eq!(d.features[1024], 0.0);
        assert_eq!(d.class_names[7], "horse");
        assert_eq!(import_cifar10(dir.path(), CifarSplit::Test).unwrap().len(), 1);
    }

    #[test]
    fn malformed_batches_are_named() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("data_batch_1.bin"), vec![0u8; RECORD + 5]).unwrap();
        let e = import_cifar10(dir.path(), CifarSplit::Train).unwrap_err().to_string();
        assert!(e.contains("data_batch_1.bin") && e.contains("whole number"), "{e}");
        let mut bad = vec![0u8; RECORD];
        bad[0] = 10;
        fs::write(dir.path().join("data_batch_1.bin"), bad).unwrap();
        let e = import_cifar10(dir.path(), CifarSplit::Train).unwrap_err().to_string();
        assert!(e.contains("label 10"), "{e}");
        assert!(import_cifar10(dir.path(), CifarSplit::Test).is_err());
    }
}
