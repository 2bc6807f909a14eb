/**
 * Pure codecs of file segments: the file request header and status codes
 * (src/codec/wire.ts), the descriptor's file_buffers / file endpoint
 * (src/codec/file-buffers.ts, through encode/decodeSegmentDesc), the
 * nvmeof_generic trid and the MC_NVMEOF_GENERIC_* variables. Reference bytes,
 * every rejection, and deterministic fuzz against an independent model.
 */
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import {
  HEADER_SIZE,
  OPCODE_FILE_READ,
  OPCODE_FILE_WRITE,
  STATUS_FILE_REJECTED,
  STATUS_FILE_IO_ERROR,
  STATUS_FILE_REJECTED_FRAME,
  STATUS_FILE_IO_ERROR_FRAME,
  decodeFileHeader,
  decodeHeader,
  decodeStatus,
  encodeFileHeader,
  encodeHeader,
  isFileOpcode,
} from '../src/codec/wire.js';
import { decodeFileBuffers, decodeFileEndpoint, encodeFileBuffers, type FileBufferDesc } from '../src/codec/file-buffers.js';
import { decodeSegmentDesc, encodeSegmentDesc, type SegmentDesc } from '../src/codec/descriptor.js';
import { parseJson, type JsonValue } from '../src/codec/json.js';
import { loadFileConfig, parseTrid } from '../src/file/config.js';
import { TransferEngineError, ErrorCode } from '../src/errors.js';

function teCode(code: ErrorCode, msg?: RegExp): (e: unknown) => boolean {
  return (e) => {
    assert.ok(e instanceof TransferEngineError, `expected a TransferEngineError, got ${String(e)}`);
    assert.equal(e.code, code, e.message);
    if (msg) assert.match(e.message, msg);
    return true;
  };
}

const hex = (s: string): Buffer => Buffer.from(s.replace(/\s+/g, ''), 'hex');

/** xorshift32, as in fuzz-codecs.test.ts: reproducible. */
class Rng {
  private s: number;
  constructor(seed: number) {
    this.s = seed >>> 0 || 1;
  }
  u32(): number {
    let x = this.s;
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    this.s = x >>> 0;
    return this.s;
  }
  int(n: number): number {
    return this.u32() % n;
  }
  chance(p: number): boolean {
    return this.u32() / 0x1_0000_0000 < p;
  }
  bytes(n: number): Buffer {
    const b = Buffer.allocUnsafe(n);
    for (let i = 0; i < n; i++) b[i] = this.u32() & 0xff;
    return b;
  }
}

