//! The RFC 5798 §7.1 receive policy: which advertisements reach the state
//! machine, and why the others are dropped. Pure, like the machine itself.
//!
//! Lifecycle: the driver (or the simulator) builds a [`Receiver`] from the
//! instance's [`Policy`], tells it the local address and interface of the
//! current interface incarnation ([`Receiver::set_local`]), then hands it
//! every datagram it reads. [`Receiver::receive`] answers with a
//! [`Verdict`]: our own advert looped back (ignore), an admitted advert (feed
//! it to `Router::handle_advert`), or a [`Drop`] naming the clause that
//! rejected it. The receiver keeps the per-reason drop counters and the
//! table of peers heard, which the driver publishes.

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::net::{IpAddr, Ipv6Addr};
use std::time::Instant;

use super::packet::{self, Advert, ChecksumForm, DecodeError, Version, PRIORITY_OWNER, VRRP_TTL};

/// What an instance accepts, from its configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    pub vrid: u8,
    pub version: Version,
    /// Our Max Adver Int in centiseconds (VRRPv2 drops a mismatch).
    pub interval_cs: u16,
    /// The instance's address family: IPv6 transport and IPv6 addresses.
    pub ipv6: bool,
    /// Our virtual addresses, compared as a set (order is not significant).
    pub vips: Vec<IpAddr>,
    /// Unicast mode: only these sources are peers. Empty: multicast.
    pub unicast_peers: Vec<IpAddr>,
}

/// A received datagram with the header fields the checks need.
#[derive(Debug, Clone, Copy)]
pub struct Datagram<'a> {
    /// Interface it arrived on.
    pub ifindex: u32,
    pub src: IpAddr,
    pub dst: IpAddr,
    /// IPv4 TTL or IPv6 hop limit; None if the kernel did not say.
    pub ttl: Option<u8>,
    /// The VRRP message.
    pub payload: &'a [u8],
}

/// Why an advertisement was not admitted, one variant per check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Drop {
    /// Failed to parse or validate (length, version, type, checksum, ...):
    /// RFC 5798 §7.1 items 3–5.
    Malformed(DecodeError),
    /// Arrived on another interface than the instance's.
    Interface(u32),
    /// IPv4 TTL other than 255 (RFC 5798 §7.1 item 2, §5.1.1.3).
    Ttl(u8),
    /// IPv6 hop limit other than 255, or unknown (RFC 5798 §7.1 item 2, §5.1.2.3).
    HopLimit(Option<u8>),
    /// IPv6 source that is not link-local (RFC 5798 §5.1.2.1): the advert
    /// was not sent by a router on this link.
    NotLinkLocal(Ipv6Addr),
    /// Address family other than the instance's.
    Family,
    /// Unicast mode: the source is not a configured peer.
    UnknownPeer(IpAddr),
    /// Another virtual router on the same link (RFC 5798 §7.1 item 6).
    Vrid(u8),
    /// Version other than ours.
    Version(Version),
    /// VRRPv2 interval other than ours (RFC 3768 §7.1: MUST be discarded).
    Interval(u16),
    /// Address set differs and the sender is not the owner (RFC 5798 §7.1
    /// item 7–8).
    Addresses(Vec<IpAddr>),
}

impl Drop {
    /// Stable label: the `reason` of the drop counter and metric.
    pub fn reason(&self) -> &'static str {
        match self {
            Drop::Malformed(e) => e.reason(),
            Drop::Interface(_) => "interface",
            Drop::Ttl(_) => "ttl",
            Drop::HopLimit(_) => "hop_limit",
            Drop::NotLinkLocal(_) => "source",
            Drop::Family => "family",
            Drop::UnknownPeer(_) => "unknown_peer",
            Drop::Vrid(_) => "vrid",
            Drop::Version(_) => "version",
            Drop::Interval(_) => "interval",
            Drop::Addresses(_) => "addresses",
        }
    }
}

