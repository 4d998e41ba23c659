//! Just enough of the W3C WebDriver protocol to drive Debian's chromium
//! through chromedriver: open a page, run a script, take a screenshot.
//! Plain HTTP/1.1 over a `TcpStream`, so every call must run on a thread
//! inside the namespace where chromedriver listens (see `Lab::in_ns`).

use std::io::{BufRead, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

pub struct Session {
    driver: String,
    id: String,
}

fn call(
    driver: &str,
    method: &str,
    path: &str,
    body: Option<&serde_json::Value>,
) -> serde_json::Value {
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let mut s = TcpStream::connect(driver).unwrap_or_else(|e| panic!("chromedriver {driver}: {e}"));
    s.set_read_timeout(Some(Duration::from_secs(60)))
        .expect("timeout");
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {driver}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).expect("webdriver write");
    // chromedriver keeps the connection open whatever the request says:
    // read exactly the announced body.
    let mut r = std::io::BufReader::new(s);
    let mut head = String::new();
    loop {
        let mut line = String::new();
        let n = r.read_line(&mut line).expect("webdriver read");
        if n == 0 || line == "\r\n" {
            break;
        }
        head.push_str(&line);
    }
    let lower = head.to_ascii_lowercase();
    let payload = if let Some(len) = lower
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse::<usize>().ok())
    {
        let mut body = vec![0u8; len];
        r.read_exact(&mut body).expect("webdriver body");
        String::from_utf8_lossy(&body).into_owned()
    } else {
        let mut rest = String::new();
        let _ = r.read_to_string(&mut rest);
        if lower.contains("transfer-encoding: chunked") {
            dechunk(&rest)
        } else {
            rest
        }
    };
    let v: serde_json::Value = serde_json::from_str(&payload)
        .unwrap_or_else(|e| panic!("webdriver {method} {path}: {e}: {head}\n{payload}"));
    assert!(
        head.starts_with("HTTP/1.1 200"),
        "webdriver {method} {path}: {head}\n{v}"
    );
    v["value"].clone()
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        s = rest[n..].trim_start_matches("\r\n");
    }
    out
}

impl Session {
    /// A new headless chromium session. `profile` is an empty directory.
    pub fn new(driver: &str, profile: &str) -> Session {
        // The flags the machine notes list: without the background
        // networking ones chromium keeps dialling out of a closed network.
        let caps = serde_json::json!({
            "capabilities": {"alwaysMatch": {
                "browserName": "chrome",
                "goog:chromeOptions": {
                    "binary": "/usr/bin/chromium",
                    "args": [
                        "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                        "--no-first-run", "--disable-background-networking",
                        "--disable-component-update", "--disable-sync",
                        "--disable-dev-shm-usage", "--window-size=1200,900",
                        format!("--user-data-dir={profile}"),
                    ]
                }
            }}
        });
        let v = call(driver, "POST", "/session", Some(&caps));
        let id = v["sessionId"].as_str().expect("sessionId").to_string();
        Session {
            driver: driver.to_string(),
            id,
        }
    }

    pub fn goto(&self, url: &str) {
        call(
            &self.driver,
            "POST",
            &format!("/session/{}/url", self.id),
            Some(&serde_json::json!({ "url": url })),
        );
    }

    /// Runs a script in the page and returns its value.
    pub fn script(&self, js: &str) -> serde_json::Value {
        call(
            &self.driver,
            "POST",
            &format!("/session/{}/execute/sync", self.id),
            Some(&serde_json::json!({ "script": js, "args": [] })),
        )
    }

    /// What a person reads in the element (`innerText`: rendered text,
    /// after CSS such as `text-transform`), or "" when it is absent.
    pub fn text(&self, selector: &str) -> String {
        let js = format!(
            "const e = document.querySelector({}); return e ? e.innerText : '';",
            serde_json::Value::String(selector.to_string())
        );
        self.script(&js).as_str().unwrap_or("").to_string()
    }

    pub fn screenshot_png(&self) -> Vec<u8> {
        let v = call(
            &self.driver,
            "GET",
            &format!("/session/{}/screenshot", self.id),
            None,
        );
        base64_decode(v.as_str().expect("screenshot base64"))
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        let _ = std::panic::catch_unwind(|| {
            call(
                &self.driver,
                "DELETE",
                &format!("/session/{}", self.id),
                None,
            )
        });
    }
}

fn base64_decode(s: &str) -> Vec<u8> {
    let val = |c: u8| match c {
        b'A'..=b'Z' => Some(c - b'A'),
        b'a'..=b'z' => Some(c - b'a' + 26),
        b'0'..=b'9' => Some(c - b'0' + 52),
        b'+' => Some(62),
        b'/' => Some(63),
        _ => None,
    };
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0);
    for v in s.bytes().filter_map(val) {
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    out
}
