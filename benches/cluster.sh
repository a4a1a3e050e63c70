#!/usr/bin/env bash
# The cluster on NATS JetStream against the standalone daemon (issue 12,
# SPEC §5), on real exporter output: softflowd's NetFlow v9 export of a
# generated packet capture. See docs/benchmarks.md, "Cluster (NATS
# JetStream)", for the method and the figures.
#
#   benches/cluster.sh                               # build flowy, run everything
#   FLOWY_BIN=target/release/flowy benches/cluster.sh  # use that binary, no build
#
# Knobs: FLOWY_CLUSTER_SESSIONS (sessions in the packet capture, default
# 600000: about 1.07 M records), FLOWY_CLUSTER_RATE (replay rate, records/s,
# default 200000), FLOWY_CLUSTER_SAMPLES (latency samples, default 100),
# FLOWY_CLUSTER_PARTITIONS (default 16), FLOWY_CLUSTER_QUERIES (glob, default
# config/queries/*.flowy), FLOWY_BENCH_DATA (cache of the capture, default
# target/bench-data), FLOWY_CLUSTER_KEEP=1 (keep the temp dir: logs, outputs).
#
# Needs nats-server (-js), softflowd, python3, curl. Phases:
#   1. standalone: `flowy serve`, the queries, the capture replayed at RATE;
#   2. cluster: nats-server + collector (same replay) until every batch is
#      stored; then one worker holding every partition drains the stream
#      (its rate is what one worker takes, not the replay rate);
#   3. latency: pass-through query, lateness 0, probe datagrams, standalone
#      and collector -> nats -> worker.
# CPU = utime + stime of each process from /proc/PID/stat.
set -euo pipefail
cd "$(dirname "$0")/.."

