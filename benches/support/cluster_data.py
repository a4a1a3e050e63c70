#!/usr/bin/env python3
"""Data for benches/cluster.sh: real exporter output (softflowd) of a
generated packet capture.

  cluster_data.py packets OUT.pcap SESSIONS START_S
      A capture of SESSIONS sessions (fixed seed), 2 000 starting per second
      of capture time from START_S (Unix seconds): a third HTTP downloads
      (TCP 80: handshake, request, 1-4 response segments, FIN), a quarter DNS
      (UDP 53 query + response), a fifth short HTTPS connections (TCP 443),
      the rest single ICMP or random-port UDP packets. softflowd counts the
      two directions of a connection as two flows, so a session gives about
      1.9 records. Frames hold headers only (caplen 54/42) with the real IP
      length, as a live capture with a short snaplen does.

  cluster_data.py capture PORT OUT.pcap RATE
      Receive export datagrams on 127.0.0.1:PORT until none came for 3 s
      after the first, and write them to a capture whose timestamps space
      them at RATE records/s (the v9/v5 header's record count), so that
      `flowy replay --speed X` sends X * RATE records/s. Prints
      "<datagrams> <records>".

  cluster_data.py latency ADDR OUTPUT SAMPLES PUSHERS
      SAMPLES times: send one NetFlow v5 datagram holding one fresh flow
      (ended 10 ms ago, a source address unique to the sample) and PUSHERS
      flows ended now to the collector at ADDR, and poll the OUTPUT file
      (1 ms) until the match line holding the probe flow appears; 50-150 ms
      (random) between samples. Prints the median, p99 and max in milliseconds.
"""

import heapq
import random
import socket
import struct
import sys
import time

ETH = b"\x02\x00\x00\x00\x00\x02\x02\x00\x00\x00\x00\x01\x08\x00"
SYN, ACK, PSH, FIN = 0x02, 0x10, 0x08, 0x01


def ipv4(src, dst, proto, l4_header, payload_len):
    total = 20 + len(l4_header) + payload_len
    h = struct.pack("!BBHHHBBH4s4s", 0x45, 0, total, 1, 0x4000, 64, proto, 0, src, dst)
    return ETH + h + l4_header, 14 + total


def tcp(src, sport, dst, dport, flags, payload):
    l4 = struct.pack("!HHIIBBHHH", sport, dport, 1, 1, 0x50, flags, 0xFFFF, 0, 0)
    return ipv4(src, dst, 6, l4, payload)


def udp(src, sport, dst, dport, payload):
    l4 = struct.pack("!HHHH", sport, dport, 8 + payload, 0)
    return ipv4(src, dst, 17, l4, payload)


def icmp(src, dst):
    return ipv4(src, dst, 1, struct.pack("!BBHI", 8, 0, 0, 1), 56)


def addr(a, b, c, d):
    return bytes((a, b, c, d))


def tcp_session(out, t, c, cp, s, sp, request, chunks):
    def p(dt, from_client, payload, flags):
        if from_client:
            out.append((t + dt, tcp(c, cp, s, sp, flags, payload)))
        else:
            out.append((t + dt, tcp(s, sp, c, cp, flags, payload)))

    p(0.000, True, 0, SYN)
    p(0.010, False, 0, SYN | ACK)
    p(0.020, True, 0, ACK)
    p(0.030, True, request, PSH | ACK)
    for i in range(chunks):
        p(0.100 + 0.050 * i, False, 1000, PSH | ACK)
    end = 0.100 + 0.050 * chunks
    p(end, True, 0, ACK)
    p(end + 0.010, False, 0, FIN | ACK)
    p(end + 0.020, True, 0, FIN | ACK)
    p(end + 0.030, False, 0, ACK)


def session(rng, t, out):
    client = addr(10, rng.randrange(64), rng.randrange(256), rng.randrange(1, 255))
    cport = rng.randrange(1024, 65535)
    draw = rng.random()
    if draw < 0.34:
        server = addr(198, 51, 100, rng.randrange(1, 200))
        tcp_session(out, t, client, cport, server, 80, 100 + rng.randrange(400), rng.randrange(1, 5))
    elif draw < 0.59:
        server = addr(8, 8, rng.choice((4, 8)), rng.choice((4, 8)))
        out.append((t, udp(client, cport, server, 53, 40)))
        out.append((t + 0.020, udp(server, 53, client, cport, 120)))
    elif draw < 0.79:
        server = addr(203, 0, 113, rng.randrange(1, 255))
        tcp_session(out, t, client, cport, server, 443, 300, 1)
    elif draw < 0.90:
        out.append((t, icmp(client, addr(192, 0, 2, rng.randrange(1, 255)))))
    else:
        other = addr(172, 16, rng.randrange(256), rng.randrange(1, 255))
        out.append((t, udp(client, cport, other, rng.randrange(1024, 65535), rng.randrange(20, 1200))))


