/**
 * File segments across engines: a peer process reads and writes our
 * registered files, we read and write a peer process's, over the TCP data
 * port (or the nvmeof_generic transport's own listener), with the descriptor
 * published in P2P and through a central (HTTP) store. Hostile raw requests
 * (unknown ids, ranges past size, misaligned direct I/O, bytes where a path
 * could hide) are rejected and never write a byte; responses keep request
 * order when file and memory requests are pipelined on one connection.
 */
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { TransferEngine, TransferOpcode, TaskStatus, type TransferRequest } from '../src/core.js';
import {
  HEADER_SIZE,
  STATUS_OK_FRAME,
  STATUS_FILE_REJECTED_FRAME,
  encodeFileHeader,
  encodeHeader,
} from '../src/codec/wire.js';
import { TransferEngineError, ErrorCode } from '../src/errors.js';
import { MetadataHttpServer } from '../src/metadata/http-server.js';
import { nativeAvailable } from '../src/native/addon.js';
import { spawnPeer, sha256, type PeerProcess } from './helpers.js';
import { fillPattern, patternBuffer } from './pattern.js';

function teCode(code: ErrorCode, msg?: RegExp): (e: unknown) => boolean {
  return (e) => {
    assert.ok(e instanceof TransferEngineError, `expected a TransferEngineError, got ${String(e)}`);
    assert.equal(e.code, code, e.message);
    if (msg) assert.match(e.message, msg);
    return true;
  };
}

/** Every engine here is on one host: without this they would read and write each other's files directly (test/file-samehost.test.ts). */
const TCP_ONLY = { TE_FILE_SAME_HOST: '0' };

const SENTINEL = 0xa7;
let dir = '';
let counter = 0;

function sentinelFile(bytes: number): string {
  const p = path.join(dir, `f${counter++}.bin`);
  fs.writeFileSync(p, Buffer.alloc(bytes, SENTINEL));
  return p;
}

function assertSentinel(buf: Uint8Array, what: string): void {
  const bad = buf.findIndex((b) => b !== SENTINEL);
  assert.equal(bad, -1, `${what}: byte ${bad} changed`);
}

async function run(e: TransferEngine, reqs: TransferRequest[]): Promise<Array<{ status: TaskStatus; code: string | null }>> {
  const bid = e.allocateBatchID(reqs.length);
  e.submitTransfer(bid, reqs);
  const st = await e.waitBatch(bid);
  e.freeBatchID(bid);
  return st.map((s) => ({ status: s.status, code: s.error?.code ?? null }));
}

function fileReq(op: 'read' | 'write', source: number, targetId: number, fileId: number, offset: number, length: number): TransferRequest {
  return { opcode: op === 'write' ? TransferOpcode.WRITE : TransferOpcode.READ, source, targetId, targetOffset: offset, length, fileId };
}

/** Send raw bytes to a data port; resolve with everything received until the server closes (or `ms` pass). */
function raw(port: number, bytes: Buffer, ms = 3000): Promise<{ data: Buffer; closed: boolean }> {
  return new Promise((resolve, reject) => {
    const sock = net.connect({ host: '127.0.0.1', port });
    const chunks: Buffer[] = [];
    const timer = setTimeout(() => {
      sock.destroy();
      resolve({ data: Buffer.concat(chunks), closed: false });
    }, ms);
    sock.on('data', (c) => chunks.push(c));
    sock.on('error', reject);
    sock.on('close', () => {
      clearTimeout(timer);
      resolve({ data: Buffer.concat(chunks), closed: true });
    });
    sock.write(bytes);
  });
}

function fileHeader(size: number, offset: number | bigint, write: boolean, fileId: number): Buffer {
  const b = Buffer.alloc(HEADER_SIZE);
  encodeFileHeader(b, 0, size, offset, write, fileId);
  return b;
}

before(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'te-file-remote-'));
});

after(() => {
  fs.rmSync(dir, { recursive: true, force: true });
});

