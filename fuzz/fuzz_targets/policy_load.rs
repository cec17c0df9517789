//! Fuzz target: the policy loader never panics on a policy file it is given.
#![no_main]
use bordergate::policy::PolicySet;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(dir) = tempfile::tempdir() else { return };
    if std::fs::write(dir.path().join("fuzz.yaml"), data).is_err() {
        return;
    }
    let registry = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/quickstart/registry.yaml");
    let _ = PolicySet::load(dir.path(), std::path::Path::new(registry));
});
