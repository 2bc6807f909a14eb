/**
 * Per-region access: 'none' (not published, every request refused), 'read'
 * (READs served, WRITEs refused with the v2 rejection frame like an unknown
 * range, never a partial write), 'readwrite' (the default, Mooncake's). The
 * same holds for same-host peers that copy through shared memory: read-only
 * regions are published as such and never written through the shm path.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { TransferEngine, TransferOpcode, TaskStatus, ErrorCode, TransferEngineError } from '../src/core.js';
import { MemoryRegistry } from '../src/memory.js';
import { STATUS_OK_FRAME, STATUS_REJECTED_FRAME } from '../src/codec/wire.js';
import { decodeSegmentDesc, encodeSegmentDesc } from '../src/codec/descriptor.js';
import { shmNativeAvailable } from '../src/shm/index.js';
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

describe('region access modes (same-host shared memory)', { skip: !shmNativeAvailable() && !process.env['CI'] }, () => {
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
