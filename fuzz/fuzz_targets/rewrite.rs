//! crak-format rewrite for arbitrary kernel profiles. See `crak_fuzz::checks::check_rewrite`.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| crak_fuzz::checks::check_rewrite(data));
