//! Progress for long nodes: while a node executes, a background thread shows how long it
//! has been running. On a terminal it redraws one status line every second; elsewhere (CI
//! logs, pipes) it prints a plain line every 30 s so logs stay short but alive.

use std::io::{IsTerminal, Write};
use std::sync::mpsc::{RecvTimeoutError, Sender, channel};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

pub struct Ticker {
    /// Dropping it wakes the thread at once (a sleeping thread would delay every node).
    stop: Option<Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Ticker {
    /// Starts showing progress for `label` (e.g. `[4/19] run/a/sim/r1#1`) after `after`.
    pub fn start(label: String, after: Duration) -> Ticker {
        let (stop, stopped) = channel::<()>();
        let thread = std::thread::Builder::new()
            .name("llmd-progress".into())
            .spawn(move || {
                let tty = std::io::stderr().is_terminal();
                let started = Instant::now();
                let every = if tty { Duration::from_secs(1) } else { Duration::from_secs(30) };
                let mut next = after;
                let mut drawn = false;
                while let Err(RecvTimeoutError::Timeout) = stopped.recv_timeout(Duration::from_millis(100)) {
                    let elapsed = started.elapsed();
                    if elapsed < next {
                        continue;
                    }
                    next = elapsed + every;
                    let mut err = std::io::stderr().lock();
                    if tty {
                        let _ = write!(err, "\r\x1b[2K  … {label}  running for {:.0} s", elapsed.as_secs_f64());
                        drawn = true;
                    } else {
                        let _ = writeln!(err, "  … {label}  still running after {:.0} s", elapsed.as_secs_f64());
                    }
                    let _ = err.flush();
                }
                if drawn {
                    let _ = write!(std::io::stderr().lock(), "\r\x1b[2K");
                }
            })
            .ok();
        Ticker { stop: Some(stop), thread }
    }
}

impl Drop for Ticker {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
