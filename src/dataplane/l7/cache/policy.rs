//! What may be cached, for how long, and under which key: pure functions
//! over methods, status codes and header maps (RFC 9111, shared cache).
//!
//! We implement a deliberately small subset of RFC 9111: no validation
//! (conditional requests), no heuristic freshness, no serving of stale
//! responses. Whenever the rules leave a choice, we choose "do not store" or
//! "go to the origin", because a cache that stores too little is slower but
//! one that stores too much is wrong.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::header::{AGE, AUTHORIZATION, CACHE_CONTROL, DATE, EXPIRES, SET_COOKIE, VARY};
use http::{HeaderMap, HeaderName, Method, StatusCode};

use crate::dataplane::l7::headers::{is_ows, trim_ows};

/// What the cache may do for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestPolicy {
    /// Neither look up nor store: a method other than GET/HEAD, a request
    /// with `Authorization`, or request `Cache-Control: no-store`.
    Bypass,
    /// Do not serve a stored response; fetch from the origin and store the
    /// result if it is cacheable. Request `no-cache` or `max-age=0`: the
    /// client wants the origin to be asked, and since we cannot revalidate
    /// (RFC 9111 §5.2.1.4, §5.2.1.1) an unconditional fetch is how we ask.
    Refresh,
    /// Serve a fresh stored response if there is one, otherwise fetch and
    /// store.
    Lookup,
}

/// Decides how the cache treats a request.
///
/// Request directives other than `no-store`, `no-cache` and `max-age=0` are
/// ignored (`max-age=N` for N > 0, `min-fresh`, `max-stale`,
/// `only-if-cached`); so is `Pragma`, which RFC 9111 §5.4 deprecates.
pub fn request_policy(method: &Method, headers: &HeaderMap) -> RequestPolicy {
    if method != Method::GET && method != Method::HEAD {
        return RequestPolicy::Bypass;
    }
    // RFC 9111 §3.5 would allow storing some of these (public, s-maxage);
    // the issue asks for never, which is simpler and safer.
    if headers.contains_key(AUTHORIZATION) {
        return RequestPolicy::Bypass;
    }
    let cc = CacheControl::parse(headers);
    if cc.no_store {
        return RequestPolicy::Bypass;
    }
    if cc.no_cache || cc.max_age == Seconds::Valid(0) {
        return RequestPolicy::Refresh;
    }
    RequestPolicy::Lookup
}

/// How long a response may be served from the cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Freshness {
    /// Remaining freshness: freshness lifetime minus `age` (RFC 9111 §4.2).
    pub ttl: Duration,
    /// The response's age when we received it (RFC 9111 §4.2.3); the `Age`
    /// we serve on a hit starts from here.
    pub age: Duration,
}

/// Decides whether a response may be stored and for how long; `None` means
/// do not store. `now` is when the response was received.
///
/// Only 200, 301 and 404 are stored, and only with explicit freshness
/// (`s-maxage`, `max-age` or `Expires`): no heuristic freshness (RFC 9111
/// §4.2.2). `no-cache` responses are not stored because every reuse would
/// need revalidation (RFC 9111 §5.2.2.4), which we don't do.
pub fn response_freshness(
    status: StatusCode,
    headers: &HeaderMap,
    now: SystemTime,
) -> Option<Freshness> {
    if !matches!(status.as_u16(), 200 | 301 | 404) {
        return None;
    }
    // A cookie set for one client must never be replayed to another.
    if headers.contains_key(SET_COOKIE) {
        return None;
    }
    // `Vary: *` never matches a later request (RFC 9111 §4.1).
    if list_elements(headers, &VARY).any(|e| e == b"*") {
        return None;
    }
    let cc = CacheControl::parse(headers);
    // The qualified forms `private="f"` and `no-cache="f"` count as
    // unqualified, which RFC 9111 §5.2.2.4 and §5.2.2.7 allow.
    if cc.no_store || cc.private || cc.no_cache {
        return None;
    }
    let date = headers
        .get(DATE)
        .and_then(|v| parse_http_date(v.as_bytes(), now));
    // RFC 9111 §4.2.1: s-maxage over max-age (shared cache, §5.2.2.10),
    // max-age over Expires. An invalid value makes the response stale
    // rather than falling through to a weaker directive.
    let lifetime = match (cc.s_maxage, cc.max_age) {
        (Seconds::Valid(s), _) => Duration::from_secs(s),
        (Seconds::Invalid, _) => return None,
        (Seconds::Absent, Seconds::Valid(m)) => Duration::from_secs(m),
        (Seconds::Absent, Seconds::Invalid) => return None,
        (Seconds::Absent, Seconds::Absent) => expires_lifetime(headers, date.unwrap_or(now), now)?,
    };
    let age = current_age(headers, date, now)?;
    let ttl = lifetime.checked_sub(age).filter(|ttl| !ttl.is_zero())?;
    Some(Freshness { ttl, age })
}

