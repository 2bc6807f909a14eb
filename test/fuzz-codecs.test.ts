/**
 * Deterministic fuzz of the pure codecs. Every input must either decode or
 * throw a typed error (TransferEngineError / JsonSyntaxError); each result is
 * also checked against an independent model of the format.
 */
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import {
  HEADER_SIZE,
  STATUS_SIZE,
  STATUS_MAGIC,
  STATUS_OK_FRAME,
  STATUS_REJECTED_FRAME,
  STATUS_FILE_REJECTED_FRAME,
  STATUS_FILE_IO_ERROR_FRAME,
  encodeHeader,
  decodeHeader,
  decodeStatus,
  encodeFileHeader,
  decodeFileHeader,
  isFileOpcode,
} from '../src/codec/wire.js';
import { HandshakeType, HandshakeFrameDecoder, DEFAULT_MAX_FRAME, encodeHandshakeFrame, decodeHandshakeFrame, type HandshakeFrame } from '../src/codec/handshake.js';
import { parseJson, JsonSyntaxError } from '../src/codec/json.js';
import { KNOWN_PROTOCOLS, encodeSegmentDesc, decodeSegmentDesc, type SegmentDesc } from '../src/codec/descriptor.js';
import type { FileBufferDesc } from '../src/codec/file-buffers.js';
import { decodeRpcMeta, encodeRpcMeta, decodeDescriptorValue, encodeDescriptorValue } from '../src/metadata/values.js';
import { authKindAt, authFrameSize, encodeChallenge, encodeResponse, encodeAccept, REJECT_FRAME, AuthKind, clientMac, serverMac } from '../src/codec/auth.js';
import { AuthClientSide } from '../src/auth.js';
import { TransferEngineError, ErrorCode } from '../src/errors.js';
import { Rng, U64_MAX, InputCounter, chunkSizes, show } from './fuzz-lib.js';
import { decodeMessage, encodeMessage, type Codec } from '../src/store/codec/struct-pack.js';
import { RequestDecoder, ResponseDecoder, encodeRequest as encodeRpcRequest, encodeResponse as encodeRpcResponse } from '../src/store/codec/coro-rpc.js';
import { Master } from '../src/store/master-protocol.js';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const SEED = 0x5eed_2026;
/** Inputs this file must try per run (with test/fuzz-servers.test.ts: over a million). */
const MIN_INPUTS = 700_000;
const counter = new InputCounter();

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


// ---------------------------------------------------------------------------------------------
// Mutators

const JSON_CHARS = '{}[]":,.-+eE0123456789 \n\t\\/abfnrtux_';
const NUMBER_TOKENS = ['0', '-0', '1', '-1', '1.5', '1e3', '1E+3', '4096.0', '9007199254740993', '18446744073709551615', '18446744073709551616', '-18446744073709551615', '1e400', '0.0000001', '65536', '00', '1.', '-',
  // NaN-like and boundary spellings: none is JSON, or each is an exact edge.
  'NaN', 'Infinity', '-Infinity', '1e309', '-1e309', '1e-400', '0x10', '+1', '.5', '01', '9007199254740992', '-9007199254740993', '2e53', '1e30', '-1e30', '4294967296', '4294967295', '-1', '1.0'];

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
  const d: SegmentDesc = { name: randomName(rng), protocol, tcpDataPort: rng.int(65536), tcpProtoVersion: 1 + rng.int(2), timestamp: TIMESTAMP, buffers };
  if (rng.chance(0.3)) {
    // Our file fields, with their boundaries: u32 ids, sizes up to 2^53-1, align 0 or a power of two up to 2^30.
    const ids = new Set<number>();
    d.fileBuffers = [];
    for (let i = 1 + rng.int(3); i > 0; i--) {
      const id = rng.pick([0, 1, 0xffff_ffff, rng.u32()]);
      if (ids.has(id)) continue;
      ids.add(id);
      const f: FileBufferDesc = { id, path: rng.pick(['/data/f', '/ü/x y', 'rel']), size: rng.pick([1, 4096, Number.MAX_SAFE_INTEGER, 1 + rng.int(1 << 30)]), align: rng.pick([0, 1, 512, 4096, 1 << 30]) };
      if (rng.chance(0.3)) f.owner = { pid: 1 + rng.int(0x7fff_fffe), fd: rng.int(1 << 20), dev: rng.u64(), ino: rng.u64() };
      d.fileBuffers.push(f);
    }
    if (rng.chance(0.5)) d.fileEndpoint = rng.chance(0.5) ? { port: 1 + rng.int(65535) } : { host: randomName(rng), port: rng.pick([1, 65535]) };
  }
  if (rng.chance(0.2)) d.machineId = 'boot-1234/machine-5678';
  return d;
}

