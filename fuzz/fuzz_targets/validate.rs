//! Parse, then validate: the validator must not panic on anything the parser accepts. See `crak_fuzz::checks::check_validate`.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| crak_fuzz::checks::check_validate(data));
