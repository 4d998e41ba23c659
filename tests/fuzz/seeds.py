#!/usr/bin/env python3
"""Writes the seed corpora under tests/fuzz/seeds/ (committed; rerun after changing a
target's input format). Each seed is a valid input of the kind the unit tests use, so the
fuzzer starts from inputs that get past the first checks (checksums, signatures)."""
import os
import struct
import ipaddress

HERE = os.path.dirname(os.path.abspath(__file__))


def csum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def vrrp_v4(version, vrid, prio, addrs, src="10.0.0.1", dst="224.0.0.18", interval=100):
    a = b"".join(ipaddress.IPv4Address(x).packed for x in addrs)
    if version == 3:
        msg = struct.pack("!BBBBHH", 0x31, vrid, prio, len(addrs), interval, 0) + a
        pseudo = ipaddress.IPv4Address(src).packed + ipaddress.IPv4Address(dst).packed
        pseudo += struct.pack("!BBH", 0, 112, len(msg))
        c = csum(pseudo + msg)
    else:
        msg = struct.pack("!BBBBBBH", 0x21, vrid, prio, len(addrs), 0, interval // 100, 0)
        msg += a + b"\0" * 8
        c = csum(msg)
    msg = msg[:6] + struct.pack("!H", c) + msg[8:]
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0xC0, 20 + len(msg), 0, 0, 255, 112, 0,
                     ipaddress.IPv4Address(src).packed, ipaddress.IPv4Address(dst).packed)
    return b"\0" + ip + msg


def vrrp_v6(vrid, prio, addrs, src="fe80::1", dst="ff02::12"):
    a = b"".join(ipaddress.IPv6Address(x).packed for x in addrs)
    msg = struct.pack("!BBBBHH", 0x31, vrid, prio, len(addrs), 100, 0) + a
    pseudo = ipaddress.IPv6Address(src).packed + ipaddress.IPv6Address(dst).packed
    pseudo += struct.pack("!I3xB", len(msg), 112)
    msg = msg[:6] + struct.pack("!H", csum(pseudo + msg)) + msg[8:]
    return b"\1" + msg


def pp2(fam_proto, addrs, tlvs=b"", cmd=0x21):
    body = addrs + tlvs
    return b"\r\n\r\n\0\r\nQUIT\n" + bytes([cmd, fam_proto]) + struct.pack("!H", len(body)) + body


SEEDS = {
    "vrrp": {
        "v3-ipv4": vrrp_v4(3, 51, 100, ["10.0.0.100"]),
        "v3-ipv4-two": vrrp_v4(3, 7, 255, ["10.0.0.100", "10.0.0.101"]),
        "v3-ipv4-resign": vrrp_v4(3, 51, 0, ["10.0.0.100"]),
        "v2-ipv4": vrrp_v4(2, 51, 100, ["10.0.0.100"]),
        "v3-ipv6": vrrp_v6(52, 100, ["fe80::100", "2001:db8::100"]),
    },
    "http1": {
        "get": b"\0GET /a?b=c HTTP/1.1\r\nHost: example.test\r\nAccept: */*\r\n\r\n",
        "post-length": b"\0POST /p HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello",
        "post-chunked": b"\0POST /p HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
                        b"5;ext=1\r\nhello\r\n0\r\nTrailer: x\r\n\r\n",
        "absolute-form": b"\0GET http://user@example.test:8080/x HTTP/1.1\r\nHost: other\r\n\r\n",
        "websocket": b"\0GET /ws HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
                     b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
        "http10": b"\0GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
        "response-length": b"\1HTTP/1.1 200 OK\r\nContent-Length: 3\r\nConnection: keep-alive\r\n\r\nabc",
        "response-chunked": b"\1HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
        "response-head": b"\2HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\n\r\n",
        "scan-smuggle": b"\x0fPOST / HTTP/1.1\r\nHost: h\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        "scan-bare-lf": b"\x13POST / HTTP/1.1\nHost: h\nContent-Length: 1\nContent-Length: 2\n\nab",
        "scan-pipeline": b"\x23GET / HTTP/1.1\r\nHost: h\r\n\r\nPOST / HTTP/1.1\r\nHost: h\r\n"
                         b"Transfer-Encoding: chunked\r\n\r\n2\r\nab\r\n0\r\n\r\n",
    },
    "proxy_protocol": {
        "v1-tcp4": b"PROXY TCP4 192.0.2.1 198.51.100.1 56324 443\r\nGET / HTTP/1.1\r\n",
        "v1-tcp6": b"PROXY TCP6 2001:db8::1 2001:db8::2 56324 443\r\n",
        "v1-unknown": b"PROXY UNKNOWN\r\n",
        "v2-tcp4": pp2(0x11, bytes([192, 0, 2, 1, 198, 51, 100, 1]) + struct.pack("!HH", 56324, 443)),
        "v2-tcp6-tlv": pp2(0x21, ipaddress.IPv6Address("2001:db8::1").packed
                           + ipaddress.IPv6Address("2001:db8::2").packed + struct.pack("!HH", 1, 2),
                           tlvs=b"\x02\x00\x04host"),
        "v2-local": pp2(0x00, b"", cmd=0x20),
    },
    "admin_body": {
        "drain": b"\0",
        "disable": b'\2{"grace": "30s"}',
        "weight": b'\3{"weight": 5}',
        "weight-null": b'\3{"weight": null}',
        "priority": b'\5{"priority": 150}',
    },
    "cache_headers": {
        "fresh": b"\0accept-encoding: gzip\0cache-control: public, max-age=300, s-maxage=60\n"
                 b"vary: Accept-Encoding, Accept-Language\nage: 5\n",
        "expires": b"\0\0date: Thu, 01 Jan 2026 00:00:00 GMT\nexpires: Fri, 02 Jan 2026 00:00:00 GMT\n",
        "no-store": b"\x01cache-control: no-cache, max-age=0\0cache-control: private, no-store\nvary: *\n",
    },
    "cookies": {
        "sticky": b"SRV\nSRV=\"0123456789abcdef0123456789abcdef\"; lang=en\nSSRV=abc; Max-Age=60; Path=/; HttpOnly",
        "expires": b"JSESSIONID\nother=1\nSJSESSIONID=xyz; Expires=Wed, 21 Oct 2037 07:28:00 GMT\nSJSESSIONID=; Max-Age=0",
    },
}

for target, seeds in SEEDS.items():
    d = os.path.join(HERE, "seeds", target)
    os.makedirs(d, exist_ok=True)
    for name, data in seeds.items():
        with open(os.path.join(d, name), "wb") as f:
            f.write(data)
