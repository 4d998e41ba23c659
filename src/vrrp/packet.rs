//! VRRP advertisement wire format: VRRPv3 (RFC 5798 §5) and VRRPv2 (RFC 3768 §5).
//!
//! Lifecycle of a packet: on receive, the driver strips the IPv4 header with
//! [`parse_ipv4`] (IPv6 raw sockets hand over the payload only), checks the
//! TTL / hop limit itself (RFC 5798 §7.1), then calls [`decode`], which
//! validates length, version, type and checksum and reports which
//! [`ChecksumForm`] the sender used. On transmit, the driver turns a
//! `machine::Transmit` into an [`Advert`] and calls [`encode`]; the IP header
//! is left to the kernel (or to the driver with `IP_HDRINCL`).
//!
//! Everything here is pure: no sockets, no clock, and [`decode`] /
//! [`parse_ipv4`] never panic, whatever bytes they are given.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// IPv4 protocol number / IPv6 Next Header of VRRP (RFC 5798 §5.1.1.4, §5.1.2.4).
pub const IPPROTO_VRRP: u8 = 112;
/// Destination of IPv4 advertisements (RFC 5798 §5.1.1.2).
pub const VRRP_GROUP_V4: Ipv4Addr = Ipv4Addr::new(224, 0, 0, 18);
/// Destination of IPv6 advertisements (RFC 5798 §5.1.2.2).
pub const VRRP_GROUP_V6: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 0x12);
/// TTL / Hop Limit: senders MUST set 255 and receivers MUST drop anything
/// else, which proves the packet was not routed (RFC 5798 §5.1.1.3, §5.1.2.3, §7.1).
pub const VRRP_TTL: u8 = 255;
/// Priority of the router that owns the virtual addresses (RFC 5798 §5.2.4).
pub const PRIORITY_OWNER: u8 = 255;
/// Priority announcing that the current Master is resigning (RFC 5798 §5.2.4).
pub const PRIORITY_STOP: u8 = 0;
/// Virtual router MAC for IPv4 is `00-00-5E-00-01-{VRID}` (RFC 5798 §7.3).
pub const VMAC_PREFIX_V4: [u8; 5] = [0x00, 0x00, 0x5e, 0x00, 0x01];
/// Virtual router MAC for IPv6 is `00-00-5E-00-02-{VRID}` (RFC 5798 §7.3).
pub const VMAC_PREFIX_V6: [u8; 5] = [0x00, 0x00, 0x5e, 0x00, 0x02];

/// Fixed part of every VRRP message: version/type, VRID, priority, count,
/// interval word and checksum (RFC 5798 §5.1, RFC 3768 §5.1).
const HEADER_LEN: usize = 8;
/// VRRPv2 keeps 8 bytes of Authentication Data after the addresses
/// (RFC 3768 §5.3.10), zero and unused since RFC 3768 dropped authentication.
const V2_AUTH_LEN: usize = 8;
/// Only type defined by RFC 5798 §5.2.2 / RFC 3768 §5.3.2.
const TYPE_ADVERTISEMENT: u8 = 1;
/// The only VRRPv2 auth type we speak: "no authentication" (RFC 3768 §5.3.6).
const V2_AUTH_NONE: u8 = 0;
/// The rsvd nibble (RFC 5798 §5.2.6) sits on top of the 12-bit Max Adver Int (§5.2.7).
const V3_INTERVAL_MASK: u16 = 0x0fff;
/// Minimum Ethernet frame without FCS (Linux `ETH_ZLEN`) and the Ethernet
/// header (`ETH_HLEN`): a frame this short carries at most 46 bytes of IP,
/// anything beyond the real packet being padding.
const ETH_ZLEN: usize = 60;
const ETH_HLEN: usize = 14;
/// VRRP packets carry no IP options, so these are the header sizes a padded
/// minimum frame would have used.
const IPV4_HEADER_LEN: usize = 20;
const IPV6_HEADER_LEN: usize = 40;

/// The virtual router MAC address for `vrid` (RFC 5798 §7.3).
pub const fn virtual_mac(vrid: u8, ipv6: bool) -> [u8; 6] {
    let p = if ipv6 { VMAC_PREFIX_V6 } else { VMAC_PREFIX_V4 };
    [p[0], p[1], p[2], p[3], p[4], vrid]
}

/// Protocol version of an advertisement (the config's typed version).
pub use crate::config::VrrpVersion as Version;

/// A decoded (or to-be-encoded) advertisement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Advert {
    pub version: Version,
    pub vrid: u8,
    pub priority: u8,
    /// v3: Max Adver Int in centiseconds (12 bits, 1..=4095).
    /// v2: the Adver Int seconds value × 100, so both versions share a unit.
    pub interval_cs: u16,
    /// All IPv4 or all IPv6, matching the transport family.
    pub addrs: Vec<IpAddr>,
}

/// How the checksum of a VRRPv3-over-IPv4 advertisement was computed.
/// RFC 5798 §5.2.8 points at the IPv6 pseudo-header, which left IPv4 open to
/// interpretation; implementations split three ways (VRRP.md §2.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ChecksumForm {
    /// IPv4 pseudo-header `{src, dst, 0, 112, len}`: keepalived's default,
    /// tcpdump and Wireshark. For IPv6 this is the only form (RFC 2460 §8.1).
    PseudoHeader,
    /// Pseudo-header with 224.0.0.18 as destination even when unicast:
    /// keepalived ≤ 1.3.6 (acassen/keepalived#642).
    PseudoHeaderMulticast,
    /// VRRP bytes only: RFC 9568, Cisco, Juniper, and always VRRPv2.
    Plain,
}

