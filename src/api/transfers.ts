/**
 * The Python binding's transfers over the core's batches: the sync calls (submit, wait
 * with a deadline, then an optional Notify) and the async ones (a core batch
 * id handed to the caller, whose final status is collected once).
 *
 * The core checks every request (opcode, local range, target range); this
 * module adds what the binding's API has and the core does not: three parallel
 * lists, transport hints, managed buffers pinned while a transfer uses them,
 * deadlines of MC_TRANSFER_TIMEOUT + 1 ns/byte, and outcomes kept for the
 * caller after the core batch is freed. A batch's outcome comes from the
 * statuses waitBatch returns; no task is asked about again.
 */
import type { TransferEngine as CoreEngine } from '../engine/engine.js';
import { TaskStatus, TransferOpcode, type BatchID, type RequestRanges, type SegmentHandle, type TransferStatus } from '../engine/types.js';
import { ErrorCode, TransferEngineError, teError } from '../errors.js';
import { toLength, toLocalAddress, type SyncOptions } from './args.js';
import { BatchTable, MAX_FINISHED, type BatchOutcome, type BatchRecord } from './batches.js';
import { ApiFailure, ERR_FAILED, ERR_NOTIFY_FAILED } from './codes.js';
import { syncDeadlineMs } from './env.js';
import type { Logger } from './log.js';
import type { Registrations } from './registrations.js';

const TRANSPORT_HINTS_OK = new Set(['', 'tcp', 'unspec']);
const TRANSPORT_HINTS_UNSUPPORTED = new Set(['rdma', 'mnnvl', 'shm', 'nvlink', 'gds', 'io_uring', 'ascend', 'sunrise_link']);

const TIMED_OUT = Symbol('timed out');
const ABORTED = Symbol('aborted');

/** `p`, or TIMED_OUT after `ms`, or ABORTED once `signal` aborts, whichever comes first. */
function withDeadline<T>(p: Promise<T>, ms: number, signal?: AbortSignal): Promise<T | typeof TIMED_OUT | typeof ABORTED> {
  return new Promise((resolve, reject) => {
    const onAbort = (): void => {
      clearTimeout(t);
      resolve(ABORTED);
    };
    const t = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve(TIMED_OUT);
    }, Math.max(0, ms));
    signal?.addEventListener('abort', onAbort, { once: true });
    p.then(
      (v) => {
        clearTimeout(t);
        signal?.removeEventListener('abort', onAbort);
        resolve(v);
      },
      (e: unknown) => {
        clearTimeout(t);
        signal?.removeEventListener('abort', onAbort);
        reject(e);
      },
    );
  });
}

/** The error of a finished batch from the statuses waitBatch returned, or null when every task completed. */
export function batchError(statuses: readonly TransferStatus[], what: string): TransferEngineError | null {
  const failed = statuses.findIndex((s) => s.status === TaskStatus.FAILED);
  const timedOut = statuses.findIndex((s) => s.status === TaskStatus.TIMEOUT);
  const canceled = statuses.findIndex((s) => s.status === TaskStatus.CANCELED);
  // A failure is reported before a timeout, and both before a cancel: the more specific news first.
  const i = failed >= 0 ? failed : timedOut >= 0 ? timedOut : canceled;
  if (i < 0) return null;
  const s = statuses[i]!;
  const detail = s.error?.message ?? TaskStatus[s.status];
  if (s.status === TaskStatus.TIMEOUT) return teError(ErrorCode.TIMEOUT, `${what}: task ${i} timed out: ${detail}`, s.error);
  if (s.status === TaskStatus.CANCELED) return teError(ErrorCode.CANCELED, `${what}: task ${i} was canceled: ${detail}`, s.error);
  return new ApiFailure(ERR_FAILED, s.error?.code ?? ErrorCode.PROTOCOL_ERROR, `${what}: task ${i} failed: ${detail}`, s.error);
}

/** The Python binding's three lists of a transfer. */
export interface TransferLists {
  buffers: ReadonlyArray<number | bigint>;
  peers: ReadonlyArray<number | bigint>;
  lengths: ReadonlyArray<number | bigint>;
}

/** A transfer the core has checked (nothing sent yet): its requests without a target, and the managed buffers to pin. */
interface Checked {
  requests: RequestRanges[];
  pins: number[];
  bytes: number;
}

