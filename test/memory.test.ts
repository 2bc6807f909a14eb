import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { MemoryRegistry, Region, PAGE_SIZE, ADDRESS_BASE, ADDRESS_BASE_LIMIT, fmtAddr, randomAddressBase } from '../src/memory.js';
import { TransferEngineError, ErrorCode } from '../src/errors.js';

function teCode(code: ErrorCode): (e: unknown) => boolean {
  return (e) => {
    assert.ok(e instanceof TransferEngineError, `expected a TransferEngineError, got ${String(e)}`);
    assert.equal(e.code, code);
    return true;
  };
}

const TWO_53 = 2 ** 53;
const SIZES = [1, 100, 4095, 4096, 4097, 8191, 10_000, 65536, 1 << 20];

function registerAll(reg: MemoryRegistry, sizes: number[]): Region[] {
  return sizes.map((n) => reg.register(Buffer.alloc(n)));
}

describe('MemoryRegistry: address allocation', () => {
  test('constants', () => {
    assert.equal(PAGE_SIZE, 4096);
    assert.equal(ADDRESS_BASE % PAGE_SIZE, 0);
    assert.ok(ADDRESS_BASE > 0 && ADDRESS_BASE < TWO_53);
  });

  test('each registry starts at its own random page-aligned base in [2^44, 2^52)', () => {
    const bases = new Set<number>();
    for (let i = 0; i < 64; i++) {
      const reg = new MemoryRegistry();
      const b = reg.register(Buffer.alloc(1)).addr;
      assert.equal(b, reg.base);
      assert.equal(b % PAGE_SIZE, 0);
      assert.ok(b >= ADDRESS_BASE && b < ADDRESS_BASE_LIMIT, fmtAddr(b));
      bases.add(b);
    }
    // 2^40 - 2^32 possible bases: 64 draws collide with probability about 2e-9.
    assert.equal(bases.size, 64, 'no two registries share a base');
    for (let i = 0; i < 1000; i++) {
      const b = randomAddressBase();
      assert.ok(b % PAGE_SIZE === 0 && b >= ADDRESS_BASE && b < ADDRESS_BASE_LIMIT);
    }
  });

  test('a base can be given; a bad one is refused', () => {
    assert.equal(new MemoryRegistry({ base: ADDRESS_BASE }).register(Buffer.alloc(1)).addr, ADDRESS_BASE);
    for (const base of [0, ADDRESS_BASE + 1, ADDRESS_BASE - PAGE_SIZE, ADDRESS_BASE_LIMIT, 2 ** 53]) {
      assert.throws(() => new MemoryRegistry({ base }), teCode(ErrorCode.INVALID_ARGUMENT), String(base));
    }
  });

  test('addresses are non-zero, page aligned, increasing, gapped and below 2^53', () => {
    const reg = new MemoryRegistry({ base: ADDRESS_BASE });
    const regions = registerAll(reg, SIZES);
    assert.equal(regions[0]!.addr, ADDRESS_BASE);
    for (const [i, r] of regions.entries()) {
      assert.ok(r.addr > 0, 'non-zero');
      assert.equal(r.addr % PAGE_SIZE, 0, `region ${i} aligned`);
      assert.ok(Number.isSafeInteger(r.addr) && r.end < TWO_53, 'below 2^53');
      assert.equal(r.length, SIZES[i]);
      assert.equal(r.end, r.addr + SIZES[i]!);
      if (i > 0) {
        const prev = regions[i - 1]!;
        assert.ok(r.addr > prev.addr, 'increasing');
        assert.ok(r.addr >= prev.end + PAGE_SIZE, `guard page between region ${i - 1} and ${i}`);
      }
    }
    assert.deepEqual(reg.list(), regions);
  });

  test('the gap after a region is not resolvable', () => {
    const reg = new MemoryRegistry();
    const [a, b] = registerAll(reg, [4096, 4096]);
    for (let addr = a!.end; addr < b!.addr; addr += 512) assert.equal(reg.resolve(addr, 1), null, fmtAddr(addr));
    assert.equal(reg.resolve(a!.end, 1), null);
    assert.equal(reg.resolve(b!.addr - 1, 1), null);
  });

  test('addresses are never reused after unregister', () => {
    const reg = new MemoryRegistry();
    const seen = new Set<number>();
    let last = 0;
    for (let i = 0; i < 20; i++) {
      const r = reg.register(Buffer.alloc(4096));
      assert.ok(!seen.has(r.addr));
      assert.ok(r.addr > last);
      seen.add(r.addr);
      last = r.addr;
      reg.unregister(r.addr);
    }
    assert.equal(reg.list().length, 0);
  });

  test('addressOf: the address of a view into registered memory, 0 outside it, once unregistered, or once detached', () => {
    const reg = new MemoryRegistry();
    const mem = new ArrayBuffer(3 * 4096);
    const r = reg.register(new Uint8Array(mem, 4096, 4096));
    assert.equal(reg.addressOf(new Uint8Array(mem, 4096, 1)), r.addr);
    assert.equal(reg.addressOf(new Uint8Array(mem, 4096 + 100)), r.addr + 100);
    assert.equal(reg.addressOf(new Uint8Array(mem, 8191, 1)), r.addr + 4095);
    assert.equal(reg.addressOf(new Uint8Array(mem, 4095, 1)), 0, 'the byte before');
    assert.equal(reg.addressOf(new Uint8Array(mem, 8192, 1)), 0, 'the byte after');
    assert.equal(reg.addressOf(new Uint8Array(4096)), 0, 'other memory');
    reg.unregister(r.addr);
    assert.equal(reg.addressOf(new Uint8Array(mem, 4096, 1)), 0, 'unregistered');
    const moved = new ArrayBuffer(4096);
    const view = new Uint8Array(moved);
    const m = reg.register(view);
    assert.equal(reg.addressOf(view), m.addr);
    structuredClone(moved, { transfer: [moved] });
    assert.equal(reg.addressOf(view), 0, 'detached');
  });

  test('keeps location and remoteAccessible', () => {
    const reg = new MemoryRegistry();
    const d = reg.register(Buffer.alloc(1));
    assert.equal(d.location, '*');
    assert.equal(d.remoteAccessible, true);
    assert.equal(d.pins, 0);
    const c = reg.register(Buffer.alloc(1), { location: 'cpu:0', remoteAccessible: false });
    assert.equal(c.location, 'cpu:0');
    assert.equal(c.remoteAccessible, false);
  });
});

