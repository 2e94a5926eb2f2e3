//! The `llmd` binary: everything lives in the library; see `llmd::cli`.
fn main() -> std::process::ExitCode {
    llmd::cli::main()
}
