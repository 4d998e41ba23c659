//! Response compression (`compress = true` on a route): gzip or brotli by
//! the client's Accept-Encoding, for text-like content types, streamed as
//! the backend's body arrives. Never for responses that are already
//! encoded, marked `no-transform`, partial, bodiless or too small.

use std::pin::Pin;

use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Response, StatusCode};
use http_body_util::BodyExt;

use super::upstream::{Body, BoxError};
pub use crate::config::{CompressConfig, DEFAULT_COMPRESS_TYPES as DEFAULT_TYPES};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Gzip,
    Brotli,
}

impl Encoding {
    pub fn token(self) -> &'static str {
        match self {
            Encoding::Gzip => "gzip",
            Encoding::Brotli => "br",
        }
    }
}

/// The encoding to use for a request's Accept-Encoding values: the
/// highest q among br and gzip (`*` stands for both), brotli on a tie;
/// None when neither is acceptable (q=0 or absent).
pub fn choose<'a>(accept: impl Iterator<Item = &'a [u8]>) -> Option<Encoding> {
    let (mut br, mut gz, mut star): (Option<f32>, Option<f32>, Option<f32>) = (None, None, None);
    for v in accept {
        let Ok(v) = std::str::from_utf8(v) else {
            continue;
        };
        for item in v.split(',') {
            let mut parts = item.split(';');
            let coding = parts.next().unwrap_or("").trim().to_ascii_lowercase();
            let mut q = 1.0f32;
            for p in parts {
                if let Some((k, val)) = p.split_once('=') {
                    if k.trim().eq_ignore_ascii_case("q") {
                        q = val.trim().parse().unwrap_or(0.0);
                    }
                }
            }
            let slot = match coding.as_str() {
                "br" => &mut br,
                "gzip" | "x-gzip" => &mut gz,
                "*" => &mut star,
                _ => continue,
            };
            *slot = Some(slot.map_or(q, |old: f32| old.max(q)));
        }
    }
    let br = br.or(star).unwrap_or(0.0);
    let gz = gz.or(star).unwrap_or(0.0);
    if br <= 0.0 && gz <= 0.0 {
        None
    } else if br >= gz {
        Some(Encoding::Brotli)
    } else {
        Some(Encoding::Gzip)
    }
}

fn type_matches(cfg: &CompressConfig, content_type: &str) -> bool {
    let ct = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    // Server-sent events must flush per event; compression would buffer them.
    if ct.is_empty() || ct == "text/event-stream" {
        return false;
    }
    cfg.types.iter().any(|t| {
        if t.ends_with('/') {
            ct.starts_with(t.as_str())
        } else {
            ct == *t
        }
    })
}

/// Whether a response to a request with `method` may be compressed.
pub fn compressible(
    cfg: &CompressConfig,
    method: &Method,
    status: StatusCode,
    h: &HeaderMap,
) -> bool {
    if *method == Method::HEAD
        || !status.is_success()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::PARTIAL_CONTENT
        || h.contains_key(header::CONTENT_RANGE)
    {
        return false;
    }
    let encoded = h
        .get_all(header::CONTENT_ENCODING)
        .iter()
        .any(|v| !v.as_bytes().eq_ignore_ascii_case(b"identity"));
    let no_transform = h.get_all(header::CACHE_CONTROL).iter().any(|v| {
        v.to_str().is_ok_and(|s| {
            s.split(',')
                .any(|d| d.trim().eq_ignore_ascii_case("no-transform"))
        })
    });
    if encoded || no_transform {
        return false;
    }
    let small = h
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .is_some_and(|n| n < cfg.min_bytes);
    !small
        && h.get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|ct| type_matches(cfg, ct))
}

