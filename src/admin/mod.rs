//! Admin API: HTTP/JSON on a Unix socket (mode 0660, so access is governed
//! by file permissions). `tandem status` and the integration tests read the
//! daemon's state through it.
//!
//! Routes:
//! - `GET  /v1/status`  → [`status::Status`]
//! - `POST /v1/reload`  → re-read and apply the config file; 200 on success,
//!   422 with the list of errors (nothing changed) otherwise.
//! - `POST /v1/backends/{pool}/{backend}/drain|enable|disable` (disable takes
//!   an optional `{"grace": "10s"}`), `PUT /v1/backends/{pool}/{backend}/weight`
//!   with `{"weight": N}` or `{"weight": null}` (back to the configured one).
//! - `PUT /v1/vrrp/{instance}/priority` with `{"priority": N}` or `null`.
//! - `POST /v1/upgrade` → start the binary at the daemon's own path and hand
//!   it every socket and VRRP role (upgrade in place); 200 with the new pid,
//!   422 with the reason (the running daemon keeps serving) otherwise.
//!
//! The same API is available over TCP on `global.admin_listen` with
//! `Authorization: Bearer <global.admin_token>`. `global.metrics_listen`
//! serves `/metrics` (Prometheus), `/` (the status page) and
//! `/status.json`, read-only.
//!
//! Every answer is JSON: `{"ok": true, "message": ...}` or
//! `{"ok": false, "error": ...}` with a 4xx status. The full description is
//! `packaging/openapi.yaml`.

pub mod client;
pub mod control;
pub mod metrics;
pub mod page;
pub mod status;

use std::convert::Infallible;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::UnixListener;
use tokio_util::sync::CancellationToken;

use control::{BackendAction, Control, ControlError};

/// The daemon behind the API.
pub type Ctl = Arc<dyn Control>;

/// Binds the admin socket, replacing a stale file left by a dead daemon but
/// refusing to steal the socket of a live one.
pub fn bind(path: &Path) -> io::Result<UnixListener> {
    if path.exists() {
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            return Err(io::Error::new(
                io::ErrorKind::AddrInUse,
                format!(
                    "{} is in use: another tandem is running with this admin socket",
                    path.display()
                ),
            ));
        }
        std::fs::remove_file(path)?;
    }
    if let Some(dir) = path.parent() {
        if !dir.as_os_str().is_empty() && !dir.exists() {
            std::fs::create_dir_all(dir)?;
        }
    }
    let l = UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))?;
    Ok(l)
}

/// Who may use a connection: the Unix socket is protected by file
/// permissions, a TCP admin listener by a bearer token, and the metrics
/// listener only serves read-only pages.
#[derive(Clone)]
enum Access {
    Admin,
    AdminToken(Arc<String>),
    Metrics,
}

/// Limits of the TCP admin and metrics listeners, which anyone who can
/// reach the port may connect to (before any token is checked): the head
/// must arrive within [`TCP_HEADER_TIMEOUT`] and fit in [`TCP_MAX_HEAD`],
/// one request per connection, at most [`TCP_MAX_CONNS`] at once (more
/// are closed at accept), and no connection lives past [`TCP_MAX_LIFE`].
pub const TCP_HEADER_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);
pub const TCP_MAX_HEAD: usize = 16 * 1024;
pub const TCP_MAX_CONNS: usize = 64;
pub const TCP_MAX_LIFE: std::time::Duration = std::time::Duration::from_secs(30);

fn spawn_conn<S>(stream: S, daemon: Ctl, access: Access)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    spawn_conn_limited(stream, daemon, access, None)
}

