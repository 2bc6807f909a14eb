"""Plays a Mooncake Store client for the store tests (test code only; the product is TypeScript).

One process = one `mooncake.store.MooncakeDistributedStore` of the pinned wheel. It reads one
JSON command per line on stdin and answers one JSON line on stdout, in order. The first line
it prints is {"ready": true}; the first command is normally `setup`.

No payload crosses the pipe. A value is named by (seed, length) and its bytes are
    pattern(seed, length) = SHAKE-256(ASCII decimal of seed).digest(length)
(`hashlib.shake_256(str(seed).encode()).digest(length)`; the TypeScript side has the same
function, `pattern()` in python-store.ts). What comes back is {"length", "sha"}: the length
and the SHA-256 hex digest of the bytes the store returned.

Return values are the binding's own, untouched: 0 / negative ErrorCode, 1 / 0 for is_exist,
sizes and counts. A scalar result is "rc", a list result is "rcs". A Python exception becomes
{"error": "..."} and the driver keeps serving.

Zero-copy commands (put_from, get_into, batch_put_from, batch_get_into) use one buffer that
this driver allocates with ctypes and registers with `register_buffer`; it grows (unregister,
reallocate, register) when a command needs more room. Batch values are laid out one after the
other in it, each at a 64-byte aligned offset.
"""
import ctypes
import hashlib
import json
import sys

from mooncake.store import MooncakeDistributedStore, ObjectDataType, ReplicateConfig, SoftPinAction

ALIGN = 64
MIN_BUFFER = 4 * 1024 * 1024


def pattern(seed, length):
    return hashlib.shake_256(str(int(seed)).encode()).digest(int(length))


def digest(data):
    return {"length": len(data), "sha": hashlib.sha256(data).hexdigest()}


def replicate_config(spec):
    """A ReplicateConfig from a dict of its attribute names (None/absent: the binding's default).

    Enum fields take the member name ("ENABLE", "KVCACHE") or its int value. Unknown names
    raise, so a typo in a test fails instead of silently using a default.
    """
    cfg = ReplicateConfig()
    for name, value in (spec or {}).items():
        if not hasattr(cfg, name):
            raise ValueError("ReplicateConfig has no field %r" % name)
        if name == "soft_pin_action":
            value = SoftPinAction.__members__[value] if isinstance(value, str) else SoftPinAction(value)
        elif name == "data_type":
            value = ObjectDataType.__members__[value] if isinstance(value, str) else ObjectDataType(value)
        setattr(cfg, name, value)
    return cfg


def replica(r):
    """One ReplicaDescriptor as JSON: its status name and, for a memory replica, where it is."""
    out = {"status": str(r.status).split(".")[-1], "memory": r.is_memory_replica()}
    if out["memory"]:
        b = r.get_memory_descriptor().buffer_descriptor
        out.update(endpoint=b.transport_endpoint, address=b.buffer_address, size=b.size)
    return out


def offsets(lengths):
    """Start offsets of values laid out back to back, each 64-byte aligned; and the total."""
    out, pos = [], 0
    for n in lengths:
        out.append(pos)
        pos += (int(n) + ALIGN - 1) // ALIGN * ALIGN
    return out, pos