/// Adds `Accept-Encoding` to Vary (a cache in front of us must keep the
/// variants apart), unless Vary already covers it.
pub fn add_vary(h: &mut HeaderMap) {
    let covered = h.get_all(header::VARY).iter().any(|v| {
        v.to_str().is_ok_and(|s| {
            s.split(',')
                .any(|t| t.trim() == "*" || t.trim().eq_ignore_ascii_case("accept-encoding"))
        })
    });
    if !covered {
        h.append(header::VARY, HeaderValue::from_static("accept-encoding"));
    }
}

/// The response with its body compressed on the fly, or as it was.
pub fn apply(
    cfg: &CompressConfig,
    method: &Method,
    enc: Option<Encoding>,
    resp: Response<Body>,
) -> Response<Body> {
    if !compressible(cfg, method, resp.status(), resp.headers()) {
        return resp;
    }
    let (mut parts, body) = resp.into_parts();
    // Whatever we do, the representation depends on Accept-Encoding.
    add_vary(&mut parts.headers);
    let Some(enc) = enc else {
        return Response::from_parts(parts, body);
    };
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.insert(
        header::CONTENT_ENCODING,
        HeaderValue::from_static(enc.token()),
    );
    // A strong validator names exact bytes; ours are different bytes.
    if let Some(etag) = parts.headers.get(header::ETAG).cloned() {
        if !etag.as_bytes().starts_with(b"W/") {
            let mut weak = b"W/".to_vec();
            weak.extend_from_slice(etag.as_bytes());
            if let Ok(v) = HeaderValue::from_bytes(&weak) {
                parts.headers.insert(header::ETAG, v);
            }
        }
    }
    Response::from_parts(parts, encode(body, enc))
}

