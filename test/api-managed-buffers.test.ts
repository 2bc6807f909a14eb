/**
 * Managed buffers: the buddy allocator on its own (classes, lazy chunks,
 * coalescing, a long randomized run with its invariants checked), then through
 * the engine with real registered memory (misuse leaves the pool intact).
 */
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { BuddyAllocator, MOONCAKE_BUDDY, type BuddyConfig } from '../src/api/managed-buffers.js';
import { ApiFailure } from '../src/api/codes.js';
import {
  TransferEngine,
  ERR_INVALID_MANAGED_BUFFER,
  ERR_ADDRESS_NOT_REGISTERED,
  ERR_INVALID_ARGUMENT,
  ERR_NOT_INITIALIZED,
  ERR_REGION_BUSY,
  ERR_ADDRESS_OVERLAPPED,
  ERR_CLOSED,
} from '../src/index.js';
import { spawnPeer, sha256, type PeerProcess } from './helpers.js';
import { fillPattern, patternBuffer } from './pattern.js';

const KiB = 1024;
const MiB = 1024 * KiB;
const QUIET = { MC_LOG_LEVEL: 'ERROR' };

/** A small allocator (16 B .. 256 B blocks, 1 KiB chunks) so that a run covers every path quickly. */
const SMALL: BuddyConfig = { minBlock: 16, classes: 5, chunkSize: 1024 };

function smallAllocator(): { a: BuddyAllocator; chunks: number[] } {
  const chunks: number[] = [];
  let next = 0x10000;
  const a = new BuddyAllocator(SMALL, (size) => {
    const base = next;
    next += size + 4096; // chunks are not adjacent, as in the real registry (guard pages)
    chunks.push(base);
    return base;
  });
  return { a, chunks };
}

function managedFailure(returnCode: number): (e: unknown) => boolean {
  return (e) => e instanceof ApiFailure && e.returnCode === returnCode;
}

/** xorshift: reproducible randomness. */
function rng(seed: number): () => number {
  let x = seed >>> 0 || 1;
  return () => {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    return x / 2 ** 32;
  };
}

