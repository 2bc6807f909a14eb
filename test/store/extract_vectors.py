#!/usr/bin/env python3
"""Turn pcap/NAME.pcap (+ pcap/NAME.meta.json) into vectors/NAME.json.

Standard library only (a small pcap reader and TCP reassembler are included).

For every TCP connection to the master port, in order of its SYN, the two byte
streams are reassembled from sequence numbers (duplicates / retransmissions are
dropped, overlaps keep the first copy and are counted, a hole stops the stream
and is reported) and split at coro_rpc frame boundaries:

  request  (client -> master), 20-byte header, little endian:
    u8 magic=0x15 | u8 version | u8 serialize_type | u8 msg_type |
    u32 seq_num | u32 function_id | u32 body_length | u32 attach_length
  response (master -> client), 16-byte header, little endian:
    u8 magic=0x15 | u8 version | u8 err_code | u8 msg_type |
    u32 seq_num | u32 body_length | u32 attach_length
  frame size = header + body_length + attach_length.

function_id = big-endian u32 of the first 4 bytes of MD5("mooncake::WrappedMasterService::<Method>")
(yalantinglibs' MD5Hash32Constexpr of the registered function's qualified name); the names are
listed below and were read from the wheel's mooncake_master binary.

Each request is labelled with the Python-level operation whose [t0, t1] window (from the
client's op log in NAME.meta.json) contains the time its first byte was captured; Ping,
FetchTasks and ReMountSegment (the client's background loops) are labelled
"background:<Method>" wherever they fall, and so are the calls a client makes to run a
task received in a FetchTasks reply ("background:task execution:<Method>"); a response carries the label of the request with the same seq on the same connection.

Usage: python3 test/store/extract_vectors.py [--pcap-dir D] [--out-dir D] [NAME ...]
"""

import argparse
import glob
import hashlib
import json
import os
import struct
import sys

HERE = os.path.dirname(os.path.abspath(__file__))

# RPC methods registered by the wheel's mooncake_master (from `strings mooncake_master`:
# "qualified_name_of_impl() [with auto Func = &mooncake::WrappedMasterService::X]").
MASTER_METHODS = """
BatchEvictDiskReplica BatchExistKey BatchGetReplicaList BatchPutEnd BatchPutRevoke BatchPutStart
BatchQueryIp BatchRemove BatchReplicaClear BatchUpsertEnd BatchUpsertRevoke BatchUpsertStart
CopyEnd CopyRevoke CopyStart CreateCopyTask CreateMoveTask DynamicReplicaCopyEnd
DynamicReplicaCopyRevoke DynamicReplicaCopyStart EvictDiskReplica ExistKey FetchTasks
GetAllNoFSegments GetFsdir GetNoFSegmentsByName GetReplicaListByRegex GetReplicaList
GetStorageConfig GracefulUnmountSegment MarkTaskToComplete MountLocalDiskSegment
MountNoFSegment MountSegment MoveEnd MoveRevoke MoveStart NotifyOffloadSuccess
NotifyPromotionFailure NotifyPromotionSuccess OffloadObjectHeartbeat Ping PollRemoveAll
PromotionAllocStart PromotionObjectHeartbeat PutEnd PutRevoke PutStart QuerySegmentStatusById
QuerySegmentStatus QueryTask ReMountNoFSegment ReMountSegment RemoveAll RemoveByRegex Remove
ReportSsdCapacity ServiceReady UnmountLocalDiskSegment UnmountNoFSegment UnmountSegment
UpsertEnd UpsertRevoke UpsertStart
""".split()

# Calls made by the client's background threads, not by the Python operation in progress:
# the heartbeat loop (Ping every ~1 s; ReMountSegment when a Ping answers NEED_REMOUNT) and
# the task loop (FetchTasks every ~1 s).
BACKGROUND = {"Ping", "FetchTasks", "ReMountSegment"}
# Calls a client makes while executing a task the master handed it in a FetchTasks reply.
TASK_EXECUTION = {"CopyStart", "CopyEnd", "CopyRevoke", "MoveStart", "MoveEnd", "MoveRevoke",
                  "MarkTaskToComplete"}


