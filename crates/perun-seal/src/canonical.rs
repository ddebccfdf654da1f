//! `safetensors` files whose bytes depend only on their content.
//!
//! The `safetensors` crate writes the `__metadata__` map of the header in the order of a
//! `HashMap`, so two writes of the same tensors and metadata differ byte for byte, and so
//! do their digests. Manifests pin content digests, so Perun rewrites the header with
//! the metadata keys sorted (format: an 8-byte little-endian header length, the JSON
//! header padded with spaces to a multiple of 8 bytes, then the tensor data, whose
//! offsets are relative to the data and so unchanged).

use crate::SealError;

/// Returns `bytes` (a `safetensors` file) with its header's `__metadata__` keys sorted
/// and the header padded to 8 bytes. Errors: [`SealError::Container`] for a header that
/// is not a JSON object within the file.
pub fn canonical_safetensors(bytes: &[u8]) -> Result<Vec<u8>, SealError> {
    let bad = |why: &str| SealError::Container(format!("safetensors header: {why}"));
    let len_bytes: [u8; 8] = bytes.get(..8).and_then(|b| b.try_into().ok()).ok_or_else(|| bad("too short"))?;
    let len = usize::try_from(u64::from_le_bytes(len_bytes)).map_err(|_| bad("length past memory"))?;
    let end = len.checked_add(8).filter(|e| *e <= bytes.len()).ok_or_else(|| bad("length past the file"))?;
    let mut header: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(&bytes[8..end]).map_err(|e| bad(&e.to_string()))?;
    if let Some(serde_json::Value::Object(meta)) = header.get_mut("__metadata__") {
        let mut sorted: Vec<(String, serde_json::Value)> = std::mem::take(meta).into_iter().collect();
        sorted.sort_by(|a, b| a.0.cmp(&b.0));
        meta.extend(sorted);
    }
    let mut json = serde_json::to_vec(&header).map_err(|e| bad(&e.to_string()))?;
    json.resize(json.len().div_ceil(8) * 8, b' ');
    let mut out = Vec::with_capacity(8 + json.len() + bytes.len() - end);
    out.extend_from_slice(&(json.len() as u64).to_le_bytes());
    out.extend_from_slice(&json);
    out.extend_from_slice(&bytes[end..]);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_order_does_not_change_the_bytes() {
        let data = [1u8, 2, 3, 4];
        let write = |keys: &[(&str, &str)]| {
            let view = safetensors::tensor::TensorView::new(safetensors::Dtype::U8, vec![4], &data).unwrap();
            let meta: std::collections::HashMap<String, String> =
                keys.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
            canonical_safetensors(&safetensors::tensor::serialize([("t", view)], Some(meta)).unwrap()).unwrap()
        };
        let many: Vec<(String, String)> = (0..20).map(|i| (format!("k{i}"), format!("v{i}"))).collect();
        let pairs: Vec<(&str, &str)> = many.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let first = write(&pairs);
        for _ in 0..5 {
            assert_eq!(write(&pairs), first);
        }
        // Still a valid file with the same content.
        let st = safetensors::SafeTensors::deserialize(&first).unwrap();
        assert_eq!(st.tensor("t").unwrap().data(), &data);
        let (_, meta) = safetensors::SafeTensors::read_metadata(&first).unwrap();
        assert_eq!(meta.metadata().as_ref().unwrap().len(), 20);
        assert!(canonical_safetensors(&first[..4]).is_err());
        assert!(canonical_safetensors(&[255; 16]).is_err());
    }
}