impl ChecksumForm {
    /// Stable short name for config values, status output and metric labels.
    pub fn name(self) -> &'static str {
        match self {
            ChecksumForm::PseudoHeader => "pseudo-header",
            ChecksumForm::PseudoHeaderMulticast => "pseudo-header-multicast",
            ChecksumForm::Plain => "plain",
        }
    }
}

/// Why a received packet was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecodeError {
    /// Shorter than the fixed header (8 bytes VRRP, 20 bytes IPv4).
    Truncated,
    /// VRRP version other than 2 or 3, or version 2 carried over IPv6
    /// (RFC 3768 is IPv4 only).
    BadVersion(u8),
    /// Type other than ADVERTISEMENT (RFC 5798 §5.2.2: MUST be discarded).
    BadType(u8),
    /// Length does not match the address count (RFC 5798 §7.1), beyond what
    /// Ethernet padding of a minimum-size frame explains.
    BadLength { expected: usize, got: usize },
    /// None of the accepted checksum forms validates (RFC 5798 §7.1).
    BadChecksum,
    /// Count IPvX Addr is 0; RFC 5798 §5.2.5 requires at least one.
    NoAddresses,
    /// Source and destination are of different address families, so neither
    /// the address size nor the pseudo-header is defined.
    MixedFamily,
    /// Advertisement interval of 0, which would make timers fire instantly.
    BadInterval,
    /// VRRPv2 Auth Type other than 0; RFC 3768 §7.1 requires it to match
    /// ours, and we implement no authentication.
    BadAuthType(u8),
    /// IPv4 header version nibble is not 4.
    BadIpVersion(u8),
    /// IPv4 header length (IHL × 4, in bytes) below 20 or beyond the total length.
    BadIpHeaderLen(usize),
}

impl DecodeError {
    /// Short, stable label for a `reason` metric dimension and for the
    /// rate-limited receive-error logging RFC 9568 asks for.
    pub fn reason(&self) -> &'static str {
        match self {
            DecodeError::Truncated => "truncated",
            DecodeError::BadVersion(_) => "version",
            DecodeError::BadType(_) => "type",
            DecodeError::BadLength { .. } => "length",
            DecodeError::BadChecksum => "checksum",
            DecodeError::NoAddresses => "no_addresses",
            DecodeError::MixedFamily => "family",
            DecodeError::BadInterval => "interval",
            DecodeError::BadAuthType(_) => "auth",
            DecodeError::BadIpVersion(_) => "ip_version",
            DecodeError::BadIpHeaderLen(_) => "ip_header_len",
        }
    }
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::Truncated => write!(f, "packet shorter than its fixed header"),
            DecodeError::BadVersion(v) => write!(f, "unsupported VRRP version {v}"),
            DecodeError::BadType(t) => write!(f, "VRRP type {t} is not ADVERTISEMENT (1)"),
            DecodeError::BadLength { expected, got } => {
                write!(
                    f,
                    "length {got} does not match address count (expected {expected})"
                )
            }
            DecodeError::BadChecksum => write!(f, "checksum matches none of the accepted forms"),
            DecodeError::NoAddresses => write!(f, "advertisement carries no virtual address"),
            DecodeError::MixedFamily => write!(f, "source and destination address families differ"),
            DecodeError::BadInterval => write!(f, "advertisement interval is zero"),
            DecodeError::BadAuthType(t) => write!(f, "VRRPv2 auth type {t} is not supported"),
            DecodeError::BadIpVersion(v) => write!(f, "IP version {v} where 4 was expected"),
            DecodeError::BadIpHeaderLen(l) => write!(f, "bad IPv4 header length {l}"),
        }
    }
}

impl std::error::Error for DecodeError {}

/// Fields of a received IPv4 header that the driver needs for RFC 5798 §7.1
/// checks (TTL, protocol) and for [`decode`] (addresses).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv4Info {
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub ttl: u8,
    pub protocol: u8,
    pub header_len: usize,
}

/// Splits a datagram read from a raw IPv4 socket (Linux includes the header)
/// into header fields and payload. Bytes past the IP total length are
/// ignored; the header checksum is the kernel's business.
pub fn parse_ipv4(buf: &[u8]) -> Result<(Ipv4Info, &[u8]), DecodeError> {
    if buf.len() < IPV4_HEADER_LEN {
        return Err(DecodeError::Truncated);
    }
    let version = buf[0] >> 4;
    if version != 4 {
        return Err(DecodeError::BadIpVersion(version));
    }
    let header_len = usize::from(buf[0] & 0x0f) * 4;
    if header_len < IPV4_HEADER_LEN {
        return Err(DecodeError::BadIpHeaderLen(header_len));
    }
    let total_len = usize::from(u16::from_be_bytes([buf[2], buf[3]]));
    if total_len < header_len {
        return Err(DecodeError::BadIpHeaderLen(header_len));
    }
    let payload = buf
        .get(header_len..total_len)
        .ok_or(DecodeError::Truncated)?;
    let info = Ipv4Info {
        src: Ipv4Addr::new(buf[12], buf[13], buf[14], buf[15]),
        dst: Ipv4Addr::new(buf[16], buf[17], buf[18], buf[19]),
        ttl: buf[8],
        protocol: buf[9],
        header_len,
    };
    Ok((info, payload))
}

