//! Small helpers every layer may use: nothing here knows about plans, stacks or
//! backends.
//!
//! * [`raise_nofile_limit`] — the descriptor limit load generators need; [`drop_in_background`] — freeing big values off the exit path; [`map_chunks`] — work split over scoped threads; [`lap`] — `LLMD_TIMINGS` lines; [`digest`] — blake3 digests and node keys; [`embedded`] — the config and workload trees built into the binary; [`fs`] — atomic writes and scratch directories; [`join`] — `join_all` for borrowed
//!   futures; [`output`] — stderr lines that survive a closed pipe (`say!`); [`rng`] — SplitMix64 and string hashing; [`steps`] — `--step` selections; [`textdiff`] — short unified diffs for `why`.

pub mod digest;
pub mod embedded;
pub mod fs;
pub mod join;
#[macro_use]
pub mod output;
pub mod rng;
pub mod steps;
pub mod textdiff;

use std::path::Path;

/// `LLMD_TIMINGS=1`: prints `what` with the milliseconds since the first lap (the
/// start of the command): where a build's own time goes. Off, it costs one cached
/// lookup.
pub fn lap(what: &str) {
    static START: std::sync::OnceLock<Option<std::time::Instant>> = std::sync::OnceLock::new();
    if let Some(start) = START.get_or_init(|| std::env::var_os("LLMD_TIMINGS").is_some().then(std::time::Instant::now)) {
        say!("[timings] {:>7.1} ms  {what}", start.elapsed().as_secs_f64() * 1e3);
    }
}

/// Frees `value` on a background thread. Freeing a large build graph takes tens of
/// milliseconds — a visible share of a no-op build — and a process that is about to
/// exit need not wait for it; one that lives on still gets the memory back.
pub fn drop_in_background<T: Send + 'static>(value: T) {
    // Without a thread to be had, the failed spawn drops the closure, and the value, here.
    let _ = std::thread::Builder::new().name("llmd-drop".into()).spawn(move || drop(value));
}

/// Maps `f` over `items` split into one chunk per thread — as many threads as cores, at
/// most `max_threads` — on scoped threads; results in chunk order, `None` for a chunk
/// whose thread panicked.
pub fn map_chunks<T: Sync, R: Send>(items: &[T], max_threads: usize, f: impl Fn(&[T]) -> R + Sync) -> Vec<Option<R>> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).clamp(1, max_threads.max(1));
    let f = &f;
    std::thread::scope(|scope| {
        let workers: Vec<_> = items.chunks(items.len().div_ceil(threads).max(1)).map(|part| scope.spawn(move || f(part))).collect();
        workers.into_iter().map(|w| w.join().ok()).collect()
    })
}

/// Seconds since the Unix epoch (0 if the clock is before it).
pub fn unix_now() -> f64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64())
}

/// Fault tests only: with `LLMD_TEST_HOLD` set to a substring of `point`, this process
/// stops here for good — it writes its pid to `LLMD_TEST_HOLD_FILE` and sleeps — so a
/// test can kill it at exactly this instant. Unset (always, outside tests) it costs one
/// cached lookup.
pub fn test_hold(point: &str) {
    let Some(want) = test_hold_wanted() else { return };
    if !point.contains(want) {
        return;
    }
    if let Some(file) = std::env::var_os("LLMD_TEST_HOLD_FILE") {
        let _ = std::fs::write(file, format!("{} {point}", std::process::id()));
    }
    loop {
        std::thread::sleep(std::time::Duration::from_secs(1));
    }
}

/// The hold point `LLMD_TEST_HOLD` names, if any (see [`test_hold`]).
pub fn test_hold_wanted() -> Option<&'static str> {
    static HOLD: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    HOLD.get_or_init(|| std::env::var("LLMD_TEST_HOLD").ok().filter(|v| !v.is_empty())).as_deref()
}

/// The first 12 characters of a hex digest, for messages.
pub fn short(digest: &str) -> &str {
    &digest[..digest.len().min(12)]
}

/// The file `program` names: itself when it is a path (has a `/`), else the first
/// directory of `PATH` holding it.
pub fn which(program: &str) -> Option<std::path::PathBuf> {
    if program.contains('/') {
        return Some(Path::new(program).to_path_buf()).filter(|p| p.is_file());
    }
    std::env::split_paths(&std::env::var_os("PATH")?).map(|d| d.join(program)).find(|p| p.is_file())
}

/// `w` as one word of a POSIX shell command line: as it is when every character is
/// safe, else single-quoted.
pub fn shell_word(w: &str) -> String {
    if !w.is_empty() && w.chars().all(|c| c.is_ascii_alphanumeric() || "-_./:=@,+%".contains(c)) {
        w.to_string()
    } else {
        format!("'{}'", w.replace('\'', r"'\''"))
    }
}

/// The last `n` lines of a text file (for error messages).
pub fn tail_lines(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].iter().map(|l| format!("  | {l}")).collect::<Vec<_>>().join("\n")
}

/// Raises this process's soft limit on open descriptors to its hard limit, as load
/// generators must: at thousands of requests per second each in-flight request holds a
/// socket, and distributions default the soft limit to 1024. Returns `(before, after)`.
pub fn raise_nofile_limit() -> std::io::Result<(u64, u64)> {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit writes into the struct we pass.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let before = lim.rlim_cur;
    if lim.rlim_cur < lim.rlim_max {
        lim.rlim_cur = lim.rlim_max;
        // SAFETY: setrlimit reads the struct; raising the soft limit up to the hard one needs no privilege.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok((before, lim.rlim_cur))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_are_mapped_in_order_and_a_panic_is_a_none() {
        let items: Vec<u32> = (0..1000).collect();
        let sums = map_chunks(&items, 8, |part| part.iter().sum::<u32>());
        assert_eq!(sums.iter().map(|s| s.unwrap()).sum::<u32>(), 499_500);
        let firsts: Vec<u32> = map_chunks(&items, 8, |part| part[0]).into_iter().flatten().collect();
        assert!(firsts.windows(2).all(|w| w[0] < w[1]), "{firsts:?}");
        assert!(map_chunks(&[] as &[u32], 4, |part| part.len()).is_empty());
        let hurt = map_chunks(&items, 2, |part| if part[0] == 0 { panic!("a worker panics") } else { 1 });
        assert_eq!(hurt[0], None);
    }

    #[test]
    fn shell_words() {
        assert_eq!(shell_word("plain-arg"), "plain-arg");
        assert_eq!(shell_word("has space"), "'has space'");
        assert_eq!(shell_word("it's"), r"'it'\''s'");
        assert_eq!(shell_word(""), "''");
    }

    #[test]
    fn which_finds_paths_and_path_entries() {
        assert_eq!(which("sh").map(|p| p.file_name().unwrap().to_owned()), Some("sh".into()));
        assert_eq!(which("/bin/sh"), Some("/bin/sh".into()));
        assert_eq!(which("/no/such/tool"), None);
        assert_eq!(which("llmd-no-such-tool"), None);
    }
}
