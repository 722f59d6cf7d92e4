//! Nexmark queries written on the DataStream API (see `shared/reference/nexmark.md`).
//!
//! Each query turns the stream of events into a stream of output rows that know how to write
//! themselves as the specification's CSV.

mod hot_items;
mod joins;
mod projections;
mod rows;
mod side;
mod stateless;
mod updating;
mod windowed;

pub use hot_items::q5;
pub use joins::{Q3Row, Q8Row, Q9Row, Q20Row, auctions, persons, q3, q4, q6, q8, q9, q20};
pub use projections::{Q10Row, q10, q10_partition};
pub use projections::{Q14Row, Q21Row, Q22Row, bid_time_type, q14, q21, q22, url_channel_id};
pub use rows::{Day, Decimal3, HourMinute, Timestamp};
pub use side::{Q12Row, Q13Row, SIDE_INPUT_ROWS, SideInputError, SideTable, q12, q13};
pub use stateless::{Q0Row, Q1Row, q0, q1, q2};
pub use updating::{BidStats, Q15Row, Q16Row, Q17Row, Q18Row, Q19Row, q15, q16, q17, q18, q19};
pub use windowed::{Count, Q7Partial, Q7Row, Q11Row, WATERMARK_DELAY, q7, q11};

use std::str::FromStr;

use weir::nexmark::{Bid, Event};
use weir::source::nexmark::NexmarkSource;
use weir::{Change, CsvRecord, Data, Env, Stream, WatermarkStrategy};

/// The queries the harness knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Query {
    /// Generate every event and drop it: the ceiling of every query.
    Gen,
    Q0,
    Q1,
    Q2,
    Q3,
    Q4,
    Q5,
    Q6,
    Q7,
    Q8,
    Q9,
    Q10,
    Q11,
    Q12,
    Q13,
    Q14,
    Q15,
    Q16,
    Q17,
    Q18,
    Q19,
    Q21,
    Q22,
    Q20,
}

impl Query {
    /// All runnable queries, in order.
    pub const ALL: [Query; 24] = [
        Query::Gen,
        Query::Q0,
        Query::Q1,
        Query::Q2,
        Query::Q3,
        Query::Q4,
        Query::Q5,
        Query::Q6,
        Query::Q7,
        Query::Q8,
        Query::Q9,
        Query::Q10,
        Query::Q11,
        Query::Q12,
        Query::Q13,
        Query::Q14,
        Query::Q15,
        Query::Q16,
        Query::Q17,
        Query::Q18,
        Query::Q19,
        Query::Q20,
        Query::Q21,
        Query::Q22,
    ];

    /// The name used on the command line and in JSON output.
    pub fn name(self) -> &'static str {
        match self {
            Query::Gen => "gen",
            Query::Q0 => "q0",
            Query::Q1 => "q1",
            Query::Q2 => "q2",
            Query::Q3 => "q3",
            Query::Q4 => "q4",
            Query::Q8 => "q8",
            Query::Q9 => "q9",
            Query::Q20 => "q20",
            Query::Q10 => "q10",
            Query::Q12 => "q12",
            Query::Q13 => "q13",
            Query::Q5 => "q5",
            Query::Q6 => "q6",
            Query::Q7 => "q7",
            Query::Q11 => "q11",
            Query::Q14 => "q14",
            Query::Q15 => "q15",
            Query::Q16 => "q16",
            Query::Q17 => "q17",
            Query::Q18 => "q18",
            Query::Q19 => "q19",
            Query::Q21 => "q21",
            Query::Q22 => "q22",
        }
    }

    /// The CSV header of the query's output.
    pub fn header(self) -> &'static str {
        match self {
            Query::Gen => "kind,date_time",
            Query::Q0 | Query::Q1 => "auction,bidder,price,date_time,extra",
            Query::Q2 => "auction,price",
            Query::Q3 => "name,city,state,id",
            Query::Q4 => "category,avg_final",
            Query::Q8 => "id,name,starttime",
            Query::Q9 => {
                "id,item_name,description,initial_bid,reserve,date_time,expires,seller,category,extra,auction,bidder,price,bid_date_time,bid_extra"
            }
            Query::Q20 => {
                "auction,bidder,price,channel,url,bid_date_time,bid_extra,item_name,description,initial_bid,reserve,auction_date_time,expires,seller,category,auction_extra"
            }
            Query::Q10 => "auction,bidder,price,date_time,extra,dt,hm",
            Query::Q12 => "bidder,bid_count,starttime,endtime",
            Query::Q13 => "auction,bidder,price,date_time,value",
            Query::Q5 => "auction,num",
            Query::Q6 => "seller,avg",
            Query::Q7 => "auction,price,bidder,date_time,extra",
            Query::Q11 => "bidder,bid_count,starttime,endtime",
            Query::Q14 => "auction,bidder,price,bid_time_type,date_time,extra,c_counts",
            Query::Q15 => {
                "day,total_bids,rank1_bids,rank2_bids,rank3_bids,total_bidders,rank1_bidders,rank2_bidders,rank3_bidders,total_auctions,rank1_auctions,rank2_auctions,rank3_auctions"
            }
            Query::Q16 => {
                "channel,day,minute,total_bids,rank1_bids,rank2_bids,rank3_bids,total_bidders,rank1_bidders,rank2_bidders,rank3_bidders,total_auctions,rank1_auctions,rank2_auctions,rank3_auctions"
            }
            Query::Q17 => {
                "auction,day,total_bids,rank1_bids,rank2_bids,rank3_bids,min_price,max_price,avg_price,sum_price"
            }
            Query::Q18 => "auction,bidder,price,channel,url,date_time,extra",
            Query::Q19 => "auction,bidder,price,channel,url,date_time,extra,rank_number",
            Query::Q21 => "auction,bidder,price,channel,channel_id",
            Query::Q22 => "auction,bidder,price,channel,dir1,dir2,dir3",
        }
    }
}

