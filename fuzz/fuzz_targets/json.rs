//! The JSON reader and the checked writer on arbitrary text: neither may panic, and an image
//! the writer accepts must parse back equal to itself.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(image) = crak_format::from_json(text) else {
        return;
    };
    let _ = crak_format::to_json(&image, false);
    let Ok(bytes) = crak_format::to_vec(&image) else {
        return;
    };
    let parsed = crak_format::parse(&bytes).expect("what the writer writes parses");
    assert_eq!(parsed.image, image);
});
