//! Targets for `perun-seal`: sealed files and their header, wrapped keys, and the
//! dataset importers (CSV, image folders, CIFAR-10 batches, safetensors containers).

use std::path::Path;

use perun_core::AssetKind;
use perun_seal::dataset::{import_cifar10, import_csv, import_csv_as, import_image_folder, read_table, CifarSplit};
use perun_seal::header::AssetHeader;
use perun_seal::sealed::{open_to_vec, SealedReader};
use perun_seal::wrap::{unwrap, wrap, MAX_WRAPPED_SECRET};
use perun_seal::{AssetKey, Dataset};

use crate::fixtures;

/// A sealed asset's plaintext (what follows the `age` layer: magic, header length, JSON
/// header, payload), as anyone who knows a recipient can make it: [`AssetHeader::decode_json`]
/// of the bytes; then the bytes encrypted to the fixture key and opened with
/// [`SealedReader`] (header read, payload checked against it) as they are, and followed
/// by more than an `age` chunk of payload, intact, with its last chunk modified and cut
/// short (so that an error after the header is classified against the declared length);
/// and, at most [`MAX_WRAPPED_SECRET`] of them, as a wrapped key opened with
/// [`open_to_vec`].
pub fn sealed_header(data: &[u8]) {
    let _ = AssetHeader::decode_json(data);
    let Some(key) = fixtures::asset_key() else { return };
    if let Some(sealed) = fixtures::age_encrypt(data) {
        read_sealed(&sealed, key);
    }
    let mut long = data.to_vec();
    long.resize(data.len() + AGE_CHUNK + 1, 0);
    if let Some(sealed) = fixtures::age_encrypt(&long) {
        read_sealed(&sealed, key);
        let mut modified = sealed.clone();
        if let Some(last) = modified.last_mut() {
            *last ^= 1;
        }
        read_sealed(&modified, key);
        read_sealed(&sealed[..sealed.len().saturating_sub(17)], key);
    }
    let plain = &data[..data.len().min(MAX_WRAPPED_SECRET)];
    if let Ok(wrapped) = wrap(plain, &key.recipient(), &fuzz_context()) {
        let _ = open_to_vec(&wrapped[..], Some(wrapped.len() as u64), key.identity(), Some(AssetKind::Dataset));
    }
}

/// The context the seed corpus's wrapped keys were made for (`tests/seeds.rs`).
fn fuzz_context() -> perun_seal::wrap::WrapContext {
    perun_seal::wrap::WrapContext::other("fuzz", &[b"seed"])
}

/// Plaintext bytes per `age` STREAM chunk.
const AGE_CHUNK: usize = 64 * 1024;

/// Opens `sealed` chunk by chunk, then checks it.
fn read_sealed(sealed: &[u8], key: &AssetKey) {
    let Ok(mut r) = SealedReader::new(sealed, Some(sealed.len() as u64), key.identity()) else { return };
    let _ = r.header().map(|h| h.encoded_len());
    let mut buf = [0u8; 4096];
    loop {
        match r.read_chunk(&mut buf) {
            Ok(0) => break,
            Ok(_) => {}
            Err(_) => return,
        }
    }
    let _ = r.finish();
}

/// A sealed file as a stakeholder or worker receives it (binary or ASCII-armored `age`):
/// [`open_to_vec`] and [`SealedReader`] with the fixture key, with and without its
/// length; and as a wrapped asset key, [`unwrap`].
pub fn sealed_file(data: &[u8]) {
    let Some(key) = fixtures::asset_key() else { return };
    let _ = open_to_vec(data, Some(data.len() as u64), key.identity(), None);
    let _ = open_to_vec(data, None, key.identity(), Some(AssetKind::Model));
    read_sealed(data, key);
    if let Ok(secret) = unwrap(data, key.identity(), &fuzz_context()) {
        let _ = secret.len();
    }
}

/// A CSV file: [`read_table`] and its numbers, [`import_csv_as`] with the default label
/// column, and [`import_csv`] naming `label`.
pub fn dataset_csv(data: &[u8]) {
    if let Ok(table) = read_table(data) {
        let _ = table.numbers();
    }
    if let Ok(ds) = import_csv_as(data, None) {
        dataset_uses(&ds);
    }
    let _ = import_csv(data, "label");
}

/// An image file in an image folder (`root/<class>/<file>`): [`import_image_folder`] at
/// its own size with 3 channels, and resized to 8x8 with 1 channel; also beside a second
/// class holding a copy, so that sizes are compared.
pub fn dataset_images(data: &[u8]) {
    with_scratch("images", |root| {
        let cat = root.join("cat");
        std::fs::create_dir_all(&cat).ok()?;
        std::fs::write(cat.join("a.png"), data).ok()?;
        if let Ok(ds) = import_image_folder(root, None, 3) {
            dataset_uses(&ds);
        }
        let _ = import_image_folder(root, Some((8, 8)), 1);
        let dog = root.join("dog");
        std::fs::create_dir_all(&dog).ok()?;
        std::fs::write(dog.join("b.jpg"), data).ok()?;
        let _ = import_image_folder(root, None, 1);
        Some(())
    });
}

/// A CIFAR-10 binary batch: [`import_cifar10`] of the bytes as `data_batch_1.bin`; then,
/// split at the first NUL byte, of the part before as `batches.meta.txt` (class names)
/// and the rest as `test_batch.bin`.
pub fn dataset_cifar(data: &[u8]) {
    with_scratch("cifar", |dir| {
        std::fs::write(dir.join("data_batch_1.bin"), data).ok()?;
        if let Ok(ds) = import_cifar10(dir, CifarSplit::Train) {
            dataset_uses(&ds);
        }
        let _ = perun_seal::dataset::is_cifar10_dir(dir);
        if let Some(at) = data.iter().position(|&b| b == 0) {
            std::fs::write(dir.join("batches.meta.txt"), &data[..at]).ok()?;
            std::fs::write(dir.join("test_batch.bin"), &data[at + 1..]).ok()?;
            let _ = import_cifar10(dir, CifarSplit::Test);
        }
        Some(())
    });
}

/// A dataset container (`safetensors`, from Perun or Python):
/// [`Dataset::from_safetensors`], then what jobs do with one (summary, split, subset,
/// written back and read again).
pub fn dataset_safetensors(data: &[u8]) {
    let Ok(ds) = Dataset::from_safetensors(data) else { return };
    dataset_uses(&ds);
    if let Ok(bytes) = ds.to_safetensors() {
        let _ = Dataset::from_safetensors(&bytes);
    }
}

/// What importers' callers do with a data set that loaded.
fn dataset_uses(ds: &Dataset) {
    let _ = ds.validate();
    let _ = ds.summary();
    let _ = ds.sample_len();
    let _ = ds.split(&[0.5, 0.5], 7);
    let _ = ds.subset(&[0, ds.len().saturating_sub(1)]);
}

thread_local! {
    /// This thread's scratch folder, removed when the thread ends.
    static SCRATCH: Option<tempfile::TempDir> = tempfile::Builder::new().prefix("perun-fuzz-").tempdir().ok();
}

/// Runs `f` in an empty folder `name` of this thread's scratch folder.
fn with_scratch(name: &str, f: impl FnOnce(&Path) -> Option<()>) {
    SCRATCH.with(|s| {
        let Some(s) = s else { return };
        let dir = s.path().join(name);
        let _ = std::fs::remove_dir_all(&dir);
        if std::fs::create_dir_all(&dir).is_ok() {
            let _ = f(&dir);
        }
    });
}
