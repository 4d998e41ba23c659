//! Wire format of the sticky-session sync channel (pure: bytes in, values out).
//!
//! One UDP datagram carries a batch of records, authenticated as a whole:
//!
//! ```text
//! magic "TSY1" | sender u64 | seq u64 | oldest_us u64 | count u16 | records... | HMAC-SHA256 (32)
//! record: kind u8 (1 learn, 2 forget) | pool_len u8 | pool | session_len u16 | session
//!         | learn only: backend_len u8 | backend
//! ```
//!
//! Integers are big-endian. `sender` is a random number drawn at start-up (a restarted node is a
//! new sender, so its sequence may restart), `seq` increases per datagram (replay protection, see
//! [`ReplayGuard`]), `oldest_us` is when the oldest record of the batch was learned (Unix
//! microseconds): the receiver's lag figure covers batching as well as the network. The tag
//! covers every byte before it and is checked before any record is parsed, so nothing from an
//! unauthenticated sender reaches the parser's record logic.

use std::collections::HashMap;

use ring::hmac;

pub const MAGIC: &[u8; 4] = b"TSY1";
pub const TAG_LEN: usize = 32;
const HEADER_LEN: usize = 4 + 8 + 8 + 8 + 2;
/// Batches stay under a 1500-byte MTU with IPv6 + UDP headers.
pub const MAX_DATAGRAM: usize = 1400;
/// Longer session values are not replicated (the sender counts them).
pub const MAX_SESSION: usize = 1024;
const MAX_NAME: usize = 255;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record {
    Learn {
        pool: String,
        session: String,
        backend: String,
    },
    Forget {
        pool: String,
        session: String,
    },
}

impl Record {
    fn encoded_len(&self) -> usize {
        match self {
            Record::Learn {
                pool,
                session,
                backend,
            } => 1 + 1 + pool.len() + 2 + session.len() + 1 + backend.len(),
            Record::Forget { pool, session } => 1 + 1 + pool.len() + 2 + session.len(),
        }
    }

    /// Whether the record can be encoded at all (field lengths within the format's limits).
    pub fn fits(&self) -> bool {
        let (pool, session, backend) = match self {
            Record::Learn {
                pool,
                session,
                backend,
            } => (pool, session, backend.len()),
            Record::Forget { pool, session } => (pool, session, 0),
        };
        pool.len() <= MAX_NAME && session.len() <= MAX_SESSION && backend <= MAX_NAME
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub sender: u64,
    pub seq: u64,
    pub oldest_us: u64,
    pub records: Vec<Record>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("shorter than header and tag")]
    TooShort,
    #[error("bad magic (not a tandem sync message, or another version)")]
    BadMagic,
    #[error("authentication tag does not match (wrong key or altered)")]
    BadTag,
    #[error("record truncated")]
    Truncated,
    #[error("unknown record kind {0}")]
    BadKind(u8),
    #[error("a name or session is not UTF-8")]
    BadUtf8,
    #[error("bytes left after the last record")]
    Trailing,
}

impl DecodeError {
    /// Unauthenticated (counted apart from malformed-but-authentic, which means a bug or a
    /// version mismatch between nodes rather than a stranger on the wire).
    pub fn is_auth(self) -> bool {
        matches!(
            self,
            DecodeError::TooShort | DecodeError::BadMagic | DecodeError::BadTag
        )
    }
}

pub fn key(secret: &[u8]) -> hmac::Key {
    hmac::Key::new(hmac::HMAC_SHA256, secret)
}

/// Encodes `records` into as few datagrams as the size limit allows (records that do not
/// [`Record::fits`] are skipped: the caller checks and counts them first). `seq` is advanced per
/// datagram.
pub fn encode(
    key: &hmac::Key,
    sender: u64,
    seq: &mut u64,
    oldest_us: u64,
    records: &[Record],
) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut batch: Vec<&Record> = Vec::new();
    let mut size = HEADER_LEN + TAG_LEN;
    for r in records.iter().filter(|r| r.fits()) {
        let len = r.encoded_len();
        if !batch.is_empty() && size + len > MAX_DATAGRAM {
            out.push(seal(key, sender, seq, oldest_us, &batch));
            batch.clear();
            size = HEADER_LEN + TAG_LEN;
        }
        batch.push(r);
        size += len;
    }
    if !batch.is_empty() {
        out.push(seal(key, sender, seq, oldest_us, &batch));
    }
    out
}

