/**
 * Limits against abusive peers, with raw sockets: connections per peer
 * address (data and RPC ports), responses queued per connection, descriptor
 * size, handshake rate per address, and slow peers (a request begun and not
 * continued, unfinished authentication, responses never read) closed after
 * the stall timeout with their pins released, while idle connections between
 * requests stay open. Limits are set small through the engine's `config`.
 */
import { describe, it, after } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { TransferEngine, ErrorCode, TransferEngineError, type EngineConfig } from '../src/core.js';
import { HandshakeType, encodeHandshakeFrame } from '../src/codec/handshake.js';
import { decodeSegmentDesc, encodeSegmentDesc } from '../src/codec/descriptor.js';
import { STATUS_OK_FRAME } from '../src/codec/wire.js';
import { MetadataHttpServer } from '../src/metadata/http-server.js';
import { encodeDescriptorValue } from '../src/metadata/values.js';
import { CHALLENGE_SIZE } from '../src/codec/auth.js';
import { patternBuffer } from './pattern.js';
import { RawConn, header, READ, WRITE, V2, waitFor } from './security-helpers.js';

const engines: TransferEngine[] = [];
async function engine(config: Partial<EngineConfig>, extra: { authSecret?: string; metadataServer?: string } = {}): Promise<TransferEngine> {
  const e = new TransferEngine({ env: {}, config, ...extra });
  await e.init('127.0.0.1');
  engines.push(e);
  return e;
}
after(async () => {
  for (const e of engines) await e.close();
});

function teCode(code: string): (e: unknown) => boolean {
  return (e) => e instanceof TransferEngineError && e.code === code;
}

/** A probe frame answered on the RPC port? */
async function probe(port: number): Promise<boolean> {
  const c = await RawConn.open(port);
  c.write(encodeHandshakeFrame(HandshakeType.PROBE, '{}\n'));
  await c.waitClosed(3000);
  c.destroy();
  return c.bytes.includes(Buffer.from('"status":"success"'));
}

/** A 16-byte v2 READ answered on the connection? */
async function served(c: RawConn, addr: number): Promise<boolean> {
  const want = c.have + 8 + 16;
  c.write(header(16, addr, READ | V2));
  const got = await c.waitBytes(want, 3000);
  return got.length >= want && got.subarray(want - 24, want - 16).equals(STATUS_OK_FRAME);
}

describe('connections per peer address', () => {
  it('data port: the connection beyond the limit is closed at once; the others are served', async () => {
    const e = await engine({ maxDataConnectionsPerPeer: 3 });
    const addr = e.registerLocalMemory(patternBuffer(4096, 1));
    const conns = [await RawConn.open(e.dataPort), await RawConn.open(e.dataPort), await RawConn.open(e.dataPort)];
    const extra = await RawConn.open(e.dataPort);
    assert.equal(await extra.waitClosed(2000), true, 'a 4th connection from the same address was kept');
    assert.equal(extra.have, 0);
    for (const c of conns) assert.equal(await served(c, addr), true);
    assert.equal(e.stats().connectionsRefused, 1);
    conns[0]!.destroy();
    await waitFor(() => e.stats().dataConnections === 2);
    const again = await RawConn.open(e.dataPort);
    assert.equal(await served(again, addr), true, 'a slot freed by a close is usable again');
    for (const c of [...conns, again]) c.destroy();
  });

  it('RPC port: the same, per address', async () => {
    const e = await engine({ maxRpcConnectionsPerPeer: 2 });
    const held = [await RawConn.open(e.rpcPort), await RawConn.open(e.rpcPort)]; // silent: held until the 5 s read timeout
    await sleep(50);
    assert.equal(await probe(e.rpcPort), false, 'a 3rd connection was served');
    held[0]!.destroy();
    await sleep(50);
    assert.equal(await probe(e.rpcPort), true);
    held[1]!.destroy();
    assert.ok(e.stats().connectionsRefused >= 1);
  });
});

describe('requests in flight per connection', () => {
  it('a client that pipelines READs and never reads the answers makes the server stop reading, not buffer', async () => {
    const LIMIT = 16;
    const e = await engine({ maxRequestsInFlight: LIMIT, stallTimeoutMs: 20_000 });
    const addr = e.registerLocalMemory(patternBuffer(16 * 1024, 2));
    const N = 2000; // 32 MiB of answers: far more than the kernel buffers hold while nobody reads
    const c = await RawConn.open(e.dataPort);
    c.sock.pause();
    const reqs = Buffer.concat(Array.from({ length: N }, () => header(16 * 1024, addr, READ | V2)));
    c.write(reqs);
    // The server serves until the kernel's buffers are full, then LIMIT more, then stops.
    let last = -1;
    await waitFor(() => {
      const n = e.stats().requestsServed;
      const still = n === last;
      last = n;
      return still && n > 0;
    }, 10_000);
    await sleep(200);
    const stuck = e.stats().requestsServed;
    assert.ok(stuck < N, `the server took all ${N} requests while none of the answers was read`);
    const peak = (e as unknown as { parts: { tcp: { stats(): { data: { peakQueued: number } } } } }).parts.tcp.stats().data.peakQueued;
    assert.equal(peak, LIMIT, 'the queue of unsent answers did not stop at the limit');
    // Reading resumes everything, in order and complete.
    c.sock.resume();
    const total = N * (8 + 16 * 1024);
    const got = await c.waitBytes(total, 20_000);
    assert.equal(got.length, total);
    assert.equal(e.stats().requestsServed, N);
    c.destroy();
  });
});

