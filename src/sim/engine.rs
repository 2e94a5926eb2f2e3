//! The simulated inference engine: admission, latency and token timing.
//!
//! Two schedulers share one interface ([`Engine::submit`] returns a stream of
//! [`Event`]s):
//!
//! * **compat** (`--latency-calculator constant|per-token`), llm-d-inference-sim's model:
//!   `max-num-seqs` slots with a FIFO queue in front; an admitted request waits its
//!   prefill time (constant TTFT, or overhead + uncached tokens × per-token time) and then
//!   one inter-token latency per token. Every latency is scaled by the load factor
//!   `1 + (f − 1)(running − 1)/(max_num_seqs − 1)`, evaluated at prefill start and again
//!   for every token. Jitter is a normal sample clamped to ±70 % of the mean.
//! * **step** (`--latency-calculator step`), an iteration-level batching engine: every
//!   iteration schedules the running sequences' decode tokens plus waiting prompts'
//!   prefill chunks within `max-num-batched-tokens`, takes
//!   `base + prefill_tokens·p + decode_seqs·d + context_tokens·c`, and then gives each
//!   decoding sequence one token. Throughput therefore saturates at `1/d` tokens per
//!   second per decode sequence slot and ITL grows with the batch, as in vLLM. When the
//!   KV cache runs out of blocks the newest sequence is preempted (recomputed later).
//!
//! Timing uses absolute schedules (`t += gap`, never `sleep(gap)`) on the
//! high-resolution timer, so lateness does not accumulate.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::sync::{AcquireError, OwnedSemaphorePermit, Semaphore, mpsc};

use super::config::{LatencyModel, SimConfig};
use super::kv::{Allocation, KvCache};
use super::metrics::{FinishReason, Metrics};
use crate::timing::{Sleep, sleep_until};
use crate::util::rng::Rng;

/// Work for the engine.
#[derive(Debug)]
pub struct Request {
    pub arrival: Instant,
    pub prompt_tokens: Arc<Vec<u32>>,
    /// Tokens to generate.
    pub output_len: usize,
    /// Why the request ends once `output_len` tokens are out.
    pub finish: FinishReason,
    pub max_tokens_param: Option<usize>,
    /// Abort (drop the connection) after this many tokens.
    pub abort_after: Option<usize>,
    /// Pause before token `j` (0-based) for the duration.
    pub stall: Option<(usize, Duration)>,
    pub rng: Rng,
}

/// Progress of a request, in order: `Admitted`, then `Tokens` until `output_len` tokens
/// were produced (the channel then closes), or `Aborted`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Event {
    Admitted { at: Instant, cached_tokens: usize },
    Tokens { at: Instant, count: usize },
    Aborted,
}

/// The waiting queue is full (HTTP 429).
#[derive(Debug)]
pub struct QueueFull;

pub struct Engine {
    cfg: Arc<SimConfig>,
    pub metrics: Arc<Metrics>,
    kv: Mutex<KvCache>,
    slots: Arc<Semaphore>,
    waiting: AtomicUsize,
    running: AtomicUsize,
    step: Option<mpsc::UnboundedSender<StepSeq>>,
}

fn jitter(rng: &mut Rng, mean: Duration, std_dev: Duration) -> Duration {
    if std_dev.is_zero() || mean.is_zero() {
        return mean;
    }
    let m = mean.as_secs_f64();
    let v = (m + rng.normal() * std_dev.as_secs_f64()).clamp(0.3 * m, 1.7 * m);
    Duration::from_secs_f64(v)
}

impl Engine {
    pub fn new(cfg: Arc<SimConfig>, metrics: Arc<Metrics>) -> Arc<Engine> {
        let kv = Mutex::new(KvCache::new(cfg.kv_cache_size, cfg.block_size, cfg.hash_seed));
        let slots = Arc::new(Semaphore::new(cfg.max_num_seqs));
        if cfg.latency == LatencyModel::Step {
            let (tx, rx) = mpsc::unbounded_channel();
            let engine =
                Arc::new(Engine { cfg, metrics, kv, slots, waiting: AtomicUsize::new(0), running: AtomicUsize::new(0), step: Some(tx) });
            tokio::spawn(step_loop(engine.clone(), rx));
            engine
        } else {
            Arc::new(Engine { cfg, metrics, kv, slots, waiting: AtomicUsize::new(0), running: AtomicUsize::new(0), step: None })
        }
    }

