/**
 * Cancellation (issue 21): cancelBatch(batchId) and waitBatch(batchId,
 * { signal }). Canceled tasks end CANCELED at once; requests already on the
 * wire keep their memory pinned until they really end (unregistering is
 * TE_REGION_BUSY, freeBatchID TE_BATCH_BUSY), and cancelBatch resolves then.
 * A real target in a child process, reached through a proxy that blackholes
 * the data connections (a peer that will never answer), then resets them.
 * Bad input: unknown and finished batches, a signal of the wrong type.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { TransferEngine, TransferOpcode, TaskStatus, ErrorCode, type TransferRequest } from '../src/core.js';
import { TransferEngine as HighLevelEngine, ERR_CANCELED, ERR_TIMEOUT, ERR_REGION_BUSY } from '../src/index.js';
import type { EngineConfig } from '../src/config.js';
import { Batch } from '../src/engine/batch.js';
import { Dispatcher } from '../src/engine/dispatch.js';
import type { SegmentTable } from '../src/engine/segments.js';
import { Telemetry } from '../src/engine/telemetry.js';
import type { Region } from '../src/memory.js';
import { cancels, Failure, Slice, type SliceOwner } from '../src/transport/slice.js';
import type { Lane } from '../src/transport/tcp/lane.js';
import { Peer } from '../src/transport/tcp/peer.js';
import type { TcpTransport } from '../src/transport/tcp/transport.js';
import type { Job, TaskSink, Transport, TransportHost } from '../src/transport/transport.js';
import { proxyPeerPorts, PROXY_HOST, PASS, type PeerProxy } from './fault-proxy.js';
import { spawnPeer, type PeerProcess } from './helpers.js';

const MiB = 1 << 20;
const SIZE = 8 * MiB;

function rejectsWith(code: string): (e: unknown) => boolean {
  return (e: unknown) => {
    assert.equal((e as { code?: string }).code, code, String(e));
    return true;
  };
}

/** Lets the peers' pumps (a microtask after a submit) and the promise chains behind a cancel run. */
const turn = (): Promise<void> => new Promise((r) => setImmediate(r));

