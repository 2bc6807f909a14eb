/**
 * Registered memory whose ArrayBuffer is detached (handed to a worker with
 * transfer) or shrunk (a resizable ArrayBuffer) must not break the segment:
 * it leaves the published descriptor, transfers touching it are refused with
 * TE_MEMORY_DETACHED (our side) or rejected (the peer's side), the engine's
 * other memory keeps working, and the region can be unregistered. Also: the
 * same bytes cannot be registered twice, in the core as in the facade.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { TransferEngine, TransferOpcode, TaskStatus, type SegmentHandle } from '../src/core.js';
import { TransferEngine as Facade, ERR_ADDRESS_OVERLAPPED, ERR_ADDRESS_NOT_REGISTERED } from '../src/index.js';

const KiB = 1024;
const QUIET = { ...process.env, MC_LOG_LEVEL: 'ERROR' };

/** ES2024's resizable ArrayBuffer (in Node 20's V8; not in our TypeScript lib yet). */
interface Resizable extends ArrayBuffer {
  resize(n: number): void;
}
const resizable = (n: number, max: number): Resizable =>
  new (ArrayBuffer as unknown as new (n: number, o: { maxByteLength: number }) => Resizable)(n, { maxByteLength: max });

function detach(ab: ArrayBuffer): void {
  structuredClone(ab, { transfer: [ab] });
}

async function one(e: TransferEngine, op: TransferOpcode, source: number, seg: SegmentHandle, target: number, length: number): Promise<{ status: TaskStatus; code: string | undefined }> {
  const bid = e.allocateBatchID(1);
  e.submitTransfer(bid, [{ opcode: op, source, targetId: seg, targetOffset: target, length }]);
  const [st] = await e.waitBatch(bid);
  e.freeBatchID(bid);
  return { status: st!.status, code: st!.error?.code };
}

describe('detached or shrunk memory', () => {
  const owner = new TransferEngine();
  const reader = new TransferEngine();
  before(async () => {
    await owner.init('127.0.0.1');
    await reader.init('127.0.0.1');
  });
  after(async () => {
    await owner.close();
    await reader.close();
  });

  it('a transferred ArrayBuffer: left out of the descriptor, refused both ways, the healthy region still served, unregistered by address', async () => {
    const healthy = new ArrayBuffer(64 * KiB);
    new Uint8Array(healthy).fill(0x42);
    const doomed = new ArrayBuffer(64 * KiB);
    const healthyAddr = owner.registerLocalMemory(healthy);
    const doomedAddr = owner.registerLocalMemory(doomed);
    detach(doomed);
    const desc = owner.getLocalSegmentDescriptor();
    assert.deepEqual(desc.buffers.map((b) => Number(b.addr)), [healthyAddr], 'only the healthy region is published');

    // A peer opens the segment (it used to fail: "buffers[1].length is 0") and reads the healthy region.
    const seg = await reader.openSegment(owner.segmentName);
    const local = Buffer.alloc(64 * KiB);
    const localAddr = reader.registerLocalMemory(local);
    assert.deepEqual(await one(reader, TransferOpcode.READ, localAddr, seg, healthyAddr, 64 * KiB), { status: TaskStatus.COMPLETED, code: undefined });
    assert.ok(local.every((x) => x === 0x42));
    // The detached one is refused by the owner, like any range it does not serve.
    assert.deepEqual(await one(reader, TransferOpcode.WRITE, localAddr, seg, doomedAddr, 4 * KiB), { status: TaskStatus.FAILED, code: 'TE_ADDRESS_REJECTED' });
    // Locally it is a typed error, not a crash.
    assert.throws(() => owner.localView(doomedAddr, 16), { code: 'TE_MEMORY_DETACHED' });
    const ownLocal = owner.registerLocalMemory(Buffer.alloc(4 * KiB));
    const bid = owner.allocateBatchID(1);
    assert.throws(
      () => owner.submitTransfer(bid, [{ opcode: TransferOpcode.WRITE, source: ownLocal, targetId: 0, targetOffset: doomedAddr, length: 16 }]),
      { code: 'TE_MEMORY_DETACHED' },
    );
    owner.freeBatchID(bid);
    owner.unregisterLocalMemory(doomedAddr);
    owner.unregisterLocalMemory(healthyAddr);
    owner.unregisterLocalMemory(ownLocal);
    reader.unregisterLocalMemory(localAddr);
  });

  it('a local source that is detached fails its task (TE_MEMORY_DETACHED) without harming the lane', async () => {
    const target = Buffer.alloc(64 * KiB);
    const targetAddr = owner.registerLocalMemory(target);
    const seg = await reader.openSegment(owner.segmentName);
    const src = new ArrayBuffer(64 * KiB);
    const srcAddr = reader.registerLocalMemory(src);
    const good = Buffer.alloc(64 * KiB, 7);
    const goodAddr = reader.registerLocalMemory(good);
    detach(src);
    assert.throws(
      () => {
        const bid = reader.allocateBatchID(1);
        try {
          reader.submitTransfer(bid, [{ opcode: TransferOpcode.WRITE, source: srcAddr, targetId: seg, targetOffset: targetAddr, length: 4 * KiB }]);
        } finally {
          reader.freeBatchID(bid);
        }
      },
      { code: 'TE_MEMORY_DETACHED' },
    );
    assert.deepEqual(await one(reader, TransferOpcode.WRITE, goodAddr, seg, targetAddr, 64 * KiB), { status: TaskStatus.COMPLETED, code: undefined });
    assert.ok(target.every((x) => x === 7));
    reader.unregisterLocalMemory(srcAddr);
    reader.unregisterLocalMemory(goodAddr);
    owner.unregisterLocalMemory(targetAddr);
  });

  it('a resizable ArrayBuffer shrunk below the region: not published while shrunk, back when it grows; growing never grows the region', async () => {
    const ab = resizable(8 * KiB, 64 * KiB);
    const addr = owner.registerLocalMemory(ab);
    const lenOf = (): bigint | undefined => owner.getLocalSegmentDescriptor().buffers.find((b) => Number(b.addr) === addr)?.length;
    assert.equal(lenOf(), BigInt(8 * KiB));
    ab.resize(4 * KiB);
    assert.equal(lenOf(), undefined);
    assert.throws(() => owner.localView(addr, 1), { code: 'TE_MEMORY_DETACHED' });
    ab.resize(64 * KiB);
    assert.equal(lenOf(), BigInt(8 * KiB), 'the registered length, not the grown one');
    assert.equal(owner.localView(addr, 8 * KiB).length, 8 * KiB);
    assert.throws(() => owner.localView(addr, 8 * KiB + 1), { code: 'TE_ADDRESS_NOT_REGISTERED' });
    owner.unregisterLocalMemory(addr);
  });

  it('the high-level API: a detached buffer is unregistered by address or by the buffer itself; its address reads 0', async () => {
    const api = new Facade({ env: QUIET });
    try {
      assert.equal(await api.initialize('127.0.0.1', 'P2PHANDSHAKE', 'tcp', ''), 0);
      const a = new ArrayBuffer(4096);
      const b = new ArrayBuffer(4096);
      assert.equal(api.registerMemory(a, 4096), 0);
      assert.equal(api.registerMemory(new Uint8Array(b, 1024), 1024), 0);
      const bAddr = api.getBufferAddress(new Uint8Array(b, 1024));
      detach(a);
      detach(b);
      assert.equal(api.getBufferAddress(a), 0);
      assert.equal(api.readBytesFromBuffer(bAddr, 16), null);
      assert.equal(api.getLastError()!.returnCode, ERR_ADDRESS_NOT_REGISTERED);
      assert.equal(api.getLastError()!.code, 'TE_MEMORY_DETACHED');
      assert.equal(api.unregisterMemory(a), 0, 'by the buffer');
      assert.equal(api.unregisterMemory(bAddr), 0, 'by address');
    } finally {
      await api.close();
    }
  });
});

