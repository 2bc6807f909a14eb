"""Scenario tasks: master-side copy/move tasks between two segments (two store instances
A and B in one process). create_copy_task / create_move_task / query_task, with idle
windows in which the clients' background FetchTasks loop may pick the tasks up and run
them (CopyStart/CopyEnd, MoveStart/MoveEnd, MarkTaskToComplete would show there)."""
from mooncake.store import ReplicateConfig
from capture_common import Recorder, describe_replicas

rec = Recorder()
a = rec.new_store()
b = rec.new_store()
rec.setup(a, label="A.setup(global_segment=16MiB, local_buffer=16MiB)")
rec.setup(b, label="B.setup(global_segment=16MiB, local_buffer=16MiB)")
seg_a = rec.call("A.get_hostname()", a.get_hostname)
seg_b = rec.call("B.get_hostname()", b.get_hostname)
on_a = ReplicateConfig()
on_a.preferred_segment = seg_a
rec.call("A.put('t-copy', preferred_segment=A)", a.put, "t-copy", b"copy-task-value!", on_a, expect=0)
rec.call("A.put('t-move', preferred_segment=A)", a.put, "t-move", b"move-task-value!", on_a, expect=0)
rec.idle("wait 1.3s (not needed: a put alone takes no lease)", 1.3)

def show_task(resp):
    r, err = resp
    if r is None:
        return {"response": None, "error": err}
    return {"error": err, "id": str(r.id), "type": str(r.type), "status": str(r.status),
            "assigned_client": str(r.assigned_client), "message": r.message}


copy = rec.call("A.create_copy_task('t-copy', [B])", a.create_copy_task, "t-copy", [seg_b])
rec.idle("wait 2.5s for a client to fetch and run the copy task", 2.5)
if isinstance(copy, tuple) and copy[1] == 0:
    rec.call("A.query_task(<copy task id>)", lambda t: show_task(a.query_task(t)), copy[0])
rec.call("A.get_replica_desc('t-copy') after copy",
         lambda k: describe_replicas(a.get_replica_desc(k)), "t-copy")

move = rec.call("A.create_move_task('t-move', A, B)", a.create_move_task, "t-move", seg_a, seg_b)
rec.idle("wait 2.5s for a client to fetch and run the move task", 2.5)
if isinstance(move, tuple) and move[1] == 0:
    rec.call("A.query_task(<move task id>)", lambda t: show_task(a.query_task(t)), move[0])
rec.call("A.get_replica_desc('t-move') after move",
         lambda k: describe_replicas(a.get_replica_desc(k)), "t-move")
rec.call("A.query_task((0, 0)) unknown task", lambda t: show_task(a.query_task(t)), (0, 0))
rec.close(b, label="B.close()")
rec.close(a, label="A.close()")
