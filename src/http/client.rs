//! A minimal HTTP/1.1 client for load generation, written for measurement:
//!
//! * the send time is taken immediately before the request is written (one `write`),
//! * every response byte is stamped with the time of the `read` that returned it, and
//!   each SSE event gets the time of the read that completed it — never the time JSON
//!   parsing finished,
//! * connections are kept alive and reused; one request at a time per connection.
//!
//! It speaks just what OpenAI-compatible servers need: `Content-Length` request bodies,
//! `Content-Length` or chunked response bodies, `Connection: close` honoured.

use std::io;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::timing::mono_ns;

/// Where requests go: `http://host:port[/prefix]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    pub host: String,
    pub port: u16,
    /// Path prefix without a trailing slash (`""` or `/qwen`).
    pub prefix: String,
}

impl Endpoint {
    pub fn parse(url: &str) -> Result<Endpoint, String> {
        let rest = url.strip_prefix("http://").ok_or_else(|| {
            if url.starts_with("https://") {
                format!("'{url}': https endpoints are not supported by the native harness; use http://")
            } else {
                format!("'{url}' is not an http:// URL")
            }
        })?;
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        let (host, port) = match authority.rsplit_once(':') {
            Some((h, p)) if !h.ends_with(']') || h.starts_with('[') => {
                (h.trim_start_matches('[').trim_end_matches(']').to_string(), p.parse().map_err(|_| format!("'{url}': bad port '{p}'"))?)
            }
            _ => (authority.to_string(), 80),
        };
        if host.is_empty() {
            return Err(format!("'{url}' has no host"));
        }
        let prefix = path.trim_end_matches('/').trim_end_matches("/v1").to_string();
        Ok(Endpoint { host, port, prefix })
    }

    pub fn url(&self) -> String {
        format!("http://{}:{}{}", self.host, self.port, self.prefix)
    }
}

/// One keep-alive connection.
pub struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
    /// Bytes of `buf` already consumed.
    pos: usize,
    /// Time of the read that filled `buf[..]` most recently.
    read_ns: u64,
    host_header: String,
    pub reusable: bool,
}

/// What came back.
#[derive(Debug, Default)]
pub struct ResponseHead {
    pub status: u16,
    pub chunked: bool,
    pub content_length: Option<usize>,
    pub keep_alive: bool,
    pub event_stream: bool,
}

fn invalid(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.into())
}

