//! The simulator's HTTP server (hyper, HTTP/1.1): routing, request validation,
//! streaming bodies and graceful shutdown.
//!
//! Streaming responses are a [`SseBody`] fed by the engine's event channel. Each engine
//! event becomes one SSE event per token (or per `stream-interval` tokens); events that
//! are due together leave in one write, and each write is stamped in the journal.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body::{Body, Frame};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{CACHE_CONTROL, CONTENT_TYPE, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};

use super::api::{ApiError, GenerationRequest, Kind, Prompt, ResponseHead, Usage, chat_prompt};
use super::config::{FailureKind, Mode, SimConfig};
use super::engine::{self, Engine, Event, Events};
use super::journal::{Journal, Record};
use super::metrics::FinishReason;
use crate::pyfmt::json_string;
use crate::timing::{instant_to_mono_ns, mono_ns};
use crate::tokenize::{SimTokenizer, WordToken};
use crate::util::rng::Rng;

/// A response body: a complete buffer or an SSE stream.
pub type SimBody = http_body_util::Either<Full<Bytes>, SseBody>;

/// Everything one rank's handlers share.
pub struct Server {
    pub cfg: Arc<SimConfig>,
    pub rank: usize,
    pub engine: Arc<Engine>,
    pub tokenizer: &'static SimTokenizer,
    pub words: &'static [WordToken],
    pub ready_at: Instant,
    pub journal: Option<Arc<Journal>>,
    counter: AtomicU64,
}

impl Server {
    pub fn new(
        cfg: Arc<SimConfig>,
        rank: usize,
        engine: Arc<Engine>,
        tokenizer: &'static SimTokenizer,
        words: &'static [WordToken],
        journal: Option<Arc<Journal>>,
    ) -> Self {
        let ready_at = Instant::now() + cfg.startup_duration;
        Server { cfg, rank, engine, tokenizer, words, ready_at, journal, counter: AtomicU64::new(0) }
    }

    fn ready(&self) -> bool {
        Instant::now() >= self.ready_at
    }
}

fn json_response(status: u16, body: String) -> Response<SimBody> {
    let mut resp = Response::new(SimBody::Left(Full::new(Bytes::from(body))));
    *resp.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    resp.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}

fn error_response(e: &ApiError) -> Response<SimBody> {
    json_response(e.status, e.body())
}

fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// Routes one request.
pub async fn handle(server: Arc<Server>, req: Request<Incoming>) -> Result<Response<SimBody>, std::io::Error> {
    let arrival = Instant::now();
    let path = req.uri().path().to_string();
    let method = req.method().clone();
    let mut resp = match (method.clone(), path.as_str()) {
        (Method::GET, "/health") => json_response(200, String::new()),
        (Method::GET, "/health/ready") => {
            if server.ready() {
                json_response(200, "{\"status\":\"ready\"}".into())
            } else {
                json_response(503, "{\"status\":\"starting\"}".into())
            }
        }
        (Method::GET, "/v1/models") => json_response(200, models_body(&server.cfg)),
        (Method::GET, "/version") => json_response(200, format!("{{\"version\":\"llmd-sim {}\"}}", env!("CARGO_PKG_VERSION"))),
        (Method::GET, "/metrics") => {
            let mut r = Response::new(SimBody::Left(Full::new(Bytes::from(server.engine.metrics.render()))));
            r.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"));
            r
        }
        (Method::POST, "/v1/completions") => generate(&server, req, Kind::Completion, arrival).await?,
        (Method::POST, "/v1/chat/completions") => generate(&server, req, Kind::Chat, arrival).await?,
        (Method::POST, "/tokenize") => match read_json::<TokenizeRequest>(&server, req).await {
            Ok(t) => tokenize(&server, t),
            Err(e) => error_response(&e),
        },
        (Method::POST, "/detokenize") => match read_json::<DetokenizeRequest>(&server, req).await {
            Ok(t) => {
                let mut body = String::from("{\"prompt\":");
                json_string(&mut body, &server.tokenizer.decode(&t.tokens));
                body.push('}');
                json_response(200, body)
            }
            Err(e) => error_response(&e),
        },
        (
            _,
            "/health"
            | "/health/ready"
            | "/v1/models"
            | "/version"
            | "/metrics"
            | "/v1/completions"
            | "/v1/chat/completions"
            | "/tokenize"
            | "/detokenize",
        ) => error_response(&ApiError {
            status: 405,
            kind: "MethodNotAllowed",
            message: format!("method {method} is not allowed on {path}"),
            param: None,
        }),
        _ => error_response(&ApiError { status: 404, kind: "NotFoundError", message: format!("no route for {path}"), param: None }),
    };
    if let Some(pod) = &server.cfg.pod_name
        && let Ok(v) = HeaderValue::from_str(pod)
    {
        resp.headers_mut().insert("x-inference-pod", v);
    }
    if let Some(ns) = &server.cfg.pod_namespace
        && let Ok(v) = HeaderValue::from_str(ns)
    {
        resp.headers_mut().insert("x-inference-namespace", v);
    }
    Ok(resp)
}

