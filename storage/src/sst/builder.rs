//! Streams sorted entries into a new SSTable file. Data blocks are padded
//! to 4 KiB so every write is DMA-aligned; buffered output is written in
//! ~1 MiB chunks to keep memory flat during large compactions.

use std::path::Path;

use bytes::Bytes;

use super::ALIGN;
use super::footer::{FOOTER_LEN, Footer};
use super::meta::FileMeta;
use crate::block::BlockBuilder;
use crate::bloom::{Bloom, hash64};
use crate::codec::{put_bytes, put_varint, seal};
use crate::entry::Entry;
use crate::error::Result;
use crate::file::RandomFile;

/// Target encoded size of one data block.
const BLOCK_TARGET: usize = ALIGN - 16;
const WRITE_CHUNK: usize = 1 << 20;

pub(crate) struct TableBuilder {
    file: RandomFile,
    id: u64,
    bits_per_key: usize,
    block: BlockBuilder,
    pending: Vec<u8>,
    written: u64,
    index: Vec<(Bytes, u64, u64)>,
    hashes: Vec<u64>,
    smallest: Option<Bytes>,
    largest: Option<Bytes>,
    needs_cleanup: bool,
}

impl TableBuilder {
    pub(crate) async fn create(
        path: &Path,
        id: u64,
        direct: bool,
        bits_per_key: usize,
    ) -> Result<Self> {
        Ok(Self {
            file: RandomFile::create(path, direct).await?,
            id,
            bits_per_key,
            block: BlockBuilder::new(),
            pending: Vec::with_capacity(WRITE_CHUNK + ALIGN),
            written: 0,
            index: Vec::new(),
            hashes: Vec::new(),
            smallest: None,
            largest: None,
            needs_cleanup: false,
        })
    }

    /// Bytes produced so far (for output-file splitting).
    pub(crate) fn estimated_size(&self) -> u64 {
        self.written + self.pending.len() as u64 + self.block.estimated_size() as u64
    }

    /// Adds the next entry; keys must be strictly increasing.
    pub(crate) async fn add(&mut self, key: &[u8], entry: &Entry) -> Result<()> {
        self.add_sync(key, entry);
        self.write_if_due().await
    }

    /// [`TableBuilder::add`] without the write: encodes into memory only, so
    /// a caller can add a run of entries while borrowing them (a frozen
    /// memtable) and call [`TableBuilder::write_if_due`] afterwards.
    pub(crate) fn add_sync(&mut self, key: &[u8], entry: &Entry) {
        if !self.block.is_empty()
            && self.block.estimated_size() + key.len() + entry.size() + 16 > BLOCK_TARGET
        {
            self.finish_block();
        }
        if self.smallest.is_none() {
            self.smallest = Some(Bytes::copy_from_slice(key));
        }
        self.needs_cleanup |= !matches!(entry, Entry::Put(_));
        self.hashes.push(hash64(key));
        self.block.add(key, entry);
    }

    /// Writes the finished blocks once ~[`WRITE_CHUNK`] have accumulated.
    pub(crate) async fn write_if_due(&mut self) -> Result<()> {
        if self.pending.len() >= WRITE_CHUNK {
            self.write_pending().await?;
        }
        Ok(())
    }

    fn finish_block(&mut self) {
        let last = Bytes::copy_from_slice(self.block.last_key());
        let off = self.written + self.pending.len() as u64;
        let start = self.pending.len();
        self.block.finish_into(&mut self.pending);
        let len = (self.pending.len() - start) as u64;
        self.pending
            .resize(self.pending.len().next_multiple_of(ALIGN), 0);
        self.largest = Some(last.clone());
        self.index.push((last, off, len));
    }

    async fn write_pending(&mut self) -> Result<()> {
        let data = std::mem::take(&mut self.pending);
        self.file.write_all_at(&data, self.written).await?;
        self.written += data.len() as u64;
        self.pending = data;
        self.pending.clear();
        Ok(())
    }

    /// Writes meta blocks and footer, fsyncs, and returns the file's metadata.
    /// `range_dels` must be sorted, non-overlapping `[start, end)` pairs.
    pub(crate) async fn finish(mut self, range_dels: &[(Bytes, Bytes)]) -> Result<FileMeta> {
        if !self.block.is_empty() {
            self.finish_block();
        }
        let base = self.written;
        let mut meta = std::mem::take(&mut self.pending);
        let mut footer = Footer::default();

        let start = meta.len();
        put_varint(&mut meta, self.index.len() as u64);
        for (k, off, len) in &self.index {
            put_bytes(&mut meta, k);
            put_varint(&mut meta, *off);
            put_varint(&mut meta, *len);
        }
        seal(&mut meta, start);
        footer.index = (base + start as u64, (meta.len() - start) as u64);

        let start = meta.len();
        Bloom::build(&self.hashes, self.bits_per_key).encode(&mut meta);
        seal(&mut meta, start);
        footer.bloom = (base + start as u64, (meta.len() - start) as u64);

        let start = meta.len();
        put_varint(&mut meta, range_dels.len() as u64);
        for (s, e) in range_dels {
            put_bytes(&mut meta, s);
            put_bytes(&mut meta, e);
        }
        seal(&mut meta, start);
        footer.range_dels = (base + start as u64, (meta.len() - start) as u64);

        let padded = (meta.len() + FOOTER_LEN).next_multiple_of(ALIGN) - FOOTER_LEN;
        meta.resize(padded, 0);
        footer.encode(&mut meta);
        self.file.write_all_at(&meta, base).await?;
        self.file.sync().await?;
        let size = base + meta.len() as u64;
        self.file.close().await?;

        let mut smallest = self.smallest.unwrap_or_default();
        let mut largest = self.largest.unwrap_or_default();
        if let (Some(first), Some(last)) = (range_dels.first(), range_dels.last()) {
            if self.index.is_empty() || first.0 < smallest {
                smallest = first.0.clone();
            }
            if self.index.is_empty() || last.1 > largest {
                largest = last.1.clone();
            }
        }
        Ok(FileMeta {
            id: self.id,
            size,
            smallest,
            largest,
            needs_cleanup: self.needs_cleanup || !range_dels.is_empty(),
        })
    }
}
