//! High-resolution timing shared by the simulator and the load generator.
//!
//! tokio's timer wheel has millisecond resolution: `sleep_until(t)` fires up to ~1 ms
//! late, which would swamp the sub-millisecond token gaps and send schedules llmd has to
//! reproduce. [`sleep_until`] instead keeps deadlines in a heap served by a Linux
//! `timerfd` (armed with an absolute `CLOCK_MONOTONIC` time) that is registered with the
//! tokio reactor itself: the kernel's high-resolution timer makes the fd readable at the
//! deadline and the runtime wakes the due tasks from its own event loop — no extra
//! thread competing for CPU, no cross-thread wake-ups. Outside a tokio runtime with I/O
//! enabled, a dedicated timer thread does the same job.
//!
//! [`mono_ns`] reads `CLOCK_MONOTONIC` (the clock `Instant` uses on Linux), so timestamps
//! written by different processes on one machine — the simulator's journal and the
//! harness's records — can be compared directly.

use std::cell::RefCell;
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::future::Future;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock, Weak};
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

#[derive(Default)]
struct Heap {
    entries: BinaryHeap<Reverse<Entry>>,
    seq: u64,
    /// The deadline the timerfd is armed for.
    armed: Option<Instant>,
}

impl Heap {
    fn push(&mut self, deadline: Instant, fired: Arc<AtomicBool>, waker: Waker) {
        self.seq += 1;
        let seq = self.seq;
        self.entries.push(Reverse(Entry { deadline, seq, fired, waker }));
    }

    fn take_due(&mut self, now: Instant) -> Vec<Entry> {
        let mut due = Vec::new();
        while self.entries.peek().is_some_and(|Reverse(e)| e.deadline <= now) {
            due.push(self.entries.pop().expect("peeked").0);
        }
        due
    }

    fn next(&self) -> Option<Instant> {
        self.entries.peek().map(|Reverse(e)| e.deadline)
    }
}

/// Deadlines this close to the one that fires are served together. Waking a batch at
/// once instead of one task per timer expiry is what keeps the timer cheap at 10⁵
/// wake-ups per second; the price is waking up to this much early.
pub const COALESCE: Duration = Duration::from_micros(150);

fn fire(due: Vec<Entry>) {
    for e in due {
        e.fired.store(true, Ordering::Release);
        e.waker.wake();
    }
}

/// Deadlines served by a timerfd inside one tokio runtime.
struct ReactorWheel {
    heap: Mutex<Heap>,
    fd: tokio::io::unix::AsyncFd<OwnedFd>,
}

impl ReactorWheel {
    fn new() -> std::io::Result<Arc<ReactorWheel>> {
        // SAFETY: timerfd_create returns a new fd we take ownership of (or -1).
        let raw = unsafe { libc::timerfd_create(libc::CLOCK_MONOTONIC, libc::TFD_NONBLOCK | libc::TFD_CLOEXEC) };
        if raw < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: raw is a valid, owned file descriptor.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        // SAFETY: the OwnedFd stays open, and is the same fd, for as long as the AsyncFd owns it.
        let fd =
            unsafe { tokio::io::unix::AsyncFd::register_with_interest(fd, tokio::io::Interest::READABLE) }.map_err(|e| e.into_parts().1)?;
        Ok(Arc::new(ReactorWheel { heap: Mutex::new(Heap::default()), fd }))
    }

    fn arm(fd: RawFd, deadline: Option<Instant>) {
        let ts = match deadline {
            Some(d) => {
                let ns = instant_to_mono_ns(d).max(1);
                libc::timespec { tv_sec: (ns / 1_000_000_000) as libc::time_t, tv_nsec: (ns % 1_000_000_000) as libc::c_long }
            }
            // Zero disarms.
            None => libc::timespec { tv_sec: 0, tv_nsec: 0 },
        };
        let spec = libc::itimerspec { it_interval: libc::timespec { tv_sec: 0, tv_nsec: 0 }, it_value: ts };
        // SAFETY: fd is our timerfd; spec is a valid itimerspec.
        unsafe { libc::timerfd_settime(fd, libc::TFD_TIMER_ABSTIME, &spec, std::ptr::null_mut()) };
    }

    fn register(&self, deadline: Instant, fired: Arc<AtomicBool>, waker: Waker) {
        let mut heap = self.heap.lock().unwrap_or_else(|e| e.into_inner());
        heap.push(deadline, fired, waker);
        if heap.armed.is_none_or(|a| deadline < a) {
            heap.armed = Some(deadline);
            Self::arm(self.fd.get_ref().as_raw_fd(), Some(deadline));
        }
    }

