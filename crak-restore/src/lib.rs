//! The crak live engine: capture running processes into crak images and restore them.

pub mod sys;
