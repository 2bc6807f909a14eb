/**
 * Carrying out plans: a task per request, its job handed to the first
 * transport that can serve it (src/transport/transport.ts, in the order
 * given), and its retry rounds (retry.ts decides; this runs them: the
 * backoff, the descriptor refetch, the resend).
 */
import type { EngineConfig } from '../config.js';
import { channels } from '../diagnostics.js';
import { teError, ErrorCode, TransferEngineError } from '../errors.js';
import { Lease } from '../lease.js';
import type { Job, TaskSink, Transport, TransportHost, TransportName } from '../transport/transport.js';
import type { TcpTransport } from '../transport/tcp/transport.js';
import { Task, type Batch } from './batch.js';
import type { Plan } from './planner.js';
import { retryBackoffMs } from './retry.js';
import type { SegmentTable } from './segments.js';
import { TaskStatus } from './types.js';
import type { Telemetry } from './telemetry.js';

export interface DispatchContext {
  readonly config: EngineConfig;
  readonly telemetry: Telemetry;
  readonly segments: SegmentTable;
  /** The engine is ready (not closed): tasks that wait for something check it again when it comes. */
  ready(): boolean;
  /** The transports, in the order they are offered each job: same-host ones before TCP. */
  readonly transports: readonly Transport[];
  /** TCP, which retry rounds resend through (only slices are retried). */
  readonly tcp: TcpTransport;
}

export class Dispatcher implements TransportHost {
  /** Slices resent by retry rounds. */
  retries = 0;
  /** Tasks between retry rounds (backoff, or refetching the descriptor): close() ends them. */
  private readonly retrying = new Set<Task>();
  /** Tasks waiting for their segment's descriptor, with the pin on their memory. */
  private readonly opening = new Map<Task, Lease>();

  constructor(private readonly ctx: DispatchContext) {}

  ready(): boolean {
    return this.ctx.ready();
  }

  /** Start one planned request as a task of `batch`. */
  start(batch: Batch, p: Plan): void {
    // Requests to a peer (its memory, or a same-host peer's file) may be retried; local ones never are.
    const telemetry = this.ctx.telemetry;
    const task = p.kind === 'opening' || p.seg ? new Task(batch, p.write, telemetry, p.kind === 'ready' ? p.seg : null, this.retryHook) : new Task(batch, p.write, telemetry);
    if (p.kind === 'ready') {
      this.route(0, task, p);
      return;
    }
    // The segment is still opening: the task waits for its descriptor, its memory pinned meanwhile.
    const pin = new Lease(p.region);
    this.opening.set(task, pin);
    p.pending.segment.then(
      (opened) => {
        pin.release();
        if (!this.opening.delete(task)) return; // canceled meanwhile: it was done then
        if (!this.ctx.ready()) {
          task.error = teError(ErrorCode.CLOSED, 'the engine was closed while the segment opened');
          task.finish();
          return;
        }
        task.seg = opened;
        task.generation = opened.generation;
        this.route(0, task, { write: p.write, local: p.local, region: p.region, target: p.target, to: opened.endpoint });
      },
      (e: unknown) => {
        pin.release();
        if (!this.opening.delete(task)) return;
        task.error = e instanceof TransferEngineError ? e : teError(ErrorCode.PEER_UNREACHABLE, `cannot open segment "${p.pending.name}": ${String(e)}`, e);
        task.finish();
      },
    );
  }

  /** A transport's counters (they outlive close()), or undefined when it is not in use. */
  stats(name: TransportName): Readonly<Record<string, number>> | undefined {
    return this.ctx.transports.find((t) => t.name === name)?.stats();
  }

  /**
   * What a transport could not finish goes to the transports after it,
   * unless the task was canceled meanwhile (a same-host copy failing after
   * the cancel): then nothing more is sent, and the task is only drained.
   */
  reroute(from: Transport, task: TaskSink, job: Job): void {
    if (task.canceled) {
      task.finish();
      return;
    }
    this.route(this.ctx.transports.indexOf(from) + 1, task, job);
  }

