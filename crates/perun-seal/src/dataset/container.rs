//! The in-memory data set and its `safetensors` form.

use std::collections::HashMap;
use std::path::Path;

use perun_core::Digest;
use safetensors::tensor::{Dtype, TensorView};
use safetensors::SafeTensors;
use serde::Serialize;

use crate::fsutil::AtomicOutput;
use crate::SealError;

use super::MAX_CLASSES;

/// The most values one sample may hold (2^28: a 16,384 x 16,384 image).
const MAX_SAMPLE_VALUES: usize = 1 << 28;

const SCHEMA_KEY: &str = "perun.schema";
const SCHEMA: &str = "dataset/1";

/// A labelled data set held in memory.
#[derive(Clone, Debug, PartialEq)]
pub struct Dataset {
    /// Row-major features, `len() * sample_shape.product()` values.
    pub features: Vec<f32>,
    /// Shape of one sample (for example `[30]` or `[3, 32, 32]`).
    pub sample_shape: Vec<usize>,
    /// One class index per sample, each in `0..class_names.len()`.
    pub labels: Vec<i64>,
    /// Name of each class, by index.
    pub class_names: Vec<String>,
    /// Name of each feature, for tabular data (empty otherwise).
    pub feature_names: Vec<String>,
    /// Digest of the source the set was imported from, if known.
    pub source_digest: Option<Digest>,
}

/// The number of samples of one class.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ClassCount {
    /// Class index.
    pub index: i64,
    /// Class name.
    pub name: String,
    /// Samples with that label.
    pub count: usize,
}

/// What `perun dataset inspect` shows.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct DatasetSummary {
    /// Number of samples.
    pub rows: usize,
    /// Shape of one sample.
    pub sample_shape: Vec<usize>,
    /// Per-class counts.
    pub classes: Vec<ClassCount>,
    /// Feature names (tabular data).
    pub feature_names: Vec<String>,
    /// Digest of the source, if recorded.
    pub source_digest: Option<Digest>,
}

impl Dataset {
    /// Builds a data set and checks that its parts agree.
    pub fn new(
        features: Vec<f32>,
        sample_shape: Vec<usize>,
        labels: Vec<i64>,
        class_names: Vec<String>,
        feature_names: Vec<String>,
        source_digest: Option<Digest>,
    ) -> Result<Self, SealError> {
        let ds = Self { features, sample_shape, labels, class_names, feature_names, source_digest };
        ds.validate()?;
        Ok(ds)
    }

