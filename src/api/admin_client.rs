//! A minimal blocking HTTP/1.1 client over the agent's admin unix socket, for
//! `debug --admin-socket` and `admin`. Blocking std I/O on purpose: the CLI
//! commands that use it are synchronous and run inside the async runtime.
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use thiserror::Error;

#[derive(Debug, Error)]
pub enum AdminClientError {
    #[error("cannot reach the agent's admin socket {path}: {source}; is the agent running with --admin-socket {path}?")]
    Connect {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("admin socket {path}: {reason}")]
    Protocol { path: PathBuf, reason: String },
    #[error("the agent answered {status}: {body}")]
    Status { status: u16, body: String },
}

/// Sends one request; returns the body of a 2xx answer.
pub fn request(
    socket: &Path,
    method: &str,
    path_and_query: &str,
) -> Result<Vec<u8>, AdminClientError> {
    let proto = |reason: String| AdminClientError::Protocol {
        path: socket.to_path_buf(),
        reason,
    };
    let mut stream = UnixStream::connect(socket).map_err(|source| AdminClientError::Connect {
        path: socket.to_path_buf(),
        source,
    })?;
    let _ = stream.set_read_timeout(Some(Duration::from_secs(60)));
    let req = format!("{method} {path_and_query} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nContent-Length: 0\r\n\r\n");
    stream
        .write_all(req.as_bytes())
        .map_err(|e| proto(e.to_string()))?;
    let mut raw = Vec::new();
    stream
        .read_to_end(&mut raw)
        .map_err(|e| proto(e.to_string()))?;
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| proto("answer has no header end".into()))?;
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let body = &raw[split + 4..];
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| {
            proto(format!(
                "bad status line {:?}",
                head.lines().next().unwrap_or("")
            ))
        })?;
    let chunked = head.lines().any(|l| {
        l.to_ascii_lowercase().starts_with("transfer-encoding:")
            && l.to_ascii_lowercase().contains("chunked")
    });
    let body = if chunked {
        dechunk(body).ok_or_else(|| proto("malformed chunked body".into()))?
    } else {
        body.to_vec()
    };
    if !(200..300).contains(&status) {
        return Err(AdminClientError::Status {
            status,
            body: String::from_utf8_lossy(&body).trim().to_string(),
        });
    }
    Ok(body)
}

fn dechunk(mut body: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line_end = body.windows(2).position(|w| w == b"\r\n")?;
        let size_text = std::str::from_utf8(&body[..line_end]).ok()?;
        let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
        body = &body[line_end + 2..];
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(body.get(..size)?);
        body = body.get(size + 2..)?;
    }
}

/// Percent-encodes a query value (keys hold `/` and may hold anything).
pub fn encode_query_value(v: &str) -> String {
    let mut out = String::new();
    for b in v.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dechunks() {
        assert_eq!(
            dechunk(b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n").as_deref(),
            Some(&b"abcde"[..])
        );
        assert_eq!(dechunk(b"zz\r\n"), None);
    }

    #[test]
    fn encodes_keys() {
        assert_eq!(encode_query_value("ns/Pod/a b/c"), "ns%2FPod%2Fa%20b%2Fc");
    }
}
