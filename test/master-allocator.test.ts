/**
 * The master's per-segment space allocator (src/master/allocator.ts): exact
 * offsets for simple sequences, alignment, coalescing, the caller's bugs
 * (bad sizes, unknown offsets, double frees), a full segment, and a seeded
 * randomized run checked op by op against a simple reference model (the live
 * allocations as a map, the free space as the gaps between them).
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { SegmentAllocator } from '../src/master/allocator.js';
import { mulberry32 } from './fuzz-lib.js';

/** An integer in [lo, hi], log-uniform (as object sizes are). */
const logUniform = (rand: () => number, lo: number, hi: number): number => Math.min(hi, Math.floor(Math.exp(Math.log(lo) + rand() * (Math.log(hi + 1) - Math.log(lo)))));

function shuffle<T>(xs: T[], rand: () => number): T[] {
  for (let i = xs.length - 1; i > 0; i--) {
    const j = Math.floor(rand() * (i + 1));
    [xs[i], xs[j]] = [xs[j]!, xs[i]!];
  }
  return xs;
}

/** Everything freed: one free block of the whole capacity. */
function assertEmpty(a: SegmentAllocator): void {
  assert.equal(a.used, 0);
  assert.equal(a.freeBytes, a.capacity);
  assert.equal(a.allocations, 0);
  assert.equal(a.freeBlocks, 1);
  assert.equal(a.largestFree, a.capacity);
  a.checkInvariants();
}

