/**
 * Opening segments: concurrent first transfers to a peer share one handshake
 * (8,000 used to make 8,000, and thousands failed); a hung peer fails an open
 * within MC_TRANSFER_TIMEOUT, and the async calls return at once (the open
 * happens inside the task); many concurrent exchanges on the RPC port leave no
 * listener warnings.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { TransferEngine as Facade, ERR_TIMEOUT, ERR_INVALID_ARGUMENT } from '../src/index.js';
import { TransferEngine, TransferOpcode, TaskStatus } from '../src/core.js';
import { spawnPeer, type PeerProcess } from './helpers.js';

const QUIET = { ...process.env, MC_LOG_LEVEL: 'ERROR' };

/** Warnings emitted while `run` runs. */
async function warningsDuring(run: () => Promise<void>): Promise<Error[]> {
  const seen: Error[] = [];
  const on = (w: Error): void => {
    seen.push(w);
  };
  process.on('warning', on);
  try {
    await run();
    await new Promise((r) => setImmediate(r)); // warnings are emitted on the next tick
  } finally {
    process.off('warning', on);
  }
  return seen;
}

describe('concurrent opens share one handshake', () => {
  let peer: PeerProcess;
  let remote = 0;
  before(async () => {
    peer = await spawnPeer();
    remote = await peer.register(8000 * 64, 1);
  });
  after(() => peer.stop());

  it('8,000 concurrent first writes through the high-level API: one descriptor fetch, all succeed', async () => {
    const api = new Facade({ env: QUIET });
    try {
      assert.equal(await api.initialize('127.0.0.1', 'P2PHANDSHAKE', 'tcp', ''), 0);
      const buf = new Uint8Array(8000 * 64).fill(3);
      assert.equal(api.registerMemory(buf, buf.length), 0);
      const ptr = api.getBufferAddress(buf);
      const before = (await peer.call<{ rpcConnections: number }>('stats')).rpcConnections;
      const results = await Promise.all(Array.from({ length: 8000 }, (_, i) => api.transferSyncWrite(peer.segmentName, ptr + i * 64, remote + i * 64, 64)));
      const failed = results.filter((r) => r !== 0);
      assert.equal(failed.length, 0, `${failed.length} failed, e.g. ${failed[0]}: ${api.getLastError()?.message}`);
      const fetches = (await peer.call<{ rpcConnections: number }>('stats')).rpcConnections - before;
      assert.equal(fetches, 1, 'one handshake for all of them');
    } finally {
      await api.close();
    }
  });

  it('the core: concurrent openSegment calls resolve to one handle after one fetch', async () => {
    const e = new TransferEngine();
    try {
      await e.init('127.0.0.1');
      const before = (await peer.call<{ rpcConnections: number }>('stats')).rpcConnections;
      const handles = await Promise.all(Array.from({ length: 200 }, () => e.openSegment(peer.segmentName)));
      assert.equal(new Set(handles).size, 1);
      assert.equal((await peer.call<{ rpcConnections: number }>('stats')).rpcConnections - before, 1);
      assert.equal(e.segmentHandle(peer.segmentName), handles[0], 'segmentHandle gives the open handle');
    } finally {
      await e.close();
    }
  });

  it('20 concurrent sendProbe calls: no MaxListenersExceededWarning', async () => {
    const e = new TransferEngine();
    try {
      await e.init('127.0.0.1');
      const warnings = await warningsDuring(async () => {
        await Promise.all(Array.from({ length: 20 }, () => e.sendProbe(peer.segmentName)));
        await Promise.all(Array.from({ length: 20 }, () => e.sendNotify(peer.segmentName, { name: 'n', msg: 'm' })));
      });
      assert.deepEqual(warnings.map((w) => w.name), []);
    } finally {
      await e.close();
    }
  });
});

