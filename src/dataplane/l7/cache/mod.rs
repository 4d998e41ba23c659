//! Opt-in per-route HTTP response cache: a small RFC 9111 shared cache.
//!
//! Sans-I/O: the proxy driver asks [`policy`] what to do, looks up and
//! stores through a per-route [`Cache`], and funnels misses through a
//! [`Coalescer`] so concurrent misses for one key make one upstream request.
//!
//! Driver outline for a route with caching on:
//!
//! 1. [`request_policy`]: `Bypass` → proxy as usual. `Lookup` →
//!    [`Cache::get`]; on a hit serve it with
//!    [`add_age_and_x_cache`]`(.., hit.age, true)`. `Refresh`, or a miss →
//!    step 2.
//! 2. Leader (inside [`Coalescer::run`], keyed by the [`CacheKey`]): fetch,
//!    [`response_freshness`], [`Cache::put`] if `Some`, serve with
//!    `X-Cache: MISS`.
//! 3. A caller that waited instead of leading must not serve the leader's
//!    response as is: it may carry `Set-Cookie` or `private` data for
//!    another client, or be a `Vary` variant for other request headers.
//!    It looks the key up again with its own headers; on a miss it fetches
//!    for itself without coalescing (retrying the coalescer would serialise
//!    the waiters on uncacheable responses).

pub mod coalesce;
pub mod policy;
pub mod store;

use std::time::Duration;

use http::header::AGE;
use http::{HeaderMap, HeaderName, HeaderValue};

pub use coalesce::Coalescer;
pub use policy::{
    base_key, request_policy, response_freshness, secondary_key, vary_names, CacheKey, Freshness,
    RequestPolicy, SecondaryKey,
};
pub use store::{Cache, CacheStats, Hit};

/// Sets the headers a cache adds to what it serves: on a hit, `Age` in whole
/// seconds (RFC 9111 §5.1), replacing any stored upstream value since
/// `age` already includes it; `X-Cache: HIT` or `MISS`. On a miss the
/// upstream `Age`, if any, passes through untouched.
pub fn add_age_and_x_cache(headers: &mut HeaderMap, age: Duration, hit: bool) {
    if hit {
        headers.insert(AGE, HeaderValue::from(age.as_secs()));
    }
    headers.insert(
        HeaderName::from_static("x-cache"),
        HeaderValue::from_static(if hit { "HIT" } else { "MISS" }),
    );
}

#[cfg(test)]
mod tests {
    //! The pieces together, driven the way the module docs tell the proxy
    //! to drive them, against a fake upstream.

    use super::*;
    use bytes::Bytes;
    use http::{Method, Response, StatusCode};
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::time::{Instant, SystemTime};
    use tokio::sync::Semaphore;
    use tokio::task::JoinSet;
    use tokio::time::timeout;

    #[test]
    fn age_and_x_cache_on_a_hit() {
        let mut h = HeaderMap::new();
        h.insert(AGE, HeaderValue::from_static("5"));
        h.insert("x-cache", HeaderValue::from_static("MISS"));
        add_age_and_x_cache(&mut h, Duration::from_millis(42_900), true);
        assert_eq!(h[AGE], "42");
        assert_eq!(h["x-cache"], "HIT");
        assert_eq!(
            (
                h.get_all(AGE).iter().count(),
                h.get_all("x-cache").iter().count()
            ),
            (1, 1)
        );
    }

    #[test]
    fn x_cache_on_a_miss_leaves_upstream_age_alone() {
        let mut h = HeaderMap::new();
        h.insert(AGE, HeaderValue::from_static("5"));
        add_age_and_x_cache(&mut h, Duration::from_secs(99), false);
        assert_eq!(h[AGE], "5");
        assert_eq!(h["x-cache"], "MISS");
        let mut h = HeaderMap::new();
        add_age_and_x_cache(&mut h, Duration::ZERO, false);
        assert!(!h.contains_key(AGE));
    }

    /// A fake origin: numbers its responses, waits for `gate` so tests can
    /// hold requests in flight, echoes the request's Accept-Encoding.
    struct Upstream {
        calls: AtomicUsize,
        headers: Vec<(&'static str, &'static str)>,
        set_cookie: bool,
        gate: Semaphore,
    }

    impl Upstream {
        fn new(headers: &[(&'static str, &'static str)], set_cookie: bool) -> Self {
            let gate = Semaphore::new(Semaphore::MAX_PERMITS);
            Upstream {
                calls: AtomicUsize::new(0),
                headers: headers.to_vec(),
                set_cookie,
                gate,
            }
        }

