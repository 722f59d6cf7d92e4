//! Byte codec for typed state values and map keys.
//!
//! Every encoding is self-delimiting so codecs compose (tuples, `Option`,
//! `Vec`). Integers are fixed-width big-endian, signed ones with the sign bit
//! flipped, so encoded map keys sort numerically. Decoding validates every
//! length and tag: arbitrary bytes give an error, never a panic.

use super::error::StateError;

/// Converts a state value to and from bytes.
pub trait StateCodec: Sized {
    /// Appends the encoding of `self` to `out`.
    fn encode(&self, out: &mut Vec<u8>);

    /// Decodes one value from the front of `input`, advancing it.
    fn decode_from(input: &mut &[u8]) -> Result<Self, StateError>;

    /// Decodes exactly one value occupying all of `bytes`.
    fn decode(bytes: &[u8]) -> Result<Self, StateError> {
        let mut input = bytes;
        let v = Self::decode_from(&mut input)?;
        if input.is_empty() {
            Ok(v)
        } else {
            Err(StateError::Decode {
                reason: "trailing bytes after value",
            })
        }
    }

    /// Convenience: the encoding as a fresh vector.
    fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode(&mut out);
        out
    }
}

fn take<'a>(input: &mut &'a [u8], n: usize) -> Result<&'a [u8], StateError> {
    if input.len() < n {
        return Err(StateError::Decode {
            reason: "input too short",
        });
    }
    let (head, tail) = input.split_at(n);
    *input = tail;
    Ok(head)
}

fn take_array<const N: usize>(input: &mut &[u8]) -> Result<[u8; N], StateError> {
    let mut a = [0u8; N];
    a.copy_from_slice(take(input, N)?);
    Ok(a)
}

fn encode_len(len: usize, out: &mut Vec<u8>) {
    // Values over 4 GiB are not state; saturating keeps encode infallible and
    // the decoder then rejects the truncated result instead of panicking.
    let len = u32::try_from(len).unwrap_or(u32::MAX);
    out.extend_from_slice(&len.to_be_bytes());
}

fn decode_len(input: &mut &[u8]) -> Result<usize, StateError> {
    usize::try_from(u32::from_be_bytes(take_array(input)?)).map_err(|_| StateError::Decode {
        reason: "length overflows usize",
    })
}

macro_rules! unsigned {
    ($($t:ty),*) => {$(
        impl StateCodec for $t {
            fn encode(&self, out: &mut Vec<u8>) {
                out.extend_from_slice(&self.to_be_bytes());
            }
            fn decode_from(input: &mut &[u8]) -> Result<Self, StateError> {
                Ok(<$t>::from_be_bytes(take_array(input)?))
            }
        }
    )*};
}
unsigned!(u8, u16, u32, u64, u128);

macro_rules! signed {
    ($($t:ty => $u:ty),*) => {$(
        impl StateCodec for $t {
            fn encode(&self, out: &mut Vec<u8>) {
                let flipped = (*self as $u) ^ (1 << (<$u>::BITS - 1));
                out.extend_from_slice(&flipped.to_be_bytes());
            }
            fn decode_from(input: &mut &[u8]) -> Result<Self, StateError> {
                let raw = <$u>::from_be_bytes(take_array(input)?);
                Ok((raw ^ (1 << (<$u>::BITS - 1))) as $t)
            }
        }
    )*};
}
signed!(i8 => u8, i16 => u16, i32 => u32, i64 => u64, i128 => u128);

/// `usize` is stored as `u64` so state is portable across word sizes.
impl StateCodec for usize {
    fn encode(&self, out: &mut Vec<u8>) {
        (*self as u64).encode(out);
    }
    fn decode_from(input: &mut &[u8]) -> Result<Self, StateError> {
        usize::try_from(u64::decode_from(input)?).map_err(|_| StateError::Decode {
            reason: "usize out of range",
        })
    }
}

