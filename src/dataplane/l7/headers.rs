//! Header semantics of the L7 reverse proxy: hop-by-hop stripping, WebSocket
//! upgrade detection, forwarding headers (X-Forwarded-*, Via, RFC 7239
//! `Forwarded`), operator header operations, request ids, and the request
//! framing checks that keep request smuggling out.
//!
//! Everything here is a pure function over `http` types so that the proxy's
//! I/O code stays thin and every rule can be table-tested.

use std::net::{IpAddr, SocketAddr};

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Version};

/// Operator-configured header edits for one direction of a route.
#[derive(Debug, Clone, Default)]
pub struct HeaderOps {
    /// Replace every value of the header with this one (insert if absent).
    pub set: Vec<(HeaderName, HeaderValue)>,
    /// Append a value, keeping existing ones.
    pub add: Vec<(HeaderName, HeaderValue)>,
    /// Remove every value of the header.
    pub remove: Vec<HeaderName>,
}

/// Applies `ops` in the order remove → set → add, so that an operator can
/// remove a header and add a fresh value in one route, and `add` always sees
/// the result of `set`. Two `set` entries for the same name: the last wins.
pub fn apply(ops: &HeaderOps, headers: &mut HeaderMap) {
    for name in &ops.remove {
        headers.remove(name);
    }
    for (name, value) in &ops.set {
        headers.insert(name.clone(), value.clone());
    }
    for (name, value) in &ops.add {
        headers.append(name.clone(), value.clone());
    }
}

/// Inserts `gen()` under `name` only when the request carries no such header,
/// so an id assigned by an upstream proxy or the client survives end to end.
pub fn ensure_request_id(
    headers: &mut HeaderMap,
    name: &HeaderName,
    gen: impl FnOnce() -> HeaderValue,
) {
    if !headers.contains_key(name) {
        headers.insert(name.clone(), gen());
    }
}

const KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

/// Optional whitespace (RFC 9110 §5.6.3): SP and HTAB only.
pub(crate) fn is_ows(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

/// `s` without leading and trailing optional whitespace.
pub(crate) fn trim_ows(mut s: &[u8]) -> &[u8] {
    while let [first, rest @ ..] = s {
        if !is_ows(*first) {
            break;
        }
        s = rest;
    }
    while let [rest @ .., last] = s {
        if !is_ows(*last) {
            break;
        }
        s = rest;
    }
    s
}

/// The non-empty elements of a comma-separated list header across all of its
/// field lines (RFC 9110 §5.3 allows a list to be split over several lines,
/// §5.6.1 says empty elements are ignored). Quoted strings are not parsed:
/// the headers this is used for (Connection, Upgrade, TE) carry tokens.
fn list_elements<'a>(headers: &'a HeaderMap, name: &HeaderName) -> impl Iterator<Item = &'a [u8]> {
    headers
        .get_all(name)
        .iter()
        .flat_map(|v| v.as_bytes().split(|&b| b == b','))
        .map(trim_ows)
        .filter(|e| !e.is_empty())
}

fn list_contains(headers: &HeaderMap, name: &HeaderName, token: &str) -> bool {
    list_elements(headers, name).any(|e| e.eq_ignore_ascii_case(token.as_bytes()))
}

/// Removes hop-by-hop headers before a message is forwarded (RFC 9110 §7.6.1):
///
/// * `Connection` and every header it names (all `Connection` lines,
///   comma-separated, case-insensitive). `Host` is never removed this way:
///   a client naming it would otherwise make the backend see a request
///   without the host it was routed by.
/// * `Keep-Alive`, `TE`, `Transfer-Encoding` (the proxy re-frames the body),
///   `Upgrade`, and every `Proxy-*` header (`Proxy-Connection`,
///   `Proxy-Authorization`, `Proxy-Authenticate`): they address a proxy
///   hop, and a reverse proxy must not leak a client's proxy credentials to
///   its backends.
/// * `Trailer` is kept: RFC 9110 §6.6.2 makes it end-to-end (RFC 2616 listed
///   it as hop-by-hop; RFC 9110 does not).
///
/// With `keep_upgrade` (a WebSocket pass-through, see
/// [`is_websocket_upgrade`]) and an `Upgrade` header present, `Upgrade` is
/// kept and `Connection` is replaced by exactly `Connection: upgrade`, which
/// is what the next hop needs to accept the upgrade (RFC 9110 §7.8).
///
/// For an HTTP/2 upstream use [`strip_hop_by_hop_for_h2`], which keeps
/// `TE: trailers`.
pub fn strip_hop_by_hop(headers: &mut HeaderMap, keep_upgrade: bool) {
    let keep_upgrade = keep_upgrade && headers.contains_key(header::UPGRADE);
    // Names that cannot be header names ("close") are connection options
    // without a field to remove.
    let named: Vec<HeaderName> = list_elements(headers, &header::CONNECTION)
        .filter_map(|t| HeaderName::from_bytes(t).ok())
        .collect();
    headers.remove(header::CONNECTION);
    for name in named {
        if name == header::HOST || (keep_upgrade && name == header::UPGRADE) {
            continue;
        }
        headers.remove(&name);
    }
    headers.remove(KEEP_ALIVE);
    headers.remove(header::TE);
    headers.remove(header::TRANSFER_ENCODING);
    let proxy: Vec<HeaderName> = headers
        .keys()
        .filter(|n| n.as_str().starts_with("proxy-"))
        .cloned()
        .collect();
    for name in proxy {
        headers.remove(&name);
    }
    if keep_upgrade {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    } else {
        headers.remove(header::UPGRADE);
    }
}

