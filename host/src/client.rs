//! A minimal HTTP/1.1 client: one request per connection
//! (`Connection: close`), enough for `scream-ice rollout`, the rollback
//! webhooks ([`crate::rollout_monitor`]) and the tests to talk HTTP
//! without a client library (`scream-ice connect` uses
//! `scream_ice_core::signal` instead).
//!
//! It parses `http://HOST[:PORT][/PREFIX]`
//! base URLs ([`BaseUrl`]), sends one request ([`request`]) and reads the
//! whole reply (`Content-Length`, `chunked`, or until the server closes),
//! bounded in size and time. Plain `http` only.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Replies larger than this are refused.
pub const MAX_REPLY: usize = 1 << 20;

/// Why a request failed; one line each.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The URL is not `http://HOST[:PORT][/PATH]`.
    #[error("bad URL {0:?} (expected http://HOST[:PORT][/PATH])")]
    Url(String),
    /// The host did not resolve.
    #[error("cannot resolve {host}: {reason}")]
    Resolve {
        /// The host.
        host: String,
        /// Why.
        reason: String,
    },
    /// Connecting, writing or reading failed.
    #[error("{addr}: {source}")]
    Io {
        /// The server.
        addr: SocketAddr,
        /// The error.
        source: std::io::Error,
    },
    /// No complete reply within the timeout.
    #[error("{0}: no reply within the timeout")]
    Timeout(SocketAddr),
    /// The reply is not HTTP/1.x we understand.
    #[error("{addr}: malformed reply: {reason}")]
    Malformed {
        /// The server.
        addr: SocketAddr,
        /// What is wrong.
        reason: &'static str,
    },
}

/// A parsed `http://` base URL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BaseUrl {
    /// The host as written (IPv6 with brackets).
    pub host: String,
    /// The port (80 by default).
    pub port: u16,
    /// The path prefix without a trailing `/` (often empty).
    pub prefix: String,
}

impl BaseUrl {
    /// Parse `http://HOST[:PORT][/PREFIX]`.
    pub fn parse(url: &str) -> Result<BaseUrl, ClientError> {
        let bad = || ClientError::Url(url.to_string());
        let rest = url.strip_prefix("http://").ok_or_else(bad)?;
        let (authority, path) = match rest.find('/') {
            Some(i) => (
                rest.get(..i).ok_or_else(bad)?,
                rest.get(i..).ok_or_else(bad)?,
            ),
            None => (rest, ""),
        };
        let (host, port) = if let Some(h) = authority.strip_prefix('[') {
            let end = h.find(']').ok_or_else(bad)?;
            let host = h.get(..end).ok_or_else(bad)?;
            let after = h.get(end + 1..).ok_or_else(bad)?;
            let port = match after.strip_prefix(':') {
                Some(p) => p.parse().map_err(|_| bad())?,
                None if after.is_empty() => 80,
                None => return Err(bad()),
            };
            (format!("[{host}]"), port)
        } else {
            match authority.rsplit_once(':') {
                Some((h, p)) => (h.to_string(), p.parse().map_err(|_| bad())?),
                None => (authority.to_string(), 80),
            }
        };
        if host.is_empty() || host == "[]" || path.contains(['?', '#']) {
            return Err(bad());
        }
        Ok(BaseUrl {
            host,
            port,
            prefix: path.trim_end_matches('/').to_string(),
        })
    }

    /// The first address the host resolves to.
    pub async fn resolve(&self) -> Result<SocketAddr, ClientError> {
        let name = self.host.trim_start_matches('[').trim_end_matches(']');
        let err = |reason: String| ClientError::Resolve {
            host: self.host.clone(),
            reason,
        };
        tokio::net::lookup_host((name, self.port))
            .await
            .map_err(|e| err(e.to_string()))?
            .next()
            .ok_or_else(|| err("no address".into()))
    }

    /// The `Host` header value.
    pub fn authority(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }
}

/// One reply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    /// The status code.
    pub status: u16,
    /// The header fields in order, names lowercased.
    pub headers: Vec<(String, String)>,
    /// The body (de-chunked).
    pub body: Vec<u8>,
}

impl Reply {
    /// The first value of header `name` (lowercase).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The body as text (lossy).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Send one request to `addr` and read the reply within `timeout`.
/// `headers` are sent as given; `Host`, `Content-Length` and
/// `Connection: close` are added.
pub async fn request(
    addr: SocketAddr,
    host: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    timeout: Duration,
) -> Result<Reply, ClientError> {
    tokio::time::timeout(timeout, exchange(addr, host, method, path, headers, body))
        .await
        .map_err(|_| ClientError::Timeout(addr))?
}

async fn exchange(
    addr: SocketAddr,
    host: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Result<Reply, ClientError> {
    let io = |source| ClientError::Io { addr, source };
    let mut stream = TcpStream::connect(addr).await.map_err(io)?;
    let _ = stream.set_nodelay(true);
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n");
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    let mut out = head.into_bytes();
    out.extend_from_slice(body);
    stream.write_all(&out).await.map_err(io)?;
    let mut raw = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        let n = stream.read(&mut chunk).await.map_err(io)?;
        if n == 0 {
            break;
        }
        raw.extend_from_slice(chunk.get(..n).unwrap_or_default());
        if raw.len() > MAX_REPLY {
            return Err(ClientError::Malformed {
                addr,
                reason: "reply too large",
            });
        }
        if let Some(r) =
            parse_reply(&raw).map_err(|reason| ClientError::Malformed { addr, reason })?
        {
            return Ok(r);
        }
    }
    parse_reply_at_eof(&raw).map_err(|reason| ClientError::Malformed { addr, reason })
}

/// The status line and header fields, and the bytes after them; `None`
/// until the header is complete.
fn split_head(raw: &[u8]) -> Result<Option<(Reply, &[u8])>, &'static str> {
    let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") else {
        return Ok(None);
    };
    let head = std::str::from_utf8(raw.get(..end).unwrap_or_default())
        .map_err(|_| "header is not UTF-8")?;
    let rest = raw.get(end + 4..).unwrap_or_default();
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let mut parts = status_line.splitn(3, ' ');
    let version = parts.next().unwrap_or_default();
    if !version.starts_with("HTTP/1.") {
        return Err("not an HTTP/1.x status line");
    }
    let status: u16 = parts
        .next()
        .and_then(|s| s.parse().ok())
        .ok_or("bad status code")?;
    let mut headers = Vec::new();
    for l in lines {
        let (n, v) = l.split_once(':').ok_or("bad header line")?;
        headers.push((n.trim().to_ascii_lowercase(), v.trim().to_string()));
    }
    Ok(Some((
        Reply {
            status,
            headers,
            body: Vec::new(),
        },
        rest,
    )))
}

