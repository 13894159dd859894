//! The only module with `unsafe`: thin, typed wrappers over Linux system calls.
