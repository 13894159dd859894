//! Every read-only crak-dump view on arbitrary image bytes. See `crak_fuzz::checks::check_dump_views`.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| crak_fuzz::checks::check_dump_views(data));