/// Freshness lifetime from `Expires` relative to `Date` (RFC 9111 §4.2.1).
/// Several `Expires` lines: the earliest wins. An invalid one means already
/// expired (RFC 9111 §5.3), so the response isn't stored.
fn expires_lifetime(headers: &HeaderMap, date: SystemTime, now: SystemTime) -> Option<Duration> {
    let mut earliest: Option<SystemTime> = None;
    for value in headers.get_all(EXPIRES) {
        let expires = parse_http_date(value.as_bytes(), now)?;
        earliest = Some(earliest.map_or(expires, |e| e.min(expires)));
    }
    earliest?.duration_since(date).ok()
}

/// The response's current age on arrival (RFC 9111 §4.2.3): the larger of
/// the upstream `Age` and the apparent age `now - Date`. We leave out the
/// request/response delay correction: we are sans-I/O and never see the
/// request time, and upstream latency is small against TTLs in seconds.
/// An invalid `Age` is invalid freshness information, which RFC 9111 §4.2.1
/// encourages treating as stale: `None`. Several `Age` lines: the largest.
fn current_age(headers: &HeaderMap, date: Option<SystemTime>, now: SystemTime) -> Option<Duration> {
    let mut age_value = 0;
    for value in headers.get_all(AGE) {
        age_value = age_value.max(delta_seconds(value.as_bytes())?);
    }
    let apparent = date.map_or(Duration::ZERO, |d| {
        now.duration_since(d).unwrap_or(Duration::ZERO)
    });
    Some(apparent.max(Duration::from_secs(age_value)))
}

/// The primary cache key: method, host and request target.
///
/// HEAD and GET get distinct keys, so a HEAD response (which has no body)
/// can never be served for a GET. `Cache::get` still serves a HEAD lookup
/// from a stored GET response, without the body (RFC 9110 §9.3.2).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CacheKey {
    head: bool,
    /// `"<lowercased authority> <path-and-query>"`: a space cannot occur in
    /// either part, so the join is unambiguous.
    target: Arc<str>,
}

impl CacheKey {
    pub(crate) fn is_head(&self) -> bool {
        self.head
    }

    /// The GET key for the same target.
    pub(crate) fn to_get(&self) -> CacheKey {
        CacheKey {
            head: false,
            target: Arc::clone(&self.target),
        }
    }

    pub(crate) fn approx_bytes(&self) -> usize {
        self.target.len()
    }
}

/// Builds the primary key; `None` for methods other than GET and HEAD.
///
/// The host is lowercased (it is case-insensitive, RFC 9110 §4.2.3); the
/// path and query are kept byte for byte, except that an empty path means
/// "/". Default ports are not normalised and the scheme is not part of the
/// key: a route serves one scheme.
pub fn base_key(method: &Method, authority: &str, path_and_query: &str) -> Option<CacheKey> {
    let head = if method == Method::GET {
        false
    } else if method == Method::HEAD {
        true
    } else {
        return None;
    };
    let path = if path_and_query.is_empty() {
        "/"
    } else {
        path_and_query
    };
    let target = format!("{} {}", authority.to_ascii_lowercase(), path);
    Some(CacheKey {
        head,
        target: target.into(),
    })
}

/// The request header names a response varies on (RFC 9111 §4.1), lowercased,
/// sorted and deduplicated. `*` is skipped (such responses aren't stored at
/// all) and so are names that aren't valid header names: no request can
/// carry them, so they would compare equal for every request anyway.
pub fn vary_names(headers: &HeaderMap) -> Vec<HeaderName> {
    let mut names: Vec<HeaderName> = list_elements(headers, &VARY)
        .filter(|e| *e != b"*")
        .filter_map(|e| HeaderName::from_bytes(e).ok())
        .collect();
    names.sort_unstable_by(|a, b| a.as_str().cmp(b.as_str()));
    names.dedup();
    names
}

/// A request's values for a response's `Vary` names: the secondary key that
/// selects among stored variants of one primary key (RFC 9111 §4.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecondaryKey(Vec<(HeaderName, Option<Vec<u8>>)>);

impl SecondaryKey {
    /// Whether `req_headers` select this variant.
    pub(crate) fn matches(&self, req_headers: &HeaderMap) -> bool {
        self.0
            .iter()
            .all(|(name, value)| normalized_value(req_headers, name).as_deref() == value.as_deref())
    }

    pub(crate) fn approx_bytes(&self) -> usize {
        self.0
            .iter()
            .map(|(n, v)| n.as_str().len() + v.as_ref().map_or(0, Vec::len))
            .sum()
    }
}

