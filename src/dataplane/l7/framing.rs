//! A byte-level HTTP/1.1 request framing scanner.
//!
//! hyper resolves ambiguous framing itself before we ever see a request: a
//! request with both Content-Length and Transfer-Encoding reaches the
//! service with Content-Length already removed, and repeated identical
//! Content-Length lines are folded into one. Those are exactly the
//! requests a front proxy must refuse (RFC 9112 §6.1, §6.3; request
//! smuggling), so this scanner watches the raw bytes of a connection,
//! follows the framing of each request (heads, Content-Length and chunked
//! bodies) and records which requests carried ambiguous framing. The
//! handler of request `n` asks [`H1Scanner::violation`] for `n`.
//!
//! It stops scanning (and never reports) once the stream stops being
//! HTTP/1 requests: an HTTP/2 preface, an upgrade, or anything it cannot
//! follow. hyper still parses every byte, so giving up is always safe.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Head,
    Body(u64),
    ChunkSize,
    ChunkData(u64),
    ChunkDataEnd,
    Trailers,
    Off,
}

/// Bound on a request head we keep while scanning; hyper refuses larger
/// heads itself (max_header_bytes).
const MAX_HEAD: usize = 1 << 20;

#[derive(Debug)]
pub struct H1Scanner {
    state: State,
    line: Vec<u8>,
    head: Vec<u8>,
    /// Index of the request whose head is being read.
    index: u64,
    violations: Vec<(u64, &'static str)>,
}

impl Default for H1Scanner {
    fn default() -> Self {
        H1Scanner {
            state: State::Head,
            line: Vec::new(),
            head: Vec::new(),
            index: 0,
            violations: Vec::new(),
        }
    }
}

impl H1Scanner {
    /// The framing problem of request `n` (0-based on this connection).
    pub fn violation(&self, n: u64) -> Option<&'static str> {
        self.violations
            .iter()
            .find(|(i, _)| *i == n)
            .map(|(_, r)| *r)
    }

    pub fn feed(&mut self, mut data: &[u8]) {
        while !data.is_empty() {
            match self.state {
                State::Off => return,
                State::Head => {
                    let (line_done, used) = take_line(&mut self.line, data);
                    data = &data[used..];
                    if !line_done {
                        if self.head.len() + self.line.len() > MAX_HEAD {
                            self.state = State::Off;
                        }
                        continue;
                    }
                    let line = std::mem::take(&mut self.line);
                    if self.head.is_empty() && line == b"\r\n" {
                        continue; // tolerated empty line before a request
                    }
                    if self.head.is_empty() && line.starts_with(b"PRI * HTTP/2.0") {
                        self.state = State::Off;
                        return;
                    }
                    self.head.extend_from_slice(&line);
                    if line == b"\r\n" {
                        let head = std::mem::take(&mut self.head);
                        self.end_of_head(&head);
                    } else if self.head.len() > MAX_HEAD {
                        self.state = State::Off;
                    }
                }
                State::Body(left) => {
                    let n = (left as usize).min(data.len());
                    data = &data[n..];
                    let left = left - n as u64;
                    self.state = if left == 0 {
                        self.next_request()
                    } else {
                        State::Body(left)
                    };
                }
                State::ChunkSize => {
                    let (done, used) = take_line(&mut self.line, data);
                    data = &data[used..];
                    if !done {
                        if self.line.len() > 4096 {
                            self.state = State::Off;
                        }
                        continue;
                    }
                    let line = std::mem::take(&mut self.line);
                    let text = String::from_utf8_lossy(&line);
                    let hex = text.trim_end().split(';').next().unwrap_or("").trim();
                    match u64::from_str_radix(hex, 16) {
                        Ok(0) => self.state = State::Trailers,
                        Ok(n) => self.state = State::ChunkData(n),
                        Err(_) => self.state = State::Off,
                    }
                }
                State::ChunkData(left) => {
                    let n = (left as usize).min(data.len());
                    data = &data[n..];
                    let left = left - n as u64;
                    self.state = if left == 0 {
                        State::ChunkDataEnd
                    } else {
                        State::ChunkData(left)
                    };
                }
                State::ChunkDataEnd => {
                    let (done, used) = take_line(&mut self.line, data);
                    data = &data[used..];
                    if done {
                        self.line.clear();
                        self.state = State::ChunkSize;
                    }
                }
                State::Trailers => {
                    let (done, used) = take_line(&mut self.line, data);
                    data = &data[used..];
                    if done {
                        let line = std::mem::take(&mut self.line);
                        if line == b"\r\n" {
                            self.state = self.next_request();
                        }
                    }
                }
            }
        }
    }

