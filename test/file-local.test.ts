/**
 * File segments on one engine: registerLocalFile / unregisterLocalFile, the
 * descriptor's file_buffers, transfers between registered memory and a
 * registered file (both ways, buffered and direct I/O), and every bad input:
 * each is a typed error, and the file's bytes outside the addressed range
 * (and outside [0, size)) never change.
 */
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { execFileSync } from 'node:child_process';
import { TransferEngine, TransferOpcode, TaskStatus, LOCAL_SEGMENT, type TransferRequest } from '../src/core.js';
import { TransferEngineError, ErrorCode } from '../src/errors.js';
import { nativeAvailable, loadNative } from '../src/native/addon.js';
import { allocateAligned } from '../src/shm/region.js';
import { patternBuffer } from './pattern.js';

function teCode(code: ErrorCode, msg?: RegExp): (e: unknown) => boolean {
  return (e) => {
    assert.ok(e instanceof TransferEngineError, `expected a TransferEngineError, got ${String(e)}`);
    assert.equal(e.code, code, e.message);
    if (msg) assert.match(e.message, msg);
    return true;
  };
}

const SENTINEL = 0xa7;
let dir = '';
let engine: TransferEngine;
let counter = 0;

/** A file of `bytes` bytes filled with SENTINEL (so any stray write shows). */
function sentinelFile(bytes: number, name = `f${counter++}.bin`): string {
  const p = path.join(dir, name);
  fs.writeFileSync(p, Buffer.alloc(bytes, SENTINEL));
  return p;
}

function assertSentinel(buf: Uint8Array, what: string): void {
  const bad = buf.findIndex((b) => b !== SENTINEL);
  assert.equal(bad, -1, `${what}: byte ${bad} changed`);
}

async function run(e: TransferEngine, reqs: TransferRequest[]): Promise<Array<{ status: TaskStatus; code: string | null; transferred: number }>> {
  const bid = e.allocateBatchID(reqs.length);
  e.submitTransfer(bid, reqs);
  const st = await e.waitBatch(bid);
  e.freeBatchID(bid);
  return st.map((s) => ({ status: s.status, code: s.error?.code ?? null, transferred: s.transferred }));
}

function req(op: 'read' | 'write', source: number, fileId: number, offset: number | bigint, length: number, targetId = LOCAL_SEGMENT): TransferRequest {
  return { opcode: op === 'write' ? TransferOpcode.WRITE : TransferOpcode.READ, source, targetId, targetOffset: offset, length, fileId };
}

before(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'te-file-local-'));
  engine = new TransferEngine({ env: {} });
  await engine.init('127.0.0.1');
});

after(async () => {
  await engine.close();
  fs.rmSync(dir, { recursive: true, force: true });
});