/// A complete reply in `raw`, `None` if more bytes are needed (or the body
/// runs to the end of the stream).
pub fn parse_reply(raw: &[u8]) -> Result<Option<Reply>, &'static str> {
    let Some((mut reply, rest)) = split_head(raw)? else {
        return Ok(None);
    };
    let status = reply.status;
    if status == 204 || status == 304 || (100..200).contains(&status) {
        return Ok(Some(reply));
    }
    if reply
        .header("transfer-encoding")
        .is_some_and(|t| t.eq_ignore_ascii_case("chunked"))
    {
        return match dechunk(rest)? {
            Some(b) => {
                reply.body = b;
                Ok(Some(reply))
            }
            None => Ok(None),
        };
    }
    if let Some(len) = reply.header("content-length") {
        let len: usize = len.parse().map_err(|_| "bad Content-Length")?;
        if rest.len() >= len {
            reply.body = rest.get(..len).unwrap_or_default().to_vec();
            return Ok(Some(reply));
        }
    }
    Ok(None)
}

/// The reply when the server closed the connection.
fn parse_reply_at_eof(raw: &[u8]) -> Result<Reply, &'static str> {
    if let Some(r) = parse_reply(raw)? {
        return Ok(r);
    }
    let (mut reply, rest) = split_head(raw)?.ok_or("connection closed before the header ended")?;
    if reply.header("content-length").is_some() || reply.header("transfer-encoding").is_some() {
        return Err("connection closed before the body ended");
    }
    reply.body = rest.to_vec();
    Ok(reply)
}

/// Decode a chunked body; `None` until the last chunk has arrived.
fn dechunk(mut rest: &[u8]) -> Result<Option<Vec<u8>>, &'static str> {
    let mut body = Vec::new();
    loop {
        let Some(eol) = rest.windows(2).position(|w| w == b"\r\n") else {
            return Ok(None);
        };
        let line = std::str::from_utf8(rest.get(..eol).unwrap_or_default())
            .map_err(|_| "bad chunk size")?;
        let size_hex = line.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size_hex, 16).map_err(|_| "bad chunk size")?;
        rest = rest.get(eol + 2..).unwrap_or_default();
        if size == 0 {
            return Ok(Some(body));
        }
        if rest.len() < size + 2 {
            return Ok(None);
        }
        body.extend_from_slice(rest.get(..size).unwrap_or_default());
        rest = rest.get(size + 2..).unwrap_or_default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_urls() {
        let u = BaseUrl::parse("http://127.0.0.1:8188").unwrap();
        assert_eq!(
            (u.host.as_str(), u.port, u.prefix.as_str()),
            ("127.0.0.1", 8188, "")
        );
        let u = BaseUrl::parse("http://[::1]:9/x/").unwrap();
        assert_eq!(
            (u.host.as_str(), u.port, u.prefix.as_str()),
            ("[::1]", 9, "/x")
        );
        let u = BaseUrl::parse("http://router.local").unwrap();
        assert_eq!((u.host.as_str(), u.port), ("router.local", 80));
        for bad in [
            "https://a",
            "http://",
            "http://a:x",
            "http://[::1",
            "ftp://a",
            "http://a/?q",
        ] {
            assert!(BaseUrl::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn replies() {
        let r = parse_reply(b"HTTP/1.1 201 Created\r\nETag: \"1\"\r\ncontent-length: 3\r\n\r\nabc")
            .unwrap()
            .unwrap();
        assert_eq!(r.status, 201);
        assert_eq!(r.header("etag"), Some("\"1\""));
        assert_eq!(r.body, b"abc");
        assert_eq!(
            parse_reply(b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\n\r\nab").unwrap(),
            None
        );
        let r = parse_reply(
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n",
        )
        .unwrap()
        .unwrap();
        assert_eq!(r.body, b"abcde");
        let r = parse_reply(b"HTTP/1.1 204 No Content\r\n\r\n")
            .unwrap()
            .unwrap();
        assert_eq!(r.status, 204);
        assert!(parse_reply(b"SSH-2.0\r\n\r\n").is_err());
        let r = parse_reply_at_eof(b"HTTP/1.0 200 OK\r\nx: y\r\n\r\nuntil eof").unwrap();
        assert_eq!(r.body, b"until eof");
        assert_eq!(r.header("x"), Some("y"));
        assert!(parse_reply_at_eof(b"HTTP/1.1 200 OK\r\ncontent-length: 9\r\n\r\nab").is_err());
    }
}