    fn update_gauges(&self) {
        self.metrics.waiting.set(self.waiting.load(Ordering::Relaxed) as f64);
        self.metrics.running.set(self.running.load(Ordering::Relaxed) as f64);
        if let Ok(kv) = self.kv.lock() {
            self.metrics.kv_usage.set(kv.usage());
        }
    }

    /// Queues a request. Fails when the waiting queue is full.
    pub fn submit(self: &Arc<Self>, req: Request) -> Result<Events, QueueFull> {
        let queued = self.waiting.fetch_add(1, Ordering::AcqRel);
        let free_slot = self.running.load(Ordering::Acquire) < self.cfg.max_num_seqs;
        if queued >= self.cfg.max_waiting_queue_length && !(free_slot && queued == 0) {
            self.waiting.fetch_sub(1, Ordering::AcqRel);
            return Err(QueueFull);
        }
        self.update_gauges();
        match &self.step {
            Some(step) => {
                let (tx, rx) = mpsc::unbounded_channel();
                // If the engine loop is gone (shutdown) the request just ends.
                let _ = step.send(StepSeq::new(req, tx));
                Ok(Events::Step(rx))
            }
            None => Ok(Events::Compat(Box::new(CompatRun::new(self.clone(), req)))),
        }
    }

    fn load_factor(&self) -> f64 {
        let running = self.running.load(Ordering::Relaxed).max(1) as f64;
        let max = self.cfg.max_num_seqs as f64;
        if max <= 1.0 { 1.0 } else { 1.0 + (self.cfg.time_factor_under_load - 1.0) * (running - 1.0) / (max - 1.0) }
    }

    fn scaled(&self, d: Duration) -> Duration {
        if d.is_zero() { d } else { d.mul_f64(self.load_factor()) }
    }

    /// Pins KV blocks (or just looks the prefix up when the cache is full).
    fn kv_admit(&self, prompt: &[u32], reserve: usize) -> (Option<Allocation>, usize) {
        if !self.cfg.enable_kvcache {
            return (None, 0);
        }
        let mut kv = self.kv.lock().unwrap_or_else(|e| e.into_inner());
        let hashes = kv.block_hashes(prompt);
        match kv.allocate(&hashes, prompt.len(), reserve) {
            Some(a) => {
                let cached = a.cached_tokens;
                (Some(a), cached)
            }
            None => {
                let cached = kv.lookup(&hashes);
                (None, cached)
            }
        }
    }

    fn kv_release(&self, alloc: Option<Allocation>) {
        if let Some(a) = alloc {
            self.kv.lock().unwrap_or_else(|e| e.into_inner()).release(&a);
        }
    }
}

/// The events of one request: pulled by whoever serves the response.
pub enum Events {
    /// Compat mode runs inside the consumer's own task: the response body polls the
    /// timer directly, so each token costs one task wake-up, not two.
    Compat(Box<CompatRun>),
    Step(mpsc::UnboundedReceiver<Event>),
}

impl Events {
    pub fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Option<Event>> {
        match self {
            Events::Compat(run) => run.poll_next(cx),
            Events::Step(rx) => rx.poll_recv(cx),
        }
    }

    pub async fn next(&mut self) -> Option<Event> {
        std::future::poll_fn(|cx| self.poll_next(cx)).await
    }
}

type Acquire = Pin<Box<dyn Future<Output = Result<OwnedSemaphorePermit, AcquireError>> + Send>>;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Phase {
    Queued,
    Running,
    Aborting,
    Done,
    Finished,
}

/// The next emission: `count` tokens at `next_at`, then `gap` to the one after.
#[derive(Clone, Copy)]
struct Group {
    count: usize,
    gap: Duration,
    last: bool,
    aborting: bool,
}

/// One compat-mode request as a state machine: wait for a slot, prefill, then one
/// token per inter-token latency.
pub struct CompatRun {
    engine: Arc<Engine>,
    req: Request,
    phase: Phase,
    acquire: Option<Acquire>,
    permit: Option<OwnedSemaphorePermit>,
    alloc: Option<Allocation>,
    times: Option<RequestTimes>,
    produced: usize,
    /// Prompt tokens its prefill computes (those not found in the prefix cache).
    prefill_tokens: usize,
    next_at: Instant,
    group: Option<Group>,
    sleep: Option<Sleep>,
    /// The admission of a request admitted on arrival, not yet told to its consumer.
    admitted_event: Option<Event>,
}

