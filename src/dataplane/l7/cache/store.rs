//! The in-memory store: a byte-budgeted LRU of responses, several `Vary`
//! variants per primary key.
//!
//! One [`Cache`] belongs to one route, behind a plain `std::sync::Mutex`:
//! contention is limited to that route's cacheable requests, and the
//! critical sections are a hash lookup plus a few B-tree operations, never
//! I/O and never an `.await`. Bodies are `Bytes` and responses sit behind an
//! `Arc`, so copying the header map for a hit happens after unlocking.
//!
//! Time is an `Instant` passed in by the caller, so tests can use a fake
//! clock.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderMap, Response, StatusCode};

use super::policy::{secondary_key, vary_names, CacheKey, Freshness, SecondaryKey};

/// An entry may take at most this fraction of the budget, so that one large
/// object cannot flush most of the cache.
const MAX_ENTRY_FRACTION: usize = 8;

/// Variants kept per primary key. Every lookup scans a key's variants
/// under the lock, so a response that varies on something clients control
/// (`Vary: User-Agent`, `Cookie`) must not grow that scan without bound; the
/// key's least recently used variant makes room.
const MAX_VARIANTS: usize = 32;

/// Per-entry bookkeeping beyond the key, headers and body we count: the
/// entry struct, the hash map slot and the LRU index node, approximately.
const ENTRY_OVERHEAD: usize = 160;

/// Per-header overhead in a `HeaderMap`, approximately.
const HEADER_OVERHEAD: usize = 32;

/// A stored response found for a request. The driver serves it with
/// [`add_age_and_x_cache`](super::add_age_and_x_cache)`(.., age, true)`.
#[derive(Debug, Clone)]
pub struct Hit {
    pub status: StatusCode,
    pub headers: HeaderMap,
    /// Empty when a HEAD request is answered from a stored GET response.
    pub body: Bytes,
    /// Age to serve: the age on arrival plus the time spent in the cache.
    pub age: Duration,
}

/// Counters for metrics. `bytes` and `entries` are current values, the rest
/// count since creation.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheStats {
    pub hits: u64,
    pub misses: u64,
    pub stores: u64,
    /// Entries dropped to stay under the byte budget or the variant limit.
    /// Expired entries dropped on lookup and entries replaced by a newer
    /// response for the same request are not counted.
    pub evictions: u64,
    pub bytes: usize,
    pub entries: usize,
}

/// A per-route response cache bounded by an approximate byte budget.
#[derive(Debug)]
pub struct Cache {
    max_bytes: usize,
    inner: Mutex<Inner>,
}

#[derive(Debug)]
struct Stored {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

#[derive(Debug)]
struct Entry {
    /// Last use; unique, and the entry's key in `Inner::lru`.
    tick: u64,
    vary: SecondaryKey,
    response: Arc<Stored>,
    stored_at: Instant,
    expires_at: Instant,
    age_on_arrival: Duration,
    size: usize,
}

#[derive(Debug, Default)]
struct Inner {
    /// Variants per primary key, oldest stored first.
    entries: HashMap<CacheKey, Vec<Entry>>,
    /// Last-use tick → primary key; the first element is the least recently
    /// used entry.
    lru: BTreeMap<u64, CacheKey>,
    next_tick: u64,
    stats: CacheStats,
}

impl Cache {
    /// A cache holding at most about `max_bytes` of responses.
    pub fn new(max_bytes: usize) -> Self {
        Cache {
            max_bytes,
            inner: Mutex::new(Inner::default()),
        }
    }

    /// The largest entry `put` accepts: a driver can stop buffering a body
    /// for the cache once it is bigger than this.
    pub fn max_entry_bytes(&self) -> usize {
        self.max_bytes / MAX_ENTRY_FRACTION
    }

    /// Looks up a fresh response for a request. Expired variants of the key
    /// are dropped on the way. A HEAD lookup falls back to the GET entry
    /// for the same target and then returns no body.
    pub fn get(&self, key: &CacheKey, req_headers: &HeaderMap, now: Instant) -> Option<Hit> {
        let found = {
            let mut inner = self.lock();
            let mut found = inner.lookup(key, req_headers, now).map(|r| (r, false));
            if found.is_none() && key.is_head() {
                found = inner
                    .lookup(&key.to_get(), req_headers, now)
                    .map(|r| (r, true));
            }
            if found.is_some() {
                inner.stats.hits += 1;
            } else {
                inner.stats.misses += 1;
            }
            found
        };
        let ((stored, age), omit_body) = found?;
        Some(Hit {
            status: stored.status,
            headers: stored.headers.clone(),
            body: if omit_body {
                Bytes::new()
            } else {
                stored.body.clone()
            },
            age,
        })
    }