/// [`strip_hop_by_hop`] for a request sent to an HTTP/2 upstream: every
/// connection-specific header goes (RFC 9113 §8.2.2), `Upgrade` included,
/// except that `TE: trailers` is re-inserted (as exactly `trailers`) when the
/// client's `TE` listed `trailers`, because HTTP/2 allows that one value and
/// gRPC backends require it.
pub fn strip_hop_by_hop_for_h2(headers: &mut HeaderMap) {
    let trailers = list_contains(headers, &header::TE, "trailers");
    strip_hop_by_hop(headers, false);
    if trailers {
        headers.insert(header::TE, HeaderValue::from_static("trailers"));
    }
}

/// Whether a request asks for a WebSocket upgrade (RFC 6455 §4.1): an
/// HTTP/1.1 `GET` whose `Connection` lists the `upgrade` option and whose
/// `Upgrade` lists `websocket`, tokens compared case-insensitively across all
/// field lines. HTTP/2 WebSockets (RFC 8441 extended CONNECT) are not
/// recognised here.
pub fn is_websocket_upgrade(headers: &HeaderMap, method: &Method, version: Version) -> bool {
    version == Version::HTTP_11
        && method == Method::GET
        && list_contains(headers, &header::CONNECTION, "upgrade")
        && list_contains(headers, &header::UPGRADE, "websocket")
}

/// What the proxy saw of the client connection, for the forwarding headers.
#[derive(Debug, Clone, Copy)]
pub struct ForwardedInfo<'a> {
    /// Peer address of the client connection.
    pub client: IpAddr,
    /// Scheme the client used: "http" or "https".
    pub proto: &'a str,
    /// Host the client asked for (Host header or :authority), port included
    /// if the client sent one.
    pub host: Option<&'a str>,
    /// The proxy's own address that received the request (RFC 7239 `by=`).
    pub by: Option<SocketAddr>,
}

/// Adds the forwarding headers a backend uses to learn about the client:
///
/// * `X-Forwarded-For`: the client address is appended to any existing list,
///   and all lines are merged into one comma-joined line, the form every
///   common backend parses. Existing entries are client-supplied and
///   untrusted; backends should trust only the rightmost entries added by
///   proxies they know.
/// * `X-Forwarded-Proto` and `X-Forwarded-Host` are *set* (replacing any
///   incoming value) from what this proxy saw: tandem is the edge, so a
///   client-sent value would be spoofable. Without a host, an incoming
///   `X-Forwarded-Host` is removed for the same reason.
/// * `Via` (RFC 9110 §7.6.3): `via` (e.g. "1.1 tandem") is appended to the
///   list, merged into one line like `X-Forwarded-For`.
/// * With `rfc7239`, a `Forwarded` element `for=…;by=…;proto=…;host=…` is
///   appended likewise (RFC 7239 §4), values quoted where RFC 7239 §6
///   requires it (IPv6 and ports always are).
///
/// IPv4-mapped IPv6 client addresses (from a dual-stack listener) are written
/// as plain IPv4. A `via` or host that is not a valid header value is skipped.
pub fn add_forwarding(headers: &mut HeaderMap, info: &ForwardedInfo<'_>, via: &str, rfc7239: bool) {
    let client = info.client.to_canonical();
    append_to_list(headers, X_FORWARDED_FOR, &client.to_string());
    set_or_remove(headers, X_FORWARDED_PROTO, Some(info.proto));
    set_or_remove(headers, X_FORWARDED_HOST, info.host);
    append_to_list(headers, header::VIA, via);
    if rfc7239 {
        append_to_list(headers, header::FORWARDED, &forwarded_element(info));
    }
}

fn set_or_remove(headers: &mut HeaderMap, name: HeaderName, value: Option<&str>) {
    match value.map(HeaderValue::from_str) {
        Some(Ok(v)) => {
            headers.insert(name, v);
        }
        _ => {
            headers.remove(name);
        }
    }
}

/// Appends `value` to the comma-separated list `name`, merging all existing
/// field lines into a single line (RFC 9110 §5.3 makes both forms
/// equivalent; single-line is what ad-hoc parsers of X-Forwarded-For expect).
fn append_to_list(headers: &mut HeaderMap, name: HeaderName, value: &str) {
    let mut joined: Vec<u8> = Vec::new();
    for existing in headers.get_all(&name) {
        let existing = trim_ows(existing.as_bytes());
        if existing.is_empty() {
            continue;
        }
        if !joined.is_empty() {
            joined.extend_from_slice(b", ");
        }
        joined.extend_from_slice(existing);
    }
    if !joined.is_empty() {
        joined.extend_from_slice(b", ");
    }
    joined.extend_from_slice(value.as_bytes());
    if let Ok(v) = HeaderValue::from_bytes(&joined) {
        headers.insert(name, v);
    }
}

