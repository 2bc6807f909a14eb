/**
 * Same-host transfers pick shared memory without configuration; another host
 * (a different machine identity) stays on TCP; a region gone from under a
 * stale descriptor falls back to TCP and fails cleanly.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { TransferEngine, TransferOpcode, TaskStatus, ErrorCode, type TransferRequest } from '../src/core.js';
import { nativeAvailable } from '../src/shm/index.js';
import { spawnPeer, sha256 } from './helpers.js';
import { fillPattern, patternBuffer } from './pattern.js';

const MiB = 1 << 20;
const available = nativeAvailable();
if (!available) console.warn('\n*** shm-engine: the shm addon is not built; these tests fail in CI ***\n');

let engine: TransferEngine;
let local: Uint8Array;
let localAddr: number;

before(async () => {
  if (!available && process.env['CI']) throw new Error('the shm addon is missing');
  engine = new TransferEngine({ shm: true });
  await engine.init('127.0.0.1');
  localAddr = engine.allocateLocalMemory(16 * MiB);
  local = engine.localView(localAddr, 16 * MiB);
});

after(async () => {
  await engine?.close();
});

async function run(reqs: TransferRequest[]): Promise<Array<{ status: TaskStatus; code: string | undefined }>> {
  const bid = engine.allocateBatchID(reqs.length);
  engine.submitTransfer(bid, reqs);
  const st = await engine.waitBatch(bid);
  engine.freeBatchID(bid);
  return st.map((s) => ({ status: s.status, code: s.error?.code }));
}

function shmFilesOf(desc: { buffers: Array<{ shmName?: string }> }): string[] {
  return desc.buffers.flatMap((b) => (b.shmName ? [b.shmName] : []));
}

test('our descriptor publishes the machine id and the shm name of allocated memory', { skip: !available }, () => {
  const desc = engine.getLocalSegmentDescriptor();
  assert.ok(desc.machineId && desc.machineId.length > 0);
  const names = shmFilesOf(desc);
  assert.equal(names.length, 1);
  assert.ok(fs.existsSync(`/dev/shm/${names[0]}`));
});

test('a large same-host copy goes a piece per event-loop turn: it ends after other work ran, byte-exact both ways', { skip: !available }, async () => {
  const peer = await spawnPeer({ PEER_SHM: '1' });
  try {
    const size = 14 * MiB; // four pieces of at most 4 MiB
    const { addr } = await peer.call<{ addr: number }>('alloc', { size, seed: 21 });
    const seg = await engine.openSegment(peer.segmentName);
    const before = engine.stats().shmCopies;
    {
      const bid = engine.allocateBatchID(1);
      engine.submitTransfer(bid, [{ opcode: TransferOpcode.READ, source: localAddr, targetId: seg, targetOffset: addr, length: size }]);
      const now = engine.getTransferStatus(bid, 0);
      assert.notEqual(now.status, TaskStatus.COMPLETED, 'the whole copy ran inside submitTransfer, holding the event loop');
      assert.ok(now.transferred > 0 && now.transferred < size, `after submitTransfer: ${now.transferred} of ${size} bytes`);
      const [st] = await engine.waitBatch(bid);
      assert.equal(st!.status, TaskStatus.COMPLETED);
      assert.equal(st!.transferred, size);
      engine.freeBatchID(bid);
    }
    assert.equal(sha256(local.subarray(0, size)), sha256(patternBuffer(size, 21)));
    fillPattern(local.subarray(0, size), 22);
    const st2 = await run([{ opcode: TransferOpcode.WRITE, source: localAddr, targetId: seg, targetOffset: addr, length: size }]);
    assert.deepEqual(st2, [{ status: TaskStatus.COMPLETED, code: undefined }]);
    assert.equal(await peer.hash(addr, size), sha256(local.subarray(0, size)));
    assert.equal(engine.stats().shmCopies - before, 2, 'both went through shared memory');
  } finally {
    await peer.stop();
  }
});

test('the peer\'s region truncated in the middle of a large same-host copy: the rest goes to TCP, the task ends with a typed result', { skip: !available }, async (t) => {
  const peer = await spawnPeer({ PEER_SHM: '1' });
  try {
    const size = 14 * MiB;
    const { addr } = await peer.call<{ addr: number }>('alloc', { size, seed: 31 });
    const seg = await engine.openSegment(peer.segmentName);
    const [name] = shmFilesOf(engine.getSegmentDescriptor(seg));
    const bid = engine.allocateBatchID(1);
    engine.submitTransfer(bid, [{ opcode: TransferOpcode.READ, source: localAddr, targetId: seg, targetOffset: addr, length: size }]);
    // The first piece is in; the next ones find the file shorter than the descriptor says.
    fs.truncateSync(`/dev/shm/${name}`, 4096);
    const [st] = await engine.waitBatch(bid);
    engine.freeBatchID(bid);
    t.diagnostic(`status ${st!.status}, ${st!.transferred} bytes, ${st!.error?.code ?? 'no error'}`);
    assert.ok(st!.status === TaskStatus.COMPLETED || st!.status === TaskStatus.FAILED, `status ${st!.status}`);
    if (st!.status === TaskStatus.FAILED) assert.ok(st!.error?.code?.startsWith('TE_'), `a typed error: ${String(st!.error)}`);
    assert.ok(st!.transferred >= 4 * MiB && st!.transferred <= size, `${st!.transferred} bytes counted`);
    assert.ok(engine.stats().shmCopies > 0);
  } finally {
    await peer.stop();
  }
});

test('a peer on this host is read and written through shared memory, not TCP', { skip: !available }, async () => {
  const peer = await spawnPeer({ PEER_SHM: '1' });
  try {
    const { addr } = await peer.call<{ addr: number }>('alloc', { size: 8 * MiB, seed: 3 });
    const seg = await engine.openSegment(peer.segmentName);
    assert.equal(shmFilesOf(engine.getSegmentDescriptor(seg)).length, 1, 'the peer published its shm region');
    const before = engine.stats().shmCopies;
    const served = ((await peer.call<{ requestsServed: number }>('stats')).requestsServed);
    const st = await run([{ opcode: TransferOpcode.READ, source: localAddr, targetId: seg, targetOffset: addr, length: 8 * MiB }]);
    assert.deepEqual(st, [{ status: TaskStatus.COMPLETED, code: undefined }]);
    assert.equal(sha256(local.subarray(0, 8 * MiB)), sha256(patternBuffer(8 * MiB, 3)));
    fillPattern(local.subarray(0, MiB), 11);
    const st2 = await run([{ opcode: TransferOpcode.WRITE, source: localAddr, targetId: seg, targetOffset: addr + 5, length: MiB }]);
    assert.deepEqual(st2, [{ status: TaskStatus.COMPLETED, code: undefined }]);
    assert.equal(await peer.hash(addr + 5, MiB), sha256(local.subarray(0, MiB)));
    assert.equal(engine.stats().shmCopies - before, 2, 'both went through shared memory');
    assert.equal((await peer.call<{ requestsServed: number }>('stats')).requestsServed, served, 'no TCP request reached the peer');
    // And the other way: the peer writes into our shm-backed memory.
    const r = await peer.call<{ statuses: Array<{ status: number }> }>('transfer', {
      segment: engine.segmentName,
      requests: [{ op: 'write', source: addr, target: String(localAddr + MiB), length: 4 * MiB }],
    });
    assert.deepEqual(r.statuses.map((s) => s.status), [TaskStatus.COMPLETED]);
    assert.equal(sha256(local.subarray(MiB, 5 * MiB)), await peer.hash(addr, 4 * MiB));
  } finally {
    await peer.stop();
  }
});

test('a peer with another machine identity stays on TCP', { skip: !available }, async () => {
  const peer = await spawnPeer({ PEER_SHM: '1', TE_MACHINE_ID: 'another-host:0000' });
  try {
    const { addr } = await peer.call<{ addr: number }>('alloc', { size: MiB, seed: 9 });
    const seg = await engine.openSegment(peer.segmentName);
    assert.equal(engine.getSegmentDescriptor(seg).machineId, 'another-host:0000');
    const before = engine.stats().shmCopies;
    const st = await run([{ opcode: TransferOpcode.READ, source: localAddr, targetId: seg, targetOffset: addr, length: MiB }]);
    assert.deepEqual(st, [{ status: TaskStatus.COMPLETED, code: undefined }]);
    assert.equal(sha256(local.subarray(0, MiB)), sha256(patternBuffer(MiB, 9)));
    assert.equal(engine.stats().shmCopies, before, 'no shm copy');
    assert.ok((await peer.call<{ requestsServed: number }>('stats')).requestsServed > 0, 'served over TCP');
  } finally {
    await peer.stop();
  }
});

test('a region unregistered behind a cached descriptor: its file is gone, TCP is tried, the task fails cleanly', { skip: !available }, async () => {
  const peer = await spawnPeer({ PEER_SHM: '1' });
  try {
    const { addr } = await peer.call<{ addr: number }>('alloc', { size: MiB });
    const seg = await engine.openSegment(peer.segmentName);
    const [name] = shmFilesOf(engine.getSegmentDescriptor(seg));
    await peer.call('unregister', { addr });
    assert.equal(fs.existsSync(`/dev/shm/${name}`), false, 'unregister removed the shm file');
    const st = await run([{ opcode: TransferOpcode.WRITE, source: localAddr, targetId: seg, targetOffset: addr, length: 4096 }]);
    assert.equal(st[0]!.status, TaskStatus.FAILED);
    assert.equal(st[0]!.code, ErrorCode.ADDRESS_REJECTED);
    assert.ok(peer.child.exitCode === null, 'the peer is still alive');
  } finally {
    await peer.stop();
  }
});

test('close() removes the shm files the engine allocated', { skip: !available }, async () => {
  const e = new TransferEngine({ shm: true });
  await e.init('127.0.0.1');
  const a = e.allocateLocalMemory(MiB);
  const [name] = shmFilesOf(e.getLocalSegmentDescriptor());
  assert.ok(fs.existsSync(`/dev/shm/${name}`));
  assert.equal(e.localView(a, MiB).length, MiB);
  await e.close();
  assert.equal(fs.existsSync(`/dev/shm/${name}`), false);
});

test('allocateLocalMemory rejects bad sizes with a typed error', { skip: !available }, () => {
  for (const size of [0, -1, 1.5, Number.NaN]) {
    assert.throws(() => engine.allocateLocalMemory(size), { code: ErrorCode.INVALID_ARGUMENT });
  }
});
