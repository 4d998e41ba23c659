//! Cache-Control, Expires, Age, Vary and Date as the cache reads them from requests and
//! responses. Input: "name: value" lines; the first byte picks the status and method.
#![no_main]
use std::time::{Duration, SystemTime};

use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use libfuzzer_sys::fuzz_target;
use tandem::dataplane::l7::cache::policy::{
    base_key, request_policy, response_freshness, secondary_key, vary_names,
};

fn headers(text: &[u8]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for line in text.split(|b| *b == b'\n') {
        let Some(colon) = line.iter().position(|b| *b == b':') else {
            continue;
        };
        let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(&line[..colon]),
            HeaderValue::from_bytes(line[colon + 1..].trim_ascii()),
        ) else {
            continue;
        };
        map.append(name, value);
    }
    map
}

fuzz_target!(|data: &[u8]| {
    let Some((&sel, rest)) = data.split_first() else {
        return;
    };
    let status = [200, 301, 404, 206, 500][usize::from(sel % 5)];
    let method = if sel & 0x80 == 0 {
        Method::GET
    } else {
        Method::HEAD
    };
    let (req, resp) = match rest.iter().position(|b| *b == 0) {
        Some(i) => (headers(&rest[..i]), headers(&rest[i + 1..])),
        None => (HeaderMap::new(), headers(rest)),
    };
    let _ = request_policy(&method, &req);
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_780_000_000);
    let status = StatusCode::from_u16(status).expect("listed status");
    if let Some(f) = response_freshness(status, &resp, now) {
        assert!(f.ttl > Duration::ZERO, "stored with no freshness left");
    }
    let names = vary_names(&resp);
    let _ = secondary_key(&names, &req);
    let _ = base_key(&method, "example.test", "/a?b");
});
