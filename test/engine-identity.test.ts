/**
 * Engine identity (README, Engine identity; RELIABILITY.md): bytes meant for
 * a peer never land in another process that took its port. Our peers are
 * checked on every data connection before the first request (engine_id);
 * peers without an id (Mooncake's) have their descriptor fetched again when a
 * connection is opened while none is connected. Each engine's addresses also
 * start at a random base.
 */
import { describe, it, after } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { TransferEngine as Facade, ERR_FAILED } from '../src/index.js';
import { TransferEngine, TransferOpcode, TaskStatus, type SegmentHandle } from '../src/core.js';
import {
  HEADER_SIZE,
  STATUS_SIZE,
  encodeHeader,
  encodeHello,
  STATUS_ENGINE_CONFIRMED_FRAME,
  STATUS_WRONG_ENGINE_FRAME,
  STATUS_OK_FRAME,
} from '../src/codec/wire.js';
import { decodeSegmentDesc, encodeSegmentDesc } from '../src/codec/descriptor.js';
import { freePort } from './servers.js';
import { spawnPeer, sha256, type PeerProcess } from './helpers.js';
import { fillPattern } from './pattern.js';
import { OK_FRAME, REJECT_FRAME, REMOTE_BASE, REMOTE_LEN, fakePeer, type FakePeer } from './fake-peer.js';

const SIZE = 1 << 20;
const QUIET = { ...process.env, MC_LOG_LEVEL: 'ERROR' };
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));


async function one(engine: TransferEngine, op: TransferOpcode, source: number, seg: SegmentHandle, target: number | bigint, length = SIZE): Promise<{ status: TaskStatus; code: string | undefined }> {
  const bid = engine.allocateBatchID(1);
  engine.submitTransfer(bid, [{ opcode: op, source, targetId: seg, targetOffset: target, length }]);
  const [st] = await engine.waitBatch(bid);
  engine.freeBatchID(bid);
  return { status: st!.status, code: st!.error?.code };
}

/** A peer whose data port (and optionally RPC port) is another peer's, now closed. */
async function takeOver(old: PeerProcess, rpcPort: number): Promise<PeerProcess> {
  const range = String(old.dataPort);
  return spawnPeer({ MC_MIN_RPC_PORT: range, MC_MAX_RPC_PORT: range }, { rpcPort });
}

