/**
 * The Store master's wire codecs (src/store/codec/*, src/store/master-protocol.ts)
 * against golden vectors: every frame of the captures in test/store/vectors/
 * (the real mooncake_master and Python client of the pinned wheel; how they
 * were made: test/store/CAPTURES.md) is decoded with our codec for its method
 * and encoded again, byte for byte the same; and our function ids are the
 * master's. Plus the codecs' own rules and bad input.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  decodeMessage,
  encodeMessage,
  sizeLiteral,
  string,
  struct,
  tuple,
  typeHash,
  u32,
  u64,
  vector,
  optional,
  expected,
  i32,
  variant,
  bool,
} from '../src/store/codec/struct-pack.js';
import {
  RESPONSE_HEADER_SIZE,
  REQUEST_HEADER_SIZE,
  RequestDecoder,
  ResponseDecoder,
  decodeRpcError,
  encodeRequest,
  encodeResponse,
  functionId,
} from '../src/store/codec/coro-rpc.js';
import { Master, METHODS_BY_ID, NO_ARGS, SERVICE, UUID, ReplicateConfig, Segment } from '../src/store/master-protocol.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const VECTORS = path.join(ROOT, 'test', 'store', 'vectors');

interface VectorMessage {
  direction: 'request' | 'response';
  function: string;
  function_id: number;
  seq: number;
  call: string;
  hex: string;
}
interface VectorFile {
  scenario: string;
  connections: Array<{ messages: VectorMessage[] }>;
}

function scenarios(): VectorFile[] {
  return fs
    .readdirSync(VECTORS)
    .filter((f) => f.endsWith('.json') && f !== 'function_ids.json')
    .map((f) => JSON.parse(fs.readFileSync(path.join(VECTORS, f), 'utf8')) as VectorFile);
}

const te = (code: string) => (e: unknown): boolean => (e as { code?: string }).code === code;

describe('golden vectors: every captured frame of a method we speak, decoded and re-encoded byte for byte', () => {
  test('function ids are MD5-32 of the qualified method name, for all 64 methods the master registers', () => {
    const ids = JSON.parse(fs.readFileSync(path.join(VECTORS, 'function_ids.json'), 'utf8')) as Record<string, { function_id: number; hashed_name: string }>;
    assert.equal(Object.keys(ids).length, 64);
    for (const [name, v] of Object.entries(ids)) {
      assert.equal(v.hashed_name, `${SERVICE}::${name}`);
      assert.equal(functionId(v.hashed_name), v.function_id, name);
    }
    for (const m of Object.values(Master)) assert.equal(ids[m.name]?.function_id, m.id, `${m.name} is a registered method`);
  });

  for (const file of scenarios()) {
    test(`scenario ${file.scenario}`, () => {
      let checked = 0;
      const methods = new Set<string>();
      for (const conn of file.connections) {
        for (const msg of conn.messages) {
          const method = METHODS_BY_ID.get(msg.function_id);
          if (!method) continue; // task-family calls (copy, move) we do not speak
          const frame = Buffer.from(msg.hex, 'hex');
          const what = `${file.scenario}: ${msg.direction} of ${method.name} (${msg.call})`;
          if (msg.direction === 'request') {
            const [req] = new RequestDecoder({ maxFrame: 1 << 30 }).push(frame);
            assert.ok(req, what);
            assert.equal(req.functionId, method.id);
            if (method.args === NO_ARGS) assert.equal(req.body.length, 0, what);
            else {
              const args = decodeMessage(method.args as never, req.body, what);
              assert.deepEqual(encodeMessage(method.args as never, args), Buffer.from(req.body), what);
            }
            assert.deepEqual(encodeRequest(req.seq, method.id, req.body), frame, `${what}: header`);
          } else {
            const [res] = new ResponseDecoder({ maxFrame: 1 << 30 }).push(frame);
            assert.ok(res, what);
            assert.equal(res.errCode, 0, what);
            const value = decodeMessage(method.result as never, res.body, what);
            assert.deepEqual(encodeMessage(method.result as never, value), Buffer.from(res.body), what);
            assert.deepEqual(encodeResponse(res.seq, 0, res.body), frame, `${what}: header`);
          }
          checked++;
          methods.add(method.name);
        }
      }
      assert.ok(checked > 0, 'the scenario has frames of methods we speak');
    });
  }

  test('the captures cover every method we speak', () => {
    const seen = new Set<string>();
    for (const file of scenarios()) for (const c of file.connections) for (const m of c.messages) seen.add(m.function);
    const missing = Object.values(Master).map((m) => m.name).filter((n) => !seen.has(n));
    // The revokes of single puts and upserts: the Python client sends them only when a transfer fails,
    // which no scenario provokes; their layouts were checked live against the master (docs/store-wire.md §3.3).
    assert.deepEqual(missing.sort(), ['BatchUpsertRevoke', 'PutRevoke', 'UpsertRevoke']);
  });

  test("decoded values are what the Python client sent: put_get's first PutStart", () => {
    const file = scenarios().find((f) => f.scenario === 'put_get')!;
    const msg = file.connections.flatMap((c) => c.messages).find((m) => m.function === 'PutStart' && m.direction === 'request')!;
    const [req] = new RequestDecoder({ maxFrame: 1 << 20 }).push(Buffer.from(msg.hex, 'hex'));
    const [client, key, length, config, tenant] = decodeMessage(Master.PutStart.args, req!.body);
    assert.equal(typeof client.first, 'bigint');
    assert.equal(key, 'k-small');
    assert.equal(length, 16n);
    assert.equal(config.replicaNum, 1n);
    assert.equal(config.softPinTtlMs, null);
    assert.deepEqual(config.preferredSegments, []);
    assert.equal(config.groupIds, null);
    assert.equal(tenant, 'default');
  });
});

describe('struct_pack rules', () => {
  test('layout strings and hashes of the docs/store-wire.md examples', () => {
    assert.equal(Buffer.from(UUID.layout).toString('hex'), 'fd04048989ff');
    assert.equal(typeHash(UUID.layout), 0x3c6d83e0);
    assert.equal(typeHash(tuple([string, string]).layout), 0x7cf91ed8);
    assert.equal(typeHash(Master.MountSegment.args.layout), 0x9ef70dae);
    assert.equal(typeHash(Master.ServiceReady.result.layout), 0x1cb3cc34);
    assert.equal(Buffer.from(ReplicateConfig.layout).toString('hex'), 'fd0404040685040b84800c800c84800c0b06800c8584800cff');
    assert.equal(Buffer.from(Segment.layout).toString('hex'), 'fdfd04048989ff800c0404800c800c800cff');
  });

  test('size literals: base 127, least significant first, last digit + 129', () => {
    assert.deepEqual([...sizeLiteral(8)], [0x89]);
    assert.deepEqual([...sizeLiteral(1)], [0x82]);
    assert.deepEqual([...sizeLiteral(126)], [0xff]);
    assert.deepEqual([...sizeLiteral(127)], [0x01, 0x82]);
    for (let n = 0; n < 100_000; n += 997) assert.ok(!sizeLiteral(n).includes(0), 'never a 00 byte');
  });

  test('every length of a message takes the width of its largest container; the reader follows the metainfo', () => {
    const c = tuple([string, vector(u32)]);
    const small = encodeMessage(c, ['ab', [1, 2]]);
    assert.equal(small[4], 0x04, '1-byte lengths: metainfo 0x04');
    const big = encodeMessage(c, ['ab', Array.from({ length: 300 }, (_, i) => i)]);
    assert.equal(big[4], 0x0c, '2-byte lengths: metainfo 0x0c');
    const at = 4 + 1 + c.layout.length + 1;
    assert.deepEqual([...big.subarray(at, at + 2)], [2, 0], 'the short string too has a 2-byte length');
    assert.deepEqual(decodeMessage(c, big), ['ab', Array.from({ length: 300 }, (_, i) => i)]);
    const huge = encodeMessage(string, 'x'.repeat(70_000));
    assert.equal(huge[4], 0x14, '4-byte lengths');
    assert.equal(decodeMessage(string, huge).length, 70_000);
  });

  test('without the layout string: no metainfo when lengths fit a byte; decoders accept both forms', () => {
    const c = tuple([string, bool]);
    const compact = encodeMessage(c, ['k', true], { layout: false });
    assert.equal(compact.length, 4 + 2 + 1);
    assert.equal(compact.readUInt32LE(0) & 1, 0);
    assert.deepEqual(decodeMessage(c, compact), ['k', true]);
    assert.deepEqual(decodeMessage(c, encodeMessage(c, ['k', false])), ['k', false]);
  });

  test('optionals, expecteds, variants and 64-bit values round-trip', () => {
    const c = tuple([optional(u64), expected(string, i32), expected(string, i32), variant([u32, string]), variant([u32, string])]);
    const v = [18446744073709551615n, { ok: true, value: 'fine' }, { ok: false, error: -706 }, { index: 0, value: 7 }, { index: 1, value: 'x' }] as const;
    assert.deepEqual(decodeMessage(c, encodeMessage(c, v as never)), v);
  });
});

describe('bad input: typed errors, never a crash or an allocation the bytes cannot back', () => {
  const c = struct({ key: string, list: vector(u64) });
  const good = encodeMessage(c, { key: 'key', list: [1n, 2n] });

  test('another type hash, another layout string, unknown metainfo bits, compatible fields: TE_MALFORMED', () => {
    const other = Buffer.from(good);
    other[1]! ^= 0x10;
    assert.throws(() => decodeMessage(c, other), te('TE_MALFORMED'));
    const layout = Buffer.from(good);
    layout[6]! ^= 0x01;
    assert.throws(() => decodeMessage(c, layout), (e: unknown) => te('TE_MALFORMED')(e) && /layout string/.test(String(e)));
    for (const meta of [0x05, 0x24, 0x84]) {
      const m = Buffer.from(good);
      m[4] = meta;
      assert.throws(() => decodeMessage(c, m), te('TE_MALFORMED'), `metainfo 0x${meta.toString(16)}`);
    }
  });

  test('truncated at every length, and lengths larger than the bytes left: TE_MALFORMED', () => {
    for (let n = 0; n < good.length; n++) assert.throws(() => decodeMessage(c, good.subarray(0, n)), te('TE_MALFORMED'), `cut at ${n}`);
    const lying = Buffer.from(good);
    const at = good.length - 2 * 8 - 1; // the vector's length byte
    lying[at] = 250;
    assert.throws(() => decodeMessage(c, lying), (e: unknown) => te('TE_MALFORMED')(e) && /does not fit/.test(String(e)));
  });

  test('bad booleans, optional flags, expected flags and variant indexes: TE_MALFORMED', () => {
    for (const [codec, byte] of [
      [bool, 2],
      [optional(u32), 2],
      [expected(u32, i32), 7],
      [variant([u32, u32]), 2],
    ] as const) {
      const msg = encodeMessage(codec as never, (codec === bool ? true : codec.layout[0] === 0x86 ? { index: 0, value: 1 } : codec.layout[0] === 0x87 ? { ok: true, value: 1 } : 1) as never);
      const bad = Buffer.from(msg);
      bad[4 + 1 + codec.layout.length + 1] = byte;
      assert.throws(() => decodeMessage(codec as never, bad), te('TE_MALFORMED'));
    }
  });

  test('values of the wrong type or range are refused when encoding (TE_INVALID_ARGUMENT)', () => {
    assert.throws(() => encodeMessage(u64, 1 as never), te('TE_INVALID_ARGUMENT'));
    assert.throws(() => encodeMessage(u64, -1n), te('TE_INVALID_ARGUMENT'));
    assert.throws(() => encodeMessage(u32, 2 ** 32), te('TE_INVALID_ARGUMENT'));
    assert.throws(() => encodeMessage(string, 5 as never), te('TE_INVALID_ARGUMENT'));
    assert.throws(() => encodeMessage(variant([u32]), { index: 3, value: 1 } as never), te('TE_INVALID_ARGUMENT'));
  });
});

describe('coro_rpc framing', () => {
  test('a request frame: 20-byte header, seq and id little-endian; a response: 16 bytes', () => {
    const f = encodeRequest(7, Master.Ping.id, Buffer.from([1, 2, 3]));
    assert.equal(f.toString('hex'), '15000000' + '07000000' + 'e5dac2d6' + '03000000' + '00000000' + '010203');
    assert.equal(REQUEST_HEADER_SIZE, 20);
    assert.equal(RESPONSE_HEADER_SIZE, 16);
    const r = encodeResponse(7, 0, Buffer.from([9]));
    assert.equal(r.toString('hex'), '15000000' + '07000000' + '01000000' + '00000000' + '09');
  });

  test('frames split at any point and several in one chunk are reassembled; attachments are kept apart', () => {
    const frames = [encodeResponse(1, 0, Buffer.alloc(10, 1)), encodeResponse(2, 0, Buffer.alloc(0)), encodeResponse(3, 11, Buffer.alloc(300, 3))];
    const all = Buffer.concat(frames);
    for (let cut = 0; cut <= all.length; cut += 7) {
      const d = new ResponseDecoder({ maxFrame: 1 << 20 });
      const got = [...d.push(all.subarray(0, cut)), ...d.push(all.subarray(cut))];
      assert.deepEqual(got.map((g) => g.seq), [1, 2, 3]);
      assert.equal(d.pending, 0);
    }
    const withAttachment = Buffer.concat([encodeResponse(4, 0, Buffer.from([5])), Buffer.from([6, 6])]);
    withAttachment.writeUInt32LE(2, 12);
    const [a] = new ResponseDecoder({ maxFrame: 1 << 20 }).push(withAttachment);
    assert.deepEqual([...a!.body], [5]);
    assert.deepEqual([...a!.attachment], [6, 6]);
  });

  test('a bad magic or version, an unknown serialize type, or a length above the limit: typed errors before buffering', () => {
    const bad = encodeResponse(1, 0, Buffer.alloc(4));
    bad[0] = 0x16;
    assert.throws(() => new ResponseDecoder({ maxFrame: 100 }).push(bad), te('TE_PROTOCOL_ERROR'));
    const v = encodeResponse(1, 0, Buffer.alloc(4));
    v[1] = 1;
    assert.throws(() => new ResponseDecoder({ maxFrame: 100 }).push(v), te('TE_PROTOCOL_ERROR'));
    const req = encodeRequest(1, 2, Buffer.alloc(1));
    req[2] = 1;
    assert.throws(() => new RequestDecoder({ maxFrame: 100 }).push(req), te('TE_PROTOCOL_ERROR'));
    const header = encodeResponse(1, 0, Buffer.alloc(0));
    header.writeUInt32LE(0xffffffff, 8);
    assert.throws(() => new ResponseDecoder({ maxFrame: 1 << 20 }).push(header), te('TE_FRAME_TOO_LARGE'));
  });

  test("an RPC-layer error's message is read from its body (the wheel's unknown-function reply)", () => {
    const body = Buffer.from('77facf9d04800c001f' + Buffer.from('the rpc function not registered').toString('hex'), 'hex');
    const frame = Buffer.concat([Buffer.from('15000b0006000000' + '28000000' + '00000000', 'hex'), body]);
    const [res] = new ResponseDecoder({ maxFrame: 1 << 20 }).push(frame);
    assert.deepEqual(decodeRpcError(res!), { code: 11, message: 'the rpc function not registered' });
    assert.match(decodeRpcError({ ...res!, body: Buffer.from([1, 2]) }).message, /unreadable/);
  });
});
