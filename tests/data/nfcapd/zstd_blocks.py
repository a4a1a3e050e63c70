#!/usr/bin/env python3
"""Rewrite an uncompressed nfdump 1.7 file (LAYOUT_VERSION_2) with every block
ZSTD-compressed, the way nfdump >= 1.7.2 writes it: file header compression
byte = 4, each block's payload one zstd frame, the block header's size the
compressed size, offAppendix moved to the appendix's new place.

Debian's nfdump 1.7.1 cannot write ZSTD; this follows the published layout
(nffileV2.h): a 40-byte file header, then 12-byte block headers
(NumRecords u32, size u32, type u16, flags u16), little endian.
Usage: zstd_blocks.py IN OUT   (needs the zstd command)"""
import struct
import subprocess
import sys

src = open(sys.argv[1], "rb").read()
magic, version = struct.unpack_from("<HH", src, 0)
assert magic == 0xA50C and version == 2, "not an nfdump 1.7 file"
compression = src[16]
assert compression == 0, "input must be uncompressed"
appendix_blocks = struct.unpack_from("<H", src, 18)[0]
off_appendix = struct.unpack_from("<q", src, 24)[0]
num_blocks = struct.unpack_from("<I", src, 36)[0]

out = bytearray(src[:40])
out[16] = 4
pos = 40
new_appendix = None
for i in range(num_blocks + appendix_blocks):
    if pos == off_appendix:
        new_appendix = len(out)
    nrec, size, btype, flags = struct.unpack_from("<IIHH", src, pos)
    payload = src[pos + 12 : pos + 12 + size]
    packed = subprocess.run(["zstd", "-3", "-q", "-c", "--no-check"], input=payload,
                            stdout=subprocess.PIPE, check=True).stdout
    out += struct.pack("<IIHH", nrec, len(packed), btype, flags) + packed
    pos += 12 + size
assert pos == len(src), "trailing bytes"
if new_appendix is not None:
    struct.pack_into("<q", out, 24, new_appendix)
open(sys.argv[2], "wb").write(out)