    /// Number of samples.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether the set has no samples.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Values per sample (`usize::MAX` where the shape's product overflows, which
    /// [`Dataset::validate`] refuses).
    pub fn sample_len(&self) -> usize {
        self.sample_shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d)).unwrap_or(usize::MAX)
    }

    /// The samples as rows of [`Dataset::sample_len`] values (a copy; the way a client
    /// sends them to a served model).
    pub fn rows(&self) -> Vec<Vec<f32>> {
        self.features.chunks(self.sample_len().max(1)).map(<[f32]>::to_vec).collect()
    }

    /// Checks that shapes, labels and names agree.
    pub fn validate(&self) -> Result<(), SealError> {
        let bad = |m: String| Err(SealError::Container(m));
        if self.sample_shape.is_empty() || self.sample_len() == 0 {
            return bad(format!("sample shape {:?} is empty", self.sample_shape));
        }
        if self.sample_len() > MAX_SAMPLE_VALUES {
            return bad(format!("sample shape {:?} holds more than {MAX_SAMPLE_VALUES} values", self.sample_shape));
        }
        if Some(self.features.len()) != self.len().checked_mul(self.sample_len()) {
            return bad(format!(
                "{} feature values do not fill {} samples of shape {:?}",
                self.features.len(),
                self.len(),
                self.sample_shape
            ));
        }
        if self.class_names.is_empty() && !self.labels.is_empty() {
            return bad("no class names".into());
        }
        if self.class_names.len() > MAX_CLASSES {
            return bad(format!("{} classes, more than {MAX_CLASSES}", self.class_names.len()));
        }
        let mut seen = std::collections::HashSet::with_capacity(self.class_names.len());
        if let Some(dup) = self.class_names.iter().find(|n| !seen.insert(n.as_str())) {
            return bad(format!("two classes are named `{dup}`"));
        }
        let k = self.class_names.len() as i64;
        if let Some((i, l)) = self.labels.iter().enumerate().find(|(_, l)| !(0..k).contains(*l)) {
            return bad(format!("label {l} of sample {i} is outside 0..{k}"));
        }
        if !self.feature_names.is_empty() && self.feature_names.len() != self.sample_len() {
            return bad(format!(
                "{} feature names for {} features per sample",
                self.feature_names.len(),
                self.sample_len()
            ));
        }
        Ok(())
    }

    /// Per-class counts and the other facts `inspect` shows.
    pub fn summary(&self) -> DatasetSummary {
        let mut counts = vec![0usize; self.class_names.len()];
        for &l in &self.labels {
            if let Some(c) = usize::try_from(l).ok().and_then(|i| counts.get_mut(i)) {
                *c += 1;
            }
        }
        DatasetSummary {
            rows: self.len(),
            sample_shape: self.sample_shape.clone(),
            classes: counts
                .into_iter()
                .enumerate()
                .map(|(i, count)| ClassCount { index: i as i64, name: self.class_names[i].clone(), count })
                .collect(),
            feature_names: self.feature_names.clone(),
            source_digest: self.source_digest,
        }
    }

    /// The samples at `indices`, in that order.
    pub fn subset(&self, indices: &[usize]) -> Result<Self, SealError> {
        let s = self.sample_len();
        let mut features = Vec::with_capacity(indices.len() * s);
        let mut labels = Vec::with_capacity(indices.len());
        for &i in indices {
            if i >= self.len() {
                return Err(SealError::Container(format!("sample {i} is outside 0..{}", self.len())));
            }
            features.extend_from_slice(&self.features[i * s..(i + 1) * s]);
            labels.push(self.labels[i]);
        }
        Ok(Self { features, labels, ..self.clone_meta() })
    }

    /// Appends the samples of `other`, which must have the same shape and classes.
    pub fn append(&mut self, other: &Self) -> Result<(), SealError> {
        if other.sample_shape != self.sample_shape || other.class_names != self.class_names {
            return Err(SealError::Container("cannot join data sets of different sample shapes or classes".into()));
        }
        self.features.extend_from_slice(&other.features);
        self.labels.extend_from_slice(&other.labels);
        self.source_digest = None;
        Ok(())
    }

    /// Splits into parts of the given relative sizes, stratified by class and shuffled
    /// with `seed` (the same seed gives the same parts).
    pub fn split(&self, ratios: &[f64], seed: u64) -> Result<Vec<Self>, SealError> {
        use rand::seq::SliceRandom as _;
        use rand::SeedableRng as _;
        if ratios.is_empty() || ratios.iter().any(|r| !r.is_finite() || *r <= 0.0) {
            return Err(SealError::Container("split ratios must be positive numbers".into()));
        }
        let total: f64 = ratios.iter().sum();
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let mut parts: Vec<Vec<usize>> = vec![Vec::new(); ratios.len()];
        for class in 0..self.class_names.len() as i64 {
            let mut idx: Vec<usize> = (0..self.len()).filter(|&i| self.labels[i] == class).collect();
            idx.shuffle(&mut rng);
            let mut start = 0;
            let mut acc = 0.0;
            for (p, r) in ratios.iter().enumerate() {
                acc += r;
                let end =
                    if p + 1 == ratios.len() { idx.len() } else { ((acc / total) * idx.len() as f64).round() as usize };
                parts[p].extend_from_slice(&idx[start..end.max(start)]);
                start = end.max(start);
            }
        }
        parts
            .into_iter()
            .map(|mut p| {
                p.shuffle(&mut rng);
                self.subset(&p)
            })
            .collect()
    }

    fn clone_meta(&self) -> Self {
        Self {
            features: Vec::new(),
            sample_shape: self.sample_shape.clone(),
            labels: Vec::new(),
            class_names: self.class_names.clone(),
            feature_names: self.feature_names.clone(),
            source_digest: self.source_digest,
        }
    }

    /// Serialises to `safetensors` bytes.
    pub fn to_safetensors(&self) -> Result<Vec<u8>, SealError> {
        self.validate()?;
        let features: Vec<u8> = self.features.iter().flat_map(|v| v.to_le_bytes()).collect();
        let labels: Vec<u8> = self.labels.iter().flat_map(|v| v.to_le_bytes()).collect();
        let mut fshape = vec![self.len()];
        fshape.extend_from_slice(&self.sample_shape);
        let st = |e: safetensors::SafeTensorError| SealError::Container(e.to_string());
        let fview = TensorView::new(Dtype::F32, fshape, &features).map_err(st)?;
        let lview = TensorView::new(Dtype::I64, vec![self.len()], &labels).map_err(st)?;
        let json = |v: &Vec<String>| serde_json::to_string(v).unwrap_or_default();
        let mut meta = HashMap::from([
            (SCHEMA_KEY.to_owned(), SCHEMA.to_owned()),
            ("class_names".to_owned(), json(&self.class_names)),
            ("feature_names".to_owned(), json(&self.feature_names)),
        ]);
        if let Some(d) = self.source_digest {
            meta.insert("source_digest".into(), d.to_string());
        }
        let bytes = safetensors::tensor::serialize([("features", fview), ("labels", lview)], Some(meta)).map_err(st)?;
        crate::canonical::canonical_safetensors(&bytes)
    }

    /// Parses `safetensors` bytes (from Perun or from Python's `safetensors`).
    pub fn from_safetensors(bytes: &[u8]) -> Result<Self, SealError> {
        let st = |e: safetensors::SafeTensorError| SealError::Container(e.to_string());
        let (_, meta) = SafeTensors::read_metadata(bytes).map_err(|e| header_error(bytes, e))?;
        let tensors = SafeTensors::deserialize(bytes).map_err(st)?;
        let f = tensors.tensor("features").map_err(|_| SealError::Container("no tensor named `features`".into()))?;
        let l = tensors.tensor("labels").map_err(|_| SealError::Container("no tensor named `labels`".into()))?;
        if f.dtype() != Dtype::F32 {
            return Err(SealError::Container(format!("`features` is {:?}, expected F32", f.dtype())));
        }
        if l.shape().len() != 1 {
            return Err(SealError::Container(format!("`labels` has shape {:?}, expected [n]", l.shape())));
        }
        let labels: Vec<i64> = match l.dtype() {
            Dtype::I64 => {
                l.data().chunks_exact(8).map(|c| i64::from_le_bytes(c.try_into().unwrap_or_default())).collect()
            }
            Dtype::I32 => l
                .data()
                .chunks_exact(4)
                .map(|c| i64::from(i32::from_le_bytes(c.try_into().unwrap_or_default())))
                .collect(),
            other => return Err(SealError::Container(format!("`labels` is {other:?}, expected I64 or I32"))),
        };
        // Labels are class indices: a negative one (such as -100, "ignore" in training
        // code) or one beyond the class limit is refused before it sizes anything.
        if let Some((i, l)) = labels.iter().enumerate().find(|(_, l)| !(0..MAX_CLASSES as i64).contains(*l)) {
            return Err(SealError::Container(format!(
                "label {l} of sample {i} is not a class index 0..{MAX_CLASSES} (labels must be class indices, \
                 not values such as -100 or raw ids)"
            )));
        }
        let (&n, sample_shape) = f
            .shape()
            .split_first()
            .ok_or_else(|| SealError::Container("`features` must have a sample dimension".into()))?;
        if n != labels.len() {
            return Err(SealError::Container(format!("{n} feature rows but {} labels", labels.len())));
        }
        let features: Vec<f32> =
            f.data().chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap_or_default())).collect();
        if let Some(i) = features.iter().position(|v| !v.is_finite()) {
            return Err(SealError::Container(format!(
                "feature value {i} is {} (features must be finite)",
                features[i]
            )));
        }
        let meta = meta.metadata().clone().unwrap_or_default();
        let list = |key: &str| -> Result<Vec<String>, SealError> {
            meta.get(key).map_or(Ok(Vec::new()), |v| {
                serde_json::from_str(v).map_err(|e| SealError::Container(format!("metadata `{key}`: {e}")))
            })
        };
        let mut class_names = list("class_names")?;
        if class_names.len() > MAX_CLASSES {
            return Err(SealError::Container(format!(
                "{} class names, more than the {MAX_CLASSES} classes Perun takes",
                class_names.len()
            )));
        }
        if class_names.is_empty() {
            // Bounded: every label was checked to lie in 0..MAX_CLASSES.
            let k = labels.iter().copied().max().map_or(0, |m| m.saturating_add(1));
            class_names = (0..k).map(|i| i.to_string()).collect();
        }
        let source_digest = meta.get("source_digest").map(|d| d.parse()).transpose()?;
        let ds = Self {
            features,
            sample_shape: sample_shape.to_vec(),
            labels,
            class_names,
            feature_names: list("feature_names")?,
            source_digest,
        };
        ds.validate()?;
        Ok(ds)
    }

    /// Writes a new container file (whole or not at all; never overwriting).
    pub fn write_file(&self, path: &Path) -> Result<Digest, SealError> {
        let bytes = self.to_safetensors()?;
        let mut out = AtomicOutput::create(path)?;
        std::io::Write::write_all(out.file(), &bytes).map_err(|e| SealError::io(path, e))?;
        out.commit()?;
        Ok(Digest::of(&bytes))
    }

    /// Reads a container file.
    pub fn read_file(path: &Path) -> Result<Self, SealError> {
        let bytes = std::fs::read(path).map_err(|e| SealError::io(path, e))?;
        Self::from_safetensors(&bytes).map_err(|e| match e {
            SealError::Container(m) => SealError::Container(format!("{}: {m}", path.display())),
            other => other,
        })
    }
}