fn spawn_conn_limited<S>(
    stream: S,
    daemon: Ctl,
    access: Access,
    slot: Option<tokio::sync::OwnedSemaphorePermit>,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let tcp = slot.is_some();
    tokio::spawn(async move {
        let _slot = slot;
        let svc = hyper::service::service_fn(move |req| {
            let daemon = daemon.clone();
            let access = access.clone();
            async move {
                Ok::<_, Infallible>(match access {
                    Access::Metrics => metrics_route(req, daemon.as_ref()),
                    Access::AdminToken(token) if !authorized(&req, &token) => json(
                        StatusCode::UNAUTHORIZED,
                        r#"{"ok":false,"error":"missing or wrong bearer token"}"#.into(),
                    ),
                    _ => route(req, daemon.as_ref()).await,
                })
            }
        });
        let mut b = hyper::server::conn::http1::Builder::new();
        if tcp {
            b.timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(TCP_HEADER_TIMEOUT)
                .max_buf_size(TCP_MAX_HEAD)
                .keep_alive(false);
            let conn = b.serve_connection(TokioIo::new(stream), svc);
            let _ = tokio::time::timeout(TCP_MAX_LIFE, conn).await;
        } else {
            let _ = b.serve_connection(TokioIo::new(stream), svc).await;
        }
    });
}

/// Constant-time comparison so the token cannot be guessed byte by byte.
fn authorized<B>(req: &Request<B>, token: &str) -> bool {
    let Some(v) = req.headers().get(hyper::header::AUTHORIZATION) else {
        return false;
    };
    let Some(given) = v.to_str().ok().and_then(|v| v.strip_prefix("Bearer ")) else {
        return false;
    };
    let (a, b) = (given.as_bytes(), token.as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

pub async fn serve(listener: UnixListener, daemon: Ctl, stop: CancellationToken) {
    let mut acceptor = crate::dataplane::accept::Acceptor::default();
    while let Some((s, _)) = acceptor
        .next(&stop, || "admin socket".into(), || listener.accept())
        .await
    {
        spawn_conn(s, daemon.clone(), Access::Admin);
    }
}

/// The admin API over TCP (`global.admin_listen`, token required) or the
/// metrics listener (`global.metrics_listen`: /metrics, the status page).
pub async fn serve_tcp(
    listener: tokio::net::TcpListener,
    daemon: Ctl,
    stop: CancellationToken,
    token: Option<String>,
) {
    let access = match token {
        Some(t) => Access::AdminToken(Arc::new(t)),
        None => Access::Metrics,
    };
    let what = match access {
        Access::Metrics => "metrics",
        _ => "admin",
    };
    let slots = Arc::new(tokio::sync::Semaphore::new(TCP_MAX_CONNS));
    let mut acceptor = crate::dataplane::accept::Acceptor::default();
    let mut warned = false;
    while let Some((s, peer)) = acceptor
        .next(&stop, || what.into(), || listener.accept())
        .await
    {
        match slots.clone().try_acquire_owned() {
            Ok(slot) => {
                warned = false;
                spawn_conn_limited(s, daemon.clone(), access.clone(), Some(slot));
            }
            // Dropping the stream closes it: the listener stays usable
            // for its own operators once the flood's heads time out.
            Err(_) => {
                if !warned {
                    tracing::warn!(listener = what, client = %peer, limit = TCP_MAX_CONNS, "connection limit reached: closing new connections");
                    warned = true;
                }
            }
        }
    }
}

fn text(code: StatusCode, content_type: &'static str, body: String) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = code;
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static(content_type),
    );
    r.headers_mut().insert(
        hyper::header::CACHE_CONTROL,
        hyper::header::HeaderValue::from_static("no-store"),
    );
    r
}

fn metrics_route(req: Request<Incoming>, daemon: &dyn Control) -> Response<Full<Bytes>> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return text(
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain",
            "read-only\n".into(),
        );
    }
    type Render = fn(&status::Status) -> String;
    let (content_type, render): (&'static str, Render) = match req.uri().path() {
        "/metrics" => ("text/plain; version=0.0.4; charset=utf-8", metrics::render),
        "/status.json" => ("application/json", |s| {
            serde_json::to_string(s).unwrap_or_default()
        }),
        "/" if req.uri().query() == Some("fragment=1") => {
            ("text/html; charset=utf-8", page::fragment)
        }
        "/" => ("text/html; charset=utf-8", page::page),
        _ => return text(StatusCode::NOT_FOUND, "text/plain", "not found\n".into()),
    };
    // The status snapshot walks every pool and backend: only for a page
    // that shows it.
    text(StatusCode::OK, content_type, render(&daemon.status()))
}

