/**
 * Bad input on the TCP data port (target side), with raw sockets on 127.0.0.1.
 * Every case checks what the server sends back (byte for byte), whether it
 * drops the connection, that it keeps serving a bystander connection opened
 * before the bad one, and that no byte outside the addressed range changes.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { TransferEngine, TransferOpcode, TaskStatus } from '../src/core.js';
import { patternBuffer } from './pattern.js';

const OK_FRAME = Buffer.from([0x00, 0x00, 0x00, 0x00, 0x56, 0x54, 0x43, 0x4d]);
const REJECT_FRAME = Buffer.from([0x01, 0x00, 0x00, 0x00, 0x56, 0x54, 0x43, 0x4d]);
const READ = 0x00;
const WRITE = 0x01;
const V2 = 0x80;
const U64_MAX = (1n << 64n) - 1n;

/** A 24-byte request header. `pad` fills bytes 17..23 (zeros by default). */
function header(size: bigint | number, addr: bigint | number, opcode: number, pad = 0): Buffer {
  const h = Buffer.alloc(24, pad);
  h.writeBigUInt64LE(BigInt(size), 0);
  h.writeBigUInt64LE(BigInt(addr), 8);
  h[16] = opcode;
  return h;
}

/** A raw client socket that records everything it receives and when it closes. */
class RawConn {
  private chunks: Buffer[] = [];
  private have = 0;
  private wakers: Array<() => void> = [];
  closed = false;
  readonly sock: net.Socket;

  private constructor(sock: net.Socket) {
    this.sock = sock;
    sock.on('data', (c: Buffer) => {
      this.chunks.push(c);
      this.have += c.length;
      this.wake();
    });
    sock.on('error', () => {
      /* resets are expected in some cases; 'close' follows */
    });
    sock.on('close', () => {
      this.closed = true;
      this.wake();
    });
  }

  static open(port: number): Promise<RawConn> {
    return new Promise((resolve, reject) => {
      const s = net.connect({ host: '127.0.0.1', port });
      s.once('connect', () => {
        s.off('error', reject);
        resolve(new RawConn(s));
      });
      s.once('error', reject);
    });
  }

  private wake(): void {
    const w = this.wakers;
    this.wakers = [];
    for (const f of w) f();
  }