impl CompatRun {
    /// A request finding a free slot is admitted now, on arrival, as an engine would be —
    /// not when the HTTP layer first polls the response body, tens of microseconds later
    /// (its latency clock starts at admission). Slots are handed to queued requests in
    /// order as they free up, so a free slot means nobody is waiting.
    fn new(engine: Arc<Engine>, req: Request) -> Self {
        let now = engine.slots.clone().try_acquire_owned().ok();
        let acquire: Option<Acquire> = match now {
            Some(_) => None,
            None => Some(Box::pin(engine.slots.clone().acquire_owned())),
        };
        let mut run = CompatRun {
            engine,
            req,
            phase: Phase::Queued,
            acquire,
            permit: None,
            alloc: None,
            times: None,
            produced: 0,
            prefill_tokens: 0,
            next_at: Instant::now(),
            group: None,
            sleep: None,
            admitted_event: None,
        };
        if let Some(permit) = now {
            run.phase = Phase::Running;
            run.admitted_event = Some(run.admit(permit));
        }
        run
    }

    fn admit(&mut self, permit: OwnedSemaphorePermit) -> Event {
        let engine = &self.engine;
        engine.waiting.fetch_sub(1, Ordering::AcqRel);
        engine.running.fetch_add(1, Ordering::AcqRel);
        self.permit = Some(permit);
        let admitted = Instant::now();
        let prompt_len = self.req.prompt_tokens.len();
        let (alloc, cached) = engine.kv_admit(&self.req.prompt_tokens, self.req.output_len);
        self.alloc = alloc;
        self.prefill_tokens = prompt_len.saturating_sub(cached);
        engine.metrics.prompt_tokens.inc_by(prompt_len as u64);
        if engine.cfg.enable_kvcache {
            engine.metrics.prefix_queries.inc_by(prompt_len as u64);
            engine.metrics.prefix_hits.inc_by(cached as u64);
        }
        engine.update_gauges();
        self.times = Some(RequestTimes::new(&self.req, admitted));
        let prefill = match engine.cfg.latency {
            LatencyModel::PerToken => {
                let base = engine.cfg.prefill_overhead + engine.cfg.prefill_time_per_token * (prompt_len.saturating_sub(cached)) as u32;
                jitter(&mut self.req.rng, base, engine.cfg.prefill_time_std_dev.min(base.mul_f64(0.3)))
            }
            _ => jitter(&mut self.req.rng, engine.cfg.ttft, engine.cfg.ttft_std_dev),
        };
        self.next_at = admitted + engine.scaled(prefill);
        Event::Admitted { at: admitted, cached_tokens: cached }
    }

    /// Tokens due at the same instant travel together in one emission.
    fn plan(&mut self) -> Group {
        let mut count = 0;
        loop {
            count += 1;
            let k = self.produced + count;
            let aborting = self.req.abort_after.is_some_and(|a| k >= a) && k < self.req.output_len;
            if k >= self.req.output_len || aborting {
                return Group { count, gap: Duration::ZERO, last: true, aborting };
            }
            let mut gap = self.engine.scaled(jitter(&mut self.req.rng, self.engine.cfg.itl, self.engine.cfg.itl_std_dev));
            if let Some((_, stall)) = self.req.stall.filter(|(j, _)| *j == k) {
                gap += stall;
            }
            if !gap.is_zero() {
                return Group { count, gap, last: false, aborting: false };
            }
        }
    }

    fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Option<Event>> {
        if let Some(admitted) = self.admitted_event.take() {
            return Poll::Ready(Some(admitted));
        }
        match self.phase {
            Phase::Queued => {
                let acquire = self.acquire.as_mut().expect("queued requests are acquiring");
                let permit = match acquire.as_mut().poll(cx) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(Ok(p)) => p,
                    Poll::Ready(Err(_)) => {
                        self.phase = Phase::Finished;
                        return Poll::Ready(None);
                    }
                };
                self.acquire = None;
                self.phase = Phase::Running;
                Poll::Ready(Some(self.admit(permit)))
            }
            Phase::Running => {
                if self.group.is_none() {
                    self.group = Some(self.plan());
                    self.sleep = Some(sleep_until(self.next_at));
                }
                if let Some(sleep) = self.sleep.as_mut()
                    && Pin::new(sleep).poll(cx).is_pending()
                {
                    return Poll::Pending;
                }
                self.sleep = None;
                let g = self.group.take().expect("planned above");
                let at = self.next_at;
                // Without a batch each request is its own engine: its prefill is one
                // iteration of its uncached prompt tokens, each later token one
                // iteration of one token (so the histogram's sum is every scheduled token).
                let iterations = &self.engine.metrics.iteration_tokens;
                let mut decode_steps = g.count;
                if self.produced == 0 {
                    iterations.observe(self.prefill_tokens as f64);
                    decode_steps -= 1;
                }
                for _ in 0..decode_steps {
                    iterations.observe(1.0);
                }
                self.produced += g.count;
                if let Some(t) = self.times.as_mut() {
                    t.tokens(at, g.count, &self.engine.metrics);
                }
                if g.aborting {
                    self.phase = Phase::Aborting;
                } else if g.last {
                    self.phase = Phase::Done;
                } else {
                    self.next_at += g.gap;
                }
                Poll::Ready(Some(Event::Tokens { at, count: g.count }))
            }
            Phase::Aborting => {
                self.finish(FinishReason::Abort);
                Poll::Ready(Some(Event::Aborted))
            }
            Phase::Done => {
                self.finish(self.req.finish);
                Poll::Ready(None)
            }
            Phase::Finished => Poll::Ready(None),
        }
    }

    fn finish(&mut self, reason: FinishReason) {
        if self.phase == Phase::Finished {
            return;
        }
        let engine = self.engine.clone();
        if self.phase == Phase::Queued {
            // Gave up while waiting for a slot.
            engine.waiting.fetch_sub(1, Ordering::AcqRel);
            engine.metrics.finished(FinishReason::Abort);
        } else {
            self.permit = None;
            engine.running.fetch_sub(1, Ordering::AcqRel);
            engine.kv_release(self.alloc.take());
            if let Some(t) = self.times.take() {
                t.finish(reason, &engine.metrics);
            }
        }
        engine.update_gauges();
        self.phase = Phase::Finished;
    }
}

impl Drop for CompatRun {
    fn drop(&mut self) {
        // The client went away (or the response was dropped) before the end.
        self.finish(FinishReason::Abort);
    }
}

/// Per-request timestamps feeding the latency histograms.
struct RequestTimes {
    arrival: Instant,
    admitted: Instant,
    first: Option<Instant>,
    last: Option<Instant>,
    tokens: usize,
    prompt_len: usize,
    max_tokens: Option<usize>,
}

impl RequestTimes {
    fn new(req: &Request, admitted: Instant) -> Self {
        RequestTimes {
            arrival: req.arrival,
            admitted,
            first: None,
            last: None,
            tokens: 0,
            prompt_len: req.prompt_tokens.len(),
            max_tokens: req.max_tokens_param,
        }
    }

    fn tokens(&mut self, at: Instant, count: usize, m: &Metrics) {
        if count == 0 {
            return;
        }
        m.generation_tokens.inc_by(count as u64);
        match self.last {
            None => {
                self.first = Some(at);
                m.ttft.observe((at - self.arrival).as_secs_f64());
                m.prefill.observe((at - self.admitted).as_secs_f64());
            }
            Some(prev) => {
                let gap = (at - prev).as_secs_f64();
                m.itl.observe(gap);
                m.tpot_legacy.observe(gap);
            }
        }
        // Tokens delivered together are zero gaps apart.
        for _ in 1..count {
            m.itl.observe(0.0);
            m.tpot_legacy.observe(0.0);
        }
        self.last = Some(at);
        self.tokens += count;
    }

    fn finish(&self, reason: FinishReason, m: &Metrics) {
        m.finished(reason);
        m.prompt_len.observe(self.prompt_len as f64);
        m.generation_len.observe(self.tokens as f64);
        m.n_param.observe(1.0);
        if let Some(mt) = self.max_tokens {
            m.max_tokens_param.observe(mt as f64);
            m.max_generation.observe(mt as f64);
        }
        m.queue.observe((self.admitted - self.arrival).as_secs_f64());
        if let (Some(first), Some(last)) = (self.first, self.last) {
            m.e2e.observe((last - self.arrival).as_secs_f64());
            m.inference.observe((last - self.admitted).as_secs_f64());
            m.decode.observe((last - first).as_secs_f64());
            if self.tokens > 1 {
                m.request_tpot.observe((last - first).as_secs_f64() / (self.tokens - 1) as f64);
            }
        }
    }
}

