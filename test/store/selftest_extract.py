#!/usr/bin/env python3
"""Self-check of extract_vectors.py's TCP reassembly: rewrite a capture with its data
segments reordered (adjacent pairs swapped) and some duplicated (retransmissions), and
check that the decoded frames (per connection: direction, seq, function id, hex) are
unchanged. Standard library only.

Usage: python3 test/store/selftest_extract.py [NAME ...]   (default: every pcap/*.pcap)
"""
import glob
import json
import os
import shutil
import struct
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import extract_vectors as ev  # noqa: E402


def records(path):
    with open(path, "rb") as f:
        gh = f.read(24)
        out = []
        while True:
            h = f.read(16)
            if len(h) < 16:
                break
            incl = struct.unpack("<IIII", h)[2]
            out.append((h, f.read(incl)))
    return gh, out


def has_payload(frame):
    ver, ip = ev.ip_payload(1, frame)
    if ver != 4:
        return False
    ihl = (ip[0] & 0x0F) * 4
    total = struct.unpack("!H", ip[2:4])[0]
    tcp = ip[ihl:total]
    return len(tcp) > (tcp[12] >> 4) * 4


def mangle(src, dst):
    gh, recs = records(src)
    out, i = [], 0
    while i < len(recs):
        if i + 1 < len(recs) and has_payload(recs[i][1]) and has_payload(recs[i + 1][1]):
            out += [recs[i + 1], recs[i]]          # out of order
            if i % 3 == 0:
                out.append(recs[i])                # and a retransmission
            i += 2
        else:
            out.append(recs[i])
            i += 1
    with open(dst, "wb") as f:
        f.write(gh)
        for h, d in out:
            f.write(h + d)


def frames(doc):
    return [[(m["direction"], m["seq"], m["function_id"], m["hex"]) for m in c["messages"]]
            for c in doc["connections"]]


def main():
    names = sys.argv[1:] or sorted(os.path.basename(p)[:-5]
                                   for p in glob.glob(os.path.join(HERE, "pcap", "*.pcap")))
    tmp = tempfile.mkdtemp(prefix="mc-extract-selftest-")
    bad = 0
    try:
        for n in names:
            shutil.copy(os.path.join(HERE, "pcap", n + ".meta.json"), tmp)
            mangle(os.path.join(HERE, "pcap", n + ".pcap"), os.path.join(tmp, n + ".pcap"))
            ref = ev.extract(n, os.path.join(HERE, "pcap"), os.path.join(tmp, "ref"))
            got = ev.extract(n, tmp, os.path.join(tmp, "got"))
            ok = frames(ref) == frames(got) and not got["problems"]
            retx = sum(c["retransmitted_segments"] for c in got["connections"])
            print("%-12s %s (%d duplicate segments dropped)" % (n, "OK" if ok else "MISMATCH", retx))
            bad += not ok
    finally:
        shutil.rmtree(tmp)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
