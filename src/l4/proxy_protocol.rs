//! PROXY protocol headers (HAProxy's spec, v1 text and v2 binary) sent to a
//! backend before any client byte, so the backend learns the real client
//! address. Pure encoders; the TCP engine writes the bytes.

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
