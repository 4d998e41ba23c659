//! Serialises the heads the fast path sends: the request head for the
//! backend and the response head for the client, straight from the raw
//! field lines that came in plus the proxy's own edits, into a reused
//! buffer. The semantics are those of the `HeaderMap` functions in
//! `l7::headers` (hop-by-hop stripping, forwarding headers, operator
//! header rules), which the HTTP/2 path uses; the tests hold the two
//! equal. The body framing fields (Content-Length, Transfer-Encoding) pass
//! through, because the body does.

use std::io::Write;
use std::net::SocketAddr;

use crate::dataplane::l7::fields::Fields;
use crate::dataplane::l7::headers::{self, ForwardedInfo, HeaderOps};

use super::head::trim;

/// Whether `name` is listed as a connection option in any Connection field.
fn named_in_connection(fields: Fields<'_>, name: &[u8]) -> bool {
    fields
        .get_all("connection")
        .flat_map(|v| v.split(|&b| b == b','))
        .any(|t| trim(t).eq_ignore_ascii_case(name))
}

fn eq(a: &[u8], b: &str) -> bool {
    a.eq_ignore_ascii_case(b.as_bytes())
}

/// Hop-by-hop for one direction (RFC 9110 §7.6.1). Host is never dropped
/// even if named in Connection.
fn hop_by_hop(fields: Fields<'_>, name: &[u8], keep_upgrade: bool) -> bool {
    if eq(name, "connection")
        || eq(name, "keep-alive")
        || eq(name, "te")
        || name.len() > 6 && name[..6].eq_ignore_ascii_case(b"proxy-")
    {
        return true;
    }
    if eq(name, "upgrade") {
        return !keep_upgrade;
    }
    if eq(name, "host") || eq(name, "transfer-encoding") || eq(name, "content-length") {
        return false;
    }
    named_in_connection(fields, name)
}

fn ops_touch(ops: &HeaderOps, name: &[u8]) -> bool {
    ops.remove.iter().any(|n| eq(name, n.as_str()))
        || ops.set.iter().any(|(n, _)| eq(name, n.as_str()))
}

fn write_ops(out: &mut Vec<u8>, ops: &HeaderOps) {
    // Two `set`s of one name: the last wins, as with HeaderMap::insert.
    for (i, (n, v)) in ops.set.iter().enumerate() {
        if ops.set[i + 1..].iter().any(|(m, _)| m == n) {
            continue;
        }
        field(out, n.as_str().as_bytes(), v.as_bytes());
    }
    for (n, v) in &ops.add {
        field(out, n.as_str().as_bytes(), v.as_bytes());
    }
}

pub fn field(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// Appends one comma-joined line of every existing value of `name` plus
/// `ours` (the single-line form ad-hoc parsers of X-Forwarded-For expect).
fn joined(
    out: &mut Vec<u8>,
    fields: Fields<'_>,
    name: &'static str,
    ours: impl FnOnce(&mut Vec<u8>),
) {
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b": ");
    for v in fields.get_all(name) {
        let v = trim(v);
        if !v.is_empty() {
            out.extend_from_slice(v);
            out.extend_from_slice(b", ");
        }
    }
    ours(out);
    out.extend_from_slice(b"\r\n");
}

/// What the request head for the backend needs besides the client's head.
pub struct RequestEdits<'a> {
    pub forwarded: ForwardedInfo<'a>,
    pub via: &'a str,
    pub rfc7239: bool,
    /// The client is a trusted proxy: its forwarding headers and request id
    /// are kept and appended to; from anyone else they are replaced.
    pub trusted: bool,
    /// Request id header (lower case) and a fresh id, used when absent.
    pub request_id: Option<(&'a str, &'a [u8])>,
    pub ops: &'a HeaderOps,
    pub websocket: bool,
    /// mTLS: the subject header's name (lowercase; always stripped from
    /// what the client sent) and the verified subject, if any.
    pub client_cert: Option<(&'a str, Option<&'a str>)>,
}

