//! An immutable snapshot of the live SSTables per level, and compaction
//! picking. Readers clone the `Rc<Version>` so flushes and compactions can
//! install a new one underneath them.

use std::collections::HashMap;
use std::rc::Rc;

use bytes::Bytes;

use crate::manifest::VersionEdit;
use crate::sst::table::Table;

/// L0 is newest-first (files may overlap); L1+ are sorted, disjoint runs.
#[derive(Debug, Clone)]
pub(crate) struct Version {
    pub(crate) levels: Vec<Vec<Rc<Table>>>,
}

/// Shape of the level tree.
#[derive(Debug, Clone, Copy)]
pub(crate) struct LevelConfig {
    pub(crate) num_levels: usize,
    pub(crate) l0_trigger: usize,
    pub(crate) level1_bytes: u64,
    pub(crate) ratio: u64,
}

impl LevelConfig {
    pub(crate) fn target_bytes(&self, level: usize) -> u64 {
        let mut t = self.level1_bytes;
        for _ in 1..level {
            t = t.saturating_mul(self.ratio);
        }
        t
    }
}

/// A chosen compaction.
#[derive(Debug)]
pub(crate) struct Pick {
    pub(crate) level: usize,
    /// Inputs from `level` (L0: all files, newest first).
    pub(crate) upper: Vec<Rc<Table>>,
    /// Overlapping inputs from `level + 1`, sorted.
    pub(crate) lower: Vec<Rc<Table>>,
    /// Nothing lives below the output level: tombstones can be dropped.
    pub(crate) bottom: bool,
}

impl Pick {
    pub(crate) fn output_level(&self) -> usize {
        self.level + 1
    }

    /// Moving files down without rewriting them is safe and free.
    pub(crate) fn is_trivial_move(&self) -> bool {
        if !self.lower.is_empty()
            || (self.bottom && self.upper.iter().any(|t| t.meta.needs_cleanup))
        {
            return false;
        }
        let mut ranges: Vec<_> = self
            .upper
            .iter()
            .map(|t| (&t.meta.smallest, &t.meta.largest))
            .collect();
        ranges.sort();
        ranges.windows(2).all(|w| w[0].1 < w[1].0)
    }
}

impl Version {
    pub(crate) fn new(num_levels: usize) -> Self {
        Self {
            levels: vec![Vec::new(); num_levels],
        }
    }

    pub(crate) fn level_bytes(&self, level: usize) -> u64 {
        self.levels[level].iter().map(|t| t.meta.size).sum()
    }

    pub(crate) fn tables(&self) -> impl Iterator<Item = (usize, &Rc<Table>)> {
        self.levels
            .iter()
            .enumerate()
            .flat_map(|(l, ts)| ts.iter().map(move |t| (l, t)))
    }

    pub(crate) fn overlapping(&self, level: usize, lo: &[u8], hi: &[u8]) -> Vec<Rc<Table>> {
        self.levels[level]
            .iter()
            .filter(|t| t.meta.overlaps(lo, hi))
            .cloned()
            .collect()
    }

    /// Applies an edit; `opened` holds the tables the edit adds.
    pub(crate) fn apply(&self, edit: &VersionEdit, opened: &HashMap<u64, Rc<Table>>) -> Version {
        let mut v = self.clone();
        for (level, id) in &edit.deleted {
            v.levels[*level as usize].retain(|t| t.id() != *id);
        }
        for (level, meta) in &edit.added {
            if let Some(t) = opened.get(&meta.id) {
                v.levels[*level as usize].push(t.clone());
            }
        }
        v.levels[0].sort_by_key(|t| std::cmp::Reverse(t.id()));
        for l in v.levels.iter_mut().skip(1) {
            l.sort_by(|a, b| a.meta.smallest.cmp(&b.meta.smallest));
        }
        v
    }

    fn is_bottom(&self, output_level: usize) -> bool {
        self.levels[output_level + 1..].iter().all(Vec::is_empty)
    }

