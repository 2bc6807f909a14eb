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

  async function initiator(): Promise<{ engine: TransferEngine; local: Buffer; addr: number; seg: number }> {
    proxy.setMode(PASS);
    const engine = new TransferEngine({ env: { MC_TRANSFER_TIMEOUT: '60', MC_RETRY_CNT: '0' } });
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
      const deadline = Date.now() + 10_000;
      while (engine.unregisterMemory(local) !== 0) {
        assert.ok(Date.now() < deadline, 'the canceled requests end once their connections reset');
        await new Promise((r) => setTimeout(r, 50));
      }
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
});
