/**
 * Unit tests of the TCP transport's logic that, over sockets, only fault
 * scenarios reach: a lane's framing and reassembly of replies (bytes split at
 * every offset, as the kernel may deliver them), the read buffer under it,
 * a server connection's framing of requests (split the same way),
 * the cutting of requests into wire pieces, and the data server's lookup of
 * what a request reads or writes (hits, misses, out of range: the refusal
 * frames the server answers).
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { once } from 'node:events';
import { setTimeout as delay } from 'node:timers/promises';
import { Replies, type ReplyFault } from '../src/transport/tcp/replies.js';
import { ReadBuffer } from '../src/transport/tcp/read-buffer.js';
import { pieceAt, pieceCount } from '../src/pieces.js';
import { WIRE_MAX } from '../src/transport/tcp/options.js';
import { RegistryTargets, MAX_FILE_REQUEST, type Target } from '../src/transport/tcp/targets.js';
import { ServerConnection, type ConnectionHost } from '../src/transport/tcp/connection.js';
import { usePublicPathsOnly } from '../src/transport/tcp/node-internals.js';
import { Slice, Failure, type SliceOwner } from '../src/transport/slice.js';
import { MemoryRegistry, type Region } from '../src/memory.js';
import { FileRegistry } from '../src/file/registry.js';
import { ErrorCode, type TransferEngineError } from '../src/errors.js';
import {
  decodeHeader,
  encodeFileHeader,
  encodeHeader,
  encodeHello,
  encodeStatus,
  HEADER_SIZE,
  STATUS_OK_FRAME,
  STATUS_ENGINE_CONFIRMED_FRAME,
  STATUS_REJECTED_FRAME,
  STATUS_FILE_REJECTED_FRAME,
  STATUS_ADDR_REJECTED,
  STATUS_FILE_REJECTED,
  STATUS_FILE_IO_ERROR,
} from '../src/codec/wire.js';
import { encodeChallenge } from '../src/codec/auth.js';
import { patternBuffer } from './pattern.js';

// ------------------------------------------------------------------ helpers

/** Records how each slice settled, in order. */
class Owner implements SliceOwner {
  readonly done: Array<{ slice: Slice; error: TransferEngineError | null }> = [];
  halted = false;
  halt(): void {
    this.halted = true;
  }
  sliceDone(slice: Slice, error: TransferEngineError | null): void {
    this.done.push({ slice, error });
  }
}

function slice(owner: Owner, region: Region, local: Uint8Array, write: boolean, fileId?: number): Slice {
  region.pins++; // as the engine does for every slice it submits
  return new Slice(owner, write, 0x1000n, local, region, fileId);
}

function status(code: number): Buffer {
  const b = Buffer.alloc(8);
  encodeStatus(b, 0, code);
  return b;
}

/**
 * Feed `chunks` to `r` as Node's `onread` does: every read fills at most the
 * buffer that was picked right after the previous read (`state.buf`), and
 * stops at the end of what the kernel has (a chunk).
 */
function feed(r: Replies, chunks: Uint8Array[], state: { buf: Uint8Array }): ReplyFault | null {
  for (const chunk of chunks) {
    let off = 0;
    while (off < chunk.length) {
      const buf = state.buf;
      const n = Math.min(buf.length, chunk.length - off);
      buf.set(chunk.subarray(off, off + n));
      off += n;
      if (!r.landed(n, buf)) {
        const fault = r.parse();
        if (fault) return fault;
      }
      state.buf = r.nextBuffer();
    }
  }
  return null;
}

/** A lane's replies: label for messages, v2 or v1; the buffer Node picks while it is idle comes first. */
function replies(v2: boolean): { r: Replies; state: { buf: Uint8Array } } {
  const r = new Replies('peer:1', v2);
  return { r, state: { buf: r.nextBuffer() } };
}

/** Every way to cut `bytes` in two. */
function* splits(bytes: Buffer): Generator<Uint8Array[]> {
  for (let k = 0; k <= bytes.length; k++) yield [bytes.subarray(0, k), bytes.subarray(k)];
}

// -------------------------------------------------------------- the replies

