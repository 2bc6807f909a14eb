/**
 * Two engines in separate processes over loopback: random data of many sizes,
 * both directions, both initiators, many concurrent batches, byte-for-byte.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { TransferEngine, TransferOpcode, TaskStatus, type TransferRequest } from '../src/core.js';
import { spawnPeer, sha256, type PeerProcess } from './helpers.js';
import { fillPattern, patternBuffer } from './pattern.js';

const MiB = 1 << 20;
const SIZES = [1, 7, 4096, 65_537, MiB, 8 * MiB + 3, 64 * MiB];
const REGION = 64 * MiB + 4096;

let engine: TransferEngine;
let peer: PeerProcess;
let local: Buffer;
let localAddr: number;
let remoteAddr: number;
let seg: number;

before(async () => {
  engine = new TransferEngine();
  await engine.init('127.0.0.1');
  local = Buffer.alloc(REGION);
  localAddr = engine.registerLocalMemory(local);
  peer = await spawnPeer();
  remoteAddr = await peer.register(REGION);
  seg = await engine.openSegment(peer.segmentName);
});

after(async () => {
  await engine.close();
  await peer.stop();
});

async function run(reqs: TransferRequest[]): Promise<void> {
  const bid = engine.allocateBatchID(reqs.length);
  engine.submitTransfer(bid, reqs);
  const st = await engine.waitBatch(bid);
  for (const [i, s] of st.entries()) {
    assert.equal(s.status, TaskStatus.COMPLETED, `task ${i}: ${s.error?.message ?? TaskStatus[s.status]}`);
    assert.equal(s.transferred, reqs[i]!.length);
  }
  engine.freeBatchID(bid);
}

test('our initiator writes then reads back every size, byte for byte', async () => {
  for (const [k, size] of SIZES.entries()) {
    const off = k * 4099 % 4096; // unaligned offsets on both sides
    const src = local.subarray(off, off + size);
    fillPattern(src, 1000 + k);
    const want = sha256(src);
    await run([{ opcode: TransferOpcode.WRITE, source: localAddr + off, targetId: seg, targetOffset: remoteAddr + off + 1, length: size }]);
    assert.equal(await peer.hash(remoteAddr + off + 1, size), want, `write of ${size} bytes`);
    local.fill(0);
    await run([{ opcode: TransferOpcode.READ, source: localAddr + off, targetId: seg, targetOffset: remoteAddr + off + 1, length: size }]);
    assert.equal(sha256(local.subarray(off, off + size)), want, `read of ${size} bytes`);
  }
});

test('the peer initiates too: it writes into and reads from our segment', async () => {
  const size = 8 * MiB + 5;
  const src = await peer.register(size, 77);
  const dst = await peer.register(size);
  local.fill(0);
  const r = await peer.call<{ statuses: Array<{ status: number; code: string | null }> }>('transfer', {
    segment: engine.segmentName,
    requests: [{ op: 'write', source: src, target: String(localAddr + 3), length: size }],
  });
  assert.deepEqual(r.statuses.map((s) => s.status), [TaskStatus.COMPLETED]);
  assert.equal(sha256(local.subarray(3, 3 + size)), sha256(patternBuffer(size, 77)));
  assert.equal(local[2], 0, 'byte before the range untouched');
  assert.equal(local[3 + size], 0, 'byte after the range untouched');
  const r2 = await peer.call<{ statuses: Array<{ status: number }> }>('transfer', {
    segment: engine.segmentName,
    requests: [{ op: 'read', source: dst, target: String(localAddr + 3), length: size }],
  });
  assert.deepEqual(r2.statuses.map((s) => s.status), [TaskStatus.COMPLETED]);
  assert.equal(await peer.hash(dst, size), sha256(patternBuffer(size, 77)));
});

test('many concurrent batches of mixed sizes and directions land exactly', async () => {
  // Each task owns a disjoint slot; writes and reads interleave across 32 batches.
  const BATCHES = 32;
  const PER = 16;
  const SLOT = 64 * 1024;
  const slots = BATCHES * PER;
  assert.ok(slots * SLOT <= REGION);
  fillPattern(local.subarray(0, slots * SLOT), 4242);
  const expectRemote = new Map<number, string>();
  // First all-write pass, concurrently.
  await Promise.all(
    Array.from({ length: BATCHES }, async (_, b) => {
      const reqs: TransferRequest[] = [];
      for (let i = 0; i < PER; i++) {
        const slot = b * PER + i;
        const len = 1 + ((slot * 7919) % SLOT);
        expectRemote.set(slot, sha256(local.subarray(slot * SLOT, slot * SLOT + len)));
        reqs.push({ opcode: TransferOpcode.WRITE, source: localAddr + slot * SLOT, targetId: seg, targetOffset: remoteAddr + slot * SLOT, length: len });
      }
      await run(reqs);
    }),
  );
  for (const slot of [0, 1, 100, slots - 1]) {
    const len = 1 + ((slot * 7919) % SLOT);
    assert.equal(await peer.hash(remoteAddr + slot * SLOT, len), expectRemote.get(slot));
  }
  // Then read everything back into a zeroed buffer, concurrently, and compare.
  const before = Buffer.from(local.subarray(0, slots * SLOT));
  local.fill(0);
  await Promise.all(
    Array.from({ length: BATCHES }, async (_, b) => {
      const reqs: TransferRequest[] = [];
      for (let i = 0; i < PER; i++) {
        const slot = b * PER + i;
        const len = 1 + ((slot * 7919) % SLOT);
        reqs.push({ opcode: TransferOpcode.READ, source: localAddr + slot * SLOT, targetId: seg, targetOffset: remoteAddr + slot * SLOT, length: len });
      }
      await run(reqs);
    }),
  );
  for (let slot = 0; slot < slots; slot++) {
    const len = 1 + ((slot * 7919) % SLOT);
    const s = slot * SLOT;
    assert.ok(local.subarray(s, s + len).equals(before.subarray(s, s + len)), `slot ${slot}`);
  }
});

test('one request larger than the split size is spread over lanes and completes', async () => {
  const size = 48 * MiB + 11;
  fillPattern(local.subarray(0, size), 9);
  const want = sha256(local.subarray(0, size));
  await run([{ opcode: TransferOpcode.WRITE, source: localAddr, targetId: seg, targetOffset: remoteAddr + 100, length: size }]);
  assert.equal(await peer.hash(remoteAddr + 100, size), want);
  assert.ok(engine.stats().lanes >= 2, 'more than one lane was used');
});

test('requests to our own segment are served by a local copy', async () => {
  const self = await engine.openSegment(engine.segmentName);
  fillPattern(local.subarray(0, 4096), 5);
  await run([{ opcode: TransferOpcode.WRITE, source: localAddr, targetId: self, targetOffset: localAddr + MiB, length: 4096 }]);
  assert.ok(local.subarray(MiB, MiB + 4096).equals(local.subarray(0, 4096)));
  const served = engine.stats().requestsServed;
  await run([{ opcode: TransferOpcode.READ, source: localAddr + 2 * MiB, targetId: self, targetOffset: localAddr, length: 4096 }]);
  assert.ok(local.subarray(2 * MiB, 2 * MiB + 4096).equals(local.subarray(0, 4096)));
  assert.equal(engine.stats().requestsServed, served, 'no request went over the wire');
});

test('counters add up the bytes of finished tasks by direction', async () => {
  const before = engine.stats();
  await run([{ opcode: TransferOpcode.WRITE, source: localAddr, targetId: seg, targetOffset: remoteAddr, length: 1000 }]);
  await run([
    { opcode: TransferOpcode.READ, source: localAddr, targetId: seg, targetOffset: remoteAddr, length: 300 },
    { opcode: TransferOpcode.READ, source: localAddr, targetId: seg, targetOffset: remoteAddr, length: 200 },
  ]);
  const after = engine.stats();
  assert.equal(after.bytesWritten - before.bytesWritten, 1000);
  assert.equal(after.bytesRead - before.bytesRead, 500);
  assert.equal(after.tasksCompleted - before.tasksCompleted, 3);
  assert.equal(after.tasksFailed, before.tasksFailed);
});
