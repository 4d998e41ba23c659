//! Request routing of the L7 proxy: each HTTP listener has an ordered list of
//! routes, and the first route whose [`Match`] fits the request wins. A
//! [`Router`] is built once per config generation and then only read, so
//! matching needs no lock. Also the pure path and redirect helpers the proxy
//! applies once a route is chosen.
//!
//! Matching works on the request as received: paths are compared raw (no
//! percent-decoding, no dot-segment removal), case-sensitively
//! (RFC 3986 §6.2.2.1); hosts case-insensitively (RFC 9110 §4.2.3).

use std::borrow::Cow;

use http::header::{self, HeaderName};
use http::Method;
use regex::Regex;

use crate::config::{ActionConfig, HeaderOpsConfig, RouteConfig, ValueMatchConfig};
use crate::dataplane::l7::fields::Fields;
use crate::dataplane::l7::headers::HeaderOps;

/// The ordered routes of one HTTP listener.
#[derive(Debug, Clone)]
pub struct Router {
    routes: Vec<Route>,
}

/// One configured route.
#[derive(Debug, Clone)]
pub struct Route {
    pub name: String,
    pub matcher: Match,
    pub action: Action,
    pub request_headers: HeaderOps,
    pub response_headers: HeaderOps,
    pub cache: bool,
    /// Compress responses (gzip/brotli) for clients that accept it.
    pub compress: Option<crate::dataplane::l7::compress::CompressConfig>,
}

/// Conditions a request must meet, all of them (AND). An empty `Match`
/// (`Match::default()`) matches every request: a default route.
#[derive(Debug, Clone, Default)]
pub struct Match {
    pub host: Option<HostMatch>,
    pub path: Option<PathMatch>,
    /// Any of these methods; empty means any method.
    pub methods: Vec<Method>,
    /// Every entry must match some field line of the named header.
    pub headers: Vec<(HeaderName, ValueMatch)>,
    /// Every entry must match some cookie of that (case-sensitive) name.
    pub cookies: Vec<(String, ValueMatch)>,
    /// Every entry must match some query parameter of that (case-sensitive,
    /// percent-decoded) name.
    pub query: Vec<(String, ValueMatch)>,
    /// The client address (from PROXY when the listener accepts it) is in
    /// one of these blocks; empty means any client.
    pub sources: Vec<crate::config::Cidr>,
}

/// Host condition. The request host is compared without its `:port` and
/// without one trailing dot (`example.com.` is `example.com`), ASCII
/// case-insensitively; IDNA is not applied (configure punycode names).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostMatch {
    /// The whole host, e.g. "example.com" or an IPv6 literal `[::1]`.
    Exact(String),
    /// Holds the suffix after "*.": `Wildcard("example.com")` is the pattern
    /// "*.example.com" and matches one *or more* labels in front
    /// ("a.example.com", "a.b.example.com", as nginx and Envoy do) but never
    /// "example.com" itself. Build it with [`HostMatch::parse`].
    Wildcard(String),
}

/// Path condition, on the path without the query string.
#[derive(Debug, Clone)]
pub enum PathMatch {
    /// Segment-aware prefix. A prefix ending in '/' is a plain string prefix
    /// ("/api/" matches "/api/" and "/api/x", not "/api"); otherwise the path
    /// must equal the prefix or continue with '/' ("/api" matches "/api" and
    /// "/api/x", not "/apix").
    Prefix(String),
    /// The whole path, byte for byte.
    Exact(String),
    /// `Regex::is_match`: an unanchored search. Anchor with ^…$ to match the
    /// whole path.
    Regex(Regex),
}

/// Condition on one header, cookie or query value.
#[derive(Debug, Clone)]
pub enum ValueMatch {
    /// The header, cookie or parameter exists (any value, even empty).
    Present,
    /// Byte-for-byte equality.
    Equals(String),
    /// `Regex::is_match` (unanchored search) on the value; a value that is not
    /// UTF-8 never matches.
    Regex(Regex),
}

/// What to do with a matched request.
#[derive(Debug, Clone)]
pub enum Action {
    /// Proxy to a pool, with the path rewritten by [`rewritten_path`].
    Forward {
        pool: String,
        /// Weighted split across pools (canary); empty = all to `pool`.
        split: Vec<(String, u32)>,
        /// Split by client address instead of per request.
        split_sticky: bool,
        strip_prefix: Option<String>,
        rewrite_path: Option<String>,
    },
    /// Answer with a redirect; `location` is a template for
    /// [`expand_location`].
    Redirect { status: u16, location: String },
    /// Answer with a fixed response.
    Respond {
        status: u16,
        body: String,
        content_type: Option<String>,
    },
}

/// What the router looks at, borrowed from the incoming request.
#[derive(Debug, Clone, Copy)]
pub struct RequestView<'a> {
    pub method: &'a Method,
    /// Host as received, possibly with ":port".
    pub host: Option<&'a str>,
    /// Path without the query.
    pub path: &'a str,
    /// Raw query string, without '?'.
    pub query: Option<&'a str>,
    pub headers: Fields<'a>,
    /// The client's address, for `source` matchers.
    pub client: Option<std::net::IpAddr>,
}

impl<'a> RequestView<'a> {
    /// The host comes from the URI authority when there is one (HTTP/2
    /// :authority, HTTP/1.1 absolute-form: RFC 9112 §3.2.2 says it overrides
    /// Host), user info dropped; otherwise from the first `Host` header.
    /// A non-UTF-8 Host gives `None`.
    pub fn from_parts(parts: &'a http::request::Parts) -> Self {
        let from_uri = parts
            .uri
            .authority()
            .map(|a| a.as_str())
            .map(|a| a.rsplit_once('@').map_or(a, |(_, host)| host))
            .filter(|h| !h.is_empty());
        let host = from_uri.or_else(|| {
            parts
                .headers
                .get(header::HOST)
                .and_then(|v| v.to_str().ok())
        });
        RequestView {
            method: &parts.method,
            host,
            path: parts.uri.path(),
            query: parts.uri.query(),
            headers: Fields::Map(&parts.headers),
            client: None,
        }
    }
}

impl Router {
    pub fn new(routes: Vec<Route>) -> Self {
        Router { routes }
    }

    /// The first route that matches, with its index, or `None` when no route
    /// matches (the listener then answers 404).
    pub fn route(&self, req: &RequestView<'_>) -> Option<(usize, &Route)> {
        self.routes
            .iter()
            .enumerate()
            .find(|(_, r)| r.matcher.matches(req))
    }

    pub fn routes(&self) -> &[Route] {
        &self.routes
    }
}

