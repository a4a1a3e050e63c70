#!/usr/bin/env python3
"""Issue 9 finding 12, scaled: an exporter re-sending the same old flows in
a loop into `flowy serve` (NetFlow v5 over UDP). Prints the daemon's RSS
and engine metrics every million records.

usage: replay_old_flows.py UDP_PORT METRICS_PORT PID LOOPS [RATE]
(run through replay_old_flows.sh, which starts the daemon)
"""
import random, socket, struct, sys, time, urllib.request

port, mport, pid, loops = (int(a) for a in sys.argv[1:5])
rate = float(sys.argv[5]) if len(sys.argv) > 5 else 300_000
UPTIME = 1_000_000_000
now = int(time.time() * 1000)
t0 = now - 900_000           # the capture: 10 min of flows, 5 to 15 min old
rnd = random.Random(7)

def ip(a):
    return struct.pack("!I", a)

flows = []
for i in range(100_000):
    c = 0x0A000000 + rnd.randrange(20_000)      # 20k clients
    s = 0xC6336400 + rnd.randrange(200)         # 200 servers
    cp = 1024 + rnd.randrange(60_000)
    t = t0 + i * 600_000 // 100_000
    kind = rnd.randrange(6)
    if kind < 5:   # HTTP request + response
        flows.append((c, s, cp, 80, 600, t, t + 2000))
        flows.append((s, c, 80, cp, 18_000, t + 100, t + 2500))
    else:          # noise
        flows.append((c, s, cp, 443, 900, t, t + 300))

def datagram(seq, chunk, export_ms):
    boot = export_ms - UPTIME
    h = struct.pack("!HHIIIIBBH", 5, len(chunk), UPTIME, export_ms // 1000,
                    (export_ms % 1000) * 1_000_000, seq, 0, 0, 0)
    body = b"".join(
        ip(a) + ip(b) + ip(0) + struct.pack("!HHIIIIHHBBBBHHBBH", 0, 0, by // 500 + 1, by,
            st - boot, et - boot, sp, dp, 0, 0x1b, 6, 0, 0, 0, 0, 0, 0)
        for (a, b, sp, dp, by, st, et) in chunk)
    return h + body

def metrics():
    txt = urllib.request.urlopen(f"http://127.0.0.1:{mport}/metrics", timeout=5).read().decode()
    m = {}
    for l in txt.splitlines():
        if l and not l.startswith("#"):
            k, v = l.rsplit(" ", 1)
            m[k] = float(v)
    return m

def rss_mib():
    for l in open(f"/proc/{pid}/status"):
        if l.startswith("VmRSS:"):
            return int(l.split()[1]) / 1024

export = now
dgrams = [datagram(0, flows[i:i + 30], export) for i in range(0, len(flows), 30)]
sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 8 << 20)
sent = 0
next_report = 1_000_000
start = time.time()
for loop in range(loops):
    for d in dgrams:
        # v5 sequence numbers: keep them consecutive so no gap is reported.
        d = d[:16] + struct.pack("!I", sent & 0xFFFFFFFF) + d[20:]
        sock.sendto(d, ("127.0.0.1", port))
        sent += (len(d) - 24) // 48
        ahead = sent / rate - (time.time() - start)
        if ahead > 0.002:
            time.sleep(ahead)
        if sent >= next_report:
            next_report += 1_000_000
            m = metrics()
            g = lambda k: int(sum(v for s, v in m.items() if s.split("{")[0] == k))
            print(f"sent {sent/1e6:.0f}M recv {g('flowy_records_received_total')} late {g('flowy_records_late_total')} "
                  f"rss {rss_mib():.0f} MiB state {g('flowy_engine_state_bytes')/2**20:.1f} MiB "
                  f"open {g('flowy_branch_groups_open')} stored {g('flowy_merger_stored_groups')} "
                  f"evict {g('flowy_engine_state_evictions_total')} matches {g('flowy_merger_matches_total')} lines {g('flowy_output_lines_total')} processed {g('flowy_records_processed_total')} branch_in {g('flowy_branch_records_total')}", flush=True)
time.sleep(2)
m = metrics()
print("final rss", rss_mib(), "MiB; received", int(m.get("flowy_records_received_total", 0)),
      "processed", int(m.get("flowy_records_processed_total", 0)))
