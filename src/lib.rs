//! llmd: a "make for benchmarks" for LLM inference stacks.
pub mod analysis;
pub mod backend;
pub mod cli;
pub mod config;
pub mod error;
pub mod experiment;
pub mod fsutil;
pub mod harness;
pub mod join;
pub mod phases;
pub mod pyfmt;
pub mod render;
pub mod sim;
pub mod timing;
pub mod tokenize;
pub mod yaml;