    /// Stores a response fetched for a request whose headers were
    /// `req_headers` (for `Vary`). `freshness` comes from
    /// [`response_freshness`](super::policy::response_freshness) and `now` is
    /// when the response arrived. Stored headers should be the ones
    /// forwarded to the client, i.e. with hop-by-hop fields already removed
    /// (RFC 9111 §3.1). Returns whether it was stored: not when larger than
    /// [`max_entry_bytes`](Self::max_entry_bytes) or with a zero TTL.
    pub fn put(
        &self,
        key: CacheKey,
        req_headers: &HeaderMap,
        response: &Response<Bytes>,
        freshness: Freshness,
        now: Instant,
    ) -> bool {
        let Some(expires_at) = now
            .checked_add(freshness.ttl)
            .filter(|_| !freshness.ttl.is_zero())
        else {
            return false;
        };
        let vary = secondary_key(&vary_names(response.headers()), req_headers);
        let size = entry_size(&key, &vary, response.headers(), response.body().len());
        if size > self.max_entry_bytes() {
            return false;
        }
        let response = Arc::new(Stored {
            status: response.status(),
            headers: response.headers().clone(),
            body: response.body().clone(),
        });

        let mut inner = self.lock();
        // The new response supersedes whatever this request would have been
        // served (RFC 9111 §4.1: the most recent matching response wins).
        inner.remove_where(&key, |e| e.vary.matches(req_headers));
        if inner
            .entries
            .get(&key)
            .is_some_and(|v| v.len() >= MAX_VARIANTS)
        {
            inner.evict_lru_variant(&key);
        }
        while inner.stats.bytes + size > self.max_bytes {
            if !inner.evict_lru() {
                break;
            }
        }
        let tick = inner.tick();
        inner.lru.insert(tick, key.clone());
        inner.entries.entry(key).or_default().push(Entry {
            tick,
            vary,
            response,
            stored_at: now,
            expires_at,
            age_on_arrival: freshness.age,
            size,
        });
        inner.stats.bytes += size;
        inner.stats.entries += 1;
        inner.stats.stores += 1;
        true
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> CacheStats {
        self.lock().stats
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        match self.inner.lock() {
            Ok(inner) => inner,
            Err(poisoned) => {
                // A panic under the lock may have left the byte count or the
                // LRU index out of step with the entries. The cache is only
                // an optimisation: start again empty rather than trust it.
                let mut inner = poisoned.into_inner();
                inner.clear();
                self.inner.clear_poison();
                inner
            }
        }
    }
}

impl Inner {
    fn tick(&mut self) -> u64 {
        self.next_tick += 1;
        self.next_tick
    }

    /// Drops every entry, keeping the cumulative counters.
    fn clear(&mut self) {
        self.entries.clear();
        self.lru.clear();
        self.stats.bytes = 0;
        self.stats.entries = 0;
    }

    /// Finds the variant of `key` selected by `req_headers`, marks it used
    /// and returns it with its current age.
    fn lookup(
        &mut self,
        key: &CacheKey,
        req_headers: &HeaderMap,
        now: Instant,
    ) -> Option<(Arc<Stored>, Duration)> {
        self.remove_where(key, |e| now >= e.expires_at);
        let tick = self.tick();
        let Inner { entries, lru, .. } = self;
        // Newest first: if variants with different Vary names both match,
        // the most recently stored one wins (RFC 9111 §4.1).
        let entry = entries
            .get_mut(key)?
            .iter_mut()
            .rev()
            .find(|e| e.vary.matches(req_headers))?;
        if let Some(k) = lru.remove(&entry.tick) {
            lru.insert(tick, k);
        }
        entry.tick = tick;
        let age = entry.age_on_arrival + now.saturating_duration_since(entry.stored_at);
        Some((Arc::clone(&entry.response), age))
    }

    /// Removes the variants of `key` for which `pred` holds.
    fn remove_where(&mut self, key: &CacheKey, pred: impl Fn(&Entry) -> bool) {
        let Inner {
            entries,
            lru,
            stats,
            ..
        } = self;
        let Some(variants) = entries.get_mut(key) else {
            return;
        };
        variants.retain(|e| {
            if !pred(e) {
                return true;
            }
            lru.remove(&e.tick);
            stats.bytes -= e.size;
            stats.entries -= 1;
            false
        });
        if variants.is_empty() {
            entries.remove(key);
        }
    }

