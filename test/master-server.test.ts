/**
 * Our Store master (src/master/) as a server, against a real in-process
 * `StoreMaster` over real loopback sockets, and the `transfer-engine master`
 * CLI as a real process:
 *  - bad input on the RPC port answered as the wheel's mooncake_master does
 *    (docs/store-wire.md §1): bad magic, version or serialize type close
 *    without a reply; an unknown function id gets err_code 11 and arguments
 *    that do not decode err_code 4, with the connection kept; frames over the
 *    limit, split, pipelined, never read, half sent, and connection floods;
 *    after each, the master still answers another connection;
 *  - a fuzz of mutated valid frames (encoded here, and captured from the
 *    wheel's clients): every reply is a well-formed frame with the reply the
 *    protocol prescribes, and the master keeps serving;
 *  - every request the wheel's clients sent in the captures
 *    (test/store/vectors/) replayed: served methods answer with a result that
 *    decodes, the others with err_code 11;
 *  - /metrics and /health on the metrics port;
 *  - the CLI: help, flags, bad values, a busy port, SIGTERM.
 */
import { describe, test, before, after, afterEach, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { StoreMaster } from '../src/master/master.js';
import { masterHandlers } from '../src/master/handlers.js';
import {
  REQUEST_HEADER_SIZE,
  ResponseDecoder,
  RpcErrc,
  decodeRpcError,
  encodeRequest,
  functionId,
  type ResponseFrame,
} from '../src/store/codec/coro-rpc.js';
import { decodeMessage, encodeMessage, string } from '../src/store/codec/struct-pack.js';
import {
  Master,
  NO_ARGS,
  SERVICE,
  STORE_PROTOCOL_VERSION,
  type Method,
  type ReplicateConfigWire,
  type Segment,
  type UUID,
} from '../src/store/master-protocol.js';
import { Rng, chunkSizes, show, waitFor } from './fuzz-lib.js';
import { ReplicateConfig } from '../src/store/replicate-config.js';
import { runCli, type CliRun } from './helpers.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const VECTORS = path.join(ROOT, 'test', 'store', 'vectors');
const MAIN = fileURLToPath(new URL('../src/cli/main.js', import.meta.url));

/** How long "no reply" / "closed" outcomes are given (generous: only a hang fails). */
const CLOSE_WAIT_MS = 2000;
const NO_REPLY_WAIT_MS = 300;
const UNKNOWN_MESSAGE = 'the rpc function not registered';
const BAD_ARGS_MESSAGE = 'invalid rpc arg';

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

function startMaster(extra: Parameters<typeof StoreMaster.start>[0] = {}): Promise<StoreMaster> {
  return StoreMaster.start({ rpcAddress: '127.0.0.1', rpcPort: 0, metrics: { host: '127.0.0.1', port: 0 }, ...extra });
}

// ---------------------------------------------------------------------------------------------
// Requests

const CLIENT: UUID = { first: 0x1234n, second: 0x5678n };
const SEGMENT: Segment = {
  id: { first: 7n, second: 8n },
  name: '127.0.0.1:17777',
  base: 0x7f00_0000_0000n,
  size: 16n << 20n,
  teEndpoint: '127.0.0.1:17777',
  protocol: 'tcp',
  hostId: 'host-a',
};
/** Python's default ReplicateConfig. */
const CONFIG: ReplicateConfigWire = new ReplicateConfig().toWire();

/** A request frame of `m`: an empty body for no arguments (as the C++ client sends it). */
function req<A, R>(m: Method<A, R>, args: A, seq: number): Buffer {
  return encodeRequest(seq, m.id, (m.args as unknown) === NO_ARGS ? Buffer.alloc(0) : encodeMessage(m.args, args));
}

const serviceReady = (seq: number): Buffer => req(Master.ServiceReady, null, seq);

interface Sample {
  name: string;
  method: Method<unknown, unknown>;
  frame: (seq: number) => Buffer;
}

function sample<A, R>(m: Method<A, R>, args: A): Sample {
  return { name: m.name, method: m as unknown as Method<unknown, unknown>, frame: (seq) => req(m, args, seq) };
}

/** Valid requests of several methods (state-changing ones included: the master must cope with any order). */
const SAMPLES: readonly Sample[] = [
  sample(Master.ServiceReady, null),
  sample(Master.GetStorageConfig, null),
  sample(Master.MountSegment, [SEGMENT, CLIENT]),
  sample(Master.Ping, CLIENT),
  sample(Master.FetchTasks, [CLIENT, 16n]),
  sample(Master.PutStart, [CLIENT, 'key-a', 4096n, CONFIG, 'default']),
  sample(Master.PutEnd, [CLIENT, { key: 'key-a', objectChecksum: null }, 0, 'default']),
  sample(Master.PutRevoke, [CLIENT, 'key-a', 0, 'default']),
  sample(Master.BatchPutStart, [CLIENT, ['b-1', 'b-2'], [100n, 200n], CONFIG, 'default']),
  sample(Master.GetReplicaList, ['key-a', 'default']),
  sample(Master.BatchGetReplicaList, [['key-a', 'b-1', 'nope'], 'default']),
  sample(Master.ExistKey, ['key-a', 'default']),
  sample(Master.BatchExistKey, [['key-a', 'b-2'], 'default']),
  sample(Master.Remove, ['key-a', false, 'default']),
  sample(Master.RemoveByRegex, ['^b-', true, 'default']),
  sample(Master.RemoveAll, [false, 'default']),
  sample(Master.UnmountSegment, [SEGMENT.id, CLIENT]),
];

/** Frame bytes with one header byte changed. */
function withByte(frame: Buffer, offset: number, value: number): Buffer {
  const b = Buffer.from(frame);
  b[offset] = value;
  return b;
}

/** A complete frame of `fid` carrying `body` as is. */
function rawFrame(seq: number, fid: number, body: Uint8Array): Buffer {
  return encodeRequest(seq, fid, body);
}

// ---------------------------------------------------------------------------------------------
// A raw connection: bytes out, response frames in.

/** Every raw connection a test opened: destroyed after each test, pass or fail, so none outlives its test. */
const openConns = new Set<RawConn>();

class RawConn {
  private readonly decoder = new ResponseDecoder({ maxFrame: 1 << 30 });
  readonly replies: ResponseFrame[] = [];
  /** Every byte received, as received. */
  readonly chunks: Buffer[] = [];
  receivedBytes = 0;
  /** What the decoder threw on the master's bytes: a malformed reply. */
  malformed: unknown = null;
  closed = false;
  private cursor = 0;
  private readonly waiters = new Set<() => void>();

  private constructor(readonly sock: net.Socket) {
    sock.on('error', () => {
      /* 'close' follows */
    });
    sock.on('data', (c: Buffer) => {
      this.receivedBytes += c.length;
      this.chunks.push(c);
      if (this.malformed === null) {
        try {
          this.replies.push(...this.decoder.push(c));
        } catch (e) {
          this.malformed = e;
        }
      }
      this.notify();
    });
    sock.once('close', () => {
      this.closed = true;
      openConns.delete(this);
      this.notify();
    });
    openConns.add(this);
  }

  static connect(port: number): Promise<RawConn> {
    return new Promise((resolve, reject) => {
      const s = net.connect({ host: '127.0.0.1', port, noDelay: true });
      s.once('connect', () => {
        s.off('error', reject);
        resolve(new RawConn(s));
      });
      s.once('error', reject);
    });
  }

  /** Bytes held for a reply not complete yet. */
  get pending(): number {
    return this.decoder.pending;
  }

  private notify(): void {
    for (const w of [...this.waiters]) w();
  }

  /** Resolve when `cond` holds, or after `timeoutMs` (then false). */
  until(cond: () => boolean, timeoutMs: number): Promise<boolean> {
    if (cond()) return Promise.resolve(true);
    return new Promise((resolve) => {
      const check = (): void => {
        if (!cond()) return;
        done(true);
      };
      const done = (v: boolean): void => {
        clearTimeout(timer);
        this.waiters.delete(check);
        resolve(v);
      };
      const timer = setTimeout(() => done(cond()), timeoutMs);
      this.waiters.add(check);
    });
  }

  write(b: Uint8Array): void {
    this.sock.write(b);
  }

  /** The next reply not taken yet; fails on a malformed reply, a close or a timeout. */
  async next(timeoutMs = 10_000): Promise<ResponseFrame> {
    const i = this.cursor;
    await this.until(() => this.replies.length > i || this.closed || this.malformed !== null, timeoutMs);
    assert.equal(this.malformed, null, `a malformed reply: ${String(this.malformed)}`);
    const r = this.replies[i];
    assert.ok(r, this.closed ? `the master closed the connection instead of reply #${i}` : `no reply #${i} within ${timeoutMs} ms`);
    this.cursor++;
    return r;
  }

  async call(frame: Buffer, timeoutMs?: number): Promise<ResponseFrame> {
    this.write(frame);
    return this.next(timeoutMs);
  }

  /** The master closed the connection, with no byte sent back. */
  async assertClosedWithoutReply(what: string): Promise<void> {
    const closed = await this.until(() => this.closed, CLOSE_WAIT_MS);
    assert.ok(closed, `${what}: the master kept the connection open`);
    assert.equal(this.receivedBytes, 0, `${what}: the master replied before closing`);
  }

  /** Still open after a while, nothing received. */
  async assertOpenSilent(what: string, ms = NO_REPLY_WAIT_MS): Promise<void> {
    await sleep(ms);
    assert.equal(this.closed, false, `${what}: the master closed the connection`);
    assert.equal(this.receivedBytes, 0, `${what}: the master replied`);
  }

  destroy(): void {
    this.sock.destroy();
  }

  async end(): Promise<void> {
    this.sock.end();
    await this.until(() => this.closed, CLOSE_WAIT_MS);
  }
}

function rpcError(r: ResponseFrame): { code: number; message: string } {
  return decodeRpcError(r);
}

function assertVersion(r: ResponseFrame, seq: number): void {
  assert.equal(r.errCode, RpcErrc.OK, `ServiceReady: err_code ${r.errCode} (${rpcError(r).message})`);
  assert.equal(r.seq, seq);
  assert.deepEqual(decodeMessage(Master.ServiceReady.result, r.body), { ok: true, value: STORE_PROTOCOL_VERSION });
}

/** A fresh connection gets "2.0.0" from ServiceReady: the master still serves. */
async function assertServing(port: number): Promise<void> {
  const c = await RawConn.connect(port);
  try {
    assertVersion(await c.call(serviceReady(4242)), 4242);
  } finally {
    c.destroy();
  }
}

/** Decode a successful reply as `m`'s result, or fail naming it. */
function decodeResult(m: Method<unknown, unknown>, r: ResponseFrame, what: string): unknown {
  assert.equal(r.errCode, RpcErrc.OK, `${what}: err_code ${r.errCode} (${rpcError(r).message})`);
  assert.equal(r.attachment.length, 0, `${what}: an attachment in the reply`);
  return decodeMessage(m.result, r.body, `${what}: result`);
}

function privateSockets(m: StoreMaster): Set<net.Socket> | null {
  const s = (m.rpcServer as unknown as { sockets?: unknown }).sockets;
  return s instanceof Set ? (s as Set<net.Socket>) : null;
}

// ---------------------------------------------------------------------------------------------
// 1. Bad input on the RPC port

describe('master RPC port: bad input', () => {
  let master: StoreMaster;
  let port: number;

  before(async () => {
    master = await startMaster();
    port = master.rpcPort;
  });

  afterEach(() => {
    for (const c of openConns) c.destroy();
  });

  after(async () => {
    await master.close();
  });

  test('garbage bytes and a bad magic: closed, no reply', async () => {
    const before = master.rpcServer.protocolErrors;
    const garbage = new Rng(0x9a7b).bytes(64);
    garbage[0] = 0x47; // not 0x15
    const inputs: Array<[string, Buffer]> = [
      ['64 random bytes', garbage],
      ['an HTTP request', Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n')],
      ['ServiceReady with magic 0x16', withByte(serviceReady(1), 0, 0x16)],
      ['ServiceReady with magic 0x00', withByte(serviceReady(1), 0, 0x00)],
      ['20 zero bytes', Buffer.alloc(20)],
    ];
    for (const [what, bytes] of inputs) {
      const c = await RawConn.connect(port);
      c.write(bytes);
      await c.assertClosedWithoutReply(what);
    }
    assert.equal(master.rpcServer.protocolErrors - before, inputs.length, 'each counted as a protocol error');
    await assertServing(port);
  });

  test('a first byte that is not the magic: closed at once, without waiting for a whole header', async () => {
    // docs/store-wire.md §1.8: the server checks the first byte of a connection as the magic (mooncake_master
    // closes on "G" of "GET /" at once; a later frame's partial header is waited for, as here).
    for (const bytes of [Buffer.from([0x47]), Buffer.from('GET /'), Buffer.from([0x00, 0x15])]) {
      const c = await RawConn.connect(port);
      c.write(bytes);
      await c.assertClosedWithoutReply(`${show(bytes)} at the start of a connection`);
    }
    await assertServing(port);
  });

  test('version 1 and serialize type 1: closed, no reply (first request or a later one)', async () => {
    for (const [what, offset] of [
      ['version 1', 1],
      ['serialize type 1', 2],
    ] as const) {
      const first = await RawConn.connect(port);
      first.write(withByte(serviceReady(1), offset, 1));
      await first.assertClosedWithoutReply(`${what} on the first request`);

      const later = await RawConn.connect(port);
      assertVersion(await later.call(serviceReady(1)), 1);
      later.write(withByte(serviceReady(2), offset, 1));
      const closed = await later.until(() => later.closed, CLOSE_WAIT_MS);
      assert.ok(closed, `${what} on a later request: kept open`);
      assert.equal(later.replies.length, 1, `${what} on a later request: replied to`);
      assert.equal(later.pending, 0, `${what}: stray bytes after the first reply`);
    }
    await assertServing(port);
  });

  test('msg_type is ignored (5 answered, msg_type 0 in the reply); a request attachment is ignored', async () => {
    const c = await RawConn.connect(port);
    c.write(withByte(serviceReady(77), 3, 5));
    assertVersion(await c.next(), 77);
    assert.equal(Buffer.concat(c.chunks)[3], 0, 'msg_type of the reply');
    // ServiceReady with a 3-byte attachment (docs/store-wire.md §1.7): answered, attach_length 0.
    const withAttachment = Buffer.concat([serviceReady(78), Buffer.from('abc')]);
    withAttachment.writeUInt32LE(3, 16);
    const r = await c.call(withAttachment);
    assertVersion(r, 78);
    assert.equal(r.attachment.length, 0);
    // And the stream is still in step.
    assertVersion(await c.call(serviceReady(79)), 79);
    c.destroy();
  });

  test('unknown function id: err_code 11 with the message, the connection still usable', async () => {
    const c = await RawConn.connect(port);
    const ids: Array<[string, number]> = [
      ['a made-up id', 0xdeadbeef],
      ['id 0', 0],
      ['CopyStart (registered by Mooncake, not served here)', functionId(`${SERVICE}::CopyStart`)],
      ['CalcCacheStats (not registered by Mooncake either)', functionId(`${SERVICE}::CalcCacheStats`)],
    ];
    let seq = 500;
    for (const [what, fid] of ids) {
      const r = await c.call(rawFrame(++seq, fid, encodeMessage(string, 'x')));
      assert.equal(r.errCode, RpcErrc.FUNCTION_NOT_REGISTERED, what);
      assert.equal(r.seq, seq, `${what}: seq echoed`);
      assert.deepEqual(rpcError(r), { code: 11, message: UNKNOWN_MESSAGE }, what);
      assertVersion(await c.call(serviceReady(++seq)), seq);
    }
    assert.equal(c.closed, false);
    c.destroy();
    await assertServing(port);
  });

  test('a wrong type hash in the body: err_code 4 "invalid rpc arg", the connection still usable', async () => {
    const c = await RawConn.connect(port);
    const good = encodeMessage(Master.ExistKey.args, ['k', 'default']);
    const cases: Array<[string, Buffer]> = [
      ['a string where (string, string) is expected', encodeMessage(string, 'k')],
      ['the hash of another method', encodeMessage(Master.Remove.args, ['k', false, 'default'])],
      ['a flipped hash bit', withByte(good, 1, good[1]! ^ 0x10)],
      ['a changed layout string', withByte(good, 6, good[6]! ^ 0x01)],
      ['an empty body', Buffer.alloc(0)],
      ['3 bytes', Buffer.from([1, 2, 3])],
    ];
    let seq = 900;
    for (const [what, body] of cases) {
      const r = await c.call(rawFrame(++seq, Master.ExistKey.id, body));
      assert.equal(r.errCode, RpcErrc.INVALID_RPC_ARGUMENTS, `${what}: err_code`);
      assert.equal(r.seq, seq);
      assert.deepEqual(rpcError(r), { code: 4, message: BAD_ARGS_MESSAGE }, what);
    }
    // Bytes after valid arguments are ignored (docs/store-wire.md §1.3: ExistKey + "GARBAGE" answered).
    const trailing = await c.call(rawFrame(++seq, Master.ExistKey.id, Buffer.concat([good, Buffer.from('GARBAGE')])));
    assert.deepEqual(decodeResult(Master.ExistKey as unknown as Method<unknown, unknown>, trailing, 'ExistKey + GARBAGE'), { ok: true, value: false });
    assertVersion(await c.call(serviceReady(++seq)), seq);
    c.destroy();
    await assertServing(port);
  });

  test('a truncated body inside a complete frame: err_code 4 for every cut', async () => {
    const c = await RawConn.connect(port);
    let seq = 2000;
    let cuts = 0;
    for (const s of SAMPLES) {
      if (s.method.args === (NO_ARGS as unknown)) continue;
      const full = s.frame(0).subarray(REQUEST_HEADER_SIZE);
      // Every prefix of the body, pipelined on one connection, each in a frame of its own length.
      const frames: Buffer[] = [];
      const seqs: number[] = [];
      for (let n = 0; n < full.length; n++) {
        seqs.push(++seq);
        frames.push(rawFrame(seq, s.method.id, full.subarray(0, n)));
      }
      c.write(Buffer.concat(frames));
      for (const want of seqs) {
        const r = await c.next();
        assert.equal(r.seq, want, `${s.name}: replies in order`);
        assert.equal(r.errCode, RpcErrc.INVALID_RPC_ARGUMENTS, `${s.name} cut to ${want - seqs[0]!} of ${full.length} bytes: err_code ${r.errCode}`);
        assert.equal(rpcError(r).message, BAD_ARGS_MESSAGE);
        cuts++;
      }
    }
    assert.ok(cuts > 200, `${cuts} cuts tried`);
    assertVersion(await c.call(serviceReady(++seq)), seq);
    c.destroy();
    await assertServing(port);
  });

  test('a header announcing more than maxFrameBytes: closed at the header, nothing buffered', async () => {
    const before = master.rpcServer.protocolErrors;
    const max = master.config.maxFrameBytes;
    const headers: Array<[string, Buffer]> = [];
    for (const [what, body, attach] of [
      ['length 0xffffffff', 0xffff_ffff, 0],
      ['length maxFrameBytes + 1', max + 1, 0],
      ['attach_length maxFrameBytes + 1', 0, max + 1],
      ['length + attach_length = maxFrameBytes + 1', max, 1],
      ['both 0xffffffff', 0xffff_ffff, 0xffff_ffff],
    ] as const) {
      const h = Buffer.from(serviceReady(3).subarray(0, REQUEST_HEADER_SIZE));
      h.writeUInt32LE(body, 12);
      h.writeUInt32LE(attach, 16);
      headers.push([what, h]);
    }
    for (const [what, h] of headers) {
      const c = await RawConn.connect(port);
      c.write(h); // the header alone: a master waiting for the body would keep the connection
      await c.assertClosedWithoutReply(what);
    }
    assert.equal(master.rpcServer.protocolErrors - before, headers.length);
    await assertServing(port);
  });

  test('frames split into 1-byte writes are answered', async () => {
    const c = await RawConn.connect(port);
    const frames = [serviceReady(11), req(Master.ExistKey, ['split-key', 'default'], 12), req(Master.BatchExistKey, [['a', 'b', 'c'], 'default'], 13)];
    const bytes = Buffer.concat(frames);
    for (let i = 0; i < bytes.length; i++) {
      c.write(bytes.subarray(i, i + 1));
      await new Promise((r) => setImmediate(r));
    }
    assertVersion(await c.next(), 11);
    const exist = await c.next();
    assert.equal(exist.seq, 12);
    assert.deepEqual(decodeResult(Master.ExistKey as unknown as Method<unknown, unknown>, exist, 'ExistKey'), { ok: true, value: false });
    const batch = await c.next();
    assert.equal(batch.seq, 13);
    const v = decodeResult(Master.BatchExistKey as unknown as Method<unknown, unknown>, batch, 'BatchExistKey');
    assert.ok(Array.isArray(v) && v.length === 3, 'one result per key');
    c.destroy();
    await assertServing(port);
  });

  test('pipelined requests in one write: answered in order, seqs echoed, each result decodes', async () => {
    const c = await RawConn.connect(port);
    const seqs = [0, 1, 0xffff_ffff, 0xdead_beef, 7, 7, 0x8000_0000];
    const sent: Array<{ seq: number; s: Sample }> = [];
    for (let i = 0; i < 60; i++) sent.push({ seq: seqs[i % seqs.length]! + (i >= seqs.length ? i : 0), s: SAMPLES[i % SAMPLES.length]! });
    for (const x of sent) x.seq >>>= 0;
    c.write(Buffer.concat(sent.map((x) => x.s.frame(x.seq))));
    for (const [i, x] of sent.entries()) {
      const r = await c.next();
      assert.equal(r.seq, x.seq, `reply #${i} (${x.s.name}): seq`);
      decodeResult(x.s.method, r, `reply #${i} (${x.s.name})`);
    }
    c.destroy();
    await assertServing(port);
  });

  test('a valid request then a bad frame in the same write: the request is answered, then the connection closed', async () => {
    for (const [what, bad] of [
      ['bad magic', withByte(serviceReady(2), 0, 0x16)],
      ['version 1', withByte(serviceReady(2), 1, 1)],
      ['serialize type 1', withByte(serviceReady(2), 2, 1)],
    ] as const) {
      const c = await RawConn.connect(port);
      // Mooncake's master reads and answers frame by frame: how the bytes were segmented cannot matter.
      c.write(Buffer.concat([serviceReady(1), bad]));
      const closed = await c.until(() => c.closed, CLOSE_WAIT_MS);
      assert.ok(closed, `${what}: kept open`);
      assert.equal(c.malformed, null);
      assert.equal(c.replies.length, 1, `${what}: the valid request before it was not answered (${c.receivedBytes} bytes received)`);
      assertVersion(c.replies[0]!, 1);
    }
    await assertServing(port);
  });

  test('a client that never reads its replies: the master keeps serving others, its backlog is bounded', async (t) => {
    const hog = await new Promise<net.Socket>((resolve, reject) => {
      const s = net.connect({ host: '127.0.0.1', port, noDelay: true }, () => resolve(s));
      s.once('error', reject);
    });
    hog.on('error', () => {});
    hog.pause(); // never read
    const frame = serviceReady(0);
    const block = Buffer.alloc(frame.length * 50_000);
    block.fill(frame); // 50k ServiceReady requests, 1 MB
    let written = 0;
    const deadline = Date.now() + 2500;
    // Keep sending while the master takes it, up to 48 MB of requests (80 MB of replies if all answered).
    while (written < 48 && Date.now() < deadline) {
      if (hog.writableLength < 4 << 20) {
        hog.write(block);
        written++;
      } else await sleep(20);
      if (written % 8 === 0) await assertServing(port);
    }
    for (let i = 0; i < 3; i++) await assertServing(port);
    const sockets = privateSockets(master);
    if (sockets) {
      const backlog = Math.max(0, ...[...sockets].map((s) => s.writableLength));
      t.diagnostic(`sent ${written} MB of requests; largest reply backlog held by the master: ${backlog} bytes`);
      // MAX_PENDING_REPLY_BYTES (8 MiB) plus the replies to one read chunk.
      assert.ok(backlog < 12 << 20, `the master holds ${backlog} bytes of unread replies for one client`);
    } else t.diagnostic('RpcServer.sockets not visible: backlog not measured');
    hog.destroy();
    await waitFor(() => master.rpcServer.connections === 0, 5000, () => `${master.rpcServer.connections} connections to close`);
    await assertServing(port);
  });

  test('a flood of 200 connections opened and dropped: still serving, every connection gone', async () => {
    const rng = new Rng(0xf100d);
    const socks = await Promise.all(
      Array.from(
        { length: 200 },
        (_, i) =>
          new Promise<net.Socket>((resolve) => {
            const s = net.connect({ host: '127.0.0.1', port }, () => resolve(s));
            s.on('error', () => resolve(s));
            // Some say nothing, some half a header, some a request, some garbage.
            s.once('connect', () => {
              switch (i % 4) {
                case 1:
                  s.write(serviceReady(i).subarray(0, 1 + rng.int(19)));
                  break;
                case 2:
                  s.write(serviceReady(i));
                  break;
                case 3:
                  s.write(rng.bytes(1 + rng.int(40)));
                  break;
              }
            });
          }),
      ),
    );
    await sleep(50);
    for (const [i, s] of socks.entries()) {
      if (i % 2 === 0) s.destroy();
      else s.resetAndDestroy();
    }
    await assertServing(port);
    await waitFor(() => master.rpcServer.connections === 0, 5000, () => `${master.rpcServer.connections} of the flood's connections to close`);
    await assertServing(port);
  });

  test('half a frame, then close: no reply while open, the connection released', async () => {
    const parts = [serviceReady(5).subarray(0, 10), req(Master.ExistKey, ['half', 'default'], 6)];
    parts[1] = parts[1]!.subarray(0, parts[1]!.length - 3); // header complete, body short
    for (const half of parts) {
      const c = await RawConn.connect(port);
      c.write(half);
      await c.assertOpenSilent(`${half.length} bytes of a frame`);
      await c.end();
      assert.ok(c.closed, 'the master closed its side after ours');
      assert.equal(c.receivedBytes, 0);
    }
    await waitFor(() => master.rpcServer.connections === 0, 5000, () => `${master.rpcServer.connections} connections to close`);
    await assertServing(port);
  });
});

// ---------------------------------------------------------------------------------------------
// Captured requests (test/store/vectors/*.json)

interface VectorMessage {
  direction: 'request' | 'response';
  function: string;
  function_id: number;
  seq: number;
  call: string;
  t: number;
  hex: string;
}
interface VectorFile {
  scenario: string;
  connections: Array<{ conn: number; messages: VectorMessage[] }>;
}

function scenarios(): VectorFile[] {
  return fs
    .readdirSync(VECTORS)
    .filter((f) => f.endsWith('.json') && f !== 'function_ids.json')
    .sort()
    .map((f) => JSON.parse(fs.readFileSync(path.join(VECTORS, f), 'utf8')) as VectorFile);
}

/** A scenario's requests from every connection, in capture order. */
function capturedRequests(file: VectorFile): VectorMessage[] {
  const all = file.connections.flatMap((c) => c.messages.filter((m) => m.direction === 'request'));
  return all.sort((a, b) => a.t - b.t);
}

// ---------------------------------------------------------------------------------------------
// 2. Fuzz

const FUZZ_SEED = 0x3a57_e2f1;
const FUZZ_BUDGET_MS = 3000;
const FUZZ_WORKERS = 6;

type ModelFrame = { seq: number; fid: number; body: Buffer };

/**
 * What the master must see in `s` (docs/store-wire.md §1), independently of its decoder: complete frames in
 * order, until a bad magic, version or serialize type or a frame over `maxFrame` (then it closes), or the end.
 */
function modelFrames(s: Buffer, maxFrame: number): { frames: ModelFrame[]; violation: boolean } {
  const frames: ModelFrame[] = [];
  let p = 0;
  while (s.length - p >= REQUEST_HEADER_SIZE) {
    if (s[p] !== 0x15 || s[p + 1] !== 0 || s[p + 2] !== 0) return { frames, violation: true };
    const len = s.readUInt32LE(p + 12);
    const attach = s.readUInt32LE(p + 16);
    if (len + attach > maxFrame) return { frames, violation: true };
    const end = p + REQUEST_HEADER_SIZE + len + attach;
    if (end > s.length) break;
    frames.push({ seq: s.readUInt32LE(p + 4), fid: s.readUInt32LE(p + 8), body: s.subarray(p + REQUEST_HEADER_SIZE, p + REQUEST_HEADER_SIZE + len) });
    p = end;
  }
  return { frames, violation: false };
}

/** Mutations of a stream of frames whose starts are `starts`: bytes, lengths, hashes, splices. */
function mutate(rng: Rng, s: Buffer, starts: number[], sources: readonly Buffer[], maxFrame: number): Buffer {
  s = Buffer.from(s);
  for (let k = 1 + rng.int(3); k > 0; k--) {
    const p = rng.int(s.length + 1);
    const start = rng.pick(starts);
    switch (rng.int(10)) {
      case 0:
        if (p < s.length) s[p] ^= 1 << rng.int(8);
        break;
      case 1:
        if (p < s.length) s[p] = rng.u32() & 0xff;
        break;
      case 2:
        s = s.subarray(0, p);
        break;
      case 3:
        s = Buffer.concat([s.subarray(0, p), rng.bytes(1 + rng.int(16)), s.subarray(p)]);
        break;
      case 4:
        s = Buffer.concat([s.subarray(0, p), s.subarray(p + 1 + rng.int(24))]);
        break;
      case 5: {
        // A header field (seq, function id, length, attach_length) set to a boundary value.
        const off = start + rng.pick([4, 8, 12, 12, 16]);
        const len = off + 4 <= s.length ? s.readUInt32LE(Math.min(off, s.length - 4)) : 0;
        const v = rng.pick([0, 1, len - 1, len + 1, len + 20, 0x7fff_ffff, 0xffff_ffff, maxFrame, maxFrame + 1, rng.u32()]) >>> 0;
        if (off + 4 <= s.length) s.writeUInt32LE(v, off);
        break;
      }
      case 6: {
        // The body's type hash or metainfo byte.
        const off = start + REQUEST_HEADER_SIZE + rng.int(6);
        if (off < s.length) s[off] ^= 1 << rng.int(8);
        break;
      }
      case 7: {
        // A u64 (a length, an address, a size inside the arguments) set to a boundary value.
        if (p + 8 <= s.length) s.writeBigUInt64LE(rng.u64(), p);
        break;
      }
      case 8: {
        // Another frame's header spliced in: the function id of one method, the body of another.
        const other = rng.pick(sources);
        s = Buffer.concat([s.subarray(0, p), other.subarray(0, REQUEST_HEADER_SIZE), s.subarray(p)]);
        break;
      }
      default: {
        const a = rng.int(s.length + 1);
        s = Buffer.concat([s.subarray(0, p), s.subarray(a, a + 1 + rng.int(64)), s.subarray(p)]);
      }
    }
  }
  return s;
}

/** Send `bytes` in `chunks`, half-close, and collect everything until the master closes. */
function sendAll(port: number, bytes: Buffer, chunks: number[]): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const got: Buffer[] = [];
    const s = net.connect({ host: '127.0.0.1', port, noDelay: true });
    const timer = setTimeout(() => {
      s.destroy();
      reject(new Error(`the master kept the connection open after our end: ${show(bytes.subarray(0, 200))} (${bytes.length} bytes)`));
    }, 10_000);
    s.on('data', (d: Buffer) => got.push(d));
    s.on('error', () => {
      /* a reset after a protocol error: 'close' follows */
    });
    s.once('close', () => {
      clearTimeout(timer);
      resolve(Buffer.concat(got));
    });
    s.once('connect', () => {
      let p = 0;
      for (const n of chunks) {
        if (n > 0) s.write(bytes.subarray(p, p + n));
        p += n;
      }
      s.end();
    });
  });
}

