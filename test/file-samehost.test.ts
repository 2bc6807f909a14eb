/**
 * Same-host file access (src/transport/file-same-host.ts): an engine reads and
 * writes a registered file of a peer process on this host itself, through the
 * owner's open descriptor, instead of over TCP. Proven by our counter
 * (fileSameHost) and by the owner's data server seeing no request. Checked:
 * data both ways, direct I/O, errors identical to the TCP path, the path
 * replaced by another inode (the registered inode is used, never the new
 * file), handles that do not check out (fallback, counted), the owner
 * unregistering or re-registering the file (stale requests never write),
 * TE_FILE_SAME_HOST=0 and another machine id (TCP).
 */
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { TransferEngine, TransferOpcode, TaskStatus, type TransferRequest } from '../src/core.js';
import { TransferEngineError, ErrorCode } from '../src/errors.js';
import { RECHECK_MS, SameHostFiles } from '../src/transport/file-same-host.js';
import { nativeAvailable } from '../src/native/addon.js';
import { spawnPeer, sha256, type PeerProcess } from './helpers.js';
import { patternBuffer } from './pattern.js';

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

const OK = { status: TaskStatus.COMPLETED, code: null };
const served = async (peer: PeerProcess): Promise<number> => (await peer.call<{ requestsServed: number }>('stats')).requestsServed;

/** The error submitTransfer throws for these requests. */
function submitError(e: TransferEngine, reqs: TransferRequest[]): TransferEngineError {
  try {
    e.submitTransfer(e.allocateBatchID(reqs.length), reqs);
  } catch (err) {
    assert.ok(err instanceof TransferEngineError);
    return err;
  }
  assert.fail('submitTransfer accepted the requests');
}

before(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'te-file-samehost-'));
});

after(() => {
  fs.rmSync(dir, { recursive: true, force: true });
});