fn models_body(cfg: &SimConfig) -> String {
    let created = unix_now();
    let mut out = String::from("{\"object\":\"list\",\"data\":[");
    for (i, name) in cfg.served_model_names.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str("{\"id\":");
        json_string(&mut out, name);
        out.push_str(&format!(",\"object\":\"model\",\"created\":{created},\"owned_by\":\"vllm\",\"root\":"));
        json_string(&mut out, &cfg.model);
        out.push_str(&format!(",\"parent\":null,\"max_model_len\":{},\"permission\":[]}}", cfg.max_model_len));
    }
    out.push_str("]}");
    out
}

#[derive(serde::Deserialize)]
struct TokenizeRequest {
    #[serde(default)]
    prompt: Option<String>,
    #[serde(default)]
    messages: Option<Vec<super::api::ChatMessage>>,
}

#[derive(serde::Deserialize)]
struct DetokenizeRequest {
    tokens: Vec<u32>,
}

fn tokenize(server: &Server, t: TokenizeRequest) -> Response<SimBody> {
    let text = match (t.prompt, t.messages) {
        (Some(p), _) => p,
        (None, Some(m)) => chat_prompt(&m),
        (None, None) => return error_response(&ApiError::bad_request("either 'prompt' or 'messages' is required").with_param("prompt")),
    };
    let tokens = server.tokenizer.encode(&text);
    let list: Vec<String> = tokens.iter().map(u32::to_string).collect();
    json_response(
        200,
        format!(
            "{{\"count\":{},\"max_model_len\":{},\"tokens\":[{}],\"token_strs\":null}}",
            tokens.len(),
            server.cfg.max_model_len,
            list.join(",")
        ),
    )
}

async fn read_json<T: serde::de::DeserializeOwned>(server: &Server, req: Request<Incoming>) -> Result<T, ApiError> {
    let limit = server.cfg.max_request_body_bytes;
    let bytes = match Limited::new(req.into_body(), limit).collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => {
            return Err(ApiError {
                status: 413,
                kind: "RequestEntityTooLarge",
                message: format!("request body exceeds {} MiB", limit >> 20),
                param: None,
            });
        }
        Err(e) => return Err(ApiError::bad_request(format!("cannot read request body: {e}"))),
    };
    serde_json::from_slice(&bytes).map_err(|e| ApiError::bad_request(format!("invalid JSON body: {e}")))
}

