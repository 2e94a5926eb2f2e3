//! How `llmd build -j N` packs setups: what each holds while deployed, the capacity
//! pool it must fit in, and what may run beside a measurement.
//!
//! The unit of concurrency is the setup treatment: its stacks are stood up, measured and
//! (unless `--keep-stacks`) torn down by one worker, so what a setup holds is known
//! before it starts and freed when it ends. A setup holds, per stack, `replicas ×
//! accelerator.count` accelerators (`gpu`) and, on the local backend, one CPU slot per
//! replica (`cpu`). The pool comes from `--capacity gpu=16,cpu=2`, else from the
//! backends (local: the machine's cores; kube: allocatable GPUs of schedulable nodes);
//! a resource the pool does not name is unbounded. Workers take the first waiting setup
//! (in experiment order) that fits what is free, so a large setup may be overtaken by
//! smaller ones but never starves: when nothing is running, the first waiting setup
//! goes (it fits the pool by the decision-time check).

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Condvar, Mutex, MutexGuard};

use crate::error::InputError;

/// Amounts of named resources (`gpu`, `cpu`).
pub type Amounts = BTreeMap<String, u64>;

/// The pool setups are packed into, and where its numbers came from (for messages).
#[derive(Clone, Debug, Default)]
pub struct Capacity {
    pub pool: Amounts,
    pub source: String,
}

/// Parses `gpu=16,cpu=2`.
pub fn parse_capacity(text: &str) -> Result<Amounts, InputError> {
    let mut out = Amounts::new();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let parsed = part.split_once('=').and_then(|(k, v)| Some((k.trim(), v.trim().parse::<u64>().ok()?)));
        match parsed {
            Some((k, v)) if !k.is_empty() => {
                out.insert(k.to_string(), v);
            }
            _ => {
                return Err(InputError::new(format!("--capacity: '{part}' is not RESOURCE=COUNT"))
                    .help("e.g. --capacity gpu=16,cpu=2 (resources: gpu, cpu)"));
            }
        }
    }
    Ok(out)
}

/// `gpu=4, cpu=1` (or `nothing`).
pub fn describe(a: &Amounts) -> String {
    let parts: Vec<String> = a.iter().filter(|(_, v)| **v > 0).map(|(k, v)| format!("{k}={v}")).collect();
    if parts.is_empty() { "nothing".into() } else { parts.join(", ") }
}

fn fits(need: &Amounts, used: &Amounts, pool: &Amounts) -> bool {
    need.iter().all(|(k, n)| pool.get(k).is_none_or(|cap| used.get(k).copied().unwrap_or(0) + n <= *cap))
}

/// Decision-time check: every setup fits the pool on its own.
pub fn check(needs: &[(String, Amounts)], capacity: &Capacity) -> Result<(), InputError> {
    let empty = Amounts::new();
    let too_big: Vec<String> = needs
        .iter()
        .filter(|(_, need)| !fits(need, &empty, &capacity.pool))
        .map(|(name, need)| {
            format!("setup '{name}' needs {}, the pool has {} ({})", describe(need), describe(&capacity.pool), capacity.source)
        })
        .collect();
    if too_big.is_empty() {
        return Ok(());
    }
    Err(InputError::new(format!("{} can never be deployed: {}", if too_big.len() == 1 { "a setup" } else { "setups" }, too_big.join("; ")))
        .help("raise --capacity, or lower the setup's replicas or accelerator.count"))
}

/// What a worker gets from the pool.
#[derive(Debug, PartialEq, Eq)]
pub enum Admit {
    /// Execute this setup; its needs are reserved.
    Go(usize),
    /// This setup cannot start: what it needs is held by kept stacks (`--keep-stacks`)
    /// and nothing running will free it.
    Starved(usize),
}

#[derive(Debug)]
struct State {
    used: Amounts,
    waiting: VecDeque<usize>,
    running: usize,
    closed: bool,
}

/// Setups waiting for capacity, and what the running ones hold.
pub struct Pool {
    pool: Amounts,
    needs: Vec<Amounts>,
    state: Mutex<State>,
    freed: Condvar,
}