describe('a peer process on this host', () => {
  let peer: PeerProcess;
  let engine: TransferEngine;
  let tcp: TransferEngine;

  before(async () => {
    peer = await spawnPeer();
    engine = new TransferEngine({ env: {} });
    await engine.init('127.0.0.1');
    tcp = new TransferEngine({ env: { TE_FILE_SAME_HOST: '0' } });
    await tcp.init('127.0.0.1');
  });

  after(async () => {
    await tcp.close();
    await engine.close();
    await peer.stop();
  });

  test('our reads and writes of its file go direct: counted here, no request reaches its data server; data and bounds exact', async () => {
    const size = 6 << 20;
    const p = sentinelFile(size + 4096);
    const content = patternBuffer(size, 11);
    fs.writeFileSync(p, content, { flag: 'r+' });
    const { id } = await peer.call<{ id: number }>('registerFile', { path: p, size });
    const h = await engine.openSegment(peer.segmentName);
    const before = engine.stats();
    const src = patternBuffer(3 << 20, 12);
    const srcAddr = engine.registerLocalMemory(src);
    const dst = Buffer.alloc(5 << 20);
    const dstAddr = engine.registerLocalMemory(dst);
    // A 5 MiB read (several 1 MiB pieces on the pool), a 3 MiB write at an odd offset, 16 small reads.
    assert.deepEqual(await run(engine, [fileReq('read', dstAddr, h, id, 1000, 5 << 20)]), [OK]);
    assert.ok(dst.equals(content.subarray(1000, 1000 + (5 << 20))));
    assert.deepEqual(await run(engine, [fileReq('write', srcAddr, h, id, (2 << 20) + 7, 3 << 20)]), [OK]);
    const small = Array.from({ length: 16 }, (_, i) => fileReq('read', dstAddr + i * 4096, h, id, (2 << 20) + 7 + i * 4096, 4096));
    assert.ok((await run(engine, small)).every((s) => s.status === TaskStatus.COMPLETED));
    assert.ok(dst.subarray(0, 16 * 4096).equals(src.subarray(0, 16 * 4096)));
    const after = engine.stats();
    assert.equal(after.fileSameHost - before.fileSameHost, 18, 'every request served directly');
    assert.equal(after.fileSameHostFallbacks, before.fileSameHostFallbacks);
    assert.equal(await served(peer), 0, "the owner's data server saw no request");
    const f = fs.readFileSync(p);
    assert.ok(f.subarray((2 << 20) + 7, (5 << 20) + 7).equals(src));
    assert.ok(f.subarray(0, (2 << 20) + 7).equals(content.subarray(0, (2 << 20) + 7)), 'before the range');
    assert.ok(f.subarray((5 << 20) + 7, size).equals(content.subarray((5 << 20) + 7)), 'after the range');
    assertSentinel(f.subarray(size), 'past the registered size');
    await peer.call('unregisterFile', { path: p });
    engine.closeSegment(h);
    engine.unregisterLocalMemory(srcAddr);
    engine.unregisterLocalMemory(dstAddr);
  });

  test('the peer reads and writes our file directly too; bounds errors are those of the TCP path, word for word', async () => {
    const size = 1 << 20;
    const p = sentinelFile(size + 4096);
    const id = engine.registerLocalFile(p, size);
    const servedBefore = engine.stats().requestsServed;
    const mem = await peer.register(256 * 1024, 21);
    const w = await peer.call<{ statuses: Array<{ status: number }> }>('transfer', {
      segment: engine.segmentName,
      requests: [{ op: 'write', source: mem, target: String(size - 256 * 1024), length: 256 * 1024, fileId: id }],
    });
    assert.equal(w.statuses[0]!.status, TaskStatus.COMPLETED);
    assert.ok(fs.readFileSync(p).subarray(size - 256 * 1024, size).equals(patternBuffer(256 * 1024, 21)));
    assertSentinel(fs.readFileSync(p).subarray(size), 'past the registered size');
    assert.equal((await peer.call<{ fileSameHost: number }>('stats')).fileSameHost, 1);
    assert.equal(engine.stats().requestsServed, servedBefore, 'nothing came over TCP');
    // Refused up front, with the same error as over TCP: past size, unknown id.
    const h = await engine.openSegment(peer.segmentName);
    const ht = await tcp.openSegment(peer.segmentName);
    const q = sentinelFile(65536);
    const { id: pid } = await peer.call<{ id: number }>('registerFile', { path: q, size: 65536 });
    engine.closeSegment(h);
    tcp.closeSegment(ht);
    const h2 = await engine.openSegment(peer.segmentName);
    const ht2 = await tcp.openSegment(peer.segmentName);
    const a = engine.registerLocalMemory(Buffer.alloc(8192));
    const at = tcp.registerLocalMemory(Buffer.alloc(8192));
    for (const [off, len, fid] of [[65536 - 10, 11, pid], [65536, 1, pid], [0, 1, pid + 99]] as const) {
      const direct = submitError(engine, [fileReq('write', a, h2, fid, off, len)]);
      const overTcp = submitError(tcp, [fileReq('write', at, ht2, fid, off, len)]);
      assert.equal(direct.code, ErrorCode.INVALID_ARGUMENT);
      assert.deepEqual([direct.code, direct.message], [overTcp.code, overTcp.message]);
    }
    assertSentinel(fs.readFileSync(q), 'the refused file');
    await peer.call('unregisterFile', { path: q });
    engine.unregisterLocalFile(p);
    engine.closeSegment(h2);
    tcp.closeSegment(ht2);
  });

  test('the path replaced by another file: the registered inode is read and written (as over TCP), never the new file', async () => {
    const p = sentinelFile(65536);
    const { id } = await peer.call<{ id: number }>('registerFile', { path: p, size: 65536 });
    const original = fs.openSync(p, 'r'); // keeps the registered inode reachable for the check
    try {
      const h = await engine.openSegment(peer.segmentName);
      const replacement = `${p}.new`;
      fs.writeFileSync(replacement, Buffer.alloc(65536, SENTINEL));
      fs.renameSync(replacement, p);
      const src = patternBuffer(8192, 31);
      const addr = engine.registerLocalMemory(src);
      const before = engine.stats().fileSameHost;
      assert.deepEqual(await run(engine, [fileReq('write', addr, h, id, 4096, 8192)]), [OK]);
      assert.equal(engine.stats().fileSameHost, before + 1);
      const got = Buffer.alloc(8192);
      fs.readSync(original, got, 0, 8192, 4096);
      assert.ok(got.equals(src), 'the registered inode has the bytes');
      assertSentinel(fs.readFileSync(p), 'the file now at the path');
      await peer.call('unregisterFile', { path: p }).catch(() => undefined); // the path names another inode now
      engine.closeSegment(h);
      engine.unregisterLocalMemory(addr);
    } finally {
      fs.closeSync(original);
    }
  });

  test('the owner unregisters, or unregisters and registers the same file smaller: stale requests go to TCP and are refused, nothing written', async () => {
    const p = sentinelFile(65536);
    const { id } = await peer.call<{ id: number }>('registerFile', { path: p, size: 65536 });
    const h = await engine.openSegment(peer.segmentName);
    const staleFd = engine.getSegmentDescriptor(h).fileBuffers![0]!.owner!.fd;
    const src = patternBuffer(4096, 41);
    const addr = engine.registerLocalMemory(src);
    assert.deepEqual(await run(engine, [fileReq('write', addr, h, id, 0, 4096)]), [OK]); // opened and cached here
    assert.ok(fs.readFileSync(p).subarray(0, 4096).equals(src));
    fs.writeFileSync(p, Buffer.alloc(65536, SENTINEL));
    // Registered again, smaller: a new id; the owner never gives the same inode the same descriptor number again.
    await peer.call('unregisterFile', { path: p });
    const { id: id2 } = await peer.call<{ id: number }>('registerFile', { path: p, size: 8192 });
    assert.notEqual(id2, id);
    const fresh = await tcp.openSegment(peer.segmentName);
    assert.notEqual(tcp.getSegmentDescriptor(fresh).fileBuffers![0]!.owner!.fd, staleFd);
    tcp.closeSegment(fresh);
    const before = engine.stats();
    const servedBefore = await served(peer);
    // Our descriptor still lists the old id and size 65536: a write at 32 KiB is past the new size.
    assert.deepEqual(await run(engine, [fileReq('write', addr, h, id, 32768, 4096)]), [{ status: TaskStatus.FAILED, code: ErrorCode.ADDRESS_REJECTED }]);
    assert.equal(engine.stats().fileSameHost, before.fileSameHost, 'not served directly');
    assert.ok(engine.stats().fileSameHostFallbacks > before.fileSameHostFallbacks, 'counted as a fallback');
    assert.ok((await served(peer)) > servedBefore || (await peer.call<{ requestsRejected: number }>('stats')).requestsRejected > 0, 'the owner refused it');
    // Unregistered altogether: the same.
    await peer.call('unregisterFile', { path: p });
    assert.deepEqual(await run(engine, [fileReq('write', addr, h, id, 0, 4096)]), [{ status: TaskStatus.FAILED, code: ErrorCode.ADDRESS_REJECTED }]);
    assertSentinel(fs.readFileSync(p), 'the file');
    engine.closeSegment(h);
    engine.unregisterLocalMemory(addr);
  });

  test('TE_FILE_SAME_HOST=0, or another machine id: over TCP, no fallback counted', async () => {
    const p = sentinelFile(65536);
    const { id } = await peer.call<{ id: number }>('registerFile', { path: p, size: 65536 });
    const elsewhere = new TransferEngine({ env: {}, machineId: 'another-host' });
    await elsewhere.init('127.0.0.1');
    try {
      for (const e of [tcp, elsewhere]) {
        const h = await e.openSegment(peer.segmentName);
        const src = patternBuffer(4096, 51);
        const addr = e.registerLocalMemory(src);
        const servedBefore = await served(peer);
        assert.deepEqual(await run(e, [fileReq('write', addr, h, id, 8192, 4096), fileReq('read', addr, h, id, 0, 4096)]), [OK, OK]);
        assert.equal((await served(peer)) - servedBefore, 2, 'both went to the owner over TCP');
        assert.deepEqual([e.stats().fileSameHost, e.stats().fileSameHostFallbacks], [0, 0]);
        assert.ok(fs.readFileSync(p).subarray(8192, 12288).equals(patternBuffer(4096, 51)));
        assertSentinel(src, 'read back from offset 0');
        e.closeSegment(h);
        e.unregisterLocalMemory(addr);
      }
    } finally {
      await elsewhere.close();
      await peer.call('unregisterFile', { path: p });
    }
  });
});

