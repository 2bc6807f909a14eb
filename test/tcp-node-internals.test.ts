/**
 * The Node internals the data server relies on for speed
 * (src/transport/tcp/node-internals.ts) still work on this Node version.
 *
 * Where one no longer does, the server falls back to public APIs and keeps
 * working, only slower; these tests fail loudly instead, so that the fall
 * back is noticed and the fast path fixed for the new version. The fall back
 * paths themselves are tested here too, forced on.
 */
import { describe, it, after } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { once } from 'node:events';
import { setTimeout as delay } from 'node:timers/promises';
import { TcpDataServer } from '../src/transport/tcp/server.js';
import { nodeInternals, unsentBytes, usePublicPathsOnly } from '../src/transport/tcp/node-internals.js';
import { MemoryRegistry } from '../src/memory.js';
import { DEFAULT_LIMITS } from '../src/limits.js';
import { encodeHeader, HEADER_SIZE, STATUS_OK_FRAME } from '../src/codec/wire.js';
import { patternBuffer } from './pattern.js';

const LOUD = `on Node ${process.version}; see src/transport/tcp/node-internals.ts for what it is used for and its fallback`;

function header(size: number, addr: number, write: boolean): Buffer {
  const h = Buffer.alloc(HEADER_SIZE);
  encodeHeader(h, 0, size, addr, write, true);
  return h;
}

/** A raw v2 client: sends bytes, reads exactly what it is told to expect. */
class Raw {
  private chunks: Buffer[] = [];
  private have = 0;
  private wake: (() => void) | null = null;
  private constructor(readonly sock: net.Socket) {
    sock.on('data', (c: Buffer) => {
      this.chunks.push(c);
      this.have += c.length;
      this.wake?.();
    });
  }

  static async open(port: number): Promise<Raw> {
    const s = net.connect({ host: '127.0.0.1', port });
    await once(s, 'connect');
    return new Raw(s);
  }

  async read(n: number, ms = 10_000): Promise<Buffer> {
    const deadline = Date.now() + ms;
    while (this.have < n) {
      if (Date.now() > deadline) throw new Error(`got ${this.have} of ${n} bytes`);
      await new Promise<void>((resolve) => {
        this.wake = resolve;
        setTimeout(resolve, 50);
      });
    }
    const all = Buffer.concat(this.chunks);
    this.chunks = [all.subarray(n)];
    this.have -= n;
    return all.subarray(0, n);
  }
}

/**
 * WRITE a large body (read directly into the region), then many small
 * pipelined WRITEs and READs at once (with a small in-flight limit, the server
 * stops and restarts reading), then a large READ; checks every response byte.
 */
async function exercise(maxRequestsInFlight: number): Promise<void> {
  const registry = new MemoryRegistry();
  const mem = Buffer.alloc(2 << 20);
  const region = registry.register(mem);
  const limits = { ...DEFAULT_LIMITS, maxRequestsInFlight };
  const server = new TcpDataServer(registry, null, { limits });
  const port = await server.listen('127.0.0.1', 0, 20000, 30000);
  const c = await Raw.open(port);
  try {
    const big = patternBuffer(1 << 20, 1);
    c.sock.write(Buffer.concat([header(big.length, region.addr, true), big]));
    assert.ok((await c.read(8)).equals(STATUS_OK_FRAME));
    assert.ok(mem.subarray(0, big.length).equals(big), 'large WRITE landed');

    const small = patternBuffer(64 * 1024, 2);
    const reqs: Buffer[] = [];
    const want: Buffer[] = [];
    const base = region.addr + (1 << 20);
    for (let i = 0; i < 64; i++) {
      const piece = small.subarray(i * 1024, (i + 1) * 1024);
      reqs.push(header(1024, base + i * 1024, true), piece);
      want.push(STATUS_OK_FRAME);
      // READ of the previous piece: written before, on the same connection, so its bytes are there.
      if (i > 0) {
        reqs.push(header(1024, base + (i - 1) * 1024, false));
        want.push(STATUS_OK_FRAME, small.subarray((i - 1) * 1024, i * 1024));
      }
    }
    c.sock.write(Buffer.concat(reqs));
    const expected = Buffer.concat(want);
    assert.ok((await c.read(expected.length)).equals(expected), 'pipelined responses, in order');

    c.sock.write(header(1 << 20, region.addr, false));
    const back = await c.read(8 + (1 << 20));
    assert.ok(back.subarray(0, 8).equals(STATUS_OK_FRAME));
    assert.ok(back.subarray(8).equals(big), 'large READ');
  } finally {
    c.sock.destroy();
    await server.close();
  }
}

