/**
 * A slice is one wire request: a contiguous piece of a task. Large tasks are
 * split into several slices that run on different lanes; a task settles once
 * all its slices have settled, so no byte of a finished task is still moving.
 */
import type { TransferEngineError } from '../errors.js';
import { Lease } from '../lease.js';
import type { Region } from '../memory.js';

/**
 * Why a slice failed, as the transport saw it: the engine's retry policy
 * (src/engine/retry.ts) decides from this whether resending can help.
 */
export const Failure = {
  /** Settled without error. */
  NONE: 0,
  /** No connection could be made (refused, unreachable, connect timeout): the peer may have moved. */
  CONNECT: 1,
  /** The connection broke with the request in flight (reset, closed, write error). */
  LOST: 2,
  /** No progress for the transfer timeout (on a lane, or waiting for one). */
  TIMEOUT: 3,
  /** Not tried: the peer is paused after failing to connect several times in a row. */
  PAUSED: 4,
  /** The peer refused the range (outside its registered memory or files). */
  REJECTED: 5,
  /** Resending cannot help: protocol error, engine closed, the peer's file I/O failed. */
  FATAL: 6,
  /** Another engine answers at the peer's address (identity check): only a new descriptor can help. */
  WRONG_PEER: 7,
  /** Never sent: another slice of the same task had already failed for good this round, or the task was canceled (SliceOwner.halted). */
  SKIPPED: 8,
} as const;
export type Failure = (typeof Failure)[keyof typeof Failure];

/**
 * Failures after which the task's slices not yet sent are not sent this round
 * (they would fail the same way, or the task fails anyway): a rejected range,
 * another engine at the address, a fatal error.
 */
export function haltsTask(f: Failure): boolean {
  return f === Failure.REJECTED || f === Failure.WRONG_PEER || f === Failure.FATAL;
}

/**
 * Task cancels, counted process-wide (src/engine/batch.ts, Task.cancel): a
 * TCP peer that sees the count changed at its periodic sweep settles the
 * halted slices it holds queued (tcp/peer.ts), so that the memory of a task
 * canceled behind a stalled lane is not pinned until the transfer timeout.
 * (Its pump settles them anyway as it reaches them; no per-slice cost.)
 */
export const cancels = { count: 0 };

export interface SliceOwner {
  /** Called exactly once per slice. `error` null means every byte was acknowledged; `slice.failure` says why not. */
  sliceDone(slice: Slice, error: TransferEngineError | null): void;
  /**
   * True once a slice of the task failed in a way that dooms the round
   * (haltsTask), or once the task was canceled: the transport then settles
   * the task's slices still queued as SKIPPED instead of sending them (and
   * their pins go with them). Requests already written are not recalled.
   */
  readonly halted: boolean;
  /** Called when one of the owner's slices (or a part of one) fails with a failure that haltsTask. */
  halt(): void;
}

/** A slice holds one pin of its local region (it is the lease) from creation until it settles. */
export class Slice extends Lease {
  /** READ bytes received so far. */
  received = 0;
  /** v2: the status frame for this slice has been read. */
  statusSeen = false;
  /** v2 WRITE: the lane's count of payload writes once this one's payload is handed to the socket (tcp/lane.ts; tcp/replies.ts counts them done). */
  bodySeq = 0;
  queuedAt = 0;
  settled = false;
  failure: Failure = Failure.NONE;
  /** Fixed at creation: `local` reads 0 bytes long if its memory is detached meanwhile. */
  readonly length: number;

  constructor(
    readonly owner: SliceOwner,
    readonly write: boolean,
    /** Absolute address in the peer's segment; for a file slice, the offset in the file. */
    readonly remoteAddr: bigint,
    /** Local bytes: the source of a WRITE, the destination of a READ. */
    readonly local: Uint8Array,
    /** The local region, pinned while the slice is in flight. */
    readonly region: Region,
    /** Set for our file requests: the peer's file id (src/codec/wire.ts, file requests). */
    readonly fileId?: number,
  ) {
    super(region);
    this.length = local.length;
  }

  /** The task this slice belongs to has failed for good this round, or was canceled: do not send it. */
  get halted(): boolean {
    return this.owner.halted;
  }

  /** End the slice: `error` null when every byte was acknowledged; else why (FATAL unless told). */
  settle(error: TransferEngineError | null, failure: Failure = Failure.FATAL): void {
    if (this.settled) return;
    this.settled = true;
    if (error) {
      this.failure = failure;
      if (haltsTask(failure)) this.owner.halt();
    }
    this.release();
    this.owner.sliceDone(this, error);
  }
}