describe('direct I/O on a same-host peer', { skip: nativeAvailable() ? false : 'the native addon (aligned buffers) is not built' }, () => {
  test('the owner publishes align 4096: aligned requests go direct (from unaligned memory too), misaligned ones fail as over TCP', async () => {
    const peer = await spawnPeer({ MC_NVMEOF_GENERIC_DIRECT_IO: 'on' });
    const engine = new TransferEngine({ env: {} });
    const tcp = new TransferEngine({ env: { TE_FILE_SAME_HOST: '0' } });
    await engine.init('127.0.0.1');
    await tcp.init('127.0.0.1');
    try {
      const p = sentinelFile(1 << 20);
      const { id } = await peer.call<{ id: number }>('registerFile', { path: p, size: 1 << 20 });
      const h = await engine.openSegment(peer.segmentName);
      const src = patternBuffer(256 * 1024 + 1, 61);
      const addr = engine.registerLocalMemory(src);
      const back = Buffer.alloc(256 * 1024);
      const backAddr = engine.registerLocalMemory(back);
      assert.deepEqual(await run(engine, [fileReq('write', addr + 1, h, id, 65536, 256 * 1024)]), [OK]);
      assert.deepEqual(await run(engine, [fileReq('read', backAddr, h, id, 65536, 256 * 1024)]), [OK]);
      assert.ok(back.equals(src.subarray(1)));
      assert.equal(engine.stats().fileSameHost, 2);
      assert.equal(await served(peer), 0);
      const ht = await tcp.openSegment(peer.segmentName);
      const at = tcp.registerLocalMemory(Buffer.alloc(8192));
      for (const [off, len] of [[100, 4096], [4096, 100]] as const) {
        const direct = submitError(engine, [fileReq('write', addr, h, id, off, len)]);
        const overTcp = submitError(tcp, [fileReq('write', at, ht, id, off, len)]);
        assert.match(direct.message, /multiples of 4096/);
        assert.deepEqual([direct.code, direct.message], [overTcp.code, overTcp.message]);
      }
      const f = fs.readFileSync(p);
      assertSentinel(f.subarray(0, 65536), 'before');
      assertSentinel(f.subarray(65536 + 256 * 1024), 'after');
      assert.equal(sha256(f.subarray(65536, 65536 + 256 * 1024)), sha256(src.subarray(1)));
    } finally {
      await tcp.close();
      await engine.close();
      await peer.stop();
    }
  });
});

