//! Sticky sessions: the pure parts (tokens, cookie parsing, the learned-session table).
//!
//! - `mode = "cookie"`: tandem sets its own cookie holding [`backend_token`] of the chosen
//!   backend and honours it while that backend is healthy; otherwise the pool's algorithm picks
//!   (and a fresh cookie is set). The caller maps a token back by computing the tokens of the
//!   pool's backends once per config.
//! - `mode = "app_cookie"`: the application's own session cookie is learned from Set-Cookie
//!   ([`learn_set_cookie`]) into a [`StickyTable`], and requests carrying it are routed to the
//!   backend that issued it.
//! - `mode = "source_ip"` needs nothing here: it is the pool's source-hash balancer.
//!
//! Nothing in this module does I/O or reads a clock; callers pass `now`.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use http::header::{COOKIE, SET_COOKIE};
use http::{HeaderMap, HeaderValue};
use ring::hmac;

pub use crate::config::StickySecret;

/// The HMAC key tokens are computed with.
pub struct StickyKey(hmac::Key);

impl StickyKey {
    /// The key for a configured secret, or the process's per-boot key when none is set (logged
    /// once: a restart or a failover then re-balances every sticky client, because the peer
    /// and the next boot have other keys).
    pub fn new(configured: Option<&StickySecret>) -> StickyKey {
        match configured {
            Some(s) => StickyKey(hmac::Key::new(hmac::HMAC_SHA256, s.bytes())),
            None => {
                static WARNED: std::sync::Once = std::sync::Once::new();
                WARNED.call_once(|| {
                    tracing::warn!(
                        "sticky_secret is not set: cookie stickiness uses a per-boot secret, so a restart or a failover moves sticky clients; set [global] sticky_secret (the same on both nodes)"
                    )
                });
                StickyKey(hmac::Key::new(hmac::HMAC_SHA256, boot_secret()))
            }
        }
    }
}

static BOOT_SECRET: std::sync::OnceLock<[u8; 32]> = std::sync::OnceLock::new();

/// The per-boot key, for an upgrade in place to hand to the new process:
/// without it every cookie the old process issued would stop matching.
pub fn boot_secret_for_upgrade() -> [u8; 32] {
    *boot_secret()
}

/// Takes over the old process's per-boot key; must run before any listener
/// builds a [`StickyKey`]. False if a key was already drawn.
pub fn adopt_boot_secret(secret: [u8; 32]) -> bool {
    BOOT_SECRET.set(secret).is_ok()
}

/// 32 random bytes drawn once per process (or adopted from the process this
/// one upgraded).
fn boot_secret() -> &'static [u8; 32] {
    BOOT_SECRET.get_or_init(|| {
        let mut bytes = [0u8; 32];
        // The OS generator failing is not recoverable in any useful way; a fixed key would
        // silently make cookies forgeable, so refuse to go on.
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes)
            .expect("the operating system's random generator failed");
        bytes
    })
}

/// The cookie value naming a backend: 32 hex digits (128 bits) of HMAC-SHA256 over
/// (pool, backend name) keyed by the sticky secret.
///
/// It reveals neither name nor address, and cannot be computed for any backend without the
/// secret, so a client can only present a token tandem issued: anything else (edited, forged,
/// or from another secret) matches no backend and is ignored, and the normal path picks a
/// backend and issues a fresh cookie. Both nodes of a pair compute the same tokens when they
/// share `sticky_secret`, so a failover keeps every client's backend. Changing the secret (or a
/// backend's name) re-balances the affected clients.
pub fn backend_token(pool: &str, backend_name: &str, key: &StickyKey) -> String {
    // Length-prefixing the pool keeps ("ab", "c") and ("a", "bc") apart.
    let mut ctx = hmac::Context::with_key(&key.0);
    ctx.update(b"tandem-sticky-v2\0");
    ctx.update(&(pool.len() as u64).to_le_bytes());
    ctx.update(pool.as_bytes());
    ctx.update(backend_name.as_bytes());
    let tag = ctx.sign();
    tag.as_ref()[..16]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The value of cookie `name` in the request's Cookie headers (HTTP/2 may split them into
/// several), first occurrence wins. Names are case-sensitive; surrounding quotes are removed.
pub fn cookie_value<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    cookie_value_in(headers.get_all(COOKIE).iter().map(|v| v.as_bytes()), name)
}