/// Builds the secondary key. Several lines of one field are joined with
/// ", " after trimming, which RFC 9111 §4.1 allows as normalisation. An
/// absent field differs from an empty one.
pub fn secondary_key(names: &[HeaderName], req_headers: &HeaderMap) -> SecondaryKey {
    SecondaryKey(
        names
            .iter()
            .map(|n| (n.clone(), normalized_value(req_headers, n)))
            .collect(),
    )
}

fn normalized_value(headers: &HeaderMap, name: &HeaderName) -> Option<Vec<u8>> {
    let mut values = headers.get_all(name).iter();
    let mut out = trim_ows(values.next()?.as_bytes()).to_vec();
    for v in values {
        out.extend_from_slice(b", ");
        out.extend_from_slice(trim_ows(v.as_bytes()));
    }
    Some(out)
}

/// A `delta-seconds` value (RFC 9111 §1.2.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum Seconds {
    #[default]
    Absent,
    Valid(u64),
    /// Present but unusable: no argument, not digits.
    Invalid,
}

impl Seconds {
    /// Combines duplicates. RFC 9111 §4.2.1 says to use the first or treat
    /// the response as stale; we take the smallest value, the most
    /// restrictive reading short of not caching, and let an invalid
    /// duplicate poison the whole directive.
    fn merge(self, other: Seconds) -> Seconds {
        match (self, other) {
            (Seconds::Absent, x) | (x, Seconds::Absent) => x,
            (Seconds::Invalid, _) | (_, Seconds::Invalid) => Seconds::Invalid,
            (Seconds::Valid(a), Seconds::Valid(b)) => Seconds::Valid(a.min(b)),
        }
    }
}

/// The Cache-Control directives we act on; the others are ignored, as
/// RFC 9111 §5.2.3 requires for unrecognised ones.
#[derive(Debug, Default)]
struct CacheControl {
    no_store: bool,
    no_cache: bool,
    private: bool,
    max_age: Seconds,
    s_maxage: Seconds,
}

impl CacheControl {
    /// Parses every Cache-Control line as one comma-separated list (RFC 9110
    /// §5.3); directive names are case-insensitive (RFC 9111 §5.2).
    fn parse(headers: &HeaderMap) -> CacheControl {
        let mut cc = CacheControl::default();
        for value in headers.get_all(CACHE_CONTROL) {
            for (name, arg) in Directives::new(value.as_bytes()) {
                if name.eq_ignore_ascii_case(b"no-store") {
                    cc.no_store = true;
                } else if name.eq_ignore_ascii_case(b"no-cache") {
                    cc.no_cache = true;
                } else if name.eq_ignore_ascii_case(b"private") {
                    cc.private = true;
                } else if name.eq_ignore_ascii_case(b"max-age") {
                    cc.max_age = cc.max_age.merge(seconds_arg(arg.as_deref()));
                } else if name.eq_ignore_ascii_case(b"s-maxage") {
                    cc.s_maxage = cc.s_maxage.merge(seconds_arg(arg.as_deref()));
                }
            }
        }
        cc
    }
}

/// A directive's delta-seconds argument. Senders must use the token form
/// (RFC 9111 §5.2.2.1), but a quoted number is unambiguous, so we accept it.
fn seconds_arg(arg: Option<&[u8]>) -> Seconds {
    arg.and_then(delta_seconds)
        .map_or(Seconds::Invalid, Seconds::Valid)
}

/// `1*DIGIT`, saturating at 2^31 as RFC 9111 §1.2.2 requires.
fn delta_seconds(s: &[u8]) -> Option<u64> {
    const MAX: u64 = 1 << 31;
    let s = trim_ows(s);
    if s.is_empty() || !s.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(
        s.iter()
            .fold(0u64, |n, d| (n * 10 + u64::from(d - b'0')).min(MAX)),
    )
}

/// Iterator over `name[=token|"quoted"]` directives in one field line.
/// Empty list elements are skipped (RFC 9110 §5.6.1); commas inside quoted
/// strings don't split; junk after an argument is skipped to the next comma.
struct Directives<'a> {
    s: &'a [u8],
    i: usize,
}

impl<'a> Directives<'a> {
    fn new(s: &'a [u8]) -> Self {
        Directives { s, i: 0 }
    }

    fn skip_while(&mut self, pred: impl Fn(u8) -> bool) {
        while self.i < self.s.len() && pred(self.s[self.i]) {
            self.i += 1;
        }
    }
}

impl<'a> Iterator for Directives<'a> {
    type Item = (&'a [u8], Option<Cow<'a, [u8]>>);

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            self.skip_while(|c| c == b',' || is_ows(c));
            if self.i >= self.s.len() {
                return None;
            }
            let start = self.i;
            self.skip_while(|c| c != b',' && c != b'=');
            let name = trim_ows(&self.s[start..self.i]);
            let mut arg = None;
            if self.s.get(self.i) == Some(&b'=') {
                self.i += 1;
                self.skip_while(is_ows);
                if self.s.get(self.i) == Some(&b'"') {
                    arg = Some(Cow::Owned(self.quoted_string()));
                } else {
                    let start = self.i;
                    self.skip_while(|c| c != b',');
                    arg = Some(Cow::Borrowed(trim_ows(&self.s[start..self.i])));
                }
            }
            self.skip_while(|c| c != b',');
            if !name.is_empty() {
                return Some((name, arg));
            }
        }
    }
}

