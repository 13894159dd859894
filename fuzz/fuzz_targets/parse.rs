//! The slice parser on arbitrary bytes: it must never panic, and whatever it accepts the writer
//! must write and the parser read back unchanged.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // The record-level iterator sees the same bytes without the parser's checks.
    if let Ok((_, records)) = crak_format::read::Records::new(data) {
        let mut page_size = None;
        for raw in records.flatten() {
            let _ = raw.verify_crc();
            if let Ok(crak_format::Record::Header(h)) = raw.decode(page_size) {
                page_size = Some(h.page_size);
            }
        }
    }
    let Ok(parsed) = crak_format::parse(data) else {
        return;
    };
    let again = crak_format::to_vec(&parsed.image).expect("a parsed image writes");
    let reparsed = crak_format::parse(&again).expect("a rewritten image parses");
    assert_eq!(reparsed.image, parsed.image);
});
