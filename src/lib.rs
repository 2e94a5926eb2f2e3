//! llmd: a "make for benchmarks" for LLM inference stacks.
//!
//! Modules are layered; a module imports only modules of lower layers (ARCHITECTURE.md
//! lists them, and `tests/layers.rs` checks every `crate::` path against that list).
// First: `say!` (util::output) is in scope for every module declared after it.
#[macro_use]
pub mod util;
pub mod analysis;
pub mod backend;
pub mod cli;
pub mod config;
pub mod engine;
pub mod error;
pub mod experiment;
pub mod harness;
pub mod http;
pub mod jinja;
pub mod phases;
pub mod pyfmt;
pub mod render;
pub mod schema;
pub mod sim;
pub mod stats;
pub mod store;
pub mod timing;
pub mod tokenize;
pub mod yaml;
