//! The slice parser on arbitrary bytes: it must never panic, and whatever it accepts the writer
//! must write and the parser read back unchanged. The parser that defers PAGES CRCs must agree
//! with it: it accepts the same image once the deferred CRCs are checked, and refuses it (at
//! parse or at a check) whenever the full parser does.

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
    let full = crak_format::parse(data);
    let deferred = crak_format::read::parse_deferring_page_crcs(data).and_then(|(p, unchecked)| {
        let mut buf = [0u8; 4096];
        for u in &unchecked {
            u.check_at(&mut buf, |at, b| {
                let at = usize::try_from(at).map_err(|_| std::io::ErrorKind::InvalidInput)?;
                let src = at
                    .checked_add(b.len())
                    .and_then(|end| data.get(at..end))
                    .ok_or(std::io::ErrorKind::UnexpectedEof)?;
                b.copy_from_slice(src);
                Ok(())
            })?;
        }
        Ok(p)
    });
    match (&full, &deferred) {
        (Ok(a), Ok(b)) => assert_eq!(a.image, b.image),
        (Err(_), Err(_)) => {}
        (a, b) => panic!(
            "the parsers disagree: full {:?}, deferred {:?}",
            a.as_ref().err(),
            b.as_ref().err()
        ),
    }
    let Ok(parsed) = full else {
        return;
    };
    let again = crak_format::to_vec(&parsed.image).expect("a parsed image writes");
    let reparsed = crak_format::parse(&again).expect("a rewritten image parses");
    assert_eq!(reparsed.image, parsed.image);
});