/// llm-d-inference-sim's output-length histogram for requests without `ignore_eos`:
/// buckets of the `max_tokens` range with probabilities 20/30/20/5/10/15 %.
fn sample_output_len(rng: &mut Rng, max: usize, min: usize) -> usize {
    const WEIGHTS: [f64; 6] = [0.20, 0.30, 0.20, 0.05, 0.10, 0.15];
    if max <= 1 {
        return max.max(min);
    }
    let r = rng.next_f64();
    let mut acc = 0.0;
    let mut bucket = WEIGHTS.len() - 1;
    for (i, w) in WEIGHTS.iter().enumerate() {
        acc += w;
        if r < acc {
            bucket = i;
            break;
        }
    }
    let width = max as f64 / WEIGHTS.len() as f64;
    let lo = (bucket as f64 * width).floor() as usize + 1;
    let hi = (((bucket + 1) as f64 * width).ceil() as usize).clamp(lo, max);
    let len = if bucket == WEIGHTS.len() - 1 { max } else { lo + rng.below(hi - lo + 1) };
    len.clamp(min.min(max).max(1), max)
}

struct Prepared {
    prompt_tokens: Arc<Vec<u32>>,
    pieces: Arc<Vec<String>>,
    finish: FinishReason,
    max_tokens_param: Option<usize>,
}

fn prepare(server: &Server, body: &GenerationRequest, kind: Kind, rng: &mut Rng) -> Result<Prepared, ApiError> {
    let cfg = &server.cfg;
    if let Some(n) = body.n
        && n != 1
    {
        return Err(ApiError::bad_request("the simulator supports only n=1").with_param("n"));
    }
    let (text, ids): (Option<String>, Vec<u32>) = match kind {
        Kind::Completion => match &body.prompt {
            None => return Err(ApiError::bad_request("'prompt' is required").with_param("prompt")),
            Some(Prompt::Text(t)) => (Some(t.clone()), server.tokenizer.encode(t)),
            Some(Prompt::Texts(ts)) if ts.len() == 1 => (Some(ts[0].clone()), server.tokenizer.encode(&ts[0])),
            Some(Prompt::Tokens(ids)) => (None, ids.clone()),
            Some(Prompt::TokenLists(lists)) if lists.len() == 1 => (None, lists[0].clone()),
            Some(_) => {
                return Err(ApiError::bad_request("batched prompts are not supported; send one prompt per request").with_param("prompt"));
            }
        },
        Kind::Chat => match &body.messages {
            Some(m) if !m.is_empty() => {
                let t = chat_prompt(m);
                let ids = server.tokenizer.encode(&t);
                (Some(t), ids)
            }
            _ => return Err(ApiError::bad_request("'messages' must be a non-empty list").with_param("messages")),
        },
    };
    let prompt_len = ids.len();
    let requested = body.max_completion_tokens.or(body.max_tokens);
    if let Some(m) = requested
        && m < 1
    {
        return Err(ApiError::bad_request(format!("max_tokens must be at least 1, got {m}")).with_param("max_tokens"));
    }
    let requested = requested.map(|m| m as usize);
    if prompt_len >= cfg.max_model_len || requested.is_some_and(|m| prompt_len + m > cfg.max_model_len) {
        return Err(ApiError::bad_request(format!(
            "This model's maximum context length is {} tokens. However, you requested {} tokens ({} in the messages, {} in the completion). Please reduce the length of the messages or completion.",
            cfg.max_model_len,
            prompt_len + requested.unwrap_or(0),
            prompt_len,
            requested.unwrap_or(0)
        ))
        .with_param("max_tokens"));
    }
    let room = cfg.max_model_len - prompt_len;
    let max = requested.unwrap_or(match kind {
        Kind::Completion => 16.min(room),
        Kind::Chat => room,
    });
    let min = body.min_tokens.unwrap_or(0).max(0) as usize;
    let (pieces, finish) = match cfg.mode {
        Mode::Echo => {
            let pieces = echo_pieces(server.tokenizer, text.as_deref(), &ids);
            if pieces.len() > max { (pieces[..max].to_vec(), FinishReason::Length) } else { (pieces, FinishReason::Stop) }
        }
        Mode::Random => {
            let len = if body.ignore_eos.unwrap_or(false) {
                max
            } else if requested.is_some() {
                sample_output_len(rng, max, min)
            } else {
                // No limit given: about 40 tokens (sd 20), within the context left.
                (40.0 + 20.0 * rng.normal()).round().clamp(1.0, max as f64) as usize
            };
            let pieces = (0..len).map(|_| server.words[rng.below(server.words.len())].text.clone()).collect();
            (pieces, if len == max { FinishReason::Length } else { FinishReason::Stop })
        }
    };
    Ok(Prepared { prompt_tokens: Arc::new(ids), pieces: Arc::new(pieces), finish, max_tokens_param: requested })
}