describe('lane replies: framing and reassembly', () => {
  const registry = new MemoryRegistry();
  // READ destinations: one region, sliced per request (the replies never look past a slice's view).
  const dst = Buffer.alloc(256 * 1024);
  const dstRegion = registry.register(dst);
  const src = patternBuffer(64 * 1024, 7);
  const srcRegion = registry.register(src);

  /** A v2 stream of replies: sizes of READs (data follow their OK) and WRITEs (OK alone). */
  function v2Stream(plan: Array<{ write: boolean; size: number }>): { bytes: Buffer; data: Buffer[] } {
    const parts: Buffer[] = [];
    const data: Buffer[] = [];
    plan.forEach((p, i) => {
      parts.push(STATUS_OK_FRAME);
      if (!p.write) {
        const d = patternBuffer(p.size, 100 + i);
        data.push(d);
        parts.push(d);
      } else data.push(Buffer.alloc(0));
    });
    return { bytes: Buffer.concat(parts), data };
  }

  function expectAll(r: Replies, owner: Owner, plan: Array<{ write: boolean; size: number }>): Slice[] {
    let at = 0;
    let seq = 0;
    return plan.map((p) => {
      let s: Slice;
      if (p.write) {
        s = slice(owner, srcRegion, src.subarray(0, p.size), true);
        s.bodySeq = ++seq;
      } else {
        s = slice(owner, dstRegion, dst.subarray(at, at + p.size), false);
        at += p.size;
      }
      r.expect(s);
      return s;
    });
  }

  /** Every slice succeeded, READs with their data; in request order unless WRITEs waited for their payload (`inOrder` false). */
  function check(r: Replies, owner: Owner, slices: Slice[], data: Buffer[], what: string, inOrder = true): void {
    assert.equal(owner.done.length, slices.length, `${what}: every slice settled`);
    const order = inOrder ? slices : [...slices.filter((s) => !s.write), ...slices.filter((s) => s.write)];
    owner.done.forEach((d, i) => {
      assert.equal(d.slice, order[i], `${what}: settled in order`);
      assert.equal(d.error, null, `${what}: slice ${i} succeeded`);
    });
    slices.forEach((s, i) => {
      if (!s.write) assert.ok(Buffer.from(s.local).equals(data[i]!), `${what}: READ ${i} has its data`);
    });
    assert.equal(r.count, 0);
    assert.equal(r.outstanding, 0);
    assert.equal(r.busy, false);
    assert.equal(r.rb.available, 0, `${what}: no byte left over`);
  }

  it('v2: small and direct READs and WRITEs, split at every offset, payloads written before or after their OK', () => {
    // 32 KiB is the size from which READ data go straight into the destination (replies.ts, DIRECT_MIN).
    const plan = [
      { write: false, size: 100 },
      { write: true, size: 50 },
      { write: false, size: 32 * 1024 },
      { write: false, size: 1 },
      { write: true, size: 40 * 1024 },
      { write: false, size: 7 },
    ];
    const { bytes, data } = v2Stream(plan);
    let n = 0;
    for (const chunks of splits(bytes)) {
      dst.fill(0);
      const owner = new Owner();
      const { r, state } = replies(true);
      const slices = expectAll(r, owner, plan);
      const early = n++ % 2 === 0;
      if (early) for (let i = 0; i < 2; i++) r.bodyWritten(null);
      assert.equal(feed(r, chunks, state), null);
      if (!early) {
        // OKs read before the payload writes' callbacks ran: those WRITEs wait for them.
        assert.equal(r.busy, true);
        for (let i = 0; i < 2; i++) r.bodyWritten(null);
      }
      check(r, owner, slices, data, `split at ${chunks[0]!.length}${early ? '' : ', payloads after'}`, early);
    }
  });

  it('v2: one byte per read, and all at once, across the direct threshold', () => {
    const plan = [
      { write: false, size: 32 * 1024 - 1 },
      { write: false, size: 32 * 1024 },
      { write: false, size: 40 * 1024 + 3 },
      { write: true, size: 8 },
      { write: false, size: 3 },
    ];
    const { bytes, data } = v2Stream(plan);
    for (const chunks of [[...bytes].map((b) => Uint8Array.of(b)), [bytes]]) {
      dst.fill(0);
      const owner = new Owner();
      const { r, state } = replies(true);
      const slices = expectAll(r, owner, plan);
      r.bodyWritten(null);
      assert.equal(feed(r, chunks, state), null);
      check(r, owner, slices, data, `${chunks.length} reads`);
    }
  });

  it('reads land where they belong: a status frame alone while idle, then a large READ straight into its destination', () => {
    const owner = new Owner();
    const { r, state } = replies(true);
    assert.equal(state.buf.length, 8, 'idle: the next read takes one status frame');
    const [big] = expectAll(r, owner, [{ write: false, size: 32 * 1024 }]);
    assert.equal(feed(r, [STATUS_OK_FRAME], state), null);
    assert.equal(state.buf.buffer, big!.local.buffer);
    assert.equal(state.buf.byteOffset, big!.local.byteOffset, 'the data go direct');
    assert.equal(state.buf.length, 32 * 1024);
    assert.equal(feed(r, [Buffer.alloc(32 * 1024, 5)], state), null);
    assert.equal(owner.done.length, 1);
    assert.equal(r.rb.available, 0);
  });

  it('v1: READ data alone (no status frames), split at every offset', () => {
    const sizes = [5, 32 * 1024, 9];
    const data = sizes.map((s, i) => patternBuffer(s, 200 + i));
    const bytes = Buffer.concat(data);
    for (const chunks of splits(bytes)) {
      dst.fill(0);
      const owner = new Owner();
      const { r, state } = replies(false);
      const slices = expectAll(
        r,
        owner,
        sizes.map((size) => ({ write: false, size })),
      );
      assert.equal(feed(r, chunks, state), null);
      check(r, owner, slices, data, `v1 split at ${chunks[0]!.length}`);
    }
  });

  it('a rejection settles its slice as REJECTED and the replies behind it still parse', () => {
    const owner = new Owner();
    const { r, state } = replies(true);
    const [a, b] = expectAll(r, owner, [
      { write: false, size: 4 },
      { write: false, size: 4 },
    ]);
    const data = Buffer.from([1, 2, 3, 4]);
    assert.equal(feed(r, [Buffer.concat([status(STATUS_ADDR_REJECTED), STATUS_OK_FRAME, data])], state), null);
    assert.equal(r.rejected, true);
    assert.equal(owner.done[0]!.slice, a);
    assert.equal(owner.done[0]!.error?.code, ErrorCode.ADDRESS_REJECTED);
    assert.equal(a!.failure, Failure.REJECTED);
    assert.equal(owner.done[1]!.slice, b);
    assert.equal(owner.done[1]!.error, null);
  });

  it('file statuses: rejected is ADDRESS_REJECTED (REJECTED), an I/O error is IO_ERROR (FATAL)', () => {
    for (const [code, want, failure] of [
      [STATUS_FILE_REJECTED, ErrorCode.ADDRESS_REJECTED, Failure.REJECTED],
      [STATUS_FILE_IO_ERROR, ErrorCode.IO_ERROR, Failure.FATAL],
    ] as const) {
      const owner = new Owner();
      const { r, state } = replies(true);
      const s = slice(owner, dstRegion, dst.subarray(0, 8), false, 3);
      r.expect(s);
      assert.equal(feed(r, [status(code)], state), null);
      assert.equal(owner.done[0]!.error?.code, want);
      assert.equal(s.failure, failure);
      assert.equal(r.rejected, true);
    }
  });

  it('faults: bytes nobody asked for, a bad or unknown status, a challenge where a status belongs', () => {
    const cases: Array<{ what: string; expect: boolean; bytes: Buffer; code: string; connect: boolean }> = [
      { what: 'nothing in flight', expect: false, bytes: Buffer.from('hello world'), code: ErrorCode.PROTOCOL_ERROR, connect: false },
      { what: 'bad magic', expect: true, bytes: Buffer.alloc(8), code: ErrorCode.PROTOCOL_ERROR, connect: false },
      { what: 'unknown status', expect: true, bytes: status(77), code: ErrorCode.PROTOCOL_ERROR, connect: false },
      // A file status on a memory request is not one the request can get.
      { what: 'file status on memory', expect: true, bytes: status(STATUS_FILE_REJECTED), code: ErrorCode.PROTOCOL_ERROR, connect: false },
      { what: 'challenge as status', expect: true, bytes: encodeChallenge(Buffer.alloc(32, 1)), code: ErrorCode.AUTH_REQUIRED, connect: true },
      { what: 'challenge, nothing in flight', expect: false, bytes: encodeChallenge(Buffer.alloc(32, 1)), code: ErrorCode.AUTH_REQUIRED, connect: false },
    ];
    for (const c of cases) {
      const owner = new Owner();
      const { r, state } = replies(true);
      if (c.expect) r.expect(slice(owner, dstRegion, dst.subarray(0, 4), false));
      const fault = feed(r, [c.bytes], state);
      assert.ok(fault, c.what);
      assert.equal(fault.error.code, c.code, c.what);
      assert.equal(fault.connectFailure, c.connect, c.what);
    }
  });

  it('an OK read before its payload was written twice in a row at a sweep is caught; close() returns the waiting WRITE first', () => {
    const owner = new Owner();
    const { r, state } = replies(true);
    const [w, rd] = expectAll(r, owner, [
      { write: true, size: 8 },
      { write: false, size: 4 },
    ]);
    assert.equal(feed(r, [STATUS_OK_FRAME], state), null);
    assert.equal(r.ackedTooSoon(), null, 'first sweep: marked');
    assert.equal(r.ackedTooSoon(), w, 'second sweep: the same WRITE still waits');
    assert.deepEqual(r.close(), [w, rd]);
    assert.equal(r.busy, false);
    assert.equal(owner.done.length, 0, 'close() settles nothing itself');
    r.bodyWritten(null); // a write callback after the end is ignored
    assert.equal(owner.done.length, 0);
  });

  it('a READ into memory detached meanwhile fails that slice alone (MEMORY_DETACHED), the lane as PEER_UNREACHABLE', () => {
    const reg = new MemoryRegistry();
    const ab = new ArrayBuffer(64);
    const region = reg.register(ab);
    const owner = new Owner();
    const { r, state } = replies(true);
    const s = slice(owner, region, region.bytes.subarray(0, 16), false);
    r.expect(s);
    structuredClone(ab, { transfer: [ab] }); // detaches it
    assert.throws(() => feed(r, [Buffer.concat([STATUS_OK_FRAME, Buffer.alloc(16, 9)])], state));
    const fault = r.readFailed(new Error('copy failed'));
    assert.equal(fault.error.code, ErrorCode.PEER_UNREACHABLE);
    assert.equal(owner.done[0]!.error?.code, ErrorCode.MEMORY_DETACHED);
    assert.equal(s.failure, Failure.FATAL);
  });
});

