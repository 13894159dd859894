//! crak-format edit operations on arbitrary images. See `crak_fuzz::checks::check_edit`.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| crak_fuzz::checks::check_edit(data));
