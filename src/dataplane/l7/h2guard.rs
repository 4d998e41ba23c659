//! Watches the frames an HTTP/2 client sends for floods that cost us work
//! without asking for any: rapid reset (CVE-2023-44487), CONTINUATION
//! floods, SETTINGS/PING floods, empty DATA frames. The h2 crate bounds
//! memory for each of them; this bounds the CPU and names the offender, so
//! the connection is closed and counted instead of served for as long as
//! the client likes.
//!
//! Pure code over the client's byte stream: it reads frame headers (RFC 9113
//! §4.1) and skips payloads, so its cost is a few comparisons per frame.

use std::time::{Duration, Instant};

const PREFACE_LEN: usize = 24;
const HEADER_LEN: usize = 9;

const DATA: u8 = 0x0;
const HEADERS: u8 = 0x1;
const PRIORITY: u8 = 0x2;
const RST_STREAM: u8 = 0x3;
const SETTINGS: u8 = 0x4;
const PING: u8 = 0x6;
const CONTINUATION: u8 = 0x9;

const END_STREAM: u8 = 0x1;
const ACK: u8 = 0x1;
const END_HEADERS: u8 = 0x4;

/// Cheap frames a client may send in a burst before it must slow down: far
/// above what a browser or gRPC client sends (a few SETTINGS and PINGs per
/// connection, a cancelled stream now and then), far below a flood.
const BURST: f64 = 1000.0;
/// Sustained rate of cheap frames allowed per second once the burst is spent.
const PER_SECOND: f64 = 200.0;
/// CONTINUATION frames one header block may span: 64 × 16 KiB frames is far
/// past any header list the server accepts.
const MAX_CONTINUATIONS: u32 = 64;

/// Why a connection was judged abusive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Abuse {
    /// Too many cheap frames (RST_STREAM, SETTINGS, PING, PRIORITY, empty
    /// DATA or CONTINUATION) too fast.
    ControlFlood,
    /// One header block split over too many CONTINUATION frames.
    ContinuationFlood,
}

impl Abuse {
    pub fn reason(self) -> &'static str {
        match self {
            Abuse::ControlFlood => "h2_control_flood",
            Abuse::ContinuationFlood => "h2_continuation_flood",
        }
    }
}

#[derive(Debug)]
pub struct FrameGuard {
    /// Preface bytes still to skip.
    preface: usize,
    header: [u8; HEADER_LEN],
    have: usize,
    /// Payload bytes of the current frame still to skip.
    skip: usize,
    continuations: u32,
    tokens: f64,
    refilled: Instant,
}

impl FrameGuard {
    /// A guard for a client connection whose first bytes are the preface.
    pub fn new(now: Instant) -> FrameGuard {
        FrameGuard {
            preface: PREFACE_LEN,
            header: [0; HEADER_LEN],
            have: 0,
            skip: 0,
            continuations: 0,
            tokens: BURST,
            refilled: now,
        }
    }

    /// Follows `bytes`, the next bytes the client sent.
    pub fn feed(&mut self, mut bytes: &[u8], now: Instant) -> Result<(), Abuse> {
        while !bytes.is_empty() {
            if self.preface > 0 {
                let n = self.preface.min(bytes.len());
                self.preface -= n;
                bytes = &bytes[n..];
                continue;
            }
            if self.skip > 0 {
                let n = self.skip.min(bytes.len());
                self.skip -= n;
                bytes = &bytes[n..];
                continue;
            }
            let n = (HEADER_LEN - self.have).min(bytes.len());
            self.header[self.have..self.have + n].copy_from_slice(&bytes[..n]);
            self.have += n;
            bytes = &bytes[n..];
            if self.have == HEADER_LEN {
                self.have = 0;
                let h = self.header;
                let len = u32::from_be_bytes([0, h[0], h[1], h[2]]) as usize;
                self.skip = len;
                self.frame(h[3], h[4], len, now)?;
            }
        }
        Ok(())
    }

