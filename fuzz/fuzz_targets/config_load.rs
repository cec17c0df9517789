//! Fuzz target: the config loader never panics, whatever the YAML.
#![no_main]
use bordergate::config::{Config, parse_yaml};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let _ = parse_yaml::<Config>(std::path::Path::new("fuzz.yaml"), &text);
});