/// One RFC 7239 forwarded-element for this hop.
pub(crate) fn forwarded_element(info: &ForwardedInfo<'_>) -> String {
    let mut out = String::with_capacity(64);
    out.push_str("for=");
    push_param_value(&mut out, &node(info.client.to_canonical(), None));
    if let Some(by) = info.by {
        out.push_str(";by=");
        push_param_value(&mut out, &node(by.ip().to_canonical(), Some(by.port())));
    }
    out.push_str(";proto=");
    push_param_value(&mut out, info.proto);
    if let Some(host) = info.host {
        out.push_str(";host=");
        push_param_value(&mut out, host);
    }
    out
}

/// An RFC 7239 §6 node: IPv6 addresses are bracketed, a port follows a colon.
fn node(ip: IpAddr, port: Option<u16>) -> String {
    let addr = match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => format!("[{v6}]"),
    };
    match port {
        Some(p) => format!("{addr}:{p}"),
        None => addr,
    }
}

/// tchar of RFC 9110 §5.6.2.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// RFC 7239 §4: a parameter value is a token or a quoted-string; anything
/// with a non-token character (':' of IPv6 and ports, '[') must be quoted,
/// with '"' and '\' escaped (RFC 9110 §5.6.4).
fn push_param_value(out: &mut String, value: &str) {
    if !value.is_empty() && value.bytes().all(is_tchar) {
        out.push_str(value);
        return;
    }
    out.push('"');
    for c in value.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
}

/// Why a request's framing was rejected. The proxy answers 400 and closes the
/// connection (RFC 9112 §6.3: the framing is unreliable, so nothing after it
/// on the connection can be trusted); [`FramingError::reason`] labels
/// counters and logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FramingError {
    /// A header value holds a control character (CR, LF, NUL, …).
    #[error("control character in a header value")]
    ControlCharacter,
    /// More than one Host field line (RFC 9112 §3.2: MUST be rejected).
    #[error("more than one Host header")]
    MultipleHost,
    /// Both Content-Length and Transfer-Encoding (RFC 9112 §6.1).
    #[error("both Content-Length and Transfer-Encoding")]
    ContentLengthWithTransferEncoding,
    /// Transfer-Encoding in an HTTP/1.0 (or 0.9) request (RFC 9112 §6.1).
    #[error("Transfer-Encoding in an HTTP/1.0 request")]
    TransferEncodingHttp10,
    /// Transfer-Encoding in an HTTP/2 or HTTP/3 request (RFC 9113 §8.2.2).
    #[error("Transfer-Encoding in an HTTP/2 request")]
    TransferEncodingHttp2,
    /// Transfer-Encoding other than exactly one `chunked`.
    #[error("Transfer-Encoding other than chunked")]
    UnsupportedTransferEncoding,
    /// Several Content-Length field lines or a list, even with equal values.
    #[error("more than one Content-Length")]
    MultipleContentLength,
    /// Content-Length that is not a decimal number fitting in 64 bits.
    #[error("invalid Content-Length")]
    InvalidContentLength,
}

impl FramingError {
    /// Short stable label for counters and logs.
    pub fn reason(&self) -> &'static str {
        match self {
            FramingError::ControlCharacter => "control_character",
            FramingError::MultipleHost => "multiple_host",
            FramingError::ContentLengthWithTransferEncoding => "cl_and_te",
            FramingError::TransferEncodingHttp10 => "te_http10",
            FramingError::TransferEncodingHttp2 => "te_http2",
            FramingError::UnsupportedTransferEncoding => "te_not_chunked",
            FramingError::MultipleContentLength => "multiple_content_length",
            FramingError::InvalidContentLength => "invalid_content_length",
        }
    }
}

/// Bytes that may not appear in a field value: RFC 9110 §5.5 requires
/// rejecting CR, LF and NUL; the other controls and DEL are outside the
/// field-value grammar too. This is exactly what `HeaderValue::from_bytes`
/// refuses, so the check only fires for values built unchecked (hyper's
/// HTTP/1 parser does that in release builds after httparse has validated
/// them): defence in depth, cheap enough to run on every request.
fn is_forbidden_value_byte(b: u8) -> bool {
    (b < 0x20 && b != b'\t') || b == 0x7f
}

