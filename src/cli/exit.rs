//! Exit codes, in one place.
//!
//! | code | meaning |
//! |------|---------|
//! | 0 | success |
//! | 1 | the work failed (a server did not come up, a run failed, I/O error) |
//! | 2 | usage or input error (bad flag, bad YAML, unknown spec, template error) |
//! | 130 | interrupted (Ctrl-C, SIGTERM); the cache stays resumable |

use std::process::ExitCode;

use crate::error::InputError;

pub const SUCCESS: u8 = 0;
pub const FAILURE: u8 = 1;
pub const INPUT_ERROR: u8 = 2;
/// Stopped by Ctrl-C or SIGTERM (128 + SIGINT, as shells report it).
pub const INTERRUPTED: u8 = 130;

/// Prints an error chain and returns the exit code it maps to.
pub fn report(err: &anyhow::Error) -> ExitCode {
    let input = err.chain().any(|e| e.is::<InputError>());
    eprintln!("error: {err}");
    for cause in err.chain().skip(1) {
        if !cause.is::<InputError>() || !input {
            eprintln!("  caused by: {cause}");
        }
    }
    ExitCode::from(if input { INPUT_ERROR } else { FAILURE })
}