  private until(cond: () => boolean, timeoutMs: number, what: string): Promise<void> {
    return new Promise((resolve, reject) => {
      const check = (): void => {
        if (cond()) {
          clearTimeout(t);
          resolve();
        } else this.wakers.push(check);
      };
      const t = setTimeout(() => reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what}`)), timeoutMs);
      check();
    });
  }

  get received(): number {
    return this.have;
  }

  /** All bytes received so far. */
  all(): Buffer {
    return Buffer.concat(this.chunks);
  }

  /** Wait for exactly `n` more bytes (fails if the connection closes first). */
  async read(n: number, timeoutMs = 5000): Promise<Buffer> {
    await this.until(() => this.have >= n || this.closed, timeoutMs, `${n} bytes`);
    if (this.have < n) throw new Error(`connection closed after ${this.have} of ${n} bytes`);
    const all = Buffer.concat(this.chunks);
    this.chunks = all.length > n ? [all.subarray(n)] : [];
    this.have -= n;
    return all.subarray(0, n);
  }

  async waitClosed(timeoutMs = 5000): Promise<void> {
    await this.until(() => this.closed, timeoutMs, 'the server to close the connection');
  }

  write(b: Buffer): void {
    this.sock.write(b);
  }

  destroy(): void {
    this.sock.destroy();
  }
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

describe('data port: bad input from a raw client', () => {
  const engine = new TransferEngine();
  const SIZE = 256 * 1024;
  /** Region A: the target of most requests; its content is its seed pattern unless a test writes it. */
  let memA: Buffer;
  let memB: Buffer;
  let addrA = 0;
  let addrB = 0;
  let addrHidden = 0;
  let port = 0;
  /** A connection opened before any bad input: it must keep working throughout. */
  let bystander: RawConn;
  const open: RawConn[] = [];

  async function conn(): Promise<RawConn> {
    const c = await RawConn.open(port);
    open.push(c);
    return c;
  }

  /** Restore region A to its pattern. */
  function resetA(): void {
    patternBuffer(SIZE, 11).copy(memA);
  }

  /** The server still answers the bystander and a fresh connection with correct data. */
  async function assertStillServing(): Promise<void> {
    for (const c of [bystander, await conn()]) {
      const off = 4096;
      c.write(header(512, addrB + off, READ | V2));
      const got = await c.read(8 + 512);
      assert.deepEqual(got.subarray(0, 8), OK_FRAME);
      assert.deepEqual(got.subarray(8), memB.subarray(off, off + 512));
    }
    assert.equal(bystander.closed, false, 'the bystander connection was dropped');
  }

  /** Send one bad request on a fresh connection; expect the v2 rejection frame and a close. */
  async function expectV2Rejected(h: Buffer, body?: Buffer): Promise<void> {
    const before = engine.stats().requestsRejected;
    const c = await conn();
    c.write(body ? Buffer.concat([h, body]) : h);
    await c.waitClosed();
    assert.deepEqual(c.all(), REJECT_FRAME, 'expected exactly the 8-byte rejection frame');
    assert.equal(engine.stats().requestsRejected, before + 1);
    assert.deepEqual(memA, patternBuffer(SIZE, 11), 'region A changed');
    await assertStillServing();
  }

  before(async () => {
    await engine.init('127.0.0.1');
    memA = patternBuffer(SIZE, 11);
    memB = patternBuffer(SIZE, 22);
    addrA = engine.registerLocalMemory(memA, 'cpu:0', true);
    addrB = engine.registerLocalMemory(memB, 'cpu:0', true);
    addrHidden = engine.registerLocalMemory(patternBuffer(4096, 33), 'cpu:0', false);
    port = engine.dataPort;
    bystander = await conn();
  });

  after(async () => {
    for (const c of open) c.destroy();
    await engine.close();
  });

  it('truncated header then close: connection closed with no reply, server unharmed', async () => {
    const c = await conn();
    c.write(header(64, addrA, READ | V2).subarray(0, 10));
    await sleep(50);
    assert.equal(c.received, 0, 'the server answered half a header');
    c.sock.end();
    await c.waitClosed();
    assert.equal(c.received, 0);
    await assertStillServing();
  });

  it('size 0: v2 gets the rejection frame and a close', async () => {
    await expectV2Rejected(header(0, addrA, READ | V2));
    await expectV2Rejected(header(0, addrA, WRITE | V2));
  });

  it('size 0: v1 is closed without a byte', async () => {
    const c = await conn();
    c.write(header(0, addrA, WRITE));
    await c.waitClosed();
    assert.equal(c.received, 0);
    await assertStillServing();
  });

  it('address outside every region (0, below, in the guard page, far above) is rejected', async () => {
    await expectV2Rejected(header(16, 0, READ | V2));
    await expectV2Rejected(header(16, addrA - 4096, READ | V2));
    await expectV2Rejected(header(16, addrA + SIZE + 8, WRITE | V2), Buffer.alloc(16, 0xee));
    await expectV2Rejected(header(16, addrB + 64 * 1024 * 1024, READ | V2));
  });

  it('a range spanning past a region end is rejected and writes nothing', async () => {
    const body = Buffer.alloc(64, 0xee);
    await expectV2Rejected(header(64, addrA + SIZE - 32, WRITE | V2), body);
    await expectV2Rejected(header(SIZE + 1, addrA, READ | V2));
  });

  it('a range spanning two regions is rejected and writes nothing', async () => {
    const len = addrB - addrA + 64; // from inside A, across the guard page, into B
    const c = await conn();
    const before = engine.stats().requestsRejected;
    c.write(Buffer.concat([header(len, addrA + SIZE - 64, WRITE | V2), Buffer.alloc(128, 0xee)]));
    await c.waitClosed();
    assert.deepEqual(c.all(), REJECT_FRAME);
    assert.equal(engine.stats().requestsRejected, before + 1);
    assert.deepEqual(memA, patternBuffer(SIZE, 11));
    assert.deepEqual(memB, patternBuffer(SIZE, 22));
    await assertStillServing();
  });

  it('addr + size overflowing u64 is rejected', async () => {
    await expectV2Rejected(header(64, U64_MAX - 10n, READ | V2));
    await expectV2Rejected(header(U64_MAX, addrA, READ | V2));
    await expectV2Rejected(header(U64_MAX - BigInt(addrA) + 2n, addrA, WRITE | V2), Buffer.alloc(32, 0xee));
  });

  it('addr or size at or above 2^53 is rejected (no rounding onto a real region)', async () => {
    const two53 = 1n << 53n;
    await expectV2Rejected(header(16, two53, READ | V2));
    await expectV2Rejected(header(16, two53 + 1n, READ | V2));
    // 2^53 + addrA would round to a different double; it must still be refused.
    await expectV2Rejected(header(16, two53 + BigInt(addrA), WRITE | V2), Buffer.alloc(16, 0xee));
    // The low 32 bits point into A; only the high half is wrong.
    await expectV2Rejected(header(16, (0xffffn << 48n) | BigInt(addrA), READ | V2));
    await expectV2Rejected(header(two53 + 16n, addrA, READ | V2));
  });

  it('v1 rejection: closed without any byte', async () => {
    for (const h of [header(16, 0x1234, READ), header(64, addrA + SIZE - 32, WRITE)]) {
      const before = engine.stats().requestsRejected;
      const c = await conn();
      c.write(h);
      await c.waitClosed();
      assert.equal(c.received, 0, 'v1 has no rejection frame');
      assert.equal(engine.stats().requestsRejected, before + 1);
    }
    assert.deepEqual(memA, patternBuffer(SIZE, 11));
    await assertStillServing();
  });

  it('a region registered with remoteAccessible=false is refused (READ and WRITE)', async () => {
    await expectV2Rejected(header(16, addrHidden, READ | V2));
    await expectV2Rejected(header(16, addrHidden, WRITE | V2), Buffer.alloc(16, 0xee));
    const c = await conn();
    c.write(header(16, addrHidden, READ));
    await c.waitClosed();
    assert.equal(c.received, 0);
    const hidden = engine.localView(addrHidden, 4096);
    assert.deepEqual(Buffer.from(hidden), patternBuffer(4096, 33), 'the hidden region changed');
    // ...and the descriptor does not publish it.
    const published = engine.getLocalSegmentDescriptor().buffers.map((b) => Number(b.addr));
    assert.ok(!published.includes(addrHidden));
    assert.ok(published.includes(addrA) && published.includes(addrB));
  });

  it('v2 READ: OK frame then exactly the bytes, nothing more', async () => {
    const c = await conn();
    for (const [off, len] of [[0, 1], [100, 4000], [SIZE - 70_000, 70_000], [0, SIZE]] as const) {
      c.write(header(len, addrA + off, READ | V2));
      const got = await c.read(8 + len);
      assert.deepEqual(got.subarray(0, 8), OK_FRAME);
      assert.ok(got.subarray(8).equals(memA.subarray(off, off + len)), `READ [${off}, +${len}) returned wrong bytes`);
    }
    await sleep(50);
    assert.equal(c.received, 0, 'extra bytes after the READ data');
    assert.equal(c.closed, false);
  });

  it('v2 WRITE: exactly one OK, only after the whole body; bytes land exactly in range', async () => {
    resetA();
    try {
      const c = await conn();
      const off = 1000;
      const len = 100_000; // large enough for the direct-to-region path
      const body = patternBuffer(len, 77);
      c.write(header(len, addrA + off, WRITE | V2));
      c.write(body.subarray(0, len - 1));
      await sleep(100);
      assert.equal(c.received, 0, 'the server answered before the body was complete');
      c.write(body.subarray(len - 1));
      assert.deepEqual(await c.read(8), OK_FRAME);
      await sleep(50);
      assert.equal(c.received, 0, 'more than one status frame for one WRITE');
      const want = patternBuffer(SIZE, 11);
      body.copy(want, off);
      assert.ok(memA.equals(want), 'WRITE changed bytes outside its range or wrote wrong bytes');
      // A small WRITE (scratch path) and a READ back on the same connection.
      c.write(Buffer.concat([header(3, addrA + 5, WRITE | V2), Buffer.from([1, 2, 3]), header(5, addrA + 4, READ | V2)]));
      const got = await c.read(8 + 8 + 5);
      assert.deepEqual(got.subarray(0, 8), OK_FRAME);
      assert.deepEqual(got.subarray(8, 16), OK_FRAME);
      assert.deepEqual(got.subarray(16), Buffer.from([want[4]!, 1, 2, 3, want[8]!]));
    } finally {
      resetA();
    }
  });

  it('v1 READ returns raw bytes and v1 WRITE is silent', async () => {
    resetA();
    try {
      const c = await conn();
      c.write(Buffer.concat([header(4, addrA + 10, WRITE), Buffer.from([9, 8, 7, 6]), header(8, addrA + 8, READ)]));
      const got = await c.read(8);
      const want = patternBuffer(SIZE, 11);
      want.set([9, 8, 7, 6], 10);
      assert.deepEqual(got, want.subarray(8, 16));
      assert.ok(memA.equals(want));
      await sleep(30);
      assert.equal(c.received, 0);
    } finally {
      resetA();
    }
  });

  it('garbage in padding bytes 17..23 is ignored; opcode bits other than WRITE mean READ', async () => {
    resetA();
    try {
      const c = await conn();
      c.write(Buffer.concat([header(4, addrA + 64, WRITE | V2, 0xff), Buffer.from([1, 2, 3, 4])]));
      assert.deepEqual(await c.read(8), OK_FRAME);
      c.write(header(8, addrA + 64, READ | V2, 0xa5));
      const got = await c.read(16);
      assert.deepEqual(got.subarray(0, 8), OK_FRAME);
      const want = patternBuffer(SIZE, 11);
      want.set([1, 2, 3, 4], 64);
      assert.deepEqual(got.subarray(8), want.subarray(64, 72));
      // Mooncake: anything but WRITE (after masking 0x80) is a READ.
      c.write(header(8, addrA + 64, 0x02 | V2, 0x5a));
      const got2 = await c.read(16);
      assert.deepEqual(got2.subarray(0, 8), OK_FRAME);
      assert.deepEqual(got2.subarray(8), want.subarray(64, 72));
      assert.ok(memA.equals(want));
    } finally {
      resetA();
    }
  });

  it('many pipelined requests on one connection are answered in order', async () => {
    resetA();
    try {
      const c = await conn();
      const N = 600;
      const parts: Buffer[] = [];
      const expect: Buffer[] = [];
      const want = patternBuffer(SIZE, 11);
      const half = SIZE / 2;
      let slot = 0;
      for (let i = 0; i < N; i++) {
        if (i % 3 === 2) {
          // WRITE 64 distinct bytes into a fresh slot of the upper half, then READ them back.
          const off = half + 64 * slot++;
          const body = Buffer.alloc(64, i & 0xff);
          parts.push(header(64, addrA + off, WRITE | V2), body, header(64, addrA + off, READ | V2));
          body.copy(want, off);
          expect.push(OK_FRAME, OK_FRAME, body);
        } else {
          // READs of varying sizes from the lower half, which no request writes.
          const off = (i * 389) % (half - 4096);
          const len = 1 + ((i * 97) % 4000);
          parts.push(header(len, addrA + off, READ | V2));
          expect.push(OK_FRAME, Buffer.from(want.subarray(off, off + len)));
        }
      }
      c.write(Buffer.concat(parts));
      const total = expect.reduce((n, b) => n + b.length, 0);
      const got = await c.read(total, 10_000);
      const exp = Buffer.concat(expect);
      if (!got.equals(exp)) {
        let k = 0;
        while (got[k] === exp[k]) k++;
        assert.fail(`pipelined responses differ from byte ${k} of ${total}`);
      }
      assert.ok(memA.equals(want));
      await sleep(30);
      assert.equal(c.received, 0);
    } finally {
      resetA();
    }
  });

  it('a READ pipelined before a WRITE to the same bytes returns the bytes as they were before the WRITE', async () => {
    resetA();
    try {
      const c = await conn();
      const old = Buffer.from(memA.subarray(128, 136));
      // One segment: READ 8 bytes, then WRITE 8 new bytes over them. Served in order,
      // the READ must see the old bytes (Mooncake finishes each request before the next).
      c.write(Buffer.concat([header(8, addrA + 128, READ | V2), header(8, addrA + 128, WRITE | V2), Buffer.alloc(8, 0x55)]));
      const got = await c.read(8 + 8 + 8);
      assert.deepEqual(got.subarray(0, 8), OK_FRAME);
      assert.deepEqual(got.subarray(16, 24), OK_FRAME);
      assert.deepEqual(memA.subarray(128, 136), Buffer.alloc(8, 0x55));
      assert.equal(got.subarray(8, 16).toString('hex'), old.toString('hex'), 'the READ returned data written by a later request');
      // The same with a large READ (zero-copy path) overtaken by a large WRITE.
      resetA();
      const len = 128 * 1024;
      const before = Buffer.from(memA.subarray(0, len));
      c.write(Buffer.concat([header(len, addrA, READ | V2), header(len, addrA, WRITE | V2), Buffer.alloc(len, 0x66)]));
      const got2 = await c.read(8 + len + 8);
      assert.deepEqual(got2.subarray(8 + len), OK_FRAME);
      assert.ok(got2.subarray(8, 8 + len).equals(before), 'the large READ returned data written by a later request');
    } finally {
      resetA();
    }
  });

  it('a rejected request ends the connection: requests pipelined behind it get no answer', async () => {
    resetA();
    const c = await conn();
    c.write(
      Buffer.concat([
        header(8, addrA, READ | V2),
        header(8, 0x10, READ | V2), // bad
        header(4, addrA, WRITE | V2),
        Buffer.from([0xde, 0xad, 0xbe, 0xef]),
      ]),
    );
    await c.waitClosed();
    const got = c.all();
    assert.deepEqual(got, Buffer.concat([OK_FRAME, memA.subarray(0, 8), REJECT_FRAME]));
    assert.deepEqual(memA, patternBuffer(SIZE, 11), 'the WRITE behind the rejection was applied');
    await assertStillServing();
  });

  it('a client that dies mid-WRITE body: others still served, nothing outside the range written, region unpinned', async () => {
    const big = Buffer.alloc(4 * 1024 * 1024);
    const guard = patternBuffer(big.length, 55);
    guard.copy(big);
    const bigAddr = engine.registerLocalMemory(big);
    let registered = true;
    try {
      const off = 1024 * 1024;
      const len = 2 * 1024 * 1024;
      const c = await conn();
      c.write(header(len, bigAddr + off, WRITE | V2));
      await new Promise<void>((r) => c.sock.write(Buffer.alloc(300 * 1024, 0xee), () => r()));
      await sleep(50);
      c.sock.resetAndDestroy();
      // The server notices the reset and releases the region: unregister then succeeds
      // (TE_REGION_BUSY for good would mean the dead connection's pin leaked).
      const t0 = Date.now();
      for (;;) {
        try {
          engine.unregisterLocalMemory(bigAddr);
          registered = false;
          break;
        } catch (e) {
          assert.equal((e as { code?: string }).code, 'TE_REGION_BUSY');
          assert.ok(Date.now() - t0 < 5000, 'the region stayed pinned after the client died');
          await sleep(20);
        }
      }
      assert.ok(big.subarray(0, off).equals(guard.subarray(0, off)), 'bytes before the range changed');
      assert.ok(big.subarray(off + len).equals(guard.subarray(off + len)), 'bytes after the range changed');
      for (let i = off; i < off + len; i++) {
        if (big[i] !== 0xee && big[i] !== guard[i]) assert.fail(`byte ${i} holds neither old nor new data`);
      }
      await assertStillServing();
      // A real initiator can still write and read back through this server.
      const client = new TransferEngine();
      await client.init('127.0.0.1');
      try {
        const src = patternBuffer(8192, 99);
        const srcAddr = client.registerLocalMemory(src);
        const seg = await client.openSegment(engine.segmentName);
        const bid = client.allocateBatchID(1);
        client.submitTransfer(bid, [{ opcode: TransferOpcode.WRITE, source: srcAddr, targetId: seg, targetOffset: addrB + 8192, length: 8192 }]);
        const [st] = await client.waitBatch(bid);
        assert.equal(st!.status, TaskStatus.COMPLETED);
        assert.ok(memB.subarray(8192, 16384).equals(src));
      } finally {
        await client.close();
        patternBuffer(SIZE, 22).copy(memB);
      }
    } finally {
      if (registered) {
        try {
          engine.unregisterLocalMemory(bigAddr);
        } catch {
          /* still pinned: the assertion above already failed */
        }
      }
    }
  });

  it('a region cannot be unregistered while a WRITE body is arriving; afterwards its address is refused', async () => {
    const mem = patternBuffer(64 * 1024, 66);
    const a = engine.registerLocalMemory(mem);
    let registered = true;
    try {
      const c = await conn();
      c.write(Buffer.concat([header(1000, a + 100, WRITE | V2), Buffer.alloc(500, 0x11)]));
      await sleep(50);
      assert.throws(
        () => engine.unregisterLocalMemory(a),
        (e: unknown) => (e as { code?: string }).code === 'TE_REGION_BUSY',
        'the region was unregistered under an incoming WRITE',
      );
      c.write(Buffer.alloc(500, 0x11));
      assert.deepEqual(await c.read(8), OK_FRAME);
      assert.ok(mem.subarray(100, 1100).equals(Buffer.alloc(1000, 0x11)));
      engine.unregisterLocalMemory(a);
      registered = false;
      // The old address now belongs to nothing: refused, and the memory is untouched.
      const before = Buffer.from(mem);
      c.write(Buffer.concat([header(16, a, WRITE | V2), Buffer.alloc(16, 0x22)]));
      await c.waitClosed();
      assert.deepEqual(c.all(), REJECT_FRAME);
      assert.ok(mem.equals(before));
      await assertStillServing();
    } finally {
      if (registered) engine.unregisterLocalMemory(a);
    }
  });

  it('a client that sends a large READ and vanishes (reset or close) leaves nothing pinned', async () => {
    const big = patternBuffer(8 * 1024 * 1024, 44);
    const a = engine.registerLocalMemory(big);
    try {
      for (const how of ['reset', 'end'] as const) {
        const c = await conn();
        c.sock.pause(); // never read the answer
        c.write(Buffer.concat([header(big.length, a, READ | V2), header(big.length, a, READ | V2)]));
        await sleep(50);
        if (how === 'reset') c.sock.resetAndDestroy();
        else c.sock.end();
        await sleep(50);
        if (how === 'end') c.destroy();
      }
      const t0 = Date.now();
      for (;;) {
        try {
          engine.unregisterLocalMemory(a);
          break;
        } catch (e) {
          assert.equal((e as { code?: string }).code, 'TE_REGION_BUSY');
          assert.ok(Date.now() - t0 < 5000, 'the region stayed pinned after its readers vanished');
          await sleep(20);
        }
      }
      assert.ok(big.equals(patternBuffer(big.length, 44)), 'a READ changed the region');
      await assertStillServing();
    } finally {
      try {
        engine.unregisterLocalMemory(a);
      } catch {
        /* already unregistered, or pinned (asserted above) */
      }
    }
  });

  it('an idle connection is not closed by the server', async () => {
    const c = await conn();
    c.write(header(8, addrB, READ | V2));
    assert.equal((await c.read(16)).length, 16);
    await sleep(1200);
    assert.equal(c.closed, false, 'the server closed an idle connection');
    c.write(header(32, addrB + 32, READ | V2));
    const got = await c.read(40);
    assert.deepEqual(got.subarray(0, 8), OK_FRAME);
    assert.deepEqual(got.subarray(8), memB.subarray(32, 64));
  });
});