fn json(code: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = code;
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    r
}

/// Reads a small body (the API's bodies are a few bytes; 64 KiB at most).
async fn read_body(req: Request<Incoming>) -> Result<Bytes, String> {
    use http_body_util::BodyExt;
    let limited = http_body_util::Limited::new(req.into_body(), 64 * 1024);
    Ok(limited
        .collect()
        .await
        .map_err(|e| format!("cannot read body: {e}"))?
        .to_bytes())
}

/// A JSON body; blank means `Null`. Pure, so the fuzzer drives it.
pub fn parse_json_body(bytes: &[u8]) -> Result<serde_json::Value, String> {
    if bytes.iter().all(|b| b.is_ascii_whitespace()) {
        return Ok(serde_json::Value::Null);
    }
    serde_json::from_slice(bytes).map_err(|e| format!("body is not JSON: {e}"))
}

/// A typed request body: empty means every field absent; unknown fields are refused.
pub fn parse_typed_body<T: serde::de::DeserializeOwned + Default>(
    bytes: &[u8],
) -> Result<T, String> {
    match parse_json_body(bytes)? {
        serde_json::Value::Null => Ok(T::default()),
        v => serde_json::from_value(v).map_err(|e| format!("bad request body: {e}")),
    }
}

/// What `{method} /v1/backends/{pool}/{backend}/{action}` with `body` asks for, or the
/// status and message to refuse it with.
pub fn backend_action(
    method: &Method,
    action: &str,
    body: &[u8],
) -> Result<BackendAction, (StatusCode, String)> {
    let bad = |e: String| (StatusCode::BAD_REQUEST, e);
    match (method, action) {
        // The body of drain and enable is not used, but it must be empty or JSON.
        (&Method::POST, "drain") => parse_json_body(body)
            .map(|_| BackendAction::Drain)
            .map_err(bad),
        (&Method::POST, "enable") => parse_json_body(body)
            .map(|_| BackendAction::Enable)
            .map_err(bad),
        (&Method::POST, "disable") => {
            let req: control::DisableRequest = parse_typed_body(body).map_err(bad)?;
            let grace = match req.grace {
                None => std::time::Duration::from_secs(10),
                Some(g) => crate::config::duration::parse(&g).map_err(bad)?,
            };
            Ok(BackendAction::Disable { grace })
        }
        (&Method::PUT, "weight") => parse_typed_body::<control::WeightRequest>(body)
            .map(|b| BackendAction::Weight(b.weight.map(|w| w.min(u32::MAX as u64) as u32)))
            .map_err(bad),
        (_, "drain" | "enable" | "disable") => Err((
            StatusCode::METHOD_NOT_ALLOWED,
            format!("{action} wants POST"),
        )),
        (_, "weight") => Err((StatusCode::METHOD_NOT_ALLOWED, "weight wants PUT".into())),
        _ => Err((
            StatusCode::NOT_FOUND,
            format!("unknown backend operation {action:?}"),
        )),
    }
}

/// `PUT /v1/vrrp/{instance}/priority` body: `None` goes back to the configured priority.
pub fn priority_body(body: &[u8]) -> Result<Option<u8>, String> {
    match parse_typed_body::<control::PriorityRequest>(body)?.priority {
        None => Ok(None),
        Some(p) => u8::try_from(p)
            .ok()
            .map(Some)
            .ok_or_else(|| "priority must be 1..=255 or null".to_string()),
    }
}