/// A safetensors header error, made specific where the crate's message is not: the
/// format's `__metadata__` maps names to strings, and other tools write numbers or
/// lists there.
fn header_error(bytes: &[u8], e: safetensors::SafeTensorError) -> SealError {
    let header = bytes
        .get(..8)
        .map(|n| u64::from_le_bytes([n[0], n[1], n[2], n[3], n[4], n[5], n[6], n[7]]))
        .and_then(|n| usize::try_from(n).ok())
        .and_then(|n| bytes.get(8..8usize.saturating_add(n)));
    let value = header.and_then(|h| serde_json::from_slice::<serde_json::Value>(h).ok());
    if let Some(meta) = value.as_ref().and_then(|v| v.get("__metadata__")).and_then(|m| m.as_object()) {
        if let Some((k, v)) = meta.iter().find(|(_, v)| !v.is_string()) {
            let kind = match v {
                serde_json::Value::Number(_) => "a number",
                serde_json::Value::Bool(_) => "a boolean",
                serde_json::Value::Array(_) => "a list",
                serde_json::Value::Object(_) => "an object",
                _ => "null",
            };
            return SealError::Container(format!(
                "metadata `{}` is {kind}, but safetensors metadata values must be strings (write it as a string, \
                 for example with json.dumps)",
                k.chars().take(64).collect::<String>()
            ));
        }
    }
    SealError::Container(e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny() -> Dataset {
        Dataset {
            features: vec![0.5, 1.5, -2.0, 3.25, 4.0, 5.0],
            sample_shape: vec![2],
            labels: vec![0, 1, 1],
            class_names: vec!["no".into(), "yes".into()],
            feature_names: vec!["a".into(), "b".into()],
            source_digest: Some(Digest::of(b"src")),
        }
    }

    #[test]
    fn safetensors_round_trip() {
        let d = tiny();
        let back = Dataset::from_safetensors(&d.to_safetensors().unwrap()).unwrap();
        assert_eq!(back, d);
        let s = back.summary();
        assert_eq!(s.classes.iter().map(|c| c.count).collect::<Vec<_>>(), [1, 2]);
    }

    #[test]
    fn rows_are_samples_in_order() {
        assert_eq!(tiny().rows(), [vec![0.5, 1.5], vec![-2.0, 3.25], vec![4.0, 5.0]]);
    }

    #[test]
    fn inconsistent_sets_are_refused() {
        let mut d = tiny();
        d.labels[0] = 2;
        assert!(d.to_safetensors().is_err());
        let mut d = tiny();
        d.features.pop();
        assert!(d.validate().is_err());
        assert!(Dataset::from_safetensors(b"garbage").is_err());
    }

    #[test]
    fn split_is_stratified_and_seeded() {
        let d = Dataset {
            features: (0..100).map(|i| i as f32).collect(),
            sample_shape: vec![1],
            labels: (0..100).map(|i| i64::from(i % 4 == 0)).collect(),
            class_names: vec!["a".into(), "b".into()],
            feature_names: vec![],
            source_digest: None,
        };
        let parts = d.split(&[0.4, 0.4, 0.2], 7).unwrap();
        assert_eq!(parts.iter().map(Dataset::len).collect::<Vec<_>>(), [40, 40, 20]);
        assert_eq!(parts[2].labels.iter().filter(|&&l| l == 1).count(), 5);
        let mut all: Vec<f32> = parts.iter().flat_map(|p| p.features.clone()).collect();
        all.sort_by(f32::total_cmp);
        assert_eq!(all, d.features, "a sample was lost or duplicated");
        assert_eq!(d.split(&[0.4, 0.4, 0.2], 7).unwrap(), parts);
        assert!(d.split(&[0.0, 1.0], 7).is_err());
    }

    #[test]
    fn subset_and_append() {
        let d = tiny();
        let s = d.subset(&[2, 0]).unwrap();
        assert_eq!(s.labels, [1, 0]);
        assert_eq!(s.features, [4.0, 5.0, 0.5, 1.5]);
        assert!(d.subset(&[3]).is_err());
        let mut j = s.clone();
        j.append(&d).unwrap();
        assert_eq!(j.len(), 5);
    }
}
