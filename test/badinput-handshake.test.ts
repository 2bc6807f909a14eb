/**
 * Bad and good input on the RPC (handshake) port, with raw sockets on
 * 127.0.0.1: framing errors close the connection without a reply, every
 * message type gets the Mooncake reply, and the server keeps answering.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { TransferEngine } from '../src/core.js';
import { decodeSegmentDesc } from '../src/codec/descriptor.js';
import { HandshakeType, encodeHandshakeFrame } from '../src/codec/handshake.js';
import { patternBuffer } from './pattern.js';

interface Outcome {
  /** Every byte the server sent before closing. */
  bytes: Buffer;
  /** The connection closed (the server ended or reset it). */
  closed: boolean;
}

/**
 * Connect, send `data` (optionally end our side), and collect what the server
 * sends until it closes the connection or `timeoutMs` passes.
 */
function talk(port: number, data: Buffer, opts: { end?: boolean; timeoutMs?: number } = {}): Promise<Outcome> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    const s = net.connect({ host: '127.0.0.1', port });
    const timer = setTimeout(() => {
      s.destroy();
      resolve({ bytes: Buffer.concat(chunks), closed: false });
    }, opts.timeoutMs ?? 5000);
    s.once('connect', () => {
      if (data.length) s.write(data);
      if (opts.end) s.end();
    });
    s.on('data', (c: Buffer) => chunks.push(c));
    s.on('error', (e: NodeJS.ErrnoException) => {
      if (e.code === 'ECONNREFUSED') {
        clearTimeout(timer);
        reject(e);
      }
      /* ECONNRESET / EPIPE: the server dropped us; 'close' follows */
    });
    s.on('close', () => {
      clearTimeout(timer);
      resolve({ bytes: Buffer.concat(chunks), closed: true });
    });
  });
}

/** Parse one reply frame (with type byte) that must be the whole of `bytes`. */
function parseReply(bytes: Buffer): { type: number; json: unknown; text: string } {
  assert.ok(bytes.length >= 9, `reply too short (${bytes.length} bytes)`);
  const len = Number(bytes.readBigUInt64LE(0));
  assert.equal(bytes.length, 8 + len, 'reply length prefix does not match the bytes sent');
  const text = bytes.subarray(9).toString('utf8');
  return { type: bytes[8]!, json: JSON.parse(text) as unknown, text };
}

function lengthPrefix(n: bigint): Buffer {
  const b = Buffer.alloc(8);
  b.writeBigUInt64LE(n);
  return b;
}