describe('registration', () => {
  test('ids, the descriptor entry (absolute path, size, align 0) and unregistration', () => {
    const p = sentinelFile(10_000);
    const rel = path.relative(process.cwd(), p);
    const id = engine.registerLocalFile(rel, 8192);
    assert.ok(Number.isInteger(id) && id > 0);
    const desc = engine.getLocalSegmentDescriptor();
    const { owner, ...entry } = desc.fileBuffers!.find((f) => f.id === id)!;
    assert.deepEqual(entry, { id, path: p, size: 8192, align: 0 });
    // The handle same-host peers reopen it by (src/transport/file-same-host.ts): our descriptor of this inode.
    const st = fs.statSync(p, { bigint: true });
    assert.ok(owner && owner.pid === process.pid && owner.dev === st.dev && owner.ino === st.ino);
    assert.equal(fs.fstatSync(owner.fd, { bigint: true }).ino, st.ino);
    assert.ok(engine.transports.includes('file'));
    engine.unregisterLocalFile(p);
    assert.equal(engine.getLocalSegmentDescriptor().fileBuffers?.find((f) => f.id === id), undefined);
    const again = engine.registerLocalFile(p, 8192);
    assert.ok(again > id, 'ids are never reused, so a stale id cannot reach a newer file');
    engine.unregisterLocalFile(rel);
  });

  test('a path with .. or a symlink names the same file: registered once, found by either', () => {
    const p = sentinelFile(4096);
    const dotted = path.join(dir, 'sub', '..', path.basename(p));
    fs.mkdirSync(path.join(dir, 'sub'), { recursive: true });
    const id = engine.registerLocalFile(dotted, 4096);
    assert.equal(engine.getLocalSegmentDescriptor().fileBuffers?.find((f) => f.id === id)?.path, p, 'published resolved');
    const link = path.join(dir, `link-${counter++}`);
    fs.symlinkSync(p, link);
    assert.throws(() => engine.registerLocalFile(link, 4096), teCode(ErrorCode.INVALID_ARGUMENT, /already registered \(file id \d+/));
    engine.unregisterLocalFile(link); // another path to the same file
    assert.throws(() => engine.unregisterLocalFile(p), teCode(ErrorCode.INVALID_ARGUMENT, /not a registered file/));
  });

  test('missing file, directory, character device, FIFO, NUL byte, bad sizes and options', () => {
    assert.throws(() => engine.registerLocalFile(path.join(dir, 'nope.bin'), 4096), teCode(ErrorCode.INVALID_ARGUMENT, /no such file/));
    assert.throws(() => engine.registerLocalFile(path.join(dir, 'nope', 'x'), 4096), teCode(ErrorCode.INVALID_ARGUMENT, /no such file/));
    assert.throws(() => engine.registerLocalFile(dir, 4096), teCode(ErrorCode.INVALID_ARGUMENT, /not a regular file or a block device/));
    assert.throws(() => engine.registerLocalFile('/dev/null', 4096), teCode(ErrorCode.INVALID_ARGUMENT, /not a regular file/));
    const fifo = path.join(dir, `fifo-${counter++}`);
    execFileSync('mkfifo', [fifo]);
    assert.throws(() => engine.registerLocalFile(fifo, 4096), teCode(ErrorCode.INVALID_ARGUMENT, /not a regular file/), 'refused without blocking on open');
    assert.throws(() => engine.registerLocalFile('a\0b', 4096), teCode(ErrorCode.INVALID_ARGUMENT, /NUL/));
    assert.throws(() => engine.registerLocalFile('', 4096), teCode(ErrorCode.INVALID_ARGUMENT, /non-empty/));
    const p = sentinelFile(4096);
    for (const size of [0, -1, 1.5, Number.NaN, 2 ** 53]) {
      assert.throws(() => engine.registerLocalFile(p, size), teCode(ErrorCode.INVALID_ARGUMENT, /positive integer/), String(size));
    }
    assert.throws(() => engine.registerLocalFile(p, 4096, { grow: 'yes' as unknown as boolean }), teCode(ErrorCode.INVALID_ARGUMENT, /options.grow/));
    assert.deepEqual(engine.getLocalSegmentDescriptor().fileBuffers ?? [], [], 'nothing half-registered');
  });

  test('size larger than the file: refused, unless it may grow (then the file is extended, never shrunk)', () => {
    const p = sentinelFile(5000);
    assert.throws(() => engine.registerLocalFile(p, 5001), teCode(ErrorCode.INVALID_ARGUMENT, /holds 5000 bytes, fewer than the size 5001 \(pass \{ grow: true \}/));
    assert.equal(fs.statSync(p).size, 5000);
    const id = engine.registerLocalFile(p, 3 << 20, { grow: true });
    assert.equal(fs.statSync(p).size, 3 << 20);
    assertSentinel(fs.readFileSync(p).subarray(0, 5000), 'existing bytes');
    engine.unregisterLocalFile(p);
    const id2 = engine.registerLocalFile(p, 100, { grow: true });
    assert.equal(fs.statSync(p).size, 3 << 20, 'a smaller size never truncates');
    assert.notEqual(id, id2);
    engine.unregisterLocalFile(p);
  });

  test('a block device is refused without the explicit opt-in, before it is opened', (t) => {
    const dev = fs.readdirSync('/dev').map((n) => `/dev/${n}`).find((p) => {
      try {
        return fs.statSync(p).isBlockDevice();
      } catch {
        return false;
      }
    });
    if (!dev) {
      t.skip('this host has no block device in /dev');
      return;
    }
    assert.throws(() => engine.registerLocalFile(dev, 4096), teCode(ErrorCode.INVALID_ARGUMENT, /is a block device: writing to it destroys the data on it; pass \{ allowBlockDevice: true \}/));
    assert.throws(() => engine.registerLocalFile(dev, 4096, { grow: true, allowBlockDevice: true }), teCode(ErrorCode.INVALID_ARGUMENT, /cannot grow/));
  });

  test('unregistering an unknown path, and using a closed engine', async () => {
    assert.throws(() => engine.unregisterLocalFile(path.join(dir, 'never')), teCode(ErrorCode.INVALID_ARGUMENT, /not a registered file/));
    const e = new TransferEngine({ env: {} });
    assert.throws(() => e.registerLocalFile('/x', 1), teCode(ErrorCode.NOT_INITIALIZED));
    await e.init('127.0.0.1');
    const p = sentinelFile(4096);
    e.registerLocalFile(p, 4096);
    await e.close();
    assert.throws(() => e.registerLocalFile(p, 4096), teCode(ErrorCode.CLOSED));
    assert.throws(() => e.unregisterLocalFile(p), teCode(ErrorCode.CLOSED));
  });

  test('malformed MC_NVMEOF_GENERIC_* fail init before any port is bound', async () => {
    for (const env of [{ MC_NVMEOF_GENERIC_NUM_WORKERS: '0' }, { MC_NVMEOF_GENERIC_DIRECT_IO: 'sometimes' }]) {
      const e = new TransferEngine({ env });
      await assert.rejects(e.init('127.0.0.1'), teCode(ErrorCode.BAD_ENV, /MC_NVMEOF_GENERIC_/));
      await e.close();
    }
  });
});

describe('transfers between registered memory and a registered file', () => {
  test('WRITE memory -> file and READ file -> memory; only the addressed bytes change', async () => {
    const size = 6 << 20;
    const p = sentinelFile(size + 8192); // bytes past `size` exist, and must stay untouched too
    const id = engine.registerLocalFile(p, size);
    const src = patternBuffer(5 << 20, 11);
    const srcAddr = engine.registerLocalMemory(src);
    const off = 12_345; // unaligned is fine without direct I/O
    const len = (5 << 20) - 7; // several I/O chunks
    assert.deepEqual(await run(engine, [req('write', srcAddr, id, off, len)]), [{ status: TaskStatus.COMPLETED, code: null, transferred: len }]);
    const onDisk = fs.readFileSync(p);
    assert.ok(onDisk.subarray(off, off + len).equals(src.subarray(0, len)));
    assertSentinel(onDisk.subarray(0, off), 'before the range');
    assertSentinel(onDisk.subarray(off + len), 'after the range');

    const dst = Buffer.alloc(len + 2, 0x11);
    const dstAddr = engine.registerLocalMemory(dst);
    assert.deepEqual(await run(engine, [req('read', dstAddr + 1, id, BigInt(off), len)]), [{ status: TaskStatus.COMPLETED, code: null, transferred: len }]);
    assert.ok(dst.subarray(1, 1 + len).equals(src.subarray(0, len)));
    assert.equal(dst[0], 0x11);
    assert.equal(dst[len + 1], 0x11);
    engine.unregisterLocalMemory(srcAddr);
    engine.unregisterLocalMemory(dstAddr);
    engine.unregisterLocalFile(p);
  });

  test('many requests in one batch, to two files, through openSegment(own name)', async () => {
    const a = sentinelFile(1 << 20);
    const b = sentinelFile(1 << 20);
    const ida = engine.registerLocalFile(a, 1 << 20);
    const idb = engine.registerLocalFile(b, 1 << 20);
    const self = await engine.openSegment(engine.segmentName);
    assert.equal(self, LOCAL_SEGMENT);
    const mem = patternBuffer(64 * 4096, 5);
    const addr = engine.registerLocalMemory(mem);
    const reqs = Array.from({ length: 64 }, (_, i) => req('write', addr + i * 4096, i % 2 ? idb : ida, (i >> 1) * 8192, 4096, self));
    const st = await run(engine, reqs);
    assert.ok(st.every((s) => s.status === TaskStatus.COMPLETED));
    const fa = fs.readFileSync(a);
    const fb = fs.readFileSync(b);
    for (let i = 0; i < 64; i++) {
      const f = i % 2 ? fb : fa;
      const at = (i >> 1) * 8192;
      assert.ok(f.subarray(at, at + 4096).equals(mem.subarray(i * 4096, (i + 1) * 4096)), `request ${i}`);
      assertSentinel(f.subarray(at + 4096, at + 8192), `gap after request ${i}`);
    }
    engine.unregisterLocalMemory(addr);
    engine.unregisterLocalFile(a);
    engine.unregisterLocalFile(b);
  });

  test('offsets or lengths past size, unknown and malformed file ids: typed errors, nothing submitted, no byte written', async () => {
    const p = sentinelFile(16384);
    const id = engine.registerLocalFile(p, 8192); // the file is larger than the registered size
    const mem = Buffer.alloc(16384, 1);
    const addr = engine.registerLocalMemory(mem);
    const bad: Array<[TransferRequest, RegExp]> = [
      [req('write', addr, id, 8192, 1), /\[8192, \+1\) is outside file id \d+'s \[0, 8192\)/],
      [req('write', addr, id, 8191, 2), /\[8191, \+2\) is outside/],
      [req('write', addr, id, 0, 8193), /\[0, \+8193\) is outside/],
      [req('read', addr, id, 1n << 62n, 1), /is outside/],
      [req('write', addr, id + 1000, 0, 1), /no local file is registered with id/],
      [{ ...req('write', addr, id, 0, 1), fileId: -1 }, /not a file id/],
      [{ ...req('write', addr, id, 0, 1), fileId: 1.5 }, /not a file id/],
      [{ ...req('write', addr, id, 0, 1), fileId: '1' as unknown as number }, /not a file id/],
      [{ ...req('write', addr, id, 0, 1), targetOffset: -5 }, /not a valid address/],
    ];
    for (const [r, re] of bad) {
      const bid = engine.allocateBatchID(2);
      // A good request first: all-or-nothing, so it must not run either.
      assert.throws(() => engine.submitTransfer(bid, [req('write', addr, id, 0, 4096), r]), teCode(ErrorCode.INVALID_ARGUMENT, re));
      assert.deepEqual(await engine.waitBatch(bid), [], 'nothing was submitted');
      engine.freeBatchID(bid);
    }
    assertSentinel(fs.readFileSync(p), 'the whole file');
    engine.unregisterLocalMemory(addr);
    engine.unregisterLocalFile(p);
  });

  test('unregistering a file (or its memory) while a transfer uses it is refused; afterwards it works', async () => {
    const p = sentinelFile(4 << 20);
    const id = engine.registerLocalFile(p, 4 << 20);
    const mem = patternBuffer(4 << 20, 9);
    const addr = engine.registerLocalMemory(mem);
    const bid = engine.allocateBatchID(1);
    engine.submitTransfer(bid, [req('write', addr, id, 0, 4 << 20)]);
    assert.throws(() => engine.unregisterLocalFile(p), teCode(ErrorCode.REGION_BUSY, /has 1 transfer\(s\) in flight/));
    assert.throws(() => engine.unregisterLocalMemory(addr), teCode(ErrorCode.REGION_BUSY));
    const [st] = await engine.waitBatch(bid);
    engine.freeBatchID(bid);
    assert.equal(st!.status, TaskStatus.COMPLETED);
    assert.ok(fs.readFileSync(p).equals(mem));
    engine.unregisterLocalFile(p);
    engine.unregisterLocalMemory(addr);
    // The id is gone: requests naming it are refused up front.
    const other = Buffer.alloc(16);
    const oaddr = engine.registerLocalMemory(other);
    assert.throws(() => engine.submitTransfer(engine.allocateBatchID(1), [req('read', oaddr, id, 0, 16)]), teCode(ErrorCode.INVALID_ARGUMENT, /no local file/));
    engine.unregisterLocalMemory(oaddr);
  });

  test('a file that shrinks under the engine fails the READ with TE_IO_ERROR, never returns stale bytes', async () => {
    const p = sentinelFile(1 << 20);
    const id = engine.registerLocalFile(p, 1 << 20);
    fs.truncateSync(p, 4096);
    const mem = Buffer.alloc(8192, 0x33);
    const addr = engine.registerLocalMemory(mem);
    const st = await run(engine, [req('read', addr, id, 0, 8192)]);
    assert.equal(st[0]!.status, TaskStatus.FAILED);
    assert.equal(st[0]!.code, ErrorCode.IO_ERROR);
    engine.unregisterLocalMemory(addr);
    engine.unregisterLocalFile(p);
  });
});

describe('direct I/O', { skip: nativeAvailable() ? false : 'the native addon (aligned buffers) is not built' }, () => {
  test('aligned requests both ways, from unaligned (bounced) and aligned (direct) memory; align 4096 published', async () => {
    const p = sentinelFile(1 << 20);
    const id = engine.registerLocalFile(p, 1 << 20, { directIO: true });
    const { owner: _owner, ...entry } = engine.getLocalSegmentDescriptor().fileBuffers!.find((f) => f.id === id)!;
    assert.deepEqual(entry, { id, path: p, size: 1 << 20, align: 4096 });
    const plain = patternBuffer(3 * 4096 + 1, 21);
    const plainAddr = engine.registerLocalMemory(plain);
    const aligned = allocateAligned(256 * 1024, 4096);
    const native = loadNative();
    assert.equal(native.addressModulo(aligned, 4096), 0);
    aligned.set(patternBuffer(aligned.length, 22));
    const alignedAddr = engine.registerLocalMemory(aligned);
    // From plain memory at an odd address: through an aligned bounce buffer.
    assert.equal((await run(engine, [req('write', plainAddr + 1, id, 8192, 3 * 4096)]))[0]!.status, TaskStatus.COMPLETED);
    assert.equal((await run(engine, [req('write', alignedAddr, id, 65536, 256 * 1024)]))[0]!.status, TaskStatus.COMPLETED);
    const f = fs.readFileSync(p);
    assert.ok(f.subarray(8192, 8192 + 3 * 4096).equals(plain.subarray(1, 1 + 3 * 4096)));
    assert.ok(f.subarray(65536, 65536 + 256 * 1024).equals(aligned));
    assertSentinel(f.subarray(0, 8192), 'before');
    assertSentinel(f.subarray(8192 + 3 * 4096, 65536), 'between');
    assertSentinel(f.subarray(65536 + 256 * 1024), 'after');
    const back = Buffer.alloc(3 * 4096 + 3);
    const backAddr = engine.registerLocalMemory(back);
    assert.equal((await run(engine, [req('read', backAddr + 3, id, 65536, 3 * 4096)]))[0]!.status, TaskStatus.COMPLETED);
    assert.ok(back.subarray(3).equals(aligned.subarray(0, 3 * 4096)));
    for (const a of [plainAddr, alignedAddr, backAddr]) engine.unregisterLocalMemory(a);
    engine.unregisterLocalFile(p);
  });

  test('unaligned offset or length is refused up front with the alignment in the message; size must be aligned too', async () => {
    const p = sentinelFile(65536);
    assert.throws(() => engine.registerLocalFile(p, 65536 - 512, { directIO: true }), teCode(ErrorCode.INVALID_ARGUMENT, /multiple of 4096/));
    const id = engine.registerLocalFile(p, 65536, { directIO: true });
    const mem = Buffer.alloc(65536, 3);
    const addr = engine.registerLocalMemory(mem);
    for (const [off, len] of [[512, 4096], [4096, 512], [1, 8192], [0, 4097]] as const) {
      assert.throws(
        () => engine.submitTransfer(engine.allocateBatchID(1), [req('write', addr, id, off, len)]),
        teCode(ErrorCode.INVALID_ARGUMENT, /uses direct I\/O, so offset \(\d+\) and length \(\d+\) must be multiples of 4096/),
      );
    }
    assertSentinel(fs.readFileSync(p), 'the whole file');
    engine.unregisterLocalMemory(addr);
    engine.unregisterLocalFile(p);
  });

  test('MC_NVMEOF_GENERIC_DIRECT_IO=on makes direct I/O the default; directIO: false overrides it', async () => {
    const e = new TransferEngine({ env: { MC_NVMEOF_GENERIC_DIRECT_IO: 'on', MC_NVMEOF_GENERIC_NUM_WORKERS: '2' } });
    await e.init('127.0.0.1');
    try {
      const p = sentinelFile(8192);
      const q = sentinelFile(8192);
      const id = e.registerLocalFile(p, 8192);
      const id2 = e.registerLocalFile(q, 8192, { directIO: false });
      const files = e.getLocalSegmentDescriptor().fileBuffers!;
      assert.equal(files.find((f) => f.id === id)!.align, 4096);
      assert.equal(files.find((f) => f.id === id2)!.align, 0);
    } finally {
      await e.close();
    }
  });
});

describe('block device with the explicit opt-in (loop device)', () => {
  // Needs root and losetup: a loop device over a temporary file, detached afterwards.
  let loop = '';
  let backing = '';
  const canLoop = ((): boolean => {
    if (process.getuid?.() !== 0) return false;
    try {
      execFileSync('losetup', ['--version'], { stdio: 'ignore' });
      return true;
    } catch {
      return false;
    }
  })();

  test('read and write a loop device registered with allowBlockDevice', { skip: canLoop ? false : 'needs root and losetup' }, async (t) => {
    backing = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'te-loop-')), 'dev.img');
    fs.writeFileSync(backing, Buffer.alloc(1 << 20, SENTINEL));
    try {
      loop = execFileSync('losetup', ['-f', '--show', backing], { encoding: 'utf8' }).trim();
    } catch (e) {
      t.skip(`losetup could not attach a device here: ${(e as Error).message.split('\n')[0]}`);
      return;
    }
    try {
      assert.throws(() => engine.registerLocalFile(loop, 65536), teCode(ErrorCode.INVALID_ARGUMENT, /block device/));
      assert.throws(() => engine.registerLocalFile(loop, (1 << 20) + 512, { allowBlockDevice: true }), teCode(ErrorCode.INVALID_ARGUMENT, /holds 1048576 bytes/));
      const id = engine.registerLocalFile(loop, 65536, { allowBlockDevice: true });
      const mem = patternBuffer(4096, 77);
      const addr = engine.registerLocalMemory(mem);
      assert.equal((await run(engine, [req('write', addr, id, 4096, 4096)]))[0]!.status, TaskStatus.COMPLETED);
      const back = Buffer.alloc(4096);
      const backAddr = engine.registerLocalMemory(back);
      assert.equal((await run(engine, [req('read', backAddr, id, 4096, 4096)]))[0]!.status, TaskStatus.COMPLETED);
      assert.ok(back.equals(mem));
      engine.unregisterLocalFile(loop);
      engine.unregisterLocalMemory(addr);
      engine.unregisterLocalMemory(backAddr);
      execFileSync('sync');
      const img = fs.readFileSync(backing);
      assert.ok(img.subarray(4096, 8192).equals(mem));
      assertSentinel(img.subarray(0, 4096), 'device before');
      assertSentinel(img.subarray(8192), 'device after');
    } finally {
      execFileSync('losetup', ['-d', loop]);
      fs.rmSync(path.dirname(backing), { recursive: true, force: true });
    }
  });
});
