#!/usr/bin/env python3
"""Write flows.pcap: IPv4 and IPv6 TCP/UDP/ICMP packets for softflowd to turn
into NetFlow v9/IPFIX exports that nfcapd then stores (see regenerate.sh)."""
import struct
import sys

T0 = 1764806400  # 2025-12-04 00:00:00 UTC


def eth(ethertype, payload):
    return b"\x02\x00\x00\x00\x00\x01" + b"\x02\x00\x00\x00\x00\x02" + struct.pack("!H", ethertype) + payload


def ipv4(src, dst, proto, payload, tos=0):
    hdr = struct.pack("!BBHHHBBH4s4s", 0x45, tos, 20 + len(payload), 1, 0, 64, proto, 0,
                      bytes(src), bytes(dst))
    return eth(0x0800, hdr + payload)


def ipv6(src, dst, nh, payload, tclass=0):
    first = (6 << 28) | (tclass << 20)
    hdr = struct.pack("!IHBB16s16s", first, len(payload), nh, 64, bytes(src), bytes(dst))
    return eth(0x86DD, hdr + payload)


def tcp(sport, dport, flags, data=b""):
    return struct.pack("!HHIIBBHHH", sport, dport, 1, 0, 5 << 4, flags, 65535, 0, 0) + data


def udp(sport, dport, data):
    return struct.pack("!HHHH", sport, dport, 8 + len(data), 0) + data


def icmp(typ, code, data=b"abcdefgh"):
    return struct.pack("!BBHI", typ, code, 0, 0) + data


def v6(last, prefix=(0x20, 0x01, 0x0D, 0xB8, 0x12, 0x34, 0x56, 0x78)):
    # distinct bytes in both halves, so a swapped half shows in the test
    return list(prefix) + [0x9A, 0xBC, 0xDE, 0xF0, 0x11, 0x22, 0x33, last]


packets = []  # (ts_us, frame)


def add(t_ms, frame):
    packets.append((T0 * 1_000_000 + t_ms * 1000, frame))


for i in range(6):
    src, dst = [10, 0, 0, 1 + i], [192, 168, 1, 10]
    add(100 * i, ipv4(src, dst, 6, tcp(40000 + i, 80, 0x02), tos=0x10))
    add(100 * i + 40, ipv4(dst, src, 6, tcp(80, 40000 + i, 0x12)))
    add(100 * i + 80, ipv4(src, dst, 6, tcp(40000 + i, 80, 0x18, b"GET / HTTP/1.0\r\n\r\n"), tos=0x10))
    add(100 * i + 900, ipv4(dst, src, 6, tcp(80, 40000 + i, 0x19, b"x" * (200 * (i + 1)))))
    add(100 * i + 950, ipv4(src, dst, 6, tcp(40000 + i, 80, 0x11), tos=0x10))
for i in range(4):
    src, dst = [172, 16, 5, 20 + i], [8, 8, 8, 8]
    add(1000 + 50 * i, ipv4(src, dst, 17, udp(53000 + i, 53, b"q" * 30)))
    add(1000 + 50 * i + 20, ipv4(dst, src, 17, udp(53, 53000 + i, b"r" * (60 + i))))
add(1500, ipv4([10, 1, 1, 1], [10, 1, 1, 2], 1, icmp(8, 0)))
add(1510, ipv4([10, 1, 1, 2], [10, 1, 1, 1], 1, icmp(0, 0)))
add(1600, ipv4([10, 1, 1, 1], [10, 9, 9, 9], 1, icmp(3, 3)))
for i in range(4):
    src, dst = v6(0x10 + i), v6(0x80, (0x20, 0x01, 0x0D, 0xB8, 0xAA, 0xBB, 0xCC, 0xDD))
    add(2000 + 100 * i, ipv6(src, dst, 6, tcp(50000 + i, 443, 0x02), tclass=0x20))
    add(2000 + 100 * i + 30, ipv6(dst, src, 6, tcp(443, 50000 + i, 0x12)))
    add(2000 + 100 * i + 700, ipv6(src, dst, 6, tcp(50000 + i, 443, 0x18, b"y" * (100 + i)), tclass=0x20))
    add(2000 + 100 * i + 800, ipv6(src, dst, 6, tcp(50000 + i, 443, 0x04), tclass=0x20))
for i in range(3):
    src, dst = v6(0x40 + i), [0xFE, 0x80] + [0] * 13 + [1 + i]
    add(3000 + 10 * i, ipv6(src, dst, 17, udp(123, 123, b"n" * 48)))
    add(3000 + 10 * i + 5, ipv6(dst, src, 17, udp(123, 123, b"m" * 48)))
add(3500, ipv6(v6(0x50), v6(0x51), 58, icmp(128, 0)))
add(3520, ipv6(v6(0x51), v6(0x50), 58, icmp(129, 0)))
add(3600, ipv6(v6(0x50), v6(0x52), 58, icmp(1, 4)))

packets.sort(key=lambda p: p[0])
with open(sys.argv[1] if len(sys.argv) > 1 else "flows.pcap", "wb") as f:
    f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
    for ts, frame in packets:
        f.write(struct.pack("<IIII", ts // 1_000_000, ts % 1_000_000, len(frame), len(frame)))
        f.write(frame)