// ----------------------------------------------------------- the read buffer

describe('read buffer', () => {
  it('tail reads and copies out keep every byte in order across compactions, split at every offset', () => {
    const input = patternBuffer(300, 3);
    for (let k = 0; k <= input.length; k++) {
      const rb = new ReadBuffer(64, 16);
      const out = Buffer.alloc(input.length);
      let got = 0;
      for (const chunk of [input.subarray(0, k), input.subarray(k)]) {
        let off = 0;
        while (off < chunk.length) {
          rb.prepare();
          const buf = rb.tail();
          assert.ok(buf.length >= 16, 'a tail always has the reserved room');
          const n = Math.min(buf.length, chunk.length - off);
          buf.set(chunk.subarray(off, off + n));
          off += n;
          assert.equal(rb.landed(n, buf), false);
          // Consume in 7-byte records, leaving a partial one buffered.
          while (rb.available >= 7) got += rb.copyTo(out, got, 7);
        }
      }
      got += rb.copyTo(out, got, rb.available);
      assert.ok(out.equals(input), `split at ${k}`);
    }
  });

  it('a direct read is reported as such and buffers nothing; first(n) bounds a read', () => {
    const rb = new ReadBuffer(64, 16);
    assert.equal(rb.prepare(), true, 'empty');
    const dst = new Uint8Array(100);
    const view = rb.direct(dst.subarray(10));
    assert.equal(rb.landed(50, view), true);
    assert.equal(rb.available, 0);
    assert.equal(rb.prepare(), true);
    assert.equal(rb.first(8).length, 8);
    const b = rb.tail();
    assert.equal(rb.landed(3, b), false, 'a buffer that is not the direct view is buffered');
    assert.equal(rb.available, 3);
  });

  it('the spare buffer, handed out while stopped, is appended after the buffered bytes', () => {
    const rb = new ReadBuffer(64, 16, 16);
    rb.prepare();
    let b = rb.tail();
    b.set(Buffer.from('abcdefghij'));
    rb.landed(10, b);
    const tmp = Buffer.alloc(6);
    rb.copyTo(tmp, 0, 6); // 'abcdef' handled, 'ghij' buffered
    // Fill the scratch near its end, so that the spare read needs a compaction.
    rb.prepare();
    b = rb.tail();
    b.set(Buffer.alloc(b.length, 0x2e));
    rb.landed(b.length, b);
    rb.copyTo(Buffer.alloc(64), 0, rb.available - 4); // 4 bytes left, at the very end
    const spare = rb.spare();
    spare.set(Buffer.from('XYZ'));
    assert.equal(rb.landed(3, spare), false);
    const out = Buffer.alloc(rb.available);
    rb.copyTo(out, 0, out.length);
    assert.equal(out.toString(), '....XYZ');
  });
});