describe('master RPC port: busy polling', () => {
  // A window of 300 ms makes "within the window" and "after it" plain to arrange on a busy machine.
  const WINDOW_US = 300_000;

  test('a lone request does not poll; one within the window after another does, and the poll ends', async () => {
    const master = await startMaster({ busyPollUs: WINDOW_US });
    try {
      const conn = await RawConn.connect(master.rpcServer.port);
      assertVersion(await conn.call(serviceReady(1)), 1);
      assert.equal(master.rpcServer.pollingNow, false, 'the first request (after no other) started a poll');
      assertVersion(await conn.call(serviceReady(2)), 2);
      assert.equal(master.rpcServer.pollingNow, true, 'a request right after another did not start a poll');
      await waitFor(() => !master.rpcServer.pollingNow, 5000, () => 'the poll did not end after its window');
      await sleep(WINDOW_US / 1000 + 100);
      assertVersion(await conn.call(serviceReady(3)), 3);
      assert.equal(master.rpcServer.pollingNow, false, 'a request after a silence longer than the window started a poll');
      conn.destroy();
    } finally {
      await master.close();
    }
  });

  test('busyPollUs 0: never polls, however close the requests', async () => {
    const master = await startMaster({ busyPollUs: 0 });
    try {
      const conn = await RawConn.connect(master.rpcServer.port);
      for (let i = 1; i <= 5; i++) {
        assertVersion(await conn.call(serviceReady(i)), i);
        assert.equal(master.rpcServer.pollingNow, false, `request ${i} started a poll`);
      }
      conn.destroy();
    } finally {
      await master.close();
    }
  });
});

