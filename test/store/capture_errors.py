"""Scenario errors: operations the master refuses or answers with "not found":
get / get_size / is_exist / get_into of a missing key, put of a key that already exists,
put_batch where one key already exists, a put larger than the local buffer (refused by
the client, no RPC), a put that does not fit in the free segment space (refused by the
master)."""
import ctypes
from capture_common import Recorder

rec = Recorder()
s = rec.new_store()
rec.setup(s)
rec.call("get('missing-key')", s.get, "missing-key")
rec.call("get_size('missing-key')", s.get_size, "missing-key")
rec.call("is_exist('missing-key')", s.is_exist, "missing-key", expect=0)
buf = ctypes.create_string_buffer(4096)
ptr = ctypes.addressof(buf)
rec.call("register_buffer(4 KiB)", s.register_buffer, ptr, 4096, expect=0)
rec.call("get_into('missing-key', 4 KiB buffer)", s.get_into, "missing-key", ptr, 4096)
rec.call("put('dup-key', 8 B) first time", s.put, "dup-key", b"first..!", expect=0)
rec.call("put('dup-key', 8 B) again (key exists)", s.put, "dup-key", b"second.!")
rec.call("get('dup-key') after the refused put", s.get, "dup-key", expect=b"first..!")
rec.call("put_batch(['dup-key','new-key']) with one existing key", s.put_batch,
         ["dup-key", "new-key"], [b"third..!", b"fresh..!"])
rec.call("put('too-big', 32 MiB) larger than the 16 MiB segment", s.put, "too-big",
         bytes(32 * 1024 * 1024))
big = bytes(12 * 1024 * 1024)
rec.call("put('fill-1', 12 MiB) into the 16 MiB segment", s.put, "fill-1", big, expect=0)
rec.call("put('fill-2', 12 MiB) segment full", s.put, "fill-2", big)
rec.call("unregister_buffer", s.unregister_buffer, ptr, expect=0)
rec.close(s)