    fn frame(&mut self, kind: u8, flags: u8, len: usize, now: Instant) -> Result<(), Abuse> {
        let cheap = match kind {
            RST_STREAM | PRIORITY => true,
            SETTINGS | PING => flags & ACK == 0,
            DATA => len == 0 && flags & END_STREAM == 0,
            HEADERS => {
                self.continuations = 0;
                false
            }
            CONTINUATION => {
                self.continuations += 1;
                if self.continuations > MAX_CONTINUATIONS {
                    return Err(Abuse::ContinuationFlood);
                }
                if flags & END_HEADERS != 0 {
                    self.continuations = 0;
                }
                len == 0
            }
            _ => false,
        };
        if cheap {
            self.spend(now)?;
        }
        Ok(())
    }

    fn spend(&mut self, now: Instant) -> Result<(), Abuse> {
        let dt = now.saturating_duration_since(self.refilled);
        if dt >= Duration::from_millis(10) {
            self.tokens = (self.tokens + dt.as_secs_f64() * PER_SECOND).min(BURST);
            self.refilled = now;
        }
        if self.tokens < 1.0 {
            return Err(Abuse::ControlFlood);
        }
        self.tokens -= 1.0;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

    fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
        let len = payload.len() as u32;
        let mut f = len.to_be_bytes()[1..].to_vec();
        f.push(kind);
        f.push(flags);
        f.extend_from_slice(&stream.to_be_bytes());
        f.extend_from_slice(payload);
        f
    }

    fn fed(g: &mut FrameGuard, frames: &[Vec<u8>], now: Instant) -> Result<(), Abuse> {
        for f in frames {
            g.feed(f, now)?;
        }
        Ok(())
    }

    #[test]
    fn an_ordinary_connection_passes_in_any_split() {
        let t = Instant::now();
        let mut bytes = PREFACE.to_vec();
        bytes.extend(frame(SETTINGS, 0, 0, &[0, 3, 0, 0, 0, 100]));
        bytes.extend(frame(SETTINGS, ACK, 0, &[]));
        for s in (1..400u32).step_by(2) {
            bytes.extend(frame(HEADERS, END_HEADERS, s, &[0x82, 0x86, 0x84]));
            bytes.extend(frame(DATA, END_STREAM, s, &[7; 3000]));
            bytes.extend(frame(0x8, 0, s, &[0, 0, 1, 0]));
        }
        bytes.extend(frame(PING, 0, 0, &[0; 8]));
        for chunk in [1usize, 7, 9, 4096] {
            let mut g = FrameGuard::new(t);
            for c in bytes.chunks(chunk) {
                assert_eq!(g.feed(c, t), Ok(()), "chunk {chunk}");
            }
            assert_eq!((g.have, g.skip), (0, 0), "ends on a frame boundary");
        }
    }

    #[test]
    fn rapid_reset_is_stopped_after_the_burst() {
        let t = Instant::now();
        let mut g = FrameGuard::new(t);
        g.feed(PREFACE, t).expect("preface");
        let mut sent = 0;
        let r = (1..u32::MAX).step_by(2).take(5000).try_for_each(|s| {
            sent += 1;
            fed(
                &mut g,
                &[
                    frame(HEADERS, END_HEADERS | END_STREAM, s, &[0x82, 0x86, 0x84]),
                    frame(RST_STREAM, 0, s, &[0, 0, 0, 8]),
                ],
                t,
            )
        });
        assert_eq!(r, Err(Abuse::ControlFlood));
        assert_eq!(sent, BURST as usize + 1);
    }

    #[test]
    fn the_budget_refills_at_the_sustained_rate() {
        let t = Instant::now();
        let mut g = FrameGuard::new(t);
        g.feed(PREFACE, t).expect("preface");
        let ping = frame(PING, 0, 0, &[0; 8]);
        for _ in 0..BURST as usize {
            g.feed(&ping, t).expect("burst");
        }
        assert_eq!(g.feed(&ping, t), Err(Abuse::ControlFlood));
        // One second later, PER_SECOND more are allowed, and no more.
        let later = t + Duration::from_secs(1);
        for _ in 0..PER_SECOND as usize {
            g.feed(&ping, later).expect("refilled");
        }
        assert_eq!(g.feed(&ping, later), Err(Abuse::ControlFlood));
        // A client that keeps to the rate is never stopped.
        let mut g = FrameGuard::new(t);
        for i in 0..10_000u64 {
            let now = t + Duration::from_millis(i * 10);
            g.feed(&ping, now).expect("within the rate");
        }
    }

