//! Integration tests: dump.
