//! Support code shared by the end-to-end tests in `tests/` and the benches in
//! `benches/`: a plain f64 reference of the decoder, written independently of the
//! runtime, and a seeded random generator for test weights with the tests' seed.
#![deny(missing_docs)]

pub mod fixtures;
pub mod reference;
pub mod rng;
