//! The fuzz targets' tests, one test binary: every target over its seed corpus and its
//! deterministic mutations (`corpus`), and the corpus's writer (`seeds`).

mod corpus;
mod seeds;
