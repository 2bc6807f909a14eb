"""Plays the Mooncake side of the interop tests (test code only; the product is TypeScript).

Reads one JSON command per line on stdin and answers one JSON line on stdout.
Memory is ctypes buffers registered with Mooncake's real engine; data are
checked by SHA-256 on both sides, so no payload crosses this pipe.
"""
import ctypes
import gc
import hashlib
import json
import os
import sys
import time

from mooncake.engine import TransferEngine, TransferNotify, TransferOpcode

engine = TransferEngine()
buffers = {}  # addr -> ctypes buffer (kept alive)


def sha(addr, length):
    return hashlib.sha256(ctypes.string_at(addr, length)).hexdigest()


def handle(c):
    cmd = c["cmd"]
    if cmd == "init":
        if c.get("metadata_type"):
            rc = engine.initialize_ext(c["host"], c["metadata"], "tcp", "", c["metadata_type"])
        else:
            rc = engine.initialize(c["host"], c["metadata"], "tcp", "")
        # P2P: the engine renames itself host:rpc_port (a port in the given name is the RPC port
        # with MC_LEGACY_RPC_PORT_BINDING). Central modes: the name stays as given.
        p2p = c["metadata"] == "P2PHANDSHAKE" or c.get("metadata_type") == "p2p"
        host = c["host"].rsplit(":", 1)[0] if c["host"].count(":") == 1 else c["host"]
        segment = f'{host}:{engine.get_rpc_port()}' if p2p else c["host"]
        return {"rc": rc, "rpc_port": engine.get_rpc_port(), "segment": segment}
    if cmd == "alloc":
        size = c["size"]
        buf = (ctypes.c_char * size)()
        addr = ctypes.addressof(buf)
        if c.get("random"):
            ctypes.memmove(addr, os.urandom(size), size)
        buffers[addr] = buf
        rc = engine.register_memory(addr, size)
        return {"rc": rc, "addr": addr, "sha": sha(addr, size)}
    if cmd == "hash":
        return {"sha": sha(c["addr"], c["len"])}
    if cmd == "hash_blocks":
        return {"shas": [sha(c["addr"] + i * c["block"], c["block"]) for i in range(c["count"])]}
    if cmd == "submit_each":
        # One single-request async batch per request, so that each request's outcome is seen alone.
        f = engine.batch_transfer_async_write if c["op"] == "write" else engine.batch_transfer_async_read
        return {"bids": [f(c["target"], [l], [r], [n]) for l, r, n in zip(c["locals"], c["remotes"], c["lens"])]}
    if cmd == "status_each":
        # get_batch_transfer_status waits for each batch (MC_TRANSFER_TIMEOUT + 1 ns/byte from its submission).
        return {"rcs": [engine.get_batch_transfer_status([b]) if b != 0 else -100 for b in c["bids"]]}
    if cmd == "fill_random":
        ctypes.memmove(c["addr"], os.urandom(c["len"]), c["len"])
        return {"sha": sha(c["addr"], c["len"])}
    if cmd in ("write", "read"):
        f = engine.transfer_sync_write if cmd == "write" else engine.transfer_sync_read
        return {"rc": f(c["target"], c["local"], c["remote"], c["len"])}
    if cmd == "batch":
        f = engine.batch_transfer_sync_write if c["op"] == "write" else engine.batch_transfer_sync_read
        return {"rc": f(c["target"], c["locals"], c["remotes"], c["lens"])}
    if cmd == "async":
        f = engine.batch_transfer_async_write if c["op"] == "write" else engine.batch_transfer_async_read
        bid = f(c["target"], c["locals"], c["remotes"], c["lens"])
        if bid == 0:
            return {"rc": -100}
        return {"rc": engine.get_batch_transfer_status([bid])}
    if cmd == "submit_poll":
        bid = engine.transfer_submit_write(c["target"], c["local"], c["remote"], c["len"])
        if bid < 0:
            return {"rc": bid}
        deadline = time.time() + 30
        while time.time() < deadline:
            st = engine.transfer_check_status(bid)
            if st != 0:
                return {"rc": st}
            time.sleep(0.001)
        return {"rc": "hung"}
    if cmd == "notify":
        rc = engine.transfer_sync(c["target"], c["local"], c["remote"], c["len"], TransferOpcode.Write,
                                  TransferNotify(c["name"], c["msg"]))
        return {"rc": rc}
    if cmd == "notifies":
        return {"notifies": [{"name": n.name, "msg": n.msg} for n in engine.get_notifies()]}
    if cmd == "first_buffer":
        return {"addr": engine.get_first_buffer_address(c["segment"])}
    if cmd == "probe":
        return {"rc": engine.send_probe(c["segment"])}
    raise ValueError(f"unknown command {cmd}")


print(json.dumps({"ready": True}), flush=True)
for line in sys.stdin:
    c = json.loads(line)
    if c["cmd"] == "exit":
        break
    try:
        out = handle(c)
    except Exception as e:  # report, keep serving
        out = {"error": f"{type(e).__name__}: {e}"}
    print(json.dumps(out), flush=True)

# Destroy the engine before the interpreter tears down: in central modes its
# destructor deletes the segment and rpc_meta keys, which the tests check.
del engine
gc.collect()
print(json.dumps({"closed": True}), flush=True)
