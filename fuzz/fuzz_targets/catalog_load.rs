//! Fuzz target: the catalog loader never panics, whatever the YAML.
#![no_main]
use bordergate::catalog::Catalog;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let _ = Catalog::parse(std::path::Path::new("fuzz.yaml"), &text);
});