/// [`cookie_value`] over raw Cookie field values.
pub fn cookie_value_in<'a>(values: impl Iterator<Item = &'a [u8]>, name: &str) -> Option<&'a str> {
    values
        .filter_map(|v| std::str::from_utf8(v).ok())
        .flat_map(|v| v.split(';'))
        .find_map(|pair| {
            let (n, v) = pair.split_once('=')?;
            (n.trim() == name).then(|| unquote(v.trim()))
        })
}

fn unquote(v: &str) -> &str {
    v.strip_prefix('"')
        .and_then(|v| v.strip_suffix('"'))
        .unwrap_or(v)
}

/// Whether `name` is a valid cookie name (an RFC 6265 token). The config layer should reject
/// others: [`set_cookie_header`] would have to drop characters, and the cookie would then never
/// match on the way back.
pub fn valid_cookie_name(name: &str) -> bool {
    !name.is_empty() && name.bytes().all(is_token_byte)
}

fn is_token_byte(b: u8) -> bool {
    b.is_ascii_graphic() && !b"()<>@,;:\\\"/[]?={}".contains(&b)
}

/// RFC 6265 cookie-octet: visible ASCII except `"`, `,`, `;` and `\`.
fn is_cookie_octet(b: u8) -> bool {
    b.is_ascii_graphic() && !b"\",;\\".contains(&b)
}

/// `NAME=VALUE; Path=/; HttpOnly; SameSite=Lax[; Secure][; Max-Age=N]` for tandem's own cookie.
///
/// HttpOnly because scripts have no business with it; Lax so that following a link to the site
/// keeps the session; Secure should be set on HTTPS listeners. No Max-Age makes a browser-session
/// cookie. Characters not allowed in a cookie name or value are dropped so that this cannot
/// fail (tokens are hex, names are validated by [`valid_cookie_name`]).
pub fn set_cookie_header(
    name: &str,
    value: &str,
    secure: bool,
    max_age: Option<Duration>,
) -> HeaderValue {
    let mut s: String = name
        .chars()
        .filter(|&c| c.is_ascii() && is_token_byte(c as u8))
        .collect();
    s.push('=');
    s.extend(
        value
            .chars()
            .filter(|&c| c.is_ascii() && is_cookie_octet(c as u8)),
    );
    s.push_str("; Path=/; HttpOnly; SameSite=Lax");
    if secure {
        s.push_str("; Secure");
    }
    if let Some(age) = max_age {
        s.push_str(&format!("; Max-Age={}", age.as_secs()));
    }
    // Only visible ASCII and spaces went in, which HeaderValue always accepts.
    HeaderValue::from_str(&s).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// What a response's Set-Cookie headers say about one cookie.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SetCookie {
    /// Set to this value: learn it.
    Set(String),
    /// Deleted (Max-Age ≤ 0, Expires in the past, or an empty value): forget the session the
    /// request carried.
    Deleted,
}

/// What the response does to cookie `name`, or `None` if it does not mention it. With several
/// Set-Cookie headers for the name the last wins, as in a browser. `now` judges Expires;
/// Max-Age takes precedence over Expires (RFC 6265 §5.3).
pub fn learn_set_cookie(headers: &HeaderMap, name: &str, now: SystemTime) -> Option<SetCookie> {
    learn_set_cookie_in(
        headers.get_all(SET_COOKIE).iter().map(|v| v.as_bytes()),
        name,
        now,
    )
}

