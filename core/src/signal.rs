//! The speaker's signaling client: a sans-IO HTTP/1.1 client for the
//! router's session API (`/api/ice/sessions`, RFC 8840 sdpfrags).
//!
//! This module sits beside [`crate::session`]: the session produces the
//! speaker's credentials and candidates, [`crate::sdpfrag::SdpFragWriter`]
//! turns them into a body, and this client turns the body into request
//! bytes and the router's reply bytes back into a status, headers and a
//! body. It owns no socket and never allocates: requests are written into
//! the caller's buffer, responses are read from bytes the adapter received
//! (one TCP connection per request, or kept alive: each response says how
//! many bytes it consumed), so `scream-ice connect` and both firmwares
//! share it.
//!
//! The exchange (RFC 8840 over HTTP, the router's `host/src/sessions.rs`):
//!
//! 1. `POST {prefix}/api/ice/sessions` with our sdpfrag
//!    ([`Client::write_post`]); a `201 Created` carries `Location` (the
//!    session's path), usually an `ETag`, and the router's sdpfrag.
//!    [`Client::handle_created`] keeps both. A 201 without `ETag` is
//!    tolerated: later PATCHes then go without `If-Match`.
//! 2. `PATCH {location}` with trickled candidates or end-of-candidates
//!    ([`Client::write_patch`], `If-Match` when an `ETag` is known); a reply
//!    with a new `ETag` (ICE restart) replaces it ([`Client::handle_patched`]).
//! 3. `GET {location}` for the router's candidates gathered later
//!    ([`Client::write_get`]).
//! 4. `DELETE {location}` at the end ([`Client::write_delete`]).
//!
//! Responses ([`read_response`]) are parsed with `httparse`; bodies may be
//! framed by `Content-Length` or `Transfer-Encoding: chunked` (decoded
//! into the caller's body buffer); a response with neither ends at the
//! end of the connection (pass `eof = true`).

use core::fmt::{self, Write as _};

use heapless::String;

/// The media type of RFC 8840 bodies.
pub const SDPFRAG: &str = "application/trickle-ice-sdpfrag";
/// The collection path below the router's base path.
pub const SESSIONS_PATH: &str = "/api/ice/sessions";
/// Longest `Location` path kept.
pub const MAX_LOCATION: usize = 192;
/// Longest `ETag` kept (with its quotes).
pub const MAX_ETAG: usize = 96;
/// Longest `Host` authority and base path.
pub const MAX_BASE: usize = 128;
/// Headers a response may carry at most.
pub const MAX_HEADERS: usize = 32;

/// Why a request could not be written or a response not read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum SignalError {
    /// The caller's buffer is too small; `required` bytes would do (for a
    /// request), or the body buffer could not hold the body (response).
    InsufficientSize {
        /// Bytes needed.
        required: usize,
    },
    /// The response is not valid HTTP/1.x (`httparse` rejected it, or a
    /// chunk size or `Content-Length` is malformed).
    Malformed,
    /// A `Location`/`ETag` too long for the fixed buffers, a base path
    /// or location that is not an absolute path, or a query that cannot go
    /// into a request line.
    TooLong,
    /// A PATCH, GET or DELETE before a session was created.
    NoSession,
    /// The connection ended before the response was complete.
    Truncated,
}

impl fmt::Display for SignalError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SignalError::InsufficientSize { required } => {
                write!(f, "buffer too small: {required} bytes needed")
            }
            SignalError::Malformed => f.write_str("malformed HTTP response"),
            SignalError::TooLong => f.write_str("Location, ETag or base path too long or invalid"),
            SignalError::NoSession => f.write_str("no session yet (POST first)"),
            SignalError::Truncated => f.write_str("connection closed mid-response"),
        }
    }
}

impl core::error::Error for SignalError {}

/// An `http://HOST[:PORT][/PREFIX]` base URL, borrowed from the input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HttpUrl<'a> {
    /// `HOST[:PORT]` as written: the `Host` header.
    pub authority: &'a str,
    /// The host (IPv6 without brackets): what to resolve.
    pub host: &'a str,
    /// The port (80 when not written).
    pub port: u16,
    /// The path prefix without a trailing `/` (often empty).
    pub prefix: &'a str,
}

