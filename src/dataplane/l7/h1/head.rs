//! Request and response heads of the HTTP/1 fast path, parsed in place.
//!
//! `httparse` finds the field lines; this module then decides, from the raw
//! bytes the peer sent, everything the proxy needs: the body framing, the
//! host to route by, keep-alive, upgrade, `Expect: 100-continue`, and it
//! refuses what a backend could read differently from us (RFC 9112 §6.3,
//! §11.2): CL+TE, several lengths, transfer codings other than a single
//! `chunked`, bare LF line ends, obs-fold, control characters, a missing or
//! invalid Host on HTTP/1.1, more than one Host. The spans point into the
//! connection's read buffer and the vectors are reused request after
//! request, so a steady keep-alive connection allocates nothing here.

use http::Method;

use crate::dataplane::l7::fields::{FieldSpan, Fields};
use crate::dataplane::l7::headers::FramingError;

/// How a message body is delimited (RFC 9112 §6.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyKind {
    None,
    Length(u64),
    Chunked,
    /// Response only: until the backend closes.
    UntilClose,
}

/// Why a head could not be used. `Incomplete` asks for more bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeadError {
    Incomplete,
    TooManyFields,
    /// Malformed syntax (the label names what).
    Syntax(&'static str),
    Framing(FramingError),
    /// HTTP/1.1 without Host, or a Host that is not `uri-host[:port]`.
    Host(&'static str),
    /// A version other than HTTP/1.0 and HTTP/1.1.
    Version,
}

impl HeadError {
    pub fn reason(&self) -> &'static str {
        match self {
            HeadError::Incomplete => "incomplete",
            HeadError::TooManyFields => "too_many_headers",
            HeadError::Syntax(r) | HeadError::Host(r) => r,
            HeadError::Framing(f) => f.reason(),
            HeadError::Version => "version",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Span(pub u32, pub u32);

impl Span {
    pub fn of<'a>(&self, buf: &'a [u8]) -> &'a [u8] {
        &buf[self.0 as usize..self.1 as usize]
    }
    fn is_empty(&self) -> bool {
        self.0 == self.1
    }
}

/// A parsed request head; reused across the requests of a connection.
#[derive(Debug)]
pub struct RequestHead {
    pub method: Method,
    /// Path without the query (origin-form, or the path of absolute-form).
    pub path: Span,
    /// Query without '?'.
    pub query: Option<Span>,
    /// Routing host: the absolute-form authority, else the Host field.
    pub host: Option<Span>,
    /// 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub minor: u8,
    pub fields: Vec<FieldSpan>,
    /// Bytes of the head, final empty line included.
    pub len: usize,
    pub body: BodyKind,
    /// The client keeps the connection open after this exchange.
    pub keep_alive: bool,
    /// `Connection: upgrade` with an `Upgrade` field (WebSocket and friends).
    pub upgrade: bool,
    pub websocket: bool,
}

impl Default for RequestHead {
    fn default() -> Self {
        RequestHead {
            method: Method::GET,
            path: Span::default(),
            query: None,
            host: None,
            minor: 1,
            fields: Vec::with_capacity(32),
            len: 0,
            body: BodyKind::None,
            keep_alive: true,
            upgrade: false,
            websocket: false,
        }
    }
}

/// A parsed response head.
#[derive(Debug)]
pub struct ResponseHead {
    pub status: u16,
    pub reason: Span,
    pub minor: u8,
    pub fields: Vec<FieldSpan>,
    pub len: usize,
    pub body: BodyKind,
    /// The backend keeps the connection open after this response.
    pub keep_alive: bool,
}

impl Default for ResponseHead {
    fn default() -> Self {
        ResponseHead {
            status: 0,
            reason: Span::default(),
            minor: 1,
            fields: Vec::with_capacity(32),
            len: 0,
            body: BodyKind::None,
            keep_alive: true,
        }
    }
}

/// Upper bound on a request's field lines (the config's `max_headers`
/// ceiling); parsed into uninitialised stack slots, so the bound costs
/// nothing per request.
pub const MAX_FIELDS: usize = 1000;
/// Field lines of a backend's response head.
pub const MAX_RESPONSE_FIELDS: usize = 128;

fn off(buf: &[u8], part: &[u8]) -> u32 {
    (part.as_ptr() as usize - buf.as_ptr() as usize) as u32
}

fn span(buf: &[u8], part: &[u8]) -> Span {
    let s = off(buf, part);
    Span(s, s + part.len() as u32)
}

/// The reason phrase's place in `buf`. httparse hands back a static `""` (not a slice of
/// the buffer) when the phrase holds obs-text, which RFC 9112 §4 allows: take it from the
/// status line itself, which is `HTTP/1.x NNN ` plus the phrase (found by the fuzzer).
fn reason_span(buf: &[u8], reason: Option<&str>) -> Span {
    let inside = |r: &&str| {
        let (start, p) = (buf.as_ptr() as usize, r.as_ptr() as usize);
        p >= start && p + r.len() <= start + buf.len()
    };
    match reason.filter(|r| !r.is_empty() && inside(r)) {
        Some(r) => span(buf, r.as_bytes()),
        None => {
            const PHRASE_AT: usize = b"HTTP/1.1 200 ".len();
            let end = buf.iter().position(|b| *b == b'\r').unwrap_or(0);
            if end > PHRASE_AT {
                Span(PHRASE_AT as u32, end as u32)
            } else {
                Span::default()
            }
        }
    }
}

/// Every LF of the head must end a CRLF: httparse also accepts bare LF,
/// which other parsers read differently (the classic smuggling split).
fn check_line_ends(head: &[u8]) -> Result<(), HeadError> {
    let mut prev = 0u8;
    for &b in head {
        if b == b'\n' && prev != b'\r' {
            return Err(HeadError::Syntax("bare_lf"));
        }
        if b == b'\r' && prev == b'\r' {
            return Err(HeadError::Syntax("bare_cr"));
        }
        prev = b;
    }
    Ok(())
}

fn syntax(e: httparse::Error) -> HeadError {
    match e {
        httparse::Error::TooManyHeaders => HeadError::TooManyFields,
        httparse::Error::HeaderName => HeadError::Syntax("header_name"),
        httparse::Error::HeaderValue => HeadError::Syntax("header_value"),
        httparse::Error::NewLine => HeadError::Syntax("bare_lf"),
        httparse::Error::Status => HeadError::Syntax("status"),
        httparse::Error::Token => HeadError::Syntax("token"),
        httparse::Error::Version => HeadError::Version,
    }
}

/// Parses the request head at the start of `buf` into `head`.
pub fn parse_request(
    buf: &[u8],
    max_fields: usize,
    head: &mut RequestHead,
) -> Result<(), HeadError> {
    let mut storage =
        [const { std::mem::MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_FIELDS];
    let n = max_fields.clamp(1, MAX_FIELDS);
    let mut req = httparse::Request::new(&mut []);
    let len = match req
        .parse_with_uninit_headers(buf, &mut storage[..n])
        .map_err(syntax)?
    {
        httparse::Status::Partial => return Err(HeadError::Incomplete),
        httparse::Status::Complete(n) => n,
    };
    check_line_ends(&buf[..len])?;
    let minor = match req.version {
        Some(0) => 0,
        Some(1) => 1,
        _ => return Err(HeadError::Version),
    };
    let method_bytes = req.method.ok_or(HeadError::Syntax("method"))?.as_bytes();
    let method = Method::from_bytes(method_bytes).map_err(|_| HeadError::Syntax("method"))?;
    let target = req.path.ok_or(HeadError::Syntax("target"))?.as_bytes();
    head.fields.clear();
    for h in req.headers.iter() {
        head.fields.push(FieldSpan {
            name: {
                let s = span(buf, h.name.as_bytes());
                (s.0, s.1)
            },
            value: {
                let s = span(buf, h.value);
                (s.0, s.1)
            },
        });
    }
    head.method = method;
    head.minor = minor;
    head.len = len;
    // Request target (RFC 9112 §3.2): origin-form, or absolute-form whose
    // authority overrides Host; asterisk-form only for OPTIONS; CONNECT's
    // authority-form is refused by the caller.
    let (authority, path_and_query) = if target.starts_with(b"/") {
        (None, target)
    } else if target == b"*" {
        if head.method != Method::OPTIONS {
            return Err(HeadError::Syntax("target"));
        }
        (None, target)
    } else if let Some(rest) = strip_scheme(target) {
        let end = rest
            .iter()
            .position(|&b| b == b'/' || b == b'?')
            .unwrap_or(rest.len());
        let auth = &rest[..end];
        let pq = &rest[end..];
        (Some(auth), pq)
    } else if head.method == Method::CONNECT {
        (Some(target), &target[target.len()..])
    } else {
        return Err(HeadError::Syntax("target"));
    };
    let (path, query) = match path_and_query.iter().position(|&b| b == b'?') {
        Some(q) => (
            &path_and_query[..q],
            Some(span(buf, &path_and_query[q + 1..])),
        ),
        None => (path_and_query, None),
    };
    head.path = span(buf, path);
    head.query = query;
    let fields = Fields::Raw(buf, &head.fields);
    let facts = field_facts(fields, minor)?;
    // Host (RFC 9112 §3.2): exactly one on HTTP/1.1; valid syntax always.
    let host_field = fields.get("host");
    if let Some(h) = host_field {
        valid_host(h)?;
    } else if minor == 1 {
        return Err(HeadError::Host("missing_host"));
    }
    head.host = match authority {
        Some(a) => {
            let a = a.rsplit(|&b| b == b'@').next().unwrap_or(a);
            if a.is_empty() {
                host_field.map(|h| span(buf, h))
            } else {
                valid_host(a)?;
                Some(span(buf, a))
            }
        }
        None => host_field.map(|h| span(buf, h)),
    };
    head.body = match (facts.chunked, facts.length) {
        (true, _) => BodyKind::Chunked,
        (false, Some(0)) | (false, None) => BodyKind::None,
        (false, Some(n)) => BodyKind::Length(n),
    };
    head.keep_alive = if minor == 0 {
        facts.conn_keep_alive && !facts.conn_close
    } else {
        !facts.conn_close
    };
    head.upgrade = facts.conn_upgrade && fields.contains("upgrade") && minor == 1;
    head.websocket =
        head.upgrade && head.method == Method::GET && list_has(fields, "upgrade", b"websocket");
    Ok(())
}

fn strip_scheme(t: &[u8]) -> Option<&[u8]> {
    for scheme in [&b"http://"[..], b"https://"] {
        if t.len() > scheme.len() && t[..scheme.len()].eq_ignore_ascii_case(scheme) {
            return Some(&t[scheme.len()..]);
        }
    }
    None
}

/// uri-host [ ":" port ] (RFC 9110 §7.2, RFC 3986 §3.2.2): a reg-name of
/// unreserved / pct-encoded / sub-delims, or an IP literal in brackets; no
/// user info, no whitespace.
pub fn valid_host(h: &[u8]) -> Result<(), HeadError> {
    if h.is_empty() {
        return Err(HeadError::Host("empty_host"));
    }
    let (host, port) = if h[0] == b'[' {
        let close = h
            .iter()
            .position(|&b| b == b']')
            .ok_or(HeadError::Host("bad_host"))?;
        let lit = &h[1..close];
        if lit.is_empty()
            || !lit
                .iter()
                .all(|&b| b.is_ascii_hexdigit() || b == b':' || b == b'.')
        {
            return Err(HeadError::Host("bad_host"));
        }
        let rest = &h[close + 1..];
        match rest.first() {
            None => (&h[..0], None),
            Some(b':') => (&h[..0], Some(&rest[1..])),
            Some(_) => return Err(HeadError::Host("bad_host")),
        }
    } else {
        match h.iter().rposition(|&b| b == b':') {
            Some(c) => (&h[..c], Some(&h[c + 1..])),
            None => (h, None),
        }
    };
    let reg_ok = |b: u8| b.is_ascii_alphanumeric() || b"-._~%!$&'()*+,;=".contains(&b);
    if !host.iter().all(|&b| reg_ok(b)) {
        return Err(HeadError::Host("bad_host"));
    }
    if h[0] != b'[' && host.is_empty() {
        return Err(HeadError::Host("bad_host"));
    }
    if let Some(p) = port {
        if p.len() > 5 || !p.iter().all(u8::is_ascii_digit) {
            return Err(HeadError::Host("bad_host"));
        }
    }
    Ok(())
}

#[derive(Default)]
struct Facts {
    length: Option<u64>,
    chunked: bool,
    conn_close: bool,
    conn_keep_alive: bool,
    conn_upgrade: bool,
}

fn list_has(fields: Fields<'_>, name: &'static str, token: &[u8]) -> bool {
    fields
        .get_all(name)
        .flat_map(|v| v.split(|&b| b == b','))
        .any(|t| trim(t).eq_ignore_ascii_case(token))
}

pub fn trim(v: &[u8]) -> &[u8] {
    let s = v
        .iter()
        .position(|&b| b != b' ' && b != b'\t')
        .unwrap_or(v.len());
    let e = v
        .iter()
        .rposition(|&b| b != b' ' && b != b'\t')
        .map_or(s, |e| e + 1);
    &v[s..e]
}

/// The framing policy of `headers::check_request_framing`, over raw field
/// lines, plus the Connection options.
fn field_facts(fields: Fields<'_>, minor: u8) -> Result<Facts, HeadError> {
    let mut f = Facts::default();
    let mut te_lines = 0;
    let mut te_ok = false;
    let mut cl_lines = 0;
    let mut hosts = 0;
    for (name, value) in fields.pairs() {
        if value.iter().any(|&b| (b < 0x20 && b != b'\t') || b == 0x7f) {
            return Err(HeadError::Framing(FramingError::ControlCharacter));
        }
        if name.eq_ignore_ascii_case(b"host") {
            hosts += 1;
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            te_lines += 1;
            te_ok = value.eq_ignore_ascii_case(b"chunked");
        } else if name.eq_ignore_ascii_case(b"content-length") {
            cl_lines += 1;
            if value.contains(&b',') {
                return Err(HeadError::Framing(FramingError::MultipleContentLength));
            }
            f.length = Some(
                parse_length(value)
                    .ok_or(HeadError::Framing(FramingError::InvalidContentLength))?,
            );
        } else if name.eq_ignore_ascii_case(b"connection") {
            for t in value.split(|&b| b == b',') {
                let t = trim(t);
                if t.eq_ignore_ascii_case(b"close") {
                    f.conn_close = true;
                } else if t.eq_ignore_ascii_case(b"keep-alive") {
                    f.conn_keep_alive = true;
                } else if t.eq_ignore_ascii_case(b"upgrade") {
                    f.conn_upgrade = true;
                }
            }
        }
    }
    if hosts > 1 {
        return Err(HeadError::Framing(FramingError::MultipleHost));
    }
    if te_lines > 0 {
        if cl_lines > 0 {
            return Err(HeadError::Framing(
                FramingError::ContentLengthWithTransferEncoding,
            ));
        }
        if minor == 0 {
            return Err(HeadError::Framing(FramingError::TransferEncodingHttp10));
        }
        if te_lines > 1 || !te_ok {
            return Err(HeadError::Framing(
                FramingError::UnsupportedTransferEncoding,
            ));
        }
        f.chunked = true;
    }
    if cl_lines > 1 {
        return Err(HeadError::Framing(FramingError::MultipleContentLength));
    }
    Ok(f)
}

/// Content-Length = 1*DIGIT, fitting in 64 bits.
pub fn parse_length(v: &[u8]) -> Option<u64> {
    if v.is_empty() || !v.iter().all(u8::is_ascii_digit) {
        return None;
    }
    v.iter().try_fold(0u64, |acc, &d| {
        acc.checked_mul(10)?.checked_add(u64::from(d - b'0'))
    })
}

/// Parses a response head. `request_method` and the status decide whether
/// a body follows (RFC 9112 §6.3: HEAD, 1xx, 204, 304 have none). A backend
/// is held to the same framing rules as a client, and a response it frames
/// ambiguously is a 502, never passed on.
pub fn parse_response(
    buf: &[u8],
    request_method: &Method,
    head: &mut ResponseHead,
) -> Result<(), HeadError> {
    let mut storage = [httparse::EMPTY_HEADER; MAX_RESPONSE_FIELDS];
    let mut resp = httparse::Response::new(&mut storage);
    let len = match resp.parse(buf).map_err(syntax)? {
        httparse::Status::Partial => return Err(HeadError::Incomplete),
        httparse::Status::Complete(n) => n,
    };
    let minor = match resp.version {
        Some(0) => 0,
        Some(1) => 1,
        _ => return Err(HeadError::Version),
    };
    let status = resp.code.ok_or(HeadError::Syntax("status"))?;
    head.fields.clear();
    for h in resp.headers.iter() {
        let n = span(buf, h.name.as_bytes());
        let v = span(buf, h.value);
        head.fields.push(FieldSpan {
            name: (n.0, n.1),
            value: (v.0, v.1),
        });
    }
    head.status = status;
    head.reason = reason_span(buf, resp.reason);
    head.minor = minor;
    head.len = len;
    let fields = Fields::Raw(buf, &head.fields);
    let mut te_lines = 0;
    let mut te_last_chunked = false;
    let mut length: Option<u64> = None;
    let mut close = false;
    let mut keep = false;
    for (name, value) in fields.pairs() {
        if value.iter().any(|&b| (b < 0x20 && b != b'\t') || b == 0x7f) {
            return Err(HeadError::Framing(FramingError::ControlCharacter));
        }
        if name.eq_ignore_ascii_case(b"transfer-encoding") {
            te_lines += 1;
            te_last_chunked = value
                .rsplit(|&b| b == b',')
                .next()
                .is_some_and(|t| trim(t).eq_ignore_ascii_case(b"chunked"));
        } else if name.eq_ignore_ascii_case(b"content-length") {
            let n = parse_length(trim(value))
                .ok_or(HeadError::Framing(FramingError::InvalidContentLength))?;
            if length.is_some_and(|l| l != n) {
                return Err(HeadError::Framing(FramingError::MultipleContentLength));
            }
            length = Some(n);
        } else if name.eq_ignore_ascii_case(b"connection") {
            for t in value.split(|&b| b == b',') {
                let t = trim(t);
                close |= t.eq_ignore_ascii_case(b"close");
                keep |= t.eq_ignore_ascii_case(b"keep-alive");
            }
        }
    }
    head.keep_alive = if minor == 0 { keep && !close } else { !close };
    let bodiless = *request_method == Method::HEAD
        || (100..200).contains(&status)
        || status == 204
        || status == 304;
    head.body = if bodiless {
        BodyKind::None
    } else if te_lines > 0 {
        if length.is_some() {
            return Err(HeadError::Framing(
                FramingError::ContentLengthWithTransferEncoding,
            ));
        }
        if te_lines > 1 || !te_last_chunked {
            // A coding we cannot delimit: read to the end (RFC 9112 §6.3 (4)).
            head.keep_alive = false;
            BodyKind::UntilClose
        } else {
            BodyKind::Chunked
        }
    } else {
        match length {
            Some(0) => BodyKind::None,
            Some(n) => BodyKind::Length(n),
            None => {
                head.keep_alive = false;
                BodyKind::UntilClose
            }
        }
    };
    Ok(())
}

impl RequestHead {
    pub fn fields<'a>(&'a self, buf: &'a [u8]) -> Fields<'a> {
        Fields::Raw(buf, &self.fields)
    }
    pub fn path_str<'a>(&self, buf: &'a [u8]) -> &'a str {
        // httparse only accepts visible ASCII in the target.
        std::str::from_utf8(self.path.of(buf)).unwrap_or("/")
    }
    pub fn query_str<'a>(&self, buf: &'a [u8]) -> Option<&'a str> {
        self.query.and_then(|q| std::str::from_utf8(q.of(buf)).ok())
    }
    pub fn host_str<'a>(&self, buf: &'a [u8]) -> Option<&'a str> {
        self.host
            .filter(|h| !h.is_empty())
            .and_then(|h| std::str::from_utf8(h.of(buf)).ok())
    }
}

