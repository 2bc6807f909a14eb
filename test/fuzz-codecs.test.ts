/**
 * Deterministic fuzz of the pure codecs. Every input must either decode or
 * throw a typed error (TransferEngineError / JsonSyntaxError); each result is
 * also checked against an independent model of the format.
 */
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { HEADER_SIZE, STATUS_SIZE, STATUS_MAGIC, STATUS_OK_FRAME, STATUS_REJECTED_FRAME, encodeHeader, decodeHeader, decodeStatus } from '../src/codec/wire.js';
import { HandshakeType, HandshakeFrameDecoder, DEFAULT_MAX_FRAME, encodeHandshakeFrame, type HandshakeFrame } from '../src/codec/handshake.js';
import { parseJson, JsonSyntaxError } from '../src/codec/json.js';
import { KNOWN_PROTOCOLS, encodeSegmentDesc, decodeSegmentDesc, type SegmentDesc } from '../src/codec/descriptor.js';
import { TransferEngineError, ErrorCode } from '../src/errors.js';

const SEED = 0x5eed_2026;
const U64_MAX = (1n << 64n) - 1n;

/** xorshift32: small, fast and reproducible. */
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
  /** Integer in [0, n). */
  int(n: number): number {
    return this.u32() % n;
  }
  chance(p: number): boolean {
    return this.u32() / 0x1_0000_0000 < p;
  }
  pick<T>(items: readonly T[]): T {
    return items[this.int(items.length)]!;
  }
  bytes(n: number): Buffer {
    const b = Buffer.allocUnsafe(n);
    for (let i = 0; i < n; i++) b[i] = this.u32() & 0xff;
    return b;
  }
  /** A u64 biased towards boundaries: 0, 2^32, 2^53, 2^64-1 and their neighbours. */
  u64(): bigint {
    switch (this.int(6)) {
      case 0:
        return this.pick([0n, 1n, 0xffff_ffffn, 1n << 32n, (1n << 53n) - 1n, 1n << 53n, (1n << 53n) + 1n, 1n << 63n, U64_MAX - 1n, U64_MAX]);
      case 1:
        return BigInt(this.u32());
      case 2:
        return (BigInt(this.int(1 << 21)) << 32n) | BigInt(this.u32()); // safe range
      default:
        return (BigInt(this.u32()) << 32n) | BigInt(this.u32());
    }
  }
}

type Typed = TransferEngineError | JsonSyntaxError;
type Outcome<T> = { ok: true; value: T } | { ok: false; error: Typed };

/** Run `fn`; any exception that is not one of our typed errors fails the test, naming the input. */
function attempt<T>(fn: () => T, input: () => string): Outcome<T> {
  try {
    return { ok: true, value: fn() };
  } catch (e) {
    if (e instanceof TransferEngineError || e instanceof JsonSyntaxError) return { ok: false, error: e };
    const name = e instanceof Error ? e.constructor.name : typeof e;
    return assert.fail(`untyped ${name} (${String(e)}) for input ${input()}`);
  }
}

function expectCode(o: Outcome<unknown>, code: ErrorCode, input: () => string): void {
  assert.ok(!o.ok, `expected ${code}, but decoded: ${input()}`);
  assert.ok(o.error instanceof TransferEngineError && o.error.code === code, `expected ${code}, got ${String(o.error)}: ${input()}`);
}

const show = (b: Uint8Array): string => Buffer.from(b).toString('hex');

// ---------------------------------------------------------------------------------------------
// Mutators

const JSON_CHARS = '{}[]":,.-+eE0123456789 \n\t\\/abfnrtux_';
const NUMBER_TOKENS = ['0', '-0', '1', '-1', '1.5', '1e3', '1E+3', '4096.0', '9007199254740993', '18446744073709551615', '18446744073709551616', '-18446744073709551615', '1e400', '0.0000001', '65536', '00', '1.', '-'];

function randomChar(rng: Rng): string {
  if (rng.chance(0.8)) return JSON_CHARS[rng.int(JSON_CHARS.length)]!;
  if (rng.chance(0.3)) return String.fromCharCode(rng.int(0x20)); // control characters
  return String.fromCharCode(rng.int(0x1_0000)); // includes lone surrogates
}

