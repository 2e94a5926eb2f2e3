//! llmd: a "make for benchmarks" for LLM inference stacks.
pub mod pyfmt;
pub mod yaml;
