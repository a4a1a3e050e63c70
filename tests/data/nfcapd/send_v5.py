#!/usr/bin/env python3
"""Send NetFlow v5 datagrams with AS numbers, masks, next hops and
interfaces (what softflowd leaves zero) to a collector: send_v5.py PORT"""
import socket
import struct
import sys
import time

port = int(sys.argv[1])
now = int(time.time())
uptime = 3_600_000
records = []
for i in range(12):
    src = bytes([10, 20, i, 1])
    dst = bytes([198, 51, 100, 7 + i])
    nexthop = bytes([10, 20, 255, 254 - i])
    proto = [6, 17, 1][i % 3]
    sport, dport = (0, 0x0800 + i % 2) if proto == 1 else (1024 + i, [80, 443, 53][i % 3])
    records.append(struct.pack(
        "!4s4s4sHHIIIIHHBBBBHHBBH",
        src, dst, nexthop,
        3 + i, 7 + i,                           # input, output ifIndex
        5 + i, 1500 * (i + 1),                  # packets, bytes
        uptime - 5000 - 100 * i, uptime - 1000, # First, Last (ms of uptime)
        sport, dport, 0, 0x1B if proto == 6 else 0, proto, 0x28 + i,
        64500 + i, 65000 + 2 * i,               # src_as, dst_as
        16 + i, 24 - i, 0))
# header: version, count, sysUptime, unix_secs, unix_nsecs, flow_sequence,
# engine type/id, sampling (mode 01 = deterministic, interval 100)
sampling = int(sys.argv[2]) if len(sys.argv) > 2 else 0
header = struct.pack("!HHIIIIBBH", 5, len(records), uptime, now, 250_000_000, 1, 0, 0, sampling)
sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
sock.sendto(header + b"".join(records), ("127.0.0.1", port))
