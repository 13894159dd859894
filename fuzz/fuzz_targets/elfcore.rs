//! crak-dump on ELF core files. See `crak_fuzz::checks::check_elfcore`.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| crak_fuzz::checks::check_elfcore(data));