impl<'a> HttpUrl<'a> {
    /// Parse `http://HOST[:PORT][/PREFIX]` (no query, no fragment, no
    /// userinfo). Never panics.
    pub fn parse(url: &'a str) -> Option<HttpUrl<'a>> {
        let rest = url.strip_prefix("http://")?;
        let (authority, path) = match rest.find('/') {
            Some(i) => rest.split_at(i),
            None => (rest, ""),
        };
        let (host, port) = if let Some(h) = authority.strip_prefix('[') {
            let (host, after) = h.split_once(']')?;
            let port = match after.strip_prefix(':') {
                Some(p) => p.parse().ok()?,
                None if after.is_empty() => 80,
                None => return None,
            };
            (host, port)
        } else {
            match authority.rsplit_once(':') {
                Some((h, p)) => (h, p.parse().ok()?),
                None => (authority, 80),
            }
        };
        if host.is_empty()
            || host.contains(['@', '[', ']'])
            || path.contains(['?', '#'])
            || !is_header_safe(authority)
        {
            return None;
        }
        Some(HttpUrl {
            authority,
            host,
            port,
            prefix: path.trim_end_matches('/'),
        })
    }
}

/// One session with one router: where it is and which `ETag` it has.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Client {
    authority: String<MAX_BASE>,
    prefix: String<MAX_BASE>,
    location: Option<String<MAX_LOCATION>>,
    etag: Option<String<MAX_ETAG>>,
}

/// A parsed response; header values and body borrow from the caller's
/// buffers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Response<'b> {
    /// The status code.
    pub status: u16,
    /// `Location`, if present.
    pub location: Option<&'b str>,
    /// `ETag`, if present.
    pub etag: Option<&'b str>,
    /// `Content-Type`, if present.
    pub content_type: Option<&'b str>,
    /// The body (chunked bodies decoded).
    pub body: &'b [u8],
}

impl Response<'_> {
    /// The body as text, if it is UTF-8.
    pub fn text(&self) -> Option<&str> {
        core::str::from_utf8(self.body).ok()
    }
}

/// How far reading a response got.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[allow(clippy::exhaustive_enums)] // a response is complete or it is not
pub enum Progress<'b> {
    /// More bytes are needed: read more and call again with all of them.
    Incomplete,
    /// A whole response; it took `consumed` bytes of the input.
    Complete {
        /// The response.
        response: Response<'b>,
        /// Bytes of the input it used (the rest belongs to the next one).
        consumed: usize,
    },
}

/// A writer into a fixed slice that remembers how much it needed.
struct Out<'a> {
    buf: &'a mut [u8],
    len: usize,
}

impl fmt::Write for Out<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let end = self.len + s.len();
        if let Some(dst) = self.buf.get_mut(self.len..end) {
            dst.copy_from_slice(s.as_bytes());
        }
        self.len = end;
        Ok(())
    }
}

impl Client {
    /// A client for the router at `authority` (`host[:port]`, sent as
    /// `Host`) with the base path `prefix` (empty, or an absolute path
    /// without a trailing slash, e.g. `/router`).
    pub fn new(authority: &str, prefix: &str) -> Result<Client, SignalError> {
        let prefix = prefix.strip_suffix('/').unwrap_or(prefix);
        if !(prefix.is_empty() || prefix.starts_with('/'))
            || authority.is_empty()
            || !is_header_safe(authority)
            || !is_header_safe(prefix)
        {
            return Err(SignalError::TooLong);
        }
        Ok(Client {
            authority: String::try_from(authority).map_err(|_| SignalError::TooLong)?,
            prefix: String::try_from(prefix).map_err(|_| SignalError::TooLong)?,
            location: None,
            etag: None,
        })
    }

    /// The session's path, once created.
    pub fn location(&self) -> Option<&str> {
        self.location.as_deref()
    }

    /// The current `ETag`, if the router sent one.
    pub fn etag(&self) -> Option<&str> {
        self.etag.as_deref()
    }

    /// A client for the router at `url` ([`HttpUrl`]).
    pub fn for_url(url: &HttpUrl<'_>) -> Result<Client, SignalError> {
        Client::new(url.authority, url.prefix)
    }

    /// `POST {prefix}/api/ice/sessions` with `body` (our sdpfrag) into
    /// `buf`; returns the request's length.
    pub fn write_post(&self, buf: &mut [u8], body: &[u8]) -> Result<usize, SignalError> {
        self.write(buf, "POST", Target::Collection(""), Some(body))
    }

    /// `POST {prefix}/api/ice/sessions?{query}` with `body`, e.g. the
    /// query `sink=NAME` that subscribes the session to a router sink.
    /// The query must be non-empty, without spaces, `#` or control
    /// characters ([`SignalError::TooLong`] otherwise).
    pub fn write_post_query(
        &self,
        buf: &mut [u8],
        query: &str,
        body: &[u8],
    ) -> Result<usize, SignalError> {
        if query.is_empty()
            || !is_header_safe(query)
            || query.bytes().any(|b| b == b' ' || b == b'#')
        {
            return Err(SignalError::TooLong);
        }
        self.write(buf, "POST", Target::Collection(query), Some(body))
    }