impl FromStr for Query {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        Query::ALL
            .into_iter()
            .find(|q| q.name().eq_ignore_ascii_case(s))
            .ok_or_else(|| {
                let known: Vec<&str> = Query::ALL.iter().map(|q| q.name()).collect();
                format!("unknown query `{s}` (known: {})", known.join(", "))
            })
    }
}

/// The Nexmark events of `source` with watermarks trailing the event time by
/// `WATERMARK_DELAY`, as Flink's Nexmark DDL declares them.
pub fn events(env: &Env, source: NexmarkSource) -> Stream<Event> {
    env.from_source_with_watermarks(
        source,
        WatermarkStrategy::bounded_out_of_orderness(WATERMARK_DELAY, |e: &Event| e.date_time()),
    )
}

/// The bids of the event stream.
pub fn bids(events: &Stream<Event>) -> Stream<Bid> {
    bids_as(events, |b| *b)
}

/// The bids of the event stream cut to what `project` keeps: a query needing a few columns
/// projects before its exchange rather than moving whole 80-byte bids across shards.
pub fn bids_as<T: Data>(
    events: &Stream<Event>,
    project: impl Fn(&Bid) -> T + Clone + Send + 'static,
) -> Stream<T> {
    events
        .flat_map(move |e| match e {
            Event::Bid(b) => Some(project(&b)),
            _ => None,
        })
        .name("bids")
}

/// Something that consumes a query's output rows: the harness attaches a counting or a CSV
/// sink, tests attach a collector.
pub trait RowSink {
    /// Attaches a sink to `rows` (a query whose rows are final when emitted).
    fn attach<R: Data + CsvRecord>(&mut self, query: Query, rows: Stream<R>);
    /// Attaches a sink to `changes` (a query whose result updates: its output is the table
    /// the changelog describes after the whole input).
    fn attach_changelog<R: Data + CsvRecord>(&mut self, query: Query, changes: Stream<Change<R>>);
    /// Attaches a sink to `rows` that are written to files partitioned by `partition`
    /// (which appends a row's relative directory); collectors may ignore the partitioning.
    fn attach_partitioned<R: Data + CsvRecord>(
        &mut self,
        query: Query,
        rows: Stream<R>,
        partition: fn(&R, &mut String),
    ) {
        let _ = partition;
        self.attach(query, rows)
    }
}

/// Options some queries need.
#[derive(Clone, Debug, Default)]
pub struct QueryOptions {
    /// q13's side table (`key,value` CSV); by default a generated one in the temp directory.
    pub side_input: Option<std::path::PathBuf>,
}

/// Builds `query` over `events` and hands its output to `sink`.
pub fn build(
    query: Query,
    events: &Stream<Event>,
    sink: &mut impl RowSink,
) -> Result<(), SideInputError> {
    build_with(query, events, sink, &QueryOptions::default())
}

/// Builds `query` with `options`.
pub fn build_with(
    query: Query,
    events: &Stream<Event>,
    sink: &mut impl RowSink,
    options: &QueryOptions,
) -> Result<(), SideInputError> {
    match query {
        Query::Q10 => sink.attach_partitioned(query, q10(events), q10_partition),
        Query::Q12 => sink.attach(query, q12(events)),
        Query::Q13 => {
            let table = match &options.side_input {
                Some(path) => SideTable::load(path)?,
                None => SideTable::default_file()?,
            };
            sink.attach(query, q13(events, table))
        }
        Query::Gen => sink.attach(query, events.clone()),
        Query::Q0 => sink.attach(query, q0(events)),
        Query::Q1 => sink.attach(query, q1(events)),
        Query::Q2 => sink.attach(query, q2(events)),
        Query::Q3 => sink.attach(query, q3(events)),
        Query::Q4 => sink.attach_changelog(query, q4(events)),
        Query::Q8 => sink.attach(query, q8(events)),
        Query::Q9 => sink.attach_changelog(query, q9(events)),
        Query::Q20 => sink.attach(query, q20(events)),
        Query::Q5 => sink.attach(query, q5(events)),
        Query::Q6 => sink.attach_changelog(query, q6(events)),
        Query::Q7 => sink.attach(query, q7(events)),
        Query::Q11 => sink.attach(query, q11(events)),
        Query::Q14 => sink.attach(query, q14(events)),
        Query::Q15 => sink.attach_changelog(query, q15(events)),
        Query::Q16 => sink.attach_changelog(query, q16(events)),
        Query::Q17 => sink.attach_changelog(query, q17(events)),
        Query::Q18 => sink.attach_changelog(query, q18(events)),
        Query::Q19 => sink.attach_changelog(query, q19(events)),
        Query::Q21 => sink.attach(query, q21(events)),
        Query::Q22 => sink.attach(query, q22(events)),
    }
    Ok(())
}
