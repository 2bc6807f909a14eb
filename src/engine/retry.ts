/**
 * The retry policy, pure (no slices, pins, timers or I/O), so that the cases
 * only fault scenarios reach are unit-tested (test/engine-retry.test.ts):
 * which slice failures a round may cure, whether a round that ended is
 * retried, and the backoff before the next one. The Task (batch.ts) keeps
 * the slices; dispatch.ts runs the rounds (retryTask).
 */
import { Failure } from '../transport/slice.js';

/** Backoff before retry round k: uniform in [0, min(RETRY_CAP_MS, RETRY_BASE_MS * 2^k)). */
export const RETRY_BASE_MS = 20;
export const RETRY_CAP_MS = 1000;

/**
 * "Full jitter", so tasks that failed together do not come back together.
 * With MC_RETRY_CNT=5: at most 20+40+80+160+320 ms in all. `random` is in [0, 1).
 */
export function retryBackoffMs(round: number, random: number): number {
  return random * Math.min(RETRY_CAP_MS, RETRY_BASE_MS * 2 ** round);
}

/** What one slice's end means for its task's round. */
export type SliceVerdict = 'done' | 'hold' | 'fail';

/**
 * What one round of a task has seen so far (a Task holds these fields
 * itself: no object per task on the data path). Retryable: lost, refused or
 * timed-out connections, a paused peer, an address rejection, another engine
 * at the peer's address, and slices never sent because the round was halted.
 * Not: protocol errors (a peer that speaks garbage), authentication, closed,
 * the peer's file I/O, detached local memory (all FATAL).
 */
export interface RoundState {
  /** Slices held for the next round. */
  held: number;
  /** A slice completed this round. */
  progressed: boolean;
  /** Every failure of this round was a timeout (no progress for MC_TRANSFER_TIMEOUT). */
  onlyTimeouts: boolean;
  /**
   * Every failure of this round was an address rejection or another engine at
   * the peer's address: resend only if the refetched descriptor changed.
   */
  needsNewDescriptor: boolean;
}

/** Start a round afresh. */
export function resetRound(s: RoundState): void {
  s.held = 0;
  s.progressed = false;
  s.onlyTimeouts = true;
  s.needsNewDescriptor = true;
}

/**
 * Record one slice's end: `null` when it completed, else its failure.
 * `retries`: the task may be retried at all (a remote one).
 */
export function recordSlice(s: RoundState, failure: Failure | null, retries: boolean): SliceVerdict {
  if (failure === null) {
    s.progressed = true;
    return 'done';
  }
  if (!retries) return 'fail';
  // Never sent: held like the failure that halted the round, which decides it.
  if (failure === Failure.SKIPPED) {
    s.held++;
    return 'hold';
  }
  if (failure === Failure.FATAL) return 'fail';
  s.held++;
  if (failure !== Failure.REJECTED && failure !== Failure.WRONG_PEER) s.needsNewDescriptor = false;
  if (failure !== Failure.TIMEOUT) s.onlyTimeouts = false;
  return 'hold';
}

/**
 * The round's slices have all ended: retry it? Not when a slice failed for
 * good (`failed`), nothing is held, or the task stalled: timeouts alone are
 * retried only if the task progressed meanwhile (the stall was one
 * connection's); a task with no progress at all for MC_TRANSFER_TIMEOUT
 * ends in TIMEOUT, as documented.
 */
export function retryRound(s: RoundState, failed: boolean): boolean {
  const stalled = s.onlyTimeouts && !s.progressed;
  return s.held > 0 && !failed && !stalled;
}

/** A round on its own (tests, and any caller that wants one as an object). */
export class RetryRound implements RoundState {
  held = 0;
  progressed = false;
  onlyTimeouts = true;
  needsNewDescriptor = true;

  record(failure: Failure | null, retries: boolean): SliceVerdict {
    return recordSlice(this, failure, retries);
  }

  retry(failed: boolean): boolean {
    return retryRound(this, failed);
  }
}