fn seal(
    key: &hmac::Key,
    sender: u64,
    seq: &mut u64,
    oldest_us: u64,
    records: &[&Record],
) -> Vec<u8> {
    *seq += 1;
    let mut b = Vec::with_capacity(MAX_DATAGRAM);
    b.extend_from_slice(MAGIC);
    b.extend_from_slice(&sender.to_be_bytes());
    b.extend_from_slice(&seq.to_be_bytes());
    b.extend_from_slice(&oldest_us.to_be_bytes());
    // At most MAX_DATAGRAM / 5 records fit, far below u16::MAX.
    b.extend_from_slice(&(records.len() as u16).to_be_bytes());
    for r in records {
        match r {
            Record::Learn {
                pool,
                session,
                backend,
            } => {
                b.push(1);
                put(&mut b, pool.as_bytes(), 1);
                put(&mut b, session.as_bytes(), 2);
                put(&mut b, backend.as_bytes(), 1);
            }
            Record::Forget { pool, session } => {
                b.push(2);
                put(&mut b, pool.as_bytes(), 1);
                put(&mut b, session.as_bytes(), 2);
            }
        }
    }
    let tag = hmac::sign(key, &b);
    b.extend_from_slice(tag.as_ref());
    b
}

fn put(b: &mut Vec<u8>, field: &[u8], len_bytes: usize) {
    if len_bytes == 1 {
        b.push(field.len() as u8);
    } else {
        b.extend_from_slice(&(field.len() as u16).to_be_bytes());
    }
    b.extend_from_slice(field);
}

/// Checks the tag, then parses. Never panics, whatever the input.
pub fn decode(key: &hmac::Key, datagram: &[u8]) -> Result<Message, DecodeError> {
    if datagram.len() < HEADER_LEN + TAG_LEN {
        return Err(DecodeError::TooShort);
    }
    if &datagram[..4] != MAGIC {
        return Err(DecodeError::BadMagic);
    }
    let (body, tag) = datagram.split_at(datagram.len() - TAG_LEN);
    // Constant-time comparison inside ring.
    hmac::verify(key, body, tag).map_err(|_| DecodeError::BadTag)?;
    let mut r = Reader { b: body, at: 4 };
    let sender = r.u64()?;
    let seq = r.u64()?;
    let oldest_us = r.u64()?;
    let count = r.u16()?;
    let mut records = Vec::with_capacity(usize::from(count).min(MAX_DATAGRAM / 5));
    for _ in 0..count {
        let kind = r.u8()?;
        let pool = r.string(1)?;
        let session = r.string(2)?;
        records.push(match kind {
            1 => Record::Learn {
                pool,
                session,
                backend: r.string(1)?,
            },
            2 => Record::Forget { pool, session },
            k => return Err(DecodeError::BadKind(k)),
        });
    }
    if r.at != body.len() {
        return Err(DecodeError::Trailing);
    }
    Ok(Message {
        sender,
        seq,
        oldest_us,
        records,
    })
}

struct Reader<'a> {
    b: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], DecodeError> {
        let end = self.at.checked_add(n).ok_or(DecodeError::Truncated)?;
        let s = self.b.get(self.at..end).ok_or(DecodeError::Truncated)?;
        self.at = end;
        Ok(s)
    }
    fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16, DecodeError> {
        let s = self.take(2)?;
        Ok(u16::from_be_bytes([s[0], s[1]]))
    }
    fn u64(&mut self) -> Result<u64, DecodeError> {
        let mut a = [0u8; 8];
        a.copy_from_slice(self.take(8)?);
        Ok(u64::from_be_bytes(a))
    }
    fn string(&mut self, len_bytes: usize) -> Result<String, DecodeError> {
        let n = if len_bytes == 1 {
            usize::from(self.u8()?)
        } else {
            usize::from(self.u16()?)
        };
        let s = self.take(n)?;
        std::str::from_utf8(s)
            .map(str::to_owned)
            .map_err(|_| DecodeError::BadUtf8)
    }
}

/// Why an authentic message is still refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Replay {
    /// Not newer than the last message accepted from this sender.
    Old,
    /// Its batch is older than the window (a recording replayed later under a new sender id
    /// would otherwise pass).
    Stale,
}

/// Per-sender highest sequence number, bounded: the oldest sender is forgotten beyond
/// `max_senders` (each restart of a peer is a new sender).
#[derive(Debug)]
pub struct ReplayGuard {
    last: HashMap<u64, (u64, u64)>,
    max_senders: usize,
    window_us: u64,
}