fn encode(body: Body, enc: Encoding) -> Body {
    use futures::TryStreamExt;
    let data = http_body_util::BodyStream::new(body)
        .try_filter_map(|frame| async move { Ok(frame.into_data().ok()) })
        .map_err(std::io::Error::other);
    let reader = tokio_util::io::StreamReader::new(data);
    let out: Pin<Box<dyn tokio::io::AsyncRead + Send + Sync>> = match enc {
        Encoding::Gzip => Box::pin(
            async_compression::tokio::bufread::GzipEncoder::with_quality(
                reader,
                async_compression::Level::Default,
            ),
        ),
        // Quality 4: most of brotli's gain at a gzip-like CPU cost
        // (the library default of 11 is meant for static assets).
        Encoding::Brotli => Box::pin(
            async_compression::tokio::bufread::BrotliEncoder::with_quality(
                reader,
                async_compression::Level::Precise(4),
            ),
        ),
    };
    let frames = tokio_util::io::ReaderStream::new(out)
        .map_ok(hyper::body::Frame::data)
        .map_err(|e| Box::new(e) as BoxError);
    http_body_util::StreamBody::new(frames).boxed()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ch(v: &[&str]) -> Option<Encoding> {
        choose(v.iter().map(|s| s.as_bytes()))
    }

    #[test]
    fn accept_encoding_negotiation() {
        assert_eq!(ch(&[]), None);
        assert_eq!(ch(&["identity"]), None);
        assert_eq!(ch(&["gzip"]), Some(Encoding::Gzip));
        assert_eq!(ch(&["gzip, deflate, br"]), Some(Encoding::Brotli));
        assert_eq!(ch(&["br;q=0.5, gzip;q=0.8"]), Some(Encoding::Gzip));
        assert_eq!(ch(&["br;q=0", "gzip"]), Some(Encoding::Gzip));
        assert_eq!(ch(&["*"]), Some(Encoding::Brotli));
        assert_eq!(ch(&["*;q=0.1, br;q=0"]), Some(Encoding::Gzip));
        assert_eq!(ch(&["gzip;q=0, br;q=0"]), None);
        assert_eq!(ch(&["GZIP ; Q=1"]), Some(Encoding::Gzip));
        assert_eq!(ch(&["x-gzip"]), Some(Encoding::Gzip));
        assert_eq!(ch(&["gzip;q=abc"]), None);
    }

    fn h(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut m = HeaderMap::new();
        for (k, v) in pairs {
            m.append(
                http::HeaderName::from_bytes(k.as_bytes()).expect("name"),
                HeaderValue::from_str(v).expect("value"),
            );
        }
        m
    }

    #[test]
    fn what_is_compressible() {
        let c = CompressConfig::default();
        let ok = StatusCode::OK;
        let get = Method::GET;
        let html = [("content-type", "text/html; charset=utf-8")];
        assert!(compressible(&c, &get, ok, &h(&html)));
        assert!(compressible(
            &c,
            &get,
            ok,
            &h(&[("content-type", "application/json")])
        ));
        assert!(!compressible(
            &c,
            &get,
            ok,
            &h(&[("content-type", "image/png")])
        ));
        assert!(!compressible(
            &c,
            &get,
            ok,
            &h(&[("content-type", "text/event-stream")])
        ));
        assert!(
            !compressible(&c, &get, ok, &h(&[])),
            "no type: unknown content"
        );
        assert!(!compressible(&c, &Method::HEAD, ok, &h(&html)));
        assert!(!compressible(&c, &get, StatusCode::NOT_MODIFIED, &h(&html)));
        assert!(!compressible(
            &c,
            &get,
            StatusCode::PARTIAL_CONTENT,
            &h(&html)
        ));
        let with = |extra: (&str, &str)| {
            let mut v = html.to_vec();
            v.push(extra);
            compressible(&c, &get, ok, &h(&v))
        };
        assert!(!with(("content-encoding", "gzip")));
        assert!(with(("content-encoding", "identity")));
        assert!(!with(("cache-control", "public, No-Transform")));
        assert!(!with(("content-length", "100")), "below min_bytes");
        assert!(with(("content-length", "1000")));
        let only_json = CompressConfig {
            types: vec!["application/json".into()],
            min_bytes: 0,
        };
        assert!(!compressible(&only_json, &get, ok, &h(&html)));
    }

    #[test]
    fn vary_is_added_once() {
        let mut m = h(&[("vary", "Cookie")]);
        add_vary(&mut m);
        add_vary(&mut m);
        let all: Vec<_> = m.get_all(header::VARY).iter().collect();
        assert_eq!(all.len(), 2);
        let mut star = h(&[("vary", "*")]);
        add_vary(&mut star);
        assert_eq!(star.get_all(header::VARY).iter().count(), 1);
    }

    #[tokio::test]
    async fn bodies_round_trip_through_both_encoders() {
        use async_compression::tokio::bufread::{BrotliDecoder, GzipDecoder};
        use tokio::io::AsyncReadExt;
        let text = "hello, compressed world\n".repeat(500);
        for enc in [Encoding::Gzip, Encoding::Brotli] {
            let body = http_body_util::Full::new(bytes::Bytes::from(text.clone()))
                .map_err(|never| match never {})
                .boxed();
            let resp = Response::builder()
                .header("content-type", "text/plain")
                .header("content-length", text.len().to_string())
                .header("etag", "\"abc\"")
                .body(body)
                .expect("resp");
            let r = apply(&CompressConfig::default(), &Method::GET, Some(enc), resp);
            assert_eq!(r.headers()["content-encoding"], enc.token());
            assert!(r.headers().get("content-length").is_none());
            assert_eq!(r.headers()["etag"], "W/\"abc\"");
            assert_eq!(r.headers()["vary"], "accept-encoding");
            let wire = r.into_body().collect().await.expect("body").to_bytes();
            assert!(wire.len() < text.len() / 5, "{} bytes", wire.len());
            let mut out = String::new();
            match enc {
                Encoding::Gzip => GzipDecoder::new(&wire[..]).read_to_string(&mut out).await,
                Encoding::Brotli => BrotliDecoder::new(&wire[..]).read_to_string(&mut out).await,
            }
            .expect("decode");
            assert_eq!(out, text);
        }
    }
}
