//! PROXY protocol headers (HAProxy's spec, v1 text and v2 binary) sent to a
//! backend before any client byte, so the backend learns the real client
//! address. Pure encoders; the TCP engine writes the bytes. Also the
//! decoder for headers an upstream L4 balancer sends us (`accept_proxy`).

use std::net::SocketAddr;

/// v2 signature: `\r\n\r\n\0\r\nQUIT\n`.
const V2_SIG: [u8; 12] = [
    0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a,
];

/// `PROXY TCP4 <src> <dst> <sport> <dport>\r\n`. Mixed families (an IPv4
/// client on an IPv6 listener) are reported as TCP6 with mapped addresses.
pub fn v1(src: SocketAddr, dst: SocketAddr) -> Vec<u8> {
    let (src, dst) = same_family(src, dst);
    let fam = if src.is_ipv4() { "TCP4" } else { "TCP6" };
    format!(
        "PROXY {fam} {} {} {} {}\r\n",
        src.ip(),
        dst.ip(),
        src.port(),
        dst.port()
    )
    .into_bytes()
}

/// v2 binary header, command PROXY, transport STREAM.
pub fn v2(src: SocketAddr, dst: SocketAddr) -> Vec<u8> {
    let (src, dst) = same_family(src, dst);
    let mut out = Vec::with_capacity(52);
    out.extend_from_slice(&V2_SIG);
    out.push(0x21); // version 2, command PROXY
    match (src, dst) {
        (SocketAddr::V4(s), SocketAddr::V4(d)) => {
            out.push(0x11); // AF_INET, STREAM
            out.extend_from_slice(&12u16.to_be_bytes());
            out.extend_from_slice(&s.ip().octets());
            out.extend_from_slice(&d.ip().octets());
            out.extend_from_slice(&s.port().to_be_bytes());
            out.extend_from_slice(&d.port().to_be_bytes());
        }
        (s, d) => {
            out.push(0x21); // AF_INET6, STREAM
            out.extend_from_slice(&36u16.to_be_bytes());
            out.extend_from_slice(&v6(s).octets());
            out.extend_from_slice(&v6(d).octets());
            out.extend_from_slice(&s.port().to_be_bytes());
            out.extend_from_slice(&d.port().to_be_bytes());
        }
    }
    out
}

fn v6(a: SocketAddr) -> std::net::Ipv6Addr {
    match a {
        SocketAddr::V4(a) => a.ip().to_ipv6_mapped(),
        SocketAddr::V6(a) => *a.ip(),
    }
}

/// The longest v1 line (spec §2.1) and the largest v2 header we accept
/// (16-byte preamble + addresses + TLVs; the spec allows 64 KiB of TLVs,
/// nobody sends more than a few hundred bytes).
pub const V1_MAX: usize = 107;
pub const V2_MAX: usize = 16 + 2048;

/// What a received header says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decoded {
    /// The client's and the original destination's addresses.
    Proxied { src: SocketAddr, dst: SocketAddr },
    /// `LOCAL` (v2) or `UNKNOWN` (v1): a health check of the sender
    /// itself; the connection's own addresses stand.
    Local,
}

/// Why a header was refused; the connection is closed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecodeError {
    NotProxy,
    Malformed(&'static str),
    TooLong,
}

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DecodeError::NotProxy => f.write_str("no PROXY protocol header"),
            DecodeError::Malformed(w) => write!(f, "malformed PROXY header: {w}"),
            DecodeError::TooLong => f.write_str("PROXY header too long"),
        }
    }
}

/// Decodes a v1 or v2 header at the start of `buf`: `Ok(None)` while more
/// bytes are needed, else the header and its length (the bytes after it
/// belong to the client's stream).
pub fn decode(buf: &[u8]) -> Result<Option<(Decoded, usize)>, DecodeError> {
    let n = buf.len().min(V2_SIG.len());
    if buf[..n] == V2_SIG[..n] {
        return if n < V2_SIG.len() {
            Ok(None)
        } else {
            decode_v2(buf)
        };
    }
    let n = buf.len().min(6);
    if buf[..n] != b"PROXY "[..n] {
        return Err(DecodeError::NotProxy);
    }
    decode_v1(buf)
}

