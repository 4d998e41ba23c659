//! PROXY protocol v1 and v2 headers from a client. A header that decodes is no longer
//! than the input, and the addresses it carries encode (v1 and v2) and decode back the same.
#![no_main]
use libfuzzer_sys::fuzz_target;
use tandem::dataplane::proxy_protocol::{decode, v1, v2, Decoded};

fuzz_target!(|data: &[u8]| {
    if data.is_empty() {
        return;
    }
    // Fed as it arrives: every prefix either asks for more, fails, or decodes.
    for end in [data.len() / 3, data.len() / 2, data.len()] {
        if let Ok(Some((_, used))) = decode(&data[..end.max(1)]) {
            assert!(used <= end.max(1), "header longer than the bytes read");
        }
    }
    if let Ok(Some((Decoded::Proxied { src, dst }, _))) = decode(data) {
        if src.is_ipv4() == dst.is_ipv4() {
            for wire in [v1(src, dst), v2(src, dst)] {
                let back = decode(&wire).expect("own header decodes");
                let (d, used) = back.expect("own header is complete");
                assert_eq!(used, wire.len());
                // The encoders write IPv4-mapped IPv6 addresses as IPv4 (what the peer
                // connected from, as its kernel would report it).
                let canon = |a: std::net::SocketAddr| (a.ip().to_canonical(), a.port());
                match d {
                    Decoded::Proxied { src: s, dst: t } => {
                        assert_eq!((canon(s), canon(t)), (canon(src), canon(dst)));
                    }
                    Decoded::Local => panic!("own header decoded as LOCAL"),
                }
            }
        }
    }
});
