//! Progress for the nodes in flight. On a terminal a board below the log shows one line
//! per executing node (its elapsed time) and the counts done / running / waiting /
//! failed, redrawn every second; lines printed through [`Board::line`] scroll above it.
//! Elsewhere (CI logs, pipes) nothing is redrawn: the start and end lines of each node
//! are the log, plus one line every 30 s naming what is still running.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::sync::mpsc::{RecvTimeoutError, Sender, channel};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

#[derive(Default)]
struct State {
    live: BTreeMap<u64, (String, Instant)>,
    next: u64,
    done: usize,
    failed: usize,
    /// Lines of the board on screen now.
    drawn: usize,
}

pub struct Board {
    state: Mutex<State>,
    tty: bool,
    enabled: bool,
    total: usize,
    stop: Mutex<Option<Sender<()>>>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl Board {
    /// A board for `total` nodes; `enabled` false prints nothing at all (`--json`).
    pub fn start(enabled: bool, total: usize) -> Arc<Board> {
        let tty = enabled && std::io::stderr().is_terminal();
        let board =
            Arc::new(Board { state: Mutex::new(State::default()), tty, enabled, total, stop: Mutex::new(None), thread: Mutex::new(None) });
        if enabled {
            let (stop, stopped) = channel::<()>();
            let b = board.clone();
            let every = if tty { Duration::from_secs(1) } else { Duration::from_secs(30) };
            let thread = std::thread::Builder::new()
                .name("llmd-progress".into())
                .spawn(move || {
                    while let Err(RecvTimeoutError::Timeout) = stopped.recv_timeout(every) {
                        b.tick();
                    }
                })
                .ok();
            *board.stop.lock().unwrap_or_else(|e| e.into_inner()) = Some(stop);
            *board.thread.lock().unwrap_or_else(|e| e.into_inner()) = thread;
        }
        board
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A node starts; the token ends it.
    pub fn begin(&self, label: String) -> u64 {
        let mut s = self.lock();
        s.next += 1;
        let token = s.next;
        s.live.insert(token, (label, Instant::now()));
        token
    }

    pub fn end(&self, token: u64, failed: bool) {
        let mut s = self.lock();
        s.live.remove(&token);
        s.done += 1;
        s.failed += usize::from(failed);
    }

    /// Prints `text` even when the board is off (warnings in `--json` mode).
    pub fn warn(&self, text: &str) {
        if self.enabled {
            self.line(text);
        } else {
            say!("{text}");
        }
    }

    /// Prints `text` as a log line (above the board on a terminal).
    pub fn line(&self, text: &str) {
        if !self.enabled {
            return;
        }
        let mut s = self.lock();
        let mut err = std::io::stderr().lock();
        self.clear(&mut s, &mut err);
        crate::util::output::checked(writeln!(err, "{text}"));
        if self.tty {
            self.draw(&mut s, &mut err);
        }
        crate::util::output::checked(err.flush());
    }

    fn clear(&self, s: &mut State, err: &mut impl Write) {
        if s.drawn > 0 {
            let _ = write!(err, "\x1b[{}A\r\x1b[J", s.drawn);
            s.drawn = 0;
        }
    }

    fn draw(&self, s: &mut State, err: &mut impl Write) {
        if s.live.is_empty() {
            return;
        }
        for (label, since) in s.live.values() {
            let _ = writeln!(err, "  … {label}  {:.0} s", since.elapsed().as_secs_f64());
        }
        let waiting = self.total.saturating_sub(s.done + s.live.len());
        let _ = writeln!(err, "  {} done · {} running · {waiting} waiting · {} failed", s.done, s.live.len(), s.failed);
        s.drawn = s.live.len() + 1;
    }

    fn tick(&self) {
        let mut s = self.lock();
        let mut err = std::io::stderr().lock();
        if self.tty {
            self.clear(&mut s, &mut err);
            self.draw(&mut s, &mut err);
        } else if !s.live.is_empty() {
            let running: Vec<String> =
                s.live.values().map(|(label, since)| format!("{label} ({:.0} s)", since.elapsed().as_secs_f64())).collect();
            let _ = writeln!(err, "  … still running: {}", running.join(", "));
        }
        crate::util::output::checked(err.flush());
    }

    /// Stops redrawing and removes the board from the screen.
    pub fn finish(&self) {
        drop(self.stop.lock().unwrap_or_else(|e| e.into_inner()).take());
        if let Some(t) = self.thread.lock().unwrap_or_else(|e| e.into_inner()).take() {
            let _ = t.join();
        }
        let mut s = self.lock();
        let mut err = std::io::stderr().lock();
        self.clear(&mut s, &mut err);
        crate::util::output::checked(err.flush());
    }
}
