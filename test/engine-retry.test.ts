/** The retry policy (src/engine/retry.ts), unit by unit: backoff bounds, what a round holds, when it is retried. */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { RETRY_BASE_MS, RETRY_CAP_MS, RetryRound, retryBackoffMs } from '../src/engine/retry.js';
import { Failure } from '../src/transport/slice.js';

describe('retryBackoffMs: full jitter, doubling, capped', () => {
  test('round k draws from [0, min(cap, base * 2^k))', () => {
    for (let k = 0; k < 12; k++) {
      const ceiling = Math.min(RETRY_CAP_MS, RETRY_BASE_MS * 2 ** k);
      assert.equal(retryBackoffMs(k, 0), 0, `round ${k}, random 0`);
      assert.equal(retryBackoffMs(k, 0.5), ceiling / 2, `round ${k}, random 0.5`);
      const top = retryBackoffMs(k, 1 - Number.EPSILON);
      assert.ok(top < ceiling && top > ceiling * 0.99, `round ${k}: ${top} against ${ceiling}`);
    }
  });

  test('with MC_RETRY_CNT=5 the backoffs add up to at most 20+40+80+160+320 ms', () => {
    let worst = 0;
    for (let k = 0; k < 5; k++) worst += retryBackoffMs(k, 1);
    assert.equal(worst, 620);
  });
});

const RETRYABLE = [Failure.CONNECT, Failure.LOST, Failure.TIMEOUT, Failure.PAUSED, Failure.REJECTED, Failure.WRONG_PEER];

describe('RetryRound: one round of a task', () => {
  test('a completed slice is done and counts as progress', () => {
    const r = new RetryRound();
    assert.equal(r.record(null, true), 'done');
    assert.equal(r.progressed, true);
    assert.equal(r.held, 0);
    assert.equal(r.retry(false), false, 'nothing held: nothing to retry');
  });

  test('every retryable failure is held; FATAL fails the task', () => {
    for (const f of RETRYABLE) {
      const r = new RetryRound();
      assert.equal(r.record(f, true), 'hold', `failure ${f}`);
      assert.equal(r.held, 1);
    }
    assert.equal(new RetryRound().record(Failure.FATAL, true), 'fail');
  });

  test('a task that may not be retried (local) fails on any failure', () => {
    for (const f of [...RETRYABLE, Failure.FATAL, Failure.SKIPPED]) assert.equal(new RetryRound().record(f, false), 'fail', `failure ${f}`);
  });

  test('SKIPPED slices are held without deciding the round', () => {
    const r = new RetryRound();
    assert.equal(r.record(Failure.SKIPPED, true), 'hold');
    assert.equal(r.needsNewDescriptor, true);
    assert.equal(r.onlyTimeouts, true);
  });

  test('only rejections and wrong peers need a new descriptor', () => {
    const r = new RetryRound();
    r.record(Failure.REJECTED, true);
    r.record(Failure.WRONG_PEER, true);
    assert.equal(r.needsNewDescriptor, true);
    r.record(Failure.LOST, true);
    assert.equal(r.needsNewDescriptor, false);
  });

  test('timeouts alone without progress are a stall: not retried (the task ends in TIMEOUT)', () => {
    const r = new RetryRound();
    r.record(Failure.TIMEOUT, true);
    r.record(Failure.TIMEOUT, true);
    assert.equal(r.onlyTimeouts, true);
    assert.equal(r.retry(false), false);
  });

  test('timeouts with progress meanwhile are retried (one connection stalled)', () => {
    const r = new RetryRound();
    r.record(Failure.TIMEOUT, true);
    r.record(null, true);
    assert.equal(r.retry(false), true);
  });

  test('a timeout beside another failure is retried', () => {
    const r = new RetryRound();
    r.record(Failure.TIMEOUT, true);
    r.record(Failure.CONNECT, true);
    assert.equal(r.onlyTimeouts, false);
    assert.equal(r.retry(false), true);
  });

  test('held slices of a task that failed for good are not retried', () => {
    const r = new RetryRound();
    r.record(Failure.LOST, true);
    assert.equal(r.record(Failure.FATAL, true), 'fail');
    assert.equal(r.retry(true), false);
  });
});