describe('a peer process and this engine, P2P', () => {
  let engine: TransferEngine;
  let peer: PeerProcess;

  before(async () => {
    engine = new TransferEngine({ env: TCP_ONLY });
    await engine.init('127.0.0.1');
    peer = await spawnPeer(TCP_ONLY);
  });

  after(async () => {
    await peer.stop();
    await engine.close();
  });

  test('the peer reads and writes a file registered here', async () => {
    const size = 4 << 20;
    const p = sentinelFile(size + 4096);
    const content = patternBuffer(size, 31);
    fs.writeFileSync(p, content, { flag: 'r+' });
    const id = engine.registerLocalFile(p, size);
    const mem = await peer.register(3 << 20, 32);
    // READ 3 MiB (several wire requests) from offset 1000, then WRITE 1 MiB of the peer's memory at offset 2 MiB + 5.
    const r = await peer.call<{ statuses: Array<{ status: number; code: string | null }> }>('transfer', {
      segment: engine.segmentName,
      requests: [{ op: 'read', source: mem, target: '1000', length: 3 << 20, fileId: id }],
    });
    assert.deepEqual(r.statuses, [{ status: TaskStatus.COMPLETED, transferred: 3 << 20, code: null }]);
    assert.equal(await peer.hash(mem, 3 << 20), sha256(content.subarray(1000, 1000 + (3 << 20))));
    assert.ok(engine.stats().requestsServed >= 3, 'over TCP (TE_FILE_SAME_HOST=0), served by our data server');
    await peer.call('fill', { addr: mem, length: 1 << 20, seed: 33 });
    const w = await peer.call<{ statuses: Array<{ status: number }> }>('transfer', {
      segment: engine.segmentName,
      requests: [{ op: 'write', source: mem, target: String((2 << 20) + 5), length: 1 << 20, fileId: id }],
    });
    assert.equal(w.statuses[0]!.status, TaskStatus.COMPLETED);
    const f = fs.readFileSync(p);
    assert.ok(f.subarray((2 << 20) + 5, (3 << 20) + 5).equals(patternBuffer(1 << 20, 33)));
    assert.ok(f.subarray(0, (2 << 20) + 5).equals(content.subarray(0, (2 << 20) + 5)), 'before the range');
    assert.ok(f.subarray((3 << 20) + 5, size).equals(content.subarray((3 << 20) + 5)), 'after the range');
    assertSentinel(f.subarray(size), 'past the registered size');
    // Past size: refused in the peer before anything is sent.
    const stats = engine.stats().requestsServed;
    await assert.rejects(
      peer.call('transfer', { segment: engine.segmentName, requests: [{ op: 'write', source: mem, target: String(size - 10), length: 11, fileId: id }] }),
      (e: Error & { code?: string | null }) => e.code === ErrorCode.INVALID_ARGUMENT && /outside file id/.test(e.message),
    );
    assert.equal(engine.stats().requestsServed, stats);
    engine.unregisterLocalFile(p);
  });

  test('this engine reads and writes a file registered by the peer; file and memory requests mixed in one batch', async () => {
    const size = 8 << 20;
    const p = sentinelFile(size);
    const { id } = await peer.call<{ id: number }>('registerFile', { path: p, size: size - 4096 });
    const peerMem = await peer.register(1 << 20, 41);
    const h = await engine.openSegment(peer.segmentName);
    const desc = engine.getSegmentDescriptor(h);
    assert.deepEqual(desc.fileBuffers?.map(({ owner: _o, ...f }) => f), [{ id, path: p, size: size - 4096, align: 0 }]);
    const src = patternBuffer(6 << 20, 42);
    const srcAddr = engine.registerLocalMemory(src);
    const dst = Buffer.alloc(6 << 20);
    const dstAddr = engine.registerLocalMemory(dst);
    const memBack = Buffer.alloc(1 << 20);
    const memAddr = engine.registerLocalMemory(memBack);
    const st = await run(engine, [
      fileReq('write', srcAddr, h, id, 777, 5 << 20),
      { opcode: TransferOpcode.READ, source: memAddr, targetId: h, targetOffset: BigInt(peerMem), length: 1 << 20 },
      fileReq('write', srcAddr + (5 << 20), h, id, (6 << 20) + 3, 4096),
    ]);
    assert.deepEqual(st.map((s) => s.status), [TaskStatus.COMPLETED, TaskStatus.COMPLETED, TaskStatus.COMPLETED]);
    assert.ok(memBack.equals(patternBuffer(1 << 20, 41)));
    const f = fs.readFileSync(p);
    assert.ok(f.subarray(777, 777 + (5 << 20)).equals(src.subarray(0, 5 << 20)));
    assert.ok(f.subarray((6 << 20) + 3, (6 << 20) + 3 + 4096).equals(src.subarray(5 << 20, (5 << 20) + 4096)));
    assertSentinel(f.subarray(0, 777), 'before the first range');
    assertSentinel(f.subarray(777 + (5 << 20), (6 << 20) + 3), 'between the ranges');
    assertSentinel(f.subarray((6 << 20) + 3 + 4096), 'after the second range');
    // Read it all back, in 64 requests of 64 KiB.
    const reads = Array.from({ length: 64 }, (_, i) => fileReq('read', dstAddr + i * 65536, h, id, 777 + i * 65536, 65536));
    assert.ok((await run(engine, reads)).every((s) => s.status === TaskStatus.COMPLETED));
    assert.ok(dst.subarray(0, 4 << 20).equals(src.subarray(0, 4 << 20)));
    // Up-front refusals: an id the descriptor does not list, and ranges past size.
    assert.throws(() => engine.submitTransfer(engine.allocateBatchID(1), [fileReq('read', dstAddr, h, id + 1, 0, 1)]), teCode(ErrorCode.INVALID_ARGUMENT, new RegExp(`publishes no file with id ${id + 1} \\(its files: ${id}\\)`)));
    assert.throws(() => engine.submitTransfer(engine.allocateBatchID(1), [fileReq('write', srcAddr, h, id, size - 4096, 1)]), teCode(ErrorCode.INVALID_ARGUMENT, /outside file id/));
    await peer.call('unregisterFile', { path: p });
  });

  test('a segment that lists no files never gets a file request (a Mooncake peer would take it for a memory READ)', async () => {
    const other = await spawnPeer(TCP_ONLY);
    try {
      const h = await engine.openSegment(other.segmentName);
      const mem = Buffer.alloc(16);
      const addr = engine.registerLocalMemory(mem);
      assert.throws(() => engine.submitTransfer(engine.allocateBatchID(1), [fileReq('read', addr, h, 1, 0, 16)]), teCode(ErrorCode.INVALID_ARGUMENT, /publishes no files/));
      assert.equal((await other.call<{ requestsServed: number }>('stats')).requestsServed, 0);
      engine.unregisterLocalMemory(addr);
    } finally {
      await other.stop();
    }
  });

  test('the peer unregisters its file: our stale descriptor sends a request, the peer rejects it (ADDRESS_REJECTED)', async () => {
    const p = sentinelFile(65536);
    const { id } = await peer.call<{ id: number }>('registerFile', { path: p, size: 65536 });
    const name = peer.segmentName;
    const h0 = await engine.openSegment(name);
    engine.closeSegment(h0);
    const h = await engine.openSegment(name); // fresh descriptor listing the file
    await peer.call('unregisterFile', { path: p });
    const mem = patternBuffer(4096, 3);
    const addr = engine.registerLocalMemory(mem);
    const st = await run(engine, [fileReq('write', addr, h, id, 0, 4096)]);
    assert.deepEqual(st, [{ status: TaskStatus.FAILED, code: ErrorCode.ADDRESS_REJECTED }]);
    assertSentinel(fs.readFileSync(p), 'the unregistered file');
    engine.unregisterLocalMemory(addr);
  });
});