function mutateText(rng: Rng, s: string): string {
  const ops = 1 + rng.int(3);
  for (let k = 0; k < ops; k++) {
    const p = rng.int(s.length + 1);
    switch (rng.int(8)) {
      case 0: // replace a character
        s = s.slice(0, p) + randomChar(rng) + s.slice(p + 1);
        break;
      case 1: // truncate
        s = s.slice(0, p);
        break;
      case 2: // insert a character
        s = s.slice(0, p) + randomChar(rng) + s.slice(p);
        break;
      case 3: // delete a run
        s = s.slice(0, p) + s.slice(p + 1 + rng.int(4));
        break;
      case 4: {
        // duplicate a slice elsewhere
        const a = rng.int(s.length + 1);
        const piece = s.slice(a, a + 1 + rng.int(12));
        s = s.slice(0, p) + piece + s.slice(p);
        break;
      }
      case 5: {
        // replace a number with a tricky number token
        const m = /-?\d[\d.eE+-]*/g;
        const hits = [...s.matchAll(m)];
        if (hits.length > 0) {
          const h = rng.pick(hits);
          s = s.slice(0, h.index) + rng.pick(NUMBER_TOKENS) + s.slice(h.index + h[0].length);
        }
        break;
      }
      case 6: // flip a bit of a character code
        if (p < s.length) s = s.slice(0, p) + String.fromCharCode(s.charCodeAt(p) ^ (1 << rng.int(8))) + s.slice(p + 1);
        break;
      default: // swap two characters
        if (s.length > 1) {
          const q = rng.int(s.length);
          const a = Math.min(p, s.length - 1);
          const [x, y] = [s[a]!, s[q]!];
          s = s.slice(0, a) + y + s.slice(a + 1);
          s = s.slice(0, q) + x + s.slice(q + 1);
        }
    }
  }
  return s;
}

function mutateBytes(rng: Rng, b: Buffer): Buffer {
  let out = Buffer.from(b);
  const ops = 1 + rng.int(3);
  for (let k = 0; k < ops; k++) {
    // Half the edits land in the 9-byte prefix (length and type), where the decoder branches.
    const p = rng.chance(0.5) ? rng.int(Math.min(9, out.length + 1)) : rng.int(out.length + 1);
    switch (rng.int(6)) {
      case 0:
        if (p < out.length) out[p] = rng.u32() & 0xff;
        break;
      case 1:
        if (p < out.length) out[p] ^= 1 << rng.int(8);
        break;
      case 2:
        out = out.subarray(0, p);
        break;
      case 3:
        out = Buffer.concat([out.subarray(0, p), rng.bytes(1 + rng.int(4)), out.subarray(p)]);
        break;
      case 4:
        out = Buffer.concat([out.subarray(0, p), out.subarray(p + 1 + rng.int(4))]);
        break;
      default:
        if (out.length >= 8) out.writeBigUInt64LE(rng.pick([0n, 1n, 2n, BigInt(out.length - 8), BigInt(out.length - 7), BigInt(DEFAULT_MAX_FRAME), BigInt(DEFAULT_MAX_FRAME) + 1n, U64_MAX, rng.u64()]), 0);
    }
  }
  return out;
}

/** Split `n` bytes into random chunk sizes (sometimes 0, sometimes all at once). */
function chunkSizes(rng: Rng, n: number): number[] {
  if (rng.chance(0.15)) return [n];
  if (rng.chance(0.1)) return new Array<number>(n).fill(1);
  const sizes: number[] = [];
  let left = n;
  while (left > 0) {
    const s = rng.chance(0.05) ? 0 : 1 + rng.int(Math.min(left, rng.chance(0.5) ? 9 : 64));
    sizes.push(Math.min(s, left));
    left -= Math.min(s, left);
  }
  return sizes;
}

// ---------------------------------------------------------------------------------------------
// Seed documents

