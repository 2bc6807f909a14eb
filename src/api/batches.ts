/**
 * The outcomes of the batches handed out by the Python binding's async calls
 * (transferSubmit*, batchTransferAsync*), until the caller collects their
 * final status (transferCheckStatus, getBatchTransferStatus).
 *
 * A batch's id is the core's (allocateBatchID). Its resources (the core batch,
 * the pins on managed buffers) are released when its last task ends, whether
 * or not anyone collects it: what stays here is a small record with the
 * outcome, because the binding's contract is that a final status is reported
 * once, possibly long after the core batch is gone. Records of finished
 * batches nobody collects are bounded too: past MAX_FINISHED, the oldest are
 * dropped (a later check of such an id is ERR_INVALID_BATCH, with a message
 * saying why).
 */
import type { BatchID } from '../engine/types.js';
import type { TransferEngineError } from '../errors.js';

/** How many finished, uncollected batches are kept (about 200 bytes each, more for a failure's error). */
export const MAX_FINISHED = 65_536;

/** A finished batch's outcome: null when every task completed, else the error its check reports (-1 or -2). */
export type BatchOutcome = TransferEngineError | null;

export interface BatchRecord {
  /** Bytes the batch moves (for its MC_TRANSFER_TIMEOUT + 1 ns/byte deadline). */
  readonly bytes: number;
  /** When it was submitted (performance.now()). */
  readonly startedAt: number;
  /** The async call's options.timeoutMs: the batch is canceled then (ERR_TIMEOUT); undefined: the default deadline, which getBatchTransferStatus applies. */
  readonly timeoutMs?: number | undefined;
  /** undefined while tasks run. */
  outcome: BatchOutcome | undefined;
  /** Resolves with the outcome when the last task ends. */
  readonly done: Promise<BatchOutcome>;
}

export class BatchTable {
  private readonly records = new Map<BatchID, BatchRecord>();
  /** Ids of finished records, oldest first (a Set keeps insertion order). */
  private readonly finished = new Set<BatchID>();
  /** Finished records dropped because more than `maxFinished` were uncollected. */
  dropped = 0;

  constructor(
    private readonly maxFinished = MAX_FINISHED,
    /** Told the first time records are dropped (then every 10,000th drop), for a log line. */
    private readonly onDrop: (dropped: number) => void = () => {},
  ) {}

  /** Keep `record` under the core batch id it was submitted with. */
  add(id: BatchID, record: BatchRecord): void {
    this.records.set(id, record);
    void record.done.then(() => this.finish(id));
  }

  get(id: BatchID): BatchRecord | undefined {
    return this.records.get(id);
  }

  /** Forget a record (its final status was collected). */
  delete(id: BatchID): void {
    this.records.delete(id);
    this.finished.delete(id);
  }

  clear(): void {
    this.records.clear();
    this.finished.clear();
  }

  get size(): number {
    return this.records.size;
  }

  private finish(id: BatchID): void {
    if (!this.records.has(id)) return; // collected already (getBatchTransferStatus waits, then deletes)
    this.finished.add(id);
    while (this.finished.size > this.maxFinished) {
      const oldest = this.finished.values().next().value as BatchID;
      this.finished.delete(oldest);
      this.records.delete(oldest);
      if (this.dropped++ % 10_000 === 0) this.onDrop(this.dropped);
    }
  }
}
