//! High-resolution timing shared by the simulator and the load generator.
//!
//! tokio's timer wheel has millisecond resolution: `sleep_until(t)` fires up to ~1 ms
//! late, which would swamp the sub-millisecond token gaps and send schedules llmd has to
//! reproduce. [`sleep_until`] instead registers the deadline with one dedicated timer
//! thread that waits on a futex with the thread's timer slack reduced to 1 ns, then wakes
//! every task whose deadline has passed. Typical lateness is a few tens of microseconds.
//!
//! [`mono_ns`] reads `CLOCK_MONOTONIC` (the clock `Instant` uses on Linux), so timestamps
//! written by different processes on one machine — the simulator's journal and the
//! harness's records — can be compared directly.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

/// Nanoseconds of `CLOCK_MONOTONIC`.
pub fn mono_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes into the timespec we own; CLOCK_MONOTONIC always exists.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Converts an `Instant` to `CLOCK_MONOTONIC` nanoseconds.
pub fn instant_to_mono_ns(t: Instant) -> u64 {
    let (base_instant, base_ns) = *base();
    if t >= base_instant {
        base_ns + (t - base_instant).as_nanos() as u64
    } else {
        base_ns.saturating_sub((base_instant - t).as_nanos() as u64)
    }
}

fn base() -> &'static (Instant, u64) {
    static BASE: OnceLock<(Instant, u64)> = OnceLock::new();
    BASE.get_or_init(|| (Instant::now(), mono_ns()))
}

struct Entry {
    deadline: Instant,
    seq: u64,
    fired: Arc<AtomicBool>,
    waker: Waker,
}

impl PartialEq for Entry {
    fn eq(&self, other: &Self) -> bool {
        (self.deadline, self.seq) == (other.deadline, other.seq)
    }
}
impl Eq for Entry {}
impl PartialOrd for Entry {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Entry {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.deadline, self.seq).cmp(&(other.deadline, other.seq))
    }
}

struct Shared {
    heap: Mutex<(BinaryHeap<Reverse<Entry>>, u64)>,
    changed: Condvar,
}

fn shared() -> &'static Arc<Shared> {
    static TIMER: OnceLock<Arc<Shared>> = OnceLock::new();
    TIMER.get_or_init(|| {
        let shared = Arc::new(Shared { heap: Mutex::new((BinaryHeap::new(), 0)), changed: Condvar::new() });
        let worker = shared.clone();
        std::thread::Builder::new().name("llmd-hrtimer".into()).spawn(move || run_timer(&worker)).expect("spawn timer thread");
        shared
    })
}

fn run_timer(shared: &Shared) {
    // SAFETY: prctl(PR_SET_TIMERSLACK) only changes this thread's timer slack.
    unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, 1, 0, 0, 0) };
    let mut guard = shared.heap.lock().unwrap_or_else(|e| e.into_inner());
    loop {
        let now = Instant::now();
        let mut due = Vec::new();
        while guard.0.peek().is_some_and(|Reverse(e)| e.deadline <= now) {
            due.push(guard.0.pop().expect("peeked").0);
        }
        if !due.is_empty() {
            drop(guard);
            for e in due {
                e.fired.store(true, Ordering::Release);
                e.waker.wake();
            }
            guard = shared.heap.lock().unwrap_or_else(|e| e.into_inner());
            continue;
        }
        guard = match guard.0.peek().map(|Reverse(e)| e.deadline) {
            None => shared.changed.wait(guard).unwrap_or_else(|e| e.into_inner()),
            Some(next) => shared.changed.wait_timeout(guard, next.saturating_duration_since(now)).unwrap_or_else(|e| e.into_inner()).0,
        };
    }
}

/// A future that completes at `deadline` with sub-millisecond precision.
pub struct Sleep {
    deadline: Instant,
    fired: Option<Arc<AtomicBool>>,
}

/// Sleeps until `deadline` (see the module docs for precision).
pub fn sleep_until(deadline: Instant) -> Sleep {
    Sleep { deadline, fired: None }
}

/// Sleeps for `duration`.
pub fn sleep(duration: Duration) -> Sleep {
    sleep_until(Instant::now() + duration)
}

impl Future for Sleep {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if let Some(fired) = &self.fired {
            if fired.load(Ordering::Acquire) {
                return Poll::Ready(());
            }
        } else if Instant::now() >= self.deadline {
            return Poll::Ready(());
        }
        if self.fired.is_none() {
            let fired = Arc::new(AtomicBool::new(false));
            let shared = shared();
            let mut guard = shared.heap.lock().unwrap_or_else(|e| e.into_inner());
            guard.1 += 1;
            let seq = guard.1;
            let earliest = guard.0.peek().is_none_or(|Reverse(e)| self.deadline < e.deadline);
            guard.0.push(Reverse(Entry { deadline: self.deadline, seq, fired: fired.clone(), waker: cx.waker().clone() }));
            drop(guard);
            if earliest {
                shared.changed.notify_one();
            }
            self.fired = Some(fired);
        }
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mono_clock_agrees_with_instant() {
        let a = mono_ns();
        let b = instant_to_mono_ns(Instant::now());
        let c = mono_ns();
        assert!(a <= b + 1_000 && b <= c + 1_000, "{a} {b} {c}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sleeps_are_precise_and_never_early() {
        let mut late = Vec::new();
        for i in 0..50u64 {
            let deadline = Instant::now() + Duration::from_micros(300 + i * 37);
            sleep_until(deadline).await;
            let now = Instant::now();
            assert!(now >= deadline, "woke early");
            late.push((now - deadline).as_micros());
        }
        late.sort_unstable();
        // Generous bound for a loaded CI machine; typical is tens of microseconds.
        assert!(late[late.len() / 2] < 500, "median lateness {}us", late[late.len() / 2]);
    }
}
