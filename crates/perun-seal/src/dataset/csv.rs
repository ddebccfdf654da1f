//! CSV importer: a header row, numeric feature columns and one named label column.

use perun_core::Digest;

use super::Dataset;
use crate::SealError;

/// Imports CSV bytes. Every column but `label_column` is a feature and must hold finite
/// numbers; labels may be integers (sorted numerically) or strings (sorted as text), and
/// become class indices in that order. Errors name the line and the column.
pub fn import_csv(bytes: &[u8], label_column: &str) -> Result<Dataset, SealError> {
    let mut rdr = csv::ReaderBuilder::new().has_headers(true).flexible(true).trim(csv::Trim::All).from_reader(bytes);
    let headers = rdr.headers().map_err(|e| SealError::Csv(format!("cannot read the header row: {e}")))?.clone();
    if headers.is_empty() {
        return Err(SealError::Csv("the file has no header row".into()));
    }
    let label_idx = headers.iter().position(|h| h == label_column).ok_or_else(|| {
        SealError::Csv(format!(
            "no column named `{label_column}`; the columns are: {}",
            headers.iter().collect::<Vec<_>>().join(", ")
        ))
    })?;
    let feature_names: Vec<String> =
        headers.iter().enumerate().filter(|(i, _)| *i != label_idx).map(|(_, h)| h.to_owned()).collect();
    if feature_names.is_empty() {
        return Err(SealError::Csv("no feature columns besides the label column".into()));
    }

    let mut features = Vec::new();
    let mut raw_labels = Vec::new();
    for rec in rdr.records() {
        let rec = rec.map_err(|e| SealError::Csv(format!("{e}")))?;
        let line = rec.position().map_or(0, |p| p.line());
        if rec.len() == 1 && rec.get(0) == Some("") {
            continue; // blank line
        }
        if rec.len() != headers.len() {
            return Err(SealError::Csv(format!("line {line}: expected {} fields, found {}", headers.len(), rec.len())));
        }
        for (i, field) in rec.iter().enumerate() {
            if i == label_idx {
                if field.is_empty() {
                    return Err(SealError::Csv(format!("line {line}: the label column `{label_column}` is empty")));
                }
                raw_labels.push(field.to_owned());
                continue;
            }
            let v: f32 = field.parse().ok().filter(|v: &f32| v.is_finite()).ok_or_else(|| {
                SealError::Csv(format!(
                    "line {line}, column {} (`{}`): {:?} is not a finite number",
                    i + 1,
                    &headers[i],
                    field.chars().take(40).collect::<String>()
                ))
            })?;
            features.push(v);
        }
    }
    if raw_labels.is_empty() {
        return Err(SealError::Csv("the file has a header but no data rows".into()));
    }

    let (class_names, labels) = index_labels(&raw_labels);
    Dataset::new(features, vec![feature_names.len()], labels, class_names, feature_names, Some(Digest::of(bytes)))
}

/// Maps label strings to class indices: integers in numeric order if every label is an
/// integer, otherwise strings in text order.
fn index_labels(raw: &[String]) -> (Vec<String>, Vec<i64>) {
    let ints: Option<Vec<i64>> = raw.iter().map(|s| s.parse().ok()).collect();
    let classes: Vec<String> = match &ints {
        Some(v) => {
            let mut u = v.clone();
            u.sort_unstable();
            u.dedup();
            u.iter().map(i64::to_string).collect()
        }
        None => {
            let mut u = raw.to_vec();
            u.sort();
            u.dedup();
            u
        }
    };
    let labels = match ints {
        // Canonical integer text (no `+`, no leading zeros) keeps lookups exact.
        Some(v) => v
            .iter()
            .map(|x| classes.binary_search_by(|c| c.parse::<i64>().unwrap_or(i64::MIN).cmp(x)).unwrap_or(0) as i64)
            .collect(),
        None => raw.iter().map(|s| classes.binary_search(s).unwrap_or(0) as i64).collect(),
    };
    (classes, labels)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn string_labels_become_sorted_classes() {
        let d = import_csv(b"a,b,y\n1,2,pos\n3,4,neg\n5,6,pos\n", "y").unwrap();
        assert_eq!(d.class_names, ["neg", "pos"]);
        assert_eq!(d.labels, [1, 0, 1]);
        assert_eq!(d.feature_names, ["a", "b"]);
        assert_eq!(d.features, [1., 2., 3., 4., 5., 6.]);
    }

    #[test]
    fn integer_labels_sort_numerically() {
        let d = import_csv(b"y,x\n10,0\n2,1\n-1,2\n", "y").unwrap();
        assert_eq!(d.class_names, ["-1", "2", "10"]);
        assert_eq!(d.labels, [2, 1, 0]);
    }

    #[test]
    fn errors_name_line_and_column() {
        let e = import_csv(b"a,b,y\n1,2,p\n3,p\n", "y").unwrap_err().to_string();
        assert!(e.contains("line 3") && e.contains("expected 3 fields, found 2"), "{e}");
        let e = import_csv(b"a,b,y\n1,2,p\n3,abc,p\n", "y").unwrap_err().to_string();
        assert!(e.contains("line 3, column 2 (`b`)") && e.contains("abc"), "{e}");
        let e = import_csv(b"a,b,y\n1,inf,p\n", "y").unwrap_err().to_string();
        assert!(e.contains("not a finite number"), "{e}");
        let e = import_csv(b"a,b,y\n1,2,p\n", "label").unwrap_err().to_string();
        assert!(e.contains("no column named `label`") && e.contains("a, b, y"), "{e}");
        assert!(import_csv(b"a,y\n", "y").is_err());
        assert!(import_csv(b"", "y").is_err());
    }
}