fn decode_v1(buf: &[u8]) -> Result<Option<(Decoded, usize)>, DecodeError> {
    let Some(lf) = buf.iter().take(V1_MAX).position(|b| *b == b'\n') else {
        return if buf.len() >= V1_MAX {
            Err(DecodeError::TooLong)
        } else {
            Ok(None)
        };
    };
    if lf == 0 || buf[lf - 1] != b'\r' {
        return Err(DecodeError::Malformed("v1 line must end with CRLF"));
    }
    let line = std::str::from_utf8(&buf[..lf - 1])
        .map_err(|_| DecodeError::Malformed("v1 line is not ASCII"))?;
    let mut f = line.split(' ');
    f.next(); // "PROXY"
    let fam = f
        .next()
        .ok_or(DecodeError::Malformed("v1 family missing"))?;
    if fam == "UNKNOWN" {
        return Ok(Some((Decoded::Local, lf + 1)));
    }
    let want_v4 = match fam {
        "TCP4" => true,
        "TCP6" => false,
        _ => {
            return Err(DecodeError::Malformed(
                "v1 family is not TCP4, TCP6 or UNKNOWN",
            ))
        }
    };
    let mut ip = || -> Result<std::net::IpAddr, DecodeError> {
        let ip: std::net::IpAddr = f
            .next()
            .and_then(|s| s.parse().ok())
            .ok_or(DecodeError::Malformed("v1 address"))?;
        if ip.is_ipv4() != want_v4 {
            return Err(DecodeError::Malformed(
                "v1 address does not match its family",
            ));
        }
        Ok(ip)
    };
    let (sip, dip) = (ip()?, ip()?);
    let mut port = || -> Result<u16, DecodeError> {
        let p = f.next().ok_or(DecodeError::Malformed("v1 port missing"))?;
        // No sign, no leading zeros (spec §2.1), no trailing junk.
        if p.is_empty() || p.len() > 5 || (p.len() > 1 && p.starts_with('0')) {
            return Err(DecodeError::Malformed("v1 port"));
        }
        p.bytes()
            .all(|b| b.is_ascii_digit())
            .then(|| p.parse().ok())
            .flatten()
            .ok_or(DecodeError::Malformed("v1 port"))
    };
    let (sp, dp) = (port()?, port()?);
    if f.next().is_some() {
        return Err(DecodeError::Malformed("v1 line has extra fields"));
    }
    Ok(Some((
        Decoded::Proxied {
            src: SocketAddr::new(sip, sp),
            dst: SocketAddr::new(dip, dp),
        },
        lf + 1,
    )))
}

fn decode_v2(buf: &[u8]) -> Result<Option<(Decoded, usize)>, DecodeError> {
    if buf.len() < 16 {
        return Ok(None);
    }
    let (ver_cmd, fam) = (buf[12], buf[13]);
    if ver_cmd >> 4 != 2 {
        return Err(DecodeError::Malformed("v2 version is not 2"));
    }
    let len = u16::from_be_bytes([buf[14], buf[15]]) as usize;
    let total = 16 + len;
    if total > V2_MAX {
        return Err(DecodeError::TooLong);
    }
    if buf.len() < total {
        return Ok(None);
    }
    let body = &buf[16..total];
    match ver_cmd & 0x0f {
        0 => return Ok(Some((Decoded::Local, total))),
        1 => {}
        _ => {
            return Err(DecodeError::Malformed(
                "v2 command is neither LOCAL nor PROXY",
            ))
        }
    }
    let port = |b: &[u8]| u16::from_be_bytes([b[0], b[1]]);
    let decoded = match fam {
        // TCP or UDP over IPv4.
        0x11 | 0x12 if body.len() >= 12 => {
            let ip =
                |o: usize| std::net::Ipv4Addr::new(body[o], body[o + 1], body[o + 2], body[o + 3]);
            Decoded::Proxied {
                src: SocketAddr::from((ip(0), port(&body[8..]))),
                dst: SocketAddr::from((ip(4), port(&body[10..]))),
            }
        }
        0x21 | 0x22 if body.len() >= 36 => {
            let ip = |o: usize| {
                let mut a = [0u8; 16];
                a.copy_from_slice(&body[o..o + 16]);
                std::net::Ipv6Addr::from(a)
            };
            Decoded::Proxied {
                src: SocketAddr::from((ip(0), port(&body[32..]))),
                dst: SocketAddr::from((ip(16), port(&body[34..]))),
            }
        }
        0x11 | 0x12 | 0x21 | 0x22 => {
            return Err(DecodeError::Malformed("v2 address block too short"))
        }
        // AF_UNSPEC or AF_UNIX: nothing we can use as a client address.
        _ => Decoded::Local,
    };
    Ok(Some((decoded, total)))
}