/// `isize` is stored as `i64` so state is portable across word sizes.
impl StateCodec for isize {
    fn encode(&self, out: &mut Vec<u8>) {
        (*self as i64).encode(out);
    }
    fn decode_from(input: &mut &[u8]) -> Result<Self, StateError> {
        isize::try_from(i64::decode_from(input)?).map_err(|_| StateError::Decode {
            reason: "isize out of range",
        })
    }
}

impl StateCodec for bool {
    fn encode(&self, out: &mut Vec<u8>) {
        out.push(u8::from(*self));
    }
    fn decode_from(input: &mut &[u8]) -> Result<Self, StateError> {
        match take_array::<1>(input)?[0] {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(StateError::Decode {
                reason: "bool byte not 0 or 1",
            }),
        }
    }
}

impl StateCodec for f64 {
    fn encode(&self, out: &mut Vec<u8>) {
        self.to_bits().encode(out);
    }
    fn decode_from(input: &mut &[u8]) -> Result<Self, StateError> {
        Ok(f64::from_bits(u64::decode_from(input)?))
    }
}

impl StateCodec for f32 {
    fn encode(&self, out: &mut Vec<u8>) {
        self.to_bits().encode(out);
    }
    fn decode_from(input: &mut &[u8]) -> Result<Self, StateError> {
        Ok(f32::from_bits(u32::decode_from(input)?))
    }
}

impl StateCodec for String {
    fn encode(&self, out: &mut Vec<u8>) {
        encode_len(self.len(), out);
        out.extend_from_slice(self.as_bytes());
    }
    fn decode_from(input: &mut &[u8]) -> Result<Self, StateError> {
        let n = decode_len(input)?;
        let bytes = take(input, n)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| StateError::Decode {
            reason: "string is not UTF-8",
        })
    }
}

/// A byte string with the same encoding as `Vec<u8>` (length, then the bytes), decoded with
/// one copy instead of byte by byte.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ByteString(pub Vec<u8>);

impl ByteString {
    /// Encodes `bytes` as a `ByteString` (or a `Vec<u8>`) would, without owning them.
    pub fn encode_slice(bytes: &[u8], out: &mut Vec<u8>) {
        encode_len(bytes.len(), out);
        out.extend_from_slice(bytes);
    }
}

impl StateCodec for ByteString {
    fn encode(&self, out: &mut Vec<u8>) {
        Self::encode_slice(&self.0, out);
    }
    fn decode_from(input: &mut &[u8]) -> Result<Self, StateError> {
        let n = decode_len(input)?;
        Ok(ByteString(take(input, n)?.to_vec()))
    }
}

/// Interns `s`: each distinct string is leaked once per thread and shared by every later call
/// on that thread, so decoding `&'static str`s repeatedly (restores after restarts, which run
/// on the same threads) does not grow memory beyond the distinct strings seen. Per thread, so
/// restoring shards in parallel takes no lock.
pub fn intern(s: &str) -> &'static str {
    use std::cell::RefCell;
    use std::collections::HashSet;
    type Set = HashSet<&'static str, std::hash::BuildHasherDefault<crate::key::KeyHasher>>;
    thread_local! {
        static STRINGS: RefCell<Set> = RefCell::new(Set::default());
    }
    STRINGS.with(|set| {
        let mut set = set.borrow_mut();
        if let Some(&existing) = set.get(s) {
            return existing;
        }
        let leaked: &'static str = Box::leak(s.to_owned().into_boxed_str());
        set.insert(leaked);
        leaked
    })
}

/// Borrowed static strings (names, the Nexmark generator's table slices) decode by interning.
impl StateCodec for &'static str {
    fn encode(&self, out: &mut Vec<u8>) {
        encode_len(self.len(), out);
        out.extend_from_slice(self.as_bytes());
    }
    fn decode_from(input: &mut &[u8]) -> Result<Self, StateError> {
        let n = decode_len(input)?;
        let bytes = take(input, n)?;
        let s = std::str::from_utf8(bytes).map_err(|_| StateError::Decode {
            reason: "string is not UTF-8",
        })?;
        Ok(intern(s))
    }
}