describe('engine identity: a peer that is gone', () => {
  const peers: PeerProcess[] = [];
  const engine = new TransferEngine();
  after(async () => {
    await engine.close();
    for (const p of peers) await p.stop();
  });

  it('a write or read to a closed peer never reaches the engine that took its data port: TE_PEER_CHANGED', async () => {
    await engine.init('127.0.0.1');
    const local = Buffer.alloc(SIZE);
    const localAddr = engine.registerLocalMemory(local);
    const b = await spawnPeer();
    peers.push(b);
    const bAddr = await b.register(SIZE, 1);
    const seg = await engine.openSegment(b.segmentName);
    assert.ok((engine.getSegmentDescriptor(seg).engineId ?? 0) > 0, 'our peers publish an engine id');
    fillPattern(local, 7);
    assert.deepEqual(await one(engine, TransferOpcode.WRITE, localAddr, seg, bAddr), { status: TaskStatus.COMPLETED, code: undefined });
    assert.equal(await b.hash(bAddr, SIZE), sha256(local));

    await b.stop();
    // C binds B's old data port (its RPC port is another one: B's name is dead).
    const c = await takeOver(b, await freePort());
    peers.push(c);
    assert.equal(c.dataPort, b.dataPort);
    const cAddr = await c.register(SIZE, 2);
    const cHash = await c.hash(cAddr, SIZE);
    fillPattern(local, 8);
    const before = await c.call<{ requestsServed: number }>('stats');
    assert.deepEqual(await one(engine, TransferOpcode.WRITE, localAddr, seg, bAddr), { status: TaskStatus.FAILED, code: 'TE_PEER_CHANGED' });
    local.fill(0x5a);
    assert.deepEqual(await one(engine, TransferOpcode.READ, localAddr, seg, bAddr), { status: TaskStatus.FAILED, code: 'TE_PEER_CHANGED' });
    assert.ok(local.every((x) => x === 0x5a), 'nothing was read into our memory');
    // Also at C's own address (as if the bases had collided): C served nothing of ours.
    assert.deepEqual(await one(engine, TransferOpcode.WRITE, localAddr, seg, cAddr), { status: TaskStatus.FAILED, code: 'TE_PEER_CHANGED' });
    const afterStats = await c.call<{ requestsServed: number }>('stats');
    assert.equal(afterStats.requestsServed, before.requestsServed, 'no request reached C');
    assert.equal(await c.hash(cAddr, SIZE), cHash, "C's memory is untouched");
  });

  it('the name itself now belongs to a new engine: the old address is refused after the new descriptor came; the new one works', async () => {
    const local = Buffer.alloc(SIZE);
    const localAddr = engine.registerLocalMemory(local);
    const b = await spawnPeer();
    peers.push(b);
    const bAddr = await b.register(SIZE, 3);
    const seg = await engine.openSegment(b.segmentName);
    assert.deepEqual(await one(engine, TransferOpcode.READ, localAddr, seg, bAddr), { status: TaskStatus.COMPLETED, code: undefined });
    const oldId = engine.getSegmentDescriptor(seg).engineId;
    await b.stop();
    const c = await takeOver(b, b.rpcPort); // same RPC port (same name) and same data port
    peers.push(c);
    assert.equal(c.segmentName, b.segmentName);
    const cAddr = await c.register(SIZE, 4);
    const cHash = await c.hash(cAddr, SIZE);
    fillPattern(local, 9);
    assert.deepEqual(await one(engine, TransferOpcode.WRITE, localAddr, seg, bAddr), { status: TaskStatus.FAILED, code: 'TE_ADDRESS_REJECTED' });
    assert.notEqual(engine.getSegmentDescriptor(seg).engineId, oldId, 'the cache holds the new engine now');
    assert.equal(await c.hash(cAddr, SIZE), cHash);
    assert.deepEqual(await one(engine, TransferOpcode.WRITE, localAddr, seg, cAddr), { status: TaskStatus.COMPLETED, code: undefined });
    assert.equal(await c.hash(cAddr, SIZE), sha256(local));
    engine.unregisterLocalMemory(localAddr);
  });

  it('the high-level API: transferSyncWrite to a closed peer fails (-1, TE_PEER_CHANGED), never 0', async () => {
    const api = new Facade({ env: QUIET });
    try {
      assert.equal(await api.initialize('127.0.0.1', 'P2PHANDSHAKE', 'tcp', ''), 0);
      const buf = new Uint8Array(SIZE);
      assert.equal(api.registerMemory(buf, SIZE), 0);
      const ptr = api.getBufferAddress(buf);
      const b = await spawnPeer();
      peers.push(b);
      const bAddr = await b.register(SIZE, 5);
      assert.equal(await api.transferSyncWrite(b.segmentName, ptr, bAddr, SIZE), 0);
      await b.stop();
      const c = await takeOver(b, await freePort());
      peers.push(c);
      const cAddr = await c.register(SIZE, 6);
      const cHash = await c.hash(cAddr, SIZE);
      // A transfer that ran and failed is -1, as Mooncake's Python binding says; the detail names the cause.
      assert.equal(await api.transferSyncWrite(b.segmentName, ptr, bAddr, SIZE), ERR_FAILED);
      assert.equal(api.getLastError()!.code, 'TE_PEER_CHANGED');
      assert.equal(await api.transferSyncRead(b.segmentName, ptr, bAddr, SIZE), ERR_FAILED);
      assert.equal(await c.hash(cAddr, SIZE), cHash);
    } finally {
      await api.close();
    }
  });
});