// --------------------------------------------------------------- the pieces

describe('wire pieces', () => {
  it('counts: a piece per started max, one for an empty request', () => {
    assert.equal(pieceCount(0, 4), 1);
    assert.equal(pieceCount(1, 4), 1);
    assert.equal(pieceCount(3, 4), 1);
    assert.equal(pieceCount(4, 4), 1);
    assert.equal(pieceCount(5, 4), 2);
    assert.equal(pieceCount(8, 4), 2);
    assert.equal(pieceCount(9, 4), 3);
    assert.equal(pieceCount(WIRE_MAX, WIRE_MAX), 1);
    assert.equal(pieceCount(WIRE_MAX + 1, WIRE_MAX), 2);
    assert.equal(pieceCount(1 << 20, WIRE_MAX), 4);
    assert.equal(pieceCount(2 ** 40 + 1, 2 ** 20), 2 ** 20 + 1);
  });

  it('pieces are views that cover the request exactly, every one but the last full', () => {
    for (const max of [1, 3, 4, 7]) {
      for (let len = 0; len <= 4 * max + 1; len++) {
        const bytes = patternBuffer(len, len);
        const count = pieceCount(len, max);
        const seen: Buffer[] = [];
        for (let k = 0; k < count; k++) {
          const p = pieceAt(bytes, k, max);
          assert.equal(p.buffer, bytes.buffer, 'a view, not a copy');
          assert.equal(p.byteOffset, bytes.byteOffset + k * max, 'piece k starts at k * max');
          assert.equal(p.length, k < count - 1 ? max : len - (count - 1) * max);
          if (len > 0) assert.ok(p.length > 0, 'no empty piece');
          seen.push(Buffer.from(p));
        }
        assert.ok(Buffer.concat(seen).equals(bytes), `len ${len}, max ${max}`);
      }
    }
  });

  it('a request that fits is its own single piece', () => {
    const b = new Uint8Array(10);
    assert.equal(pieceAt(b, 0, 10), b);
    assert.equal(pieceAt(b, 0, 11), b);
  });
});