impl Match {
    /// Whether every condition holds; cheap conditions are checked first.
    pub fn matches(&self, req: &RequestView<'_>) -> bool {
        (self.methods.is_empty() || self.methods.contains(req.method))
            && (self.sources.is_empty()
                || req
                    .client
                    .is_some_and(|ip| self.sources.iter().any(|c| c.contains(ip))))
            && self
                .host
                .as_ref()
                .is_none_or(|h| req.host.is_some_and(|rh| h.matches(rh)))
            && self.path.as_ref().is_none_or(|p| p.matches(req.path))
            && self
                .headers
                .iter()
                .all(|(name, vm)| req.headers.get_all(name.as_str()).any(|v| vm.matches(v)))
            && self.cookies.iter().all(|(name, vm)| {
                cookies(req.headers).any(|(n, v)| n == name && vm.matches(v.as_bytes()))
            })
            && self.query.iter().all(|(name, vm)| {
                let q = req.query.unwrap_or("");
                query_params(q).any(|(n, v)| {
                    form_decode(n) == name.as_str() && vm.matches(form_decode(v).as_bytes())
                })
            })
    }
}

/// The pool a forwarding route sends this request to: `pool`, or one of
/// `split` by weight, drawn per request or (sticky) from the client
/// address so a client stays on its side of a canary.
pub fn split_pool<'r>(
    pool: &'r str,
    split: &'r [(String, u32)],
    sticky: bool,
    client: std::net::IpAddr,
) -> &'r str {
    let total: u64 = split.iter().map(|(_, w)| u64::from(*w)).sum();
    if total == 0 {
        return pool;
    }
    let draw = if sticky {
        // Re-mixed so the split does not line up with source hashing
        // inside the pool, which starts from the same key.
        crate::balance::client_key(client).rotate_left(29) ^ 0x5bd1_e995_7f4a_7c15
    } else {
        next_random()
    };
    let mut at = draw % total;
    for (name, w) in split {
        if at < u64::from(*w) {
            return name;
        }
        at -= u64::from(*w);
    }
    pool
}

/// A per-thread xorshift: a split draw needs spread, not secrecy.
fn next_random() -> u64 {
    use std::cell::Cell;
    thread_local! {
        static STATE: Cell<u64> = Cell::new(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(0x2545_f491_4f6c_dd1d)
                | 1,
        );
    }
    STATE.with(|s| {
        let mut x = s.get();
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        s.set(x);
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    })
}

impl HostMatch {
    /// Parses an operator's pattern: "*.example.com" is a wildcard, anything
    /// else without '*' is exact. Rejects empty patterns, '*' anywhere but as
    /// the whole first label, empty labels in a wildcard suffix, and ports.
    pub fn parse(pattern: &str) -> Result<HostMatch, String> {
        if pattern.is_empty() {
            return Err("empty host pattern".to_string());
        }
        let (wildcard, rest) = match pattern.strip_prefix("*.") {
            Some(suffix) => (true, suffix),
            None => (false, pattern),
        };
        if rest.contains('*') {
            return Err(format!(
                "host pattern {pattern:?}: '*' is only allowed as a leading \"*.\""
            ));
        }
        if strip_port(rest) != rest {
            return Err(format!("host pattern {pattern:?} must not contain a port"));
        }
        if wildcard {
            let suffix = rest.strip_suffix('.').unwrap_or(rest);
            if suffix.split('.').any(str::is_empty) {
                return Err(format!("host pattern {pattern:?} has an empty label"));
            }
            Ok(HostMatch::Wildcard(rest.to_string()))
        } else {
            Ok(HostMatch::Exact(rest.to_string()))
        }
    }

    /// Whether `host` (as received, ":port" allowed) matches.
    pub fn matches(&self, host: &str) -> bool {
        let host = normalize_host(host);
        match self {
            HostMatch::Exact(want) => host.eq_ignore_ascii_case(trim_dot(want)),
            HostMatch::Wildcard(suffix) => {
                let suffix = trim_dot(suffix).as_bytes();
                let h = host.as_bytes();
                // "<labels>.<suffix>" with at least one non-empty label.
                if h.len() < suffix.len() + 2 {
                    return false;
                }
                let split = h.len() - suffix.len();
                h[split..].eq_ignore_ascii_case(suffix)
                    && h[split - 1] == b'.'
                    && h[..split - 1].split(|&b| b == b'.').all(|l| !l.is_empty())
            }
        }
    }
}

fn trim_dot(h: &str) -> &str {
    h.strip_suffix('.').unwrap_or(h)
}

/// Host without ":port"; an IPv6 literal keeps its brackets.
fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        match host.find(']') {
            Some(end) => &host[..=end],
            None => host,
        }
    } else {
        host.split_once(':').map_or(host, |(h, _)| h)
    }
}

/// Host as compared: no port, no trailing dot (an absolute DNS name is the
/// same host; without this "example.com." would slip past a host route).
fn normalize_host(host: &str) -> &str {
    trim_dot(strip_port(host))
}

impl PathMatch {
    pub fn matches(&self, path: &str) -> bool {
        match self {
            PathMatch::Prefix(prefix) => prefix_rest(prefix, path).is_some(),
            PathMatch::Exact(want) => path == want,
            PathMatch::Regex(re) => re.is_match(path),
        }
    }
}

/// The segment-aware prefix rule of [`PathMatch::Prefix`]; returns what
/// follows the prefix.
fn prefix_rest<'p>(prefix: &str, path: &'p str) -> Option<&'p str> {
    let rest = path.strip_prefix(prefix)?;
    if prefix.ends_with('/') || rest.is_empty() || rest.starts_with('/') {
        Some(rest)
    } else {
        None
    }
}

impl ValueMatch {
    pub fn matches(&self, value: &[u8]) -> bool {
        match self {
            ValueMatch::Present => true,
            ValueMatch::Equals(want) => value == want.as_bytes(),
            ValueMatch::Regex(re) => std::str::from_utf8(value).is_ok_and(|v| re.is_match(v)),
        }
    }
}

/// (name, value) of every cookie in every `Cookie` field line (HTTP/2 may
/// split cookies over several lines, RFC 9113 §8.2.3). Pairs are separated
/// by ';' with any SP/HTAB around them tolerated; a value in double quotes
/// is unquoted (RFC 6265 §4.1.1); pieces without '=' or with an empty name,
/// and non-UTF-8 pieces, are skipped.
fn cookies(headers: Fields<'_>) -> impl Iterator<Item = (&str, &str)> {
    headers
        .get_all("cookie")
        .flat_map(|v| v.split(|&b| b == b';'))
        .filter_map(|piece| {
            let piece = std::str::from_utf8(piece).ok()?;
            let (name, value) = piece.split_once('=')?;
            let name = name.trim_matches([' ', '\t']);
            if name.is_empty() {
                return None;
            }
            let value = value.trim_matches([' ', '\t']);
            let value = value
                .strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .unwrap_or(value);
            Some((name, value))
        })
}

/// Raw (name, value) pairs of a query string split on '&' ; empty pieces are
/// skipped and a piece without '=' has an empty value (WHATWG URL
/// application/x-www-form-urlencoded parsing).
fn query_params(query: &str) -> impl Iterator<Item = (&str, &str)> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| p.split_once('=').unwrap_or((p, "")))
}