def function_id(method):
    name = "mooncake::WrappedMasterService::" + method
    return int.from_bytes(hashlib.md5(name.encode()).digest()[:4], "big")


FUNC_NAMES = {function_id(m): m for m in MASTER_METHODS}

REQ_HDR = struct.Struct("<BBBBIIII")
RESP_HDR = struct.Struct("<BBBBIII")
MAGIC = 0x15


# ---------------------------------------------------------------- pcap reading
def read_pcap(path):
    """Yield (timestamp, linktype, frame bytes) from a classic pcap file."""
    with open(path, "rb") as f:
        gh = f.read(24)
        if len(gh) < 24:
            return
        magic = gh[:4]
        if magic in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1"):
            endian = "<"
        elif magic in (b"\xa1\xb2\xc3\xd4", b"\xa1\xb2\x3c\x4d"):
            endian = ">"
        else:
            raise ValueError("not a classic pcap file (pcapng is not supported): %s" % path)
        nano = magic in (b"\x4d\x3c\xb2\xa1", b"\xa1\xb2\x3c\x4d")
        linktype = struct.unpack(endian + "I", gh[20:24])[0] & 0x0FFFFFFF
        rec = struct.Struct(endian + "IIII")
        while True:
            h = f.read(16)
            if len(h) < 16:
                return
            sec, frac, incl, _orig = rec.unpack(h)
            data = f.read(incl)
            if len(data) < incl:
                return
            yield sec + frac / (1e9 if nano else 1e6), linktype, data


def ip_payload(linktype, frame):
    """Return (ip_version, ip packet bytes) or None."""
    if linktype == 1:  # Ethernet
        off, etype = 14, struct.unpack("!H", frame[12:14])[0]
        while etype in (0x8100, 0x88A8):
            etype = struct.unpack("!H", frame[off + 2:off + 4])[0]
            off += 4
        return (4 if etype == 0x0800 else 6 if etype == 0x86DD else None), frame[off:]
    if linktype == 113:  # Linux SLL
        etype = struct.unpack("!H", frame[14:16])[0]
        return (4 if etype == 0x0800 else 6 if etype == 0x86DD else None), frame[16:]
    if linktype == 276:  # Linux SLL2
        etype = struct.unpack("!H", frame[0:2])[0]
        return (4 if etype == 0x0800 else 6 if etype == 0x86DD else None), frame[20:]
    if linktype in (0, 12, 101):  # null / raw
        v = frame[0] >> 4
        return v, frame
    return None, b""


def tcp_segments(path):
    """Yield dicts describing each TCP segment in the capture."""
    for ts, lt, frame in read_pcap(path):
        ver, ip = ip_payload(lt, frame)
        if ver == 4:
            ihl = (ip[0] & 0x0F) * 4
            total = struct.unpack("!H", ip[2:4])[0]
            if ip[9] != 6:
                continue
            src, dst = ".".join(map(str, ip[12:16])), ".".join(map(str, ip[16:20]))
            tcp = ip[ihl:total]
        elif ver == 6:
            if ip[6] != 6:  # no extension-header walking: loopback TCP has none
                continue
            plen = struct.unpack("!H", ip[4:6])[0]
            src, dst = ip[8:24].hex(), ip[24:40].hex()
            tcp = ip[40:40 + plen]
        else:
            continue
        sport, dport, seq, ack, offflags = struct.unpack("!HHIIH", tcp[:14])
        doff = (offflags >> 12) * 4
        flags = offflags & 0x1FF
        yield {"t": ts, "src": src, "dst": dst, "sport": sport, "dport": dport,
               "seq": seq, "ack": ack, "syn": bool(flags & 0x02), "fin": bool(flags & 0x01),
               "rst": bool(flags & 0x04), "ackf": bool(flags & 0x10), "payload": tcp[doff:]}