impl ResponseHead {
    pub fn fields<'a>(&'a self, buf: &'a [u8]) -> Fields<'a> {
        Fields::Raw(buf, &self.fields)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(raw: &str) -> Result<RequestHead, HeadError> {
        let mut h = RequestHead::default();
        parse_request(raw.as_bytes(), 100, &mut h).map(|_| h)
    }

    #[test]
    fn simple_get() {
        let raw = "GET /a/b?x=1 HTTP/1.1\r\nHost: example.com:8080\r\nAccept: */*\r\n\r\nrest";
        let h = req(raw).unwrap();
        let b = raw.as_bytes();
        assert_eq!(h.method, Method::GET);
        assert_eq!(h.path_str(b), "/a/b");
        assert_eq!(h.query_str(b), Some("x=1"));
        assert_eq!(h.host_str(b), Some("example.com:8080"));
        assert_eq!(h.len, raw.len() - 4);
        assert_eq!(h.body, BodyKind::None);
        assert!(h.keep_alive);
        assert!(!h.upgrade);
    }

    #[test]
    fn table_of_request_heads() {
        use BodyKind::*;
        // (head, Ok((body, keep_alive, websocket)) or Err(reason))
        let ok = |b, k, w| Ok::<_, &str>((b, k, w));
        type Want = Result<(BodyKind, bool, bool), &'static str>;
        let cases: Vec<(&str, Want)> = vec![
            ("GET / HTTP/1.1\r\nHost: a\r\n\r\n", ok(None, true, false)),
            ("GET / HTTP/1.0\r\n\r\n", ok(None, false, false)),
            ("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", ok(None, true, false)),
            ("GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n", ok(None, false, false)),
            ("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\n", ok(Length(5), true, false)),
            ("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n", ok(None, true, false)),
            ("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n", ok(Chunked, true, false)),
            ("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: CHUNKED\r\n\r\n", ok(Chunked, true, false)),
            (
                "GET /ws HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, Upgrade\r\nUpgrade: websocket\r\n\r\n",
                ok(None, true, true),
            ),
            ("GET / HTTP/1.1\r\n\r\n", Err("missing_host")),
            ("GET / HTTP/1.1\r\nHost: a@evil\r\n\r\n", Err("bad_host")),
            ("GET / HTTP/1.1\r\nHost: a b\r\n\r\n", Err("bad_host")),
            ("GET / HTTP/1.1\r\nHost: a:99999x\r\n\r\n", Err("bad_host")),
            ("GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", Err("multiple_host")),
            ("GET / HTTP/1.1\r\nHost: [::1]:80\r\n\r\n", ok(None, true, false)),
            ("GET / HTTP/1.1\r\nHost: [zz]\r\n\r\n", Err("bad_host")),
            (
                "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
                Err("cl_and_te"),
            ),
            (
                "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n",
                Err("multiple_content_length"),
            ),
            ("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 5\r\n\r\n", Err("multiple_content_length")),
            ("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +5\r\n\r\n", Err("invalid_content_length")),
            ("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", Err("te_not_chunked")),
            (
                "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
                Err("te_not_chunked"),
            ),
            ("POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", Err("te_http10")),
            // Bare LF anywhere in the head, with or without smuggling intent.
            ("GET / HTTP/1.1\nHost: a\n\n", Err("bare_lf")),
            (
                "POST / HTTP/1.1\r\nHost: a\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
                Err("bare_lf"),
            ),
            // obs-fold.
            ("GET / HTTP/1.1\r\nHost: a\r\nX: y\r\n  z\r\n\r\n", Err("header_name")),
            ("GET / HTTP/2.0\r\nHost: a\r\n\r\n", Err("version")),
            ("GET a HTTP/1.1\r\nHost: a\r\n\r\n", Err("target")),
            ("GET http://h.example/p?q HTTP/1.1\r\nHost: other\r\n\r\n", ok(None, true, false)),
            ("OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n", ok(None, true, false)),
            ("GET * HTTP/1.1\r\nHost: a\r\n\r\n", Err("target")),
        ];
        for (raw, want) in cases {
            let got = req(raw)
                .map(|h| (h.body, h.keep_alive, h.websocket))
                .map_err(|e| e.reason());
            assert_eq!(got, want, "{raw:?}");
        }
    }

    #[test]
    fn absolute_form_overrides_host() {
        let raw = "GET http://h.example:81/p?q=1 HTTP/1.1\r\nHost: other\r\n\r\n";
        let h = req(raw).unwrap();
        let b = raw.as_bytes();
        assert_eq!(h.host_str(b), Some("h.example:81"));
        assert_eq!(h.path_str(b), "/p");
        assert_eq!(h.query_str(b), Some("q=1"));
    }

    #[test]
    fn partial_and_too_many() {
        assert_eq!(
            req("GET / HTTP/1.1\r\nHost: a\r\n").err(),
            Some(HeadError::Incomplete)
        );
        let mut many = String::from("GET / HTTP/1.1\r\nHost: a\r\n");
        for i in 0..10 {
            many.push_str(&format!("X-{i}: v\r\n"));
        }
        many.push_str("\r\n");
        let mut h = RequestHead::default();
        assert_eq!(
            parse_request(many.as_bytes(), 5, &mut h),
            Err(HeadError::TooManyFields)
        );
    }

    fn resp(raw: &str, method: Method) -> Result<(u16, BodyKind, bool), &'static str> {
        let mut h = ResponseHead::default();
        parse_response(raw.as_bytes(), &method, &mut h)
            .map(|_| (h.status, h.body, h.keep_alive))
            .map_err(|e| e.reason())
    }

