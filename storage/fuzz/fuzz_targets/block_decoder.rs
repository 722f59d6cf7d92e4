//! Arbitrary bytes as one data block (cheaper than a whole file).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = weir_storage::fuzzing::decode_block(data);
});