# ---------------------------------------------------------------- reassembly
class Stream:
    """One direction of a TCP connection."""

    def __init__(self):
        self.isn = None       # seq of SYN (data starts at isn + 1)
        self.base = None      # absolute seq of stream offset 0
        self.segs = []        # (offset, data, t) in arrival order
        self.fin_t = None
        self.rst_t = None
        self.retransmits = 0
        self.conflicts = 0

    def add(self, seg):
        if seg["syn"]:
            self.isn = seg["seq"]
            self.base = (seg["seq"] + 1) & 0xFFFFFFFF
        if seg["fin"] and self.fin_t is None:
            self.fin_t = seg["t"]
        if seg["rst"] and self.rst_t is None:
            self.rst_t = seg["t"]
        data = seg["payload"]
        if not data:
            return
        seq = (seg["seq"] + (1 if seg["syn"] else 0)) & 0xFFFFFFFF
        if self.base is None:  # capture started mid-connection
            self.base = seq
        off = (seq - self.base) & 0xFFFFFFFF
        if off >= 0x80000000:  # before base: data we cannot place
            return
        self.segs.append((off, data, seg["t"]))

    def assemble(self):
        """Return (bytes, [(start, end, t_first_seen)], hole_offset or None)."""
        buf = bytearray()
        spans = []
        hole = None
        for off, data, t in sorted(self.segs, key=lambda s: (s[0], s[2])):
            end = off + len(data)
            if end <= len(buf):  # full duplicate
                if bytes(buf[off:end]) != data:
                    self.conflicts += 1
                self.retransmits += 1
                continue
            if off > len(buf):
                hole = len(buf)
                break
            if off < len(buf):  # partial overlap: keep what we have
                if bytes(buf[off:len(buf)]) != data[:len(buf) - off]:
                    self.conflicts += 1
                self.retransmits += 1
                data = data[len(buf) - off:]
                off = len(buf)
            spans.append((off, off + len(data), t))
            buf += data
        return bytes(buf), spans, hole


def time_at(spans, offset):
    for s, e, t in spans:
        if s <= offset < e:
            return t
    return None


def split_frames(data, spans, request):
    hdr = REQ_HDR if request else RESP_HDR
    frames, pos, problem = [], 0, None
    while pos < len(data):
        if len(data) - pos < hdr.size:
            problem = "truncated header at offset %d" % pos
            break
        fields = hdr.unpack_from(data, pos)
        if fields[0] != MAGIC:
            problem = "bad magic 0x%02x at offset %d" % (fields[0], pos)
            break
        size = hdr.size + fields[-2] + fields[-1]
        if len(data) - pos < size:
            problem = "truncated frame at offset %d (have %d of %d bytes)" % (pos, len(data) - pos, size)
            break
        frames.append((pos, data[pos:pos + size], fields, time_at(spans, pos)))
        pos += size
    return frames, problem


def connections(pcap, master_port):
    conns = []
    live = {}  # (client ip, client port) -> conn
    for seg in tcp_segments(pcap):
        if seg["dport"] == master_port:
            key, to_server = (seg["src"], seg["sport"]), True
        elif seg["sport"] == master_port:
            key, to_server = (seg["dst"], seg["dport"]), False
        else:
            continue
        c = live.get(key)
        if to_server and seg["syn"] and not seg["ackf"]:
            if c is None or (c["c2s"].isn is not None and c["c2s"].isn != seg["seq"]):
                c = None  # a new connection (possibly reusing the 4-tuple)
        if c is None:
            c = {"client": key, "first_t": seg["t"], "c2s": Stream(), "s2c": Stream(),
                 "syn": bool(seg["syn"])}
            live[key] = c
            conns.append(c)
        (c["c2s"] if to_server else c["s2c"]).add(seg)
    return conns