impl ReplayGuard {
    pub fn new(max_senders: usize, window_us: u64) -> ReplayGuard {
        ReplayGuard {
            last: HashMap::new(),
            max_senders: max_senders.max(1),
            window_us,
        }
    }

    /// Accepts `m` (recording its sequence) or says why not. `now_us`: Unix microseconds.
    pub fn check(&mut self, m: &Message, now_us: u64) -> Result<(), Replay> {
        if now_us.abs_diff(m.oldest_us) > self.window_us {
            return Err(Replay::Stale);
        }
        match self.last.get_mut(&m.sender) {
            Some((seq, _)) if m.seq <= *seq => Err(Replay::Old),
            Some(entry) => {
                *entry = (m.seq, now_us);
                Ok(())
            }
            None => {
                if self.last.len() >= self.max_senders {
                    if let Some(oldest) = self
                        .last
                        .iter()
                        .min_by_key(|(_, (_, at))| *at)
                        .map(|(s, _)| *s)
                    {
                        self.last.remove(&oldest);
                    }
                }
                self.last.insert(m.sender, (m.seq, now_us));
                Ok(())
            }
        }
    }

    pub fn senders(&self) -> usize {
        self.last.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";

    fn learn(pool: &str, session: &str, backend: &str) -> Record {
        Record::Learn {
            pool: pool.into(),
            session: session.into(),
            backend: backend.into(),
        }
    }

    fn hex(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }

    #[test]
    fn golden_vector() {
        let k = key(SECRET);
        let mut seq = 6;
        let out = encode(
            &k,
            0x0102_0304_0506_0708,
            &mut seq,
            1_767_225_600_000_000,
            &[
                learn("web", "abc", "app1"),
                Record::Forget {
                    pool: "web".into(),
                    session: "x".into(),
                },
            ],
        );
        assert_eq!(seq, 7);
        assert_eq!(out.len(), 1);
        let d = &out[0];
        // Header and records, byte for byte.
        assert_eq!(
            hex(&d[..d.len() - TAG_LEN]),
            concat!(
                "54535931",         // "TSY1"
                "0102030405060708", // sender
                "0000000000000007", // seq
                "0006474846204000", // oldest_us = 2026-01-01T00:00:00Z
                "0002",             // two records
                "01",
                "03776562",
                "0003616263",
                "0461707031", // learn web abc app1
                "02",
                "03776562",
                "000178", // forget web x
            )
        );
        // The tag is HMAC-SHA256(SECRET, everything before it), checked independently with
        // `openssl dgst -sha256 -mac HMAC -macopt key:0123456789abcdef0123456789abcdef`.
        assert_eq!(hex(&d[d.len() - TAG_LEN..]), GOLDEN_TAG);
        let m = decode(&k, d).expect("decodes");
        assert_eq!(m.sender, 0x0102_0304_0506_0708);
        assert_eq!(m.seq, 7);
        assert_eq!(m.records.len(), 2);
        assert_eq!(m.records[0], learn("web", "abc", "app1"));
    }
    const GOLDEN_TAG: &str = "321bf5cb5474109b7f5d72faab96c43b12a13b5d54c4ea493254c9cacdd9ec6c";

    #[test]
    fn round_trip_and_batching() {
        let k = key(SECRET);
        let records: Vec<Record> = (0..200)
            .map(|i| {
                learn(
                    "web",
                    &format!("session-{i:04}-{}", "z".repeat(i % 40)),
                    "app2",
                )
            })
            .collect();
        let mut seq = 0;
        let out = encode(&k, 9, &mut seq, 5, &records);
        assert!(out.len() > 1, "200 records do not fit one datagram");
        assert_eq!(seq, out.len() as u64);
        assert!(out.iter().all(|d| d.len() <= MAX_DATAGRAM));
        let back: Vec<Record> = out
            .iter()
            .flat_map(|d| decode(&k, d).expect("decodes").records)
            .collect();
        assert_eq!(back, records);
        // A record too large for the format is skipped, not truncated.
        let huge = learn("web", &"s".repeat(MAX_SESSION + 1), "app1");
        assert!(!huge.fits());
        assert!(encode(&k, 9, &mut seq, 5, &[huge]).is_empty());
        // One maximal record still fits a datagram.
        let big = learn(&"p".repeat(255), &"s".repeat(MAX_SESSION), &"b".repeat(255));
        assert_eq!(encode(&k, 9, &mut seq, 5, &[big]).len(), 1);
    }

    #[test]
    fn wrong_key_or_any_flipped_bit_is_unauthenticated() {
        let k = key(SECRET);
        let mut seq = 0;
        let d = encode(&k, 1, &mut seq, 2, &[learn("web", "abc", "app1")]).remove(0);
        let other = key(b"another key that is long enough.");
        assert_eq!(decode(&other, &d), Err(DecodeError::BadTag));
        for i in 4..d.len() {
            for bit in 0..8 {
                let mut x = d.clone();
                x[i] ^= 1 << bit;
                assert_eq!(
                    decode(&k, &x),
                    Err(DecodeError::BadTag),
                    "byte {i} bit {bit}"
                );
            }
        }
        let mut x = d.clone();
        x[0] = b'X';
        assert_eq!(decode(&k, &x), Err(DecodeError::BadMagic));
        assert_eq!(
            decode(&k, &d[..HEADER_LEN + TAG_LEN - 1]),
            Err(DecodeError::TooShort)
        );
        assert!(DecodeError::BadTag.is_auth() && !DecodeError::Truncated.is_auth());
    }

    /// Authentic (correctly signed) but malformed bodies: what a buggy or newer peer could send.
    #[test]
    fn authentic_but_malformed_bodies_are_errors() {
        let k = key(SECRET);
        let sign = |body: Vec<u8>| {
            let mut b = body;
            let tag = hmac::sign(&k, &b);
            b.extend_from_slice(tag.as_ref());
            b
        };
        let header = |count: u16| {
            let mut b = MAGIC.to_vec();
            b.extend_from_slice(&[0; 24]);
            b.extend_from_slice(&count.to_be_bytes());
            b
        };
        let mut bad_kind = header(1);
        bad_kind.extend_from_slice(&[9, 0, 0, 0]);
        assert_eq!(decode(&k, &sign(bad_kind)), Err(DecodeError::BadKind(9)));
        let mut truncated = header(1);
        truncated.extend_from_slice(&[1, 3, b'w', b'e']);
        assert_eq!(decode(&k, &sign(truncated)), Err(DecodeError::Truncated));
        let mut too_many = header(u16::MAX);
        too_many.extend_from_slice(&[2, 0, 0, 0]);
        assert_eq!(decode(&k, &sign(too_many)), Err(DecodeError::Truncated));
        let mut utf8 = header(1);
        utf8.extend_from_slice(&[2, 1, 0xff, 0, 0]);
        assert_eq!(decode(&k, &sign(utf8)), Err(DecodeError::BadUtf8));
        let mut trailing = header(0);
        trailing.push(0);
        assert_eq!(decode(&k, &sign(trailing)), Err(DecodeError::Trailing));
        assert!(decode(&k, &sign(header(0))).is_ok());
    }

    #[test]
    fn decode_never_panics_on_garbage() {
        let k = key(SECRET);
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for len in 0..600usize {
            let mut b: Vec<u8> = (0..len)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x as u8
                })
                .collect();
            if len >= 4 {
                b[..4].copy_from_slice(MAGIC);
            }
            assert!(decode(&k, &b).is_err());
        }
    }

    #[test]
    fn replay_guard() {
        let m = |sender, seq, oldest_us| Message {
            sender,
            seq,
            oldest_us,
            records: Vec::new(),
        };
        let mut g = ReplayGuard::new(2, 60_000_000);
        let now = 100_000_000;
        assert_eq!(g.check(&m(1, 5, now), now), Ok(()));
        assert_eq!(
            g.check(&m(1, 5, now), now),
            Err(Replay::Old),
            "the same message twice"
        );
        assert_eq!(g.check(&m(1, 4, now), now), Err(Replay::Old));
        assert_eq!(g.check(&m(1, 6, now), now), Ok(()));
        assert_eq!(g.check(&m(2, 1, now - 61_000_000), now), Err(Replay::Stale));
        assert_eq!(g.check(&m(2, 1, now + 61_000_000), now), Err(Replay::Stale));
        assert_eq!(g.check(&m(2, 1, now), now + 1), Ok(()));
        // Bounded: a third sender evicts the least recently heard one.
        assert_eq!(g.check(&m(3, 1, now), now + 2), Ok(()));
        assert_eq!(g.senders(), 2);
        assert_eq!(g.check(&m(2, 2, now), now + 3), Ok(()));
    }
}
