//! Whether to announce an anycast address right now: a pure function of what the controller
//! observed, table-tested.

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inputs {
    /// tandem is stopping: withdraw, then the listeners drain.
    pub shutting_down: bool,
    /// An operator drained this address (`tandem anycast drain`).
    pub drained: bool,
    /// The first configured pool that has no serving backend, if any.
    pub pool_down: Option<String>,
    /// Since when every pool has been serving without interruption.
    pub healthy_since: Option<Instant>,
    /// The address could not be put on its interface, or the announcer failed.
    pub error: Option<String>,
}

/// Why an address is (not) announced; shown in status and logs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum Reason {
    Announced,
    ShuttingDown,
    Drained,
    PoolDown { pool: String },
    Settling { remaining_ms: u64 },
    Error { message: String },
}

impl Reason {
    pub fn announced(&self) -> bool {
        *self == Reason::Announced
    }

    pub fn text(&self) -> String {
        match self {
            Reason::Announced => "announced".into(),
            Reason::ShuttingDown => "withdrawn: shutting down".into(),
            Reason::Drained => "withdrawn: drained by an operator".into(),
            Reason::PoolDown { pool } => format!("withdrawn: pool {pool} has no serving backend"),
            Reason::Settling { remaining_ms } => {
                format!("withdrawn: pools healthy, announcing in {remaining_ms} ms")
            }
            Reason::Error { message } => format!("withdrawn: {message}"),
        }
    }
}

/// Precedence: an operator's or the daemon's own decision first, then health, then the
/// mechanism. `announce_delay` applies to every (re-)announcement, also at start-up, so a route
/// never flaps faster than that.
pub fn decide(i: &Inputs, announce_delay: Duration, now: Instant) -> Reason {
    if i.shutting_down {
        return Reason::ShuttingDown;
    }
    if i.drained {
        return Reason::Drained;
    }
    if let Some(pool) = &i.pool_down {
        return Reason::PoolDown { pool: pool.clone() };
    }
    if let Some(message) = &i.error {
        return Reason::Error {
            message: message.clone(),
        };
    }
    let healthy_for = i
        .healthy_since
        .map(|t| now.saturating_duration_since(t))
        .unwrap_or_default();
    if healthy_for < announce_delay {
        return Reason::Settling {
            remaining_ms: (announce_delay - healthy_for).as_millis() as u64,
        };
    }
    Reason::Announced
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table() {
        let t0 = Instant::now();
        let s = |secs: u64| t0 + Duration::from_secs(secs);
        let ok = Inputs {
            shutting_down: false,
            drained: false,
            pool_down: None,
            healthy_since: Some(t0),
            error: None,
        };
        let delay = Duration::from_secs(2);
        let down = Some("web".to_string());
        let cases: Vec<(Inputs, Instant, Reason)> = vec![
            (ok.clone(), s(5), Reason::Announced),
            (ok.clone(), s(2), Reason::Announced),
            (ok.clone(), s(1), Reason::Settling { remaining_ms: 1000 }),
            (ok.clone(), s(0), Reason::Settling { remaining_ms: 2000 }),
            (
                Inputs {
                    healthy_since: None,
                    ..ok.clone()
                },
                s(9),
                Reason::Settling { remaining_ms: 2000 },
            ),
            (
                Inputs {
                    pool_down: down.clone(),
                    ..ok.clone()
                },
                s(5),
                Reason::PoolDown { pool: "web".into() },
            ),
            (
                Inputs {
                    drained: true,
                    ..ok.clone()
                },
                s(5),
                Reason::Drained,
            ),
            (
                Inputs {
                    drained: true,
                    pool_down: down.clone(),
                    ..ok.clone()
                },
                s(5),
                Reason::Drained,
            ),
            (
                Inputs {
                    shutting_down: true,
                    drained: true,
                    ..ok.clone()
                },
                s(5),
                Reason::ShuttingDown,
            ),
            (
                Inputs {
                    shutting_down: true,
                    pool_down: down.clone(),
                    ..ok.clone()
                },
                s(5),
                Reason::ShuttingDown,
            ),
            (
                Inputs {
                    error: Some("no lo".into()),
                    ..ok.clone()
                },
                s(5),
                Reason::Error {
                    message: "no lo".into(),
                },
            ),
            (
                Inputs {
                    error: Some("x".into()),
                    pool_down: down,
                    ..ok.clone()
                },
                s(5),
                Reason::PoolDown { pool: "web".into() },
            ),
        ];
        for (i, (inputs, now, want)) in cases.into_iter().enumerate() {
            assert_eq!(decide(&inputs, delay, now), want, "case {i}: {inputs:?}");
        }
        assert_eq!(
            decide(
                &Inputs {
                    healthy_since: Some(s(9)),
                    ..ok
                },
                Duration::ZERO,
                s(9)
            ),
            Reason::Announced
        );
    }

    #[test]
    fn only_announced_is_announced() {
        assert!(Reason::Announced.announced());
        for r in [
            Reason::Drained,
            Reason::ShuttingDown,
            Reason::Settling { remaining_ms: 1 },
        ] {
            assert!(!r.announced());
            assert!(r.text().starts_with("withdrawn"));
        }
    }
}
