"""Scenario extras: client calls beyond the basic set, each in its own window:
upsert (new key, same size, new size), upsert_batch, upsert_from, put_parts,
puts with non-default ReplicateConfig fields (hard pin, soft pin + TTL, data_type;
prefer_alloc_in_same_node is refused by the client before any RPC),
get_replica_desc / batch_get_replica_desc, get_buffer / batch_get_buffer,
batch_put_session_start/end/revoke, batch_get_session_start/end, batch_replica_clear,
allocate_and_mount_segment / unmount_and_free_segment, health_check."""
import ctypes
from mooncake.store import ReplicateConfig, SoftPinAction, ObjectDataType
from capture_common import Recorder, describe_replicas, MIB

rec = Recorder()
s = rec.new_store()
rec.setup(s)
rec.call("upsert('u-1', 16 B) new key", s.upsert, "u-1", b"upsert-value-one", expect=0)
rec.call("upsert('u-1', 16 B) same size", s.upsert, "u-1", b"UPSERT-VALUE-TWO", expect=0)
rec.call("upsert('u-1', 24 B) new size", s.upsert, "u-1", b"upsert-value-three-24B!!", expect=0)
rec.call("get('u-1')", s.get, "u-1", expect=b"upsert-value-three-24B!!")
rec.call("upsert_batch(['u-1','u-2'])", s.upsert_batch, ["u-1", "u-2"],
         [b"batch-upsert-1", b"batch-upsert-2"], expect=0)
buf = ctypes.create_string_buffer(b"registered-buffer-contents-0123456789abcdef", 64)
p = ctypes.addressof(buf)
rec.call("register_buffer(64 B)", s.register_buffer, p, 64, expect=0)
rec.call("upsert_from('u-3', 64 B)", s.upsert_from, "u-3", p, 64, expect=0)
rec.call("batch_upsert_from(['u-3','u-4'])", s.batch_upsert_from, ["u-3", "u-4"], [p, p + 32],
         [32, 32], expect=[0, 0])
rec.call("put_parts('pp', b'part-one|', b'part-two')", s.put_parts, "pp", b"part-one|", b"part-two",
         expect=0)
rec.call("get('pp')", s.get, "pp", expect=b"part-one|part-two")

def cfg_with(**fields):
    c = ReplicateConfig()
    for k, v in fields.items():
        setattr(c, k, v)
    return c


c = cfg_with(with_hard_pin=True)
rec.note("config hard pin: %s" % c)
rec.call("put('hard-pinned', with_hard_pin=True)", s.put, "hard-pinned", b"hard-pinned-val!", c,
         expect=0)
c = cfg_with(soft_pin_action=SoftPinAction.ENABLE, soft_pin_ttl_ms=5000)
rec.note("config soft pin: %s" % c)
rec.call("put('soft-pinned', soft_pin_action=ENABLE, soft_pin_ttl_ms=5000)", s.put, "soft-pinned",
         b"soft-pinned-val!", c, expect=0)
c = cfg_with(data_type=ObjectDataType.KVCACHE)
rec.call("put('kvcache-typed', data_type=KVCACHE)", s.put, "kvcache-typed", b"kvcache-typed-v!", c,
         expect=0)
c = cfg_with(prefer_alloc_in_same_node=True)
rec.call("put('same-node', prefer_alloc_in_same_node=True) (refused by the client)", s.put,
         "same-node", b"same-node-value!", c)

rec.call("get_replica_desc('u-1')", lambda k: describe_replicas(s.get_replica_desc(k)), "u-1")
rec.call("batch_get_replica_desc(['u-1','u-2','nope'])",
         lambda ks: {k: describe_replicas(v) for k, v in s.batch_get_replica_desc(ks).items()},
         ["u-1", "u-2", "nope"])
rec.call("get_buffer('u-2')", lambda k: (lambda h: h and {"size": h.size()})(s.get_buffer(k)), "u-2")
rec.call("batch_get_buffer(['u-1','u-2'])",
         lambda ks: [h and {"size": h.size()} for h in s.batch_get_buffer(ks)], ["u-1", "u-2"])

rec.call("batch_put_session_start(['ps-0','ps-1'], [64, 64])", s.batch_put_session_start,
         ["ps-0", "ps-1"], [64, 64])
rec.call("batch_put_session_end(['ps-0'])", s.batch_put_session_end, ["ps-0"])
rec.call("batch_put_session_revoke(['ps-1'])", s.batch_put_session_revoke, ["ps-1"])
rec.call("batch_get_session_start(['u-1','ps-0'])", s.batch_get_session_start, ["u-1", "ps-0"])
rec.call("batch_get_session_end(['u-1','ps-0'])", s.batch_get_session_end, ["u-1", "ps-0"])
rec.idle("wait 1.3s (leases)", 1.3)
rec.call("batch_replica_clear(['u-2','nope'])", s.batch_replica_clear, ["u-2", "nope"])
rec.call("unregister_buffer", s.unregister_buffer, p, expect=0)

seg = rec.call("allocate_and_mount_segment(8 MiB)", s.allocate_and_mount_segment, 8 * MIB)
seg_ids = []
if isinstance(seg, dict):
    for k in ("segment_id", "id", "segment_ids"):
        if k in seg:
            v = seg[k]
            seg_ids = v if isinstance(v, list) else [v]
            break
rec.note("allocate_and_mount_segment returned %r" % (seg,))
if seg_ids:
    rec.call("unmount_and_free_segment(<id from allocate_and_mount_segment>)",
             s.unmount_and_free_segment, [str(x) for x in seg_ids])
else:
    rec.note("no segment id found in the dict: unmount_segment not exercised")
rec.call("health_check()", s.health_check, expect=0)
rec.close(s)