// -------------------------------------------------------------- the targets

describe('targets: what a request reads or writes', () => {
  let dir: string;
  const memory = new MemoryRegistry();
  const rw = memory.register(Buffer.alloc(8192));
  const ro = memory.register(Buffer.alloc(4096), { access: 'read' });
  const closed = memory.register(Buffer.alloc(4096), { access: 'none' });
  const ab = new ArrayBuffer(4096);
  const detached = memory.register(ab);
  const files = new FileRegistry(false);
  let fileRw = 0;
  let fileRo = 0;
  let fileNone = 0;
  let targets: RegistryTargets;

  before(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'te-targets-'));
    for (const [name, size] of [
      ['rw', 10_000],
      ['ro', 100],
      ['none', 100],
    ] as const) {
      fs.writeFileSync(path.join(dir, name), Buffer.alloc(size));
    }
    fileRw = files.register(path.join(dir, 'rw'), 10_000).id;
    fileRo = files.register(path.join(dir, 'ro'), 100, { access: 'read' }).id;
    fileNone = files.register(path.join(dir, 'none'), 100, { access: 'none' }).id;
    structuredClone(ab, { transfer: [ab] }); // detaches `detached`'s memory
    targets = new RegistryTargets(memory, files);
  });

  after(() => {
    files.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  function mem(addr: number, size: number, write: boolean, v2 = true): { t: Target; raw: Buffer } {
    const raw = Buffer.alloc(HEADER_SIZE);
    encodeHeader(raw, 0, size, addr, write, v2);
    return { t: targets.lookup(decodeHeader(raw), raw), raw };
  }

  function file(id: number, offset: number | bigint, size: number, write: boolean, reserved = 0): Target {
    const raw = Buffer.alloc(HEADER_SIZE);
    encodeFileHeader(raw, 0, size, offset, write, id);
    raw[23] = reserved;
    return targets.lookup(decodeHeader(raw), raw);
  }

  function refused(t: Target, frame: Buffer | null, what: string): void {
    assert.equal(t.region, null, what);
    assert.equal(t.file, null, what);
    if (t.region !== null || t.file !== null) return;
    if (frame === null) assert.equal(t.frame, null, `${what}: no frame`);
    else assert.ok(t.frame?.equals(frame), `${what}: frame`);
    assert.ok(t.why.length > 0);
  }

  it('memory hits: the registry range itself, for READ and WRITE, at the edges', () => {
    for (const [addr, size, write] of [
      [rw.addr, 8192, true],
      [rw.addr, 1, false],
      [rw.addr + 8191, 1, true],
      [ro.addr + 10, 100, false],
    ] as const) {
      const { t } = mem(addr, size, write);
      assert.ok(t.region !== null, `hit at ${addr}+${size}`);
      if (t.region === null) continue;
      assert.equal(t.region, addr >= ro.addr ? ro : rw);
      assert.equal(t.offset, addr - t.region.addr);
    }
  });

  it('memory misses and out-of-range requests: the v2 rejection frame, none for v1', () => {
    const cases: Array<[string, number, number, boolean]> = [
      ['unknown address', rw.addr - 4096, 8, false],
      ['past the end', rw.addr + 8190, 4, false],
      ['size 0', rw.addr, 0, false],
      ['WRITE to a read-only region', ro.addr, 8, true],
      ['READ of a region closed to peers', closed.addr, 8, false],
      ['detached memory', detached.addr, 8, false],
      ['address above 2^53', 2 ** 53 + 2, 8, false],
    ];
    for (const [what, addr, size, write] of cases) {
      refused(mem(addr, size, write).t, STATUS_REJECTED_FRAME, what);
      refused(mem(addr, size, write, false).t, null, `${what} (v1)`);
    }
  });

  it('file hits: the file and its decoded header', () => {
    const t = file(fileRw, 4096, 5904, true);
    if (t.region !== null || t.file === null) return assert.fail('a file hit');
    assert.equal(t.file.id, fileRw);
    assert.deepEqual(t.header, { size: 5904, offset: 4096, write: true, fileId: fileRw });
    const r = file(fileRo, 0, 100, false);
    assert.ok(r.region === null && r.file !== null, 'READ of a read-only file');
  });

  it('file misses and out-of-range requests: the file rejection frame', () => {
    const cases: Array<[string, Target]> = [
      ['unknown id', file(9999, 0, 1, false)],
      ["a 'none' file", file(fileNone, 0, 1, false)],
      ['WRITE to a read-only file', file(fileRo, 0, 1, true)],
      ['size 0', file(fileRw, 0, 0, false)],
      ['past the end', file(fileRw, 9999, 2, false)],
      ['offset above 2^53', file(fileRw, 2n ** 60n, 1, false)],
      ['more than MAX_FILE_REQUEST', file(fileRw, 0, MAX_FILE_REQUEST + 1, false)],
      ['non-zero reserved bytes', file(fileRw, 0, 1, false, 1)],
    ];
    for (const [what, t] of cases) refused(t, STATUS_FILE_REJECTED_FRAME, what);
    const none = new RegistryTargets(memory, null);
    const raw = Buffer.alloc(HEADER_SIZE);
    encodeFileHeader(raw, 0, 1, 0, false, fileRw);
    refused(none.lookup(decodeHeader(raw), raw), STATUS_FILE_REJECTED_FRAME, 'a server that serves no files');
  });
});

