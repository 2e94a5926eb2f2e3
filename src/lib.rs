//! llmd: a "make for benchmarks" for LLM inference stacks.
pub mod cli;
pub mod config;
pub mod error;
pub mod pyfmt;
pub mod render;
pub mod sim;
pub mod timing;
pub mod yaml;
