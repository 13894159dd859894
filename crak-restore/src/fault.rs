//! Fault injection for the error paths that matter: `CRAK_FAULT=<point>[,<point>...]` makes
//! [`point`] fail at the named points, so tests can show that nothing is lost when a capture or a
//! restore fails there.
//!
//! Capture points: `after-freeze`, `mid-pages`, `before-rename`, `before-kill`.

/// The environment variable naming the points that fail.
pub const ENV: &str = "CRAK_FAULT";

/// An injected failure.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("injected fault at {0} ({ENV})")]
pub struct Injected(pub String);

/// Whether `CRAK_FAULT` names `name`.
pub fn armed(name: &str) -> bool {
    match std::env::var(ENV) {
        Ok(v) => v.split(',').any(|p| p.trim() == name),
        Err(_) => false,
    }
}

/// Fails with [`Injected`] when `CRAK_FAULT` names `name`; otherwise does nothing.
pub fn point(name: &str) -> Result<(), Injected> {
    if armed(name) {
        Err(Injected(name.to_string()))
    } else {
        Ok(())
    }
}
