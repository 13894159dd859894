//! The crak live engine: capture running processes into crak images and restore them.
//!
//! All `unsafe` code lives in [`sys`]; everything else is safe Rust over its typed wrappers,
//! which the compiler enforces.

#![deny(unsafe_code)]

pub mod capture;
pub mod fault;
pub mod kernel;
pub mod netlock;
pub mod procfs;
pub mod restart;
pub mod restore;
#[allow(unsafe_code)]
pub mod sys;