describe('Node internals of the data server', () => {
  after(() => usePublicPathsOnly(false));

  it('accepted sockets are taken over and read through onread (zero copy)', async () => {
    const copied = nodeInternals().copiedChunks;
    await exercise(DEFAULT_LIMITS.maxRequestsInFlight);
    const r = nodeInternals();
    assert.equal(
      r.handleTakeover,
      true,
      `the data server can no longer take over an accepted socket's handle (Socket#_handle, and new net.Socket({ handle, onread })) ${LOUD}: it now copies every byte it reads`,
    );
    assert.equal(r.copiedChunks, copied, `a taken-over socket got 'data' events: its onread was ignored ${LOUD}`);
  });

  it("a handle's writeQueueSize shows a large reply being taken while writableLength does not move", async () => {
    let peer: net.Socket | null = null;
    const srv = net.createServer({ pauseOnConnect: true }, (s) => {
      peer = s;
    });
    srv.listen(0, '127.0.0.1');
    await once(srv, 'listening');
    const client = net.connect({ host: '127.0.0.1', port: (srv.address() as net.AddressInfo).port });
    await once(client, 'connect');
    try {
      const size = 32 << 20;
      client.write(Buffer.alloc(size));
      await delay(50); // the kernel's buffers fill; the rest waits in libuv's queue
      const first = unsentBytes(client);
      assert.equal(nodeInternals().writeQueueSize, true, `the handle's writeQueueSize is not readable ${LOUD}: the stall check takes slow large replies for stalls`);
      assert.equal(client.writableLength, size, 'one write: counted whole until its callback');
      assert.ok(first > size, 'the queue counts too');
      // A reader takes 2 MiB and stops: the queue shrinks, writableLength does not (32 MiB is more than the kernel's buffers hold).
      let total = 0;
      peer!.on('data', (c: Buffer) => {
        total += c.length;
        if (total >= 2 << 20) peer!.pause();
      });
      peer!.resume();
      let moved = false;
      for (let i = 0; i < 500 && !moved; i++) {
        await delay(2);
        moved = unsentBytes(client) < first;
      }
      assert.equal(client.writableLength, size, 'the write is not done');
      assert.ok(moved, 'progress seen before the write completed');
    } finally {
      client.destroy();
      (peer as net.Socket | null)?.destroy();
      srv.close();
    }
  });

  it('returning false from onread stops reading and resume() starts it again (the public API the server restarts with)', async () => {
    const srv = net.createServer((s) => s.end(Buffer.alloc(64, 7)));
    srv.listen(0, '127.0.0.1');
    await once(srv, 'listening');
    let got = 0;
    let calls = 0;
    const client = net.connect({
      host: '127.0.0.1',
      port: (srv.address() as net.AddressInfo).port,
      onread: {
        buffer: Buffer.alloc(16),
        callback: (n: number): boolean => {
          got += n;
          return ++calls !== 1;
        },
      },
    });
    try {
      await delay(100);
      assert.equal(calls, 1, 'no read after the callback returned false');
      client.resume();
      const deadline = Date.now() + 5000;
      while (got < 64 && Date.now() < deadline) await delay(5);
      assert.equal(got, 64);
    } finally {
      client.destroy();
      srv.close();
    }
  });

  it('the public paths serve the same bytes (forced on)', async () => {
    const before = nodeInternals();
    usePublicPathsOnly(true);
    try {
      await exercise(4);
    } finally {
      usePublicPathsOnly(false);
    }
    const r = nodeInternals();
    assert.ok(r.copiedChunks > before.copiedChunks, 'read through data events');
    assert.equal(r.handleTakeover, before.handleTakeover, 'the probe is left alone');
  });
});