  /** Hand a job to the first transport from index `i` on that serves it. */
  private route(i: number, task: TaskSink, job: Job): void {
    const list = this.ctx.transports;
    for (; i < list.length; i++) {
      const t = list[i]!;
      if (t.canServe(job)) {
        task.via = t.name;
        t.submit(task, job, this);
        return;
      }
    }
    task.error = teError(ErrorCode.NO_TRANSPORT, `no transport carries a request to ${job.to.kind === 'peer' ? `segment "${job.to.name}"` : job.to.kind}`);
    task.finish();
  }

  /** Shared by all tasks: no closure per task. */
  private readonly retryHook = (task: Task): void => this.retryTask(task);

  /**
   * A task's round ended with retryable failures: after a backoff (none for
   * pure address rejections, which only a changed descriptor can cure),
   * refetch the descriptor, then resend. The refetch comes every round, not
   * only after refused connects: a dead peer behind a proxy or load balancer
   * looks like connections accepted and reset, and refetches are shared and
   * reused (SegmentTable.refresh). Gives up after MC_RETRY_CNT rounds. The client
   * bounds the connections behind this (per-peer connect budget, pause after
   * repeated connect failures).
   */
  private retryTask(task: Task): void {
    if (task.rounds >= this.ctx.config.retryCount || !this.ctx.ready()) {
      task.giveUp();
      return;
    }
    const round = task.rounds++;
    this.retrying.add(task);
    if (task.needsNewDescriptor) {
      void this.resend(task);
      return;
    }
    const delay = retryBackoffMs(round, Math.random());
    task.retryTimer = setTimeout(() => {
      task.retryTimer = null;
      void this.resend(task);
    }, delay);
  }

  private async resend(task: Task): Promise<void> {
    const seg = task.seg!;
    const moved = (await this.ctx.segments.refresh(seg, task.generation)) === 'changed';
    if (!this.retrying.delete(task)) return; // ended by close()
    if (task.canceled) {
      task.giveUp(); // canceled while the descriptor was refetched: nothing more is sent
      return;
    }
    if (moved) task.generation = seg.generation;
    else if (task.needsNewDescriptor) {
      task.giveUp(); // rejected by a peer that has not changed (or another engine at a peer that is gone): resending cannot help
      return;
    }
    if (!this.ctx.ready() || !this.ctx.tcp.client) {
      task.giveUp();
      return;
    }
    const { slices, holds } = task.takeRetryable();
    this.retries += slices.length;
    if (channels.retry.hasSubscribers) {
      channels.retry.publish({ engineId: this.ctx.telemetry.engineId, segment: seg.name, round: task.rounds, slices: slices.length });
    }
    this.ctx.tcp.resend(task, slices, seg.endpoint);
    // The resent slices hold their own pins now: the round's holds can go.
    for (const h of holds) h.release();
  }

  /**
   * Cancel a batch's unfinished tasks (cancelBatch, an aborted waitBatch
   * signal): each ends CANCELED now. One waiting for its segment or out a
   * retry backoff has nothing in flight and is done at once; the others drain
   * as their wire requests, copies or I/O end. Returns how many were canceled.
   */
  cancel(batch: Batch): number {
    const err = teError(ErrorCode.CANCELED, `batch ${batch.id} was canceled`);
    let n = 0;
    for (const t of batch.tasks) {
      if (t.canceled || t.status !== TaskStatus.WAITING) continue;
      // Nothing in flight for a task waiting for its segment (nothing was sent) or out a retry backoff.
      let busy = true;
      const pin = this.opening.get(t);
      if (pin) {
        this.opening.delete(t);
        pin.release();
        busy = false;
      } else if (t.retryTimer && this.retrying.delete(t)) {
        clearTimeout(t.retryTimer);
        t.retryTimer = null;
        busy = false;
      }
      if (t.cancel(err, busy)) n++;
    }
    return n;
  }

  /** End tasks waiting between retry rounds (close()). */
  abandonRetries(err: TransferEngineError): void {
    const tasks = [...this.retrying];
    this.retrying.clear();
    for (const t of tasks) {
      if (t.retryTimer) clearTimeout(t.retryTimer);
      t.retryTimer = null;
      t.error ??= err;
      t.giveUp();
    }
  }
}
