//! Which encoding the heap backend's entries should have inside a checkpoint's rkyv archive.
//!
//! Fills a heap backend with `N` keys (16-byte values, like the `state` benchmark's) over 64
//! key groups, freezes it and measures, on the coordinator's path:
//!
//! - today's payload: the frozen key groups encoded by the backend (`into_snapshots`, its own
//!   stored representation) and archived as one shard file (`EncodedShard`: one copy);
//! - the alternative, every entry an rkyv `(key, value)` pair: the archiving alone, from
//!   entries already taken out of the backend (a lower bound: the walk over the chunks, which
//!   the backend's encoding includes, is not counted);
//!
//! and on the restore path: validating each archive and walking every entry.
//!
//! `cargo run --release -p weir --example snapshot_payload -- [keys]`

use std::time::Instant;

use weir::checkpoint::{EncodedOperator, EncodedShard, Scope};
use weir::state::{HeapStateBackend, KeyGroupSnapshot, SnapshotValue, StateBackend, StateId};

/// One heap entry as an rkyv value: the alternative payload.
#[derive(rkyv::Archive, rkyv::Serialize)]
struct Pair {
    key: Vec<u8>,
    value: Vec<u8>,
}

fn ms(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1e3
}

fn main() {
    let keys: u64 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(2_000_000);
    let mut b = HeapStateBackend::default();
    let key = |i: u64| (i.wrapping_mul(0x9E37_79B9_7F4A_7C15)).to_be_bytes();
    for i in 0..keys {
        if b.put(StateId(0), (i % 64) as u32, &key(i), b"", &[1u8; 16])
            .is_err()
        {
            eprintln!("put failed");
            return;
        }
    }

    // Today: the backend's bytes per key group, archived as they are.
    let started = Instant::now();
    let mut op = EncodedOperator::default();
    for (kg, snap) in b.freeze(0..64).into_snapshots() {
        op.push_entry(Scope::KeyGroup(kg), |out| {
            out.extend_from_slice(snap.as_bytes())
        });
    }
    let encode = ms(started);
    let state = EncodedShard {
        shard: 0,
        operators: vec![op],
    };
    // Framing before rkyv (format version 1), emulated: the body copied into the file
    // writer, then into the framed file, then checksummed.
    let started = Instant::now();
    let mut writer = Vec::new();
    for op in &state.operators {
        writer.extend_from_slice(&op.body);
    }
    let mut framed = Vec::with_capacity(writer.len() + 24);
    framed.extend_from_slice(&writer);
    let v1_crc = crc32c::crc32c(&framed);
    let v1 = ms(started);
    drop((writer, framed));
    // Version 2, as the store frames a shard file: archived into a buffer sized up front.
    let started = Instant::now();
    let size = state
        .operators
        .iter()
        .map(|o| o.body.len() + o.entries.len() * 12)
        .sum::<usize>();
    let buf = rkyv::util::AlignedVec::<16>::with_capacity(size + 1024);
    let file = match rkyv::api::high::to_bytes_in::<_, rkyv::rancor::Error>(&state, buf) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("{e}");
            return;
        }
    };
    let crc = crc32c::crc32c(&file);
    let archive = ms(started);

    // The alternative: one rkyv pair per entry (entries taken out untimed).
    let mut groups: Vec<Vec<Pair>> = Vec::new();
    for (_, snap) in b.freeze(0..64).into_snapshots() {
        let mut pairs = Vec::new();
        for e in snap.entries().flatten() {
            if let SnapshotValue::Value(v) = e.value {
                pairs.push(Pair {
                    key: e.key.to_vec(),
                    value: v.to_vec(),
                });
            }
        }
        groups.push(pairs);
    }
    let started = Instant::now();
    let pairs_file = match rkyv::to_bytes::<rkyv::rancor::Error>(&groups) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("{e}");
            return;
        }
    };
    let pairs_crc = crc32c::crc32c(&pairs_file);
    let pairs_archive = ms(started);

    // Restore: validate, then walk every entry.
    let started = Instant::now();
    let mut walked = 0u64;
    if let Ok(shard) = rkyv::access::<rkyv::Archived<EncodedShard>, rkyv::rancor::Error>(&file) {
        for op in shard.operators.iter() {
            let mut at = 0usize;
            for e in op.entries.iter() {
                let len = e.len.to_native() as usize;
                let bytes = op.body.get(at..at + len).unwrap_or_default();
                at += len;
                if let Ok(snap) = KeyGroupSnapshot::from_bytes(bytes.to_vec()) {
                    walked += snap.entries().flatten().count() as u64;
                }
            }
        }
    }
    let restore = ms(started);
    let started = Instant::now();
    let mut pairs_walked = 0u64;
    if let Ok(groups) =
        rkyv::access::<rkyv::Archived<Vec<Vec<Pair>>>, rkyv::rancor::Error>(&pairs_file)
    {
        for g in groups.iter() {
            for p in g.iter() {
                pairs_walked += u64::from(!p.key.is_empty() && !p.value.is_empty());
            }
        }
    }
    let pairs_restore = ms(started);

    println!(
        "{keys} entries. backend bytes: encode {encode:.0} ms + archive and crc {archive:.0} ms \
         (version-1 framing: {v1:.0} ms, crc {v1_crc:08x}), {} MB (crc {crc:08x}); restore \
         (validate + walk {walked}) {restore:.0} ms",
        file.len() >> 20
    );
    println!(
        "rkyv pair per entry: archive and crc alone {pairs_archive:.0} ms, {} MB (crc \
         {pairs_crc:08x}); restore (validate + walk {pairs_walked}) {pairs_restore:.0} ms",
        pairs_file.len() >> 20
    );
}