impl fmt::Display for Drop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Drop::Malformed(e) => write!(f, "{e}"),
            Drop::Interface(i) => write!(f, "advert arrived on another interface (ifindex {i})"),
            Drop::Ttl(t) => write!(f, "TTL {t} (must be 255)"),
            Drop::HopLimit(Some(h)) => write!(f, "hop limit {h} (must be 255)"),
            Drop::HopLimit(None) => write!(f, "hop limit unknown (must be 255)"),
            Drop::NotLinkLocal(a) => write!(f, "source {a} is not a link-local address"),
            Drop::Family => write!(f, "advert of the other address family"),
            Drop::UnknownPeer(_) => write!(f, "source is not in unicast_peers"),
            Drop::Vrid(v) => write!(f, "VRID {v} is not ours"),
            Drop::Version(v) => write!(
                f,
                "VRRPv{} advert on an instance of another version",
                v.number()
            ),
            Drop::Interval(cs) => write!(f, "advert interval {}s differs from ours", cs / 100),
            Drop::Addresses(a) => write!(f, "virtual IPs {a:?} differ from ours"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Our own advert, looped back: not an error, not a peer.
    Own,
    Admit {
        src: IpAddr,
        advert: Advert,
        form: ChecksumForm,
    },
    Drop {
        /// The source, once known to be worth naming in a log line.
        src: Option<IpAddr>,
        drop: Drop,
    },
}

/// Applies the policy to one datagram. `own` is our source address and
/// `ifindex` our interface. Checks run in RFC 5798 §7.1 order: the IP layer
/// (TTL / hop limit, link-local source, unicast peers), then the message
/// (decode), then the instance (VRID, version, interval, addresses).
pub fn judge(policy: &Policy, own: IpAddr, ifindex: u32, d: &Datagram) -> Verdict {
    let drop = |src: Option<IpAddr>, drop: Drop| Verdict::Drop { src, drop };
    if d.src == own {
        return Verdict::Own;
    }
    let src = Some(d.src);
    if d.ifindex != ifindex {
        return drop(src, Drop::Interface(d.ifindex));
    }
    if d.src.is_ipv6() != policy.ipv6 || d.dst.is_ipv6() != policy.ipv6 {
        return drop(src, Drop::Family);
    }
    if let IpAddr::V6(s) = d.src {
        if d.ttl != Some(VRRP_TTL) {
            return drop(src, Drop::HopLimit(d.ttl));
        }
        if !crate::net::is_link_local_v6(s) {
            return drop(src, Drop::NotLinkLocal(s));
        }
    } else if policy.unicast_peers.is_empty() {
        // Link-local multicast must arrive with TTL 255; unicast may have
        // crossed routers on purpose.
        if d.ttl != Some(VRRP_TTL) {
            return drop(src, Drop::Ttl(d.ttl.unwrap_or(0)));
        }
    } else if !policy.unicast_peers.contains(&d.src) {
        return drop(src, Drop::UnknownPeer(d.src));
    }
    let (advert, form) = match packet::decode(d.payload, d.src, d.dst) {
        Ok(x) => x,
        Err(e) => return drop(src, Drop::Malformed(e)),
    };
    if advert.vrid != policy.vrid {
        return drop(src, Drop::Vrid(advert.vrid));
    }
    if advert.version != policy.version {
        return drop(src, Drop::Version(advert.version));
    }
    if advert.version == Version::V2 && advert.interval_cs != policy.interval_cs {
        return drop(src, Drop::Interval(advert.interval_cs));
    }
    let theirs: HashSet<IpAddr> = advert.addrs.iter().copied().collect();
    let ours: HashSet<IpAddr> = policy.vips.iter().copied().collect();
    if theirs != ours && advert.priority != PRIORITY_OWNER {
        return drop(src, Drop::Addresses(advert.addrs));
    }
    Verdict::Admit {
        src: d.src,
        advert,
        form,
    }
}

/// One peer heard on the link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    pub priority: u8,
    /// Checksum form it used (what keepalived flavour it is).
    pub form: ChecksumForm,
    pub adverts: u64,
    pub last_seen: Instant,
}

/// The policy plus what it has seen: counters and the peer table.
#[derive(Debug, Clone)]
pub struct Receiver {
    pub policy: Policy,
    own: IpAddr,
    ifindex: u32,
    received: u64,
    drops: BTreeMap<&'static str, u64>,
    peers: BTreeMap<IpAddr, Peer>,
}

impl Receiver {
    pub fn new(policy: Policy, own: IpAddr, ifindex: u32) -> Receiver {
        Receiver {
            policy,
            own,
            ifindex,
            received: 0,
            drops: BTreeMap::new(),
            peers: BTreeMap::new(),
        }
    }

