import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import {
  HandshakeType,
  HandshakeFrameDecoder,
  DEFAULT_MAX_FRAME,
  encodeHandshakeFrame,
  decodeHandshakeFrame,
  type HandshakeFrame,
} from '../src/codec/handshake.js';
import { TransferEngineError, ErrorCode } from '../src/errors.js';

function teCode(code: ErrorCode): (e: unknown) => boolean {
  return (e) => {
    assert.ok(e instanceof TransferEngineError, `expected a TransferEngineError, got ${String(e)}`);
    assert.equal(e.code, code);
    return true;
  };
}

const hex = (s: string): Buffer => Buffer.from(s.replace(/\s+/g, ''), 'hex');

/** §2.5: probe request, len=4, type 3, "{}\n". */
const PROBE_FRAME = hex('04 00 00 00 00 00 00 00 03 7b 7d 0a');

function lengthPrefix(len: bigint): Buffer {
  const b = Buffer.alloc(8);
  b.writeBigUInt64LE(len);
  return b;
}

/** Push `bytes` in the given chunk sizes; returns the result of each push. */
function feed(d: HandshakeFrameDecoder, bytes: Buffer, sizes: number[]): (HandshakeFrame | null)[] {
  const out: (HandshakeFrame | null)[] = [];
  let off = 0;
  for (const s of sizes) {
    out.push(d.push(bytes.subarray(off, off + s)));
    off += s;
  }
  assert.equal(off, bytes.length, 'chunk sizes must cover the input');
  return out;
}

const TYPED: HandshakeType[] = [HandshakeType.CONNECTION, HandshakeType.METADATA, HandshakeType.NOTIFY, HandshakeType.PROBE];
const SAMPLE_JSON = '{"name":"10.0.0.7:15342","notify_msg":"héllo ✓ 🚀"}\n';

describe('handshake constants', () => {
  test('type bytes and default limit match the reference', () => {
    assert.equal(HandshakeType.CONNECTION, 0);
    assert.equal(HandshakeType.METADATA, 1);
    assert.equal(HandshakeType.NOTIFY, 2);
    assert.equal(HandshakeType.PROBE, 3);
    assert.equal(HandshakeType.LEGACY, 0xff);
    assert.equal(DEFAULT_MAX_FRAME, 1024 * 1024);
  });
});

describe('encodeHandshakeFrame', () => {
  test('reproduces the §2.5 probe bytes', () => {
    assert.deepEqual(encodeHandshakeFrame(HandshakeType.PROBE, '{}\n'), PROBE_FRAME);
  });

  test('length counts UTF-8 bytes plus the type byte', () => {
    for (const type of TYPED) {
      const f = encodeHandshakeFrame(type, SAMPLE_JSON);
      const body = Buffer.byteLength(SAMPLE_JSON, 'utf8');
      assert.ok(body > SAMPLE_JSON.length, 'sample has multi-byte characters');
      assert.equal(f.readBigUInt64LE(0), BigInt(body + 1));
      assert.equal(f.length, 8 + 1 + body);
      assert.equal(f[8], type);
      assert.equal(f.subarray(9).toString('utf8'), SAMPLE_JSON);
    }
  });

  test('a legacy frame has no type byte', () => {
    const json = '{"local_nic_path":"x"}\n';
    const f = encodeHandshakeFrame(HandshakeType.LEGACY, json);
    assert.equal(f.readBigUInt64LE(0), BigInt(json.length));
    assert.equal(f.length, 8 + json.length);
    assert.equal(f.subarray(8).toString('utf8'), json);
  });
});

describe('decodeHandshakeFrame', () => {
  test('decodes the §2.5 probe bytes', () => {
    assert.deepEqual(decodeHandshakeFrame(PROBE_FRAME), { type: HandshakeType.PROBE, json: '{}\n' });
  });

  test('round-trips every type, including legacy', () => {
    for (const type of [...TYPED, HandshakeType.LEGACY]) {
      const f = decodeHandshakeFrame(encodeHandshakeFrame(type, SAMPLE_JSON));
      assert.deepEqual(f, { type, json: SAMPLE_JSON });
    }
  });

  test('a type byte with no JSON decodes to empty text', () => {
    assert.deepEqual(decodeHandshakeFrame(hex('01 00 00 00 00 00 00 00 02')), { type: HandshakeType.NOTIFY, json: '' });
  });

  test('a legacy frame (first payload byte "{") is LEGACY with the whole payload as JSON', () => {
    const json = '{"payload":"","reply_msg":""}\n';
    const raw = Buffer.concat([lengthPrefix(BigInt(json.length)), Buffer.from(json)]);
    assert.deepEqual(decodeHandshakeFrame(raw), { type: HandshakeType.LEGACY, json });
  });

  test('payload bytes 0..3 are types, above 3 is legacy', () => {
    for (let b = 0; b <= 3; b++) {
      const f = decodeHandshakeFrame(Buffer.concat([lengthPrefix(3n), Buffer.from([b]), Buffer.from('{}')]));
      assert.deepEqual(f, { type: b, json: '{}' });
    }
    const f = decodeHandshakeFrame(Buffer.concat([lengthPrefix(3n), Buffer.from([4]), Buffer.from('{}')]));
    assert.deepEqual(f, { type: HandshakeType.LEGACY, json: '\x04{}' });
  });

  test('a truncated frame is MALFORMED', () => {
    for (let n = 0; n < PROBE_FRAME.length; n++) {
      assert.throws(() => decodeHandshakeFrame(PROBE_FRAME.subarray(0, n)), teCode(ErrorCode.MALFORMED), `${n} bytes`);
    }
  });

  test('trailing bytes after the frame are MALFORMED', () => {
    assert.throws(() => decodeHandshakeFrame(Buffer.concat([PROBE_FRAME, Buffer.from([0])])), teCode(ErrorCode.MALFORMED));
    assert.throws(() => decodeHandshakeFrame(Buffer.concat([PROBE_FRAME, PROBE_FRAME])), teCode(ErrorCode.MALFORMED));
  });

  test('honours an explicit maxLength', () => {
    const f = encodeHandshakeFrame(HandshakeType.METADATA, 'x'.repeat(15)); // length 16
    assert.equal(decodeHandshakeFrame(f, 16).json, 'x'.repeat(15));
    assert.throws(() => decodeHandshakeFrame(f, 15), teCode(ErrorCode.FRAME_TOO_LARGE));
  });
});