describe('MC_TCP_PROTO=1 (unacknowledged memory writes)', () => {
  test('file requests still use status frames, on lanes of their own', async () => {
    const owner = new TransferEngine({ env: TCP_ONLY });
    const user = new TransferEngine({ env: { ...TCP_ONLY, MC_TCP_PROTO: '1' } });
    await owner.init('127.0.0.1');
    await user.init('127.0.0.1');
    try {
      const p = sentinelFile(65536);
      const id = owner.registerLocalFile(p, 65536);
      const ownerMem = Buffer.alloc(4096);
      const ownerAddr = owner.registerLocalMemory(ownerMem);
      const h = await user.openSegment(owner.segmentName);
      const src = patternBuffer(8192, 81);
      const addr = user.registerLocalMemory(src);
      const st = await run(user, [
        fileReq('write', addr, h, id, 4096, 4096),
        { opcode: TransferOpcode.WRITE, source: addr + 4096, targetId: h, targetOffset: ownerAddr, length: 4096 },
      ]);
      assert.deepEqual(st.map((x) => x.status), [TaskStatus.COMPLETED, TaskStatus.COMPLETED]);
      assert.ok(fs.readFileSync(p).subarray(4096, 8192).equals(src.subarray(0, 4096)));
      const back = Buffer.alloc(4096);
      const backAddr = user.registerLocalMemory(back);
      assert.equal((await run(user, [fileReq('read', backAddr, h, id, 4096, 4096)]))[0]!.status, TaskStatus.COMPLETED);
      assert.ok(back.equals(src.subarray(0, 4096)));
      // Refused ranges still fail as rejections, not as silent v1 "successes".
      const bad = fileReq('write', addr, h, id, 0, 4096);
      owner.unregisterLocalFile(p);
      assert.deepEqual(await run(user, [bad]), [{ status: TaskStatus.FAILED, code: ErrorCode.ADDRESS_REJECTED }]);
    } finally {
      await user.close();
      await owner.close();
    }
  });
});