/// A sequence inside the step engine.
struct StepSeq {
    req: Request,
    tx: mpsc::UnboundedSender<Event>,
    times: Option<RequestTimes>,
    alloc: Option<Allocation>,
    /// Tokens produced so far (survive preemption).
    generated: usize,
    /// Prompt (+ regenerated) tokens still to prefill.
    prefill_left: usize,
    admitted: bool,
    /// A stall (`--stall-at-token`) holds the sequence back until then.
    stalled_until: Option<Instant>,
}

impl StepSeq {
    fn new(req: Request, tx: mpsc::UnboundedSender<Event>) -> Self {
        StepSeq { req, tx, times: None, alloc: None, generated: 0, prefill_left: 0, admitted: false, stalled_until: None }
    }

    fn context(&self) -> usize {
        self.req.prompt_tokens.len() + self.generated
    }
}

/// One iteration's schedule: per running sequence, the prefill tokens it gets.
struct Iteration {
    chunks: Vec<usize>,
    prefill_tokens: usize,
    decode_seqs: usize,
}

/// The step engine's queues: sequences waiting for admission and those in the batch.
struct StepScheduler {
    engine: Arc<Engine>,
    waiting: VecDeque<StepSeq>,
    running: Vec<StepSeq>,
}

async fn step_loop(engine: Arc<Engine>, mut arrivals: mpsc::UnboundedReceiver<StepSeq>) {
    let cfg = engine.cfg.clone();
    let mut s = StepScheduler { engine, waiting: VecDeque::new(), running: Vec::new() };
    let mut clock = Instant::now();
    loop {
        if s.waiting.is_empty() && s.running.is_empty() {
            match arrivals.recv().await {
                Some(seq) => s.waiting.push_back(seq),
                None => return,
            }
            clock = Instant::now();
        }
        while let Ok(seq) = arrivals.try_recv() {
            s.waiting.push_back(seq);
        }
        let it = s.schedule();
        s.engine.update_gauges();
        let context_tokens: usize = s.running.iter().map(StepSeq::context).sum();
        let duration = cfg.step_base_time
            + cfg.step_prefill_time_per_token * it.prefill_tokens as u32
            + cfg.step_decode_time_per_seq * it.decode_seqs as u32
            + cfg.step_context_time_per_token * context_tokens as u32;
        s.engine.metrics.iteration_tokens.observe((it.prefill_tokens + it.decode_seqs) as f64);
        clock = clock.max(Instant::now() - Duration::from_millis(1)) + duration;
        sleep_until(clock).await;
        let (finished, preempt) = s.apply(clock, &it.chunks);
        s.retire(finished, preempt);
        s.engine.update_gauges();
    }
}

impl StepScheduler {
    /// Token budget to the running sequences (decode first come, prefill chunks), then
    /// admission of waiting sequences while seats and budget last.
    fn schedule(&mut self) -> Iteration {
        let (mut budget, max_seqs) = (self.engine.cfg.max_num_batched_tokens, self.engine.cfg.max_num_seqs);
        let mut it = Iteration { chunks: vec![0; self.running.len()], prefill_tokens: 0, decode_seqs: 0 };
        for (i, seq) in self.running.iter().enumerate() {
            if seq.prefill_left == 0 && budget > 0 {
                it.decode_seqs += 1;
                budget -= 1;
            } else if seq.prefill_left > 0 && budget > 0 {
                let chunk = seq.prefill_left.min(budget);
                it.chunks[i] = chunk;
                it.prefill_tokens += chunk;
                budget -= chunk;
            }
        }
        while self.running.len() < max_seqs && budget > 0 {
            let Some(seq) = self.waiting.pop_front() else { break };
            match self.admit(seq) {
                Admission::Admitted(seq) => {
                    let chunk = seq.prefill_left.min(budget);
                    it.prefill_tokens += chunk;
                    budget -= chunk;
                    it.chunks.push(chunk);
                    self.running.push(seq);
                }
                Admission::NoBlocks(seq) => {
                    self.waiting.push_front(seq);
                    break;
                }
                Admission::Gone => {}
            }
        }
        it
    }