describe('SameHostFiles: handles that do not check out are refused (the request goes over TCP)', () => {
  const machine = 'this-host';
  let p = '';
  let fd = -1;
  let st: fs.BigIntStats;

  before(() => {
    p = sentinelFile(8192);
    fd = fs.openSync(p, 'r+'); // plays the owner's registered descriptor
    st = fs.fstatSync(fd, { bigint: true });
  });

  after(() => {
    fs.closeSync(fd);
  });

  const desc = (owner: { pid: number; fd: number; dev: bigint; ino: bigint } | undefined, id = 1): Parameters<SameHostFiles['resolve']>[1] =>
    owner ? { id, path: p, size: 8192, align: 0, owner } : { id, path: p, size: 8192, align: 0 };

  test('same host only by the same machine id', () => {
    const files = new SameHostFiles(machine);
    assert.equal(files.sameHost(machine), true);
    assert.equal(files.sameHost('other'), false);
    assert.equal(files.sameHost(undefined), false);
    assert.equal(new SameHostFiles(undefined).sameHost(undefined), false);
    files.close();
    assert.equal(files.sameHost(machine), false);
  });

  test('a matching handle opens; wrong inode, wrong device, no handle, a dead pid, a descriptor held read-only do not', () => {
    const files = new SameHostFiles(machine);
    try {
      const good = { pid: process.pid, fd, dev: st.dev, ino: st.ino };
      assert.ok(files.resolve('seg', desc(good)));
      assert.equal(files.openCount, 1);
      const cases: Array<[string, ReturnType<typeof desc>, RegExp]> = [
        ['another inode', desc({ ...good, ino: st.ino + 1n }, 2), /another file/],
        ['another device', desc({ ...good, dev: st.dev + 1n }, 3), /another file/],
        ['no such process', desc({ ...good, pid: 0x7fff_fff0 }, 4), /does not exist/],
        ['no such descriptor', desc({ ...good, fd: 0x7fff_fff0 }, 5), /does not exist/],
      ];
      const ro = fs.openSync(p, 'r');
      cases.push(['held read-only by the owner', desc({ ...good, fd: ro }, 6), /reading and writing/]);
      for (const [what, d, re] of cases) {
        assert.equal(files.resolve('seg', d), null, what);
        assert.match(files.refusal('seg', d.id), re, what);
      }
      fs.closeSync(ro);
      assert.equal(files.resolve('seg', desc(undefined, 7)), null, 'no handle published');
      assert.equal(files.openCount, 1);
    } finally {
      files.close();
    }
    assert.equal(files.openCount, 0);
  });

  test('the owner closes its descriptor: the file stops being usable and queued operations fail ADDRESS_REJECTED', async () => {
    const files = new SameHostFiles(machine);
    const ownerFd = fs.openSync(p, 'r+');
    try {
      const good = { pid: process.pid, fd: ownerFd, dev: st.dev, ino: st.ino };
      const file = files.resolve('seg', desc(good, 9))!;
      assert.ok(file && file.usable());
      fs.closeSync(ownerFd);
      await new Promise((r) => setTimeout(r, RECHECK_MS + 5));
      assert.equal(file.usable(), false);
      assert.equal(file.releasedError().code, ErrorCode.ADDRESS_REJECTED);
      assert.match(files.refusal('seg', 9), /released/);
      await new Promise((r) => setImmediate(r));
      assert.equal(files.resolve('seg', desc(good, 9)), null, 'and later requests go to TCP');
    } finally {
      files.close();
    }
  });
});