# ---------------------------------------------------------------- labelling
def load_ops(meta):
    ops = []
    client = (meta or {}).get("client") or {}
    for o in client.get("ops", []):
        ops.append(o)
    for o in (meta or {}).get("extra_clients", []):
        ops.extend(o.get("ops", []))
    return ops


def owner_of(meta, port):
    for c in [(meta or {}).get("client") or {}] + (meta or {}).get("extra_clients", []):
        for p in c.get("conns", []):
            if p["client_port"] == port:
                return c.get("owner")
    return None


def label_for(ops, t, method, owner):
    if method in BACKGROUND:
        return "background:" + method
    if method in TASK_EXECUTION:
        return "background:task execution:" + method
    hits = [o for o in ops if o["t0"] - 0.0005 <= t <= o["t1"] + 0.0005 and not o.get("idle")]
    if owner:
        mine = [o for o in hits if o.get("owner") == owner]
        hits = mine or hits
    if hits:
        return hits[0]["label"]
    idle = [o for o in ops if o["t0"] <= t <= o["t1"]]
    if idle:
        return "unsolicited during: " + idle[0]["label"]
    return "unattributed"


def extract(name, pcap_dir, out_dir):
    pcap = os.path.join(pcap_dir, name + ".pcap")
    meta_path = os.path.join(pcap_dir, name + ".meta.json")
    meta = json.load(open(meta_path)) if os.path.exists(meta_path) else {}
    port = meta.get("master_port")
    if port is None:
        raise SystemExit("%s: master_port unknown (no meta.json)" % name)
    ops = load_ops(meta)
    out_conns, all_msgs, problems = [], [], []
    for i, c in enumerate(connections(pcap, port)):
        owner = owner_of(meta, c["client"][1])
        msgs = []
        reqs = {}
        for direction, stream in (("request", c["c2s"]), ("response", c["s2c"])):
            data, spans, hole = stream.assemble()
            frames, problem = split_frames(data, spans, direction == "request")
            if hole is not None:
                problems.append("conn %d %s: hole at stream offset %d" % (i, direction, hole))
            if problem:
                problems.append("conn %d %s: %s" % (i, direction, problem))
            for off, raw, f, t in frames:
                m = {"direction": direction, "seq": f[4], "t": t, "stream_offset": off}
                if direction == "request":
                    m["function_id"] = f[5]
                    m["function"] = FUNC_NAMES.get(f[5], "unknown")
                    m["header"] = {"magic": f[0], "version": f[1], "serialize_type": f[2],
                                   "msg_type": f[3], "seq_num": f[4], "function_id": f[5],
                                   "length": f[6], "attach_length": f[7]}
                    m["call"] = label_for(ops, t, m["function"], owner)
                    reqs.setdefault(f[4], []).append(m)
                else:
                    m["header"] = {"magic": f[0], "version": f[1], "err_code": f[2],
                                   "msg_type": f[3], "seq_num": f[4], "length": f[5],
                                   "attach_length": f[6]}
                m["hex"] = raw.hex()
                msgs.append(m)
        # responses: attach to the earliest unanswered request with that seq
        answered = set()
        for m in msgs:
            if m["direction"] != "response":
                continue
            cands = [r for r in reqs.get(m["seq"], []) if id(r) not in answered]
            if cands:
                r = cands[0]
                answered.add(id(r))
                m["function_id"] = r["function_id"]
                m["function"] = r["function"]
                m["call"] = r["call"]
                m["latency_s"] = round(m["t"] - r["t"], 6) if m["t"] and r["t"] else None
            else:
                m["function_id"] = None
                m["function"] = None
                m["call"] = "response without request"
        msgs.sort(key=lambda m: (m["t"] or 0, 0 if m["direction"] == "request" else 1))
        fin = {"client_fin": c["c2s"].fin_t, "server_fin": c["s2c"].fin_t,
               "client_rst": c["c2s"].rst_t, "server_rst": c["s2c"].rst_t}
        out_conns.append({"conn": i, "client_port": c["client"][1], "owner": owner,
                          "syn_seen": c["syn"], "first_t": c["first_t"],
                          "close": fin,
                          "retransmitted_segments": c["c2s"].retransmits + c["s2c"].retransmits,
                          "messages": msgs})
        for m in msgs:
            all_msgs.append((m["t"] or 0, i, m))
    # a global index (capture order) so the interleaving across connections is kept
    for n, (_, ci, m) in enumerate(sorted(all_msgs, key=lambda x: (x[0], x[1]))):
        m["index"] = n
        m["conn"] = ci
    # key order: the fields the brief asks for first
    for c in out_conns:
        c["messages"] = [
            dict([(k, m[k]) for k in ("index", "call", "direction", "seq", "function_id", "function")]
                 + [(k, v) for k, v in m.items()
                    if k not in ("index", "call", "direction", "seq", "function_id", "function", "hex")]
                 + [("hex", m["hex"])])
            for m in c["messages"]]
    seen = {}
    for c in out_conns:
        for m in c["messages"]:
            if m["direction"] == "request":
                seen.setdefault("%s (0x%08x = %d)" % (m["function"], m["function_id"], m["function_id"]),
                                set()).add(m["call"])
    out = {
        "scenario": name,
        "wheel": meta.get("wheel"),
        "pcap": "test/store/pcap/%s.pcap" % name,
        "script": meta.get("script"),
        "master_port": port,
        "master_argv": meta.get("master_argv"),
        "client_env": meta.get("client_env"),
        "frame_format": {
            "request_header": "<BBBBIIII magic(0x15) version serialize_type msg_type seq_num function_id length attach_length (20 bytes)",
            "response_header": "<BBBBIII magic(0x15) version err_code msg_type seq_num length attach_length (16 bytes)",
            "frame_size": "header + length + attach_length",
        },
        "ops": [{k: v for k, v in o.items()} for o in ops],
        "driver_events": meta.get("driver_events"),
        "functions_seen": {k: sorted(v) for k, v in sorted(seen.items())},
        "problems": problems,
        "connections": out_conns,
    }
    os.makedirs(out_dir, exist_ok=True)
    path = os.path.join(out_dir, name + ".json")
    with open(path, "w") as f:
        json.dump(out, f, indent=1)
        f.write("\n")
    nreq = sum(1 for c in out_conns for m in c["messages"] if m["direction"] == "request")
    nresp = sum(1 for c in out_conns for m in c["messages"] if m["direction"] == "response")
    print("%s: %d connections, %d requests, %d responses%s -> %s" % (
        name, len(out_conns), nreq, nresp,
        ("; PROBLEMS: " + "; ".join(problems)) if problems else "", os.path.relpath(path)))
    return out


def main():
    ap = argparse.ArgumentParser(description="extract coro_rpc test vectors from pcaps")
    ap.add_argument("scenarios", nargs="*")
    ap.add_argument("--pcap-dir", default=os.path.join(HERE, "pcap"))
    ap.add_argument("--out-dir", default=os.path.join(HERE, "vectors"))
    ap.add_argument("--function-table", action="store_true",
                    help="also write vectors/function_ids.json (all methods the master registers)")
    a = ap.parse_args()
    names = a.scenarios or sorted(os.path.basename(p)[:-5]
                                  for p in glob.glob(os.path.join(a.pcap_dir, "*.pcap")))
    for n in names:
        extract(n, a.pcap_dir, a.out_dir)
    if a.function_table or not a.scenarios:
        table = {m: {"function_id": function_id(m), "hex": "0x%08x" % function_id(m),
                     "wire_le": function_id(m).to_bytes(4, "little").hex(),
                     "hashed_name": "mooncake::WrappedMasterService::" + m}
                 for m in sorted(MASTER_METHODS)}
        with open(os.path.join(a.out_dir, "function_ids.json"), "w") as f:
            json.dump(table, f, indent=1)
            f.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
