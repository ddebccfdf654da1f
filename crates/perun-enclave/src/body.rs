//! Reading a prediction request's body within bounds.
//!
//! The body is at most [`Limits::body_limit`] bytes (sized to [`Limits::max_rows`] rows of the
//! model's width), and its rows are counted while they are parsed, straight into one
//! flat buffer: the first row past the limit, or the first row of the wrong length, ends
//! the parse; nothing past it is read.

use std::cell::RefCell;
use std::fmt;

use perun_seal::release::SealedSecret;
use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use zeroize::Zeroizing;

use crate::api::MAX_ROWS;

/// Most bytes one request body may have, whatever the model.
pub const MAX_BODY: usize = 16 << 20;

/// Bytes allowed per value in the clear: `-1.17549435e-38,` and whitespace.
const VALUE_BYTES: usize = 32;
/// Bytes allowed per row besides its values: brackets, comma, whitespace.
const ROW_BYTES: usize = 8;
/// Bytes allowed for the envelope: keys, braces, the HPKE encapsulated key and tag.
const ENVELOPE_BYTES: usize = 1024;

/// What a request may hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Values per row (the model's input length).
    pub input_len: usize,
    /// Most rows in one request.
    pub max_rows: usize,
}

impl Limits {
    /// The limits for a model taking rows of `input_len` values: [`MAX_ROWS`] rows, or
    /// fewer if that many would not fit in [`MAX_BODY`].
    pub fn for_model(input_len: usize) -> Self {
        let fit = (MAX_BODY / 2).saturating_sub(ENVELOPE_BYTES) / row_bytes(input_len);
        Self { input_len, max_rows: MAX_ROWS.min(fit).max(1) }
    }

    /// The largest body a request within these limits needs: `max_rows` rows in the
    /// clear, or sealed (hex doubles them).
    pub fn body_limit(&self) -> usize {
        let plain = self.max_rows.saturating_mul(row_bytes(self.input_len)).saturating_add(ENVELOPE_BYTES);
        plain.saturating_mul(2).saturating_add(ENVELOPE_BYTES)
    }
}

fn row_bytes(input_len: usize) -> usize {
    input_len.saturating_mul(VALUE_BYTES).saturating_add(ROW_BYTES)
}

/// Rows read from a request: `count` rows of `input_len` values, flat.
pub struct Rows {
    /// The values, row after row (wiped when dropped).
    pub flat: Zeroizing<Vec<f32>>,
    /// The number of rows.
    pub count: usize,
}

impl fmt::Debug for Rows {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Rows({})", self.count)
    }
}

/// A `POST /v1/predict` body.
#[derive(Debug)]
pub enum Body {
    /// A request sealed to the attested key: its plaintext is read with [`parse_rows`].
    Sealed(SealedSecret),
    /// Rows in the clear.
    Rows(Rows),
}

/// Why a body was refused.
#[derive(Clone, Debug, thiserror::Error, PartialEq, Eq)]
pub enum BodyError {
    /// More rows than a request may hold.
    #[error("at most {max} rows per request: send the rest in further requests")]
    TooManyRows {
        /// The limit.
        max: usize,
    },
    /// A row with another number of values than the model takes.
    #[error("row {row} has {got} values; the model takes {want}")]
    RowLength {
        /// The row (from 0).
        row: usize,
        /// Its values.
        got: usize,
        /// The model's input length.
        want: usize,
    },
    /// A row with too many values.
    #[error("row {row} has more than {want} values; the model takes {want}")]
    RowTooLong {
        /// The row (from 0).
        row: usize,
        /// The model's input length.
        want: usize,
    },
    /// A value that is not a finite number.
    #[error("row {row} has a value that is not a finite 32-bit number")]
    NotFinite {
        /// The row (from 0).
        row: usize,
    },
    /// Rows in the clear, where only sealed requests are served.
    #[error("rows in the clear are refused here: seal them to the attested key (`perun predict --remote`), or start the enclave with --allow-plain")]
    PlainRefused,
    /// Not the expected JSON.
    #[error("{0}")]
    Malformed(String),
}

impl BodyError {
    /// The HTTP status it is answered with.
    pub fn status(&self) -> u16 {
        match self {
            Self::TooManyRows { .. } => 413,
            Self::PlainRefused => 403,
            _ => 400,
        }
    }
}

/// What the outer body may be.
const ENVELOPE: &str = "expected {\"sealed\": ...} (rows sealed to the attested key) or {\"rows\": [[...]]}";

/// Reads a `POST /v1/predict` body: `{"sealed": ...}` or, if `allow_plain`,
/// `{"rows": [[...], ...]}` (refused as soon as its key is read otherwise).
pub fn parse_body(json: &[u8], limits: Limits, allow_plain: bool) -> Result<Body, BodyError> {
    parse(json, limits, if allow_plain { Mode::Either } else { Mode::SealedOnly }, ENVELOPE)
}