describe('a hung peer (SIGSTOP before first contact)', () => {
  let peer: PeerProcess;
  let remote = 0;
  before(async () => {
    peer = await spawnPeer();
    remote = await peer.register(1 << 20, 1);
    peer.child.kill('SIGSTOP');
  });
  after(async () => {
    peer.child.kill('SIGCONT');
    await peer.stop();
  });

  it('sync calls end within MC_TRANSFER_TIMEOUT + 1 ns/byte (-2); submit returns at once and its status ends -2', async () => {
    const api = new Facade({ env: { ...QUIET, MC_TRANSFER_TIMEOUT: '2' } });
    try {
      assert.equal(await api.initialize('127.0.0.1', 'P2PHANDSHAKE', 'tcp', ''), 0);
      const buf = new Uint8Array(1 << 20);
      assert.equal(api.registerMemory(buf, buf.length), 0);
      const ptr = api.getBufferAddress(buf);
      let t0 = performance.now();
      assert.equal(await api.transferSyncWrite(peer.segmentName, ptr, remote, 4096), ERR_TIMEOUT);
      let ms = performance.now() - t0;
      // The documented bound is 2 s (+4 us); before, the open alone waited 15 s.
      assert.ok(ms >= 1900 && ms < 6000, `sync returned after ${ms.toFixed(0)} ms`);

      t0 = performance.now();
      const id = await api.transferSubmitWrite(peer.segmentName, ptr, remote, 4096);
      ms = performance.now() - t0;
      assert.ok(id >= 1, `batch id ${id}`);
      assert.ok(ms < 1000, `submit blocked for ${ms.toFixed(0)} ms`);
      let status = 0;
      while ((status = api.transferCheckStatus(id)) === 0) await new Promise((r) => setTimeout(r, 5));
      assert.equal(status, ERR_TIMEOUT);
      assert.ok(performance.now() - t0 < 6000);
      assert.equal(api.unregisterMemory(buf), 0, 'the finished transfer holds nothing');
    } finally {
      await api.close();
    }
  });

  it('the core: a task to a segment still opening waits inside the task and ends TIMEOUT; the handle is dropped after', async () => {
    const e = new TransferEngine({ env: { ...process.env, MC_TRANSFER_TIMEOUT: '1' } });
    try {
      await e.init('127.0.0.1');
      const mem = Buffer.alloc(4096);
      const addr = e.registerLocalMemory(mem);
      const seg = e.segmentHandle(peer.segmentName);
      assert.throws(() => e.getSegmentDescriptor(seg), /still opening/);
      const bid = e.allocateBatchID(1);
      e.submitTransfer(bid, [{ opcode: TransferOpcode.WRITE, source: addr, targetId: seg, targetOffset: remote, length: 4096 }]);
      assert.throws(() => e.unregisterLocalMemory(addr), /in flight/, 'pinned while it waits');
      const [st] = await e.waitBatch(bid);
      assert.equal(st!.status, TaskStatus.TIMEOUT);
      assert.equal(st!.error?.code, 'TE_TIMEOUT');
      assert.notEqual(e.segmentHandle(peer.segmentName), seg, 'a failed open is not cached');
      e.freeBatchID(bid);
      e.unregisterLocalMemory(addr);
    } finally {
      await e.close();
    }
  });
});

describe('segment names', () => {
  it("'host:0', 'host:99999', 'host:x' are refused, not taken for port 12001", async () => {
    const api = new Facade({ env: QUIET });
    const e = new TransferEngine();
    try {
      assert.equal(await api.initialize('127.0.0.1', 'P2PHANDSHAKE', 'tcp', ''), 0);
      await e.init('127.0.0.1');
      const buf = new Uint8Array(4096);
      api.registerMemory(buf, 4096);
      const ptr = api.getBufferAddress(buf);
      for (const name of ['127.0.0.1:0', '127.0.0.1:99999', '127.0.0.1:x', '127.0.0.1:']) {
        assert.equal(await api.transferSyncWrite(name, ptr, 1, 1), ERR_INVALID_ARGUMENT, name);
        assert.match(api.getLastError()!.message, /is not a port/, name);
        assert.equal(await api.transferSubmitWrite(name, ptr, 1, 1), ERR_INVALID_ARGUMENT, name);
        assert.equal(await api.sendProbe(name), ERR_INVALID_ARGUMENT, name);
        await assert.rejects(e.openSegment(name), { code: 'TE_INVALID_ARGUMENT' });
      }
    } finally {
      await api.close();
      await e.close();
    }
  });
});
