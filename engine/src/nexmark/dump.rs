//! `nexmark-data`'s event dumps: events 0..n split into `person.csv`,
//! `auction.csv` and `bid.csv`, so other engines can load the exact same input.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::nexmark::csv::{
    AUCTION_HEADER, BID_HEADER, PERSON_HEADER, write_auction_row, write_bid_row, write_header,
    write_person_row,
};
use crate::nexmark::error::NexmarkError;
use crate::nexmark::generator::Generator;
use crate::nexmark::model::Event;

/// Rows written to each dump file.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DumpCounts {
    /// Rows in `person.csv`.
    pub persons: u64,
    /// Rows in `auction.csv`.
    pub auctions: u64,
    /// Rows in `bid.csv`.
    pub bids: u64,
}

/// Bytes gathered per file before one `write_all`.
const FLUSH_AT: usize = 1 << 20;

/// One output file with its own row buffer, so rows are formatted in place
/// and written in large chunks.
struct Sink {
    path: PathBuf,
    file: File,
    buf: Vec<u8>,
}

impl Sink {
    fn create(dir: &Path, name: &str, header: &str) -> Result<Sink, NexmarkError> {
        let path = dir.join(name);
        let file = File::create(&path).map_err(|source| NexmarkError::Io {
            path: path.clone(),
            source,
        })?;
        let mut buf = Vec::with_capacity(FLUSH_AT + 4096);
        write_header(&mut buf, header);
        Ok(Sink { path, file, buf })
    }

    fn maybe_flush(&mut self) -> Result<(), NexmarkError> {
        if self.buf.len() >= FLUSH_AT {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), NexmarkError> {
        self.file
            .write_all(&self.buf)
            .map_err(|source| NexmarkError::Io {
                path: self.path.clone(),
                source,
            })?;
        self.buf.clear();
        Ok(())
    }

    fn finish(mut self) -> Result<(), NexmarkError> {
        self.flush()?;
        self.file.sync_all().map_err(|source| NexmarkError::Io {
            path: self.path,
            source,
        })
    }
}

/// Writes events `0..events` of `generator` to `dir/person.csv`,
/// `dir/auction.csv` and `dir/bid.csv` (creating `dir`), with headers.
pub fn write_event_dump(
    generator: &Generator,
    events: u64,
    dir: &Path,
) -> Result<DumpCounts, NexmarkError> {
    std::fs::create_dir_all(dir).map_err(|source| NexmarkError::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    let mut persons = Sink::create(dir, "person.csv", PERSON_HEADER)?;
    let mut auctions = Sink::create(dir, "auction.csv", AUCTION_HEADER)?;
    let mut bids = Sink::create(dir, "bid.csv", BID_HEADER)?;
    let mut counts = DumpCounts::default();
    for n in 0..events {
        match generator.event(n) {
            Event::Person(p) => {
                write_person_row(&mut persons.buf, &p);
                counts.persons += 1;
                persons.maybe_flush()?;
            }
            Event::Auction(a) => {
                write_auction_row(&mut auctions.buf, &a);
                counts.auctions += 1;
                auctions.maybe_flush()?;
            }
            Event::Bid(b) => {
                write_bid_row(&mut bids.buf, &b);
                counts.bids += 1;
                bids.maybe_flush()?;
            }
        }
    }
    persons.finish()?;
    auctions.finish()?;
    bids.finish()?;
    Ok(counts)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nexmark::config::NexmarkConfig;

    fn temp_dir(tag: &str) -> PathBuf {
        std::env::temp_dir().join(format!("nexmark-dump-{tag}-{}", std::process::id()))
    }

    #[test]
    fn dump_writes_three_files_with_headers() -> Result<(), NexmarkError> {
        let generator = Generator::new(NexmarkConfig::default())?;
        let dir = temp_dir("ok");
        let counts = write_event_dump(&generator, 1_000, &dir)?;
        assert_eq!(
            counts,
            DumpCounts {
                persons: 20,
                auctions: 60,
                bids: 920
            }
        );
        for (name, header, rows) in [
            ("person.csv", PERSON_HEADER, 20),
            ("auction.csv", AUCTION_HEADER, 60),
            ("bid.csv", BID_HEADER, 920),
        ] {
            let text =
                std::fs::read_to_string(dir.join(name)).map_err(|source| NexmarkError::Io {
                    path: dir.join(name),
                    source,
                })?;
            let mut lines = text.lines();
            assert_eq!(lines.next(), Some(header));
            let cols = header.split(',').count();
            let body: Vec<&str> = lines.collect();
            assert_eq!(body.len(), rows, "{name}");
            // Generated strings never contain commas or quotes, so a plain split works.
            assert!(body.iter().all(|l| l.split(',').count() == cols), "{name}");
        }
        let bids = std::fs::read_to_string(dir.join("bid.csv")).unwrap_or_default();
        let Event::Bid(b) = generator.event(4) else {
            panic!("event 4 is a bid")
        };
        let mut want = Vec::new();
        write_bid_row(&mut want, &b);
        assert_eq!(
            bids.lines().nth(1),
            Some(String::from_utf8_lossy(&want).trim_end())
        );
        let _ = std::fs::remove_dir_all(&dir);
        Ok(())
    }

    #[test]
    fn dump_error_names_the_path() -> Result<(), NexmarkError> {
        let generator = Generator::new(NexmarkConfig::default())?;
        let blocker = temp_dir("blocker");
        std::fs::write(&blocker, b"not a dir").map_err(|source| NexmarkError::Io {
            path: blocker.clone(),
            source,
        })?;
        let err = write_event_dump(&generator, 10, &blocker.join("sub"));
        match err {
            Err(NexmarkError::Io { path, .. }) => assert!(path.starts_with(&blocker)),
            other => panic!("expected an I/O error, got {other:?}"),
        }
        let _ = std::fs::remove_file(&blocker);
        Ok(())
    }
}
