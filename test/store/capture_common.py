"""Client-side helpers shared by the capture_*.py scenario scripts.

These scripts are run by test/store/capture.py (never by hand, although they can
be: see the environment below).  Each scenario drives the pinned wheel's Python
store client (mooncake.store.MooncakeDistributedStore) one operation at a time,
and records, for every operation, a label and the wall-clock window [t0, t1] it
ran in.  extract_vectors.py uses those windows to label the coro_rpc frames seen
on the wire (pcap timestamps and time.time() read the same clock).

Environment (set by capture.py):
  MC_CAPTURE_OPS      path of the JSON file this process writes its op log to
  MC_CAPTURE_MASTER   master RPC address, "127.0.0.1:PORT"
  MC_CAPTURE_META     HTTP metadata URL, "http://127.0.0.1:PORT/metadata"
  MC_CAPTURE_GAP      seconds to sleep after each op (default 0.3)
  MC_FORCE_TCP=1, MC_TCP_BIND_ADDRESS=127.0.0.1 (loopback only)

Restart hook: Recorder.restart_master() prints "@@RESTART <down_s> <kill_signal>"
on stdout and blocks until the driver answers "@@OK" on stdin, after the master
has been killed and started again on the same ports.
"""

import json
import os
import socket
import sys
import time

MIB = 1024 * 1024


def summarize(value):
    """A JSON-able, short rendering of a Python-level result."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        b = bytes(value)
        out = {"bytes_len": len(b), "head_hex": b[:32].hex()}
        return out
    if isinstance(value, (list, tuple)):
        return [summarize(v) for v in value[:64]]
    if isinstance(value, dict):
        return {str(k): summarize(v) for k, v in list(value.items())[:64]}
    if isinstance(value, (int, float, str, bool)) or value is None:
        return value
    return repr(value)[:200]


def describe_replicas(descs):
    """ReplicaDescriptor list -> JSON-able list (memory replicas: endpoint/address/size)."""
    out = []
    for d in descs:
        item = {"status": str(d.status)}
        if d.is_memory_replica():
            bd = d.get_memory_descriptor().buffer_descriptor
            item.update(kind="memory", transport_endpoint=bd.transport_endpoint,
                        buffer_address=bd.buffer_address, size=bd.size)
        elif d.is_disk_replica():
            dd = d.get_disk_descriptor()
            item.update(kind="disk", file_path=dd.file_path, object_size=dd.object_size)
        else:
            item["kind"] = "other"
        out.append(item)
    return out


def _proc_tcp_table():
    """Map socket inode -> (local_port, remote_port) from /proc/self/net/tcp{,6}."""
    table = {}
    for path in ("/proc/self/net/tcp", "/proc/self/net/tcp6"):
        try:
            with open(path) as f:
                next(f)
                for line in f:
                    parts = line.split()
                    local, remote, inode = parts[1], parts[2], parts[9]
                    lport = int(local.rsplit(":", 1)[1], 16)
                    rport = int(remote.rsplit(":", 1)[1], 16)
                    table[inode] = (lport, rport)
        except OSError:
            pass
    return table


class Recorder:
    def __init__(self, owner="client"):
        self.owner = owner
        self.ops_path = os.environ.get("MC_CAPTURE_OPS", "/dev/null")
        self.master = os.environ["MC_CAPTURE_MASTER"]
        self.meta = os.environ["MC_CAPTURE_META"]
        self.master_port = int(self.master.rsplit(":", 1)[1])
        self.gap = float(os.environ.get("MC_CAPTURE_GAP", "0.3"))
        self.ops = []
        self.conns = {}  # client local port -> first time seen
        self.notes = []

    # --- bookkeeping -----------------------------------------------------
    def note(self, text):
        self.notes.append({"t": time.time(), "text": text})
        print("note:", text, flush=True)

    def snapshot_conns(self):
        """Record which local TCP ports of *this process* talk to the master."""
        table = _proc_tcp_table()
        now = time.time()
        try:
            fds = os.listdir("/proc/self/fd")
        except OSError:
            return
        for fd in fds:
            try:
                target = os.readlink("/proc/self/fd/" + fd)
            except OSError:
                continue
            if not target.startswith("socket:["):
                continue
            inode = target[8:-1]
            ent = table.get(inode)
            if ent and ent[1] == self.master_port:
                self.conns.setdefault(ent[0], now)

    def call(self, label, fn, *args, expect=None, **kwargs):
        """Run one Python-level operation in its own labelled time window."""
        self.snapshot_conns()
        t0 = time.time()
        err = None
        try:
            result = fn(*args, **kwargs)
        except Exception as e:  # keep going: errors are vectors too
            result = None
            err = "%s: %s" % (type(e).__name__, e)
        t1 = time.time()
        rec = {"label": label, "owner": self.owner, "t0": t0, "t1": t1,
               "result": summarize(result)}
        if err:
            rec["exception"] = err
        if expect is not None:
            rec["expected"] = summarize(expect)
            rec["as_expected"] = (result == expect)
        self.ops.append(rec)
        shown = rec.get("exception", rec["result"])
        print("%-40s -> %s" % (label, json.dumps(shown)[:160]), flush=True)
        self.snapshot_conns()
        self.save()
        time.sleep(self.gap)
        return result

    def idle(self, label, seconds):
        """A labelled window in which the script does nothing (background traffic only)."""
        self.snapshot_conns()
        t0 = time.time()
        time.sleep(seconds)
        t1 = time.time()
        self.ops.append({"label": label, "owner": self.owner, "t0": t0, "t1": t1,
                         "idle": True})
        print("%-40s (%.1fs)" % (label, seconds), flush=True)
        self.snapshot_conns()
        self.save()

    def restart_master(self, down_seconds=1.0, kill_signal="KILL"):
        """Ask the driver to kill the master and start it again (same ports)."""
        t0 = time.time()
        print("@@RESTART %s %s" % (down_seconds, kill_signal), flush=True)
        line = sys.stdin.readline().strip()
        t1 = time.time()
        self.ops.append({"label": "driver: master killed (SIG%s) and restarted" % kill_signal,
                         "owner": "driver", "t0": t0, "t1": t1, "idle": True,
                         "driver_reply": line})
        self.save()
        if line != "@@OK":
            raise RuntimeError("driver did not restart the master: %r" % line)

    def save(self):
        data = {"owner": self.owner, "pid": os.getpid(), "ops": self.ops,
                "notes": self.notes,
                "conns": [{"client_port": p, "first_seen": t}
                          for p, t in sorted(self.conns.items())]}
        tmp = self.ops_path + ".tmp"
        if self.ops_path == "/dev/null":
            return
        with open(tmp, "w") as f:
            json.dump(data, f, indent=1)
        os.replace(tmp, self.ops_path)

    # --- the store -------------------------------------------------------
    def new_store(self):
        from mooncake.store import MooncakeDistributedStore
        return MooncakeDistributedStore()

    def setup(self, store, global_segment=16 * MIB, local_buffer=16 * MIB,
              label="setup(global_segment=16MiB, local_buffer=16MiB)"):
        return self.call(label, store.setup, "127.0.0.1", self.meta,
                         global_segment, local_buffer, "tcp", "", self.master)

    def close(self, store, label="close()"):
        r = self.call(label, store.close)
        return r


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p