describe('master RPC port: fuzz of mutated valid frames', () => {
  test('never a crash, never a malformed reply, the prescribed reply to every frame, still serving', { timeout: 120_000 }, async (t: TestContext) => {
    const master = await startMaster();
    const port = master.rpcPort;
    const handlers = masterHandlers(master.service, STORE_PROTOCOL_VERSION);
    const maxFrame = master.config.maxFrameBytes;
    const sources: Buffer[] = [...SAMPLES.map((s) => s.frame(0))];
    for (const f of scenarios()) for (const m of capturedRequests(f)) sources.push(Buffer.from(m.hex, 'hex'));
    const counts: Record<string, number> = {};
    const bump = (k: string): void => {
      counts[k] = (counts[k] ?? 0) + 1;
    };
    let next = 0;
    let unanswered = 0;
    let firstUnanswered: string | undefined;
    const deadline = Date.now() + FUZZ_BUDGET_MS;
    try {
      const worker = async (): Promise<void> => {
        while (Date.now() < deadline) {
          const index = next++;
          const rng = Rng.forInput(FUZZ_SEED, index);
          const starts: number[] = [];
          const parts: Buffer[] = [];
          let at = 0;
          for (let n = 1 + rng.int(5); n > 0; n--) {
            const f = Buffer.from(rng.pick(sources));
            f.writeUInt32LE((index * 8 + n) >>> 0, 4); // distinct seqs
            starts.push(at);
            parts.push(f);
            at += f.length;
          }
          const clean = Buffer.concat(parts);
          const bytes = rng.chance(0.85) ? mutate(rng, clean, starts, sources, maxFrame) : clean;
          const input = (): string => `seed ${FUZZ_SEED} input #${index}: ${show(bytes.subarray(0, 300))} (${bytes.length} bytes)`;
          const model = modelFrames(bytes, maxFrame);
          const got = await sendAll(port, bytes, chunkSizes(rng, bytes.length));
          const decoder = new ResponseDecoder({ maxFrame: 1 << 30 });
          let replies: ResponseFrame[];
          try {
            replies = decoder.push(got);
          } catch (e) {
            assert.fail(`a malformed reply (${String(e)}): ${show(got.subarray(0, 200))}; ${input()}`);
          }
          assert.equal(decoder.pending, 0, `a truncated reply (${decoder.pending} bytes left): ${input()}`);
          // Every complete frame before a violation is answered, however the bytes were segmented (mooncake_master
          // reads and answers frame by frame; see 'a valid request then a bad frame in the same write'). Such
          // misses are counted and fail the test at the end, so that the rest of the run still looks for worse.
          if (model.violation && replies.length < model.frames.length) {
            unanswered++;
            firstUnanswered ??= `${replies.length} replies to ${model.frames.length} frames before a protocol violation: ${input()}`;
          } else assert.equal(replies.length, model.frames.length, `${replies.length} replies to ${model.frames.length} frames: ${input()}`);
          for (const [i, r] of replies.entries()) {
            const f = model.frames[i]!;
            const what = `reply #${i}: ${input()}`;
            assert.equal(r.seq, f.seq, `seq: ${what}`);
            assert.equal(r.attachment.length, 0, what);
            const h = handlers.get(f.fid);
            if (!h) {
              assert.deepEqual(rpcError(r), { code: RpcErrc.FUNCTION_NOT_REGISTERED, message: UNKNOWN_MESSAGE }, what);
              bump('err 11');
              continue;
            }
            let argsOk = true;
            if (h.method.args !== NO_ARGS) {
              try {
                decodeMessage(h.method.args, f.body);
              } catch {
                argsOk = false;
              }
            }
            if (!argsOk) {
              assert.deepEqual(rpcError(r), { code: RpcErrc.INVALID_RPC_ARGUMENTS, message: BAD_ARGS_MESSAGE }, `${h.method.name}: ${what}`);
              bump('err 4');
              continue;
            }
            assert.notEqual(r.errCode, RpcErrc.RPC_THROW_EXCEPTION, `${h.method.name}'s handler threw "${rpcError(r).message}": ${what}`);
            decodeResult(h.method, r, `${h.method.name}: ${what}`);
            bump(`ok ${h.method.name}`);
          }
          bump(model.violation ? 'closed for a violation' : 'ended by us');
        }
      };
      await Promise.all(Array.from({ length: FUZZ_WORKERS }, () => worker()));
      t.diagnostic(`${next} connections in ${FUZZ_BUDGET_MS} ms: ${JSON.stringify(counts)}`);
      assert.ok(next >= 100, `only ${next} inputs tried`);
      for (const k of ['err 11', 'err 4', 'closed for a violation', 'ended by us', 'ok ServiceReady', 'ok PutStart']) {
        assert.ok((counts[k] ?? 0) > 0, `no '${k}' outcome: ${JSON.stringify(counts)}`);
      }
      await assertServing(port);
      await waitFor(() => master.rpcServer.connections === 0, 5000, () => `${master.rpcServer.connections} connections to close`);
      assert.equal(unanswered, 0, `${unanswered} of ${next} inputs lost replies to frames before a protocol violation; the first: ${firstUnanswered ?? ''}`);
    } finally {
      await master.close();
    }
  });
});