/// [`learn_set_cookie`] over raw Set-Cookie field values.
pub fn learn_set_cookie_in<'a>(
    values: impl Iterator<Item = &'a [u8]>,
    name: &str,
    now: SystemTime,
) -> Option<SetCookie> {
    let mut outcome = None;
    for header in values {
        let Ok(header) = std::str::from_utf8(header) else {
            continue;
        };
        let mut parts = header.split(';');
        let Some((n, v)) = parts.next().and_then(|p| p.split_once('=')) else {
            continue;
        };
        if n.trim() != name {
            continue;
        }
        let value = unquote(v.trim());
        let mut max_age_expired = None;
        let mut expires_expired = None;
        for attribute in parts {
            let (key, val) = attribute.split_once('=').unwrap_or((attribute, ""));
            let (key, val) = (key.trim(), val.trim());
            if key.eq_ignore_ascii_case("max-age") {
                if let Ok(seconds) = val.parse::<i64>() {
                    max_age_expired = Some(seconds <= 0);
                }
            } else if key.eq_ignore_ascii_case("expires") {
                if let Some(at) = parse_cookie_date(val) {
                    expires_expired = Some(at <= unix_seconds(now));
                }
            }
        }
        let deleted = value.is_empty() || max_age_expired.or(expires_expired).unwrap_or(false);
        outcome = Some(if deleted {
            SetCookie::Deleted
        } else {
            SetCookie::Set(value.to_owned())
        });
    }
    outcome
}

fn unix_seconds(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        Err(e) => -i64::try_from(e.duration().as_secs()).unwrap_or(i64::MAX),
    }
}

