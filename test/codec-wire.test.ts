import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import {
  HEADER_SIZE,
  STATUS_SIZE,
  OPCODE_READ,
  OPCODE_WRITE,
  OPCODE_V2_FLAG,
  STATUS_MAGIC,
  STATUS_OK,
  STATUS_ADDR_REJECTED,
  STATUS_OK_FRAME,
  STATUS_REJECTED_FRAME,
  encodeHeader,
  decodeHeader,
  encodeStatus,
  decodeStatus,
  encodeHello,
  OPCODE_HELLO,
  STATUS_WRONG_ENGINE_FRAME,
  STATUS_ENGINE_CONFIRMED_FRAME,
} from '../src/codec/wire.js';
import { MemoryRegistry } from '../src/memory.js';
import { TransferEngineError, ErrorCode } from '../src/errors.js';

function teCode(code: ErrorCode): (e: unknown) => boolean {
  return (e) => {
    assert.ok(e instanceof TransferEngineError, `expected a TransferEngineError, got ${String(e)}`);
    assert.equal(e.code, code);
    return true;
  };
}

const hex = (s: string): Buffer => Buffer.from(s.replace(/\s+/g, ''), 'hex');

/** §1.2: v2 WRITE of 4096 bytes to 0x00007f3a2c000000. */
const REF_HEADER = hex(`
  00 10 00 00 00 00 00 00
  00 00 00 2c 3a 7f 00 00
  81
  00 00 00 00 00 00 00`);

const U64_MAX = (1n << 64n) - 1n;

describe('wire constants', () => {
  test('sizes, opcodes and magic match the reference', () => {
    assert.equal(HEADER_SIZE, 24);
    assert.equal(STATUS_SIZE, 8);
    assert.equal(OPCODE_READ, 0);
    assert.equal(OPCODE_WRITE, 1);
    assert.equal(OPCODE_V2_FLAG, 0x80);
    assert.equal(STATUS_MAGIC, 0x4d435456);
    assert.equal(Buffer.from('VTCM', 'latin1').readUInt32LE(0), STATUS_MAGIC);
  });
});

describe('encodeHeader', () => {
  test('reproduces the §1.2 v2 WRITE example byte for byte (number addr)', () => {
    const buf = Buffer.alloc(HEADER_SIZE);
    encodeHeader(buf, 0, 0x1000, 0x00007f3a2c000000, true, true);
    assert.deepEqual(buf, REF_HEADER);
  });

  test('reproduces the §1.2 example with a bigint addr', () => {
    const buf = Buffer.alloc(HEADER_SIZE);
    encodeHeader(buf, 0, 0x1000, 0x00007f3a2c000000n, true, true);
    assert.deepEqual(buf, REF_HEADER);
  });

  test('opcode byte for each (write, v2) combination', () => {
    const cases: [boolean, boolean, number][] = [
      [false, false, 0x00],
      [true, false, 0x01],
      [false, true, 0x80],
      [true, true, 0x81],
    ];
    for (const [write, v2, op] of cases) {
      const buf = Buffer.alloc(HEADER_SIZE);
      encodeHeader(buf, 0, 1, 0x1000, write, v2);
      assert.equal(buf[16], op, `write=${write} v2=${v2}`);
    }
  });

  test('zeroes the padding and writes only its own 24 bytes', () => {
    const buf = Buffer.alloc(40, 0xaa);
    encodeHeader(buf, 5, 0x1000, 0x00007f3a2c000000n, true, true);
    assert.deepEqual(buf.subarray(5, 5 + HEADER_SIZE), REF_HEADER);
    assert.deepEqual(buf.subarray(22, 29), Buffer.alloc(7, 0));
    assert.ok(buf.subarray(0, 5).every((b) => b === 0xaa), 'bytes before the header untouched');
    assert.ok(buf.subarray(29).every((b) => b === 0xaa), 'bytes after the header untouched');
  });

  test('bigint addresses up to 2^64-1 are written exactly', () => {
    const values = [0n, 1n, 0xffff_ffffn, 0x1_0000_0000n, (1n << 53n) - 1n, 1n << 53n, (1n << 53n) + 1n, 1n << 63n, U64_MAX - 1n, U64_MAX];
    for (const v of values) {
      const buf = Buffer.alloc(HEADER_SIZE);
      encodeHeader(buf, 0, 7, v, false, true);
      assert.equal(buf.readBigUInt64LE(8), v, `addr ${v}`);
      assert.equal(buf.readBigUInt64LE(0), 7n);
    }
  });

  test('safe-integer sizes and addresses round-trip through decodeHeader', () => {
    const values = [0, 1, 0xff, 0x100, 0xffff_ffff, 0x1_0000_0000, 0x1234_5678_9abc, Number.MAX_SAFE_INTEGER];
    for (const v of values) {
      const buf = Buffer.alloc(HEADER_SIZE);
      encodeHeader(buf, 0, v, v, true, false);
      assert.equal(buf.readBigUInt64LE(0), BigInt(v));
      const h = decodeHeader(buf);
      assert.equal(h.size, v);
      assert.equal(h.addr, v);
    }
  });
});