describe('SegmentAllocator: simple sequences', () => {
  test('allocations are packed from offset 0, rounded up to 8 bytes', () => {
    const a = new SegmentAllocator(1024);
    assert.equal(a.allocate(10), 0);
    assert.equal(a.allocate(1), 16);
    assert.equal(a.allocate(8), 24);
    assert.equal(a.used, 32);
    assert.equal(a.freeBytes, 1024 - 32);
    assert.equal(a.allocations, 3);
    assert.equal(a.freeBlocks, 1);
    assert.equal(a.largestFree, 1024 - 32);
    a.checkInvariants();
  });

  test('a hole is reused by a request that fits it', () => {
    const a = new SegmentAllocator(1024);
    for (const size of [16, 8, 8]) a.allocate(size);
    a.free(16);
    assert.equal(a.freeBlocks, 2);
    assert.equal(a.largestFree, 1024 - 32);
    assert.equal(a.allocate(5), 16);
    assert.equal(a.freeBlocks, 1);
    assert.equal(a.allocate(8), 32, 'the next one goes after the last allocation');
  });

  test('free coalesces with the block before, the block after, and both', () => {
    const a = new SegmentAllocator(100 * 8);
    const offs = [0, 1, 2, 3, 4].map(() => a.allocate(80)!);
    assert.deepEqual(offs, [0, 80, 160, 240, 320]);
    a.free(80);
    a.free(240);
    assert.equal(a.freeBlocks, 3); // [80,160), [240,320), [400,800)
    a.free(0); // merges with the block after
    assert.equal(a.freeBlocks, 3);
    assert.equal(a.largestFree, 400);
    a.free(320); // merges with the block before and the tail
    assert.equal(a.freeBlocks, 2);
    assert.equal(a.largestFree, 800 - 240);
    a.free(160); // merges with both: everything free again
    assertEmpty(a);
    assert.equal(a.allocate(800), 0);
  });

  test('a request of the whole capacity fits an empty segment', () => {
    const a = new SegmentAllocator(1000);
    assert.equal(a.allocate(1000), 0);
    assert.equal(a.freeBlocks, 0);
    assert.equal(a.largestFree, 0);
    assert.equal(a.allocate(1), undefined);
  });

  /** Allocate `sizes` back to back (filling the segment), then free those at the indexes `holes`. */
  function withHoles(sizes: number[], holes: number[]): { a: SegmentAllocator; offs: number[] } {
    const a = new SegmentAllocator(sizes.reduce((s, x) => s + x, 0));
    const offs = sizes.map((s) => a.allocate(s)!);
    assert.equal(a.freeBytes, 0);
    for (const i of holes) a.free(offs[i]!);
    assert.equal(a.freeBlocks, holes.length);
    return { a, offs };
  }

  test('the lowest hole that fits is taken, holes too small are skipped', () => {
    // Holes of 504, 600, 2000 and 2000 bytes, 8-byte allocations between them.
    const { a, offs } = withHoles([504, 8, 600, 8, 2000, 8, 2000, 8], [0, 2, 4, 6]);
    assert.equal(a.allocate(1000), offs[4]);
    assert.equal(a.allocate(1000), offs[4]! + 1000, 'the rest of the same hole');
    assert.equal(a.allocate(1000), offs[6]);
    assert.equal(a.allocate(500), offs[0]);
  });

  test('of the first four holes that fit, in address order, the smallest is taken', () => {
    // Holes of 3000, 2000, 1504, 5000 and 1000 bytes: the exact fit is the fifth.
    const { a, offs } = withHoles([3000, 8, 2000, 8, 1504, 8, 5000, 8, 1000, 8], [0, 2, 4, 6, 8]);
    assert.equal(a.allocate(1000), offs[4]);
    assert.equal(a.allocate(1000), offs[8], 'now the exact fit is among the first four');
    assert.equal(a.allocate(1000), offs[2]);
  });

  test('an exact fit wins over a larger hole before it', () => {
    const { a, offs } = withHoles([3000, 8, 1000, 8, 800, 8, 2000, 8], [0, 2, 4, 6]);
    assert.equal(a.allocate(1000), offs[2]);
    assert.equal(a.allocate(800), offs[4]);
  });

  test('however many holes are too small, a fitting one is found', () => {
    // Ten holes of 4360 bytes, then one of 4600.
    const sizes = [...Array.from({ length: 10 }, () => [4360, 8]).flat(), 4600, 8];
    const holes = sizes.flatMap((s, i) => (s === 8 ? [] : [i]));
    const { a, offs } = withHoles(sizes, holes);
    assert.equal(a.allocate(4500), offs[20]);
    assert.equal(a.allocate(4500), undefined);
    assert.equal(a.largestFree, 4360);
  });

  test('a hole too small is skipped for a larger block; a request larger than every block fails', () => {
    const a = new SegmentAllocator(1000 + 4400 + 1000 + 8000);
    const [, hole, after] = [1000, 4400, 1000].map((s) => a.allocate(s)!);
    a.free(hole!);
    assert.equal(a.allocate(4600), after! + 1000);
    assert.equal(a.allocate(4600), undefined, '4400 + 3400 bytes are free, neither block fits');
    assert.equal(a.freeBytes, 4400 + 8000 - 4600);
  });

  test('a full segment returns undefined until something is freed', () => {
    const a = new SegmentAllocator(64);
    assert.equal(a.allocate(65), undefined, 'larger than the segment');
    assert.equal(a.allocate(32), 0);
    assert.equal(a.allocate(32), 32);
    assert.equal(a.allocate(1), undefined);
    assert.equal(a.freeBytes, 0);
    assert.equal(a.largestFree, 0);
    assert.equal(a.freeBlocks, 0);
    a.free(0);
    assert.equal(a.allocate(33), undefined, 'free space, but no block large enough');
    assert.equal(a.allocate(32), 0);
  });

  test('capacities up to 2^50 are exact', () => {
    const cap = 2 ** 50;
    const a = new SegmentAllocator(cap);
    assert.equal(a.allocate(2 ** 49), 0);
    assert.equal(a.allocate(2 ** 49 - 8), 2 ** 49);
    assert.equal(a.allocate(16), undefined);
    assert.equal(a.allocate(8), cap - 8);
    assert.equal(a.freeBytes, 0);
    a.free(2 ** 49);
    assert.equal(a.largestFree, 2 ** 49 - 8);
    a.free(0);
    a.free(cap - 8);
    assertEmpty(a);
  });
});

describe('SegmentAllocator: alignment', () => {
  test('offsets and reserved lengths are multiples of the alignment', () => {
    const a = new SegmentAllocator(1 << 20, { alignment: 4096 });
    assert.equal(a.allocate(1), 0);
    assert.equal(a.allocate(4097), 4096);
    assert.equal(a.allocate(4096), 3 * 4096);
    assert.equal(a.used, 4 * 4096);
  });

  test('alignment 1 packs bytes exactly', () => {
    const a = new SegmentAllocator(10, { alignment: 1 });
    assert.deepEqual([3, 1, 6].map((s) => a.allocate(s)), [0, 3, 4]);
    assert.equal(a.used, 10);
  });

  test('a capacity that is not a multiple of the alignment: no reservation passes the end', () => {
    const a = new SegmentAllocator(100);
    assert.equal(a.allocate(100), undefined, '100 bytes round up to 104');
    assert.equal(a.allocate(96), 0);
    assert.equal(a.allocate(1), undefined, '4 bytes left, less than one aligned unit');
    assert.equal(a.freeBytes, 4);
    a.free(0);
    assertEmpty(a);
  });

  test('bad capacities and alignments throw RangeError', () => {
    for (const cap of [0, -1, 1.5, NaN, Infinity, 2 ** 53]) assert.throws(() => new SegmentAllocator(cap), RangeError, String(cap));
    for (const alignment of [0, -8, 3, 12, 1.5, NaN]) assert.throws(() => new SegmentAllocator(1024, { alignment }), RangeError, String(alignment));
    assert.equal(new SegmentAllocator(2 ** 53 - 1, { alignment: 2 ** 40 }).allocate(1), 0);
  });
});

