//! Arbitrary bytes as an SSTable file: open, iterate, look up — no panics.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = weir_storage::fuzzing::read_sstable(data);
});
