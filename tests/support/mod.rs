//! Helpers for tests that drive the `llmd` binary.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The repository root (tests run with it as the working directory).
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `../shared/fixtures/<rel>` when it exists. A plain clone has no `../shared`, so the
/// test skips (saying so); with `LLMD_REQUIRE_FIXTURES=1` (set by `.ci/run`) a missing
/// fixture fails the test instead of passing it by skipping.
#[allow(dead_code)]
pub fn fixture(rel: &str) -> Option<PathBuf> {
    fixture_or_fail(rel, std::env::var("LLMD_REQUIRE_FIXTURES").is_ok_and(|v| v == "1"))
}

/// [`fixture`] with the requirement given.
#[allow(dead_code)]
pub fn fixture_or_fail(rel: &str, required: bool) -> Option<PathBuf> {
    let path = root().join("../shared/fixtures").join(rel);
    if path.exists() {
        return Some(path);
    }
    assert!(!required, "LLMD_REQUIRE_FIXTURES=1 but {} is missing", path.display());
    eprintln!("skipping: {} is not present", path.display());
    None
}

/// An `llmd` command with a clean environment: no tokens, no LLMDBENCH_* defaults.
pub fn llmd() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_llmd"));
    cmd.current_dir(root());
    for (k, _) in std::env::vars() {
        if k.starts_with("LLMDBENCH_") || k.contains("TOKEN") {
            cmd.env_remove(k);
        }
    }
    cmd
}

pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

pub fn run(cmd: &mut Command) -> Run {
    let Output { status, stdout, stderr } = cmd.output().expect("llmd runs");
    Run {
        code: status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&stdout).into(),
        stderr: String::from_utf8_lossy(&stderr).into(),
    }
}

/// All files under `dir`, as sorted relative paths.
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p.strip_prefix(dir).unwrap().to_path_buf());
            }
        }
    }
    out.sort();
    out
}

/// A minimal blocking HTTP/1.1 client for tests: one request per connection
/// (`Connection: close`), chunked bodies decoded. Deliberately independent of llmd's own
/// client code.
pub mod http {
    use std::io::{BufRead, BufReader, Read, Write};
    use std::net::TcpStream;
    use std::time::Duration;

    #[derive(Debug)]
    pub struct Response {
        pub status: u16,
        pub headers: Vec<(String, String)>,
        pub body: String,
    }

    impl Response {
        pub fn json(&self) -> serde_json::Value {
            serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
        }

        pub fn header(&self, name: &str) -> Option<&str> {
            self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
        }

        /// The `data:` payloads of an SSE body.
        pub fn events(&self) -> Vec<String> {
            assert!(
                self.body.ends_with("\n\n"),
                "SSE body must end with a blank line: {:?}",
                &self.body[self.body.len().saturating_sub(80)..]
            );
            self.body
                .split("\n\n")
                .filter(|e| !e.is_empty())
                .map(|e| e.strip_prefix("data: ").unwrap_or_else(|| panic!("not an SSE data event: {e:?}")).to_string())
                .collect()
        }
    }

    pub fn request(port: u16, method: &str, path: &str, body: Option<&str>, headers: &[(&str, &str)]) -> Response {
        let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        stream.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        let mut req = format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n");
        for (k, v) in headers {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        if let Some(b) = body {
            req.push_str(&format!("Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{b}", b.len()));
        } else {
            req.push_str("\r\n");
        }
        stream.write_all(req.as_bytes()).unwrap();
        let mut reader = BufReader::new(stream);
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        let status: u16 = line.split_whitespace().nth(1).unwrap_or("0").parse().unwrap();
        let mut headers = Vec::new();
        loop {
            line.clear();
            reader.read_line(&mut line).unwrap();
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            let (k, v) = l.split_once(':').unwrap();
            headers.push((k.trim().to_string(), v.trim().to_string()));
        }
        let chunked = headers.iter().any(|(k, v)| k.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked"));
        let mut body = Vec::new();
        if chunked {
            loop {
                line.clear();
                if reader.read_line(&mut line).unwrap() == 0 {
                    break; // connection dropped mid-body
                }
                let size = usize::from_str_radix(line.trim(), 16).unwrap_or(0);
                if size == 0 {
                    break;
                }
                let mut chunk = vec![0; size + 2];
                if reader.read_exact(&mut chunk).is_err() {
                    break;
                }
                body.extend_from_slice(&chunk[..size]);
            }
        } else {
            let _ = reader.read_to_end(&mut body);
        }
        Response { status, headers, body: String::from_utf8(body).unwrap() }
    }

    pub fn post(port: u16, path: &str, body: &serde_json::Value) -> Response {
        request(port, "POST", path, Some(&body.to_string()), &[])
    }

    pub fn get(port: u16, path: &str) -> Response {
        request(port, "GET", path, None, &[])
    }
}

/// A `llmd sim` subprocess on a free port; killed on drop.
pub struct Sim {
    pub child: std::process::Child,
    pub port: u16,
}

impl Sim {
    pub fn start(args: &[&str]) -> Sim {
        use std::io::BufRead;
        let mut child = llmd()
            .args(["sim", "--port", "0"])
            .args(args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::inherit())
            .spawn()
            .expect("start llmd sim");
        let stdout = child.stdout.take().unwrap();
        let mut line = String::new();
        std::io::BufReader::new(stdout).read_line(&mut line).unwrap();
        let port = line.trim().rsplit(':').next().and_then(|p| p.parse().ok()).unwrap_or_else(|| panic!("no port in {line:?}"));
        Sim { child, port }
    }

    /// The value of one metric sample line (`name{labels} value`) by name prefix.
    pub fn metric(&self, name: &str) -> f64 {
        let text = http::get(self.port, "/metrics").body;
        text.lines()
            .find(|l| l.starts_with(name) && (l.as_bytes().get(name.len()) == Some(&b'{') || l.as_bytes().get(name.len()) == Some(&b' ')))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("metric {name} not found"))
    }

    /// Sends SIGTERM and waits.
    pub fn stop(mut self) -> std::process::ExitStatus {
        unsafe { libc_kill(self.child.id() as i32, 15) };
        let status = self.child.wait().unwrap();
        std::mem::forget(self);
        status
    }
}

unsafe extern "C" {
    #[link_name = "kill"]
    fn libc_kill(pid: i32, sig: i32) -> i32;
}

impl Drop for Sim {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Copies the tree `from` into `to` (created).
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            copy_dir(&p, &to.join(e.file_name()));
        } else {
            std::fs::copy(&p, to.join(e.file_name())).unwrap();
        }
    }
}