describe('buddy allocator', () => {
  test("Mooncake's classes: 8 KiB to 256 MiB, larger requests are not the buddy's", () => {
    const a = new BuddyAllocator(MOONCAKE_BUDDY, () => 0);
    assert.equal(a.maxBlock, 256 * MiB);
    assert.equal(a.classOf(1), 0);
    assert.equal(a.classOf(8 * KiB), 0);
    assert.equal(a.classOf(8 * KiB + 1), 1);
    assert.equal(a.classOf(MiB), 7);
    assert.equal(a.classOf(256 * MiB), 15);
    assert.equal(a.classOf(256 * MiB + 1), -1);
  });

  test('chunks are created lazily, 2 GiB each, and split into 256 MiB pieces', () => {
    const sizes: number[] = [];
    const a = new BuddyAllocator(MOONCAKE_BUDDY, (size) => {
      sizes.push(size);
      return 0x1000_0000_0000 + sizes.length * 4 * 1024 * MiB;
    });
    assert.equal(a.chunkCount, 0);
    const x = a.alloc(8 * KiB);
    assert.deepEqual(sizes, [2048 * MiB]);
    const free = a.freeCounts();
    assert.equal(free[15], 7, 'seven untouched 256 MiB pieces');
    for (let c = 0; c < 15; c++) assert.equal(free[c], 1, `one free buddy left in class ${c} by the split`);
    a.freeBlock(x, 8 * KiB);
    assert.deepEqual(a.freeCounts(), [...Array(15).fill(0), 8], 'freeing merges all the way back up');
    a.checkInvariants();
    for (let i = 0; i < 8; i++) a.alloc(256 * MiB);
    assert.equal(a.chunkCount, 1);
    a.alloc(256 * MiB);
    assert.equal(a.chunkCount, 2, 'a second chunk only when the first is full');
    a.checkInvariants();
  });

  test('freed buddies coalesce: a pool cut into small blocks returns to whole pieces', () => {
    const { a } = smallAllocator();
    const blocks: number[] = [];
    for (let i = 0; i < 64; i++) blocks.push(a.alloc(16)); // the whole 1 KiB chunk in 16 B blocks
    assert.equal(a.chunkCount, 1);
    assert.deepEqual(a.freeCounts(), [0, 0, 0, 0, 0]);
    // Free in an order that never frees two buddies back to back.
    for (const b of [...blocks.filter((_, i) => i % 2 === 0), ...blocks.filter((_, i) => i % 2 === 1)]) a.freeBlock(b, 16);
    assert.deepEqual(a.freeCounts(), [0, 0, 0, 0, 4]);
    a.checkInvariants();
    for (let i = 0; i < 4; i++) a.alloc(256);
    assert.equal(a.chunkCount, 1, 'the four whole pieces serve the largest class without a new chunk');
  });

  test('double free, wrong length and foreign addresses are refused and change nothing', () => {
    const { a, chunks } = smallAllocator();
    const x = a.alloc(20); // class 32 B
    const y = a.alloc(100); // class 128 B
    const before = a.freeCounts();
    assert.throws(() => a.freeBlock(x, 32), managedFailure(ERR_INVALID_MANAGED_BUFFER), 'same class, but not the length it was allocated with');
    assert.throws(() => a.freeBlock(x + 16, 20), managedFailure(ERR_INVALID_MANAGED_BUFFER), 'inside a block, not its start');
    assert.throws(() => a.freeBlock(12345, 20), managedFailure(ERR_INVALID_MANAGED_BUFFER), 'foreign address');
    assert.throws(() => a.freeBlock(chunks[0]! + 1024 + 10, 20), managedFailure(ERR_INVALID_MANAGED_BUFFER), 'just past the chunk');
    assert.deepEqual(a.freeCounts(), before);
    a.checkInvariants();
    a.freeBlock(x, 20);
    assert.throws(() => a.freeBlock(x, 20), managedFailure(ERR_INVALID_MANAGED_BUFFER), 'double free');
    a.checkInvariants();
    assert.equal(a.allocation(y)?.length, 100, 'the other buffer is untouched');
    assert.equal(a.blockContaining(y + 99)?.addr, y);
    assert.equal(a.blockContaining(x), undefined, 'the freed block contains nothing any more');
  });

  test('randomized alloc/free run: invariants hold at every step, nothing overlaps, everything merges back', () => {
    const { a } = smallAllocator();
    const rand = rng(20260522);
    const live = new Map<number, number>(); // addr -> length
    let refused = 0;
    for (let step = 0; step < 4000; step++) {
      const r = rand();
      if (r < 0.55 || live.size === 0) {
        const length = 1 + Math.floor(rand() * 256);
        const addr = a.alloc(length);
        for (const [b, len] of live) {
          assert.ok(addr + length <= b || b + len <= addr, `step ${step}: new [${addr}, +${length}) overlaps [${b}, +${len})`);
        }
        live.set(addr, length);
      } else if (r < 0.9) {
        const keys = [...live.keys()];
        const addr = keys[Math.floor(rand() * keys.length)]!;
        a.freeBlock(addr, live.get(addr)!);
        live.delete(addr);
      } else {
        // Misuse: a wrong length, an address inside a block, or a double free. Must be refused, harmlessly.
        const keys = [...live.keys()];
        const addr = keys[Math.floor(rand() * keys.length)]!;
        const len = live.get(addr)!;
        const before = a.freeCounts();
        const kind = Math.floor(rand() * 3);
        const bad = kind === 0 ? () => a.freeBlock(addr, len + 1) : kind === 1 ? () => a.freeBlock(addr + 1, len) : () => a.freeBlock(addr - 16 * 1024, len);
        assert.throws(bad, managedFailure(ERR_INVALID_MANAGED_BUFFER));
        assert.deepEqual(a.freeCounts(), before);
        refused++;
      }
      a.checkInvariants();
      assert.equal(a.allocationCount, live.size);
    }
    assert.ok(refused > 100, 'the run exercised misuse');
    for (const [addr, len] of live) a.freeBlock(addr, len);
    a.checkInvariants();
    const free = a.freeCounts();
    assert.deepEqual(free.slice(0, 4), [0, 0, 0, 0], 'no small fragments left');
    assert.equal(free[4], a.chunkCount * 4, 'every chunk is whole again');
  });
});