        fn closed(headers: &[(&'static str, &'static str)], set_cookie: bool) -> Self {
            Upstream {
                gate: Semaphore::new(0),
                ..Self::new(headers, set_cookie)
            }
        }

        fn calls(&self) -> usize {
            self.calls.load(Ordering::SeqCst)
        }

        async fn fetch(&self, req: &HeaderMap) -> Response<Bytes> {
            let n = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
            drop(self.gate.acquire().await);
            let encoding = req
                .get("accept-encoding")
                .map_or("identity", |v| v.to_str().unwrap());
            let mut r = Response::new(Bytes::from(format!("response {n} {encoding}")));
            for (name, value) in &self.headers {
                r.headers_mut()
                    .append(*name, HeaderValue::from_static(value));
            }
            if self.set_cookie {
                r.headers_mut().insert(
                    "set-cookie",
                    HeaderValue::from_str(&format!("session={n}")).unwrap(),
                );
            }
            r
        }
    }

    type Flights = Coalescer<CacheKey, Response<Bytes>>;

    fn served(hit: Hit) -> Response<Bytes> {
        let mut r = Response::new(hit.body);
        *r.status_mut() = hit.status;
        *r.headers_mut() = hit.headers;
        add_age_and_x_cache(r.headers_mut(), hit.age, true);
        r
    }

    async fn fetch_and_store(
        cache: &Cache,
        up: &Upstream,
        key: &CacheKey,
        req: &HeaderMap,
    ) -> Response<Bytes> {
        let r = up.fetch(req).await;
        if let Some(f) = response_freshness(r.status(), r.headers(), SystemTime::now()) {
            cache.put(key.clone(), req, &r, f, Instant::now());
        }
        r
    }

    /// The driver outline from the module docs.
    async fn serve(
        cache: &Cache,
        flights: &Flights,
        up: &Upstream,
        path: &str,
        req: &HeaderMap,
    ) -> Response<Bytes> {
        let method = Method::GET;
        let mut r = match (
            request_policy(&method, req),
            base_key(&method, "example.com", path),
        ) {
            (RequestPolicy::Bypass, _) | (_, None) => up.fetch(req).await,
            (policy, Some(key)) => {
                if policy == RequestPolicy::Lookup {
                    if let Some(hit) = cache.get(&key, req, Instant::now()) {
                        return served(hit);
                    }
                }
                let mut led = false;
                let shared = flights
                    .run(key.clone(), || {
                        led = true;
                        fetch_and_store(cache, up, &key, req)
                    })
                    .await;
                if led {
                    shared
                } else if let Some(hit) = cache.get(&key, req, Instant::now()) {
                    return served(hit);
                } else {
                    fetch_and_store(cache, up, &key, req).await
                }
            }
        };
        add_age_and_x_cache(r.headers_mut(), Duration::ZERO, false);
        r
    }

    fn x_cache(r: &Response<Bytes>) -> &str {
        r.headers()["x-cache"].to_str().unwrap()
    }

    #[tokio::test]
    async fn miss_then_hit_with_age() {
        let (cache, flights) = (Cache::new(1 << 20), Flights::new());
        let up = Upstream::new(&[("cache-control", "max-age=60"), ("age", "7")], false);
        let req = HeaderMap::new();
        let first = serve(&cache, &flights, &up, "/", &req).await;
        assert_eq!(
            (x_cache(&first), first.body().as_ref()),
            ("MISS", &b"response 1 identity"[..])
        );
        assert_eq!(first.headers()[AGE], "7");
        let second = serve(&cache, &flights, &up, "/", &req).await;
        assert_eq!(
            (x_cache(&second), second.body().as_ref()),
            ("HIT", &b"response 1 identity"[..])
        );
        assert_eq!(second.status(), StatusCode::OK);
        assert_eq!(second.headers()[AGE], "7");
        assert_eq!(up.calls(), 1);
        // A client's no-cache goes to the origin and refreshes the entry.
        let mut refresh = HeaderMap::new();
        refresh.insert("cache-control", HeaderValue::from_static("no-cache"));
        let third = serve(&cache, &flights, &up, "/", &refresh).await;
        assert_eq!(
            (x_cache(&third), third.body().as_ref()),
            ("MISS", &b"response 2 identity"[..])
        );
        let fourth = serve(&cache, &flights, &up, "/", &req).await;
        assert_eq!(
            (x_cache(&fourth), fourth.body().as_ref()),
            ("HIT", &b"response 2 identity"[..])
        );
        assert_eq!(up.calls(), 2);
    }