describe('the same memory registered twice', () => {
  const e = new TransferEngine();
  before(() => e.init('127.0.0.1'));
  after(() => e.close());

  it('the core refuses the same Buffer, overlapping views, and overlaps inside one batch (TE_ADDRESS_OVERLAPPED); disjoint views are fine', () => {
    const buf = Buffer.alloc(16 * KiB);
    const addr = e.registerLocalMemory(buf);
    assert.throws(() => e.registerLocalMemory(buf), { code: 'TE_ADDRESS_OVERLAPPED' });
    assert.throws(() => e.registerLocalMemory(new Uint8Array(buf.buffer, buf.byteOffset + 100, 10)), { code: 'TE_ADDRESS_OVERLAPPED' });
    const ab = new ArrayBuffer(8 * KiB);
    assert.throws(() => e.registerLocalMemoryBatch([new Uint8Array(ab, 0, 4096), new Uint8Array(ab, 4000, 100)]), { code: 'TE_ADDRESS_OVERLAPPED' });
    const [x, y] = e.registerLocalMemoryBatch([new Uint8Array(ab, 0, 4096), new Uint8Array(ab, 4096, 4096)]);
    assert.ok(x! > 0 && y! > x!);
    e.unregisterLocalMemory(addr);
    const again = e.registerLocalMemory(buf);
    assert.ok(again > addr, 'after unregistering, the memory can be registered again (at a new address)');
  });

  it('the facade maps it to ERR_ADDRESS_OVERLAPPED', async () => {
    const api = new Facade({ env: QUIET });
    try {
      assert.equal(await api.initialize('127.0.0.1', 'P2PHANDSHAKE', 'tcp', ''), 0);
      const buf = new Uint8Array(4096);
      assert.equal(api.registerMemory(buf, 4096), 0);
      assert.equal(api.registerMemory(buf.subarray(100), 100), ERR_ADDRESS_OVERLAPPED);
      assert.equal(api.getLastError()!.code, 'TE_ADDRESS_OVERLAPPED');
    } finally {
      await api.close();
    }
  });
});
