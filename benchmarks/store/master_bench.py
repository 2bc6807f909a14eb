"""One round of the master benchmark (benchmarks/master-compare.ts): the
wheel's Python MooncakeDistributedStore against one Store master, timing each
call with perf_counter_ns. Prints one JSON object per operation:
{"op", "n", "seconds", "p50_us", "p99_us", "bytes"}.

    python master_bench.py MASTER_ADDR METADATA_URL SMALL_N LARGE_N [WARMUP_N]

Operations, in order: put_small (64 B values, distinct keys), exist
(is_exist of those keys: a master call and nothing else), get_small (a
GetReplicaList and a 64 B read from the local segment), put_1m and get_1m
(1 MiB values), then remove_all(force) so the next round starts empty.

Before them, WARMUP_N rounds of put/is_exist/get/get 1 MiB/remove on other
keys, unmeasured, then a 1 s pause: a master is measured warm, as it runs in
production (ours compiles its hot paths while it runs; a JIT at work
competes with the client for the CPU), and both masters get the same.
"""
import json
import sys
import time

from mooncake.store import MooncakeDistributedStore


def timed(op, keys, call, size=0):
    lat = []
    start = time.perf_counter_ns()
    for k in keys:
        t0 = time.perf_counter_ns()
        rc = call(k)
        lat.append(time.perf_counter_ns() - t0)
        if rc is False:
            raise SystemExit(f"{op} {k}: failed")
    total = (time.perf_counter_ns() - start) / 1e9
    lat.sort()
    print(json.dumps({
        "op": op,
        "n": len(keys),
        "seconds": total,
        "p50_us": lat[len(lat) // 2] / 1e3,
        "p99_us": lat[min(len(lat) - 1, (len(lat) * 99) // 100)] / 1e3,
        "bytes": size * len(keys),
    }), flush=True)


def main():
    master, metadata, small_n, large_n = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    warmup = int(sys.argv[5]) if len(sys.argv) > 5 else 0
    s = MooncakeDistributedStore()
    rc = s.setup("127.0.0.1", metadata, 512 << 20, 128 << 20, "tcp", "", master)
    if rc != 0:
        raise SystemExit(f"setup: {rc}")
    small = b"s" * 64
    big = bytes(range(256)) * 4096
    for i in range(warmup):
        k = f"w-{i}"
        s.put(k, small)
        s.is_exist(k)
        s.get(k)
        if i % 20 == 0:
            s.put(k + "-l", big)
            s.get(k + "-l")
            s.remove(k + "-l", True)
        s.remove(k, True)
    if warmup:
        time.sleep(1)
    skeys = [f"s-{i}" for i in range(small_n)]
    lkeys = [f"l-{i}" for i in range(large_n)]
    timed("put_small", skeys, lambda k: s.put(k, small) == 0)
    timed("exist", skeys, lambda k: s.is_exist(k) == 1)
    timed("get_small", skeys, lambda k: len(s.get(k)) == 64)
    timed("put_1m", lkeys, lambda k: s.put(k, big) == 0, len(big))
    timed("get_1m", lkeys, lambda k: len(s.get(k)) == len(big), len(big))
    s.remove_all(True)
    s.close()


main()
