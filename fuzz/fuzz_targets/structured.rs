//! A generated image, written, mutated and read back. See `crak_fuzz::checks::check_structured`.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| crak_fuzz::checks::check_structured(data));