/// The order of addresses in our adverts: configuration order, except that
/// IPv6 link-local virtual addresses come first (RFC 5798 §5.2.9: "the first
/// address MUST be the IPv6 link-local address associated with the virtual
/// router"). Receivers compare the list as a set, so this costs nothing with
/// peers that do not care, and satisfies keepalived's `vrrp_strict` check.
pub fn advert_order(addrs: impl IntoIterator<Item = IpAddr>) -> Vec<IpAddr> {
    let mut v: Vec<IpAddr> = addrs.into_iter().collect();
    // Stable: the rest keeps its configured order.
    v.sort_by_key(|a| match a {
        IpAddr::V6(a) => a.segments()[0] & 0xffc0 != 0xfe80,
        IpAddr::V4(_) => true,
    });
    v
}

/// Serialises `adv` as the VRRP payload for an IP packet from `src` to `dst`.
///
/// Preconditions (config validation's job, checked only in debug builds):
/// at most 255 addresses, all of the same family as `src` and `dst`; v2 only
/// over IPv4. The interval is clamped into the field's range rather than
/// wrapped: v3 to 1..=4095 cs, v2 to 1..=255 whole seconds (rounded down).
///
/// `form` applies to VRRPv3 over IPv4 only: VRRPv2 never uses a pseudo-header
/// (RFC 3768 §5.3.8) and IPv6 always does (RFC 5798 §5.2.8).
pub fn encode(adv: &Advert, src: IpAddr, dst: IpAddr, form: ChecksumForm) -> Vec<u8> {
    debug_assert!(
        adv.addrs.len() <= usize::from(u8::MAX),
        "too many addresses"
    );
    debug_assert!(
        adv.addrs.iter().all(|a| a.is_ipv6() == src.is_ipv6()) && src.is_ipv6() == dst.is_ipv6(),
        "address families must match the transport"
    );
    let count = u8::try_from(adv.addrs.len()).unwrap_or(u8::MAX);
    let mut out = Vec::with_capacity(HEADER_LEN + adv.addrs.len() * 16 + V2_AUTH_LEN);
    out.push((adv.version.number() << 4) | TYPE_ADVERTISEMENT);
    out.push(adv.vrid);
    out.push(adv.priority);
    out.push(count);
    match adv.version {
        Version::V3 => {
            let interval = adv.interval_cs.clamp(1, V3_INTERVAL_MASK);
            out.extend_from_slice(&interval.to_be_bytes());
        }
        Version::V2 => {
            let secs = (adv.interval_cs / 100).clamp(1, u16::from(u8::MAX));
            out.push(V2_AUTH_NONE);
            out.push(u8::try_from(secs).unwrap_or(u8::MAX));
        }
    }
    out.extend_from_slice(&[0, 0]);
    for addr in adv.addrs.iter().take(usize::from(count)) {
        match addr {
            IpAddr::V4(a) => out.extend_from_slice(&a.octets()),
            IpAddr::V6(a) => out.extend_from_slice(&a.octets()),
        }
    }
    if adv.version == Version::V2 {
        out.extend_from_slice(&[0; V2_AUTH_LEN]);
    }
    let form = match adv.version {
        Version::V2 => ChecksumForm::Plain,
        Version::V3 => form,
    };
    let initial = pseudo_sum(adv.version, form, src, dst, out.len());
    let csum = !fold(sum_words(&out, initial));
    out[6..8].copy_from_slice(&csum.to_be_bytes());
    out
}