def write_header(f):
    f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))


def write_packet(f, t, frame, orig_len):
    sec = int(t)
    usec = int(round((t - sec) * 1e6))
    if usec >= 1_000_000:
        sec, usec = sec + 1, usec - 1_000_000
    f.write(struct.pack("<IIII", sec, usec, len(frame), orig_len))
    f.write(frame)


def packets(path, sessions, start):
    rng = random.Random(42)
    heap = []
    seq = 0
    with open(path, "wb") as f:
        write_header(f)
        for i in range(sessions):
            t = start + i / 2000.0
            # Everything earlier than a second before this session is final.
            while heap and heap[0][0] < t - 1.0:
                pt, _, (frame, orig) = heapq.heappop(heap)
                write_packet(f, pt, frame, orig)
            out = []
            session(rng, t, out)
            for pt, fr in out:
                heapq.heappush(heap, (pt, seq, fr))
                seq += 1
        while heap:
            pt, _, (frame, orig) = heapq.heappop(heap)
            write_packet(f, pt, frame, orig)


def records_of(d):
    if len(d) < 4:
        return 0
    version = struct.unpack("!H", d[:2])[0]
    if version in (5, 9):
        return struct.unpack("!H", d[2:4])[0]
    return 0


def capture(port, path, rate):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 << 20)
    s.bind(("127.0.0.1", port))
    got = []
    s.settimeout(None)
    while True:
        try:
            d = s.recv(65535)
        except socket.timeout:
            break
        got.append(d)
        s.settimeout(3.0)
    t = 1_000_000_000.0
    records = 0
    with open(path, "wb") as f:
        write_header(f)
        for d in got:
            l4 = struct.pack("!HHHH", 9995, 2055, 8 + len(d), 0)
            h = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 28 + len(d), 1, 0x4000, 64, 17, 0,
                            addr(127, 0, 0, 1), addr(127, 0, 0, 1))
            frame = ETH + h + l4 + d
            write_packet(f, t, frame, len(frame))
            n = records_of(d)
            records += n
            t += n / rate
    print(len(got), records)


def v5_datagram(seq, flows):
    """One v5 datagram; flows are (source address, ms before now)."""
    now = time.time()
    uptime = 1_000_000
    header = struct.pack("!HHIIIIBBH", 5, len(flows), uptime, int(now),
                         int((now % 1) * 1e9), seq, 0, 0, 0)
    body = b""
    for src, ago in flows:
        t = uptime - ago
        body += struct.pack("!4s4s4sHHIIIIHHBBBBHHBBH", src, addr(192, 0, 2, 1),
                            addr(0, 0, 0, 0), 0, 0, 1, 100, t, t, 40000, 80, 0, 0, 6, 0,
                            0, 0, 0, 0, 0)
    return header + body


def latency(target, output, samples, pushers):
    host, port = target.rsplit(":", 1)
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    f = open(output, "rb")
    f.seek(0, 2)
    buf = b""
    got = []
    rng = random.Random(7)
    for i in range(samples):
        src = addr(10, 250, i // 250, i % 250 + 1)
        marker = ('"srcip":"%d.%d.%d.%d"' % tuple(src)).encode()
        t0 = time.monotonic()
        # The probe, then one later flow per partition: every partition's
        # watermark passes the probe at once (lateness 0), so the match
        # does not wait for the idle advance.
        flows = [(src, 10)] + [(addr(10, 251, i % 250, k + 1), 0) for k in range(pushers)]
        s.sendto(v5_datagram(i * (pushers + 1), flows), (host, int(port)))
        while marker not in buf:
            chunk = f.read()
            if chunk:
                buf += chunk
                continue
            if time.monotonic() - t0 > 30:
                sys.exit("sample %d: no match in 30 s" % i)
            time.sleep(0.001)
        got.append((time.monotonic() - t0) * 1000)
        buf = buf[buf.index(marker):]
        # Random spacing: samples must not lock onto a periodic flush.
        time.sleep(rng.uniform(0.05, 0.15))
    got.sort()
    p99 = got[max(0, -(-len(got) * 99 // 100) - 1)]
    print("%.1f %.1f %.1f" % (got[len(got) // 2], p99, got[-1]))


def main():
    cmd = sys.argv[1]
    if cmd == "packets":
        packets(sys.argv[2], int(sys.argv[3]), float(sys.argv[4]))
    elif cmd == "capture":
        capture(int(sys.argv[2]), sys.argv[3], float(sys.argv[4]))
    elif cmd == "latency":
        latency(sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]))
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