    async fn run(self: Arc<Self>) {
        loop {
            let Ok(mut guard) = self.fd.readable().await else { return };
            let mut buf = [0u8; 8];
            // SAFETY: reading 8 bytes into our buffer from our nonblocking timerfd.
            let n = unsafe { libc::read(self.fd.get_ref().as_raw_fd(), buf.as_mut_ptr().cast(), 8) };
            if n < 0 {
                guard.clear_ready();
            }
            let due = {
                let mut heap = self.heap.lock().unwrap_or_else(|e| e.into_inner());
                let due = heap.take_due(Instant::now() + COALESCE);
                heap.armed = heap.next();
                Self::arm(self.fd.get_ref().as_raw_fd(), heap.armed);
                due
            };
            fire(due);
        }
    }
}

thread_local! {
    static REACTOR_WHEEL: RefCell<Weak<ReactorWheel>> = const { RefCell::new(Weak::new()) };
}

/// The current thread's reactor wheel, created (with its serving task) on first use.
/// The task owns the wheel, so the wheel dies with its runtime.
fn reactor_wheel() -> Option<Arc<ReactorWheel>> {
    let handle = tokio::runtime::Handle::try_current().ok()?;
    REACTOR_WHEEL.with(|cell| {
        if let Some(w) = cell.borrow().upgrade() {
            return Some(w);
        }
        let wheel = ReactorWheel::new().ok()?;
        handle.spawn(wheel.clone().run());
        *cell.borrow_mut() = Arc::downgrade(&wheel);
        Some(wheel)
    })
}

/// Fallback outside tokio: a timer thread.
struct ThreadWheel {
    heap: Mutex<Heap>,
    changed: Condvar,
}

fn thread_wheel() -> &'static ThreadWheel {
    static WHEEL: OnceLock<&'static ThreadWheel> = OnceLock::new();
    WHEEL.get_or_init(|| {
        let wheel: &'static ThreadWheel = Box::leak(Box::new(ThreadWheel { heap: Mutex::new(Heap::default()), changed: Condvar::new() }));
        std::thread::Builder::new()
            .name("llmd-hrtimer".into())
            .spawn(move || {
                // SAFETY: prctl(PR_SET_TIMERSLACK) only changes this thread's timer slack.
                unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, 1, 0, 0, 0) };
                let mut heap = wheel.heap.lock().unwrap_or_else(|e| e.into_inner());
                loop {
                    let due = heap.take_due(Instant::now() + COALESCE);
                    if !due.is_empty() {
                        drop(heap);
                        fire(due);
                        heap = wheel.heap.lock().unwrap_or_else(|e| e.into_inner());
                        continue;
                    }
                    heap = match heap.next() {
                        None => wheel.changed.wait(heap).unwrap_or_else(|e| e.into_inner()),
                        Some(next) => {
                            wheel
                                .changed
                                .wait_timeout(heap, next.saturating_duration_since(Instant::now()))
                                .unwrap_or_else(|e| e.into_inner())
                                .0
                        }
                    };
                }
            })
            .expect("spawn timer thread");
        wheel
    })
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

impl Sleep {
    pub fn deadline(&self) -> Instant {
        self.deadline
    }
}

impl Future for Sleep {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        match &self.fired {
            Some(fired) if fired.load(Ordering::Acquire) => return Poll::Ready(()),
            Some(_) => return Poll::Pending,
            None if Instant::now() >= self.deadline => return Poll::Ready(()),
            None => {}
        }
        let fired = Arc::new(AtomicBool::new(false));
        match reactor_wheel() {
            Some(wheel) => wheel.register(self.deadline, fired.clone(), cx.waker().clone()),
            None => {
                let wheel = thread_wheel();
                let mut heap = wheel.heap.lock().unwrap_or_else(|e| e.into_inner());
                let earliest = heap.next().is_none_or(|n| self.deadline < n);
                heap.push(self.deadline, fired.clone(), cx.waker().clone());
                drop(heap);
                if earliest {
                    wheel.changed.notify_one();
                }
            }
        }
        self.fired = Some(fired);
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

    async fn lateness() -> Vec<u128> {
        let mut late = Vec::new();
        for i in 0..50u64 {
            let deadline = Instant::now() + Duration::from_micros(300 + i * 37);
            sleep_until(deadline).await;
            let now = Instant::now();
            assert!(now + COALESCE >= deadline, "woke too early");
            late.push(now.saturating_duration_since(deadline).as_micros());
        }
        late.sort_unstable();
        late
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn reactor_sleeps_are_precise_and_never_early() {
        let late = lateness().await;
        // Generous bound for a loaded CI machine; typical is tens of microseconds.
        assert!(late[late.len() / 2] < 500, "median lateness {}us", late[late.len() / 2]);
    }

    #[test]
    fn thread_timer_outside_tokio() {
        let waker = std::task::Waker::noop();
        let mut cx = Context::from_waker(waker);
        let deadline = Instant::now() + Duration::from_millis(2);
        let mut s = std::pin::pin!(sleep_until(deadline));
        while s.as_mut().poll(&mut cx).is_pending() {
            std::thread::sleep(Duration::from_micros(100));
        }
        assert!(Instant::now() + COALESCE >= deadline);
    }
}
