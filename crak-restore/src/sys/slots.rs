//! A small table of `i32` slots in anonymous shared memory (`mmap(2)` with `MAP_SHARED |
//! MAP_ANONYMOUS`): processes forked after it is made share it with their creator, so each can
//! publish a number (its new pid) that the others and the creator read.

use std::io;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicI32, Ordering};

/// Slots shared with every process forked after [`Slots::new`]; all start at 0.
pub struct Slots {
    base: NonNull<AtomicI32>,
    len: usize,
    bytes: usize,
}

impl Slots {
    /// Maps `len` zeroed slots.
    pub fn new(len: usize) -> io::Result<Slots> {
        let bytes = len
            .max(1)
            .checked_mul(std::mem::size_of::<AtomicI32>())
            .ok_or_else(|| io::Error::from(io::ErrorKind::InvalidInput))?;
        // SAFETY: a fresh anonymous mapping at an address the kernel picks; nothing else
        // refers to it. Its pages are zero-filled, a valid AtomicI32 each, and page-aligned.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                bytes,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let base = NonNull::new(p.cast::<AtomicI32>())
            .ok_or_else(|| io::Error::from(io::ErrorKind::AddrNotAvailable))?;
        Ok(Slots { base, len, bytes })
    }

    fn slot(&self, i: usize) -> Option<&AtomicI32> {
        // SAFETY: `i < len` keeps the pointer inside the mapping, which lives as long as
        // `self`; AtomicI32 is valid for any bit pattern and is only accessed atomically.
        (i < self.len).then(|| unsafe { &*self.base.as_ptr().add(i) })
    }

    /// Stores `v` in slot `i` (ignored past the end).
    pub fn set(&self, i: usize, v: i32) {
        if let Some(s) = self.slot(i) {
            s.store(v, Ordering::Release);
        }
    }

    /// The value of slot `i` (0 past the end).
    pub fn get(&self, i: usize) -> i32 {
        self.slot(i).map_or(0, |s| s.load(Ordering::Acquire))
    }
}

impl Drop for Slots {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `new`, of that size; no reference outlives `self`.
        unsafe {
            libc::munmap(self.base.as_ptr().cast(), self.bytes);
        }
    }
}

// SAFETY: the slots are atomics in memory owned by the value; sharing them between threads is
// what atomics are for.
unsafe impl Send for Slots {}
// SAFETY: as above.
unsafe impl Sync for Slots {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_start_at_zero_and_hold_values() {
        let s = Slots::new(3).unwrap();
        assert_eq!((s.get(0), s.get(2), s.get(3)), (0, 0, 0));
        s.set(1, 42);
        s.set(7, 9);
        assert_eq!((s.get(1), s.get(7)), (42, 0));
    }
}
