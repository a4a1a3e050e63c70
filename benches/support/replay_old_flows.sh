#!/bin/sh
# Issue 9 finding 12, scaled: `flowy serve` with the example queries while
# an exporter re-sends the same 10 minutes of old flows in a loop; prints
# RSS and engine metrics every million records, then /usr/bin/time -v's
# maximum RSS.
#
# usage: benches/support/replay_old_flows.sh BIN MAX_STATE LATE LOOPS RATE
#   e.g. benches/support/replay_old_flows.sh target/release/flowy 512MiB process 22 60000
set -e
BIN=$1; MAX=$2; LATE=$3; LOOPS=$4; RATE=$5
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
UDP=$((20000 + $$ % 10000)); MP=$((UDP + 1))
LOG=$(mktemp)
FLOWY__ENGINE__MAX_STATE=$MAX FLOWY__ENGINE__LATE=$LATE FLOWY__METRICS__LISTEN=127.0.0.1:$MP \
FLOWY__QUERIES__PATHS="$ROOT/config/queries/*.flowy" \
  /usr/bin/time -v "$BIN" serve --listen 127.0.0.1:$UDP --output /dev/null 2>"$LOG" &
TIME_PID=$!
sleep 2
PID=$(pgrep -P $TIME_PID)
python3 "$HERE/replay_old_flows.py" $UDP $MP $PID $LOOPS $RATE
kill -TERM "$PID"
wait $TIME_PID || true
grep -E "Maximum resident|Elapsed" "$LOG"
rm -f "$LOG"
