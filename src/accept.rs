//! The accept loop every listener shares (L4, L7, admin, metrics).

use std::future::Future;
use std::io;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

const FIRST_BACKOFF: Duration = Duration::from_millis(5);
const MAX_BACKOFF: Duration = Duration::from_millis(500);

/// Accepts connections until a stop token fires. Accept errors never end
/// the loop: EMFILE/ENFILE and friends are logged and backed off
/// (5 ms doubling to 500 ms) so it does not spin while descriptors are
/// exhausted.
pub struct Acceptor {
    backoff: Duration,
}

impl Default for Acceptor {
    fn default() -> Self {
        Acceptor {
            backoff: FIRST_BACKOFF,
        }
    }
}

impl Acceptor {
    /// The next accepted connection, or None once `stop` has fired.
    /// `name` labels the warning (the listener's name).
    pub async fn next<T, Fut>(
        &mut self,
        stop: &CancellationToken,
        name: impl Fn() -> String,
        mut accept: impl FnMut() -> Fut,
    ) -> Option<T>
    where
        Fut: Future<Output = io::Result<T>>,
    {
        loop {
            let r = tokio::select! {
                biased;
                _ = stop.cancelled() => return None,
                r = accept() => r,
            };
            match r {
                Ok(x) => {
                    self.backoff = FIRST_BACKOFF;
                    return Some(x);
                }
                Err(e) => {
                    tracing::warn!(listener = %name(), error = %e, "accept failed");
                    tokio::time::sleep(self.backoff).await;
                    self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
    }
}
