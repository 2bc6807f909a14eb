/**
 * A slice is one wire request: a contiguous piece of a task. Large tasks are
 * split into several slices that run on different lanes; a task settles once
 * all its slices have settled, so no byte of a finished task is still moving.
 */
import type { TransferEngineError } from '../errors.js';
import type { Region } from '../memory.js';

export interface SliceOwner {
  /** Called exactly once per slice. `error` null means every byte was acknowledged. */
  sliceDone(slice: Slice, error: TransferEngineError | null): void;
}

export class Slice {
  /** READ bytes received so far. */
  received = 0;
  /** v2: the status frame for this slice has been read. */
  statusSeen = false;
  queuedAt = 0;
  settled = false;

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
  ) {}

  get length(): number {
    return this.local.length;
  }

  settle(error: TransferEngineError | null): void {
    if (this.settled) return;
    this.settled = true;
    this.region.pins--;
    this.owner.sliceDone(this, error);
  }
}