describe('sizes', () => {
  it('a descriptor above TE_MAX_DESCRIPTOR_SIZE is TE_FRAME_TOO_LARGE, before it is parsed', async () => {
    const big = encodeSegmentDesc({
      name: 'x:1', protocol: 'tcp', tcpDataPort: 1, tcpProtoVersion: 2,
      buffers: Array.from({ length: 100 }, (_, i) => ({ name: 'x:1', addr: BigInt(4096 * (i + 1)), length: 10n })),
    });
    assert.ok(big.length > 2048);
    assert.throws(() => decodeSegmentDesc(big, { maxLength: 2048 }), teCode(ErrorCode.FRAME_TOO_LARGE));
    assert.equal(decodeSegmentDesc(big).buffers.length, 100);
    // Through an engine: a fake peer answering Metadata with that descriptor.
    const fake = net.createServer((s) => {
      s.once('data', () => s.end(encodeHandshakeFrame(HandshakeType.METADATA, big)));
      s.on('error', () => s.destroy());
    });
    await new Promise<void>((r) => fake.listen(0, '127.0.0.1', r));
    const port = (fake.address() as net.AddressInfo).port;
    try {
      const e = await engine({ maxDescriptorSize: 2048 });
      await assert.rejects(e.openSegment(`127.0.0.1:${port}`), teCode(ErrorCode.FRAME_TOO_LARGE));
    } finally {
      fake.close();
    }
  });

  it('the same limit applies to a descriptor read from a metadata store', async () => {
    const meta = await MetadataHttpServer.start({ host: '127.0.0.1', port: 0 });
    try {
      const stored = (name: string, n: number): string => encodeDescriptorValue({
        name, protocol: 'tcp', tcpDataPort: 1, tcpProtoVersion: 2,
        buffers: Array.from({ length: n }, (_, i) => ({ name, addr: BigInt(4096 * (i + 1)), length: 10n })),
      }, false);
      const put = async (key: string, value: string): Promise<void> => {
        const r = await fetch(`${meta.url}?key=${encodeURIComponent(key)}`, { method: 'PUT', body: value });
        assert.equal(r.status, 200);
      };
      for (const name of ['big', 'small']) await put(`mooncake/rpc_meta/${name}`, '{"ip_or_host_name":"127.0.0.1","rpc_port":1}');
      await put('mooncake/ram/big', stored('big', 100));
      await put('mooncake/ram/small', stored('small', 2));
      const e = await engine({ maxDescriptorSize: 2048 }, { metadataServer: meta.url });
      await assert.rejects(e.openSegment('big'), (err: unknown) =>
        err instanceof TransferEngineError && err.code === ErrorCode.FRAME_TOO_LARGE && err.message.includes('mooncake/ram/big'));
      // A descriptor within the limit still opens: the bound is the configured one, not a blanket refusal.
      assert.equal(e.getSegmentDescriptor(await e.openSegment('small')).buffers.length, 2);
    } finally {
      await meta.close();
    }
  });
});

describe('handshake rate per address', () => {
  it('beyond the burst, connections are closed without a reply until tokens refill', async () => {
    const e = await engine({ handshakeRate: 5, handshakeBurst: 3 });
    const results: boolean[] = [];
    for (let i = 0; i < 4; i++) results.push(await probe(e.rpcPort));
    assert.deepEqual(results, [true, true, true, false]);
    assert.equal(e.stats().handshakesRateLimited, 1);
    await sleep(250); // 5 per second: one token back after 200 ms
    assert.equal(await probe(e.rpcPort), true);
  });
});

describe('handshake frame followed by extra bytes in the same read', () => {
  it('is answered (as Mooncake does), the extra bytes ignored', async () => {
    const e = await engine({});
    const c = await RawConn.open(e.rpcPort);
    c.write(Buffer.concat([encodeHandshakeFrame(HandshakeType.PROBE, '{}\n'), Buffer.from('trailing garbage')]));
    await c.waitClosed(3000);
    assert.ok(c.bytes.includes(Buffer.from('"status":"success"')), `reply: ${c.bytes.toString('latin1')}`);
  });
});