/// The prompt's text cut at token boundaries; a token that ends inside a UTF-8
/// character contributes nothing and the character goes with the next token.
fn echo_pieces(tok: &SimTokenizer, text: Option<&str>, ids: &[u32]) -> Vec<String> {
    let Some(text) = text else {
        return ids.iter().map(|id| tok.decode(&[*id])).collect();
    };
    let mut pieces = Vec::with_capacity(ids.len());
    let mut start = 0;
    for (_, range) in tok.encode_with_offsets(text) {
        let end = range.end.min(text.len());
        if text.is_char_boundary(end) && end >= start {
            pieces.push(text[start..end].to_string());
            start = end;
        } else {
            pieces.push(String::new());
        }
    }
    if let Some(last) = pieces.last_mut() {
        last.push_str(&text[start..]);
    }
    pieces
}

fn injected_failure(server: &Server, req: &Request<Incoming>, rng: &mut Rng) -> Option<ApiError> {
    if let Some(code) = req.headers().get("x-return-error").and_then(|v| v.to_str().ok()) {
        let kind = FailureKind::parse(code).unwrap_or(FailureKind::ServerError);
        let (status, ty, msg) = kind.describe();
        return Some(ApiError { status, kind: ty, message: msg.into(), param: None });
    }
    if rng.chance(server.cfg.failure_injection_rate) {
        let kind = server.cfg.failure_types[rng.below(server.cfg.failure_types.len())];
        let (status, ty, msg) = kind.describe();
        return Some(ApiError { status, kind: ty, message: msg.into(), param: None });
    }
    None
}