export class Transfers {
  /** Outcomes of the async calls' batches until collected (batches.ts says why the core's batch table cannot hold them). */
  private readonly outcomes: BatchTable;

  constructor(
    private readonly core: CoreEngine,
    private readonly memory: Registrations,
    private readonly logger: Logger,
  ) {
    this.outcomes = new BatchTable(MAX_FINISHED, (n) =>
      logger.warning(`${n} finished batch(es) dropped uncollected: more than ${MAX_FINISHED} finished batches were never checked (transferCheckStatus / getBatchTransferStatus)`),
    );
  }

  /** Check a transfer completely, before its target segment is opened: bad input never reaches the peer. */
  private check(lists: TransferLists, opcode: TransferOpcode, transportHint: string): Checked {
    const { buffers, peers, lengths } = lists;
    if (buffers.length !== peers.length || buffers.length !== lengths.length) {
      throw teError(
        ErrorCode.INVALID_ARGUMENT,
        `buffers (${buffers.length}), peerBufferAddresses (${peers.length}) and lengths (${lengths.length}) must have the same length`,
      );
    }
    if (buffers.length === 0) throw teError(ErrorCode.INVALID_ARGUMENT, 'nothing to transfer: the lists are empty');
    if (!TRANSPORT_HINTS_OK.has(transportHint)) {
      if (TRANSPORT_HINTS_UNSUPPORTED.has(transportHint)) {
        throw teError(ErrorCode.NOT_SUPPORTED, `transport hint "${transportHint}" is not supported on this host (TCP only)`);
      }
      throw teError(ErrorCode.INVALID_ARGUMENT, `unknown transport hint "${transportHint}"`);
    }
    const at = (i: number): string => (buffers.length === 1 ? '' : `[${i}]`);
    // Numbers and bigints (Python ints) become the core's numbers; the ranges are the core's to check.
    const requests: RequestRanges[] = buffers.map((b, i) => ({
      opcode,
      length: toLength(lengths[i]!, `length${at(i)}`),
      targetOffset: peers[i]!,
      source: toLocalAddress(b, `buffer${at(i)}`),
    }));
    this.core.checkRequests(requests);
    const pins = this.memory.managedOwners(requests);
    return { requests, pins, bytes: requests.reduce((n, r) => n + r.length, 0) };
  }

  /**
   * Submit checked requests as one core batch. The managed buffers they use
   * stay pinned until the last task ends; then the core batch is freed and
   * `done` resolves with the outcome (`describe` names the transfer in its error).
   * A batch canceled (its `options`, or a sync call's deadline or signal) has
   * its outcome at once; its pins and core batch go once its wire requests
   * have ended.
   * @param options an async call's: `signal` cancels the batch (ERR_CANCELED),
   *   `timeoutMs` after the submission too (ERR_TIMEOUT). Sync calls keep their own.
   */
  private submit(c: Checked, handle: SegmentHandle, describe: (id: BatchID) => string, options: SyncOptions = {}): { id: BatchID; record: BatchRecord } {
    const core = this.core;
    const id = core.allocateBatchID(c.requests.length); // TE_CLOSED if closed while the segment opened
    try {
      core.submitTransfer(
        id,
        c.requests.map((r) => ({ ...r, targetId: handle })),
      );
    } catch (e) {
      core.freeBatchID(id);
      throw e;
    }
    const what = describe(id);
    const managed = this.memory.managed;
    for (const pin of c.pins) managed.pin(pin);
    const release = (): void => {
      for (const pin of c.pins) managed.unpin(pin);
      try {
        core.freeBatchID(id);
      } catch {
        /* the engine closed meanwhile: nothing left to free */
      }
    };
    // The async call's options: what canceled the batch, if they did (its outcome says so).
    const { signal, timeoutMs } = options;
    let canceledBy: 'signal' | 'timeout' | null = null;
    const cancel = (by: 'signal' | 'timeout'): void => {
      canceledBy ??= by;
      core.cancelBatch(id).catch(() => undefined); // rejects when every task had ended: nothing to do
    };
    const onAbort = signal ? (): void => cancel('signal') : null;
    if (onAbort) signal!.addEventListener('abort', onAbort, { once: true });
    const timer = timeoutMs === undefined ? null : setTimeout(cancel, timeoutMs, 'timeout');
    timer?.unref(); // the batch's own sockets and timeouts keep the process alive while it runs
    const finish = (outcome: BatchOutcome, canceled: boolean): BatchOutcome => {
      if (timer) clearTimeout(timer);
      if (onAbort) signal!.removeEventListener('abort', onAbort);
      record.outcome = outcome;
      // Canceled: reported now, but its managed buffers stay pinned and the batch allocated until
      // its wire requests have ended (cancelBatch resolves then; it rejects when none was left).
      if (canceled) void core.cancelBatch(id).catch(() => undefined).then(release);
      else release();
      return outcome;
    };
    const record: BatchRecord = {
      bytes: c.bytes,
      startedAt: performance.now(),
      timeoutMs,
      outcome: undefined,
      // Never rejects: a failure to wait (not expected: the batch was just submitted) is the batch's outcome.
      done: core.waitBatch(id).then(
        (statuses) => {
          const canceled = statuses.some((st) => st.status === TaskStatus.CANCELED);
          let outcome = batchError(statuses, what);
          if (canceledBy && outcome instanceof TransferEngineError && outcome.code === ErrorCode.CANCELED) {
            outcome =
              canceledBy === 'signal'
                ? teError(ErrorCode.CANCELED, `${what} canceled (options.signal)`, outcome)
                : teError(ErrorCode.TIMEOUT, `${what} not done within ${String(timeoutMs)} ms (options.timeoutMs): canceled`, outcome);
          }
          return finish(outcome, canceled);
        },
        (e: unknown) => finish(e instanceof TransferEngineError ? e : teError(ErrorCode.PROTOCOL_ERROR, `${what}: ${String(e)}`, e), false),
      ),
    };
    return { id, record };
  }

