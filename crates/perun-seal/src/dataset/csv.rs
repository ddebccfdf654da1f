//! CSV importer: a header row, numeric feature columns and one named label column, read
//! as spreadsheets and R write CSV: a UTF-8 byte-order mark (Excel's "CSV UTF-8"),
//! quoted fields (commas, quotes and line breaks inside), CRLF line ends, and `;`, tab
//! or `|` between fields where `,` is not the delimiter (European locales write `;`
//! with `,` as the decimal mark).

use perun_core::Digest;

use super::Dataset;
use crate::SealError;

/// The delimiters tried, in order of preference.
const DELIMITERS: [u8; 4] = [b',', b';', b'\t', b'|'];
/// Records read to choose the delimiter.
const SNIFF_RECORDS: usize = 50;
/// The column taken as the label when none is named.
pub const DEFAULT_LABEL: &str = "label";

/// A CSV file read into text fields: its header and its records, with their line numbers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CsvTable {
    /// The field delimiter found (`,`, `;`, tab or `|`).
    pub delimiter: u8,
    /// Column names, trimmed, without a byte-order mark.
    pub headers: Vec<String>,
    /// Each data record (every one has `headers.len()` fields) with the line it starts on.
    pub records: Vec<(u64, Vec<String>)>,
}

fn delimiter_name(d: u8) -> &'static str {
    match d {
        b',' => "`,`",
        b';' => "`;`",
        b'\t' => "tab",
        _ => "`|`",
    }
}

fn reader(bytes: &[u8], delimiter: u8) -> csv::Reader<&[u8]> {
    csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .trim(csv::Trim::All)
        .delimiter(delimiter)
        .from_reader(bytes)
}

/// The delimiter under which the header has the most columns and the first records
/// have as many fields as the header; `,` where none gives more than one column.
///
/// Errors: two delimiters that read the file as the same number of columns (`a, b;c`):
/// which one the file means cannot be told.
fn sniff(bytes: &[u8]) -> Result<u8, SealError> {
    let mut best = (b',', 1usize);
    let mut tie = None;
    for d in DELIMITERS {
        let mut records = reader(bytes, d).into_records();
        let Some(Ok(header)) = records.next() else { continue };
        let width = header.len();
        let consistent = records
            .take(SNIFF_RECORDS)
            .filter_map(Result::ok)
            .filter(|r| !(r.len() == 1 && r.get(0) == Some("")))
            .all(|r| r.len() == width);
        if consistent && width > best.1 {
            best = (d, width);
            tie = None;
        } else if consistent && width == best.1 && width > 1 {
            tie = Some(d);
        }
    }
    if let Some(other) = tie {
        return Err(SealError::Csv(format!(
            "the file reads as {} columns separated by {} and as many separated by {}: quote the fields that hold \
             the other character, so that the delimiter is clear",
            best.1,
            delimiter_name(best.0),
            delimiter_name(other)
        )));
    }
    Ok(best.0)
}

/// Text in UTF-16 (Excel's "Unicode Text" export) as UTF-8, by the byte order `unit`
/// reads.
fn from_utf16(bytes: &[u8], unit: fn([u8; 2]) -> u16) -> Result<String, SealError> {
    if bytes.len() % 2 != 0 {
        return Err(SealError::Csv(
            "the file starts with a UTF-16 byte order mark but has an odd number of bytes".into(),
        ));
    }
    let units = bytes.chunks_exact(2).map(|c| unit([c[0], c[1]]));
    char::decode_utf16(units).collect::<Result<String, _>>().map_err(|e| {
        SealError::Csv(format!(
            "the file starts with a UTF-16 byte order mark but is not valid UTF-16 ({e}): save it as \"CSV UTF-8\""
        ))
    })
}

