/**
 * Scale, correctness only (benchmarks/scale.ts measures memory with 10,000
 * requests, 64 batches, 16 peers): the same shape, smaller. Every request of
 * many batches to many peers is in flight at once; every byte lands where it
 * was addressed and reads back intact; the batches free cleanly.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { TaskStatus, TransferEngine, TransferOpcode, type BatchID, type SegmentHandle, type TransferRequest } from '../src/core.js';

const REQUESTS = 2000;
const BATCHES = 16;
const PEERS = 4;
const SIZE = 4096;

test(`${REQUESTS} requests in flight across ${BATCHES} batches and ${PEERS} peer engines complete correctly, twice`, async () => {
  const peers: TransferEngine[] = [];
  const initiator = new TransferEngine();
  try {
    const perPeer = Math.ceil(REQUESTS / PEERS);
    const peerMem: Buffer[] = [];
    const peerAddr: number[] = [];
    for (let i = 0; i < PEERS; i++) {
      const e = new TransferEngine();
      peers.push(e);
      await e.init('127.0.0.1');
      const mem = Buffer.alloc(perPeer * SIZE);
      peerMem.push(mem);
      peerAddr.push(e.registerLocalMemory(mem));
    }
    await initiator.init('127.0.0.1');
    const handles: SegmentHandle[] = [];
    for (const p of peers) handles.push(await initiator.openSegment(p.segmentName));
    const src = Buffer.alloc(REQUESTS * SIZE);
    const dst = Buffer.alloc(REQUESTS * SIZE);
    const srcAddr = initiator.registerLocalMemory(src);
    const dstAddr = initiator.registerLocalMemory(dst);
    const plan = (opcode: TransferOpcode, base: number): TransferRequest[][] => {
      const out: TransferRequest[][] = Array.from({ length: BATCHES }, () => []);
      for (let i = 0; i < REQUESTS; i++) {
        const p = i % PEERS;
        out[i % BATCHES]!.push({ opcode, source: base + i * SIZE, targetId: handles[p]!, targetOffset: peerAddr[p]! + Math.floor(i / PEERS) * SIZE, length: SIZE });
      }
      return out;
    };
    const wave = async (set: TransferRequest[][]): Promise<void> => {
      const ids: BatchID[] = set.map((r) => initiator.allocateBatchID(r.length));
      set.forEach((r, b) => initiator.submitTransfer(ids[b]!, r)); // all in flight before any is awaited
      const all = await Promise.all(ids.map((id) => initiator.waitBatch(id)));
      for (const [b, st] of all.entries()) {
        assert.equal(st.length, set[b]!.length);
        for (const [i, s] of st.entries()) assert.equal(s.status, TaskStatus.COMPLETED, `batch ${b} task ${i}: ${s.error?.message ?? TaskStatus[s.status]}`);
      }
      for (const id of ids) initiator.freeBatchID(id);
    };
    for (const round of [1, 2]) {
      for (let i = 0; i < REQUESTS; i++) {
        src.fill((i * 7 + round) & 0xff, i * SIZE, (i + 1) * SIZE);
        src.writeUInt32LE(i, i * SIZE);
        src.writeUInt32LE(round, i * SIZE + 4);
      }
      dst.fill(0);
      await wave(plan(TransferOpcode.WRITE, srcAddr));
      // Each request landed in its peer's slot floor(i / PEERS).
      for (let i = 0; i < REQUESTS; i++) {
        const slot = Math.floor(i / PEERS) * SIZE;
        assert.ok(peerMem[i % PEERS]!.subarray(slot, slot + SIZE).equals(src.subarray(i * SIZE, (i + 1) * SIZE)), `request ${i} landed at its address (round ${round})`);
      }
      await wave(plan(TransferOpcode.READ, dstAddr));
      assert.ok(dst.equals(src), `every request read back intact (round ${round})`);
    }
    const stats = initiator.stats();
    assert.equal(stats.tasksCompleted, 2 * 2 * REQUESTS);
    assert.equal(stats.tasksFailed, 0);
    assert.ok(stats.lanes <= PEERS * 16, `lanes stay bounded per peer (${stats.lanes})`);
  } finally {
    await initiator.close();
    await Promise.all(peers.map((p) => p.close()));
  }
});