    #[test]
    fn acks_and_frames_with_work_are_free() {
        let t = Instant::now();
        let mut g = FrameGuard::new(t);
        g.feed(PREFACE, t).expect("preface");
        for _ in 0..10_000 {
            g.feed(&frame(SETTINGS, ACK, 0, &[]), t)
                .expect("settings ack");
            g.feed(&frame(PING, ACK, 0, &[0; 8]), t).expect("ping ack");
            g.feed(&frame(DATA, 0, 1, &[1]), t).expect("data");
            g.feed(&frame(DATA, END_STREAM, 3, &[]), t)
                .expect("end stream");
        }
    }

    #[test]
    fn each_cheap_kind_counts() {
        let t = Instant::now();
        for (name, f) in [
            ("settings", frame(SETTINGS, 0, 0, &[])),
            ("ping", frame(PING, 0, 0, &[0; 8])),
            ("priority", frame(PRIORITY, 0, 1, &[0, 0, 0, 0, 16])),
            ("rst", frame(RST_STREAM, 0, 1, &[0, 0, 0, 8])),
            ("empty data", frame(DATA, 0, 1, &[])),
        ] {
            let mut g = FrameGuard::new(t);
            g.feed(PREFACE, t).expect("preface");
            let r = (0..5000).try_for_each(|_| g.feed(&f, t));
            assert_eq!(r, Err(Abuse::ControlFlood), "{name}");
        }
    }

    #[test]
    fn continuation_floods_are_stopped() {
        let t = Instant::now();
        // Endless CONTINUATION frames with payload: stopped by the count.
        let mut g = FrameGuard::new(t);
        g.feed(PREFACE, t).expect("preface");
        g.feed(&frame(HEADERS, 0, 1, &[0x82]), t).expect("headers");
        let big = frame(CONTINUATION, 0, 1, &[0x40; 1000]);
        let r = (0..1000).try_for_each(|_| g.feed(&big, t));
        assert_eq!(r, Err(Abuse::ContinuationFlood));
        // A header block that ends in time resets the count.
        let mut g = FrameGuard::new(t);
        g.feed(PREFACE, t).expect("preface");
        for s in (1..2000u32).step_by(2) {
            g.feed(&frame(HEADERS, 0, s, &[0x82]), t).expect("headers");
            for _ in 0..MAX_CONTINUATIONS - 1 {
                g.feed(&frame(CONTINUATION, 0, s, &[0x40]), t)
                    .expect("continuation");
            }
            g.feed(&frame(CONTINUATION, END_HEADERS, s, &[0x40]), t)
                .expect("end headers");
        }
        // Empty ones also spend the cheap-frame budget.
        let mut g = FrameGuard::new(t);
        g.feed(PREFACE, t).expect("preface");
        let empty = frame(CONTINUATION, 0, 1, &[]);
        let r = (1..u32::MAX).step_by(2).take(5000).try_for_each(|s| {
            g.feed(&frame(HEADERS, 0, s, &[]), t)?;
            (0..10).try_for_each(|_| g.feed(&empty, t))
        });
        assert_eq!(r, Err(Abuse::ControlFlood));
    }

    #[test]
    fn a_huge_frame_length_is_skipped_not_buffered() {
        let t = Instant::now();
        let mut g = FrameGuard::new(t);
        g.feed(PREFACE, t).expect("preface");
        g.feed(&frame(DATA, 0, 1, &[])[..9], t).expect("header");
        let mut h = frame(DATA, 0, 1, &[]);
        h[0..3].copy_from_slice(&[0xff, 0xff, 0xff]);
        g.feed(&h, t).expect("len 2^24-1");
        assert_eq!(g.skip, 0xff_ffff);
        g.feed(&vec![0u8; 1 << 20], t).expect("payload");
        assert_eq!(g.skip, 0xff_ffff - (1 << 20));
    }
}
