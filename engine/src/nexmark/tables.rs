//! Per-seed string tables, built once and leaked so events can hold
//! `&'static str` slices instead of allocating strings per event.

use std::collections::HashMap;
use std::fmt;
use std::fmt::Write as _;
use std::sync::{Mutex, OnceLock};

use crate::nexmark::rng::{SplitMix64, mix64};

/// Length of the shared random-letter buffer used for `string(max)` values and
/// padding. 64 KiB: long enough for varied contents and the longest padding
/// (< 600 bytes), small enough to stay in L2 — every slice's char-boundary
/// check reads the buffer, and at 256 KiB those reads were a fifth of the
/// bid cost.
pub const BUFFER_LEN: usize = 1 << 16;

/// Number of cold channels `channel-0` … `channel-9999`.
pub const NUM_CHANNELS: usize = 10_000;

/// The four hot channels, each with one fixed URL.
pub const HOT_CHANNELS: [&str; 4] = ["Google", "Facebook", "Baidu", "Apple"];

/// First names of persons.
pub const FIRST_NAMES: [&str; 11] = [
    "Peter", "Paul", "Luke", "John", "Saul", "Vicky", "Kate", "Julie", "Sarah", "Deiter", "Walter",
];

/// Last names of persons.
pub const LAST_NAMES: [&str; 9] = [
    "Shultz", "Abrams", "Spencer", "White", "Bartels", "Walton", "Smith", "Jones", "Noris",
];

/// Cities of persons.
pub const CITIES: [&str; 10] = [
    "Phoenix",
    "Los Angeles",
    "San Francisco",
    "Boise",
    "Portland",
    "Bend",
    "Redmond",
    "Seattle",
    "Kent",
    "Cheyenne",
];

/// US states of persons.
pub const STATES: [&str; 6] = ["AZ", "CA", "ID", "OR", "WA", "WY"];

