//! The Weir benchmark harness: Nexmark queries on the DataStream API, and the runner that
//! measures them.

pub mod queries;
pub mod runner;