/// Parses and validates an advertisement received from `src` to `dst`
/// (the addresses from the IP header, which the pseudo-header and the
/// address family depend on).
///
/// For VRRPv3 over IPv4 all three checksum forms are accepted, tried in the
/// order actual-destination pseudo-header, 224.0.0.18 pseudo-header, plain;
/// the one that matched is returned so the caller can report it per peer.
/// The reserved nibble is ignored (RFC 5798 §5.2.6). VRID, priority, TTL and
/// the address list are *not* judged here: they depend on configuration.
pub fn decode(
    payload: &[u8],
    src: IpAddr,
    dst: IpAddr,
) -> Result<(Advert, ChecksumForm), DecodeError> {
    if payload.len() < HEADER_LEN {
        return Err(DecodeError::Truncated);
    }
    let version = match payload[0] >> 4 {
        2 => Version::V2,
        3 => Version::V3,
        v => return Err(DecodeError::BadVersion(v)),
    };
    let kind = payload[0] & 0x0f;
    if kind != TYPE_ADVERTISEMENT {
        return Err(DecodeError::BadType(kind));
    }
    // RFC 5798 §5.2.5: the family of the addresses is inferred from the transport.
    let (addr_len, ip_header_len) = match (src, dst) {
        (IpAddr::V4(_), IpAddr::V4(_)) => (4, IPV4_HEADER_LEN),
        (IpAddr::V6(_), IpAddr::V6(_)) => (16, IPV6_HEADER_LEN),
        _ => return Err(DecodeError::MixedFamily),
    };
    if version == Version::V2 && addr_len == 16 {
        return Err(DecodeError::BadVersion(2));
    }
    let count = usize::from(payload[3]);
    let trailer = if version == Version::V2 {
        V2_AUTH_LEN
    } else {
        0
    };
    let expected = HEADER_LEN + count * addr_len + trailer;
    check_length(payload, expected, ip_header_len)?;
    let msg = &payload[..expected];

    let form = verify_checksum(version, msg, src, dst)?;

    if count == 0 {
        return Err(DecodeError::NoAddresses);
    }
    let interval_cs = match version {
        Version::V3 => u16::from_be_bytes([msg[4], msg[5]]) & V3_INTERVAL_MASK,
        Version::V2 => {
            if msg[4] != V2_AUTH_NONE {
                return Err(DecodeError::BadAuthType(msg[4]));
            }
            u16::from(msg[5]) * 100
        }
    };
    if interval_cs == 0 {
        return Err(DecodeError::BadInterval);
    }
    let addrs = msg[HEADER_LEN..HEADER_LEN + count * addr_len]
        .chunks_exact(addr_len)
        .map(|c| match <[u8; 16]>::try_from(c) {
            Ok(b) => IpAddr::V6(Ipv6Addr::from(b)),
            Err(_) => IpAddr::V4(Ipv4Addr::new(c[0], c[1], c[2], c[3])),
        })
        .collect();
    let adv = Advert {
        version,
        vrid: msg[1],
        priority: msg[2],
        interval_cs,
        addrs,
    };
    Ok((adv, form))
}

/// Exact length, or the real packet followed by zero padding that a
/// minimum-size Ethernet frame would add (keepalived: "Allow for Ethernet
/// frame padding"). Longer payloads cannot be padding and are rejected.
fn check_length(payload: &[u8], expected: usize, ip_header_len: usize) -> Result<(), DecodeError> {
    let got = payload.len();
    let max_padded = (ETH_ZLEN - ETH_HLEN).saturating_sub(ip_header_len);
    let is_padding =
        got > expected && got <= max_padded && payload[expected..].iter().all(|&b| b == 0);
    if got == expected || is_padding {
        Ok(())
    } else {
        Err(DecodeError::BadLength { expected, got })
    }
}

fn verify_checksum(
    version: Version,
    msg: &[u8],
    src: IpAddr,
    dst: IpAddr,
) -> Result<ChecksumForm, DecodeError> {
    let candidates: &[ChecksumForm] = match (version, dst) {
        (Version::V2, _) => &[ChecksumForm::Plain],
        (Version::V3, IpAddr::V6(_)) => &[ChecksumForm::PseudoHeader],
        // With dst already 224.0.0.18 the multicast form is the same sum;
        // skipping it keeps the reported form truthful.
        (Version::V3, IpAddr::V4(d)) if d == VRRP_GROUP_V4 => {
            &[ChecksumForm::PseudoHeader, ChecksumForm::Plain]
        }
        (Version::V3, IpAddr::V4(_)) => &[
            ChecksumForm::PseudoHeader,
            ChecksumForm::PseudoHeaderMulticast,
            ChecksumForm::Plain,
        ],
    };
    candidates
        .iter()
        .copied()
        .find(|&form| {
            fold(sum_words(
                msg,
                pseudo_sum(version, form, src, dst, msg.len()),
            )) == 0xffff
        })
        .ok_or(DecodeError::BadChecksum)
}

/// One's-complement sum of the pseudo-header that `form` calls for
/// (RFC 5798 §5.2.8; IPv6 layout from RFC 2460 §8.1). Zero when none applies.
fn pseudo_sum(version: Version, form: ChecksumForm, src: IpAddr, dst: IpAddr, len: usize) -> u64 {
    // VRRP messages are far below 64 KiB; saturating keeps this total anyway.
    let len32 = u32::try_from(len).unwrap_or(u32::MAX);
    match (version, form, src, dst) {
        (Version::V2, ..) | (Version::V3, ChecksumForm::Plain, IpAddr::V4(_), _) => 0,
        (Version::V3, _, IpAddr::V6(s), IpAddr::V6(d)) => {
            let mut acc = sum_words(&s.octets(), 0);
            acc = sum_words(&d.octets(), acc);
            acc = sum_words(&len32.to_be_bytes(), acc);
            acc + u64::from(IPPROTO_VRRP)
        }
        (Version::V3, _, IpAddr::V4(s), IpAddr::V4(d)) => {
            let d = if form == ChecksumForm::PseudoHeaderMulticast {
                VRRP_GROUP_V4
            } else {
                d
            };
            let len16 = u16::try_from(len).unwrap_or(u16::MAX);
            let mut acc = sum_words(&s.octets(), 0);
            acc = sum_words(&d.octets(), acc);
            acc + u64::from(IPPROTO_VRRP) + u64::from(len16)
        }
        // Mixed families have no defined pseudo-header; decode rejects them first.
        _ => 0,
    }
}

/// Adds `data` as big-endian 16-bit words, an odd last byte padded with zero (RFC 1071).
fn sum_words(data: &[u8], mut acc: u64) -> u64 {
    let mut words = data.chunks_exact(2);
    for w in &mut words {
        acc += u64::from(u16::from_be_bytes([w[0], w[1]]));
    }
    if let [last] = words.remainder() {
        acc += u64::from(*last) << 8;
    }
    acc
}