class Driver:
    def __init__(self):
        self.store = MooncakeDistributedStore()
        self.buf = None  # ctypes array, kept alive while registered
        self.buf_size = 0
        self.closed = False

    # --- the registered buffer ------------------------------------------------------------
    def register(self, size):
        """Allocate a fresh buffer of `size` bytes and register it (replacing the old one)."""
        if self.buf is not None:
            self.store.unregister_buffer(ctypes.addressof(self.buf))
            self.buf = None
            self.buf_size = 0
        buf = (ctypes.c_char * size)()
        rc = self.store.register_buffer(ctypes.addressof(buf), size)
        if rc == 0:
            self.buf, self.buf_size = buf, size
        return rc

    def ensure_buffer(self, size):
        if self.buf is not None and self.buf_size >= size:
            return
        rc = self.register(max(size, MIN_BUFFER, self.buf_size * 2))
        if rc != 0:
            raise RuntimeError("register_buffer returned %d" % rc)

    @property
    def base(self):
        return ctypes.addressof(self.buf)

    def fill(self, offset, seed, length):
        ctypes.memmove(self.base + offset, pattern(seed, length), length)

    def read(self, offset, length):
        return ctypes.string_at(self.base + offset, length)

    # --- commands ---------------------------------------------------------------------------
    def setup(self, c):
        rc = self.store.setup(c.get("local_hostname", "127.0.0.1"), c["metadata"],
                              int(c["global_segment_size"]), int(c["local_buffer_size"]),
                              c.get("protocol", "tcp"), c.get("rdma_devices", ""), c["master"])
        return {"rc": rc, "hostname": self.store.get_hostname() if rc == 0 else ""}

    def put_from(self, c):
        self.ensure_buffer(c["length"])
        self.fill(0, c["seed"], c["length"])
        return {"rc": self.store.put_from(c["key"], self.base, c["length"], replicate_config(c.get("config")))}

    def get_into(self, c):
        size = int(c["size"])
        self.ensure_buffer(size)
        rc = self.store.get_into(c["key"], self.base, size)
        return {"rc": rc, "value": digest(self.read(0, rc)) if rc >= 0 else None}

    def batch_put_from(self, c):
        offs, total = offsets(c["lengths"])
        self.ensure_buffer(total)
        for off, seed, n in zip(offs, c["seeds"], c["lengths"]):
            self.fill(off, seed, n)
        rcs = self.store.batch_put_from(c["keys"], [self.base + o for o in offs], list(c["lengths"]),
                                        replicate_config(c.get("config")))
        return {"rcs": rcs}

    def batch_get_into(self, c):
        offs, total = offsets(c["sizes"])
        self.ensure_buffer(total)
        rcs = self.store.batch_get_into(c["keys"], [self.base + o for o in offs], list(c["sizes"]))
        values = [digest(self.read(o, rc)) if rc >= 0 else None for o, rc in zip(offs, rcs)]
        return {"rcs": rcs, "values": values}

    def handle(self, c):
        s, cmd = self.store, c["cmd"]
        if cmd == "setup":
            return self.setup(c)
        if cmd == "put":
            return {"rc": s.put(c["key"], pattern(c["seed"], c["length"]), replicate_config(c.get("config")))}
        if cmd == "upsert":
            return {"rc": s.upsert(c["key"], pattern(c["seed"], c["length"]), replicate_config(c.get("config")))}
        if cmd == "get":  # bytes; b"" on any error (the binding hides the code)
            return {"value": digest(s.get(c["key"]))}
        if cmd == "put_batch":  # one int for the whole batch
            values = [pattern(seed, n) for seed, n in zip(c["seeds"], c["lengths"])]
            return {"rc": s.put_batch(c["keys"], values, replicate_config(c.get("config")))}
        if cmd == "upsert_batch":  # one int for the whole batch, as put_batch
            values = [pattern(seed, n) for seed, n in zip(c["seeds"], c["lengths"])]
            return {"rc": s.upsert_batch(c["keys"], values, replicate_config(c.get("config")))}
        if cmd == "get_batch":
            return {"values": [digest(v) for v in s.get_batch(c["keys"])]}
        if cmd == "register_buffer":
            rc = self.register(int(c["size"]))
            return {"rc": rc, "addr": self.base if rc == 0 else 0}
        if cmd == "put_from":
            return self.put_from(c)
        if cmd == "get_into":
            return self.get_into(c)
        if cmd == "batch_put_from":
            return self.batch_put_from(c)
        if cmd == "batch_get_into":
            return self.batch_get_into(c)
        if cmd == "is_exist":
            return {"rc": s.is_exist(c["key"])}
        if cmd == "batch_is_exist":
            return {"rcs": s.batch_is_exist(c["keys"])}
        if cmd == "get_size":
            return {"rc": s.get_size(c["key"])}
        if cmd == "remove":
            return {"rc": s.remove(c["key"], bool(c.get("force", False)))}
        if cmd == "batch_remove":
            return {"rcs": s.batch_remove(c["keys"], bool(c.get("force", False)))}
        if cmd == "remove_by_regex":
            return {"rc": s.remove_by_regex(c["regex"], bool(c.get("force", False)))}
        if cmd == "remove_all":
            return {"rc": s.remove_all(bool(c.get("force", False)))}
        if cmd == "get_replica_desc":  # the replicas GetReplicaList returned (it takes a lease)
            return {"replicas": [replica(r) for r in s.get_replica_desc(c["key"])]}
        if cmd == "get_hostname":
            return {"hostname": s.get_hostname()}
        if cmd == "health_check":
            return {"rc": s.health_check()}
        if cmd == "close":
            rc = s.close()
            self.closed = True
            return {"rc": rc}
        raise ValueError("unknown command %r" % cmd)


def main():
    d = Driver()
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:  # EOF (the test process died) ends the loop too
        c = json.loads(line)
        if c["cmd"] == "exit":
            break
        try:
            out = d.handle(c)
        except Exception as e:  # report, keep serving
            out = {"error": "%s: %s" % (type(e).__name__, e)}
        print(json.dumps(out), flush=True)
    # Close explicitly so the master sees UnmountSegment now rather than a client TTL expiry;
    # interpreter teardown of a live store is not something to rely on.
    if not d.closed:
        try:
            d.store.close()
        except Exception:  # a store that was never set up
            pass
    print(json.dumps({"closed": True}), flush=True)


if __name__ == "__main__":
    main()
