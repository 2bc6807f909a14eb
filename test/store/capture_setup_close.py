"""Scenario setup_close: setup (16 MiB global segment, 16 MiB local buffer), ~3.5 s idle
so the background Ping/FetchTasks cadence is visible, close(), then 1.5 s more idle
after close (anything still sent after close would show up there)."""
from capture_common import Recorder

rec = Recorder()
s = rec.new_store()
rec.setup(s)
rec.idle("idle 3.5s after setup (background only)", 3.5)
rec.close(s)
rec.idle("idle 1.5s after close", 1.5)
