//! Arbitrary bytes as a MANIFEST: replay must not panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = weir_storage::fuzzing::replay_manifest(data);
});
