"""Scenario restart: a live client across a master crash. setup, put('before'), 2.2 s idle,
then the driver SIGKILLs mooncake_master, waits 1 s and starts it again with the same
argv/ports (its embedded HTTP metadata server restarts empty too). The client is left
alone for 8 s (ping failures, reconnect, Ping -> NEED_REMOUNT, ReMountSegment), then
get('before') (the new master lost it), put('after'), get('after'), close()."""
from capture_common import Recorder

rec = Recorder()
s = rec.new_store()
rec.setup(s)
rec.call("put('before')", s.put, "before", b"value-before-restart", expect=0)
rec.idle("idle 2.2s before the restart", 2.2)
rec.restart_master(down_seconds=1.0, kill_signal="KILL")
rec.idle("idle 8s after the restart (client reconnects on its own)", 8.0)
rec.call("health_check()", s.health_check)
rec.call("get('before') after restart", s.get, "before")
rec.call("put('after')", s.put, "after", b"value-after-restart!", expect=0)
rec.call("get('after')", s.get, "after", expect=b"value-after-restart!")
rec.close(s)