function randomDescText(rng: Rng): string {
  if (rng.chance(0.1)) return PYTHON_DESC;
  const text = encodeSegmentDesc(randomDesc(rng));
  // Whitespace variant; structural only, since encoded strings hold no `,"` or `":`.
  return rng.chance(0.2) ? text.replace(/,"/g, ',\n "').replace(/":/g, '" : ') + '\n' : text;
}

const DEEP_64 = `${'['.repeat(64)}1${']'.repeat(64)}`;
const DEEP_65 = `${'['.repeat(65)}1${']'.repeat(65)}`;
const MISC_JSON = [DEEP_64, DEEP_65, `{"a":${'{"b":'.repeat(63)}0${'}'.repeat(64)}`, '{}', '[]', '{"a":[1,2,{"b":null}],"c":"\\u00e9\\n"}', '[true,false,null,-0,1.5e-3,"x"]', '{"__proto__":{"p":1},"k":"v"}', '"\\ud83d\\ude80"', '{"name":"","notify_msg":"success"}\n', '{"status":"success"}\n'];

// ---------------------------------------------------------------------------------------------

/** Opcode bytes the data server branches on: READ, WRITE, their v2 forms, our file requests and near misses. */
const OPCODES = [0x00, 0x01, 0x80, 0x81, 0x90, 0x91, 0x10, 0x11, 0x02, 0x7f, 0xff, 0x92, 0x8f];

describe('fuzz: wire codecs', () => {
  test('decodeHeader over random buffers and offsets (100k)', () => {
    const rng = new Rng(SEED ^ 0x1);
    let decoded = 0;
    let rejected = 0;
    for (let i = 0; i < 100_000; i++) {
      const buf = rng.bytes(rng.chance(0.2) ? rng.int(HEADER_SIZE) : HEADER_SIZE + rng.int(25));
      const off = rng.chance(0.5) ? 0 : rng.int(buf.length + 1);
      // Opcodes the server branches on (ours included), and u64 boundaries in size and addr.
      if (off + HEADER_SIZE <= buf.length) {
        if (rng.chance(0.4)) buf[off + 16] = rng.pick(OPCODES);
        if (rng.chance(0.3)) buf.writeBigUInt64LE(rng.u64(), off + rng.pick([0, 8]));
      }
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
      assert.equal(isFileOpcode(op), op === 0x90 || op === 0x91);
      decoded++;
    }
    counter.add('wire header', 100_000);
    assert.ok(decoded > 5_000 && rejected > 5_000, `decoded ${decoded}, rejected ${rejected}`);
  });

  test('decodeFileHeader over random and mutated file headers (100k)', () => {
    const rng = new Rng(SEED ^ 0x11);
    const seen: Record<string, number> = {};
    for (let i = 0; i < 100_000; i++) {
      let buf: Buffer;
      if (rng.chance(0.7)) {
        buf = Buffer.alloc(HEADER_SIZE + rng.int(4));
        const id = rng.chance(0.5) ? rng.pick([0, 1, 2, 0xff, 0x100, 0xffff_ffff, 0x8000_0000]) : rng.u32();
        encodeFileHeader(buf, buf.length - HEADER_SIZE, Number(rng.u64() % (1n << 53n)), rng.u64(), rng.chance(0.5), id);
        for (let k = rng.int(3); k > 0; k--) {
          const p = rng.chance(0.6) ? 16 + rng.int(8) : rng.int(buf.length); // opcode, id and reserved bytes
          if (rng.chance(0.5)) buf[p] ^= 1 << rng.int(8);
          else buf[p] = rng.u32() & 0xff;
        }
        if (rng.chance(0.1)) buf = buf.subarray(0, rng.int(buf.length + 1));
      } else {
        buf = rng.bytes(rng.int(HEADER_SIZE + 8));
        if (buf.length > 16 && rng.chance(0.5)) buf[16] = rng.pick([0x90, 0x91]);
        if (buf.length >= HEADER_SIZE && rng.chance(0.5)) buf.fill(0, 21, 24);
      }
      const off = rng.chance(0.7) ? Math.max(0, buf.length - HEADER_SIZE) : rng.int(buf.length + 1);
      const input = (): string => `${show(buf)} @${off}`;
      const o = attempt(() => decodeFileHeader(buf, off), input);
      // The model: 24 bytes, opcode 0x90 or 0x91, bytes 21..23 zero; fields read as exact u64 / u32.
      const ok = buf.length - off >= HEADER_SIZE && (buf[off + 16] === 0x90 || buf[off + 16] === 0x91) && buf[off + 21] === 0 && buf[off + 22] === 0 && buf[off + 23] === 0;
      if (!ok) {
        expectCode(o, ErrorCode.MALFORMED, input);
        seen['rejected'] = (seen['rejected'] ?? 0) + 1;
        continue;
      }
      assert.ok(o.ok, input());
      assert.deepEqual(o.value, {
        size: Number(buf.readBigUInt64LE(off)),
        offset: Number(buf.readBigUInt64LE(off + 8)),
        write: buf[off + 16] === 0x91,
        fileId: buf.readUInt32LE(off + 17),
      }, input());
      // A file header is also a memory header to decodeHeader: never a memory WRITE.
      assert.equal(decodeHeader(buf, off).write, false);
      seen[o.value.write ? 'write' : 'read'] = (seen[o.value.write ? 'write' : 'read'] ?? 0) + 1;
    }
    counter.add('file request header', 100_000);
    for (const k of ['rejected', 'read', 'write']) assert.ok((seen[k] ?? 0) > 2_000, JSON.stringify(seen));
  });

  test('encodeFileHeader: u32 ids only, round trip with u64 extremes (20k)', () => {
    const rng = new Rng(SEED ^ 0x12);
    const buf = Buffer.alloc(HEADER_SIZE + 8);
    for (let i = 0; i < 20_000; i++) {
      const off = rng.int(9);
      const size = Number(rng.u64() % (1n << 53n));
      const offset = rng.u64();
      const write = rng.chance(0.5);
      if (rng.chance(0.2)) {
        const bad = rng.pick([-1, 0x1_0000_0000, 1.5, Number.NaN, Infinity, -0.5, 2 ** 53]);
        buf.fill(0xa5);
        const o = attempt(() => encodeFileHeader(buf, off, size, offset, write, bad), () => String(bad));
        expectCode(o, ErrorCode.INVALID_ARGUMENT, () => String(bad));
        assert.ok(buf.every((b) => b === 0xa5), 'nothing written for a refused id');
        continue;
      }
      const id = rng.u32();
      buf.fill(0xa5);
      encodeFileHeader(buf, off, size, offset, write, id);
      assert.deepEqual(decodeFileHeader(buf, off), { size, offset: Number(offset), write, fileId: id });
      assert.equal(buf.readBigUInt64LE(off + 8), offset);
    }
    counter.add('file request header (encode)', 20_000);
  });

  test('encodeHeader -> decodeHeader round trip with u64 extremes (20k)', () => {
    counter.add('wire header (encode)', 20_000);
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

  test('decodeStatus over random and mutated frames (60k)', () => {
    const rng = new Rng(SEED ^ 0x3);
    const seen = new Set<string>();
    counter.add('status frame', 60_000);
    for (let i = 0; i < 60_000; i++) {
      let buf: Buffer;
      if (rng.chance(0.5)) {
        buf = Buffer.from(rng.pick([STATUS_OK_FRAME, STATUS_REJECTED_FRAME, STATUS_FILE_REJECTED_FRAME, STATUS_FILE_IO_ERROR_FRAME]));
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
      seen.add(want === -1 ? 'bad' : want <= 3 ? `code${want}` : 'other');
    }
    assert.deepEqual([...seen].sort(), ['bad', 'code0', 'code1', 'code2', 'code3', 'other', 'short']);
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
  test("trailing: 'ignore' (the server's mode): one frame, whatever follows it (30k)", () => {
    const rng = new Rng(SEED ^ 0x44);
    const counts: Record<string, number> = {};
    counter.add('handshake frame (trailing ignored)', 30_000);
    for (let i = 0; i < 30_000; i++) {
      const valid = encodeHandshakeFrame(rng.pick([HandshakeType.METADATA, HandshakeType.NOTIFY, HandshakeType.LEGACY]), rng.pick(MISC_JSON));
      let bytes = rng.chance(0.3) ? valid : mutateBytes(rng, valid);
      if (rng.chance(0.5)) bytes = Buffer.concat([bytes, rng.bytes(1 + rng.int(40))]);
      const max = rng.chance(0.8) ? DEFAULT_MAX_FRAME : rng.pick([1, 16, 64]);
      const input = (): string => `${show(bytes)} max=${max}`;
      // The model: as without 'ignore', except that bytes past the frame never matter.
      let want = modelHandshake(bytes, max);
      if (want.kind === 'error' && want.code === ErrorCode.MALFORMED && want.at > 8) want = modelHandshake(bytes.subarray(0, want.at - 1), max);
      const d = new HandshakeFrameDecoder(max, { trailing: 'ignore' });
      let delivered = 0;
      let got: { frame: HandshakeFrame; before: number; after: number } | null = null;
      let failure: Typed | null = null;
      for (const size of chunkSizes(rng, bytes.length)) {
        delivered += size;
        const o = attempt(() => d.push(bytes.subarray(delivered - size, delivered)), input);
        if (!o.ok) {
          failure = o.error;
          break;
        }
        if (o.value) {
          got = { frame: o.value, before: delivered - size, after: delivered };
          break; // the server stops reading at the first frame
        }
      }
      counts[want.kind] = (counts[want.kind] ?? 0) + 1;
      if (want.kind === 'frame') {
        assert.equal(failure, null, input());
        assert.ok(got && got.before < want.end && got.after >= want.end, `no frame, or not on the push completing it: ${input()}`);
        assert.deepEqual(got.frame, want.frame, input());
      } else if (want.kind === 'error') {
        assert.ok(failure instanceof TransferEngineError && failure.code === want.code, `expected ${want.code}, got ${String(failure)}: ${input()}`);
      } else {
        assert.equal(failure, null, input());
        assert.equal(got, null, input());
      }
    }
    for (const k of ['frame', 'incomplete', 'error']) assert.ok((counts[k] ?? 0) > 1_000, JSON.stringify(counts));
  });

  test('HandshakeFrameDecoder with mutated frames and random chunking (100k)', () => {
    const rng = new Rng(SEED ^ 0x4);
    const counts: Record<string, number> = {};
    const types: HandshakeType[] = [HandshakeType.CONNECTION, HandshakeType.METADATA, HandshakeType.NOTIFY, HandshakeType.PROBE, HandshakeType.LEGACY];
    counter.add('handshake frame', 100_000);
    for (let i = 0; i < 100_000; i++) {
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
      // All at once (no chunking) gives the same answer.
      const once = attempt(() => decodeHandshakeFrame(bytes, max), input);
      if (want.kind === 'frame') assert.ok(once.ok && JSON.stringify(once.value) === JSON.stringify(want.frame), `one-shot differs: ${input()}`);
      else expectCode(once, want.kind === 'error' ? want.code : ErrorCode.MALFORMED, input);
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

/** Nesting depth of a value (the root is 0; every array or object adds one for what it holds). */
function jsonDepth(v: unknown): number {
  let d = 0;
  let level: unknown[] = [v];
  for (;;) {
    const next: unknown[] = [];
    for (const x of level) if (x !== null && typeof x === 'object') next.push(...Object.values(x));
    if (next.length === 0) return d;
    d++;
    level = next;
  }
}

describe('fuzz: JSON and descriptors', () => {
  test('parseJson agrees with JSON.parse on mutated documents (100k)', () => {
    const rng = new Rng(SEED ^ 0x6);
    let accepted = 0;
    let rejected = 0;
    counter.add('JSON', 100_000);
    for (let i = 0; i < 100_000; i++) {
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
      // Our one deliberate difference: nesting deeper than 64 is refused (the stack is not the peer's to exhaust).
      if (reference.ok && jsonDepth(reference.value) > 64) reference = { ok: false };
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

  test('regression: integer literals longer than 20 digits are doubles, not BigInt() of unbounded length', () => {
    // A megabyte of digits cost BigInt() ~0.2 s (4 MB: ~1.1 s) on the event loop; descriptors may be 64 MiB.
    assert.equal(parseJson('18446744073709551615', { bigintIntegers: true }), 18446744073709551615n);
    assert.equal(parseJson('-9223372036854775808', { bigintIntegers: true }), -9223372036854775808n);
    assert.equal(parseJson('99999999999999999999'), 99999999999999999999n);
    assert.equal(parseJson('100000000000000000000', { bigintIntegers: true }), 1e20);
    assert.equal(parseJson('-100000000000000000000'), -1e20);
    assert.equal(parseJson('9'.repeat(1_000_000)), Infinity); // as JSON.parse
    assert.deepEqual(parseJson(`[${'1'.repeat(400)},${'2'.repeat(50)}]`, { bigintIntegers: true }), [Number('1'.repeat(400)), Number('2'.repeat(50))]);
    const big = `{"name":"n","protocol":"tcp","buffers":[{"name":"b","addr":${'1'.repeat(200_000)},"length":1}]}`;
    expectCode(attempt(() => decodeSegmentDesc(big), () => 'a 200k-digit addr'), ErrorCode.MALFORMED, () => 'a 200k-digit addr');
  });

  test('regression: integral doubles beyond 2^53 are not integers for tcp_data_port / tcp_proto_version', () => {
    // Found by this fuzz: "tcp_proto_version":2e53 decoded to 9007199254740992, which did not re-encode.
    const desc = (field: string, v: string): string => `{"name":"n","protocol":"tcp","${field}":${v},"buffers":[]}`;
    for (const v of ['2e53', '1e30', '-1e30', '1e400', '9007199254740992.0']) {
      for (const field of ['tcp_proto_version', 'tcp_data_port']) {
        expectCode(attempt(() => decodeSegmentDesc(desc(field, v)), () => v), ErrorCode.MALFORMED, () => `${field} ${v}`);
      }
    }
    assert.equal(decodeSegmentDesc(desc('tcp_data_port', '1e3')).tcpDataPort, 1000); // jsoncpp reads 1e3 as 1000 too
    assert.equal(decodeSegmentDesc(desc('tcp_proto_version', '2.0')).tcpProtoVersion, 2);
  });

  test('decodeSegmentDesc on mutated descriptors (100k)', () => {
    const rng = new Rng(SEED ^ 0x7);
    let decoded = 0;
    let rejected = 0;
    counter.add('descriptor JSON', 100_000);
    for (let i = 0; i < 100_000; i++) {
      const text = rng.chance(0.05) ? randomDescText(rng) : mutateText(rng, randomDescText(rng));
      const input = (): string => JSON.stringify(text);
      // A size bound, sometimes just around this text's length: longer is FRAME_TOO_LARGE before any parsing.
      const maxLength = rng.chance(0.1) ? text.length - 1 + rng.int(3) : undefined;
      const o = attempt(() => decodeSegmentDesc(text, maxLength === undefined ? {} : { maxLength }), input);
      if (maxLength !== undefined && text.length > maxLength) {
        expectCode(o, ErrorCode.FRAME_TOO_LARGE, input);
        continue;
      }
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
      const ids = new Set<number>();
      for (const f of d.fileBuffers ?? []) {
        assert.ok(Number.isInteger(f.id) && f.id >= 0 && f.id <= 0xffff_ffff && !ids.has(f.id), input());
        ids.add(f.id);
        assert.ok(typeof f.path === 'string' && f.path.length > 0, input());
        assert.ok(Number.isSafeInteger(f.size) && f.size >= 1, input());
        assert.ok(f.align >= 0 && f.align <= 1 << 30 && (f.align & (f.align - 1)) === 0, input());
        if (f.owner) assert.ok(f.owner.pid >= 1 && f.owner.pid <= 0x7fff_ffff && f.owner.fd >= 0 && f.owner.dev <= U64_MAX && f.owner.ino >= 0n, input());
      }
      if (d.fileEndpoint) {
        assert.ok(Number.isInteger(d.fileEndpoint.port) && d.fileEndpoint.port >= 1 && d.fileEndpoint.port <= 65535, input());
        assert.ok(d.fileEndpoint.host === undefined || d.fileEndpoint.host.length > 0, input());
      }
      // Whatever we accept, we re-encode without loss.
      const again = decodeSegmentDesc(encodeSegmentDesc({ ...d, timestamp: d.timestamp ?? TIMESTAMP }));
      assert.deepEqual(again, { ...d, timestamp: d.timestamp ?? TIMESTAMP }, input());
      decoded++;
    }
    assert.ok(decoded > 2_000 && rejected > 20_000, `decoded ${decoded}, rejected ${rejected}`);
  });

  test('unmutated random descriptors decode to what was encoded, also as stored metadata values (5k)', () => {
    const rng = new Rng(SEED ^ 0x8);
    counter.add('descriptor JSON (round trip)', 10_000);
    for (let i = 0; i < 5_000; i++) {
      const d = randomDesc(rng);
      assert.deepEqual(decodeSegmentDesc(encodeSegmentDesc(d)), d);
      assert.deepEqual(decodeDescriptorValue(encodeDescriptorValue(d, rng.chance(0.5)), 'k'), d);
    }
  });
});

describe('fuzz: metadata values', () => {
  test('decodeRpcMeta on mutated and random values (50k)', () => {
    const rng = new Rng(SEED ^ 0x9);
    const seen: Record<string, number> = {};
    counter.add('rpc_meta value', 50_000);
    for (let i = 0; i < 50_000; i++) {
      const seed = rng.chance(0.8)
        ? encodeRpcMeta({ ipOrHostName: rng.pick(['10.0.0.7', 'host', '[::1]', 'ü']), rpcPort: rng.pick([1, 80, 15001, 65535]) }, rng.chance(0.5))
        : rng.pick(MISC_JSON);
      const text = rng.chance(0.1) ? seed : mutateText(rng, seed);
      const input = (): string => JSON.stringify(text);
      const o = attempt(() => decodeRpcMeta(text, 'mooncake/rpc_meta/x'), input);
      // The model: a JSON object with a non-empty string ip_or_host_name and an integer rpc_port in [1, 65535].
      let want: { ipOrHostName: string; rpcPort: number } | null = null;
      try {
        const v = JSON.parse(text) as unknown;
        if (jsonDepth(v) <= 64 && v !== null && typeof v === 'object' && !Array.isArray(v)) {
          const host = (v as Record<string, unknown>)['ip_or_host_name'];
          const port = (v as Record<string, unknown>)['rpc_port'];
          if (typeof host === 'string' && host.length > 0 && Number.isInteger(port) && (port as number) >= 1 && (port as number) <= 65535) {
            want = { ipOrHostName: host, rpcPort: port as number };
          }
        }
      } catch {
        /* not JSON: refused */
      }
      if (want === null) {
        expectCode(o, ErrorCode.MALFORMED, input);
        seen['refused'] = (seen['refused'] ?? 0) + 1;
      } else {
        assert.ok(o.ok, `refused: ${input()}`);
        assert.deepEqual(o.value, want, input());
        seen['decoded'] = (seen['decoded'] ?? 0) + 1;
      }
    }
    assert.ok((seen['refused'] ?? 0) > 5_000 && (seen['decoded'] ?? 0) > 5_000, JSON.stringify(seen));
  });

  test('decodeDescriptorValue: any text decodes or is TE_MALFORMED (20k)', () => {
    const rng = new Rng(SEED ^ 0xa);
    counter.add('descriptor metadata value', 20_000);
    for (let i = 0; i < 20_000; i++) {
      const text = mutateText(rng, rng.chance(0.7) ? encodeDescriptorValue(randomDesc(rng), rng.chance(0.5)) : rng.pick(MISC_JSON));
      const o = attempt(() => decodeDescriptorValue(text, 'mooncake/ram/x'), () => JSON.stringify(text));
      if (!o.ok) assert.equal((o.error as TransferEngineError).code, ErrorCode.MALFORMED, JSON.stringify(text));
      else assert.deepEqual(decodeSegmentDesc(text), o.value);
    }
  });
});

describe('fuzz: auth frames', () => {
  test('authKindAt over random and mutated frames (50k)', () => {
    const rng = new Rng(SEED ^ 0xb);
    const magic = encodeChallenge(Buffer.alloc(32)).subarray(0, 7); // "TEAUTH" and the version byte
    const seen: Record<string, number> = {};
    counter.add('auth frame', 50_000);
    for (let i = 0; i < 50_000; i++) {
      let buf: Buffer = rng.pick([
        () => encodeChallenge(rng.bytes(32)),
        () => encodeResponse(rng.bytes(32), rng.bytes(32)),
        () => encodeAccept(rng.bytes(32)),
        () => Buffer.from(REJECT_FRAME),
        () => rng.bytes(rng.int(48)),
      ])();
      if (rng.chance(0.6) && buf.length > 0) {
        const p = rng.chance(0.7) ? rng.int(Math.min(8, buf.length)) : rng.int(buf.length);
        if (rng.chance(0.5)) buf[p] ^= 1 << rng.int(8);
        else buf[p] = rng.pick([0, 1, 2, 3, 4, 5, 0xff, rng.u32() & 0xff]);
      }
      if (rng.chance(0.1)) buf = buf.subarray(0, rng.int(buf.length + 1));
      const off = rng.chance(0.8) ? 0 : rng.int(buf.length + 1);
      const input = (): string => `${show(buf)} @${off}`;
      const o = attempt(() => authKindAt(buf, off), input);
      assert.ok(o.ok, input());
      // The model: 8 bytes, "TEAUTH" + version 1, then a kind in 1..4.
      const k = buf[off + 7];
      const want = buf.length - off >= 8 && buf.subarray(off, off + 7).equals(magic) && k !== undefined && k >= 1 && k <= 4 ? k : null;
      assert.equal(o.value, want, input());
      if (want !== null) assert.equal(authFrameSize(want as AuthKind), [40, 72, 40, 8][want - 1], input());
      seen[String(want)] = (seen[String(want)] ?? 0) + 1;
    }
    for (const k of ['null', '1', '2', '3', '4']) assert.ok((seen[k] ?? 0) > 1_000, JSON.stringify(seen));
  });
});

describe('fuzz: auth exchange (client side)', () => {
  test('AuthClientSide.step over mutated challenges and proofs, randomly chunked (30k)', () => {
    const rng = new Rng(SEED ^ 0xc);
    const secret = Buffer.from('a shared secret of 32 bytes.....');
    const seen: Record<string, number> = {};
    counter.add('auth frame (client side)', 30_000);
    for (let i = 0; i < 30_000; i++) {
      // The server's first bytes: a challenge, sometimes damaged, sometimes something else.
      let challenge = encodeChallenge(rng.bytes(32));
      if (rng.chance(0.2)) challenge[rng.int(8)] ^= 1 << rng.int(8);
      if (rng.chance(0.05)) challenge = rng.bytes(rng.int(48));
      const client = new AuthClientSide(secret, 'peer');
      const input = (): string => `challenge ${show(challenge)}`;
      const run = (bytes: Buffer): ReturnType<AuthClientSide['step']> | 'failed' => {
        // Deliver in random pieces, as a socket would: 'more' until enough is there.
        let have = 0;
        for (const size of chunkSizes(rng, bytes.length)) {
          have += size;
          const o = attempt(() => client.step(bytes, 0, have), input);
          if (!o.ok) {
            assert.equal((o.error as TransferEngineError).code, ErrorCode.AUTH_FAILED, input());
            return 'failed';
          }
          if (o.value.kind !== 'more') return o.value;
        }
        return { kind: 'more' };
      };
      const first = run(challenge);
      const isChallenge = challenge.length >= 8 && authKindAt(challenge) === AuthKind.CHALLENGE;
      if (!isChallenge) {
        assert.deepEqual(first, challenge.length >= 8 ? 'failed' : { kind: 'more' }, input());
        seen['not a challenge'] = (seen['not a challenge'] ?? 0) + 1;
        continue;
      }
      if (challenge.length < 40) {
        assert.deepEqual(first, { kind: 'more' }, input());
        continue;
      }
      assert.ok(first !== 'failed' && first.kind === 'reply' && first.consumed === 40, input());
      // A server holding the secret checks the reply and proves itself; its proof is then sometimes damaged or replaced.
      const serverNonce = challenge.subarray(8, 40);
      const reply = first.reply;
      assert.equal(authKindAt(reply), AuthKind.RESPONSE, input());
      const clientNonce = reply.subarray(8, 40);
      assert.ok(reply.subarray(40).equals(clientMac(secret, serverNonce, clientNonce)), `the client's proof: ${input()}`);
      let proof = encodeAccept(serverMac(secret, serverNonce, clientNonce));
      const k = rng.int(5);
      if (k === 1) proof[rng.int(40)] ^= 1 << rng.int(8);
      else if (k === 2) proof = encodeAccept(serverMac(Buffer.from('another secret, also 32 bytes...'), serverNonce, clientNonce));
      else if (k === 3) proof = Buffer.from(REJECT_FRAME);
      else if (k === 4) proof = proof.subarray(0, rng.int(40));
      const second = run(proof);
      const good = proof.length === 40 && proof.equals(encodeAccept(serverMac(secret, serverNonce, clientNonce)));
      const pending = proof.length < 8 || (proof.length < 40 && authKindAt(proof) === AuthKind.ACCEPT);
      if (good) assert.deepEqual(second, { kind: 'done', consumed: 40 }, input());
      else if (pending) assert.deepEqual(second, { kind: 'more' }, input());
      else assert.equal(second, 'failed', `accepted a bad proof ${show(proof)}: ${input()}`);
      const key = good ? 'done' : pending ? 'more' : 'failed';
      seen[key] = (seen[key] ?? 0) + 1;
    }
    for (const key of ['not a challenge', 'done', 'more', 'failed']) assert.ok((seen[key] ?? 0) > 500, JSON.stringify(seen));
  });
});

// ---------------------------------------------------------------------------------------------
// The Store master's wire (src/store/codec): captured frames of the real master and Python client
// (test/store/vectors), mutated; every result decodes to a value that re-encodes to a valid message, or
// is a typed error.

function storeSamples(): Array<{ codec: Codec<unknown>; body: Buffer; frame: Buffer; request: boolean }> {
  const dir = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../test/store/vectors');
  const byId = new Map<number, (typeof Master)[keyof typeof Master]>(Object.values(Master).map((m) => [m.id, m]));
  const out: Array<{ codec: Codec<unknown>; body: Buffer; frame: Buffer; request: boolean }> = [];
  for (const f of fs.readdirSync(dir)) {
    if (!f.endsWith('.json') || f === 'function_ids.json') continue;
    const file = JSON.parse(fs.readFileSync(path.join(dir, f), 'utf8')) as { connections: Array<{ messages: Array<{ function_id: number; direction: string; hex: string }> }> };
    for (const c of file.connections) {
      for (const m of c.messages) {
        const method = byId.get(m.function_id);
        if (!method) continue;
        const frame = Buffer.from(m.hex, 'hex');
        const request = m.direction === 'request';
        const body = frame.subarray(request ? 20 : 16);
        if (request && body.length === 0) continue;
        out.push({ codec: (request ? method.args : method.result) as Codec<unknown>, body, frame, request });
      }
    }
  }
  return out;
}

describe('fuzz: Store master wire (struct_pack, coro_rpc)', () => {
  const samples = storeSamples();

  test('struct_pack: mutated captured bodies decode to re-encodable values or TE_MALFORMED (60k)', () => {
    assert.ok(samples.length > 300, `${samples.length} captured bodies`);
    const rng = new Rng(SEED ^ 0x570e);
    let decoded = 0;
    for (let i = 0; i < 60_000; i++) {
      const s = rng.pick(samples);
      const input = mutateBytes(rng, s.body);
      const o = attempt(() => decodeMessage(s.codec, input), () => show(input));
      if (!o.ok) {
        expectCode(o, ErrorCode.MALFORMED, () => show(input));
        continue;
      }
      // What decoded is a value of the type: it encodes, and that decodes to the same value.
      const again = encodeMessage(s.codec, o.value);
      assert.deepEqual(decodeMessage(s.codec, again), o.value, show(input));
      decoded++;
    }
    counter.add('struct_pack message', 60_000);
    assert.ok(decoded > 1_000, `decoded ${decoded}`);
  });

  test('coro_rpc: mutated captured frames in random chunks give whole frames or typed errors, never a hang (40k)', () => {
    const rng = new Rng(SEED ^ 0xc0c0);
    for (let i = 0; i < 40_000; i++) {
      const s = rng.pick(samples);
      const bytes = rng.chance(0.5) ? mutateBytes(rng, s.frame) : Buffer.concat([s.frame, rng.pick(samples).frame]);
      const d = s.request ? new RequestDecoder({ maxFrame: 1 << 16 }) : new ResponseDecoder({ maxFrame: 1 << 16 });
      let at = 0;
      let frames = 0;
      let failed = false;
      for (const n of chunkSizes(rng, bytes.length)) {
        const o = attempt(() => d.push(bytes.subarray(at, at + n)), () => show(bytes));
        at += n;
        if (!o.ok) {
          assert.ok(o.error instanceof TransferEngineError && (o.error.code === ErrorCode.PROTOCOL_ERROR || o.error.code === ErrorCode.FRAME_TOO_LARGE), String(o.error));
          failed = true;
          break;
        }
        frames += o.value.length;
      }
      // An intact frame is always found whole, and what was buffered never exceeds the input.
      if (!failed && bytes.length >= s.frame.length && bytes.subarray(0, s.frame.length).equals(s.frame)) assert.ok(frames >= 1, show(bytes));
      if (!failed) assert.ok(d.pending <= bytes.length);
    }
    counter.add('coro_rpc frame', 40_000);
  });

  test('coro_rpc: encode then decode is the identity for random seqs, ids and bodies (10k)', () => {
    const rng = new Rng(SEED ^ 0xc0c1);
    for (let i = 0; i < 10_000; i++) {
      const body = rng.bytes(rng.int(64));
      const seq = rng.u32();
      const id = rng.u32();
      const [req] = new RequestDecoder({ maxFrame: 1 << 16 }).push(encodeRpcRequest(seq, id, body));
      assert.deepEqual({ seq: req!.seq, id: req!.functionId, body: Buffer.from(req!.body) }, { seq, id, body });
      const err = rng.int(256);
      const [res] = new ResponseDecoder({ maxFrame: 1 << 16 }).push(encodeRpcResponse(seq, err, body));
      assert.deepEqual({ seq: res!.seq, err: res!.errCode, body: Buffer.from(res!.body) }, { seq, err, body });
    }
    counter.add('coro_rpc frame (round trip)', 10_000);
  });
});

test('fuzz-codecs: inputs tried', (t) => {
  t.diagnostic(counter.table());
  assert.ok(counter.total >= MIN_INPUTS, `only ${counter.total} inputs: ${counter.table()}`);
});