async fn generate(server: &Arc<Server>, req: Request<Incoming>, kind: Kind, arrival: Instant) -> Result<Response<SimBody>, std::io::Error> {
    let n = server.counter.fetch_add(1, Ordering::Relaxed);
    let header_id = req.headers().get("x-request-id").and_then(|v| v.to_str().ok()).map(str::to_string);
    let id = header_id.clone().unwrap_or_else(|| format!("{}-{}-{n}", if kind == Kind::Chat { "chatcmpl" } else { "cmpl" }, server.rank));
    let arrival_ns = instant_to_mono_ns(arrival);
    let reject = |e: &ApiError| {
        if let Some(j) = &server.journal {
            j.record(Record { id: id.clone(), rank: server.rank, arrival_ns, status: e.status.to_string(), ..Default::default() });
        }
        error_response(e)
    };
    if !server.ready() {
        return Ok(reject(&ApiError {
            status: 503,
            kind: "ServiceUnavailableError",
            message: "the server is starting up".into(),
            param: None,
        }));
    }
    let mut rng = Rng::for_request(server.cfg.seed, &id);
    if let Some(e) = injected_failure(server, &req, &mut rng) {
        return Ok(reject(&e));
    }
    let body: GenerationRequest = match read_json(server, req).await {
        Ok(b) => b,
        Err(e) => return Ok(reject(&e)),
    };
    if let Some(model) = &body.model
        && !server.cfg.served_model_names.iter().any(|m| m == model)
    {
        return Ok(reject(&ApiError {
            status: 404,
            kind: "NotFoundError",
            message: format!("The model `{model}` does not exist."),
            param: Some("model"),
        }));
    }
    let prepared = match prepare(server, &body, kind, &mut rng) {
        Ok(p) => p,
        Err(e) => return Ok(reject(&e)),
    };
    let stream = body.stream.unwrap_or(false);
    let opts = body.stream_options.unwrap_or_default();
    let abort_after = rng.chance(server.cfg.abort_rate).then_some(server.cfg.abort_after_tokens.max(1));
    let stall = rng.chance(server.cfg.stall_rate).then_some((server.cfg.stall_at_token, server.cfg.stall_duration));
    let events = match server.engine.submit(engine::Request {
        arrival,
        prompt_tokens: prepared.prompt_tokens.clone(),
        output_len: prepared.pieces.len(),
        finish: prepared.finish,
        max_tokens_param: prepared.max_tokens_param,
        abort_after,
        stall,
        rng,
    }) {
        Ok(rx) => rx,
        Err(_) => {
            return Ok(reject(&ApiError {
                status: 429,
                kind: "RateLimitError",
                message: format!("the waiting queue is full ({} requests)", server.cfg.max_waiting_queue_length),
                param: None,
            }));
        }
    };
    let head = ResponseHead {
        kind,
        id: id.clone(),
        created: unix_now(),
        model: body.model.clone().unwrap_or_else(|| server.cfg.served_model_names[0].clone()),
    };
    let record = Record {
        id,
        rank: server.rank,
        arrival_ns,
        prompt_tokens: prepared.prompt_tokens.len(),
        status: "ok".into(),
        ..Default::default()
    };
    let state = StreamState {
        head,
        pieces: prepared.pieces,
        finish: prepared.finish,
        produced: 0,
        usage: Usage { prompt_tokens: prepared.prompt_tokens.len(), ..Default::default() },
        record: Some(record),
        journal: server.journal.clone(),
    };
    let mut resp = if stream {
        let body = SseBody {
            rx: events,
            state,
            include_usage: opts.include_usage.unwrap_or(false),
            continuous_usage: opts.continuous_usage_stats.unwrap_or(false),
            interval: server.cfg.stream_interval,
            group: String::new(),
            group_tokens: 0,
            role_sent: false,
            abort_next: false,
            abort_yielded: false,
            done: false,
        };
        let mut r = Response::new(SimBody::Right(body));
        r.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("text/event-stream; charset=utf-8"));
        r.headers_mut().insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        r
    } else {
        complete(events, state).await?
    };
    if server.cfg.enable_request_id_headers
        && let Some(v) = header_id.and_then(|h| HeaderValue::from_str(&h).ok())
    {
        resp.headers_mut().insert("x-request-id", v);
    }
    Ok(resp)
}

struct StreamState {
    head: ResponseHead,
    pieces: Arc<Vec<String>>,
    finish: FinishReason,
    produced: usize,
    usage: Usage,
    record: Option<Record>,
    journal: Option<Arc<Journal>>,
}

impl StreamState {
    fn write_record(&mut self, status: &str) {
        if let (Some(journal), Some(mut rec)) = (&self.journal, self.record.take()) {
            rec.completion_tokens = self.produced;
            rec.cached_tokens = self.usage.cached_tokens;
            rec.status = status.to_string();
            rec.finish_reason = (status == "ok").then_some(self.finish.as_str());
            journal.record(rec);
        }
    }
}

impl Drop for StreamState {
    fn drop(&mut self) {
        // A client that went away mid-response still gets its journal line.
        self.write_record("aborted");
    }
}

fn aborted() -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::ConnectionAborted, "injected abort")
}

/// Waits for every token, then answers in one body.
async fn complete(mut rx: Events, mut state: StreamState) -> Result<Response<SimBody>, std::io::Error> {
    while let Some(ev) = rx.next().await {
        match ev {
            Event::Admitted { at, cached_tokens } => {
                state.usage.cached_tokens = cached_tokens;
                if let Some(r) = state.record.as_mut() {
                    r.admitted_ns = Some(instant_to_mono_ns(at));
                }
            }
            Event::Tokens { count, .. } => state.produced += count,
            Event::Aborted => {
                state.write_record("aborted");
                return Err(aborted());
            }
        }
    }
    if state.produced < state.pieces.len() {
        state.write_record("aborted");
        return Err(aborted());
    }
    let text: String = state.pieces.concat();
    state.usage.completion_tokens = state.produced;
    let body = state.head.full(&text, state.finish.as_str(), state.usage);
    if let Some(r) = state.record.as_mut() {
        r.chunks.push((mono_ns(), state.produced));
    }
    state.write_record("ok");
    Ok(json_response(200, body))
}