    /// Evicts the least recently used entry; false if there is none.
    fn evict_lru(&mut self) -> bool {
        let Some((tick, key)) = self.lru.first_key_value().map(|(t, k)| (*t, k.clone())) else {
            return false;
        };
        self.remove_where(&key, |e| e.tick == tick);
        self.stats.evictions += 1;
        true
    }

    fn evict_lru_variant(&mut self, key: &CacheKey) {
        let Some(tick) = self
            .entries
            .get(key)
            .and_then(|v| v.iter().map(|e| e.tick).min())
        else {
            return;
        };
        self.remove_where(key, |e| e.tick == tick);
        self.stats.evictions += 1;
    }
}

/// Approximate memory held by an entry: body, header names and values, key
/// and Vary values, plus fixed overheads.
fn entry_size(key: &CacheKey, vary: &SecondaryKey, headers: &HeaderMap, body_len: usize) -> usize {
    let headers: usize = headers
        .iter()
        .map(|(n, v)| n.as_str().len() + v.len() + HEADER_OVERHEAD)
        .sum();
    ENTRY_OVERHEAD + key.approx_bytes() + vary.approx_bytes() + headers + body_len
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataplane::l7::cache::policy::base_key;
    use http::{HeaderName, HeaderValue, Method};

    fn key(path: &str) -> CacheKey {
        base_key(&Method::GET, "example.com", path).unwrap()
    }

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

    fn response(body: &'static str, pairs: &[(&str, &str)]) -> Response<Bytes> {
        let mut r = Response::new(Bytes::from_static(body.as_bytes()));
        *r.headers_mut() = headers(pairs);
        r
    }

    fn fresh(ttl: u64) -> Freshness {
        Freshness {
            ttl: Duration::from_secs(ttl),
            age: Duration::ZERO,
        }
    }

    fn body_of(cache: &Cache, k: &CacheKey, req: &HeaderMap, now: Instant) -> Option<Bytes> {
        cache.get(k, req, now).map(|h| h.body)
    }

    #[test]
    fn miss_then_hit() {
        let cache = Cache::new(1 << 20);
        let t0 = Instant::now();
        let none = HeaderMap::new();
        assert!(cache.get(&key("/"), &none, t0).is_none());
        let r = response(
            "hello",
            &[
                ("content-type", "text/plain"),
                ("cache-control", "max-age=60"),
            ],
        );
        assert!(cache.put(key("/"), &none, &r, fresh(60), t0));

        let hit = cache
            .get(&key("/"), &none, t0 + Duration::from_secs(3))
            .unwrap();
        assert_eq!(hit.status, StatusCode::OK);
        assert_eq!(hit.body, "hello");
        assert_eq!(hit.headers["content-type"], "text/plain");
        assert_eq!(hit.age, Duration::from_secs(3));
        assert!(cache.get(&key("/other"), &none, t0).is_none());

        let stats = cache.stats();
        assert_eq!(
            (
                stats.hits,
                stats.misses,
                stats.stores,
                stats.evictions,
                stats.entries
            ),
            (1, 2, 1, 0, 1)
        );
        assert_eq!(
            stats.bytes,
            entry_size(&key("/"), &secondary_key(&[], &none), r.headers(), 5)
        );
    }

    #[test]
    fn age_includes_age_on_arrival() {
        let cache = Cache::new(1 << 20);
        let t0 = Instant::now();
        let none = HeaderMap::new();
        let f = Freshness {
            ttl: Duration::from_secs(40),
            age: Duration::from_secs(20),
        };
        assert!(cache.put(key("/"), &none, &response("x", &[]), f, t0));
        let hit = cache
            .get(&key("/"), &none, t0 + Duration::from_secs(10))
            .unwrap();
        assert_eq!(hit.age, Duration::from_secs(30));
    }

    #[test]
    fn expiry_with_a_fake_clock() {
        let cache = Cache::new(1 << 20);
        let t0 = Instant::now();
        let none = HeaderMap::new();
        assert!(cache.put(key("/"), &none, &response("x", &[]), fresh(60), t0));
        assert!(cache
            .get(&key("/"), &none, t0 + Duration::from_millis(59_999))
            .is_some());
        assert!(cache
            .get(&key("/"), &none, t0 + Duration::from_secs(60))
            .is_none());
        // Dropped, not just hidden.
        let stats = cache.stats();
        assert_eq!(
            (stats.entries, stats.bytes, stats.hits, stats.misses),
            (0, 0, 1, 1)
        );
        // Even if the clock were to go back.
        assert!(cache.get(&key("/"), &none, t0).is_none());
    }

    #[test]
    fn zero_ttl_is_not_stored() {
        let cache = Cache::new(1 << 20);
        let none = HeaderMap::new();
        assert!(!cache.put(
            key("/"),
            &none,
            &response("x", &[]),
            fresh(0),
            Instant::now()
        ));
        assert_eq!(cache.stats().stores, 0);
    }

    #[test]
    fn lru_eviction_order_under_a_byte_budget() {
        let none = HeaderMap::new();
        let r = response("0123456789", &[("content-type", "text/plain")]);
        // Keys of equal length, so every entry has the same size.
        let size = entry_size(&key("/k0"), &secondary_key(&[], &none), r.headers(), 10);
        let cache = Cache::new(8 * size);
        assert_eq!(cache.max_entry_bytes(), size);
        let t0 = Instant::now();
        for i in 0..8 {
            assert!(cache.put(key(&format!("/k{i}")), &none, &r, fresh(60), t0));
        }
        assert_eq!(cache.stats().evictions, 0);
        assert_eq!(cache.stats().bytes, 8 * size);
        // /k0 becomes the most recently used; /k1 is now the oldest.
        assert!(cache.get(&key("/k0"), &none, t0).is_some());
        assert!(cache.put(key("/k8"), &none, &r, fresh(60), t0));
        assert!(cache.put(key("/k9"), &none, &r, fresh(60), t0));
        let stats = cache.stats();
        assert_eq!(
            (stats.evictions, stats.entries, stats.bytes),
            (2, 8, 8 * size)
        );
        for gone in ["/k1", "/k2"] {
            assert!(cache.get(&key(gone), &none, t0).is_none(), "{gone}");
        }
        for kept in ["/k0", "/k3", "/k4", "/k5", "/k6", "/k7", "/k8", "/k9"] {
            assert!(cache.get(&key(kept), &none, t0).is_some(), "{kept}");
        }
    }

    #[test]
    fn oversized_entry_is_refused() {
        let none = HeaderMap::new();
        let body = "x".repeat(1000);
        let mut r = Response::new(Bytes::from(body));
        r.headers_mut()
            .insert("content-type", HeaderValue::from_static("text/plain"));
        let size = entry_size(&key("/big"), &secondary_key(&[], &none), r.headers(), 1000);
        let t0 = Instant::now();

        let cache = Cache::new(8 * size - 1);
        assert!(!cache.put(key("/big"), &none, &r, fresh(60), t0));
        assert!(cache.get(&key("/big"), &none, t0).is_none());
        assert_eq!((cache.stats().stores, cache.stats().bytes), (0, 0));

        let cache = Cache::new(8 * size);
        assert!(cache.put(key("/big"), &none, &r, fresh(60), t0));
        assert!(cache.get(&key("/big"), &none, t0).is_some());
    }

    #[test]
    fn vary_keeps_one_variant_per_request_header_value() {
        let cache = Cache::new(1 << 20);
        let t0 = Instant::now();
        let k = key("/v");
        let vary = [("vary", "Accept-Encoding")];
        let gzip = headers(&[("accept-encoding", "gzip")]);
        let identity = HeaderMap::new();
        let empty = headers(&[("accept-encoding", "")]);

        assert!(cache.put(k.clone(), &gzip, &response("gzipped", &vary), fresh(60), t0));
        assert_eq!(body_of(&cache, &k, &gzip, t0).unwrap(), "gzipped");
        assert!(cache.get(&k, &identity, t0).is_none());

        assert!(cache.put(
            k.clone(),
            &identity,
            &response("plain", &vary),
            fresh(60),
            t0
        ));
        assert_eq!(cache.stats().entries, 2);
        assert_eq!(body_of(&cache, &k, &gzip, t0).unwrap(), "gzipped");
        assert_eq!(body_of(&cache, &k, &identity, t0).unwrap(), "plain");
        // Present but empty is not absent.
        assert!(cache.get(&k, &empty, t0).is_none());
        assert!(cache
            .get(&k, &headers(&[("accept-encoding", "br")]), t0)
            .is_none());
        // Headers not named in Vary don't matter.
        let gzip_en = headers(&[("accept-encoding", "gzip"), ("accept-language", "en")]);
        assert_eq!(body_of(&cache, &k, &gzip_en, t0).unwrap(), "gzipped");
    }

    #[test]
    fn a_new_response_replaces_the_variant_it_would_serve() {
        let cache = Cache::new(1 << 20);
        let t0 = Instant::now();
        let none = HeaderMap::new();
        assert!(cache.put(key("/"), &none, &response("old", &[]), fresh(60), t0));
        assert!(cache.put(key("/"), &none, &response("new", &[]), fresh(60), t0));
        assert_eq!(body_of(&cache, &key("/"), &none, t0).unwrap(), "new");
        let stats = cache.stats();
        assert_eq!((stats.entries, stats.stores, stats.evictions), (1, 2, 0));
        assert_eq!(
            stats.bytes,
            entry_size(&key("/"), &secondary_key(&[], &none), &none, 3)
        );
    }

    #[test]
    fn newest_variant_wins_when_vary_names_changed() {
        let cache = Cache::new(1 << 20);
        let t0 = Instant::now();
        let req = headers(&[("accept-encoding", "gzip"), ("accept-language", "en")]);
        let by_encoding = response("by-encoding", &[("vary", "accept-encoding")]);
        let by_language = response("by-language", &[("vary", "accept-language")]);
        assert!(cache.put(
            key("/"),
            &headers(&[("accept-encoding", "gzip")]),
            &by_encoding,
            fresh(60),
            t0
        ));
        assert!(cache.put(
            key("/"),
            &headers(&[("accept-language", "en")]),
            &by_language,
            fresh(60),
            t0
        ));
        assert_eq!(body_of(&cache, &key("/"), &req, t0).unwrap(), "by-language");
    }

    #[test]
    fn variants_per_key_are_capped() {
        let cache = Cache::new(1 << 30);
        let t0 = Instant::now();
        let r = response("x", &[("vary", "user-agent")]);
        for i in 0..MAX_VARIANTS + 8 {
            let req = headers(&[("user-agent", &format!("agent-{i}"))]);
            assert!(cache.put(key("/"), &req, &r, fresh(60), t0));
        }
        let stats = cache.stats();
        assert_eq!((stats.entries, stats.evictions), (MAX_VARIANTS, 8));
        assert!(cache
            .get(&key("/"), &headers(&[("user-agent", "agent-0")]), t0)
            .is_none());
        let newest = format!("agent-{}", MAX_VARIANTS + 7);
        assert!(cache
            .get(&key("/"), &headers(&[("user-agent", &newest)]), t0)
            .is_some());
    }

    #[test]
    fn head_is_served_from_get_without_body_but_not_the_reverse() {
        let cache = Cache::new(1 << 20);
        let t0 = Instant::now();
        let none = HeaderMap::new();
        let get = key("/");
        let head = base_key(&Method::HEAD, "example.com", "/").unwrap();

        let mut head_response = response("", &[("content-length", "5")]);
        *head_response.status_mut() = StatusCode::NOT_FOUND;
        assert!(cache.put(head.clone(), &none, &head_response, fresh(60), t0));
        assert!(
            cache.get(&get, &none, t0).is_none(),
            "GET must not get a HEAD response"
        );

        assert!(cache.put(
            get.clone(),
            &none,
            &response("hello", &[("content-length", "5")]),
            fresh(60),
            t0
        ));
        // The HEAD entry itself comes first...
        assert_eq!(
            cache.get(&head, &none, t0).unwrap().status,
            StatusCode::NOT_FOUND
        );
        // ...and once it's gone the GET entry answers, without its body.
        let other_head = base_key(&Method::HEAD, "example.com", "/get-only").unwrap();
        assert!(cache.put(
            key("/get-only"),
            &none,
            &response("hello", &[("content-length", "5")]),
            fresh(60),
            t0
        ));
        let hit = cache.get(&other_head, &none, t0).unwrap();
        assert_eq!((hit.status, hit.body.len()), (StatusCode::OK, 0));
        assert_eq!(hit.headers["content-length"], "5");
        assert_eq!(
            body_of(&cache, &key("/get-only"), &none, t0).unwrap(),
            "hello"
        );
    }

    #[test]
    fn a_poisoned_lock_empties_the_cache_and_keeps_working() {
        let cache = Cache::new(1 << 20);
        let t0 = Instant::now();
        let none = HeaderMap::new();
        assert!(cache.put(key("/"), &none, &response("x", &[]), fresh(60), t0));
        std::thread::scope(|s| {
            let poisoner = s.spawn(|| {
                let _guard = cache.inner.lock();
                panic!("poison the cache lock");
            });
            assert!(poisoner.join().is_err());
        });
        assert!(cache.inner.is_poisoned());
        assert!(cache.get(&key("/"), &none, t0).is_none());
        assert!(!cache.inner.is_poisoned());
        let stats = cache.stats();
        assert_eq!((stats.entries, stats.bytes, stats.stores), (0, 0, 1));
        assert!(cache.put(key("/"), &none, &response("y", &[]), fresh(60), t0));
        assert_eq!(body_of(&cache, &key("/"), &none, t0).unwrap(), "y");
    }
}
