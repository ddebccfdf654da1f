//! Data embedded in the binary, so `perun demo` runs with no files around it.

/// Breast Cancer Wisconsin (Diagnostic), UCI ML Repository, CC BY 4.0,
/// doi:10.24432/C5DW2B. 569 rows, 30 features, label column `diagnosis`.
pub const BREAST_CANCER_CSV: &[u8] = include_bytes!("../../../examples/datasets/breast_cancer_wisconsin.csv");

/// Optical Recognition of Handwritten Digits (8x8), UCI ML Repository, CC BY 4.0,
/// doi:10.24432/C50P49. 1797 rows, 64 pixels, label column `digit`.
pub const DIGITS_CSV: &[u8] = include_bytes!("../../../examples/datasets/digits_8x8.csv");

/// The example MLP for the breast-cancer data.
pub const BREAST_CANCER_MLP: &[u8] = include_bytes!("../../../examples/models/breast-cancer-mlp.json");

/// The example CNN for the 8x8 digits.
pub const DIGITS_CNN: &[u8] = include_bytes!("../../../examples/models/digits-cnn.json");

/// The CIFAR-10-shaped CNN of the training benchmark.
pub const CIFAR10_CNN: &[u8] = include_bytes!("../../../examples/models/cifar10-cnn.json");