describe('SegmentAllocator: the caller\'s bugs', () => {
  test('bad sizes throw RangeError and change nothing', () => {
    const a = new SegmentAllocator(1024);
    a.allocate(8);
    for (const size of [0, -1, 1.5, NaN, Infinity, -Infinity, 2 ** 53]) assert.throws(() => a.allocate(size), RangeError, String(size));
    assert.equal(a.used, 8);
    assert.equal(a.allocations, 1);
    a.checkInvariants();
  });

  test('double free and unknown offsets throw RangeError and change nothing', () => {
    const a = new SegmentAllocator(1024);
    const x = a.allocate(64)!;
    const y = a.allocate(64)!;
    a.free(x);
    assert.throws(() => a.free(x), RangeError, 'double free');
    assert.throws(() => a.free(y + 8), RangeError, 'inside an allocation');
    assert.throws(() => a.free(512), RangeError, 'inside a free block');
    for (const off of [-8, 1024, NaN, 0.5]) assert.throws(() => a.free(off), RangeError, String(off));
    assert.equal(a.used, 64);
    assert.equal(a.allocations, 1);
    a.free(y);
    assertEmpty(a);
  });
});

describe('SegmentAllocator: churn', () => {
  test('freeing everything in random order leaves one free block of the whole capacity', () => {
    const rand = mulberry32(7);
    const a = new SegmentAllocator(64 << 20);
    const live: number[] = [];
    for (;;) {
      const off = a.allocate(logUniform(rand, 1, 256 << 10));
      if (off === undefined) break;
      live.push(off);
    }
    assert.ok(live.length > 100, `${live.length} allocations`);
    assert.ok(a.used > a.capacity * 0.9, `filled to ${a.used}`);
    // Punch random holes and refill them a few times, so free has real merging to do.
    for (let round = 0; round < 3; round++) {
      shuffle(live, rand);
      for (const off of live.splice(0, live.length >> 1)) a.free(off);
      for (let off = a.allocate(logUniform(rand, 1, 256 << 10)); off !== undefined; off = a.allocate(logUniform(rand, 1, 64 << 10))) live.push(off);
      a.checkInvariants();
    }
    for (const off of shuffle(live, rand)) a.free(off);
    assertEmpty(a);
    assert.equal(a.allocate(a.capacity), 0);
  });

  test('100k live allocations', () => {
    const rand = mulberry32(11);
    const a = new SegmentAllocator(2 ** 32);
    const live: number[] = [];
    for (let i = 0; i < 100_000; i++) live.push(a.allocate(logUniform(rand, 1, 64 << 10))!);
    assert.equal(a.allocations, 100_000);
    assert.equal(new Set(live).size, 100_000);
    shuffle(live, rand);
    for (const off of live.splice(0, 50_000)) a.free(off);
    for (let i = 0; i < 50_000; i++) live.push(a.allocate(logUniform(rand, 1, 64 << 10))!);
    assert.ok(live.every((off) => off !== undefined));
    a.checkInvariants();
    for (const off of live) a.free(off);
    assertEmpty(a);
  });

  /**
   * Seeded random allocate/free, checked after every op against a reference:
   * the live allocations (offset -> reserved length); the free space is the
   * gaps between them, each of which must be exactly one free block.
   */
  function randomRun(seed: number, capacity: number, alignment: number, maxSize: number, ops: number): void {
    const rand = mulberry32(seed);
    const a = new SegmentAllocator(capacity, { alignment });
    const live = new Map<number, number>();
    const freed: number[] = [];
    let failures = 0;
    const gaps = (): number[] => {
      const sorted = [...live].sort((x, y) => x[0] - y[0]);
      const out: number[] = [];
      let at = 0;
      for (const [off, len] of sorted) {
        assert.ok(off >= at, `allocations overlap at ${off} (seed ${seed})`);
        if (off > at) out.push(off - at);
        at = off + len;
      }
      assert.ok(at <= capacity, `an allocation passes the end (seed ${seed})`);
      if (at < capacity) out.push(capacity - at);
      return out;
    };
    for (let op = 0; op < ops; op++) {
      const r = rand();
      if (r < 0.55 || live.size === 0) {
        const size = logUniform(rand, 1, maxSize);
        const need = Math.ceil(size / alignment) * alignment;
        const before = gaps();
        const off = a.allocate(size);
        if (off === undefined) {
          failures++;
          assert.ok(before.every((g) => g < need), `undefined although a gap of ${Math.max(...before)} fits ${need} (seed ${seed}, op ${op})`);
        } else {
          assert.equal(off % alignment, 0);
          assert.ok(off >= 0 && off + need <= capacity, `[${off}, ${off + need}) outside the segment`);
          live.set(off, need); // gaps() below checks it overlaps nothing
        }
      } else if (r < 0.98) {
        const offs = [...live.keys()];
        const off = offs[Math.floor(rand() * offs.length)]!;
        a.free(off);
        live.delete(off);
        freed.push(off);
      } else if (freed.length > 0) {
        const off = freed[Math.floor(rand() * freed.length)]!;
        if (!live.has(off)) assert.throws(() => a.free(off), RangeError, 'double free');
      }
      const g = gaps();
      const used = [...live.values()].reduce((s, x) => s + x, 0);
      assert.equal(a.used, used, `used (seed ${seed}, op ${op})`);
      assert.equal(a.freeBytes, capacity - used);
      assert.equal(a.allocations, live.size);
      assert.equal(a.freeBlocks, g.length, `free blocks (seed ${seed}, op ${op}): coalescing`);
      assert.equal(a.largestFree, Math.max(0, ...g), `largestFree (seed ${seed}, op ${op})`);
      if (op % 256 === 0) a.checkInvariants();
    }
    a.checkInvariants();
    assert.ok(failures > 0, 'the run reached a full segment at least once');
    for (const off of live.keys()) a.free(off);
    assertEmpty(a);
  }

  test('random allocate/free against a reference model: mixed sizes, 8-byte alignment', () => {
    for (const seed of [1, 2, 3]) randomRun(seed, 1 << 20, 8, 64 << 10, 4000);
  });

  test('random allocate/free against a reference model: small sizes, alignment 1, odd capacity', () => {
    for (const seed of [4, 5]) randomRun(seed, 10_007, 1, 300, 4000);
  });

  test('random allocate/free against a reference model: 4 KiB alignment, large segment', () => {
    randomRun(6, 2 ** 40 + 4096 * 3, 4096, 2 ** 36, 4000);
  });
});

