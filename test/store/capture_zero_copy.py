"""Scenario zero_copy: register_buffer, put_from / get_into, batch_put_from /
batch_get_into, unregister_buffer (buffers from ctypes)."""
import ctypes
from capture_common import Recorder, MIB

rec = Recorder()
s = rec.new_store()
rec.setup(s)
SIZE = 2 * MIB
src = ctypes.create_string_buffer(SIZE)
dst = ctypes.create_string_buffer(SIZE)
pattern = bytes((i * 13 + 1) & 0xFF for i in range(SIZE))
ctypes.memmove(src, pattern, SIZE)
ps, pd = ctypes.addressof(src), ctypes.addressof(dst)
rec.call("register_buffer(src, 2 MiB)", s.register_buffer, ps, SIZE, expect=0)
rec.call("register_buffer(dst, 2 MiB)", s.register_buffer, pd, SIZE, expect=0)
rec.call("put_from('zc-one', src, 1 MiB)", s.put_from, "zc-one", ps, MIB, expect=0)
rec.call("get_into('zc-one', dst, 2 MiB)", s.get_into, "zc-one", pd, SIZE, expect=MIB)
rec.note("get_into data equal: %s" % (ctypes.string_at(pd, MIB) == pattern[:MIB]))
K = 256 * 1024
keys = ["zc-b0", "zc-b1", "zc-b2"]
rec.call("batch_put_from(['zc-b0','zc-b1','zc-b2'], 3 x 256 KiB)", s.batch_put_from, keys,
         [ps, ps + K, ps + 2 * K], [K, K, K], expect=[0, 0, 0])
rec.call("batch_get_into(['zc-b0','zc-b1','zc-b2'], 3 x 256 KiB)", s.batch_get_into, keys,
         [pd, pd + K, pd + 2 * K], [K, K, K], expect=[K, K, K])
rec.note("batch_get_into data equal: %s" % (ctypes.string_at(pd, 3 * K) == pattern[:3 * K]))
rec.call("unregister_buffer(src)", s.unregister_buffer, ps, expect=0)
rec.call("unregister_buffer(dst)", s.unregister_buffer, pd, expect=0)
rec.close(s)