/// A Server-Sent-Events body driven by the engine.
pub struct SseBody {
    rx: Events,
    state: StreamState,
    include_usage: bool,
    continuous_usage: bool,
    interval: usize,
    /// Text of tokens not yet sent (stream-interval grouping).
    group: String,
    group_tokens: usize,
    role_sent: bool,
    /// An abort arrived together with tokens: the tokens went out, the error is next.
    abort_next: bool,
    abort_yielded: bool,
    done: bool,
}

impl SseBody {
    fn emit_group(&mut self, out: &mut String, last: bool) {
        if self.state.head.kind == Kind::Chat && !self.role_sent {
            self.state.head.chunk(out, "", true, None, None);
            self.role_sent = true;
        }
        let s = &mut self.state;
        let usage = self.continuous_usage.then_some(Usage { completion_tokens: s.produced, ..s.usage });
        let finish = last.then_some(s.finish.as_str());
        s.head.chunk(out, &self.group, false, finish, usage);
        self.group.clear();
        self.group_tokens = 0;
    }

    fn tokens(&mut self, out: &mut String, count: usize) {
        for _ in 0..count {
            let s = &mut self.state;
            if s.produced >= s.pieces.len() {
                return;
            }
            self.group.push_str(&s.pieces[s.produced]);
            s.produced += 1;
            self.group_tokens += 1;
            let last = s.produced == s.pieces.len();
            if self.group_tokens >= self.interval || last {
                self.emit_group(out, last);
            }
        }
    }
}

impl Body for SseBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        if self.done {
            return Poll::Ready(None);
        }
        if self.abort_next {
            if !self.abort_yielded {
                // Let hyper flush the last tokens before the connection is dropped.
                self.abort_yielded = true;
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            self.done = true;
            return Poll::Ready(Some(Err(aborted())));
        }
        let mut out = String::new();
        let mut sent_tokens = 0;
        loop {
            match self.rx.poll_next(cx) {
                Poll::Ready(Some(Event::Admitted { at, cached_tokens })) => {
                    self.state.usage.cached_tokens = cached_tokens;
                    if let Some(r) = self.state.record.as_mut() {
                        r.admitted_ns = Some(instant_to_mono_ns(at));
                    }
                }
                Poll::Ready(Some(Event::Tokens { count, .. })) => {
                    let before = self.state.produced;
                    self.tokens(&mut out, count);
                    sent_tokens += self.state.produced - before;
                }
                Poll::Ready(Some(Event::Aborted)) => {
                    self.state.write_record("aborted");
                    if out.is_empty() {
                        self.done = true;
                        return Poll::Ready(Some(Err(aborted())));
                    }
                    // Send what was produced before the abort; fail on the next poll.
                    self.abort_next = true;
                    return Poll::Ready(Some(Ok(Frame::data(Bytes::from(out)))));
                }
                Poll::Ready(None) => {
                    self.done = true;
                    if self.state.produced < self.state.pieces.len() {
                        self.state.write_record("aborted");
                        return Poll::Ready(Some(Err(aborted())));
                    }
                    if self.include_usage {
                        let usage = Usage { completion_tokens: self.state.produced, ..self.state.usage };
                        self.state.head.usage_chunk(&mut out, usage);
                    }
                    out.push_str("data: [DONE]\n\n");
                    if let Some(r) = self.state.record.as_mut() {
                        r.chunks.push((mono_ns(), sent_tokens));
                    }
                    self.state.write_record("ok");
                    return Poll::Ready(Some(Ok(Frame::data(Bytes::from(out)))));
                }
                Poll::Pending => {
                    if out.is_empty() {
                        return Poll::Pending;
                    }
                    if let Some(r) = self.state.record.as_mut() {
                        r.chunks.push((mono_ns(), sent_tokens));
                    }
                    return Poll::Ready(Some(Ok(Frame::data(Bytes::from(out)))));
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done
    }
}

/// How the accept loop waits after errors that repeat until resources free up
/// (EMFILE, ENFILE, ENOBUFS, ENOMEM): 5 ms doubling to 1 s, as Go's net/http does, with
/// one log line per second at most.
#[derive(Default)]
struct AcceptBackoff {
    delay: Option<Duration>,
    last_log: Option<Instant>,
    suppressed: u64,
}

impl AcceptBackoff {
    fn reset(&mut self) {
        self.delay = None;
    }

    /// How long to wait after `e` (`None`: retry at once — a connection that failed on
    /// its own, such as ECONNABORTED).
    fn after(&mut self, e: &std::io::Error, rank: usize) -> Option<Duration> {
        let exhausted = matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM));
        if !exhausted {
            return None;
        }
        let delay = self.delay.map_or(Duration::from_millis(5), |d| (d * 2).min(Duration::from_secs(1)));
        self.delay = Some(delay);
        if self.last_log.is_none_or(|t: Instant| t.elapsed() >= Duration::from_secs(1)) {
            let more = if self.suppressed > 0 { format!(" ({} more since the last message)", self.suppressed) } else { String::new() };
            eprintln!("llmd sim: rank {rank}: cannot accept connections: {e}{more}; retrying in {delay:?}");
            self.last_log = Some(Instant::now());
            self.suppressed = 0;
        } else {
            self.suppressed += 1;
        }
        Some(delay)
    }
}