/// Writes `METHOD target HTTP/1.1` and the fields for the backend.
pub fn request_head(
    out: &mut Vec<u8>,
    method: &[u8],
    target: &[u8],
    fields: Fields<'_>,
    e: &RequestEdits<'_>,
) {
    out.extend_from_slice(method);
    out.push(b' ');
    out.extend_from_slice(target);
    out.extend_from_slice(b" HTTP/1.1\r\n");
    let keep_upgrade = e.websocket && fields.contains("upgrade");
    let mut has_request_id = false;
    for (name, value) in fields.pairs() {
        if hop_by_hop(fields, name, keep_upgrade)
            || eq(name, "x-forwarded-for")
            || eq(name, "x-forwarded-proto")
            || eq(name, "x-forwarded-host")
            || eq(name, "via")
            || (e.rfc7239 || !e.trusted) && eq(name, "forwarded")
            || e.client_cert.is_some_and(|(h, _)| eq(name, h))
            || ops_touch(e.ops, name)
        {
            continue;
        }
        if let Some((rid, _)) = e.request_id {
            if eq(name, rid) {
                if !e.trusted {
                    continue;
                }
                has_request_id = true;
            }
        }
        field(out, name, value);
    }
    let empty = Fields::Raw(&[], &[]);
    let prior = if e.trusted { fields } else { empty };
    let client = e.forwarded.client.to_canonical();
    joined(out, prior, "x-forwarded-for", |o| {
        let _ = write!(o, "{client}");
    });
    field(out, b"x-forwarded-proto", e.forwarded.proto.as_bytes());
    let valid = |h: &&str| h.bytes().all(|b| (b >= 0x20 && b != 0x7f) || b == b'\t');
    if let Some(h) = e.forwarded.host.filter(valid) {
        field(out, b"x-forwarded-host", h.as_bytes());
    }
    joined(out, fields, "via", |o| {
        o.extend_from_slice(e.via.as_bytes())
    });
    if e.rfc7239 {
        joined(out, prior, "forwarded", |o| {
            o.extend_from_slice(headers::forwarded_element(&e.forwarded).as_bytes())
        });
    }
    if let Some((rid, id)) = e.request_id {
        if !has_request_id && !ops_touch(e.ops, rid.as_bytes()) {
            field(out, rid.as_bytes(), id);
        }
    }
    if let Some((h, Some(subject))) = e.client_cert {
        field(out, h.as_bytes(), subject.as_bytes());
    }
    if keep_upgrade {
        field(out, b"connection", b"upgrade");
    }
    write_ops(out, e.ops);
    out.extend_from_slice(b"\r\n");
}

/// What the response head for the client needs besides the backend's head.
pub struct ResponseEdits<'a> {
    pub via: &'a str,
    /// Extra fields (Set-Cookie of stickiness, X-Cache, HSTS) written before
    /// the operator's rules.
    pub extra: &'a [(&'a str, &'a [u8])],
    pub ops: &'a HeaderOps,
    /// Tell the client the connection closes after this response.
    pub close: bool,
    /// A 101 switching protocols: keep Upgrade, say Connection: upgrade.
    pub upgrade: bool,
}

pub fn response_head(
    out: &mut Vec<u8>,
    status: u16,
    reason: &[u8],
    fields: Fields<'_>,
    e: &ResponseEdits<'_>,
) {
    let _ = write!(out, "HTTP/1.1 {status} ");
    out.extend_from_slice(reason);
    out.extend_from_slice(b"\r\n");
    for (name, value) in fields.pairs() {
        if hop_by_hop(fields, name, e.upgrade) || ops_touch(e.ops, name) {
            continue;
        }
        if e.extra
            .iter()
            .any(|(n, _)| eq(name, n) && !n.eq_ignore_ascii_case("set-cookie"))
        {
            continue;
        }
        field(out, name, value);
    }
    field(out, b"via", e.via.as_bytes());
    for (n, v) in e.extra {
        field(out, n.as_bytes(), v);
    }
    if e.upgrade {
        field(out, b"connection", b"upgrade");
    } else if e.close {
        field(out, b"connection", b"close");
    }
    write_ops(out, e.ops);
    out.extend_from_slice(b"\r\n");
}