describe('managed buffers through the engine', () => {
  let engine: TransferEngine;
  let peer: PeerProcess;

  before(async () => {
    engine = new TransferEngine({ env: { ...process.env, ...QUIET } });
    assert.equal(await engine.initialize('127.0.0.1', 'P2PHANDSHAKE', 'tcp', ''), 0);
    peer = await spawnPeer();
  });

  after(async () => {
    await engine.close();
    await peer.stop();
  });

  test('allocate, write, read back, free; misuse gets codes and the pool stays usable', () => {
    const addr = engine.allocateManagedBuffer(MiB);
    assert.ok(addr > 0);
    const data = Buffer.from('Test data for managed buffer');
    assert.equal(engine.writeBytesToBuffer(addr, data, data.length), 0);
    assert.deepEqual(engine.readBytesFromBuffer(addr, data.length), data);

    assert.equal(engine.freeManagedBuffer(addr, MiB - 1), ERR_INVALID_MANAGED_BUFFER, 'wrong length');
    assert.match(engine.getLastError()!.message, /allocated with length 1048576/);
    assert.deepEqual(engine.readBytesFromBuffer(addr, data.length), data, 'still allocated after the refused free');
    assert.equal(engine.freeManagedBuffer(addr + 8192, MiB), ERR_INVALID_MANAGED_BUFFER, 'not the start');
    assert.equal(engine.freeManagedBuffer(12345, MiB), ERR_INVALID_MANAGED_BUFFER, 'foreign address');
    assert.equal(engine.freeManagedBuffer(addr, MiB), 0);
    assert.equal(engine.freeManagedBuffer(addr, MiB), ERR_INVALID_MANAGED_BUFFER, 'double free');
    assert.equal(engine.readBytesFromBuffer(addr, 4), null, 'freed memory cannot be read');
    assert.equal(engine.getLastError()!.returnCode, ERR_ADDRESS_NOT_REGISTERED);
    assert.equal(engine.writeBytesToBuffer(addr, data, 4), ERR_ADDRESS_NOT_REGISTERED, 'nor written');

    const again = engine.allocateManagedBuffer(MiB);
    assert.equal(again, addr, 'the freed buffer is reused (it merged and split again)');
    assert.equal(engine.freeManagedBuffer(again, MiB), 0);
  });

  test('bad lengths give 0 and the reason; a wrong type is a TypeError', () => {
    for (const bad of [0, -1, 1.5, Number.NaN]) {
      assert.equal(engine.allocateManagedBuffer(bad), 0, `length ${bad}`);
      assert.equal(engine.getLastError()!.returnCode, ERR_INVALID_ARGUMENT);
    }
    assert.throws(() => engine.allocateManagedBuffer('1024' as unknown as number), TypeError);
    assert.throws(() => (engine.freeManagedBuffer as (...a: unknown[]) => number)(1), TypeError);
  });

  test('a buffer above 256 MiB is registered on its own and unregistered when freed', () => {
    const size = 256 * MiB + 4096;
    const core = engine.getEngine()!;
    const regions = (): number => core.getLocalSegmentDescriptor().buffers.length;
    const n0 = regions();
    const addr = engine.allocateManagedBuffer(size);
    assert.ok(addr > 0);
    assert.equal(regions(), n0 + 1);
    assert.ok(core.getLocalSegmentDescriptor().buffers.some((b) => Number(b.addr) === addr && Number(b.length) === size));
    assert.equal(engine.writeBytesToBuffer(addr + size - 3, Buffer.from('end'), 3), 0);
    assert.equal(engine.freeManagedBuffer(addr, 256 * MiB), ERR_INVALID_MANAGED_BUFFER, 'wrong length');
    assert.equal(regions(), n0 + 1);
    assert.equal(engine.freeManagedBuffer(addr, size), 0);
    assert.equal(regions(), n0, 'its region is gone');
    assert.equal(engine.readBytesFromBuffer(addr, 1), null);
    assert.equal(engine.freeManagedBuffer(addr, size), ERR_INVALID_MANAGED_BUFFER, 'double free');
  });

  test('managed buffers move data to and from a peer; one in use by a batch cannot be freed', async () => {
    const size = 4 * MiB + 5;
    const src = engine.allocateManagedBuffer(size);
    const dst = engine.allocateManagedBuffer(size);
    assert.ok(src > 0 && dst > 0);
    const data = patternBuffer(size, 31);
    assert.equal(engine.writeBytesToBuffer(src, data, size), 0);
    const remote = await peer.register(size);

    const id = await engine.transferSubmitWrite(peer.segmentName, src, remote, size);
    assert.ok(id >= 1, `batch id ${id}`);
    // Until its batch is collected, the buffer belongs to the transfer.
    assert.equal(engine.freeManagedBuffer(src, size), ERR_REGION_BUSY);
    let st = 0;
    while ((st = engine.transferCheckStatus(id)) === 0) await new Promise((r) => setTimeout(r, 2));
    assert.equal(st, 1);
    assert.equal(await peer.hash(remote, size), sha256(data));

    assert.equal(await engine.transferSyncRead(peer.segmentName, dst, remote, size), 0);
    assert.equal(sha256(engine.readBytesFromBuffer(dst, size)!), sha256(data));
    assert.equal(engine.freeManagedBuffer(src, size), 0);

    // A freed buffer is not a transfer source any more: refused before anything is sent.
    const served = (await peer.call<{ requestsServed: number }>('stats')).requestsServed;
    assert.equal(await engine.transferSyncWrite(peer.segmentName, src, remote, size), ERR_ADDRESS_NOT_REGISTERED);
    assert.equal((await peer.call<{ requestsServed: number }>('stats')).requestsServed, served);
    // A range running past the end of a live buffer is refused too, though its chunk is registered.
    assert.equal(await engine.transferSyncWrite(peer.segmentName, dst, remote, size + 1), ERR_ADDRESS_NOT_REGISTERED);
    assert.equal(engine.freeManagedBuffer(dst, size), 0);
  });

  test('a peer writes into a managed buffer by address', async () => {
    const size = 64 * KiB;
    const addr = engine.allocateManagedBuffer(size);
    const src = await peer.register(size, 77);
    const r = await peer.call<{ statuses: Array<{ status: number }> }>('transfer', {
      segment: engine.getEngine()!.segmentName,
      requests: [{ op: 'write', source: src, target: String(addr), length: size }],
    });
    assert.equal(r.statuses[0]!.status, 4 /* COMPLETED */);
    const want = Buffer.alloc(size);
    fillPattern(want, 77);
    assert.deepEqual(engine.readBytesFromBuffer(addr, size), want);
    assert.equal(engine.freeManagedBuffer(addr, size), 0);
  });

  test('registerMemory on managed memory records the range; twice is an overlap; unregister ends it', () => {
    const addr = engine.allocateManagedBuffer(64 * KiB);
    assert.equal(engine.registerMemory(addr, 64 * KiB), 0);
    assert.equal(engine.registerMemory(addr + 4096, 100), ERR_ADDRESS_OVERLAPPED);
    assert.equal(engine.unregisterMemory(addr), 0);
    assert.equal(engine.unregisterMemory(addr), ERR_ADDRESS_NOT_REGISTERED);
    assert.equal(engine.registerMemory(addr, 64 * KiB + 1), ERR_ADDRESS_NOT_REGISTERED, 'runs past the buffer');
    assert.equal(engine.freeManagedBuffer(addr, 64 * KiB), 0);
    assert.equal(engine.registerMemory(addr, 100), ERR_ADDRESS_NOT_REGISTERED, 'freed');
  });
});

test('managed buffers before initialize and after close', async () => {
  const e = new TransferEngine({ env: { ...process.env, ...QUIET } });
  assert.equal(e.allocateManagedBuffer(4096), 0);
  assert.equal(e.getLastError()!.returnCode, ERR_NOT_INITIALIZED);
  assert.equal(e.freeManagedBuffer(0x1000_0000_0000, 4096), ERR_NOT_INITIALIZED);
  assert.equal(await e.initialize('127.0.0.1', 'P2PHANDSHAKE', 'tcp', ''), 0);
  const addr = e.allocateManagedBuffer(4096);
  assert.ok(addr > 0);
  await e.close();
  assert.equal(e.allocateManagedBuffer(4096), 0);
  assert.equal(e.getLastError()!.returnCode, ERR_CLOSED);
  assert.equal(e.freeManagedBuffer(addr, 4096), ERR_CLOSED);
});