/// Excel's `sep=X` first line, which names the delimiter: the delimiter and the bytes
/// after that line. `None` where the first line is no `sep=` line.
///
/// Errors: a `sep=` line that names no single delimiter character.
fn sep_line(bytes: &[u8]) -> Result<Option<(u8, &[u8])>, SealError> {
    let end = bytes.iter().position(|&b| b == b'\n').unwrap_or(bytes.len());
    let line = bytes[..end].strip_suffix(b"\r").unwrap_or(&bytes[..end]);
    if line.len() < 4 || !line[..4].eq_ignore_ascii_case(b"sep=") {
        return Ok(None);
    }
    match line[4..] {
        [d] if d == b'\t' || (d.is_ascii_graphic() && d != b'"') => Ok(Some((d, bytes.get(end + 1..).unwrap_or(&[])))),
        _ => Err(SealError::Csv(format!(
            "line 1: the `sep=` line (Excel's delimiter line) must name one delimiter character, not `{}`",
            String::from_utf8_lossy(&line[4..]).chars().take(20).collect::<String>()
        ))),
    }
}

/// How to read a CSV file beyond what the file itself says.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CsvOptions {
    /// Drop a first column whose header is empty: the row names R's `write.csv` writes
    /// (pandas reads them as a column `Unnamed: 0`). They number rows; they are not a
    /// feature, so without this option such a file is refused, saying so.
    pub drop_row_names: bool,
}

/// Binary formats that spreadsheet tools export and that are not CSV: their magic bytes
/// and what to do instead.
const NOT_CSV: [(&[u8], &str); 3] = [
    (b"PAR1", "a Parquet file, not CSV: export it as CSV (pandas: `pd.read_parquet(f).to_csv(out, index=False)`)"),
    (
        b"PK\x03\x04",
        "a ZIP archive, not CSV (an Excel .xlsx or OpenDocument .ods workbook is one): save the sheet as \"CSV UTF-8\"",
    ),
    (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", "a legacy Excel .xls workbook, not CSV: save the sheet as \"CSV UTF-8\""),
];

/// Reads CSV bytes into a [`CsvTable`]. See [`read_table_with`].
pub fn read_table(bytes: &[u8]) -> Result<CsvTable, SealError> {
    read_table_with(bytes, CsvOptions::default())
}

/// Reads CSV bytes into a [`CsvTable`]: UTF-8 (with or without a byte order mark), or
/// UTF-16 where a byte order mark says so (Excel's "Unicode Text"); the delimiter is the
/// one an Excel `sep=X` first line names, else the one that reads the most columns.
///
/// Errors: [`SealError::Csv`] for a Parquet file or an Excel workbook (saying what to
/// export instead), text that is not UTF-8 (naming the line), a missing header, duplicate
/// or empty column names (an empty first one explained as R's row names, unless
/// `options` drops them), and records of another width (naming the line and both counts).
pub fn read_table_with(bytes: &[u8], options: CsvOptions) -> Result<CsvTable, SealError> {
    if let Some((_, what)) = NOT_CSV.iter().find(|(magic, _)| bytes.starts_with(magic)) {
        return Err(SealError::Csv(format!("the file is {what}")));
    }
    let decoded;
    let bytes = if let Some(rest) = bytes.strip_prefix(b"\xff\xfe") {
        decoded = from_utf16(rest, u16::from_le_bytes)?;
        decoded.as_bytes()
    } else if let Some(rest) = bytes.strip_prefix(b"\xfe\xff") {
        decoded = from_utf16(rest, u16::from_be_bytes)?;
        decoded.as_bytes()
    } else {
        bytes.strip_prefix(b"\xef\xbb\xbf").unwrap_or(bytes)
    };
    if let Err(e) = std::str::from_utf8(bytes) {
        let line = bytes[..e.valid_up_to()].iter().filter(|&&b| b == b'\n').count() + 1;
        return Err(SealError::Csv(format!(
            "line {line}: the file is not UTF-8 text (byte {} is not): save it as \"CSV UTF-8\"",
            e.valid_up_to()
        )));
    }
    let (delimiter, bytes, skipped) = match sep_line(bytes)? {
        Some((d, rest)) => (d, rest, 1),
        None => (sniff(bytes)?, bytes, 0),
    };
    let mut records = reader(bytes, delimiter).into_records();
    let headers: Vec<String> = match records.next() {
        Some(Ok(h)) if !(h.len() == 1 && h.get(0) == Some("")) => h.iter().map(str::to_owned).collect(),
        Some(Err(e)) => return Err(SealError::Csv(format!("cannot read the header row: {e}"))),
        _ => return Err(SealError::Csv("the file has no header row".into())),
    };
    let row_names = headers.len() > 1 && headers.first().is_some_and(String::is_empty);
    let (headers, skip) =
        match (row_names, options.drop_row_names) {
            (true, true) => (headers[1..].to_vec(), 1),
            (true, false) => return Err(SealError::Csv(
                "column 1 has no name in the header row: R's write.csv writes its row names there (pandas reads them \
                 as a column `Unnamed: 0`); they number the rows and are no feature: drop them with \
                 --drop-row-names, or write the file with row.names = FALSE"
                    .into(),
            )),
            _ => (headers, 0),
        };
    if let Some(i) = headers.iter().position(String::is_empty) {
        return Err(SealError::Csv(format!("column {} has no name in the header row", i + 1 + skip)));
    }
    let mut seen = std::collections::HashSet::with_capacity(headers.len());
    if let Some(h) = headers.iter().find(|h| !seen.insert(h.as_str())) {
        return Err(SealError::Csv(format!("two columns are named `{h}`: name each column once")));
    }
    let mut out = Vec::new();
    for rec in records {
        let rec = rec.map_err(|e| SealError::Csv(format!("{e}")))?;
        let line = rec.position().map_or(0, csv::Position::line).saturating_add(skipped);
        if rec.len() == 1 && rec.get(0) == Some("") {
            continue; // blank line
        }
        if rec.len() != headers.len() + skip {
            return Err(SealError::Csv(format!(
                "line {line}: expected {} fields separated by {}, found {}",
                headers.len() + skip,
                delimiter_name(delimiter),
                rec.len()
            )));
        }
        out.push((line, rec.iter().skip(skip).map(str::to_owned).collect()));
    }
    Ok(CsvTable { delimiter, headers, records: out })
}

