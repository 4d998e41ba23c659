//! VRRP advertisements (v2 and v3, IPv4 and IPv6) as a raw socket hands them over.
//! First byte: bit 0 picks the family (0: IPv4 datagram with its IP header, 1: IPv6
//! payload from a link-local sender to ff02::12). Whatever decodes must re-encode into a
//! packet that decodes to the same advert.
#![no_main]
use std::net::{IpAddr, Ipv6Addr};

use libfuzzer_sys::fuzz_target;
use tandem::vrrp::packet::{decode, encode, parse_ipv4, VRRP_GROUP_V6};

fuzz_target!(|data: &[u8]| {
    let Some((&sel, rest)) = data.split_first() else {
        return;
    };
    let (payload, src, dst) = if sel & 1 == 0 {
        match parse_ipv4(rest) {
            Ok((ip, payload)) => (payload, IpAddr::V4(ip.src), IpAddr::V4(ip.dst)),
            Err(_) => return,
        }
    } else {
        let src = IpAddr::V6(Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 1));
        (rest, src, IpAddr::V6(VRRP_GROUP_V6))
    };
    let Ok((adv, form)) = decode(payload, src, dst) else {
        return;
    };
    let again = encode(&adv, src, dst, form);
    match decode(&again, src, dst) {
        Ok((back, _)) => assert_eq!(back, adv, "re-encoded advert differs"),
        Err(e) => panic!("re-encoded advert does not decode: {e}"),
    }
});
