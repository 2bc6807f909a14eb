/**
 * What the engine counts about its transfers, kept once: the cumulative
 * counters of stats() and getMetrics(), and for the metrics port requests and
 * bytes by opcode and transport, task results by status and error code, and
 * a latency histogram per opcode. Tasks report here when they end
 * (batch.ts); the `transfer:complete` and `transfer:error` diagnostics
 * events are published from here too.
 *
 * Per task this costs two clock reads, a few array increments and a bucket
 * search; nothing is allocated unless the task failed or someone subscribes.
 */
import { Histogram, type MetricFamily, type Sample } from '../codec/prometheus.js';
import { channels, type Opcode } from '../diagnostics.js';
import { ErrorCode, type TransferEngineError } from '../errors.js';
import { MAX_RECENT_ERRORS, type RecentError } from '../status/types.js';
import type { TransportName } from '../transport/transport.js';
import { TransferOpcode, type TransferCounters, type TransferRequest } from './types.js';

/** The transports in the order of the arrays below; 'none': the task ended before any took it. */
const TRANSPORTS = ['memory', 'file', 'file-same-host', 'shm', 'tcp', 'none'] as const;
type Carrier = (typeof TRANSPORTS)[number];
const INDEX: Readonly<Record<Carrier, number>> = { memory: 0, file: 1, 'file-same-host': 2, shm: 3, tcp: 4, none: 5 };

/**
 * Latency bucket bounds in seconds: from a loopback 4 KiB READ (~80 us) to a
 * transfer that ran into the default 30 s timeout. Mooncake's PR #2958 uses
 * 1 ms to 5 s, too coarse below a millisecond for this engine.
 */
export const LATENCY_BOUNDS = [0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];

/** What telemetry reads from a task that ended (batch.ts, Task). */
export interface EndedTask {
  readonly write: boolean;
  readonly transferred: number;
  readonly error: TransferEngineError | undefined;
  /** 'timeout' or 'failed' when error is set. */
  readonly timedOut: boolean;
  readonly via: TransportName | null;
  readonly startedAt: number;
  readonly batchId: number;
  readonly index: number;
  /** The peer segment's name; read only when the task failed. */
  readonly peer?: string | undefined;
}

export class Telemetry {
  /** stats() / getMetrics(): cumulative. */
  readonly counters: TransferCounters = { bytesWritten: 0, bytesRead: 0, tasksCompleted: 0, tasksFailed: 0 };
  /** Tasks submitted and not ended. */
  inflight = 0;
  /** [read, write][transport]: tasks ended, and bytes they moved. */
  private readonly requests = [new Array<number>(TRANSPORTS.length).fill(0), new Array<number>(TRANSPORTS.length).fill(0)];
  private readonly bytes = [new Array<number>(TRANSPORTS.length).fill(0), new Array<number>(TRANSPORTS.length).fill(0)];
  /** Tasks that ended without error, by opcode. */
  private readonly completed = [0, 0];
  /** `opcode\0status\0code` -> tasks that failed so: a code catalogue's worth of keys at most. */
  private readonly failures = new Map<string, number>();
  private readonly latency = [new Histogram(LATENCY_BOUNDS), new Histogram(LATENCY_BOUNDS)];
  /** The last MAX_RECENT_ERRORS failures, oldest first (the status page). */
  private readonly recent: RecentError[] = [];

  constructor(readonly engineId: number) {}

  /** Requests accepted by submitTransfer, their tasks numbered from `first`: the submit events. */
  submitted(batchId: number, first: number, requests: readonly TransferRequest[]): void {
    if (!channels.submit.hasSubscribers) return;
    requests.forEach((r, i) => {
      const opcode = r.opcode === TransferOpcode.WRITE ? 'write' : 'read';
      channels.submit.publish({ engineId: this.engineId, batchId, taskId: first + i, opcode, length: r.length, segment: r.targetId });
    });
  }

  taskStarted(): void {
    this.inflight++;
  }