describe('file request header', () => {
  test('reference bytes: READ of 65536 bytes at offset 0x1234_5000 of file 7', () => {
    const b = Buffer.alloc(HEADER_SIZE, 0xee);
    encodeFileHeader(b, 0, 65536, 0x1234_5000, false, 7);
    assert.deepEqual(
      b,
      hex(`
      00 00 01 00 00 00 00 00
      00 50 34 12 00 00 00 00
      90
      07 00 00 00
      00 00 00`),
    );
    assert.deepEqual(decodeFileHeader(b), { size: 65536, offset: 0x1234_5000, write: false, fileId: 7 });
  });

  test('WRITE with a u32-max file id and a bigint offset', () => {
    const b = Buffer.alloc(HEADER_SIZE);
    encodeFileHeader(b, 0, 4096, (1n << 40n) + 8n, true, 0xffff_ffff);
    assert.equal(b[16], OPCODE_FILE_WRITE);
    assert.deepEqual([...b.subarray(17, 24)], [0xff, 0xff, 0xff, 0xff, 0, 0, 0]);
    assert.deepEqual(decodeFileHeader(b), { size: 4096, offset: 2 ** 40 + 8, write: true, fileId: 0xffff_ffff });
  });

  test('opcodes lie outside Mooncake\'s {0,1} | 0x80, and Mooncake\'s decoder is unchanged by them', () => {
    assert.equal(OPCODE_FILE_READ, 0x90);
    assert.equal(OPCODE_FILE_WRITE, 0x91);
    for (const op of [0x00, 0x01, 0x80, 0x81, 0x02, 0x82, 0x83]) assert.equal(isFileOpcode(op), false);
    assert.equal(isFileOpcode(0x90) && isFileOpcode(0x91), true);
    assert.equal(isFileOpcode(0x10) || isFileOpcode(0x11), false, 'file requests always carry the v2 flag');
    // decodeHeader keeps Mooncake's rule: any non-WRITE opcode is a READ (here of address = file offset).
    const b = Buffer.alloc(HEADER_SIZE);
    encodeFileHeader(b, 0, 10, 20, true, 3);
    const h = decodeHeader(b);
    assert.deepEqual({ size: h.size, addr: h.addr, write: h.write, v2: h.v2, opcode: h.opcode }, { size: 10, addr: 20, write: false, v2: true, opcode: 0x91 });
  });

  test('status frames: rejected and I/O error codes carry the MCTV magic', () => {
    assert.deepEqual(STATUS_FILE_REJECTED_FRAME, hex('02 00 00 00 56 54 43 4d'));
    assert.deepEqual(STATUS_FILE_IO_ERROR_FRAME, hex('03 00 00 00 56 54 43 4d'));
    assert.equal(decodeStatus(STATUS_FILE_REJECTED_FRAME), STATUS_FILE_REJECTED);
    assert.equal(decodeStatus(STATUS_FILE_IO_ERROR_FRAME), STATUS_FILE_IO_ERROR);
  });

  test('bad input: short buffer, memory opcode, non-zero reserved bytes, bad file ids', () => {
    assert.throws(() => decodeFileHeader(Buffer.alloc(23)), teCode(ErrorCode.MALFORMED, /24 bytes/));
    const mem = Buffer.alloc(HEADER_SIZE);
    encodeHeader(mem, 0, 1, 1, true, true);
    assert.throws(() => decodeFileHeader(mem), teCode(ErrorCode.MALFORMED, /not a file request/));
    for (const i of [21, 22, 23]) {
      const b = Buffer.alloc(HEADER_SIZE);
      encodeFileHeader(b, 0, 1, 0, false, 1);
      b[i] = 0x2e; // '.': a path cannot ride in the reserved bytes either
      assert.throws(() => decodeFileHeader(b), teCode(ErrorCode.MALFORMED, /reserved/));
    }
    for (const id of [-1, 1.5, 2 ** 32, Number.NaN]) {
      assert.throws(() => encodeFileHeader(Buffer.alloc(HEADER_SIZE), 0, 1, 0, false, id), teCode(ErrorCode.INVALID_ARGUMENT, /file id/));
    }
  });

  test('fuzz: decodeFileHeader over random and mutated headers (40k) matches a model', () => {
    const rng = new Rng(0xf11e_0001);
    const seen = { ok: 0, malformed: 0 };
    for (let i = 0; i < 40_000; i++) {
      let b: Buffer;
      if (rng.chance(0.6)) {
        b = Buffer.alloc(HEADER_SIZE);
        encodeFileHeader(b, 0, rng.int(1 << 30), BigInt(rng.u32()) * BigInt(rng.u32()), rng.chance(0.5), rng.u32());
        if (rng.chance(0.5)) b[rng.int(HEADER_SIZE)] ^= 1 << rng.int(8);
      } else {
        b = rng.bytes(rng.chance(0.1) ? rng.int(HEADER_SIZE) : HEADER_SIZE);
        if (rng.chance(0.5) && b.length > 16) b[16] = rng.chance(0.5) ? 0x90 : 0x91;
      }
      let out: ReturnType<typeof decodeFileHeader> | null = null;
      try {
        out = decodeFileHeader(b);
      } catch (e) {
        assert.ok(e instanceof TransferEngineError && e.code === ErrorCode.MALFORMED, `untyped error for ${b.toString('hex')}: ${String(e)}`);
      }
      const valid = b.length >= HEADER_SIZE && (b[16] === 0x90 || b[16] === 0x91) && b[21] === 0 && b[22] === 0 && b[23] === 0;
      assert.equal(out !== null, valid, b.toString('hex'));
      if (!out) {
        seen.malformed++;
        continue;
      }
      seen.ok++;
      assert.equal(out.size, Number(b.readBigUInt64LE(0)));
      assert.equal(out.offset, Number(b.readBigUInt64LE(8)));
      assert.equal(out.write, b[16] === 0x91);
      assert.equal(out.fileId, b.readUInt32LE(17));
    }
    assert.ok(seen.ok > 5000 && seen.malformed > 5000, JSON.stringify(seen));
  });
});