/// Form decoding: '+' is a space, "%XX" a byte; a '%' not followed by two hex
/// digits stays literal; bytes that are not UTF-8 become U+FFFD.
/// Borrows when there is nothing to decode.
fn form_decode(s: &str) -> Cow<'_, str> {
    if !s.bytes().any(|b| b == b'%' || b == b'+') {
        return Cow::Borrowed(s);
    }
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b'%' => match (b.get(i + 1).and_then(hex), b.get(i + 2).and_then(hex)) {
                (Some(hi), Some(lo)) => {
                    out.push(hi << 4 | lo);
                    i += 3;
                }
                _ => {
                    out.push(b'%');
                    i += 1;
                }
            },
            other => {
                out.push(other);
                i += 1;
            }
        }
    }
    match String::from_utf8(out) {
        Ok(s) => Cow::Owned(s),
        Err(e) => Cow::Owned(String::from_utf8_lossy(e.as_bytes()).into_owned()),
    }
}

fn hex(b: &u8) -> Option<u8> {
    (*b as char).to_digit(16).map(|d| d as u8)
}

/// The upstream path of a `Forward` action, from the request path (without
/// query: the caller re-attaches the query string unchanged).
///
/// * `rewrite` set: with a `PathMatch::Regex` route matcher, every match of
///   the regex in the path is replaced by `rewrite`, expanding `$1`, `$name`,
///   `${1}`, `${name}` (`Regex::replace_all`, as Envoy's regex_rewrite and
///   Traefik's ReplacePathRegex; anchor the regex to rewrite the whole path;
///   write `${1}x`, since `$1x` names a group "1x"). With any other matcher
///   the path is replaced by `rewrite` literally. `rewrite` wins over
///   `strip` (the config loader should refuse both).
/// * `strip` set: the prefix is removed by the rule of [`PathMatch::Prefix`]
///   ("/api" or "/api/" turns "/api/users" into "/users" and "/api" into
///   "/"); a path it does not prefix is left alone.
///
/// The result always starts with '/', as an origin-form target must
/// (RFC 9112 §3.2.1).
pub fn rewritten_path(
    strip: Option<&str>,
    rewrite: Option<&str>,
    path: &str,
    matcher: Option<&PathMatch>,
) -> String {
    let out: Cow<'_, str> = match (rewrite, strip) {
        (Some(rewrite), _) => match matcher {
            Some(PathMatch::Regex(re)) => re.replace_all(path, rewrite),
            _ => Cow::Borrowed(rewrite),
        },
        (None, Some(strip)) => {
            let strip = strip.trim_end_matches('/');
            match prefix_rest(strip, path) {
                Some(rest) if !strip.is_empty() => Cow::Borrowed(rest),
                _ => Cow::Borrowed(path),
            }
        }
        (None, None) => Cow::Borrowed(path),
    };
    if out.starts_with('/') {
        out.into_owned()
    } else {
        format!("/{out}")
    }
}

/// Expands a redirect `Location` template: `{scheme}` (the `scheme`
/// argument), `{host}` (request host without port; empty without a host),
/// `{path}`, `{query}` ("?" + query, empty when there is none or it is
/// empty), `{uri}` (path + query). Unknown `{…}` are left as written.
///
/// A path starting with several '/' or '\' is collapsed to one '/' so that a
/// relative template like "{uri}" cannot produce a scheme-relative
/// "//evil.example" (an open redirect, browsers also read '\' as '/').
///
/// HTTP→HTTPS: `location = "https://{host}{uri}"` with status 301 or 308.
pub fn expand_location(template: &str, req: &RequestView<'_>, scheme: &str) -> String {
    let path = safe_path(req.path);
    let query = req.query.filter(|q| !q.is_empty());
    let mut out = String::with_capacity(template.len() + path.len() + 32);
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        rest = &rest[open..];
        let Some(close) = rest.find('}') else { break };
        match &rest[1..close] {
            "scheme" => out.push_str(scheme),
            "host" => out.push_str(req.host.map(strip_port).unwrap_or("")),
            "path" => out.push_str(&path),
            "query" => push_query(&mut out, query),
            "uri" => {
                out.push_str(&path);
                push_query(&mut out, query);
            }
            _ => {
                // Not a placeholder: keep the '{' and scan on after it.
                out.push('{');
                rest = &rest[1..];
                continue;
            }
        }
        rest = &rest[close + 1..];
    }
    out.push_str(rest);
    out
}

fn safe_path(path: &str) -> Cow<'_, str> {
    let trimmed = path.trim_start_matches(['/', '\\']);
    if path.len() - trimmed.len() > 1 {
        Cow::Owned(format!("/{trimmed}"))
    } else {
        Cow::Borrowed(path)
    }
}

fn push_query(out: &mut String, query: Option<&str>) {
    if let Some(q) = query {
        out.push('?');
        out.push_str(q);
    }
}

fn value_match(v: &ValueMatchConfig) -> Result<ValueMatch, String> {
    Ok(match v {
        ValueMatchConfig::Present => ValueMatch::Present,
        ValueMatchConfig::Equals(s) => ValueMatch::Equals(s.clone()),
        ValueMatchConfig::Regex(r) => {
            ValueMatch::Regex(regex::Regex::new(r).map_err(|e| format!("bad regex: {e}"))?)
        }
    })
}

fn header_ops(c: &HeaderOpsConfig) -> Result<HeaderOps, String> {
    let pair =
        |(n, v): &(String, String)| -> Result<(http::HeaderName, http::HeaderValue), String> {
            let name = http::HeaderName::from_bytes(n.as_bytes())
                .map_err(|_| format!("{n:?} is not a valid header name"))?;
            let value = http::HeaderValue::from_str(v)
                .map_err(|_| format!("value of {n} is not a valid header value"))?;
            Ok((name, value))
        };
    Ok(HeaderOps {
        set: c.set.iter().map(pair).collect::<Result<_, _>>()?,
        add: c.add.iter().map(pair).collect::<Result<_, _>>()?,
        remove: c
            .remove
            .iter()
            .map(|n| {
                http::HeaderName::from_bytes(n.as_bytes())
                    .map_err(|_| format!("{n:?} is not a valid header name"))
            })
            .collect::<Result<_, _>>()?,
    })
}

