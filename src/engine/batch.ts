/**
 * Batches and their tasks: one task per request, its slices in flight, its
 * retry rounds' held slices, its status. The retry policy itself is
 * retry.ts; dispatch.ts runs the rounds.
 */
import { teError, ErrorCode, type TransferEngineError } from '../errors.js';
import { Lease } from '../lease.js';
import { cancels, Failure, type Slice } from '../transport/slice.js';
import type { TaskSink, TransportName } from '../transport/transport.js';
import { recordSlice, resetRound, retryRound, type RoundState } from './retry.js';
import type { RemoteSegment } from './segments.js';
import type { EndedTask, Telemetry } from './telemetry.js';
import { TaskStatus, type BatchID, type TransferStatus } from './types.js';

/**
 * One request. Its slices go out; those that fail in a way resending can cure
 * are held (pinned) and, once no slice of the task is in flight, resent
 * together in a retry round (retryTask in dispatch.ts), up to MC_RETRY_CNT
 * rounds. Resending is safe because both operations are idempotent: a WRITE
 * puts the same bytes at the same address again (the source stays pinned and
 * unchanged until the task ends), a READ copies the same range into the same
 * place again. A task is COMPLETED only when every slice was acknowledged.
 */
export class Task implements TaskSink, RoundState, EndedTask {
  status: TaskStatus = TaskStatus.WAITING;
  transferred = 0;
  error: TransferEngineError | undefined;
  pending = 0;

  /** Slices to resend in the next round, and a pin of each one's region held until then. */
  retryable: Slice[] = [];
  private holds: Lease[] = [];
  /** The first error of this round's failures: the task's error if it gives up. */
  retryError: TransferEngineError | undefined;
  // This round's bookkeeping (retry.ts, RoundState): fields of the task, not an object per task.
  held = 0;
  progressed = false;
  onlyTimeouts = true;
  needsNewDescriptor = true;
  /**
   * A slice failed this round in a way that dooms the round (haltsTask), or
   * the task was canceled (then for good): slices not sent yet are skipped.
   */
  halted = false;
  /** Retry rounds started. */
  rounds = 0;
  /** The segment's generation this task last sent with. */
  generation: number;
  /** The backoff before the next round. */
  retryTimer: NodeJS.Timeout | null = null;
  /** The transport that took it (the dispatcher sets it); null until one did. */
  via: TransportName | null = null;
  /** When it was submitted (performance.now()): its submitTransfer call's time, read once for all its requests. */
  readonly startedAt: number;
  /** Its index in its batch. */
  readonly index: number;
  /** Canceled before it ended: reported CANCELED; what transports still do for it only drains it. */
  canceled = false;
  private drained = true;
  private canceledReport: TransferStatus | null = null;

  constructor(
    private readonly batch: Batch,
    readonly write: boolean,
    private readonly telemetry: Telemetry,
    /** The peer's segment (set when its open completes, for a task submitted while it opened); null: local, never retried. */
    public seg: RemoteSegment | null = null,
    /** Starts a retry round (the engine's, shared by all tasks); null: no retries. */
    private readonly onRetry: ((task: Task) => void) | null = null,
  ) {
    this.generation = seg?.generation ?? 0;
    this.index = batch.tasks.length;
    this.startedAt = batch.submittedAt;
    batch.tasks.push(this);
    batch.unfinished++;
    telemetry.taskStarted();
  }

  get batchId(): BatchID {
    return this.batch.id;
  }

  /** The peer segment's name (telemetry reads it for failed tasks only). */
  get peer(): string | undefined {
    return this.seg?.name;
  }

  get timedOut(): boolean {
    return this.error?.code === ErrorCode.TIMEOUT;
  }

  halt(): void {
    this.halted = true;
  }

  sliceDone(slice: Slice, error: TransferEngineError | null): void {
    if (this.canceled) {
      // Reported already: only wait for the last wire request to end (the slice released its own pin).
      if (--this.pending === 0) this.finish();
      return;
    }
    const verdict = recordSlice(this, error === null ? null : slice.failure, this.onRetry !== null);
    if (verdict === 'done') this.transferred += slice.length;
    else if (verdict === 'hold') {
      this.holds.push(new Lease(slice.region));
      this.retryable.push(slice);
      if (slice.failure !== Failure.SKIPPED) this.retryError ??= error!;
    } else this.error ??= error!;
    if (--this.pending > 0) return;
    if (retryRound(this, this.error !== undefined)) this.onRetry!(this);
    else this.giveUp();
  }

  /**
   * Start the next round: the held slices, with the round's state reset, and
   * their pins, which the caller releases once the new slices (which pin
   * their regions themselves) are out: the memory stays pinned throughout.
   */
  takeRetryable(): { slices: Slice[]; holds: Lease[] } {
    const slices = this.retryable;
    const holds = this.holds;
    this.retryable = [];
    this.holds = [];
    this.retryError = undefined;
    resetRound(this);
    this.halted = false;
    this.pending = slices.length;
    return { slices, holds };
  }

  /** Finish without (more) retries: unpin held slices, report the first error. */
  giveUp(): void {
    for (const h of this.holds) h.release();
    if (this.retryable.length > 0) this.error ??= this.retryError;
    this.retryable = [];
    this.holds = [];
    this.finish();
  }

