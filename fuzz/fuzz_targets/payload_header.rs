//! The payload header parser: never panics; what it accepts writes back to the same bytes.
#![no_main]

use eventsmith_mapper::PayloadHeader;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok((header, body)) = PayloadHeader::parse(data) {
        let mut out = Vec::new();
        header.write(&mut out).expect("a parsed header writes back");
        assert_eq!(&out[..], &data[..data.len() - body.len()], "round trip");
    }
});
