//! Analysis of benchmark results.
//!
//! * [`stats`] — summary statistics with numpy's conventions.

pub mod stats;