SESSIONS=${FLOWY_CLUSTER_SESSIONS:-600000}
RATE=${FLOWY_CLUSTER_RATE:-200000}
SAMPLES=${FLOWY_CLUSTER_SAMPLES:-100}
PARTS=${FLOWY_CLUSTER_PARTITIONS:-16}
QUERIES=${FLOWY_CLUSTER_QUERIES:-config/queries/*.flowy}
DATA=${FLOWY_BENCH_DATA:-target/bench-data}/cluster-softflowd-$SESSIONS-v1
HELPER=benches/support/cluster_data.py
NOMINAL=100000 # records/s the capture's timestamps are spaced at

if [ -z "${FLOWY_BIN:-}" ]; then
    cargo build --release --bin flowy
    FLOWY=target/release/flowy
else
    FLOWY=$FLOWY_BIN
fi
FLOWY=$(realpath "$FLOWY")
HZ=$(getconf CLK_TCK)
TMP=$(mktemp -d /tmp/flowy-cluster-bench.XXXXXX)
PIDS=()

cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    if [ "${FLOWY_CLUSTER_KEEP:-}" = 1 ]; then echo "kept $TMP"; else rm -rf "$TMP"; fi
}
trap cleanup EXIT

free_port() { # tcp|udp
    python3 -c "import socket,sys; s=socket.socket(socket.AF_INET, socket.SOCK_STREAM if sys.argv[1]=='tcp' else socket.SOCK_DGRAM); s.bind(('127.0.0.1',0)); print(s.getsockname()[1])" "$1"
}
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
now() { date +%s.%N; }
calc() { awk "BEGIN { printf \"$1\n\", $2 }"; }

# Sum of every series of a metric.
metric() { # url name
    curl -s "$1" | awk -v n="$2" '$1 == n || index($1, n "{") == 1 { s += $2 } END { printf "%.0f\n", s }'
}

# Wait until `metric URL NAME` has stopped changing for 1 s (and is > 0);
# print its value and the time of its last change.
settle() { # url name [url2 name2: must also be stable]
    local v last=-1 at t_end stable=0 v2 last2=-1
    t_end=$(($(date +%s) + 300))
    while :; do
        v=$(metric "$1" "$2")
        v2=${3:+$(metric "$3" "$4")}
        if [ "$v" != "$last" ] || [ "${v2:-}" != "$last2" ]; then
            last=$v last2=${v2:-} at=$(now) stable=0
        elif [ "$v" -gt 0 ]; then
            stable=$((stable + 1))
            [ $stable -ge 10 ] && break
        fi
        [ "$(date +%s)" -lt "$t_end" ] || { echo "timeout waiting for $2" >&2; exit 1; }
        sleep 0.1
    done
    echo "$last $at"
}

# start_flowy NAME "ENV=…" ARGS…: sets PID_NAME and URL_NAME.
start_flowy() {
    local name=$1 envs=$2 url="" i
    shift 2
    # shellcheck disable=SC2086
    env $envs FLOWY__METRICS__LISTEN=127.0.0.1:0 FLOWY__LOG__LEVEL=info \
        "$FLOWY" serve "$@" >"$TMP/$name.stdout" 2>"$TMP/$name.log" &
    local pid=$!
    PIDS+=("$pid")
    for i in $(seq 200); do
        url=$(grep -so 'metrics on http://[0-9.:]*' "$TMP/$name.log" | head -1 | sed 's/metrics on //') || true
        [ -n "$url" ] && break
        kill -0 "$pid" 2>/dev/null || { cat "$TMP/$name.log" >&2; exit 1; }
        sleep 0.1
    done
    [ -n "$url" ] || { echo "$name: no metrics address" >&2; exit 1; }
    eval "PID_$name=$pid URL_$name=$url/metrics"
}

stop() { kill -TERM "$1"; wait "$1" 2>/dev/null || true; }

start_nats() { # NAME: sets PID_NAME, NATS_URL
    local port i
    port=$(free_port tcp)
    nats-server -js -a 127.0.0.1 -p "$port" -sd "$TMP/$1.store" >"$TMP/$1.log" 2>&1 &
    local pid=$!
    PIDS+=("$pid")
    for i in $(seq 200); do
        (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
        sleep 0.1
    done
    eval "PID_$1=$pid"
    NATS_URL=nats://127.0.0.1:$port
}

# --- data: softflowd's export of a generated capture ------------------
CAP=$DATA/exports.pcap
if [ ! -s "$DATA/records" ]; then
    mkdir -p "$DATA"
    echo "building $CAP ($SESSIONS sessions) …"
    python3 "$HELPER" packets "$DATA/t.pcap" "$SESSIONS" "$(($(date +%s) - 86400))"
    port=$(free_port udp)
    python3 "$HELPER" capture "$port" "$CAP" "$NOMINAL" >"$DATA/capture.out" &
    cap_pid=$!
    sleep 1
    # softflowd truncates long paths: run it in the data dir.
    (cd "$DATA" && softflowd -d -r t.pcap -p sf.pid -c sf.ctl -n "127.0.0.1:$port" -v 9 >softflowd.out 2>&1)
    wait $cap_pid
    rm -f "$DATA/t.pcap"
    "$FLOWY" query <(printf 'splitter S {}\nfilter everything {\n    bytes >= 0\n}\n"input" -> S\nS branch A -> everything\n') \
        --input "$CAP" --no-records --output /dev/null 2>&1 | tee "$DATA/query.out"
    sed -n 's/.* \([0-9]*\) records read.*/\1/p' "$DATA/query.out" >"$DATA/records"
fi
RECORDS=$(cat "$DATA/records")
SPEED=$(calc "%.4f" "$RATE / $NOMINAL")
QARGS=()
for q in $QUERIES; do QARGS+=(--query "$(realpath "$q")"); done
echo "capture: $CAP, $RECORDS records ($(stat -c %s "$CAP") bytes); replay at $RATE records/s; queries: $QUERIES"
echo "machine: $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg) at start, $(date -u +%FT%TZ)"

# --- 1. standalone --------------------------------------------------------
port=$(free_port udp)
start_flowy sa "" --listen "127.0.0.1:$port" "${QARGS[@]}" --output "$TMP/sa.jsonl"
c0=$(ticks "$PID_sa")
t0=$(now)
"$FLOWY" replay "$CAP" --to "127.0.0.1:$port" --speed "$SPEED"
read -r sa_proc sa_at < <(settle "$URL_sa" flowy_records_processed_total "$URL_sa" flowy_records_received_total)
c1=$(ticks "$PID_sa")
stop "$PID_sa"
sa_cpu=$(calc "%.2f" "($c1 - $c0) / $HZ")
sa_rate=$(calc "%.0f" "$sa_proc / ($sa_at - $t0)")
sa_us=$(calc "%.3f" "$sa_cpu * 1e6 / $sa_proc")
echo "standalone: processed $sa_proc of $RECORDS; $sa_rate records/s; CPU $sa_cpu s = $sa_us µs/record; matches $(wc -l <"$TMP/sa.jsonl")"

# --- 2. cluster: collector, then one worker draining the stream ----------
start_nats nats
CL_ENV="FLOWY__CLUSTER__NATS=$NATS_URL FLOWY__CLUSTER__PARTITIONS=$PARTS"
n0=$(ticks "$PID_nats")
port=$(free_port udp)
start_flowy col "FLOWY__CLUSTER__ROLE=collector $CL_ENV" --listen "127.0.0.1:$port" "${QARGS[@]}" --output "$TMP/col.jsonl"
c0=$(ticks "$PID_col")
t0=$(now)
"$FLOWY" replay "$CAP" --to "127.0.0.1:$port" --speed "$SPEED"
read -r published pub_at < <(settle "$URL_col" flowy_cluster_published_records_total "$URL_col" flowy_records_received_total)
c1=$(ticks "$PID_col")
col_recv=$(metric "$URL_col" flowy_records_received_total)
col_dropped=$(metric "$URL_col" flowy_cluster_dropped_records_total)
col_msgs=$(metric "$URL_col" flowy_cluster_published_messages_total)
stop "$PID_col"
n1=$(ticks "$PID_nats")
col_cpu=$(calc "%.2f" "($c1 - $c0) / $HZ")
nats_pub_cpu=$(calc "%.2f" "($n1 - $n0) / $HZ")
lanes=$(calc "%.2f" "$published / $col_recv")
echo "collector: received $col_recv of $RECORDS, published $published records ($lanes per record) in $col_msgs messages, dropped $col_dropped;" \
    "$(calc "%.0f" "$published / ($pub_at - $t0)") published records/s ($(calc "%.0f" "$col_recv / ($pub_at - $t0)") input records/s);" \
    "CPU collector $col_cpu s, nats-server $nats_pub_cpu s"

t0=$(now)
start_flowy wrk "FLOWY__CLUSTER__ROLE=worker $CL_ENV" "${QARGS[@]}" --output "$TMP/wrk.jsonl"
read -r consumed con_at < <(settle "$URL_wrk" flowy_cluster_consumed_records_total "$URL_wrk" flowy_records_processed_total)
w1=$(ticks "$PID_wrk")
n2=$(ticks "$PID_nats")
stop "$PID_wrk"
wrk_cpu=$(calc "%.2f" "$w1 / $HZ")
nats_con_cpu=$(calc "%.2f" "($n2 - $n1) / $HZ")
echo "worker: consumed $consumed records of $published; $(calc "%.0f" "$consumed / ($con_at - $t0)") consumed records/s" \
    "($(calc "%.0f" "$col_recv / ($con_at - $t0)") input records/s, start-up included); CPU worker $wrk_cpu s, nats-server $nats_con_cpu s; matches $(wc -l <"$TMP/wrk.jsonl")"
cl_cpu=$(calc "%.2f" "$col_cpu + $wrk_cpu + $nats_pub_cpu + $nats_con_cpu")
cl_us=$(calc "%.3f" "$cl_cpu * 1e6 / $col_recv")
echo "bus path: CPU $cl_cpu s = $cl_us µs/record (collector $(calc "%.3f" "$col_cpu * 1e6 / $col_recv")," \
    "worker $(calc "%.3f" "$wrk_cpu * 1e6 / $col_recv"), nats-server $(calc "%.3f" "($nats_pub_cpu + $nats_con_cpu) * 1e6 / $col_recv"));" \
    "standalone $sa_us µs/record; ratio $(calc "%.2f" "$cl_us / $sa_us") (target <= 1.5)"
stop "$PID_nats"

# --- 3. latency: datagram -> match line -----------------------------------
LAT_Q=$TMP/all.flowy
printf 'splitter S {}\nfilter everything {\n    bytes >= 0\n}\n"input" -> S\nS branch A -> everything\n' >"$LAT_Q"
LAT_ENV="FLOWY__ENGINE__LATENESS=0s FLOWY__ENGINE__IDLE_ADVANCE=1ms"
port=$(free_port udp)
: >"$TMP/lat-sa.jsonl"
start_flowy lsa "$LAT_ENV" --listen "127.0.0.1:$port" --query "$LAT_Q" --output "$TMP/lat-sa.jsonl"
sleep 1
echo "latency standalone (median p99 max, ms): $(python3 "$HELPER" latency "127.0.0.1:$port" "$TMP/lat-sa.jsonl" "$SAMPLES" "$PARTS")"
stop "$PID_lsa"

start_nats nats2
CL_ENV="FLOWY__CLUSTER__NATS=$NATS_URL FLOWY__CLUSTER__PARTITIONS=$PARTS"
: >"$TMP/lat-wrk.jsonl"
start_flowy lwrk "FLOWY__CLUSTER__ROLE=worker $CL_ENV $LAT_ENV" --query "$LAT_Q" --output "$TMP/lat-wrk.jsonl"
port=$(free_port udp)
start_flowy lcol "FLOWY__CLUSTER__ROLE=collector $CL_ENV $LAT_ENV" --listen "127.0.0.1:$port" --query "$LAT_Q" --output "$TMP/lat-col.jsonl"
sleep 2
echo "latency cluster (median p99 max, ms): $(python3 "$HELPER" latency "127.0.0.1:$port" "$TMP/lat-wrk.jsonl" "$SAMPLES" "$PARTS")"
stop "$PID_lcol"
stop "$PID_lwrk"
stop "$PID_nats2"
echo "machine: load $(cut -d' ' -f1-3 /proc/loadavg) at end, $(date -u +%FT%TZ)"
