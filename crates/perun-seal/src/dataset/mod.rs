//! The dataset container and its importers.
//!
//! A data set is a `safetensors` file holding `features` (f32, `[n, ...sample shape]`)
//! and `labels` (i64, `[n]`), with metadata: class names, feature names and the digest
//! of the source it was imported from. Files written by Python's `safetensors` with
//! those two tensors load too.

mod cifar;
mod container;
mod csv;
mod images;

pub use self::cifar::{import_cifar10, is_cifar10_dir, CifarSplit};
pub use self::container::{ClassCount, Dataset, DatasetSummary};
pub use self::csv::{
    import_csv, import_csv_as, import_csv_with, read_table, read_table_with, CsvOptions, CsvTable, DEFAULT_LABEL,
};
pub use self::images::import_image_folder;

/// The most classes a data set may have: every importer and the container reader refuse
/// more, so that no label or class count read from a file sizes an allocation beyond it.
pub const MAX_CLASSES: usize = 65_536;