/// The leaked tables of one seed.
pub struct Tables {
    /// `(channel-i, its URL)` for i in 0..10,000 (9 in 10 URLs with
    /// `&channel_id=`); pairs so one cache line serves a bid's channel and URL.
    pub channels: Box<[(&'static str, &'static str)]>,
    /// URL of each hot channel, same order as [`HOT_CHANNELS`].
    pub hot_urls: [&'static str; 4],
    /// The 99 `First Last` person names.
    pub names: Box<[&'static str]>,
    /// [`BUFFER_LEN`] bytes of `a`–`z`, with a space at probability 1/13.
    pub buffer: &'static str,
    /// The one leaked string every string above is a slice of.
    pub arena: &'static str,
}

/// The arena of the first tables this process built, with their seed: a generated string is
/// located in it with two comparisons (see [`locate`]). Jobs use one seed; strings of any
/// other seed are simply not located (and encoded in full).
static FIRST_ARENA: OnceLock<(u64, &'static str)> = OnceLock::new();

/// Where `s` lies in the arena of the first tables built: `(seed, offset)`, or `None` if it
/// is not a slice of that arena (another seed's, or a string from elsewhere).
pub fn locate(s: &str) -> Option<(u64, usize)> {
    let &(seed, arena) = FIRST_ARENA.get()?;
    let start = (s.as_ptr() as usize).checked_sub(arena.as_ptr() as usize)?;
    (start.checked_add(s.len())? <= arena.len()).then_some((seed, start))
}

/// The slice `offset..offset + len` of seed `seed`'s arena (built if this process has not yet),
/// or `None` if out of range: the inverse of [`locate`].
pub fn arena_slice(seed: u64, offset: usize, len: usize) -> Option<&'static str> {
    thread_local! {
        /// The arena decoded last on this thread: restores decode millions of strings of one
        /// seed, so the cache lookup (a lock) happens once.
        static CACHED: std::cell::Cell<Option<(u64, &'static str)>> =
            const { std::cell::Cell::new(None) };
    }
    let arena = CACHED.with(|cached| match cached.get() {
        Some((s, arena)) if s == seed => arena,
        _ => {
            let arena = tables_for_seed(seed).arena;
            cached.set(Some((seed, arena)));
            arena
        }
    });
    arena.get(offset..offset.checked_add(len)?)
}

impl fmt::Debug for Tables {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tables")
            .field("channels", &self.channels.len())
            .field("buffer_len", &self.buffer.len())
            .finish_non_exhaustive()
    }
}

/// Tables for `seed`, built on first use and cached for the process so that
/// repeated `Generator::new` calls with one seed leak only once.
pub fn tables_for_seed(seed: u64) -> &'static Tables {
    static CACHE: OnceLock<Mutex<HashMap<u64, &'static Tables>>> = OnceLock::new();
    let cache = CACHE.get_or_init(|| Mutex::new(HashMap::new()));
    // A poisoned lock only means another thread panicked mid-insert; the map
    // holds only complete entries, so keep using it.
    let mut map = cache.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(tables) = map.get(&seed).copied() {
        return tables;
    }
    let tables: &'static Tables = Box::leak(Box::new(build_tables(seed)));
    map.insert(seed, tables);
    FIRST_ARENA.get_or_init(|| (seed, tables.arena));
    tables
}

/// One character of `string(max)`: `a`–`z`, or `special` with probability 1/13.
fn random_char(rng: &mut SplitMix64, special: u8) -> char {
    if rng.below(13) == 0 {
        char::from(special)
    } else {
        char::from(b'a' + rng.below(26) as u8)
    }
}

/// `https://www.nexmark.com/<a>/<b>/<c>/item.htm?query=1`, parts string(5) with '_'.
fn push_base_url(arena: &mut String, rng: &mut SplitMix64) {
    arena.push_str("https://www.nexmark.com");
    for _ in 0..3 {
        arena.push('/');
        let len = 3 + rng.below(2);
        for _ in 0..len {
            arena.push(random_char(rng, b'_'));
        }
    }
    arena.push_str("/item.htm?query=1");
}

fn build_tables(seed: u64) -> Tables {
    let mut rng = SplitMix64::new(mix64(seed ^ 0x7461_626C_6573_2121)); // "tables!!"
    // Everything goes into one arena string, leaked once, then sliced.
    let mut arena = String::with_capacity(BUFFER_LEN + NUM_CHANNELS * 90 + 4 * 60 + 99 * 16);
    let mut spans: Vec<(usize, usize)> = Vec::with_capacity(2 * NUM_CHANNELS + 4 + 99 + 1);
    let mut span = |arena: &mut String, f: &mut dyn FnMut(&mut String)| {
        let start = arena.len();
        f(arena);
        spans.push((start, arena.len()));
    };

    span(&mut arena, &mut |a| {
        for _ in 0..BUFFER_LEN {
            a.push(random_char(&mut rng, b' '));
        }
    });
    for _ in 0..4 {
        span(&mut arena, &mut |a| push_base_url(a, &mut rng));
    }
    for i in 0..NUM_CHANNELS as u32 {
        span(&mut arena, &mut |a| {
            let _ = write!(a, "channel-{i}");
        });
        span(&mut arena, &mut |a| {
            push_base_url(a, &mut rng);
            if rng.below(10) != 0 {
                let _ = write!(a, "&channel_id={}", channel_id(i));
            }
        });
    }
    for first in FIRST_NAMES {
        for last in LAST_NAMES {
            span(&mut arena, &mut |a| {
                a.push_str(first);
                a.push(' ');
                a.push_str(last);
            });
        }
    }

    let arena: &'static str = Box::leak(arena.into_boxed_str());
    // All content is ASCII, so every span is on a char boundary.
    let mut slices = spans
        .into_iter()
        .map(|(s, e)| arena.get(s..e).unwrap_or(""));
    let buffer = slices.next().unwrap_or("");
    let mut hot_urls = [""; 4];
    for u in &mut hot_urls {
        *u = slices.next().unwrap_or("");
    }
    let mut channels = Vec::with_capacity(NUM_CHANNELS);
    for _ in 0..NUM_CHANNELS {
        let name = slices.next().unwrap_or("");
        let url = slices.next().unwrap_or("");
        channels.push((name, url));
    }
    let names: Vec<&'static str> = slices.collect();
    Tables {
        channels: channels.into_boxed_slice(),
        hot_urls,
        names: names.into_boxed_slice(),
        buffer,
        arena,
    }
}

/// The `channel_id` of cold channel `i`: its 32 bits reversed, read unsigned.
pub fn channel_id(i: u32) -> u32 {
    i.reverse_bits()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channel_id_reverses_bits() {
        assert_eq!(channel_id(0), 0);
        assert_eq!(channel_id(1), 2_147_483_648);
        assert_eq!(channel_id(2), 1_073_741_824);
        assert_eq!(channel_id(3), 3_221_225_472);
        assert_eq!(channel_id(6), 1_610_612_736);
        assert_eq!(channel_id(9999), 4_041_474_048);
    }

    #[test]
    fn tables_are_cached_per_seed() {
        let a = tables_for_seed(77);
        let b = tables_for_seed(77);
        assert!(std::ptr::eq(a, b));
        let c = tables_for_seed(78);
        assert!(!std::ptr::eq(a, c));
        assert_ne!(a.buffer, c.buffer);
    }

    #[test]
    fn table_contents_follow_the_spec() {
        let t = tables_for_seed(1);
        assert_eq!(t.buffer.len(), BUFFER_LEN);
        assert!(
            t.buffer
                .bytes()
                .all(|b| b == b' ' || b.is_ascii_lowercase())
        );
        let spaces = t.buffer.bytes().filter(|&b| b == b' ').count() as f64;
        assert!((spaces / BUFFER_LEN as f64 - 1.0 / 13.0).abs() < 0.005);

        assert_eq!(t.names.len(), 99);
        assert_eq!(t.names[0], "Peter Shultz");
        assert_eq!(t.names[98], "Walter Noris");

        assert_eq!(t.channels.len(), NUM_CHANNELS);
        assert_eq!(t.channels[42].0, "channel-42");
        let mut with_id = 0;
        for (i, (_, url)) in t.channels.iter().enumerate() {
            let parts: Vec<&str> = url.split('/').collect();
            assert_eq!(parts.len(), 7, "{url}");
            assert_eq!(&parts[..3], &["https:", "", "www.nexmark.com"]);
            for p in &parts[3..6] {
                assert!((3..=4).contains(&p.len()), "{url}");
                assert!(p.bytes().all(|b| b == b'_' || b.is_ascii_lowercase()));
            }
            if let Some((_, id)) = url.split_once("&channel_id=") {
                with_id += 1;
                assert_eq!(id, channel_id(i as u32).to_string());
                assert!(parts[6].starts_with("item.htm?query=1&channel_id="));
            } else {
                assert_eq!(parts[6], "item.htm?query=1");
            }
        }
        assert!((8_700..9_300).contains(&with_id), "{with_id}");
        for u in t.hot_urls {
            assert!(u.starts_with("https://www.nexmark.com/"));
            assert!(u.ends_with("/item.htm?query=1"));
        }
    }
}