/// Seconds since the Unix epoch of a cookie date, per the lenient algorithm of RFC 6265 §5.1.1,
/// which accepts what servers actually send (`Thu, 01 Jan 1970 00:00:00 GMT`,
/// `Thursday, 01-Jan-70 00:00:01 GMT`, asctime, ...). `None` if unparseable: the attribute is
/// then ignored, as the RFC says.
fn parse_cookie_date(s: &str) -> Option<i64> {
    const MONTHS: [&str; 12] = [
        "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
    ];
    // min..=max digits, then nothing or a non-digit.
    fn number(token: &str, min: usize, max: usize) -> Option<i64> {
        let digits = token.bytes().take_while(u8::is_ascii_digit).count();
        if digits < min || digits > max {
            return None;
        }
        token[..digits].parse().ok()
    }
    let is_delimiter = |c: char| matches!(c, '\x09' | '\x20'..='\x2f' | '\x3b'..='\x40' | '\x5b'..='\x60' | '\x7b'..='\x7e');
    let (mut time, mut day, mut month, mut year) = (None, None, None, None);
    for token in s.split(is_delimiter).filter(|t| !t.is_empty()) {
        if time.is_none() {
            let mut hms = token.splitn(3, ':');
            if let (Some(h), Some(m), Some(sec)) = (hms.next(), hms.next(), hms.next()) {
                let field = |t: &str| number(t, 1, 2).filter(|_| t.len() <= 2);
                if let (Some(h), Some(m), Some(sec)) = (field(h), field(m), number(sec, 1, 2)) {
                    time = Some((h, m, sec));
                    continue;
                }
            }
        }
        if day.is_none() {
            if let Some(d) = number(token, 1, 2) {
                day = Some(d);
                continue;
            }
        }
        if month.is_none() {
            let prefix = token.get(..3).map(str::to_ascii_lowercase);
            if let Some(m) = prefix.and_then(|p| MONTHS.iter().position(|&name| name == p)) {
                month = Some(m as i64 + 1);
                continue;
            }
        }
        if year.is_none() {
            year = number(token, 2, 4);
        }
    }
    let ((hour, minute, second), day, month, mut year) = (time?, day?, month?, year?);
    if (70..=99).contains(&year) {
        year += 1900;
    } else if (0..=69).contains(&year) {
        year += 2000;
    }
    if !(1..=31).contains(&day) || year < 1601 || hour > 23 || minute > 59 || second > 59 {
        return None;
    }
    Some(days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's civil-date algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let year_of_era = y - era * 400;
    let month_from_march = (month + 9) % 12;
    let day_of_year = (153 * month_from_march + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// `app_cookie` memory: session value → backend name, bounded and expiring.
///
/// At most `max_entries` sessions; learning one more evicts the least recently used. An entry
/// idle (neither learned nor looked up) for `ttl` is gone. Expired entries are dropped when met
/// by a lookup and, oldest first, whenever something is learned, so `len` may briefly count a
/// few that are already dead. One mutex: every operation is O(log n) and short.
///
/// Session values are credentials: this type never prints them (its Debug shows sizes only).
///
/// Replication to other nodes hangs off the table itself (so the proxy needs no change): an
/// [`StickyObserver`] attached once hears every local learn and forget, plus a refresh when a
/// session in use was last announced more than `ttl / 2` ago (so that peers, which see no
/// lookups, do not expire a live session); entries from peers come in through
/// [`StickyTable::import`] and [`StickyTable::import_forget`], which do not echo.
pub struct StickyTable {
    inner: Mutex<Inner>,
    max_entries: usize,
    ttl: Duration,
    observer: OnceLock<Arc<dyn StickyObserver>>,
}

/// What a [`StickyTable`] tells its observer. Called after the table's lock is released.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StickyEvent<'a> {
    Learned { session: &'a str, backend: &'a str },
    Forgotten { session: &'a str },
}

/// Hears a table's local changes (see [`StickyTable`]); must not block.
pub trait StickyObserver: Send + Sync {
    fn event(&self, event: StickyEvent<'_>);
}

#[derive(Default)]
struct Inner {
    entries: HashMap<Arc<str>, Entry>,
    /// Recency order: a sequence number per touch, oldest first.
    by_age: BTreeMap<u64, Arc<str>>,
    next_seq: u64,
}

struct Entry {
    backend: String,
    last_used: Instant,
    seq: u64,
    /// When peers last heard of this entry (learned, imported or refreshed).
    announced: Instant,
}

impl Inner {
    fn remove(&mut self, session: &str) {
        if let Some(entry) = self.entries.remove(session) {
            self.by_age.remove(&entry.seq);
        }
    }
}

impl StickyTable {
    pub fn new(max_entries: usize, ttl: Duration) -> Self {
        Self {
            inner: Mutex::new(Inner::default()),
            max_entries,
            ttl,
            observer: OnceLock::new(),
        }
    }

    /// Attaches the observer; false if one is already attached (it stays).
    pub fn observe(&self, observer: Arc<dyn StickyObserver>) -> bool {
        self.observer.set(observer).is_ok()
    }

    fn emit(&self, event: StickyEvent<'_>) {
        if let Some(o) = self.observer.get() {
            o.event(event);
        }
    }

    // A panic elsewhere while holding the lock cannot leave the maps inconsistent in a way
    // that matters more than losing stickiness, so keep serving rather than propagate it.
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn expired(&self, entry: &Entry, now: Instant) -> bool {
        now.saturating_duration_since(entry.last_used) >= self.ttl
    }

    /// Records that `session` lives on `backend` (replacing what was known about it).
    pub fn learn(&self, session: &str, backend: &str, now: Instant) {
        if self.insert(session, backend, now) {
            self.emit(StickyEvent::Learned { session, backend });
        }
    }

    /// Records an entry a peer learned; the observer does not hear of it.
    pub fn import(&self, session: &str, backend: &str, now: Instant) {
        self.insert(session, backend, now);
    }

    /// Drops an entry a peer forgot; the observer does not hear of it.
    pub fn import_forget(&self, session: &str) {
        self.lock().remove(session);
    }

    fn insert(&self, session: &str, backend: &str, now: Instant) -> bool {
        if self.max_entries == 0 {
            return false;
        }
        let mut inner = self.lock();
        // Oldest first; stops at the first live one. Callers' clocks may interleave slightly
        // across threads, which can only make this stop early, never drop a live entry.
        while let Some((_, oldest)) = inner.by_age.first_key_value() {
            let oldest = Arc::clone(oldest);
            match inner.entries.get(&oldest) {
                Some(entry) if !self.expired(entry, now) => break,
                _ => inner.remove(&oldest),
            }
        }
        inner.remove(session);
        let key: Arc<str> = Arc::from(session);
        let seq = inner.next_seq;
        inner.next_seq += 1;
        inner.by_age.insert(seq, Arc::clone(&key));
        inner.entries.insert(
            key,
            Entry {
                backend: backend.to_owned(),
                last_used: now,
                seq,
                announced: now,
            },
        );
        while inner.entries.len() > self.max_entries {
            let Some((_, oldest)) = inner.by_age.pop_first() else {
                break;
            };
            inner.entries.remove(&oldest);
        }
        true
    }

    /// The backend `session` was learned on, refreshing its idle timer and recency.
    pub fn lookup(&self, session: &str, now: Instant) -> Option<String> {
        let (backend, refresh) = {
            let mut guard = self.lock();
            let inner = &mut *guard;
            let entry = inner.entries.get_mut(session)?;
            if self.expired(entry, now) {
                inner.remove(session);
                return None;
            }
            // Move it to the young end of the recency order.
            let key = inner.by_age.remove(&entry.seq)?;
            entry.seq = inner.next_seq;
            inner.next_seq += 1;
            inner.by_age.insert(entry.seq, key);
            entry.last_used = now;
            let refresh = self.observer.get().is_some()
                && now.saturating_duration_since(entry.announced) >= self.ttl / 2;
            if refresh {
                entry.announced = now;
            }
            (entry.backend.clone(), refresh)
        };
        if refresh {
            self.emit(StickyEvent::Learned {
                session,
                backend: &backend,
            });
        }
        Some(backend)
    }

    /// Drops `session` (the application deleted its cookie).
    pub fn forget(&self, session: &str) {
        self.lock().remove(session);
        self.emit(StickyEvent::Forgotten { session });
    }

    /// Entries held, including expired ones not yet dropped.
    pub fn len(&self) -> usize {
        self.lock().entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl fmt::Debug for StickyTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StickyTable")
            .field("len", &self.len())
            .field("max_entries", &self.max_entries)
            .field("ttl", &self.ttl)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(name: http::HeaderName, values: &[&str]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for v in values {
            map.append(name.clone(), HeaderValue::from_str(v).unwrap());
        }
        map
    }

    fn key(secret: &str) -> StickyKey {
        StickyKey::new(Some(&StickySecret::new(secret)))
    }

    #[test]
    fn tokens_are_stable_opaque_and_distinct() {
        let k = key("0123456789abcdef");
        let t = backend_token("web", "app1", &k);
        // Pinned (checked against Python's hmac module): a change here breaks every sticky
        // cookie in the field on upgrade.
        assert_eq!(t, backend_token("web", "app1", &key("0123456789abcdef")));
        assert_eq!(t, "6e0e611a0ed224ef5ff05e423d948309");
        assert_eq!(t.len(), 32);
        assert!(t
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
        assert!(!t.contains("app1"));
        assert_ne!(t, backend_token("web", "app2", &k));
        assert_ne!(t, backend_token("api", "app1", &k));
        assert_ne!(t, backend_token("web", "app1", &key("0123456789abcdeg")));
        assert_ne!(backend_token("ab", "c", &k), backend_token("a", "bc", &k));
    }

    #[test]
    fn tokens_cannot_be_forged_without_the_secret() {
        // What an attacker can compute from public names alone, and every edit of a real token,
        // must name no backend.
        let k = key("shared by both nodes of the pair");
        let backends = ["app1", "app2", "app3"];
        let issued: Vec<String> = backends
            .iter()
            .map(|b| backend_token("web", b, &k))
            .collect();
        let verify = |t: &str| issued.iter().position(|x| x == t);
        assert_eq!(verify(&issued[1]), Some(1));
        for guess in backends
            .iter()
            .flat_map(|b| {
                [
                    backend_token("web", b, &key("")),
                    backend_token("web", b, &key("web")),
                    backend_token("web", b, &StickyKey::new(None)),
                ]
            })
            .chain(["app1".into(), "web/app1".into(), String::new()])
        {
            assert_eq!(verify(&guess), None, "{guess}");
        }
        for (i, token) in issued.iter().enumerate() {
            for pos in 0..token.len() {
                let mut edited = token.clone().into_bytes();
                edited[pos] = if edited[pos] == b'0' { b'1' } else { b'0' };
                let edited = String::from_utf8(edited).unwrap();
                assert_eq!(verify(&edited), None, "backend {i} edited at {pos}");
            }
        }
    }

    #[test]
    fn the_per_boot_key_is_stable_within_a_process_and_secrets_do_not_print() {
        let (a, b) = (StickyKey::new(None), StickyKey::new(None));
        assert_eq!(backend_token("p", "b", &a), backend_token("p", "b", &b));
        assert_eq!(
            format!("{:?}", StickySecret::new("hunter2hunter2hunter2")),
            "StickySecret(..)"
        );
    }

    #[test]
    fn cookie_value_searches_every_cookie_header() {
        let h = headers(
            COOKIE,
            &[
                "theme=dark; TANDEM_SRV2=nope",
                "lang=en;TANDEM_SRV = \"0123abcd\" ; x=1",
                "TANDEM_SRV=second",
            ],
        );
        assert_eq!(cookie_value(&h, "TANDEM_SRV"), Some("0123abcd"));
        assert_eq!(cookie_value(&h, "TANDEM_SRV2"), Some("nope"));
        assert_eq!(cookie_value(&h, "x"), Some("1"));
        assert_eq!(cookie_value(&h, "tandem_srv"), None);
        assert_eq!(cookie_value(&h, "missing"), None);
        let h = headers(COOKIE, &["JSESSIONID=a=b=c", "empty="]);
        assert_eq!(cookie_value(&h, "JSESSIONID"), Some("a=b=c"));
        assert_eq!(cookie_value(&h, "empty"), Some(""));
        assert_eq!(cookie_value(&HeaderMap::new(), "JSESSIONID"), None);
    }

    #[test]
    fn set_cookie_header_format() {
        assert_eq!(
            set_cookie_header("TANDEM_SRV", "0123abcd", false, None),
            "TANDEM_SRV=0123abcd; Path=/; HttpOnly; SameSite=Lax"
        );
        assert_eq!(
            set_cookie_header("S", "v", true, Some(Duration::from_secs(3600))),
            "S=v; Path=/; HttpOnly; SameSite=Lax; Secure; Max-Age=3600"
        );
        // Bytes that would end the cookie early or break the header are dropped.
        assert_eq!(
            set_cookie_header("A B;", "x; Domain=evil\r\n", false, None),
            "AB=xDomain=evil; Path=/; HttpOnly; SameSite=Lax"
        );
        assert!(valid_cookie_name("TANDEM_SRV"));
        for bad in ["", "A B", "a;b", "a=b", "é"] {
            assert!(!valid_cookie_name(bad), "{bad:?}");
        }
    }

    fn learned(values: &[&str]) -> Option<SetCookie> {
        // 2026-01-01T00:00:00Z
        let now = UNIX_EPOCH + Duration::from_secs(1_767_225_600);
        learn_set_cookie(&headers(SET_COOKIE, values), "JSESSIONID", now)
    }

    #[test]
    fn set_cookie_learning() {
        let set = |v: &str| Some(SetCookie::Set(v.to_owned()));
        assert_eq!(
            learned(&["JSESSIONID=abc123; Path=/; HttpOnly"]),
            set("abc123")
        );
        assert_eq!(
            learned(&["other=1", "JSESSIONID=\"q\"", "more=2; Max-Age=0"]),
            set("q")
        );
        assert_eq!(learned(&["JSESSIONIDX=1", "other=JSESSIONID=2"]), None);
        assert_eq!(learned(&[]), None);
        // The last header for the name wins.
        assert_eq!(learned(&["JSESSIONID=old", "JSESSIONID=new"]), set("new"));
        assert_eq!(
            learned(&["JSESSIONID=old; Max-Age=0", "JSESSIONID=new"]),
            set("new")
        );
        assert_eq!(
            learned(&["JSESSIONID=new", "JSESSIONID=; Max-Age=0"]),
            Some(SetCookie::Deleted)
        );
    }

    #[test]
    fn set_cookie_deletion() {
        let deleted = Some(SetCookie::Deleted);
        let set = Some(SetCookie::Set("x".to_owned()));
        assert_eq!(learned(&["JSESSIONID=x; Max-Age=0"]), deleted);
        assert_eq!(learned(&["JSESSIONID=x; max-age=-1; Path=/"]), deleted);
        assert_eq!(learned(&["JSESSIONID=; Path=/"]), deleted);
        assert_eq!(
            learned(&["JSESSIONID=deleted; expires=Thu, 01-Jan-1970 00:00:01 GMT; Max-Age=junk"]),
            Some(SetCookie::Deleted)
        );
        assert_eq!(
            learned(&["JSESSIONID=x; Expires=Wed, 31 Dec 2025 23:59:59 GMT"]),
            deleted
        );
        assert_eq!(
            learned(&["JSESSIONID=x; Expires=Thu, 01 Jan 2026 00:00:01 GMT"]),
            set
        );
        assert_eq!(learned(&["JSESSIONID=x; Max-Age=60"]), set);
        // Max-Age beats Expires, whichever order they come in.
        assert_eq!(
            learned(&["JSESSIONID=x; Max-Age=60; Expires=Thu, 01 Jan 1970 00:00:00 GMT"]),
            set
        );
        assert_eq!(
            learned(&["JSESSIONID=x; Expires=Fri, 01 Jan 2100 00:00:00 GMT; Max-Age=0"]),
            deleted
        );
        // An unparseable date is ignored.
        assert_eq!(learned(&["JSESSIONID=x; Expires=yesterday"]), set);
    }

    #[test]
    fn cookie_dates() {
        let sunday = Some(784_111_777); // 1994-11-06T08:49:37Z
        assert_eq!(parse_cookie_date("Sun, 06 Nov 1994 08:49:37 GMT"), sunday);
        assert_eq!(parse_cookie_date("Sunday, 06-Nov-94 08:49:37 GMT"), sunday);
        assert_eq!(parse_cookie_date("Sun Nov  6 08:49:37 1994"), sunday);
        assert_eq!(parse_cookie_date("Thu, 01 Jan 1970 00:00:00 GMT"), Some(0));
        assert_eq!(
            parse_cookie_date("Wed, 01 Mar 2000 00:00:00 GMT"),
            Some(951_868_800)
        );
        assert_eq!(
            parse_cookie_date("Tue, 29 Feb 2028 12:00:00 GMT"),
            Some(1_835_438_400)
        );
        for bad in [
            "",
            "yesterday",
            "Sun, 06 Nov 1994",
            "Sun, 32 Nov 1994 08:49:37 GMT",
            "06 Nov 1994 24:00:00",
        ] {
            assert_eq!(parse_cookie_date(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn table_learns_looks_up_and_forgets() {
        let t0 = Instant::now();
        let table = StickyTable::new(10, Duration::from_secs(60));
        assert!(table.is_empty());
        table.learn("s1", "app1", t0);
        assert_eq!(table.lookup("s1", t0).as_deref(), Some("app1"));
        assert_eq!(table.lookup("s2", t0), None);
        // Re-learning moves the session (the application reissued it elsewhere).
        table.learn("s1", "app2", t0);
        assert_eq!(table.lookup("s1", t0).as_deref(), Some("app2"));
        assert_eq!(table.len(), 1);
        table.forget("s1");
        assert_eq!(table.lookup("s1", t0), None);
        assert!(table.is_empty());
        assert_eq!(
            format!("{table:?}"),
            "StickyTable { len: 0, max_entries: 10, ttl: 60s }"
        );
    }

    #[test]
    fn table_is_bounded_and_evicts_least_recently_used() {
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        let table = StickyTable::new(3, Duration::from_secs(600));
        table.learn("a", "app1", at(0));
        table.learn("b", "app2", at(1));
        table.learn("c", "app3", at(2));
        assert_eq!(table.lookup("a", at(3)).as_deref(), Some("app1")); // a is now the youngest
        table.learn("d", "app4", at(4));
        assert_eq!(table.len(), 3);
        assert_eq!(table.lookup("b", at(5)), None, "b was least recently used");
        for s in ["a", "c", "d"] {
            assert!(table.lookup(s, at(5)).is_some(), "{s}");
        }
        for i in 0..100 {
            table.learn(&format!("s{i}"), "app1", at(6));
        }
        assert_eq!(table.len(), 3);

        let none = StickyTable::new(0, Duration::from_secs(600));
        none.learn("a", "app1", at(0));
        assert_eq!(none.lookup("a", at(0)), None);
    }

    #[derive(Default)]
    struct Recorder(Mutex<Vec<String>>);
    impl StickyObserver for Recorder {
        fn event(&self, e: StickyEvent<'_>) {
            let line = match e {
                StickyEvent::Learned { session, backend } => format!("learn {session} {backend}"),
                StickyEvent::Forgotten { session } => format!("forget {session}"),
            };
            self.0.lock().unwrap().push(line);
        }
    }

    #[test]
    fn observer_hears_local_changes_not_imports() {
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        let table = StickyTable::new(10, Duration::from_secs(60));
        let rec = Arc::new(Recorder::default());
        assert!(table.observe(rec.clone()));
        assert!(
            !table.observe(Arc::new(Recorder::default())),
            "attached once"
        );
        table.learn("s1", "app1", at(0));
        table.import("r1", "app2", at(0));
        assert_eq!(table.lookup("r1", at(1)).as_deref(), Some("app2"));
        table.import_forget("r1");
        assert_eq!(table.lookup("r1", at(1)), None);
        // In use: refreshed to peers once ttl/2 has passed since they last heard of it.
        assert!(table.lookup("s1", at(29)).is_some());
        assert!(table.lookup("s1", at(30)).is_some());
        assert!(table.lookup("s1", at(31)).is_some());
        table.forget("s1");
        assert_eq!(
            *rec.0.lock().unwrap(),
            ["learn s1 app1", "learn s1 app1", "forget s1"]
        );
        // Without an observer nothing is tracked, and max_entries 0 learns nothing to tell.
        let none = StickyTable::new(0, Duration::from_secs(60));
        let rec0 = Arc::new(Recorder::default());
        none.observe(rec0.clone());
        none.learn("a", "b", at(0));
        assert!(rec0.0.lock().unwrap().is_empty());
    }

    #[test]
    fn imported_entries_expire_and_are_bounded_like_local_ones() {
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        let table = StickyTable::new(2, Duration::from_secs(60));
        table.import("a", "app1", at(0));
        table.import("b", "app1", at(1));
        table.import("c", "app1", at(2));
        assert_eq!(table.len(), 2);
        assert_eq!(table.lookup("a", at(2)), None);
        assert_eq!(table.lookup("c", at(62)), None, "idle for the ttl");
    }

    #[test]
    fn table_entries_expire_when_idle() {
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        let table = StickyTable::new(100, Duration::from_secs(60));
        table.learn("busy", "app1", at(0));
        table.learn("idle", "app2", at(0));
        // Lookups keep "busy" alive past the ttl counted from when it was learned.
        assert!(table.lookup("busy", at(50)).is_some());
        assert!(table.lookup("busy", at(100)).is_some());
        assert_eq!(table.lookup("idle", at(60)), None);
        assert_eq!(
            table.len(),
            1,
            "an expired entry found by lookup is dropped"
        );
        // Learning sweeps expired entries from the old end.
        table.learn("x", "app1", at(100));
        table.learn("y", "app1", at(100));
        table.learn("z", "app1", at(170));
        assert_eq!(table.len(), 1);
        assert_eq!(table.lookup("z", at(170)).as_deref(), Some("app1"));
    }
}
