/**
 * The high-level API keeps no copy of the core's state (issue 19): its
 * lifecycle, registrations and batch ids are the core's, seen through
 * getEngine() both ways, and a batch's outcome comes from the statuses
 * waitBatch returned (no task is asked about again). Against an in-process
 * core engine as the peer.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  TransferEngine,
  ERR_CLOSED,
  ERR_FAILED,
  ERR_TIMEOUT,
  ERR_ADDRESS_NOT_REGISTERED,
  ERR_INVALID_BATCH,
} from '../src/index.js';
import { TransferEngine as CoreEngine, TaskStatus, ErrorCode, type TransferStatus } from '../src/core.js';
import { batchError } from '../src/api/transfers.js';
import { ApiFailure } from '../src/api/codes.js';
import { teError } from '../src/errors.js';

const QUIET = { ...process.env, MC_LOG_LEVEL: 'ERROR' };
const SIZE = 64 * 1024;

let peer: CoreEngine;
let remote: number;

before(async () => {
  peer = new CoreEngine({ env: {} });
  await peer.init('127.0.0.1');
  remote = peer.registerLocalMemory(new Uint8Array(SIZE));
});

after(() => peer.close());

async function started(): Promise<TransferEngine> {
  const api = new TransferEngine({ env: QUIET });
  assert.equal(await api.initialize('127.0.0.1', 'P2PHANDSHAKE', 'tcp', ''), 0);
  return api;
}

async function poll(api: TransferEngine, id: number): Promise<number> {
  for (;;) {
    const s = api.transferCheckStatus(id);
    if (s !== 0) return s;
    await new Promise((r) => setTimeout(r, 1));
  }
}

describe('lifecycle: the core says whether the engine is ready', () => {
  it('a core closed underneath the API makes every call ERR_CLOSED, and close() after it is fine', async () => {
    const api = await started();
    const core = api.getEngine()!;
    assert.equal(core.lifecycle, 'ready');
    await core.close();
    assert.equal(api.getRpcPort(), ERR_CLOSED);
    assert.equal(api.registerMemory(new Uint8Array(16), 16), ERR_CLOSED);
    assert.equal(await api.transferSyncWrite(peer.segmentName, 1, remote, 16), ERR_CLOSED);
    assert.equal(await api.initialize('127.0.0.1', 'P2PHANDSHAKE', 'tcp', ''), ERR_CLOSED);
    await api.close();
    assert.equal(api.getEngine(), core, 'the core stays readable after close');
  });
});

describe('registrations: the core holds them', () => {
  it('memory registered through the core has its address from the API; unregistered through the core, it has none', async () => {
    const api = await started();
    try {
      const core = api.getEngine()!;
      const buf = new Uint8Array(8192);
      const addr = core.registerLocalMemory(buf.subarray(4096));
      assert.equal(api.getBufferAddress(buf.subarray(4096 + 10)), addr + 10);
      assert.equal(api.getBufferAddress(buf), 0, 'the first half is not registered');
      core.unregisterLocalMemory(addr);
      assert.equal(api.getBufferAddress(buf.subarray(4096)), 0);
      assert.equal(api.unregisterMemory(buf.subarray(4096)), ERR_ADDRESS_NOT_REGISTERED);
      // And the other way: registered through the API, the core has it (and its address).
      assert.equal(api.registerMemory(buf, 4096), 0);
      assert.deepEqual(core.registeredAt(api.getBufferAddress(buf)), { addr: api.getBufferAddress(buf), length: 4096, byteOffset: 0 });
      assert.equal(api.unregisterMemory(buf), 0);
      assert.equal(core.addressOf(buf), 0);
    } finally {
      await api.close();
    }
  });

  it("the pool's own registrations (chunks, large buffers) cannot be unregistered as the caller's", async () => {
    const api = await started();
    try {
      const small = api.allocateManagedBuffer(4096);
      const large = api.allocateManagedBuffer(256 * 1024 * 1024 + 1); // above the largest class: registered alone
      assert.ok(small > 0 && large > 0);
      assert.equal(api.unregisterMemory(small), ERR_ADDRESS_NOT_REGISTERED, 'a chunk start is the pool\'s');
      assert.match(api.getLastError()!.message, /free them with freeManagedBuffer/);
      assert.equal(api.unregisterMemory(large), ERR_ADDRESS_NOT_REGISTERED, "a large buffer's registration is the pool's");
      assert.equal(api.batchUnregisterMemory([large]), ERR_ADDRESS_NOT_REGISTERED);
      assert.equal(api.writeBytesToBuffer(large, Buffer.from('still here'), 10), 0, 'still registered');
      assert.equal(api.writeBytesToBuffer(small, Buffer.from('still here'), 10), 0);
      // registerMemory(address) inside the pool is recorded by the API (the core holds the whole chunk) and ends as recorded.
      assert.equal(api.registerMemory(large, 4096), 0);
      assert.equal(api.unregisterMemory(large), 0);
      assert.equal(api.freeManagedBuffer(large, 256 * 1024 * 1024 + 1), 0);
      assert.equal(api.freeManagedBuffer(small, 4096), 0);
    } finally {
      await api.close();
    }
  });
});

describe('batches: ids are the core\'s, outcomes come from waitBatch', () => {
  it("an async call's id is a core batch id (the next one the core hands out follows it)", async () => {
    const api = await started();
    try {
      const buf = new Uint8Array(SIZE);
      api.registerMemory(buf, SIZE);
      const id = await api.transferSubmitWrite(peer.segmentName, api.getBufferAddress(buf), remote, 64);
      const core = api.getEngine()!;
      const next = core.allocateBatchID(1);
      core.freeBatchID(next);
      assert.equal(next, id + 1);
      assert.ok(core.batchIdIssued(id));
      assert.equal(await poll(api, id), 1);
      assert.equal(api.transferCheckStatus(id), ERR_INVALID_BATCH);
    } finally {
      await api.close();
    }
  });

  it('no task is asked about again: getTransferStatus is never called, and the failure reported is the status waitBatch returned', async () => {
    const api = await started();
    try {
      const core = api.getEngine()!;
      let asked = 0;
      core.getTransferStatus = () => {
        asked++;
        throw new Error('the API must use the statuses waitBatch returned');
      };
      const returned: TransferStatus[][] = [];
      const wait = core.waitBatch.bind(core);
      core.waitBatch = async (id) => {
        const statuses = await wait(id);
        returned.push(statuses);
        return statuses;
      };
      const buf = new Uint8Array(SIZE);
      api.registerMemory(buf, SIZE);
      const ptr = api.getBufferAddress(buf);
      assert.equal(await api.transferSyncWrite(peer.segmentName, ptr, remote, 4096), 0);
      assert.equal(await api.batchTransferSyncRead(peer.segmentName, [ptr, ptr + 4096], [remote, remote + 4096], [16, 16]), 0);
      assert.equal(await poll(api, await api.transferSubmitWrite(peer.segmentName, ptr, remote, 64)), 1);
      // Task 1 of this batch is refused by the peer (outside its memory).
      assert.equal(await api.batchTransferSyncWrite(peer.segmentName, [ptr, ptr], [remote, remote + SIZE], [16, 16]), ERR_FAILED);
      const failed = returned.at(-1)!;
      assert.equal(failed[0]!.status, TaskStatus.COMPLETED);
      assert.equal(failed[1]!.status, TaskStatus.FAILED);
      const err = api.getLastError()!;
      assert.equal(err.code, failed[1]!.error!.code);
      assert.equal((err.cause as Error).cause, failed[1]!.error, 'the error is the status\'s own');
      assert.match(err.message, /task 1 failed/);
      assert.equal(asked, 0);
      assert.equal(returned.length, 4);
    } finally {
      await api.close();
    }
  });

  it('batchError: a failure before a timeout, a timeout alone, nothing when all completed', () => {
    const done: TransferStatus = { status: TaskStatus.COMPLETED, transferred: 1 };
    const late: TransferStatus = { status: TaskStatus.TIMEOUT, transferred: 0, error: teError(ErrorCode.TIMEOUT, 'slow') };
    const refused: TransferStatus = { status: TaskStatus.FAILED, transferred: 0, error: teError(ErrorCode.ADDRESS_REJECTED, 'no') };
    assert.equal(batchError([done, done], 'w'), null);
    const f = batchError([done, late, refused], 'w')!;
    assert.ok(f instanceof ApiFailure && f.returnCode === ERR_FAILED && f.code === ErrorCode.ADDRESS_REJECTED);
    assert.match(f.message, /^w: task 2 failed: no$/);
    const t = batchError([done, late], 'w')!;
    assert.equal(t.code, ErrorCode.TIMEOUT);
    assert.match(t.message, /^w: task 1 timed out: slow$/);
    assert.ok(!(t instanceof ApiFailure), `${ERR_TIMEOUT} comes from the core code`);
  });
});
