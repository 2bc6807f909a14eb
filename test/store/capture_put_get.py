"""Scenario put_get: put/get of a small (16 B) and a multi-MB (4 MiB) value, get_size,
is_exist, and the default ReplicateConfig (replica_num=1)."""
from capture_common import Recorder, MIB

rec = Recorder()
s = rec.new_store()
rec.setup(s)
small = b"world-0123456789"                                  # 16 bytes
large = bytes((i * 7 + 3) & 0xFF for i in range(4 * MIB))     # 4 MiB, patterned
rec.call("put('k-small', 16 B)", s.put, "k-small", small, expect=0)
rec.call("put('k-large', 4 MiB)", s.put, "k-large", large, expect=0)
got = rec.call("get('k-small')", s.get, "k-small", expect=small)
got = rec.call("get('k-large')", s.get, "k-large")
rec.note("get('k-large') returned %d bytes, equal=%s" % (len(got or b""), got == large))
rec.call("get_size('k-small')", s.get_size, "k-small", expect=16)
rec.call("get_size('k-large')", s.get_size, "k-large", expect=4 * MIB)
rec.call("is_exist('k-small')", s.is_exist, "k-small", expect=1)
rec.close(s)
