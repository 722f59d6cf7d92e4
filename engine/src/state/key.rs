//! Composite byte-key layout shared by every backend.
//!
//! `[key_group: u32 BE][state_id: u32 BE][key_len: u32 BE][key][user_key]`
//!
//! Big-endian fixed-width prefixes make byte order follow key group, then
//! state, then key, so one key group, one state in it, and one key's map
//! entries are each a contiguous byte range: an LSM can prefix-scan them,
//! snapshot a key-group range and drop one with a range tombstone. The
//! length prefix keeps key `a` from being a prefix of key `ab`.

/// One of `max_parallelism` hash buckets of the key space; the unit of rescaling.
pub type KeyGroup = u32;

/// Identifies one declared state (see [`crate::state::StateRegistry`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct StateId(pub u32);

/// Length of the fixed part of a composite key.
pub const HEADER_LEN: usize = 12;

/// Appends the full composite key to `out`.
pub fn encode_key(
    out: &mut Vec<u8>,
    key_group: KeyGroup,
    state: StateId,
    key: &[u8],
    user_key: &[u8],
) {
    out.reserve(HEADER_LEN + key.len() + user_key.len());
    out.extend_from_slice(&key_group.to_be_bytes());
    encode_key_in_group(out, state, key, user_key);
}

/// Appends the composite key without its leading key group (the part after byte 4);
/// used by backends that already partition by key group.
pub fn encode_key_in_group(out: &mut Vec<u8>, state: StateId, key: &[u8], user_key: &[u8]) {
    out.extend_from_slice(&state.0.to_be_bytes());
    // Keys longer than u32::MAX bytes cannot be produced by a record; saturate rather than panic.
    let len = u32::try_from(key.len()).unwrap_or(u32::MAX);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(key);
    out.extend_from_slice(user_key);
}

/// Parts of a parsed composite key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyParts<'a> {
    pub key_group: KeyGroup,
    pub state: StateId,
    pub key: &'a [u8],
    pub user_key: &'a [u8],
}

fn be_u32(bytes: &[u8], at: usize) -> Option<u32> {
    let b = bytes.get(at..at + 4)?;
    Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
}

/// Splits a full composite key; `None` if it is malformed.
pub fn decode_key(bytes: &[u8]) -> Option<KeyParts<'_>> {
    let key_group = be_u32(bytes, 0)?;
    let state = StateId(be_u32(bytes, 4)?);
    let len = usize::try_from(be_u32(bytes, 8)?).ok()?;
    let rest = bytes.get(HEADER_LEN..)?;
    if rest.len() < len {
        return None;
    }
    let (key, user_key) = rest.split_at(len);
    Some(KeyParts {
        key_group,
        state,
        key,
        user_key,
    })
}

/// Smallest byte string greater than every string starting with `prefix`, or
/// `None` if no such string exists (prefix is all `0xFF`). Used as an exclusive
/// upper bound for prefix scans.
pub fn prefix_successor(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut out = prefix.to_vec();
    while let Some(last) = out.pop() {
        if last != 0xFF {
            out.push(last + 1);
            return Some(out);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_order() {
        let mut a = Vec::new();
        encode_key(&mut a, 3, StateId(7), b"ab", b"x");
        let p = decode_key(&a);
        assert_eq!(
            p,
            Some(KeyParts {
                key_group: 3,
                state: StateId(7),
                key: b"ab",
                user_key: b"x"
            })
        );
        let mut b = Vec::new();
        encode_key(&mut b, 4, StateId(0), b"", b"");
        assert!(a < b, "key group dominates order");
        assert_eq!(decode_key(&a[..13]), None);
        assert_eq!(prefix_successor(&[1, 0xFF]), Some(vec![2]));
        assert_eq!(prefix_successor(&[0xFF]), None);
    }
}
