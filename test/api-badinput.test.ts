/**
 * The bad-input list for the high-level API, against a real peer in
 * another process: wrong argument types and counts (TypeError), negative or
 * non-integer lengths, lists of different lengths, unknown opcodes,
 * unregistered local addresses, freed managed buffers, calls before
 * initialize and after close, unreachable targets. Each gets its code, the
 * peer sees no request and no byte changes, and the engine keeps working.
 */
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  TransferEngine,
  TransferOpcode,
  TransferNotify,
  ERR_ADDRESS_NOT_REGISTERED,
  ERR_ADDRESS_OVERLAPPED,
  ERR_INVALID_ARGUMENT,
  ERR_INVALID_BATCH,
  ERR_NOT_INITIALIZED,
  ERR_CLOSED,
  ERR_NOT_SUPPORTED,
  ERR_PEER_UNREACHABLE,
  ERR_FAILED,
  returnCodeName,
} from '../src/index.js';
import { spawnPeer, sha256, type PeerProcess } from './helpers.js';
import { patternBuffer } from './pattern.js';

const KiB = 1024;
const QUIET = { ...process.env, MC_LOG_LEVEL: 'ERROR' };

/** Call a method with arguments its signature does not allow. */
type Loose = (...args: unknown[]) => unknown;
function loose(e: TransferEngine, method: keyof TransferEngine): Loose {
  return (e[method] as Loose).bind(e);
}

let engine: TransferEngine;
let peer: PeerProcess;
let local: Uint8Array;
let ptr: number;
let remote: number;
let target: string;
const SIZE = 64 * KiB;

async function peerState(): Promise<{ served: number; rejected: number; hash: string }> {
  const s = await peer.call<{ requestsServed: number; requestsRejected: number }>('stats');
  return { served: s.requestsServed, rejected: s.requestsRejected, hash: await peer.hash(remote, SIZE) };
}

/** Runs `bad`, expects `code` from it, and checks the peer received nothing. */
async function refused(what: string, code: number, bad: () => Promise<number> | number): Promise<void> {
  const before = await peerState();
  const got = await bad();
  assert.equal(got, code, `${what}: got ${got} (${returnCodeName(got)}: ${engine.getLastError()?.message}), want ${returnCodeName(code)}`);
  assert.deepEqual(await peerState(), before, `${what}: the peer saw a request or a byte changed`);
}

before(async () => {
  engine = new TransferEngine({ env: QUIET });
  assert.equal(await engine.initialize('127.0.0.1', 'P2PHANDSHAKE', 'tcp', ''), 0);
  local = patternBuffer(SIZE, 3);
  assert.equal(engine.registerMemory(local, SIZE), 0);
  ptr = engine.getBufferAddress(local);
  peer = await spawnPeer();
  remote = await peer.register(SIZE, 8);
  target = peer.segmentName;
  assert.equal(await engine.getFirstBufferAddress(target), remote); // the segment is open: later refusals are ours, not the handshake's
});

after(async () => {
  // Nothing lost: after every refusal the engine still moves data.
  assert.equal(await engine.transferSyncWrite(target, ptr, remote, SIZE), 0);
  assert.equal(await peer.hash(remote, SIZE), sha256(local));
  await engine.close();
  await peer.stop();
});

