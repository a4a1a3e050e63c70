#!/bin/bash
# How the nfcapd test files were made (Debian nfdump/nfcapd 1.7.1, softflowd).
# Run from this directory; needs nfcapd, nfdump, softflowd, python3, zstd.
# The golden .json/.exporters files are nfdump's own view of each file.
set -eu
here=$(pwd)
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null; rm -rf "$work"' EXIT
python3 make_pcap.py "$work/flows.pcap"
mkdir "$work/v9" "$work/ipfix" "$work/v5" "$work/ix"
nfcapd -p 29555 -b 127.0.0.1 -w "$work/v9" -I v9test &
nfcapd -p 29556 -b 127.0.0.1 -w "$work/ipfix" -s 10 -I ipfixtest &
nfcapd -p 29557 -b 127.0.0.1 -w "$work/v5" -I v5test &
nfcapd -p 29558 -b 127.0.0.1 -w "$work/ix" -I ipfixext &
sleep 1
softflowd -r "$work/flows.pcap" -n 127.0.0.1:29555 -v 9
softflowd -r "$work/flows.pcap" -n 127.0.0.1:29556 -v 10
# v5 header sampling: mode 1, interval 100
python3 send_v5.py 29557 $((0x4000 | 100))
# IPv4 and IPv6 templates with next hops, BGP next hops, AS, masks, VLANs
python3 send_ipfix.py 29558 127.0.0.2 7
python3 send_ipfix.py 29558 127.0.0.3 9
sleep 1
kill $(jobs -p); wait || true
cp "$work"/v9/nfcapd.* v9.nfcapd
cp "$work"/ipfix/nfcapd.* ipfix-sampled.nfcapd
cp "$work"/v5/nfcapd.* v5-sampled.nfcapd
cp "$work"/ix/nfcapd.* ipfix-ext.nfcapd
for c in 1:lzo 2:bz2 3:lz4; do
    cp v9.nfcapd "v9-${c#*:}.nfcapd"
    nfdump -J "${c%:*}" -r "v9-${c#*:}.nfcapd"
done
python3 zstd_blocks.py v9.nfcapd v9-zstd.nfcapd
for f in v9 ipfix-sampled v5-sampled ipfix-ext; do
    TZ=UTC nfdump -r "$f.nfcapd" -o json > "$f.json"
    nfdump -E "$f.nfcapd" > "$f.exporters"
done
cd "$here"