/// Accepts connections on `listener` until `shutdown` resolves, then drains in-flight
/// requests for up to the configured grace period.
pub async fn serve(server: Arc<Server>, listener: tokio::net::TcpListener, mut shutdown: tokio::sync::watch::Receiver<bool>) {
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut backoff = AcceptBackoff::default();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let stream = match accepted {
                    Ok((stream, _peer)) => {
                        backoff.reset();
                        stream
                    }
                    Err(e) => {
                        // Out of descriptors (or kernel memory): the pending connection
                        // stays queued and accept fails again at once, so retrying
                        // immediately spins a core. Wait, doubling, while the accepted
                        // connections go on being served and free descriptors.
                        if let Some(wait) = backoff.after(&e, server.rank) {
                            tokio::select! {
                                () = tokio::time::sleep(wait) => {}
                                _ = shutdown.changed() => break,
                            }
                        }
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let io = hyper_util::rt::TokioIo::new(stream);
                let srv = server.clone();
                let service = hyper::service::service_fn(move |req| handle(srv.clone(), req));
                let conn = hyper::server::conn::http1::Builder::new().keep_alive(true).serve_connection(io, service);
                let fut = graceful.watch(conn);
                tokio::spawn(async move {
                    let _ = fut.await;
                });
            }
            _ = shutdown.changed() => break,
        }
    }
    drop(listener);
    let grace = server.cfg.shutdown_grace;
    let open = graceful.count();
    if tokio::time::timeout(grace, graceful.shutdown()).await.is_err() {
        eprintln!("llmd sim: rank {}: connections still open after {grace:?} (of {open} at shutdown); closing", server.rank);
    }
}

/// The address a rank listens on.
pub fn rank_addr(cfg: &SimConfig, rank: usize) -> Result<SocketAddr, std::net::AddrParseError> {
    let port = if cfg.port == 0 { 0 } else { cfg.port + rank as u16 };
    format!("{}:{port}", if cfg.host.contains(':') { format!("[{}]", cfg.host) } else { cfg.host.clone() }).parse()
}