fn error(code: StatusCode, msg: impl std::fmt::Display) -> Response<Full<Bytes>> {
    json(
        code,
        serde_json::json!({ "ok": false, "error": msg.to_string() }).to_string(),
    )
}

fn bad_request(msg: impl std::fmt::Display) -> Response<Full<Bytes>> {
    error(StatusCode::BAD_REQUEST, msg)
}

fn result(r: Result<String, ControlError>) -> Response<Full<Bytes>> {
    match r {
        Ok(msg) => json(
            StatusCode::OK,
            serde_json::json!({ "ok": true, "message": msg }).to_string(),
        ),
        Err(e) => error(e.status(), e),
    }
}

async fn backend_route(
    req: Request<Incoming>,
    daemon: &dyn Control,
    pool: &str,
    backend: &str,
    action: &str,
) -> Response<Full<Bytes>> {
    let method = req.method().clone();
    let body = match read_body(req).await {
        Ok(b) => b,
        Err(e) => return bad_request(e),
    };
    match backend_action(&method, action, &body) {
        Ok(action) => result(daemon.backend_action(pool, backend, action)),
        Err((code, msg)) => error(code, msg),
    }
}

async fn route(req: Request<Incoming>, daemon: &dyn Control) -> Response<Full<Bytes>> {
    let path = req.uri().path().to_string();
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    match parts.as_slice() {
        ["v1", "backends", pool, backend, action] => {
            return backend_route(req, daemon, pool, backend, action).await
        }
        ["v1", "anycast", name, "drain"] if req.method() == Method::POST => {
            return result(daemon.anycast_drain(name, true))
        }
        ["v1", "anycast", name, "enable"] if req.method() == Method::POST => {
            return result(daemon.anycast_drain(name, false))
        }
        ["v1", "vrrp", instance, "priority"] if req.method() == Method::PUT => {
            let prio = match read_body(req).await.and_then(|b| priority_body(&b)) {
                Ok(p) => p,
                Err(e) => return bad_request(e),
            };
            return result(daemon.vrrp_priority(instance, prio).await);
        }
        _ => {}
    }
    match (req.method(), req.uri().path()) {
        (&Method::GET, "/v1/status") => {
            let s = daemon.status();
            match serde_json::to_string_pretty(&s) {
                Ok(b) => json(StatusCode::OK, b),
                Err(e) => json(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    serde_json::json!({ "error": e.to_string() }).to_string(),
                ),
            }
        }
        (&Method::POST, "/v1/reload") => match daemon.reload().await {
            Ok(control::Reloaded {
                generation,
                changes,
            }) => json(
                StatusCode::OK,
                serde_json::json!({ "ok": true, "generation": generation, "changes": changes })
                    .to_string(),
            ),
            Err(errors) => json(
                StatusCode::UNPROCESSABLE_ENTITY,
                serde_json::json!({ "ok": false, "errors": errors }).to_string(),
            ),
        },
        (&Method::POST, "/v1/upgrade") => match daemon.upgrade().await {
            Ok(u) => json(
                StatusCode::OK,
                serde_json::json!({
                    "ok": true,
                    "message": format!("upgraded: pid {} → {} (version {})", u.old_pid, u.new_pid, u.version),
                    "old_pid": u.old_pid,
                    "new_pid": u.new_pid,
                    "version": u.version,
                })
                .to_string(),
            ),
            Err(e) => json(
                e.status(),
                serde_json::json!({ "ok": false, "error": e.to_string() }).to_string(),
            ),
        },
        (_, "/v1/status") | (_, "/v1/reload") | (_, "/v1/upgrade") => json(
            StatusCode::METHOD_NOT_ALLOWED,
            r#"{"error":"method not allowed"}"#.into(),
        ),
        _ => json(StatusCode::NOT_FOUND, r#"{"error":"not found"}"#.into()),
    }
}
