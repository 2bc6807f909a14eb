/**
 * MC_TE_METRIC: every MC_TE_METRIC_INTERVAL_SECONDS, one throughput line
 * computed from the core's cumulative counters (stats()). Like Mooncake,
 * intervals without activity print nothing. The same counters are readable
 * at any time with TransferEngine.getMetrics().
 */
import type { TransferCounters } from '../engine/types.js';

/** Cumulative counters since initialize(). */
export type TransferMetrics = TransferCounters;

export const ZERO_METRICS: TransferMetrics = Object.freeze({ bytesWritten: 0, bytesRead: 0, tasksCompleted: 0, tasksFailed: 0 });

function human(bytes: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let v = bytes;
  let u = 0;
  while (v >= 1024 && u < units.length - 1) {
    v /= 1024;
    u++;
  }
  return u === 0 ? `${v} B` : `${v.toFixed(2)} ${units[u]}`;
}

/**
 * The line for one interval, or null when nothing happened in it. Starts with
 * Mooncake's "[Metrics] Transfer Engine Stats" so existing log filters match;
 * MB/s is 10^6 bytes per second.
 */
export function formatMetricsLine(prev: TransferMetrics, cur: TransferMetrics, seconds: number): string | null {
  const written = cur.bytesWritten - prev.bytesWritten;
  const read = cur.bytesRead - prev.bytesRead;
  const completed = cur.tasksCompleted - prev.tasksCompleted;
  const failed = cur.tasksFailed - prev.tasksFailed;
  if (written === 0 && read === 0 && completed === 0 && failed === 0) return null;
  const mbps = (written + read) / 1e6 / seconds;
  return (
    `[Metrics] Transfer Engine Stats (over last ${seconds}s): Throughput: ${mbps.toFixed(2)} MB/s` +
    ` | written ${human(written)}, read ${human(read)} | tasks ${completed} completed, ${failed} failed`
  );
}

export class MetricsReporter {
  private timer: NodeJS.Timeout | null = null;
  private prev: TransferMetrics;

  constructor(
    private readonly read: () => TransferMetrics,
    private readonly intervalSeconds: number,
    private readonly emit: (line: string) => void,
  ) {
    this.prev = { ...read() };
  }

  start(): void {
    this.timer = setInterval(() => this.tick(), this.intervalSeconds * 1000);
    this.timer.unref(); // reporting never keeps the process alive
  }

  tick(): void {
    const cur = { ...this.read() };
    const line = formatMetricsLine(this.prev, cur, this.intervalSeconds);
    this.prev = cur;
    if (line !== null) this.emit(line);
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }
}