describe('wrong argument types and counts are TypeErrors', () => {
  test('sync methods throw', () => {
    assert.throws(() => loose(engine, 'registerMemory')(local), TypeError);
    assert.throws(() => loose(engine, 'registerMemory')(local, SIZE, '*', 'extra'), TypeError);
    assert.throws(() => loose(engine, 'registerMemory')('0x1000', SIZE), TypeError);
    assert.throws(() => loose(engine, 'registerMemory')(local, '4096'), TypeError);
    assert.throws(() => loose(engine, 'registerMemory')(local, SIZE, 0), TypeError);
    assert.throws(() => loose(engine, 'unregisterMemory')(), TypeError);
    assert.throws(() => loose(engine, 'unregisterMemory')({ addr: ptr }), TypeError);
    assert.throws(() => loose(engine, 'batchRegisterMemory')(local, [SIZE]), TypeError);
    assert.throws(() => loose(engine, 'batchRegisterMemory')([local], [String(SIZE)]), TypeError);
    assert.throws(() => loose(engine, 'batchUnregisterMemory')(ptr), TypeError);
    assert.throws(() => loose(engine, 'transferCheckStatus')('1'), TypeError);
    assert.throws(() => loose(engine, 'transferCheckStatus')(), TypeError);
    assert.throws(() => loose(engine, 'writeBytesToBuffer')(ptr, 'text', 4), TypeError);
    assert.throws(() => loose(engine, 'readBytesFromBuffer')(ptr), TypeError);
    assert.throws(() => loose(engine, 'allocateManagedBuffer')(), TypeError);
    assert.throws(() => loose(engine, 'getRpcPort')(1), TypeError);
    assert.throws(() => loose(engine, 'getBufferAddress')(ptr), TypeError);
    assert.throws(() => loose(engine, 'getNotifies')(true), TypeError);
  });

  test('async methods reject', async () => {
    await assert.rejects(async () => loose(engine, 'initialize')('127.0.0.1'), TypeError);
    await assert.rejects(async () => loose(engine, 'initialize')('127.0.0.1', 'P2PHANDSHAKE', 'tcp', null), TypeError);
    await assert.rejects(async () => loose(engine, 'transferSyncWrite')(target, ptr, remote), TypeError);
    await assert.rejects(async () => loose(engine, 'transferSyncWrite')(target, ptr, remote, SIZE, '', 'extra'), TypeError);
    await assert.rejects(async () => loose(engine, 'transferSyncWrite')(12345, ptr, remote, SIZE), TypeError);
    await assert.rejects(async () => loose(engine, 'transferSyncWrite')(target, local, remote, SIZE), TypeError, 'a buffer is not an address');
    await assert.rejects(async () => loose(engine, 'transferSyncRead')(target, ptr, String(remote), SIZE), TypeError);
    await assert.rejects(async () => loose(engine, 'transferSyncRead')(target, ptr, remote, '64'), TypeError);
    await assert.rejects(async () => loose(engine, 'transferSync')(target, ptr, remote, SIZE), TypeError, 'opcode missing');
    await assert.rejects(async () => loose(engine, 'transferSync')(target, ptr, remote, SIZE, 'WRITE'), TypeError);
    await assert.rejects(async () => loose(engine, 'transferSync')(target, ptr, remote, SIZE, TransferOpcode.WRITE, { name: 1, msg: 'x' }), TypeError);
    await assert.rejects(async () => loose(engine, 'transferSync')(target, ptr, remote, SIZE, TransferOpcode.WRITE, 'notify'), TypeError);
    await assert.rejects(async () => loose(engine, 'transferSubmitWrite')(target, ptr, remote, SIZE, 7), TypeError);
    await assert.rejects(async () => loose(engine, 'batchTransferSyncWrite')(target, ptr, [remote], [SIZE]), TypeError);
    await assert.rejects(async () => loose(engine, 'batchTransferSyncWrite')(target, [ptr], [remote], [null]), TypeError);
    await assert.rejects(async () => loose(engine, 'batchTransferAsync')(target, [ptr], [remote], [SIZE]), TypeError);
    await assert.rejects(async () => loose(engine, 'getBatchTransferStatus')(1), TypeError);
    await assert.rejects(async () => loose(engine, 'getBatchTransferStatus')(['1']), TypeError);
    await assert.rejects(async () => loose(engine, 'getFirstBufferAddress')(), TypeError);
    await assert.rejects(async () => loose(engine, 'sendProbe')(15000), TypeError);
    await assert.rejects(async () => loose(engine, 'getLocalTopology')(1), TypeError);
  });

  test('none of them sent anything', async () => {
    const s = await peerState();
    assert.equal(s.served, 0, 'the peer served no request during the type-error tests');
  });
});