fn fold(mut acc: u64) -> u16 {
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    // The loop leaves at most 16 significant bits.
    acc as u16
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v4(a: u8, b: u8, c: u8, d: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(a, b, c, d))
    }

    fn group4() -> IpAddr {
        IpAddr::V4(VRRP_GROUP_V4)
    }

    fn group6() -> IpAddr {
        IpAddr::V6(VRRP_GROUP_V6)
    }

    fn ll6(last: u16) -> IpAddr {
        IpAddr::V6(Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, last))
    }

    fn keepalived_advert() -> Advert {
        Advert {
            version: Version::V3,
            vrid: 77,
            priority: 150,
            interval_cs: 100,
            addrs: vec![v4(192, 168, 77, 100)],
        }
    }

    /// Rewrites the checksum of a hand-crafted packet so that a later check
    /// (not the checksum) is what rejects it.
    fn fix_checksum(
        pkt: &mut [u8],
        version: Version,
        form: ChecksumForm,
        src: IpAddr,
        dst: IpAddr,
        len: usize,
    ) {
        pkt[6] = 0;
        pkt[7] = 0;
        let csum = !fold(sum_words(
            &pkt[..len],
            pseudo_sum(version, form, src, dst, len),
        ));
        pkt[6..8].copy_from_slice(&csum.to_be_bytes());
    }

    #[test]
    fn golden_keepalived_v3_pseudo_header() {
        let src = v4(192, 168, 77, 2);
        // Hand computation, 16-bit words:
        //   pseudo-header: c0a8 + 4d02 (src) + e000 + 0012 (dst) + 0070 (0, proto 112) + 000c (len 12)
        //   message:       314d + 9601 + 0064 + 0000 (csum) + c0a8 + 4d64
        //   sum = 0x3c3f6 -> fold 0xc3f6 + 0x3 = 0xc3f9 -> !0xc3f9 = 0x3c06
        let expected = [
            0x31, 0x4d, 0x96, 0x01, 0x00, 0x64, 0x3c, 0x06, 0xc0, 0xa8, 0x4d, 0x64,
        ];
        let bytes = encode(
            &keepalived_advert(),
            src,
            group4(),
            ChecksumForm::PseudoHeader,
        );
        assert_eq!(bytes, expected);
        let (adv, form) = decode(&expected, src, group4()).expect("golden vector decodes");
        assert_eq!(adv, keepalived_advert());
        assert_eq!(form, ChecksumForm::PseudoHeader);
    }

    #[test]
    fn golden_plain_checksum() {
        // Message words only: 314d + 9601 + 0064 + c0a8 + 4d64 = 0x1d5be -> 0xd5bf -> !0xd5bf = 0x2a40
        let src = v4(192, 168, 77, 2);
        let bytes = encode(&keepalived_advert(), src, group4(), ChecksumForm::Plain);
        assert_eq!(&bytes[6..8], &[0x2a, 0x40]);
        let (_, form) = decode(&bytes, src, group4()).expect("plain decodes");
        assert_eq!(form, ChecksumForm::Plain);
    }

    #[test]
    fn round_trip_v3_ipv4_all_forms_unicast() {
        let src = v4(10, 0, 0, 1);
        let dst = v4(10, 0, 0, 2);
        let adv = Advert {
            version: Version::V3,
            vrid: 1,
            priority: 100,
            interval_cs: 4095,
            addrs: vec![v4(10, 0, 0, 100), v4(10, 0, 0, 101), v4(10, 0, 0, 102)],
        };
        for form in [
            ChecksumForm::PseudoHeader,
            ChecksumForm::PseudoHeaderMulticast,
            ChecksumForm::Plain,
        ] {
            let bytes = encode(&adv, src, dst, form);
            assert_eq!(bytes.len(), 8 + 3 * 4);
            let (back, got) = decode(&bytes, src, dst).expect("round trip");
            assert_eq!(back, adv);
            assert_eq!(got, form, "form {}", form.name());
        }
    }

    #[test]
    fn multicast_form_to_group_reports_pseudo_header() {
        // Identical sums when dst is already 224.0.0.18: report the plain truth.
        let src = v4(10, 0, 0, 1);
        let bytes = encode(
            &keepalived_advert(),
            src,
            group4(),
            ChecksumForm::PseudoHeaderMulticast,
        );
        let (_, form) = decode(&bytes, src, group4()).expect("decodes");
        assert_eq!(form, ChecksumForm::PseudoHeader);
    }

    #[test]
    fn checksum_depends_on_pseudo_header_addresses() {
        let bytes = encode(
            &keepalived_advert(),
            v4(10, 0, 0, 1),
            v4(10, 0, 0, 2),
            ChecksumForm::PseudoHeader,
        );
        // Another receiver address breaks the actual-dst and plain forms alike.
        assert_eq!(
            decode(&bytes, v4(10, 0, 0, 1), v4(10, 0, 0, 3)),
            Err(DecodeError::BadChecksum)
        );
        assert_eq!(
            decode(&bytes, v4(10, 0, 0, 9), v4(10, 0, 0, 2)),
            Err(DecodeError::BadChecksum)
        );
    }

    #[test]
    fn round_trip_v2() {
        let src = v4(10, 0, 0, 1);
        let adv = Advert {
            version: Version::V2,
            vrid: 51,
            priority: 200,
            interval_cs: 300,
            addrs: vec![v4(10, 0, 0, 100), v4(10, 0, 0, 101)],
        };
        // The form argument must not matter for v2 (RFC 3768: no pseudo-header).
        for form in [
            ChecksumForm::PseudoHeader,
            ChecksumForm::PseudoHeaderMulticast,
            ChecksumForm::Plain,
        ] {
            let bytes = encode(&adv, src, group4(), form);
            assert_eq!(bytes.len(), 8 + 2 * 4 + 8);
            assert_eq!(bytes[0], 0x21);
            assert_eq!(bytes[4], 0, "auth type none");
            assert_eq!(bytes[5], 3, "interval in seconds");
            assert_eq!(&bytes[16..], &[0; 8], "auth data");
            let (back, got) = decode(&bytes, src, group4()).expect("v2 round trip");
            assert_eq!(back, adv);
            assert_eq!(got, ChecksumForm::Plain);
        }
    }

    #[test]
    fn v2_with_pseudo_header_checksum_is_rejected() {
        let src = v4(10, 0, 0, 1);
        let adv = Advert {
            version: Version::V2,
            ..keepalived_advert()
        };
        let mut bytes = encode(&adv, src, group4(), ChecksumForm::Plain);
        let len = bytes.len();
        fix_checksum(
            &mut bytes,
            Version::V3,
            ChecksumForm::PseudoHeader,
            src,
            group4(),
            len,
        );
        assert_eq!(decode(&bytes, src, group4()), Err(DecodeError::BadChecksum));
    }

    #[test]
    fn v2_interval_encoding_clamps_to_whole_seconds() {
        let mut adv = Advert {
            version: Version::V2,
            ..keepalived_advert()
        };
        adv.interval_cs = 50;
        assert_eq!(
            encode(&adv, v4(1, 1, 1, 1), group4(), ChecksumForm::Plain)[5],
            1
        );
        adv.interval_cs = 30_000;
        assert_eq!(
            encode(&adv, v4(1, 1, 1, 1), group4(), ChecksumForm::Plain)[5],
            255
        );
    }

    #[test]
    fn round_trip_ipv6() {
        let src = ll6(1);
        let adv = Advert {
            version: Version::V3,
            vrid: 9,
            priority: 254,
            interval_cs: 10,
            addrs: vec![ll6(0x99), "2001:db8::99".parse().expect("literal")],
        };
        // IPv6 always uses the RFC 2460 §8.1 pseudo-header, whatever form is asked for.
        let reference = encode(&adv, src, group6(), ChecksumForm::PseudoHeader);
        for form in [ChecksumForm::PseudoHeaderMulticast, ChecksumForm::Plain] {
            assert_eq!(encode(&adv, src, group6(), form), reference);
        }
        assert_eq!(reference.len(), 8 + 2 * 16);
        let (back, form) = decode(&reference, src, group6()).expect("v6 round trip");
        assert_eq!(back, adv);
        assert_eq!(form, ChecksumForm::PseudoHeader);
        // A plain-checksummed IPv6 packet is not accepted.
        let mut plain = reference.clone();
        let len = plain.len();
        fix_checksum(
            &mut plain,
            Version::V3,
            ChecksumForm::Plain,
            v4(0, 0, 0, 0),
            v4(0, 0, 0, 0),
            len,
        );
        assert_eq!(decode(&plain, src, group6()), Err(DecodeError::BadChecksum));
    }

    #[test]
    fn ipv6_pseudo_header_golden() {
        // fe80::1 -> ff02::12, VRID 1, prio 100, 1 s, one VIP fe80::99.
        // Pseudo: fe80 + 0001 (src) + ff02 + 0012 (dst) + 0000 + 0018 (len 24) + 0000 + 0070 (next header)
        // Msg:    3101 + 6401 + 0064 + 0000 (csum) + fe80 + 0099
        // sum = 0x3929c -> fold 0x929c + 0x3 = 0x929f -> !0x929f = 0x6d60
        let adv = Advert {
            version: Version::V3,
            vrid: 1,
            priority: 100,
            interval_cs: 100,
            addrs: vec![ll6(0x99)],
        };
        let bytes = encode(&adv, ll6(1), group6(), ChecksumForm::PseudoHeader);
        assert_eq!(&bytes[6..8], &[0x6d, 0x60]);
    }

    #[test]
    fn reserved_bits_are_ignored() {
        let src = v4(192, 168, 77, 2);
        let mut bytes = encode(
            &keepalived_advert(),
            src,
            group4(),
            ChecksumForm::PseudoHeader,
        );
        bytes[4] |= 0xf0;
        fix_checksum(
            &mut bytes,
            Version::V3,
            ChecksumForm::PseudoHeader,
            src,
            group4(),
            12,
        );
        let (adv, _) = decode(&bytes, src, group4()).expect("rsvd ignored");
        assert_eq!(adv.interval_cs, 100);
    }

    #[test]
    fn ethernet_padding_is_tolerated_only_up_to_minimum_frame() {
        let src = v4(192, 168, 77, 2);
        let bytes = encode(
            &keepalived_advert(),
            src,
            group4(),
            ChecksumForm::PseudoHeader,
        );
        // 60-byte frame - 14 Ethernet - 20 IPv4 = 26 bytes of VRRP payload.
        let mut padded = bytes.clone();
        padded.resize(26, 0);
        assert!(decode(&padded, src, group4()).is_ok());
        let mut too_long = bytes.clone();
        too_long.resize(27, 0);
        assert_eq!(
            decode(&too_long, src, group4()),
            Err(DecodeError::BadLength {
                expected: 12,
                got: 27
            })
        );
        let mut dirty = bytes.clone();
        dirty.resize(26, 0);
        dirty[20] = 1;
        assert_eq!(
            decode(&dirty, src, group4()),
            Err(DecodeError::BadLength {
                expected: 12,
                got: 26
            })
        );
        // IPv6 headers are 40 bytes: no VRRP packet fits a padded minimum frame.
        let adv6 = Advert {
            addrs: vec![ll6(0x99)],
            ..keepalived_advert()
        };
        let mut v6 = encode(&adv6, ll6(1), group6(), ChecksumForm::PseudoHeader);
        v6.push(0);
        assert_eq!(
            decode(&v6, ll6(1), group6()),
            Err(DecodeError::BadLength {
                expected: 24,
                got: 25
            })
        );
    }

    #[test]
    fn every_decode_error_is_reachable() {
        let src = v4(192, 168, 77, 2);
        let dst = group4();
        let good = encode(&keepalived_advert(), src, dst, ChecksumForm::PseudoHeader);

        assert_eq!(decode(&good[..7], src, dst), Err(DecodeError::Truncated));

        let mut p = good.clone();
        p[0] = 0x41;
        assert_eq!(decode(&p, src, dst), Err(DecodeError::BadVersion(4)));

        let v2 = encode(
            &Advert {
                version: Version::V2,
                ..keepalived_advert()
            },
            src,
            dst,
            ChecksumForm::Plain,
        );
        assert_eq!(
            decode(&v2, ll6(1), group6()),
            Err(DecodeError::BadVersion(2))
        );

        let mut p = good.clone();
        p[0] = 0x32;
        assert_eq!(decode(&p, src, dst), Err(DecodeError::BadType(2)));

        assert_eq!(
            decode(&good[..11], src, dst),
            Err(DecodeError::BadLength {
                expected: 12,
                got: 11
            })
        );
        let mut p = good.clone();
        p[3] = 2;
        assert_eq!(
            decode(&p, src, dst),
            Err(DecodeError::BadLength {
                expected: 16,
                got: 12
            })
        );

        let mut p = good.clone();
        p[11] ^= 1;
        assert_eq!(decode(&p, src, dst), Err(DecodeError::BadChecksum));

        let mut p = good[..8].to_vec();
        p[3] = 0;
        fix_checksum(&mut p, Version::V3, ChecksumForm::PseudoHeader, src, dst, 8);
        assert_eq!(decode(&p, src, dst), Err(DecodeError::NoAddresses));

        assert_eq!(decode(&good, src, group6()), Err(DecodeError::MixedFamily));
        assert_eq!(decode(&good, ll6(1), dst), Err(DecodeError::MixedFamily));

        let mut p = good.clone();
        p[4] = 0xf0;
        p[5] = 0;
        fix_checksum(
            &mut p,
            Version::V3,
            ChecksumForm::PseudoHeader,
            src,
            dst,
            12,
        );
        assert_eq!(decode(&p, src, dst), Err(DecodeError::BadInterval));

        let mut p = v2.clone();
        p[5] = 0;
        let len = p.len();
        fix_checksum(&mut p, Version::V2, ChecksumForm::Plain, src, dst, len);
        assert_eq!(decode(&p, src, dst), Err(DecodeError::BadInterval));

        let mut p = v2.clone();
        p[4] = 1;
        fix_checksum(&mut p, Version::V2, ChecksumForm::Plain, src, dst, len);
        assert_eq!(decode(&p, src, dst), Err(DecodeError::BadAuthType(1)));

        let mut ip = ipv4_packet(&good, 255);
        ip[0] = 0x65;
        assert_eq!(parse_ipv4(&ip), Err(DecodeError::BadIpVersion(6)));
        let mut ip = ipv4_packet(&good, 255);
        ip[0] = 0x44;
        assert_eq!(parse_ipv4(&ip), Err(DecodeError::BadIpHeaderLen(16)));
        let mut ip = ipv4_packet(&good, 255);
        ip[2..4].copy_from_slice(&19u16.to_be_bytes());
        assert_eq!(parse_ipv4(&ip), Err(DecodeError::BadIpHeaderLen(20)));
    }

    #[test]
    fn reasons_are_distinct_labels() {
        let all = [
            DecodeError::Truncated,
            DecodeError::BadVersion(0),
            DecodeError::BadType(0),
            DecodeError::BadLength {
                expected: 0,
                got: 0,
            },
            DecodeError::BadChecksum,
            DecodeError::NoAddresses,
            DecodeError::MixedFamily,
            DecodeError::BadInterval,
            DecodeError::BadAuthType(0),
            DecodeError::BadIpVersion(0),
            DecodeError::BadIpHeaderLen(0),
        ];
        let mut labels: Vec<_> = all.iter().map(|e| e.reason()).collect();
        assert!(labels
            .iter()
            .all(|l| l.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')));
        labels.sort_unstable();
        labels.dedup();
        assert_eq!(labels.len(), all.len());
        assert_eq!(DecodeError::BadChecksum.reason(), "checksum");
        assert!(!DecodeError::BadLength {
            expected: 12,
            got: 11
        }
        .to_string()
        .is_empty());
    }

    fn ipv4_packet(payload: &[u8], ttl: u8) -> Vec<u8> {
        let total = u16::try_from(20 + payload.len()).expect("small");
        let mut ip = vec![0x45, 0xc0];
        ip.extend_from_slice(&total.to_be_bytes());
        ip.extend_from_slice(&[0, 0, 0, 0, ttl, IPPROTO_VRRP, 0, 0]);
        ip.extend_from_slice(&[192, 168, 77, 2, 224, 0, 0, 18]);
        ip.extend_from_slice(payload);
        ip
    }

    #[test]
    fn parse_ipv4_header_and_payload() {
        let good = encode(
            &keepalived_advert(),
            v4(192, 168, 77, 2),
            group4(),
            ChecksumForm::PseudoHeader,
        );
        let mut ip = ipv4_packet(&good, 255);
        // Bytes past the total length (e.g. frame padding) are not payload.
        ip.extend_from_slice(&[0; 6]);
        let (info, payload) = parse_ipv4(&ip).expect("valid header");
        assert_eq!(
            info,
            Ipv4Info {
                src: Ipv4Addr::new(192, 168, 77, 2),
                dst: VRRP_GROUP_V4,
                ttl: 255,
                protocol: IPPROTO_VRRP,
                header_len: 20,
            }
        );
        assert_eq!(payload, &good[..]);
        assert!(decode(payload, IpAddr::V4(info.src), IpAddr::V4(info.dst)).is_ok());

        // Options: IHL 6 moves the payload by 4 bytes.
        let mut opt = vec![0x46, 0xc0];
        opt.extend_from_slice(&u16::try_from(24 + good.len()).expect("small").to_be_bytes());
        opt.extend_from_slice(&ip[4..20]);
        opt.extend_from_slice(&[1, 1, 1, 0]);
        opt.extend_from_slice(&good);
        let (info, payload) = parse_ipv4(&opt).expect("options");
        assert_eq!(info.header_len, 24);
        assert_eq!(payload, &good[..]);

        // Total length beyond the buffer: the datagram was cut short.
        let short = &ipv4_packet(&good, 255)[..30];
        assert_eq!(parse_ipv4(short), Err(DecodeError::Truncated));
        assert_eq!(parse_ipv4(&ip[..19]), Err(DecodeError::Truncated));
    }

    #[test]
    fn constants_match_the_rfc() {
        assert_eq!(IPPROTO_VRRP, 112);
        assert_eq!(VRRP_GROUP_V4.to_string(), "224.0.0.18");
        assert_eq!(VRRP_GROUP_V6.to_string(), "ff02::12");
        assert_eq!(VRRP_TTL, 255);
        assert_eq!(virtual_mac(77, false), [0x00, 0x00, 0x5e, 0x00, 0x01, 77]);
        assert_eq!(virtual_mac(1, true), [0x00, 0x00, 0x5e, 0x00, 0x02, 0x01]);
        assert_eq!(
            ChecksumForm::PseudoHeaderMulticast.name(),
            "pseudo-header-multicast"
        );
    }

    /// xorshift64*: deterministic, dependency-free randomness for fuzzing.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }
        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
    }

    #[test]
    fn random_and_mutated_input_never_panics() {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let addrs = [
            (v4(10, 0, 0, 1), group4()),
            (ll6(1), group6()),
            (v4(10, 0, 0, 1), group6()),
        ];
        let seeds = [
            encode(
                &keepalived_advert(),
                v4(10, 0, 0, 1),
                group4(),
                ChecksumForm::PseudoHeader,
            ),
            encode(
                &Advert {
                    version: Version::V2,
                    ..keepalived_advert()
                },
                v4(10, 0, 0, 1),
                group4(),
                ChecksumForm::Plain,
            ),
            encode(
                &Advert {
                    addrs: vec![ll6(5)],
                    ..keepalived_advert()
                },
                ll6(1),
                group6(),
                ChecksumForm::PseudoHeader,
            ),
        ];
        let mut accepted = 0;
        for i in 0..50_000 {
            let buf: Vec<u8> = if i % 2 == 0 {
                let len = rng.below(80) as usize;
                (0..len).map(|_| rng.next() as u8).collect()
            } else {
                // Mutate a valid packet: flip bytes and truncate / extend.
                let mut b = seeds[rng.below(3) as usize].clone();
                for _ in 0..rng.below(4) {
                    let at = rng.below(b.len() as u64) as usize;
                    b[at] = rng.next() as u8;
                }
                let len = rng.below(b.len() as u64 + 8) as usize;
                b.resize(len, 0);
                b
            };
            let (src, dst) = addrs[rng.below(3) as usize];
            if decode(&buf, src, dst).is_ok() {
                accepted += 1;
            }
            let _ = parse_ipv4(&buf);
        }
        // Mostly rejected, but the mutator does leave some valid packets.
        assert!(accepted > 0 && accepted < 50_000);
    }
}