impl CsvTable {
    /// A feature value: a finite number, written with `.` as the decimal mark, or with
    /// `,` in a file whose delimiter is not `,`.
    ///
    /// Errors: [`SealError::Csv`] naming the line, the column and the text.
    pub fn number(&self, line: u64, column: usize, field: &str) -> Result<f32, SealError> {
        let parse = |s: &str| s.parse::<f32>().ok().filter(|v| v.is_finite());
        let comma = || (self.delimiter != b',' && !field.contains('.')).then(|| field.replacen(',', ".", 1));
        parse(field).or_else(|| comma().as_deref().and_then(parse)).ok_or_else(|| {
            SealError::Csv(format!(
                "line {line}, column {} (`{}`): {:?} is not a finite number",
                column + 1,
                self.headers.get(column).map_or("", String::as_str),
                field.chars().take(40).collect::<String>()
            ))
        })
    }

    /// Every field as a number, row by row (rows to send to a served model).
    pub fn numbers(&self) -> Result<Vec<Vec<f32>>, SealError> {
        self.records
            .iter()
            .map(|(line, rec)| rec.iter().enumerate().map(|(i, f)| self.number(*line, i, f)).collect())
            .collect()
    }
}

/// Imports CSV bytes with `label_column` as the label. See [`import_csv_as`].
pub fn import_csv(bytes: &[u8], label_column: &str) -> Result<Dataset, SealError> {
    import_csv_as(bytes, Some(label_column))
}

/// Imports CSV bytes with the default [`CsvOptions`]. See [`import_csv_with`].
pub fn import_csv_as(bytes: &[u8], label_column: Option<&str>) -> Result<Dataset, SealError> {
    import_csv_with(bytes, label_column, CsvOptions::default())
}