  /**
   * A sync transfer: open the segment, submit, wait, all within one deadline;
   * then the Notify, if any. Resolves when done; throws the failure.
   */
  async sync(
    method: string,
    targetHostname: string,
    lists: TransferLists,
    opcode: TransferOpcode,
    notify: { name: string; msg: string } | null,
    transportHint: string,
    options: SyncOptions = {},
  ): Promise<void> {
    const started = performance.now();
    const core = this.core;
    const c = this.check(lists, opcode, transportHint);
    if (notify) core.notifyFrame({ name: notify.name, msg: notify.msg }); // too large: refused before any byte moves
    const op = opcode === TransferOpcode.WRITE ? 'write' : 'read';
    // One deadline for the whole call, the segment's opening included.
    const deadline = options.timeoutMs ?? syncDeadlineMs(core.transferTimeoutMs, c.bytes);
    const late = (): TransferEngineError =>
      teError(
        ErrorCode.TIMEOUT,
        `${op} of ${c.bytes} B with ${targetHostname} not done within ${deadline.toFixed(0)} ms (${options.timeoutMs === undefined ? 'MC_TRANSFER_TIMEOUT + 1 ns/byte' : 'options.timeoutMs'})`,
      );
    const canceled = (): TransferEngineError => teError(ErrorCode.CANCELED, `${op} of ${c.bytes} B with ${targetHostname} canceled (options.signal)`);
    const { signal } = options;
    if (signal?.aborted) throw canceled();
    let outcome;
    let batch = 0;
    try {
      const handle = await withDeadline(core.openSegment(targetHostname), deadline, signal);
      if (handle === TIMED_OUT) throw late();
      if (handle === ABORTED) throw canceled();
      const { id, record } = this.submit(c, handle, () => `${op} with ${targetHostname}`);
      batch = id;
      this.logger.trace(`${method}: ${op} ${c.bytes} B in ${c.requests.length} request(s) with ${targetHostname}`);
      outcome = await withDeadline(record.done, deadline - (performance.now() - started), signal);
    } catch (e) {
      // close() during the call: the transfer ran and failed (-1); ERR_CLOSED is for calls made after close().
      if (e instanceof TransferEngineError && e.code === ErrorCode.CLOSED) {
        throw new ApiFailure(ERR_FAILED, e.code, `${op} with ${targetHostname} failed: ${e.message}`, e);
      }
      throw e;
    }
    if (outcome === TIMED_OUT || outcome === ABORTED) {
      // The transfer is canceled; the batch releases itself once its wire requests have ended.
      core.cancelBatch(batch).catch(() => undefined);
      throw outcome === TIMED_OUT ? late() : canceled();
    }
    if (outcome) throw outcome; // (a peer that moved was already looked up again by the core)
    if (notify) {
      try {
        await core.sendNotify(targetHostname, { name: notify.name, msg: notify.msg });
      } catch (e) {
        if (!(e instanceof TransferEngineError)) throw e;
        throw new ApiFailure(ERR_NOTIFY_FAILED, e.code, `the data was transferred, but the notification was not delivered: ${e.message}`, e);
      }
    }
  }

