//! The fuzz targets' assertions, shared with `tests/hardening.rs` (see [`checks`]).

pub mod checks;