const TIMESTAMP = '2026-08-22 13:12:18.123456';
const PYTHON_DESC =
  '{"buffers":[{"addr":139880479506448,"length":1048576,"name":"10.0.0.7:15342"}],"name":"10.0.0.7:15342","protocol":"tcp","tcp_data_port":16021,"tcp_proto_version":2,"timestamp":"2026-08-22 13:12:18.123456"}\n';

function randomName(rng: Rng): string {
  return rng.pick(['10.0.0.7:15342', '[::1]:15001', 'host', 'a"b\\c', 'ü✓🚀', 'x'.repeat(1 + rng.int(40))]);
}

function randomDesc(rng: Rng): SegmentDesc {
  const protocol = rng.chance(0.8) ? 'tcp' : rng.pick([...KNOWN_PROTOCOLS]);
  const buffers = [];
  if (protocol === 'tcp') {
    for (let i = rng.int(4); i > 0; i--) {
      const length = 1n + (rng.u64() % (1n << 40n));
      const addr = 1n + (rng.u64() % (U64_MAX - length + 1n));
      buffers.push({ name: randomName(rng), addr, length });
    }
  }
  return { name: randomName(rng), protocol, tcpDataPort: rng.int(65536), tcpProtoVersion: 1 + rng.int(2), timestamp: TIMESTAMP, buffers };
}