// ------------------------------------------------- a server connection's framing

describe('server connection: requests split at every offset', () => {
  // The socket's reads are injected as 'data' chunks (the public read path of
  // node-internals.ts), so that each split is exactly the one under test; the
  // responses go back over a real loopback connection.
  const registry = new MemoryRegistry();
  const mem = Buffer.alloc(256 * 1024);
  const region = registry.register(mem);
  const ENGINE_ID = 4242;
  const stats = { connections: 0, requests: 0, rejected: 0, refused: 0, authRejected: 0, tlsRejected: 0, stalled: 0, peakQueued: 0 };
  const host: ConnectionHost = {
    stats,
    targets: new RegistryTargets(registry, null),
    files: null,
    authSecret: undefined,
    engineId: ENGINE_ID,
    maxInFlight: 64,
    keepAliveMs: 0,
  };
  let srv: net.Server;
  let accepted: (s: net.Socket) => void = () => {};

  before(async () => {
    usePublicPathsOnly(true);
    srv = net.createServer({ pauseOnConnect: true }, (s) => accepted(s));
    srv.listen(0, '127.0.0.1');
    await once(srv, 'listening');
  });

  after(() => {
    usePublicPathsOnly(false);
    srv.close();
  });

  function req(size: number, off: number, write: boolean): Buffer {
    const h = Buffer.alloc(HEADER_SIZE);
    encodeHeader(h, 0, size, region.addr + off, write, true);
    return h;
  }

  /** Open a connection, inject `chunks` as its reads, and return the first `want` response bytes. */
  async function serve(chunks: Uint8Array[], want: number): Promise<Buffer> {
    const got = new Promise<net.Socket>((resolve) => {
      accepted = resolve;
    });
    const client = net.connect({ host: '127.0.0.1', port: (srv.address() as net.AddressInfo).port });
    const s = await got;
    const conn = ServerConnection.accept(host, s);
    assert.ok(conn);
    for (const c of chunks) if (c.length > 0) s.emit('data', Buffer.from(c));
    const parts: Buffer[] = [];
    let have = 0;
    client.on('data', (b: Buffer) => {
      parts.push(b);
      have += b.length;
    });
    const deadline = Date.now() + 5000;
    while (have < want && Date.now() < deadline) await delay(1);
    client.destroy();
    s.destroy();
    return Buffer.concat(parts);
  }

  it('small requests: every split', async () => {
    const a = patternBuffer(40, 1);
    const hello = Buffer.alloc(HEADER_SIZE);
    encodeHello(hello, 0, ENGINE_ID);
    const stream = Buffer.concat([req(40, 0, true), a, req(40, 0, false), hello, req(3, 10, false)]);
    const want = Buffer.concat([STATUS_OK_FRAME, STATUS_OK_FRAME, a, STATUS_ENGINE_CONFIRMED_FRAME, STATUS_OK_FRAME, a.subarray(10, 13)]);
    for (const chunks of splits(stream)) {
      mem.fill(0);
      const out = await serve(chunks, want.length);
      assert.ok(out.equals(want), `split at ${chunks[0]!.length}`);
    }
  });

  it('large bodies (read straight into the region): splits at every request boundary and across the bodies', async () => {
    const big = patternBuffer(40 * 1024, 2);
    const stream = Buffer.concat([req(big.length, 0, true), big, req(big.length, 0, false), req(8, 100, true), big.subarray(0, 8)]);
    const want = Buffer.concat([STATUS_OK_FRAME, STATUS_OK_FRAME, big, STATUS_OK_FRAME]);
    const edges = [HEADER_SIZE, HEADER_SIZE + big.length, 2 * HEADER_SIZE + big.length, 3 * HEADER_SIZE + big.length];
    const at = new Set<number>();
    for (const e of edges) for (let d = -2; d <= 2; d++) at.add(e + d);
    for (let k = 0; k <= stream.length; k += 4099) at.add(k);
    at.add(HEADER_SIZE + big.length - 32 * 1024); // the rest of the body is exactly the direct size
    for (const k of at) {
      mem.fill(0);
      const out = await serve([stream.subarray(0, k), stream.subarray(k)], want.length);
      assert.ok(out.equals(want), `split at ${k}`);
      assert.ok(mem.subarray(100, 108).equals(big.subarray(0, 8)));
    }
  });
});