describe('handshake port: bad and good frames', () => {
  const engine = new TransferEngine();
  let port = 0;
  let visibleAddr = 0;
  let hiddenAddr = 0;

  /** A probe still gets its answer. */
  async function assertStillServing(): Promise<void> {
    const r = await talk(port, encodeHandshakeFrame(HandshakeType.PROBE, '{}\n'));
    assert.equal(r.closed, true);
    const reply = parseReply(r.bytes);
    assert.equal(reply.type, HandshakeType.PROBE);
    assert.deepEqual(reply.json, { status: 'success' });
  }

  async function expectDroppedSilently(data: Buffer, end = false): Promise<void> {
    const r = await talk(port, data, { end });
    assert.equal(r.closed, true, 'the server kept the connection open');
    assert.equal(r.bytes.length, 0, `the server replied ${r.bytes.length} byte(s)`);
    await assertStillServing();
  }

  before(async () => {
    await engine.init('127.0.0.1');
    port = engine.rpcPort;
    visibleAddr = engine.registerLocalMemory(patternBuffer(8192, 1));
    hiddenAddr = engine.registerLocalMemory(patternBuffer(8192, 2), '*', false);
  });

  after(async () => {
    await engine.close();
  });

  it('length above the 1 MiB limit: closed without a reply, before the body arrives', async () => {
    await expectDroppedSilently(lengthPrefix(BigInt((1 << 20) + 1)));
    await expectDroppedSilently(Buffer.concat([lengthPrefix(0xffff_ffff_ffff_ffffn), Buffer.from([1, 0x7b, 0x7d])]));
  });

  it('length 0: closed without a reply', async () => {
    await expectDroppedSilently(lengthPrefix(0n));
    await expectDroppedSilently(Buffer.concat([lengthPrefix(0n), Buffer.from([3, 0x7b, 0x7d, 0x0a])]));
  });

  it('garbage JSON: closed without a reply (as Mooncake does), for every type', async () => {
    for (const t of [HandshakeType.CONNECTION, HandshakeType.METADATA, HandshakeType.NOTIFY, HandshakeType.PROBE]) {
      await expectDroppedSilently(encodeHandshakeFrame(t, '{"name": oops'));
    }
    await expectDroppedSilently(encodeHandshakeFrame(HandshakeType.LEGACY, '{{{{'));
    // Type byte only, no JSON at all.
    await expectDroppedSilently(Buffer.concat([lengthPrefix(1n), Buffer.from([HandshakeType.PROBE])]));
    // A notify that is valid JSON but not an object is refused without queueing anything.
    await expectDroppedSilently(encodeHandshakeFrame(HandshakeType.NOTIFY, '["a","b"]\n'));
    assert.deepEqual(engine.getNotifies(), []);
  });

  it('unknown type byte followed by non-JSON: closed without a reply', async () => {
    const body = Buffer.from([0x05, 0x00, 0x01]);
    await expectDroppedSilently(Buffer.concat([lengthPrefix(BigInt(body.length)), body]));
  });

  it('truncated frame then close: no reply, no harm', async () => {
    const full = encodeHandshakeFrame(HandshakeType.PROBE, '{}\n');
    await expectDroppedSilently(full.subarray(0, 5), true); // half a length prefix
    await expectDroppedSilently(full.subarray(0, full.length - 1), true); // all but the last byte
    await expectDroppedSilently(Buffer.concat([lengthPrefix(1000n), Buffer.alloc(10, 0x20)]), true);
  });

  it('Metadata (type 1): reply type 1 with our decodable descriptor', async () => {
    const r = await talk(port, encodeHandshakeFrame(HandshakeType.METADATA, '{"name":"someone","protocol":"tcp"}\n'));
    assert.equal(r.closed, true);
    const reply = parseReply(r.bytes);
    assert.equal(reply.type, HandshakeType.METADATA);
    const desc = decodeSegmentDesc(reply.text);
    assert.equal(desc.name, engine.segmentName);
    assert.equal(desc.name, `127.0.0.1:${port}`);
    assert.equal(desc.protocol, 'tcp');
    assert.equal(desc.tcpDataPort, engine.dataPort);
    assert.equal(desc.tcpProtoVersion, 2);
    const addrs = desc.buffers.map((b) => Number(b.addr));
    assert.ok(addrs.includes(visibleAddr), 'the registered region is missing');
    assert.ok(!addrs.includes(hiddenAddr), 'a remoteAccessible=false region is published');
    assert.equal(desc.buffers.find((b) => Number(b.addr) === visibleAddr)!.length, 8192n);
  });

  it('Probe (type 3): {"status":"success"} with type 3', async () => {
    const r = await talk(port, encodeHandshakeFrame(HandshakeType.PROBE, '{}\n'));
    const reply = parseReply(r.bytes);
    assert.equal(reply.type, HandshakeType.PROBE);
    assert.deepEqual(reply.json, { status: 'success' });
    // The exact bytes of the spec's example request work too.
    const r2 = await talk(port, Buffer.from([4, 0, 0, 0, 0, 0, 0, 0, 3, 0x7b, 0x7d, 0x0a]));
    assert.deepEqual(parseReply(r2.bytes).json, { status: 'success' });
  });

  it('Notify (type 2): success reply, and getNotifies() returns the message once', async () => {
    assert.deepEqual(engine.getNotifies(), []);
    const r = await talk(port, encodeHandshakeFrame(HandshakeType.NOTIFY, '{"name":"peer-7","notify_msg":"done \\u00e9"}\n'));
    const reply = parseReply(r.bytes);
    assert.equal(reply.type, HandshakeType.NOTIFY);
    assert.deepEqual(reply.json, { name: '', notify_msg: 'success' });
    assert.deepEqual(engine.getNotifies(), [{ name: 'peer-7', msg: 'done \u00e9' }]);
    assert.deepEqual(engine.getNotifies(), [], 'getNotifies() must drain');
  });

  it('Connection (type 0): reply type 0 with a non-empty reply_msg (RDMA refused)', async () => {
    const req = JSON.stringify({ local_nic_path: 'x@mlx5_0', peer_nic_path: 'y@mlx5_0', qp_num: [1, 2], local_lid: 0, local_gid: '', reply_msg: '' });
    const r = await talk(port, encodeHandshakeFrame(HandshakeType.CONNECTION, `${req}\n`));
    const reply = parseReply(r.bytes);
    assert.equal(reply.type, HandshakeType.CONNECTION);
    const msg = (reply.json as { reply_msg?: unknown }).reply_msg;
    assert.equal(typeof msg, 'string');
    assert.ok((msg as string).length > 0);
  });

  it('legacy frame (no type byte): reply without a type byte', async () => {
    const json = Buffer.from('{"local_nic_path":"a@b","qp_num":[]}\n');
    const r = await talk(port, Buffer.concat([lengthPrefix(BigInt(json.length)), json]));
    assert.equal(r.closed, true);
    const len = Number(r.bytes.readBigUInt64LE(0));
    assert.equal(r.bytes.length, 8 + len);
    assert.equal(r.bytes[8], 0x7b, 'legacy reply must start with "{", not a type byte');
    const body = JSON.parse(r.bytes.subarray(8).toString('utf8')) as { reply_msg?: unknown };
    assert.ok(typeof body.reply_msg === 'string' && body.reply_msg.length > 0);
  });

  it('50 concurrent handshakes of mixed types are all answered', async () => {
    const types = [HandshakeType.PROBE, HandshakeType.METADATA, HandshakeType.NOTIFY, HandshakeType.CONNECTION];
    const runs = Array.from({ length: 50 }, (_, i) => {
      const t = types[i % types.length]!;
      const json = t === HandshakeType.NOTIFY ? JSON.stringify({ name: `n${i}`, notify_msg: `m${i}` }) : '{}';
      return talk(port, encodeHandshakeFrame(t, `${json}\n`)).then((r) => ({ t, r }));
    });
    const results = await Promise.all(runs);
    for (const { t, r } of results) {
      const reply = parseReply(r.bytes);
      assert.equal(reply.type, t);
      if (t === HandshakeType.METADATA) assert.equal(decodeSegmentDesc(reply.text).name, engine.segmentName);
    }
    const notes = engine.getNotifies();
    assert.equal(notes.length, results.filter((x) => x.t === HandshakeType.NOTIFY).length);
  });

  it('a client that connects and sends nothing is dropped (5 s read timeout); others are served meanwhile', async () => {
    const slow = talk(port, Buffer.alloc(0), { timeoutMs: 9000 });
    const partial = talk(port, lengthPrefix(100n).subarray(0, 3), { timeoutMs: 9000 });
    await assertStillServing(); // not blocked by the silent clients
    const [r1, r2] = await Promise.all([slow, partial]);
    assert.equal(r1.closed, true, 'a silent client was kept for 9 s');
    assert.equal(r1.bytes.length, 0);
    assert.equal(r2.closed, true, 'a stalled half-frame was kept for 9 s');
    assert.equal(r2.bytes.length, 0);
    await assertStillServing();
  });
});