impl Directives<'_> {
    /// Reads a quoted-string starting at the opening quote, unescaping
    /// quoted-pairs (RFC 9110 §5.6.4). An unterminated one runs to the end.
    fn quoted_string(&mut self) -> Vec<u8> {
        let mut out = Vec::new();
        self.i += 1;
        while let Some(&c) = self.s.get(self.i) {
            self.i += 1;
            match c {
                b'"' => break,
                b'\\' => {
                    if let Some(&escaped) = self.s.get(self.i) {
                        out.push(escaped);
                        self.i += 1;
                    }
                }
                _ => out.push(c),
            }
        }
        out
    }
}

/// The trimmed elements of a comma-separated list header (no quoting: used
/// for `Vary`, whose elements are tokens).
fn list_elements<'a>(headers: &'a HeaderMap, name: &HeaderName) -> impl Iterator<Item = &'a [u8]> {
    headers
        .get_all(name)
        .iter()
        .flat_map(|v| v.as_bytes().split(|&c| c == b','))
        .map(trim_ows)
        .filter(|e| !e.is_empty())
}

/// Parses an HTTP-date in any of the three formats recipients must accept
/// (RFC 9110 §5.6.7): IMF-fixdate, obsolete RFC 850 and asctime. The weekday
/// is checked for spelling, not for agreement with the date. `now` resolves
/// RFC 850's two-digit years.
pub(crate) fn parse_http_date(value: &[u8], now: SystemTime) -> Option<SystemTime> {
    const SHORT_DAYS: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
    const LONG_DAYS: [&str; 7] = [
        "Monday",
        "Tuesday",
        "Wednesday",
        "Thursday",
        "Friday",
        "Saturday",
        "Sunday",
    ];
    let s = std::str::from_utf8(value).ok()?;
    let parts: Vec<&str> = s.split_ascii_whitespace().collect();
    let (year, month, day, time) = match parts.as_slice() {
        // IMF-fixdate: "Sun, 06 Nov 1994 08:49:37 GMT"
        [wkday, day, month, year, time, "GMT"] => {
            SHORT_DAYS
                .contains(&wkday.strip_suffix(',')?)
                .then_some(())?;
            (
                digits(year, 4, 4)?,
                month_number(month)?,
                digits(day, 2, 2)?,
                *time,
            )
        }
        // rfc850-date: "Sunday, 06-Nov-94 08:49:37 GMT"
        [wkday, date, time, "GMT"] => {
            LONG_DAYS
                .contains(&wkday.strip_suffix(',')?)
                .then_some(())?;
            let mut date = date.split('-');
            let (day, month, yy) = (date.next()?, date.next()?, date.next()?);
            if date.next().is_some() {
                return None;
            }
            let (month, day) = (month_number(month)?, digits(day, 2, 2)?);
            (
                two_digit_year(digits(yy, 2, 2)?, month, day, now)?,
                month,
                day,
                *time,
            )
        }
        // asctime-date: "Sun Nov  6 08:49:37 1994"
        [wkday, month, day, time, year] => {
            SHORT_DAYS.contains(wkday).then_some(())?;
            (
                digits(year, 4, 4)?,
                month_number(month)?,
                digits(day, 1, 2)?,
                *time,
            )
        }
        _ => return None,
    };
    let mut hms = time.split(':');
    let (h, m, sec) = (hms.next()?, hms.next()?, hms.next()?);
    if hms.next().is_some() {
        return None;
    }
    let (h, m, sec) = (digits(h, 2, 2)?, digits(m, 2, 2)?, digits(sec, 2, 2)?);
    // Second 60 is a leap second (RFC 5322 §3.3).
    if h > 23 || m > 59 || sec > 60 || day == 0 || day > days_in_month(year, month) {
        return None;
    }
    let secs = days_since_epoch(year, month, day) * 86_400 + (h * 3600 + m * 60 + sec) as i64;
    from_unix(secs)
}

/// RFC 9110 §5.6.7: a two-digit year more than 50 years in the future means
/// the most recent past year with the same last two digits.
fn two_digit_year(yy: u32, month: u32, day: u32, now: SystemTime) -> Option<u32> {
    let limit = now.checked_add(Duration::from_secs(50 * 365 * 86_400 + 12 * 86_400))?;
    (19..=22)
        .rev()
        .map(|century| century * 100 + yy)
        .find(|&y| {
            from_unix(days_since_epoch(y, month, day.min(28)) * 86_400).is_some_and(|t| t <= limit)
        })
}