  taskEnded(t: EndedTask): void {
    this.inflight--;
    const c = this.counters;
    const op = t.write ? 1 : 0;
    if (t.write) c.bytesWritten += t.transferred;
    else c.bytesRead += t.transferred;
    const carrier = INDEX[t.via ?? 'none'];
    this.requests[op]![carrier]!++;
    this.bytes[op]![carrier]! += t.transferred;
    const ms = performance.now() - t.startedAt;
    this.latency[op]!.observe(ms / 1000);
    const opcode: Opcode = t.write ? 'write' : 'read';
    if (!t.error) {
      c.tasksCompleted++;
      this.completed[op]!++;
      if (channels.complete.hasSubscribers) {
        channels.complete.publish({ engineId: this.engineId, batchId: t.batchId, taskId: t.index, opcode, bytes: t.transferred, transport: t.via ?? 'none', durationMs: ms });
      }
      return;
    }
    // A canceled task is neither completed nor failed: it has its own status.
    const status = t.error.code === ErrorCode.CANCELED ? 'canceled' : t.timedOut ? 'timeout' : 'failed';
    if (status !== 'canceled') c.tasksFailed++;
    const key = `${opcode}\0${status}\0${t.error.code}`;
    this.failures.set(key, (this.failures.get(key) ?? 0) + 1);
    const peer = t.peer;
    this.recent.push({ time: new Date().toISOString(), opcode, status, code: t.error.code, message: t.error.message, ...(peer === undefined ? {} : { peer }) });
    if (this.recent.length > MAX_RECENT_ERRORS) this.recent.shift();
    if (channels.error.hasSubscribers) {
      channels.error.publish({
        engineId: this.engineId,
        batchId: t.batchId,
        taskId: t.index,
        opcode,
        bytes: t.transferred,
        transport: t.via ?? 'none',
        durationMs: ms,
        code: t.error.code,
        message: t.error.message,
      });
    }
  }

  /** The last failures, newest first. */
  recentErrors(): RecentError[] {
    return this.recent.slice().reverse();
  }

  /** The transfer metric families (names as in Mooncake's PR #2958 where they map). */
  families(): MetricFamily[] {
    const byCarrier = (table: number[][]): Sample[] => {
      const out: Sample[] = [];
      for (const [op, opcode] of [[0, 'read'], [1, 'write']] as const) {
        TRANSPORTS.forEach((transport, i) => {
          const v = table[op]![i]!;
          if (v > 0) out.push({ labels: { opcode, transport }, value: v });
        });
      }
      return out;
    };
    const results: Sample[] = [
      { labels: { opcode: 'read', status: 'completed', code: '' }, value: this.completed[0]! },
      { labels: { opcode: 'write', status: 'completed', code: '' }, value: this.completed[1]! },
    ];
    for (const [k, n] of [...this.failures].sort()) {
      const [opcode, status, code] = k.split('\0') as [string, string, string];
      results.push({ labels: { opcode, status, code }, value: n });
    }
    return [
      { name: 'transfer_requests_total', help: 'Transfer requests (tasks) ended, by opcode and the transport that carried them.', type: 'counter', samples: byCarrier(this.requests) },
      { name: 'transfer_bytes_total', help: 'Bytes moved by transfer requests, by opcode and transport.', type: 'counter', samples: byCarrier(this.bytes) },
      { name: 'transfer_tasks_total', help: 'Transfer requests ended, by opcode, status (completed, failed, timeout, canceled) and error code.', type: 'counter', samples: results },
      { name: 'transfer_failures_total', help: 'Transfer requests that failed or timed out.', type: 'counter', samples: [{ value: this.counters.tasksFailed }] },
      { name: 'inflight_transfers', help: 'Transfer requests submitted and not ended.', type: 'gauge', samples: [{ value: this.inflight }] },
      {
        name: 'transfer_latency_seconds',
        help: 'Time from submit to end of a transfer request, by opcode.',
        type: 'histogram',
        samples: [this.latency[0]!.sample({ opcode: 'read' }), this.latency[1]!.sample({ opcode: 'write' })],
      },
    ];
  }
}
