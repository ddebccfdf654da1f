//! Trained weights to and from `safetensors` bytes, never through a file.
//!
//! Tensor names follow the spec's layer list (see [`crate::spec`]). The metadata holds
//! `perun.spec_digest` (the SHA-256 of the spec the weights belong to), `perun.spec` (the
//! spec itself, so a trained model is one self-contained file that can be sealed and
//! served) and, when the spec standardises its input, `perun.standardize` (JSON mean and
//! deviation).

use burn::store::{ModuleSnapshot as _, SafetensorsStore};
use burn::tensor::Device;
use perun_core::Digest;
use zeroize::Zeroizing;

use crate::data::Standardizer;
use crate::network::Network;
use crate::spec::ModelSpec;
use crate::MlError;

const SPEC_DIGEST_KEY: &str = "perun.spec_digest";
const STANDARDIZE_KEY: &str = "perun.standardize";
const SPEC_KEY: &str = "perun.spec";

/// The digest that binds weights to their spec.
pub fn spec_digest(spec: &ModelSpec) -> Digest {
    Digest::of(&serde_json::to_vec(spec).unwrap_or_default())
}

/// A digest of the tensors themselves (names, types, shapes and values, in name order),
/// independent of how the file orders its header: equal weights give equal fingerprints.
pub fn fingerprint(bytes: &[u8]) -> Result<Digest, MlError> {
    let st = safetensors::SafeTensors::deserialize(bytes).map_err(|e| MlError::Weights(e.to_string()))?;
    let mut names = st.names();
    names.sort_unstable();
    let mut h = perun_core::DigestWriter::new();
    for name in names {
        let t = st.tensor(name).map_err(|e| MlError::Weights(e.to_string()))?;
        let shape: Vec<String> = t.shape().iter().map(usize::to_string).collect();
        let head = format!("{name}\0{:?}\0{}\0", t.dtype(), shape.join(","));
        h.update(&(head.len() as u64).to_be_bytes());
        h.update(head.as_bytes());
        h.update(&(t.data().len() as u64).to_be_bytes());
        h.update(t.data());
    }
    Ok(h.finish())
}

/// Serialises a network's weights.
pub(crate) fn to_bytes(
    net: &Network,
    spec: &ModelSpec,
    standardizer: Option<&Standardizer>,
) -> Result<Zeroizing<Vec<u8>>, MlError> {
    let mut store = SafetensorsStore::from_bytes(None)
        .skip_enum_variants(true)
        .metadata(SPEC_DIGEST_KEY, spec_digest(spec).to_string())
        .metadata(SPEC_KEY, spec.to_json());
    if let Some(s) = standardizer {
        store = store.metadata(STANDARDIZE_KEY, serde_json::to_string(s).unwrap_or_default());
    }
    net.save_into(&mut store).map_err(|e| MlError::Weights(e.to_string()))?;
    let bytes = Zeroizing::new(store.get_bytes().map_err(|e| MlError::Weights(e.to_string()))?);
    // The same weights are the same bytes (and digest) whatever order the metadata map had.
    perun_seal::canonical::canonical_safetensors(&bytes)
        .map(Zeroizing::new)
        .map_err(|e| MlError::Weights(e.to_string()))
}

/// The spec that trained weights carry (`perun.spec`), checked against the digest they
/// carry as well. `Ok(None)` for weights saved without one.
pub fn embedded_spec(bytes: &[u8]) -> Result<Option<ModelSpec>, MlError> {
    let (_, meta) = safetensors::SafeTensors::read_metadata(bytes).map_err(|e| MlError::Weights(e.to_string()))?;
    let meta = meta.metadata().clone().unwrap_or_default();
    let Some(json) = meta.get(SPEC_KEY) else { return Ok(None) };
    let spec = ModelSpec::from_json(json.as_bytes())?;
    if meta.get(SPEC_DIGEST_KEY) != Some(&spec_digest(&spec).to_string()) {
        return Err(MlError::Weights("the embedded spec does not match the weights' spec digest".into()));
    }
    Ok(Some(spec))
}

/// Builds the network of `spec` on `device` and loads `bytes` into it. Every tensor
/// the spec needs must be there with its shape; weights made for another spec (by
/// digest) are refused.
pub(crate) fn load(
    spec: &ModelSpec,
    bytes: &[u8],
    device: &Device,
) -> Result<(Network, Option<Standardizer>), MlError> {
    let (_, meta) = safetensors::SafeTensors::read_metadata(bytes).map_err(|e| MlError::Weights(e.to_string()))?;
    let meta = meta.metadata().clone().unwrap_or_default();
    if let Some(d) = meta.get(SPEC_DIGEST_KEY) {
        if *d != spec_digest(spec).to_string() {
            return Err(MlError::Weights(format!("they were made for another spec ({d})")));
        }
    }
    let standardizer = match meta.get(STANDARDIZE_KEY) {
        Some(s) => Some(
            serde_json::from_str::<Standardizer>(s).map_err(|e| MlError::Weights(format!("{STANDARDIZE_KEY}: {e}")))?,
        ),
        None => None,
    };
    if let Some(s) = &standardizer {
        let want: usize = spec.input_shape.iter().product();
        if s.mean.len() != want || s.std.len() != want {
            return Err(MlError::Weights(format!(
                "{STANDARDIZE_KEY} has {} values, the input has {want}",
                s.mean.len()
            )));
        }
    }
    let mut net = Network::init(spec, device)?;
    let mut store = SafetensorsStore::from_bytes(Some(bytes.to_vec())).skip_enum_variants(true);
    let result = net.load_from(&mut store).map_err(|e| MlError::Weights(e.to_string()))?;
    if !result.errors.is_empty() {
        return Err(MlError::Weights(format!("{:?}", result.errors)));
    }
    if !result.missing.is_empty() {
        let names: Vec<String> = result.missing.iter().map(|m| format!("{m:?}")).collect();
        return Err(MlError::Weights(format!("missing tensors: {}", names.join(", "))));
    }
    Ok((net, standardizer))
}
