//! The DataStream API: what users write jobs with.

mod env;
mod graph;
mod keyed;
mod stream;

pub use env::{Env, EnvBuilder};
pub use keyed::KeyedStream;
pub use stream::Stream;