    /// Leveled policy: L0 by file count, Ln by size over target (ratio 10).
    /// `pointers[l]` round-robins which Ln file goes next.
    pub(crate) fn pick(&self, cfg: &LevelConfig, pointers: &[Option<Bytes>]) -> Option<Pick> {
        if self.levels[0].len() >= cfg.l0_trigger {
            let upper = self.levels[0].clone();
            let lo = upper.iter().map(|t| &t.meta.smallest).min()?.clone();
            let hi = upper.iter().map(|t| &t.meta.largest).max()?.clone();
            return Some(Pick {
                level: 0,
                lower: self.overlapping(1, &lo, &hi),
                upper,
                bottom: self.is_bottom(1),
            });
        }
        let (level, score) = (1..cfg.num_levels - 1)
            .map(|l| (l, self.level_bytes(l) as f64 / cfg.target_bytes(l) as f64))
            .max_by(|a, b| a.1.total_cmp(&b.1))?;
        if score <= 1.0 {
            return None;
        }
        let files = &self.levels[level];
        let pointer = pointers.get(level).cloned().flatten();
        let file = pointer
            .and_then(|p| files.iter().find(|t| t.meta.smallest > p))
            .or_else(|| files.first())?
            .clone();
        Some(Pick {
            level,
            lower: self.overlapping(level + 1, &file.meta.smallest, &file.meta.largest),
            upper: vec![file],
            bottom: self.is_bottom(level + 1),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::BlockCache;
    use crate::entry::Entry;
    use crate::sst::builder::TableBuilder;

    /// Builds a real table per `(level, first_key, last_key, padding)` and a
    /// version holding them.
    fn version(specs: &[(usize, &str, &str, usize)], f: impl FnOnce(Version) + Send + 'static) {
        let specs: Vec<(usize, String, String, usize)> = specs
            .iter()
            .map(|(l, a, b, n)| (*l, a.to_string(), b.to_string(), *n))
            .collect();
        std::thread::spawn(move || {
            let ex = glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
                .io_memory(2 << 20)
                .make()
                .unwrap();
            ex.run(async move {
                let dir = tempfile::tempdir().unwrap();
                let cache = Rc::new(BlockCache::new(1 << 20));
                let mut edit = VersionEdit::default();
                let mut opened = HashMap::new();
                for (i, (level, a, b, pad)) in specs.into_iter().enumerate() {
                    let id = i as u64 + 1;
                    let path = dir.path().join(format!("{id}.sst"));
                    let mut tb = TableBuilder::create(&path, id, false, 10).await.unwrap();
                    let v = Entry::Put(Bytes::from(vec![0u8; pad]));
                    tb.add(a.as_bytes(), &v).await.unwrap();
                    tb.add(b.as_bytes(), &v).await.unwrap();
                    let meta = tb.finish(&[]).await.unwrap();
                    let t = Table::open(&path, meta.clone(), false, cache.clone())
                        .await
                        .unwrap();
                    opened.insert(id, Rc::new(t));
                    edit.added.push((level as u32, meta));
                }
                f(Version::new(4).apply(&edit, &opened));
            });
        })
        .join()
        .unwrap();
    }

    const CFG: LevelConfig = LevelConfig {
        num_levels: 4,
        l0_trigger: 2,
        level1_bytes: 20 << 10,
        ratio: 10,
    };

    #[test]
    fn l0_by_file_count_takes_overlapping_l1() {
        version(
            &[
                (0, "b", "d", 1),
                (0, "c", "e", 1),
                (1, "a", "b", 1),
                (1, "f", "g", 1),
            ],
            |v| {
                let p = v.pick(&CFG, &[]).unwrap();
                assert_eq!(p.level, 0);
                assert_eq!(p.upper.len(), 2);
                assert_eq!(p.upper[0].id(), 2, "L0 newest first");
                assert_eq!(p.lower.iter().map(|t| t.id()).collect::<Vec<_>>(), vec![3]);
                assert!(p.bottom);
                assert!(!p.is_trivial_move());
            },
        );
    }

    #[test]
    fn below_trigger_nothing_to_do() {
        version(&[(0, "b", "d", 1), (1, "a", "b", 1)], |v| {
            assert!(v.pick(&CFG, &[]).is_none())
        });
    }

    #[test]
    fn ln_by_size_round_robin_and_trivial_move() {
        // L1 over its 20 KiB target; L2 has one file overlapping only "m".."n".
        let specs = [
            (1, "a", "c", 12 << 10),
            (1, "m", "n", 12 << 10),
            (2, "m", "z", 1),
            (3, "a", "z", 1),
        ];
        version(&specs, |v| {
            let p = v.pick(&CFG, &[]).unwrap();
            assert_eq!((p.level, p.upper[0].meta.smallest.as_ref()), (1, &b"a"[..]));
            assert!(p.lower.is_empty() && !p.bottom && p.is_trivial_move());
            let pointers = vec![None, Some(Bytes::from_static(b"c"))];
            let p = v.pick(&CFG, &pointers).unwrap();
            assert_eq!(p.upper[0].meta.smallest.as_ref(), b"m");
            assert_eq!(p.lower.len(), 1);
            assert!(!p.is_trivial_move());
        });
    }
}