fn from_unix(secs: i64) -> Option<SystemTime> {
    if secs >= 0 {
        UNIX_EPOCH.checked_add(Duration::from_secs(secs.unsigned_abs()))
    } else {
        UNIX_EPOCH.checked_sub(Duration::from_secs(secs.unsigned_abs()))
    }
}

fn digits(s: &str, min: usize, max: usize) -> Option<u32> {
    if s.len() < min || s.len() > max || !s.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

fn month_number(s: &str) -> Option<u32> {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    MONTHS.iter().position(|m| *m == s).map(|i| i as u32 + 1)
}

fn is_leap(year: u32) -> bool {
    year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
}

fn days_in_month(year: u32, month: u32) -> u32 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days from 1970-01-01 to the given proleptic Gregorian date (negative
/// before 1970).
fn days_since_epoch(year: u32, month: u32, day: u32) -> i64 {
    // Leap years in 1..=y.
    let leaps = |y: i64| y / 4 - y / 100 + y / 400;
    let y = i64::from(year);
    let mut days = 365 * (y - 1970) + leaps(y - 1) - leaps(1969);
    days += (1..month)
        .map(|m| i64::from(days_in_month(year, m)))
        .sum::<i64>();
    days + i64::from(day) - 1
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    /// 2023-11-14T22:13:20Z.
    fn now() -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_700_000_000)
    }

    const NOW: &str = "Tue, 14 Nov 2023 22:13:20 GMT";
    const NOW_MINUS_10: &str = "Tue, 14 Nov 2023 22:13:10 GMT";
    const NOW_MINUS_30: &str = "Tue, 14 Nov 2023 22:12:50 GMT";
    const NOW_PLUS_50: &str = "Tue, 14 Nov 2023 22:14:10 GMT";
    const NOW_PLUS_60: &str = "Tue, 14 Nov 2023 22:14:20 GMT";
    const NOW_PLUS_100: &str = "Tue, 14 Nov 2023 22:15:00 GMT";
    const NOW_PLUS_120: &str = "Tue, 14 Nov 2023 22:15:20 GMT";
    const NOW_PLUS_160: &str = "Tue, 14 Nov 2023 22:16:00 GMT";
    const PAST: &str = "Tue, 14 Nov 2023 22:00:00 GMT";
    const FAR_FUTURE: &str = "Thu, 01 Jan 2060 00:00:00 GMT";

    const CC: &str = "cache-control";
    type Pairs = &'static [(&'static str, &'static str)];
    /// (case, status, headers, `Some((ttl, age))` or `None` = not stored)
    type ResponseCase = (&'static str, u16, Pairs, Option<(u64, u64)>);
    type RequestCase = (&'static str, Method, Pairs, RequestPolicy);

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (name, value) in pairs {
            h.append(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        h
    }

    #[test]
    fn the_test_clock_is_what_the_constants_say() {
        assert_eq!(parse_http_date(NOW.as_bytes(), now()), Some(now()));
    }

    #[test]
    fn response_freshness_table() {
        let cases: &[ResponseCase] = &[
            ("max-age", 200, &[(CC, "max-age=60")], Some((60, 0))),
            (
                "301 is cacheable",
                301,
                &[(CC, "max-age=60")],
                Some((60, 0)),
            ),
            (
                "404 is cacheable",
                404,
                &[(CC, "max-age=60")],
                Some((60, 0)),
            ),
            ("201 is not", 201, &[(CC, "max-age=60")], None),
            ("206 is not", 206, &[(CC, "max-age=60")], None),
            ("302 is not", 302, &[(CC, "max-age=60")], None),
            ("304 is not", 304, &[(CC, "max-age=60")], None),
            ("500 is not", 500, &[(CC, "max-age=60")], None),
            ("no explicit freshness", 200, &[], None),
            (
                "public alone is not freshness",
                200,
                &[(CC, "public")],
                None,
            ),
            ("max-age=0", 200, &[(CC, "max-age=0")], None),
            ("no-store", 200, &[(CC, "max-age=60, no-store")], None),
            ("private", 200, &[(CC, "private, max-age=60")], None),
            (
                "qualified private",
                200,
                &[(CC, "private=\"x-user\", max-age=60")],
                None,
            ),
            ("no-cache", 200, &[(CC, "no-cache, max-age=60")], None),
            (
                "qualified no-cache",
                200,
                &[(CC, "no-cache=\"set-cookie\", max-age=60")],
                None,
            ),
            (
                "set-cookie",
                200,
                &[(CC, "max-age=60"), ("set-cookie", "a=b")],
                None,
            ),
            ("vary star", 200, &[(CC, "max-age=60"), ("vary", "*")], None),
            (
                "vary star in a list",
                200,
                &[(CC, "max-age=60"), ("vary", "accept-encoding, *")],
                None,
            ),
            (
                "vary star on a second line",
                200,
                &[(CC, "max-age=60"), ("vary", "accept"), ("vary", "*")],
                None,
            ),
            (
                "vary names are fine",
                200,
                &[(CC, "max-age=60"), ("vary", "accept-encoding")],
                Some((60, 0)),
            ),
            // Shared cache: s-maxage over max-age, whichever is larger.
            (
                "s-maxage shorter",
                200,
                &[(CC, "s-maxage=30, max-age=60")],
                Some((30, 0)),
            ),
            (
                "s-maxage longer",
                200,
                &[(CC, "max-age=60, s-maxage=120")],
                Some((120, 0)),
            ),
            ("s-maxage=0", 200, &[(CC, "max-age=60, s-maxage=0")], None),
            (
                "invalid s-maxage",
                200,
                &[(CC, "s-maxage=soon, max-age=60")],
                None,
            ),
            (
                "s-maxage over expires",
                200,
                &[(CC, "s-maxage=30"), ("expires", FAR_FUTURE)],
                Some((30, 0)),
            ),
            // max-age over Expires, even an invalid Expires (RFC 9111 §5.3).
            (
                "max-age over expires",
                200,
                &[(CC, "max-age=60"), ("expires", FAR_FUTURE)],
                Some((60, 0)),
            ),
            (
                "max-age over invalid expires",
                200,
                &[(CC, "max-age=60"), ("expires", "0")],
                Some((60, 0)),
            ),
            (
                "max-age over past expires",
                200,
                &[(CC, "max-age=60"), ("expires", PAST)],
                Some((60, 0)),
            ),
            // Expires.
            (
                "expires without date",
                200,
                &[("expires", NOW_PLUS_60)],
                Some((60, 0)),
            ),
            (
                "expires relative to date",
                200,
                &[("date", NOW_MINUS_10), ("expires", NOW_PLUS_50)],
                Some((50, 10)),
            ),
            // The origin's clock is 100 s ahead: the lifetime is Expires - Date.
            (
                "expires with date ahead",
                200,
                &[("date", NOW_PLUS_100), ("expires", NOW_PLUS_160)],
                Some((60, 0)),
            ),
            (
                "expires equal to date",
                200,
                &[("date", NOW), ("expires", NOW)],
                None,
            ),
            ("expires in the past", 200, &[("expires", PAST)], None),
            (
                "expires before date",
                200,
                &[("date", NOW), ("expires", PAST)],
                None,
            ),
            ("expires 0", 200, &[("expires", "0")], None),
            ("expires -1", 200, &[("expires", "-1")], None),
            ("expires garbage", 200, &[("expires", "tomorrow")], None),
            (
                "two expires, earliest wins",
                200,
                &[("expires", NOW_PLUS_120), ("expires", NOW_PLUS_60)],
                Some((60, 0)),
            ),
            (
                "two expires, one invalid",
                200,
                &[("expires", NOW_PLUS_60), ("expires", "0")],
                None,
            ),
            (
                "invalid date is ignored",
                200,
                &[("date", "yesterday"), ("expires", NOW_PLUS_60)],
                Some((60, 0)),
            ),
            (
                "rfc 850 expires",
                200,
                &[("expires", "Tuesday, 14-Nov-23 22:14:20 GMT")],
                Some((60, 0)),
            ),
            (
                "asctime expires",
                200,
                &[("expires", "Tue Nov 14 22:14:20 2023")],
                Some((60, 0)),
            ),
            // Age (RFC 9111 §4.2.3).
            (
                "upstream age",
                200,
                &[(CC, "max-age=60"), ("age", "20")],
                Some((40, 20)),
            ),
            (
                "age equal to max-age",
                200,
                &[(CC, "max-age=60"), ("age", "60")],
                None,
            ),
            (
                "age over max-age",
                200,
                &[(CC, "max-age=60"), ("age", "100")],
                None,
            ),
            (
                "invalid age",
                200,
                &[(CC, "max-age=60"), ("age", "old")],
                None,
            ),
            (
                "negative age",
                200,
                &[(CC, "max-age=60"), ("age", "-5")],
                None,
            ),
            (
                "two ages, largest wins",
                200,
                &[(CC, "max-age=60"), ("age", "5"), ("age", "20")],
                Some((40, 20)),
            ),
            (
                "apparent age from date",
                200,
                &[(CC, "max-age=60"), ("date", NOW_MINUS_30), ("age", "10")],
                Some((30, 30)),
            ),
            (
                "age larger than apparent age",
                200,
                &[(CC, "max-age=60"), ("date", NOW_MINUS_10), ("age", "25")],
                Some((35, 25)),
            ),
            (
                "date in the future adds no age",
                200,
                &[(CC, "max-age=60"), ("date", NOW_PLUS_100)],
                Some((60, 0)),
            ),
            (
                "age applies to s-maxage",
                200,
                &[(CC, "s-maxage=30, max-age=600"), ("age", "10")],
                Some((20, 10)),
            ),
            // Parsing.
            (
                "two cache-control lines",
                200,
                &[(CC, "max-age=60"), (CC, "no-store")],
                None,
            ),
            (
                "directive on a second line",
                200,
                &[(CC, "public"), (CC, "max-age=60")],
                Some((60, 0)),
            ),
            (
                "case-insensitive names",
                200,
                &[(CC, "MAX-AGE=60")],
                Some((60, 0)),
            ),
            (
                "case-insensitive no-store",
                200,
                &[(CC, "max-age=60, No-Store")],
                None,
            ),
            (
                "quoted max-age",
                200,
                &[(CC, "max-age=\"60\"")],
                Some((60, 0)),
            ),
            (
                "comma inside quotes",
                200,
                &[(CC, "ext=\"a, max-age=5\", max-age=60")],
                Some((60, 0)),
            ),
            (
                "several commas inside quotes",
                200,
                &[(CC, "ext=\"a,b,no-store,c\", max-age=60")],
                Some((60, 0)),
            ),
            (
                "escaped quote inside quotes",
                200,
                &[(CC, "ext=\"a\\\", no-store\", max-age=60")],
                Some((60, 0)),
            ),
            (
                "unknown directives",
                200,
                &[(CC, "foo, max-age=60, bar=baz, stale-while-revalidate=5")],
                Some((60, 0)),
            ),
            (
                "empty list elements",
                200,
                &[(CC, " , ,max-age=60,, ")],
                Some((60, 0)),
            ),
            (
                "whitespace around =",
                200,
                &[(CC, "max-age = 60")],
                Some((60, 0)),
            ),
            (
                "duplicate max-age, smallest wins",
                200,
                &[(CC, "max-age=60, max-age=30")],
                Some((30, 0)),
            ),
            (
                "duplicate max-age across lines",
                200,
                &[(CC, "max-age=30"), (CC, "max-age=60")],
                Some((30, 0)),
            ),
            (
                "duplicate max-age, one invalid",
                200,
                &[(CC, "max-age=60, max-age=abc")],
                None,
            ),
            ("max-age without a value", 200, &[(CC, "max-age")], None),
            ("max-age empty", 200, &[(CC, "max-age=")], None),
            ("negative max-age", 200, &[(CC, "max-age=-1")], None),
            ("fractional max-age", 200, &[(CC, "max-age=1.5")], None),
            (
                "huge max-age is capped",
                200,
                &[(CC, "max-age=99999999999999999999999")],
                Some((1 << 31, 0)),
            ),
        ];
        for (case, status, hdrs, want) in cases {
            let got = response_freshness(
                StatusCode::from_u16(*status).unwrap(),
                &headers(hdrs),
                now(),
            );
            let want = want.map(|(ttl, age)| Freshness {
                ttl: Duration::from_secs(ttl),
                age: Duration::from_secs(age),
            });
            assert_eq!(got, want, "{case}");
        }
    }

    #[test]
    fn request_policy_table() {
        use RequestPolicy::*;
        let cases: &[RequestCase] = &[
            ("get", Method::GET, &[], Lookup),
            ("head", Method::HEAD, &[], Lookup),
            ("post", Method::POST, &[], Bypass),
            ("put", Method::PUT, &[], Bypass),
            ("delete", Method::DELETE, &[], Bypass),
            ("options", Method::OPTIONS, &[], Bypass),
            (
                "authorization",
                Method::GET,
                &[("authorization", "Bearer x")],
                Bypass,
            ),
            ("no-store", Method::GET, &[(CC, "no-store")], Bypass),
            (
                "no-store wins over no-cache",
                Method::GET,
                &[(CC, "no-cache"), (CC, "no-store")],
                Bypass,
            ),
            ("no-cache", Method::GET, &[(CC, "no-cache")], Refresh),
            ("NO-CACHE", Method::HEAD, &[(CC, "NO-CACHE")], Refresh),
            ("max-age=0", Method::GET, &[(CC, "max-age=0")], Refresh),
            (
                "max-age=60 is ignored",
                Method::GET,
                &[(CC, "max-age=60")],
                Lookup,
            ),
            (
                "invalid max-age is ignored",
                Method::GET,
                &[(CC, "max-age=soon")],
                Lookup,
            ),
            (
                "pragma is ignored",
                Method::GET,
                &[("pragma", "no-cache")],
                Lookup,
            ),
            ("cookie is fine", Method::GET, &[("cookie", "a=b")], Lookup),
        ];
        for (case, method, hdrs, want) in cases {
            assert_eq!(request_policy(method, &headers(hdrs)), *want, "{case}");
        }
    }

    #[test]
    fn http_date_formats() {
        let t = |s: &str| parse_http_date(s.as_bytes(), now());
        let at = |secs: i64| from_unix(secs);
        let classic = at(784_111_777);
        assert_eq!(t("Sun, 06 Nov 1994 08:49:37 GMT"), classic);
        assert_eq!(t("Sunday, 06-Nov-94 08:49:37 GMT"), classic);
        assert_eq!(t("Sun Nov  6 08:49:37 1994"), classic);
        assert_eq!(t("Tue, 29 Feb 2000 12:00:00 GMT"), at(951_825_600));
        assert_eq!(t("Wed, 31 Dec 1969 23:59:59 GMT"), at(-1));
        // Two-digit years: at most 50 years ahead of 2023, else last century.
        assert_eq!(t("Thursday, 01-Jan-60 00:00:00 GMT"), at(2_840_140_800));
        assert_eq!(t("Tuesday, 01-Jan-80 00:00:00 GMT"), at(315_532_800));
        for bad in [
            "",
            "0",
            "-1",
            "Sun, 06 Nov 1994 08:49:37 UTC",
            "Sun, 6 Nov 1994 08:49:37 GMT",
            "Sun, 06 Nov 94 08:49:37 GMT",
            "Sun, 06 nov 1994 08:49:37 GMT",
            "Sun 06 Nov 1994 08:49:37 GMT",
            "Sun, 31 Feb 1994 08:49:37 GMT",
            "Mon, 29 Feb 1900 08:49:37 GMT",
            "Sun, 06 Nov 1994 24:00:00 GMT",
            "Sun, 06 Nov 1994 08:60:00 GMT",
            "Sun, 06 Nov 1994 8:49:37 GMT",
            "Sun, 06 Nov 1994 08:49 GMT",
            "Sun, 00 Nov 1994 08:49:37 GMT",
            "Xyz, 06 Nov 1994 08:49:37 GMT",
            "Sunday, 06-Nov-1994 08:49:37 GMT",
            "Sun Nov  6 08:49:37 94",
        ] {
            assert_eq!(t(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn base_keys() {
        let get = |a, p| base_key(&Method::GET, a, p).unwrap();
        assert_eq!(
            get("Example.COM:8080", "/a?b=1"),
            get("example.com:8080", "/a?b=1")
        );
        assert_ne!(get("example.com", "/A"), get("example.com", "/a"));
        assert_ne!(get("example.com", "/a?b=1"), get("example.com", "/a?b=2"));
        assert_ne!(get("a.example", "/x"), get("b.example", "/x"));
        assert_eq!(get("example.com", ""), get("example.com", "/"));
        let head = base_key(&Method::HEAD, "example.com", "/").unwrap();
        assert_ne!(head, get("example.com", "/"));
        assert_eq!(head.to_get(), get("example.com", "/"));
        assert!(head.is_head());
        assert_eq!(base_key(&Method::POST, "example.com", "/"), None);
    }

    #[test]
    fn vary_names_are_normalised() {
        let h = headers(&[
            ("vary", "Accept-Encoding, User-Agent"),
            ("vary", "accept-encoding,,Accept, *"),
        ]);
        let names = vary_names(&h);
        let names: Vec<&str> = names.iter().map(HeaderName::as_str).collect();
        assert_eq!(names, ["accept", "accept-encoding", "user-agent"]);
        assert!(vary_names(&headers(&[])).is_empty());
    }

    #[test]
    fn secondary_keys() {
        let names = [HeaderName::from_static("accept-encoding")];
        let key = |pairs: &[(&str, &str)]| secondary_key(&names, &headers(pairs));
        let absent = key(&[]);
        let empty = key(&[("accept-encoding", "")]);
        let gzip = key(&[("accept-encoding", "gzip")]);
        assert_ne!(absent, empty);
        assert_ne!(empty, gzip);
        assert_eq!(gzip, key(&[("Accept-Encoding", " gzip ")]));
        assert_ne!(gzip, key(&[("accept-encoding", "GZIP")]));
        // Unrelated headers don't matter.
        assert_eq!(
            gzip,
            key(&[("accept-encoding", "gzip"), ("accept-language", "en")])
        );
        // Several lines mean the same as one comma-joined line.
        let two_lines = key(&[("accept-encoding", "gzip"), ("accept-encoding", "br")]);
        assert_eq!(two_lines, key(&[("accept-encoding", "gzip, br")]));
        assert!(gzip.matches(&headers(&[("accept-encoding", "gzip")])));
        assert!(!gzip.matches(&headers(&[])));
        assert!(absent.matches(&headers(&[])));
        assert!(!absent.matches(&headers(&[("accept-encoding", "")])));
        // No Vary: every request matches.
        assert!(secondary_key(&[], &headers(&[])).matches(&headers(&[("accept-encoding", "gzip")])));
    }
}