impl Conn {
    pub async fn connect(ep: &Endpoint, timeout: Duration) -> io::Result<Conn> {
        let stream = tokio::time::timeout(timeout, TcpStream::connect((ep.host.as_str(), ep.port)))
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "connect timed out"))??;
        stream.set_nodelay(true)?;
        Ok(Conn {
            stream,
            buf: Vec::with_capacity(16 * 1024),
            pos: 0,
            read_ns: 0,
            host_header: format!("{}:{}", ep.host, ep.port),
            reusable: true,
        })
    }

    /// Writes a POST with a JSON body; returns the send time (ns) taken just before the
    /// bytes were handed to the socket.
    pub async fn post_json(&mut self, path: &str, body: &[u8], extra_headers: &[(&str, &str)]) -> io::Result<u64> {
        let mut req = Vec::with_capacity(body.len() + 256);
        req.extend_from_slice(b"POST ");
        req.extend_from_slice(path.as_bytes());
        req.extend_from_slice(b" HTTP/1.1\r\nHost: ");
        req.extend_from_slice(self.host_header.as_bytes());
        req.extend_from_slice(b"\r\nContent-Type: application/json\r\nAccept: */*\r\n");
        for (k, v) in extra_headers {
            req.extend_from_slice(k.as_bytes());
            req.extend_from_slice(b": ");
            req.extend_from_slice(v.as_bytes());
            req.extend_from_slice(b"\r\n");
        }
        req.extend_from_slice(format!("Content-Length: {}\r\n\r\n", body.len()).as_bytes());
        req.extend_from_slice(body);
        let sent = mono_ns();
        self.stream.write_all(&req).await?;
        Ok(sent)
    }

    /// Writes a GET.
    pub async fn get(&mut self, path: &str) -> io::Result<u64> {
        let req = format!("GET {path} HTTP/1.1\r\nHost: {}\r\nAccept: */*\r\n\r\n", self.host_header);
        let sent = mono_ns();
        self.stream.write_all(req.as_bytes()).await?;
        Ok(sent)
    }

    async fn fill(&mut self) -> io::Result<usize> {
        if self.pos > 0 && self.pos == self.buf.len() {
            self.buf.clear();
            self.pos = 0;
        } else if self.pos > 64 * 1024 {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
        let start = self.buf.len();
        self.buf.resize(start + 16 * 1024, 0);
        let n = self.stream.read(&mut self.buf[start..]).await?;
        self.read_ns = mono_ns();
        self.buf.truncate(start + n);
        Ok(n)
    }

    fn find_crlf(&self, from: usize) -> Option<usize> {
        self.buf[from..].windows(2).position(|w| w == b"\r\n").map(|i| from + i)
    }

    /// Reads the status line and headers.
    pub async fn read_head(&mut self) -> io::Result<ResponseHead> {
        let end = loop {
            if let Some(i) = self.buf[self.pos..].windows(4).position(|w| w == b"\r\n\r\n") {
                break self.pos + i;
            }
            if self.fill().await? == 0 {
                return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "connection closed before the response"));
            }
        };
        let text = std::str::from_utf8(&self.buf[self.pos..end]).map_err(|_| invalid("non-UTF-8 response head"))?;
        let mut lines = text.split("\r\n");
        let status_line = lines.next().unwrap_or_default();
        let status: u16 = status_line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| invalid(format!("bad status line {status_line:?}")))?;
        let mut head = ResponseHead { status, keep_alive: !status_line.starts_with("HTTP/1.0"), ..Default::default() };
        for line in lines {
            let Some((k, v)) = line.split_once(':') else { continue };
            let (k, v) = (k.trim().to_ascii_lowercase(), v.trim());
            match k.as_str() {
                "content-length" => head.content_length = v.parse().ok(),
                "transfer-encoding" => head.chunked = v.to_ascii_lowercase().contains("chunked"),
                "connection" => head.keep_alive = !v.eq_ignore_ascii_case("close"),
                "content-type" => head.event_stream = v.starts_with("text/event-stream"),
                _ => {}
            }
        }
        self.pos = end + 4;
        if !head.keep_alive {
            self.reusable = false;
        }
        Ok(head)
    }

    /// Reads the body, calling `on_data(read_ns, bytes)` for every piece of de-chunked
    /// body data as it arrives.
    pub async fn read_body(&mut self, head: &ResponseHead, mut on_data: impl FnMut(u64, &[u8])) -> io::Result<()> {
        if head.chunked {
            loop {
                let line_end = loop {
                    if let Some(i) = self.find_crlf(self.pos) {
                        break i;
                    }
                    if self.fill().await? == 0 {
                        self.reusable = false;
                        return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "connection closed mid-body"));
                    }
                };
                let size_text = std::str::from_utf8(&self.buf[self.pos..line_end]).map_err(|_| invalid("bad chunk size"))?;
                let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
                    .map_err(|_| invalid(format!("bad chunk size {size_text:?}")))?;
                self.pos = line_end + 2;
                if size == 0 {
                    // Trailers (none expected) end with an empty line.
                    loop {
                        if let Some(i) = self.find_crlf(self.pos) {
                            let empty = i == self.pos;
                            self.pos = i + 2;
                            if empty {
                                return Ok(());
                            }
                        } else if self.fill().await? == 0 {
                            return Ok(());
                        }
                    }
                }
                let mut left = size;
                while left > 0 {
                    if self.pos == self.buf.len() && self.fill().await? == 0 {
                        self.reusable = false;
                        return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "connection closed mid-chunk"));
                    }
                    let take = left.min(self.buf.len() - self.pos);
                    on_data(self.read_ns, &self.buf[self.pos..self.pos + take]);
                    self.pos += take;
                    left -= take;
                }
                while self.buf.len() - self.pos < 2 {
                    if self.fill().await? == 0 {
                        self.reusable = false;
                        return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "connection closed after a chunk"));
                    }
                }
                self.pos += 2;
            }
        } else if let Some(len) = head.content_length {
            let mut left = len;
            while left > 0 {
                if self.pos == self.buf.len() && self.fill().await? == 0 {
                    self.reusable = false;
                    return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "connection closed mid-body"));
                }
                let take = left.min(self.buf.len() - self.pos);
                on_data(self.read_ns, &self.buf[self.pos..self.pos + take]);
                self.pos += take;
                left -= take;
            }
            Ok(())
        } else {
            // Delimited by close.
            self.reusable = false;
            loop {
                if self.pos < self.buf.len() {
                    on_data(self.read_ns, &self.buf[self.pos..]);
                    self.pos = self.buf.len();
                }
                if self.fill().await? == 0 {
                    return Ok(());
                }
            }
        }
    }
}

