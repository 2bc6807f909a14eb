/**
 * Per-region access: 'none' (not published, every request refused), 'read'
 * (READs served, WRITEs refused with the v2 rejection frame like an unknown
 * range, never a partial write), 'readwrite' (the default, Mooncake's). The
 * same holds for same-host peers that copy through shared memory: read-only
 * regions are published as such and never written through the shm path.
 * Registered files take the same modes: 'read' files are opened read-only,
 * 'none' files are not published, over TCP and for same-host peers alike.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { TransferEngine, TransferOpcode, TaskStatus, ErrorCode, TransferEngineError, LOCAL_SEGMENT } from '../src/core.js';
import { MemoryRegistry } from '../src/memory.js';
import { STATUS_OK_FRAME, STATUS_REJECTED_FRAME, STATUS_FILE_REJECTED_FRAME, encodeFileHeader } from '../src/codec/wire.js';
import { decodeSegmentDesc, encodeSegmentDesc } from '../src/codec/descriptor.js';
import { nativeAvailable } from '../src/shm/index.js';
import { ShmTransport } from '../src/transport/shm.js';
import { patternBuffer } from './pattern.js';
import { RawConn, header, READ, WRITE, V2 } from './security-helpers.js';

const SIZE = 256 * 1024;
const sha = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex');

describe('region access modes (registry)', () => {
  it("access 'none' | 'read' | 'readwrite', and Mooncake's boolean as an alias", () => {
    const r = new MemoryRegistry();
    const mk = (opts: object): { readable: boolean; writable: boolean; access: string } => {
      const g = r.register(Buffer.alloc(16), opts);
      return { readable: g.remoteReadable, writable: g.remoteWritable, access: g.access };
    };
    assert.deepEqual(mk({}), { readable: true, writable: true, access: 'readwrite' });
    assert.deepEqual(mk({ access: 'read' }), { readable: true, writable: false, access: 'read' });
    assert.deepEqual(mk({ access: 'none' }), { readable: false, writable: false, access: 'none' });
    assert.deepEqual(mk({ remoteAccessible: false }), { readable: false, writable: false, access: 'none' });
    assert.deepEqual(mk({ access: false }), { readable: false, writable: false, access: 'none' });
    assert.deepEqual(mk({ access: true }), { readable: true, writable: true, access: 'readwrite' });
    for (const bad of ['rw', 'write', 1, 'READ']) {
      assert.throws(() => r.register(Buffer.alloc(16), { access: bad as never }), (e: unknown) => e instanceof TransferEngineError && e.code === ErrorCode.INVALID_ARGUMENT);
    }
  });

  it("the descriptor codec carries 'access: read' per buffer and ignores other values", () => {
    const text = encodeSegmentDesc({
      name: 'h:1', protocol: 'tcp', tcpDataPort: 2, tcpProtoVersion: 2,
      buffers: [{ name: 'h:1', addr: 4096n, length: 10n, access: 'read' }, { name: 'h:1', addr: 8192n, length: 10n }],
    });
    assert.ok(text.includes('"access":"read"'));
    const d = decodeSegmentDesc(text);
    assert.equal(d.buffers[0]!.access, 'read');
    assert.equal(d.buffers[1]!.access, undefined);
    const odd = decodeSegmentDesc(text.replace('"access":"read"', '"access":"write-only"'));
    assert.equal(odd.buffers[0]!.access, undefined);
  });
});

describe('region access modes (data server)', () => {
  const target = new TransferEngine({ env: {} });
  const initiator = new TransferEngine({ env: {} });
  let rw = 0;
  let ro = 0;
  let hidden = 0;
  const roBytes = patternBuffer(SIZE, 3);

  before(async () => {
    await target.init('127.0.0.1');
    await initiator.init('127.0.0.1');
    rw = target.registerLocalMemory(Buffer.alloc(SIZE));
    ro = target.registerLocalMemory(Buffer.from(roBytes), '*', 'read');
    hidden = target.registerLocalMemory(patternBuffer(SIZE, 4), '*', 'none');
  });

  after(async () => {
    await initiator.close();
    await target.close();
  });

  it("the descriptor publishes 'read' regions as such and leaves 'none' out", () => {
    const bufs = target.getLocalSegmentDescriptor().buffers;
    assert.deepEqual(bufs.map((b) => [Number(b.addr), b.access]), [[rw, undefined], [ro, 'read']]);
    assert.ok(!bufs.some((b) => Number(b.addr) === hidden));
  });

  it('an initiator reads a read-only region, and its WRITE there fails with TE_ADDRESS_REJECTED, nothing written', async () => {
    const seg = await initiator.openSegment(target.segmentName);
    const local = initiator.registerLocalMemory(Buffer.alloc(SIZE));
    const src = initiator.registerLocalMemory(Buffer.alloc(SIZE, 0xab));
    let b = initiator.allocateBatchID(1);
    initiator.submitTransfer(b, [{ opcode: TransferOpcode.READ, source: local, targetId: seg, targetOffset: ro, length: SIZE }]);
    assert.equal((await initiator.waitBatch(b))[0]!.status, TaskStatus.COMPLETED);
    assert.equal(sha(initiator.localView(local, SIZE)), sha(roBytes));
    b = initiator.allocateBatchID(2);
    initiator.submitTransfer(b, [
      { opcode: TransferOpcode.WRITE, source: src, targetId: seg, targetOffset: ro + 4096, length: 4096 },
      { opcode: TransferOpcode.WRITE, source: src, targetId: seg, targetOffset: rw, length: SIZE },
    ]);
    const st = await initiator.waitBatch(b);
    assert.equal(st[0]!.status, TaskStatus.FAILED);
    assert.equal(st[0]!.error?.code, ErrorCode.ADDRESS_REJECTED);
    assert.equal(st[0]!.transferred, 0);
    assert.equal(st[1]!.status, TaskStatus.COMPLETED, 'the read-write region is still writable');
    assert.equal(sha(target.localView(ro, SIZE)), sha(roBytes), 'the read-only region changed');
    assert.equal(sha(target.localView(rw, SIZE)), sha(Buffer.alloc(SIZE, 0xab)));
  });

  it('raw v2: WRITE into a read-only region gets exactly the rejection frame, the body is never applied', async () => {
    const c = await RawConn.open(target.dataPort);
    // A READ first (served), then the refused WRITE with its whole body, then another READ that must not be served.
    c.write(header(16, ro, READ | V2));
    c.write(Buffer.concat([header(SIZE, ro, WRITE | V2), Buffer.alloc(SIZE, 0x55)]));
    c.write(header(16, ro, READ | V2));
    assert.equal(await c.waitClosed(), true);
    assert.deepEqual(c.bytes, Buffer.concat([STATUS_OK_FRAME, roBytes.subarray(0, 16), STATUS_REJECTED_FRAME]));
    assert.equal(sha(target.localView(ro, SIZE)), sha(roBytes));
  });

  it("raw v2: READ and WRITE of an 'none' region get the rejection frame", async () => {
    for (const op of [READ | V2, WRITE | V2]) {
      const c = await RawConn.open(target.dataPort);
      c.write(header(16, hidden, op));
      if (op & WRITE) c.write(Buffer.alloc(16, 1));
      assert.equal(await c.waitClosed(), true);
      assert.deepEqual(c.bytes, STATUS_REJECTED_FRAME);
    }
    assert.equal(sha(target.localView(hidden, SIZE)), sha(patternBuffer(SIZE, 4)));
  });
});

describe('region access modes (same-host shared memory)', { skip: !nativeAvailable() && !process.env['CI'] }, () => {
  it('a read-only shm region is read through shm and never written through it', async () => {
    const target = new TransferEngine({ env: {}, shm: true });
    const initiator = new TransferEngine({ env: {} });
    await target.init('127.0.0.1');
    await initiator.init('127.0.0.1');
    try {
      const ro = target.allocateLocalMemory(SIZE, '*', 'read');
      target.localView(ro, SIZE).set(patternBuffer(SIZE, 5));
      const seg = await initiator.openSegment(target.segmentName);
      const d = initiator.getSegmentDescriptor(seg).buffers.find((b) => Number(b.addr) === ro)!;
      assert.ok(d.shmName, 'the region is published with its shm file');
      assert.equal(d.access, 'read');
      const local = initiator.registerLocalMemory(Buffer.alloc(SIZE));
      const src = initiator.registerLocalMemory(Buffer.alloc(SIZE, 0x77));
      const copies = initiator.stats().shmCopies;
      let b = initiator.allocateBatchID(1);
      initiator.submitTransfer(b, [{ opcode: TransferOpcode.READ, source: local, targetId: seg, targetOffset: ro, length: SIZE }]);
      assert.equal((await initiator.waitBatch(b))[0]!.status, TaskStatus.COMPLETED);
      assert.equal(initiator.stats().shmCopies, copies + 1, 'the READ did not take the shm path');
      assert.equal(sha(initiator.localView(local, SIZE)), sha(patternBuffer(SIZE, 5)));
      b = initiator.allocateBatchID(1);
      initiator.submitTransfer(b, [{ opcode: TransferOpcode.WRITE, source: src, targetId: seg, targetOffset: ro, length: SIZE }]);
      const st = (await initiator.waitBatch(b))[0]!;
      assert.equal(st.status, TaskStatus.FAILED);
      assert.equal(st.error?.code, ErrorCode.ADDRESS_REJECTED, 'refused by the owner over TCP');
      assert.equal(initiator.stats().shmCopies, copies + 1, 'the WRITE took the shm path');
      assert.equal(sha(target.localView(ro, SIZE)), sha(patternBuffer(SIZE, 5)), 'the read-only region changed');

      // The transport itself refuses, and maps such a region read-only.
      const shm = new ShmTransport();
      try {
        const region = { shmName: d.shmName, size: d.length, addr: d.addr, readOnly: true };
        assert.throws(() => shm.copy(shm.machineId, region, 0, Buffer.alloc(16), true), (e: unknown) => e instanceof TransferEngineError && e.code === ErrorCode.ADDRESS_REJECTED);
        const out = Buffer.alloc(16);
        shm.copy(shm.machineId, region, 0, out, false);
        assert.deepEqual(out, patternBuffer(SIZE, 5).subarray(0, 16));
      } finally {
        shm.close();
      }
    } finally {
      await initiator.close();
      await target.close();
    }
  });
});

describe('file access modes', () => {
  const FSIZE = 64 * 1024;
  const dir = mkdtempSync(path.join(tmpdir(), 'te-file-access-'));
  const target = new TransferEngine({ env: {} });
  const tcpPeer = new TransferEngine({ env: { TE_FILE_SAME_HOST: '0' } });
  const samePeer = new TransferEngine({ env: {} });
  const content = { rw: patternBuffer(FSIZE, 21), ro: patternBuffer(FSIZE, 22), hidden: patternBuffer(FSIZE, 23) };
  const ids = { rw: 0, ro: 0, hidden: 0 };
  const file = (k: keyof typeof ids): string => path.join(dir, k);
  const onDisk = (k: keyof typeof ids): string => sha(readFileSync(file(k)));

  before(async () => {
    for (const e of [target, tcpPeer, samePeer]) await e.init('127.0.0.1');
    for (const k of ['rw', 'ro', 'hidden'] as const) writeFileSync(file(k), content[k]);
    ids.rw = target.registerLocalFile(file('rw'), FSIZE);
    ids.ro = target.registerLocalFile(file('ro'), FSIZE, { access: 'read' });
    ids.hidden = target.registerLocalFile(file('hidden'), FSIZE, { access: 'none' });
  });

  after(async () => {
    for (const e of [samePeer, tcpPeer, target]) await e.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it("registration: a bad access is TE_INVALID_ARGUMENT; a read-only file cannot grow", () => {
    const extra = path.join(dir, 'extra');
    writeFileSync(extra, Buffer.alloc(4096));
    assert.throws(() => target.registerLocalFile(extra, 4096, { access: 'write' as never }), (e: unknown) => e instanceof TransferEngineError && e.code === ErrorCode.INVALID_ARGUMENT);
    assert.throws(() => target.registerLocalFile(extra, 8192, { access: 'read', grow: true }), (e: unknown) => e instanceof TransferEngineError && e.code === ErrorCode.INVALID_ARGUMENT && /read-only/.test(e.message));
  });

  it("the descriptor publishes 'read' files as such and leaves 'none' out", () => {
    const files = target.getLocalSegmentDescriptor().fileBuffers ?? [];
    assert.deepEqual(files.map((f) => [f.id, f.access]), [[ids.rw, undefined], [ids.ro, 'read']]);
    const text = encodeSegmentDesc(target.getLocalSegmentDescriptor());
    assert.equal(decodeSegmentDesc(text).fileBuffers?.[1]?.access, 'read', 'the codec carries it');
  });

  for (const [label, peer, sameHost] of [['over TCP', tcpPeer, false], ['same host, directly', samePeer, true]] as const) {
    it(`${label}: a read-only file is read; a WRITE to it is refused at submission; nothing changes`, async () => {
      const seg = await peer.openSegment(target.segmentName);
      const local = peer.registerLocalMemory(Buffer.alloc(FSIZE));
      const before = peer.stats().fileSameHost;
      let b = peer.allocateBatchID(1);
      peer.submitTransfer(b, [{ opcode: TransferOpcode.READ, source: local, targetId: seg, targetOffset: 0, length: FSIZE, fileId: ids.ro }]);
      assert.equal((await peer.waitBatch(b))[0]!.status, TaskStatus.COMPLETED);
      peer.freeBatchID(b);
      assert.equal(sha(peer.localView(local, FSIZE)), sha(content.ro));
      assert.equal(peer.stats().fileSameHost - before, sameHost ? 1 : 0, 'the path taken');
      b = peer.allocateBatchID(1);
      assert.throws(
        () => peer.submitTransfer(b, [{ opcode: TransferOpcode.WRITE, source: local, targetId: seg, targetOffset: 0, length: 4096, fileId: ids.ro }]),
        (e: unknown) => e instanceof TransferEngineError && e.code === ErrorCode.INVALID_ARGUMENT && /read-only/.test(e.message),
      );
      assert.throws(
        () => peer.submitTransfer(b, [{ opcode: TransferOpcode.READ, source: local, targetId: seg, targetOffset: 0, length: 4096, fileId: ids.hidden }]),
        (e: unknown) => e instanceof TransferEngineError && e.code === ErrorCode.INVALID_ARGUMENT,
        "a 'none' file is not published",
      );
      peer.freeBatchID(b);
      assert.equal(onDisk('ro'), sha(content.ro));
      assert.equal(onDisk('hidden'), sha(content.hidden));
    });
  }

  it('raw file requests: a WRITE to a read-only file and any request for a hidden one get the rejection frame, nothing applied', async () => {
    const fileHeader = (size: number, offset: number, write: boolean, id: number): Buffer => {
      const h = Buffer.alloc(24);
      encodeFileHeader(h, 0, size, offset, write, id);
      return h;
    };
    // A READ of the read-only file is served; then the refused WRITE with its body; then nothing more.
    let c = await RawConn.open(target.dataPort);
    c.write(fileHeader(16, 0, false, ids.ro));
    c.write(Buffer.concat([fileHeader(4096, 0, true, ids.ro), Buffer.alloc(4096, 0x55)]));
    c.write(fileHeader(16, 0, false, ids.ro));
    assert.equal(await c.waitClosed(), true);
    assert.deepEqual(c.bytes, Buffer.concat([STATUS_OK_FRAME, content.ro.subarray(0, 16), STATUS_FILE_REJECTED_FRAME]));
    for (const write of [false, true]) {
      c = await RawConn.open(target.dataPort);
      c.write(fileHeader(16, 0, write, ids.hidden));
      if (write) c.write(Buffer.alloc(16, 0x66));
      assert.equal(await c.waitClosed(), true);
      assert.deepEqual(c.bytes, STATUS_FILE_REJECTED_FRAME);
    }
    // The read-write file still takes writes.
    c = await RawConn.open(target.dataPort);
    c.write(Buffer.concat([fileHeader(16, 0, true, ids.rw), Buffer.alloc(16, 0x77)]));
    assert.deepEqual(await c.waitBytes(8), STATUS_OK_FRAME);
    c.destroy();
    assert.equal(onDisk('ro'), sha(content.ro));
    assert.equal(onDisk('hidden'), sha(content.hidden));
    assert.deepEqual(readFileSync(file('rw')).subarray(0, 16), Buffer.alloc(16, 0x77));
  });

  it("the owner's own transfers: a 'none' file is usable locally, a 'read' one is read but never written", async () => {
    const mem = target.registerLocalMemory(Buffer.alloc(FSIZE));
    let b = target.allocateBatchID(2);
    target.submitTransfer(b, [
      { opcode: TransferOpcode.READ, source: mem, targetId: LOCAL_SEGMENT, targetOffset: 0, length: FSIZE, fileId: ids.hidden },
      { opcode: TransferOpcode.WRITE, source: mem, targetId: LOCAL_SEGMENT, targetOffset: 0, length: FSIZE, fileId: ids.hidden },
    ]);
    assert.deepEqual((await target.waitBatch(b)).map((s) => s.status), [TaskStatus.COMPLETED, TaskStatus.COMPLETED]);
    target.freeBatchID(b);
    b = target.allocateBatchID(1);
    assert.throws(
      () => target.submitTransfer(b, [{ opcode: TransferOpcode.WRITE, source: mem, targetId: LOCAL_SEGMENT, targetOffset: 0, length: 4096, fileId: ids.ro }]),
      (e: unknown) => e instanceof TransferEngineError && e.code === ErrorCode.INVALID_ARGUMENT && /read-only/.test(e.message),
    );
    target.submitTransfer(b, [{ opcode: TransferOpcode.READ, source: mem, targetId: LOCAL_SEGMENT, targetOffset: 0, length: FSIZE, fileId: ids.ro }]);
    assert.equal((await target.waitBatch(b))[0]!.status, TaskStatus.COMPLETED);
    target.freeBatchID(b);
    assert.equal(sha(target.localView(mem, FSIZE)), sha(content.ro));
    assert.equal(onDisk('ro'), sha(content.ro));
  });
});
