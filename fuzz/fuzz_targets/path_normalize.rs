//! Fuzz target: path normalisation never panics and is idempotent.
#![no_main]
use bordergate::catalog::path::{check_decoded, normalize};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    let _ = check_decoded(s);
    if let Ok(n) = normalize(s) {
        let again = normalize(&n.encoded).expect("a normalised path normalises again");
        assert_eq!(again, n, "normalising a normalised path changed it");
    }
});