describe('MemoryRegistry: register arguments', () => {
  test('Buffer is zero copy: region bytes alias the caller memory', () => {
    const reg = new MemoryRegistry();
    const buf = Buffer.alloc(64);
    const r = reg.register(buf);
    assert.equal(r.bytes.buffer, buf.buffer);
    r.bytes[10] = 0x5a;
    assert.equal(buf[10], 0x5a);
    buf[20] = 0xa5;
    assert.equal(r.bytes[20], 0xa5);
  });

  test('a Buffer view at an offset keeps its offset and length', () => {
    const reg = new MemoryRegistry();
    const backing = Buffer.alloc(100);
    const view = backing.subarray(30, 70);
    const r = reg.register(view);
    assert.equal(r.length, 40);
    r.bytes[0] = 1;
    r.bytes[39] = 2;
    assert.equal(backing[30], 1);
    assert.equal(backing[69], 2);
    assert.equal(backing[29], 0);
    assert.equal(backing[70], 0);
  });

  test('ArrayBuffer is zero copy', () => {
    const reg = new MemoryRegistry();
    const ab = new ArrayBuffer(32);
    const caller = new Uint8Array(ab);
    const r = reg.register(ab);
    assert.equal(r.length, 32);
    assert.equal(r.bytes.buffer, ab);
    caller[3] = 7;
    assert.equal(r.bytes[3], 7);
    r.bytes[31] = 9;
    assert.equal(caller[31], 9);
  });

  test('plain Uint8Array is accepted', () => {
    const reg = new MemoryRegistry();
    const u = new Uint8Array(16);
    const bytes = reg.register(u).bytes;
    // A fixed-length view of the same memory (never length-tracking).
    assert.equal(bytes.buffer, u.buffer);
    assert.equal(bytes.byteOffset, u.byteOffset);
    assert.equal(bytes.byteLength, 16);
  });

  test('empty memory is INVALID_ARGUMENT', () => {
    const reg = new MemoryRegistry();
    assert.throws(() => reg.register(Buffer.alloc(0)), teCode(ErrorCode.INVALID_ARGUMENT));
    assert.throws(() => reg.register(new ArrayBuffer(0)), teCode(ErrorCode.INVALID_ARGUMENT));
    assert.throws(() => reg.register(new Uint8Array(0)), teCode(ErrorCode.INVALID_ARGUMENT));
    assert.equal(reg.list().length, 0);
  });

  test('other memory types are INVALID_ARGUMENT', () => {
    const reg = new MemoryRegistry();
    const bad: unknown[] = ['abc', 42, null, new Uint16Array(4), new DataView(new ArrayBuffer(4)), [1, 2, 3]];
    for (const m of bad) {
      assert.throws(() => reg.register(m as Uint8Array), teCode(ErrorCode.INVALID_ARGUMENT), String(m));
    }
    assert.equal(reg.list().length, 0);
  });

  test('GPU locations are NOT_SUPPORTED', () => {
    const reg = new MemoryRegistry();
    for (const location of ['cuda:0', 'cuda:7', 'CUDA:1', 'musa:0', 'hip:0', 'maca:0', 'npu:0', 'gpu:0']) {
      assert.throws(() => reg.register(Buffer.alloc(8), { location }), teCode(ErrorCode.NOT_SUPPORTED), location);
    }
    assert.equal(reg.list().length, 0);
    for (const location of ['*', 'cpu:0', 'cpu:1']) assert.equal(reg.register(Buffer.alloc(8), { location }).location, location);
  });

  test('bad options are INVALID_ARGUMENT', () => {
    const reg = new MemoryRegistry();
    assert.throws(() => reg.register(Buffer.alloc(8), { location: '' }), teCode(ErrorCode.INVALID_ARGUMENT));
    assert.throws(() => reg.register(Buffer.alloc(8), { location: 5 as unknown as string }), teCode(ErrorCode.INVALID_ARGUMENT));
    assert.throws(
      () => reg.register(Buffer.alloc(8), { remoteAccessible: 'yes' as unknown as boolean }),
      teCode(ErrorCode.INVALID_ARGUMENT),
    );
    assert.equal(reg.list().length, 0);
  });
});