/// Rejects requests whose framing a backend could read differently from us
/// (request smuggling, RFC 9112 §6.3 and §11.2). The policy is the strictest
/// that legitimate clients never trip over:
///
/// * any control character in any header value (header *names* need no
///   check: `HeaderName` cannot hold spaces, colons or controls);
/// * more than one `Host` line, so routing and backend agree on the host;
/// * `Content-Length` together with `Transfer-Encoding` (RFC 9112 §6.1 says
///   it "ought to be handled as an error");
/// * `Transfer-Encoding` on HTTP/1.0 (RFC 9112 §6.1: framing is faulty) or on
///   HTTP/2 and HTTP/3 (connection-specific, RFC 9113 §8.2.2, RFC 9114 §4.2);
/// * on HTTP/1.1, `Transfer-Encoding` other than exactly one field line whose
///   whole value is `chunked` (ASCII case-insensitive). Other codings before
///   `chunked` (`gzip, chunked`) are refused because the proxy would pass the
///   coded body on without the header that describes it (RFC 9112 §6.1 lets a
///   server answer codings it does not implement with 501); a second
///   `chunked` is forbidden by §6.1; lists, empty elements and any
///   surrounding or embedded whitespace are refused as obfuscation;
/// * more than one `Content-Length` line or a comma list, even of identical
///   values (RFC 9110 §8.6 allows rejecting those);
/// * a `Content-Length` that is not 1*DIGIT or does not fit in a `u64`.
pub fn check_request_framing(headers: &HeaderMap, version: Version) -> Result<(), FramingError> {
    if headers
        .values()
        .any(|v| v.as_bytes().iter().copied().any(is_forbidden_value_byte))
    {
        return Err(FramingError::ControlCharacter);
    }
    if headers.get_all(header::HOST).iter().count() > 1 {
        return Err(FramingError::MultipleHost);
    }
    let mut te = headers.get_all(header::TRANSFER_ENCODING).iter();
    let mut cl = headers.get_all(header::CONTENT_LENGTH).iter();
    if let Some(first_te) = te.next() {
        if headers.contains_key(header::CONTENT_LENGTH) {
            return Err(FramingError::ContentLengthWithTransferEncoding);
        }
        if version == Version::HTTP_2 || version == Version::HTTP_3 {
            return Err(FramingError::TransferEncodingHttp2);
        }
        if version == Version::HTTP_10 || version == Version::HTTP_09 {
            return Err(FramingError::TransferEncodingHttp10);
        }
        if te.next().is_some() || !first_te.as_bytes().eq_ignore_ascii_case(b"chunked") {
            return Err(FramingError::UnsupportedTransferEncoding);
        }
    }
    if let Some(first_cl) = cl.next() {
        if cl.next().is_some() || first_cl.as_bytes().contains(&b',') {
            return Err(FramingError::MultipleContentLength);
        }
        parse_content_length(first_cl.as_bytes()).ok_or(FramingError::InvalidContentLength)?;
    }
    Ok(())
}