/// Reads a [`crate::api::PredictRequest`] (`{"rows": [[...], ...]}`), as a sealed
/// request's plaintext is.
pub fn parse_rows(json: &[u8], limits: Limits) -> Result<Rows, BodyError> {
    match parse(json, limits, Mode::RowsOnly, "expected {\"rows\": [[...]]}")? {
        Body::Rows(r) => Ok(r),
        Body::Sealed(_) => Err(BodyError::Malformed("expected {\"rows\": [[...]]}".into())),
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Either,
    SealedOnly,
    RowsOnly,
}

/// The parse's shared state: the limits, and the typed reason it stopped (serde carries
/// only a message).
struct Ctx {
    limits: Limits,
    mode: Mode,
    /// Capacity to reserve for the values: growing the buffer would leave copies of rows
    /// behind that are never wiped.
    capacity: usize,
    failed: RefCell<Option<BodyError>>,
}

impl Ctx {
    fn fail<E: de::Error>(&self, e: BodyError) -> E {
        let message = e.to_string();
        self.failed.borrow_mut().get_or_insert(e);
        E::custom(message)
    }
}

fn parse(json: &[u8], limits: Limits, mode: Mode, expected: &str) -> Result<Body, BodyError> {
    // Every value takes at least two bytes (a digit and a separator).
    let capacity = (limits.max_rows.saturating_mul(limits.input_len)).min(json.len() / 2 + limits.input_len);
    let ctx = Ctx { limits, mode, capacity, failed: RefCell::new(None) };
    let mut de = serde_json::Deserializer::from_slice(json);
    let r = Envelope(&ctx).deserialize(&mut de).and_then(|b| de.end().map(|_| b));
    r.map_err(|e| ctx.failed.take().unwrap_or_else(|| BodyError::Malformed(format!("request body: {expected} ({e})"))))
}

struct Envelope<'a>(&'a Ctx);

impl<'de> DeserializeSeed<'de> for Envelope<'_> {
    type Value = Body;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Body, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for Envelope<'_> {
    type Value = Body;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Body, A::Error> {
        let ctx = self.0;
        let mut body = None;
        while let Some(key) = map.next_key::<String>()? {
            if body.is_some() {
                return Err(de::Error::custom(format!("unexpected field `{key}` after the request")));
            }
            body = Some(match key.as_str() {
                "sealed" if ctx.mode != Mode::RowsOnly => Body::Sealed(map.next_value()?),
                "rows" if ctx.mode == Mode::SealedOnly => return Err(ctx.fail(BodyError::PlainRefused)),
                "rows" => Body::Rows(map.next_value_seed(RowsSeed(ctx))?),
                other => return Err(de::Error::custom(format!("unknown field `{other}`"))),
            });
        }
        body.ok_or_else(|| de::Error::custom("an empty object"))
    }
}

struct RowsSeed<'a>(&'a Ctx);

impl<'de> DeserializeSeed<'de> for RowsSeed<'_> {
    type Value = Rows;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Rows, D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for RowsSeed<'_> {
    type Value = Rows;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an array of rows")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Rows, A::Error> {
        let ctx = self.0;
        let mut flat = Zeroizing::new(Vec::with_capacity(ctx.capacity));
        let mut count = 0;
        loop {
            if count == ctx.limits.max_rows {
                // One more row is refused before a byte of it is parsed.
                return match seq.next_element_seed(Refuse(ctx))? {
                    Some(()) => Err(ctx.fail(BodyError::TooManyRows { max: ctx.limits.max_rows })),
                    None => Ok(Rows { flat, count }),
                };
            }
            match seq.next_element_seed(RowSeed { ctx, row: count, out: &mut flat })? {
                Some(()) => count += 1,
                None => return Ok(Rows { flat, count }),
            }
        }
    }
}

/// A seed that refuses any value it is asked to read: the row past the limit.
struct Refuse<'a>(&'a Ctx);

impl<'de> DeserializeSeed<'de> for Refuse<'_> {
    type Value = ();

    fn deserialize<D: de::Deserializer<'de>>(self, _: D) -> Result<(), D::Error> {
        Err(self.0.fail(BodyError::TooManyRows { max: self.0.limits.max_rows }))
    }
}

struct RowSeed<'a, 'b> {
    ctx: &'a Ctx,
    row: usize,
    out: &'b mut Vec<f32>,
}

impl<'de> DeserializeSeed<'de> for RowSeed<'_, '_> {
    type Value = ();

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for RowSeed<'_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "a row of {} numbers", self.ctx.limits.input_len)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let (ctx, row, want) = (self.ctx, self.row, self.ctx.limits.input_len);
        let mut got = 0;
        loop {
            if got == want {
                return match seq.next_element_seed(TooLong { ctx, row })? {
                    Some(()) => Err(ctx.fail(BodyError::RowTooLong { row, want })),
                    None => Ok(()),
                };
            }
            match seq.next_element::<f32>()? {
                Some(v) if !v.is_finite() => return Err(ctx.fail(BodyError::NotFinite { row })),
                Some(v) => {
                    self.out.push(v);
                    got += 1;
                }
                None => return Err(ctx.fail(BodyError::RowLength { row, got, want })),
            }
        }
    }
}

