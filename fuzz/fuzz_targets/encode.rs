//! `crak-dump encode` on arbitrary JSON text. See `crak_fuzz::checks::check_encode`.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| crak_fuzz::checks::check_encode(data));