    /// Found by `tests/fuzz` (http1): a reason phrase with obs-text bytes made the span
    /// arithmetic overflow, so relaying the head would have panicked.
    #[test]
    fn obs_text_reason_phrase_is_kept_from_the_buffer() {
        for (raw, reason) in [
            (
                &b"HTTP/1.1 304 \xff\xff6fied\r\nContent-Length: 10\r\n\r\n"[..],
                &b"\xff\xff6fied"[..],
            ),
            (b"HTTP/1.1 200 Caf\xe9\r\n\r\n", b"Caf\xe9"),
            (b"HTTP/1.1 200 OK\r\n\r\n", b"OK"),
            (b"HTTP/1.1 204\r\n\r\n", b""),
            (b"HTTP/1.1 204 \r\n\r\n", b""),
        ] {
            let mut h = ResponseHead::default();
            parse_response(raw, &Method::HEAD, &mut h).expect("valid head");
            assert_eq!(
                h.reason.of(raw),
                reason,
                "{:?}",
                String::from_utf8_lossy(raw)
            );
        }
    }

    #[test]
    fn table_of_response_heads() {
        use BodyKind::*;
        let g = Method::GET;
        type Want = Result<(u16, BodyKind, bool), &'static str>;
        let cases: Vec<(&str, Method, Want)> = vec![
            (
                "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n",
                g.clone(),
                Ok((200, Length(3), true)),
            ),
            (
                "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n",
                Method::HEAD,
                Ok((200, None, true)),
            ),
            (
                "HTTP/1.1 204 No Content\r\n\r\n",
                g.clone(),
                Ok((204, None, true)),
            ),
            (
                "HTTP/1.1 304 Not Modified\r\nContent-Length: 9\r\n\r\n",
                g.clone(),
                Ok((304, None, true)),
            ),
            (
                "HTTP/1.1 100 Continue\r\n\r\n",
                g.clone(),
                Ok((100, None, true)),
            ),
            (
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
                g.clone(),
                Ok((200, Chunked, true)),
            ),
            (
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
                g.clone(),
                Ok((200, Chunked, true)),
            ),
            (
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n",
                g.clone(),
                Ok((200, UntilClose, false)),
            ),
            (
                "HTTP/1.1 200 OK\r\n\r\n",
                g.clone(),
                Ok((200, UntilClose, false)),
            ),
            (
                "HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\n",
                g.clone(),
                Ok((200, Length(1), false)),
            ),
            (
                "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 1\r\n\r\n",
                g.clone(),
                Ok((200, Length(1), false)),
            ),
            (
                "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
                g.clone(),
                Err("cl_and_te"),
            ),
            (
                "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
                g.clone(),
                Err("multiple_content_length"),
            ),
            (
                "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\n",
                g.clone(),
                Ok((200, Length(2), true)),
            ),
            (
                "HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n",
                g,
                Err("invalid_content_length"),
            ),
        ];
        for (raw, m, want) in cases {
            assert_eq!(resp(raw, m), want, "{raw:?}");
        }
    }
}
