/**
 * Failures that must be quick whatever the size of the transfer: a peer that
 * refuses the range (it unregistered the memory after we opened it) fails the
 * whole task once, after one descriptor refetch, with TE_ADDRESS_REJECTED;
 * the task's other slices are not sent, and nothing is retried as "connection
 * lost". (Before: 4 KiB failed in 2 ms, 64 MiB in 36-39 s with 320 retries.)
 *
 * The bounds below are far above what the code needs (milliseconds) and far
 * below the old behaviour: they catch a regression, not a slow machine.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { TransferEngine, TransferOpcode, TaskStatus } from '../src/core.js';
import { TransferEngine as Facade, ERR_FAILED } from '../src/index.js';
import { spawnPeer, type PeerProcess } from './helpers.js';

const MiB = 1 << 20;
const BIG = 64 * MiB;
const QUIET = { ...process.env, MC_LOG_LEVEL: 'ERROR' };

describe('a peer that unregistered the range: the task fails at once, whatever its size', () => {
  let peer: PeerProcess;
  let remote = 0;
  let live = 0;
  const engine = new TransferEngine({ env: { ...process.env, MC_TRANSFER_TIMEOUT: '5' } });
  let local: Buffer;
  let localAddr = 0;

  before(async () => {
    await engine.init('127.0.0.1');
    local = Buffer.alloc(BIG);
    localAddr = engine.registerLocalMemory(local);
    peer = await spawnPeer();
    remote = await peer.register(BIG, 1);
    live = await peer.register(MiB, 2);
  });
  after(async () => {
    await engine.close();
    await peer.stop();
  });

  it('READ and WRITE of 4 KiB to 64 MiB: FAILED TE_ADDRESS_REJECTED, few retries, few connections, then the peer is used again', async () => {
    const seg = await engine.openSegment(peer.segmentName);
    await peer.call('unregister', { addr: remote });
    for (const size of [4096, 2 * MiB, 16 * MiB, BIG]) {
      for (const opcode of [TransferOpcode.READ, TransferOpcode.WRITE]) {
        const before = engine.stats();
        const served = await peer.call<{ dataConnections: number; requestsRejected: number }>('stats');
        const t0 = performance.now();
        const bid = engine.allocateBatchID(1);
        engine.submitTransfer(bid, [{ opcode, source: localAddr, targetId: seg, targetOffset: remote, length: size }]);
        const [st] = await engine.waitBatch(bid);
        engine.freeBatchID(bid);
        const ms = performance.now() - t0;
        const what = `${TransferOpcode[opcode]} of ${size} bytes`;
        assert.equal(st!.status, TaskStatus.FAILED, what);
        assert.equal(st!.error?.code, 'TE_ADDRESS_REJECTED', `${what}: ${st!.error?.message}`);
        assert.equal(st!.transferred, 0);
        const s = engine.stats();
        // One refetch round resends the slices held back (at most the task's); never hundreds of rounds.
        assert.ok(s.retries - before.retries <= Math.ceil(size / MiB), `${what}: ${s.retries - before.retries} slices resent`);
        const rejected = (await peer.call<{ requestsRejected: number }>('stats')).requestsRejected - served.requestsRejected;
        // Each rejection closes one lane (2 lanes): a handful, not one per wire request.
        assert.ok(rejected <= 8, `${what}: ${rejected} requests rejected by the peer`);
        assert.ok(ms < 3000, `${what} took ${ms.toFixed(0)} ms to fail`);
      }
    }
    // The peer's other memory still works, over the same engine.
    const bid = engine.allocateBatchID(1);
    engine.submitTransfer(bid, [{ opcode: TransferOpcode.READ, source: localAddr, targetId: seg, targetOffset: live, length: MiB }]);
    const [ok] = await engine.waitBatch(bid);
    engine.freeBatchID(bid);
    assert.equal(ok!.status, TaskStatus.COMPLETED);
    engine.unregisterLocalMemory(localAddr); // nothing stayed pinned
    localAddr = engine.registerLocalMemory(local);
  });

  it('MC_RETRY_CNT=0 and the high-level sync call: -1 at once, not -2 at the deadline', async () => {
    const api = new Facade({ env: { ...QUIET, MC_TRANSFER_TIMEOUT: '5', MC_RETRY_CNT: '0' } });
    try {
      assert.equal(await api.initialize('127.0.0.1', 'P2PHANDSHAKE', 'tcp', ''), 0);
      const buf = new Uint8Array(BIG);
      assert.equal(api.registerMemory(buf, BIG), 0);
      const ptr = api.getBufferAddress(buf);
      const gone = await peer.register(BIG, 3);
      assert.equal(await api.transferSyncRead(peer.segmentName, ptr, gone, MiB), 0);
      await peer.call('unregister', { addr: gone });
      const t0 = performance.now();
      assert.equal(await api.transferSyncWrite(peer.segmentName, ptr, gone, BIG), ERR_FAILED);
      assert.equal(api.getLastError()!.code, 'TE_ADDRESS_REJECTED');
      assert.ok(performance.now() - t0 < 3000, `took ${(performance.now() - t0).toFixed(0)} ms`);
      assert.equal(api.unregisterMemory(buf), 0, 'the failed task holds no pin');
    } finally {
      await api.close();
    }
  });
});