const FILES: FileBufferDesc[] = [
  { id: 1, path: '/data/f0', size: 1 << 30, align: 0, owner: { pid: 4242, fd: 17, dev: 2049n, ino: (1n << 64n) - 1n } },
  { id: 0xffff_ffff, path: '/dev/nvme0n1', size: Number.MAX_SAFE_INTEGER, align: 4096 },
];

function baseDesc(extra: Partial<SegmentDesc> = {}): SegmentDesc {
  return { name: '10.0.0.7:15342', protocol: 'tcp', tcpDataPort: 16021, tcpProtoVersion: 2, timestamp: 't', buffers: [{ name: 'n', addr: 4096n, length: 8n }], ...extra };
}

describe('descriptor: file_buffers and the file endpoint', () => {
  test('round trip through encode/decodeSegmentDesc, with the JSON field names of Mooncake PR #793', () => {
    const desc = baseDesc({ fileBuffers: FILES, fileEndpoint: { host: '127.0.0.1', port: 4420 } });
    const text = encodeSegmentDesc(desc);
    const raw = parseJson(text, { bigintIntegers: true }) as { [k: string]: JsonValue };
    assert.deepEqual(raw['file_buffers'], [
      { id: 1n, path: '/data/f0', size: BigInt(1 << 30), align: 0n, pid: 4242n, fd: 17n, dev: 2049n, ino: (1n << 64n) - 1n },
      { id: 0xffff_ffffn, path: '/dev/nvme0n1', size: BigInt(Number.MAX_SAFE_INTEGER), align: 4096n },
    ]);
    assert.equal(raw['file_data_port'], 4420n);
    assert.equal(raw['file_data_host'], '127.0.0.1');
    assert.deepEqual(decodeSegmentDesc(text), desc);
  });

  test('a memory-only descriptor is byte-for-byte what it was: no file fields', () => {
    const text = encodeSegmentDesc(baseDesc({ fileBuffers: [] }));
    assert.doesNotMatch(text, /file_/);
    assert.deepEqual(decodeSegmentDesc(text), baseDesc());
  });

  test('decoding Mooncake-shaped JSON with file_buffers keeps the memory buffers usable (the fields are additive)', () => {
    const text = '{"buffers":[{"addr":4096,"length":8,"name":"n"}],"file_buffers":[{"id":3,"path":"/x","size":4096}],"name":"a:1","protocol":"tcp","tcp_data_port":2}';
    const d = decodeSegmentDesc(text);
    assert.deepEqual(d.buffers, [{ name: 'n', addr: 4096n, length: 8n }]);
    assert.deepEqual(d.fileBuffers, [{ id: 3, path: '/x', size: 4096, align: 0 }], 'align defaults to 0 (Mooncake publishes 0)');
  });

  test('the owner handle (pid, fd, dev, ino) is a hint: missing or malformed, the entry stays and has none', () => {
    const base = { id: 1n, path: '/x', size: 4096n };
    const good = { pid: 7n, fd: 3n, dev: 2049n, ino: 12n };
    assert.deepEqual(decodeFileBuffers([{ ...base, ...good }])[0]!.owner, { pid: 7, fd: 3, dev: 2049n, ino: 12n });
    const bad: Array<{ [k: string]: JsonValue }> = [
      { ...good, pid: 0n }, { ...good, pid: 1n << 31n }, { ...good, fd: -1n }, { ...good, fd: 1.5 }, { ...good, dev: 1n << 64n },
      { ...good, ino: -1n }, { ...good, ino: '12' }, { pid: 7n, fd: 3n, dev: 2049n },
    ];
    for (const extra of bad) {
      assert.deepEqual(decodeFileBuffers([{ ...base, ...extra }]), [{ id: 1, path: '/x', size: 4096, align: 0 }], JSON.stringify(extra, (_k, x: unknown) => (typeof x === 'bigint' ? `${x}n` : x)));
    }
  });

  test('bad file_buffers are MALFORMED, naming the entry', () => {
    const bad: Array<[JsonValue, RegExp]> = [
      [{}, /must be an array/],
      [[1], /\[0\] must be an object/],
      [[{ id: 1.5, path: '/x', size: 1n }], /id must be an integer/],
      [[{ id: -1n, path: '/x', size: 1n }], /id -1 is outside/],
      [[{ id: 1n << 32n, path: '/x', size: 1n }], /id 4294967296 is outside/],
      [[{ id: 1n, path: '', size: 1n }], /path must be a non-empty string/],
      [[{ id: 1n, size: 1n }], /path must be a non-empty string/],
      [[{ id: 1n, path: '/x', size: 0n }], /size 0 is outside/],
      [[{ id: 1n, path: '/x', size: 1n << 53n }], /size 9007199254740992 is outside/],
      [[{ id: 1n, path: '/x', size: 1n, align: 3n }], /not a power of two/],
      [[{ id: 1n, path: '/x', size: 1n, align: 1n << 31n }], /align .* is outside/],
      [[{ id: 1n, path: '/x', size: 1n }, { id: 1n, path: '/y', size: 1n }], /\[1\]\.id 1 appears twice/],
    ];
    for (const [v, re] of bad) assert.throws(() => decodeFileBuffers(v), teCode(ErrorCode.MALFORMED, re), JSON.stringify(v, (_k, x: unknown) => (typeof x === 'bigint' ? `${x}n` : x)));
    assert.deepEqual(decodeFileBuffers(undefined), []);
    assert.equal(encodeFileBuffers([]), undefined);
    // Through the whole descriptor:
    assert.throws(() => decodeSegmentDesc('{"name":"a:1","protocol":"tcp","file_buffers":[{"id":1,"path":"/x","size":1.0}]}'), teCode(ErrorCode.MALFORMED, /size must be an integer/));
  });

  test('file endpoint: port 1-65535, host optional, host without port refused', () => {
    assert.equal(decodeFileEndpoint(undefined, undefined), undefined);
    assert.deepEqual(decodeFileEndpoint(undefined, 4420n), { port: 4420 });
    assert.deepEqual(decodeFileEndpoint('::1', 1n), { host: '::1', port: 1 });
    assert.throws(() => decodeFileEndpoint(undefined, 0n), teCode(ErrorCode.MALFORMED, /file_data_port/));
    assert.throws(() => decodeFileEndpoint(undefined, 65536n), teCode(ErrorCode.MALFORMED, /file_data_port/));
    assert.throws(() => decodeFileEndpoint('h', undefined), teCode(ErrorCode.MALFORMED, /without "file_data_port"/));
    assert.throws(() => decodeFileEndpoint('', 1n), teCode(ErrorCode.MALFORMED, /file_data_host/));
  });

  test('fuzz: random file_buffers entries decode or fail typed, and valid ones round-trip (5k)', () => {
    const rng = new Rng(0xf11e_0002);
    const ints = [0n, 1n, 7n, 4096n, 4097n, (1n << 32n) - 1n, 1n << 32n, (1n << 53n) - 1n, 1n << 53n, -1n];
    const pick = <T>(xs: readonly T[]): T => xs[rng.int(xs.length)]!;
    let ok = 0;
    for (let i = 0; i < 5000; i++) {
      const entries: JsonValue[] = Array.from({ length: rng.int(4) }, () => {
        const e: { [k: string]: JsonValue } = {};
        if (rng.chance(0.95)) e['id'] = rng.chance(0.9) ? pick(ints) : 1.5;
        if (rng.chance(0.95)) e['path'] = rng.chance(0.9) ? `/f${rng.int(10)}` : pick(['', 3n, null]);
        if (rng.chance(0.95)) e['size'] = rng.chance(0.9) ? pick(ints) : '4096';
        if (rng.chance(0.7)) e['align'] = pick([0n, 512n, 4096n, 3n, 1n << 31n]);
        return e;
      });
      let files: FileBufferDesc[] | null = null;
      try {
        files = decodeFileBuffers(entries);
      } catch (e) {
        assert.ok(e instanceof TransferEngineError && e.code === ErrorCode.MALFORMED, String(e));
        continue;
      }
      ok++;
      const text = encodeSegmentDesc(baseDesc({ fileBuffers: files }));
      assert.deepEqual(decodeSegmentDesc(text).fileBuffers ?? [], files);
      for (const f of files) {
        assert.ok(Number.isSafeInteger(f.size) && f.size > 0 && f.id >= 0 && f.id <= 0xffff_ffff && f.path.length > 0);
        assert.ok(f.align === 0 || (f.align & (f.align - 1)) === 0);
      }
    }
    assert.ok(ok > 500, `only ${ok} decoded`);
  });
});

