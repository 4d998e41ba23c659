//! `[sync]`: replication of sticky sessions between the nodes (see `crate::sync`).

use super::defaults;
use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::{parse_socket_addr, Validator};

/// Shorter keys would make HMAC-SHA256 only as strong as the key; 32 bytes is its block-size
/// recommendation floor (RFC 2104 §3: at least the hash output length).
pub const MIN_KEY_LEN: usize = 32;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSync {
    pub listen: String,
    #[serde(default)]
    pub peers: Vec<String>,
    pub key: Option<String>,
    pub key_file: Option<String>,
    pub max_queue: Option<u64>,
}

#[derive(Clone, PartialEq, Serialize)]
pub struct SyncConfig {
    /// UDP address this node receives on (and sends from).
    pub listen: SocketAddr,
    pub peers: Vec<SocketAddr>,
    /// Shared HMAC-SHA256 key.
    #[serde(skip_serializing)]
    pub key: Vec<u8>,
    pub key_file: Option<PathBuf>,
    /// Events waiting to be sent; beyond it new ones are dropped and counted.
    pub max_queue: usize,
}

impl std::fmt::Debug for SyncConfig {
    // The key is a secret: never in a log line.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SyncConfig")
            .field("listen", &self.listen)
            .field("peers", &self.peers)
            .field("key", &format_args!("<{} bytes>", self.key.len()))
            .field("max_queue", &self.max_queue)
            .finish()
    }
}

impl Validator<'_> {
    pub(super) fn sync(&mut self, s: RawSync) -> Option<SyncConfig> {
        let listen = match parse_socket_addr(&s.listen) {
            Ok(a) if a.ip().is_unspecified() => {
                self.err(
                    "sync.listen",
                    "use this node's own address (peers see it as the sender)",
                );
                None
            }
            Ok(a) => Some(a),
            Err(e) => {
                self.err("sync.listen", e);
                None
            }
        };
        if s.peers.is_empty() {
            self.err("sync.peers", "name at least one peer (\"10.0.0.12:7480\")");
        }
        let mut peers = Vec::new();
        let mut seen = HashSet::new();
        for (i, p) in s.peers.iter().enumerate() {
            let path = format!("sync.peers[{i}]");
            match parse_socket_addr(p) {
                Ok(a) if Some(a) == listen => self.err(&path, "this is the listen address itself"),
                Ok(a) if !seen.insert(a) => self.err(&path, format!("duplicate peer {a}")),
                Ok(a) if listen.is_some_and(|l| l.is_ipv4() != a.is_ipv4()) => {
                    self.err(&path, "peers must be of the listen address's family")
                }
                Ok(a) => peers.push(a),
                Err(e) => self.err(&path, e),
            }
        }
        let key = match (s.key, &s.key_file) {
            (Some(k), None) => Some(k.into_bytes()),
            (None, Some(f)) => match std::fs::read(f) {
                // A trailing newline from `echo` or an editor is not part of the key.
                Ok(mut k) => {
                    while k.last().is_some_and(|b| b.is_ascii_whitespace()) {
                        k.pop();
                    }
                    Some(k)
                }
                Err(e) => {
                    self.err("sync.key_file", format!("cannot read {f:?}: {e}"));
                    None
                }
            },
            (Some(_), Some(_)) => {
                self.err("sync.key", "set either key or key_file, not both");
                None
            }
            (None, None) => {
                self.err(
                    "sync",
                    "set key (or key_file): the shared secret that authenticates peers",
                );
                None
            }
        };
        if let Some(k) = &key {
            if k.len() < MIN_KEY_LEN {
                let at = if s.key_file.is_some() {
                    "sync.key_file"
                } else {
                    "sync.key"
                };
                self.err(
                    at,
                    format!("the key has {} bytes; at least {MIN_KEY_LEN} are required (e.g. `openssl rand -hex 32`)", k.len()),
                );
            }
        }
        let max_queue = self.int("sync.max_queue", s.max_queue, defaults::SYNC_MAX_QUEUE) as usize;
        Some(SyncConfig {
            listen: listen?,
            peers,
            key: key?,
            key_file: s.key_file.map(PathBuf::from),
            max_queue,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    const KEY: &str = "0123456789abcdef0123456789abcdef";

    fn errors(body: &str) -> Vec<String> {
        match crate::config::parse(Path::new("t.toml"), body) {
            Ok(_) => Vec::new(),
            Err(e) => e.0.iter().map(|d| d.to_string()).collect(),
        }
    }

    #[test]
    fn valid_section() {
        let cfg = crate::config::parse(
            Path::new("t.toml"),
            &format!("[sync]\nlisten = \"10.0.0.11:7480\"\npeers = [\"10.0.0.12:7480\"]\nkey = \"{KEY}\"\n"),
        )
        .expect("valid");
        let s = cfg.sync.expect("sync");
        assert_eq!(s.peers.len(), 1);
        assert_eq!(s.key, KEY.as_bytes());
        assert!(
            !format!("{s:?}").contains(KEY),
            "the key never reaches a log"
        );
    }

    #[test]
    fn key_file_is_read_and_trimmed() {
        let path = std::env::temp_dir().join(format!("tandem-sync-key-{}", std::process::id()));
        std::fs::write(&path, format!("{KEY}\n")).expect("write");
        let cfg = crate::config::parse(
            Path::new("t.toml"),
            &format!("[sync]\nlisten = \"10.0.0.11:7480\"\npeers = [\"10.0.0.12:7480\"]\nkey_file = \"{}\"\n", path.display()),
        );
        let _ = std::fs::remove_file(&path);
        assert_eq!(cfg.expect("valid").sync.expect("sync").key, KEY.as_bytes());
    }

    #[test]
    fn errors_name_file_line_col_and_key() {
        let cases = [
            ("[sync]\nlisten = \"10.0.0.11:7480\"\npeers = [\"10.0.0.12:7480\"]\nkey = \"short\"\n", "t.toml:4:7: sync.key", "at least 32"),
            ("[sync]\nlisten = \"10.0.0.11\"\npeers = [\"10.0.0.12:7480\"]\nkey = \"K\"\n", "t.toml:2:10: sync.listen", "with a port"),
            ("[sync]\nlisten = \"10.0.0.11:7480\"\npeers = [\"10.0.0.11:7480\"]\nkey = \"K\"\n", "t.toml:3:10: sync.peers[0]", "listen address itself"),
            ("[sync]\nlisten = \"10.0.0.11:7480\"\npeers = []\nkey = \"K\"\n", "t.toml:3:9: sync.peers", "at least one peer"),
            ("[sync]\nlisten = \"10.0.0.11:7480\"\npeers = [\"10.0.0.12:7480\"]\n", "t.toml:1:1: sync", "set key"),
            ("[sync]\nlisten = \"0.0.0.0:7480\"\npeers = [\"10.0.0.12:7480\"]\nkey = \"K\"\n", "t.toml:2:10: sync.listen", "own address"),
            ("[sync]\nlisten = \"10.0.0.11:7480\"\npeers = [\"10.0.0.12:7480\"]\nkey = \"K\"\nkee = 1\n", "t.toml:5:1: sync.kee", "unknown key"),
        ];
        for (body, at, what) in cases {
            let errs = errors(body);
            assert!(
                errs.iter().any(|e| e.starts_with(at) && e.contains(what)),
                "{body:?}: want {at} {what:?}, got {errs:?}"
            );
        }
    }
}
