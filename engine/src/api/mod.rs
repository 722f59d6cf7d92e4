//! The DataStream API: what users write jobs with.

mod connect;
mod env;
pub(crate) mod graph;
mod keyed;
mod stream;
mod window;

pub use connect::ConnectedKeyedStreams;
pub use env::{Env, EnvBuilder};
pub use keyed::KeyedStream;
pub use stream::{OutputTag, Stream};
pub use window::{LATE_DATA, WindowedStream};
