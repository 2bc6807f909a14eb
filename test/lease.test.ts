/** Pins as leases (src/lease.ts): one owner each, release idempotent, unregistering refused while any is held. */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { ErrorCode, TransferEngineError } from '../src/errors.js';
import { Lease } from '../src/lease.js';
import { MemoryRegistry } from '../src/memory.js';
import { Failure, Slice, type SliceOwner } from '../src/transport/slice.js';

function owner(): SliceOwner & { done: number } {
  return {
    done: 0,
    halted: false,
    halt() {},
    sliceDone() {
      this.done++;
    },
  };
}

describe('Lease', () => {
  test('takes one pin, gives it back once however often released', () => {
    const r = { pins: 0 };
    const a = new Lease(r);
    const b = new Lease(r);
    assert.equal(r.pins, 2);
    assert.equal(a.release(), true);
    assert.equal(a.release(), false, 'a second release reports nothing done');
    assert.equal(a.holding, false);
    assert.equal(r.pins, 1, 'the second release did not take the other lease\'s pin');
    b.release();
    assert.equal(r.pins, 0);
  });

  test('a region with a lease held cannot be unregistered (TE_REGION_BUSY); after release it can', () => {
    const reg = new MemoryRegistry();
    const region = reg.register(new Uint8Array(4096), {});
    const pin = new Lease(region);
    assert.throws(() => reg.unregister(region.addr), (e: unknown) => e instanceof TransferEngineError && e.code === ErrorCode.REGION_BUSY);
    pin.release();
    pin.release();
    assert.equal(region.pins, 0);
    reg.unregister(region.addr);
  });
});

describe('Slice is the lease of its region', () => {
  test('made: pinned; settled: released exactly once, whatever settles it again', () => {
    const reg = new MemoryRegistry();
    const region = reg.register(new Uint8Array(8192), {});
    const o = owner();
    const s = new Slice(o, true, 0n, region.bytes.subarray(0, 4096), region);
    const t = new Slice(o, false, 4096n, region.bytes.subarray(4096), region);
    assert.equal(region.pins, 2);
    s.settle(null);
    s.settle(new TransferEngineError(ErrorCode.CLOSED, 'late'), Failure.LOST);
    assert.equal(region.pins, 1, 'the second settle neither released again nor reported again');
    assert.equal(o.done, 1);
    t.settle(new TransferEngineError(ErrorCode.PEER_UNREACHABLE, 'gone'), Failure.CONNECT);
    assert.equal(region.pins, 0);
    assert.equal(o.done, 2);
  });
});