describe('MemoryRegistry.resolve', () => {
  test('ranges inside one region resolve with the right offset', () => {
    const reg = new MemoryRegistry();
    const [, r] = registerAll(reg, [4096, 10_000, 4096]);
    assert.deepEqual(reg.resolve(r!.addr, 1), { region: r, offset: 0 });
    assert.deepEqual(reg.resolve(r!.addr, 10_000), { region: r, offset: 0 });
    assert.deepEqual(reg.resolve(r!.addr + 123, 456), { region: r, offset: 123 });
    assert.deepEqual(reg.resolve(r!.end - 1, 1), { region: r, offset: 9_999 });
    assert.deepEqual(reg.resolve(r!.addr + 5000, 5000), { region: r, offset: 5000 });
  });

  test('ranges running past an end or spanning two regions are null', () => {
    const reg = new MemoryRegistry();
    const [a, b] = registerAll(reg, [8192, 8192]);
    assert.equal(reg.resolve(a!.addr, 8193), null);
    assert.equal(reg.resolve(a!.end - 1, 2), null);
    assert.equal(reg.resolve(a!.end, 1), null);
    assert.equal(reg.resolve(a!.addr, b!.end - a!.addr), null, 'whole span of both regions');
    assert.equal(reg.resolve(a!.addr + 100, b!.addr - a!.addr), null);
    assert.equal(reg.resolve(b!.end - 10, 11), null);
  });

  test('addresses outside every region are null', () => {
    const reg = new MemoryRegistry();
    const [a] = registerAll(reg, [4096]);
    for (const addr of [0, 1, ADDRESS_BASE - 1, a!.addr - PAGE_SIZE, -1, -ADDRESS_BASE, a!.end + 1_000_000]) {
      assert.equal(reg.resolve(addr, 1), null, String(addr));
    }
    assert.equal(new MemoryRegistry().resolve(ADDRESS_BASE, 1), null, 'empty registry');
  });

  test('zero, negative and non-integer lengths are null', () => {
    const reg = new MemoryRegistry();
    const [a] = registerAll(reg, [4096]);
    for (const len of [0, -1, -4096, 0.5, 1.5, NaN, Infinity, -Infinity, TWO_53, Number.MAX_VALUE]) {
      assert.equal(reg.resolve(a!.addr, len), null, `length ${len}`);
    }
    assert.notEqual(reg.resolve(a!.addr, 1), null, 'control');
  });

  test('non-integer and unsafe addresses are null', () => {
    const reg = new MemoryRegistry();
    const [a] = registerAll(reg, [4096]);
    for (const addr of [a!.addr + 0.5, NaN, Infinity, TWO_53, TWO_53 + a!.addr, 2 ** 64, Number.MAX_SAFE_INTEGER]) {
      assert.equal(reg.resolve(addr, 1), null, `addr ${addr}`);
    }
    assert.equal(reg.resolve(a!.addr, Number.MAX_SAFE_INTEGER), null, 'addr + length overflows the safe range');
  });

  test('agrees with a linear scan over many regions', () => {
    const reg = new MemoryRegistry({ base: ADDRESS_BASE });
    let seed = 12345;
    const rand = (n: number): number => {
      seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
      return seed % n;
    };
    for (let i = 0; i < 300; i++) reg.register(Buffer.alloc(1 + rand(3 * PAGE_SIZE)));
    // Drop some to leave holes.
    for (const r of [...reg.list()]) if (rand(4) === 0) reg.unregister(r.addr);
    const regions = reg.list();
    const lo = ADDRESS_BASE - PAGE_SIZE;
    const hi = regions.at(-1)!.end + PAGE_SIZE;
    let hits = 0;
    for (let i = 0; i < 20_000; i++) {
      const addr = lo + rand(hi - lo);
      const len = 1 + rand(2 * PAGE_SIZE);
      const owner = regions.find((r) => addr >= r.addr && addr + len <= r.end);
      const got = reg.resolve(addr, len);
      if (owner) {
        hits++;
        assert.deepEqual(got, { region: owner, offset: addr - owner.addr });
      } else {
        assert.equal(got, null, `${fmtAddr(addr)}+${len}`);
      }
    }
    assert.ok(hits > 1000, `probe hit rate too low (${hits})`);
  });
});

