/**
 * Rough edges a new user hits (issue 22): each says what is wrong instead of
 * failing late or silently. close() during a sync call, port ranges of one
 * port, descriptors too large for peers, oversized notifications, addresses
 * that cannot be dialed, batches nobody collects, out-of-memory messages.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import v8 from 'node:v8';
import vm from 'node:vm';
import {
  TransferEngine as Facade,
  TransferNotify,
  TransferOpcode,
  ERR_FAILED,
  ERR_CLOSED,
  ERR_BAD_ENV,
  ERR_INVALID_ARGUMENT,
  ERR_OUT_OF_MEMORY,
  ERR_INVALID_BATCH,
} from '../src/index.js';
import { TransferEngine } from '../src/core.js';
import { BatchTable } from '../src/api/batches.js';
import { freePort } from './servers.js';
import { spawnPeer, type PeerProcess } from './helpers.js';

const MiB = 1 << 20;
const QUIET = { ...process.env, MC_LOG_LEVEL: 'ERROR' };


describe('initialize: addresses and ports that cannot work are refused with the reason', () => {
  it('a wildcard host, a bind address of the other family, a bad port in the name', async () => {
    for (const [host, env, want, pattern] of [
      ['0.0.0.0', {}, ERR_INVALID_ARGUMENT, /wildcard address/],
      ['::', {}, ERR_INVALID_ARGUMENT, /wildcard address/],
      ['127.0.0.1', { MC_TCP_BIND_ADDRESS: '::1' }, ERR_BAD_ENV, /MC_TCP_BIND_ADDRESS="::1" listens on IPv6, but peers will dial 127\.0\.0\.1/],
      ['127.0.0.1:0', {}, ERR_INVALID_ARGUMENT, /"0" is not a port/],
      ['127.0.0.1:99999', {}, ERR_INVALID_ARGUMENT, /"99999" is not a port/],
    ] as const) {
      const api = new Facade({ env: { ...QUIET, ...env } });
      try {
        assert.equal(await api.initialize(host, 'P2PHANDSHAKE', 'tcp', ''), want, host);
        assert.match(api.getLastError()!.message, pattern);
      } finally {
        await api.close();
      }
    }
    // The way to listen everywhere: a dialable name, and the wildcard as the bind address.
    const api = new Facade({ env: { ...QUIET, MC_TCP_BIND_ADDRESS: '0.0.0.0' } });
    try {
      assert.equal(await api.initialize('127.0.0.1', 'P2PHANDSHAKE', 'tcp', ''), 0);
    } finally {
      await api.close();
    }
  });

  it('MC_MIN_RPC_PORT = MC_MAX_RPC_PORT: the engine needs two ports, and says so', async () => {
    const p = String(await freePort());
    const e = new TransferEngine({ env: { ...process.env, MC_MIN_RPC_PORT: p, MC_MAX_RPC_PORT: p } });
    await assert.rejects(e.init('127.0.0.1'), (err: Error & { code?: string }) => {
      assert.equal(err.code, 'TE_BAD_ENV');
      assert.match(err.message, /binds two there \(RPC and data\)/);
      return true;
    });
  });
});

describe('close() during a sync transfer', () => {
  let peer: PeerProcess;
  let remote = 0;
  before(async () => {
    peer = await spawnPeer();
    remote = await peer.register(64 * MiB);
  });
  after(() => peer.stop());

  it('the call in flight returns ERR_FAILED (-1), as the table says; calls after close return ERR_CLOSED (-6)', async () => {
    const api = new Facade({ env: QUIET });
    assert.equal(await api.initialize('127.0.0.1', 'P2PHANDSHAKE', 'tcp', ''), 0);
    const buf = new Uint8Array(64 * MiB);
    api.registerMemory(buf, buf.length);
    const ptr = api.getBufferAddress(buf);
    assert.equal(await api.transferSyncWrite(peer.segmentName, ptr, remote, 4096), 0);
    peer.child.kill('SIGSTOP'); // the write below cannot finish before close()
    try {
      const call = api.transferSyncWrite(peer.segmentName, ptr, remote, 64 * MiB);
      await new Promise((r) => setTimeout(r, 100));
      await api.close();
      assert.equal(await call, ERR_FAILED);
      assert.equal(api.getLastError()!.code, 'TE_CLOSED');
      assert.equal(await api.transferSyncWrite(peer.segmentName, ptr, remote, 4096), ERR_CLOSED);
    } finally {
      peer.child.kill('SIGCONT');
    }
  });
});

describe('limits said up front', () => {
  const e = new TransferEngine();
  before(() => e.init('127.0.0.1'));
  after(() => e.close());

  it('a registration that makes the descriptor larger than peers accept warns once (TE_DESCRIPTOR_TOO_LARGE)', async () => {
    const warnings: Array<Error & { code?: string }> = [];
    const on = (w: Error): void => {
      warnings.push(w);
    };
    process.on('warning', on);
    const addrs: number[] = [];
    try {
      const mem = Buffer.alloc(20_000 * 64);
      for (let i = 0; i < 20_000; i++) addrs.push(e.registerLocalMemory(mem.subarray(i * 64, (i + 1) * 64)));
      await new Promise((r) => setImmediate(r));
      const ours = warnings.filter((w) => w.code === 'TE_DESCRIPTOR_TOO_LARGE');
      assert.equal(ours.length, 1, 'warned once');
      assert.match(ours[0]!.message, /above the 1048576 bytes peers accept \(MC_HANDSHAKE_MAX_LENGTH/);
      // The warning was right: the descriptor is over the limit.
      const { encodeSegmentDesc } = await import('../src/codec/descriptor.js');
      assert.ok(encodeSegmentDesc(e.getLocalSegmentDescriptor()).length > 1 << 20);
    } finally {
      process.off('warning', on);
      e.unregisterLocalMemoryBatch(addrs);
    }
  });

  it('a notification larger than a handshake frame is refused before anything is sent (core and facade)', async () => {
    const big = 'x'.repeat(2 * MiB);
    assert.throws(() => e.notifyFrame({ name: 'n', msg: big }), (err: Error & { code?: string }) => err.code === 'TE_INVALID_ARGUMENT' && /1048576-byte limit/.test(err.message));
    await assert.rejects(e.sendNotify('127.0.0.1:1', { name: 'n', msg: big }), { code: 'TE_INVALID_ARGUMENT' });
    const api = new Facade({ env: QUIET });
    try {
      assert.equal(await api.initialize('127.0.0.1', 'P2PHANDSHAKE', 'tcp', ''), 0);
      const buf = new Uint8Array(4096);
      api.registerMemory(buf, 4096);
      const ptr = api.getBufferAddress(buf);
      const sent = api.getMetrics().bytesWritten;
      assert.equal(await api.transferSync(e.segmentName, ptr, 1, 4096, TransferOpcode.WRITE, new TransferNotify('n', big)), ERR_INVALID_ARGUMENT);
      assert.equal(api.getMetrics().bytesWritten, sent, 'no byte moved');
    } finally {
      await api.close();
    }
  });
});

describe('batches nobody collects', () => {
  let peer: PeerProcess;
  let remote = 0;
  before(async () => {
    peer = await spawnPeer();
    remote = await peer.register(MiB);
  });
  after(() => peer.stop());

  it('20,000 uncollected transferSubmitWrite batches cost little, and their finished memory is not "in flight"', async () => {
    v8.setFlagsFromString('--expose-gc');
    const gc = vm.runInNewContext('gc') as () => void;
    const api = new Facade({ env: QUIET });
    try {
      assert.equal(await api.initialize('127.0.0.1', 'P2PHANDSHAKE', 'tcp', ''), 0);
      const managed = api.allocateManagedBuffer(4096);
      assert.ok(managed > 0);
      const user = new Uint8Array(4096);
      api.registerMemory(user, 4096);
      const ptr = api.getBufferAddress(user);
      assert.equal(await api.transferSyncWrite(peer.segmentName, ptr, remote, 64), 0); // opened, connected
      gc();
      const heap0 = process.memoryUsage().heapUsed;
      const ids: number[] = [];
      for (let i = 0; i < 10_000; i++) ids.push(await api.transferSubmitWrite(peer.segmentName, ptr, remote, 64));
      for (let i = 0; i < 10_000; i++) ids.push(await api.transferSubmitWrite(peer.segmentName, managed, remote, 64));
      assert.ok(ids.every((id) => id > 0));
      // Let them all finish.
      while (api.getEngine()!.stats().tasksCompleted < 20_001) await new Promise((r) => setTimeout(r, 10));
      await new Promise((r) => setTimeout(r, 50));
      gc();
      const grew = process.memoryUsage().heapUsed - heap0;
      assert.ok(grew < 16 * MiB, `20,000 finished batches hold ${(grew / MiB).toFixed(1)} MiB (was ~70 MiB)`);
      // Finished is not in flight: the memory can go, and the statuses can still be collected.
      assert.equal(api.freeManagedBuffer(managed, 4096), 0);
      assert.equal(api.unregisterMemory(user), 0);
      assert.equal(api.transferCheckStatus(ids[0]!), 1);
      assert.equal(api.transferCheckStatus(ids[19_999]!), 1);
    } finally {
      await api.close();
    }
  });

  it('the table keeps at most its bound of finished batches, dropping the oldest, and says so', async () => {
    const dropped: number[] = [];
    const t = new BatchTable(3, (n) => dropped.push(n));
    // The ids are the core's batch ids (allocateBatchID): the table keys its records on them.
    const ids = [1, 2, 3, 4, 5];
    for (const id of ids) t.add(id, { bytes: 1, startedAt: 0, outcome: null, done: Promise.resolve(null) });
    const running = 6;
    t.add(running, { bytes: 1, startedAt: 0, outcome: undefined, done: new Promise(() => {}) });
    await new Promise((r) => setImmediate(r));
    assert.equal(t.get(ids[0]!), undefined);
    assert.equal(t.get(ids[1]!), undefined);
    assert.ok(t.get(ids[2]!) && t.get(ids[4]!));
    assert.ok(t.get(running), 'running batches are never dropped');
    assert.equal(t.dropped, 2);
    assert.deepEqual(dropped, [1]);
  });

  it('whether an id was ever issued is the core\'s to say: a freed id is known, a made-up one is not', async () => {
    // (Moved from the table's test: batch ids are the core's now, and so is their history.)
    const e = new TransferEngine();
    await e.init('127.0.0.1');
    try {
      const id = e.allocateBatchID(1);
      e.freeBatchID(id);
      assert.ok(e.batchIdIssued(id) && !e.batchIdIssued(id + 1000) && !e.batchIdIssued(0) && !e.batchIdIssued(1.5));
    } finally {
      await e.close();
    }
    const api = new Facade({ env: QUIET });
    try {
      assert.equal(await api.initialize('127.0.0.1', 'P2PHANDSHAKE', 'tcp', ''), 0);
      const id = api.getEngine()!.allocateBatchID(1);
      api.getEngine()!.freeBatchID(id);
      assert.equal(api.transferCheckStatus(id), ERR_INVALID_BATCH);
      assert.match(api.getLastError()!.message, /already freed by a final status/);
      assert.equal(api.transferCheckStatus(id + 1000), ERR_INVALID_BATCH);
      assert.match(api.getLastError()!.message, /never returned by this engine/);
    } finally {
      await api.close();
    }
  });
});

describe('out of memory', () => {
  it('the message says it once', async () => {
    const api = new Facade({ env: QUIET });
    try {
      assert.equal(await api.initialize('127.0.0.1', 'P2PHANDSHAKE', 'tcp', ''), 0);
      assert.equal(api.allocateManagedBuffer(2 ** 50), 0);
      const err = api.getLastError()!;
      assert.equal(err.returnCode, ERR_OUT_OF_MEMORY);
      assert.equal(err.code, 'TE_OUT_OF_MEMORY');
      assert.equal(err.message.split('cannot allocate').length - 1, 1, err.message);
    } finally {
      await api.close();
    }
  });
});