    /// A new interface incarnation: new source address and index.
    pub fn set_local(&mut self, own: IpAddr, ifindex: u32) {
        self.own = own;
        self.ifindex = ifindex;
    }

    /// Judges and records one datagram.
    pub fn receive(&mut self, now: Instant, d: &Datagram) -> Verdict {
        let v = judge(&self.policy, self.own, self.ifindex, d);
        match &v {
            Verdict::Own => {}
            Verdict::Admit { src, advert, form } => {
                self.received += 1;
                let p = self.peers.entry(*src).or_insert(Peer {
                    priority: advert.priority,
                    form: *form,
                    adverts: 0,
                    last_seen: now,
                });
                p.priority = advert.priority;
                p.form = *form;
                p.adverts += 1;
                p.last_seen = now;
            }
            Verdict::Drop { drop, .. } => self.count_drop(drop.reason()),
        }
        v
    }

    /// A raw IPv4 datagram (header included, as Linux raw sockets deliver it).
    pub fn receive_ipv4(&mut self, now: Instant, ifindex: u32, bytes: &[u8]) -> Verdict {
        match packet::parse_ipv4(bytes) {
            Ok((ip, payload)) => self.receive(
                now,
                &Datagram {
                    ifindex,
                    src: IpAddr::V4(ip.src),
                    dst: IpAddr::V4(ip.dst),
                    ttl: Some(ip.ttl),
                    payload,
                },
            ),
            Err(e) => {
                self.count_drop(e.reason());
                Verdict::Drop {
                    src: None,
                    drop: Drop::Malformed(e),
                }
            }
        }
    }

    fn count_drop(&mut self, reason: &'static str) {
        *self.drops.entry(reason).or_default() += 1;
    }

    /// Adverts admitted.
    pub fn received(&self) -> u64 {
        self.received
    }