/** Unregister `local` once the canceled requests pinning it have ended (their connections were reset). */
async function unregisterOnceDrained(engine: { unregisterMemory(b: Uint8Array): number }, local: Uint8Array): Promise<void> {
  const deadline = Date.now() + 10_000;
  while (engine.unregisterMemory(local) !== 0) {
    assert.ok(Date.now() < deadline, 'the canceled requests end once their connections reset');
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe('cancellation: cancelBatch and waitBatch({ signal })', () => {
  let target: PeerProcess;
  let proxy: PeerProxy;
  let remote = 0;

  before(async () => {
    target = await spawnPeer({ PEER_LISTEN: '127.0.0.1' }, { host: PROXY_HOST });
    remote = await target.register(SIZE, 7);
    proxy = await proxyPeerPorts(target);
  });

  after(async () => {
    await proxy?.stop();
    await target?.stop();
  });

  async function initiator(env: Record<string, string> = {}): Promise<{ engine: TransferEngine; local: Buffer; addr: number; seg: number }> {
    proxy.setMode(PASS);
    const engine = new TransferEngine({ env: { MC_TRANSFER_TIMEOUT: '60', MC_RETRY_CNT: '0', ...env } });
    await engine.init('127.0.0.1');
    const local = Buffer.alloc(SIZE);
    const addr = engine.registerLocalMemory(local);
    const seg = await engine.openSegment(target.segmentName);
    return { engine, local, addr, seg };
  }

  it('a batch stalled on the wire: CANCELED at once; memory pinned and the batch busy until its requests end; then both free', async () => {
    const { engine, addr, seg } = await initiator();
    try {
      // Warm one lane first, so the stalled requests are on the wire, not waiting for a connect.
      const warm = engine.allocateBatchID(1);
      engine.submitTransfer(warm, [{ opcode: TransferOpcode.READ, source: addr, targetId: seg, targetOffset: remote, length: 4096 }]);
      assert.equal((await engine.waitBatch(warm))[0]!.status, TaskStatus.COMPLETED);
      engine.freeBatchID(warm);

      proxy.setMode({ kind: 'blackhole' });
      const b = engine.allocateBatchID(4);
      const reqs: TransferRequest[] = [0, 1, 2, 3].map((i) => ({ opcode: TransferOpcode.READ, source: addr + i * MiB, targetId: seg, targetOffset: remote + i * MiB, length: MiB }));
      engine.submitTransfer(b, reqs);
      const ac = new AbortController();
      setTimeout(() => ac.abort(), 200);
      const statuses = await engine.waitBatch(b, { signal: ac.signal }); // without the abort: 60 s (MC_TRANSFER_TIMEOUT)
      assert.equal(statuses.length, 4);
      for (const s of statuses) {
        assert.equal(s.status, TaskStatus.CANCELED);
        assert.equal(s.error?.code, ErrorCode.CANCELED);
        assert.ok(s.transferred < MiB);
      }
      assert.deepEqual(engine.getTransferStatus(b, 2), statuses[2]);
      assert.throws(() => engine.freeBatchID(b), (e: unknown) => (e as { code?: string }).code === ErrorCode.BATCH_BUSY && /await cancelBatch/.test(String(e)));
      assert.throws(() => engine.unregisterLocalMemory(addr), (e: unknown) => (e as { code?: string }).code === ErrorCode.REGION_BUSY);
      let drained = false;
      const drain = engine.cancelBatch(b).then(() => {
        drained = true;
      });
      await new Promise((r) => setTimeout(r, 300));
      assert.equal(drained, false, 'the requests are still on the wire');
      proxy.setMode({ kind: 'reset' }); // now they end (the connections break)
      await drain;
      engine.freeBatchID(b);
      // The proxy finishes tearing down the connections it reset: a connect racing that teardown can be reset too (a harness effect).
      for (let i = 0; i < 1000 && proxy.data.stats.active > 0; i++) await new Promise((r) => setTimeout(r, 5));
      const st = engine.stats();
      assert.equal(st.tasksFailed, 0, 'canceled tasks are not failures');
      // The stale requests ended: the region can go, and the engine still moves bytes.
      proxy.setMode(PASS);
      const again = engine.allocateBatchID(1);
      engine.submitTransfer(again, [{ opcode: TransferOpcode.READ, source: addr, targetId: seg, targetOffset: remote, length: SIZE }]);
      const [r] = await engine.waitBatch(again);
      assert.equal(r!.status, TaskStatus.COMPLETED, r!.error?.message);
      engine.freeBatchID(again);
    } finally {
      await engine.close();
    }
  });

  it('cancelBatch returns once a stalled WRITE batch drains; the bytes the target got are the ones sent, nothing outside the range', async () => {
    const { engine, local, addr, seg } = await initiator();
    try {
      const before = await target.hash(remote + 4 * MiB, 4 * MiB);
      proxy.setMode({ kind: 'blackhole' });
      local.fill(0xab, 0, 2 * MiB);
      const b = engine.allocateBatchID(2);
      engine.submitTransfer(b, [0, 1].map((i) => ({ opcode: TransferOpcode.WRITE, source: addr + i * MiB, targetId: seg, targetOffset: remote + i * MiB, length: MiB })));
      await new Promise((r) => setTimeout(r, 100));
      const drain = engine.cancelBatch(b);
      const statuses = await engine.waitBatch(b);
      assert.deepEqual(statuses.map((s) => s.status), [TaskStatus.CANCELED, TaskStatus.CANCELED]);
      proxy.setMode({ kind: 'reset' });
      await drain;
      engine.freeBatchID(b);
      assert.equal(await target.hash(remote + 4 * MiB, 4 * MiB), before, 'nothing written outside the canceled range');
    } finally {
      await engine.close();
    }
  });

  it('an already aborted signal cancels at once; a batch waiting for its segment is canceled and drained at once', async () => {
    // A "peer" whose RPC port accepts and never answers: the segment never opens.
    const silent = net.createServer(() => undefined);
    await new Promise<void>((r) => silent.listen(0, '127.0.0.1', r));
    const engine = new TransferEngine({ env: { MC_TRANSFER_TIMEOUT: '60' } });
    await engine.init('127.0.0.1');
    try {
      const addr = engine.registerLocalMemory(Buffer.alloc(MiB));
      const handle = engine.segmentHandle(`127.0.0.1:${(silent.address() as net.AddressInfo).port}`);
      const b = engine.allocateBatchID(1);
      engine.submitTransfer(b, [{ opcode: TransferOpcode.WRITE, source: addr, targetId: handle, targetOffset: 0x10000, length: 4096 }]);
      assert.throws(() => engine.unregisterLocalMemory(addr), (e: unknown) => (e as { code?: string }).code === ErrorCode.REGION_BUSY, 'pinned while the segment opens');
      const [s] = await engine.waitBatch(b, { signal: AbortSignal.abort() });
      assert.equal(s!.status, TaskStatus.CANCELED);
      // Nothing was sent, so nothing drains: the batch is done, and a cancel now has nothing to do.
      await assert.rejects(engine.cancelBatch(b), rejectsWith(ErrorCode.BATCH_FINISHED));
      engine.freeBatchID(b);
      engine.unregisterLocalMemory(addr);
    } finally {
      await engine.close();
      silent.close();
    }
  });

  it('bad input: unknown batch, finished batch, a signal of the wrong type: typed errors, nothing changed', async () => {
    const { engine, addr, seg } = await initiator();
    try {
      await assert.rejects(engine.cancelBatch(987654), rejectsWith(ErrorCode.INVALID_BATCH));
      const b = engine.allocateBatchID(1);
      await assert.rejects(engine.cancelBatch(b), rejectsWith(ErrorCode.BATCH_FINISHED), 'an empty batch has nothing to cancel');
      engine.submitTransfer(b, [{ opcode: TransferOpcode.READ, source: addr, targetId: seg, targetOffset: remote, length: MiB }]);
      const done = await engine.waitBatch(b);
      assert.equal(done[0]!.status, TaskStatus.COMPLETED);
      await assert.rejects(engine.cancelBatch(b), rejectsWith(ErrorCode.BATCH_FINISHED));
      assert.deepEqual(await engine.waitBatch(b, { signal: AbortSignal.abort() }), done, 'a finished batch stays as it was');
      await assert.rejects(engine.waitBatch(b, { signal: 'stop' as unknown as AbortSignal }), rejectsWith(ErrorCode.INVALID_ARGUMENT));
      await assert.rejects(engine.waitBatch(b, null as unknown as object), rejectsWith(ErrorCode.INVALID_ARGUMENT));
      engine.freeBatchID(b);
      await assert.rejects(engine.cancelBatch(b), rejectsWith(ErrorCode.INVALID_BATCH), 'freed');
    } finally {
      await engine.close();
    }
    await assert.rejects(engine.cancelBatch(1), rejectsWith(ErrorCode.CLOSED));
  });

  it("the high-level sync calls: options.signal cancels (ERR_CANCELED), options.timeoutMs bounds the call (ERR_TIMEOUT); the seed's signatures unchanged", async () => {
    proxy.setMode(PASS);
    const engine = new HighLevelEngine({ env: { ...process.env, MC_LOG_LEVEL: 'ERROR', MC_TRANSFER_TIMEOUT: '60' } });
    assert.equal(await engine.initialize('127.0.0.1', 'P2PHANDSHAKE', 'tcp', ''), 0);
    try {
      const local = new Uint8Array(2 * MiB);
      assert.equal(engine.registerMemory(local, local.length), 0);
      const ptr = engine.getBufferAddress(local);
      // The seed's form, then the same with options: both complete.
      assert.equal(await engine.transferSyncRead(target.segmentName, ptr, remote, MiB), 0);
      assert.equal(await engine.transferSyncRead(target.segmentName, ptr, remote, MiB, '', { timeoutMs: 30_000 }), 0);
      proxy.setMode({ kind: 'blackhole' });
      const ac = new AbortController();
      setTimeout(() => ac.abort(), 200);
      assert.equal(await engine.transferSyncRead(target.segmentName, ptr, remote, MiB, '', { signal: ac.signal }), ERR_CANCELED);
      assert.equal(engine.getLastError()?.code, ErrorCode.CANCELED);
      assert.equal(await engine.batchTransferSyncWrite(target.segmentName, [ptr], [remote], [MiB], '', { timeoutMs: 300 }), ERR_TIMEOUT);
      assert.match(engine.getLastError()?.message ?? '', /options\.timeoutMs/);
      assert.equal(await engine.transferSyncWrite(target.segmentName, ptr, remote, 4096, '', { signal: AbortSignal.abort() }), ERR_CANCELED, 'aborted before the call');
      // The canceled requests are still on the wire: their memory is pinned.
      assert.equal(engine.unregisterMemory(local), ERR_REGION_BUSY);
      proxy.setMode({ kind: 'reset' });
      await unregisterOnceDrained(engine, local);
      proxy.setMode(PASS);
      assert.equal(engine.registerMemory(local, local.length), 0);
      const again = engine.getBufferAddress(local); // registered anew: a new address
      assert.equal(await engine.transferSyncRead(target.segmentName, again, remote, MiB), 0, 'and the engine goes on');
      // Bad options: TypeErrors, as for the other arguments.
      await assert.rejects(engine.transferSyncRead(target.segmentName, ptr, remote, 8, '', { signal: {} as AbortSignal }), TypeError);
      await assert.rejects(engine.transferSyncRead(target.segmentName, ptr, remote, 8, '', { timeoutMs: -1 }), TypeError);
      await assert.rejects(engine.transferSyncRead(target.segmentName, ptr, remote, 8, '', 'soon' as unknown as object), TypeError);
    } finally {
      await engine.close();
    }
  });

  async function warmLane(engine: TransferEngine, addr: number, seg: number): Promise<void> {
    const warm = engine.allocateBatchID(1);
    engine.submitTransfer(warm, [{ opcode: TransferOpcode.READ, source: addr, targetId: seg, targetOffset: remote, length: 4096 }]);
    assert.equal((await engine.waitBatch(warm))[0]!.status, TaskStatus.COMPLETED);
    engine.freeBatchID(warm);
  }

  it('TCP slices still queued when their task is canceled are never sent: the target gets only the requests that were on the wire', async () => {
    // One lane: its window (512 KiB: two wire requests of 256 KiB) goes on the wire, the rest of the 8 MiB waits in the peer's queue.
    const { engine, local, addr, seg } = await initiator({ MC_TCP_LANES_PER_PEER: '1' });
    try {
      await target.call('fill', { addr: remote, length: SIZE, seed: 7 });
      await warmLane(engine, addr, seg);
      proxy.setMode({ kind: 'blackhole' });
      local.fill(0xab);
      const b = engine.allocateBatchID(1);
      engine.submitTransfer(b, [{ opcode: TransferOpcode.WRITE, source: addr, targetId: seg, targetOffset: remote, length: SIZE }]);
      await turn(); // the lane's window is written, the rest queued
      const drain = engine.cancelBatch(b);
      assert.equal((await engine.waitBatch(b))[0]!.status, TaskStatus.CANCELED);
      // The target answers again: the requests on the wire complete, and the lane has room for the queue.
      proxy.setMode(PASS);
      await drain;
      engine.freeBatchID(b);
      const got = await target.call<{ wrong: number; first: number; last: number }>('verify', { addr: remote, length: SIZE, seed: 7 });
      assert.ok(got.wrong > 0, 'the requests that were on the wire went on (the wire has no cancel)');
      assert.ok(got.last < MiB, `only the lane's window reached the target, none of the queued slices of the canceled task (last byte written at ${got.last})`);
    } finally {
      await engine.close();
    }
  });

  it("a canceled batch whose slices all wait in the peer's queue drains without waiting for the requests ahead of it: its memory is free at once", async () => {
    const { engine, addr, seg } = await initiator({ MC_TCP_LANES_PER_PEER: '1' });
    try {
      const other = Buffer.alloc(MiB);
      const otherAddr = engine.registerLocalMemory(other);
      await warmLane(engine, addr, seg);
      proxy.setMode({ kind: 'blackhole' });
      // Batch a fills the lane's window (on the wire, stalled); batch b waits in the queue behind it.
      const a = engine.allocateBatchID(2);
      engine.submitTransfer(a, [{ opcode: TransferOpcode.READ, source: addr, targetId: seg, targetOffset: remote, length: 512 * 1024 }]);
      const b = engine.allocateBatchID(1);
      engine.submitTransfer(b, [{ opcode: TransferOpcode.READ, source: otherAddr, targetId: seg, targetOffset: remote, length: MiB }]);
      await turn();
      const drained = engine.cancelBatch(b);
      // The peer's next pump (here: another request to it) settles b's queued slices instead of sending them.
      engine.submitTransfer(a, [{ opcode: TransferOpcode.READ, source: addr + MiB, targetId: seg, targetOffset: remote, length: 4096 }]);
      await turn();
      engine.freeBatchID(b); // not TE_BATCH_BUSY: nothing of b is on the wire
      engine.unregisterLocalMemory(otherAddr); // not TE_REGION_BUSY: its slices released their pins
      await drained;
      assert.throws(() => engine.freeBatchID(a), (e: unknown) => (e as { code?: string }).code === ErrorCode.BATCH_BUSY, 'a is still on the wire');
      const drainA = engine.cancelBatch(a);
      proxy.setMode({ kind: 'reset' });
      await drainA;
      engine.freeBatchID(a);
    } finally {
      await engine.close();
    }
  });

  it("the high-level async calls: options.signal cancels the batch (ERR_CANCELED when polled or waited for), options.timeoutMs ends it (ERR_TIMEOUT); the seed's signatures unchanged", async () => {
    proxy.setMode(PASS);
    const engine = new HighLevelEngine({ env: { ...process.env, MC_LOG_LEVEL: 'ERROR', MC_TRANSFER_TIMEOUT: '60' } });
    assert.equal(await engine.initialize('127.0.0.1', 'P2PHANDSHAKE', 'tcp', ''), 0);
    try {
      const local = new Uint8Array(2 * MiB);
      assert.equal(engine.registerMemory(local, local.length), 0);
      const ptr = engine.getBufferAddress(local);
      const name = target.segmentName;
      /** transferCheckStatus until it is final (a canceled batch's outcome is known a few promise turns after the abort). */
      const poll = async (id: number): Promise<number> => {
        let rc = engine.transferCheckStatus(id);
        for (let i = 0; i < 1000 && rc === 0; i++) {
          await turn();
          rc = engine.transferCheckStatus(id);
        }
        return rc;
      };
      // The seed's form, then the same with options: both complete.
      assert.equal(await engine.getBatchTransferStatus([await engine.transferSubmitRead(name, ptr, remote, MiB)]), 0);
      const ac0 = new AbortController();
      const done = await engine.batchTransferAsyncRead(name, [ptr], [remote], [MiB], '', { signal: ac0.signal, timeoutMs: 30_000 });
      assert.equal(await engine.getBatchTransferStatus([done]), 0);
      ac0.abort(); // after the batch completed: nothing happens
      proxy.setMode({ kind: 'blackhole' });
      // options.signal: the batch is canceled, reported at once though its requests are still on the wire.
      const ac = new AbortController();
      const id = await engine.transferSubmitRead(name, ptr, remote, MiB, '', { signal: ac.signal });
      assert.ok(id > 0, String(id));
      assert.equal(engine.transferCheckStatus(id), 0, 'running');
      ac.abort();
      assert.equal(await poll(id), ERR_CANCELED);
      assert.equal(engine.getLastError()?.code, ErrorCode.CANCELED);
      assert.match(engine.getLastError()?.message ?? '', /options\.signal/);
      const ac2 = new AbortController();
      const id2 = await engine.batchTransferAsyncWrite(name, [ptr, ptr + MiB], [remote, remote + MiB], [MiB, MiB], '', { signal: ac2.signal });
      const waited = engine.getBatchTransferStatus([id2]);
      ac2.abort();
      assert.equal(await waited, ERR_CANCELED);
      // options.timeoutMs: the batch is canceled on expiry, ERR_TIMEOUT.
      const id3 = await engine.batchTransferAsync(name, [ptr], [remote], [4096], TransferOpcode.READ, '', { timeoutMs: 300 });
      assert.equal(await engine.getBatchTransferStatus([id3]), ERR_TIMEOUT);
      assert.match(engine.getLastError()?.message ?? '', /options\.timeoutMs/);
      const id4 = await engine.transferSubmitWrite(name, ptr, remote, 4096, '', { timeoutMs: 300 });
      assert.equal(await poll(id4), 0, 'still running within its deadline');
      assert.equal(await engine.getBatchTransferStatus([id4]), ERR_TIMEOUT);
      // An already aborted signal: nothing is submitted.
      assert.equal(await engine.transferSubmitWrite(name, ptr, remote, 4096, '', { signal: AbortSignal.abort() }), ERR_CANCELED, 'aborted before the call');
      assert.equal(await engine.batchTransferAsyncRead(name, [ptr], [remote], [4096], '', { signal: AbortSignal.abort() }), ERR_CANCELED);
      // The canceled requests are still on the wire: their memory is pinned until they end.
      assert.equal(engine.unregisterMemory(local), ERR_REGION_BUSY);
      proxy.setMode({ kind: 'reset' });
      await unregisterOnceDrained(engine, local);
      // Bad options: TypeErrors, as for the other arguments.
      proxy.setMode(PASS);
      await assert.rejects(engine.transferSubmitRead(name, ptr, remote, 8, '', { signal: {} as AbortSignal }), TypeError);
      await assert.rejects(engine.batchTransferAsyncWrite(name, [ptr], [remote], [8], '', { timeoutMs: 0 }), TypeError);
      await assert.rejects(engine.batchTransferAsync(name, [ptr], [remote], [8], TransferOpcode.READ, '', 'soon' as unknown as object), TypeError);
    } finally {
      await engine.close();
    }
  });
});

describe('cancellation: the dispatcher and the TCP peer queue', () => {
  /** A stand-in transport that records what it is given (a same-host copy under way, TCP). */
  function transport(name: 'shm' | 'tcp', onSubmit: (task: TaskSink, job: Job, host: TransportHost) => void): Transport {
    return { name, canServe: () => true, submit: onSubmit, stats: () => ({}), close: () => undefined };
  }

  it('a same-host copy that fails after its task was canceled is not rerouted to TCP: the task drains', () => {
    let held: { task: TaskSink; job: Job; host: TransportHost } | null = null;
    const sent: Job[] = [];
    const shm = transport('shm', (task, job, host) => {
      held = { task, job, host }; // copying piece by piece
    });
    const tcp = transport('tcp', (task, job) => {
      sent.push(job);
      task.pending = 1;
    });
    const d = new Dispatcher({
      config: {} as EngineConfig,
      telemetry: new Telemetry(1),
      segments: {} as SegmentTable,
      ready: () => true,
      transports: [shm, tcp],
      tcp: tcp as unknown as TcpTransport,
    });
    const batch = new Batch(1, 1);
    const local = new Uint8Array(64);
    d.start(batch, { kind: 'ready', write: true, local, region: {} as Region, target: 0x1000n, to: { kind: 'memory', bytes: new Uint8Array(64) }, seg: null });
    assert.ok(held, 'the same-host transport took the job');
    assert.equal(d.cancel(batch), 1);
    assert.equal(batch.tasks[0]!.status, TaskStatus.CANCELED);
    assert.equal(batch.draining, 1, 'the copy still holds the task');
    // Its next piece fails (the mapping is gone): it gives the rest back to the dispatcher.
    const h = held as { task: TaskSink; job: Job; host: TransportHost };
    h.host.reroute(shm, h.task, { ...h.job, local: local.subarray(32), target: 0x1020n });
    assert.equal(sent.length, 0, 'nothing of a canceled task goes over TCP');
    assert.equal(batch.draining, 0, 'the task drained: the batch may be freed');
    assert.equal(batch.tasks[0]!.statusReport.status, TaskStatus.CANCELED, 'its report stands');
  });

  it("a peer's sweep after a cancel settles the canceled task's slices wherever they wait in its queue, unsent; the others keep their order", async () => {
    const peer = new Peer(
      { options: { lanesPerPeer: 1, timeoutMs: 60_000, connectTimeoutMs: 5_000, peerPauseMs: 0 }, peerPauses: 0 },
      { host: '127.0.0.1', port: 9, v2: true },
    );
    // One lane, full (a stalled peer): the pump moves nothing, and opens no other lane.
    let room = false;
    const sent: Slice[] = [];
    const lane = {
      connected: true,
      corked: false,
      outstanding: 1,
      hasRoom: () => room,
      cork: () => undefined,
      uncork: () => undefined,
      send: (sl: Slice) => void sent.push(sl),
      progressing: () => true,
      sweep: () => undefined,
    };
    peer.lanes.push(lane as unknown as Lane);
    const owner = (): SliceOwner & { halted: boolean; done: Failure[] } => ({
      halted: false,
      done: [],
      halt() {},
      sliceDone(sl: Slice) {
        this.done.push(sl.failure);
      },
    });
    const live = owner();
    const canceled = owner();
    const region = { pins: 0 } as Region;
    const local = new Uint8Array(4096);
    // The live task's slice heads the queue: the pump never reaches the canceled ones behind it.
    const order = [live, canceled, live, canceled, canceled];
    const slices = order.map((o, i) => new Slice(o, true, BigInt(i * 4096), local, region));
    for (const sl of slices) peer.enqueue(sl);
    await turn();
    assert.equal(region.pins, 5, 'all queued, each pinning its region');
    canceled.halted = true; // what Task.cancel does, with the count of cancels below
    peer.sweep(performance.now());
    assert.equal(region.pins, 5, 'no cancel counted since the last sweep: the queue is left alone');
    cancels.count++;
    peer.sweep(performance.now());
    assert.deepEqual(canceled.done, [Failure.SKIPPED, Failure.SKIPPED, Failure.SKIPPED], 'settled, never sent');
    assert.equal(region.pins, 2, 'their pins released at once');
    assert.deepEqual(live.done, []);
    room = true;
    peer.pump();
    assert.deepEqual(sent, [slices[0], slices[2]], 'the rest go, in their order');
  });
});