// ---------------------------------------------------------------------------------------------
// 3. Captured requests replayed

describe('captured requests of the wheel clients, replayed against our master', () => {
  const files = scenarios();
  const notServed = new Set<string>();

  for (const file of files) {
    test(`scenario ${file.scenario}: served methods answer with a result that decodes, others err_code 11`, async () => {
      const master = await startMaster({ metrics: null });
      const served = masterHandlers(master.service, STORE_PROTOCOL_VERSION);
      const c = await RawConn.connect(master.rpcPort);
      try {
        const reqs = capturedRequests(file);
        assert.ok(reqs.length > 0, 'the scenario has requests');
        for (const [i, m] of reqs.entries()) {
          const frame = Buffer.from(m.hex, 'hex');
          const what = `${file.scenario} request #${i}: ${m.function} (${m.call})`;
          const fid = frame.readUInt32LE(8);
          assert.equal(fid, m.function_id, what);
          const r = await c.call(frame);
          assert.equal(r.seq, m.seq, `${what}: seq`);
          const h = served.get(fid);
          if (!h) {
            notServed.add(m.function);
            assert.deepEqual(rpcError(r), { code: RpcErrc.FUNCTION_NOT_REGISTERED, message: UNKNOWN_MESSAGE }, what);
            continue;
          }
          assert.equal(h.method.name, m.function, what);
          const body = frame.subarray(REQUEST_HEADER_SIZE, REQUEST_HEADER_SIZE + frame.readUInt32LE(12));
          if (h.method.args === NO_ARGS) assert.equal(body.length, 0, what);
          else decodeMessage(h.method.args, body, `${what}: arguments`);
          decodeResult(h.method, r, what);
        }
      } finally {
        c.destroy();
        await master.close();
      }
    });
  }

  test('the captures include methods we do not serve, and they were refused', () => {
    for (const name of ['CreateCopyTask', 'QueryTask', 'BatchReplicaClear', 'CopyStart']) assert.ok(notServed.has(name), `${name} was replayed and refused (${[...notServed].join(', ')})`);
  });
});

