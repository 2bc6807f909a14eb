/**
 * The high-level API against a real engine in another process: the Python
 * binding's flows (sync, submit + poll, batches), notifications, probes, first buffer
 * address, timeouts against a stopped peer, and a peer that refuses a Notify.
 */
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import {
  TransferEngine,
  TransferOpcode,
  TransferNotify,
  ERR_FAILED,
  ERR_TIMEOUT,
  ERR_INVALID_BATCH,
  ERR_PEER_UNREACHABLE,
  ERR_NOTIFY_FAILED,
  ERR_REGION_BUSY,
  ERR_ALREADY_INITIALIZED,
  ERR_NOT_SUPPORTED,
  ERR_INVALID_ARGUMENT,
} from '../src/index.js';
import { encodeSegmentDesc } from '../src/codec/descriptor.js';
import { HandshakeFrameDecoder, HandshakeType, encodeHandshakeFrame } from '../src/codec/handshake.js';
import { spawnPeer, sha256, type PeerProcess } from './helpers.js';
import { fillPattern, patternBuffer } from './pattern.js';

const KiB = 1024;
const MiB = 1024 * KiB;
const QUIET = { ...process.env, MC_LOG_LEVEL: 'ERROR' };

let engine: TransferEngine;
let peer: PeerProcess;
let local: Uint8Array;
let localPtr: number;
let remotePtr: number;
const REGION = 4 * MiB;

async function closedPort(): Promise<number> {
  const srv = net.createServer();
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', () => r()));
  const port = (srv.address() as net.AddressInfo).port;
  await new Promise<void>((r) => srv.close(() => r()));
  return port;
}

