//! A fixed-capacity string stored inline, so events can carry short generated
//! strings (email, credit card) without a heap allocation per event.

use std::fmt;
use std::hash::{Hash, Hasher};

/// Why bytes could not become an [`InlineStr`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum InlineStrError {
    /// The input is longer than the capacity.
    #[error("string of {len} bytes exceeds inline capacity {cap}")]
    TooLong {
        /// Input length in bytes.
        len: usize,
        /// Capacity `N`.
        cap: usize,
    },
    /// The input is not UTF-8.
    #[error("bytes are not valid UTF-8")]
    InvalidUtf8,
}

/// UTF-8 string of at most `N` (≤ 255) bytes held inline; unused bytes stay zero.
#[derive(Clone, Copy)]
pub struct InlineStr<const N: usize> {
    len: u8,
    bytes: [u8; N],
}

impl<const N: usize> InlineStr<N> {
    /// Compile-time guard: the length must fit in the `u8`.
    const CAPACITY_FITS_U8: () = assert!(N <= 255, "InlineStr capacity must be <= 255");

    /// The empty string.
    pub const fn empty() -> Self {
        let () = Self::CAPACITY_FITS_U8;
        InlineStr {
            len: 0,
            bytes: [0; N],
        }
    }

    /// Copies `s`; `None` if it does not fit.
    pub fn new(s: &str) -> Option<Self> {
        Self::from_parts(&[s])
    }

    /// Concatenates `parts` (a `&str` each, so the result is UTF-8); `None` if
    /// the total does not fit.
    #[inline]
    pub fn from_parts(parts: &[&str]) -> Option<Self> {
        let mut out = Self::empty();
        let mut pos = 0usize;
        for part in parts {
            let end = pos.checked_add(part.len())?;
            out.bytes
                .get_mut(pos..end)?
                .copy_from_slice(part.as_bytes());
            pos = end;
        }
        out.len = u8::try_from(pos).ok()?;
        Some(out)
    }

    /// Validates and copies `bytes`.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, InlineStrError> {
        let s = std::str::from_utf8(bytes).map_err(|_| InlineStrError::InvalidUtf8)?;
        Self::new(s).ok_or(InlineStrError::TooLong {
            len: bytes.len(),
            cap: N,
        })
    }

    /// The string. Construction only ever stores whole `&str`s, so the
    /// validation below always succeeds; it keeps this safe without `unsafe`.
    #[inline]
    pub fn as_str(&self) -> &str {
        self.bytes
            .get(..usize::from(self.len))
            .and_then(|b| std::str::from_utf8(b).ok())
            .unwrap_or("")
    }

    /// Length in bytes.
    #[inline]
    pub fn len(&self) -> usize {
        usize::from(self.len)
    }

    /// True for the empty string.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The capacity `N`.
    pub const fn capacity() -> usize {
        N
    }
}

impl<const N: usize> Default for InlineStr<N> {
    fn default() -> Self {
        Self::empty()
    }
}

impl<const N: usize> PartialEq for InlineStr<N> {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl<const N: usize> Eq for InlineStr<N> {}

impl<const N: usize> PartialEq<str> for InlineStr<N> {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl<const N: usize> PartialEq<&str> for InlineStr<N> {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl<const N: usize> PartialOrd for InlineStr<N> {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl<const N: usize> Ord for InlineStr<N> {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.as_str().cmp(other.as_str())
    }
}

impl<const N: usize> Hash for InlineStr<N> {
    /// Hashes like `str`, so lookups by `&str` in maps keyed by `as_str` agree.
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.as_str().hash(state);
    }
}

impl<const N: usize> AsRef<str> for InlineStr<N> {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl<const N: usize> fmt::Debug for InlineStr<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl<const N: usize> fmt::Display for InlineStr<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_limits() {
        let s = InlineStr::<16>::new("abc@xyz.com");
        assert_eq!(
            s.map(|s| s.as_str().to_owned()).as_deref(),
            Some("abc@xyz.com")
        );
        assert!(InlineStr::<4>::new("abcd").is_some());
        assert!(InlineStr::<4>::new("abcde").is_none());
        assert_eq!(InlineStr::<4>::empty().as_str(), "");
        assert!(InlineStr::<4>::default().is_empty());
    }

    #[test]
    fn from_parts_concatenates() {
        let s = InlineStr::<16>::from_parts(&["ab", "@", "cd", ".com"]);
        assert_eq!(s.map(|s| s.len()), Some(9));
        assert!(s.is_some_and(|s| s == "ab@cd.com"));
        assert!(InlineStr::<3>::from_parts(&["ab", "cd"]).is_none());
    }

    #[test]
    fn from_bytes_validates() {
        assert_eq!(
            InlineStr::<4>::from_bytes(&[0xff]),
            Err(InlineStrError::InvalidUtf8)
        );
        assert_eq!(
            InlineStr::<2>::from_bytes(b"abc"),
            Err(InlineStrError::TooLong { len: 3, cap: 2 })
        );
        assert!(InlineStr::<8>::from_bytes("é!".as_bytes()).is_ok_and(|s| s == "é!"));
    }

    #[test]
    fn eq_hash_debug_follow_the_string() {
        use std::collections::hash_map::DefaultHasher;
        let a = InlineStr::<8>::new("hi");
        let b = InlineStr::<8>::new("hi");
        assert_eq!(a, b);
        let h = |x: &dyn Fn(&mut DefaultHasher)| {
            let mut s = DefaultHasher::new();
            x(&mut s);
            s.finish()
        };
        let (Some(a), Some(_)) = (a, b) else {
            panic!("construction failed")
        };
        assert_eq!(h(&|s| a.hash(s)), h(&|s| "hi".hash(s)));
        assert_eq!(format!("{a:?}"), "\"hi\"");
        assert_eq!(format!("{a}"), "hi");
        assert_eq!(InlineStr::<20>::capacity(), 20);
    }
}