/// Content-Length = 1*DIGIT (RFC 9110 §8.6): no sign, no whitespace, no
/// overflow.
fn parse_content_length(v: &[u8]) -> Option<u64> {
    if v.is_empty() || !v.iter().all(u8::is_ascii_digit) {
        return None;
    }
    v.iter().try_fold(0u64, |acc, &d| {
        acc.checked_mul(10)?.checked_add(u64::from(d - b'0'))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Header (name, value) pairs of a table row.
    type Hs = &'static [(&'static str, &'static str)];

    fn map(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (n, v) in pairs {
            h.append(
                HeaderName::from_bytes(n.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    /// All (name, value) pairs, names sorted, values in order per name.
    fn dump(h: &HeaderMap) -> Vec<(String, String)> {
        let mut names: Vec<&HeaderName> = h.keys().collect();
        names.sort_by(|a, b| a.as_str().cmp(b.as_str()));
        let mut out = Vec::new();
        for n in names {
            for v in h.get_all(n) {
                out.push((n.as_str().to_string(), v.to_str().unwrap().to_string()));
            }
        }
        out
    }

    fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
        let mut v: Vec<(String, String)> = p
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }

    #[test]
    fn hop_by_hop_table() {
        // (input, keep_upgrade, expected)
        let cases: &[(Hs, bool, Hs)] = &[
            // Plain end-to-end headers survive.
            (
                &[("accept", "*/*"), ("host", "a")],
                false,
                &[("accept", "*/*"), ("host", "a")],
            ),
            // Connection itself and the fixed list.
            (
                &[
                    ("connection", "keep-alive"),
                    ("keep-alive", "timeout=5"),
                    ("te", "trailers"),
                    ("transfer-encoding", "chunked"),
                    ("upgrade", "h2c"),
                    ("x", "1"),
                ],
                false,
                &[("x", "1")],
            ),
            // Headers named by Connection, case-insensitive, with OWS and empty elements.
            (
                &[
                    ("connection", " X-Foo ,,\tx-bar"),
                    ("x-foo", "1"),
                    ("x-bar", "2"),
                    ("x-baz", "3"),
                ],
                false,
                &[("x-baz", "3")],
            ),
            // Several Connection lines all count.
            (
                &[
                    ("connection", "x-a"),
                    ("connection", "X-B, close"),
                    ("x-a", "1"),
                    ("x-b", "2"),
                    ("x-c", "3"),
                ],
                false,
                &[("x-c", "3")],
            ),
            // Tokens that are not header names are ignored.
            (
                &[("connection", "bad token, x-a"), ("x-a", "1"), ("x-c", "3")],
                false,
                &[("x-c", "3")],
            ),
            // Host named by Connection is kept.
            (
                &[("connection", "host"), ("host", "a.example")],
                false,
                &[("host", "a.example")],
            ),
            // Every Proxy-* header goes; Trailer stays (end-to-end per RFC 9110 §6.6.2).
            (
                &[
                    ("proxy-connection", "keep-alive"),
                    ("proxy-authorization", "Basic x"),
                    ("proxy-authenticate", "Basic"),
                    ("proxy-foo", "1"),
                    ("proxyish", "1"),
                    ("trailer", "x-checksum"),
                ],
                false,
                &[("proxyish", "1"), ("trailer", "x-checksum")],
            ),
            // Trailer named by Connection goes like any named header.
            (&[("connection", "trailer"), ("trailer", "x")], false, &[]),
            // WebSocket pass-through: Upgrade kept, Connection normalised.
            (
                &[
                    ("connection", "keep-alive, Upgrade, x-a"),
                    ("upgrade", "websocket"),
                    ("x-a", "1"),
                    ("sec-websocket-key", "k"),
                ],
                true,
                &[
                    ("connection", "upgrade"),
                    ("sec-websocket-key", "k"),
                    ("upgrade", "websocket"),
                ],
            ),
            // keep_upgrade without an Upgrade header: no Connection invented.
            (&[("connection", "keep-alive")], true, &[]),
            // keep_upgrade still strips the rest.
            (
                &[
                    ("connection", "upgrade"),
                    ("upgrade", "websocket"),
                    ("te", "trailers"),
                    ("proxy-connection", "x"),
                ],
                true,
                &[("connection", "upgrade"), ("upgrade", "websocket")],
            ),
        ];
        for (i, (input, keep, want)) in cases.iter().enumerate() {
            let mut h = map(input);
            strip_hop_by_hop(&mut h, *keep);
            assert_eq!(dump(&h), pairs(want), "case {i}: {input:?}");
        }
    }

    #[test]
    fn hop_by_hop_h2_table() {
        let cases: &[(Hs, Hs)] = &[
            (&[("te", "trailers")], &[("te", "trailers")]),
            (&[("te", "gzip, Trailers;")], &[]),
            (&[("te", "gzip, TRAILERS")], &[("te", "trailers")]),
            (&[("te", "gzip"), ("te", "trailers")], &[("te", "trailers")]),
            (&[("te", "gzip")], &[]),
            // Connection: TE (as RFC 9110 §10.1.4 requires) does not lose trailers.
            (
                &[("connection", "TE"), ("te", "trailers")],
                &[("te", "trailers")],
            ),
            // Upgrade never survives towards HTTP/2.
            (
                &[
                    ("connection", "upgrade"),
                    ("upgrade", "websocket"),
                    ("x", "1"),
                ],
                &[("x", "1")],
            ),
        ];
        for (i, (input, want)) in cases.iter().enumerate() {
            let mut h = map(input);
            strip_hop_by_hop_for_h2(&mut h);
            assert_eq!(dump(&h), pairs(want), "case {i}: {input:?}");
        }
    }

    #[test]
    fn websocket_upgrade_table() {
        let ws: &[(&str, &str)] = &[("connection", "Upgrade"), ("upgrade", "websocket")];
        let cases: &[(Hs, Method, Version, bool)] = &[
            (ws, Method::GET, Version::HTTP_11, true),
            (
                &[
                    ("connection", "keep-alive, UPGRADE"),
                    ("upgrade", "WebSocket"),
                ],
                Method::GET,
                Version::HTTP_11,
                true,
            ),
            (
                &[
                    ("connection", "keep-alive"),
                    ("connection", "upgrade"),
                    ("upgrade", "h2c, websocket"),
                ],
                Method::GET,
                Version::HTTP_11,
                true,
            ),
            (ws, Method::POST, Version::HTTP_11, false),
            (ws, Method::GET, Version::HTTP_10, false),
            (ws, Method::GET, Version::HTTP_2, false),
            (
                &[("upgrade", "websocket")],
                Method::GET,
                Version::HTTP_11,
                false,
            ),
            (
                &[("connection", "upgrade")],
                Method::GET,
                Version::HTTP_11,
                false,
            ),
            (
                &[("connection", "upgraded"), ("upgrade", "websocket")],
                Method::GET,
                Version::HTTP_11,
                false,
            ),
            (
                &[("connection", "upgrade"), ("upgrade", "websockets")],
                Method::GET,
                Version::HTTP_11,
                false,
            ),
            (
                &[("connection", "upgrade"), ("upgrade", "h2c")],
                Method::GET,
                Version::HTTP_11,
                false,
            ),
        ];
        for (i, (input, method, version, want)) in cases.iter().enumerate() {
            assert_eq!(
                is_websocket_upgrade(&map(input), method, *version),
                *want,
                "case {i}: {input:?}"
            );
        }
    }

    #[test]
    fn forwarding_table() {
        let v4: IpAddr = "192.0.2.60".parse().unwrap();
        let v6: IpAddr = "2001:db8::1".parse().unwrap();
        let mapped: IpAddr = "::ffff:192.0.2.7".parse().unwrap();
        let by4: SocketAddr = "203.0.113.43:8080".parse().unwrap();
        let by6: SocketAddr = "[2001:db8::2]:443".parse().unwrap();
        // (incoming, info, rfc7239, expected)
        let cases: Vec<(Hs, ForwardedInfo, bool, Hs)> = vec![
            (
                &[],
                ForwardedInfo { client: v4, proto: "http", host: Some("example.com"), by: None },
                false,
                &[
                    ("via", "1.1 tandem"),
                    ("x-forwarded-for", "192.0.2.60"),
                    ("x-forwarded-host", "example.com"),
                    ("x-forwarded-proto", "http"),
                ],
            ),
            // Existing XFF lines are merged and the client appended; XFP/XFH replaced.
            (
                &[
                    ("x-forwarded-for", "10.0.0.1"),
                    ("x-forwarded-for", "10.0.0.2, 10.0.0.3 "),
                    ("x-forwarded-proto", "https"),
                    ("x-forwarded-host", "spoofed.example"),
                    ("via", "1.0 fred"),
                ],
                ForwardedInfo { client: v6, proto: "http", host: Some("example.com:8080"), by: None },
                false,
                &[
                    ("via", "1.0 fred, 1.1 tandem"),
                    ("x-forwarded-for", "10.0.0.1, 10.0.0.2, 10.0.0.3, 2001:db8::1"),
                    ("x-forwarded-host", "example.com:8080"),
                    ("x-forwarded-proto", "http"),
                ],
            ),
            // No host: a client-sent X-Forwarded-Host is dropped; mapped IPv4 unwrapped.
            (
                &[("x-forwarded-host", "spoofed.example")],
                ForwardedInfo { client: mapped, proto: "https", host: None, by: None },
                false,
                &[("via", "1.1 tandem"), ("x-forwarded-for", "192.0.2.7"), ("x-forwarded-proto", "https")],
            ),
            // RFC 7239: IPv4 `for` is a token, host a token.
            (
                &[],
                ForwardedInfo { client: v4, proto: "https", host: Some("example.com"), by: None },
                true,
                &[
                    ("forwarded", "for=192.0.2.60;proto=https;host=example.com"),
                    ("via", "1.1 tandem"),
                    ("x-forwarded-for", "192.0.2.60"),
                    ("x-forwarded-host", "example.com"),
                    ("x-forwarded-proto", "https"),
                ],
            ),
            // RFC 7239 §6: IPv6 bracketed and quoted, ports quoted, host with port quoted;
            // appended to an existing Forwarded.
            (
                &[("forwarded", "for=198.51.100.17")],
                ForwardedInfo { client: v6, proto: "http", host: Some("example.com:8080"), by: Some(by4) },
                true,
                &[
                    (
                        "forwarded",
                        "for=198.51.100.17, for=\"[2001:db8::1]\";by=\"203.0.113.43:8080\";proto=http;host=\"example.com:8080\"",
                    ),
                    ("via", "1.1 tandem"),
                    ("x-forwarded-for", "2001:db8::1"),
                    ("x-forwarded-host", "example.com:8080"),
                    ("x-forwarded-proto", "http"),
                ],
            ),
            (
                &[],
                ForwardedInfo { client: v4, proto: "https", host: None, by: Some(by6) },
                true,
                &[
                    ("forwarded", "for=192.0.2.60;by=\"[2001:db8::2]:443\";proto=https"),
                    ("via", "1.1 tandem"),
                    ("x-forwarded-for", "192.0.2.60"),
                    ("x-forwarded-proto", "https"),
                ],
            ),
        ];
        for (i, (incoming, info, rfc7239, want)) in cases.iter().enumerate() {
            let mut h = map(incoming);
            add_forwarding(&mut h, info, "1.1 tandem", *rfc7239);
            assert_eq!(dump(&h), pairs(want), "case {i}");
        }
    }

    #[test]
    fn forwarding_skips_invalid_via() {
        let mut h = HeaderMap::new();
        let info = ForwardedInfo {
            client: "192.0.2.1".parse().unwrap(),
            proto: "http",
            host: None,
            by: None,
        };
        add_forwarding(&mut h, &info, "1.1 bad\r\nx: y", false);
        assert!(h.get(header::VIA).is_none());
        assert_eq!(h.get("x-forwarded-for").unwrap(), "192.0.2.1");
    }

    #[test]
    fn param_value_quoting_table() {
        let cases = [
            ("http", "http"),
            ("example.com", "example.com"),
            ("_hidden", "_hidden"),
            ("unknown", "unknown"),
            ("a:1", "\"a:1\""),
            ("[::1]", "\"[::1]\""),
            ("", "\"\""),
            ("a b", "\"a b\""),
            ("a\"b\\c", "\"a\\\"b\\\\c\""),
            ("a;b", "\"a;b\""),
            ("a,b", "\"a,b\""),
        ];
        for (input, want) in cases {
            let mut out = String::new();
            push_param_value(&mut out, input);
            assert_eq!(out, want, "{input:?}");
        }
    }

    #[test]
    fn header_ops_order() {
        let n = |s: &str| HeaderName::from_bytes(s.as_bytes()).unwrap();
        let v = |s: &str| HeaderValue::from_str(s).unwrap();
        let cases: Vec<(Hs, HeaderOps, Hs)> = vec![
            (&[("a", "1")], HeaderOps::default(), &[("a", "1")]),
            // remove drops every value.
            (
                &[("a", "1"), ("a", "2"), ("b", "x")],
                HeaderOps {
                    remove: vec![n("a")],
                    ..Default::default()
                },
                &[("b", "x")],
            ),
            // set replaces every value, inserts when absent.
            (
                &[("a", "1"), ("a", "2")],
                HeaderOps {
                    set: vec![(n("a"), v("s")), (n("c"), v("new"))],
                    ..Default::default()
                },
                &[("a", "s"), ("c", "new")],
            ),
            // Two sets of one name: the last wins.
            (
                &[],
                HeaderOps {
                    set: vec![(n("a"), v("1")), (n("a"), v("2"))],
                    ..Default::default()
                },
                &[("a", "2")],
            ),
            // add appends to existing.
            (
                &[("a", "1")],
                HeaderOps {
                    add: vec![(n("a"), v("2"))],
                    ..Default::default()
                },
                &[("a", "1"), ("a", "2")],
            ),
            // remove → set → add: remove then set of one name re-inserts; add comes after set.
            (
                &[("a", "old"), ("b", "old")],
                HeaderOps {
                    remove: vec![n("a"), n("b")],
                    set: vec![(n("a"), v("set"))],
                    add: vec![(n("a"), v("add")), (n("b"), v("add"))],
                },
                &[("a", "set"), ("a", "add"), ("b", "add")],
            ),
        ];
        for (i, (input, ops, want)) in cases.iter().enumerate() {
            let mut h = map(input);
            apply(ops, &mut h);
            assert_eq!(dump(&h), pairs(want), "case {i}");
        }
    }

    #[test]
    fn request_id_only_when_absent() {
        let name = HeaderName::from_static("x-request-id");
        let mut h = map(&[("x-request-id", "client")]);
        let mut called = false;
        ensure_request_id(&mut h, &name, || {
            called = true;
            HeaderValue::from_static("gen")
        });
        assert!(!called);
        assert_eq!(dump(&h), pairs(&[("x-request-id", "client")]));

        let mut h = map(&[("x-other", "1")]);
        ensure_request_id(&mut h, &name, || HeaderValue::from_static("gen"));
        assert_eq!(
            dump(&h),
            pairs(&[("x-other", "1"), ("x-request-id", "gen")])
        );
    }

    #[test]
    fn framing_table() {
        use FramingError::*;
        let v11 = Version::HTTP_11;
        let cases: &[(Hs, Version, Result<(), FramingError>)] = &[
            (&[], v11, Ok(())),
            (&[("content-length", "0")], v11, Ok(())),
            (&[("content-length", "42")], v11, Ok(())),
            (&[("content-length", "007")], v11, Ok(())),
            (&[("content-length", "18446744073709551615")], v11, Ok(())),
            (
                &[("content-length", "18446744073709551616")],
                v11,
                Err(InvalidContentLength),
            ),
            (
                &[("content-length", "99999999999999999999999")],
                v11,
                Err(InvalidContentLength),
            ),
            (&[("content-length", "")], v11, Err(InvalidContentLength)),
            (&[("content-length", "-1")], v11, Err(InvalidContentLength)),
            (&[("content-length", "+1")], v11, Err(InvalidContentLength)),
            (&[("content-length", "1.0")], v11, Err(InvalidContentLength)),
            (
                &[("content-length", "0x10")],
                v11,
                Err(InvalidContentLength),
            ),
            (&[("content-length", " 5")], v11, Err(InvalidContentLength)),
            (&[("content-length", "5 ")], v11, Err(InvalidContentLength)),
            (&[("content-length", "5\t")], v11, Err(InvalidContentLength)),
            (&[("content-length", "1 2")], v11, Err(InvalidContentLength)),
            (&[("content-length", "abc")], v11, Err(InvalidContentLength)),
            (
                &[("content-length", "\u{0665}")],
                v11,
                Err(InvalidContentLength),
            ),
            // Duplicates, identical or not, as lines or a list.
            (
                &[("content-length", "5"), ("content-length", "5")],
                v11,
                Err(MultipleContentLength),
            ),
            (
                &[("content-length", "5"), ("content-length", "6")],
                v11,
                Err(MultipleContentLength),
            ),
            (
                &[("content-length", "5, 5")],
                v11,
                Err(MultipleContentLength),
            ),
            (
                &[("content-length", "5,6")],
                v11,
                Err(MultipleContentLength),
            ),
            (&[("content-length", "5,")], v11, Err(MultipleContentLength)),
            // Transfer-Encoding: exactly one `chunked`, any case.
            (&[("transfer-encoding", "chunked")], v11, Ok(())),
            (&[("transfer-encoding", "Chunked")], v11, Ok(())),
            (&[("transfer-encoding", "CHUNKED")], v11, Ok(())),
            (
                &[("transfer-encoding", "gzip, chunked")],
                v11,
                Err(UnsupportedTransferEncoding),
            ),
            (
                &[("transfer-encoding", "chunked, gzip")],
                v11,
                Err(UnsupportedTransferEncoding),
            ),
            (
                &[("transfer-encoding", "chunked, chunked")],
                v11,
                Err(UnsupportedTransferEncoding),
            ),
            (
                &[("transfer-encoding", "identity")],
                v11,
                Err(UnsupportedTransferEncoding),
            ),
            (
                &[("transfer-encoding", "gzip")],
                v11,
                Err(UnsupportedTransferEncoding),
            ),
            (
                &[("transfer-encoding", "xchunked")],
                v11,
                Err(UnsupportedTransferEncoding),
            ),
            (
                &[("transfer-encoding", "chunkedx")],
                v11,
                Err(UnsupportedTransferEncoding),
            ),
            (
                &[("transfer-encoding", "chunked ")],
                v11,
                Err(UnsupportedTransferEncoding),
            ),
            (
                &[("transfer-encoding", " chunked")],
                v11,
                Err(UnsupportedTransferEncoding),
            ),
            (
                &[("transfer-encoding", "\tchunked")],
                v11,
                Err(UnsupportedTransferEncoding),
            ),
            (
                &[("transfer-encoding", "chun ked")],
                v11,
                Err(UnsupportedTransferEncoding),
            ),
            (
                &[("transfer-encoding", ",chunked")],
                v11,
                Err(UnsupportedTransferEncoding),
            ),
            (
                &[("transfer-encoding", "chunked,")],
                v11,
                Err(UnsupportedTransferEncoding),
            ),
            (
                &[("transfer-encoding", "\"chunked\"")],
                v11,
                Err(UnsupportedTransferEncoding),
            ),
            (
                &[("transfer-encoding", "chunked;q=1")],
                v11,
                Err(UnsupportedTransferEncoding),
            ),
            (
                &[("transfer-encoding", "")],
                v11,
                Err(UnsupportedTransferEncoding),
            ),
            (
                &[("transfer-encoding", "chunk\u{00e9}d")],
                v11,
                Err(UnsupportedTransferEncoding),
            ),
            (
                &[
                    ("transfer-encoding", "chunked"),
                    ("transfer-encoding", "chunked"),
                ],
                v11,
                Err(UnsupportedTransferEncoding),
            ),
            (
                &[
                    ("transfer-encoding", "gzip"),
                    ("transfer-encoding", "chunked"),
                ],
                v11,
                Err(UnsupportedTransferEncoding),
            ),
            (
                &[
                    ("transfer-encoding", "chunked"),
                    ("transfer-encoding", "identity"),
                ],
                v11,
                Err(UnsupportedTransferEncoding),
            ),
            // CL + TE in either order, any CL value.
            (
                &[("content-length", "5"), ("transfer-encoding", "chunked")],
                v11,
                Err(ContentLengthWithTransferEncoding),
            ),
            (
                &[("transfer-encoding", "chunked"), ("content-length", "0")],
                v11,
                Err(ContentLengthWithTransferEncoding),
            ),
            (
                &[("transfer-encoding", "gzip"), ("content-length", "abc")],
                v11,
                Err(ContentLengthWithTransferEncoding),
            ),
            // Versions.
            (
                &[("transfer-encoding", "chunked")],
                Version::HTTP_10,
                Err(TransferEncodingHttp10),
            ),
            (
                &[("transfer-encoding", "chunked")],
                Version::HTTP_09,
                Err(TransferEncodingHttp10),
            ),
            (
                &[("transfer-encoding", "chunked")],
                Version::HTTP_2,
                Err(TransferEncodingHttp2),
            ),
            (
                &[("transfer-encoding", "chunked")],
                Version::HTTP_3,
                Err(TransferEncodingHttp2),
            ),
            (&[("content-length", "5")], Version::HTTP_10, Ok(())),
            (&[("content-length", "5")], Version::HTTP_2, Ok(())),
            (
                &[("content-length", "5"), ("content-length", "5")],
                Version::HTTP_2,
                Err(MultipleContentLength),
            ),
            // Host.
            (&[("host", "a")], v11, Ok(())),
            (&[("host", "a"), ("host", "a")], v11, Err(MultipleHost)),
            (
                &[("host", "a"), ("host", "b")],
                Version::HTTP_2,
                Err(MultipleHost),
            ),
            // obs-text and HTAB are legal in values.
            (&[("x", "caf\u{00e9}\tbar")], v11, Ok(())),
        ];
        for (i, (input, version, want)) in cases.iter().enumerate() {
            assert_eq!(
                check_request_framing(&map(input), *version),
                *want,
                "case {i}: {input:?} {version:?}"
            );
        }
    }

    #[test]
    fn framing_control_bytes() {
        // The http crate refuses these at construction, which is what makes
        // header injection impossible through a checked HeaderValue.
        for bad in [
            &b"a\rb"[..],
            b"a\nb",
            b"a\0b",
            b"a\x0bb",
            b"a\x0cb",
            b"a\x7fb",
            b"\x1b",
        ] {
            assert!(HeaderValue::from_bytes(bad).is_err(), "{bad:?}");
            assert!(bad.iter().copied().any(is_forbidden_value_byte), "{bad:?}");
        }
        for good in [&b"a\tb"[..], b"a b", b"\x80\xff", b"~!"] {
            assert!(HeaderValue::from_bytes(good).is_ok(), "{good:?}");
            assert!(
                !good.iter().copied().any(is_forbidden_value_byte),
                "{good:?}"
            );
        }
        // Header names cannot carry spaces, colons or controls either.
        for bad in [&b"x y"[..], b"x:y", b"x\r", b"", b"x\0"] {
            assert!(HeaderName::from_bytes(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn framing_reasons_are_distinct() {
        use FramingError::*;
        let all = [
            ControlCharacter,
            MultipleHost,
            ContentLengthWithTransferEncoding,
            TransferEncodingHttp10,
            TransferEncodingHttp2,
            UnsupportedTransferEncoding,
            MultipleContentLength,
            InvalidContentLength,
        ];
        let mut reasons: Vec<&str> = all.iter().map(FramingError::reason).collect();
        assert!(reasons.iter().all(|r| !r.is_empty()
            && r.bytes()
                .all(|b| b.is_ascii_lowercase() || b == b'_' || b.is_ascii_digit())));
        reasons.sort_unstable();
        reasons.dedup();
        assert_eq!(reasons.len(), all.len());
    }
}
