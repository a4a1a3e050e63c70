#!/usr/bin/env python3
"""Send one IPFIX message with an IPv4 and an IPv6 template carrying next
hops (IP and BGP), AS numbers, masks, VLANs and post counters — what
softflowd does not export — to a collector: send_ipfix.py PORT [SOURCE_IP [DOMAIN]] (a loopback source
such as 127.0.0.2 makes a second exporter)"""
import socket
import struct
import sys
import time

port = int(sys.argv[1])
now = int(time.time())
ms = now * 1000

V4 = [(8, 4), (12, 4), (15, 4), (18, 4), (7, 2), (11, 2), (4, 1), (6, 1), (5, 1),
      (1, 8), (2, 8), (152, 8), (153, 8), (10, 4), (14, 4), (16, 4), (17, 4),
      (9, 1), (13, 1), (58, 2), (59, 2), (23, 8), (24, 8), (61, 1)]
V6 = [(27, 16), (28, 16), (62, 16), (63, 16), (7, 2), (11, 2), (4, 1), (6, 1), (5, 1),
      (1, 8), (2, 8), (152, 8), (153, 8), (10, 4), (14, 4), (16, 4), (17, 4),
      (29, 1), (30, 1), (58, 2), (59, 2), (23, 8), (24, 8), (61, 1)]


def template(tid, fields):
    body = struct.pack("!HH", tid, len(fields))
    for ie, ln in fields:
        body += struct.pack("!HH", ie, ln)
    return body


def v6(last):
    return bytes([0x20, 0x01, 0x0D, 0xB8, 0xFE, 0xDC, 0xBA, 0x98, 0x76, 0x54, 0x32, 0x10, 0, 0, 0, last])


def rec(src, dst, nh, bgp, i, masks):
    proto = 6 if i % 2 == 0 else 17
    return (src + dst + nh + bgp + struct.pack(
        "!HHBBBQQQQIIIIBBHHQQB",
        2000 + i, 443 if proto == 6 else 53, proto, 0x12 if proto == 6 else 0, 0xB8,
        4000 + 100 * i, 3 + i, ms - 9000 + 10 * i, ms - 2000,
        100 + i, 200 + i, 4_200_000_000 + i, 65551 + i,
        masks[0], masks[1], 10 + i, 20 + i, 8000 + i, 5 + i, i % 2))


sets = struct.pack("!HH", 2, 4 + len(template(256, V4)) + len(template(257, V6)))
sets += template(256, V4) + template(257, V6)
d4 = b"".join(rec(bytes([192, 0, 2, 1 + i]), bytes([203, 0, 113, 9]), bytes([192, 0, 2, 254]),
                  bytes([198, 18, 0, 1 + i]), i, (24, 16)) for i in range(3))
d6 = b"".join(rec(v6(1 + i), v6(0x99), v6(0xFE), v6(0xB0 + i), i, (64, 48)) for i in range(3))
sets += struct.pack("!HH", 256, 4 + len(d4)) + d4
sets += struct.pack("!HH", 257, 4 + len(d6)) + d6
source = sys.argv[2] if len(sys.argv) > 2 else "127.0.0.1"
domain = int(sys.argv[3]) if len(sys.argv) > 3 else 7
msg = struct.pack("!HHIII", 10, 16 + len(sets), now, 1, domain) + sets
sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
sock.bind((source, 0))
sock.sendto(msg, ("127.0.0.1", port))
