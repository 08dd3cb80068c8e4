//! Byte vectors: requests exactly as written, responses as a router (or a
//! proxy in front of it) sends them.

use super::*;

const ANSWER: &str =
    "a=ice-ufrag:rout\r\na=ice-pwd:routerpassword0123456789\r\na=end-of-candidates\r\n";

fn created(etag: Option<&str>) -> std::vec::Vec<u8> {
    let mut r = std::string::String::from(
        "HTTP/1.1 201 Created\r\nLocation: /api/ice/sessions/0123abcd\r\n",
    );
    if let Some(e) = etag {
        r.push_str(&std::format!("ETag: {e}\r\n"));
    }
    r.push_str(&std::format!(
        "Content-Type: application/trickle-ice-sdpfrag\r\nContent-Length: {}\r\n\r\n{ANSWER}",
        ANSWER.len()
    ));
    r.into_bytes()
}

#[test]
fn post_is_written_byte_for_byte() {
    let c = Client::new("127.0.0.1:8188", "").unwrap();
    let mut buf = [0u8; 512];
    let body = b"a=ice-ufrag:spkr\r\n";
    let n = c.write_post(&mut buf, body).unwrap();
    assert_eq!(
        core::str::from_utf8(&buf[..n]).unwrap(),
        "POST /api/ice/sessions HTTP/1.1\r\nHost: 127.0.0.1:8188\r\n\
         Content-Type: application/trickle-ice-sdpfrag\r\nContent-Length: 18\r\n\r\n\
         a=ice-ufrag:spkr\r\n"
    );
    // Too small: the exact size needed.
    assert_eq!(
        c.write_post(&mut buf[..20], body),
        Err(SignalError::InsufficientSize { required: n })
    );
    assert_eq!(c.write_post(&mut buf[..n], body), Ok(n));
}

#[test]
fn post_with_a_query_names_the_sink() {
    let c = Client::new("127.0.0.1:8188", "").unwrap();
    let mut buf = [0u8; 512];
    let n = c.write_post_query(&mut buf, "sink=living", b"").unwrap();
    assert!(
        buf[..n].starts_with(
            b"POST /api/ice/sessions?sink=living HTTP/1.1\r\nHost: 127.0.0.1:8188\r\n"
        )
    );
    for bad in ["", "sink=a b", "sink=a\r\nX: y", "sink=a#b"] {
        assert_eq!(
            c.write_post_query(&mut buf, bad, b""),
            Err(SignalError::TooLong),
            "{bad:?}"
        );
    }
}

#[test]
fn a_201_with_etag_gives_location_and_if_match() {
    let mut c = Client::new("router.local", "/r/").unwrap();
    let mut buf = [0u8; 512];
    let n = c.write_post(&mut buf, b"").unwrap();
    assert!(buf[..n].starts_with(b"POST /r/api/ice/sessions HTTP/1.1\r\nHost: router.local\r\n"));
    assert_eq!(c.write_patch(&mut buf, b"x"), Err(SignalError::NoSession));
    let input = created(Some("\"73033fff\""));
    let mut body = [0u8; 256];
    let Progress::Complete { response, consumed } =
        read_response(&input, &mut body, false).unwrap()
    else {
        panic!("incomplete");
    };
    assert_eq!(consumed, input.len());
    assert_eq!(response.status, 201);
    assert_eq!(response.text(), Some(ANSWER));
    assert_eq!(response.content_type, Some(SDPFRAG));
    c.handle_created(&response).unwrap();
    assert_eq!(c.location(), Some("/api/ice/sessions/0123abcd"));
    assert_eq!(c.etag(), Some("\"73033fff\""));
    let n = c.write_patch(&mut buf, b"a=end-of-candidates\r\n").unwrap();
    assert_eq!(
        core::str::from_utf8(&buf[..n]).unwrap(),
        "PATCH /api/ice/sessions/0123abcd HTTP/1.1\r\nHost: router.local\r\n\
         If-Match: \"73033fff\"\r\nContent-Type: application/trickle-ice-sdpfrag\r\n\
         Content-Length: 21\r\n\r\na=end-of-candidates\r\n"
    );
    let n = c.write_get(&mut buf).unwrap();
    assert_eq!(
        core::str::from_utf8(&buf[..n]).unwrap(),
        "GET /api/ice/sessions/0123abcd HTTP/1.1\r\nHost: router.local\r\n\
         Accept: application/trickle-ice-sdpfrag\r\n\r\n"
    );
    let n = c.write_delete(&mut buf).unwrap();
    assert_eq!(
        core::str::from_utf8(&buf[..n]).unwrap(),
        "DELETE /api/ice/sessions/0123abcd HTTP/1.1\r\nHost: router.local\r\nContent-Length: 0\r\n\r\n"
    );
}

#[test]
fn a_201_without_etag_is_tolerated_and_patch_goes_without_if_match() {
    let mut c = Client::new("127.0.0.1:8188", "").unwrap();
    let input = created(None);
    let mut body = [0u8; 256];
    let Progress::Complete { response, .. } = read_response(&input, &mut body, false).unwrap()
    else {
        panic!("incomplete");
    };
    assert_eq!(response.etag, None);
    c.handle_created(&response).unwrap();
    assert_eq!(c.etag(), None);
    let mut buf = [0u8; 512];
    let n = c.write_patch(&mut buf, b"a=end-of-candidates\r\n").unwrap();
    let text = core::str::from_utf8(&buf[..n]).unwrap();
    assert!(text.starts_with("PATCH /api/ice/sessions/0123abcd HTTP/1.1\r\n"));
    assert!(!text.contains("If-Match"));
}

