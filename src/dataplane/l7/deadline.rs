//! A client that stops reading must not hold its connection (and the
//! response bytes queued for it) forever: every write to the client that
//! cannot make progress for the listener's `idle_timeout` fails with
//! `TimedOut`, which ends the connection on every path (HTTP/1 fast path,
//! hyper's HTTP/2, TLS underneath both).
//!
//! The timer is created the first time a write has to wait and re-armed
//! after that, so writes that complete at once (the fast path) cost nothing.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Sleep;

pub struct SendDeadline<S> {
    inner: S,
    limit: Duration,
    timer: Option<Pin<Box<Sleep>>>,
    /// A write is waiting and `timer` runs for it.
    waiting: bool,
}

impl<S> SendDeadline<S> {
    pub fn new(inner: S, limit: Duration) -> SendDeadline<S> {
        SendDeadline {
            inner,
            limit,
            timer: None,
            waiting: false,
        }
    }

    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// Runs `op`; while it keeps returning `Pending`, the clock that started
    /// at the first `Pending` runs down and then ends the wait with `TimedOut`.
    fn bounded<T>(
        &mut self,
        cx: &mut Context<'_>,
        op: impl FnOnce(Pin<&mut S>, &mut Context<'_>) -> Poll<io::Result<T>>,
    ) -> Poll<io::Result<T>>
    where
        S: Unpin,
    {
        match op(Pin::new(&mut self.inner), cx) {
            Poll::Ready(r) => {
                self.waiting = false;
                Poll::Ready(r)
            }
            Poll::Pending => {
                let deadline = tokio::time::Instant::now() + self.limit;
                let timer = match &mut self.timer {
                    Some(t) => {
                        if !self.waiting {
                            t.as_mut().reset(deadline);
                        }
                        t
                    }
                    None => self
                        .timer
                        .insert(Box::pin(tokio::time::sleep_until(deadline))),
                };
                self.waiting = true;
                match timer.as_mut().poll(cx) {
                    Poll::Ready(()) => {
                        self.waiting = false;
                        Poll::Ready(Err(io::Error::new(
                            io::ErrorKind::TimedOut,
                            "the client stopped reading",
                        )))
                    }
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for SendDeadline<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for SendDeadline<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.bounded(cx, |s, cx| s.poll_write(cx, buf))
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.bounded(cx, |s, cx| s.poll_write_vectored(cx, bufs))
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.bounded(cx, |s, cx| s.poll_flush(cx))
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.bounded(cx, |s, cx| s.poll_shutdown(cx))
    }
}

impl<S: super::h1::ReadReady> super::h1::ReadReady for SendDeadline<S> {
    fn poll_read_ready(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.inner.poll_read_ready(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn a_reader_that_stops_ends_the_write_and_one_that_reads_never_does() {
        let (a, mut b) = tokio::io::duplex(1024);
        let limit = Duration::from_millis(300);
        let mut w = SendDeadline::new(a, limit);
        // Progress, however slow, keeps the connection: 10 gaps of 200 ms.
        let reader = tokio::spawn(async move {
            let mut buf = vec![0u8; 1024];
            for _ in 0..10 {
                tokio::time::sleep(Duration::from_millis(200)).await;
                if b.read(&mut buf).await.unwrap_or(0) == 0 {
                    break;
                }
            }
            b
        });
        let chunk = vec![1u8; 1024];
        for i in 0..10 {
            w.write_all(&chunk)
                .await
                .unwrap_or_else(|e| panic!("write {i}: {e}"));
        }
        let _b = reader.await.expect("reader");
        // Nobody reads any more: the write waits the limit, then fails.
        w.write_all(&chunk).await.expect("fills the pipe");
        let t0 = tokio::time::Instant::now();
        let e = w.write_all(&chunk).await.expect_err("stalled");
        assert_eq!(e.kind(), io::ErrorKind::TimedOut);
        let waited = t0.elapsed();
        assert!(waited >= limit && waited < limit * 3, "waited {waited:?}");
    }
}