  /**
   * An async transfer: checked, submitted and numbered at once (the id is the
   * core's batch id). A segment not open yet opens inside the batch's tasks
   * (shared with concurrent calls), so a hung or dead peer never blocks the call.
   * `options.signal` and `options.timeoutMs` cancel the batch (submit); a
   * signal aborted already: nothing is submitted (ERR_CANCELED).
   */
  submitAsync(method: string, targetHostname: string, lists: TransferLists, opcode: TransferOpcode, transportHint: string, options: SyncOptions = {}): BatchID {
    const c = this.check(lists, opcode, transportHint);
    if (options.signal?.aborted) {
      const op = opcode === TransferOpcode.WRITE ? 'write' : 'read';
      throw teError(ErrorCode.CANCELED, `${op} of ${c.bytes} B with ${targetHostname} canceled before it was submitted (options.signal)`);
    }
    const { id, record } = this.submit(c, this.core.segmentHandle(targetHostname), (n) => `batch ${n}`, options);
    this.outcomes.add(id, record);
    this.logger.trace(`${method}: batch ${id}, ${c.bytes} B in ${c.requests.length} request(s) with ${targetHostname}`);
    return id;
  }

  /** transferCheckStatus: 0 running, 1 completed; a failure is thrown (-1 or -2). A final status frees the id. */
  checkStatus(id: BatchID): number {
    const b = this.outcome(id);
    if (b.outcome === undefined) return 0;
    this.outcomes.delete(id);
    if (!b.outcome) return 1;
    throw b.outcome;
  }

  /** getBatchTransferStatus: waits for all, each within its deadline; throws the first failure. Frees every listed id. */
  async waitAll(ids: readonly BatchID[]): Promise<void> {
    if (new Set(ids).size !== ids.length) throw teError(ErrorCode.INVALID_ARGUMENT, 'a batch id is listed twice');
    const bs = ids.map((id) => this.outcome(id));
    const timeoutMs = this.core.transferTimeoutMs;
    const timers: NodeJS.Timeout[] = [];
    try {
      const first = await new Promise<TransferEngineError | null>((resolve) => {
        let left = bs.length;
        if (left === 0) resolve(null);
        bs.forEach((b, k) => {
          // A batch with options.timeoutMs is canceled by its own deadline, which ends `done` (ERR_TIMEOUT).
          if (b.timeoutMs === undefined) {
            const budget = syncDeadlineMs(timeoutMs, b.bytes);
            const ms = b.startedAt + budget - performance.now();
            timers.push(
              setTimeout(() => resolve(teError(ErrorCode.TIMEOUT, `batch ${ids[k]} not done within ${budget.toFixed(0)} ms (MC_TRANSFER_TIMEOUT + 1 ns/byte)`)), Math.max(0, ms)),
            );
          }
          void b.done.then((err) => {
            if (err) resolve(err);
            else if (--left === 0) resolve(null);
          });
        });
      });
      if (first) throw first;
    } finally {
      for (const t of timers) clearTimeout(t);
      for (const id of ids) this.outcomes.delete(id); // unfinished ones release themselves when their tasks end
    }
  }

  /** Forget every outcome (close()). */
  clear(): void {
    this.outcomes.clear();
  }

  /** An async call's batch by id, or ERR_INVALID_BATCH saying why there is none. */
  private outcome(id: BatchID): BatchRecord {
    const b = this.outcomes.get(id);
    if (b) return b;
    const dropped = this.outcomes.dropped > 0 ? `, or dropped uncollected (more than ${MAX_FINISHED} finished batches were never checked)` : '';
    const why = this.core.batchIdIssued(id) ? `already freed by a final status${dropped}` : 'never returned by this engine';
    throw teError(ErrorCode.INVALID_BATCH, `batch ${id} is unknown: ${why}`);
  }
}