/// Splits an SSE byte stream into events, remembering when each one completed.
#[derive(Default)]
pub struct SseSplitter {
    pending: Vec<u8>,
}

impl SseSplitter {
    /// Feeds bytes that arrived at `ns`; calls `on_event(ns, data)` with the `data:`
    /// payload of every event completed by them.
    pub fn feed(&mut self, ns: u64, bytes: &[u8], mut on_event: impl FnMut(u64, &[u8])) {
        self.pending.extend_from_slice(bytes);
        let mut start = 0;
        while let Some(i) = find_event_end(&self.pending[start..]) {
            let (event, sep) = (&self.pending[start..start + i.0], i.1);
            for line in event.split(|&b| b == b'\n') {
                let line = line.strip_suffix(b"\r").unwrap_or(line);
                if let Some(data) = line.strip_prefix(b"data:") {
                    let data = data.strip_prefix(b" ").unwrap_or(data);
                    on_event(ns, data);
                }
            }
            start += i.0 + sep;
        }
        self.pending.drain(..start);
    }
}

/// Position of the blank line ending an event, and the separator's length.
fn find_event_end(b: &[u8]) -> Option<(usize, usize)> {
    let mut i = 0;
    while i + 1 < b.len() {
        if b[i] == b'\n' && b[i + 1] == b'\n' {
            return Some((i, 2));
        }
        if i + 3 < b.len() && &b[i..i + 4] == b"\r\n\r\n" {
            return Some((i, 4));
        }
        i += 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints() {
        assert_eq!(
            Endpoint::parse("http://127.0.0.1:8000").unwrap(),
            Endpoint { host: "127.0.0.1".into(), port: 8000, prefix: String::new() }
        );
        assert_eq!(Endpoint::parse("http://gw/qwen/v1/").unwrap(), Endpoint { host: "gw".into(), port: 80, prefix: "/qwen".into() });
        assert!(Endpoint::parse("https://x").unwrap_err().contains("https"));
        assert!(Endpoint::parse("localhost:8000").is_err());
        assert!(Endpoint::parse("http://h:notaport").is_err());
    }

    #[test]
    fn sse_events_split_across_reads() {
        let mut s = SseSplitter::default();
        let mut got = Vec::new();
        s.feed(1, b"data: {\"a\":1}\n\nda", |ns, d| got.push((ns, d.to_vec())));
        s.feed(2, b"ta: [DONE]\n", |ns, d| got.push((ns, d.to_vec())));
        s.feed(3, b"\n", |ns, d| got.push((ns, d.to_vec())));
        assert_eq!(got, vec![(1, b"{\"a\":1}".to_vec()), (3, b"[DONE]".to_vec())]);
    }
}
