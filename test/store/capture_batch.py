"""Scenario batch: put_batch / get_batch / batch_is_exist."""
from capture_common import Recorder

rec = Recorder()
s = rec.new_store()
rec.setup(s)
keys = ["b-0", "b-1", "b-2"]
vals = [b"batch-value-zero", b"batch-value-one!", b"batch-2"]
rec.call("put_batch(['b-0','b-1','b-2'])", s.put_batch, keys, vals, expect=0)
rec.call("get_batch(['b-0','b-1','b-2'])", s.get_batch, keys, expect=vals)
rec.call("batch_is_exist(['b-0','b-2','b-missing'])", s.batch_is_exist,
         ["b-0", "b-2", "b-missing"], expect=[1, 1, 0])
rec.call("get_batch(['b-1','b-missing'])", s.get_batch, ["b-1", "b-missing"])
rec.close(s)