describe('direct I/O across processes', { skip: nativeAvailable() ? false : 'the native addon (aligned buffers) is not built' }, () => {
  test('the peer publishes align 4096; aligned requests work, unaligned ones are refused before sending', async () => {
    const peer = await spawnPeer({ ...TCP_ONLY, MC_NVMEOF_GENERIC_DIRECT_IO: 'on' });
    const engine = new TransferEngine({ env: TCP_ONLY });
    await engine.init('127.0.0.1');
    try {
      const p = sentinelFile(1 << 20);
      const { id } = await peer.call<{ id: number }>('registerFile', { path: p, size: 1 << 20 });
      const h = await engine.openSegment(peer.segmentName);
      assert.equal(engine.getSegmentDescriptor(h).fileBuffers![0]!.align, 4096);
      const src = patternBuffer(256 * 1024 + 1, 8);
      const addr = engine.registerLocalMemory(src);
      const back = Buffer.alloc(256 * 1024);
      const backAddr = engine.registerLocalMemory(back);
      assert.equal((await run(engine, [fileReq('write', addr + 1, h, id, 65536, 256 * 1024)]))[0]!.status, TaskStatus.COMPLETED);
      assert.equal((await run(engine, [fileReq('read', backAddr, h, id, 65536, 256 * 1024)]))[0]!.status, TaskStatus.COMPLETED);
      assert.ok(back.equals(src.subarray(1)));
      assert.throws(() => engine.submitTransfer(engine.allocateBatchID(1), [fileReq('write', addr, h, id, 100, 4096)]), teCode(ErrorCode.INVALID_ARGUMENT, /multiples of 4096/));
      // A raw misaligned request (skipping our own check) is rejected by the peer.
      const res = await raw(peer.dataPort, fileHeader(512, 0, false, id));
      assert.deepEqual(res.data, STATUS_FILE_REJECTED_FRAME);
      assert.ok(res.closed);
      const f = fs.readFileSync(p);
      assertSentinel(f.subarray(0, 65536), 'before');
      assertSentinel(f.subarray(65536 + 256 * 1024), 'after');
    } finally {
      await engine.close();
      await peer.stop();
    }
  });
});

