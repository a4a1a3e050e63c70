#!/bin/sh
# End-to-end comparison of `flowy query` with nfdump (benches/query_e2e.rs):
# a Markdown table of median wall time, CPU (user+sys) and peak RSS per
# command, then the commands themselves. Inputs are built on the first run
# and cached under target/bench-data/ (about 1 min; needs nfcapd/nfdump).
#
#   benches/compare.sh                         # every case, 5 runs each
#   FLOWY_E2E_RUNS=3 benches/compare.sh        # fewer runs
#   FLOWY_E2E_CASES=filter,http-1x benches/compare.sh
#   FLOWY_BIN=/path/to/flowy benches/compare.sh  # another build of flowy
#
# cargo builds target/release/flowy (bench profile = release settings)
# before the bench starts, so the table is always of the checked-out code.
set -eu
cd "$(dirname "$0")/.."
command -v nfdump >/dev/null && command -v nfcapd >/dev/null || {
    echo "needs nfdump and nfcapd (apt-get install nfdump)" >&2
    exit 1
}
[ -x /usr/bin/time ] || { echo "needs GNU time (apt-get install time)" >&2; exit 1; }
exec cargo bench --bench query_e2e -- --table
