//! The client side: one GET ([`http_get`], a small builder) and raw
//! HTTP/1.1 exchanges ([`request`], [`read_response`]).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

pub type Headers = Vec<(String, String)>;

/// A GET over a fresh connection with `Connection: close`; see [`http_get`].
#[must_use]
pub struct Get {
    addr: SocketAddr,
    path: String,
    headers: String,
    connect_timeout: Duration,
    read_timeout: Duration,
}

/// `GET /` to `addr` (Host: test.local), 2 s to connect and 5 s to read
/// unless [`Get::timeout`] says otherwise. Finish with [`Get::send`] for
/// the whole response or [`Get::body`] for the body of a 200.
pub fn http_get(addr: SocketAddr) -> Get {
    Get {
        addr,
        path: "/".into(),
        headers: String::new(),
        connect_timeout: Duration::from_secs(2),
        read_timeout: Duration::from_secs(5),
    }
}

impl Get {
    pub fn path(mut self, path: &str) -> Get {
        self.path = path.to_string();
        self
    }

    /// Extra request header lines, each ending in `\r\n`.
    pub fn headers(mut self, lines: &str) -> Get {
        self.headers.push_str(lines);
        self
    }

    /// One timeout for the connect and for each read.
    pub fn timeout(mut self, t: Duration) -> Get {
        self.connect_timeout = t;
        self.read_timeout = t;
        self
    }

    /// (status, headers lowercased, body).
    pub fn send(self) -> Result<(u16, Headers, String), String> {
        exchange(self.connect()?, &self.raw())
            .map(|(s, h, b)| (s, h, String::from_utf8_lossy(&b).into_owned()))
    }

    /// The body, trimmed, of a 200 the server then closes cleanly (a reset
    /// after the answer is an error too); otherwise an error text.
    pub fn body(self) -> Result<String, String> {
        let raw = self.raw();
        let mut r = BufReader::new(self.connect()?);
        r.get_mut()
            .write_all(raw.as_bytes())
            .map_err(|e| format!("write: {e}"))?;
        let (status, _, body) = read_response(&mut r)?;
        let body = String::from_utf8_lossy(&body).trim().to_string();
        if status != 200 {
            return Err(format!("bad response: {status}: {body:?}"));
        }
        let mut rest = Vec::new();
        r.read_to_end(&mut rest).map_err(|e| format!("read: {e}"))?;
        Ok(body)
    }

    fn raw(&self) -> String {
        format!(
            "GET {} HTTP/1.1\r\nHost: test.local\r\n{}Connection: close\r\n\r\n",
            self.path, self.headers
        )
    }

    fn connect(&self) -> Result<TcpStream, String> {
        connect(self.addr, self.connect_timeout, self.read_timeout)
    }
}

/// A raw HTTP/1.1 exchange over a fresh connection: returns (status,
/// headers lowercased, body). Reads Content-Length bodies.
pub fn request(addr: SocketAddr, raw: &str) -> Result<(u16, Headers, Vec<u8>), String> {
    exchange(
        connect(addr, Duration::from_secs(2), Duration::from_secs(5))?,
        raw,
    )
}

fn connect(addr: SocketAddr, connect: Duration, read: Duration) -> Result<TcpStream, String> {
    let s = TcpStream::connect_timeout(&addr, connect).map_err(|e| format!("connect: {e}"))?;
    s.set_read_timeout(Some(read)).map_err(|e| e.to_string())?;
    Ok(s)
}

fn exchange(mut s: TcpStream, raw: &str) -> Result<(u16, Headers, Vec<u8>), String> {
    s.write_all(raw.as_bytes())
        .map_err(|e| format!("write: {e}"))?;
    read_response(&mut BufReader::new(s))
}

pub fn read_response<R: BufRead>(r: &mut R) -> Result<(u16, Headers, Vec<u8>), String> {
    let mut status_line = String::new();
    r.read_line(&mut status_line)
        .map_err(|e| format!("read: {e}"))?;
    if status_line.is_empty() {
        return Err("connection closed without a response".into());
    }
    let status: u16 = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("bad status line {status_line:?}"))?;
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        r.read_line(&mut line).map_err(|e| format!("read: {e}"))?;
        if line == "\r\n" || line.is_empty() {
            break;
        }
        if let Some((k, v)) = line.trim_end().split_once(':') {
            headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
        }
    }
    let len: usize = headers
        .iter()
        .find(|(k, _)| k == "content-length")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0u8; len];
    r.read_exact(&mut body).map_err(|e| format!("read: {e}"))?;
    Ok((status, headers, body))
}

pub fn header<'a>(h: &'a [(String, String)], name: &str) -> Option<&'a str> {
    h.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}