/// Imports CSV bytes ([`read_table`]). The label column is `label_column`, or where none
/// is named the column named [`DEFAULT_LABEL`] (in any case), else the last column. Every other column
/// is a feature and must hold finite numbers; labels may be integers (sorted
/// numerically) or strings (sorted as text), and become class indices in that order.
///
/// Errors: [`SealError::Csv`] naming the line and the column; a file with one column
/// says so, with the delimiters Perun reads.
pub fn import_csv_with(bytes: &[u8], label_column: Option<&str>, options: CsvOptions) -> Result<Dataset, SealError> {
    let table = read_table_with(bytes, options)?;
    let headers = &table.headers;
    let label_idx = match label_column {
        Some(name) => headers.iter().position(|h| h == name).ok_or_else(|| {
            SealError::Csv(format!("no column named `{name}`; the columns are: {}", headers.join(", ")))
        })?,
        None => headers
            .iter()
            .position(|h| h.eq_ignore_ascii_case(DEFAULT_LABEL))
            .unwrap_or(headers.len().saturating_sub(1)),
    };
    let label_name = &headers[label_idx];
    if headers.len() == 1 {
        return Err(SealError::Csv(format!(
            "the header has a single column `{label_name}`, so there are no feature columns besides the label: Perun \
             reads columns separated by `,`, `;`, tab or `|`"
        )));
    }
    let feature_names: Vec<String> =
        headers.iter().enumerate().filter(|(i, _)| *i != label_idx).map(|(_, h)| h.clone()).collect();

    let mut features = Vec::with_capacity(table.records.len().saturating_mul(feature_names.len()));
    let mut raw_labels = Vec::with_capacity(table.records.len());
    for (line, rec) in &table.records {
        for (i, field) in rec.iter().enumerate() {
            if i == label_idx {
                if field.is_empty() {
                    return Err(SealError::Csv(format!("line {line}: the label column `{label_name}` is empty")));
                }
                raw_labels.push(field.clone());
            } else {
                features.push(table.number(*line, i, field)?);
            }
        }
    }
    if raw_labels.is_empty() {
        return Err(SealError::Csv("the file has a header but no data rows".into()));
    }
    let (class_names, labels) = index_labels(&raw_labels);
    if class_names.len() > super::MAX_CLASSES {
        return Err(SealError::Csv(format!(
            "the label column `{label_name}` holds {} distinct values, more than the {} classes Perun takes: is it \
             the label column? (name it with --label)",
            class_names.len(),
            super::MAX_CLASSES
        )));
    }
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
    #[test]
    fn workbooks_and_parquet_are_named_and_r_row_names_explained_or_dropped() {
        for (bytes, what) in [
            (&b"PAR1\x15\x04"[..], "Parquet"),
            (&b"PK\x03\x04\x14\x00\x06\x00"[..], ".xlsx"),
            (&b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1\x00"[..], ".xls"),
        ] {
            let e = super::read_table(bytes).unwrap_err().to_string();
            assert!(e.contains(what) && e.contains("CSV"), "{e}");
        }
        // R's write.csv: an empty first header over the row names.
        let r = b"\"\",\"a\",\"b\",\"label\"\n\"1\",5.1,3.5,\"x\"\n\"2\",4.9,3,\"y\"\n";
        let e = super::read_table(r).unwrap_err().to_string();
        assert!(e.contains("row names") && e.contains("--drop-row-names"), "{e}");
        let dropped = super::read_table_with(r, super::CsvOptions { drop_row_names: true }).unwrap();
        let control = super::read_table(b"a,b,label\n5.1,3.5,x\n4.9,3,y\n").unwrap();
        assert_eq!((&dropped.headers, dropped.numbers().is_err()), (&control.headers, true));
        assert_eq!(
            dropped.records.iter().map(|(_, r)| r.clone()).collect::<Vec<_>>(),
            control.records.iter().map(|(_, r)| r.clone()).collect::<Vec<_>>()
        );
        let ds = super::import_csv_with(r, Some("label"), super::CsvOptions { drop_row_names: true }).unwrap();
        assert_eq!((ds.len(), ds.sample_len()), (2, 2));
        // An empty name elsewhere is still just that.
        let e = super::read_table(b"a,,label\n1,2,x\n").unwrap_err().to_string();
        assert!(e.contains("column 2 has no name") && !e.contains("row names"), "{e}");
    }

    #[test]
    fn excel_sep_lines_and_unicode_text_read_as_the_same_table() {
        let control = read_table(b"a,b,label\n5.1,3.5,x\n4.9,3,y\n").unwrap();
        let sep = read_table(b"sep=;\r\na;b;label\r\n5,1;3,5;x\r\n4,9;3;y\r\n").unwrap();
        let text = "a\tb\tlabel\r\n5.1\t3.5\tx\r\n4.9\t3\ty\r\n";
        let utf16: Vec<u8> = [0xff, 0xfe].into_iter().chain(text.encode_utf16().flat_map(u16::to_le_bytes)).collect();
        let unicode = read_table(&utf16).unwrap();
        for t in [&sep, &unicode] {
            assert_eq!(t.headers, control.headers);
            for ((l, r), (_, c)) in t.records.iter().zip(&control.records) {
                for (k, (x, y)) in r.iter().zip(c).enumerate() {
                    if k < 2 {
                        assert_eq!(t.number(*l, k, x).unwrap(), control.number(1, k, y).unwrap());
                    }
                }
            }
        }
        let crlf = read_table(b"a;b;label\r\n5,1;3,5;x\r\n4,9;3;y\r\n").unwrap();
        assert_eq!(sep.records[0].0, crlf.records[0].0 + 1, "line numbers count the sep= line");
        let e = read_table(b"sep=;;\na;b\n").unwrap_err();
        assert!(e.to_string().contains("sep="), "{e}");
        assert!(read_table(&[0xff, 0xfe, 0x41]).unwrap_err().to_string().contains("UTF-16"));
    }

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
    fn spreadsheet_exports_read_as_written() {
        // Excel "CSV UTF-8": BOM, CRLF, quoted header names with commas inside.
        let d = import_csv_as(b"\xef\xbb\xbflabel,\"height, cm\",weight\r\n0,150,55\r\n1,180,80\r\n", None).unwrap();
        assert_eq!(d.feature_names, ["height, cm", "weight"]);
        assert_eq!(d.class_names, ["0", "1"]);
        assert_eq!(d.features, [150., 55., 180., 80.]);
        // A European locale: `;` between fields, `,` as the decimal mark.
        let d = import_csv_as(b"height;weight;label\n1,5;55;a\n1,8;80;b\n", None).unwrap();
        assert_eq!(d.feature_names, ["height", "weight"]);
        assert_eq!(d.features, [1.5, 55., 1.8, 80.]);
        // Tabs; the last column is the label where none is named `label`.
        let d = import_csv_as(b"x\ty\tclass\n1\t2\tp\n", None).unwrap();
        assert_eq!((d.feature_names.len(), &d.class_names[..]), (2, &["p".to_owned()][..]));
        // `Label` is the label column too; a header that reads the same under two
        // delimiters is refused, not guessed.
        let d = import_csv_as(b"x,Label,y\n1,a,2\n", None).unwrap();
        assert_eq!(d.feature_names, ["x", "y"]);
        let e = import_csv_as(b"Preis, EUR;label\n1,5;billig\n2,25;teuer\n", None).unwrap_err().to_string();
        assert!(e.contains("2 columns separated by `,` and as many separated by `;`"), "{e}");
        // A decimal comma is no number in a `,`-separated file.
        assert!(import_csv_as(b"a,label\n\"1,5\",0\n", None).unwrap_err().to_string().contains("not a finite number"));
    }

    #[test]
    fn one_column_files_and_bad_text_say_why() {
        let e = import_csv_as(b"label\n0\n1\n", None).unwrap_err().to_string();
        assert!(e.contains("single column `label`") && e.contains("`;`"), "{e}");
        let e = import_csv_as(b"a,label\n1,0\n\xe9,1\n", None).unwrap_err().to_string();
        assert!(e.contains("line 3") && e.contains("not UTF-8"), "{e}");
        let e = import_csv_as(b"a,a,label\n1,2,0\n", None).unwrap_err().to_string();
        assert!(e.contains("two columns are named `a`"), "{e}");
    }

    #[test]
    fn errors_name_line_and_column() {
        let e = import_csv(b"a,b,y\n1,2,p\n3,p\n", "y").unwrap_err().to_string();
        assert!(e.contains("line 3") && e.contains("expected 3 fields separated by `,`, found 2"), "{e}");
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
