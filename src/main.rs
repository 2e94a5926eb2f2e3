//! The `llmd` binary: everything lives in the library; see `llmd::cli`.
// mimalloc: faster than glibc's for the many small allocations of deciding thousands of
// nodes on several threads (see Cargo.toml).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    llmd::cli::main()
}