/// Covers `Vec<u8>` too: a `u8` encodes as its single byte, so the bytes are
/// stored verbatim after the length.
impl<T: StateCodec> StateCodec for Vec<T> {
    fn encode(&self, out: &mut Vec<u8>) {
        encode_len(self.len(), out);
        for v in self {
            v.encode(out);
        }
    }
    fn decode_from(input: &mut &[u8]) -> Result<Self, StateError> {
        let n = decode_len(input)?;
        // Every implemented type encodes to at least one byte, so the remaining
        // input bounds the allocation a hostile length can cause.
        let mut v = Vec::with_capacity(n.min(input.len()));
        for _ in 0..n {
            v.push(T::decode_from(input)?);
        }
        Ok(v)
    }
}

impl<T: StateCodec> StateCodec for Option<T> {
    fn encode(&self, out: &mut Vec<u8>) {
        match self {
            None => out.push(0),
            Some(v) => {
                out.push(1);
                v.encode(out);
            }
        }
    }
    fn decode_from(input: &mut &[u8]) -> Result<Self, StateError> {
        match take_array::<1>(input)?[0] {
            0 => Ok(None),
            1 => Ok(Some(T::decode_from(input)?)),
            _ => Err(StateError::Decode {
                reason: "option tag not 0 or 1",
            }),
        }
    }
}

macro_rules! tuple {
    ($($name:ident),+) => {
        impl<$($name: StateCodec),+> StateCodec for ($($name,)+) {
            #[allow(non_snake_case)]
            fn encode(&self, out: &mut Vec<u8>) {
                let ($($name,)+) = self;
                $($name.encode(out);)+
            }
            fn decode_from(input: &mut &[u8]) -> Result<Self, StateError> {
                Ok(($($name::decode_from(input)?,)+))
            }
        }
    };
}
tuple!(A);
tuple!(A, B);
tuple!(A, B, C);
tuple!(A, B, C, D);
tuple!(A, B, C, D, E);

#[cfg(test)]
mod tests {
    use super::StateCodec;

    #[test]
    fn signed_order_is_numeric() {
        let a = (-5i32).to_bytes();
        let b = 3i32.to_bytes();
        assert!(a < b);
        assert_eq!(i32::decode(&a), Ok(-5));
    }

    #[test]
    fn rejects_bad_input() {
        assert!(bool::decode(&[2]).is_err());
        assert!(u32::decode(&[1, 2]).is_err());
        assert!(String::decode(&[0, 0, 0, 1, 0xFF]).is_err());
        assert!(Vec::<u64>::decode(&[0xFF, 0xFF, 0xFF, 0xFF]).is_err());
        assert!(u8::decode(&[1, 2]).is_err());
    }

    #[test]
    fn byte_strings_encode_as_byte_vectors() {
        let v = vec![1u8, 2, 3];
        let b = super::ByteString(v.clone());
        assert_eq!(b.to_bytes(), v.to_bytes());
        assert_eq!(super::ByteString::decode(&v.to_bytes()), Ok(b));
        assert!(super::ByteString::decode(&[0, 0, 0, 5, 1]).is_err());
    }

    #[test]
    fn static_strings_are_interned() {
        let a = <&'static str>::decode(&"name".to_bytes()).expect("decodes");
        let b = <&'static str>::decode(&"name".to_bytes()).expect("decodes");
        assert_eq!(a, "name");
        assert!(std::ptr::eq(a, b));
    }

    #[test]
    fn composite_round_trip() {
        let v = (1u8, Some("x".to_owned()), vec![(true, -1i64)], 2.5f64);
        assert_eq!(StateCodec::decode(&v.to_bytes()), Ok(v));
    }
}