describe('HandshakeFrameDecoder', () => {
  test('byte-by-byte delivery yields the frame on the last byte only', () => {
    for (const type of [...TYPED, HandshakeType.LEGACY]) {
      const bytes = encodeHandshakeFrame(type, SAMPLE_JSON);
      const results = feed(new HandshakeFrameDecoder(), bytes, new Array<number>(bytes.length).fill(1));
      assert.ok(results.slice(0, -1).every((r) => r === null), 'no frame before the last byte');
      assert.deepEqual(results.at(-1), { type, json: SAMPLE_JSON });
    }
  });

  test('a multi-byte character split across chunks survives', () => {
    const json = '"🚀"';
    const bytes = encodeHandshakeFrame(HandshakeType.NOTIFY, json);
    const split = 8 + 1 + 2; // inside the 4-byte emoji
    const results = feed(new HandshakeFrameDecoder(), bytes, [split, bytes.length - split]);
    assert.deepEqual(results, [null, { type: HandshakeType.NOTIFY, json }]);
  });

  test('every two-chunk split of the probe frame decodes', () => {
    for (let cut = 0; cut < PROBE_FRAME.length; cut++) {
      const results = feed(new HandshakeFrameDecoder(), PROBE_FRAME, [cut, PROBE_FRAME.length - cut]);
      assert.deepEqual(results, [null, { type: HandshakeType.PROBE, json: '{}\n' }], `cut at ${cut}`);
    }
  });

  test('empty chunks are harmless', () => {
    const d = new HandshakeFrameDecoder();
    assert.equal(d.push(Buffer.alloc(0)), null);
    assert.equal(d.push(PROBE_FRAME.subarray(0, 5)), null);
    assert.equal(d.push(Buffer.alloc(0)), null);
    assert.deepEqual(d.push(PROBE_FRAME.subarray(5)), { type: HandshakeType.PROBE, json: '{}\n' });
  });

  test('length 0 is MALFORMED as soon as the 8th length byte arrives', () => {
    const d = new HandshakeFrameDecoder();
    const zero = lengthPrefix(0n);
    for (let i = 0; i < 7; i++) assert.equal(d.push(zero.subarray(i, i + 1)), null);
    assert.throws(() => d.push(zero.subarray(7)), teCode(ErrorCode.MALFORMED));
  });

  test('a length over the limit is FRAME_TOO_LARGE before any body byte', () => {
    const over = [BigInt(DEFAULT_MAX_FRAME) + 1n, 1n << 32n, 1n << 63n, (1n << 64n) - 1n];
    for (const len of over) {
      const d = new HandshakeFrameDecoder();
      const prefix = lengthPrefix(len);
      for (let i = 0; i < 7; i++) assert.equal(d.push(prefix.subarray(i, i + 1)), null);
      assert.throws(() => d.push(prefix.subarray(7)), teCode(ErrorCode.FRAME_TOO_LARGE), `length ${len}`);
    }
  });

  test('the limit check fires even when body bytes share the chunk', () => {
    const d = new HandshakeFrameDecoder(16);
    assert.throws(() => d.push(Buffer.concat([lengthPrefix(17n), Buffer.from([1, 0x7b])])), teCode(ErrorCode.FRAME_TOO_LARGE));
  });

  test('a length exactly at the limit is accepted and waits for the body', () => {
    const d = new HandshakeFrameDecoder();
    assert.equal(d.push(lengthPrefix(BigInt(DEFAULT_MAX_FRAME))), null);
    const body = Buffer.alloc(DEFAULT_MAX_FRAME, 0x20);
    body[0] = HandshakeType.METADATA;
    assert.equal(d.push(body.subarray(0, 1000)), null);
    const f = d.push(body.subarray(1000));
    assert.ok(f);
    assert.equal(f.type, HandshakeType.METADATA);
    assert.equal(f.json.length, DEFAULT_MAX_FRAME - 1);
  });

  test('a custom limit is enforced at the boundary', () => {
    assert.equal(new HandshakeFrameDecoder(16).push(lengthPrefix(16n)), null);
    assert.throws(() => new HandshakeFrameDecoder(16).push(lengthPrefix(17n)), teCode(ErrorCode.FRAME_TOO_LARGE));
  });

  test('bytes after a complete frame are MALFORMED, in the same chunk or later', () => {
    assert.throws(() => new HandshakeFrameDecoder().push(Buffer.concat([PROBE_FRAME, Buffer.from('x')])), teCode(ErrorCode.MALFORMED));

    const d = new HandshakeFrameDecoder();
    assert.ok(d.push(PROBE_FRAME));
    assert.throws(() => d.push(Buffer.from([0])), teCode(ErrorCode.MALFORMED));

    const d2 = new HandshakeFrameDecoder();
    assert.equal(d2.push(PROBE_FRAME.subarray(0, 10)), null);
    assert.throws(() => d2.push(Buffer.concat([PROBE_FRAME.subarray(10), PROBE_FRAME])), teCode(ErrorCode.MALFORMED));
  });
});