    /// Blocks for a waiting sequence (its first admission counts its prompt and tells
    /// its client).
    fn admit(&mut self, mut seq: StepSeq) -> Admission {
        let engine = &self.engine;
        let cfg = &engine.cfg;
        let prompt = seq.req.prompt_tokens.clone();
        let (alloc, cached) = engine.kv_admit(&prompt, seq.generated + 1);
        if cfg.enable_kvcache && alloc.is_none() && !self.running.is_empty() {
            return Admission::NoBlocks(seq);
        }
        let now = Instant::now();
        if !seq.admitted {
            seq.admitted = true;
            engine.waiting.fetch_sub(1, Ordering::AcqRel);
            engine.metrics.prompt_tokens.inc_by(seq.req.prompt_tokens.len() as u64);
            if cfg.enable_kvcache {
                engine.metrics.prefix_queries.inc_by(seq.req.prompt_tokens.len() as u64);
                engine.metrics.prefix_hits.inc_by(cached as u64);
            }
            seq.times = Some(RequestTimes::new(&seq.req, now));
            if seq.tx.send(Event::Admitted { at: now, cached_tokens: cached }).is_err() {
                engine.kv_release(alloc);
                engine.metrics.finished(FinishReason::Abort);
                return Admission::Gone;
            }
        }
        engine.running.fetch_add(1, Ordering::AcqRel);
        seq.alloc = alloc;
        seq.prefill_left = (seq.context() - cached).max(1);
        Admission::Admitted(seq)
    }

    /// Applies an iteration that ended at `end`: prefill progress, one token per
    /// decoding sequence. Returns the sequences that finished (with why) and those
    /// that need blocks the cache does not have.
    fn apply(&mut self, end: Instant, chunks: &[usize]) -> (Vec<(usize, FinishReason)>, Vec<usize>) {
        let engine = &self.engine;
        let mut finished = Vec::new();
        let mut preempt = Vec::new();
        for (i, seq) in self.running.iter_mut().enumerate() {
            let produces = if seq.prefill_left > 0 {
                seq.prefill_left -= chunks[i];
                seq.prefill_left == 0 && chunks[i] > 0
            } else {
                true
            };
            if !produces {
                continue;
            }
            if let Some((_, d)) = seq.req.stall.filter(|(j, _)| *j == seq.generated && *j > 0) {
                seq.req.stall = None;
                seq.stalled_until = Some(end + d);
            }
            if seq.stalled_until.is_some_and(|until| end < until) {
                continue;
            }
            if let Some(alloc) = seq.alloc.as_mut() {
                let needed = (seq.req.prompt_tokens.len() + seq.generated + 1).div_ceil(engine.cfg.block_size);
                if needed > alloc.blocks() {
                    let mut kv = engine.kv.lock().unwrap_or_else(|e| e.into_inner());
                    if !kv.grow(alloc, needed - alloc.blocks()) {
                        preempt.push(i);
                        continue;
                    }
                }
            }
            seq.generated += 1;
            let ok = seq.tx.send(Event::Tokens { at: end, count: 1 }).is_ok();
            if let Some(t) = seq.times.as_mut() {
                t.tokens(end, 1, &engine.metrics);
            }
            let abort = seq.req.abort_after.is_some_and(|k| seq.generated >= k) && seq.generated < seq.req.output_len;
            if abort {
                let _ = seq.tx.send(Event::Aborted);
            }
            if !ok || abort {
                finished.push((i, FinishReason::Abort));
            } else if seq.generated >= seq.req.output_len {
                finished.push((i, seq.req.finish));
            }
        }
        (finished, preempt)
    }

