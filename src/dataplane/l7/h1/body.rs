//! Follows the framing of a message body the fast path passes through
//! unchanged, so the proxy knows where the message ends (and the next one on
//! the connection starts) without re-chunking: fixed length, chunked (RFC
//! 9112 §7.1, with bounded chunk-size lines, extensions and trailers), or
//! until the peer closes.

use super::head::BodyKind;

/// Longest chunk-size line (size, extensions, CRLF) accepted: extensions
/// are legal but a peer that streams kilobytes of them is abusing them.
const MAX_SIZE_LINE: u32 = 4096;
/// Bytes of trailer section accepted after the last chunk.
const MAX_TRAILERS: u32 = 16 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyError {
    ChunkSize,
    ChunkExtension,
    ChunkDelimiter,
    Trailers,
}

impl BodyError {
    pub fn reason(&self) -> &'static str {
        match self {
            BodyError::ChunkSize => "bad_chunk_size",
            BodyError::ChunkExtension => "chunk_extension_too_long",
            BodyError::ChunkDelimiter => "bad_chunk_delimiter",
            BodyError::Trailers => "bad_trailers",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum St {
    Length(u64),
    /// Hex digits so far, digits seen, whether in extensions.
    Size {
        n: u64,
        digits: u8,
        ext: bool,
        line: u32,
    },
    SizeLf {
        n: u64,
    },
    Data(u64),
    DataCr,
    DataLf,
    /// At the start of a trailer line (or the final empty line).
    TrailerStart {
        total: u32,
    },
    TrailerLine {
        total: u32,
    },
    TrailerLf {
        total: u32,
        empty: bool,
    },
    UntilClose,
    Done,
}

#[derive(Debug, Clone, Copy)]
pub struct BodyFramer {
    st: St,
    /// Payload bytes seen (chunk data only, not framing).
    pub payload: u64,
}

impl BodyFramer {
    pub fn new(kind: BodyKind) -> Self {
        let st = match kind {
            BodyKind::None | BodyKind::Length(0) => St::Done,
            BodyKind::Length(n) => St::Length(n),
            BodyKind::Chunked => St::Size {
                n: 0,
                digits: 0,
                ext: false,
                line: 0,
            },
            BodyKind::UntilClose => St::UntilClose,
        };
        BodyFramer { st, payload: 0 }
    }

    pub fn done(&self) -> bool {
        self.st == St::Done
    }

    pub fn until_close(&self) -> bool {
        self.st == St::UntilClose
    }

    /// Bytes the fixed-length body still needs, for read sizing.
    pub fn remaining_hint(&self) -> Option<u64> {
        match self.st {
            St::Length(n) | St::Data(n) => Some(n),
            _ => None,
        }
    }

    /// Takes as many bytes of `data` as belong to this body; returns how
    /// many. Fewer than `data.len()` only when the body ended.
    pub fn advance(&mut self, data: &[u8]) -> Result<usize, BodyError> {
        let mut i = 0;
        while i < data.len() {
            match self.st {
                St::Done => return Ok(i),
                St::UntilClose => {
                    self.payload += (data.len() - i) as u64;
                    return Ok(data.len());
                }
                St::Length(left) | St::Data(left) => {
                    let take = left.min((data.len() - i) as u64);
                    i += take as usize;
                    self.payload += take;
                    let left = left - take;
                    self.st = match (self.st, left) {
                        (St::Length(_), 0) => St::Done,
                        (St::Length(_), l) => St::Length(l),
                        (_, 0) => St::DataCr,
                        (_, l) => St::Data(l),
                    };
                }
                St::Size {
                    n,
                    digits,
                    ext,
                    line,
                } => {
                    let b = data[i];
                    i += 1;
                    let line = line + 1;
                    if line > MAX_SIZE_LINE {
                        return Err(BodyError::ChunkExtension);
                    }
                    if b == b'\r' {
                        if digits == 0 {
                            return Err(BodyError::ChunkSize);
                        }
                        self.st = St::SizeLf { n };
                    } else if ext {
                        if b == b'\n' {
                            return Err(BodyError::ChunkDelimiter);
                        }
                        self.st = St::Size {
                            n,
                            digits,
                            ext,
                            line,
                        };
                    } else if let Some(d) = (b as char).to_digit(16) {
                        if digits >= 16 {
                            return Err(BodyError::ChunkSize);
                        }
                        self.st = St::Size {
                            n: n << 4 | d as u64,
                            digits: digits + 1,
                            ext,
                            line,
                        };
                    } else if (b == b';' || b == b' ' || b == b'\t') && digits > 0 {
                        self.st = St::Size {
                            n,
                            digits,
                            ext: true,
                            line,
                        };
                    } else {
                        return Err(BodyError::ChunkSize);
                    }
                }
                St::SizeLf { n } => {
                    if data[i] != b'\n' {
                        return Err(BodyError::ChunkDelimiter);
                    }
                    i += 1;
                    self.st = if n == 0 {
                        St::TrailerStart { total: 0 }
                    } else {
                        St::Data(n)
                    };
                }
                St::DataCr => {
                    if data[i] != b'\r' {
                        return Err(BodyError::ChunkDelimiter);
                    }
                    i += 1;
                    self.st = St::DataLf;
                }
                St::DataLf => {
                    if data[i] != b'\n' {
                        return Err(BodyError::ChunkDelimiter);
                    }
                    i += 1;
                    self.st = St::Size {
                        n: 0,
                        digits: 0,
                        ext: false,
                        line: 0,
                    };
                }
                St::TrailerStart { total } | St::TrailerLine { total } => {
                    let b = data[i];
                    i += 1;
                    let total = total + 1;
                    if total > MAX_TRAILERS {
                        return Err(BodyError::Trailers);
                    }
                    let at_start = matches!(self.st, St::TrailerStart { .. });
                    self.st = match b {
                        b'\r' => St::TrailerLf {
                            total,
                            empty: at_start,
                        },
                        b'\n' => return Err(BodyError::Trailers),
                        _ => St::TrailerLine { total },
                    };
                }
                St::TrailerLf { total, empty } => {
                    if data[i] != b'\n' {
                        return Err(BodyError::Trailers);
                    }
                    i += 1;
                    self.st = if empty {
                        St::Done
                    } else {
                        St::TrailerStart { total }
                    };
                }
            }
        }
        Ok(i)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `body` in pieces of `step` bytes; returns (consumed, done, payload).
    fn run(kind: BodyKind, body: &[u8], step: usize) -> Result<(usize, bool, u64), BodyError> {
        let mut f = BodyFramer::new(kind);
        let mut used = 0;
        for piece in body.chunks(step) {
            let n = f.advance(piece)?;
            used += n;
            if n < piece.len() {
                break;
            }
        }
        Ok((used, f.done(), f.payload))
    }

    #[test]
    fn fixed_length_stops_at_the_end() {
        for step in [1, 2, 3, 100] {
            assert_eq!(
                run(BodyKind::Length(5), b"helloGET /", step),
                Ok((5, true, 5))
            );
        }
        assert_eq!(run(BodyKind::Length(5), b"hel", 1), Ok((3, false, 3)));
        assert_eq!(run(BodyKind::None, b"GET", 1), Ok((0, true, 0)));
    }

    #[test]
    fn chunked_in_every_split() {
        let body = b"5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nX-T: 1\r\n\r\nNEXT";
        let end = body.len() - 4;
        for step in 1..=body.len() {
            assert_eq!(
                run(BodyKind::Chunked, body, step),
                Ok((end, true, 11)),
                "step {step}"
            );
        }
        assert_eq!(run(BodyKind::Chunked, b"0\r\n\r\n", 1), Ok((5, true, 0)));
        assert_eq!(
            run(BodyKind::Chunked, b"A\r\n0123456789\r\n0\r\n\r\n", 4),
            Ok((20, true, 10))
        );
    }

    #[test]
    fn chunked_errors() {
        let cases: &[(&[u8], BodyError)] = &[
            (b"x\r\n", BodyError::ChunkSize),
            (b"\r\n", BodyError::ChunkSize),
            (b"-1\r\n", BodyError::ChunkSize),
            (b"11111111111111111\r\n", BodyError::ChunkSize),
            (b"5\nhello", BodyError::ChunkSize),
            (b"5\r\nhelloXX", BodyError::ChunkDelimiter),
            (b"5\r\rhello", BodyError::ChunkDelimiter),
            (b"0\r\nX: y\n\r\n", BodyError::Trailers),
        ];
        for (body, want) in cases {
            assert_eq!(run(BodyKind::Chunked, body, 1), Err(*want), "{body:?}");
        }
        let mut long = b"5;".to_vec();
        long.extend(std::iter::repeat_n(b'a', 5000));
        assert_eq!(
            run(BodyKind::Chunked, &long, 7),
            Err(BodyError::ChunkExtension)
        );
        let mut trailers = b"0\r\n".to_vec();
        for _ in 0..2000 {
            trailers.extend_from_slice(b"X-Long: 0123456789\r\n");
        }
        assert_eq!(
            run(BodyKind::Chunked, &trailers, 64),
            Err(BodyError::Trailers)
        );
    }

    #[test]
    fn until_close_takes_everything() {
        assert_eq!(run(BodyKind::UntilClose, b"abc", 1), Ok((3, false, 3)));
    }
}