describe('hostile and pipelined raw requests on the data port', () => {
  let engine: TransferEngine;
  let file = '';
  let sibling = '';
  let id = 0;
  const SIZE = 65536;

  before(async () => {
    engine = new TransferEngine({ env: TCP_ONLY });
    await engine.init('127.0.0.1');
    file = sentinelFile(SIZE + 4096); // bytes past the registered size must never change either
    sibling = path.join(path.dirname(file), 'secret.bin');
    fs.writeFileSync(sibling, Buffer.alloc(4096, SENTINEL)); // a file next to it that nobody registered
    id = engine.registerLocalFile(file, SIZE);
  });

  after(async () => {
    await engine.close();
  });

  test('unknown ids, ranges outside [0, size), empty and oversized requests, reserved bytes: FILE_REJECTED, close, no byte written', async () => {
    const body = Buffer.alloc(8192, 0x5a);
    const cases: Array<[string, Buffer]> = [
      ['unknown id', Buffer.concat([fileHeader(16, 0, true, id + 99), body.subarray(0, 16)])],
      ['id 0', Buffer.concat([fileHeader(16, 0, true, 0), body.subarray(0, 16)])],
      ['offset at size', Buffer.concat([fileHeader(1, SIZE, true, id), body.subarray(0, 1)])],
      ['range crossing size', Buffer.concat([fileHeader(8192, SIZE - 4096, true, id), body])],
      ['offset 2^63', Buffer.concat([fileHeader(16, 1n << 63n, true, id), body.subarray(0, 16)])],
      ['offset + size wrapping 2^64', Buffer.concat([fileHeader(16, (1n << 64n) - 8n, true, id), body.subarray(0, 16)])],
      ['zero size', fileHeader(0, 0, true, id)],
      ['larger than one file request may be', fileHeader(128 << 20, 0, false, id)],
    ];
    // A peer cannot name a path: the only free bytes of the header are reserved, and any content there is refused.
    const dotted = fileHeader(16, 0, true, id);
    Buffer.from('../').copy(dotted, 21);
    cases.push(['"../" in the reserved bytes', Buffer.concat([dotted, body.subarray(0, 16)])]);
    for (const [what, bytes] of cases) {
      const res = await raw(engine.dataPort, bytes);
      assert.deepEqual(res.data, STATUS_FILE_REJECTED_FRAME, what);
      assert.ok(res.closed, `${what}: connection closed`);
    }
    const f = fs.readFileSync(file);
    assertSentinel(f, 'registered file (inside and past size)');
    assertSentinel(fs.readFileSync(sibling), 'unregistered sibling');
    assert.ok(engine.stats().requestsRejected >= cases.length);
  });

  test('responses keep request order: file READ, memory READ, file WRITE, file READ of the written bytes, then a rejection', async () => {
    const mem = patternBuffer(4096, 50);
    const memAddr = engine.registerLocalMemory(mem);
    const payload = patternBuffer(4096, 51);
    const memRead = Buffer.alloc(HEADER_SIZE);
    encodeHeader(memRead, 0, 4096, memAddr, false, true);
    const before = fs.readFileSync(file).subarray(8192, 8192 + 4096);
    const res = await raw(
      engine.dataPort,
      Buffer.concat([
        fileHeader(4096, 8192, false, id),
        memRead,
        fileHeader(4096, 8192, true, id),
        payload,
        fileHeader(4096, 8192, false, id),
        fileHeader(1, SIZE, false, id), // rejected last: everything before it is answered first
      ]),
    );
    const expected = Buffer.concat([STATUS_OK_FRAME, before, STATUS_OK_FRAME, mem, STATUS_OK_FRAME, STATUS_OK_FRAME, payload, STATUS_FILE_REJECTED_FRAME]);
    assert.equal(res.data.length, expected.length);
    assert.ok(res.data.equals(expected), 'in order, and the READ after the WRITE saw the new bytes');
    assert.ok(res.closed);
    // Restore the sentinel for the other tests.
    const fd = fs.openSync(file, 'r+');
    fs.writeSync(fd, Buffer.alloc(4096, SENTINEL), 0, 4096, 8192);
    fs.closeSync(fd);
    engine.unregisterLocalMemory(memAddr);
  });

  test('hundreds of pipelined file requests on one connection (more than the window): all answered, in order, with the right bytes', async () => {
    const p = sentinelFile(1 << 20);
    const content = patternBuffer(1 << 20, 52);
    fs.writeFileSync(p, content);
    const fid = engine.registerLocalFile(p, 1 << 20);
    const N = 300;
    const parts: Buffer[] = [];
    const expected: Buffer[] = [];
    for (let i = 0; i < N; i++) {
      const off = ((i * 7919) % 256) * 4096;
      const len = 1 + ((i * 31) % 4096);
      parts.push(fileHeader(len, off, false, fid));
      expected.push(STATUS_OK_FRAME, content.subarray(off, off + len));
    }
    const want = Buffer.concat(expected);
    const res = await raw(engine.dataPort, Buffer.concat(parts), 1500);
    assert.equal(res.data.length, want.length);
    assert.ok(res.data.equals(want));
    assert.equal(res.closed, false, 'a connection that did nothing wrong stays open');
    engine.unregisterLocalFile(p);
  });

  test('a client that stops reading: the server stops at its staging window and resumes when the client drains', async () => {
    const p = sentinelFile(1 << 20);
    const content = patternBuffer(1 << 20, 53);
    fs.writeFileSync(p, content);
    const fid = engine.registerLocalFile(p, 1 << 20);
    const N = 48; // 48 MiB of responses, more than one connection's 32 MiB window
    const sock = net.connect({ host: '127.0.0.1', port: engine.dataPort });
    await new Promise<void>((r) => sock.once('connect', () => r()));
    sock.pause();
    sock.write(Buffer.concat(Array.from({ length: N }, () => fileHeader(1 << 20, 0, false, fid))));
    await new Promise((r) => setTimeout(r, 300)); // the server fills its window and parks the rest
    let got = 0;
    let bad = false;
    const frame = Buffer.concat([STATUS_OK_FRAME, content]);
    const done = new Promise<void>((resolve) => {
      let pending = Buffer.alloc(0);
      sock.on('data', (c: Buffer) => {
        pending = Buffer.concat([pending, c]);
        while (pending.length >= frame.length) {
          if (!pending.subarray(0, frame.length).equals(frame)) bad = true;
          pending = pending.subarray(frame.length);
          if (++got === N) resolve();
        }
      });
    });
    sock.resume();
    await done;
    sock.destroy();
    assert.equal(bad, false, 'every response is OK + the file bytes');
    for (let i = 0; i < 200 && engine.getLocalSegmentDescriptor().fileBuffers?.some((f) => f.id === fid); i++) {
      try {
        engine.unregisterLocalFile(p);
      } catch {
        await new Promise((r) => setTimeout(r, 10));
      }
    }
  });

  test('a file with a WRITE body half received cannot be unregistered; once the peer goes it can', async () => {
    const p = sentinelFile(65536);
    const fid = engine.registerLocalFile(p, 65536);
    const sock = net.connect({ host: '127.0.0.1', port: engine.dataPort });
    await new Promise<void>((r) => sock.once('connect', () => r()));
    // Wait until the server has taken the header (it counts the request; the file is pinned).
    const served = engine.stats().requestsServed;
    sock.write(Buffer.concat([fileHeader(65536, 0, true, fid), Buffer.alloc(1000, 1)]));
    for (let i = 0; i < 500 && engine.stats().requestsServed === served; i++) await new Promise((r) => setTimeout(r, 10));
    assert.throws(() => engine.unregisterLocalFile(p), teCode(ErrorCode.REGION_BUSY, /has 1 transfer\(s\) in flight/));
    sock.destroy();
    for (let i = 0; i < 200; i++) {
      try {
        engine.unregisterLocalFile(p);
        break;
      } catch (e) {
        if (!(e instanceof TransferEngineError && e.code === ErrorCode.REGION_BUSY)) throw e;
        await new Promise((r) => setTimeout(r, 10));
      }
    }
    assert.ok(!engine.getLocalSegmentDescriptor().fileBuffers?.some((f) => f.id === fid), 'unregistered once the connection ended');
    assertSentinel(fs.readFileSync(p), 'a body that never completed is never written');
  });

  test('an engine that serves no files rejects file requests (an engine without the file context)', async () => {
    // Our engines always serve files; a bare data server (as embedded without files) must still refuse cleanly.
    const { TcpDataServer } = await import('../src/transport/tcp/server.js');
    const { MemoryRegistry } = await import('../src/memory.js');
    const server = new TcpDataServer(new MemoryRegistry());
    const port = await server.listen('127.0.0.1', 0, 15000, 17000);
    try {
      const res = await raw(port, fileHeader(16, 0, false, 1));
      assert.deepEqual(res.data, STATUS_FILE_REJECTED_FRAME);
      assert.ok(res.closed);
    } finally {
      await server.close();
    }
  });
});

