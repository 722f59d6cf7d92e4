//! Channels between shards.
//!
//! `spsc` is the lock-free ring that carries batches between two shards of one machine;
//! `exchange` routes batches of one edge to their destination shards and receives them there.
//! An exchange talks to its peers only through `ChannelSender`/`ChannelReceiver`, so a network
//! channel (the `net` crate) can stand beside the local SPSC ring without operators changing.

pub mod exchange;
pub mod spsc;

use std::task::{Context, Poll};

/// Why a send did not go through.
#[derive(Debug)]
pub enum SendError<T> {
    /// No room now; the value is handed back.
    Full(T),
    /// The receiving side is gone; the value is handed back.
    Closed(T),
}

/// Why a receive returned nothing.
#[derive(Debug, PartialEq, Eq)]
pub enum RecvError {
    /// Nothing to receive now.
    Empty,
    /// The sender is gone and everything it sent was received.
    Closed,
}

/// The sending end of a channel to one destination shard.
pub trait ChannelSender<T> {
    /// Sends without waiting.
    fn try_send(&mut self, value: T) -> Result<(), SendError<T>>;
    /// Ready when a send may succeed (or the channel closed); registers the waker otherwise.
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<()>;
    /// Values waiting in the channel.
    fn queued(&self) -> usize;
}

/// The receiving end of a channel from one source shard.
pub trait ChannelReceiver<T> {
    /// Receives without waiting.
    fn try_recv(&mut self) -> Result<T, RecvError>;
    /// Receives, or registers the waker and returns `Pending`; `Ready(None)` once closed and drained.
    fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Option<T>>;
}

impl<T: Send> ChannelSender<T> for spsc::Producer<T> {
    #[inline]
    fn try_send(&mut self, value: T) -> Result<(), SendError<T>> {
        self.try_push(value).map_err(|e| match e {
            spsc::PushError::Full(v) => SendError::Full(v),
            spsc::PushError::Closed(v) => SendError::Closed(v),
        })
    }

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        spsc::Producer::poll_ready(self, cx).map(|_| ())
    }

    fn queued(&self) -> usize {
        self.len()
    }
}

impl<T: Send> ChannelReceiver<T> for spsc::Consumer<T> {
    #[inline]
    fn try_recv(&mut self) -> Result<T, RecvError> {
        self.try_pop().map_err(|e| match e {
            spsc::PopError::Empty => RecvError::Empty,
            spsc::PopError::Closed => RecvError::Closed,
        })
    }

    fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Option<T>> {
        self.poll_pop(cx)
    }
}