    fn next_request(&mut self) -> State {
        self.index += 1;
        State::Head
    }

    fn end_of_head(&mut self, head: &[u8]) {
        let text = String::from_utf8_lossy(head);
        let mut lines = text.split("\r\n");
        let request_line = lines.next().unwrap_or("");
        let mut cl = 0usize;
        let mut cl_value: Option<u64> = None;
        let mut te = 0usize;
        let mut te_chunked = false;
        let mut upgrade = false;
        for l in lines {
            let Some((name, value)) = l.split_once(':') else {
                continue;
            };
            let name = name.trim().to_ascii_lowercase();
            let value = value.trim();
            match name.as_str() {
                "content-length" => {
                    cl += 1;
                    cl_value = value.parse().ok();
                }
                "transfer-encoding" => {
                    te += 1;
                    te_chunked = value.to_ascii_lowercase().trim_end().ends_with("chunked");
                }
                "upgrade" => upgrade = true,
                _ => {}
            }
        }
        let idx = self.index;
        if cl > 0 && te > 0 {
            self.violations.push((idx, "cl_and_te"));
        } else if cl > 1 {
            self.violations.push((idx, "multiple_content_length"));
        } else if te > 1 {
            self.violations.push((idx, "multiple_transfer_encoding"));
        }
        if upgrade || request_line.starts_with("CONNECT ") {
            // The stream may stop being HTTP/1 requests after this one.
            self.state = State::Off;
            return;
        }
        self.state = if te > 0 {
            if te_chunked {
                State::ChunkSize
            } else {
                State::Off
            }
        } else {
            match cl_value {
                Some(0) | None if cl == 0 => self.next_request(),
                Some(0) => self.next_request(),
                Some(n) => State::Body(n),
                None => State::Off,
            }
        };
    }
}

/// Appends bytes up to and including the next LF to `line`; returns
/// whether the line is complete and how many bytes were used.
fn take_line(line: &mut Vec<u8>, data: &[u8]) -> (bool, usize) {
    match data.iter().position(|b| *b == b'\n') {
        Some(i) => {
            line.extend_from_slice(&data[..=i]);
            (true, i + 1)
        }
        None => {
            line.extend_from_slice(data);
            (false, data.len())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scan(chunks: &[&[u8]]) -> H1Scanner {
        let mut s = H1Scanner::default();
        for c in chunks {
            s.feed(c);
        }
        s
    }

    #[test]
    fn clean_pipelined_requests_have_no_violation() {
        let s = scan(&[
            b"GET / HTTP/1.1\r\nHost: a\r\n\r\n",
            b"POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello",
            b"POST /y HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
            b"GET /z HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
        ]);
        for i in 0..3 {
            assert_eq!(s.violation(i), None, "request {i}");
        }
        assert_eq!(s.violation(3), Some("cl_and_te"));
    }

    #[test]
    fn detects_every_ambiguity_whatever_the_order() {
        for (raw, want) in [
            (&b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n"[..], "cl_and_te"),
            (b"POST / HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n", "cl_and_te"),
            (b"POST / HTTP/1.1\r\ncontent-LENGTH: 5\r\nContent-Length: 5\r\n\r\nhello", "multiple_content_length"),
            (b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", "multiple_transfer_encoding"),
        ] {
            assert_eq!(scan(&[raw]).violation(0), Some(want), "{}", String::from_utf8_lossy(raw));
        }
    }

    #[test]
    fn survives_arbitrary_splits_and_chunk_extensions() {
        let raw = b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3;ext=1\r\nabc\r\n0\r\nX-Trailer: 1\r\n\r\nGET / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\nx";
        for split in 1..raw.len() {
            let s = scan(&[&raw[..split], &raw[split..]]);
            assert_eq!(s.violation(0), None, "split {split}");
            assert_eq!(
                s.violation(1),
                Some("multiple_content_length"),
                "split {split}"
            );
        }
        // One byte at a time.
        let mut s = H1Scanner::default();
        for b in raw.iter() {
            s.feed(&[*b]);
        }
        assert_eq!(s.violation(1), Some("multiple_content_length"));
    }

    #[test]
    fn gives_up_on_http2_and_upgrades() {
        let s = scan(&[
            b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
            b"Content-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
        ]);
        assert_eq!(s.violation(0), None);
        let s = scan(&[
            b"GET /ws HTTP/1.1\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n",
            b"POST / HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
        ]);
        assert_eq!(
            s.violation(1),
            None,
            "bytes after an upgrade are not requests"
        );
    }
}
