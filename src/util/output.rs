//! Output that outlives its reader. `llmd build … 2>&1 | head` closes stderr half way
//! through a build; Rust's print macros then panic, which would end the build without
//! tearing down what it stood up. `say!` (in scope in every module) writes a line to stderr and never
//! panics: when the reader is gone it calls [`closed`], which points stdout and stderr at
//! `/dev/null` (every later write, print macros included, succeeds and vanishes) and runs
//! the hooks registered with [`on_closed`] once — a build stops as on Ctrl-C.

use std::io::Write;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

type Hook = Box<dyn Fn() + Send + Sync>;

static HOOKS: Mutex<Vec<Hook>> = Mutex::new(Vec::new());
static CLOSED: AtomicBool = AtomicBool::new(false);

/// Writes one line to stderr; a closed stderr calls [`closed`] instead of panicking.
macro_rules! say {
    ($($arg:tt)*) => { $crate::util::output::line(format_args!($($arg)*)) };
}

#[doc(hidden)]
pub fn line(args: std::fmt::Arguments<'_>) {
    let mut err = std::io::stderr().lock();
    let result = err.write_fmt(format_args!("{args}\n"));
    drop(err);
    checked(result);
}

/// Looks at the result of a write to stdout or stderr: a reader that has gone calls
/// [`closed`]; other errors are ignored (progress output is best effort).
pub fn checked(result: std::io::Result<()>) {
    if let Err(e) = result
        && e.kind() == std::io::ErrorKind::BrokenPipe
    {
        closed();
    }
}

/// Runs `hook` when the output's reader goes away (at most once per process).
pub fn on_closed(hook: impl Fn() + Send + Sync + 'static) {
    HOOKS.lock().unwrap_or_else(|e| e.into_inner()).push(Box::new(hook));
}

/// Whether a hook waits for the output to close (a build is in progress).
pub fn watched() -> bool {
    !HOOKS.lock().unwrap_or_else(|e| e.into_inner()).is_empty()
}

/// The reader of stdout or stderr has gone: both now write to `/dev/null`, and the
/// registered hooks run (once).
pub fn closed() {
    if CLOSED.swap(true, Ordering::SeqCst) {
        return;
    }
    if let Ok(null) = std::fs::OpenOptions::new().write(true).open("/dev/null") {
        use std::os::fd::AsRawFd;
        // SAFETY: dup2 onto the standard descriptors from a descriptor we own; both stay
        // valid (pointing at /dev/null) for the rest of the process.
        unsafe {
            libc::dup2(null.as_raw_fd(), 1);
            libc::dup2(null.as_raw_fd(), 2);
        }
    }
    for hook in HOOKS.lock().unwrap_or_else(|e| e.into_inner()).iter() {
        hook();
    }
}