describe('nvmeof_generic trid and MC_NVMEOF_GENERIC_* settings', () => {
  test('the generic NVMe-oF transport\'s trid strings', () => {
    assert.deepEqual(parseTrid('trtype=tcp adrfam=ipv4 traddr=127.0.0.1 trsvcid=4420'), { host: '127.0.0.1', port: 4420 });
    assert.deepEqual(parseTrid('  trtype:tcp   traddr:::1 trsvcid:4421 adrfam=ipv6 '), { host: '::1', port: 4421 });
    assert.deepEqual(parseTrid('trtype=TCP traddr=0.0.0.0 trsvcid=1'), { host: '0.0.0.0', port: 1 });
  });

  test('bad trids: clear errors; rdma is NOT_SUPPORTED because the wire is our TCP protocol', () => {
    const cases: Array<[string, ErrorCode, RegExp]> = [
      ['', ErrorCode.INVALID_ARGUMENT, /trtype=tcp/],
      ['trtype=rdma traddr=1.2.3.4 trsvcid=4420', ErrorCode.NOT_SUPPORTED, /only trtype=tcp/],
      ['traddr=1.2.3.4 trsvcid=4420', ErrorCode.NOT_SUPPORTED, /trtype ""/],
      ['trtype=tcp trsvcid=4420', ErrorCode.INVALID_ARGUMENT, /traddr/],
      ['trtype=tcp traddr=host.example trsvcid=4420', ErrorCode.INVALID_ARGUMENT, /IP address/],
      ['trtype=tcp traddr=1.2.3.4', ErrorCode.INVALID_ARGUMENT, /trsvcid/],
      ['trtype=tcp traddr=1.2.3.4 trsvcid=70000', ErrorCode.INVALID_ARGUMENT, /trsvcid/],
      ['trtype=tcp traddr=1.2.3.4 trsvcid=44x', ErrorCode.INVALID_ARGUMENT, /trsvcid/],
      ['trtype=tcp traddr=1.2.3.4 trsvcid=1 adrfam=ipv6', ErrorCode.INVALID_ARGUMENT, /adrfam/],
      ['trtype=tcp traddr=1.2.3.4 trsvcid=1 color=blue', ErrorCode.INVALID_ARGUMENT, /unknown trid option "color"/],
      ['trtype tcp', ErrorCode.INVALID_ARGUMENT, /not key=value/],
      ['trtype= traddr=1.2.3.4', ErrorCode.INVALID_ARGUMENT, /not key=value/],
    ];
    for (const [text, code, re] of cases) assert.throws(() => parseTrid(text), teCode(code, re), text);
  });

  test('environment: defaults, accepted spellings, and BAD_ENV naming the variable', () => {
    assert.deepEqual(loadFileConfig({}), { workers: 8, directIO: false, sameHost: true });
    assert.deepEqual(loadFileConfig({ MC_NVMEOF_GENERIC_NUM_WORKERS: ' 16 ', MC_NVMEOF_GENERIC_DIRECT_IO: 'on' }), { workers: 16, directIO: true, sameHost: true });
    assert.deepEqual(loadFileConfig({ MC_NVMEOF_GENERIC_DIRECT_IO: 'OFF', TE_FILE_SAME_HOST: '0' }), { workers: 8, directIO: false, sameHost: false });
    assert.throws(() => loadFileConfig({ TE_FILE_SAME_HOST: 'sometimes' }), teCode(ErrorCode.BAD_ENV, /TE_FILE_SAME_HOST/));
    for (const v of ['0', '-1', '257', '1.5', 'eight', '0x10']) {
      assert.throws(() => loadFileConfig({ MC_NVMEOF_GENERIC_NUM_WORKERS: v }), teCode(ErrorCode.BAD_ENV, /MC_NVMEOF_GENERIC_NUM_WORKERS/), v);
    }
    assert.throws(() => loadFileConfig({ MC_NVMEOF_GENERIC_DIRECT_IO: 'maybe' }), teCode(ErrorCode.BAD_ENV, /MC_NVMEOF_GENERIC_DIRECT_IO/));
  });
});