#[test]
fn a_chunked_body_is_decoded() {
    let input = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nETag: \"2\"\r\n\r\n\
                  10\r\na=ice-ufrag:rout\r\n2;ext=1\r\n\r\n\r\n0\r\nX-Trailer: y\r\n\r\nHTTP/1.1 204";
    let mut body = [0u8; 64];
    let Progress::Complete { response, consumed } = read_response(input, &mut body, false).unwrap()
    else {
        panic!("incomplete");
    };
    assert_eq!(response.body, b"a=ice-ufrag:rout\r\n");
    assert_eq!(&input[consumed..], b"HTTP/1.1 204");
    let mut c = Client::new("h", "").unwrap();
    c.handle_patched(&response).unwrap();
    assert_eq!(c.etag(), Some("\"2\""));
    // Every prefix is incomplete, never an error or a wrong body.
    let whole = consumed;
    for cut in 0..whole {
        let mut body = [0u8; 64];
        assert_eq!(
            read_response(&input[..cut], &mut body, false),
            Ok(Progress::Incomplete),
            "cut {cut}"
        );
    }
}

#[test]
fn content_length_waits_for_the_whole_body() {
    let input = created(Some("\"e\""));
    let mut body = [0u8; 256];
    for cut in 0..input.len() {
        assert_eq!(
            read_response(&input[..cut], &mut body, false),
            Ok(Progress::Incomplete)
        );
        assert!(read_response(&input[..cut], &mut body, true).is_err());
    }
    // A body larger than the caller's buffer.
    let mut small = [0u8; 8];
    assert_eq!(
        read_response(&input, &mut small, false),
        Err(SignalError::InsufficientSize {
            required: ANSWER.len()
        })
    );
}

#[test]
fn bodiless_and_close_delimited_responses() {
    let mut body = [0u8; 64];
    let input = b"HTTP/1.1 204 No Content\r\nETag: \"3\"\r\n\r\n";
    let Progress::Complete { response, consumed } = read_response(input, &mut body, false).unwrap()
    else {
        panic!("incomplete");
    };
    assert_eq!(
        (response.status, response.body.len(), consumed),
        (204, 0, input.len())
    );
    let input = b"HTTP/1.0 404 Not Found\r\n\r\nno such session";
    assert_eq!(
        read_response(input, &mut body, false),
        Ok(Progress::Incomplete)
    );
    let Progress::Complete { response, .. } = read_response(input, &mut body, true).unwrap() else {
        panic!("incomplete");
    };
    assert_eq!(
        (response.status, response.text()),
        (404, Some("no such session"))
    );
}

#[test]
fn malformed_responses_are_errors() {
    let mut body = [0u8; 64];
    for bad in [
        &b"HTTP/1.1 20x OK\r\n\r\n"[..],
        b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabXX0\r\n\r\n",
    ] {
        assert_eq!(
            read_response(bad, &mut body, false),
            Err(SignalError::Malformed),
            "{bad:?}"
        );
    }
}

#[test]
fn locations_and_bases_are_checked() {
    assert_eq!(
        Client::new("h", "noslash").unwrap_err(),
        SignalError::TooLong
    );
    assert_eq!(
        Client::new("h\r\nX: y", "").unwrap_err(),
        SignalError::TooLong
    );
    let mut c = Client::new("h", "").unwrap();
    let mut body = [0u8; 8];
    let input = b"HTTP/1.1 201 Created\r\nLocation: http://h:1/api/ice/sessions/9\r\nContent-Length: 0\r\n\r\n";
    let Progress::Complete { response, .. } = read_response(input, &mut body, false).unwrap()
    else {
        panic!("incomplete");
    };
    c.handle_created(&response).unwrap();
    assert_eq!(c.location(), Some("/api/ice/sessions/9"));
    let input = b"HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n";
    let Progress::Complete { response, .. } = read_response(input, &mut body, false).unwrap()
    else {
        panic!("incomplete");
    };
    assert_eq!(c.handle_created(&response), Err(SignalError::NoSession));
}

#[test]
fn base_urls_parse() {
    let u = HttpUrl::parse("http://127.0.0.1:8188").unwrap();
    assert_eq!(
        (u.authority, u.host, u.port, u.prefix),
        ("127.0.0.1:8188", "127.0.0.1", 8188, "")
    );
    let u = HttpUrl::parse("http://[::1]:9/router/").unwrap();
    assert_eq!(
        (u.authority, u.host, u.port, u.prefix),
        ("[::1]:9", "::1", 9, "/router")
    );
    let u = HttpUrl::parse("http://router.local/x").unwrap();
    assert_eq!((u.host, u.port, u.prefix), ("router.local", 80, "/x"));
    let c = Client::for_url(&u).unwrap();
    let mut buf = [0u8; 128];
    let n = c.write_post(&mut buf, b"").unwrap();
    assert!(buf[..n].starts_with(b"POST /x/api/ice/sessions HTTP/1.1\r\nHost: router.local\r\n"));
    for bad in [
        "https://h",
        "http://",
        "http://h:x",
        "http://[::1",
        "http://[::1]x",
        "http://u@h",
        "http://h/?q",
        "http://h:99999",
    ] {
        assert_eq!(HttpUrl::parse(bad), None, "{bad}");
    }
}