describe('MemoryRegistry.unregister', () => {
  test('refused with REGION_BUSY while pinned', () => {
    const reg = new MemoryRegistry();
    const r = reg.register(Buffer.alloc(4096));
    r.pins = 2;
    assert.throws(() => reg.unregister(r.addr), teCode(ErrorCode.REGION_BUSY));
    r.pins = 1;
    assert.throws(() => reg.unregister(r.addr), teCode(ErrorCode.REGION_BUSY));
    assert.notEqual(reg.resolve(r.addr, 4096), null, 'still registered');
    r.pins = 0;
    assert.equal(reg.unregister(r.addr), r);
    assert.equal(reg.resolve(r.addr, 1), null);
    assert.equal(reg.list().length, 0);
  });

  test('unknown or non-base addresses are INVALID_ARGUMENT', () => {
    const reg = new MemoryRegistry();
    const r = reg.register(Buffer.alloc(3 * PAGE_SIZE));
    for (const addr of [0, 1, r.addr + 1, r.addr + PAGE_SIZE, r.end - 1, r.end, r.end + PAGE_SIZE, r.addr - PAGE_SIZE, NaN, TWO_53]) {
      assert.throws(() => reg.unregister(addr), teCode(ErrorCode.INVALID_ARGUMENT), String(addr));
    }
    assert.equal(reg.list().length, 1);
    reg.unregister(r.addr);
    assert.throws(() => reg.unregister(r.addr), teCode(ErrorCode.INVALID_ARGUMENT), 'second unregister');
  });

  test('removes only the named region', () => {
    const reg = new MemoryRegistry();
    const [a, b, c] = registerAll(reg, [10, 20, 30]);
    reg.unregister(b!.addr);
    assert.deepEqual(reg.list(), [a, c]);
    assert.equal(reg.resolve(b!.addr, 1), null);
    assert.notEqual(reg.resolve(a!.addr, 10), null);
    assert.notEqual(reg.resolve(c!.addr, 30), null);
  });
});

describe('fmtAddr', () => {
  test('formats numbers and bigints as hex', () => {
    assert.equal(fmtAddr(0x1000_0000_0000), '0x100000000000');
    assert.equal(fmtAddr((1n << 64n) - 1n), '0xffffffffffffffff');
  });
});