// ---------------------------------------------------------------------------------------------
// 4. /metrics and /health

interface HttpResult {
  status: number;
  type: string;
  body: string;
}

function httpRequest(port: number, reqPath: string, method = 'GET', agent?: http.Agent): Promise<HttpResult> {
  return new Promise((resolve, reject) => {
    const r = http.request({ host: '127.0.0.1', port, path: reqPath, method, ...(agent ? { agent } : {}) }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, type: String(res.headers['content-type'] ?? ''), body }));
      res.on('error', reject);
    });
    r.on('error', reject);
    r.setTimeout(10_000, () => r.destroy(new Error(`${method} ${reqPath}: no answer`)));
    r.end(method === 'POST' ? 'x=1' : undefined);
  });
}

/** The value of one sample line (`name{labels} value`), 0 when absent. */
function sampleValue(text: string, series: string): number {
  for (const line of text.split('\n')) {
    if (line.startsWith(`${series} `)) return Number(line.slice(series.length + 1));
  }
  return 0;
}

describe('master metrics port: /metrics and /health', () => {
  let master: StoreMaster;
  let mport: number;

  before(async () => {
    master = await startMaster();
    assert.ok(master.metricsPort !== null);
    mport = master.metricsPort;
  });

  after(async () => {
    await master.close();
  });

  test('/metrics: Prometheus text 0.0.4; request counters move with requests', async () => {
    const ok = 'mooncake_master_requests_total{method="ServiceReady",result="ok"}';
    const unknown = 'mooncake_master_requests_total{method="unknown",result="unknown_function"}';
    const badArgs = 'mooncake_master_requests_total{method="ExistKey",result="bad_args"}';
    const existOk = 'mooncake_master_requests_total{method="ExistKey",result="ok"}';
    const notFound = 'mooncake_master_requests_total{method="GetReplicaList",result="object_not_found"}';
    const first = await httpRequest(mport, '/metrics');
    assert.equal(first.status, 200);
    assert.match(first.type, /^text\/plain; version=0\.0\.4/);
    assert.match(first.body, /# TYPE mooncake_master_requests_total counter/);
    const c = await RawConn.connect(master.rpcPort);
    for (let i = 0; i < 3; i++) assertVersion(await c.call(serviceReady(i)), i);
    assert.equal((await c.call(rawFrame(9, 0xdeadbeef, Buffer.alloc(0)))).errCode, RpcErrc.FUNCTION_NOT_REGISTERED);
    assert.equal((await c.call(rawFrame(10, Master.ExistKey.id, encodeMessage(string, 'k')))).errCode, RpcErrc.INVALID_RPC_ARGUMENTS);
    assert.equal((await c.call(req(Master.ExistKey, ['absent', 'default'], 11))).errCode, RpcErrc.OK);
    assert.equal((await c.call(req(Master.GetReplicaList, ['absent', 'default'], 12))).errCode, RpcErrc.OK);
    const during = await httpRequest(mport, '/metrics');
    assert.equal(sampleValue(during.body, ok) - sampleValue(first.body, ok), 3, ok);
    assert.equal(sampleValue(during.body, unknown) - sampleValue(first.body, unknown), 1, unknown);
    assert.equal(sampleValue(during.body, badArgs) - sampleValue(first.body, badArgs), 1, badArgs);
    assert.equal(sampleValue(during.body, existOk) - sampleValue(first.body, existOk), 1, existOk);
    assert.equal(sampleValue(during.body, notFound) - sampleValue(first.body, notFound), 1, notFound);
    assert.ok(sampleValue(during.body, 'mooncake_master_rpc_connections') >= 1, 'an open connection is counted');
    c.destroy();
    // Every sample line is `name[{labels}] number`.
    for (const line of during.body.split('\n')) {
      if (line === '' || line.startsWith('# ')) continue;
      assert.match(line, /^[a-z_:][a-z0-9_:]*(\{[^}]*\})? -?[0-9.e+]+$/i, line);
    }
  });

  test('/health: 200 with status ok', async () => {
    const r = await httpRequest(mport, '/health');
    assert.equal(r.status, 200);
    const v = JSON.parse(r.body) as { status?: unknown };
    assert.equal(v.status, 'ok');
  });

  test('POST is 405; a garbage query string is ignored; HEAD is fine', async () => {
    assert.equal((await httpRequest(mport, '/metrics', 'POST')).status, 405);
    assert.equal((await httpRequest(mport, '/health', 'POST')).status, 405);
    assert.equal((await httpRequest(mport, '/metrics', 'DELETE')).status, 405);
    for (const q of ['?%zz%%&&==;;', '?a=%ff%fe%00&b', '??#x', `?${'q'.repeat(4000)}`]) {
      const r = await httpRequest(mport, `/metrics${q}`);
      assert.equal(r.status, 200, q);
      assert.match(r.type, /^text\/plain; version=0\.0\.4/, q);
      assert.match(r.body, /mooncake_master_objects /, q);
      assert.equal((await httpRequest(mport, `/health${q}`)).status, 200, q);
    }
    assert.equal((await httpRequest(mport, '/metrics', 'HEAD')).status, 200);
  });

  test('scrapes while the master closes: close completes, each scrape answered or refused', async () => {
    const m = await startMaster();
    const p = m.metricsPort!;
    const agent = new http.Agent({ keepAlive: true, maxSockets: 8 });
    let answered = 0;
    const failures = new Set<string>();
    let stop = false;
    const scraper = async (): Promise<void> => {
      while (!stop) {
        try {
          const r = await httpRequest(p, '/metrics', 'GET', agent);
          assert.equal(r.status, 200);
          answered++;
        } catch (e) {
          const code = (e as NodeJS.ErrnoException).code ?? (e as Error).message;
          failures.add(code);
          if (code === 'ECONNREFUSED') return;
        }
      }
    };
    const scrapers = Array.from({ length: 8 }, () => scraper());
    await waitFor(() => answered >= 20, 5000, () => `${answered} scrapes answered`);
    const closed = m.close().then(() => 'closed');
    const outcome = await Promise.race([closed, sleep(5000).then(() => 'timeout')]);
    stop = true;
    await Promise.all(scrapers);
    agent.destroy();
    assert.equal(outcome, 'closed', 'StoreMaster.close() with scrapes in flight');
    for (const f of failures) assert.ok(['ECONNREFUSED', 'ECONNRESET', 'EPIPE', 'socket hang up'].includes(f), `a scrape failed with ${f}`);
    await assert.rejects(httpRequest(p, '/metrics'), (e: NodeJS.ErrnoException) => e.code === 'ECONNREFUSED');
  });
});