fn same_family(src: SocketAddr, dst: SocketAddr) -> (SocketAddr, SocketAddr) {
    let unmap = |a: SocketAddr| match a {
        SocketAddr::V6(v) => match v.ip().to_ipv4_mapped() {
            Some(ip4) => SocketAddr::from((ip4, v.port())),
            None => a,
        },
        _ => a,
    };
    let (s, d) = (unmap(src), unmap(dst));
    if s.is_ipv4() == d.is_ipv4() {
        (s, d)
    } else {
        (
            SocketAddr::from((v6(s), s.port())),
            SocketAddr::from((v6(d), d.port())),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().expect("addr")
    }

    #[test]
    fn decode_round_trips_what_we_send() {
        for (src, dst) in [
            ("192.0.2.1:5555", "198.51.100.7:80"),
            ("[2001:db8::1]:1", "[2001:db8::2]:443"),
        ] {
            let want = Decoded::Proxied {
                src: addr(src),
                dst: addr(dst),
            };
            for mut h in [v1(addr(src), addr(dst)), v2(addr(src), addr(dst))] {
                let n = h.len();
                h.extend_from_slice(b"GET / HTTP/1.1\r\n");
                assert_eq!(decode(&h), Ok(Some((want, n))));
                // Every strict prefix asks for more bytes.
                for cut in 0..n {
                    assert_eq!(decode(&h[..cut]), Ok(None), "prefix {cut} of {h:?}");
                }
            }
        }
    }

    #[test]
    fn decode_local_and_unknown() {
        assert_eq!(decode(b"PROXY UNKNOWN\r\n"), Ok(Some((Decoded::Local, 15))));
        assert_eq!(
            decode(b"PROXY UNKNOWN ffff::1 ffff::2 1 2\r\nx"),
            Ok(Some((Decoded::Local, 35)))
        );
        let mut h = V2_SIG.to_vec();
        h.extend_from_slice(&[0x20, 0x00, 0x00, 0x00]);
        assert_eq!(decode(&h), Ok(Some((Decoded::Local, 16))));
        // PROXY over AF_UNIX carries no usable address.
        let mut h = V2_SIG.to_vec();
        h.extend_from_slice(&[0x21, 0x31, 0x00, 0x03, 1, 2, 3]);
        assert_eq!(decode(&h), Ok(Some((Decoded::Local, 19))));
    }

    #[test]
    fn decode_skips_v2_tlvs() {
        let mut h = v2(addr("192.0.2.1:1"), addr("192.0.2.2:2"));
        // One TLV (type 0x04 NOOP, 3 bytes) after the addresses.
        h[15] = 12 + 6;
        h.extend_from_slice(&[0x04, 0x00, 0x03, 0, 0, 0]);
        assert_eq!(decode(&h).map(|r| r.map(|(_, n)| n)), Ok(Some(34)));
    }

    #[test]
    fn decode_refuses_bad_headers() {
        let bad: &[&[u8]] = &[
            b"GET / HTTP/1.1\r\n",
            b"PROXY TCP5 1.2.3.4 1.2.3.5 1 2\r\n",
            b"PROXY TCP4 1.2.3.4 1.2.3.5 1 2\n",
            b"PROXY TCP4 1.2.3.4 ::1 1 2\r\n",
            b"PROXY TCP6 1.2.3.4 1.2.3.5 1 2\r\n",
            b"PROXY TCP4 1.2.3.4 1.2.3.5 01 2\r\n",
            b"PROXY TCP4 1.2.3.4 1.2.3.5 +1 2\r\n",
            b"PROXY TCP4 1.2.3.4 1.2.3.5 1 65536\r\n",
            b"PROXY TCP4 1.2.3.4 1.2.3.5 1 2 3\r\n",
            b"PROXY TCP4 1.2.3.4 1.2.3.5 1\r\n",
            b"PROXY TCP4  1.2.3.4 1.2.3.5 1 2\r\n",
        ];
        for b in bad {
            assert!(
                decode(b).is_err(),
                "{:?} accepted",
                String::from_utf8_lossy(b)
            );
        }
        assert_eq!(decode(&[b'P'; 200]), Err(DecodeError::NotProxy));
        let mut long = b"PROXY ".to_vec();
        long.resize(200, b'1');
        assert_eq!(decode(&long), Err(DecodeError::TooLong));
        let mut h = V2_SIG.to_vec();
        h.extend_from_slice(&[0x21, 0x11, 0xff, 0xff]);
        assert_eq!(decode(&h), Err(DecodeError::TooLong));
        let mut h = V2_SIG.to_vec();
        h.extend_from_slice(&[0x31, 0x11, 0x00, 0x00]);
        assert!(matches!(decode(&h), Err(DecodeError::Malformed(_))));
        let mut h = V2_SIG.to_vec();
        h.extend_from_slice(&[0x21, 0x11, 0x00, 0x04, 1, 2, 3, 4]);
        assert!(matches!(decode(&h), Err(DecodeError::Malformed(_))));
        let mut h = V2_SIG.to_vec();
        h.extend_from_slice(&[0x2f, 0x11, 0x00, 0x00]);
        assert!(matches!(decode(&h), Err(DecodeError::Malformed(_))));
    }

    #[test]
    fn v1_text() {
        let h = v1(
            "192.0.2.1:5555".parse().expect("a"),
            "198.51.100.7:80".parse().expect("a"),
        );
        assert_eq!(h, b"PROXY TCP4 192.0.2.1 198.51.100.7 5555 80\r\n");
        let h = v1(
            "[2001:db8::1]:5555".parse().expect("a"),
            "[2001:db8::2]:443".parse().expect("a"),
        );
        assert_eq!(h, b"PROXY TCP6 2001:db8::1 2001:db8::2 5555 443\r\n");
        // Mapped IPv4 client on a dual-stack socket is reported as TCP4.
        let h = v1(
            "[::ffff:192.0.2.1]:1".parse().expect("a"),
            "192.0.2.9:2".parse().expect("a"),
        );
        assert_eq!(h, b"PROXY TCP4 192.0.2.1 192.0.2.9 1 2\r\n");
    }

    #[test]
    fn v2_binary_ipv4() {
        let h = v2(
            "192.0.2.1:5555".parse().expect("a"),
            "198.51.100.7:80".parse().expect("a"),
        );
        let mut want = V2_SIG.to_vec();
        want.extend_from_slice(&[0x21, 0x11, 0x00, 0x0c]);
        want.extend_from_slice(&[192, 0, 2, 1, 198, 51, 100, 7]);
        want.extend_from_slice(&[0x15, 0xb3, 0x00, 0x50]);
        assert_eq!(h, want);
    }

    #[test]
    fn v2_binary_ipv6_length() {
        let h = v2(
            "[2001:db8::1]:1".parse().expect("a"),
            "[2001:db8::2]:2".parse().expect("a"),
        );
        assert_eq!(h.len(), 16 + 36);
        assert_eq!(&h[12..16], &[0x21, 0x21, 0x00, 0x24]);
    }
}