describe('decodeHeader', () => {
  test('decodes the §1.2 example', () => {
    assert.deepEqual(decodeHeader(REF_HEADER), {
      size: 0x1000,
      addr: 0x00007f3a2c000000,
      write: true,
      v2: true,
      opcode: 0x81,
    });
  });

  test('ignores garbage in the padding bytes 17..23', () => {
    const want = decodeHeader(REF_HEADER);
    for (const fill of [0x01, 0x80, 0xff]) {
      const buf = Buffer.from(REF_HEADER);
      buf.fill(fill, 17, 24);
      assert.deepEqual(decodeHeader(buf), want, `padding 0x${fill.toString(16)}`);
    }
    const buf = Buffer.from(REF_HEADER);
    hex('de ad be ef 01 81 7f').copy(buf, 17);
    assert.deepEqual(decodeHeader(buf), want);
  });

  test('every opcode other than WRITE (with or without 0x80) is READ', () => {
    for (let op = 0; op < 256; op++) {
      const buf = Buffer.from(REF_HEADER);
      buf[16] = op;
      const h = decodeHeader(buf);
      assert.equal(h.opcode, op);
      assert.equal(h.write, op === 0x01 || op === 0x81, `opcode 0x${op.toString(16)}`);
      assert.equal(h.v2, op >= 0x80, `opcode 0x${op.toString(16)}`);
    }
  });

  test('named non-WRITE opcodes decode as READ', () => {
    for (const op of [0x00, 0x02, 0x03, 0x11, 0x41, 0x7f, 0x80, 0x82, 0xc1, 0xff]) {
      const buf = Buffer.from(REF_HEADER);
      buf[16] = op;
      assert.equal(decodeHeader(buf).write, false, `opcode 0x${op.toString(16)}`);
    }
  });

  test('decodes at an offset inside a larger buffer', () => {
    const buf = Buffer.alloc(7 + HEADER_SIZE + 3, 0xee);
    REF_HEADER.copy(buf, 7);
    assert.equal(decodeHeader(buf, 7).addr, 0x00007f3a2c000000);
    assert.equal(decodeHeader(buf, 7).size, 0x1000);
  });

  test('fewer than 24 bytes is a typed MALFORMED error', () => {
    for (let n = 0; n < HEADER_SIZE; n++) {
      assert.throws(() => decodeHeader(REF_HEADER.subarray(0, n)), teCode(ErrorCode.MALFORMED), `${n} bytes`);
    }
    assert.throws(() => decodeHeader(Buffer.alloc(30), 7), teCode(ErrorCode.MALFORMED));
    assert.doesNotThrow(() => decodeHeader(Buffer.alloc(30), 6));
  });

  test('values >= 2^53 decode above MAX_SAFE_INTEGER and never resolve', () => {
    const reg = new MemoryRegistry();
    const region = reg.register(Buffer.alloc(8192));
    const big = [1n << 53n, (1n << 53n) + 1n, (1n << 53n) + BigInt(region.addr), 1n << 63n, U64_MAX];
    for (const v of big) {
      const buf = Buffer.alloc(HEADER_SIZE);
      encodeHeader(buf, 0, 16, v, true, true);
      const h = decodeHeader(buf);
      assert.ok(h.addr > Number.MAX_SAFE_INTEGER, `addr ${v} decoded as ${h.addr}`);
      assert.equal(reg.resolve(h.addr, h.size), null, `addr ${v}`);

      encodeHeader(buf, 0, Number.MAX_SAFE_INTEGER, BigInt(region.addr), true, true);
      buf.writeBigUInt64LE(v, 0);
      const h2 = decodeHeader(buf);
      assert.ok(h2.size > Number.MAX_SAFE_INTEGER, `size ${v}`);
      assert.equal(h2.addr, region.addr);
      assert.equal(reg.resolve(h2.addr, h2.size), null, `size ${v}`);
    }
    // Control: the same registry does resolve a sane request.
    assert.notEqual(reg.resolve(region.addr, 16), null);
  });

  test('decoded numbers equal the correctly rounded u64', () => {
    const buf = Buffer.alloc(HEADER_SIZE);
    for (const v of [U64_MAX, (1n << 53n) + 1n, (1n << 53n) + 3n, 0x8000_0000_0000_0401n]) {
      buf.writeBigUInt64LE(v, 8);
      assert.equal(decodeHeader(buf).addr, Number(v), `addr ${v}`);
    }
  });
});