/// Compiles a validated route of the config into the router's matching types (config is a
/// leaf: it keeps its own typed values, and this is where they become matchers). Errors
/// carry the key (relative to the route) they belong to.
pub fn build_route(c: &RouteConfig) -> Result<Route, (String, String)> {
    let m = &c.matcher;
    let host = match &m.host {
        Some(h) => Some(HostMatch::parse(h).map_err(|e| ("match.host".to_string(), e))?),
        None => None,
    };
    let path = match (&m.path_prefix, &m.path_exact, &m.path_regex) {
        (Some(p), None, None) => Some(PathMatch::Prefix(p.clone())),
        (None, Some(p), None) => Some(PathMatch::Exact(p.clone())),
        (None, None, Some(r)) => {
            Some(PathMatch::Regex(regex::Regex::new(r).map_err(|e| {
                ("match.path_regex".to_string(), format!("bad regex: {e}"))
            })?))
        }
        (None, None, None) => None,
        _ => {
            return Err((
                "match".into(),
                "use only one of path_prefix, path_exact, path_regex".into(),
            ))
        }
    };
    let methods = m
        .methods
        .iter()
        .map(|s| {
            http::Method::from_bytes(s.as_bytes()).map_err(|_| {
                (
                    "match.method".to_string(),
                    format!("{s:?} is not an HTTP method"),
                )
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let headers = m
        .headers
        .iter()
        .map(|(n, v)| {
            let name = http::HeaderName::from_bytes(n.as_bytes()).map_err(|_| {
                (
                    format!("match.header.{n}"),
                    "not a valid header name".to_string(),
                )
            })?;
            Ok((
                name,
                value_match(v).map_err(|e| (format!("match.header.{n}"), e))?,
            ))
        })
        .collect::<Result<Vec<_>, (String, String)>>()?;
    let cookies = m
        .cookies
        .iter()
        .map(|(n, v)| {
            Ok((
                n.clone(),
                value_match(v).map_err(|e| (format!("match.cookie.{n}"), e))?,
            ))
        })
        .collect::<Result<Vec<_>, (String, String)>>()?;
    let query = m
        .query
        .iter()
        .map(|(n, v)| {
            Ok((
                n.clone(),
                value_match(v).map_err(|e| (format!("match.query.{n}"), e))?,
            ))
        })
        .collect::<Result<Vec<_>, (String, String)>>()?;
    let action = match &c.action {
        ActionConfig::Forward {
            pool,
            split,
            split_sticky,
            strip_prefix,
            rewrite_path,
        } => Action::Forward {
            pool: pool.clone(),
            split: split.clone(),
            split_sticky: *split_sticky,
            strip_prefix: strip_prefix.clone(),
            rewrite_path: rewrite_path.clone(),
        },
        ActionConfig::Redirect { status, location } => Action::Redirect {
            status: *status,
            location: location.clone(),
        },
        ActionConfig::Respond {
            status,
            body,
            content_type,
        } => Action::Respond {
            status: *status,
            body: body.clone(),
            content_type: content_type.clone(),
        },
    };
    Ok(Route {
        name: c.name.clone(),
        matcher: Match {
            host,
            path,
            methods,
            headers,
            cookies,
            query,
            sources: m.sources.clone(),
        },
        action,
        request_headers: header_ops(&c.request_headers)
            .map_err(|e| ("request_headers".to_string(), e))?,
        response_headers: header_ops(&c.response_headers)
            .map_err(|e| ("response_headers".to_string(), e))?,
        cache: c.cache.is_some(),
        compress: c.compress.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Header (name, value) pairs of a table row.
    type Hs = &'static [(&'static str, &'static str)];
    type OptStr = Option<&'static str>;
    use http::HeaderValue;

    fn parts(method: &str, uri: &str, headers: &[(&str, &str)]) -> http::request::Parts {
        let mut b = http::Request::builder().method(method).uri(uri);
        for (n, v) in headers {
            b = b.header(*n, *v);
        }
        b.body(()).unwrap().into_parts().0
    }

    fn re(s: &str) -> Regex {
        Regex::new(s).unwrap()
    }

    fn matches(m: &Match, method: &str, uri: &str, headers: &[(&str, &str)]) -> bool {
        let p = parts(method, uri, headers);
        m.matches(&RequestView::from_parts(&p))
    }

    fn route(name: &str, matcher: Match) -> Route {
        Route {
            name: name.to_string(),
            matcher,
            action: Action::Forward {
                pool: name.to_string(),
                split: Vec::new(),
                split_sticky: false,
                strip_prefix: None,
                rewrite_path: None,
            },
            request_headers: HeaderOps::default(),
            response_headers: HeaderOps::default(),
            cache: false,
            compress: None,
        }
    }

    #[test]
    fn host_parse_table() {
        let cases: &[(&str, Result<HostMatch, ()>)] = &[
            ("example.com", Ok(HostMatch::Exact("example.com".into()))),
            ("Example.COM", Ok(HostMatch::Exact("Example.COM".into()))),
            (
                "*.example.com",
                Ok(HostMatch::Wildcard("example.com".into())),
            ),
            (
                "*.example.com.",
                Ok(HostMatch::Wildcard("example.com.".into())),
            ),
            ("*.com", Ok(HostMatch::Wildcard("com".into()))),
            ("[::1]", Ok(HostMatch::Exact("[::1]".into()))),
            ("", Err(())),
            ("*", Err(())),
            ("*.", Err(())),
            ("*example.com", Err(())),
            ("a.*.example.com", Err(())),
            ("*.*.example.com", Err(())),
            ("www.example.*", Err(())),
            ("*..example.com", Err(())),
            ("*.example..com", Err(())),
            ("example.com:8080", Err(())),
            ("*.example.com:443", Err(())),
            ("[::1]:80", Err(())),
        ];
        for (pattern, want) in cases {
            let got = HostMatch::parse(pattern).map_err(|_| ());
            assert_eq!(&got, want, "{pattern:?}");
        }
    }

    #[test]
    fn host_match_table() {
        let cases: &[(&str, &str, bool)] = &[
            ("example.com", "example.com", true),
            ("example.com", "EXAMPLE.com", true),
            ("EXAMPLE.COM", "example.com", true),
            ("example.com", "example.com:8080", true),
            ("example.com", "example.com.", true),
            ("example.com", "example.com.:443", true),
            ("example.com", "www.example.com", false),
            ("example.com", "example.co", false),
            ("example.com", "example.com.evil", false),
            ("example.com", "notexample.com", false),
            ("example.com", "", false),
            ("[::1]", "[::1]", true),
            ("[::1]", "[::1]:8443", true),
            ("[::1]", "[::2]", false),
            ("192.0.2.1", "192.0.2.1:80", true),
            ("*.example.com", "a.example.com", true),
            ("*.example.com", "A.Example.Com", true),
            ("*.example.com", "a.b.example.com", true),
            ("*.example.com", "a.example.com:8080", true),
            ("*.example.com", "a.example.com.", true),
            ("*.example.com.", "a.example.com", true),
            ("*.example.com", "example.com", false),
            ("*.example.com", "example.com:80", false),
            ("*.example.com", ".example.com", false),
            ("*.example.com", "a..example.com", false),
            ("*.example.com", "aexample.com", false),
            ("*.example.com", "a.example.com.evil", false),
            ("*.example.com", "a.example.org", false),
            ("*.example.com", "a.xexample.com", false),
            ("*.example.com", "", false),
            ("*.com", "example.com", true),
        ];
        for (pattern, host, want) in cases {
            let m = HostMatch::parse(pattern).unwrap();
            assert_eq!(m.matches(host), *want, "{pattern:?} vs {host:?}");
        }
    }

    #[test]
    fn path_match_table() {
        let cases: &[(PathMatch, &str, bool)] = &[
            (PathMatch::Prefix("/api".into()), "/api", true),
            (PathMatch::Prefix("/api".into()), "/api/", true),
            (PathMatch::Prefix("/api".into()), "/api/x", true),
            (PathMatch::Prefix("/api".into()), "/apix", false),
            (PathMatch::Prefix("/api".into()), "/ap", false),
            (PathMatch::Prefix("/api".into()), "/API/x", false),
            (PathMatch::Prefix("/api".into()), "/v1/api", false),
            (PathMatch::Prefix("/api/".into()), "/api/x", true),
            (PathMatch::Prefix("/api/".into()), "/api/", true),
            (PathMatch::Prefix("/api/".into()), "/api", false),
            (PathMatch::Prefix("/api/".into()), "/apix", false),
            (PathMatch::Prefix("/".into()), "/", true),
            (PathMatch::Prefix("/".into()), "/anything", true),
            (PathMatch::Prefix("/a/b".into()), "/a/b/c", true),
            (PathMatch::Prefix("/a/b".into()), "/a/bc", false),
            (PathMatch::Exact("/health".into()), "/health", true),
            (PathMatch::Exact("/health".into()), "/health/", false),
            (PathMatch::Exact("/health".into()), "/healthz", false),
            (PathMatch::Exact("/health".into()), "/Health", false),
            (PathMatch::Regex(re(r"^/users/[0-9]+$")), "/users/42", true),
            (
                PathMatch::Regex(re(r"^/users/[0-9]+$")),
                "/users/42/x",
                false,
            ),
            // Unanchored: a search anywhere in the path.
            (
                PathMatch::Regex(re(r"/users/[0-9]+")),
                "/v1/users/42/x",
                true,
            ),
            (PathMatch::Regex(re(r"\.php$")), "/index.php", true),
            (PathMatch::Regex(re(r"\.php$")), "/index.phps", false),
        ];
        for (m, path, want) in cases {
            assert_eq!(m.matches(path), *want, "{m:?} vs {path:?}");
        }
    }

    #[test]
    fn value_match_table() {
        let cases: &[(ValueMatch, &[u8], bool)] = &[
            (ValueMatch::Present, b"", true),
            (ValueMatch::Present, b"x", true),
            (ValueMatch::Equals("abc".into()), b"abc", true),
            (ValueMatch::Equals("abc".into()), b"ABC", false),
            (ValueMatch::Equals("abc".into()), b"abc ", false),
            (ValueMatch::Equals("abc".into()), b"ab", false),
            (ValueMatch::Equals("".into()), b"", true),
            (ValueMatch::Regex(re("^v[0-9]$")), b"v2", true),
            (ValueMatch::Regex(re("^v[0-9]$")), b"v22", false),
            (ValueMatch::Regex(re("beta")), b"is-beta-user", true),
            (ValueMatch::Regex(re("(?i)^beta$")), b"BETA", true),
            (ValueMatch::Regex(re(".*")), b"\xff\xfe", false),
        ];
        for (m, value, want) in cases {
            assert_eq!(m.matches(value), *want, "{m:?} vs {value:?}");
        }
    }

    #[test]
    fn request_view_table() {
        // (method, uri, headers, host, path, query)
        let cases: &[(&str, &str, Hs, OptStr, &str, OptStr)] = &[
            (
                "GET",
                "/a?b=1",
                &[("host", "example.com:8080")],
                Some("example.com:8080"),
                "/a",
                Some("b=1"),
            ),
            ("GET", "/a", &[], None, "/a", None),
            ("GET", "/a?", &[("host", "x")], Some("x"), "/a", Some("")),
            // Absolute-form / :authority wins over Host (RFC 9112 §3.2.2).
            (
                "GET",
                "http://uri.example/p?q",
                &[("host", "header.example")],
                Some("uri.example"),
                "/p",
                Some("q"),
            ),
            (
                "GET",
                "http://user:pw@uri.example:81/",
                &[],
                Some("uri.example:81"),
                "/",
                None,
            ),
            (
                "GET",
                "https://[2001:db8::1]:8443/x",
                &[],
                Some("[2001:db8::1]:8443"),
                "/x",
                None,
            ),
            ("OPTIONS", "*", &[("host", "h")], Some("h"), "*", None),
        ];
        for (method, uri, headers, host, path, query) in cases {
            let p = parts(method, uri, headers);
            let v = RequestView::from_parts(&p);
            assert_eq!(v.method.as_str(), *method, "{uri}");
            assert_eq!(v.host, *host, "{uri}");
            assert_eq!(v.path, *path, "{uri}");
            assert_eq!(v.query, *query, "{uri}");
        }
        // A Host that is not visible ASCII is treated as absent.
        let mut p = parts("GET", "/", &[]);
        p.headers.insert(
            header::HOST,
            HeaderValue::from_bytes(b"caf\xc3\xa9").unwrap(),
        );
        assert_eq!(RequestView::from_parts(&p).host, None);
    }

    #[test]
    fn method_and_header_matchers() {
        let get_or_head = Match {
            methods: vec![Method::GET, Method::HEAD],
            ..Default::default()
        };
        let hdr = |name: &'static str, vm: ValueMatch| Match {
            headers: vec![(HeaderName::from_static(name), vm)],
            ..Default::default()
        };
        let cases: Vec<(Match, &str, Hs, bool)> = vec![
            (Match::default(), "DELETE", &[], true),
            (get_or_head.clone(), "GET", &[], true),
            (get_or_head.clone(), "HEAD", &[], true),
            (get_or_head.clone(), "POST", &[], false),
            (get_or_head, "get", &[], false),
            (
                hdr("x-env", ValueMatch::Present),
                "GET",
                &[("X-Env", "")],
                true,
            ),
            (
                hdr("x-env", ValueMatch::Present),
                "GET",
                &[("x-other", "1")],
                false,
            ),
            (
                hdr("x-env", ValueMatch::Equals("beta".into())),
                "GET",
                &[("x-env", "beta")],
                true,
            ),
            (
                hdr("x-env", ValueMatch::Equals("beta".into())),
                "GET",
                &[("X-ENV", "Beta")],
                false,
            ),
            // Any field line of the header may match.
            (
                hdr("x-env", ValueMatch::Equals("beta".into())),
                "GET",
                &[("x-env", "prod"), ("x-env", "beta")],
                true,
            ),
            // A comma list in one line is one value.
            (
                hdr("x-env", ValueMatch::Equals("beta".into())),
                "GET",
                &[("x-env", "prod, beta")],
                false,
            ),
            (
                hdr("user-agent", ValueMatch::Regex(re("(?i)curl"))),
                "GET",
                &[("user-agent", "CURL/8")],
                true,
            ),
            (
                hdr("user-agent", ValueMatch::Regex(re("^curl"))),
                "GET",
                &[("user-agent", "x curl")],
                false,
            ),
            // Several headers: AND.
            (
                Match {
                    headers: vec![
                        (HeaderName::from_static("a"), ValueMatch::Present),
                        (HeaderName::from_static("b"), ValueMatch::Equals("2".into())),
                    ],
                    ..Default::default()
                },
                "GET",
                &[("a", "1"), ("b", "3")],
                false,
            ),
            (
                Match {
                    headers: vec![
                        (HeaderName::from_static("a"), ValueMatch::Present),
                        (HeaderName::from_static("b"), ValueMatch::Equals("2".into())),
                    ],
                    ..Default::default()
                },
                "GET",
                &[("a", "1"), ("b", "2")],
                true,
            ),
        ];
        for (i, (m, method, headers, want)) in cases.iter().enumerate() {
            assert_eq!(
                matches(m, method, "/", headers),
                *want,
                "case {i}: {method} {headers:?}"
            );
        }
    }

    #[test]
    fn cookie_parsing_table() {
        let cases: &[(&[&str], Hs)] = &[
            (&["a=1; b=2"], &[("a", "1"), ("b", "2")]),
            (&["a=1;b=2"], &[("a", "1"), ("b", "2")]),
            (&["  a = 1 ;\tb=2 ;"], &[("a", "1"), ("b", "2")]),
            (&["a=\"quoted value\""], &[("a", "quoted value")]),
            (&["a=\"\""], &[("a", "")]),
            (&["a=\""], &[("a", "\"")]),
            (&["a=\"x"], &[("a", "\"x")]),
            (&["a="], &[("a", "")]),
            (&["a=b=c"], &[("a", "b=c")]),
            (&["flag; a=1"], &[("a", "1")]),
            (&["=1; a=2"], &[("a", "2")]),
            (&[";;a=1;;"], &[("a", "1")]),
            (&["a=1", "b=2"], &[("a", "1"), ("b", "2")]),
            (&["a=1; a=2"], &[("a", "1"), ("a", "2")]),
            (&["A=1"], &[("A", "1")]),
            (&[""], &[]),
        ];
        for (lines, want) in cases {
            let mut h = http::HeaderMap::new();
            for l in *lines {
                h.append(header::COOKIE, HeaderValue::from_str(l).unwrap());
            }
            let got: Vec<(&str, &str)> = cookies(Fields::Map(&h)).collect();
            assert_eq!(&got, want, "{lines:?}");
        }
        // A non-UTF-8 piece is skipped, the rest of the line still parses.
        let mut h = http::HeaderMap::new();
        h.append(
            header::COOKIE,
            HeaderValue::from_bytes(b"a=\xff; b=2").unwrap(),
        );
        assert_eq!(
            cookies(Fields::Map(&h)).collect::<Vec<_>>(),
            vec![("b", "2")]
        );
    }

    #[test]
    fn cookie_matchers() {
        let ck = |name: &str, vm: ValueMatch| Match {
            cookies: vec![(name.to_string(), vm)],
            ..Default::default()
        };
        let cases: Vec<(Match, Hs, bool)> = vec![
            (
                ck("session", ValueMatch::Present),
                &[("cookie", "session=abc")],
                true,
            ),
            (
                ck("session", ValueMatch::Present),
                &[("cookie", "other=1")],
                false,
            ),
            (ck("session", ValueMatch::Present), &[], false),
            (
                ck("session", ValueMatch::Present),
                &[("cookie", "Session=abc")],
                false,
            ),
            (
                ck("session", ValueMatch::Present),
                &[("cookie", "xsession=abc")],
                false,
            ),
            (
                ck("session", ValueMatch::Present),
                &[("cookie", "a=session")],
                false,
            ),
            (
                ck("canary", ValueMatch::Equals("1".into())),
                &[("cookie", "a=0; canary=1")],
                true,
            ),
            (
                ck("canary", ValueMatch::Equals("1".into())),
                &[("cookie", "canary=\"1\"")],
                true,
            ),
            (
                ck("canary", ValueMatch::Equals("1".into())),
                &[("cookie", "canary=10")],
                false,
            ),
            // Every Cookie line is searched (HTTP/2 splits them).
            (
                ck("canary", ValueMatch::Equals("1".into())),
                &[("cookie", "a=0"), ("cookie", "canary=1")],
                true,
            ),
            (
                ck("canary", ValueMatch::Equals("1".into())),
                &[("cookie", "canary=0; canary=1")],
                true,
            ),
            (
                ck("v", ValueMatch::Regex(re("^[0-9]+$"))),
                &[("cookie", "v=123")],
                true,
            ),
            (
                ck("v", ValueMatch::Regex(re("^[0-9]+$"))),
                &[("cookie", "v=12a")],
                false,
            ),
        ];
        for (i, (m, headers, want)) in cases.iter().enumerate() {
            assert_eq!(
                matches(m, "GET", "/", headers),
                *want,
                "case {i}: {headers:?}"
            );
        }
    }

    #[test]
    fn form_decode_table() {
        let cases = [
            ("abc", "abc"),
            ("a+b", "a b"),
            ("a%20b", "a b"),
            ("a%2Bb", "a+b"),
            ("a%2bb", "a+b"),
            ("%41%42", "AB"),
            ("caf%C3%A9", "caf\u{e9}"),
            ("%", "%"),
            ("%4", "%4"),
            ("%zz", "%zz"),
            ("%%41", "%A"),
            ("100%", "100%"),
            ("%ff", "\u{fffd}"),
            ("a%26b%3Dc", "a&b=c"),
            ("", ""),
        ];
        for (input, want) in cases {
            assert_eq!(form_decode(input), want, "{input:?}");
        }
        assert!(matches!(form_decode("plain"), Cow::Borrowed(_)));
    }

    #[test]
    fn query_matchers() {
        let q = |name: &str, vm: ValueMatch| Match {
            query: vec![(name.to_string(), vm)],
            ..Default::default()
        };
        let cases: Vec<(Match, &str, bool)> = vec![
            (q("debug", ValueMatch::Present), "/", false),
            (q("debug", ValueMatch::Present), "/?", false),
            (q("debug", ValueMatch::Present), "/?debug", true),
            (q("debug", ValueMatch::Present), "/?debug=", true),
            (q("debug", ValueMatch::Present), "/?a=1&debug=0", true),
            (q("debug", ValueMatch::Present), "/?a=debug", false),
            (q("debug", ValueMatch::Present), "/?Debug=1", false),
            (q("debug", ValueMatch::Present), "/?debugx=1", false),
            (q("debug", ValueMatch::Equals("".into())), "/?debug", true),
            (q("v", ValueMatch::Equals("2".into())), "/?v=1&v=2", true),
            (q("v", ValueMatch::Equals("2".into())), "/?v=1&&v=3", false),
            (q("v", ValueMatch::Equals("a b".into())), "/?v=a+b", true),
            (q("v", ValueMatch::Equals("a b".into())), "/?v=a%20b", true),
            (q("v", ValueMatch::Equals("a+b".into())), "/?v=a%2Bb", true),
            (q("v", ValueMatch::Equals("a+b".into())), "/?v=a+b", false),
            (q("v", ValueMatch::Equals("x=y".into())), "/?v=x=y", true),
            (
                q("my key", ValueMatch::Equals("1".into())),
                "/?my+key=1",
                true,
            ),
            (
                q("my key", ValueMatch::Equals("1".into())),
                "/?my%20key=1",
                true,
            ),
            (q("k", ValueMatch::Regex(re("^[a-z]+$"))), "/?k=abc", true),
            (
                q("k", ValueMatch::Regex(re("^[a-z]+$"))),
                "/?k=ab%31",
                false,
            ),
        ];
        for (i, (m, uri, want)) in cases.iter().enumerate() {
            assert_eq!(matches(m, "GET", uri, &[]), *want, "case {i}: {uri}");
        }
    }

    #[test]
    fn combined_match_is_and() {
        let m = Match {
            host: Some(HostMatch::parse("*.example.com").unwrap()),
            path: Some(PathMatch::Prefix("/api".into())),
            methods: vec![Method::POST],
            headers: vec![(
                HeaderName::from_static("x-env"),
                ValueMatch::Equals("beta".into()),
            )],
            cookies: vec![("c".into(), ValueMatch::Present)],
            query: vec![("q".into(), ValueMatch::Present)],
            sources: Vec::new(),
        };
        let full: &[(&str, &str)] = &[
            ("host", "a.example.com"),
            ("x-env", "beta"),
            ("cookie", "c=1"),
        ];
        assert!(matches(&m, "POST", "/api/x?q", full));
        // Each single condition failing fails the match.
        let fails: &[(&str, &str, Hs)] = &[
            ("GET", "/api/x?q", full),
            ("POST", "/apix?q", full),
            ("POST", "/api/x", full),
            (
                "POST",
                "/api/x?q",
                &[
                    ("host", "example.com"),
                    ("x-env", "beta"),
                    ("cookie", "c=1"),
                ],
            ),
            ("POST", "/api/x?q", &[("x-env", "beta"), ("cookie", "c=1")]),
            (
                "POST",
                "/api/x?q",
                &[
                    ("host", "a.example.com"),
                    ("x-env", "prod"),
                    ("cookie", "c=1"),
                ],
            ),
            (
                "POST",
                "/api/x?q",
                &[("host", "a.example.com"), ("x-env", "beta")],
            ),
        ];
        for (method, uri, headers) in fails {
            assert!(
                !matches(&m, method, uri, headers),
                "{method} {uri} {headers:?}"
            );
        }
    }

    #[test]
    fn split_pool_follows_weights_and_sticks_per_client() {
        let split = vec![("v1".to_string(), 95), ("v2".to_string(), 5)];
        let client: std::net::IpAddr = "192.0.2.1".parse().expect("ip");
        let mut v2 = 0;
        for _ in 0..20_000 {
            if split_pool("v1", &split, false, client) == "v2" {
                v2 += 1;
            }
        }
        // 5% of 20000 = 1000, sd ~31.
        assert!((850..1150).contains(&v2), "{v2}");
        // Sticky: one client always lands on the same side, and the
        // clients overall still split by weight.
        let mut v2_clients = 0;
        for n in 0..20_000u32 {
            let ip = std::net::IpAddr::from(std::net::Ipv4Addr::from(0x0a00_0000 + n));
            let first = split_pool("v1", &split, true, ip);
            assert_eq!(first, split_pool("v1", &split, true, ip));
            if first == "v2" {
                v2_clients += 1;
            }
        }
        assert!((850..1150).contains(&v2_clients), "{v2_clients}");
        // Weight 0 gets nothing; an all-zero split falls back to the pool.
        let off = vec![("a".to_string(), 1), ("b".to_string(), 0)];
        assert!((0..1000).all(|_| split_pool("x", &off, false, client) == "a"));
        assert_eq!(split_pool("x", &[("b".to_string(), 0)], false, client), "x");
        assert_eq!(split_pool("x", &[], false, client), "x");
    }

    #[test]
    fn source_matcher_uses_the_client_address() {
        let m = Match {
            sources: vec![
                crate::config::Cidr::parse("10.0.0.0/8").expect("cidr"),
                crate::config::Cidr::parse("2001:db8::/32").expect("cidr"),
            ],
            ..Match::default()
        };
        let p = parts("GET", "/", &[]);
        let mut v = RequestView::from_parts(&p);
        assert!(!m.matches(&v), "no client address: no match");
        for (ip, want) in [
            ("10.2.3.4", true),
            ("11.2.3.4", false),
            ("2001:db8::9", true),
            ("::ffff:10.0.0.1", true),
        ] {
            v.client = Some(ip.parse().expect("ip"));
            assert_eq!(m.matches(&v), want, "{ip}");
        }
    }

    #[test]
    fn router_first_match_wins() {
        let router = Router::new(vec![
            route(
                "health",
                Match {
                    path: Some(PathMatch::Exact("/health".into())),
                    ..Default::default()
                },
            ),
            route(
                "api-beta",
                Match {
                    path: Some(PathMatch::Prefix("/api".into())),
                    headers: vec![(
                        HeaderName::from_static("x-env"),
                        ValueMatch::Equals("beta".into()),
                    )],
                    ..Default::default()
                },
            ),
            route(
                "api",
                Match {
                    path: Some(PathMatch::Prefix("/api".into())),
                    ..Default::default()
                },
            ),
            route(
                "admin-host",
                Match {
                    host: Some(HostMatch::parse("admin.example.com").unwrap()),
                    ..Default::default()
                },
            ),
            route("default", Match::default()),
            route(
                "unreachable",
                Match {
                    path: Some(PathMatch::Prefix("/x".into())),
                    ..Default::default()
                },
            ),
        ]);
        let cases: &[(&str, Hs, usize, &str)] = &[
            ("/health", &[("host", "admin.example.com")], 0, "health"),
            ("/api/v1", &[("x-env", "beta")], 1, "api-beta"),
            ("/api/v1", &[("x-env", "prod")], 2, "api"),
            ("/api", &[], 2, "api"),
            (
                "/apix",
                &[("host", "admin.example.com:443")],
                3,
                "admin-host",
            ),
            ("/x", &[("host", "www.example.com")], 4, "default"),
            ("/", &[], 4, "default"),
        ];
        for (uri, headers, idx, name) in cases {
            let p = parts("GET", uri, headers);
            let (i, r) = router.route(&RequestView::from_parts(&p)).unwrap();
            assert_eq!((i, r.name.as_str()), (*idx, *name), "{uri} {headers:?}");
        }
        assert_eq!(router.routes().len(), 6);

        let no_default = Router::new(vec![route(
            "api",
            Match {
                path: Some(PathMatch::Prefix("/api".into())),
                ..Default::default()
            },
        )]);
        let p = parts("GET", "/other", &[]);
        assert!(no_default.route(&RequestView::from_parts(&p)).is_none());
        assert!(Router::new(Vec::new())
            .route(&RequestView::from_parts(&p))
            .is_none());
    }

    #[test]
    fn rewritten_path_table() {
        let prefix = PathMatch::Prefix("/api".into());
        let anchored = PathMatch::Regex(re(r"^/v1/(?P<rest>.*)$"));
        let users = PathMatch::Regex(re(r"/users/([0-9]+)"));
        // (strip, rewrite, path, matcher, expected)
        let cases: &[(OptStr, OptStr, &str, Option<&PathMatch>, &str)] = &[
            (None, None, "/api/users", Some(&prefix), "/api/users"),
            (Some("/api"), None, "/api/users", Some(&prefix), "/users"),
            (Some("/api"), None, "/api/", Some(&prefix), "/"),
            (Some("/api"), None, "/api", Some(&prefix), "/"),
            (Some("/api/"), None, "/api/users", Some(&prefix), "/users"),
            (Some("/api/"), None, "/api", Some(&prefix), "/"),
            (Some("/api"), None, "/apix/users", None, "/apix/users"),
            (Some("/api"), None, "/other", None, "/other"),
            (Some("/api"), None, "/api/api/x", None, "/api/x"),
            (Some("/"), None, "/api/x", None, "/api/x"),
            (Some(""), None, "/api/x", None, "/api/x"),
            (Some("/a/b"), None, "/a/b/c", None, "/c"),
            // Literal rewrite replaces the whole path; '$' is not special.
            (None, Some("/new"), "/api/users", Some(&prefix), "/new"),
            (None, Some("/cost/$1"), "/x", Some(&prefix), "/cost/$1"),
            (None, Some("/new"), "/x", None, "/new"),
            (None, Some("new"), "/x", None, "/new"),
            // Rewrite wins over strip.
            (
                Some("/api"),
                Some("/new"),
                "/api/users",
                Some(&prefix),
                "/new",
            ),
            // Regex captures.
            (
                None,
                Some("/v2/${rest}"),
                "/v1/users/1",
                Some(&anchored),
                "/v2/users/1",
            ),
            (
                None,
                Some("/v2/$rest"),
                "/v1/users/1",
                Some(&anchored),
                "/v2/users/1",
            ),
            (None, Some("/v2/$1"), "/v1/a", Some(&anchored), "/v2/a"),
            (None, Some("${1}"), "/v1/a/b", Some(&anchored), "/a/b"),
            (None, Some("/v2/$1x"), "/v1/a", Some(&anchored), "/v2/"),
            (None, Some("/v2/${1}x"), "/v1/a", Some(&anchored), "/v2/ax"),
            (
                None,
                Some("/price/$$1"),
                "/v1/a",
                Some(&anchored),
                "/price/$1",
            ),
            // Unanchored: every match replaced, the rest kept.
            (
                None,
                Some("/u/$1"),
                "/a/users/1/users/2/b",
                Some(&users),
                "/a/u/1/u/2/b",
            ),
            (None, Some("/u/$1"), "/nothing", Some(&users), "/nothing"),
        ];
        for (i, (strip, rewrite, path, matcher, want)) in cases.iter().enumerate() {
            assert_eq!(
                rewritten_path(*strip, *rewrite, path, *matcher),
                *want,
                "case {i}: {path}"
            );
        }
    }

    #[test]
    fn expand_location_table() {
        // (template, uri, headers, scheme, expected)
        let cases: &[(&str, &str, Hs, &str, &str)] = &[
            (
                "https://{host}{uri}",
                "/a/b?x=1",
                &[("host", "example.com:80")],
                "http",
                "https://example.com/a/b?x=1",
            ),
            (
                "https://{host}{uri}",
                "/a/b",
                &[("host", "example.com")],
                "http",
                "https://example.com/a/b",
            ),
            (
                "https://{host}{uri}",
                "/a/b?",
                &[("host", "example.com")],
                "http",
                "https://example.com/a/b",
            ),
            (
                "https://{host}{path}",
                "/a?x=1",
                &[("host", "Example.com")],
                "http",
                "https://Example.com/a",
            ),
            (
                "{scheme}://{host}/new{query}",
                "/old?x=1&y=2",
                &[("host", "h")],
                "https",
                "https://h/new?x=1&y=2",
            ),
            (
                "{scheme}://{host}/new{query}",
                "/old",
                &[("host", "h")],
                "https",
                "https://h/new",
            ),
            (
                "https://{host}:8443{uri}",
                "/",
                &[("host", "[2001:db8::1]:80")],
                "http",
                "https://[2001:db8::1]:8443/",
            ),
            (
                "https://{host}{uri}",
                "http://uri.example/p?q",
                &[("host", "other")],
                "http",
                "https://uri.example/p?q",
            ),
            ("https://{host}{uri}", "/p", &[], "http", "https:///p"),
            (
                "https://static.example/",
                "/p",
                &[],
                "http",
                "https://static.example/",
            ),
            // Unknown or unterminated placeholders stay literal.
            ("/x/{unknown}/{path}", "/p", &[], "http", "/x/{unknown}//p"),
            ("/x{", "/p", &[], "http", "/x{"),
            ("/x{path", "/p", &[], "http", "/x{path"),
            ("{{path}}", "/p", &[], "http", "{/p}"),
            ("{host}{host}", "/", &[("host", "a")], "http", "aa"),
            // No scheme-relative open redirect through the path.
            (
                "{uri}",
                "//evil.example/x?q",
                &[],
                "http",
                "/evil.example/x?q",
            ),
            ("{path}", "///evil.example", &[], "http", "/evil.example"),
            ("{uri}", "/a//b", &[], "http", "/a//b"),
        ];
        for (template, uri, headers, scheme, want) in cases {
            let p = parts("GET", uri, headers);
            let got = expand_location(template, &RequestView::from_parts(&p), scheme);
            assert_eq!(&got, want, "{template} {uri}");
        }
    }

    #[test]
    fn safe_path_table() {
        let cases = [
            ("/", "/"),
            ("/a", "/a"),
            ("//a", "/a"),
            ("/\\a", "/a"),
            ("\\\\a", "/a"),
            ("/\\/a", "/a"),
            ("/a//b", "/a//b"),
            ("*", "*"),
            ("", ""),
        ];
        for (input, want) in cases {
            assert_eq!(safe_path(input), want, "{input:?}");
        }
    }
}