describe('bad values get negative codes and nothing is sent', () => {
  test('negative, zero and non-integer lengths', async () => {
    for (const len of [-1, 0, 1.5, Number.NaN, Number.POSITIVE_INFINITY, -1n]) {
      await refused(`length ${String(len)}`, ERR_INVALID_ARGUMENT, () => engine.transferSyncWrite(target, ptr, remote, len));
    }
    await refused('batch length', ERR_INVALID_ARGUMENT, () => engine.batchTransferSyncWrite(target, [ptr, ptr], [remote, remote], [16, -16]));
    assert.equal(engine.readBytesFromBuffer(ptr, -3), null);
    assert.equal(engine.getLastError()!.returnCode, ERR_INVALID_ARGUMENT);
    assert.equal(engine.writeBytesToBuffer(ptr, Buffer.from('abc'), 4), ERR_INVALID_ARGUMENT, 'longer than the source');
    assert.equal(engine.registerMemory(new Uint8Array(16), 17), ERR_INVALID_ARGUMENT, 'capacity above the buffer');
    assert.equal(engine.registerMemory(new Uint8Array(16), 0), ERR_INVALID_ARGUMENT);
  });

  test('lists of different lengths, and empty lists', async () => {
    await refused('sync', ERR_INVALID_ARGUMENT, () => engine.batchTransferSyncWrite(target, [ptr, ptr + 16], [remote], [16, 16]));
    await refused('sync read', ERR_INVALID_ARGUMENT, () => engine.batchTransferSyncRead(target, [ptr], [remote], [16, 16]));
    await refused('async', ERR_INVALID_ARGUMENT, () => engine.batchTransferAsyncWrite(target, [ptr], [remote, remote + 16], [16]));
    await refused('empty', ERR_INVALID_ARGUMENT, () => engine.batchTransferSyncWrite(target, [], [], []));
    const a = new Uint8Array(16);
    assert.equal(engine.batchRegisterMemory([a], [16, 16]), ERR_INVALID_ARGUMENT);
    assert.equal(engine.getBufferAddress(a), 0, 'nothing registered');
  });

  test('unknown opcodes and transport hints', async () => {
    await refused('opcode 2', ERR_INVALID_ARGUMENT, () => engine.transferSync(target, ptr, remote, 16, 2 as TransferOpcode));
    await refused('opcode -1', ERR_INVALID_ARGUMENT, () => engine.batchTransferAsync(target, [ptr], [remote], [16], -1 as TransferOpcode));
    await refused('hint rdma', ERR_NOT_SUPPORTED, () => engine.transferSyncWrite(target, ptr, remote, 16, 'rdma'));
    await refused('hint bogus', ERR_INVALID_ARGUMENT, () => engine.transferSyncWrite(target, ptr, remote, 16, 'bogus'));
    assert.equal(await engine.transferSyncWrite(target, ptr, remote, 16, 'tcp'), 0, 'the tcp hint is fine');
  });

  test('unregistered local addresses and ranges past a region', async () => {
    await refused('unknown address', ERR_ADDRESS_NOT_REGISTERED, () => engine.transferSyncWrite(target, 0x7000_0000_0000, remote, 16));
    await refused('past the end', ERR_ADDRESS_NOT_REGISTERED, () => engine.transferSyncRead(target, ptr + SIZE - 8, remote, 16));
    await refused('huge bigint', ERR_ADDRESS_NOT_REGISTERED, () => engine.transferSyncWrite(target, 1n << 60n, remote, 16));
    await refused('zero', ERR_INVALID_ARGUMENT, () => engine.transferSubmitWrite(target, 0, remote, 16));
    await refused('second of a batch', ERR_ADDRESS_NOT_REGISTERED, () =>
      engine.batchTransferSyncWrite(target, [ptr, ptr + SIZE], [remote, remote + 16], [16, 16]),
    );
    await refused('peer address negative', ERR_INVALID_ARGUMENT, () => engine.transferSyncWrite(target, ptr, -5, 16));
    await refused('peer address above 2^64', ERR_INVALID_ARGUMENT, () => engine.transferSyncWrite(target, ptr, 1n << 64n, 16));
    assert.equal(engine.writeBytesToBuffer(0x7000_0000_0000, Buffer.from('x'), 1), ERR_ADDRESS_NOT_REGISTERED);
  });

  test('addresses of freed managed buffers', async () => {
    const m = engine.allocateManagedBuffer(SIZE);
    assert.ok(m > 0);
    assert.equal(engine.freeManagedBuffer(m, SIZE), 0);
    await refused('freed source', ERR_ADDRESS_NOT_REGISTERED, () => engine.transferSyncWrite(target, m, remote, 16));
    await refused('freed, async', ERR_ADDRESS_NOT_REGISTERED, () => engine.transferSubmitWrite(target, m + 100, remote, 16));
    assert.equal(engine.readBytesFromBuffer(m, 16), null);
  });

  test('registration misuse: twice, overlapping views, raw numbers, unknown and partial batches', () => {
    const buf = new Uint8Array(8192);
    assert.equal(engine.registerMemory(buf, 4096), 0);
    assert.equal(engine.registerMemory(buf, 4096), ERR_ADDRESS_OVERLAPPED);
    assert.equal(engine.registerMemory(buf.subarray(100, 200), 100), ERR_ADDRESS_OVERLAPPED);
    assert.equal(engine.registerMemory(buf.subarray(4096), 4096), 0, 'the other half does not overlap');
    assert.equal(engine.getBufferAddress(buf.subarray(4096)) - engine.getBufferAddress(buf), 4096 + 4096, 'separate regions (a guard page apart)');
    assert.equal(engine.registerMemory(engine.getBufferAddress(buf) + 8, 8), ERR_ADDRESS_OVERLAPPED, 'an address inside registered memory');
    assert.equal(engine.registerMemory(0x6000_0000_0000, 4096), ERR_ADDRESS_NOT_REGISTERED, 'Node cannot register a raw address');
    assert.match(engine.getLastError()!.message, /pass the Uint8Array/);
    assert.equal(engine.unregisterMemory(engine.getBufferAddress(buf) + 1), ERR_ADDRESS_NOT_REGISTERED, 'not the start');
    assert.equal(engine.unregisterMemory(new Uint8Array(4)), ERR_ADDRESS_NOT_REGISTERED);

    const fresh = new Uint8Array(64);
    assert.equal(engine.batchRegisterMemory([fresh, buf], [64, 64]), ERR_ADDRESS_OVERLAPPED, 'the second is registered already');
    assert.equal(engine.getBufferAddress(fresh), 0, 'all or nothing: the first was rolled back');
    assert.equal(engine.batchUnregisterMemory([buf, 0x6000_0000_0000]), ERR_ADDRESS_NOT_REGISTERED);
    assert.ok(engine.getBufferAddress(buf) > 0, 'all or nothing: still registered');
    assert.equal(engine.batchUnregisterMemory([buf, buf]), ERR_INVALID_ARGUMENT, 'listed twice');
    assert.equal(engine.batchUnregisterMemory([buf, buf.subarray(4096)]), 0);
    assert.equal(engine.getBufferAddress(buf), 0);
    assert.equal(engine.batchRegisterMemory([fresh, new Float64Array(8)], [64, 64], 'cpu:0'), 0, 'any TypedArray is memory');
    assert.equal(engine.batchUnregisterMemory([fresh]), 0);
    assert.equal(engine.registerMemory(new Uint8Array(16), 16, 'cuda:0'), ERR_NOT_SUPPORTED);
    assert.equal(engine.registerMemory(new Uint8Array(16), 16, ''), ERR_INVALID_ARGUMENT);
  });

  test('unknown and repeated batch ids', async () => {
    assert.equal(engine.transferCheckStatus(999_999), ERR_INVALID_BATCH);
    assert.equal(engine.transferCheckStatus(-1), ERR_INVALID_BATCH);
    assert.equal(await engine.getBatchTransferStatus([999_999]), ERR_INVALID_BATCH);
    const id = await engine.transferSubmitWrite(target, ptr, remote, 16);
    assert.equal(await engine.getBatchTransferStatus([id, id]), ERR_INVALID_ARGUMENT);
    assert.equal(await engine.getBatchTransferStatus([id]), 0, 'the refused call did not free it');
  });

  test('an unreachable target_hostname', async () => {
    await refused('closed port', ERR_PEER_UNREACHABLE, () => engine.transferSyncWrite('127.0.0.1:1', ptr, remote, 16));
    await refused('no such host', ERR_PEER_UNREACHABLE, () => engine.transferSyncWrite('no-such-host.invalid:15000', ptr, remote, 16));
    // The async calls return at once: the segment opens inside the batch, whose status then says -1.
    const id = await engine.transferSubmitWrite('no-such-host.invalid:15000', ptr, remote, 16);
    assert.ok(id >= 1, `batch id ${id}`);
    let st = 0;
    while ((st = engine.transferCheckStatus(id)) === 0) await new Promise((r) => setTimeout(r, 5));
    assert.equal(st, ERR_FAILED);
    assert.equal(engine.getLastError()!.code, 'TE_PEER_UNREACHABLE');
    await refused('empty name', ERR_INVALID_ARGUMENT, () => engine.transferSyncWrite('', ptr, remote, 16));
  });
});