/// `for=` node text of a peer, for logs and PROXY-less forwarding.
pub fn by_addr(a: SocketAddr) -> SocketAddr {
    SocketAddr::new(a.ip().to_canonical(), a.port())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataplane::l7::h1::head::{
        parse_request, parse_response, RequestHead, ResponseHead,
    };
    use http::{HeaderMap, HeaderName, HeaderValue, Method};

    fn map_of(fields: Fields<'_>) -> HeaderMap {
        let mut m = HeaderMap::new();
        for (n, v) in fields.pairs() {
            m.append(
                HeaderName::from_bytes(n).unwrap(),
                HeaderValue::from_bytes(v).unwrap(),
            );
        }
        m
    }

    fn sorted(m: &HeaderMap) -> Vec<(String, String)> {
        let mut v: Vec<(String, String)> = m
            .iter()
            .map(|(n, v)| (n.as_str().to_string(), v.to_str().unwrap().to_string()))
            .collect();
        v.sort();
        v
    }

    fn ops() -> HeaderOps {
        HeaderOps {
            set: vec![(
                HeaderName::from_static("x-env"),
                HeaderValue::from_static("prod"),
            )],
            add: vec![(
                HeaderName::from_static("x-add"),
                HeaderValue::from_static("1"),
            )],
            remove: vec![HeaderName::from_static("x-secret")],
        }
    }

    /// The raw writer and the HeaderMap pipeline of the HTTP/2 path give the
    /// same fields (apart from the framing ones, which the raw path keeps
    /// because it passes the body through).
    #[test]
    fn request_head_matches_the_headermap_pipeline() {
        let inputs = [
            "GET / HTTP/1.1\r\nHost: a.example\r\nAccept: */*\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: a\r\nX-Forwarded-For: 1.1.1.1\r\nX-Forwarded-For: 2.2.2.2\r\nVia: 1.0 x\r\nX-Forwarded-Proto: gopher\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, X-Hop\r\nX-Hop: 1\r\nKeep-Alive: 5\r\nTE: trailers\r\nProxy-Authorization: x\r\nUpgrade: h2c\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: a\r\nX-Secret: s\r\nX-Env: dev\r\nX-Env: test\r\nX-Add: 0\r\n\r\n",
            "GET /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Key: k\r\n\r\n",
        ];
        let client: SocketAddr = "[::ffff:10.0.0.9]:5555".parse().unwrap();
        let by: SocketAddr = "192.0.2.1:80".parse().unwrap();
        for raw in inputs {
            for rfc7239 in [false, true] {
                let b = raw.as_bytes();
                let mut h = RequestHead::default();
                parse_request(b, 100, &mut h).unwrap();
                let fields = h.fields(b);
                let info = ForwardedInfo {
                    client: client.ip(),
                    proto: "http",
                    host: h.host_str(b),
                    by: Some(by),
                };
                let ops = ops();
                let mut out = Vec::new();
                request_head(
                    &mut out,
                    b"GET",
                    b"/x",
                    fields,
                    &RequestEdits {
                        forwarded: info,
                        via: "1.1 tandem",
                        rfc7239,
                        trusted: true,
                        request_id: Some(("x-request-id", b"abc")),
                        ops: &ops,
                        websocket: h.websocket,
                        client_cert: None,
                    },
                );
                let mut back = RequestHead::default();
                parse_request(&out, 100, &mut back).unwrap();
                let got = map_of(back.fields(&out));
                let mut want = map_of(fields);
                headers::strip_hop_by_hop(&mut want, h.websocket);
                if let Some(host) = h.host_str(b) {
                    want.insert(http::header::HOST, HeaderValue::from_str(host).unwrap());
                }
                headers::add_forwarding(&mut want, &info, "1.1 tandem", rfc7239);
                headers::ensure_request_id(
                    &mut want,
                    &HeaderName::from_static("x-request-id"),
                    || HeaderValue::from_static("abc"),
                );
                headers::apply(&ops, &mut want);
                assert_eq!(sorted(&got), sorted(&want), "{raw:?} rfc7239={rfc7239}");
            }
        }
    }

    #[test]
    fn untrusted_clients_cannot_inject_forwarding_or_request_ids() {
        let raw = "GET / HTTP/1.1\r\nHost: a\r\nX-Forwarded-For: 6.6.6.6\r\nForwarded: for=6.6.6.6\r\nX-Request-Id: evil\r\n\r\n";
        let b = raw.as_bytes();
        let mut h = RequestHead::default();
        parse_request(b, 100, &mut h).unwrap();
        let ops = HeaderOps::default();
        let mut out = Vec::new();
        request_head(
            &mut out,
            b"GET",
            b"/",
            h.fields(b),
            &RequestEdits {
                forwarded: ForwardedInfo {
                    client: "10.1.1.1".parse().unwrap(),
                    proto: "https",
                    host: Some("a"),
                    by: None,
                },
                via: "1.1 tandem",
                rfc7239: false,
                trusted: false,
                request_id: Some(("x-request-id", b"mine")),
                ops: &ops,
                websocket: false,
                client_cert: None,
            },
        );
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains("x-forwarded-for: 10.1.1.1\r\n"), "{text}");
        assert!(text.contains("x-request-id: mine\r\n"), "{text}");
        assert!(!text.contains("6.6.6.6"), "{text}");
        assert!(!text.contains("evil"), "{text}");
    }

    #[test]
    fn response_head_strips_hop_by_hop_and_adds_edits() {
        let raw = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: keep-alive, X-Hop\r\nX-Hop: 1\r\nKeep-Alive: timeout=5\r\nSet-Cookie: a=1\r\nX-Secret: s\r\n\r\n";
        let b = raw.as_bytes();
        let mut h = ResponseHead::default();
        parse_response(b, &Method::GET, &mut h).unwrap();
        let ops = ops();
        let mut out = Vec::new();
        response_head(
            &mut out,
            h.status,
            h.reason.of(b),
            h.fields(b),
            &ResponseEdits {
                via: "1.1 tandem",
                extra: &[
                    ("set-cookie", b"t=x"),
                    ("strict-transport-security", b"max-age=1"),
                ],
                ops: &ops,
                close: true,
                upgrade: false,
            },
        );
        let text = String::from_utf8(out.clone()).unwrap();
        assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
        for want in [
            "Content-Length: 2\r\n",
            "Set-Cookie: a=1\r\n",
            "set-cookie: t=x\r\n",
            "via: 1.1 tandem\r\n",
            "connection: close\r\n",
            "x-env: prod\r\n",
            "x-add: 1\r\n",
            "strict-transport-security: max-age=1\r\n",
        ] {
            assert!(text.contains(want), "missing {want:?} in {text}");
        }
        for gone in ["X-Hop", "Keep-Alive", "X-Secret", "keep-alive"] {
            assert!(!text.contains(gone), "{gone} left in {text}");
        }
        let mut back = ResponseHead::default();
        parse_response(&out, &Method::GET, &mut back).unwrap();
        assert!(!back.keep_alive);
    }
}