    pub fn drops(&self) -> &BTreeMap<&'static str, u64> {
        &self.drops
    }

    pub fn peers(&self) -> &BTreeMap<IpAddr, Peer> {
        &self.peers
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vrrp::packet::{encode, VRRP_GROUP_V4, VRRP_GROUP_V6};

    const IF: u32 = 3;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("literal")
    }

    fn policy(v6: bool) -> Policy {
        Policy {
            vrid: 51,
            version: Version::V3,
            interval_cs: 10,
            ipv6: v6,
            vips: if v6 {
                vec![ip("2001:db8::100"), ip("fe80::100")]
            } else {
                vec![ip("10.0.0.100")]
            },
            unicast_peers: vec![],
        }
    }

    fn adv(p: &Policy) -> Advert {
        Advert {
            version: p.version,
            vrid: p.vrid,
            priority: 100,
            interval_cs: p.interval_cs,
            addrs: p.vips.clone(),
        }
    }

    fn own(v6: bool) -> IpAddr {
        if v6 {
            ip("fe80::1")
        } else {
            ip("10.0.0.1")
        }
    }

    fn peer(v6: bool) -> IpAddr {
        if v6 {
            ip("fe80::2")
        } else {
            ip("10.0.0.2")
        }
    }

    fn group(v6: bool) -> IpAddr {
        if v6 {
            IpAddr::V6(VRRP_GROUP_V6)
        } else {
            IpAddr::V4(VRRP_GROUP_V4)
        }
    }

    fn extra_address(a: &mut Advert) {
        let more = if a.addrs[0].is_ipv6() {
            ip("2001:db8::200")
        } else {
            ip("10.0.0.200")
        };
        a.addrs.push(more);
    }

    /// What a change to a good datagram does: (name, policy edit, advert
    /// edit, datagram edit, expected drop or None for admitted).
    type Case = (
        &'static str,
        fn(&mut Policy),
        fn(&mut Advert),
        fn(&mut (IpAddr, IpAddr, Option<u8>, u32)),
        Option<&'static str>,
    );

    #[test]
    fn each_clause_drops_with_its_reason_in_both_families() {
        let cases: Vec<Case> = vec![
            ("good", |_| {}, |_| {}, |_| {}, None),
            (
                "hop limit / ttl 254",
                |_| {},
                |_| {},
                |d| d.2 = Some(254),
                Some("ttl"),
            ),
            ("ttl unknown", |_| {}, |_| {}, |d| d.2 = None, Some("ttl")),
            (
                "other interface",
                |_| {},
                |_| {},
                |d| d.3 = 9,
                Some("interface"),
            ),
            ("wrong vrid", |_| {}, |a| a.vrid = 52, |_| {}, Some("vrid")),
            (
                "version 2 on v3",
                |_| {},
                |a| a.version = Version::V2,
                |_| {},
                Some("version"),
            ),
            (
                "address set differs",
                |_| {},
                extra_address,
                |_| {},
                Some("addresses"),
            ),
            (
                "owner may differ",
                |_| {},
                |a| {
                    extra_address(a);
                    a.priority = 255
                },
                |_| {},
                None,
            ),
            (
                "address order is free",
                |_| {},
                |a| a.addrs.reverse(),
                |_| {},
                None,
            ),
            (
                "priority 0 is admitted",
                |_| {},
                |a| a.priority = 0,
                |_| {},
                None,
            ),
        ];
        for v6 in [false, true] {
            for (name, pol, edit, dg, want) in &cases {
                let mut p = policy(v6);
                pol(&mut p);
                let mut a = adv(&p);
                edit(&mut a);
                if a.version == Version::V2 && v6 {
                    continue; // v2 cannot be encoded over IPv6
                }
                let mut d = (peer(v6), group(v6), Some(255), IF);
                dg(&mut d);
                let bytes = encode(&a, d.0, d.1, ChecksumForm::PseudoHeader);
                let verdict = judge(
                    &p,
                    own(v6),
                    IF,
                    &Datagram {
                        ifindex: d.3,
                        src: d.0,
                        dst: d.1,
                        ttl: d.2,
                        payload: &bytes,
                    },
                );
                let want = want.map(|w| if v6 && w == "ttl" { "hop_limit" } else { w });
                match (&verdict, want) {
                    (Verdict::Admit { src, advert, .. }, None) => {
                        assert_eq!((*src, advert), (d.0, &a), "v6={v6} {name}")
                    }
                    (Verdict::Drop { drop, .. }, Some(w)) => {
                        assert_eq!(drop.reason(), w, "v6={v6} {name}: {drop}")
                    }
                    _ => panic!("v6={v6} {name}: got {verdict:?}, want {want:?}"),
                }
            }
        }
    }

    fn judge_v6(src: &str, ttl: Option<u8>, payload: &[u8]) -> Verdict {
        judge(
            &policy(true),
            own(true),
            IF,
            &Datagram {
                ifindex: IF,
                src: ip(src),
                dst: group(true),
                ttl,
                payload,
            },
        )
    }

    #[test]
    fn ipv6_link_layer_rules() {
        let p = policy(true);
        let good = |src: &str| encode(&adv(&p), ip(src), group(true), ChecksumForm::PseudoHeader);
        assert!(matches!(
            judge_v6("fe80::2", Some(255), &good("fe80::2")),
            Verdict::Admit { .. }
        ));
        // RFC 5798 §5.1.2.1: a global source means another link sent it.
        assert_eq!(
            judge_v6("2001:db8::2", Some(255), &good("2001:db8::2")),
            Verdict::Drop {
                src: Some(ip("2001:db8::2")),
                drop: Drop::NotLinkLocal("2001:db8::2".parse().expect("literal"))
            }
        );
        assert_eq!(
            judge_v6("fe80::2", Some(1), &good("fe80::2")),
            Verdict::Drop {
                src: Some(ip("fe80::2")),
                drop: Drop::HopLimit(Some(1))
            }
        );
        // The pseudo-header covers the source: a checksum computed for
        // another source fails.
        let r = judge_v6("fe80::2", Some(255), &good("fe80::3"));
        assert!(
            matches!(
                &r,
                Verdict::Drop {
                    drop: Drop::Malformed(DecodeError::BadChecksum),
                    ..
                }
            ),
            "{r:?}"
        );
        let mut bad = good("fe80::2");
        bad[7] ^= 1;
        let r = judge_v6("fe80::2", Some(255), &bad);
        assert_eq!(
            match r {
                Verdict::Drop { drop, .. } => drop.reason(),
                _ => "admitted",
            },
            "checksum"
        );
        // An IPv4 datagram reaching an IPv6 instance is a family mismatch.
        let v4 = encode(
            &adv(&policy(false)),
            peer(false),
            group(false),
            ChecksumForm::PseudoHeader,
        );
        let r = judge(
            &p,
            own(true),
            IF,
            &Datagram {
                ifindex: IF,
                src: peer(false),
                dst: group(false),
                ttl: Some(255),
                payload: &v4,
            },
        );
        assert!(
            matches!(
                r,
                Verdict::Drop {
                    drop: Drop::Family,
                    ..
                }
            ),
            "{r:?}"
        );
    }

    #[test]
    fn own_advert_is_neither_peer_nor_drop() {
        let p = policy(true);
        let bytes = encode(&adv(&p), own(true), group(true), ChecksumForm::PseudoHeader);
        let mut r = Receiver::new(p, own(true), IF);
        let d = Datagram {
            ifindex: IF,
            src: own(true),
            dst: group(true),
            ttl: Some(255),
            payload: &bytes,
        };
        assert_eq!(r.receive(Instant::now(), &d), Verdict::Own);
        assert!(r.peers().is_empty() && r.drops().is_empty());
        assert_eq!(r.received(), 0);
    }

    #[test]
    fn unicast_peer_list_and_v2_interval() {
        let mut p = policy(false);
        p.unicast_peers = vec![ip("192.0.2.2")];
        let a = adv(&p);
        let dg = |src: &str, bytes: &[u8], p: &Policy| {
            judge(
                p,
                own(false),
                IF,
                &Datagram {
                    ifindex: IF,
                    src: ip(src),
                    dst: own(false),
                    ttl: Some(60),
                    payload: bytes,
                },
            )
        };
        let from = |s: &str, a: &Advert| encode(a, ip(s), own(false), ChecksumForm::PseudoHeader);
        // Unicast: TTL is not judged, the peer list is.
        assert!(matches!(
            dg("192.0.2.2", &from("192.0.2.2", &a), &p),
            Verdict::Admit { .. }
        ));
        let r = dg("192.0.2.9", &from("192.0.2.9", &a), &p);
        assert!(
            matches!(
                r,
                Verdict::Drop {
                    drop: Drop::UnknownPeer(_),
                    ..
                }
            ),
            "{r:?}"
        );
        // VRRPv2: a different interval MUST be discarded (RFC 3768 §7.1).
        p.version = Version::V2;
        p.interval_cs = 100;
        let mut a2 = adv(&p);
        assert!(matches!(
            dg("192.0.2.2", &from("192.0.2.2", &a2), &p),
            Verdict::Admit { .. }
        ));
        a2.interval_cs = 200;
        let r = dg("192.0.2.2", &from("192.0.2.2", &a2), &p);
        assert_eq!(
            r,
            Verdict::Drop {
                src: Some(ip("192.0.2.2")),
                drop: Drop::Interval(200)
            }
        );
    }

    #[test]
    fn receiver_counts_drops_and_tracks_peers() {
        let p = policy(false);
        let a = adv(&p);
        let mut r = Receiver::new(p, own(false), IF);
        let t0 = Instant::now();
        let good = encode(&a, peer(false), group(false), ChecksumForm::Plain);
        let d = Datagram {
            ifindex: IF,
            src: peer(false),
            dst: group(false),
            ttl: Some(255),
            payload: &good,
        };
        for _ in 0..3 {
            assert!(matches!(r.receive(t0, &d), Verdict::Admit { .. }));
        }
        let p2 = &r.peers()[&peer(false)];
        assert_eq!(
            (p2.adverts, p2.priority, p2.form),
            (3, 100, ChecksumForm::Plain)
        );
        assert!(matches!(
            r.receive(t0, &Datagram { ttl: Some(64), ..d }),
            Verdict::Drop { .. }
        ));
        // A datagram too short for an IPv4 header has no source to name.
        assert_eq!(
            r.receive_ipv4(t0, IF, &[0x45, 0]),
            Verdict::Drop {
                src: None,
                drop: Drop::Malformed(DecodeError::Truncated)
            }
        );
        assert_eq!(r.received(), 3);
        assert_eq!(
            r.drops().iter().map(|(k, v)| (*k, *v)).collect::<Vec<_>>(),
            vec![("truncated", 1), ("ttl", 1)]
        );
    }
}
