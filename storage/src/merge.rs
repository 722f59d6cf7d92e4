//! User-supplied merge operator for append-style values (ListState).

/// Combines an existing value with merge operands, oldest operand first.
///
/// Called lazily on read and eagerly during compaction, so it must be a pure
/// function of its inputs.
pub trait MergeOperator {
    /// Returns the merged value for `key`.
    fn merge(&self, key: &[u8], existing: Option<&[u8]>, operands: &[&[u8]]) -> Vec<u8>;
}

/// Concatenates operands onto the existing value; handy for tests and lists.
#[derive(Debug, Default, Clone, Copy)]
pub struct ConcatMerge;

impl MergeOperator for ConcatMerge {
    fn merge(&self, _key: &[u8], existing: Option<&[u8]>, operands: &[&[u8]]) -> Vec<u8> {
        let mut out = existing.map(<[u8]>::to_vec).unwrap_or_default();
        for op in operands {
            out.extend_from_slice(op);
        }
        out
    }
}