describe('status frames', () => {
  test('STATUS_OK_FRAME is 00 00 00 00 56 54 43 4d', () => {
    assert.deepEqual(STATUS_OK_FRAME, hex('00 00 00 00 56 54 43 4d'));
    assert.equal(STATUS_OK_FRAME.readBigUInt64LE(0), 0x4d435456_00000000n);
  });

  test('STATUS_REJECTED_FRAME is 01 00 00 00 56 54 43 4d', () => {
    assert.deepEqual(STATUS_REJECTED_FRAME, hex('01 00 00 00 56 54 43 4d'));
    assert.equal(STATUS_REJECTED_FRAME.readBigUInt64LE(0), 0x4d435456_00000001n);
  });

  test('decodeStatus reads the reference frames', () => {
    assert.equal(decodeStatus(hex('00 00 00 00 56 54 43 4d')), STATUS_OK);
    assert.equal(decodeStatus(hex('01 00 00 00 56 54 43 4d')), STATUS_ADDR_REJECTED);
    assert.equal(STATUS_OK, 0);
    assert.equal(STATUS_ADDR_REJECTED, 1);
  });

  test('encodeStatus writes at an offset and round-trips any 32-bit code', () => {
    for (const code of [0, 1, 2, 0x7fff_ffff, 0x8000_0000, 0xdead_beef, 0xffff_ffff]) {
      const buf = Buffer.alloc(12, 0xcc);
      encodeStatus(buf, 3, code);
      assert.equal(buf.readBigUInt64LE(3), (BigInt(STATUS_MAGIC) << 32n) | BigInt(code));
      assert.deepEqual(buf.subarray(0, 3), Buffer.alloc(3, 0xcc));
      assert.equal(buf[11], 0xcc);
      assert.equal(decodeStatus(buf, 3), code);
    }
  });

  test('a wrong magic decodes as -1', () => {
    const bad = [
      '00 00 00 00 00 00 00 00', // v1 READ data
      '00 00 00 00 4d 43 54 56', // magic byte-swapped (big endian)
      '56 54 43 4d 00 00 00 00', // halves swapped
      'ff ff ff ff ff ff ff ff',
    ];
    for (const h of bad) assert.equal(decodeStatus(hex(h)), -1, h);
    for (let bit = 32; bit < 64; bit++) {
      const b = Buffer.from(STATUS_OK_FRAME);
      b[bit >> 3] ^= 1 << (bit & 7);
      assert.equal(decodeStatus(b), -1, `bit ${bit} flipped`);
    }
  });

  test('fewer than 8 bytes is a typed MALFORMED error', () => {
    for (let n = 0; n < STATUS_SIZE; n++) {
      assert.throws(() => decodeStatus(STATUS_OK_FRAME.subarray(0, n)), teCode(ErrorCode.MALFORMED), `${n} bytes`);
    }
    assert.throws(() => decodeStatus(Buffer.alloc(10), 3), teCode(ErrorCode.MALFORMED));
    assert.equal(decodeStatus(Buffer.concat([Buffer.alloc(2), STATUS_REJECTED_FRAME]), 2), STATUS_ADDR_REJECTED);
  });
});

describe('identity check (ours)', () => {
  test('the hello is a 24-byte header: size 0, the engine id as the address, opcode 0x92, zero padding', () => {
    const b = Buffer.alloc(HEADER_SIZE + 2, 0xee);
    encodeHello(b, 1, 0x1f_2e3d_4c5b_6a79);
    assert.equal(b.toString('hex'), 'ee' + '0000000000000000' + '796a5b4c3d2e1f00' + '92' + '00000000000000' + 'ee');
    assert.equal(OPCODE_HELLO, 0x92);
    const h = decodeHeader(b, 1);
    assert.deepEqual({ size: h.size, addr: h.addr, write: h.write, v2: h.v2 }, { size: 0, addr: 0x1f_2e3d_4c5b_6a79, write: false, v2: true });
  });

  test('ids outside [1, 2^53) are refused', () => {
    for (const id of [0, -1, 1.5, 2 ** 53, Number.NaN]) {
      assert.throws(() => encodeHello(Buffer.alloc(HEADER_SIZE), 0, id), (e: unknown) => e instanceof TransferEngineError && e.code === ErrorCode.INVALID_ARGUMENT, String(id));
    }
  });

  test('the answers are status frames Mooncake never sends: 5 confirmed, 4 another engine', () => {
    assert.equal(STATUS_ENGINE_CONFIRMED_FRAME.toString('hex'), '050000005654434d');
    assert.equal(STATUS_WRONG_ENGINE_FRAME.toString('hex'), '040000005654434d');
    assert.equal(decodeStatus(STATUS_ENGINE_CONFIRMED_FRAME), 5);
    assert.equal(decodeStatus(STATUS_WRONG_ENGINE_FRAME), 4);
  });
});