/// A seed that refuses the value past a row's end.
struct TooLong<'a> {
    ctx: &'a Ctx,
    row: usize,
}

impl<'de> DeserializeSeed<'de> for TooLong<'_> {
    type Value = ();

    fn deserialize<D: de::Deserializer<'de>>(self, _: D) -> Result<(), D::Error> {
        Err(self.ctx.fail(BodyError::RowTooLong { row: self.row, want: self.ctx.limits.input_len }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const L: Limits = Limits { input_len: 2, max_rows: 3 };

    fn rows(json: &str) -> Result<(Vec<f32>, usize), BodyError> {
        parse_rows(json.as_bytes(), L).map(|r| (r.flat.to_vec(), r.count))
    }

    #[test]
    fn rows_are_read_flat_and_counted() {
        assert_eq!(rows(r#"{"rows": [[1, 2], [3.5, -4e-3]]}"#), Ok((vec![1.0, 2.0, 3.5, -0.004], 2)));
        assert_eq!(rows(r#"{"rows": []}"#), Ok((vec![], 0)));
        assert_eq!(rows(r#"{"rows": [[1,2],[1,2],[1,2]]}"#).map(|r| r.1), Ok(3));
    }

    #[test]
    fn the_row_past_the_limit_is_refused_unread() {
        // The fourth row is not even valid JSON: it is never parsed.
        let e = rows(r#"{"rows": [[1,2],[1,2],[1,2],[nonsense"#).unwrap_err();
        assert_eq!(e, BodyError::TooManyRows { max: 3 });
        assert_eq!(e.status(), 413);
        assert!(e.to_string().contains("at most 3 rows per request"), "{e}");
        // Nor is the value past a row's end.
        assert_eq!(rows(r#"{"rows": [[1,2,nonsense"#), Err(BodyError::RowTooLong { row: 0, want: 2 }));
        assert_eq!(rows(r#"{"rows": [[1,2],[1]]}"#), Err(BodyError::RowLength { row: 1, got: 1, want: 2 }));
        // Past f32's range: refused, by the parser (serde_json's exact float parsing,
        // `float_roundtrip`) or by the finite check.
        let big = rows(r#"{"rows": [[1,1e39]]}"#);
        assert!(matches!(big, Err(BodyError::NotFinite { row: 0 }) | Err(BodyError::Malformed(_))), "{big:?}");
    }

    #[test]
    fn the_envelope_is_sealed_or_rows_and_nothing_else() {
        let sealed = r#"{"sealed": {"enc": "00", "ciphertext": "11"}}"#;
        assert!(matches!(parse_body(sealed.as_bytes(), L, false), Ok(Body::Sealed(_))));
        let plain = br#"{"rows": [[1,2]]}"#;
        assert!(matches!(parse_body(plain, L, true), Ok(Body::Rows(Rows { count: 1, .. }))));
        // Refused as soon as the key is read, however many rows follow.
        assert_eq!(parse_body(br#"{"rows": [[nonsense"#, L, false).unwrap_err(), BodyError::PlainRefused);
        for bad in [r#"{"rows": "x"}"#, r#"{"more": 1}"#, r#"{}"#, r#"[]"#, r#"{"rows": [[1,2]], "x": 1}"#, "{"] {
            let e = parse_body(bad.as_bytes(), L, true).unwrap_err();
            assert_eq!(e.status(), 400, "{bad}: {e}");
        }
        let e = parse_body(br#"{"more": 1}"#, L, true).unwrap_err();
        assert!(e.to_string().contains("expected {\"sealed\""), "{e}");
        // A sealed request's plaintext holds rows only.
        assert!(parse_rows(sealed.as_bytes(), L).is_err());
        assert!(parse_rows(br#"{"rows": [[1,2]]} trailing"#, L).is_err());
    }

    #[test]
    fn the_body_limit_fits_the_rows_and_no_more() {
        let l = Limits::for_model(30);
        assert_eq!(l.max_rows, MAX_ROWS);
        // A full request of long values, sealed (hex), fits.
        let row = format!("[{}]", vec!["-1.17549435e-38"; 30].join(", "));
        let json = format!("{{\"rows\": [{}]}}", vec![row; l.max_rows].join(", "));
        assert!(2 * json.len() + 200 < l.body_limit(), "{} vs {}", json.len(), l.body_limit());
        assert!(l.body_limit() < 4 << 20);
        // A very wide model gets fewer rows, within MAX_BODY.
        let wide = Limits::for_model(100_000);
        assert!(wide.max_rows < MAX_ROWS && wide.body_limit() <= MAX_BODY + 4096, "{wide:?}");
        assert_eq!(Limits::for_model(usize::MAX / 2).max_rows, 1);
    }
}
