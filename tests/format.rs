//! Integration tests: format.
