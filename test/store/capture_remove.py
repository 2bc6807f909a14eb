"""Scenario remove: remove refused because of a read lease (master runs with
--default_kv_lease_ttl=1000), remove after the lease expired, remove(force=True) of a
leased key, remove of a missing key, batch_remove, remove_by_regex, remove_all."""
from capture_common import Recorder

rec = Recorder()
s = rec.new_store()
rec.setup(s)
rec.call("put('r-lease')", s.put, "r-lease", b"leased-value", expect=0)
rec.call("get('r-lease') (grants a 1 s lease)", s.get, "r-lease", expect=b"leased-value")
rec.call("remove('r-lease') while leased (refused)", s.remove, "r-lease")
rec.idle("wait 1.3s for the lease to expire", 1.3)
rec.call("remove('r-lease') after lease expiry", s.remove, "r-lease", expect=0)
rec.call("put('r-force')", s.put, "r-force", b"forced-value", expect=0)
rec.call("get('r-force') (grants a lease)", s.get, "r-force", expect=b"forced-value")
rec.call("remove('r-force', force=True) while leased", s.remove, "r-force", True)
rec.call("remove('r-missing') (no such key)", s.remove, "r-missing")
for k in ("rx-1", "rx-2", "keep-1"):
    rec.call("put('%s')" % k, s.put, k, b"value-" + k.encode(), expect=0)
rec.idle("wait 1.3s (not needed: a put alone takes no lease)", 1.3)
rec.call("remove_by_regex('^rx-')", s.remove_by_regex, "^rx-")
rec.call("remove_by_regex('^nothing-')", s.remove_by_regex, "^nothing-")
rec.call("put('br-1')", s.put, "br-1", b"batch-remove-1", expect=0)
rec.call("put('br-2')", s.put, "br-2", b"batch-remove-2", expect=0)
rec.idle("wait 1.3s (not needed: a put alone takes no lease)", 1.3)
rec.call("batch_remove(['br-1','br-2','br-missing'])", s.batch_remove, ["br-1", "br-2", "br-missing"])
rec.call("put('all-1')", s.put, "all-1", b"remove-all-1", expect=0)
rec.call("put('all-2')", s.put, "all-2", b"remove-all-2", expect=0)
rec.idle("wait 1.3s (not needed: a put alone takes no lease)", 1.3)
rec.call("remove_all()", s.remove_all)
rec.call("is_exist('keep-1') after remove_all", s.is_exist, "keep-1", expect=0)
rec.close(s)