impl Pool {
    /// `needs[si]` is what setup `si` holds; `order` the setups to execute.
    pub fn new(capacity: &Capacity, needs: Vec<Amounts>, order: impl IntoIterator<Item = usize>) -> Pool {
        let state = State { used: Amounts::new(), waiting: order.into_iter().collect(), running: 0, closed: false };
        Pool { pool: capacity.pool.clone(), needs, state: Mutex::new(state), freed: Condvar::new() }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The next setup that fits, waiting while none does; `None` when none is left or
    /// the pool was closed.
    pub fn take(&self) -> Option<Admit> {
        let mut s = self.lock();
        loop {
            if s.closed || s.waiting.is_empty() {
                return None;
            }
            if let Some(pos) = s.waiting.iter().position(|&si| fits(&self.needs[si], &s.used, &self.pool)) {
                let si = s.waiting.remove(pos).unwrap_or_default();
                for (k, n) in &self.needs[si] {
                    *s.used.entry(k.clone()).or_default() += n;
                }
                s.running += 1;
                return Some(Admit::Go(si));
            }
            if s.running == 0 {
                // Nothing running will free anything: what is used is held by kept stacks.
                return s.waiting.pop_front().map(Admit::Starved);
            }
            s = self.freed.wait(s).unwrap_or_else(|e| e.into_inner());
        }
    }

    /// Setup `si` is done; `free` returns what it held (false while its stacks are kept).
    pub fn done(&self, si: usize, free: bool) {
        let mut s = self.lock();
        s.running -= 1;
        if free {
            for (k, n) in &self.needs[si] {
                if let Some(u) = s.used.get_mut(k) {
                    *u = u.saturating_sub(*n);
                }
            }
        }
        drop(s);
        self.freed.notify_all();
    }

    /// No more setups start (a failure without --keep-going, an interrupt).
    pub fn close(&self) {
        self.lock().closed = true;
        self.freed.notify_all();
    }

    /// What the pool holds now (for progress lines).
    pub fn used(&self) -> Amounts {
        self.lock().used.clone()
    }
}

/// What may run beside a measurement.
pub struct Gate {
    exclusive: bool,
    lock: Mutex<()>,
}

impl Gate {
    pub fn new(isolation: crate::experiment::Isolation) -> Gate {
        Gate { exclusive: isolation == crate::experiment::Isolation::Exclusive, lock: Mutex::new(()) }
    }

    /// Held while a run or an analysis executes: with `exclusive` one at a time on the
    /// machine; with `per-stack` nothing (a stack's runs are sequential in its setup).
    pub fn measure(&self) -> Option<MutexGuard<'_, ()>> {
        self.exclusive.then(|| self.lock.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(pairs: &[(&str, u64)]) -> Amounts {
        pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect()
    }

    #[test]
    fn capacities_parse_and_bad_ones_say_the_form() {
        assert_eq!(parse_capacity("gpu=16, cpu=2").unwrap(), a(&[("gpu", 16), ("cpu", 2)]));
        let e = parse_capacity("gpu:16").unwrap_err().to_string();
        assert!(e.contains("'gpu:16' is not RESOURCE=COUNT"), "{e}");
    }

    #[test]
    fn a_setup_larger_than_the_pool_names_both_numbers() {
        let cap = Capacity { pool: a(&[("gpu", 8)]), source: "--capacity".into() };
        assert!(check(&[("a".into(), a(&[("gpu", 8)]))], &cap).is_ok());
        let e = check(&[("a".into(), a(&[("gpu", 4)])), ("big".into(), a(&[("gpu", 9), ("cpu", 1)]))], &cap).unwrap_err().to_string();
        assert!(e.contains("setup 'big' needs cpu=1, gpu=9, the pool has gpu=8 (--capacity)"), "{e}");
    }

    #[test]
    fn setups_are_packed_and_a_big_one_waits_without_starving() {
        let cap = Capacity { pool: a(&[("gpu", 8)]), source: String::new() };
        let needs = vec![a(&[("gpu", 4)]), a(&[("gpu", 4)]), a(&[("gpu", 8)]), a(&[("gpu", 2)])];
        let pool = Pool::new(&cap, needs, 0..4);
        assert_eq!(pool.take(), Some(Admit::Go(0)));
        assert_eq!(pool.take(), Some(Admit::Go(1)));
        assert_eq!(pool.used(), a(&[("gpu", 8)]));
        pool.done(0, true);
        // 8 does not fit beside setup 1's 4; 2 does.
        assert_eq!(pool.take(), Some(Admit::Go(3)));
        pool.done(1, true);
        pool.done(3, true);
        assert_eq!(pool.take(), Some(Admit::Go(2)));
        pool.done(2, true);
        assert_eq!(pool.take(), None);
    }

    #[test]
    fn kept_stacks_holding_the_pool_starve_the_rest_instead_of_hanging() {
        let cap = Capacity { pool: a(&[("gpu", 8)]), source: String::new() };
        let pool = Pool::new(&cap, vec![a(&[("gpu", 8)]), a(&[("gpu", 1)])], 0..2);
        assert_eq!(pool.take(), Some(Admit::Go(0)));
        pool.done(0, false);
        assert_eq!(pool.take(), Some(Admit::Starved(1)));
        assert_eq!(pool.take(), None);
    }

    #[test]
    fn waiting_workers_wake_when_capacity_is_freed_or_the_pool_closes() {
        let cap = Capacity { pool: a(&[("gpu", 4)]), source: String::new() };
        let pool = std::sync::Arc::new(Pool::new(&cap, vec![a(&[("gpu", 4)]), a(&[("gpu", 4)]), a(&[("gpu", 4)])], 0..3));
        assert_eq!(pool.take(), Some(Admit::Go(0)));
        let p = pool.clone();
        let waiter = std::thread::spawn(move || p.take());
        std::thread::sleep(std::time::Duration::from_millis(50));
        pool.done(0, true);
        assert_eq!(waiter.join().unwrap(), Some(Admit::Go(1)));
        let p = pool.clone();
        let waiter = std::thread::spawn(move || p.take());
        std::thread::sleep(std::time::Duration::from_millis(50));
        pool.close();
        assert_eq!(waiter.join().unwrap(), None);
    }
}
