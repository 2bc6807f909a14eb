"""Scenario replicate: two store instances in one process (two mounted segments, A and B),
then puts with ReplicateConfig: replica_num=2, preferred_segment=B's segment,
preferred_segments=[A], replica_num=3 (more replicas than segments), and a
put_batch / batch_put_from with replica_num=2. Gets read them back."""
import ctypes
from mooncake.store import ReplicateConfig
from capture_common import Recorder, describe_replicas

rec = Recorder()
a = rec.new_store()
b = rec.new_store()
rec.setup(a, label="A.setup(global_segment=16MiB, local_buffer=16MiB)")
rec.setup(b, label="B.setup(global_segment=16MiB, local_buffer=16MiB)")
seg_a = rec.call("A.get_hostname()", a.get_hostname)
seg_b = rec.call("B.get_hostname()", b.get_hostname)

c2 = ReplicateConfig()
c2.replica_num = 2
rec.note("config r2: %s" % c2)
rec.call("A.put('rep-2', replica_num=2)", a.put, "rep-2", b"two-replicas-val", c2, expect=0)
rec.call("A.get_replica_desc('rep-2')", lambda k: describe_replicas(a.get_replica_desc(k)), "rep-2")
rec.call("B.get('rep-2')", b.get, "rep-2", expect=b"two-replicas-val")

cp = ReplicateConfig()
cp.replica_num = 1
cp.preferred_segment = seg_b
rec.note("config preferred_segment: %s" % cp)
rec.call("A.put('pref-b', preferred_segment=B)", a.put, "pref-b", b"preferred-on-B!!", cp, expect=0)
rec.call("A.get_replica_desc('pref-b')", lambda k: describe_replicas(a.get_replica_desc(k)), "pref-b")
rec.call("A.get('pref-b')", a.get, "pref-b", expect=b"preferred-on-B!!")

cs = ReplicateConfig()
cs.replica_num = 1
cs.preferred_segments = [seg_a]
rec.note("config preferred_segments: %s" % cs)
rec.call("B.put('prefs-a', preferred_segments=[A])", b.put, "prefs-a", b"preferred-on-A!!", cs, expect=0)

c3 = ReplicateConfig()
c3.replica_num = 3
rec.call("A.put('rep-3', replica_num=3 with 2 segments)", a.put, "rep-3", b"three-replicas!!", c3)
rec.call("A.get_replica_desc('rep-3')", lambda k: describe_replicas(a.get_replica_desc(k)), "rep-3")

rec.call("A.put_batch(['rb-0','rb-1'], replica_num=2)", a.put_batch, ["rb-0", "rb-1"],
         [b"rep-batch-0", b"rep-batch-1"], c2, expect=0)
buf = ctypes.create_string_buffer(b"zero-copy-replicated-value-0123", 32)
p = ctypes.addressof(buf)
rec.call("A.register_buffer(32 B)", a.register_buffer, p, 32, expect=0)
rec.call("A.batch_put_from(['rz-0'], replica_num=2)", a.batch_put_from, ["rz-0"], [p], [32], c2,
         expect=[0])
rec.call("A.put_from('rz-1', preferred_segment=B)", a.put_from, "rz-1", p, 32, cp, expect=0)
rec.call("A.unregister_buffer", a.unregister_buffer, p, expect=0)
rec.call("B.get_batch(['rb-0','rb-1','rz-0','rz-1'])", b.get_batch, ["rb-0", "rb-1", "rz-0", "rz-1"])
rec.close(b, label="B.close()")
rec.close(a, label="A.close()")