describe('slow peers (stall timeout)', () => {
  const STALL = 300;

  it('data port: a partial header, or a WRITE body that stops, is closed; its pin is released', async () => {
    const e = await engine({ stallTimeoutMs: STALL });
    const addr = e.registerLocalMemory(Buffer.alloc(64 * 1024));
    const partial = await RawConn.open(e.dataPort);
    partial.write(header(16, addr, READ | V2).subarray(0, 10));
    const body = await RawConn.open(e.dataPort);
    body.write(Buffer.concat([header(64 * 1024, addr, WRITE | V2), Buffer.alloc(1000, 1)]));
    await sleep(50);
    assert.throws(() => e.unregisterLocalMemory(addr), teCode(ErrorCode.REGION_BUSY), 'the half-received WRITE pins its region');
    assert.equal(await partial.waitClosed(STALL * 10), true, 'a partial header was kept');
    assert.equal(await body.waitClosed(STALL * 10), true, 'a stalled WRITE body was kept');
    assert.equal(partial.have + body.have, 0);
    assert.ok(e.stats().connectionsStalled >= 2);
    e.unregisterLocalMemory(addr); // the pin went with the connection
  });

  it('data port: a client that never reads its READ data is closed; the pins go', async () => {
    const e = await engine({ stallTimeoutMs: STALL });
    const addr = e.registerLocalMemory(Buffer.alloc(8 << 20));
    const c = await RawConn.open(e.dataPort);
    c.sock.pause();
    for (let i = 0; i < 8; i++) c.write(header(8 << 20, addr, READ | V2));
    await waitFor(() => e.stats().requestsServed >= 1);
    assert.throws(() => e.unregisterLocalMemory(addr), teCode(ErrorCode.REGION_BUSY), 'the queued READ data pin the region');
    assert.equal(await waitFor(() => e.stats().connectionsStalled >= 1, STALL * 20), true, 'a client that does not read was kept');
    assert.equal(e.stats().dataConnections, 0);
    e.unregisterLocalMemory(addr); // the pins went with the connection
    c.sock.resume(); // the client learns: the connection was reset
    assert.equal(await c.waitClosed(3000), true);
    assert.ok(c.have < 8 * (8 << 20), 'all the data arrived anyway');
  });

  it('data port: a slow but steady reader of one large READ is not cut off', async () => {
    const e = await engine({ stallTimeoutMs: STALL });
    const SIZE = 32 << 20; // one write on the server: its callback comes only at the end
    const addr = e.registerLocalMemory(Buffer.alloc(SIZE));
    const c = await RawConn.open(e.dataPort);
    c.sock.pause();
    c.write(header(SIZE, addr, READ | V2));
    const total = 8 + SIZE;
    const t0 = performance.now();
    while (c.have < total && !c.closed && performance.now() - t0 < 20_000) {
      await sleep(STALL / 2); // paused for half the stall timeout, then take 4 MiB
      const want = Math.min(total, c.have + (4 << 20));
      c.sock.resume();
      await c.waitBytes(want, 2000);
      c.sock.pause();
    }
    assert.equal(c.closed, false, 'a slow reader was taken for a stalled one');
    assert.equal(c.have, total);
    assert.equal(e.stats().connectionsStalled, 0);
    c.destroy();
  });

  it('data port: an idle connection between requests stays open', async () => {
    const e = await engine({ stallTimeoutMs: STALL });
    const addr = e.registerLocalMemory(patternBuffer(4096, 3));
    const c = await RawConn.open(e.dataPort);
    assert.equal(await served(c, addr), true);
    await sleep(STALL * 4);
    assert.equal(c.closed, false, 'an idle pooled connection was closed');
    assert.equal(await served(c, addr), true);
    c.destroy();
  });

  it('data port with a secret: a client that never answers the challenge is closed', async () => {
    const e = await engine({ stallTimeoutMs: STALL }, { authSecret: 'a secret of more than 16 bytes' });
    const c = await RawConn.open(e.dataPort);
    c.write(Buffer.from('TEAUTH')); // the start of an answer, then nothing
    assert.equal(await c.waitClosed(STALL * 10), true);
    assert.equal(c.have, CHALLENGE_SIZE, 'only the challenge was sent');
    assert.ok(e.stats().connectionsStalled >= 1);
  });

  it('RPC port: a frame that stops, or one trickled byte by byte, is closed before it completes', async () => {
    const e = await engine({ stallTimeoutMs: 600 });
    const frame = encodeHandshakeFrame(HandshakeType.PROBE, `${JSON.stringify({ pad: 'x'.repeat(200) })}\n`);
    const stopped = await RawConn.open(e.rpcPort);
    stopped.write(frame.subarray(0, 20));
    const trickle = await RawConn.open(e.rpcPort);
    let i = 0;
    const t = setInterval(() => {
      if (!trickle.closed && i < frame.length) trickle.write(frame.subarray(i, ++i));
    }, 50);
    try {
      assert.equal(await stopped.waitClosed(3000), true, 'a stopped frame was kept');
      assert.equal(await trickle.waitClosed(3000), true, 'a trickled frame was kept');
      assert.ok(i < frame.length, 'the trickled frame completed anyway');
      assert.equal(stopped.have + trickle.have, 0);
      assert.ok(e.stats().connectionsStalled >= 2);
    } finally {
      clearInterval(t);
    }
  });
});
