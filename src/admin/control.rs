//! What the admin API asks of the daemon, as a trait: the API (routing, bodies, status codes)
//! lives here, the daemon implements [`Control`], and admin never imports the runtime. A new
//! admin command is a method here, a route in `admin/mod.rs` and its implementation.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use hyper::StatusCode;
use serde::Deserialize;

use super::status::Status;

/// A future the admin API awaits (boxed: the trait stays object-safe and `Send`).
pub type Reply<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Why a control request failed; each maps to one HTTP status.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ControlError {
    /// A value out of range or malformed (400).
    #[error("{0}")]
    Invalid(String),
    /// No such pool, backend, instance or anycast service (404).
    #[error("{0}")]
    NotFound(String),
    /// The request is valid but the daemon's state forbids it now (409).
    #[error("{0}")]
    Conflict(String),
    /// The new process of an upgrade refused or failed to start; the running one keeps serving (422).
    #[error("{0}")]
    Refused(String),
}

impl ControlError {
    pub fn status(&self) -> StatusCode {
        match self {
            ControlError::Invalid(_) => StatusCode::BAD_REQUEST,
            ControlError::NotFound(_) => StatusCode::NOT_FOUND,
            ControlError::Conflict(_) => StatusCode::CONFLICT,
            ControlError::Refused(_) => StatusCode::UNPROCESSABLE_ENTITY,
        }
    }
}

/// A runtime change to one backend (`tandem backend ...`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendAction {
    /// No new connections; open ones finish.
    Drain,
    Enable,
    /// No new connections; open ones are closed after `grace`.
    Disable {
        grace: Duration,
    },
    /// Runtime weight, or None for the configured one.
    Weight(Option<u32>),
}

/// A successful reload: the generation now in use and what changed, one line each.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reloaded {
    pub generation: u64,
    pub changes: Vec<String>,
}

/// A finished upgrade in place: the process that now serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upgraded {
    pub old_pid: u32,
    pub new_pid: u32,
    pub version: String,
}

/// `POST /v1/backends/{pool}/{backend}/disable` body.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DisableRequest {
    /// A duration such as "30s"; 10 s when absent.
    pub grace: Option<String>,
}

/// `PUT /v1/backends/{pool}/{backend}/weight` body.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WeightRequest {
    /// None: back to the configured weight.
    pub weight: Option<u64>,
}

/// `PUT /v1/vrrp/{instance}/priority` body.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PriorityRequest {
    /// None: back to the configured priority.
    pub priority: Option<u64>,
}

/// The daemon as the admin API sees it.
pub trait Control: Send + Sync + 'static {
    fn status(&self) -> Status;
    /// Re-reads the config file; on error nothing changed and every error is listed.
    fn reload(&self) -> Reply<'_, Result<Reloaded, Vec<String>>>;
    fn backend_action(
        &self,
        pool: &str,
        backend: &str,
        action: BackendAction,
    ) -> Result<String, ControlError>;
    fn vrrp_priority<'a>(
        &'a self,
        instance: &'a str,
        priority: Option<u8>,
    ) -> Reply<'a, Result<String, ControlError>>;
    /// Withdraws (`drain = true`) or re-announces one `[[anycast]]` address.
    fn anycast_drain(&self, name: &str, drain: bool) -> Result<String, ControlError>;
    /// Hands every socket and role to a new process of the binary at our path, then retires.
    fn upgrade(&self) -> Reply<'_, Result<Upgraded, ControlError>>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_error_has_its_status() {
        assert_eq!(ControlError::Invalid("x".into()).status(), 400);
        assert_eq!(ControlError::NotFound("x".into()).status(), 404);
        assert_eq!(ControlError::Conflict("x".into()).status(), 409);
        assert_eq!(ControlError::Refused("x".into()).status(), 422);
        assert_eq!(
            ControlError::NotFound("no pool".into()).to_string(),
            "no pool"
        );
    }

    #[test]
    fn bodies_are_typed_and_strict() {
        let w: WeightRequest = serde_json::from_str(r#"{"weight": 5}"#).unwrap();
        assert_eq!(w.weight, Some(5));
        let w: WeightRequest = serde_json::from_str(r#"{"weight": null}"#).unwrap();
        assert_eq!(w.weight, None);
        assert!(serde_json::from_str::<WeightRequest>(r#"{"weight": "5"}"#).is_err());
        assert!(serde_json::from_str::<WeightRequest>(r#"{"wieght": 5}"#).is_err());
        let p: PriorityRequest = serde_json::from_str("{}").unwrap();
        assert_eq!(p.priority, None);
        let d: DisableRequest = serde_json::from_str(r#"{"grace": "30s"}"#).unwrap();
        assert_eq!(d.grace.as_deref(), Some("30s"));
    }
}