    /// Preempts the newest sequence when blocks ran out (it is recomputed later), then
    /// removes the finished ones.
    fn retire(&mut self, mut finished: Vec<(usize, FinishReason)>, preempt: Vec<usize>) {
        let engine = &self.engine;
        if !preempt.is_empty()
            && let Some(victim) = (0..self.running.len()).filter(|i| !finished.iter().any(|(f, _)| f == i)).max()
        {
            let mut seq = self.running.remove(victim);
            finished.retain(|(f, _)| *f != victim);
            for (f, _) in finished.iter_mut() {
                if *f > victim {
                    *f -= 1;
                }
            }
            engine.kv_release(seq.alloc.take());
            engine.running.fetch_sub(1, Ordering::AcqRel);
            engine.metrics.preemptions.inc_by(1);
            seq.prefill_left = 0;
            self.waiting.push_front(seq);
        }
        finished.sort_by_key(|f| std::cmp::Reverse(f.0));
        for (i, reason) in finished {
            let mut seq = self.running.swap_remove(i);
            engine.kv_release(seq.alloc.take());
            engine.running.fetch_sub(1, Ordering::AcqRel);
            if let Some(t) = seq.times.take() {
                t.finish(reason, &engine.metrics);
            }
        }
    }
}

/// What admitting a waiting sequence came to.
enum Admission {
    Admitted(StepSeq),
    /// The KV cache has no blocks for it now; it stays first in line.
    NoBlocks(StepSeq),
    /// Its client went away before admission.
    Gone,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::metrics::Metrics;

    fn engine(cfg: SimConfig) -> Arc<Engine> {
        let m = Arc::new(Metrics::new("m", 0, cfg.max_model_len, cfg.block_size, cfg.kv_cache_size));
        Engine::new(Arc::new(cfg), m)
    }

    fn request(tokens: usize, out: usize) -> Request {
        Request {
            arrival: Instant::now(),
            prompt_tokens: Arc::new((0..tokens as u32).collect()),
            output_len: out,
            finish: FinishReason::Length,
            max_tokens_param: Some(out),
            abort_after: None,
            stall: None,
            rng: Rng::new(1),
        }
    }

    async fn collect(mut events: Events) -> Vec<Event> {
        let mut v = Vec::new();
        while let Some(e) = events.next().await {
            v.push(e);
        }
        v
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn constant_latency_schedule() {
        let cfg = SimConfig { model: "m".into(), ttft: Duration::from_millis(20), itl: Duration::from_millis(5), ..Default::default() };
        let e = engine(cfg);
        let events = collect(e.submit(request(10, 4)).unwrap()).await;
        let Event::Admitted { at: admitted, .. } = events[0] else { panic!("{events:?}") };
        let times: Vec<Instant> =
            events[1..].iter().map(|e| if let Event::Tokens { at, count: 1 } = e { *at } else { panic!("{e:?}") }).collect();
        assert_eq!(times.len(), 4);
        assert_eq!(times[0] - admitted, Duration::from_millis(20));
        for w in times.windows(2) {
            assert_eq!(w[1] - w[0], Duration::from_millis(5));
        }
        assert_eq!(e.metrics.generation_tokens.get(), 4);
        // One prefill iteration of the prompt, then one per further token.
        assert_eq!(e.metrics.iteration_tokens.count(), 4);
        assert_eq!(e.metrics.prompt_tokens.get(), 10);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn queue_full_is_rejected() {
        let cfg = SimConfig {
            model: "m".into(),
            ttft: Duration::from_millis(200),
            max_num_seqs: 1,
            max_waiting_queue_length: 1,
            ..Default::default()
        };
        let e = engine(cfg);
        let mut a = e.submit(request(1, 1)).unwrap();
        assert!(matches!(a.next().await, Some(Event::Admitted { .. })));
        let _b = e.submit(request(1, 1)).unwrap();
        assert!(e.submit(request(1, 1)).is_err());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn step_engine_batches() {
        let cfg = SimConfig {
            model: "m".into(),
            latency: LatencyModel::Step,
            step_base_time: Duration::from_millis(2),
            step_decode_time_per_seq: Duration::from_millis(1),
            step_prefill_time_per_token: Duration::ZERO,
            max_num_seqs: 8,
            ..Default::default()
        };
        let e = engine(cfg);
        let rxs: Vec<_> = (0..4).map(|_| e.submit(request(5, 10)).unwrap()).collect();
        let mut all = Vec::new();
        for rx in rxs {
            all.push(collect(rx).await);
        }
        for events in &all {
            let tokens: usize = events.iter().map(|e| if let Event::Tokens { count, .. } = e { *count } else { 0 }).sum();
            assert_eq!(tokens, 10);
        }
        assert_eq!(e.metrics.generation_tokens.get(), 40);
        assert!(e.metrics.iteration_tokens.count() >= 10);
    }
}