    /// `PATCH {location}` with `body` (trickled candidates or
    /// end-of-candidates), with `If-Match` when an `ETag` is known.
    pub fn write_patch(&self, buf: &mut [u8], body: &[u8]) -> Result<usize, SignalError> {
        self.write(buf, "PATCH", Target::Session, Some(body))
    }

    /// `GET {location}`: the router's current sdpfrag.
    pub fn write_get(&self, buf: &mut [u8]) -> Result<usize, SignalError> {
        self.write(buf, "GET", Target::Session, None)
    }

    /// `DELETE {location}`: end the session.
    pub fn write_delete(&self, buf: &mut [u8]) -> Result<usize, SignalError> {
        self.write(buf, "DELETE", Target::Session, None)
    }

    /// The reply to the POST: on `201` keep `Location` (an absolute path,
    /// or an absolute URI whose path is kept) and the `ETag` if any.
    /// Other statuses change nothing. A 201 without `Location` is
    /// [`SignalError::NoSession`].
    pub fn handle_created(&mut self, r: &Response<'_>) -> Result<(), SignalError> {
        if r.status != 201 {
            return Ok(());
        }
        let loc = r.location.ok_or(SignalError::NoSession)?;
        let path = absolute_path(loc).ok_or(SignalError::TooLong)?;
        self.location = Some(String::try_from(path).map_err(|_| SignalError::TooLong)?);
        self.etag = match r.etag {
            Some(e) => Some(String::try_from(e).map_err(|_| SignalError::TooLong)?),
            None => None,
        };
        Ok(())
    }

    /// The reply to a PATCH: a new `ETag` (an ICE restart) replaces ours.
    pub fn handle_patched(&mut self, r: &Response<'_>) -> Result<(), SignalError> {
        if (200..300).contains(&r.status)
            && let Some(e) = r.etag
        {
            self.etag = Some(String::try_from(e).map_err(|_| SignalError::TooLong)?);
        }
        Ok(())
    }

