//! Fuzz target: the audit record parser and the verifier never panic and always give a verdict.
#![no_main]
use bordergate::audit::{parse_line, verify::verify_reader};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for line in data.split(|b| *b == b'\n') {
        let _ = parse_line(line);
    }
    let _ = verify_reader(std::io::Cursor::new(data)).is_ok();
});