async function pollStatus(e: TransferEngine, id: number, timeoutMs = 10_000): Promise<number> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const s = e.transferCheckStatus(id);
    if (s !== 0) return s;
    if (Date.now() > end) throw new Error(`batch ${id} still pending after ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 1));
  }
}

before(async () => {
  engine = new TransferEngine({ env: QUIET });
  assert.equal(await engine.initialize('127.0.0.1', 'P2PHANDSHAKE', 'tcp', ''), 0);
  local = new Uint8Array(REGION);
  assert.equal(engine.registerMemory(local, REGION), 0);
  localPtr = engine.getBufferAddress(local);
  peer = await spawnPeer();
  remotePtr = await peer.register(REGION);
});

after(async () => {
  await engine.close();
  await peer.stop();
});

describe('initialization', () => {
  test('the session id is host:getRpcPort(), and the engine serves its own segment', () => {
    const port = engine.getRpcPort();
    assert.ok(port >= 15000 && port <= 17000, `rpc port ${port}`);
    assert.equal(engine.getEngine()!.segmentName, `127.0.0.1:${port}`);
  });

  test('initialize twice, hardware protocols and unknown ones get codes with a reason', async () => {
    assert.equal(await engine.initialize('127.0.0.1', 'P2PHANDSHAKE', 'tcp', ''), ERR_ALREADY_INITIALIZED);
    const rdma = new TransferEngine({ env: QUIET });
    assert.equal(await rdma.initialize('127.0.0.1', 'P2PHANDSHAKE', 'rdma', 'mlx5_0'), ERR_NOT_SUPPORTED);
    assert.match(rdma.getLastError()!.message, /"rdma" is not supported on this host/);
    // A failed initialize leaves the engine usable: the same object initializes with tcp.
    assert.equal(await rdma.initialize('127.0.0.1', 'P2PHANDSHAKE', 'tcp', ''), 0);
    await rdma.close();
    const odd = new TransferEngine({ env: QUIET });
    assert.equal(await odd.initialize('127.0.0.1', 'P2PHANDSHAKE', 'carrier-pigeon', ''), ERR_INVALID_ARGUMENT);
    await odd.close();
  });

  test('initializeExt composes the metadata string like Mooncake (P2PHANDSHAKE stays as is)', async () => {
    const e = new TransferEngine({ env: QUIET });
    assert.equal(await e.initializeExt('127.0.0.1', 'P2PHANDSHAKE', 'tcp', '', 'p2p'), 0);
    await e.close();
    const f = new TransferEngine({ env: QUIET });
    assert.equal(await f.initializeExt('127.0.0.1', '127.0.0.1:1', 'tcp', '', 'bogus'), ERR_INVALID_ARGUMENT);
    assert.match(f.getLastError()!.message, /unknown metadata type "bogus"/);
    assert.equal(await f.initializeExt('127.0.0.1', '', 'tcp', '', 'etcd'), 0, 'an empty server falls back to MC_METADATA_SERVER, then P2P');
    await f.close();
  });
});

describe('sync transfers', () => {
  test("the Python binding's flow: getFirstBufferAddress, write, read back, byte for byte", async () => {
    assert.equal(await engine.getFirstBufferAddress(peer.segmentName), remotePtr);
    const size = MiB + 3;
    fillPattern(local.subarray(0, size), 5);
    const want = sha256(local.subarray(0, size));
    assert.equal(await engine.transferSyncWrite(peer.segmentName, localPtr, remotePtr + 1, size), 0);
    assert.equal(await peer.hash(remotePtr + 1, size), want);
    local.fill(0);
    assert.equal(await engine.transferSyncRead(peer.segmentName, localPtr + 7, remotePtr + 1, size), 0);
    assert.equal(sha256(local.subarray(7, 7 + size)), want);
  });

  test('transferSync with a notify: the peer receives it after the data', async () => {
    fillPattern(local.subarray(0, 64 * KiB), 9);
    const notify = new TransferNotify('kv-ready', 'layer 7');
    assert.equal(await engine.transferSync(peer.segmentName, localPtr, remotePtr, 64 * KiB, TransferOpcode.WRITE, notify), 0);
    const got = await peer.call<{ notifies: Array<{ name: string; msg: string }> }>('notifies');
    assert.deepEqual(got.notifies, [{ name: 'kv-ready', msg: 'layer 7' }]);
    assert.equal(await peer.hash(remotePtr, 64 * KiB), sha256(local.subarray(0, 64 * KiB)));
    // READ with opcode, no notify: nothing more is queued at the peer.
    assert.equal(await engine.transferSync(peer.segmentName, localPtr + MiB, remotePtr, 64 * KiB, TransferOpcode.READ), 0);
    assert.equal(sha256(local.subarray(MiB, MiB + 64 * KiB)), sha256(local.subarray(0, 64 * KiB)));
    assert.deepEqual((await peer.call<{ notifies: unknown[] }>('notifies')).notifies, []);
  });

  test('notifications between two high-level engines, drained once by getNotifies()', async () => {
    const other = new TransferEngine({ env: QUIET });
    assert.equal(await other.initialize('127.0.0.1', 'P2PHANDSHAKE', 'tcp', ''), 0);
    const mem = new Uint8Array(4096);
    other.registerMemory(mem, mem.length);
    const otherName = `127.0.0.1:${other.getRpcPort()}`;
    const dst = await engine.getFirstBufferAddress(otherName);
    assert.equal(dst, other.getBufferAddress(mem));
    assert.equal(await engine.transferSync(otherName, localPtr, dst, 16, TransferOpcode.WRITE, new TransferNotify('a', 'b')), 0);
    const n = other.getNotifies();
    assert.equal(n.length, 1);
    assert.ok(n[0] instanceof TransferNotify);
    assert.deepEqual({ ...n[0] }, { name: 'a', msg: 'b' });
    assert.deepEqual(other.getNotifies(), []);
    assert.deepEqual(Buffer.from(mem.subarray(0, 16)), Buffer.from(local.subarray(0, 16)));
    await other.close();
  });

  test('batch sync write and read of several ranges', async () => {
    const sizes = [1, 4096, 100 * KiB + 1];
    const offs = [0, 10 * KiB, 300 * KiB];
    for (const [i, o] of offs.entries()) fillPattern(local.subarray(o, o + sizes[i]!), 100 + i);
    const srcs = offs.map((o) => localPtr + o);
    const dsts = offs.map((o) => remotePtr + 2 * MiB + o);
    assert.equal(await engine.batchTransferSyncWrite(peer.segmentName, srcs, dsts, sizes), 0);
    for (const [i, o] of offs.entries()) assert.equal(await peer.hash(remotePtr + 2 * MiB + o, sizes[i]!), sha256(local.subarray(o, o + sizes[i]!)));
    const backs = offs.map((o) => localPtr + MiB + o);
    assert.equal(await engine.batchTransferSyncRead(peer.segmentName, backs, dsts, sizes), 0);
    for (const [i, o] of offs.entries()) assert.deepEqual(local.subarray(MiB + o, MiB + o + sizes[i]!), local.subarray(o, o + sizes[i]!));
    const note = new TransferNotify('batch', 'done');
    assert.equal(await engine.batchTransferSync(peer.segmentName, srcs, dsts, sizes, TransferOpcode.WRITE, note), 0);
    assert.deepEqual((await peer.call<{ notifies: unknown[] }>('notifies')).notifies, [{ name: 'batch', msg: 'done' }]);
  });

  test('a range the peer refuses fails with -1 and the reason; the engine carries on', async () => {
    const outside = remotePtr + REGION; // one past the peer's region
    assert.equal(await engine.transferSyncWrite(peer.segmentName, localPtr, outside, 4096), ERR_FAILED);
    const err = engine.getLastError()!;
    assert.equal(err.returnCode, ERR_FAILED);
    assert.equal(err.code, 'TE_ADDRESS_REJECTED');
    assert.equal(err.method, 'transferSyncWrite');
    assert.ok(err.cause instanceof Error);
    assert.equal(await engine.transferSyncWrite(peer.segmentName, localPtr, remotePtr, 4096), 0);
  });

  test('unreachable targets: a closed port and an unknown host name', async () => {
    const port = await closedPort();
    assert.equal(await engine.transferSyncWrite(`127.0.0.1:${port}`, localPtr, remotePtr, 16), ERR_PEER_UNREACHABLE);
    assert.equal(engine.getLastError()!.code, 'TE_PEER_UNREACHABLE');
    assert.equal(await engine.transferSyncWrite('no-such-host.invalid:15000', localPtr, remotePtr, 16), ERR_PEER_UNREACHABLE);
    assert.equal(await engine.getFirstBufferAddress(`127.0.0.1:${port}`), 0);
    assert.equal(engine.getLastError()!.returnCode, ERR_PEER_UNREACHABLE);
    assert.equal(await engine.sendProbe(`127.0.0.1:${port}`), ERR_PEER_UNREACHABLE);
    assert.equal(await engine.sendProbe(peer.segmentName), 0);
  });
});

describe('async transfers', () => {
  test('transferSubmitWrite + transferCheckStatus; a final status frees the id', async () => {
    fillPattern(local.subarray(0, MiB), 21);
    const id = await engine.transferSubmitWrite(peer.segmentName, localPtr, remotePtr, MiB);
    assert.ok(Number.isInteger(id) && id >= 1, `batch id ${id}`);
    assert.equal(await pollStatus(engine, id), 1);
    assert.equal(engine.transferCheckStatus(id), ERR_INVALID_BATCH);
    assert.equal(await peer.hash(remotePtr, MiB), sha256(local.subarray(0, MiB)));
    local.fill(0, 0, MiB);
    const rid = await engine.transferSubmitRead(peer.segmentName, localPtr, remotePtr, MiB);
    assert.equal(await pollStatus(engine, rid), 1);
    assert.equal(sha256(local.subarray(0, MiB)), await peer.hash(remotePtr, MiB));
  });

  test('a failed async transfer reports -1 once, then the id is gone', async () => {
    const id = await engine.transferSubmitWrite(peer.segmentName, localPtr, remotePtr + REGION - 10, 4096);
    assert.ok(id >= 1);
    assert.equal(await pollStatus(engine, id), -1);
    assert.equal(engine.getLastError()!.code, 'TE_ADDRESS_REJECTED');
    assert.equal(engine.transferCheckStatus(id), ERR_INVALID_BATCH);
  });

  test('batchTransferAsync* and getBatchTransferStatus over several batches', async () => {
    const data = patternBuffer(256 * KiB, 44);
    local.set(data, 0);
    const a = await engine.batchTransferAsyncWrite(peer.segmentName, [localPtr, localPtr + 128 * KiB], [remotePtr, remotePtr + 128 * KiB], [128 * KiB, 128 * KiB]);
    const b = await engine.batchTransferAsync(peer.segmentName, [localPtr], [remotePtr + MiB], [256 * KiB], TransferOpcode.WRITE);
    assert.ok(a >= 1 && b >= 1 && a !== b);
    assert.equal(await engine.getBatchTransferStatus([a, b]), 0);
    assert.equal(engine.transferCheckStatus(a), ERR_INVALID_BATCH, 'freed by getBatchTransferStatus');
    assert.equal(await peer.hash(remotePtr, 256 * KiB), sha256(data));
    assert.equal(await peer.hash(remotePtr + MiB, 256 * KiB), sha256(data));
    local.fill(0, 0, 256 * KiB);
    const c = await engine.batchTransferAsyncRead(peer.segmentName, [localPtr], [remotePtr + MiB], [256 * KiB]);
    assert.equal(await engine.getBatchTransferStatus([c]), 0);
    assert.deepEqual(Buffer.from(local.subarray(0, 256 * KiB)), data);
    assert.equal(await engine.getBatchTransferStatus([]), 0);
  });

  test('getBatchTransferStatus reports a failed batch (-1) and frees every listed id', async () => {
    const good = await engine.batchTransferAsyncWrite(peer.segmentName, [localPtr], [remotePtr], [4096]);
    const bad = await engine.batchTransferAsyncWrite(peer.segmentName, [localPtr], [remotePtr + REGION], [4096]);
    assert.equal(await engine.getBatchTransferStatus([good, bad]), ERR_FAILED);
    assert.equal(engine.transferCheckStatus(good), ERR_INVALID_BATCH);
    assert.equal(engine.transferCheckStatus(bad), ERR_INVALID_BATCH);
    assert.equal(await engine.getBatchTransferStatus([good]), ERR_INVALID_BATCH);
  });
});

test('getLocalTopology: Mooncake JSON, without initialize', async () => {
  const fresh = new TransferEngine({ env: QUIET });
  const topo = JSON.parse(await fresh.getLocalTopology()) as Record<string, unknown>;
  assert.ok(Object.keys(topo).length >= 1);
  for (const [loc, v] of Object.entries(topo)) {
    assert.match(loc, /^cpu:\d+$/);
    assert.ok(Array.isArray(v) && v.length === 2 && v.every((l) => Array.isArray(l) && l.every((d) => typeof d === 'string')));
  }
  const none = JSON.parse(await fresh.getLocalTopology('no-such-nic')) as Record<string, [string[], string[]]>;
  for (const v of Object.values(none)) assert.deepEqual(v, [[], []], 'the filter keeps only the named devices');
});

test('timeouts against a stopped peer: sync -2, async -2, batch -2; memory in flight stays registered', async () => {
  const slow = await spawnPeer();
  const e = new TransferEngine({ env: { ...QUIET, MC_TRANSFER_TIMEOUT: '1' } });
  try {
    assert.equal(await e.initialize('127.0.0.1', 'P2PHANDSHAKE', 'tcp', ''), 0);
    const mem = new Uint8Array(256 * KiB);
    assert.equal(e.registerMemory(mem, mem.length), 0);
    const ptr = e.getBufferAddress(mem);
    const remote = await slow.register(256 * KiB);
    assert.equal(await e.getFirstBufferAddress(slow.segmentName), remote); // descriptor cached while it answers
    slow.child.kill('SIGSTOP');

    const t0 = performance.now();
    assert.equal(await e.transferSyncWrite(slow.segmentName, ptr, remote, 64 * KiB), ERR_TIMEOUT);
    const took = performance.now() - t0;
    assert.ok(took >= 900 && took < 5000, `timed out after ${took.toFixed(0)} ms with MC_TRANSFER_TIMEOUT=1`);
    assert.equal(e.getLastError()!.code, 'TE_TIMEOUT');

    const id = await e.transferSubmitWrite(slow.segmentName, ptr, remote, 64 * KiB);
    assert.ok(id >= 1);
    assert.equal(e.unregisterMemory(ptr), ERR_REGION_BUSY, 'in flight: not unregistered');
    assert.equal(await pollStatus(e, id), -2);

    const bid = await e.batchTransferAsyncWrite(slow.segmentName, [ptr], [remote], [64 * KiB]);
    assert.equal(await e.getBatchTransferStatus([bid]), ERR_TIMEOUT);
    assert.equal(e.transferCheckStatus(bid), ERR_INVALID_BATCH);
  } finally {
    slow.child.kill('SIGCONT');
    await e.close();
    await slow.stop();
  }
});

test('a peer that refuses the Notify: the data arrived, the call says ERR_NOTIFY_FAILED', async () => {
  // The RPC port of a peer that rejects notifications (an empty notify_msg, Mooncake's refusal);
  // its descriptor points at the real peer's data port and memory, so the data path is real.
  const sockets = new Set<net.Socket>();
  const srv = net.createServer((s) => {
    sockets.add(s);
    s.on('error', () => s.destroy());
    const dec = new HandshakeFrameDecoder();
    s.on('data', (chunk: Buffer) => {
      const f = dec.push(chunk);
      if (!f) return;
      const name = `127.0.0.1:${(srv.address() as net.AddressInfo).port}`;
      const reply =
        f.type === HandshakeType.METADATA
          ? `${encodeSegmentDesc({ name, protocol: 'tcp', tcpDataPort: peer.dataPort, tcpProtoVersion: 2, buffers: [{ name, addr: BigInt(remotePtr), length: BigInt(REGION) }] })}\n`
          : '{"name":"","notify_msg":""}\n';
      s.end(encodeHandshakeFrame(f.type, reply));
    });
  });
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', () => r()));
  try {
    const name = `127.0.0.1:${(srv.address() as net.AddressInfo).port}`;
    fillPattern(local.subarray(0, 8 * KiB), 66);
    const r = await engine.transferSync(name, localPtr, remotePtr + 3 * MiB, 8 * KiB, TransferOpcode.WRITE, new TransferNotify('x', 'y'));
    assert.equal(r, ERR_NOTIFY_FAILED);
    assert.match(engine.getLastError()!.message, /data was transferred/);
    assert.equal(await peer.hash(remotePtr + 3 * MiB, 8 * KiB), sha256(local.subarray(0, 8 * KiB)));
  } finally {
    for (const s of sockets) s.destroy();
    await new Promise<void>((r) => srv.close(() => r()));
  }
});