describe('the nvmeof_generic / file transport', () => {
  test('a trid gives file requests a listener of their own, published as file_data_host/port; peers use it', async () => {
    const engine = new TransferEngine({ env: TCP_ONLY });
    await engine.init('127.0.0.1');
    const peer = await spawnPeer(TCP_ONLY);
    try {
      const port = await freePort();
      await assert.rejects(engine.installTransport('nvmeof_generic', 'trtype=rdma adrfam=ipv4 traddr=127.0.0.1 trsvcid=4420'), teCode(ErrorCode.NOT_SUPPORTED, /not NVMe|only trtype=tcp/));
      await assert.rejects(engine.installTransport('nvmeof_generic', 'trtype=tcp traddr=127.0.0.1'), teCode(ErrorCode.INVALID_ARGUMENT, /trsvcid/));
      await assert.rejects(engine.installTransport('tcp', 'x'), teCode(ErrorCode.INVALID_ARGUMENT, /takes no argument/));
      await assert.rejects(engine.uninstallTransport('file'), teCode(ErrorCode.INVALID_ARGUMENT, /ride on the tcp data port/));
      await engine.installTransport('nvmeof_generic', `trtype=tcp adrfam=ipv4 traddr=127.0.0.1 trsvcid=${port}`);
      await engine.installTransport('file', `trtype=tcp adrfam=ipv4 traddr=127.0.0.1 trsvcid=${port}`); // same address: no-op
      await assert.rejects(engine.installTransport('file', `trtype=tcp traddr=127.0.0.1 trsvcid=${port === 65535 ? port - 1 : port + 1}`), teCode(ErrorCode.INVALID_ARGUMENT, /already listens/));
      assert.deepEqual(engine.getLocalSegmentDescriptor().fileEndpoint, { host: '127.0.0.1', port });
      assert.deepEqual(engine.transports, ['tcp', 'file']);
      const p = sentinelFile(65536);
      const id = engine.registerLocalFile(p, 65536);
      const mem = await peer.register(65536, 61);
      const r = await peer.call<{ statuses: Array<{ status: number }> }>('transfer', {
        segment: engine.segmentName,
        requests: [{ op: 'write', source: mem, target: '0', length: 65536, fileId: id }],
      });
      assert.equal(r.statuses[0]!.status, TaskStatus.COMPLETED);
      assert.ok(fs.readFileSync(p).equals(patternBuffer(65536, 61)));
      assert.equal(engine.stats().requestsServed, 0, 'the request went to the file listener, not the data port');
      // A second engine cannot take the same port.
      const other = new TransferEngine({ env: TCP_ONLY });
      await other.init('127.0.0.1');
      await assert.rejects(other.installTransport('nvmeof_generic', `trtype=tcp traddr=127.0.0.1 trsvcid=${port}`), teCode(ErrorCode.PORT_IN_USE));
      await other.close();
      await engine.uninstallTransport('nvmeof_generic');
      assert.equal(engine.getLocalSegmentDescriptor().fileEndpoint, undefined);
    } finally {
      await peer.stop();
      await engine.close();
    }
  });

  test('central metadata (HTTP store): file_buffers are published with the descriptor and seen by peers', async () => {
    const meta = await MetadataHttpServer.start({ host: '127.0.0.1', port: 0 });
    const a = new TransferEngine({ metadataServer: meta.url, env: TCP_ONLY });
    const b = new TransferEngine({ metadataServer: meta.url, env: TCP_ONLY });
    try {
      await a.init('file-owner', '127.0.0.1');
      await b.init('file-user', '127.0.0.1');
      const p = sentinelFile(8192);
      const id = a.registerLocalFile(p, 8192);
      await a.flushMetadata();
      const h = await b.openSegment('file-owner');
      assert.deepEqual(b.getSegmentDescriptor(h).fileBuffers?.map(({ owner: _o, ...f }) => f), [{ id, path: p, size: 8192, align: 0 }]);
      const mem = Buffer.alloc(8192);
      fillPattern(mem, 71);
      const addr = b.registerLocalMemory(mem);
      assert.equal((await run(b, [fileReq('write', addr, h, id, 0, 8192)]))[0]!.status, TaskStatus.COMPLETED);
      assert.ok(fs.readFileSync(p).equals(mem));
    } finally {
      await b.close();
      await a.close();
      await meta.close();
    }
  });
});

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(port));
    });
  });
}
