//! SSTables: immutable sorted files (format in FORMAT.md).

pub(crate) mod builder;
pub(crate) mod footer;
pub(crate) mod iter;
pub(crate) mod meta;
pub(crate) mod table;

/// Data blocks start at multiples of this; it is also the DMA alignment.
pub(crate) const ALIGN: usize = 4096;