  /**
   * The transport is done with the task (every wire request ended, or the
   * whole-request copy or I/O returned): report it, or, for a task canceled
   * before, only count it as drained (its report stands).
   */
  finish(): void {
    if (this.canceled) {
      if (!this.drained) {
        this.drained = true;
        this.batch.taskDrained();
      }
      return;
    }
    this.report(this.error ? (this.timedOut ? TaskStatus.TIMEOUT : TaskStatus.FAILED) : TaskStatus.COMPLETED);
  }

  /**
   * Cancel the task if it has not ended: it ends CANCELED now (waitBatch sees
   * it), and its wire requests in flight run out; until the transport is
   * done with it (`busy`), the batch counts it as draining and its memory
   * stays pinned by those requests. Held retry slices are unpinned now; its
   * TCP slices not written yet are halted: settled instead of sent, when
   * their peer next pumps or sweeps (src/transport/tcp/peer.ts).
   * @param busy whether a transport or a segment open still holds the task
   */
  cancel(error: TransferEngineError, busy: boolean): boolean {
    if (this.status !== TaskStatus.WAITING) return false;
    this.halted = true; // never reset: no retry round follows a cancel (dispatch.ts, resend)
    cancels.count++;
    for (const h of this.holds) h.release();
    this.retryable = [];
    this.holds = [];
    this.error = error;
    this.report(TaskStatus.CANCELED);
    this.canceled = true;
    this.canceledReport = { status: TaskStatus.CANCELED, transferred: this.transferred, error };
    this.drained = !busy;
    if (busy) this.batch.draining++;
    return true;
  }

  private report(status: TaskStatus): void {
    this.status = status;
    this.telemetry.taskEnded(this);
    const peer = this.seg?.traffic;
    if (peer) {
      if (this.write) peer.bytesWritten += this.transferred;
      else peer.bytesRead += this.transferred;
      if (status === TaskStatus.COMPLETED) peer.completed++;
      else if (status !== TaskStatus.CANCELED) peer.failed++;
    }
    this.batch.taskFinished();
  }

  /** The task's status as the API reports it (a canceled task's, as it was when canceled). */
  get statusReport(): TransferStatus {
    if (this.canceledReport) return this.canceledReport;
    return this.error ? { status: this.status, transferred: this.transferred, error: this.error } : { status: this.status, transferred: this.transferred };
  }
}

export class Batch {
  readonly tasks: Task[] = [];
  unfinished = 0;
  /** When the latest submitTransfer call began (performance.now()): its tasks' start time. */
  submittedAt = 0;
  private waiters: Array<() => void> = [];

  constructor(
    readonly id: BatchID,
    readonly capacity: number,
  ) {}

  /** Canceled tasks whose transport is not done with them yet (wire requests in flight). */
  draining = 0;
  private drainWaiters: Array<() => void> = [];

  taskFinished(): void {
    if (--this.unfinished === 0) {
      const w = this.waiters;
      this.waiters = [];
      for (const f of w) f();
    }
  }

  taskDrained(): void {
    if (--this.draining === 0) {
      const w = this.drainWaiters;
      this.drainWaiters = [];
      for (const f of w) f();
    }
  }

  whenDone(): Promise<void> {
    if (this.unfinished === 0) return Promise.resolve();
    return new Promise((resolve) => this.waiters.push(resolve));
  }

  /** Resolves once no canceled task of this batch has a wire request in flight. */
  whenDrained(): Promise<void> {
    if (this.draining === 0) return Promise.resolve();
    return new Promise((resolve) => this.drainWaiters.push(resolve));
  }
}

/** The engine's batches by id. Ids start at 1 and are never reused, so a freed id is told from a made-up one. */
export class BatchTable {
  private readonly batches = new Map<BatchID, Batch>();
  private next = 1;

  /** A new batch of at most `size` tasks. */
  allocate(size: number): BatchID {
    if (!Number.isSafeInteger(size) || size <= 0) {
      throw teError(ErrorCode.INVALID_ARGUMENT, `batch size ${String(size)} must be a positive integer`);
    }
    const id = this.next++;
    this.batches.set(id, new Batch(id, size));
    return id;
  }

  /** Was `id` allocated here (freed since or not)? */
  issued(id: BatchID): boolean {
    return Number.isSafeInteger(id) && id >= 1 && id < this.next;
  }

  /** The batch, or TE_INVALID_BATCH. */
  get(id: BatchID): Batch {
    const b = this.batches.get(id);
    if (!b) throw teError(ErrorCode.INVALID_BATCH, `batch ${String(id)} does not exist (never allocated, or freed)`);
    return b;
  }

  /** Forget a batch; refused (TE_BATCH_BUSY) while any of its tasks is unfinished or draining after a cancel. */
  free(id: BatchID): void {
    const batch = this.get(id);
    if (batch.unfinished > 0) {
      throw teError(ErrorCode.BATCH_BUSY, `batch ${id} has ${batch.unfinished} unfinished task(s)`);
    }
    if (batch.draining > 0) {
      throw teError(ErrorCode.BATCH_BUSY, `batch ${id} has ${batch.draining} canceled task(s) whose wire requests have not all ended: await cancelBatch(${id})`);
    }
    this.batches.delete(id);
  }
}