describe('before initialize and after close', () => {
  async function everyCall(e: TransferEngine, code: number): Promise<void> {
    const buf = new Uint8Array(16);
    assert.equal(e.getRpcPort(), code);
    assert.equal(e.registerMemory(buf, 16), code);
    assert.equal(e.unregisterMemory(0x1000_0000_0000), code);
    assert.equal(e.batchRegisterMemory([buf], [16]), code);
    assert.equal(e.batchUnregisterMemory([0x1000_0000_0000]), code);
    assert.equal(e.allocateManagedBuffer(16), 0);
    assert.equal(e.freeManagedBuffer(0x1000_0000_0000, 16), code);
    assert.equal(e.writeBytesToBuffer(0x1000_0000_0000, buf, 16), code);
    assert.equal(e.readBytesFromBuffer(0x1000_0000_0000, 16), null);
    assert.equal(await e.transferSyncWrite(target, 0x1000_0000_0000, remote, 16), code);
    assert.equal(await e.transferSyncRead(target, 0x1000_0000_0000, remote, 16), code);
    assert.equal(await e.transferSync(target, 0x1000_0000_0000, remote, 16, TransferOpcode.WRITE, new TransferNotify('a', 'b')), code);
    assert.equal(await e.transferSubmitWrite(target, 0x1000_0000_0000, remote, 16), code);
    assert.equal(e.transferCheckStatus(1), code);
    assert.equal(await e.batchTransferSyncWrite(target, [0x1000_0000_0000], [remote], [16]), code);
    assert.equal(await e.batchTransferAsyncRead(target, [0x1000_0000_0000], [remote], [16]), code);
    assert.equal(await e.getBatchTransferStatus([1]), code);
    assert.equal(await e.getFirstBufferAddress(target), 0);
    assert.equal(await e.sendProbe(target), code);
    assert.deepEqual(e.getNotifies(), []);
    assert.equal(e.getLastError()!.returnCode, code);
    assert.deepEqual(e.getMetrics(), { bytesWritten: 0, bytesRead: 0, tasksCompleted: 0, tasksFailed: 0 });
  }

  test('before initialize: ERR_NOT_INITIALIZED (0 / null / [] where the Python binding returns a value)', async () => {
    const before = await peerState();
    const e = new TransferEngine({ env: QUIET });
    assert.equal(e.getEngine(), null);
    await everyCall(e, ERR_NOT_INITIALIZED);
    assert.deepEqual(await peerState(), before);
  });

  test('after close: ERR_CLOSED, and initialize cannot revive it', async () => {
    const e = new TransferEngine({ env: QUIET });
    assert.equal(await e.initialize('127.0.0.1', 'P2PHANDSHAKE', 'tcp', ''), 0);
    await e.close();
    await e.close(); // idempotent
    const before = await peerState();
    await everyCall(e, ERR_CLOSED);
    assert.equal(await e.initialize('127.0.0.1', 'P2PHANDSHAKE', 'tcp', ''), ERR_CLOSED);
    assert.deepEqual(await peerState(), before);
  });
});
