//! One HTTP/1.1 request per connection (`Connection: close`) over tokio,
//! for `scream-ice connect`, `scream-ice rollout`, the rollback webhooks
//! ([`crate::rollout_monitor`]) and the tests. The HTTP itself is
//! `scream_ice_core::signal`, the code the speakers run: URLs are parsed by
//! [`HttpUrl`], replies read by [`signal::read_response`] (`httparse`,
//! `Content-Length`, `chunked`, or until the server closes). This module
//! only moves the bytes, bounded in size ([`MAX_REPLY`]) and time. Plain
//! `http` only.

use std::net::SocketAddr;
use std::time::Duration;

use scream_ice_core::signal::{self, HttpUrl, Progress};
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
    /// The reply is not HTTP/1.x we understand, or too large.
    #[error("{addr}: malformed reply: {reason}")]
    Malformed {
        /// The server.
        addr: SocketAddr,
        /// What is wrong.
        reason: String,
    },
}

/// An `http://HOST[:PORT][/PREFIX]` base URL ([`HttpUrl`]), owned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BaseUrl {
    /// `HOST[:PORT]` as written: the `Host` header.
    pub authority: String,
    /// The host (IPv6 without brackets): what to resolve.
    pub host: String,
    /// The port (80 by default).
    pub port: u16,
    /// The path prefix without a trailing `/` (often empty).
    pub prefix: String,
}

impl BaseUrl {
    /// Parse `http://HOST[:PORT][/PREFIX]` (no query, fragment or
    /// userinfo).
    pub fn parse(url: &str) -> Result<BaseUrl, ClientError> {
        let u = HttpUrl::parse(url).ok_or_else(|| ClientError::Url(url.to_string()))?;
        Ok(BaseUrl {
            authority: u.authority.to_string(),
            host: u.host.to_string(),
            port: u.port,
            prefix: u.prefix.to_string(),
        })
    }

    /// The first address the host resolves to.
    pub async fn resolve(&self) -> Result<SocketAddr, ClientError> {
        let err = |reason: String| ClientError::Resolve {
            host: self.host.clone(),
            reason,
        };
        tokio::net::lookup_host((self.host.as_str(), self.port))
            .await
            .map_err(|e| err(e.to_string()))?
            .next()
            .ok_or_else(|| err("no address".into()))
    }
}

/// One reply, owned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    /// The status code.
    pub status: u16,
    /// `Location`, if present.
    pub location: Option<String>,
    /// `ETag`, if present.
    pub etag: Option<String>,
    /// The body (de-chunked).
    pub body: Vec<u8>,
}

impl Reply {
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
    let mut out = format!("{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n");
    for (k, v) in headers {
        out.push_str(&format!("{k}: {v}\r\n"));
    }
    out.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    let mut out = out.into_bytes();
    out.extend_from_slice(body);
    exchange(addr, &out, timeout).await
}

/// Send `request` (a whole HTTP/1.1 request, e.g. written by
/// [`signal::Client`]) on a new connection to `addr` and read the reply
/// within `timeout`.
pub async fn exchange(
    addr: SocketAddr,
    request: &[u8],
    timeout: Duration,
) -> Result<Reply, ClientError> {
    tokio::time::timeout(timeout, send_and_read(addr, request))
        .await
        .map_err(|_| ClientError::Timeout(addr))?
}

async fn send_and_read(addr: SocketAddr, request: &[u8]) -> Result<Reply, ClientError> {
    let io = |source| ClientError::Io { addr, source };
    let malformed = |reason: String| ClientError::Malformed { addr, reason };
    let mut stream = TcpStream::connect(addr).await.map_err(io)?;
    let _ = stream.set_nodelay(true);
    stream.write_all(request).await.map_err(io)?;
    let mut input = Vec::new();
    let mut chunk = [0u8; 8192];
    let mut body = vec![0u8; MAX_REPLY];
    loop {
        let got = stream.read(&mut chunk).await.map_err(io)?;
        input.extend_from_slice(chunk.get(..got).unwrap_or_default());
        match signal::read_response(&input, &mut body, got == 0) {
            Ok(Progress::Complete { response: r, .. }) => {
                return Ok(Reply {
                    status: r.status,
                    location: r.location.map(str::to_owned),
                    etag: r.etag.map(str::to_owned),
                    body: r.body.to_vec(),
                });
            }
            Ok(Progress::Incomplete) if input.len() > MAX_REPLY => {
                return Err(malformed("reply too large".into()));
            }
            Ok(Progress::Incomplete) => {}
            Err(e) => return Err(malformed(e.to_string())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_urls() {
        let u = BaseUrl::parse("http://127.0.0.1:8188").unwrap();
        assert_eq!(
            (
                u.host.as_str(),
                u.port,
                u.prefix.as_str(),
                u.authority.as_str()
            ),
            ("127.0.0.1", 8188, "", "127.0.0.1:8188")
        );
        let u = BaseUrl::parse("http://[::1]:9/x/").unwrap();
        assert_eq!(
            (
                u.host.as_str(),
                u.port,
                u.prefix.as_str(),
                u.authority.as_str()
            ),
            ("::1", 9, "/x", "[::1]:9")
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
            "http://user@a/",
        ] {
            assert!(BaseUrl::parse(bad).is_err(), "{bad}");
        }
    }

    /// A server that answers each connection with `reply` after reading
    /// the request head.
    async fn answering(reply: &'static [u8]) -> SocketAddr {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                let mut buf = [0u8; 4096];
                let _ = s.read(&mut buf).await;
                let _ = s.write_all(reply).await;
            }
        });
        addr
    }

    #[tokio::test]
    async fn replies_framed_every_way() {
        let t = Duration::from_secs(5);
        let get = |a| request(a, "x", "GET", "/", &[], b"", t);
        let a = answering(b"HTTP/1.1 201 Created\r\nETag: \"1\"\r\nLocation: /s/1\r\ncontent-length: 3\r\n\r\nabc").await;
        let r = get(a).await.unwrap();
        assert_eq!(
            (
                r.status,
                r.etag.as_deref(),
                r.location.as_deref(),
                &r.body[..]
            ),
            (201, Some("\"1\""), Some("/s/1"), &b"abc"[..])
        );
        let a = answering(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n").await;
        assert_eq!(get(a).await.unwrap().body, b"abcde");
        let a = answering(b"HTTP/1.1 204 No Content\r\n\r\n").await;
        assert_eq!(get(a).await.unwrap().status, 204);
        let a = answering(b"HTTP/1.0 200 OK\r\nx: y\r\n\r\nuntil eof").await;
        assert_eq!(get(a).await.unwrap().body, b"until eof");
        let a = answering(b"SSH-2.0\r\n\r\n").await;
        assert!(matches!(get(a).await, Err(ClientError::Malformed { .. })));
        let a = answering(b"HTTP/1.1 200 OK\r\ncontent-length: 9\r\n\r\nab").await;
        assert!(matches!(get(a).await, Err(ClientError::Malformed { .. })));
    }
}