    fn write(
        &self,
        buf: &mut [u8],
        method: &str,
        target: Target,
        body: Option<&[u8]>,
    ) -> Result<usize, SignalError> {
        let mut out = Out { buf, len: 0 };
        let r = (|| -> fmt::Result {
            match target {
                Target::Collection("") => {
                    write!(out, "{method} {}{SESSIONS_PATH} HTTP/1.1\r\n", self.prefix)?
                }
                Target::Collection(q) => write!(
                    out,
                    "{method} {}{SESSIONS_PATH}?{q} HTTP/1.1\r\n",
                    self.prefix
                )?,
                Target::Session => {
                    let loc = self.location.as_deref().ok_or(fmt::Error)?;
                    write!(out, "{method} {loc} HTTP/1.1\r\n")?
                }
            }
            write!(out, "Host: {}\r\n", self.authority)?;
            if let (Target::Session, Some(etag), "PATCH") = (target, &self.etag, method) {
                write!(out, "If-Match: {etag}\r\n")?;
            }
            if method == "GET" {
                write!(out, "Accept: {SDPFRAG}\r\n")?;
            }
            if let Some(b) = body {
                write!(out, "Content-Type: {SDPFRAG}\r\n")?;
                write!(out, "Content-Length: {}\r\n", b.len())?;
            } else if method != "GET" {
                out.write_str("Content-Length: 0\r\n")?;
            }
            out.write_str("\r\n")
        })();
        if r.is_err() {
            return Err(SignalError::NoSession);
        }
        let head = out.len;
        let total = head + body.map_or(0, <[u8]>::len);
        if total > out.buf.len() {
            return Err(SignalError::InsufficientSize { required: total });
        }
        if let Some(b) = body {
            out.buf[head..total].copy_from_slice(b);
        }
        Ok(total)
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Target<'q> {
    /// The sessions collection, with a query string (empty: none).
    Collection(&'q str),
    Session,
}

/// No CR, LF or other control characters: safe inside a header line.
fn is_header_safe(s: &str) -> bool {
    s.bytes().all(|b| (0x21..0x7f).contains(&b))
}

/// The path of a `Location`: itself if it is an absolute path, the path of
/// an absolute `http://` URI otherwise.
fn absolute_path(loc: &str) -> Option<&str> {
    let path = if loc.starts_with('/') {
        loc
    } else {
        let rest = loc
            .strip_prefix("http://")
            .or_else(|| loc.strip_prefix("https://"))?;
        &rest[rest.find('/')?..]
    };
    is_header_safe(path).then_some(path)
}

/// Read one response from `input` (everything received so far on the
/// connection). Headers are parsed by `httparse`; the body is copied, with
/// chunked framing removed, into `body`. `eof`: the peer closed the
/// connection (ends a body framed by neither length nor chunks).
/// Never panics.
pub fn read_response<'b>(
    input: &'b [u8],
    body: &'b mut [u8],
    eof: bool,
) -> Result<Progress<'b>, SignalError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut resp = httparse::Response::new(&mut headers);
    let head = match resp.parse(input) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) if eof => return Err(SignalError::Truncated),
        Ok(httparse::Status::Partial) => return Ok(Progress::Incomplete),
        Err(_) => return Err(SignalError::Malformed),
    };
    let status = resp.code.ok_or(SignalError::Malformed)?;
    let mut location = None;
    let mut etag = None;
    let mut content_type = None;
    let mut length: Option<usize> = None;
    let mut chunked = false;
    for h in resp.headers.iter() {
        let value = core::str::from_utf8(h.value).ok().map(str::trim);
        if h.name.eq_ignore_ascii_case("location") {
            location = value;
        } else if h.name.eq_ignore_ascii_case("etag") {
            etag = value;
        } else if h.name.eq_ignore_ascii_case("content-type") {
            content_type = value;
        } else if h.name.eq_ignore_ascii_case("content-length") {
            let n = value
                .and_then(|v| v.parse::<usize>().ok())
                .ok_or(SignalError::Malformed)?;
            if length.is_some_and(|l| l != n) {
                return Err(SignalError::Malformed);
            }
            length = Some(n);
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = value.is_some_and(|v| {
                v.rsplit(',')
                    .next()
                    .is_some_and(|last| last.trim().eq_ignore_ascii_case("chunked"))
            });
        }
    }
    // RFC 9112 section 6.3: no body for 1xx, 204 and 304.
    let bodiless = (100..200).contains(&status) || status == 204 || status == 304;
    let rest = &input[head..];
    let (body_len, consumed) = if bodiless {
        (0, head)
    } else if chunked {
        match dechunk(rest, body)? {
            Some((n, used)) => (n, head + used),
            None if eof => return Err(SignalError::Truncated),
            None => return Ok(Progress::Incomplete),
        }
    } else if let Some(n) = length {
        if rest.len() < n {
            return if eof {
                Err(SignalError::Truncated)
            } else {
                Ok(Progress::Incomplete)
            };
        }
        copy_into(body, 0, &rest[..n])?;
        (n, head + n)
    } else if eof {
        copy_into(body, 0, rest)?;
        (rest.len(), input.len())
    } else {
        return Ok(Progress::Incomplete);
    };
    Ok(Progress::Complete {
        response: Response {
            status,
            location,
            etag,
            content_type,
            body: &body[..body_len],
        },
        consumed,
    })
}

fn copy_into(body: &mut [u8], at: usize, bytes: &[u8]) -> Result<(), SignalError> {
    let end = at + bytes.len();
    body.get_mut(at..end)
        .ok_or(SignalError::InsufficientSize { required: end })?
        .copy_from_slice(bytes);
    Ok(())
}

/// Decode a chunked body from `input` into `body`: `Some((body length,
/// bytes used))` when the last chunk and the trailer section are in,
/// `None` when more input is needed.
fn dechunk(input: &[u8], body: &mut [u8]) -> Result<Option<(usize, usize)>, SignalError> {
    let mut at = 0;
    let mut len = 0;
    loop {
        let (start, size) = match httparse::parse_chunk_size(&input[at..]) {
            Ok(httparse::Status::Complete(x)) => x,
            Ok(httparse::Status::Partial) => return Ok(None),
            Err(_) => return Err(SignalError::Malformed),
        };
        at += start;
        if size == 0 {
            // Trailer fields (ignored), then the final CRLF.
            loop {
                let line_end = match input[at..].windows(2).position(|w| w == b"\r\n") {
                    Some(p) => at + p,
                    None => return Ok(None),
                };
                let empty = line_end == at;
                at = line_end + 2;
                if empty {
                    return Ok(Some((len, at)));
                }
            }
        }
        let size = usize::try_from(size).map_err(|_| SignalError::Malformed)?;
        let end = at.checked_add(size).ok_or(SignalError::Malformed)?;
        let Some(data) = input.get(at..end) else {
            return Ok(None);
        };
        copy_into(body, len, data)?;
        len += size;
        match input.get(end..end + 2) {
            Some(b"\r\n") => at = end + 2,
            Some(_) => return Err(SignalError::Malformed),
            None => return Ok(None),
        }
    }
}

#[cfg(test)]
mod tests;