describe('engine identity on the wire', () => {
  const engine = new TransferEngine();
  after(() => engine.close());

  async function exchange(bytes: Buffer): Promise<Buffer> {
    const sock = net.connect(engine.dataPort, '127.0.0.1');
    sock.on('error', () => {});
    sock.write(bytes);
    return new Promise<Buffer>((resolve) => {
      const parts: Buffer[] = [];
      sock.on('data', (d: Buffer) => {
        parts.push(d);
        if (Buffer.concat(parts).length >= STATUS_SIZE * 2) sock.destroy();
      });
      sock.on('close', () => resolve(Buffer.concat(parts)));
      setTimeout(() => sock.destroy(), 2000);
    });
  }

  it('the descriptor carries engine_id; a check with it is confirmed and requests follow; another id is refused and nothing after it runs', async () => {
    await engine.init('127.0.0.1');
    const mem = Buffer.alloc(4096, 0x11);
    const addr = engine.registerLocalMemory(mem);
    const id = engine.engineId;
    assert.ok(Number.isSafeInteger(id) && id > 0);
    assert.equal(decodeSegmentDesc(encodeSegmentDesc(engine.getLocalSegmentDescriptor())).engineId, id);

    const write = (who: number): Buffer => {
      const b = Buffer.alloc(2 * HEADER_SIZE + 8);
      encodeHello(b, 0, who);
      encodeHeader(b, HEADER_SIZE, 8, addr, true, true);
      b.fill(0x22, 2 * HEADER_SIZE);
      return b;
    };
    const wrong = await exchange(write(id === 1 ? 2 : id - 1));
    assert.deepEqual(wrong, STATUS_WRONG_ENGINE_FRAME, 'one refusal, then the connection closes');
    assert.ok(mem.every((x) => x === 0x11), 'the WRITE behind a refused check was not served');
    const right = await exchange(write(id));
    assert.deepEqual(right, Buffer.concat([STATUS_ENGINE_CONFIRMED_FRAME, STATUS_OK_FRAME]));
    assert.ok(mem.subarray(0, 8).every((x) => x === 0x22));
    assert.ok(mem.subarray(8).every((x) => x === 0x11));
  });

  it('engines get distinct ids and address bases', async () => {
    const others = [new TransferEngine(), new TransferEngine(), new TransferEngine()];
    try {
      const ids = new Set([engine.engineId]);
      const bases = new Set<number>();
      for (const e of others) {
        await e.init('127.0.0.1');
        ids.add(e.engineId);
        bases.add(e.registerLocalMemory(Buffer.alloc(1)));
      }
      assert.equal(ids.size, 4);
      assert.equal(bases.size, 3);
    } finally {
      for (const e of others) await e.close();
    }
  });
});

describe('peers without an engine id (Mooncake): the descriptor is fetched again before a new connection is used', () => {
  const engine = new TransferEngine();
  const fakes: FakePeer[] = [];
  after(async () => {
    await engine.close();
    for (const f of fakes) await f.close();
  });

  it('unchanged: one refetch, then the request goes; changed: nothing is sent to the old place, the old address is refused', async () => {
    await engine.init('127.0.0.1');
    const local = Buffer.alloc(4096);
    const localAddr = engine.registerLocalMemory(local);
    let base = REMOTE_BASE;
    let requests = 0;
    const peer = await fakePeer(
      (c, r) => {
        requests++;
        // A Mooncake server checks the range against its current memory.
        const inside = r.addr >= base && r.addr + BigInt(r.size) <= base + REMOTE_LEN;
        if (!inside) {
          c.sock.end(REJECT_FRAME);
          return;
        }
        if (!r.write) c.sock.write(Buffer.concat([OK_FRAME, Buffer.alloc(r.size)]));
        else setImmediate(() => c.sock.write(OK_FRAME)); // after its body
      },
      undefined,
      (d) => ({ ...d, buffers: [{ name: d.name, addr: base, length: REMOTE_LEN }] }),
    );
    fakes.push(peer);
    const seg = await engine.openSegment(peer.name);
    assert.equal(engine.getSegmentDescriptor(seg).engineId, undefined);
    assert.equal(peer.fetches, 1);
    assert.deepEqual(await one(engine, TransferOpcode.WRITE, localAddr, seg, REMOTE_BASE, 4096), { status: TaskStatus.COMPLETED, code: undefined });
    assert.equal(peer.fetches, 1, 'a fresh descriptor is not fetched again');

    // The peer drops its connections; later a new one is opened with an old descriptor in hand.
    for (const c of peer.conns) c.sock.destroy();
    await sleep(1200);
    assert.deepEqual(await one(engine, TransferOpcode.WRITE, localAddr, seg, REMOTE_BASE, 4096), { status: TaskStatus.COMPLETED, code: undefined });
    assert.equal(peer.fetches, 2, 'fetched once more before the new connection took the request');

    // Now "another process" holds the port: same port, other memory.
    for (const c of peer.conns) c.sock.destroy();
    base = REMOTE_BASE + 0x1000_0000n;
    await sleep(1200);
    const sent = requests;
    assert.deepEqual(await one(engine, TransferOpcode.WRITE, localAddr, seg, REMOTE_BASE, 4096), { status: TaskStatus.FAILED, code: 'TE_ADDRESS_REJECTED' });
    assert.equal(engine.getSegmentDescriptor(seg).buffers[0]!.addr, base, 'the new descriptor is cached');
    assert.ok(requests - sent <= 1, 'the stale request went out at most once, after the new descriptor came');
    assert.deepEqual(await one(engine, TransferOpcode.WRITE, localAddr, seg, base, 4096), { status: TaskStatus.COMPLETED, code: undefined });
  });
});
