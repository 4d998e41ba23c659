//! L7: the HTTP/1.1 and HTTP/2 reverse proxy.
//!
//! [`router`] picks a route per request (pure), [`headers`] implements
//! proxy header semantics and request-smuggling defences (pure), [`cache`]
//! is the response cache, [`sticky`] the session affinity helpers, and
//! [`server`] the hyper-based engine that drives them.

pub mod cache;
pub mod compress;
pub mod deadline;
pub mod fields;
pub mod framing;
pub mod h1;
pub mod h2guard;
pub mod headers;
pub mod router;
pub mod server;
pub mod sticky;
pub mod upstream;