    #[tokio::test]
    async fn uncacheable_responses_and_requests_always_go_upstream() {
        let uncacheable: [(&[(&'static str, &'static str)], bool); 4] = [
            (&[("cache-control", "max-age=60")], true),
            (&[("cache-control", "max-age=60, no-store")], false),
            (&[("cache-control", "max-age=60, private")], false),
            (&[], false),
        ];
        for (headers, set_cookie) in uncacheable {
            let (cache, flights) = (Cache::new(1 << 20), Flights::new());
            let up = Upstream::new(headers, set_cookie);
            for _ in 0..2 {
                let r = serve(&cache, &flights, &up, "/", &HeaderMap::new()).await;
                assert_eq!(x_cache(&r), "MISS", "{headers:?} {set_cookie}");
            }
            assert_eq!(up.calls(), 2, "{headers:?} {set_cookie}");
            assert_eq!(cache.stats().stores, 0);
        }
        let (cache, flights) = (Cache::new(1 << 20), Flights::new());
        let up = Upstream::new(&[("cache-control", "max-age=60")], false);
        let mut auth = HeaderMap::new();
        auth.insert("authorization", HeaderValue::from_static("Basic eDp5"));
        serve(&cache, &flights, &up, "/", &auth).await;
        serve(&cache, &flights, &up, "/", &auth).await;
        assert_eq!((up.calls(), cache.stats().stores), (2, 0));
    }

    /// Spawns `n` concurrent requests while the upstream is held closed,
    /// opens it once all of them are waiting, and returns the responses.
    async fn concurrent(up: Upstream, reqs: Vec<HeaderMap>) -> (Vec<Response<Bytes>>, usize) {
        let n = reqs.len();
        let shared = Arc::new((Cache::new(1 << 20), Flights::new(), up, AtomicUsize::new(0)));
        let mut tasks = JoinSet::new();
        for (i, req) in reqs.into_iter().enumerate() {
            let shared = shared.clone();
            tasks.spawn(async move {
                let (cache, flights, up, entered) = &*shared;
                entered.fetch_add(1, Ordering::SeqCst);
                (i, serve(cache, flights, up, "/", &req).await)
            });
        }
        while shared.3.load(Ordering::SeqCst) < n {
            tokio::task::yield_now().await;
        }
        shared.2.gate.add_permits(Semaphore::MAX_PERMITS);
        let mut responses = timeout(Duration::from_secs(10), tasks.join_all())
            .await
            .unwrap();
        // join_all yields in completion order; callers want request order.
        responses.sort_unstable_by_key(|(i, _)| *i);
        (
            responses.into_iter().map(|(_, r)| r).collect(),
            shared.2.calls(),
        )
    }

    #[tokio::test]
    async fn concurrent_misses_make_one_upstream_request() {
        let up = Upstream::closed(&[("cache-control", "max-age=60")], false);
        let (responses, calls) = concurrent(up, vec![HeaderMap::new(); 50]).await;
        assert_eq!(calls, 1);
        assert!(responses.iter().all(|r| r.body() == "response 1 identity"));
        let misses = responses.iter().filter(|r| x_cache(r) == "MISS").count();
        assert_eq!(misses, 1);
    }

    #[tokio::test]
    async fn coalesced_waiters_never_get_another_clients_cookie() {
        let up = Upstream::closed(&[("cache-control", "max-age=60")], true);
        let (responses, calls) = concurrent(up, vec![HeaderMap::new(); 10]).await;
        assert_eq!(calls, 10);
        let mut cookies: Vec<_> = responses
            .iter()
            .map(|r| r.headers()["set-cookie"].clone())
            .collect();
        cookies.sort_unstable_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
        cookies.dedup();
        assert_eq!(cookies.len(), 10);
    }

    #[tokio::test]
    async fn coalesced_waiters_get_their_own_vary_variant() {
        let up = Upstream::closed(
            &[("cache-control", "max-age=60"), ("vary", "accept-encoding")],
            false,
        );
        let mut gzip = HeaderMap::new();
        gzip.insert("accept-encoding", HeaderValue::from_static("gzip"));
        let reqs = vec![
            gzip.clone(),
            HeaderMap::new(),
            gzip.clone(),
            HeaderMap::new(),
        ];
        let (responses, calls) = concurrent(up, reqs).await;
        for (i, r) in responses.iter().enumerate() {
            let want = if i % 2 == 0 { "gzip" } else { "identity" };
            assert!(
                std::str::from_utf8(r.body()).unwrap().ends_with(want),
                "{i}: {r:?}"
            );
        }
        // One flight for gzip. The identity waiters found no matching
        // variant: the first fetched for itself, the second either did too
        // or found what the first stored.
        assert!((2..=3).contains(&calls), "{calls}");
    }
}