describe('SegmentAllocator.restore', () => {
  test('rebuilds exactly the live allocations: same counters, same free blocks, the same next offsets', () => {
    const rand = mulberry32(99);
    const a = new SegmentAllocator(1 << 24);
    const live = new Map<number, number>();
    for (let i = 0; i < 3000; i++) {
      if (live.size > 0 && rand() < 0.4) {
        const offs = [...live.keys()];
        const off = offs[Math.floor(rand() * offs.length)]!;
        a.free(off);
        live.delete(off);
      } else {
        const size = 1 + Math.floor(rand() * 20_000);
        const off = a.allocate(size);
        if (off !== undefined) live.set(off, size);
      }
    }
    const b = SegmentAllocator.restore(1 << 24, [...live].map(([offset, size]) => ({ offset, size })).reverse());
    b.checkInvariants();
    assert.deepEqual([b.used, b.allocations, b.freeBlocks, b.largestFree], [a.used, a.allocations, a.freeBlocks, a.largestFree]);
    for (let i = 0; i < 200; i++) {
      const size = 1 + Math.floor(rand() * 50_000);
      assert.equal(b.allocate(size), a.allocate(size), `allocation ${i} after the restore`);
    }
    for (const off of live.keys()) b.free(off); // every restored allocation can be freed
    b.checkInvariants();
  });

  test('refuses overlapping, unaligned or out-of-range allocations', () => {
    assert.throws(() => SegmentAllocator.restore(1024, [{ offset: 0, size: 16 }, { offset: 8, size: 8 }]), RangeError);
    assert.throws(() => SegmentAllocator.restore(1024, [{ offset: 3, size: 8 }]), RangeError);
    assert.throws(() => SegmentAllocator.restore(1024, [{ offset: 1020, size: 8 }]), RangeError);
    assert.throws(() => SegmentAllocator.restore(1024, [{ offset: 0, size: 0 }]), RangeError);
    const empty = SegmentAllocator.restore(1024, []);
    assert.deepEqual([empty.used, empty.freeBlocks, empty.largestFree], [0, 1, 1024]);
  });
});