function randomDescText(rng: Rng): string {
  if (rng.chance(0.1)) return PYTHON_DESC;
  const text = encodeSegmentDesc(randomDesc(rng));
  // Whitespace variant; structural only, since encoded strings hold no `,"` or `":`.
  return rng.chance(0.2) ? text.replace(/,"/g, ',\n "').replace(/":/g, '" : ') + '\n' : text;
}

const MISC_JSON = ['{}', '[]', '{"a":[1,2,{"b":null}],"c":"\\u00e9\\n"}', '[true,false,null,-0,1.5e-3,"x"]', '{"__proto__":{"p":1},"k":"v"}', '"\\ud83d\\ude80"', '{"name":"","notify_msg":"success"}\n', '{"status":"success"}\n'];

// ---------------------------------------------------------------------------------------------

describe('fuzz: wire codecs', () => {
  test('decodeHeader over random buffers and offsets (40k)', () => {
    const rng = new Rng(SEED ^ 0x1);
    let decoded = 0;
    let rejected = 0;
    for (let i = 0; i < 40_000; i++) {
      const buf = rng.bytes(rng.chance(0.2) ? rng.int(HEADER_SIZE) : HEADER_SIZE + rng.int(25));
      const off = rng.chance(0.5) ? 0 : rng.int(buf.length + 1);
      const o = attempt(() => decodeHeader(buf, off), () => `${show(buf)} @${off}`);
      if (buf.length - off < HEADER_SIZE) {
        expectCode(o, ErrorCode.MALFORMED, () => `${show(buf)} @${off}`);
        rejected++;
        continue;
      }
      assert.ok(o.ok);
      const h = o.value;
      const op = buf[off + 16]!;
      assert.equal(h.size, Number(buf.readBigUInt64LE(off)));
      assert.equal(h.addr, Number(buf.readBigUInt64LE(off + 8)));
      assert.equal(h.opcode, op);
      assert.equal(h.write, (op & 0x7f) === 1);
      assert.equal(h.v2, op >= 0x80);
      // Padding must not matter.
      const again = Buffer.from(buf);
      again.fill(rng.u32() & 0xff, off + 17, off + HEADER_SIZE);
      assert.deepEqual(decodeHeader(again, off), h);
      decoded++;
    }
    assert.ok(decoded > 5_000 && rejected > 5_000, `decoded ${decoded}, rejected ${rejected}`);
  });

  test('encodeHeader -> decodeHeader round trip with u64 extremes (20k)', () => {
    const rng = new Rng(SEED ^ 0x2);
    const buf = Buffer.alloc(HEADER_SIZE + 8);
    for (let i = 0; i < 20_000; i++) {
      const size = Number(rng.u64() % (1n << 53n));
      const addr = rng.u64();
      const write = rng.chance(0.5);
      const v2 = rng.chance(0.5);
      const off = rng.int(9);
      buf.fill(0xa5);
      encodeHeader(buf, off, size, addr, write, v2);
      assert.equal(buf.readBigUInt64LE(off), BigInt(size));
      assert.equal(buf.readBigUInt64LE(off + 8), addr);
      assert.ok(buf.subarray(off + 17, off + HEADER_SIZE).every((b) => b === 0), 'padding zeroed');
      const h = decodeHeader(buf, off);
      assert.equal(h.size, size);
      assert.equal(h.addr, Number(addr));
      assert.equal(h.write, write);
      assert.equal(h.v2, v2);
      if (addr > BigInt(Number.MAX_SAFE_INTEGER)) assert.ok(h.addr > Number.MAX_SAFE_INTEGER);
    }
  });

  test('decodeStatus over random and mutated frames (30k)', () => {
    const rng = new Rng(SEED ^ 0x3);
    const seen = new Set<string>();
    for (let i = 0; i < 30_000; i++) {
      let buf: Buffer;
      if (rng.chance(0.5)) {
        buf = Buffer.from(rng.pick([STATUS_OK_FRAME, STATUS_REJECTED_FRAME]));
        if (rng.chance(0.7)) buf[rng.int(8)] ^= 1 << rng.int(8);
        if (rng.chance(0.2)) buf = buf.subarray(0, rng.int(9));
        if (rng.chance(0.2)) buf = Buffer.concat([rng.bytes(rng.int(4)), buf]);
      } else {
        buf = rng.bytes(rng.int(17));
      }
      const off = rng.chance(0.7) ? 0 : rng.int(buf.length + 1);
      const o = attempt(() => decodeStatus(buf, off), () => `${show(buf)} @${off}`);
      if (buf.length - off < STATUS_SIZE) {
        expectCode(o, ErrorCode.MALFORMED, () => `${show(buf)} @${off}`);
        seen.add('short');
        continue;
      }
      assert.ok(o.ok);
      const want = buf.readUInt32LE(off + 4) === STATUS_MAGIC ? buf.readUInt32LE(off) : -1;
      assert.equal(o.value, want, show(buf));
      seen.add(want === -1 ? 'bad' : want <= 1 ? `code${want}` : 'other');
    }
    assert.deepEqual([...seen].sort(), ['bad', 'code0', 'code1', 'other', 'short']);
  });
});

// ---------------------------------------------------------------------------------------------

/** `at`: the error must be thrown by the push that delivers byte number `at` (1-based). */
type Expected = { kind: 'frame'; frame: HandshakeFrame; end: number } | { kind: 'incomplete' } | { kind: 'error'; code: ErrorCode; at: number };

/** Independent model of the framing rules for the whole byte stream. */
function modelHandshake(bytes: Buffer, max: number): Expected {
  if (bytes.length < 8) return { kind: 'incomplete' };
  const len = bytes.readBigUInt64LE(0);
  if (len === 0n) return { kind: 'error', code: ErrorCode.MALFORMED, at: 8 };
  if (len > BigInt(max)) return { kind: 'error', code: ErrorCode.FRAME_TOO_LARGE, at: 8 };
  const end = 8 + Number(len);
  if (bytes.length < end) return { kind: 'incomplete' };
  if (bytes.length > end) return { kind: 'error', code: ErrorCode.MALFORMED, at: end + 1 };
  const body = bytes.subarray(8);
  const frame: HandshakeFrame =
    body[0]! > 3
      ? { type: HandshakeType.LEGACY, json: body.toString('utf8') }
      : { type: body[0] as HandshakeType, json: body.subarray(1).toString('utf8') };
  return { kind: 'frame', frame, end };
}

describe('fuzz: handshake frames', () => {
  test('HandshakeFrameDecoder with mutated frames and random chunking (40k)', () => {
    const rng = new Rng(SEED ^ 0x4);
    const counts: Record<string, number> = {};
    const types: HandshakeType[] = [HandshakeType.CONNECTION, HandshakeType.METADATA, HandshakeType.NOTIFY, HandshakeType.PROBE, HandshakeType.LEGACY];
    for (let i = 0; i < 40_000; i++) {
      const json = rng.chance(0.3) ? randomDescText(rng) : rng.pick(MISC_JSON);
      const type = rng.pick(types);
      const valid = encodeHandshakeFrame(type, json);
      const bytes = rng.chance(0.1) ? rng.bytes(rng.int(40)) : rng.chance(0.2) ? valid : mutateBytes(rng, valid);
      const max = rng.chance(0.7) ? DEFAULT_MAX_FRAME : rng.pick([1, 2, 16, 64, 300, 1000]);
      const input = (): string => `${show(bytes)} max=${max}`;
      const want = modelHandshake(bytes, max);

      const d = new HandshakeFrameDecoder(max);
      let delivered = 0;
      let got: { frame: HandshakeFrame; at: number } | null = null;
      let failure: { error: Typed; before: number; after: number } | null = null;
      for (const size of chunkSizes(rng, bytes.length)) {
        if (got && size === 0) continue;
        const chunk = bytes.subarray(delivered, delivered + size);
        const before = delivered;
        delivered += size;
        const o = attempt(() => d.push(chunk), input);
        if (!o.ok) {
          failure = { error: o.error, before, after: delivered };
          break;
        }
        if (o.value !== null) {
          assert.equal(got, null, `a second frame from one stream: ${input()}`);
          got = { frame: o.value, at: delivered };
        }
      }

      counts[want.kind] = (counts[want.kind] ?? 0) + 1;
      switch (want.kind) {
        case 'incomplete':
          assert.equal(failure, null, `unexpected ${String(failure?.error)}: ${input()}`);
          assert.equal(got, null, input());
          break;
        case 'frame':
          assert.equal(failure, null, `unexpected ${String(failure?.error)}: ${input()}`);
          assert.ok(got, `no frame: ${input()}`);
          assert.deepEqual(got.frame, want.frame, input());
          assert.equal(got.at, want.end, `frame reported late: ${input()}`);
          if (bytes === valid) assert.deepEqual(got.frame, { type, json }, input());
          break;
        case 'error': {
          assert.ok(failure, `expected ${want.code}: ${input()}`);
          assert.ok(failure.error instanceof TransferEngineError && failure.error.code === want.code, `expected ${want.code}, got ${String(failure.error)}: ${input()}`);
          // Length errors fire on the push completing the prefix (before any body); trailing ones on the first extra byte.
          assert.ok(failure.before < want.at && failure.after >= want.at, `error at bytes (${failure.before}, ${failure.after}], expected by ${want.at}: ${input()}`);
          counts[want.code] = (counts[want.code] ?? 0) + 1;
          break;
        }
      }
    }
    for (const k of ['frame', 'incomplete', ErrorCode.MALFORMED, ErrorCode.FRAME_TOO_LARGE]) {
      assert.ok((counts[k] ?? 0) > 500, `too few '${k}' cases: ${JSON.stringify(counts)}`);
    }
  });

  test('unmutated frames of every type decode to what was encoded (5k)', () => {
    const rng = new Rng(SEED ^ 0x5);
    const types: HandshakeType[] = [HandshakeType.CONNECTION, HandshakeType.METADATA, HandshakeType.NOTIFY, HandshakeType.PROBE, HandshakeType.LEGACY];
    for (let i = 0; i < 5_000; i++) {
      const type = rng.pick(types);
      const json = rng.chance(0.5) ? randomDescText(rng) : rng.pick(MISC_JSON);
      const bytes = encodeHandshakeFrame(type, json);
      const d = new HandshakeFrameDecoder();
      let frame: HandshakeFrame | null = null;
      let off = 0;
      for (const size of chunkSizes(rng, bytes.length)) {
        const r = d.push(bytes.subarray(off, off + size));
        off += size;
        if (off < bytes.length) assert.equal(r, null);
        else frame = r;
      }
      assert.deepEqual(frame, { type, json });
    }
  });
});

// ---------------------------------------------------------------------------------------------

/**
 * Deep copy with bigints as numbers, keeping "__proto__" keys as data. With `unsignZero`, -0 becomes 0
 * (bigint mode parses "-0" as 0n).
 */
function toPlain(v: unknown, unsignZero: boolean): unknown {
  if (typeof v === 'bigint') return Number(v);
  if (typeof v === 'number') return unsignZero && v === 0 ? 0 : v;
  if (Array.isArray(v)) return v.map((x: unknown) => toPlain(x, unsignZero));
  if (v !== null && typeof v === 'object') {
    const out = {};
    for (const [k, x] of Object.entries(v)) {
      Object.defineProperty(out, k, { value: toPlain(x, unsignZero), enumerable: true, writable: true, configurable: true });
    }
    return out;
  }
  return v;
}

describe('fuzz: JSON and descriptors', () => {
  test('parseJson agrees with JSON.parse on mutated documents (50k)', () => {
    const rng = new Rng(SEED ^ 0x6);
    let accepted = 0;
    let rejected = 0;
    for (let i = 0; i < 50_000; i++) {
      const seed = rng.chance(0.6) ? randomDescText(rng) : rng.pick(MISC_JSON);
      const text = rng.chance(0.05) ? seed : mutateText(rng, seed);
      const input = (): string => JSON.stringify(text);
      const bigintIntegers = rng.chance(0.3);
      const ours = attempt(() => parseJson(text, { bigintIntegers }), input);
      let reference: { ok: true; value: unknown } | { ok: false };
      try {
        reference = { ok: true, value: JSON.parse(text) as unknown };
      } catch {
        reference = { ok: false };
      }
      if (!reference.ok) {
        assert.ok(!ours.ok, `accepted what JSON.parse rejects: ${input()}`);
        assert.ok(ours.error instanceof JsonSyntaxError, input());
        rejected++;
      } else {
        assert.ok(ours.ok, `rejected what JSON.parse accepts (${ours.ok ? '' : ours.error.message}): ${input()}`);
        assert.deepEqual(toPlain(ours.value, bigintIntegers), toPlain(reference.value, bigintIntegers), input());
        accepted++;
      }
    }
    assert.ok(accepted > 5_000 && rejected > 5_000, `accepted ${accepted}, rejected ${rejected}`);
  });

  test('decodeSegmentDesc on mutated descriptors (50k)', () => {
    const rng = new Rng(SEED ^ 0x7);
    let decoded = 0;
    let rejected = 0;
    for (let i = 0; i < 50_000; i++) {
      const text = rng.chance(0.05) ? randomDescText(rng) : mutateText(rng, randomDescText(rng));
      const input = (): string => JSON.stringify(text);
      const o = attempt(() => decodeSegmentDesc(text), input);
      if (!o.ok) {
        assert.ok(o.error instanceof TransferEngineError && o.error.code === ErrorCode.MALFORMED, `${String(o.error)}: ${input()}`);
        rejected++;
        continue;
      }
      const d = o.value;
      assert.ok(KNOWN_PROTOCOLS.has(d.protocol), input());
      assert.ok(Number.isInteger(d.tcpDataPort) && d.tcpDataPort >= 0 && d.tcpDataPort <= 65535, input());
      assert.ok(Number.isSafeInteger(d.tcpProtoVersion), input());
      if (d.protocol !== 'tcp') assert.deepEqual(d.buffers, [], input());
      for (const b of d.buffers) {
        assert.ok(typeof b.name === 'string' && b.name.length > 0, input());
        assert.ok(typeof b.addr === 'bigint' && typeof b.length === 'bigint', input());
        assert.ok(b.addr > 0n && b.length > 0n && b.addr + b.length - 1n <= U64_MAX, input());
      }
      // Whatever we accept, we re-encode without loss.
      const again = decodeSegmentDesc(encodeSegmentDesc({ ...d, timestamp: d.timestamp ?? TIMESTAMP }));
      assert.deepEqual(again, { ...d, timestamp: d.timestamp ?? TIMESTAMP }, input());
      decoded++;
    }
    assert.ok(decoded > 2_000 && rejected > 20_000, `decoded ${decoded}, rejected ${rejected}`);
  });

  test('unmutated random descriptors decode to what was encoded (5k)', () => {
    const rng = new Rng(SEED ^ 0x8);
    for (let i = 0; i < 5_000; i++) {
      const d = randomDesc(rng);
      assert.deepEqual(decodeSegmentDesc(encodeSegmentDesc(d)), d);
    }
  });
});