// ---------------------------------------------------------------------------------------------
// 5. The CLI

type RunResult = CliRun;

function cli(args: string[], timeoutMs = 30_000): Promise<RunResult> {
  return runCli(['master', ...args], { timeoutMs });
}

function oneLine(stderr: string): string {
  const lines = stderr.trim().split('\n');
  assert.equal(lines.length, 1, `one line on stderr: ${JSON.stringify(stderr)}`);
  return lines[0]!;
}

describe('transfer-engine master (CLI)', () => {
  test('--help exits 0 and lists the flags under their mooncake names', async () => {
    const r = await cli(['--help']);
    assert.equal(r.code, 0, r.stderr);
    for (const flag of ['--rpc_port', '--rpc_address', '--default_kv_lease_ttl', '--eviction_ratio', '--client_ttl', '--metrics_port']) assert.ok(r.stdout.includes(flag), `${flag} in --help`);
  });

  test('an unknown flag exits 2 with one line naming it', async () => {
    const r = await cli(['--bogus_flag=1', '--metrics_port=-1']);
    assert.equal(r.code, 2);
    assert.match(oneLine(r.stderr), /--bogus_flag/);
    assert.equal(r.stdout, '');
  });

  test('bad values exit 2 with one line naming the flag', async () => {
    for (const [arg, flag] of [
      ['--eviction_ratio=2', 'eviction_ratio'],
      ['--default_kv_lease_ttl=abc', 'default_kv_lease_ttl'],
      ['--client_ttl=0', 'client_ttl'],
      ['--rpc_port=70000', 'rpc_port'],
      ['--rpc_port=-5', 'rpc_port'],
      ['--eviction_high_watermark_ratio=0', 'eviction_high_watermark_ratio'],
      ['--metrics_port=abc', 'metrics_port'],
      ['--busy_poll_us=-1', 'busy_poll_us'],
      ['--ha=http://127.0.0.1:2379', 'ha'],
      ['--ha_lease_ttl=1', 'ha_lease_ttl'],
      ['--data_dir=', 'data_dir'],
    ] as const) {
      const r = await cli([arg, '--metrics_port=-1', '--rpc_address=127.0.0.1', '--rpc_port=0'].filter((a, i, all) => all.findIndex((b) => b.split('=')[0] === a.split('=')[0]) === i));
      assert.equal(r.code, 2, `${arg}: exit code (stderr: ${r.stderr})`);
      assert.ok(oneLine(r.stderr).includes(`--${flag}`), `${arg}: ${r.stderr}`);
    }
  });

  test('HA needs an address clients can reach, and one place for the state', async () => {
    const wildcard = await cli(['--ha=etcd://127.0.0.1:1', '--rpc_address=0.0.0.0', '--metrics_port=-1']);
    assert.equal(wildcard.code, 2);
    assert.match(oneLine(wildcard.stderr), /--rpc_address/);
    const both = await cli(['--ha=etcd://127.0.0.1:1', '--data_dir=/tmp/x', '--rpc_address=127.0.0.1', '--metrics_port=-1']);
    assert.equal(both.code, 2);
    assert.match(oneLine(both.stderr), /--data_dir and --ha/);
    const noEndpoints = await cli(['--enable_ha', '--rpc_address=127.0.0.1', '--metrics_port=-1']);
    assert.equal(noEndpoints.code, 2);
    assert.match(oneLine(noEndpoints.stderr), /--etcd_endpoints/);
  });

  test('kebab spellings: a master_ready JSON line, ServiceReady served, SIGTERM exits 0', async () => {
    const child = spawn(process.execPath, [MAIN, 'master', '--rpc-port=0', '--metrics-port=-1', '--rpc-address=127.0.0.1', '--json'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => child.once('close', (code, signal) => resolve({ code, signal })));
    const killer = setTimeout(() => child.kill('SIGKILL'), 30_000);
    try {
      const line = await new Promise<string>((resolve, reject) => {
        const rl = createInterface({ input: child.stdout });
        rl.once('line', (l) => {
          rl.close();
          resolve(l);
        });
        void exited.then((x) => reject(new Error(`the master exited (${JSON.stringify(x)}) before its ready line: ${stderr}`)));
      });
      const ready = JSON.parse(line) as { event?: unknown; rpcPort?: unknown; rpc?: unknown; metricsPort?: unknown };
      assert.equal(ready.event, 'master_ready');
      assert.ok(typeof ready.rpcPort === 'number' && ready.rpcPort > 0 && ready.rpcPort < 65536, line);
      assert.equal(ready.rpc, `127.0.0.1:${ready.rpcPort}`);
      assert.equal(ready.metricsPort, null, '--metrics-port=-1: no metrics server');
      await assertServing(ready.rpcPort);
      // A client still connected (and one mid-frame) does not hold the exit.
      const idle = await RawConn.connect(ready.rpcPort);
      const midFrame = await RawConn.connect(ready.rpcPort);
      midFrame.write(serviceReady(1).subarray(0, 7));
      child.kill('SIGTERM');
      const end = await exited;
      assert.deepEqual(end, { code: 0, signal: null }, `SIGTERM: ${stderr}`);
      assert.ok(await idle.until(() => idle.closed && midFrame.closed, CLOSE_WAIT_MS), 'the connections were closed');
    } finally {
      clearTimeout(killer);
      child.kill('SIGKILL');
    }
  });

  test('an RPC port in use exits 1 with a message naming --rpc_port', async () => {
    const blocker = net.createServer();
    await new Promise<void>((resolve) => blocker.listen(0, '127.0.0.1', resolve));
    const busy = (blocker.address() as net.AddressInfo).port;
    try {
      const r = await cli([`--rpc_port=${busy}`, '--rpc_address=127.0.0.1', '--metrics_port=-1']);
      assert.equal(r.code, 1, r.stderr);
      const line = oneLine(r.stderr);
      assert.match(line, /--rpc_port/);
      assert.ok(line.includes(String(busy)), line);
    } finally {
      await new Promise<void>((resolve) => blocker.close(() => resolve()));
    }
  });
});
